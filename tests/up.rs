//! `drover up` end to end: the real binary, its own supervised nats-server, signals.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::Up;
use drover_store::{Store, StoreConfig};
use drover_testkit::{TestCluster, free_port};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;
use tokio::process::Command;

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_supervises_nats_and_stops_everything_on_sigterm() {
    drover_testkit::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let port_arg = port.to_string();
    let data = dir.path().to_str().unwrap();
    let api_port = free_port().to_string();
    let mut up = Up::spawn(&[
        "--data-dir",
        data,
        "--nats-port",
        &port_arg,
        "--api-port",
        &api_port,
    ]);
    let ready = up.wait_for("drover: ready in").await;
    eprintln!("{ready}");
    // The API answers with the kubeconfig drover announces on its own line.
    let kubeconfig = up.kubeconfig().await;
    assert_eq!(kubeconfig, dir.path().join("kubeconfig").to_str().unwrap());
    let out = std::process::Command::new("kubectl")
        .args(["get", "namespace", "default", "-o", "name"])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "namespace/default",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let url = format!("nats://127.0.0.1:{port}");
    let client = drover_actors::natsd::wait_ready(&url, Duration::from_secs(10))
        .await
        .unwrap();
    // Config promises fsync per write and the buckets exist.
    let conf = std::fs::read_to_string(dir.path().join("nats/nats-server.conf")).unwrap();
    assert!(conf.contains("sync_interval: always"));
    let js = async_nats::jetstream::new(client.clone());
    for kind in bus_schema::KINDS {
        js.get_key_value(kind.bucket())
            .await
            .unwrap_or_else(|e| panic!("bucket {} missing: {e}", kind.bucket()));
    }
    js.get_stream(bus_schema::subjects::EVENTS_STREAM)
        .await
        .expect("events stream");

    let store = Store::new(client.clone(), StoreConfig::default())
        .await
        .unwrap();
    let kind = bus_schema::kinds::by_group_kind("", "Namespace").unwrap();
    store
        .create(kind, json!({"metadata": {"name": "before-crash"}}))
        .await
        .unwrap();

    // kill -9 the nats-server: drover restarts it, on the same data.
    let pid_file = dir.path().join("nats/nats-server.pid");
    let first_pid = read_pid(&pid_file).expect("nats-server pid file");
    kill(Pid::from_raw(first_pid), Signal::SIGKILL).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let second_pid = loop {
        if let Some(pid) = read_pid(&pid_file).filter(|p| *p != first_pid && alive(*p)) {
            break pid;
        }
        assert!(Instant::now() < deadline, "nats-server was not restarted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match store.get(kind, None, "before-crash").await {
            Ok(obj) => {
                assert_eq!(obj["metadata"]["name"], "before-crash");
                break;
            }
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "store not back after restart: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    let status = up.terminate().await;
    assert!(status.success(), "drover exit status {status}");
    // Give the kernel a moment to reap; the server must be gone, not orphaned.
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(second_pid) {
        assert!(
            Instant::now() < deadline,
            "nats-server {second_pid} outlived drover"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_refuses_a_busy_port_with_a_clear_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args([
            "up",
            "--no-agent",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--nats-port",
            &port,
        ])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is in use"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_joins_an_existing_cluster_with_three_replicas() {
    let cluster = TestCluster::start(3).await;
    let dir = tempfile::tempdir().unwrap();
    let urls = cluster.urls();
    let api_port = free_port().to_string();
    let mut up = Up::spawn(&[
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--nats",
        &urls,
        "--api-port",
        &api_port,
    ]);
    up.wait_for("drover: ready in").await;
    let client = cluster.client().await;
    let js = async_nats::jetstream::new(client);
    let mut stream = js
        .get_stream(bus_schema::subjects::kv_stream(
            &bus_schema::kinds::by_group_kind("", "Pod")
                .unwrap()
                .bucket(),
        ))
        .await
        .unwrap();
    assert_eq!(stream.info().await.unwrap().config.num_replicas, 3);
    // drover did not start a nats-server of its own.
    assert!(!dir.path().join("nats").exists());
    assert!(up.terminate().await.success());
}
