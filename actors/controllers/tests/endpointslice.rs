//! The EndpointSlice and Endpoints controller end to end: real nats-server and store,
//! the controllers as `drover up` runs them, hollow node agents (they give pods IPs from
//! the node's pod CIDR and mark them Ready) and the test binder (see common). Waits
//! follow the objects' watch history from the start, so every state the controller
//! wrote is seen; timeouts are failure guards only.

mod common;

use std::collections::BTreeMap;

use common::{Env, edit, kind, wait_for};
use drover_store::{DeleteOptions, WatchEvent, WatchOptions, object};
use futures::StreamExt;
use serde_json::{Value, json};

const NS: &str = "ns";
const ZONE: &str = "topology.kubernetes.io/zone";

fn slices() -> &'static bus_schema::KindInfo {
    kind("discovery.k8s.io", "endpointslices")
}

fn endpoints() -> &'static bus_schema::KindInfo {
    kind("", "endpoints")
}

fn service(name: &str, target_port: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NS, "labels": {"team": "a"}},
        "spec": {
            "selector": {"app": name},
            "clusterIP": "10.96.0.20",
            "ports": [{"name": "http", "port": 80, "targetPort": target_port, "protocol": "TCP"}],
        },
    })
}

fn deployment(name: &str, replicas: i64, container: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"terminationGracePeriodSeconds": 0, "containers": [container]},
            },
        },
    })
}

/// The controller's slices of Service `svc` among `all`.
fn slices_of<'a>(all: &'a BTreeMap<String, Value>, svc: &str) -> Vec<&'a Value> {
    all.values()
        .filter(|s| {
            s.pointer("/metadata/labels/kubernetes.io~1service-name")
                .and_then(Value::as_str)
                == Some(svc)
                && s.pointer("/metadata/labels/endpointslice.kubernetes.io~1managed-by")
                    .and_then(Value::as_str)
                    == Some("endpointslice-controller.k8s.io")
        })
        .collect()
}

fn eps(slice: &Value) -> Vec<&Value> {
    slice
        .get("endpoints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect()
}

fn ready_count(slice: &Value) -> usize {
    eps(slice)
        .iter()
        .filter(|e| e["conditions"]["ready"] == true)
        .count()
}

fn addresses(endpoints: &Value, field: &str) -> usize {
    endpoints
        .get("subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|s| s.get(field).and_then(Value::as_array).map_or(0, Vec::len))
        .sum()
}

/// Waits until Service `svc` has exactly one slice of ours satisfying `pred`; returns it.
async fn one_slice(env: &Env, svc: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let all = wait_for(&env.store, slices(), Some(NS), what, |all| {
        let ours = slices_of(all, svc);
        ours.len() == 1 && pred(ours[0])
    })
    .await;
    slices_of(&all, svc)[0].clone()
}

async fn endpoints_where(env: &Env, svc: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let all = wait_for(&env.store, endpoints(), Some(NS), what, |all| {
        all.get(svc).is_some_and(&pred)
    })
    .await;
    all[svc].clone()
}

/// How many times `name` of `kind` was written up to its current version (its watch
/// history from the start of the bucket).
async fn writes(env: &Env, kind: &'static bus_schema::KindInfo, name: &str) -> usize {
    let current = env.store.get(kind, Some(NS), name).await.unwrap();
    let until = object::meta_str(&current, "resourceVersion")
        .and_then(|r| r.parse::<u64>().ok())
        .unwrap();
    let mut watch = env
        .store
        .watch(kind, Some(NS), 0, WatchOptions::default())
        .await
        .unwrap();
    let mut n = 0;
    let count = async {
        while let Some(Ok(event)) = watch.next().await {
            if let WatchEvent::Added(o) | WatchEvent::Modified(o) = event
                && object::name(&o) == name
            {
                n += 1;
                let rv: u64 = object::meta_str(&o, "resourceVersion")
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(0);
                if rv >= until {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(common::GUARD, count).await.unwrap();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_behind_a_service_gets_one_slice_that_follows_its_scale() {
    let mut env = Env::start().await;
    env.add_node(0, &[(ZONE, "zone-a")], &[]).await;
    env.add_node(1, &[(ZONE, "zone-a")], &[]).await;
    let container = json!({"name": "main", "image": "busybox"});
    env.store
        .create(kind("apps", "deployments"), deployment("web", 3, container))
        .await
        .unwrap();
    let svc = env
        .store
        .create(kind("", "services"), service("web", json!(8080)))
        .await
        .unwrap();

    let slice = one_slice(&env, "web", "3 ready endpoints", |s| {
        eps(s).len() == 3 && ready_count(s) == 3
    })
    .await;
    let name = object::name(&slice).to_string();
    assert!(name.starts_with("web-"), "{name}");
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(
        slice["ports"],
        json!([{"name": "http", "port": 8080, "protocol": "TCP"}])
    );
    assert_eq!(slice["metadata"]["labels"]["team"], "a");
    let owner = &slice["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "Service");
    assert_eq!(owner["uid"], svc["metadata"]["uid"]);
    for ep in eps(&slice) {
        assert_eq!(ep["zone"], "zone-a", "{ep}");
        assert!(
            ep["nodeName"].as_str().is_some_and(|n| !n.is_empty()),
            "{ep}"
        );
        assert_eq!(ep["targetRef"]["kind"], "Pod");
        let ip = ep["addresses"][0].as_str().unwrap();
        assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "{ip}");
    }
    let e = endpoints_where(&env, "web", "3 addresses", |e| {
        addresses(e, "addresses") == 3
    })
    .await;
    assert_eq!(e["subsets"][0]["ports"][0]["port"], 8080);
    assert!(
        e.pointer("/metadata/annotations/endpoints.kubernetes.io~1last-change-trigger-time")
            .is_some()
    );

    // Scale up: the same slice takes the new endpoints.
    edit(
        &env.store,
        kind("apps", "deployments"),
        Some(NS),
        "web",
        |d| d["spec"]["replicas"] = json!(5),
    )
    .await;
    let slice = one_slice(&env, "web", "5 ready endpoints", |s| ready_count(s) == 5).await;
    assert_eq!(
        object::name(&slice),
        name,
        "the slice is reused, not replaced"
    );
    endpoints_where(&env, "web", "5 addresses", |e| {
        addresses(e, "addresses") == 5
    })
    .await;

    // Scale to zero: the slice stays, empty.
    edit(
        &env.store,
        kind("apps", "deployments"),
        Some(NS),
        "web",
        |d| d["spec"]["replicas"] = json!(0),
    )
    .await;
    let slice = one_slice(&env, "web", "no endpoints", |s| eps(s).is_empty()).await;
    assert_eq!(object::name(&slice), name);
    endpoints_where(&env, "web", "no subsets", |e| {
        e.get("subsets")
            .is_none_or(|s| s.as_array().is_some_and(Vec::is_empty))
    })
    .await;

    // Writes, for the record: every version of the slice and the Endpoints so far
    // (the bucket history; 3 -> 5 -> 0 pods, each pod Pending then Running and Ready).
    for (k, n) in [(slices(), name.as_str()), (endpoints(), "web")] {
        eprintln!("{} {n}: {} writes", k.plural, writes(&env, k, n).await);
    }
    // The Service goes: its Endpoints go with it (the slice follows its owner).
    env.store
        .delete(
            kind("", "services"),
            Some(NS),
            "web",
            &DeleteOptions::default(),
        )
        .await
        .unwrap();
    wait_for(
        &env.store,
        endpoints(),
        Some(NS),
        "endpoints deleted",
        |all| !all.contains_key("web"),
    )
    .await;
    wait_for(&env.store, slices(), Some(NS), "slice collected", |all| {
        slices_of(all, "web").is_empty()
    })
    .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_pod_is_terminating_in_its_slice_until_it_is_gone() {
    let mut env = Env::start().await;
    env.add_node(0, &[], &[]).await;
    // The preStop hook keeps the deleted pod's container running (and the pod
    // terminating) far longer than the controller needs to show it.
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "t1", "namespace": NS, "labels": {"app": "term"}},
        "spec": {
            "terminationGracePeriodSeconds": 120,
            "containers": [{"name": "main", "image": "busybox",
                            "lifecycle": {"preStop": {"sleep": {"seconds": 100}}}}],
        },
    });
    env.store.create(kind("", "pods"), pod).await.unwrap();
    env.store
        .create(kind("", "services"), service("term", json!(8080)))
        .await
        .unwrap();
    one_slice(&env, "term", "t1 ready", |s| ready_count(s) == 1).await;

    let graceful = DeleteOptions {
        grace_period_seconds: Some(120),
        ..Default::default()
    };
    env.store
        .delete(kind("", "pods"), Some(NS), "t1", &graceful)
        .await
        .unwrap();
    let slice = one_slice(&env, "term", "t1 terminating", |s| {
        eps(s)
            .first()
            .is_some_and(|e| e["conditions"]["terminating"] == true)
    })
    .await;
    let ep = eps(&slice)[0];
    assert_eq!(ep["conditions"]["ready"], false, "{ep}");
    assert_eq!(ep["targetRef"]["name"], "t1");
    // The legacy Endpoints leave terminating pods out.
    endpoints_where(&env, "term", "t1 left out", |e| {
        addresses(e, "addresses") + addresses(e, "notReadyAddresses") == 0
    })
    .await;

    let force = DeleteOptions {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    match env
        .store
        .delete(kind("", "pods"), Some(NS), "t1", &force)
        .await
    {
        Ok(_) | Err(drover_store::StoreError::NotFound { .. }) => {}
        Err(e) => panic!("force delete: {e}"),
    }
    one_slice(&env, "term", "t1 gone", |s| eps(s).is_empty()).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_target_port_is_resolved_per_pod_and_selectorless_services_are_left_alone() {
    let mut env = Env::start().await;
    env.add_node(0, &[], &[]).await;
    // A Service without selector and its user-managed Endpoints, written first (as
    // users often do: an Endpoints without its Service is not a leftover to delete).
    let user_endpoints = json!({"apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "manual", "namespace": NS},
        "subsets": [{"addresses": [{"ip": "192.0.2.1"}], "ports": [{"port": 80}]}]});
    let user_endpoints = env.store.create(endpoints(), user_endpoints).await.unwrap();
    let manual = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "manual", "namespace": NS},
        "spec": {"ports": [{"port": 80}]}});
    env.store
        .create(kind("", "services"), manual)
        .await
        .unwrap();

    let container = json!({"name": "main", "image": "busybox",
                           "ports": [{"name": "web", "containerPort": 9376}]});
    env.store
        .create(
            kind("apps", "deployments"),
            deployment("named", 2, container),
        )
        .await
        .unwrap();
    // A pod the Service selects that has no port named "web": left out of that port.
    let bare = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bare", "namespace": NS, "labels": {"app": "named"}},
        "spec": {"terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "main", "image": "busybox"}]},
    });
    env.store.create(kind("", "pods"), bare).await.unwrap();
    env.store
        .create(kind("", "services"), service("named", json!("web")))
        .await
        .unwrap();
    let all = wait_for(&env.store, slices(), Some(NS), "two port groups", |all| {
        let ours = slices_of(all, "named");
        let with_port = ours
            .iter()
            .any(|s| s["ports"][0]["port"] == 9376 && ready_count(s) == 2);
        let without = ours.iter().any(|s| {
            s["ports"].as_array().is_some_and(Vec::is_empty)
                && eps(s).len() == 1
                && eps(s)[0]["targetRef"]["name"] == "bare"
        });
        ours.len() == 2 && with_port && without
    })
    .await;
    assert!(slices_of(&all, "manual").is_empty());
    endpoints_where(&env, "named", "2 addresses on 9376", |e| {
        addresses(e, "addresses") == 2 && e["subsets"][0]["ports"][0]["port"] == 9376
    })
    .await;
    // The controller has seen every change by now (the named Service's objects are
    // written); the user's Endpoints are as the user wrote them.
    let manual_now = env
        .store
        .get(endpoints(), Some(NS), "manual")
        .await
        .unwrap();
    assert_eq!(
        manual_now["metadata"]["resourceVersion"],
        user_endpoints["metadata"]["resourceVersion"]
    );
    env.stop().await;
}

/// Whether every endpoint of `slice` carries exactly the hints `want` gives it.
fn hinted(slice: &Value, want: impl Fn(&Value) -> Option<Value>) -> bool {
    !eps(slice).is_empty()
        && eps(slice)
            .iter()
            .all(|ep| ep.get("hints").cloned() == want(ep))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_distribution_and_topology_mode_give_endpoints_hints() {
    let mut env = Env::start().await;
    env.add_node(0, &[(ZONE, "zone-a")], &[]).await;
    env.add_node(1, &[(ZONE, "zone-b")], &[]).await;
    let container = json!({"name": "main", "image": "busybox"});
    env.store
        .create(
            kind("apps", "deployments"),
            deployment("near", 2, container),
        )
        .await
        .unwrap();
    let mut svc = service("near", json!(8080));
    svc["spec"]["trafficDistribution"] = json!("PreferSameNode");
    env.store.create(kind("", "services"), svc).await.unwrap();
    let zone_and_node = |ep: &Value| {
        Some(json!({"forZones": [{"name": ep["zone"]}], "forNodes": [{"name": ep["nodeName"]}]}))
    };
    one_slice(&env, "near", "node and zone hints", |s| {
        ready_count(s) == 2 && hinted(s, zone_and_node)
    })
    .await;

    let set = |f: fn(&mut Value)| edit(&env.store, kind("", "services"), Some(NS), "near", f);
    set(|s| s["spec"]["trafficDistribution"] = json!("PreferClose")).await;
    one_slice(&env, "near", "zone hints only", |s| {
        hinted(s, |ep| Some(json!({"forZones": [{"name": ep["zone"]}]})))
    })
    .await;
    set(|s| {
        s["spec"]
            .as_object_mut()
            .unwrap()
            .remove("trafficDistribution");
    })
    .await;
    one_slice(&env, "near", "no hints", |s| hinted(s, |_| None)).await;
    set(|s| {
        s["metadata"]["annotations"] = json!({"service.kubernetes.io/topology-mode": "Auto"});
    })
    .await;
    one_slice(&env, "near", "zone hints for topology-mode Auto", |s| {
        hinted(s, |ep| Some(json!({"forZones": [{"name": ep["zone"]}]})))
    })
    .await;
}
