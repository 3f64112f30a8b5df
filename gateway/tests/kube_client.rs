//! kube-rs as a client library against the gateway over TLS on a real store: typed
//! `Api<Pod>` create / get / list with a label selector / server-side apply (managedFields,
//! conflicts, force) / merge and strategic patches / watch / delete, and a
//! `kube::runtime::watcher` stream that carries on across a gateway restart.

mod common;

use std::time::Duration;

use common::Cluster;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Config};
use serde_json::json;

/// Failure guard for any single wait; never a timing assertion.
const GUARD: Duration = Duration::from_secs(60);

/// A kube-rs client configured from the harness's kubeconfig (CA and bearer token).
async fn client(c: &Cluster) -> Client {
    let kubeconfig = Kubeconfig::read_from(&c.kubeconfig).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

fn pod(name: &str, labels: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap()
}

fn labels(p: &Pod) -> std::collections::BTreeMap<String, String> {
    p.metadata.labels.clone().unwrap_or_default()
}

fn managers(p: &Pod) -> Vec<String> {
    p.metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|entry| entry.manager.clone())
        .collect()
}

/// The `Status` of a failed call, or a panic naming `what`.
fn api_error<T: std::fmt::Debug>(what: &str, result: kube::Result<T>) -> Box<kube::core::Status> {
    match result {
        Err(kube::Error::Api(status)) => status,
        other => panic!("{what}: expected an API error, got {other:?}"),
    }
}

/// The next item of `stream`, failing the test after [`GUARD`] or at the stream's end.
async fn next<S: Stream + Unpin>(what: &str, stream: &mut S) -> S::Item {
    tokio::time::timeout(GUARD, stream.next())
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .unwrap_or_else(|| panic!("stream ended before {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_pods_crud_patch_and_watch() {
    let c = Cluster::start().await;
    let pods: Api<Pod> = Api::namespaced(client(&c).await, "default");

    // Watch from "0" before anything exists: every later change arrives in order.
    let mut events = pods
        .watch(&WatchParams::default().labels("suite=kube"), "0")
        .await
        .unwrap()
        .boxed();

    let created = pods
        .create(
            &PostParams::default(),
            &pod("web", json!({"suite": "kube", "app": "web"})),
        )
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.resource_version.is_some());
    pods.create(
        &PostParams::default(),
        &pod("other", json!({"suite": "other"})),
    )
    .await
    .unwrap();

    let got = pods.get("web").await.unwrap();
    assert_eq!(got.metadata.uid, created.metadata.uid);
    assert_eq!(labels(&got)["app"], "web");

    let listed = pods
        .list(&ListParams::default().labels("suite=kube"))
        .await
        .unwrap();
    let names: Vec<_> = listed
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    assert_eq!(names, ["web"]);
    assert!(listed.metadata.resource_version.is_some());

    // Server-side apply: the manager owns what it applied.
    let apply = PatchParams::apply("kube-test");
    let applied = pods
        .patch(
            "web",
            &apply,
            &Patch::Apply(json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "web", "labels": {"owner": "kube-test"}},
            })),
        )
        .await
        .unwrap();
    assert_eq!(labels(&applied)["owner"], "kube-test");
    assert!(
        managers(&applied).contains(&"kube-test".to_string()),
        "{:?}",
        applied.metadata.managed_fields
    );

    // Another manager applying a different value for the same field conflicts...
    let rival = Patch::Apply(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "labels": {"owner": "rival"}},
    }));
    let status = api_error(
        "conflicting apply",
        pods.patch("web", &PatchParams::apply("rival"), &rival)
            .await,
    );
    assert_eq!(status.code, 409, "{status:?}");
    assert_eq!(status.reason, "Conflict", "{status:?}");

    // ...until it forces, taking the field over.
    let forced = pods
        .patch("web", &PatchParams::apply("rival").force(), &rival)
        .await
        .unwrap();
    assert_eq!(labels(&forced)["owner"], "rival");
    assert!(managers(&forced).contains(&"rival".to_string()));

    let merged = pods
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"merged": "yes"}}})),
        )
        .await
        .unwrap();
    assert_eq!(labels(&merged)["merged"], "yes");
    assert_eq!(labels(&merged)["app"], "web");

    let strategic = pods
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(json!({
                "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]},
            })),
        )
        .await
        .unwrap();
    let containers = &strategic.spec.as_ref().unwrap().containers;
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0].image.as_deref(), Some("busybox:1.36"));

    pods.delete("web", &DeleteParams::default()).await.unwrap();
    let status = api_error("get after delete", pods.get("web").await);
    assert_eq!(status.code, 404, "{status:?}");
    assert!(pods.get_opt("web").await.unwrap().is_none());

    // The watch saw the pod born, changed by every patch, and deleted; `other` is
    // filtered out by the label selector.
    let mut kinds = Vec::new();
    loop {
        let event = next("watch events", &mut events).await.unwrap();
        let (kind, p) = match event {
            WatchEvent::Added(p) => ("ADDED", p),
            WatchEvent::Modified(p) => ("MODIFIED", p),
            WatchEvent::Deleted(p) => ("DELETED", p),
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(status) => panic!("watch error: {status:?}"),
        };
        assert_eq!(p.metadata.name.as_deref(), Some("web"));
        kinds.push(kind);
        if kind == "DELETED" {
            break;
        }
    }
    assert_eq!(kinds.first(), Some(&"ADDED"), "{kinds:?}");
    assert!(kinds.contains(&"MODIFIED"), "{kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_watcher_survives_gateway_restart() {
    let mut c = Cluster::start().await;
    let pods: Api<Pod> = Api::namespaced(client(&c).await, "default");
    pods.create(&PostParams::default(), &pod("before", json!({})))
        .await
        .unwrap();

    // The watcher's own backoff retries across the restart; errors in between are
    // reported on the stream and skipped here.
    let mut applied = watcher(pods.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .filter_map(|item| async move { item.ok() })
        .boxed();
    let first = next("the pod created before the watcher", &mut applied).await;
    assert_eq!(first.metadata.name.as_deref(), Some("before"));

    c.restart_gateway().await;

    // The client (and its kubeconfig) is unchanged: same address, CA and token.
    pods.create(&PostParams::default(), &pod("after", json!({})))
        .await
        .unwrap();
    loop {
        let p = next("the pod created after the restart", &mut applied).await;
        if p.metadata.name.as_deref() == Some("after") {
            break;
        }
        // A relist after the restart may deliver `before` again.
        assert_eq!(p.metadata.name.as_deref(), Some("before"));
    }

    let names: Vec<_> = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_scale_and_collections() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Namespace;

    let c = Cluster::start().await;
    let client = client(&c).await;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let names: Vec<_> = namespaces
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|ns| ns.metadata.name)
        .collect();
    assert!(names.iter().any(|n| n == "kube-system"), "{names:?}");

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let created = pods
        .create(&PostParams::default(), &pod("a", json!({"batch": "x"})))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("b", json!({"batch": "x"})))
        .await
        .unwrap();

    // PUT with the current resourceVersion succeeds; replaying the stale one conflicts.
    let mut changed = created.clone();
    changed
        .metadata
        .labels
        .get_or_insert_default()
        .insert("replaced".into(), "yes".into());
    let replaced = pods
        .replace("a", &PostParams::default(), &changed)
        .await
        .unwrap();
    assert_eq!(labels(&replaced)["replaced"], "yes");
    let status = api_error(
        "replace with a stale resourceVersion",
        pods.replace("a", &PostParams::default(), &changed).await,
    );
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));

    let everywhere: Api<Pod> = Api::all(client.clone());
    let all = everywhere.list(&ListParams::default()).await.unwrap();
    assert_eq!(all.items.len(), 2);

    pods.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("batch=x"),
    )
    .await
    .unwrap();
    let left = pods.list(&ListParams::default()).await.unwrap();
    assert!(left.items.is_empty(), "{:?}", left.items);

    // The scale subresource, typed.
    let deployments: Api<Deployment> = Api::namespaced(client, "default");
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    let scale = deployments.get_scale("web").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(1));
    let scaled = deployments
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(scaled.spec.unwrap().replicas, Some(3));
    let with_status = deployments.get_status("web").await.unwrap();
    assert_eq!(with_status.spec.replicas, Some(3));
}
