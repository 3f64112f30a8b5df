//! drover's control loops over the store. Today: the garbage collector (owner
//! references with Background, Foreground and Orphan propagation) and the namespace
//! controller (a terminating Namespace loses its content, then its `kubernetes`
//! finalizer). Both decide on one in-memory [`graph::Graph`] of every object, fed by one
//! list + watch per kind ([`informer`]), and act on the store with preconditions, so a
//! decision taken on a stale graph cannot delete the wrong object.
//!
//! The decision logic is I/O-free ([`graph`]); this module is the thin loop around it:
//! apply changes, decide for the objects they touched, carry the actions out, retry
//! failures after a backoff.
//!
//! The other controllers run on the shared cache and controller runtime ([`runtime`]);
//! the Service ones are the EndpointSlice/Endpoints controller ([`endpointslice`]), the
//! EndpointSlice mirroring controller ([`endpointslicemirroring`]) and the cluster IP /
//! node port allocation repair loop ([`allocation_repair`]). Given the control plane's
//! gossip view ([`Controllers::start_with`]), the node lifecycle controller
//! ([`nodelifecycle`]) taints down nodes, marks their pods not ready, evicts them and
//! fences StatefulSet pods.

pub mod allocation_repair;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpointslice;
pub mod endpointslicemirroring;
pub mod graph;
pub mod hpa;
pub mod informer;
pub mod job;
pub mod localpath;
pub mod metrics;
mod namespaced;
pub mod nodelifecycle;
pub mod quota;
pub mod replicaset;
pub mod revision;
pub mod runtime;
pub mod statefulset;

use std::collections::BTreeSet;
use std::time::Duration;

use drover_store::{DeleteOptions, Store, StoreError, WatchEvent};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use graph::{Action, Graph, Node, ObjectRef, Owner, Propagation};
use informer::Change;

/// Delay before an object whose action failed is looked at again.
pub const RETRY_AFTER: Duration = Duration::from_millis(500);
/// Every object is looked at again this often, to repair anything a lost action left.
pub const RESYNC_EVERY: Duration = Duration::from_secs(30);
/// Compare-and-swap rounds for one read-modify-write before giving up until the retry.
const CAS_ATTEMPTS: usize = 8;

/// Optional parts of [`Controllers::start_with`].
#[derive(Default)]
pub struct ControllersConfig {
    /// The control plane's gossip view: when given, the node lifecycle controller
    /// ([`nodelifecycle`]) runs on it.
    pub membership: Option<nodelifecycle::MembershipView>,
    /// How the node lifecycle controller runs.
    pub lifecycle: nodelifecycle::LifecycleConfig,
}

/// The running controllers; they stop when this is dropped or [`Controllers::stop`]ped.
pub struct Controllers {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Controllers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Controllers {
    /// Starts the informers (one per kind), the collector loop and the pod index that
    /// node agents list and follow their pods through
    /// ([`drover_store::node_index::PodIndex`]).
    pub fn start(store: Store) -> Controllers {
        Controllers::start_with(store, ControllersConfig::default())
    }

    /// [`Controllers::start`] plus the optional parts in `config`.
    pub fn start_with(store: Store, config: ControllersConfig) -> Controllers {
        let (tx, rx) = mpsc::channel(informer::CHANNEL_CAPACITY);
        let mut tasks: Vec<JoinHandle<()>> = bus_schema::kinds::KINDS
            .iter()
            .map(|kind| tokio::spawn(informer::run(store.clone(), kind, tx.clone())))
            .collect();
        tasks.push(tokio::spawn(pod_index(store.clone())));
        tasks.push(tokio::spawn(quota::run(store.clone())));
        tasks.push(tokio::spawn(disruption::run(store.clone())));
        tasks.push(allocation_repair::start(
            store.clone(),
            allocation_repair::REPAIR_EVERY,
        ));
        // Workload controllers share one cache over the kinds they need.
        let kinds = [
            replicaset::kinds(),
            deployment::kinds(),
            statefulset::kinds(),
            daemonset::kinds(),
            localpath::kinds(),
            job::kinds(),
            cronjob::kinds(),
            hpa::kinds(),
            endpointslice::kinds(),
            endpointslicemirroring::kinds(),
            nodelifecycle::kinds(),
        ]
        .concat();
        let cache = runtime::Cache::start(store.clone(), &kinds);
        let ctx = runtime::Context::new(store.clone(), cache, "drover-controllers");
        tasks.extend(replicaset::start(&ctx));
        tasks.extend(deployment::start(&ctx));
        tasks.extend(statefulset::start(&ctx));
        tasks.extend(daemonset::start(&ctx));
        tasks.extend(localpath::start(&ctx));
        tasks.extend(job::start(&ctx));
        tasks.extend(cronjob::start(&ctx));
        tasks.extend(hpa::start(&ctx));
        tasks.extend(endpointslice::start(&ctx));
        tasks.extend(endpointslicemirroring::start(&ctx));
        if let Some(membership) = config.membership {
            tasks.extend(nodelifecycle::start(&ctx, membership, config.lifecycle));
        }
        tasks.push(tokio::spawn(collector(store, rx, tx)));
        Controllers { tasks }
    }

    /// Stops every task.
    pub async fn stop(mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
    }
}

/// Runs the pod index for as long as the task lives (aborting the task drops the index,
/// which stops it), retrying its start while the store is unreachable.
async fn pod_index(store: Store) {
    loop {
        match drover_store::node_index::PodIndex::start(store.clone()).await {
            Ok(_index) => std::future::pending::<()>().await,
            Err(error) => {
                tracing::warn!(message = "pod index did not start; retrying", %error);
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}

async fn collector(store: Store, mut rx: mpsc::Receiver<Change>, tx: mpsc::Sender<Change>) {
    let mut graph = Graph::default();
    let mut synced: BTreeSet<(&'static str, &'static str)> = BTreeSet::new();
    let n_kinds = bus_schema::kinds::KINDS.len();
    let mut dirty: BTreeSet<String> = BTreeSet::new();
    let mut resync = tokio::time::interval(RESYNC_EVERY);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            change = rx.recv() => {
                let Some(change) = change else { return };
                apply(&mut graph, &mut synced, &mut dirty, change);
                // Drain what is already queued before deciding: fewer, better-informed
                // decisions under bursts.
                while let Ok(change) = rx.try_recv() {
                    apply(&mut graph, &mut synced, &mut dirty, change);
                }
            }
            _ = resync.tick() => dirty.extend(graph.uids()),
        }
        if synced.len() < n_kinds {
            continue;
        }
        for uid in std::mem::take(&mut dirty) {
            for action in graph.decide(&uid) {
                if let Err(error) = execute(&store, &action).await {
                    tracing::warn!(message = "controller action failed; retrying", ?action, %error);
                    let tx = tx.clone();
                    let uid = uid.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(RETRY_AFTER).await;
                        let _ = tx.send(Change::Retry(uid)).await;
                    });
                }
            }
        }
    }
}

fn apply(
    graph: &mut Graph,
    synced: &mut BTreeSet<(&'static str, &'static str)>,
    dirty: &mut BTreeSet<String>,
    change: Change,
) {
    match change {
        Change::Listed(kind, objects) => {
            let fresh: Vec<Node> = objects
                .iter()
                .filter_map(|o| Node::from_object(kind, o))
                .collect();
            let keep: BTreeSet<&str> = fresh.iter().map(|n| n.uid.as_str()).collect();
            for uid in graph.uids_of_kind(kind) {
                if !keep.contains(uid.as_str()) {
                    dirty.extend(graph.remove(&uid));
                }
            }
            for node in fresh {
                dirty.extend(graph.upsert(node));
            }
            synced.insert((kind.group, kind.plural));
        }
        Change::Event(kind, WatchEvent::Added(o) | WatchEvent::Modified(o)) => {
            if let Some(node) = Node::from_object(kind, &o) {
                dirty.extend(graph.upsert(node));
            }
        }
        Change::Event(_, WatchEvent::Deleted(o)) => {
            if let Some(uid) = drover_store::object::meta_str(&o, "uid") {
                dirty.extend(graph.remove(uid));
            }
        }
        Change::Event(_, WatchEvent::Bookmark(_)) => {}
        Change::Retry(uid) => {
            dirty.insert(uid);
        }
    }
}

/// Carries one action out against the store. Preconditions (uid, resourceVersion) make
/// a stale decision a no-op instead of a wrong write.
async fn execute(store: &Store, action: &Action) -> Result<(), StoreError> {
    match action {
        Action::Delete {
            object,
            uid,
            propagation,
        } => delete(store, object, uid, *propagation).await,
        Action::DeleteOrphan {
            object,
            uid,
            owners,
        } => {
            for owner in owners {
                if owner_exists(store, object, owner).await? {
                    return Ok(());
                }
            }
            delete(store, object, uid, Propagation::Background).await
        }
        Action::RemoveOwnerRefs {
            object,
            owner_uids,
            verify,
        } => {
            let mut drop: Vec<&str> = Vec::new();
            for uid in owner_uids {
                let confirmed = match verify.iter().find(|o| &o.uid == uid) {
                    Some(owner) => !owner_exists(store, object, owner).await?,
                    None => true,
                };
                if confirmed {
                    drop.push(uid);
                }
            }
            if drop.is_empty() {
                return Ok(());
            }
            modify(store, object, |obj| {
                let meta = drover_store::object::meta_mut(obj);
                let Some(refs) = meta
                    .get_mut("ownerReferences")
                    .and_then(Value::as_array_mut)
                else {
                    return false;
                };
                let before = refs.len();
                refs.retain(|r| {
                    !r.get("uid")
                        .and_then(Value::as_str)
                        .is_some_and(|u| drop.contains(&u))
                });
                let changed = before != refs.len();
                if refs.is_empty() {
                    meta.remove("ownerReferences");
                }
                changed
            })
            .await
        }
        Action::RemoveFinalizer { object, finalizer } => {
            modify(store, object, |obj| {
                remove_str(obj.get_mut("metadata"), "finalizers", finalizer)
            })
            .await
        }
        Action::FinalizeNamespace { object } => {
            modify(store, object, |obj| {
                remove_str(
                    obj.get_mut("spec"),
                    "finalizers",
                    graph::NAMESPACE_FINALIZER,
                )
            })
            .await
        }
    }
}

/// Removes `value` from the string list `field` of `parent`; whether it was there.
fn remove_str(parent: Option<&mut Value>, field: &str, value: &str) -> bool {
    let Some(list) = parent
        .and_then(|p| p.get_mut(field))
        .and_then(Value::as_array_mut)
    else {
        return false;
    };
    let before = list.len();
    list.retain(|v| v != value);
    before != list.len()
}

async fn delete(
    store: &Store,
    object: &ObjectRef,
    uid: &str,
    propagation: Propagation,
) -> Result<(), StoreError> {
    let mut opts = DeleteOptions {
        uid: Some(uid.to_string()),
        ..Default::default()
    };
    if propagation == Propagation::Foreground {
        opts.add_finalizers = vec![graph::FOREGROUND.to_string()];
    }
    if drover_store::object::is_pod(object.kind) {
        match store
            .get(object.kind, object.namespace.as_deref(), &object.name)
            .await
        {
            Ok(current) => {
                opts.grace_period_seconds = drover_store::object::default_grace(&current)
            }
            Err(StoreError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    match store
        .delete(
            object.kind,
            object.namespace.as_deref(),
            &object.name,
            &opts,
        )
        .await
    {
        Ok(_) | Err(StoreError::NotFound { .. }) => {
            tracing::debug!(message = "collected", %object);
            Ok(())
        }
        // The uid precondition failed: a new object took the name; nothing to do.
        Err(StoreError::Conflict { reason, .. }) if reason.contains("uid") => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether `owner` (as referenced from `dependent`) exists in the store with its uid.
async fn owner_exists(
    store: &Store,
    dependent: &ObjectRef,
    owner: &Owner,
) -> Result<bool, StoreError> {
    let Some((kind, name)) = &owner.lookup else {
        return Ok(true);
    };
    let namespace = if kind.namespaced {
        dependent.namespace.as_deref()
    } else {
        None
    };
    match store.get(kind, namespace, name).await {
        Ok(obj) => Ok(drover_store::object::meta_str(&obj, "uid") == Some(owner.uid.as_str())),
        Err(StoreError::NotFound { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Read-modify-write with compare-and-swap; `change` returns whether it changed anything.
async fn modify(
    store: &Store,
    object: &ObjectRef,
    change: impl Fn(&mut Value) -> bool,
) -> Result<(), StoreError> {
    for _ in 0..CAS_ATTEMPTS {
        let mut obj = match store
            .get(object.kind, object.namespace.as_deref(), &object.name)
            .await
        {
            Ok(o) => o,
            Err(StoreError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        if !change(&mut obj) {
            return Ok(());
        }
        match store.update(object.kind, obj).await {
            Ok(_) | Err(StoreError::NotFound { .. }) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Conflict {
        kind: object.kind.group_resource(),
        name: object.name.clone(),
        reason: "the object kept changing".into(),
    })
}
