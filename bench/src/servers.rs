//! The servers under test (nats-server, etcd), each started by the bench on 127.0.0.1
//! with a fresh temp dir and stopped by PID: on the normal path with SIGTERM and a grace
//! period, on error or panic by the guard's `Drop` (SIGKILL); and the bench's own round
//! processes. Nothing here looks for or signals any process the bench did not start.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use drover_actors::natsd::{self, NatsServerConfig};
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// How long a server gets to answer its first request.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a stopping server gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A child process killed by PID when dropped, with its temp dir removed after it.
pub struct ServerGuard {
    name: &'static str,
    child: Option<Child>,
    // Declared after `child` so the directory outlives the process while dropping.
    dir: tempfile::TempDir,
}

impl ServerGuard {
    /// PID of the server process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// The data directory (logs live there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the server: SIGTERM, then SIGKILL after [`STOP_GRACE`].
    pub async fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            natsd::stop_child(&mut child, STOP_GRACE).await;
        }
    }
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            // SIGKILL to our own child's PID; tokio reaps it in the background.
            if child.start_kill().is_ok() {
                eprintln!("bench: killed {} (pid {:?})", self.name, child.id());
            }
        }
    }
}

/// A round's process (a child run of the bench binary). Dropped while it runs (the
/// parent failed or was interrupted), it gets SIGTERM rather than SIGKILL, so it can
/// still stop the servers it started.
pub struct RoundProcess(pub tokio::process::Child);

impl Drop for RoundProcess {
    fn drop(&mut self) {
        // `id()` is `None` once the process has been waited for.
        if let Some(pid) = self.0.id().and_then(|pid| i32::try_from(pid).ok()) {
            let _ = signal::kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough on one machine).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts drover's nats-server exactly as `drover up` configures it (JetStream,
/// `sync_interval: always`), single server, and returns it with a ready client.
pub async fn start_nats() -> Result<(ServerGuard, async_nats::Client)> {
    let binary = natsd::find_binary(None)?;
    let dir = tempfile::Builder::new()
        .prefix("drover-bench-nats-")
        .tempdir()?;
    let config = NatsServerConfig::single(binary, dir.path().to_path_buf(), free_port()?);
    let child = natsd::spawn(&config)?;
    let guard = ServerGuard {
        name: "nats-server",
        child: Some(child),
        dir,
    };
    let client = natsd::wait_ready(&config.url(), READY_TIMEOUT)
        .await
        .with_context(|| format!("see {}", config.log_path().display()))?;
    Ok((guard, client))
}

/// Starts a single-member etcd with its default durability (WAL fsync per commit) and
/// returns it with a ready client and the client URL.
pub async fn start_etcd() -> Result<(ServerGuard, etcd_client::Client, String)> {
    let binary = which("etcd").context("etcd not on PATH; run scripts/bench-store")?;
    let dir = tempfile::Builder::new()
        .prefix("drover-bench-etcd-")
        .tempdir()?;
    let client_url = format!("http://127.0.0.1:{}", free_port()?);
    let peer_url = format!("http://127.0.0.1:{}", free_port()?);
    let log = std::fs::File::create(dir.path().join("etcd.log"))?;
    // setpriv (util-linux) makes etcd get SIGKILL if the bench dies without running its
    // guards (e.g. `kill -9`), as nats-server gets from natsd::spawn; it execs etcd, so
    // the PID is etcd's.
    let mut cmd = match which("setpriv") {
        Some(setpriv) => {
            let mut cmd = Command::new(setpriv);
            cmd.args(["--pdeathsig", "KILL", "--"]).arg(binary);
            cmd
        }
        None => Command::new(binary),
    };
    let child = cmd
        .arg("--name")
        .arg("bench")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--listen-client-urls")
        .arg(&client_url)
        .arg("--advertise-client-urls")
        .arg(&client_url)
        .arg("--listen-peer-urls")
        .arg(&peer_url)
        .arg("--initial-advertise-peer-urls")
        .arg(&peer_url)
        .arg("--initial-cluster")
        .arg(format!("bench={peer_url}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("spawning etcd")?;
    let guard = ServerGuard {
        name: "etcd",
        child: Some(child),
        dir,
    };
    let client = wait_etcd(&client_url)
        .await
        .with_context(|| format!("see {}", guard.dir().join("etcd.log").display()))?;
    Ok((guard, client, client_url))
}

async fn wait_etcd(url: &str) -> Result<etcd_client::Client> {
    let started = Instant::now();
    let mut last_error = String::from("never tried");
    while started.elapsed() < READY_TIMEOUT {
        let options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_millis(500))
            .with_timeout(Duration::from_secs(60));
        match etcd_client::Client::connect([url], Some(options)).await {
            Ok(mut client) => match client.status().await {
                Ok(_) => return Ok(client),
                Err(e) => last_error = e.to_string(),
            },
            Err(e) => last_error = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("etcd at {url} not ready after {READY_TIMEOUT:?}: {last_error}")
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Clock ticks per second of the CPU times in `/proc/<pid>/stat` (Linux's USER_HZ, 100
/// on every architecture drover runs on).
const USER_HZ: u64 = 100;

/// CPU time (user + system) this (the bench) process has used so far.
pub fn own_cpu_time() -> Option<Duration> {
    cpu_time_of("/proc/self/stat")
}

/// CPU time (user + system) process `pid` has used so far.
pub fn cpu_time_of_pid(pid: u32) -> Option<Duration> {
    cpu_time_of(&format!("/proc/{pid}/stat"))
}

/// CPU time (user + system) used so far by this process's threads whose name starts with
/// `prefix` (thread names are cut to 15 bytes by Linux). actix-web's worker threads are
/// named `actix-server worker N`, so `"actix"` gives the gateway's request handling.
pub fn own_threads_cpu_time(prefix: &str) -> Option<Duration> {
    let mut ticks = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let Ok(stat) = std::fs::read_to_string(task.ok()?.path().join("stat")) else {
            continue; // the thread ended meanwhile
        };
        let name = stat
            .split_once('(')
            .and_then(|(_, rest)| rest.rsplit_once(')'))
            .map(|(name, _)| name);
        if name.is_some_and(|n| n.starts_with(prefix)) {
            ticks += parse_cpu_ticks(&stat)?;
        }
    }
    Some(Duration::from_millis(ticks * 1000 / USER_HZ))
}

fn cpu_time_of(stat_path: &str) -> Option<Duration> {
    let text = std::fs::read_to_string(stat_path).ok()?;
    parse_cpu_ticks(&text).map(|ticks| Duration::from_millis(ticks * 1000 / USER_HZ))
}

/// utime + stime from a `/proc/<pid>/stat` line (fields 14 and 15; the command name in
/// field 2 may contain spaces and parentheses, so counting starts after its last `)`).
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Resident memory of this (the bench) process, in bytes.
pub fn own_rss_bytes() -> Option<u64> {
    rss_bytes_of("/proc/self/status")
}

/// Resident memory of process `pid`, in bytes.
pub fn rss_bytes_of_pid(pid: u32) -> Option<u64> {
    rss_bytes_of(&format!("/proc/{pid}/status"))
}

fn rss_bytes_of(status_path: &str) -> Option<u64> {
    let text = std::fs::read_to_string(status_path).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_read_after_the_command_name() {
        let stat = "4242 (nats (x) y) S 1 4242 4242 0 -1 4194560 2637 0 0 0 150 25 0 0 20 0 12";
        assert_eq!(parse_cpu_ticks(stat), Some(175));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }
}
