//! The PodActor's kubelet behaviours on real containers (containerd, runc, CNI, busybox),
//! against a real store (nats-server): the intent of `pod_lifecycle.rs` (hollow runtime)
//! ported to real processes. One containerd serves every case (CI time); each case is a
//! sequential step that deletes its pods before the next one starts:
//!
//! 1. init containers run in order before the main container;
//! 2. a sidecar runs alongside the main container;
//! 3. a failing liveness exec probe restarts the container, with an `Unhealthy` event;
//! 4. a readiness exec probe flips readiness both ways;
//! 5. graceful termination: the SIGTERM handler runs; a container ignoring SIGTERM is
//!    killed after the grace period and the pod goes away;
//! 6. memory limits reach the container's cgroup, and exceeding one is `OOMKilled`;
//! 7. configMap and secret volumes show their data inside the container;
//! 8. an unpullable image gives `ErrImagePull` then `ImagePullBackOff`, while other pods
//!    keep being served.
//!
//! Runs in fresh namespaces (see `common`); nothing leaves the test's netns. Deadlines
//! are failure guards only, never timing assertions.

mod common;

use std::time::Duration;

use common::{BUSYBOX_IMAGE, GUARD, TestNode, block_on, store_with_index};
use drover_node::runtime::ContainerId;
use drover_node::{NodeAgent, Runtime};
use drover_store::{DeleteOptions, ListOptions, Store, Watch, WatchEvent, WatchOptions, object};
use drover_testkit::TestNats;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod, Secret};
use serde_json::{Value, json};

/// A shell loop that exits 0 on SIGTERM (busybox `sleep` as PID 1 would ignore it).
const SLEEP_LOOP: &str = "trap 'exit 0' TERM; while true; do sleep 1; done";

#[test]
fn pod_actor_on_containerd() {
    if !drover_testkit::netns::enter("pod_actor_on_containerd") {
        return;
    }
    block_on(scenario());
}

struct Env {
    node: TestNode,
    store: Store,
}

fn pod_kind() -> &'static bus_schema::KindInfo {
    bus_schema::kinds::of::<Pod>()
}

fn status_of<'a>(pod: &'a Value, list: &str, name: &str) -> &'a Value {
    pod["status"][list]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name))
        .unwrap_or(&Value::Null)
}

fn condition(pod: &Value, type_: &str) -> String {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
        .to_string()
}

fn sleeper(name: &str) -> Value {
    json!({"name": name, "image": BUSYBOX_IMAGE, "command": ["sh", "-c", SLEEP_LOOP]})
}

impl Env {
    async fn create(&self, mut pod: Value) -> Value {
        pod["apiVersion"] = json!("v1");
        pod["kind"] = json!("Pod");
        pod["metadata"]["namespace"] = json!("default");
        pod["spec"]["nodeName"] = json!("node-a");
        // `:latest` defaults to `Always`, and there is no registry to pull from: the
        // image was imported.
        for list in ["initContainers", "containers"] {
            for c in pod["spec"][list].as_array_mut().into_iter().flatten() {
                if c["image"] == BUSYBOX_IMAGE && c.get("imagePullPolicy").is_none() {
                    c["imagePullPolicy"] = json!("IfNotPresent");
                }
            }
        }
        if pod["spec"].get("terminationGracePeriodSeconds").is_none() {
            pod["spec"]["terminationGracePeriodSeconds"] = json!(2);
        }
        self.store.create(pod_kind(), pod).await.unwrap()
    }

    async fn watch(&self) -> Watch {
        self.store
            .watch(pod_kind(), Some("default"), 0, WatchOptions::default())
            .await
            .unwrap()
    }

    /// Waits on `watch` for pod `name` to satisfy `pred`; panics with `what` and the last
    /// state seen after the guard.
    async fn wait_on(
        watch: &mut Watch,
        name: &str,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let mut last = Value::Null;
        let found = tokio::time::timeout(GUARD, async {
            while let Some(event) = watch.next().await {
                if let WatchEvent::Added(o) | WatchEvent::Modified(o) = event.unwrap()
                    && object::name(&o) == name
                {
                    if pred(&o) {
                        return Some(o);
                    }
                    last = o;
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(p)) => p,
            Ok(None) => panic!("{what}: the watch ended; last seen: {last:#}"),
            Err(_) => panic!("{what}: pod {name} never got there; last seen: {last:#}"),
        }
    }

    /// Waits (from the pod's current state on) for pod `name` to satisfy `pred`.
    async fn wait_pod(&self, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let mut watch = self.watch().await;
        Self::wait_on(&mut watch, name, what, pred).await
    }

    async fn delete(&self, name: &str, grace: i64) {
        self.store
            .delete(
                pod_kind(),
                Some("default"),
                name,
                &DeleteOptions {
                    grace_period_seconds: Some(grace),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }

    async fn wait_gone(&self, name: &str) {
        let started = tokio::time::Instant::now();
        while self
            .store
            .get(pod_kind(), Some("default"), name)
            .await
            .is_ok()
        {
            assert!(
                started.elapsed() < GUARD,
                "pod {name} was not removed from the store"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Deletes the pod and waits until it is gone from the store and the runtime.
    async fn remove(&self, name: &str) {
        self.delete(name, 2).await;
        self.wait_gone(name).await;
        let rt = self.node.runtime.clone();
        let started = tokio::time::Instant::now();
        loop {
            let sandboxes = rt.list_sandboxes().await.unwrap();
            if sandboxes.iter().all(|s| s.config.name != name) {
                break;
            }
            assert!(
                started.elapsed() < GUARD,
                "pod {name}'s sandbox is still in the runtime: {sandboxes:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn events(&self, name: &str) -> Vec<Value> {
        let (list, _) = self
            .store
            .api::<Event>()
            .list(Some("default"), &ListOptions::default())
            .await
            .unwrap();
        list.into_iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .filter(|e| e["involvedObject"]["name"] == name)
            .collect()
    }

    async fn wait_event(&self, name: &str, reason: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let started = tokio::time::Instant::now();
        loop {
            let events = self.events(name).await;
            if let Some(e) = events.iter().find(|e| e["reason"] == reason && pred(e)) {
                return e.clone();
            }
            assert!(
                started.elapsed() < GUARD,
                "no matching {reason} event for pod {name}; events: {events:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `cmd` in the pod's container `container` (from its status' containerID).
    async fn exec(&self, pod: &Value, list: &str, container: &str, cmd: &[&str]) -> (i32, String) {
        let id = status_of(pod, list, container)["containerID"]
            .as_str()
            .and_then(|s| s.strip_prefix("containerd://"))
            .unwrap_or_else(|| panic!("no containerID for {container}: {pod:#}"))
            .to_string();
        let cmd: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        let out = self
            .node
            .runtime
            .exec_sync(&ContainerId(id), &cmd, Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("exec {cmd:?} in {container}: {e}"));
        (
            out.exit_code,
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }
}

fn running(pod: &Value, list: &str, name: &str) -> bool {
    status_of(pod, list, name)["state"]["running"].is_object()
}

async fn scenario() {
    let node = TestNode::start().await;
    node.import_busybox().await;
    let nats = TestNats::start().await;
    let (store, _index) = store_with_index(&nats).await;
    let mut config = node.agent_config("node-a");
    config.restart_backoff_base = Duration::from_secs(1);
    config.restart_backoff_max = Duration::from_secs(4);
    config.pod_sync_interval = Duration::from_millis(500);
    let agent = NodeAgent::start(store.clone(), node.dyn_runtime(), config)
        .await
        .unwrap();
    let env = Env { node, store };

    init_containers_in_order(&env).await;
    sidecar_runs_alongside(&env).await;
    liveness_failure_restarts(&env).await;
    readiness_flips(&env).await;
    graceful_termination(&env).await;
    memory_limit_and_oom(&env).await;
    configmap_and_secret_volumes(&env).await;
    unpullable_image(&env).await;

    assert!(
        env.node.runtime.list_sandboxes().await.unwrap().is_empty(),
        "every case cleaned up its sandboxes"
    );
    agent.stop().await;
    let Env { node, .. } = env;
    node.host.unwrap().stop().await;
}

/// 1. Init containers run in order, each to completion, before the main container.
async fn init_containers_in_order(env: &Env) {
    eprintln!("case 1: init containers in order");
    env.create(json!({
        "metadata": {"name": "ordered"},
        "spec": {
            "volumes": [{"name": "work", "emptyDir": {}}],
            "initContainers": [
                {"name": "init-1", "image": BUSYBOX_IMAGE, "command": ["sh", "-c", "echo 1 >> /work/order"],
                 "volumeMounts": [{"name": "work", "mountPath": "/work"}]},
                {"name": "init-2", "image": BUSYBOX_IMAGE, "command": ["sh", "-c", "echo 2 >> /work/order"],
                 "volumeMounts": [{"name": "work", "mountPath": "/work"}]}
            ],
            "containers": [{"name": "main", "image": BUSYBOX_IMAGE, "command": ["sh", "-c", SLEEP_LOOP],
                            "volumeMounts": [{"name": "work", "mountPath": "/work"}]}]
        }
    }))
    .await;
    let pod = env
        .wait_pod("ordered", "case 1: Running and Ready", |p| {
            p.pointer("/status/phase") == Some(&json!("Running")) && condition(p, "Ready") == "True"
        })
        .await;
    assert_eq!(condition(&pod, "Initialized"), "True", "case 1: {pod:#}");
    for init in ["init-1", "init-2"] {
        assert_eq!(
            status_of(&pod, "initContainerStatuses", init)["state"]["terminated"]["reason"],
            "Completed",
            "case 1: {init} completed: {pod:#}"
        );
    }
    let (code, order) = env
        .exec(&pod, "containerStatuses", "main", &["cat", "/work/order"])
        .await;
    assert_eq!(
        (code, order.as_str()),
        (0, "1\n2\n"),
        "case 1: the inits ran in order"
    );
    env.remove("ordered").await;
}

/// 2. A sidecar (init container with `restartPolicy: Always`) runs alongside main.
async fn sidecar_runs_alongside(env: &Env) {
    eprintln!("case 2: sidecar");
    let mut proxy = sleeper("proxy");
    proxy["restartPolicy"] = json!("Always");
    env.create(json!({
        "metadata": {"name": "with-sidecar"},
        "spec": {"initContainers": [proxy], "containers": [sleeper("main")]}
    }))
    .await;
    let pod = env
        .wait_pod("with-sidecar", "case 2: both running and Ready", |p| {
            running(p, "initContainerStatuses", "proxy")
                && running(p, "containerStatuses", "main")
                && condition(p, "Ready") == "True"
        })
        .await;
    assert_eq!(
        status_of(&pod, "initContainerStatuses", "proxy")["ready"],
        true,
        "case 2: sidecar ready: {pod:#}"
    );
    assert_eq!(
        status_of(&pod, "containerStatuses", "main")["ready"],
        true,
        "case 2: main ready: {pod:#}"
    );
    let (code, _) = env
        .exec(&pod, "initContainerStatuses", "proxy", &["true"])
        .await;
    assert_eq!(code, 0, "case 2: the sidecar's process is alive");
    env.remove("with-sidecar").await;
}

/// 3. A failing liveness exec probe restarts the container and records `Unhealthy`.
async fn liveness_failure_restarts(env: &Env) {
    eprintln!("case 3: liveness");
    let mut web = sleeper("web");
    web["livenessProbe"] = json!({"exec": {"command": ["test", "-e", "/tmp/healthy"]},
                                  "periodSeconds": 1, "failureThreshold": 1});
    env.create(json!({"metadata": {"name": "sick"}, "spec": {"containers": [web]}}))
        .await;
    let pod = env
        .wait_pod("sick", "case 3: restarted by liveness", |p| {
            status_of(p, "containerStatuses", "web")["restartCount"]
                .as_i64()
                .is_some_and(|n| n >= 1)
                && status_of(p, "containerStatuses", "web")["lastState"]["terminated"].is_object()
        })
        .await;
    let web = status_of(&pod, "containerStatuses", "web");
    assert!(
        web["lastState"]["terminated"]["exitCode"].is_i64(),
        "case 3: lastState terminated: {web:#}"
    );
    let unhealthy = env
        .wait_event("sick", "Unhealthy", |e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Liveness probe failed"))
        })
        .await;
    assert_eq!(unhealthy["type"], "Warning", "case 3: {unhealthy:#}");
    assert_eq!(
        unhealthy["involvedObject"]["fieldPath"], "spec.containers{web}",
        "case 3: {unhealthy:#}"
    );
    env.wait_event("sick", "Killing", |_| true).await;
    env.remove("sick").await;
}

/// 4. A readiness exec probe flips the container and the pod's Ready both ways.
async fn readiness_flips(env: &Env) {
    eprintln!("case 4: readiness");
    let mut web = sleeper("web");
    web["readinessProbe"] = json!({"exec": {"command": ["test", "-e", "/tmp/ready"]},
                                   "periodSeconds": 1, "failureThreshold": 1});
    env.create(json!({"metadata": {"name": "flappy"}, "spec": {"containers": [web]}}))
        .await;
    let unready = |p: &Value| {
        running(p, "containerStatuses", "web")
            && status_of(p, "containerStatuses", "web")["ready"] == false
            && condition(p, "Ready") == "False"
    };
    let pod = env
        .wait_pod("flappy", "case 4: running, not ready", unready)
        .await;
    let (code, _) = env
        .exec(&pod, "containerStatuses", "web", &["touch", "/tmp/ready"])
        .await;
    assert_eq!(code, 0, "case 4: touch");
    let pod = env
        .wait_pod("flappy", "case 4: ready", |p| {
            condition(p, "Ready") == "True"
                && status_of(p, "containerStatuses", "web")["ready"] == true
        })
        .await;
    assert_eq!(condition(&pod, "ContainersReady"), "True", "case 4");
    let (code, _) = env
        .exec(&pod, "containerStatuses", "web", &["rm", "/tmp/ready"])
        .await;
    assert_eq!(code, 0, "case 4: rm");
    let pod = env
        .wait_pod("flappy", "case 4: unready again", unready)
        .await;
    assert_eq!(
        status_of(&pod, "containerStatuses", "web")["restartCount"],
        0,
        "case 4: readiness never restarts"
    );
    env.wait_event("flappy", "Unhealthy", |e| {
        e["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Readiness probe failed"))
    })
    .await;
    env.remove("flappy").await;
}

/// 5. Deleting with a grace period runs the SIGTERM handler; a container that ignores
///    SIGTERM is killed after the grace period and the pod goes away.
async fn graceful_termination(env: &Env) {
    eprintln!("case 5: graceful termination");
    let host_dir = env.node.dir.path().join("term-data");
    std::fs::create_dir_all(&host_dir).unwrap();
    env.create(json!({
        "metadata": {"name": "polite"},
        "spec": {
            "terminationGracePeriodSeconds": 30,
            "volumes": [{"name": "data", "hostPath": {"path": host_dir.to_str().unwrap(), "type": "Directory"}}],
            "containers": [{"name": "c", "image": BUSYBOX_IMAGE, "command": ["sh", "-c",
                "trap 'echo got-term > /data/term; exit 0' TERM; while true; do sleep 1; done"],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]
        }
    }))
    .await;
    env.wait_pod("polite", "case 5: polite running", |p| {
        running(p, "containerStatuses", "c")
    })
    .await;
    env.delete("polite", 30).await;
    env.wait_gone("polite").await;
    assert_eq!(
        std::fs::read_to_string(host_dir.join("term")).unwrap_or_default(),
        "got-term\n",
        "case 5: the SIGTERM handler ran"
    );

    env.create(json!({
        "metadata": {"name": "stubborn"},
        "spec": {
            "terminationGracePeriodSeconds": 2,
            "containers": [{"name": "c", "image": BUSYBOX_IMAGE, "command": ["sh", "-c",
                "trap '' TERM; while true; do sleep 1; done"]}]
        }
    }))
    .await;
    env.wait_pod("stubborn", "case 5: stubborn running", |p| {
        running(p, "containerStatuses", "c")
    })
    .await;
    env.delete("stubborn", 2).await;
    env.wait_gone("stubborn").await;
    let left = env.node.runtime.list_containers(None).await.unwrap();
    assert!(
        left.is_empty(),
        "case 5: the stubborn container was killed and removed: {left:?}"
    );
}

/// 6. A memory limit is set on the container's cgroup; exceeding it is `OOMKilled`.
async fn memory_limit_and_oom(env: &Env) {
    eprintln!("case 6: memory limit and OOM");
    let mut c = sleeper("c");
    c["resources"] = json!({"limits": {"memory": "32Mi"}});
    env.create(json!({"metadata": {"name": "capped"}, "spec": {"containers": [c]}}))
        .await;
    let pod = env
        .wait_pod("capped", "case 6: capped running", |p| {
            running(p, "containerStatuses", "c")
        })
        .await;
    let (code, limit) = env
        .exec(
            &pod,
            "containerStatuses",
            "c",
            &["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"],
        )
        .await;
    assert_eq!(
        (code, limit.trim()),
        (0, (32u64 << 20).to_string().as_str()),
        "case 6: the container's memory cgroup limit"
    );
    env.remove("capped").await;

    env.create(json!({
        "metadata": {"name": "hog"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "c", "image": BUSYBOX_IMAGE,
                "command": ["sh", "-c", "exec dd if=/dev/zero of=/dev/null bs=64M count=1"],
                "resources": {"limits": {"memory": "32Mi"}}}]
        }
    }))
    .await;
    let pod = env
        .wait_pod("hog", "case 6: hog terminated", |p| {
            status_of(p, "containerStatuses", "c")["state"]["terminated"].is_object()
        })
        .await;
    assert_eq!(
        status_of(&pod, "containerStatuses", "c")["state"]["terminated"]["reason"],
        "OOMKilled",
        "case 6: the hog was OOM-killed: {pod:#}"
    );
    env.wait_event("hog", "OOMKilling", |_| true).await;
    env.remove("hog").await;
}

/// 7. configMap and secret volumes carry their data into the container.
async fn configmap_and_secret_volumes(env: &Env) {
    eprintln!("case 7: configMap and secret volumes");
    env.store
        .create(
            bus_schema::kinds::of::<ConfigMap>(),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "site", "namespace": "default"},
                   "data": {"greeting": "hello-from-cm"}}),
        )
        .await
        .unwrap();
    env.store
        .create(
            bus_schema::kinds::of::<Secret>(),
            // "s3cr3t"
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "creds", "namespace": "default"},
                   "data": {"token": "czNjcjN0"}}),
        )
        .await
        .unwrap();
    let mut c = sleeper("c");
    c["volumeMounts"] = json!([{"name": "site", "mountPath": "/etc/site"},
                               {"name": "creds", "mountPath": "/var/run/creds"}]);
    env.create(json!({
        "metadata": {"name": "vols"},
        "spec": {
            "volumes": [{"name": "site", "configMap": {"name": "site"}},
                        {"name": "creds", "secret": {"secretName": "creds"}}],
            "containers": [c]
        }
    }))
    .await;
    let pod = env
        .wait_pod("vols", "case 7: running", |p| {
            running(p, "containerStatuses", "c")
        })
        .await;
    let (code, greeting) = env
        .exec(
            &pod,
            "containerStatuses",
            "c",
            &["cat", "/etc/site/greeting"],
        )
        .await;
    assert_eq!(
        (code, greeting.as_str()),
        (0, "hello-from-cm"),
        "case 7: configMap file"
    );
    let (code, token) = env
        .exec(
            &pod,
            "containerStatuses",
            "c",
            &["cat", "/var/run/creds/token"],
        )
        .await;
    assert_eq!((code, token.as_str()), (0, "s3cr3t"), "case 7: secret file");
    env.remove("vols").await;
}

/// 8. An unpullable image: `ErrImagePull`, then `ImagePullBackOff`; other pods still run.
async fn unpullable_image(env: &Env) {
    eprintln!("case 8: unpullable image");
    let waiting = |p: &Value, reason: &str| {
        status_of(p, "containerStatuses", "c")["state"]["waiting"]["reason"] == reason
    };
    let mut watch = env.watch().await;
    env.create(json!({
        "metadata": {"name": "ghost"},
        "spec": {"containers": [{"name": "c", "image": "localhost/does-not-exist:1",
                                 "command": ["sh", "-c", SLEEP_LOOP]}]}
    }))
    .await;
    Env::wait_on(&mut watch, "ghost", "case 8: ErrImagePull", |p| {
        waiting(p, "ErrImagePull")
    })
    .await;
    Env::wait_on(&mut watch, "ghost", "case 8: ImagePullBackOff", |p| {
        waiting(p, "ImagePullBackOff")
    })
    .await;
    drop(watch);
    env.wait_event("ghost", "Failed", |e| e["message"] == "Error: ErrImagePull")
        .await;

    env.create(json!({"metadata": {"name": "bystander"}, "spec": {"containers": [sleeper("c")]}}))
        .await;
    env.wait_pod("bystander", "case 8: another pod still runs", |p| {
        running(p, "containerStatuses", "c") && condition(p, "Ready") == "True"
    })
    .await;
    let ghost = env
        .store
        .get(pod_kind(), Some("default"), "ghost")
        .await
        .unwrap();
    assert_eq!(
        ghost["status"]["phase"], "Pending",
        "case 8: the ghost stays Pending: {ghost:#}"
    );
    env.remove("bystander").await;
    env.remove("ghost").await;
}
