//! One list + watch per kind the scheduler follows, feeding one channel: a full
//! [`Change::Listed`] snapshot first (again after any watch failure, replacing what the
//! scheduler held for that kind), then every [`WatchEvent`].

use std::time::Duration;

use bus_schema::KindInfo;
use drover_store::{ListOptions, Store, StoreError, WatchEvent, WatchOptions};
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;

/// Delay before listing again after the store failed.
pub const RELIST_AFTER: Duration = Duration::from_millis(500);

/// What the scheduler loop is told.
#[derive(Debug)]
pub enum Change {
    /// Every object of the kind, as of one revision.
    Listed(&'static KindInfo, Vec<Value>),
    /// One change after the last list.
    Event(&'static KindInfo, WatchEvent),
}

/// Lists and watches `kind` until the receiver is gone, re-listing after any failure.
pub async fn run(store: Store, kind: &'static KindInfo, tx: mpsc::Sender<Change>) {
    loop {
        match follow(&store, kind, &tx).await {
            Ok(()) => return,
            Err(error) => {
                tracing::debug!(message = "scheduler informer restarting", kind = kind.plural, %error);
                tokio::time::sleep(RELIST_AFTER).await;
            }
        }
    }
}

/// `Ok` when the receiver is gone, `Err` when the store failed.
async fn follow(
    store: &Store,
    kind: &'static KindInfo,
    tx: &mpsc::Sender<Change>,
) -> Result<(), StoreError> {
    let listed = store.list(kind, None, &ListOptions::default()).await?;
    if tx.send(Change::Listed(kind, listed.items)).await.is_err() {
        return Ok(());
    }
    let mut watch = store
        .watch(kind, None, listed.resource_version, WatchOptions::default())
        .await?;
    while let Some(event) = watch.next().await {
        if tx.send(Change::Event(kind, event?)).await.is_err() {
            return Ok(());
        }
    }
    Err(StoreError::Nats("the watch ended".into()))
}
