//! containerd as a supervised child of the node agent, with its own config, root, state
//! and socket under the agent's data dir (so it never meets a system containerd).
//!
//! [`render_config`] is the single source of the containerd configuration (the shape
//! verified in the shared recipes: CRI on, runc with cgroupfs, overlayfs,
//! `restrict_oom_score_adj = true` because runc cannot write a negative `oom_score_adj`
//! on machines without CAP_SYS_RESOURCE). [`Containerd::start`] writes it, spawns
//! `containerd --config <file>` with PR_SET_PDEATHSIG, and waits until the socket
//! accepts connections; [`Containerd::stop`] sends SIGTERM to that PID, then SIGKILL
//! after a grace period.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// The image every pod sandbox runs; imported at agent start (see [`crate::image`]).
pub const SANDBOX_IMAGE: &str = "localhost/pause:latest";
/// The containerd namespace CRI uses; `ctr -n` must name it to see CRI's images.
pub const CRI_NAMESPACE: &str = "k8s.io";
/// Where Debian's containernetworking-plugins put the CNI binaries.
pub const DEFAULT_CNI_BIN_DIR: &str = "/usr/lib/cni";
/// How long [`Containerd::start`] waits for the socket by default.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a stopping containerd gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// Errors of the containerd child management. None changes cluster state.
#[derive(Debug, thiserror::Error)]
pub enum ContainerdError {
    /// The config or directories could not be written, or the process not spawned.
    /// Retryable if the cause was transient (disk full, EAGAIN).
    #[error("starting containerd: {0}")]
    Spawn(#[from] std::io::Error),
    /// containerd exited before its socket was ready. Not retryable without a fix; the
    /// log says why.
    #[error("containerd exited during start ({status}); see {log}")]
    Exited {
        /// The exit status.
        status: String,
        /// The containerd log file.
        log: PathBuf,
    },
    /// The socket did not accept connections in time. Retryable.
    #[error("containerd socket {socket} not ready after {waited:?}; see {log}")]
    NotReady {
        /// The socket that was tried.
        socket: PathBuf,
        /// How long we waited.
        waited: Duration,
        /// The containerd log file.
        log: PathBuf,
    },
}

/// Where one agent-owned containerd keeps everything. All paths derive from `data_dir`.
#[derive(Debug, Clone)]
pub struct ContainerdPaths {
    /// The agent's data dir; containerd's files go under `<data_dir>/containerd`, CNI's
    /// under `<data_dir>/cni`.
    pub data_dir: PathBuf,
    /// Directory of the CNI plugin binaries.
    pub cni_bin_dir: PathBuf,
}

impl ContainerdPaths {
    /// Paths under `data_dir`, CNI binaries from [`DEFAULT_CNI_BIN_DIR`].
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ContainerdPaths {
            data_dir: data_dir.into(),
            cni_bin_dir: DEFAULT_CNI_BIN_DIR.into(),
        }
    }
    fn base(&self) -> PathBuf {
        self.data_dir.join("containerd")
    }
    /// containerd's persistent root (content store, snapshots).
    pub fn root(&self) -> PathBuf {
        self.base().join("root")
    }
    /// containerd's state dir (task bundles, sandbox netns mounts).
    pub fn state(&self) -> PathBuf {
        self.base().join("state")
    }
    /// The gRPC socket (containerd API and CRI).
    pub fn socket(&self) -> PathBuf {
        self.base().join("containerd.sock")
    }
    /// The rendered config file.
    pub fn config_file(&self) -> PathBuf {
        self.base().join("config.toml")
    }
    /// containerd's stdout/stderr.
    pub fn log_file(&self) -> PathBuf {
        self.base().join("containerd.log")
    }
    /// Registry host configs (`certs.d/<host>/hosts.toml`).
    pub fn certs_dir(&self) -> PathBuf {
        self.base().join("certs.d")
    }
    /// The `opt` plugin's directory.
    pub fn opt_dir(&self) -> PathBuf {
        self.base().join("opt")
    }
    /// Where the CNI conflist goes (see [`crate::cni`]).
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.data_dir.join("cni").join("net.d")
    }
    /// host-local IPAM's allocation records.
    pub fn cni_ipam_dir(&self) -> PathBuf {
        self.data_dir.join("cni").join("ipam")
    }
}

/// Renders containerd's TOML config. Paths are written with `{:?}`, which gives a valid
/// TOML basic string for any UTF-8 path.
pub fn render_config(paths: &ContainerdPaths) -> String {
    let q = |p: PathBuf| format!("{:?}", p.display().to_string());
    format!(
        r#"# written by drover; changes are overwritten at start
version = 2
root = {root}
state = {state}

[grpc]
  address = {socket}

[plugins."io.containerd.internal.v1.opt"]
  path = {opt}

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = {cni_bin}
    conf_dir = {cni_conf}
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = {certs}
"#,
        root = q(paths.root()),
        state = q(paths.state()),
        socket = q(paths.socket()),
        opt = q(paths.opt_dir()),
        sandbox = SANDBOX_IMAGE,
        cni_bin = q(paths.cni_bin_dir.clone()),
        cni_conf = q(paths.cni_conf_dir()),
        certs = q(paths.certs_dir()),
    )
}

/// Renders `certs.d/<host>/hosts.toml` that makes containerd pull from `host` over plain
/// HTTP (for local registries, e.g. `127.0.0.1:5000` in tests).
pub fn render_plain_http_hosts(host: &str) -> String {
    let server = format!("http://{host}");
    format!(
        "# written by drover\nserver = {server:?}\n\n[host.{server:?}]\n  capabilities = [\"pull\", \"resolve\"]\n"
    )
}

/// Writes [`render_plain_http_hosts`] for `host` under the config's certs.d; containerd
/// reads it at the next pull, no restart needed.
pub fn allow_plain_http_registry(paths: &ContainerdPaths, host: &str) -> std::io::Result<()> {
    if host.is_empty() || host.contains('/') || host.starts_with('.') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("registry host {host:?} must be <name>[:<port>]"),
        ));
    }
    let dir = paths.certs_dir().join(host);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("hosts.toml"), render_plain_http_hosts(host))
}

/// A running containerd that this agent started. Dropping it kills the process
/// (SIGKILL by PID); call [`Containerd::stop`] for a graceful stop.
pub struct Containerd {
    paths: ContainerdPaths,
    child: Child,
    pid: u32,
}

impl Containerd {
    /// Writes the config, creates the directories, spawns `binary --config <file>` and
    /// waits until the socket accepts connections. The child gets SIGKILL if the thread
    /// that spawned it dies (PR_SET_PDEATHSIG): call this from a long-lived thread.
    pub async fn start(
        binary: &Path,
        paths: ContainerdPaths,
        timeout: Duration,
    ) -> Result<Containerd, ContainerdError> {
        for dir in [
            paths.root(),
            paths.state(),
            paths.opt_dir(),
            paths.certs_dir(),
            paths.cni_conf_dir(),
            paths.cni_ipam_dir(),
        ] {
            std::fs::create_dir_all(dir)?;
        }
        // A stale socket from a killed run would make the readiness check pass at once.
        match std::fs::remove_file(paths.socket()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        std::fs::write(paths.config_file(), render_config(&paths))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(paths.log_file())?;
        let mut cmd = Command::new(binary);
        cmd.arg("--config")
            .arg(paths.config_file())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        drover_actors::natsd::set_parent_death_signal(&mut cmd);
        let child = cmd.spawn()?;
        let pid = child.id().unwrap_or(0);
        let mut containerd = Containerd { paths, child, pid };
        containerd.wait_ready(timeout).await?;
        tracing::info!(message = "containerd ready", pid, socket = %containerd.paths.socket().display());
        Ok(containerd)
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<(), ContainerdError> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Some(status) = self.child.try_wait()? {
                return Err(ContainerdError::Exited {
                    status: status.to_string(),
                    log: self.paths.log_file(),
                });
            }
            if tokio::net::UnixStream::connect(self.paths.socket())
                .await
                .is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(ContainerdError::NotReady {
            socket: self.paths.socket(),
            waited: started.elapsed(),
            log: self.paths.log_file(),
        })
    }

    /// The PID of the containerd process.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its paths (socket, state dir, CNI conf dir).
    pub fn paths(&self) -> &ContainerdPaths {
        &self.paths
    }

    /// SIGKILLs our containerd and reaps it, without an async runtime (for drop guards).
    pub fn kill_now(mut self) {
        if self.child.id().is_some() && self.child.start_kill().is_ok() {
            let pid = nix::unistd::Pid::from_raw(self.pid as i32);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
    }

    /// Sends SIGTERM to our containerd, waits up to `grace`, then SIGKILL. Containers keep
    /// running in their shims: stop them through CRI first if they should go too.
    pub async fn stop(mut self, grace: Duration) {
        if self.child.id().is_some() {
            let pid = nix::unistd::Pid::from_raw(self.pid as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            if tokio::time::timeout(grace, self.child.wait()).await.is_ok() {
                return;
            }
            tracing::warn!(
                message = "containerd did not stop in time; killing it",
                pid = self.pid
            );
        }
        let _ = self.child.kill().await;
    }
}

/// Where containerd-shim-runc-v2 puts its socket (fixed in containerd 1.6, whatever the
/// containerd config says).
pub const SHIM_SOCKET_DIR: &str = "/run/containerd/s";

/// A shim process serving one of our containerd's tasks (a sandbox or container).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shim {
    /// The shim's PID.
    pub pid: i32,
    /// The containerd namespace (`k8s.io` for CRI).
    pub namespace: String,
    /// The task (sandbox) id the shim was started for.
    pub id: String,
}

impl Shim {
    /// The shim's socket: `SHIM_SOCKET_DIR/<sha256(containerd socket/namespace/id)>`, as
    /// containerd 1.6 derives it. A SIGKILLed shim leaves it behind.
    pub fn socket_path(&self, containerd_socket: &Path) -> PathBuf {
        use sha2::Digest;
        let key = format!(
            "{}/{}/{}",
            containerd_socket.display(),
            self.namespace,
            self.id
        );
        let hex: String = sha2::Sha256::digest(key.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Path::new(SHIM_SOCKET_DIR).join(hex)
    }
}

/// Parses a shim's argv (`containerd-shim-runc-v2 -namespace k8s.io -id <id> -address
/// <socket>`): `Some((namespace, id))` if it serves the containerd at `socket`.
pub fn parse_shim_args(argv: &[String], socket: &Path) -> Option<(String, String)> {
    let prog = argv.first()?;
    if !prog.contains("containerd-shim") {
        return None;
    }
    let value = |flag: &str| {
        argv.iter()
            .position(|a| a == flag)
            .and_then(|i| argv.get(i + 1))
            .cloned()
    };
    if value("-address").map(PathBuf::from).as_deref() != Some(socket) {
        return None;
    }
    Some((value("-namespace")?, value("-id")?))
}

/// The shims (and so, the task processes) that the containerd at `socket` started, found
/// by their command lines in /proc. Shims outlive containerd by design; after a crash
/// these are the processes to stop (by PID) before removing containerd's state.
pub fn find_shims(socket: &Path) -> Vec<Shim> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut shims = Vec::new();
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let argv: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if let Some((namespace, id)) = parse_shim_args(&argv, socket) {
            shims.push(Shim { pid, namespace, id });
        }
    }
    shims
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_has_own_paths_and_the_recipe_settings() {
        let cfg = render_config(&ContainerdPaths::new("/data"));
        for want in [
            r#"root = "/data/containerd/root""#,
            r#"state = "/data/containerd/state""#,
            r#"address = "/data/containerd/containerd.sock""#,
            r#"path = "/data/containerd/opt""#,
            r#"sandbox_image = "localhost/pause:latest""#,
            "restrict_oom_score_adj = true",
            "netns_mounts_under_state_dir = true",
            r#"snapshotter = "overlayfs""#,
            r#"runtime_type = "io.containerd.runc.v2""#,
            "SystemdCgroup = false",
            r#"bin_dir = "/usr/lib/cni""#,
            r#"conf_dir = "/data/cni/net.d""#,
            r#"config_path = "/data/containerd/certs.d""#,
        ] {
            assert!(cfg.contains(want), "missing {want:?} in\n{cfg}");
        }
    }

    #[test]
    fn shim_args_and_socket() {
        let argv = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        let sock = Path::new("/tmp/.tmpESD74T/data/containerd/containerd.sock");
        let id = "18d3370302f404e39cd7b300bacd5e622f871f7853b9de71e632df9bf05b5e58";
        let ours = argv(&format!(
            "/usr/bin/containerd-shim-runc-v2 -namespace k8s.io -id {id} -address {}",
            sock.display()
        ));
        let (namespace, got_id) = parse_shim_args(&ours, sock).unwrap();
        assert_eq!((namespace.as_str(), got_id.as_str()), ("k8s.io", id));
        let other = argv(&format!(
            "/usr/bin/containerd-shim-runc-v2 -namespace k8s.io -id {id} -address /run/containerd/containerd.sock"
        ));
        assert_eq!(parse_shim_args(&other, sock), None);
        assert_eq!(parse_shim_args(&argv("sleep 3600"), sock), None);
        assert_eq!(parse_shim_args(&[], sock), None);
        // Checked against a socket containerd 1.6.20 created for this shim.
        let shim = Shim {
            pid: 1,
            namespace,
            id: got_id,
        };
        assert_eq!(
            shim.socket_path(sock),
            Path::new(
                "/run/containerd/s/538b48e1c716a70a38b9fac8ae1b4a69d091c524cddb9cea6bdd3a64f73995d6"
            )
        );
    }

    #[test]
    fn plain_http_registry_hosts() {
        assert_eq!(
            render_plain_http_hosts("127.0.0.1:5000"),
            "# written by drover\nserver = \"http://127.0.0.1:5000\"\n\n[host.\"http://127.0.0.1:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
        );
        let dir = tempfile::tempdir().unwrap();
        let paths = ContainerdPaths::new(dir.path());
        allow_plain_http_registry(&paths, "127.0.0.1:5000").unwrap();
        assert!(
            paths
                .certs_dir()
                .join("127.0.0.1:5000/hosts.toml")
                .is_file()
        );
        for bad in ["", "../x", "a/b", ".."] {
            assert!(allow_plain_http_registry(&paths, bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_containerd_that_exits_at_once_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let paths = ContainerdPaths::new(dir.path());
        let err = Containerd::start(Path::new("/bin/false"), paths, READY_TIMEOUT)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, ContainerdError::Exited { .. }), "{err}");
        let err = Containerd::start(
            &dir.path().join("no-such-binary"),
            ContainerdPaths::new(dir.path()),
            READY_TIMEOUT,
        )
        .await
        .err()
        .unwrap();
        assert!(matches!(err, ContainerdError::Spawn(_)), "{err}");
    }

    #[test]
    fn paths_with_quotes_stay_valid_toml_strings() {
        let cfg = render_config(&ContainerdPaths::new("/d\"x"));
        assert!(cfg.contains(r#"root = "/d\"x/containerd/root""#), "{cfg}");
    }
}
