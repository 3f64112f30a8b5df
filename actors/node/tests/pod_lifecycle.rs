//! The PodActor's kubelet behaviours on a hollow node against a real store (nats-server
//! with JetStream): init containers and sidecars, probes, image pull policy, env
//! `valueFrom`, volumes on disk, graceful termination (a Service endpoint leaves the
//! EndpointSlices before it is stopped), OOMKilled, Events. The hollow
//! runtime is scripted (exits via env, exec results, unpullable images) so every
//! scenario is deterministic; timeouts are failure guards only.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use drover_node::hollow::HollowRuntime;
use drover_node::node::{Capacity, NodeIdentity};
use drover_node::{AgentConfig, HollowConfig, NodeAgent, Runtime};
use drover_store::{
    DeleteOptions, ListOptions, Store, StoreConfig, WatchEvent, WatchOptions, object,
};
use drover_testkit::TestNats;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

/// Failure guard for every wait.
const GUARD: Duration = Duration::from_secs(60);

struct Node {
    _nats: TestNats,
    store: Store,
    runtime: Arc<HollowRuntime>,
    agent: Option<NodeAgent>,
    pods_dir: tempfile::TempDir,
}

impl Node {
    async fn start(hollow: HollowConfig) -> Node {
        let nats = TestNats::start().await;
        let store = Store::new(nats.client().await, StoreConfig::default())
            .await
            .unwrap();
        // The control plane's pod index: agents follow their pods through it. Its task
        // ends with the test's runtime.
        let index = drover_store::node_index::PodIndex::start(store.clone())
            .await
            .unwrap();
        std::mem::forget(index);
        let runtime = Arc::new(HollowRuntime::seeded(hollow, 7));
        let pods_dir = tempfile::tempdir().unwrap();
        let agent = NodeAgent::start(store.clone(), runtime.clone(), Node::config(&pods_dir))
            .await
            .unwrap();
        Node {
            _nats: nats,
            store,
            runtime,
            agent: Some(agent),
            pods_dir,
        }
    }

    /// A new agent on the same runtime, as after the agent process was killed.
    async fn restart_agent(&mut self) {
        if let Some(a) = self.agent.take() {
            a.stop().await;
        }
        let config = Node::config(&self.pods_dir);
        self.agent = Some(
            NodeAgent::start(self.store.clone(), self.runtime.clone(), config)
                .await
                .unwrap(),
        );
    }

    fn config(pods_dir: &tempfile::TempDir) -> AgentConfig {
        let mut config = AgentConfig::new("node-a");
        config.identity = NodeIdentity {
            name: "node-a".into(),
            zone: None,
            arch: "amd64".into(),
            labels: BTreeMap::new(),
            address: "127.0.0.1".into(),
            taints: Vec::new(),
        };
        config.capacity = Some(Capacity {
            cpu_millis: 4000,
            memory_bytes: 8 << 30,
            ephemeral_storage_bytes: 100 << 30,
            pods: 110,
        });
        config.restart_backoff_base = Duration::from_millis(300);
        config.restart_backoff_max = Duration::from_secs(2);
        config.pod_sync_interval = Duration::from_millis(50);
        config.volume_resync_interval = Duration::from_millis(200);
        config.pods_dir = Some(pods_dir.path().to_path_buf());
        config
    }

    async fn create(&self, pod: Value) -> Value {
        let mut pod = pod;
        pod["spec"]["nodeName"] = json!("node-a");
        pod["metadata"]["namespace"] = json!("default");
        self.store.create(pod_kind(), pod).await.unwrap()
    }

    /// Waits until the pod named `name` satisfies `pred`; returns it.
    async fn wait_pod(&self, name: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let mut watch = self
            .store
            .watch(pod_kind(), Some("default"), 0, WatchOptions::default())
            .await
            .unwrap();
        let mut last = Value::Null;
        let found = tokio::time::timeout(GUARD, async {
            while let Some(event) = watch.next().await {
                if let WatchEvent::Added(o) | WatchEvent::Modified(o) = event.unwrap()
                    && object::name(&o) == name
                {
                    if pred(&o) {
                        return o;
                    }
                    last = o;
                }
            }
            panic!("watch ended")
        })
        .await;
        match found {
            Ok(p) => p,
            Err(_) => panic!("pod {name} never matched; last seen: {last:#}"),
        }
    }

    async fn wait_gone(&self, name: &str) {
        until(async || {
            self.store
                .get(pod_kind(), Some("default"), name)
                .await
                .is_err()
        })
        .await;
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

    /// Events about the pod `name`.
    async fn events(&self, name: &str) -> Vec<Value> {
        let (list, _) = self
            .store
            .api::<k8s_openapi::api::core::v1::Event>()
            .list(Some("default"), &ListOptions::default())
            .await
            .unwrap();
        list.into_iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .filter(|e| e["involvedObject"]["name"] == name)
            .collect()
    }

    async fn wait_event(&self, name: &str, reason: &str) -> Value {
        let mut found = None;
        tokio::time::timeout(GUARD, async {
            loop {
                if let Some(e) = self
                    .events(name)
                    .await
                    .into_iter()
                    .find(|e| e["reason"] == reason)
                {
                    found = Some(e);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {reason} event for {name}"));
        found.unwrap()
    }

    async fn stop(mut self) {
        if let Some(a) = self.agent.take() {
            a.stop().await;
        }
    }
}

fn pod_kind() -> &'static bus_schema::KindInfo {
    bus_schema::kinds::of::<Pod>()
}

async fn until(mut cond: impl AsyncFnMut() -> bool) {
    tokio::time::timeout(GUARD, async {
        while !cond().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("condition not reached before the guard timeout")
}

fn condition(pod: &Value, type_: &str) -> String {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
        .to_string()
}

fn status_of<'a>(pod: &'a Value, list: &str, name: &str) -> &'a Value {
    pod["status"][list]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name))
        .unwrap_or(&Value::Null)
}

fn exits_after(ms: u64, code: i32) -> Value {
    json!([{"name": "HOLLOW_EXIT_AFTER_MS", "value": ms.to_string()},
           {"name": "HOLLOW_EXIT_CODE", "value": code.to_string()}])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn init_containers_run_in_order_and_sidecars_stop_last() {
    let node = Node::start(HollowConfig::default()).await;
    node.create(json!({
        "metadata": {"name": "ordered"},
        "spec": {
            "terminationGracePeriodSeconds": 5,
            "initContainers": [
                {"name": "init-1", "image": "busybox:1", "env": exits_after(30, 0)},
                {"name": "proxy", "image": "busybox:1", "restartPolicy": "Always"},
                {"name": "init-2", "image": "busybox:1", "env": exits_after(30, 0)}
            ],
            "containers": [{"name": "main", "image": "busybox:1"}]
        }
    }))
    .await;
    let pod = node
        .wait_pod("ordered", |p| {
            p.pointer("/status/phase") == Some(&json!("Running")) && condition(p, "Ready") == "True"
        })
        .await;
    assert_eq!(condition(&pod, "Initialized"), "True");
    assert_eq!(
        status_of(&pod, "initContainerStatuses", "init-1")["state"]["terminated"]["reason"],
        "Completed"
    );
    assert_eq!(
        status_of(&pod, "initContainerStatuses", "init-2")["state"]["terminated"]["reason"],
        "Completed"
    );
    let proxy = status_of(&pod, "initContainerStatuses", "proxy");
    assert!(proxy["state"]["running"].is_object(), "{proxy}");
    assert_eq!(proxy["ready"], true);
    assert_eq!(pod["status"]["qosClass"], "BestEffort");
    let starts: Vec<String> = node
        .runtime
        .journal()
        .into_iter()
        .filter(|l| l.starts_with("start "))
        .collect();
    assert_eq!(
        starts,
        ["start init-1", "start proxy", "start init-2", "start main"]
    );

    node.delete("ordered", 5).await;
    node.wait_gone("ordered").await;
    let stops: Vec<String> = node
        .runtime
        .journal()
        .into_iter()
        .filter(|l| l.starts_with("stop "))
        .collect();
    assert_eq!(stops.len(), 2, "{stops:?}");
    assert!(stops[0].starts_with("stop main "), "{stops:?}");
    assert!(stops[1].starts_with("stop proxy "), "{stops:?}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sidecars_stop_when_a_jobs_containers_finish() {
    let node = Node::start(HollowConfig::default()).await;
    node.create(json!({
        "metadata": {"name": "job"},
        "spec": {
            "restartPolicy": "Never",
            "initContainers": [{"name": "logger", "image": "busybox:1", "restartPolicy": "Always"}],
            "containers": [{"name": "work", "image": "busybox:1", "env": exits_after(50, 0)}]
        }
    }))
    .await;
    let pod = node
        .wait_pod("job", |p| {
            p.pointer("/status/phase") == Some(&json!("Succeeded"))
        })
        .await;
    assert_eq!(
        status_of(&pod, "containerStatuses", "work")["state"]["terminated"]["reason"],
        "Completed"
    );
    node.wait_pod("job", |p| {
        status_of(p, "initContainerStatuses", "logger")["state"]["terminated"].is_object()
    })
    .await;
    let journal = node.runtime.journal();
    assert!(
        journal.iter().any(|l| l.starts_with("stop logger ")),
        "{journal:?}"
    );
    assert_eq!(
        journal.iter().filter(|l| *l == "start logger").count(),
        1,
        "a stopped sidecar is not restarted: {journal:?}"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exited_sidecars_are_restarted_and_dead_sandboxes_recreated() {
    let node = Node::start(HollowConfig::default()).await;
    node.create(json!({
        "metadata": {"name": "meshed"},
        "spec": {
            "initContainers": [{"name": "proxy", "image": "busybox:1", "restartPolicy": "Always",
                                "env": exits_after(50, 1)}],
            "containers": [{"name": "app", "image": "busybox:1"}]
        }
    }))
    .await;
    let pod = node
        .wait_pod("meshed", |p| {
            status_of(p, "initContainerStatuses", "proxy")["restartCount"]
                .as_i64()
                .is_some_and(|n| n >= 1)
                && status_of(p, "containerStatuses", "app")["state"]["running"].is_object()
        })
        .await;
    assert_eq!(pod["status"]["phase"], "Running");
    assert_eq!(
        status_of(&pod, "containerStatuses", "app")["restartCount"],
        0,
        "a sidecar restart leaves the app alone"
    );
    let uid = object::meta_str(&pod, "uid").unwrap().to_string();

    // The runtime loses the sandbox (a reboot): the pod gets a new one.
    let old = node.runtime.list_sandboxes().await.unwrap();
    assert_eq!(old.len(), 1);
    node.runtime.stop_sandbox(&old[0].id).await.unwrap();
    node.runtime.remove_sandbox(&old[0].id).await.unwrap();
    until(async || {
        node.runtime
            .list_sandboxes()
            .await
            .unwrap()
            .iter()
            .any(|s| s.config.pod_uid == uid && s.id != old[0].id)
    })
    .await;
    node.wait_pod("meshed", |p| {
        status_of(p, "containerStatuses", "app")["state"]["running"].is_object()
            && status_of(p, "containerStatuses", "app")["containerID"]
                != status_of(&pod, "containerStatuses", "app")["containerID"]
    })
    .await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_init_container_keeps_the_pod_pending_and_retries() {
    let node = Node::start(HollowConfig::default()).await;
    node.create(json!({
        "metadata": {"name": "stuck"},
        "spec": {
            "initContainers": [{"name": "setup", "image": "busybox:1", "env": exits_after(0, 3)}],
            "containers": [{"name": "main", "image": "busybox:1"}]
        }
    }))
    .await;
    let pod = node
        .wait_pod("stuck", |p| {
            status_of(p, "initContainerStatuses", "setup")["restartCount"]
                .as_i64()
                .is_some_and(|n| n >= 1)
        })
        .await;
    assert_eq!(pod["status"]["phase"], "Pending");
    assert_eq!(condition(&pod, "Initialized"), "False");
    assert_eq!(
        status_of(&pod, "containerStatuses", "main")["state"]["waiting"]["reason"],
        "PodInitializing"
    );
    assert!(
        !node.runtime.journal().iter().any(|l| l == "start main"),
        "main must not start before init completes"
    );
    // With restartPolicy Never a failed init container fails the pod.
    node.create(json!({
        "metadata": {"name": "doomed"},
        "spec": {
            "restartPolicy": "Never",
            "initContainers": [{"name": "setup", "image": "busybox:1", "env": exits_after(0, 3)}],
            "containers": [{"name": "main", "image": "busybox:1"}]
        }
    }))
    .await;
    node.wait_pod("doomed", |p| {
        p.pointer("/status/phase") == Some(&json!("Failed"))
    })
    .await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn liveness_failure_restarts_with_backoff_and_events() {
    let node = Node::start(HollowConfig::default()).await;
    node.runtime.script_exec("web", &["check"], 1, "boom");
    node.create(json!({
        "metadata": {"name": "sick"},
        "spec": {"containers": [{"name": "web", "image": "busybox:1",
            "livenessProbe": {"exec": {"command": ["check"]}, "periodSeconds": 1, "failureThreshold": 1}}]}
    }))
    .await;
    let pod = node
        .wait_pod("sick", |p| {
            status_of(p, "containerStatuses", "web")["restartCount"]
                .as_i64()
                .is_some_and(|n| n >= 2)
        })
        .await;
    let web = status_of(&pod, "containerStatuses", "web");
    assert!(web["lastState"]["terminated"].is_object(), "{web}");
    let unhealthy = node.wait_event("sick", "Unhealthy").await;
    assert_eq!(unhealthy["type"], "Warning");
    assert_eq!(unhealthy["message"], "Liveness probe failed: boom");
    assert_eq!(
        unhealthy["involvedObject"]["fieldPath"],
        "spec.containers{web}"
    );
    assert_eq!(unhealthy["source"]["component"], "drover-node");
    let killing = node.wait_event("sick", "Killing").await;
    assert_eq!(
        killing["message"],
        "Container web failed liveness probe, will be restarted"
    );
    node.wait_event("sick", "BackOff").await;
    // Identical events aggregate into one object with a growing count.
    until(async || {
        node.events("sick")
            .await
            .iter()
            .any(|e| e["reason"] == "Unhealthy" && e["count"].as_i64().unwrap_or(0) >= 2)
    })
    .await;
    let unhealthy_objects = node
        .events("sick")
        .await
        .into_iter()
        .filter(|e| e["reason"] == "Unhealthy")
        .count();
    assert_eq!(unhealthy_objects, 1);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readiness_flips_ready_both_ways() {
    let node = Node::start(HollowConfig::default()).await;
    node.runtime.script_exec("web", &["ready?"], 1, "not yet");
    node.create(json!({
        "metadata": {"name": "flappy"},
        "spec": {"containers": [{"name": "web", "image": "busybox:1",
            "readinessProbe": {"exec": {"command": ["ready?"]}, "periodSeconds": 1, "failureThreshold": 1}}]}
    }))
    .await;
    let running_unready = |p: &Value| {
        status_of(p, "containerStatuses", "web")["state"]["running"].is_object()
            && condition(p, "Ready") == "False"
    };
    let pod = node.wait_pod("flappy", running_unready).await;
    assert_eq!(status_of(&pod, "containerStatuses", "web")["ready"], false);
    node.runtime.script_exec("web", &["ready?"], 0, "");
    let pod = node
        .wait_pod("flappy", |p| condition(p, "Ready") == "True")
        .await;
    assert_eq!(condition(&pod, "ContainersReady"), "True");
    assert_eq!(status_of(&pod, "containerStatuses", "web")["ready"], true);
    node.runtime.script_exec("web", &["ready?"], 1, "gone");
    node.wait_pod("flappy", running_unready).await;
    let e = node.wait_event("flappy", "Unhealthy").await;
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .starts_with("Readiness probe failed")
    );
    // Readiness never restarts the container.
    let pod = node
        .store
        .get(pod_kind(), Some("default"), "flappy")
        .await
        .unwrap();
    assert_eq!(
        status_of(&pod, "containerStatuses", "web")["restartCount"],
        0
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_agent_keeps_adopted_pods_ready() {
    let mut node = Node::start(HollowConfig::default()).await;
    node.runtime.script_exec("web", &["ready?"], 0, "");
    node.create(json!({
        "metadata": {"name": "steady"},
        "spec": {"containers": [{"name": "web", "image": "busybox:1",
            "readinessProbe": {"exec": {"command": ["ready?"]},
                "initialDelaySeconds": 2, "periodSeconds": 1}}]}
    }))
    .await;
    let pod = node
        .wait_pod("steady", |p| condition(p, "Ready") == "True")
        .await;
    let since: u64 = pod["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    node.restart_agent().await;
    // Past the new agent's first probe (initialDelaySeconds after adoption), the pod was
    // never written not ready: Services keep sending it traffic across the restart.
    let mut watch = node
        .store
        .watch(pod_kind(), Some("default"), since, WatchOptions::default())
        .await
        .unwrap();
    let window = tokio::time::sleep(Duration::from_millis(3500));
    tokio::pin!(window);
    loop {
        tokio::select! {
            _ = &mut window => break,
            ev = watch.next() => {
                if let Some(Ok(WatchEvent::Modified(p))) = ev
                    && object::name(&p) == "steady"
                {
                    assert_eq!(condition(&p, "Ready"), "True", "flipped on adoption: {p:#}");
                }
            }
        }
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn image_pull_policies_and_pull_errors() {
    let node = Node::start(HollowConfig {
        unpullable_images: ["ghost:1".to_string()].into(),
        absent_images: ["fresh:1".to_string(), "local:1".to_string()].into(),
        ..Default::default()
    })
    .await;
    node.create(json!({"metadata": {"name": "ghost"},
        "spec": {"containers": [{"name": "c", "image": "ghost:1"}]}}))
        .await;
    node.wait_pod("ghost", |p| {
        status_of(p, "containerStatuses", "c")["state"]["waiting"]["reason"] == "ErrImagePull"
    })
    .await;
    let pod = node
        .wait_pod("ghost", |p| {
            status_of(p, "containerStatuses", "c")["state"]["waiting"]["reason"]
                == "ImagePullBackOff"
        })
        .await;
    assert_eq!(pod["status"]["phase"], "Pending");
    let failed = node.wait_event("ghost", "Failed").await;
    assert_eq!(failed["type"], "Warning");
    node.wait_event("ghost", "BackOff").await;
    node.wait_event("ghost", "Pulling").await;

    node.create(json!({"metadata": {"name": "never"},
        "spec": {"containers": [{"name": "c", "image": "local:1", "imagePullPolicy": "Never"}]}}))
        .await;
    node.wait_pod("never", |p| {
        status_of(p, "containerStatuses", "c")["state"]["waiting"]["reason"] == "ErrImageNeverPull"
    })
    .await;

    node.create(json!({"metadata": {"name": "fresh"},
        "spec": {"containers": [{"name": "c", "image": "fresh:1"}]}}))
        .await;
    node.wait_pod("fresh", |p| {
        p.pointer("/status/phase") == Some(&json!("Running"))
    })
    .await;
    node.wait_event("fresh", "Pulled").await;
    node.create(json!({"metadata": {"name": "present"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}))
        .await;
    node.create(json!({"metadata": {"name": "always"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}}))
        .await;
    node.wait_pod("present", |p| {
        p.pointer("/status/phase") == Some(&json!("Running"))
    })
    .await;
    node.wait_pod("always", |p| {
        p.pointer("/status/phase") == Some(&json!("Running"))
    })
    .await;
    let pulls = node.runtime.pulls();
    assert_eq!(
        pulls.iter().filter(|i| *i == "fresh:1").count(),
        1,
        "{pulls:?}"
    );
    assert!(
        !pulls.iter().any(|i| i == "busybox:1" || i == "local:1"),
        "{pulls:?}"
    );
    assert!(
        pulls.iter().any(|i| i == "busybox"),
        "untagged means Always: {pulls:?}"
    );
    assert!(pulls.iter().filter(|i| *i == "ghost:1").count() >= 1);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn env_value_from_and_missing_keys() {
    let node = Node::start(HollowConfig::default()).await;
    let cm =
        json!({"metadata": {"name": "cfg", "namespace": "default"}, "data": {"color": "blue"}});
    let cm_kind = bus_schema::kinds::of::<k8s_openapi::api::core::v1::ConfigMap>();
    node.store.create(cm_kind, cm).await.unwrap();
    let secret = json!({"metadata": {"name": "sec", "namespace": "default"}, "data": {"pw": "aHVudGVyMg=="}});
    node.store
        .create(
            bus_schema::kinds::of::<k8s_openapi::api::core::v1::Secret>(),
            secret,
        )
        .await
        .unwrap();
    node.create(json!({"metadata": {"name": "envy", "labels": {"app": "envy"}},
        "spec": {"containers": [{"name": "c", "image": "busybox:1",
            "command": ["echo", "$(COLOR)"],
            "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}},
            "env": [
                {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "color"}}},
                {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "pw"}}},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                {"name": "GREETING", "value": "$(POD) is $(COLOR)"}
            ]}]}}))
        .await;
    let pod = node
        .wait_pod("envy", |p| {
            p.pointer("/status/phase") == Some(&json!("Running"))
        })
        .await;
    assert_eq!(pod["status"]["qosClass"], "Burstable");
    let config = node.runtime.config_of("c").unwrap();
    let env: BTreeMap<String, String> = config.env.iter().cloned().collect();
    assert_eq!(env["COLOR"], "blue");
    assert_eq!(env["PW"], "hunter2");
    assert_eq!(env["POD"], "envy");
    assert_eq!(env["IP"], pod["status"]["podIP"].as_str().unwrap());
    assert_eq!(env["APP"], "envy");
    assert_eq!(env["MEM"], "128");
    assert_eq!(env["GREETING"], "envy is blue");
    assert_eq!(config.command, ["echo", "blue"]);
    assert_eq!(config.resources.cpu_shares, 256);
    assert_eq!(config.resources.cpu_quota, 50_000);
    assert_eq!(config.resources.memory_limit_bytes, 128 << 20);

    // A missing key is a CreateContainerConfigError, fixed by adding the key.
    node.create(json!({"metadata": {"name": "keyless"},
        "spec": {"containers": [{"name": "k", "image": "busybox:1",
            "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "size"}}}]}]}}))
        .await;
    let pod = node
        .wait_pod("keyless", |p| {
            status_of(p, "containerStatuses", "k")["state"]["waiting"]["reason"]
                == "CreateContainerConfigError"
        })
        .await;
    assert_eq!(
        status_of(&pod, "containerStatuses", "k")["state"]["waiting"]["message"],
        "couldn't find key size in ConfigMap default/cfg"
    );
    let mut cm = node
        .store
        .get(cm_kind, Some("default"), "cfg")
        .await
        .unwrap();
    cm["data"]["size"] = json!("xl");
    node.store.update(cm_kind, cm).await.unwrap();
    node.wait_pod("keyless", |p| {
        p.pointer("/status/phase") == Some(&json!("Running"))
    })
    .await;
    assert_eq!(
        node.runtime.config_of("k").unwrap().env,
        [("X".to_string(), "xl".to_string())]
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graceful_termination_runs_pre_stop_first_within_grace() {
    let node = Node::start(HollowConfig::default()).await;
    node.create(json!({"metadata": {"name": "polite"},
        "spec": {"containers": [{"name": "main", "image": "busybox:1",
            "lifecycle": {"preStop": {"exec": {"command": ["drain", "--now"]}}}}]}}))
        .await;
    node.wait_pod("polite", |p| {
        p.pointer("/status/phase") == Some(&json!("Running"))
    })
    .await;
    node.delete("polite", 7).await;
    node.wait_gone("polite").await;
    let journal = node.runtime.journal();
    let hook = journal.iter().position(|l| l == "exec main drain --now");
    let stop = journal
        .iter()
        .position(|l| l.starts_with("stop main grace="));
    assert!(hook.is_some() && stop.is_some(), "{journal:?}");
    assert!(hook < stop, "preStop runs before the stop: {journal:?}");
    let grace: u64 = journal[stop.unwrap()]
        .trim_start_matches("stop main grace=")
        .trim_end_matches('s')
        .parse()
        .unwrap();
    assert!(
        (2..=7).contains(&grace),
        "stop gets the rest of the grace period: {grace}"
    );
    assert!(node.runtime.list_sandboxes().await.unwrap().is_empty());
    let killing = node.wait_event("polite", "Killing").await;
    assert_eq!(killing["message"], "Stopping container main");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_endpoint_is_stopped_only_after_slices_mark_it_not_ready() {
    let node = Node::start(HollowConfig::default()).await;
    node.create(
        json!({"metadata": {"name": "served", "labels": {"app": "s"}},
        "spec": {"containers": [{"name": "main", "image": "busybox:1"}]}}),
    )
    .await;
    let pod = node
        .wait_pod("served", |p| {
            p.pointer("/status/phase") == Some(&json!("Running"))
        })
        .await;
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    let ip = pod["status"]["podIP"].as_str().unwrap().to_string();
    // The pod is a ready endpoint of a Service, as the EndpointSlice controller writes it.
    let slices = bus_schema::kinds::of::<k8s_openapi::api::discovery::v1::EndpointSlice>();
    let endpoint = |ready: bool| {
        json!([{"addresses": [ip], "targetRef": {"kind": "Pod", "name": "served", "uid": uid},
            "conditions": {"ready": ready, "serving": true, "terminating": !ready}}])
    };
    let slice = node
        .store
        .create(
            slices,
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "s-1", "namespace": "default",
                    "labels": {"kubernetes.io/service-name": "s"}},
                "addressType": "IPv4", "endpoints": endpoint(true),
                "ports": [{"name": "", "port": 80, "protocol": "TCP"}]}),
        )
        .await
        .unwrap();
    node.delete("served", 20).await;
    // While a slice still lists it as ready, its containers are not stopped.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let journal = node.runtime.journal();
    assert!(
        !journal.iter().any(|l| l.starts_with("stop main")),
        "stopped while still a ready endpoint: {journal:?}"
    );
    assert!(
        node.store
            .get(pod_kind(), Some("default"), "served")
            .await
            .is_ok()
    );
    // The controller marks it terminating: the drain delay, then the stop.
    let mut not_ready = slice;
    not_ready["endpoints"] = endpoint(false);
    node.store.update(slices, not_ready).await.unwrap();
    node.wait_gone("served").await;
    let journal = node.runtime.journal();
    let stop = journal
        .iter()
        .find(|l| l.starts_with("stop main grace="))
        .unwrap_or_else(|| panic!("{journal:?}"));
    let grace: u64 = stop
        .trim_start_matches("stop main grace=")
        .trim_end_matches('s')
        .parse()
        .unwrap();
    assert!(
        (2..20).contains(&grace),
        "the stop gets what the drain left of the grace period: {stop}"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oom_killed_is_surfaced() {
    let node = Node::start(HollowConfig::default()).await;
    let oom_env = json!([{"name": "HOLLOW_EXIT_AFTER_MS", "value": "20"},
                         {"name": "HOLLOW_EXIT_REASON", "value": "OOMKilled"}]);
    node.create(json!({"metadata": {"name": "hungry"},
        "spec": {"restartPolicy": "Never",
                 "containers": [{"name": "c", "image": "busybox:1", "env": oom_env.clone()}]}}))
        .await;
    let pod = node
        .wait_pod("hungry", |p| {
            p.pointer("/status/phase") == Some(&json!("Failed"))
        })
        .await;
    let term = &status_of(&pod, "containerStatuses", "c")["state"]["terminated"];
    assert_eq!(term["reason"], "OOMKilled");
    assert_eq!(term["exitCode"], 137);
    let e = node.wait_event("hungry", "OOMKilling").await;
    assert_eq!(e["type"], "Warning");
    // Restarted: the OOM kill shows in lastState.
    node.create(json!({"metadata": {"name": "hungry-again"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1", "env": oom_env}]}}))
        .await;
    let pod = node
        .wait_pod("hungry-again", |p| {
            let c = status_of(p, "containerStatuses", "c");
            c["lastState"]["terminated"]["reason"] == "OOMKilled"
                && c["restartCount"].as_i64().is_some_and(|n| n >= 1)
        })
        .await;
    assert!(
        status_of(&pod, "containerStatuses", "c")["restartCount"]
            .as_i64()
            .unwrap()
            >= 1
    );
    node.stop().await;
}

/// Set in the re-executed child that runs inside a private mount namespace.
const IN_MOUNT_NS: &str = "DROVER_POD_VOLUMES_IN_MOUNT_NS";

#[test]
fn volumes_are_materialised_and_removed() {
    // tmpfs mounts (secrets, emptyDir medium Memory) must never leak into the host's
    // mount namespace: run the scenario in a private one that dies with the child.
    if std::env::var_os(IN_MOUNT_NS).is_none() {
        let exe = std::env::current_exe().unwrap();
        let status = std::process::Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--"])
            .arg(exe)
            .args([
                "--exact",
                "volumes_are_materialised_and_removed",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(IN_MOUNT_NS, "1")
            .status()
            .expect("running unshare (util-linux; the test needs root)");
        assert!(
            status.success(),
            "the scenario failed in the mount namespace"
        );
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
        .block_on(volumes_scenario());
}

async fn volumes_scenario() {
    let node = Node::start(HollowConfig::default()).await;
    let cm_kind = bus_schema::kinds::of::<k8s_openapi::api::core::v1::ConfigMap>();
    node.store
        .create(
            cm_kind,
            json!({"metadata": {"name": "site", "namespace": "default"},
            "data": {"index.html": "hello", "extra": "x"}}),
        )
        .await
        .unwrap();
    node.store
        .create(
            bus_schema::kinds::of::<k8s_openapi::api::core::v1::Secret>(),
            json!({"metadata": {"name": "creds", "namespace": "default"}, "data": {"token": "czNjcjN0"}}),
        )
        .await
        .unwrap();
    let host_dir = node.pods_dir.path().join("host-data");
    let pod = node
        .create(json!({"metadata": {"name": "vols", "labels": {"tier": "web"}},
            "spec": {
                "volumes": [
                    {"name": "site", "configMap": {"name": "site", "items": [{"key": "index.html", "path": "index.html", "mode": 0o600}]}},
                    {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o400}},
                    {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                    {"name": "scratch", "emptyDir": {}},
                    {"name": "fast", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
                    {"name": "host", "hostPath": {"path": host_dir.to_str().unwrap(), "type": "DirectoryOrCreate"}}
                ],
                "containers": [{"name": "web", "image": "busybox:1", "volumeMounts": [
                    {"name": "site", "mountPath": "/usr/share/nginx/html"},
                    {"name": "creds", "mountPath": "/var/run/creds"},
                    {"name": "info", "mountPath": "/etc/podinfo"},
                    {"name": "scratch", "mountPath": "/cache", "subPath": "web"},
                    {"name": "fast", "mountPath": "/fast"},
                    {"name": "host", "mountPath": "/host", "readOnly": true}
                ]}]
            }}))
        .await;
    let uid = object::meta_str(&pod, "uid").unwrap().to_string();
    node.wait_pod("vols", |p| {
        p.pointer("/status/phase") == Some(&json!("Running"))
    })
    .await;
    let vols = node.pods_dir.path().join(&uid).join("volumes");
    let site = vols.join("kubernetes.io~configmap/site");
    assert_eq!(
        std::fs::read_to_string(site.join("index.html")).unwrap(),
        "hello"
    );
    assert!(!site.join("extra").exists(), "only the listed items");
    assert_eq!(
        std::fs::metadata(site.join("index.html"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let creds = vols.join("kubernetes.io~secret/creds");
    assert_eq!(
        std::fs::read_to_string(creds.join("token")).unwrap(),
        "s3cr3t"
    );
    assert_eq!(
        std::fs::metadata(creds.join("token"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o400
    );
    assert_eq!(
        std::fs::read_to_string(vols.join("kubernetes.io~downward-api/info/labels")).unwrap(),
        "tier=\"web\"\n"
    );
    assert!(vols.join("kubernetes.io~empty-dir/scratch/web").is_dir());
    assert!(host_dir.is_dir(), "DirectoryOrCreate made the host path");
    let mounts = drover_node::volumes::mounts_under(&vols).unwrap();
    assert!(mounts.contains(&creds), "secret on tmpfs: {mounts:?}");
    assert!(
        mounts.contains(&vols.join("kubernetes.io~empty-dir/fast")),
        "{mounts:?}"
    );
    let config = node.runtime.config_of("web").unwrap();
    let by_path: BTreeMap<&str, &drover_node::runtime::Mount> = config
        .mounts
        .iter()
        .map(|m| (m.container_path.as_str(), m))
        .collect();
    assert_eq!(by_path["/usr/share/nginx/html"].host_path, site);
    assert!(by_path["/usr/share/nginx/html"].read_only);
    assert_eq!(
        by_path["/cache"].host_path,
        vols.join("kubernetes.io~empty-dir/scratch/web")
    );
    assert!(!by_path["/cache"].read_only);
    assert!(by_path["/host"].read_only);

    // A ConfigMap change shows up in the volume (atomic ..data swap).
    let mut cm = node
        .store
        .get(cm_kind, Some("default"), "site")
        .await
        .unwrap();
    cm["data"]["index.html"] = json!("changed");
    node.store.update(cm_kind, cm).await.unwrap();
    until(async || {
        std::fs::read_to_string(site.join("index.html"))
            .ok()
            .as_deref()
            == Some("changed")
    })
    .await;

    // An unbound claim keeps its pod Pending with a FailedMount event.
    node.store
        .create(
            bus_schema::kinds::of::<k8s_openapi::api::core::v1::PersistentVolumeClaim>(),
            json!({"metadata": {"name": "claim", "namespace": "default"},
                   "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
        )
        .await
        .unwrap();
    node.create(json!({"metadata": {"name": "claimant"},
        "spec": {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "claim"}}],
                 "containers": [{"name": "c", "image": "busybox:1", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}}))
        .await;
    let e = node.wait_event("claimant", "FailedMount").await;
    assert!(
        e["message"].as_str().unwrap().contains("is not bound"),
        "{e}"
    );
    let pod = node
        .store
        .get(pod_kind(), Some("default"), "claimant")
        .await
        .unwrap();
    assert_eq!(pod["status"]["phase"], "Pending");

    // Teardown unmounts the tmpfs volumes and removes the pod directory.
    node.delete("vols", 1).await;
    node.wait_gone("vols").await;
    until(async || !node.pods_dir.path().join(&uid).exists()).await;
    assert!(
        drover_node::volumes::mounts_under(&vols)
            .unwrap()
            .is_empty()
    );
    node.stop().await;
}
