//! The EndpointSlice mirroring controller end to end: real nats-server and store, the
//! controllers as `drover up` runs them, Services and hand-written Endpoints written
//! through the store. Waits follow the slices' watch history; timeouts are failure
//! guards only.

mod common;

use std::collections::BTreeMap;

use common::{Env, edit, kind, wait_for};
use drover_store::{DeleteOptions, ListOptions};
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

/// Waits until `name` has exactly one mirrored slice with these endpoints and first
/// port; returns it.
async fn one_slice(env: &Env, name: &str, want: &[&str], port: i64) -> Value {
    let all = wait_for(&env.store, slices(), Some(NS), name, |all| {
        let ours = mirrored(all, name);
        ours.len() == 1 && eps(ours[0]) == want && ours[0]["ports"][0]["port"] == port
    })
    .await;
    mirrored(&all, name)[0].clone()
}

async fn no_slices(env: &Env, name: &str) {
    wait_for(&env.store, slices(), Some(NS), name, |all| {
        mirrored(all, name).is_empty()
    })
    .await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_with_a_selector_are_not_mirrored() {
    let env = Env::start().await;
    let subsets = json!([{"addresses": [{"ip": "192.0.2.9"}], "ports": [{"port": 80}]}]);
    // Service with a selector and a hand-written Endpoints: not mirrored. That the
    // controller looked at it shows when the selector goes (a slice appears) and comes
    // back (the slice goes).
    env.store
        .create(services(), service("sel", Some(json!({"app": "sel"}))))
        .await
        .unwrap();
    env.store
        .create(endpoints(), user_endpoints("sel", subsets.clone()))
        .await
        .unwrap();
    // A skip-mirror Endpoints of a selectorless Service, created before the first
    // edit below: a mirrored slice for it would show in the same watch.
    let mut skip = user_endpoints("skip", subsets);
    skip["metadata"]["labels"]["endpointslice.kubernetes.io/skip-mirror"] = json!("true");
    env.store.create(endpoints(), skip).await.unwrap();
    env.store
        .create(services(), service("skip", None))
        .await
        .unwrap();

    edit(&env.store, services(), Some(NS), "sel", |s| {
        s["spec"].as_object_mut().unwrap().remove("selector");
    })
    .await;
    one_slice(&env, "sel", &["192.0.2.9"], 80).await;
    edit(&env.store, services(), Some(NS), "sel", |s| {
        s["spec"]["selector"] = json!({"app": "sel"});
    })
    .await;
    no_slices(&env, "sel").await;

    // The Service goes (selectorless again first): the mirrored slice goes with it.
    edit(&env.store, services(), Some(NS), "sel", |s| {
        s["spec"].as_object_mut().unwrap().remove("selector");
    })
    .await;
    one_slice(&env, "sel", &["192.0.2.9"], 80).await;
    env.store
        .delete(services(), Some(NS), "sel", &DeleteOptions::default())
        .await
        .unwrap();
    no_slices(&env, "sel").await;
    let listed = env
        .store
        .list(slices(), Some(NS), &ListOptions::default())
        .await
        .unwrap();
    let all: BTreeMap<String, Value> = listed
        .items
        .into_iter()
        .map(|s| (drover_store::object::name(&s).to_string(), s))
        .collect();
    assert!(
        mirrored(&all, "skip").is_empty(),
        "skip-mirror was mirrored"
    );
    env.stop().await;
}
