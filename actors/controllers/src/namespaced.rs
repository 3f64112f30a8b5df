//! The loop shared by the quota and disruption controllers: both recompute the status of
//! every object of one kind in a namespace (quotas, budgets) from other objects of that
//! namespace. Informers on the kinds that matter mark namespaces dirty; dirty namespaces
//! are recomputed in batches; every namespace holding a primary object is recomputed
//! again every `resync`, which repairs anything an unwatched kind or a lost write left.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use bus_schema::KindInfo;
use drover_store::{Store, StoreError, WatchEvent};
use tokio::sync::mpsc;

use crate::informer::{self, Change};

/// Delay before a namespace whose recompute failed is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Runs until the task is aborted. `kinds[0]` is the primary kind (whose namespaces are
/// resynced); `reconcile(store, namespace)` recomputes one namespace and may ask to run
/// again after a delay (a deadline such as a disruption's expiry).
pub async fn run<F, Fut>(
    store: Store,
    kinds: Vec<&'static KindInfo>,
    resync: Duration,
    reconcile: F,
) where
    F: Fn(Store, String) -> Fut,
    Fut: Future<Output = Result<Option<Duration>, StoreError>>,
{
    let (tx, mut rx) = mpsc::channel(informer::CHANNEL_CAPACITY);
    let primary = kinds[0];
    let _informers: Vec<AbortOnDrop> = kinds
        .iter()
        .map(|k| AbortOnDrop(tokio::spawn(informer::run(store.clone(), k, tx.clone()))))
        .collect();
    let (retry_tx, mut retry_rx) = mpsc::unbounded_channel::<String>();
    let mut with_primary: BTreeSet<String> = BTreeSet::new();
    let mut dirty: BTreeSet<String> = BTreeSet::new();
    let mut tick = tokio::time::interval(resync);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            change = rx.recv() => {
                let Some(change) = change else { return };
                note(primary, &mut with_primary, &mut dirty, change);
                while let Ok(change) = rx.try_recv() {
                    note(primary, &mut with_primary, &mut dirty, change);
                }
            }
            Some(ns) = retry_rx.recv() => { dirty.insert(ns); }
            _ = tick.tick() => dirty.extend(with_primary.iter().cloned()),
        }
        for ns in std::mem::take(&mut dirty) {
            if !with_primary.contains(&ns) {
                continue;
            }
            let again = match reconcile(store.clone(), ns.clone()).await {
                Ok(again) => again,
                Err(error) => {
                    tracing::warn!(message = "status recompute failed; retrying", kind = primary.plural, namespace = %ns, %error);
                    Some(RETRY_AFTER)
                }
            };
            if let Some(after) = again {
                let retry_tx = retry_tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    let _ = retry_tx.send(ns);
                });
            }
        }
    }
}

/// Aborts the informer task when the loop ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn namespace_of(obj: &serde_json::Value) -> Option<String> {
    drover_store::object::namespace(obj).map(str::to_string)
}

fn note(
    primary: &'static KindInfo,
    with_primary: &mut BTreeSet<String>,
    dirty: &mut BTreeSet<String>,
    change: Change,
) {
    match change {
        Change::Listed(kind, objects) => {
            let namespaces: BTreeSet<String> = objects.iter().filter_map(namespace_of).collect();
            if std::ptr::eq(kind, primary) {
                // A relist replaces what was known of the primary kind.
                *with_primary = namespaces.clone();
            }
            dirty.extend(namespaces);
        }
        Change::Event(kind, WatchEvent::Added(o) | WatchEvent::Modified(o)) => {
            if let Some(ns) = namespace_of(&o) {
                if std::ptr::eq(kind, primary) {
                    with_primary.insert(ns.clone());
                }
                dirty.insert(ns);
            }
        }
        Change::Event(_, WatchEvent::Deleted(o)) => {
            // A deleted primary object leaves its namespace in the set until the next
            // relist; recomputing a namespace without one is a no-op.
            if let Some(ns) = namespace_of(&o) {
                dirty.insert(ns);
            }
        }
        Change::Event(_, WatchEvent::Bookmark(_)) | Change::Retry(_) => {}
    }
}
