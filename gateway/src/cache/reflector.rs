//! The I/O shell around one [`CacheState`]: lists the kind, follows one store watch from
//! the list's revision, and resumes that watch from the cache's revision when it breaks
//! (NATS restart, connection loss). Only when the store can no longer replay from there
//! (`Gone`, or a store whose revision went backwards) does it re-list, which ends every
//! watcher of the cache with a 410 (they re-list too).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use bus_schema::KindInfo;
use drover_store::{ListOptions, Store, StoreError, WatchOptions};
use futures::StreamExt;
use tokio::sync::{Notify, watch};

use super::state::{CacheState, Progress};
use super::{read_state, write_state};

/// Bookmarks asked of the store watch. They carry the last revision the store watch saw,
/// including values it skipped as undecodable, so a consistent read that waits for the
/// store's revision is not held up by a value the cache never gets.
const STORE_BOOKMARK_INTERVAL: Duration = Duration::from_secs(1);

/// First pause before retrying the store after a failure.
const RETRY_MIN: Duration = Duration::from_millis(100);
/// Longest pause between retries (the pause doubles up to this).
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Why following the store watch stopped.
enum FollowEnd {
    /// The store cannot replay from the cache's revision: re-list.
    Relist(String),
    /// A transient failure: retry the watch from the cache's revision.
    Retry(StoreError),
}

/// Runs until aborted (the owning [`super::WatchCache`] is dropped). `relist` is
/// signalled by readers that found the store behind the cache.
pub(super) async fn run(
    store: Store,
    kind: &'static KindInfo,
    state: Arc<RwLock<CacheState>>,
    progress: watch::Sender<Progress>,
    relist: Arc<Notify>,
) {
    let mut pause = RETRY_MIN;
    'relist: loop {
        let listed = match list(&store, kind).await {
            Ok(listed) => listed,
            Err(error) => {
                tracing::warn!(message = "watch cache list failed; retrying", %error);
                pause = backoff(pause).await;
                continue;
            }
        };
        let (items, list_rv, settle_rv) = listed;
        let n_items = items.len();
        write_state(&state).replace(items, list_rv, settle_rv);
        publish(&state, &progress);
        tracing::info!(message = "watch cache listed", n_items, list_rv, settle_rv);
        loop {
            let from = read_state(&state).progress().rv;
            let followed = tokio::select! {
                end = follow(&store, kind, &state, &progress, from, &mut pause) => end,
                () = relist.notified() => FollowEnd::Relist("the store is behind the cache".into()),
            };
            match followed {
                FollowEnd::Relist(reason) => {
                    tracing::info!(message = "watch cache re-lists", %reason);
                    continue 'relist;
                }
                FollowEnd::Retry(error) => {
                    let rv = read_state(&state).progress().rv;
                    tracing::warn!(message = "watch cache lost its store watch; resuming", %error, rv);
                    pause = backoff(pause).await;
                    // A store that came back with less than the cache has (a new server,
                    // lost data) cannot replay from here.
                    if let Ok(revision) = store.revision(kind).await
                        && revision < read_state(&state).progress().rv
                    {
                        tracing::warn!(message = "store revision went backwards", revision);
                        continue 'relist;
                    }
                }
            }
        }
    }
}

/// One full list plus the store's revision after it (see [`CacheState::replace`]).
async fn list(
    store: &Store,
    kind: &'static KindInfo,
) -> Result<(Vec<serde_json::Value>, u64, u64), StoreError> {
    let listed = store.list(kind, None, &ListOptions::default()).await?;
    let settle_rv = store.revision(kind).await?;
    Ok((listed.items, listed.resource_version, settle_rv))
}

async fn follow(
    store: &Store,
    kind: &'static KindInfo,
    state: &RwLock<CacheState>,
    progress: &watch::Sender<Progress>,
    from: u64,
    pause: &mut Duration,
) -> FollowEnd {
    let opts = WatchOptions {
        bookmark_interval: Some(STORE_BOOKMARK_INTERVAL),
    };
    let mut events = match store.watch(kind, None, from, opts).await {
        Ok(w) => w,
        Err(e @ StoreError::Gone { .. }) => return FollowEnd::Relist(e.to_string()),
        Err(e) => return FollowEnd::Retry(e),
    };
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                *pause = RETRY_MIN;
                let moved = write_state(state).apply(event);
                if moved {
                    publish(state, progress);
                }
            }
            Err(e @ StoreError::Gone { .. }) => return FollowEnd::Relist(e.to_string()),
            Err(e) => return FollowEnd::Retry(e),
        }
    }
    FollowEnd::Retry(StoreError::Nats("store watch ended".into()))
}

fn publish(state: &RwLock<CacheState>, progress: &watch::Sender<Progress>) {
    let now = read_state(state).progress();
    progress.send_if_modified(|p| {
        let changed = *p != now;
        *p = now;
        changed
    });
}

/// Sleeps `pause` and returns the next, doubled up to [`RETRY_MAX`].
async fn backoff(pause: Duration) -> Duration {
    tokio::time::sleep(pause).await;
    (pause * 2).min(RETRY_MAX)
}
