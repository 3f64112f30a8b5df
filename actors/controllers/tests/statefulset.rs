//! The StatefulSet controller end to end: real nats-server and store, the controllers as
//! `drover up` runs them, hollow node agents, and the test binder (see common). Timeouts
//! are failure guards only.

mod common;

use std::collections::BTreeMap;

use common::{Env, edit, kind, label, running_ready, wait_for};
use drover_store::{DeleteOptions, WatchEvent, WatchOptions, object};
use futures::StreamExt;
use serde_json::{Value, json};

fn sts(name: &str, replicas: i64, policy: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "podManagementPolicy": policy,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox:1"}]},
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            }],
        },
    })
}

fn web_pods(pods: &BTreeMap<String, Value>, prefix: &str) -> Vec<Value> {
    pods.values()
        .filter(|p| object::name(p).starts_with(&format!("{prefix}-")))
        .cloned()
        .collect()
}

/// Records every pod change in order, to check orderings after the fact.
fn record(store: &drover_store::Store) -> tokio::sync::mpsc::UnboundedReceiver<WatchEvent> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let store = store.clone();
    tokio::spawn(async move {
        let mut w = store
            .watch(kind("", "pods"), Some("ns"), 0, WatchOptions::default())
            .await
            .unwrap();
        while let Some(Ok(e)) = w.next().await {
            if tx.send(e).is_err() {
                return;
            }
        }
    });
    rx
}

fn drain(rx: &mut tokio::sync::mpsc::UnboundedReceiver<WatchEvent>) -> Vec<WatchEvent> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        out.push(e);
    }
    out
}

async fn set_status(env: &Env, name: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let sets = wait_for(
        &env.store,
        kind("apps", "statefulsets"),
        Some("ns"),
        &format!("statefulset {name}"),
        |s| s.get(name).is_some_and(&pred),
    )
    .await;
    sets[name].clone()
}

fn i(v: &Value, p: &str) -> i64 {
    v.pointer(p).and_then(Value::as_i64).unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_creation_identity_partition_rollout_and_reverse_scale_down() {
    let mut env = Env::start().await;
    for idx in 0..3 {
        env.add_node(idx, &[], &[]).await;
    }
    let mut log = record(&env.store);
    let sets = kind("apps", "statefulsets");
    env.store
        .create(sets, sts("web", 3, "OrderedReady"))
        .await
        .unwrap();
    let set = set_status(&env, "web", |s| i(s, "/status/readyReplicas") == 3).await;
    assert_eq!(i(&set, "/status/replicas"), 3);
    assert_eq!(
        set["status"]["currentRevision"],
        set["status"]["updateRevision"]
    );
    let first_revision = set["status"]["updateRevision"]
        .as_str()
        .unwrap()
        .to_string();

    // OrderedReady: web-k was created only once web-(k-1) was Running and Ready.
    let mut state: BTreeMap<String, Value> = BTreeMap::new();
    for e in drain(&mut log) {
        match e {
            WatchEvent::Added(p) => {
                let name = object::name(&p).to_string();
                if let Some(k) = name
                    .strip_prefix("web-")
                    .and_then(|k| k.parse::<i64>().ok())
                    && k > 0
                {
                    let prev = state.get(&format!("web-{}", k - 1));
                    assert!(
                        prev.is_some_and(running_ready),
                        "{name} created before web-{} was ready",
                        k - 1
                    );
                }
                state.insert(name, p);
            }
            WatchEvent::Modified(p) => {
                state.insert(object::name(&p).to_string(), p);
            }
            _ => {}
        }
    }

    // Identity: labels, hostname/subdomain, the per-ordinal claim, bound to a local PV
    // on the pod's node.
    let pods = wait_for(
        &env.store,
        kind("", "pods"),
        Some("ns"),
        "3 ready pods",
        |p| {
            web_pods(p, "web")
                .iter()
                .filter(|p| running_ready(p))
                .count()
                == 3
        },
    )
    .await;
    let claims = wait_for(
        &env.store,
        kind("", "persistentvolumeclaims"),
        Some("ns"),
        "3 bound claims",
        |c| {
            c.values()
                .filter(|c| c["status"]["phase"] == "Bound")
                .count()
                == 3
        },
    )
    .await;
    let volumes = wait_for(
        &env.store,
        kind("", "persistentvolumes"),
        None,
        "3 volumes",
        |v| v.len() == 3,
    )
    .await;
    for k in 0..3 {
        let pod = &pods[&format!("web-{k}")];
        assert_eq!(
            label(pod, "statefulset.kubernetes.io/pod-name"),
            format!("web-{k}")
        );
        assert_eq!(label(pod, "apps.kubernetes.io/pod-index"), k.to_string());
        assert_eq!(label(pod, "controller-revision-hash"), first_revision);
        assert_eq!(pod["spec"]["hostname"], format!("web-{k}"));
        assert_eq!(pod["spec"]["subdomain"], "web");
        let claim_name = format!("data-web-{k}");
        assert!(
            pod["spec"]["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v["persistentVolumeClaim"]["claimName"] == claim_name.as_str()),
            "{pod}"
        );
        let claim = &claims[&claim_name];
        let pv = &volumes[claim["spec"]["volumeName"].as_str().unwrap()];
        assert_eq!(pv["spec"]["claimRef"]["name"], claim_name.as_str());
        assert_eq!(
            pv.pointer(
                "/spec/nodeAffinity/required/nodeSelectorTerms/0/matchExpressions/0/values/0"
            ),
            pod.pointer("/spec/nodeName"),
        );
    }
    // kubectl rollout history reads these.
    let revisions = wait_for(
        &env.store,
        kind("apps", "controllerrevisions"),
        Some("ns"),
        "one revision",
        |r| r.len() == 1,
    )
    .await;
    assert_eq!(revisions[&first_revision]["revision"], 1);

    // Deleting web-1 brings back web-1: new pod, same name, same claim, same node.
    let old = pods["web-1"].clone();
    let old_claim_uid = claims["data-web-1"]["metadata"]["uid"].clone();
    env.store
        .delete(
            kind("", "pods"),
            Some("ns"),
            "web-1",
            &DeleteOptions {
                grace_period_seconds: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let pods = wait_for(
        &env.store,
        kind("", "pods"),
        Some("ns"),
        "web-1 back",
        |p| {
            p.get("web-1")
                .is_some_and(|p| p["metadata"]["uid"] != old["metadata"]["uid"] && running_ready(p))
        },
    )
    .await;
    let new = &pods["web-1"];
    assert_eq!(
        new["spec"]["nodeName"], old["spec"]["nodeName"],
        "the local volume pins web-1 to its node"
    );
    assert_eq!(new["spec"]["volumes"], old["spec"]["volumes"]);
    let claim = env
        .store
        .get(kind("", "persistentvolumeclaims"), Some("ns"), "data-web-1")
        .await
        .unwrap();
    assert_eq!(
        claim["metadata"]["uid"], old_claim_uid,
        "the claim outlived the pod"
    );

    // Partition 2 with a new image: only web-2 moves to the new revision.
    edit(&env.store, sets, Some("ns"), "web", |set| {
        set["spec"]["updateStrategy"] =
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 2}});
        set["spec"]["template"]["spec"]["containers"][0]["image"] = json!("busybox:2");
    })
    .await;
    let set = set_status(&env, "web", |s| {
        i(s, "/status/updatedReplicas") == 1
            && i(s, "/status/readyReplicas") == 3
            && s["status"]["updateRevision"] != first_revision.as_str()
            && i(s, "/status/observedGeneration") == i(s, "/metadata/generation")
    })
    .await;
    let second_revision = set["status"]["updateRevision"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(set["status"]["currentRevision"], first_revision.as_str());
    let pods = wait_for(
        &env.store,
        kind("", "pods"),
        Some("ns"),
        "web-2 updated",
        |p| {
            p.get("web-2").is_some_and(|p| {
                label(p, "controller-revision-hash") == second_revision && running_ready(p)
            })
        },
    )
    .await;
    assert_eq!(
        label(&pods["web-0"], "controller-revision-hash"),
        first_revision
    );
    assert_eq!(
        label(&pods["web-1"], "controller-revision-hash"),
        first_revision
    );
    assert_eq!(pods["web-2"]["spec"]["containers"][0]["image"], "busybox:2");

    // Partition 0: the rest follows, from the highest ordinal down.
    drain(&mut log);
    edit(&env.store, sets, Some("ns"), "web", |set| {
        set["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = json!(0);
    })
    .await;
    let set = set_status(&env, "web", |s| {
        i(s, "/status/updatedReplicas") == 3
            && i(s, "/status/readyReplicas") == 3
            && s["status"]["currentRevision"] == second_revision.as_str()
    })
    .await;
    assert_eq!(i(&set, "/status/currentReplicas"), 3);
    let order: Vec<String> = drain(&mut log)
        .into_iter()
        .filter_map(|e| match e {
            WatchEvent::Added(p) => Some(object::name(&p).to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(
        order,
        ["web-1", "web-0"],
        "updated from the highest ordinal down"
    );

    // Scale down to 1: web-2 goes before web-1; the claims stay (Retain).
    edit(&env.store, sets, Some("ns"), "web", |set| {
        set["spec"]["replicas"] = json!(1);
    })
    .await;
    set_status(&env, "web", |s| {
        i(s, "/status/replicas") == 1 && i(s, "/status/readyReplicas") == 1
    })
    .await;
    let deleted: Vec<String> = drain(&mut log)
        .into_iter()
        .filter_map(|e| match e {
            WatchEvent::Deleted(p) => Some(object::name(&p).to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(deleted, ["web-2", "web-1"]);
    let claims = env
        .store
        .list(
            kind("", "persistentvolumeclaims"),
            Some("ns"),
            &Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(claims.items.len(), 3, "claims are retained on scale down");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_creates_every_pod_without_waiting() {
    let mut env = Env::start().await;
    env.add_node(0, &[], &[]).await;
    // No node has the label, so no pod is ever bound (hence never Ready): OrderedReady
    // would stop at web-0; Parallel creates all three.
    let mut set = sts("par", 3, "Parallel");
    set["spec"]["template"]["spec"]["nodeSelector"] = json!({"disk": "none"});
    env.store
        .create(kind("apps", "statefulsets"), set)
        .await
        .unwrap();
    let pods = wait_for(&env.store, kind("", "pods"), Some("ns"), "3 pods", |p| {
        web_pods(p, "par").len() == 3
    })
    .await;
    assert!(pods.values().all(|p| p.pointer("/spec/nodeName").is_none()));
    let mut ordered = sts("ord", 3, "OrderedReady");
    ordered["spec"]["template"]["spec"]["nodeSelector"] = json!({"disk": "none"});
    env.store
        .create(kind("apps", "statefulsets"), ordered)
        .await
        .unwrap();
    set_status(&env, "ord", |s| i(s, "/status/replicas") == 1).await;
    set_status(&env, "par", |s| {
        i(s, "/status/replicas") == 3 && i(s, "/status/readyReplicas") == 0
    })
    .await;
    let pods = env
        .store
        .list(kind("", "pods"), Some("ns"), &Default::default())
        .await
        .unwrap();
    let ord: Vec<&str> = pods
        .items
        .iter()
        .map(object::name)
        .filter(|n| n.starts_with("ord-"))
        .collect();
    assert_eq!(ord, ["ord-0"], "OrderedReady waits for ord-0");
    env.stop().await;
}
