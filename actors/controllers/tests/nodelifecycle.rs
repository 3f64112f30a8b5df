//! The node lifecycle controller end to end: real nats-server and store, the controllers
//! as `drover up` runs them with a membership view, and real gossip members on 127.0.0.1
//! (one stands for the control plane, whose view the controller follows). In the first
//! test pods are bound by writing `spec.nodeName` and no agents run, so nothing but the
//! controller touches the Nodes; the second runs a hollow node agent in the gossip.
//! Timeouts are failure guards only.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::{GUARD, edit, kind, label, wait_for};
use drover_controllers::nodelifecycle::core::{GOSSIP_CONDITION, UNREACHABLE_TAINT_KEY};
use drover_controllers::{Controllers, ControllersConfig};
use drover_membership::{MemberState, Membership, MembershipConfig, NodeMetadata, Profile, timing};
use drover_store::{Store, StoreConfig, object};
use drover_testkit::TestNats;
use serde_json::{Value, json};

/// The crashed node's fence timeout: small, so the fence window (plus the 2 s margin)
/// passes quickly.
const FENCE_MS: u32 = 1000;

fn member(name: &str, bind: SocketAddr, seeds: Vec<SocketAddr>, fence_ms: u32) -> MembershipConfig {
    MembershipConfig {
        seeds,
        metadata: NodeMetadata {
            fence_timeout_ms: fence_ms,
            ..NodeMetadata::default()
        },
        timing: timing(3, Profile::Fast),
        ..MembershipConfig::new(name, bind)
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn node(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {"podCIDR": "10.244.1.0/24"},
        "status": {"conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady",
             "message": "drover node agent is posting ready status"},
        ]},
    })
}

fn template(app: &str) -> Value {
    json!({
        "metadata": {"labels": {"app": app}},
        "spec": {"containers": [{"name": "c", "image": "busybox:1"}]},
    })
}

fn condition<'a>(node: &'a Value, type_: &str) -> Option<&'a Value> {
    node.pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
}

fn condition_is(node: &Value, type_: &str, status: &str, reason: &str) -> bool {
    condition(node, type_).is_some_and(|c| c["status"] == status && c["reason"] == reason)
}

fn unreachable_taints(node: &Value) -> Vec<String> {
    node.pointer("/spec/taints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|t| t["key"] == UNREACHABLE_TAINT_KEY)
        .map(|t| t["effect"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn uid(obj: &Value) -> String {
    object::meta_str(obj, "uid").unwrap_or_default().to_string()
}

fn app_pods<'a>(pods: &'a BTreeMap<String, Value>, app: &str) -> Vec<&'a Value> {
    pods.values().filter(|p| label(p, "app") == app).collect()
}

/// Binds every unbound pod of `app` to `node` by writing spec.nodeName.
async fn bind(store: &Store, app: &str, n: usize, node: &str) {
    let pods = kind("", "pods");
    let found = wait_for(store, pods, Some("ns"), &format!("{n} {app} pods"), |p| {
        app_pods(p, app).len() == n
    })
    .await;
    for pod in app_pods(&found, app) {
        edit(store, pods, Some("ns"), object::name(pod), |p| {
            p["spec"]["nodeName"] = json!(node);
        })
        .await;
    }
}

/// Publishes node heartbeats on the bus every 100 ms until aborted.
fn heartbeats(client: async_nats::Client, node: &str) -> tokio::task::JoinHandle<()> {
    let subject = bus_schema::subjects::node_heartbeat(node);
    tokio::spawn(async move {
        loop {
            let _ = client.publish(subject.clone(), Vec::new().into()).await;
            let _ = client.flush().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_node_is_tainted_evicted_fenced_and_restored() {
    let nats = TestNats::start().await;
    let store = Store::new(nats.client().await, StoreConfig::default())
        .await
        .unwrap();
    let (nodes, pods) = (kind("", "nodes"), kind("", "pods"));
    store
        .create(
            kind("", "namespaces"),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}}),
        )
        .await
        .unwrap();
    // node-3 runs without gossip: not in the view, so left alone.
    for name in ["node-1", "node-2", "node-3"] {
        store.create(nodes, node(name)).await.unwrap();
    }

    // The control plane's member (no Node of that name: ignored) and two node agents'.
    let cp = Membership::start(member("control-plane", loopback(), vec![], 0))
        .await
        .unwrap();
    let seeds = vec![cp.addr()];
    let node1 = Membership::start(member("node-1", loopback(), seeds.clone(), FENCE_MS))
        .await
        .unwrap();
    let node1_addr = node1.addr();
    let _node2 = Membership::start(member("node-2", loopback(), seeds.clone(), FENCE_MS))
        .await
        .unwrap();
    let node3_created = store.get(nodes, None, "node-3").await.unwrap();
    let mut view = cp.watch();
    tokio::time::timeout(
        GUARD,
        view.wait_for(|v| v.iter().filter(|m| m.state == MemberState::Alive).count() == 3),
    )
    .await
    .expect("three members alive")
    .unwrap();

    let controllers = Controllers::start_with(
        store.clone(),
        ControllersConfig {
            membership: Some(cp.watch()),
            ..Default::default()
        },
    );
    // Alive members' nodes are marked reachable.
    wait_for(&store, nodes, None, "both nodes GossipReachable", |n| {
        ["node-1", "node-2"].iter().all(|name| {
            n.get(*name)
                .is_some_and(|n| condition_is(n, GOSSIP_CONDITION, "True", "MemberAlive"))
        })
    })
    .await;

    // Workloads: a ReplicaSet's two pods and a StatefulSet's pod on node-1, a bare pod
    // on node-2.
    store
        .create(
            kind("apps", "replicasets"),
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                   "metadata": {"name": "rs", "namespace": "ns"},
                   "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "rs"}},
                            "template": template("rs")}}),
        )
        .await
        .unwrap();
    store
        .create(
            kind("apps", "statefulsets"),
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
                   "metadata": {"name": "web", "namespace": "ns"},
                   "spec": {"replicas": 1, "serviceName": "web",
                            "podManagementPolicy": "Parallel",
                            "selector": {"matchLabels": {"app": "web"}},
                            "template": template("web")}}),
        )
        .await
        .unwrap();
    let mut bare = template("bare");
    bare["apiVersion"] = json!("v1");
    bare["kind"] = json!("Pod");
    bare["metadata"]["name"] = json!("bare");
    bare["metadata"]["namespace"] = json!("ns");
    bare["spec"]["nodeName"] = json!("node-2");
    store.create(pods, bare).await.unwrap();
    bind(&store, "rs", 2, "node-1").await;
    bind(&store, "web", 1, "node-1").await;
    let bound = wait_for(&store, pods, Some("ns"), "pods bound", |p| {
        p.values()
            .filter(|p| p.pointer("/spec/nodeName") == Some(&json!("node-1")))
            .count()
            == 3
    })
    .await;
    let old_rs: Vec<String> = app_pods(&bound, "rs").into_iter().map(uid).collect();
    let web0_uid = uid(&bound["web-0"]);

    // node-1's agent keeps its bus heartbeats going (it is cut off from gossip only).
    let beating = heartbeats(nats.client().await, "node-1");

    // Crash node-1's member. (The elapsed times printed below are for the report;
    // nothing asserts them.)
    let crashed = std::time::Instant::now();
    node1.stop().await;
    wait_for(
        &store,
        nodes,
        None,
        "node-1 tainted and Ready Unknown",
        |n| {
            n.get("node-1").is_some_and(|n| {
                let mut t = unreachable_taints(n);
                t.sort();
                t == ["NoExecute", "NoSchedule"]
                    && condition_is(n, "Ready", "Unknown", "NodeStatusUnknown")
                    && condition_is(n, GOSSIP_CONDITION, "False", "MemberDown")
            })
        },
    )
    .await;
    eprintln!(
        "crash -> node-1 tainted, Ready Unknown: {:?}",
        crashed.elapsed()
    );
    // Its ReplicaSet pods are deleted gracefully and replaced.
    wait_for(
        &store,
        pods,
        Some("ns"),
        "rs pods evicted and replaced",
        |p| {
            let rs = app_pods(p, "rs");
            let evicted = rs
                .iter()
                .filter(|p| old_rs.contains(&uid(p)) && object::is_terminating(p))
                .count();
            let fresh = rs
                .iter()
                .filter(|p| !old_rs.contains(&uid(p)) && !object::is_terminating(p))
                .count();
            evicted == 2 && fresh == 2
        },
    )
    .await;
    eprintln!(
        "crash -> rs pods evicted and replaced: {:?}",
        crashed.elapsed()
    );

    // While its heartbeats still arrive, the fence never opens: wait well past the fence
    // window (fence + 2 s margin = 3 s) and check nothing was forced. Proving that
    // something does not happen needs a wait; it is a bound, not a measured time.
    tokio::time::sleep(Duration::from_millis(u64::from(FENCE_MS)) + Duration::from_secs(4)).await;
    let now = store
        .list(pods, Some("ns"), &Default::default())
        .await
        .unwrap();
    let items: BTreeMap<String, Value> = now
        .items
        .into_iter()
        .map(|p| (object::name(&p).to_string(), p))
        .collect();
    let web0 = items
        .get("web-0")
        .expect("web-0 still there while heartbeats arrive");
    assert_eq!(uid(web0), web0_uid);
    assert!(
        !object::is_terminating(web0),
        "a StatefulSet pod is never deleted gracefully"
    );
    assert_eq!(
        app_pods(&items, "rs")
            .iter()
            .filter(|p| old_rs.contains(&uid(p)))
            .count(),
        2,
        "terminating pods are not forced while heartbeats arrive"
    );
    assert!(
        !object::is_terminating(&items["bare"]),
        "node-2's pod is left alone"
    );

    // The node goes silent on the bus too: after the fence window the StatefulSet pod is
    // force-deleted and recreated under its name, and the terminating pods are removed.
    beating.abort();
    let silent = std::time::Instant::now();
    wait_for(
        &store,
        pods,
        Some("ns"),
        "web-0 recreated, old rs pods gone",
        |p| {
            p.get("web-0").is_some_and(|w| uid(w) != web0_uid)
                && !app_pods(p, "rs").iter().any(|p| old_rs.contains(&uid(p)))
        },
    )
    .await;
    eprintln!(
        "heartbeats stopped -> web-0 recreated (fence {FENCE_MS} ms + 2 s margin): {:?}",
        silent.elapsed()
    );

    // node-1 comes back: same name, same address, a new process.
    let restarted = std::time::Instant::now();
    let _node1 = Membership::start(member("node-1", node1_addr, seeds, FENCE_MS))
        .await
        .unwrap();
    wait_for(&store, nodes, None, "node-1 restored", |n| {
        n.get("node-1").is_some_and(|n| {
            unreachable_taints(n).is_empty()
                && condition_is(n, "Ready", "True", "KubeletReady")
                && condition_is(n, GOSSIP_CONDITION, "True", "MemberAlive")
        })
    })
    .await;
    eprintln!("restart -> node-1 restored: {:?}", restarted.elapsed());
    // node-2 was never tainted; node-3 (not in the view) was never written at all.
    let node2 = store.get(nodes, None, "node-2").await.unwrap();
    assert!(unreachable_taints(&node2).is_empty());
    assert!(condition_is(&node2, "Ready", "True", "KubeletReady"));
    let node3 = store.get(nodes, None, "node-3").await.unwrap();
    assert_eq!(
        node3, node3_created,
        "a node outside the view is left alone"
    );

    controllers.stop().await;
}

/// The `Ready` condition's status of a pod, "" when it has none.
fn pod_ready(pod: &Value) -> &str {
    condition(pod, "Ready")
        .and_then(|c| c["status"].as_str())
        .unwrap_or_default()
}

/// The `conditions.ready` of the endpoint with address `ip` in any of `slices`, `None`
/// when no slice lists it.
fn endpoint_ready(slices: &BTreeMap<String, Value>, ip: &str) -> Option<bool> {
    slices
        .values()
        .filter_map(|s| s["endpoints"].as_array())
        .flatten()
        .find(|e| {
            e["addresses"]
                .as_array()
                .is_some_and(|a| a.iter().any(|a| a == ip))
        })
        .map(|e| e["conditions"]["ready"] == json!(true))
}

/// A hollow node agent named `node-1` in the gossip (seeded by `seed`) on `runtime`: a
/// restart on the same runtime re-adopts the pods it ran.
async fn gossip_agent(
    store: &Store,
    runtime: std::sync::Arc<drover_node::HollowRuntime>,
    seed: SocketAddr,
) -> drover_node::NodeAgent {
    let mut config = drover_node::AgentConfig::new("node-1");
    config.capacity = Some(drover_node::node::Capacity {
        cpu_millis: 4000,
        memory_bytes: 8 << 30,
        ephemeral_storage_bytes: 100 << 30,
        pods: 110,
    });
    let mut gossip = drover_node::GossipConfig::new(loopback());
    gossip.seeds = vec![seed];
    config.gossip = Some(gossip);
    drover_node::NodeAgent::start(store.clone(), runtime, config)
        .await
        .unwrap()
}

/// Kubernetes' `MarkPodsNotReady`: a pod that tolerates `unreachable` forever stays on
/// its down node but turns Ready False, so its Service stops listing it as a ready
/// endpoint; when the node's agent comes back it reports the pod Ready again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tolerating_pod_on_a_down_node_is_not_ready_until_its_agent_is_back() {
    let nats = TestNats::start().await;
    let store = Store::new(nats.client().await, StoreConfig::default())
        .await
        .unwrap();
    let (nodes, pods, slices) = (
        kind("", "nodes"),
        kind("", "pods"),
        kind("discovery.k8s.io", "endpointslices"),
    );
    store
        .create(
            kind("", "namespaces"),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}}),
        )
        .await
        .unwrap();
    let cp = Membership::start(member("control-plane", loopback(), vec![], 0))
        .await
        .unwrap();
    let controllers = Controllers::start_with(
        store.clone(),
        ControllersConfig {
            membership: Some(cp.watch()),
            ..Default::default()
        },
    );
    let runtime = std::sync::Arc::new(drover_node::HollowRuntime::seeded(
        drover_node::HollowConfig::default(),
        1,
    ));
    let agent = gossip_agent(&store, runtime.clone(), cp.addr()).await;
    wait_for(&store, nodes, None, "node-1 GossipReachable", |n| {
        n.get("node-1")
            .is_some_and(|n| condition_is(n, GOSSIP_CONDITION, "True", "MemberAlive"))
    })
    .await;

    store
        .create(
            kind("", "services"),
            json!({"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": "web", "namespace": "ns"},
                   "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
        )
        .await
        .unwrap();
    let mut pod = template("web");
    pod["apiVersion"] = json!("v1");
    pod["kind"] = json!("Pod");
    pod["metadata"]["name"] = json!("tolerant");
    pod["metadata"]["namespace"] = json!("ns");
    pod["spec"]["nodeName"] = json!("node-1");
    pod["spec"]["tolerations"] = json!([
        {"key": UNREACHABLE_TAINT_KEY, "operator": "Exists", "effect": "NoExecute"}
    ]);
    let created = store.create(pods, pod).await.unwrap();
    let running = wait_for(
        &store,
        pods,
        Some("ns"),
        "tolerant Running and Ready",
        |p| p.get("tolerant").is_some_and(common::running_ready),
    )
    .await;
    let ip = running["tolerant"]["status"]["podIP"]
        .as_str()
        .expect("a pod IP")
        .to_string();
    wait_for(&store, slices, Some("ns"), "a ready endpoint", |s| {
        endpoint_ready(s, &ip) == Some(true)
    })
    .await;

    // The agent stops (it leaves the gossip: Down at once). The pod stays, Ready False,
    // and is no longer a ready endpoint.
    agent.stop().await;
    wait_for(&store, nodes, None, "node-1 down", |n| {
        n.get("node-1")
            .is_some_and(|n| condition_is(n, "Ready", "Unknown", "NodeStatusUnknown"))
    })
    .await;
    let marked = wait_for(&store, pods, Some("ns"), "tolerant Ready False", |p| {
        p.get("tolerant").is_some_and(|p| pod_ready(p) == "False")
    })
    .await;
    let marked = &marked["tolerant"];
    assert_eq!(uid(marked), uid(&created), "the pod stays (it tolerates)");
    assert!(!object::is_terminating(marked), "the pod is not evicted");
    assert_eq!(
        condition(marked, "ContainersReady").map(|c| c["status"].clone()),
        Some(json!("True")),
        "only Ready changes, as in Kubernetes"
    );
    wait_for(&store, slices, Some("ns"), "the endpoint not ready", |s| {
        endpoint_ready(s, &ip) == Some(false)
    })
    .await;
    wait_for(
        &store,
        kind("", "events"),
        Some("ns"),
        "a NodeNotReady event on the pod",
        |e| {
            e.values().any(|e| {
                e["reason"] == "NodeNotReady"
                    && e["involvedObject"]["name"] == "tolerant"
                    && e["type"] == "Warning"
            })
        },
    )
    .await;

    // The agent comes back on the same runtime: the node is Up again and the agent, which
    // re-adopts the running pod, reports it Ready; the endpoint is ready again.
    let agent = gossip_agent(&store, runtime, cp.addr()).await;
    wait_for(&store, nodes, None, "node-1 restored", |n| {
        n.get("node-1").is_some_and(|n| {
            unreachable_taints(n).is_empty() && condition_is(n, "Ready", "True", "KubeletReady")
        })
    })
    .await;
    let back = wait_for(&store, pods, Some("ns"), "tolerant Ready again", |p| {
        p.get("tolerant").is_some_and(common::running_ready)
    })
    .await;
    assert_eq!(uid(&back["tolerant"]), uid(&created));
    wait_for(
        &store,
        slices,
        Some("ns"),
        "the endpoint ready again",
        |s| endpoint_ready(s, &ip) == Some(true),
    )
    .await;

    agent.stop().await;
    controllers.stop().await;
}
