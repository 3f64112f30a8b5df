//! The shared harness of the binary's end-to-end tests: `drover up` as a child process on
//! free ports with a temp data dir, its output lines, and a SIGTERM to stop it.
#![allow(dead_code)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use drover_testkit::free_port;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub struct Up {
    child: Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    /// Every line seen so far (stdout and stderr interleave in any order).
    seen: Vec<String>,
}

impl Up {
    /// `drover up` without a node agent: a node agent would create a bridge in the host's
    /// network namespace, so only tests inside fresh namespaces run one.
    pub fn spawn(args: &[&str]) -> Up {
        let mut all = vec!["--no-agent"];
        all.extend_from_slice(args);
        Up::spawn_with_agent(&all)
    }

    /// `drover up` with its node agent (containerd, CNI): only inside fresh namespaces
    /// (`drover_testkit::netns::enter`).
    pub fn spawn_with_agent(args: &[&str]) -> Up {
        // The proxy's programs would attach to the host's cgroup2 root, outside the
        // test's namespaces.
        let mut all = vec!["up", "--no-service-proxy"];
        all.extend_from_slice(args);
        Up::spawn_drover(&all)
    }

    /// `drover <args>` as a child process (any subcommand), its output collected like
    /// `drover up`'s.
    pub fn spawn_drover(args: &[&str]) -> Up {
        Up::spawn_command(Command::new(env!("CARGO_BIN_EXE_drover")), args, "warn")
    }

    /// `drover <args>` inside a test fabric node's network namespace, logging at
    /// `rust_log`.
    pub fn spawn_drover_in(
        node: &drover_testkit::fabric::FabricNode,
        args: &[&str],
        rust_log: &str,
    ) -> Up {
        Up::spawn_command(
            node.tokio_command(env!("CARGO_BIN_EXE_drover")),
            args,
            rust_log,
        )
    }

    fn spawn_command(mut command: Command, args: &[&str], rust_log: &str) -> Up {
        let mut child = command
            .args(args)
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawning drover");
        let stderr = child.stderr.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        let tx_out = tx.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                eprintln!("[drover stdout] {line}");
                let _ = tx_out.send(line);
            }
        });
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                eprintln!("[drover] {line}");
                let _ = tx.send(line);
            }
        });
        Up {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    pub async fn wait_for(&mut self, needle: &str) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Ok(None) => panic!(
                    "drover exited before printing {needle:?}: {:?}",
                    self.child.try_wait()
                ),
                Err(_) => panic!("timed out waiting for {needle:?}"),
            }
        }
    }

    /// Waits for the `export KUBECONFIG=<path>` line `drover up` prints and returns the
    /// path.
    pub async fn kubeconfig(&mut self) -> String {
        const EXPORT: &str = "export KUBECONFIG=";
        let line = self.wait_for(EXPORT).await;
        line.trim()
            .strip_prefix(EXPORT)
            .unwrap_or_else(|| panic!("not an {EXPORT}<path> line: {line:?}"))
            .to_string()
    }

    /// The process's PID.
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id().expect("process still running") as i32)
    }

    /// SIGKILL of the process and all its descendants (a process tree's `kill -9`): all are
    /// stopped first so none is reparented away meanwhile, then killed.
    pub async fn kill9_tree(mut self) {
        let root = self.child.id().expect("process still running") as i32;
        let mut tree = vec![root];
        let mut i = 0;
        while i < tree.len() {
            let parent = tree[i];
            tree.extend(children_of(parent));
            for pid in &tree[i..] {
                let _ = kill(Pid::from_raw(*pid), Signal::SIGSTOP);
            }
            i += 1;
        }
        for pid in &tree {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        let _ = self.child.wait().await;
    }

    /// SIGKILL, and waits for the process to be gone.
    pub async fn kill9(mut self) {
        self.child.start_kill().unwrap();
        let _ = self.child.wait().await;
    }

    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = Pid::from_raw(self.child.id().unwrap() as i32);
        kill(pid, Signal::SIGTERM).unwrap();
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("drover stops after SIGTERM")
            .unwrap()
    }
}

/// A running `drover up` with its own data dir and ports, and the kubeconfig it wrote.
pub struct Running {
    pub up: Up,
    pub dir: tempfile::TempDir,
    pub kubeconfig: String,
    /// The URL of the nats-server this `drover up` started.
    pub nats_url: String,
}

impl Running {
    /// Starts `drover up` on free ports and waits for its `export KUBECONFIG=` line.
    pub async fn start() -> Running {
        Running::start_with(&[]).await
    }

    /// [`Running::start`] with more `drover up` flags.
    pub async fn start_with(extra: &[&str]) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let nats_port = free_port().to_string();
        let api_port = free_port().to_string();
        let mut args = vec![
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--nats-port",
            &nats_port,
            "--api-port",
            &api_port,
        ];
        args.extend_from_slice(extra);
        let mut up = Up::spawn(&args);
        let kubeconfig = up.kubeconfig().await;
        Running {
            up,
            dir,
            kubeconfig,
            nats_url: format!("nats://127.0.0.1:{nats_port}"),
        }
    }

    /// Stops drover with SIGTERM (it stops its nats-server) and checks it exited cleanly.
    pub async fn stop(self) {
        let status = self.up.terminate().await;
        assert!(status.success(), "drover exit status {status}");
    }
}

/// The PIDs whose parent is `parent` (from /proc).
fn children_of(parent: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may contain spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

/// Polls `f` every 200 ms until it returns `Some`, or panics after `guard` (a failure
/// guard, never a timing assertion).
pub async fn poll_until<T>(what: &str, guard: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(started.elapsed() < guard, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Writes a busybox image `image` with `applets` as an OCI archive in `dir`; its path.
pub fn busybox_archive(dir: &std::path::Path, image: &str, applets: &[&str]) -> std::path::PathBuf {
    let archive = dir.join("busybox.tar");
    let spec =
        drover_node::image::busybox_image(image, std::path::Path::new("/bin/busybox"), applets)
            .expect("busybox-static at /bin/busybox (scripts/setup)");
    drover_node::image::write_oci_archive(&spec, &archive).unwrap();
    archive
}

/// `drover image import <archive> --data-dir <node data>`: into that node's containerd.
pub fn import_image(archive: &std::path::Path, node_data: &std::path::Path) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(["image", "import"])
        .arg(archive)
        .arg("--data-dir")
        .arg(node_data)
        .output()
        .unwrap();
    assert!(out.status.success(), "drover image import: {out:?}");
}

/// Runs kubectl with `kubeconfig`: (exit code, stdout, stderr).
pub fn kubectl(kubeconfig: &str, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .stdin(Stdio::null())
        .output()
        .expect("kubectl on PATH (scripts/setup)");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs kubectl and returns its stdout; panics unless it succeeds.
pub fn ok(kubeconfig: &str, args: &[&str]) -> String {
    let (code, out, err) = kubectl(kubeconfig, args);
    assert_eq!(code, 0, "kubectl {args:?}: {out}\n{err}");
    out
}

/// Kills what a node's containerd started (by PID) and unmounts what it left under its
/// data dir when dropped, whatever happens (hold it for the node's lifetime).
pub struct Purge(pub drover_node::containerd::ContainerdPaths);

impl Drop for Purge {
    fn drop(&mut self) {
        drover_node::host::purge(&self.0);
    }
}
