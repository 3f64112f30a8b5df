//! `pod-startup`: pod startup latency on one real node, the way the Kubernetes SLO
//! measures it (from the create call to the pod seen Running with every container
//! ready through a watch; the image is local, so no pull time is in it), plus the
//! memory of the node agent process and, separately, of its containerd and shims.
//!
//! Everything runs in fresh network and mount namespaces (the binary re-executes itself
//! under `unshare`, as the end-to-end tests do), so the CNI bridge and pod IPs never
//! touch the host's network. It starts its own nats-server and one `drover agent`
//! process (the release binary, `--drover`), imports a busybox image with `drover image
//! import`, creates `--pods` pods (`--parallel` at a time, each waited for), and stops
//! and cleans up everything by PID. Not a test: it measures and prints markdown.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use drover_bench::servers;
use drover_node::containerd::{self, ContainerdPaths};
use drover_store::{DeleteOptions, Store, StoreConfig, WatchEvent, WatchOptions, object};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// Set in the re-executed child that runs inside the fresh namespaces.
const IN_NETNS: &str = "DROVER_BENCH_IN_FRESH_NETNS";
const IMAGE: &str = "localhost/busybox:latest";
const NODE: &str = "bench-node";
/// Hang guard for any single wait (never a measurement bound).
const GUARD: Duration = Duration::from_secs(300);
/// Pause before reading memory, so the agent's work for the last pod has settled.
const SETTLE: Duration = Duration::from_secs(3);

#[derive(Parser, Debug)]
#[command(about = "Pod startup latency and agent memory on one real drover node")]
struct Args {
    /// Pods to start.
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// Pods in flight at once (each worker creates one and waits for it to run).
    #[arg(long, default_value_t = 1)]
    parallel: usize,
    /// The drover binary to run as the agent.
    #[arg(long, default_value = "target/release/drover")]
    drover: PathBuf,
    /// Also write the results as markdown here.
    #[arg(long)]
    markdown: Option<PathBuf>,
}

fn main() -> Result<ExitCode> {
    let args = Args::parse();
    if std::env::var_os(IN_NETNS).is_none() {
        let status = Command::new("unshare")
            .args(["--net", "--mount", "--propagation", "private", "--"])
            .arg(std::env::current_exe()?)
            .args(std::env::args_os().skip(1))
            .env(IN_NETNS, "1")
            .status()
            .context("running unshare (util-linux; needs root)")?;
        return Ok(if status.success() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    run_cmd("ip", &["link", "set", "lo", "up"])?;
    if !run_cmd("ip", &["-4", "route", "show"])?.trim().is_empty() {
        bail!("the fresh network namespace has routes; refusing to run");
    }
    let drover = std::fs::canonicalize(&args.drover).with_context(|| {
        format!(
            "{} (build it: cargo build --release --bin drover)",
            args.drover.display()
        )
    })?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(bench(&args, &drover))?;
    Ok(ExitCode::SUCCESS)
}

fn run_cmd(cmd: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(cmd).args(args).output()?;
    if !out.status.success() {
        bail!("{cmd} {args:?}: {out:?}");
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The agent process and what its containerd started; killed and purged on drop.
struct NodeGuard {
    paths: ContainerdPaths,
    agent: Option<std::process::Child>,
}

impl Drop for NodeGuard {
    fn drop(&mut self) {
        if let Some(mut a) = self.agent.take() {
            let _ = a.kill();
            let _ = a.wait();
        }
        drover_node::host::purge(&self.paths);
    }
}

/// `VmRSS` of a process, KiB.
fn rss_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// PID of the containerd whose command line names `config`.
fn containerd_pid(config: &Path) -> Option<i32> {
    let needle = config.display().to_string();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid = e.file_name().to_str()?.parse::<i32>().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let text = String::from_utf8_lossy(&cmdline);
        (text.starts_with("containerd\0") || text.contains("/containerd\0"))
            .then_some(())
            .filter(|_| text.contains(&needle))
            .map(|_| pid)
    })
}

/// Memory of the node's processes, KiB.
#[derive(Debug, Clone, Copy)]
struct Memory {
    agent: u64,
    containerd: u64,
    shims: u64,
    shim_count: usize,
}

fn memory(agent_pid: i32, paths: &ContainerdPaths) -> Memory {
    let shims = containerd::find_shims(&paths.socket());
    Memory {
        agent: rss_kib(agent_pid).unwrap_or(0),
        containerd: containerd_pid(&paths.config_file())
            .and_then(rss_kib)
            .unwrap_or(0),
        shims: shims.iter().filter_map(|s| rss_kib(s.pid)).sum(),
        shim_count: shims.len(),
    }
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn running_and_ready(p: &Value) -> bool {
    p.pointer("/status/phase") == Some(&json!("Running"))
        && p.pointer("/status/containerStatuses")
            .and_then(Value::as_array)
            .is_some_and(|cs| !cs.is_empty() && cs.iter().all(|c| c["ready"] == json!(true)))
}

type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<Instant>>>>;

async fn bench(args: &Args, drover: &Path) -> Result<()> {
    let (nats, client) = servers::start_nats().await?;
    let store = Store::new(client, StoreConfig::default()).await?;
    store.ensure_buckets(bus_schema::KINDS).await?;
    // The control plane's pod index: the agent follows its pods through it.
    let _index = drover_store::node_index::PodIndex::start(store.clone()).await?;
    let nats_url = format!(
        "nats://{}",
        store_url(&nats).context("reading the nats-server port")?
    );
    let dir = tempfile::Builder::new()
        .prefix("drover-bench-node-")
        .tempdir()?;
    let data_dir = dir.path().join("node");
    let paths = ContainerdPaths::new(&data_dir);
    let log = dir.path().join("agent.log");
    let log_file = std::fs::File::create(&log)?;
    let agent = Command::new(drover)
        .args([
            "agent",
            "--nats",
            &nats_url,
            "--node-name",
            NODE,
            "--data-dir",
        ])
        .arg(&data_dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
        .context("spawning drover agent")?;
    let agent_pid = agent.id() as i32;
    let mut guard = NodeGuard {
        paths: paths.clone(),
        agent: Some(agent),
    };
    let started = Instant::now();
    while !std::fs::read_to_string(&log)?.contains("drover: node bench-node ready") {
        if started.elapsed() > GUARD {
            bail!("agent not ready: {}", std::fs::read_to_string(&log)?);
        }
        if let Some(a) = guard.agent.as_mut()
            && let Some(status) = a.try_wait()?
        {
            bail!(
                "agent exited ({status}): {}",
                std::fs::read_to_string(&log)?
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let archive = dir.path().join("busybox.tar");
    let spec =
        drover_node::image::busybox_image(IMAGE, Path::new("/bin/busybox"), &["sh", "sleep"])?;
    drover_node::image::write_oci_archive(&spec, &archive)?;
    let out = Command::new(drover)
        .args(["image", "import"])
        .arg(&archive)
        .arg("--data-dir")
        .arg(&data_dir)
        .output()?;
    if !out.status.success() {
        bail!("drover image import: {out:?}");
    }
    tokio::time::sleep(SETTLE).await;
    let idle = memory(agent_pid, &paths);

    // One watch sees every pod; each creator waits on its pod's oneshot.
    let kind = bus_schema::kinds::of::<Pod>();
    let waiters: Waiters = Arc::default();
    let mut watch = store
        .watch(kind, Some("default"), 0, WatchOptions::default())
        .await?;
    let watcher = {
        let waiters = waiters.clone();
        tokio::spawn(async move {
            while let Some(Ok(event)) = watch.next().await {
                let seen = Instant::now();
                if let WatchEvent::Added(p) | WatchEvent::Modified(p) = event
                    && running_and_ready(&p)
                    && let Some(tx) = waiters
                        .lock()
                        .ok()
                        .and_then(|mut w| w.remove(object::name(&p)))
                {
                    let _ = tx.send(seen);
                }
            }
        })
    };
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let wall = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.parallel.max(1) {
        let (store, waiters, latencies, next) = (
            store.clone(),
            waiters.clone(),
            latencies.clone(),
            next.clone(),
        );
        let total = args.pods;
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return Ok::<(), anyhow::Error>(());
                }
                let name = format!("bench-{i:04}");
                let (tx, rx) = oneshot::channel();
                waiters
                    .lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                    .insert(name.clone(), tx);
                let pod = json!({
                    "metadata": {"name": name, "namespace": "default"},
                    "spec": {"nodeName": NODE, "containers": [{
                        "name": "main", "image": IMAGE, "imagePullPolicy": "Never",
                        "command": ["sleep", "3600"]
                    }]}
                });
                let created = Instant::now();
                store.create(kind, pod).await?;
                let seen = tokio::time::timeout(GUARD, rx)
                    .await
                    .with_context(|| format!("{name} never ran"))??;
                latencies
                    .lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                    .push(seen.duration_since(created));
            }
        }));
    }
    for w in workers {
        w.await??;
    }
    let wall = wall.elapsed();
    watcher.abort();
    tokio::time::sleep(SETTLE).await;
    let loaded = memory(agent_pid, &paths);

    let mut sorted = latencies
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    sorted.sort();
    let ms = |d: Duration| format!("{:.0}", d.as_secs_f64() * 1000.0);
    let mib = |k: u64| format!("{:.1}", k as f64 / 1024.0);
    let report = format!(
        "| pods | parallel | p50 ms | p90 ms | p99 ms | max ms | wall s |\n\
         |---:|---:|---:|---:|---:|---:|---:|\n\
         | {} | {} | {} | {} | {} | {} | {:.1} |\n\n\
         | node memory (VmRSS, MiB) | 0 pods | {} pods |\n\
         |---|---:|---:|\n\
         | drover agent process | {} | {} |\n\
         | containerd | {} | {} |\n\
         | shims (sum; count) | {} ({}) | {} ({}) |\n",
        sorted.len(),
        args.parallel,
        ms(percentile(&sorted, 50.0)),
        ms(percentile(&sorted, 90.0)),
        ms(percentile(&sorted, 99.0)),
        ms(sorted.last().copied().unwrap_or_default()),
        wall.as_secs_f64(),
        args.pods,
        mib(idle.agent),
        mib(loaded.agent),
        mib(idle.containerd),
        mib(loaded.containerd),
        mib(idle.shims),
        idle.shim_count,
        mib(loaded.shims),
        loaded.shim_count,
    );
    println!("{report}");
    if let Some(path) = &args.markdown {
        std::fs::write(path, &report)?;
    }

    // Teardown through the agent (grace 0), then a clean agent stop.
    for i in 0..args.pods {
        let name = format!("bench-{i:04}");
        let opts = DeleteOptions {
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        let _ = store.delete(kind, Some("default"), &name, &opts).await;
    }
    let started = Instant::now();
    while !containerd::find_shims(&paths.socket()).is_empty() && started.elapsed() < GUARD {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if let Some(mut a) = guard.agent.take() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(agent_pid),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = a.wait();
    }
    drop(guard);
    nats.stop().await;
    Ok(())
}

/// `host:port` of the bench's nats-server, from the `listen:` line of its config.
fn store_url(nats: &servers::ServerGuard) -> Option<String> {
    let conf = std::fs::read_to_string(nats.dir().join("nats-server.conf")).ok()?;
    conf.lines().find_map(|l| {
        l.trim()
            .strip_prefix("listen:")
            .map(|v| v.trim().trim_matches('"').to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&v, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&v, 100.0), Duration::from_millis(100));
        assert_eq!(percentile(&v[..1], 99.0), Duration::from_millis(1));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }
}
