//! The reconcile loop: follow the primary kind and the watched kinds through the cache,
//! map every change to the keys of primary objects, and reconcile those keys with at
//! most `workers` reconciles at once, never two of one key. A failed (or panicking)
//! reconcile is retried after the error policy's delay; a successful one is repeated
//! after the delay its [`Action`] asks for. Every primary object is looked at again every
//! [`RESYNC_EVERY`], which repairs anything a lost change would have left.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bus_schema::KindInfo;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use tracing::Instrument;

use super::cache::{Cache, CacheEvent};
use super::owner;
use super::queue::{WorkQueue, backoff};
use super::{Action, Context, ObjectKey, ReconcileError};

/// Every primary object is reconciled again this often.
pub const RESYNC_EVERY: Duration = Duration::from_secs(300);

type Mapper = Arc<dyn Fn(&Cache, &CacheEvent) -> Vec<ObjectKey> + Send + Sync>;

/// A kind whose changes cause reconciles of primary objects, and how a change maps to
/// their keys.
#[derive(Clone)]
pub struct Watch {
    kind: &'static KindInfo,
    map: Mapper,
}

impl Watch {
    /// Objects of `kind` controlled (controller ownerReference) by a primary object of
    /// `owner_kind`: a change reconciles the owner, before and after the change.
    pub fn owned(kind: &'static KindInfo, owner_kind: &'static KindInfo) -> Watch {
        Watch::mapped(kind, move |_, event| {
            let mut keys: Vec<ObjectKey> = [event.old.as_deref(), event.new.as_deref()]
                .into_iter()
                .flatten()
                .filter_map(|o| owner::controller_key(o, owner_kind))
                .collect();
            keys.dedup();
            keys
        })
    }

    /// Objects of `kind` mapped to primary keys by `map` (it gets the cache, to find, say,
    /// every DaemonSet when a Node changes).
    pub fn mapped(
        kind: &'static KindInfo,
        map: impl Fn(&Cache, &CacheEvent) -> Vec<ObjectKey> + Send + Sync + 'static,
    ) -> Watch {
        Watch {
            kind,
            map: Arc::new(map),
        }
    }
}

/// A controller, shaped like kube-runtime's: it does not know why it is called, so
/// [`Reconciler::reconcile`] must be idempotent.
pub trait Reconciler: Send + Sync + 'static {
    /// Name for logs and spans (`"replicaset"`).
    fn name(&self) -> &'static str;
    /// The primary kind: every object of it is reconciled.
    fn kind(&self) -> &'static KindInfo;
    /// Other kinds whose changes reconcile primary objects.
    fn watches(&self) -> Vec<Watch> {
        Vec::new()
    }
    /// Brings the world toward what `key` (which may be gone from the cache) asks for.
    fn reconcile(
        &self,
        key: &ObjectKey,
        ctx: &Context,
    ) -> impl Future<Output = Result<Action, ReconcileError>> + Send;
    /// When to try again after a failure (`failures` in a row, from 1).
    fn error_policy(&self, key: &ObjectKey, error: &ReconcileError, failures: u32) -> Action {
        let _ = key;
        let _ = error;
        Action::requeue(backoff(failures))
    }
}

/// Why a key is queued.
enum Trigger {
    Key(ObjectKey),
    Everything,
}

/// Runs `reconciler` until the returned task is aborted. The cache must follow the
/// primary kind and every watched kind.
pub fn run<R: Reconciler>(reconciler: R, ctx: Context, workers: usize) -> JoinHandle<()> {
    let reconciler = Arc::new(reconciler);
    let span = tracing::info_span!("controller", name = reconciler.name());
    tokio::spawn(run_loop(reconciler, ctx, workers.max(1)).instrument(span))
}

async fn run_loop<R: Reconciler>(reconciler: Arc<R>, ctx: Context, workers: usize) {
    let primary = reconciler.kind();
    let (tx, mut rx) = mpsc::unbounded_channel::<Trigger>();
    let mut followers = JoinSet::new();
    let own = Watch::mapped(primary, |_, event| {
        event
            .latest()
            .map(|o| ObjectKey::of(o))
            .into_iter()
            .collect()
    });
    for watch in std::iter::once(own).chain(reconciler.watches()) {
        // Subscribe before the cache is synced so that no change falls between the first
        // full pass and the follow.
        let rx = ctx.cache.subscribe(watch.kind);
        followers.spawn(follow(ctx.cache.clone(), watch, rx, tx.clone()));
    }
    ctx.cache.wait_synced().await;
    let all_keys = |cache: &Cache| -> Vec<ObjectKey> {
        cache
            .list(primary, None)
            .iter()
            .map(|o| ObjectKey::of(o))
            .collect()
    };
    let mut queue: WorkQueue<ObjectKey> = WorkQueue::default();
    for key in all_keys(&ctx.cache) {
        queue.push(key);
    }
    let mut running: JoinSet<(ObjectKey, Result<Action, ReconcileError>)> = JoinSet::new();
    let mut keys_of_tasks = std::collections::HashMap::new();
    let mut resync = tokio::time::interval(RESYNC_EVERY);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    resync.tick().await;
    loop {
        while running.len() < workers {
            let Some(key) = queue.pop() else { break };
            let (r, c, k) = (reconciler.clone(), ctx.clone(), key.clone());
            let span = tracing::debug_span!("reconcile", object.ref = %key);
            let handle = running.spawn(
                async move {
                    let result = r.reconcile(&k, &c).await;
                    (k, result)
                }
                .instrument(span),
            );
            keys_of_tasks.insert(handle.id(), key);
        }
        tokio::select! {
            trigger = rx.recv() => {
                match trigger {
                    Some(Trigger::Key(key)) => queue.push(key),
                    Some(Trigger::Everything) => all_keys(&ctx.cache).into_iter().for_each(|k| queue.push(k)),
                    None => return,
                }
            }
            Some(done) = running.join_next_with_id(), if !running.is_empty() => {
                let (key, result) = match done {
                    Ok((id, (key, result))) => {
                        keys_of_tasks.remove(&id);
                        (key, result)
                    }
                    Err(join_error) => {
                        let Some(key) = keys_of_tasks.remove(&join_error.id()) else { continue };
                        (key, Err(ReconcileError::Other(format!("the reconcile panicked: {join_error}"))))
                    }
                };
                let action = match &result {
                    Ok(action) => {
                        queue.done(&key, true);
                        *action
                    }
                    Err(error) => {
                        let failures = queue.done(&key, false);
                        tracing::warn!(message = "reconcile failed", controller = reconciler.name(), object.ref = %key, failures, %error);
                        reconciler.error_policy(&key, error, failures)
                    }
                };
                if let Some(after) = action.requeue_after() {
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        let _ = tx.send(Trigger::Key(key));
                    });
                }
            }
            _ = resync.tick() => all_keys(&ctx.cache).into_iter().for_each(|k| queue.push(k)),
        }
    }
}

async fn follow(
    cache: Cache,
    watch: Watch,
    mut rx: broadcast::Receiver<CacheEvent>,
    tx: mpsc::UnboundedSender<Trigger>,
) {
    loop {
        match rx.recv().await {
            Ok(event) => {
                for key in (watch.map)(&cache, &event) {
                    if tx.send(Trigger::Key(key)).is_err() {
                        return;
                    }
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::debug!(
                    message = "controller lagged behind the cache; reconciling everything",
                    kind = watch.kind.plural,
                    missed = n
                );
                if tx.send(Trigger::Everything).is_err() {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// The key of an object's namespace-local owner (helper for [`Watch::mapped`] closures).
pub fn same_namespace_key(obj: &Value, name: &str) -> ObjectKey {
    ObjectKey {
        namespace: drover_store::object::namespace(obj).map(str::to_string),
        name: name.to_string(),
    }
}
