//! Shared test harness: real nats-server processes (single or a 3-node cluster) on free
//! loopback ports with temp data dirs, configured exactly as `drover up` configures its
//! own (same `natsd::render_config`), killed by PID and cleaned up on drop.
//!
//! Tests that need the binary fail with a message naming `scripts/setup` when it is
//! missing: a missing dependency must fail CI, not skip.

pub mod cgroup;
pub mod fabric;
pub mod netns;
pub mod registry;
pub mod stats;

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Once;
use std::time::Duration;

use drover_actors::natsd::{self, ClusterConfig, NatsServerConfig};
use tokio::process::Child;

/// How long the harness waits for a server to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Installs a tracing subscriber once (honours `RUST_LOG`, writes to the test output).
pub fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter =
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// A free TCP port on 127.0.0.1 (bound and released; fine for tests on one machine).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral loopback port")
}

/// The nats-server binary the harness uses (`DROVER_NATS_SERVER` or `PATH`).
pub fn nats_binary() -> PathBuf {
    let explicit = std::env::var_os("DROVER_NATS_SERVER").map(PathBuf::from);
    natsd::find_binary(explicit.as_deref())
        .unwrap_or_else(|e| panic!("{e} (tests need the pinned nats-server: run scripts/setup)"))
}

/// One nats-server owned by a test.
pub struct TestNats {
    config: NatsServerConfig,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

impl TestNats {
    /// Starts a single server with JetStream on a free port and a fresh temp dir.
    pub async fn start() -> TestNats {
        init_tracing();
        let dir = tempfile::Builder::new()
            .prefix("drover-nats-")
            .tempdir()
            .expect("creating temp dir");
        let config = NatsServerConfig::single(nats_binary(), dir.path().to_path_buf(), free_port());
        let mut server = TestNats {
            config,
            child: None,
            _dir: Some(dir),
        };
        server.restart().await;
        server
    }

    fn member(config: NatsServerConfig) -> TestNats {
        TestNats {
            config,
            child: None,
            _dir: None,
        }
    }

    /// Client URL.
    pub fn url(&self) -> String {
        self.config.url()
    }

    /// Data directory (config, log, JetStream store).
    pub fn data_dir(&self) -> PathBuf {
        self.config.data_dir.clone()
    }

    /// PID of the running server.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// A client that reconnects forever (so it survives kills and restarts).
    pub async fn client(&self) -> async_nats::Client {
        natsd::wait_ready(&self.url(), READY_TIMEOUT)
            .await
            .expect("connecting to test nats-server")
    }

    /// `kill -9` of the server process, then reaps it.
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = child.wait().await;
        }
    }

    /// (Re)starts the server with the same config and data; waits until JetStream answers.
    pub async fn restart(&mut self) {
        self.kill9().await;
        self.child = Some(natsd::spawn(&self.config).expect("spawning nats-server"));
        self.wait_ready().await;
    }

    async fn wait_ready(&self) {
        if let Err(e) = natsd::wait_ready(&self.url(), READY_TIMEOUT).await {
            let log = std::fs::read_to_string(self.config.log_path()).unwrap_or_default();
            panic!("{e}\n--- nats-server log ---\n{log}");
        }
    }
}

impl Drop for TestNats {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
            let _ = child.try_wait();
        }
    }
}

/// A NATS cluster on loopback, each member with JetStream.
pub struct TestCluster {
    /// The members, in start order.
    pub nodes: Vec<TestNats>,
    _dir: tempfile::TempDir,
}

impl TestCluster {
    /// Starts `n` clustered servers and waits until JetStream (meta leader elected) answers.
    pub async fn start(n: usize) -> TestCluster {
        init_tracing();
        let dir = tempfile::Builder::new()
            .prefix("drover-nats-cluster-")
            .tempdir()
            .expect("creating temp dir");
        let binary = nats_binary();
        let client_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let route_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let mut nodes = Vec::new();
        for i in 0..n {
            let routes = (0..n)
                .filter(|j| *j != i)
                .map(|j| format!("nats-route://127.0.0.1:{}", route_ports[j]))
                .collect();
            let config = NatsServerConfig {
                binary: binary.clone(),
                data_dir: dir.path().join(format!("n{i}")),
                host: "127.0.0.1".into(),
                port: client_ports[i],
                server_name: format!("n{i}"),
                cluster: Some(ClusterConfig {
                    name: "drover-test".into(),
                    port: route_ports[i],
                    routes,
                }),
            };
            let mut node = TestNats::member(config);
            node.child = Some(natsd::spawn(&node.config).expect("spawning nats-server"));
            nodes.push(node);
        }
        for node in &nodes {
            node.wait_ready().await;
        }
        TestCluster { nodes, _dir: dir }
    }

    /// Comma-separated client URLs of all members (what `drover up --nats` takes).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(TestNats::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A client that knows every member and fails over between them.
    pub async fn client(&self) -> async_nats::Client {
        let urls: Vec<async_nats::ServerAddr> = self
            .nodes
            .iter()
            .map(|n| n.url().parse().expect("server url"))
            .collect();
        async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connect(urls)
            .await
            .expect("connecting to test cluster")
    }
}
