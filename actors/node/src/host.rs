//! Node bootstrap for the containerd runtime: everything between "a data dir" and "an
//! `Arc<dyn Runtime>` the agent can use".
//!
//! [`ContainerdHost::start`] starts containerd with drover's own config under the data
//! dir (or connects to an existing socket), allows the configured plain-HTTP registries,
//! makes sure the pause image is there (compiled from `pause/pause.c` and imported on
//! first start only), and returns the [`CriRuntime`] with a guard owning containerd.
//!
//! Lifetimes, on purpose: containerd dies with the agent (PR_SET_PDEATHSIG, see
//! [`crate::containerd`]), but containers do not: their shims are detached from
//! containerd. A restarted agent restarts containerd on the same root and state, which
//! reconnects to the shims, and the PodActors re-adopt the pods by uid.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::containerd::{self, Containerd, ContainerdError, ContainerdPaths};
use crate::cri::CriClient;
use crate::cri_runtime::{CriRuntime, CriRuntimeConfig};
use crate::image::{self, ImageError};

/// How long to wait for CRI to answer and for an imported image to show up in CRI.
pub const CRI_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How the node's container runtime is set up (STYLE 8: one place, named defaults).
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The agent's data dir: containerd's root/state/socket, CNI config, pod logs.
    pub data_dir: PathBuf,
    /// Use the containerd already listening here instead of starting one. Its CRI
    /// config must read CNI configs from `<data_dir>/cni/net.d` for pod networking.
    pub containerd_socket: Option<PathBuf>,
    /// Registries (`host:port`) containerd may pull from over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// The containerd binary.
    pub containerd_binary: PathBuf,
    /// The `ctr` binary (image import).
    pub ctr_binary: PathBuf,
    /// The C compiler for the pause program.
    pub cc: PathBuf,
    /// Directory of the CNI plugin binaries.
    pub cni_bin_dir: PathBuf,
    /// How long containerd and CRI get to come up.
    pub ready_timeout: Duration,
}

impl HostConfig {
    /// Defaults: start `containerd` from PATH under `data_dir`, Debian's CNI plugins.
    pub fn new(data_dir: impl Into<PathBuf>) -> HostConfig {
        HostConfig {
            data_dir: data_dir.into(),
            containerd_socket: None,
            insecure_registries: Vec::new(),
            containerd_binary: "containerd".into(),
            ctr_binary: "ctr".into(),
            cc: "cc".into(),
            cni_bin_dir: containerd::DEFAULT_CNI_BIN_DIR.into(),
            ready_timeout: CRI_READY_TIMEOUT,
        }
    }

    fn paths(&self) -> ContainerdPaths {
        ContainerdPaths {
            data_dir: self.data_dir.clone(),
            cni_bin_dir: self.cni_bin_dir.clone(),
        }
    }

    /// The CRI socket this config uses (the given one or our containerd's).
    pub fn socket(&self) -> PathBuf {
        self.containerd_socket
            .clone()
            .unwrap_or_else(|| self.paths().socket())
    }
}

/// Why the node's runtime could not be set up. Nothing in the cluster changed.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// containerd did not start (see its log). Retryable if the cause was transient.
    #[error(transparent)]
    Containerd(#[from] ContainerdError),
    /// Building or importing the pause image failed. Not retryable without a fix
    /// (missing `cc`/static libc or `ctr`).
    #[error("pause image: {0}")]
    PauseImage(#[from] ImageError),
    /// CRI did not answer in time. Retryable.
    #[error("CRI at {socket}: {message}")]
    Cri {
        /// The socket.
        socket: PathBuf,
        /// Why.
        message: String,
    },
    /// Writing registry or directory config failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The node's containerd, if the agent started it. Dropping it kills containerd (by
/// PID); [`ContainerdHost::stop`] stops it gracefully. Neither touches containers.
pub struct ContainerdHost {
    containerd: Option<Containerd>,
    socket: PathBuf,
    paths: ContainerdPaths,
}

impl ContainerdHost {
    /// Sets the node's runtime up (see the module doc) and returns it with its guard.
    pub async fn start(config: HostConfig) -> Result<(Arc<CriRuntime>, ContainerdHost), HostError> {
        let paths = config.paths();
        std::fs::create_dir_all(&config.data_dir)?;
        for registry in &config.insecure_registries {
            containerd::allow_plain_http_registry(&paths, registry)?;
        }
        let containerd = match &config.containerd_socket {
            Some(_) => None,
            None => Some(
                Containerd::start(
                    &config.containerd_binary,
                    paths.clone(),
                    config.ready_timeout,
                )
                .await?,
            ),
        };
        let socket = config.socket();
        let host = ContainerdHost {
            containerd,
            socket: socket.clone(),
            paths: paths.clone(),
        };
        let client = connect_cri(&socket, config.ready_timeout).await?;
        ensure_pause_image(&config, &client).await?;
        let runtime = CriRuntime::new(client, CriRuntimeConfig::new(&paths));
        Ok((Arc::new(runtime), host))
    }

    /// The CRI socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The containerd layout under the data dir.
    pub fn paths(&self) -> &ContainerdPaths {
        &self.paths
    }

    /// PID of the containerd the agent started, if it did.
    pub fn containerd_pid(&self) -> Option<u32> {
        self.containerd.as_ref().map(Containerd::pid)
    }

    /// Stops our containerd (SIGTERM, SIGKILL after [`containerd::STOP_GRACE`]);
    /// containers keep running in their shims for the next agent.
    pub async fn stop(mut self) {
        if let Some(c) = self.containerd.take() {
            c.stop(containerd::STOP_GRACE).await;
        }
    }
}

/// Connects and waits until CRI answers `Version` (containerd loads its plugins after
/// the socket is up).
async fn connect_cri(socket: &Path, timeout: Duration) -> Result<CriClient, HostError> {
    let err = |message: String| HostError::Cri {
        socket: socket.to_path_buf(),
        message,
    };
    let client = CriClient::connect(socket)
        .await
        .map_err(|e| err(e.to_string()))?;
    let started = Instant::now();
    loop {
        match client.version().await {
            Ok(_) => return Ok(client),
            Err(e) if started.elapsed() > timeout => return Err(err(e.to_string())),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Imports the pause image unless CRI already has it (a restart on the same data dir).
async fn ensure_pause_image(config: &HostConfig, client: &CriClient) -> Result<(), HostError> {
    let present = |client: &CriClient| {
        let client = client.clone();
        async move {
            client
                .image_status(containerd::SANDBOX_IMAGE)
                .await
                .ok()
                .flatten()
                .is_some()
        }
    };
    if present(client).await {
        return Ok(());
    }
    let work = config.data_dir.join("pause");
    std::fs::create_dir_all(&work)?;
    let binary = image::build_pause(&config.cc, &work)?;
    let archive = work.join("pause.tar");
    image::write_oci_archive(&image::pause_image(&binary)?, &archive)?;
    image::import(&config.ctr_binary, &config.socket(), &archive).await?;
    let started = Instant::now();
    while !present(client).await {
        if started.elapsed() > config.ready_timeout {
            return Err(HostError::Cri {
                socket: config.socket(),
                message: format!("{} not visible after import", containerd::SANDBOX_IMAGE),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::info!(
        message = "pause image imported",
        image = containerd::SANDBOX_IMAGE
    );
    Ok(())
}

/// Kills every container process and shim of the containerd at `paths` and lazily
/// unmounts what containerd left mounted under the data dir: a node reset, and the
/// cleanup of test guards. Processes are found by PID (task `init.pid` files in the
/// state dir, shims by their `-address <our socket>` argument), never by name.
pub fn purge(paths: &ContainerdPaths) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let tasks = paths.state().join("io.containerd.runtime.v2.task");
    for pid_file in find_files(&tasks, "init.pid") {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .filter(|p| *p > 1)
        {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    let socket = paths.socket();
    for shim in containerd::find_shims(&socket) {
        let _ = kill(Pid::from_raw(shim.pid), Signal::SIGKILL);
        let _ = std::fs::remove_file(shim.socket_path(&socket));
    }
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| Path::new(m).starts_with(&paths.data_dir))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        let _ = std::process::Command::new("umount")
            .args(["--lazy", &m])
            .status();
    }
}

/// Files named `name` under `dir`, recursively (symlinks not followed).
pub fn find_files(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir {
            out.extend(find_files(&p, name));
        } else if p.file_name() == Some(name.as_ref()) {
            out.push(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_is_ours_unless_given() {
        let c = HostConfig::new("/d");
        assert_eq!(c.socket(), Path::new("/d/containerd/containerd.sock"));
        let c = HostConfig {
            containerd_socket: Some("/run/containerd/containerd.sock".into()),
            ..c
        };
        assert_eq!(c.socket(), Path::new("/run/containerd/containerd.sock"));
    }

    #[test]
    fn find_files_recurses() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/b")).unwrap();
        std::fs::write(d.path().join("a/b/init.pid"), "1").unwrap();
        std::fs::write(d.path().join("a/other"), "1").unwrap();
        assert_eq!(
            find_files(d.path(), "init.pid"),
            [d.path().join("a/b/init.pid")]
        );
        assert!(find_files(&d.path().join("missing"), "init.pid").is_empty());
    }
}
