//! The EndpointSlice mirroring controller end to end: real nats-server and store, the
//! controllers as `drover up` runs them, Services and hand-written Endpoints written
//! through the store. Waits follow the slices' watch history; timeouts are failure
//! guards only.

mod common;

use std::collections::BTreeMap;

use common::{Env, edit, kind};
use drover_store::{DeleteOptions, ListOptions, WatchEvent, WatchOptions, object};
use futures::StreamExt;
use serde_json::{Value, json};

const NS: &str = "ns";
const MIRRORED: &str = "endpointslicemirroring-controller.k8s.io";

fn slices() -> &'static bus_schema::KindInfo {
    kind("discovery.k8s.io", "endpointslices")
}

fn endpoints() -> &'static bus_schema::KindInfo {
    kind("", "endpoints")
}

fn services() -> &'static bus_schema::KindInfo {
    kind("", "services")
}

fn service(name: &str, selector: Option<Value>) -> Value {
    let mut s = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"ports": [{"name": "http", "port": 80}]}});
    if let Some(sel) = selector {
        s["spec"]["selector"] = sel;
    }
    s
}

fn user_endpoints(name: &str, subsets: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": name, "namespace": NS, "labels": {"team": "a"}},
        "subsets": subsets})
}

/// The mirrored slices of `name` among `all`.
fn mirrored<'a>(all: &'a BTreeMap<String, Value>, name: &str) -> Vec<&'a Value> {
    all.values()
        .filter(|s| {
            s.pointer("/metadata/labels/kubernetes.io~1service-name")
                .and_then(Value::as_str)
                == Some(name)
                && s.pointer("/metadata/labels/endpointslice.kubernetes.io~1managed-by")
                    .and_then(Value::as_str)
                    == Some(MIRRORED)
        })
        .collect()
}

/// A slice's endpoints as `ip` (ready) or `ip!` (not ready), sorted.
fn eps(slice: &Value) -> Vec<String> {
    let mut v: Vec<String> = slice["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let ready = e["conditions"]["ready"] == json!(true);
            format!(
                "{}{}",
                e["addresses"][0].as_str().unwrap_or("?"),
                if ready { "" } else { "!" }
            )
        })
        .collect();
    v.sort();
    v
}

/// Waits until `pred` holds for the current slices of the namespace: a list, then its
/// watch from the list's revision (never the older history, where a state the test
/// already left may match).
async fn wait_current(
    env: &Env,
    what: &str,
    pred: impl Fn(&BTreeMap<String, Value>) -> bool,
) -> BTreeMap<String, Value> {
    let listed = env
        .store
        .list(slices(), Some(NS), &ListOptions::default())
        .await
        .unwrap();
    let mut all: BTreeMap<String, Value> = listed
        .items
        .into_iter()
        .map(|s| (object::name(&s).to_string(), s))
        .collect();
    if pred(&all) {
        return all;
    }
    let mut watch = env
        .store
        .watch(
            slices(),
            Some(NS),
            listed.resource_version,
            WatchOptions::default(),
        )
        .await
        .unwrap();
    let waited = tokio::time::timeout(common::GUARD, async {
        while let Some(event) = watch.next().await {
            match event.unwrap() {
                WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                    all.insert(object::name(&o).to_string(), o);
                }
                WatchEvent::Deleted(o) => {
                    all.remove(object::name(&o));
                }
                WatchEvent::Bookmark(_) => {}
            }
            if pred(&all) {
                return all;
            }
        }
        panic!("watch ended")
    })
    .await;
    waited.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Waits until `name` has exactly one mirrored slice with these endpoints and first
/// port; returns it.
async fn one_slice(env: &Env, name: &str, want: &[&str], port: i64) -> Value {
    let all = wait_current(env, name, |all| {
        let ours = mirrored(all, name);
        ours.len() == 1 && eps(ours[0]) == want && ours[0]["ports"][0]["port"] == port
    })
    .await;
    mirrored(&all, name)[0].clone()
}

async fn no_slices(env: &Env, name: &str) -> BTreeMap<String, Value> {
    wait_current(env, name, |all| mirrored(all, name).is_empty()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_of_a_selectorless_service_are_mirrored_updated_and_removed() {
    let env = Env::start().await;
    // The Endpoints first, then its Service: mirroring starts when both exist.
    let subsets = json!([{
        "addresses": [{"ip": "192.0.2.1", "hostname": "one"}],
        "notReadyAddresses": [{"ip": "192.0.2.2"}],
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
    }]);
    let stored = env
        .store
        .create(endpoints(), user_endpoints("ext", subsets))
        .await
        .unwrap();
    env.store
        .create(services(), service("ext", None))
        .await
        .unwrap();
    let slice = one_slice(&env, "ext", &["192.0.2.1", "192.0.2.2!"], 80).await;
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(slice["metadata"]["labels"]["team"], "a");
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Endpoints");
    assert_eq!(
        slice["metadata"]["ownerReferences"][0]["uid"],
        stored["metadata"]["uid"]
    );
    assert_eq!(slice["endpoints"][0]["hostname"], "one");

    // The user edits the Endpoints: one more address, another port. The slice is
    // rewritten in place (its name stays).
    edit(&env.store, endpoints(), Some(NS), "ext", |e| {
        e["subsets"][0]["addresses"]
            .as_array_mut()
            .unwrap()
            .push(json!({"ip": "192.0.2.3"}));
        e["subsets"][0]["ports"][0]["port"] = json!(8080);
    })
    .await;
    let moved = one_slice(&env, "ext", &["192.0.2.1", "192.0.2.2!", "192.0.2.3"], 8080).await;
    assert_eq!(moved["metadata"]["name"], slice["metadata"]["name"]);

    // The Endpoints goes: so do its slices.
    env.store
        .delete(endpoints(), Some(NS), "ext", &DeleteOptions::default())
        .await
        .unwrap();
    no_slices(&env, "ext").await;
    env.stop().await;
}

/// A Deployment of `replicas` pods labelled `app: <name>`.
fn deployment(name: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"terminationGracePeriodSeconds": 0,
                         "containers": [{"name": "main", "image": "busybox"}]},
            },
        },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_with_a_selector_are_not_mirrored() {
    let mut env = Env::start().await;
    env.add_node(0, &[], &[]).await;
    // A Service with a selector over a running pod: the Endpoints controller writes its
    // Endpoints (with the pod's address), the EndpointSlice controller its slice;
    // mirroring stays out.
    env.store
        .create(kind("apps", "deployments"), deployment("sel", 1))
        .await
        .unwrap();
    env.store
        .create(services(), service("sel", Some(json!({"app": "sel"}))))
        .await
        .unwrap();
    let all = common::wait_for(&env.store, endpoints(), Some(NS), "sel endpoints", |all| {
        all.get("sel").is_some_and(|e| {
            e.pointer("/subsets/0/addresses/0/ip")
                .and_then(Value::as_str)
                .is_some()
        })
    })
    .await;
    let pod_ip = all["sel"]["subsets"][0]["addresses"][0]["ip"]
        .as_str()
        .unwrap()
        .to_string();
    // A skip-mirror Endpoints of a selectorless Service.
    let subsets = json!([{"addresses": [{"ip": "192.0.2.9"}], "ports": [{"port": 80}]}]);
    let mut skip = user_endpoints("skip", subsets);
    skip["metadata"]["labels"]["endpointslice.kubernetes.io/skip-mirror"] = json!("true");
    env.store.create(endpoints(), skip).await.unwrap();
    env.store
        .create(services(), service("skip", None))
        .await
        .unwrap();

    // The selector goes: the Endpoints (now the user's) is mirrored. It comes back:
    // the mirrored slice goes although the Endpoints still lists the pod.
    edit(&env.store, services(), Some(NS), "sel", |s| {
        s["spec"].as_object_mut().unwrap().remove("selector");
    })
    .await;
    one_slice(&env, "sel", &[pod_ip.as_str()], 80).await;
    edit(&env.store, services(), Some(NS), "sel", |s| {
        s["spec"]["selector"] = json!({"app": "sel"});
    })
    .await;
    no_slices(&env, "sel").await;
    let ep = env.store.get(endpoints(), Some(NS), "sel").await.unwrap();
    assert_eq!(ep["subsets"][0]["addresses"][0]["ip"], pod_ip.as_str());

    // The Service goes (selectorless again first): the mirrored slice goes with it.
    edit(&env.store, services(), Some(NS), "sel", |s| {
        s["spec"].as_object_mut().unwrap().remove("selector");
    })
    .await;
    one_slice(&env, "sel", &[pod_ip.as_str()], 80).await;
    env.store
        .delete(services(), Some(NS), "sel", &DeleteOptions::default())
        .await
        .unwrap();
    let all = no_slices(&env, "sel").await;
    assert!(
        mirrored(&all, "skip").is_empty(),
        "skip-mirror was mirrored"
    );
    env.stop().await;
}
