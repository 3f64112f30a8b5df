//! `drover agent` as a real process against a real store (nats-server), inside fresh
//! namespaces: it runs a pod, survives `kill -9` without touching the pod (containerd
//! dies with it, the shims and container processes do not), and the restarted agent
//! re-adopts the pod: same container IDs, restartCount 0, the same container process.
//! Also `drover image import` into the agent's containerd.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use drover_node::containerd::ContainerdPaths;
use drover_store::{DeleteOptions, Store, StoreConfig, WatchEvent, WatchOptions, object};
use drover_testkit::TestNats;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

const GUARD: Duration = Duration::from_secs(90);
const IMAGE: &str = "localhost/busybox:latest";

#[test]
fn killed_agent_restarts_and_re_adopts_its_pod() {
    if !drover_testkit::netns::enter("killed_agent_restarts_and_re_adopts_its_pod") {
        return;
    }
    drover_testkit::init_tracing();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(scenario());
}

/// Kills the agent (by PID) and everything its containerd started, on any exit; shows
/// the agents' log when the test fails.
struct Guard {
    paths: ContainerdPaths,
    agent: Option<Child>,
    log: PathBuf,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- drover agent log ---\n{log}");
        }
        if let Some(mut a) = self.agent.take() {
            let _ = a.kill();
            let _ = a.wait();
        }
        drover_node::host::purge(&self.paths);
    }
}

fn spawn_agent(nats: &str, data_dir: &Path, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_drover"))
        .args([
            "agent",
            "--nats",
            nats,
            "--node-name",
            "node-a",
            // The programs would attach to the host's cgroup2 root, outside the test.
            "--no-service-proxy",
            "--data-dir",
        ])
        .arg(data_dir)
        .env("RUST_LOG", "info,async_nats=warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawning drover agent")
}

/// Waits until the agent's log has its `ready` line for the `n`th time.
async fn wait_ready(log: &Path, n: usize, agent: &mut Child) {
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.matches("drover: node node-a ready").count() >= n {
            return;
        }
        if let Some(status) = agent.try_wait().unwrap() {
            panic!("drover agent exited ({status}):\n{text}");
        }
        assert!(started.elapsed() < GUARD, "agent not ready:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_pod(store: &Store, pred: impl Fn(&Value) -> bool) -> Value {
    let kind = bus_schema::kinds::of::<Pod>();
    let mut watch = store
        .watch(kind, Some("default"), 0, WatchOptions::default())
        .await
        .unwrap();
    tokio::time::timeout(GUARD, async {
        while let Some(event) = watch.next().await {
            match event.unwrap() {
                WatchEvent::Added(p) | WatchEvent::Modified(p)
                    if object::name(&p) == "keeper" && pred(&p) =>
                {
                    return p;
                }
                _ => {}
            }
        }
        panic!("watch ended")
    })
    .await
    .expect("pod condition not reached")
}

fn running_with_containers(p: &Value) -> bool {
    p.pointer("/status/phase") == Some(&json!("Running"))
        && p.pointer("/status/containerStatuses/0/ready") == Some(&json!(true))
}

fn container_id(p: &Value) -> String {
    p.pointer("/status/containerStatuses/0/containerID")
        .and_then(Value::as_str)
        .unwrap()
        .strip_prefix("containerd://")
        .unwrap()
        .to_string()
}

/// The container's init process as containerd's state dir records it, with its start
/// time (field 22 of /proc/<pid>/stat) to tell a restarted process from the same one.
fn container_process(paths: &ContainerdPaths, id: &str) -> (i32, u64) {
    let pid_file: PathBuf = paths
        .state()
        .join("io.containerd.runtime.v2.task/k8s.io")
        .join(id)
        .join("init.pid");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name may hold spaces; fields after the last ')' are fixed.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let start: u64 = after.split(' ').nth(19).unwrap().parse().unwrap();
    (pid, start)
}

/// PIDs of processes whose command line mentions `needle` (our containerd's config).
fn pids_mentioning(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            out.push(pid);
        }
    }
    out
}

async fn scenario() {
    let nats = TestNats::start().await;
    let store = Store::new(nats.client().await, StoreConfig::default())
        .await
        .unwrap();
    // The control plane's pod index, through which the agent follows its pods.
    let _index = drover_store::node_index::PodIndex::start(store.clone())
        .await
        .unwrap();
    let dir = tempfile::Builder::new()
        .prefix("drover-agent-")
        .tempdir()
        .unwrap();
    let data_dir = dir.path().join("node");
    let log = dir.path().join("agent.log");
    let paths = ContainerdPaths::new(&data_dir);
    let mut guard = Guard {
        paths: paths.clone(),
        agent: Some(spawn_agent(&nats.url(), &data_dir, &log)),
        log: log.clone(),
    };
    wait_ready(&log, 1, guard.agent.as_mut().unwrap()).await;

    // The test image, through `drover image import` into the agent's containerd.
    let archive = dir.path().join("busybox.tar");
    let spec =
        drover_node::image::busybox_image(IMAGE, Path::new("/bin/busybox"), &["sh", "sleep"])
            .unwrap();
    drover_node::image::write_oci_archive(&spec, &archive).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(["image", "import"])
        .arg(&archive)
        .arg("--data-dir")
        .arg(&data_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "drover image import: {out:?}");

    let kind = bus_schema::kinds::of::<Pod>();
    let pod = json!({
        "metadata": {"name": "keeper", "namespace": "default"},
        "spec": {"nodeName": "node-a", "containers": [
            {"name": "main", "image": IMAGE, "imagePullPolicy": "Never",
             "command": ["sleep", "3600"]}
        ]}
    });
    store.create(kind, pod).await.unwrap();
    let before = wait_pod(&store, running_with_containers).await;
    let id = container_id(&before);
    let pod_ip = before.pointer("/status/podIP").cloned();
    assert!(pod_ip.is_some());
    let process = container_process(&paths, &id);
    let config_file = paths.config_file().display().to_string();
    assert_eq!(pids_mentioning(&config_file).len(), 1, "one containerd");

    // kill -9: containerd goes with the agent, the container does not.
    let mut agent = guard.agent.take().unwrap();
    kill(Pid::from_raw(agent.id() as i32), Signal::SIGKILL).unwrap();
    agent.wait().unwrap();
    let started = Instant::now();
    while !pids_mentioning(&config_file).is_empty() {
        assert!(started.elapsed() < GUARD, "containerd outlived the agent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        kill(Pid::from_raw(process.0), None).is_ok(),
        "container died"
    );

    // Wipe the status so only the new agent can make it Running again.
    let mut pod = store.get(kind, Some("default"), "keeper").await.unwrap();
    pod.as_object_mut().unwrap().remove("status");
    let wiped = store.update(kind, pod).await.unwrap();
    let wiped_rv: u64 = object::meta_str(&wiped, "resourceVersion")
        .unwrap()
        .parse()
        .unwrap();

    guard.agent = Some(spawn_agent(&nats.url(), &data_dir, &log));
    wait_ready(&log, 2, guard.agent.as_mut().unwrap()).await;
    let after = wait_pod(&store, |p| {
        object::meta_str(p, "resourceVersion")
            .and_then(|rv| rv.parse::<u64>().ok())
            .is_some_and(|rv| rv > wiped_rv)
            && running_with_containers(p)
    })
    .await;
    assert_eq!(container_id(&after), id, "same container");
    assert_eq!(
        after.pointer("/status/containerStatuses/0/restartCount"),
        Some(&json!(0))
    );
    assert_eq!(after.pointer("/status/podIP").cloned(), pod_ip);
    assert_eq!(
        container_process(&paths, &id),
        process,
        "the container's process was never restarted"
    );

    // Clean up through the agent, then stop it with SIGTERM (a clean exit).
    store
        .delete(
            kind,
            Some("default"),
            "keeper",
            &DeleteOptions {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let started = Instant::now();
    while Path::new(&format!("/proc/{}", process.0)).exists() {
        assert!(
            started.elapsed() < GUARD,
            "the deleted pod's process lives on"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut agent = guard.agent.take().unwrap();
    kill(Pid::from_raw(agent.id() as i32), Signal::SIGTERM).unwrap();
    let status = agent.wait().unwrap();
    assert!(status.success(), "agent exit status {status}");
    assert!(
        pids_mentioning(&config_file).is_empty(),
        "containerd stopped"
    );
}
