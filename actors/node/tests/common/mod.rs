//! Harness for end-to-end tests of the containerd runtime (real containerd, runc, CNI).
//!
//! Every such test runs inside fresh namespaces ([`drover_testkit::netns::enter`]) and
//! starts a [`TestNode`]: a data dir in a temp dir, containerd started through the same
//! [`ContainerdHost`] the agent uses (pause image included), and the [`CriRuntime`].
//! Dropping the node kills, by PID, containerd, every shim and container process it
//! started, and unmounts what it left under the data dir, also when the test panics.
//!
//! ```ignore
//! mod common;
//! #[test]
//! fn my_scenario() {
//!     if !drover_testkit::netns::enter("my_scenario") { return; }
//!     common::block_on(async {
//!         let node = common::TestNode::start().await;
//!         node.import_busybox().await;
//!         // node.runtime: Arc<CriRuntime> (also an Arc<dyn Runtime>)
//!     });
//! }
//! ```
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use drover_node::containerd::ContainerdPaths;
use drover_node::host::{self, ContainerdHost, HostConfig};
use drover_node::{AgentConfig, CriRuntime, Runtime, image};
use drover_store::node_index::PodIndex;
use drover_store::{Store, StoreConfig};
use drover_testkit::TestNats;

/// The pod CIDR tests hand to the runtime directly (agents claim theirs from the
/// cluster CIDR 10.244.0.0/16, the first node gets this one).
pub const POD_CIDR: &str = "10.244.0.0/24";
/// The busybox test image's reference ([`TestNode::import_busybox`]).
pub const BUSYBOX_IMAGE: &str = "localhost/busybox:latest";
/// Applets linked in the busybox test image.
pub const BUSYBOX_APPLETS: &[&str] = &[
    "sh", "sleep", "echo", "cat", "wget", "nc", "ls", "mkdir", "httpd", "true", "false", "test",
    "touch", "rm", "dd",
];
/// Failure guard for waits; never a timing assertion.
pub const GUARD: Duration = Duration::from_secs(60);

/// Runs a future on a current-thread runtime (the tests' `main`).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    drover_testkit::init_tracing();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Polls `check` until it returns `Some`, or panics after [`GUARD`].
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(started.elapsed() < GUARD, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes the busybox test image (Debian's busybox-static) as an OCI archive into
/// `dir`; returns the archive's path.
pub fn busybox_archive(dir: &Path) -> PathBuf {
    let archive = dir.join("busybox.tar");
    let spec = image::busybox_image(BUSYBOX_IMAGE, Path::new("/bin/busybox"), BUSYBOX_APPLETS)
        .expect("busybox-static at /bin/busybox (run scripts/setup)");
    image::write_oci_archive(&spec, &archive).unwrap();
    archive
}

/// Kills and unmounts everything containerd started under a data dir when dropped.
pub struct Purge(pub ContainerdPaths);

impl Drop for Purge {
    fn drop(&mut self) {
        host::purge(&self.0);
    }
}

/// A node's container runtime for one test (see the module doc).
pub struct TestNode {
    /// The runtime under test.
    pub runtime: Arc<CriRuntime>,
    /// containerd; `None` after [`TestNode::kill_containerd`].
    pub host: Option<ContainerdHost>,
    /// The data dir's layout.
    pub paths: ContainerdPaths,
    // Field order matters: the purge runs before the temp dir is removed.
    _purge: Purge,
    /// The temp dir holding the data dir (`<dir>/data`) and test files.
    pub dir: tempfile::TempDir,
}

impl TestNode {
    /// Starts containerd under a fresh temp dir through [`ContainerdHost::start`].
    pub async fn start() -> TestNode {
        Self::start_with(|_| {}).await
    }

    /// Like [`TestNode::start`], with a chance to change the host config first (plain-
    /// HTTP registries).
    pub async fn start_with(tweak: impl FnOnce(&mut HostConfig)) -> TestNode {
        assert!(
            drover_testkit::netns::inside(),
            "containerd tests must run inside drover_testkit::netns::enter"
        );
        let dir = tempfile::Builder::new()
            .prefix("drover-node-")
            .tempdir()
            .unwrap();
        let mut config = HostConfig::new(dir.path().join("data"));
        tweak(&mut config);
        let paths = ContainerdPaths::new(&config.data_dir);
        let purge = Purge(paths.clone());
        let (runtime, host) = ContainerdHost::start(config).await.unwrap();
        TestNode {
            runtime,
            host: Some(host),
            paths,
            _purge: purge,
            dir,
        }
    }

    /// The runtime as the agent takes it.
    pub fn dyn_runtime(&self) -> Arc<dyn Runtime> {
        self.runtime.clone()
    }

    /// An agent config for this node: its data dir, volumes under `<data>/pods` (as
    /// `drover agent` sets them) and a fast lease.
    pub fn agent_config(&self, node_name: &str) -> AgentConfig {
        let mut config = AgentConfig::new(node_name);
        config.data_dir = self.paths.data_dir.clone();
        config.pods_dir = Some(self.paths.data_dir.join("pods"));
        config.lease_renew_interval = Duration::from_millis(500);
        config
    }

    /// Imports the busybox test image ([`BUSYBOX_IMAGE`]) with `ctr`.
    pub async fn import_busybox(&self) {
        let archive = busybox_archive(self.dir.path());
        image::import(Path::new("ctr"), &self.paths.socket(), &archive)
            .await
            .unwrap();
        let runtime = self.runtime.clone();
        wait_for("the imported image in CRI", || {
            let runtime = runtime.clone();
            async move {
                runtime
                    .image_present(BUSYBOX_IMAGE)
                    .await
                    .unwrap()
                    .then_some(())
            }
        })
        .await;
    }
}

/// A store on `nats` with the control plane's pod index running (agents follow their
/// pods through it); keep the index alive for the test.
pub async fn store_with_index(nats: &TestNats) -> (Store, PodIndex) {
    let store = Store::new(nats.client().await, StoreConfig::default())
        .await
        .unwrap();
    let index = PodIndex::start(store.clone()).await.unwrap();
    (store, index)
}

/// Creates `obj`, or replaces the stored object of the same namespace and name (what a
/// controller's write looks like to the watchers).
pub async fn apply<K>(store: &Store, mut obj: K)
where
    K: k8s_openapi::Resource
        + k8s_openapi::Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>
        + serde::Serialize
        + serde::de::DeserializeOwned,
{
    let api = store.api::<K>();
    let (ns, name) = (
        obj.metadata().namespace.clone(),
        obj.metadata().name.clone(),
    );
    match api.get(ns.as_deref(), name.as_deref().unwrap_or("")).await {
        Ok(cur) => {
            obj.metadata_mut().resource_version = cur.metadata().resource_version.clone();
            api.update(&obj).await.unwrap();
        }
        Err(_) => {
            api.create(&obj).await.unwrap();
        }
    }
}
