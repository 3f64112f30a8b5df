//! The local-path provisioner: dynamic PersistentVolumes in a directory of the node that
//! runs the claim's first pod, as Rancher's local-path-provisioner does it.
//!
//! The StorageClass `local-path` (provisioner `drover.io/local-path`,
//! `volumeBindingMode: WaitForFirstConsumer`, the cluster default) is created at start
//! when absent. A claim of that class, or of no class, stays Pending until a pod that
//! uses it is bound to a node; then the provisioner creates PV `pvc-<claim uid>` with
//! required node affinity `kubernetes.io/hostname In [node]` and binds both ways
//! (`claimRef` on the PV, `volumeName` and phase Bound on the claim). The PV's path is
//! resolved by the node agent: the annotation [`LOCAL_PATH_ANNOTATION`] means
//! `<agent data dir>/local-path/<pv name>`, so every node keeps the data in its own data
//! dir, and the spec's `hostPath.path` is only what `kubectl describe` shows. The
//! scheduler's volume node-affinity filter keeps later pods of the claim on that node, so
//! the data survives pod deletion and recreation. A PV whose claim is gone is deleted
//! (reclaim policy Delete); the directory stays on the node (there is no node-side
//! cleanup yet).
//!
//! [`decide`] is the I/O-free core.

use std::sync::Arc;

use bus_schema::KindInfo;
use drover_store::{DeleteOptions, StoreError, object};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::revision::CACHE_WAIT;
use crate::runtime::kinds::{
    persistent_volume_claims as claims, persistent_volumes as volumes, pods,
    storage_classes as classes,
};
use crate::runtime::{
    self, Action, Context, EventType, ObjectKey, ReconcileError, Reconciler, Watch, revision_of,
};

#[cfg(test)]
mod tests;

/// Name of the StorageClass.
pub const CLASS: &str = "local-path";
/// Provisioner name on the class and on PVs.
pub const PROVISIONER: &str = "drover.io/local-path";
/// PV annotation: the volume lives at `<node data dir>/local-path/<pv name>`.
pub const LOCAL_PATH_ANNOTATION: &str = "drover.io/local-path";
/// The nominal path prefix written into PVs (what `kubectl describe pv` shows).
pub const NOMINAL_PREFIX: &str = "/var/lib/drover/local-path";

/// The kinds the provisioner needs cached.
pub fn kinds() -> Vec<&'static KindInfo> {
    vec![claims(), volumes(), pods()]
}

/// Starts the provisioner (and creates the StorageClass when absent).
pub fn start(ctx: &Context) -> Vec<JoinHandle<()>> {
    let store = ctx.store.clone();
    vec![
        tokio::spawn(ensure_class(store)),
        runtime::run(LocalPath, ctx.for_component("local-path-provisioner"), 2),
    ]
}

/// The StorageClass object.
pub fn storage_class() -> Value {
    json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    })
}

async fn ensure_class(store: drover_store::Store) {
    let mut delay = std::time::Duration::from_millis(200);
    loop {
        match store.get(classes(), None, CLASS).await {
            Ok(_) => return,
            Err(StoreError::NotFound { .. }) => {
                match store.create(classes(), storage_class()).await {
                    Ok(_) | Err(StoreError::AlreadyExists { .. }) => return,
                    Err(error) => {
                        tracing::warn!(message = "cannot create the local-path StorageClass; retrying", %error)
                    }
                }
            }
            Err(error) => {
                tracing::warn!(message = "cannot read the local-path StorageClass; retrying", %error)
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(std::time::Duration::from_secs(10));
    }
}

/// What to do for one claim.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Nothing (bound, another class, or no consumer on a node yet).
    Nothing,
    /// Provision a PV on this node and bind it.
    Provision {
        /// The node of the first consumer.
        node: String,
    },
    /// The claim names its PV already but is not marked Bound: finish the binding.
    MarkBound,
}

/// Decides for `claim`, given the nodes of the bound pods that use it.
pub fn decide(claim: &Value, consumer_nodes: &[&str], pv_exists: bool) -> Decision {
    if object::is_terminating(claim) {
        return Decision::Nothing;
    }
    match claim.pointer("/spec/storageClassName") {
        None | Some(Value::Null) => {}
        Some(Value::String(c)) if c == CLASS => {}
        _ => return Decision::Nothing,
    }
    let volume = claim
        .pointer("/spec/volumeName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !volume.is_empty() {
        let bound = claim.pointer("/status/phase").and_then(Value::as_str) == Some("Bound");
        return if !bound && pv_exists {
            Decision::MarkBound
        } else {
            Decision::Nothing
        };
    }
    match consumer_nodes.first() {
        Some(node) => Decision::Provision {
            node: node.to_string(),
        },
        None => Decision::Nothing,
    }
}

/// The PV for `claim` on `node`.
pub fn new_volume(claim: &Value, node: &str) -> Value {
    let uid = object::meta_str(claim, "uid").unwrap_or_default();
    let name = format!("pvc-{uid}");
    let storage = claim
        .pointer("/spec/resources/requests/storage")
        .cloned()
        .unwrap_or(json!("1Gi"));
    let modes = claim
        .pointer("/spec/accessModes")
        .cloned()
        .unwrap_or(json!(["ReadWriteOnce"]));
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": name,
            "annotations": {
                LOCAL_PATH_ANNOTATION: "true",
                "pv.kubernetes.io/provisioned-by": PROVISIONER,
            },
            "labels": {"drover.io/node": node},
        },
        "spec": {
            "capacity": {"storage": storage},
            "accessModes": modes,
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": CLASS,
            "volumeMode": "Filesystem",
            "hostPath": {"path": format!("{NOMINAL_PREFIX}/{name}"), "type": "DirectoryOrCreate"},
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": object::namespace(claim).unwrap_or("default"),
                "name": object::name(claim),
                "uid": uid,
            },
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}
            ]}]}},
        },
        "status": {"phase": "Bound"},
    })
}

/// The nodes of bound, live pods in `namespace` that use claim `name`.
fn consumers(ctx: &Context, namespace: &str, name: &str) -> Vec<String> {
    let mut pods: Vec<Arc<Value>> = ctx
        .cache
        .list(pods(), Some(namespace))
        .into_iter()
        .filter(|p| claim_names(p).iter().any(|c| c == name))
        .filter(|p| !object::is_terminating(p))
        .collect();
    pods.sort_by(|a, b| {
        object::meta_str(a, "creationTimestamp").cmp(&object::meta_str(b, "creationTimestamp"))
    });
    pods.iter()
        .filter_map(|p| p.pointer("/spec/nodeName").and_then(Value::as_str))
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

fn claim_names(pod: &Value) -> Vec<String> {
    pod.pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| {
            v.pointer("/persistentVolumeClaim/claimName")
                .and_then(Value::as_str)
        })
        .map(str::to_string)
        .collect()
}

/// The provisioner.
pub struct LocalPath;

impl Reconciler for LocalPath {
    fn name(&self) -> &'static str {
        "local-path"
    }
    fn kind(&self) -> &'static KindInfo {
        claims()
    }
    fn watches(&self) -> Vec<Watch> {
        vec![
            // A pod bound to a node may be a claim's first consumer.
            Watch::mapped(pods(), |_, event| {
                let Some(pod) = event.new.as_ref() else {
                    return Vec::new();
                };
                let bound = |p: Option<&Arc<Value>>| {
                    p.and_then(|p| p.pointer("/spec/nodeName"))
                        .and_then(Value::as_str)
                        .is_some_and(|n| !n.is_empty())
                };
                if !bound(event.new.as_ref()) || bound(event.old.as_ref()) {
                    return Vec::new();
                }
                let namespace = object::namespace(pod).unwrap_or("default");
                claim_names(pod)
                    .into_iter()
                    .map(|c| ObjectKey::namespaced(namespace, &c))
                    .collect()
            }),
            // A PV of ours whose claim went away is released.
            Watch::mapped(volumes(), |_, event| {
                let Some(pv) = event.latest() else {
                    return Vec::new();
                };
                let ns = pv
                    .pointer("/spec/claimRef/namespace")
                    .and_then(Value::as_str);
                let name = pv.pointer("/spec/claimRef/name").and_then(Value::as_str);
                match (ns, name) {
                    (Some(ns), Some(name)) => vec![ObjectKey::namespaced(ns, name)],
                    _ => Vec::new(),
                }
            }),
        ]
    }
    async fn reconcile(&self, key: &ObjectKey, ctx: &Context) -> Result<Action, ReconcileError> {
        let namespace = key.namespace.clone().unwrap_or_default();
        let claim = ctx.cache.get(claims(), key);
        release_volumes(ctx, key, claim.as_deref()).await?;
        let Some(claim) = claim else {
            return Ok(Action::await_change());
        };
        let pv_name = claim
            .pointer("/spec/volumeName")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let pv_exists = !pv_name.is_empty()
            && ctx
                .cache
                .get(volumes(), &ObjectKey::cluster(&pv_name))
                .is_some();
        let nodes = consumers(ctx, &namespace, &key.name);
        let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
        match decide(&claim, &nodes, pv_exists) {
            Decision::Nothing => {}
            Decision::Provision { node } => {
                let pv = new_volume(&claim, &node);
                let pv_name = object::name(&pv).to_string();
                let stored_pv = match ctx.store.create(volumes(), pv.clone()).await {
                    Ok(stored) => stored,
                    // A previous reconcile created it and failed before binding.
                    Err(StoreError::AlreadyExists { .. }) => pv,
                    Err(e) => return Err(e.into()),
                };
                bind_claim(ctx, &claim, &stored_pv, Some(&node)).await?;
                ctx.events.record(
                    claims(),
                    &claim,
                    EventType::Normal,
                    "ProvisioningSucceeded",
                    format!("Successfully provisioned volume {pv_name} on node {node}"),
                );
            }
            Decision::MarkBound => {
                if let Some(pv) = ctx.cache.get(volumes(), &ObjectKey::cluster(&pv_name)) {
                    bind_claim(ctx, &claim, &pv, None).await?;
                }
            }
        }
        Ok(Action::await_change())
    }
}

async fn bind_claim(
    ctx: &Context,
    claim: &Value,
    pv: &Value,
    node: Option<&str>,
) -> Result<(), ReconcileError> {
    let mut updated = claim.clone();
    updated["spec"]["volumeName"] = json!(object::name(pv));
    if updated["spec"]
        .get("storageClassName")
        .is_none_or(Value::is_null)
    {
        updated["spec"]["storageClassName"] = json!(CLASS);
    }
    let annotations = object::meta_mut(&mut updated)
        .entry("annotations")
        .or_insert_with(|| json!({}));
    if annotations.is_object() {
        annotations["pv.kubernetes.io/bind-completed"] = json!("yes");
        annotations["pv.kubernetes.io/bound-by-controller"] = json!("yes");
        annotations["volume.kubernetes.io/storage-provisioner"] = json!(PROVISIONER);
        if let Some(node) = node {
            annotations["volume.kubernetes.io/selected-node"] = json!(node);
        }
    }
    updated["status"] = json!({
        "phase": "Bound",
        "accessModes": pv.pointer("/spec/accessModes").cloned().unwrap_or(json!(["ReadWriteOnce"])),
        "capacity": pv.pointer("/spec/capacity").cloned().unwrap_or(json!({})),
    });
    let stored = ctx.store.update(claims(), updated).await?;
    ctx.cache
        .wait_for_revision(claims(), revision_of(&stored), CACHE_WAIT)
        .await
}

/// Deletes our PVs that name the claim at `key` but not its current uid (the claim is
/// gone or was recreated).
async fn release_volumes(
    ctx: &Context,
    key: &ObjectKey,
    claim: Option<&Value>,
) -> Result<(), ReconcileError> {
    let live_uid = claim.and_then(|c| object::meta_str(c, "uid"));
    for pv in ctx.cache.list(volumes(), None) {
        let ours = pv
            .pointer("/metadata/annotations/drover.io~1local-path")
            .is_some();
        let r = |f: &str| {
            pv.pointer(&format!("/spec/claimRef/{f}"))
                .and_then(Value::as_str)
        };
        if !ours
            || r("namespace") != key.namespace.as_deref()
            || r("name") != Some(key.name.as_str())
            || r("uid") == live_uid
            || object::is_terminating(&pv)
        {
            continue;
        }
        match ctx
            .store
            .delete(
                volumes(),
                None,
                object::name(&pv),
                &DeleteOptions {
                    uid: object::meta_str(&pv, "uid").map(str::to_string),
                    ..DeleteOptions::default()
                },
            )
            .await
        {
            Ok(_) | Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
