//! Client watches as streams of [`ClientEvent`]s: one that follows a cache's ring, and
//! the direct store watch used when the cache cannot serve a start position.
//!
//! A cache watcher holds only its position: when the cache's progress moves it copies
//! the ring's changes after its position (under a read lock, no await), filters them
//! and yields them at the pace its client reads. The ring is the fan-out buffer: a
//! watcher that falls behind its tail gets one ERROR event (410 Expired) and ends, the
//! way Kubernetes terminates watchers that cannot keep up; its client re-lists.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use bus_schema::KindInfo;
use drover_store::{ListOptions, Store, WatchEvent, WatchOptions};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::filter::{Filter, transition};
use super::state::{CacheState, Lost, Progress};
use super::{ClientEvent, EventStream, read_state};
use crate::status::ApiError;

/// What a watcher needs beyond its start position.
#[derive(Clone)]
pub(super) struct WatchSpec {
    pub kind: &'static KindInfo,
    pub filter: Filter,
    pub bookmark_interval: Option<Duration>,
}

/// Where a cache watcher starts.
pub(super) struct Start {
    /// The cache epoch the position belongs to.
    pub epoch: u64,
    /// The revision the watcher has seen everything up to.
    pub pos: u64,
    /// Objects to send as ADDED first.
    pub initial: Vec<Arc<Value>>,
    /// Send an initial-events-end BOOKMARK after them.
    pub end_bookmark: bool,
}

/// What woke a waiting watcher.
enum Wake {
    Progress,
    Bookmark,
    Closed,
}

/// Follows a cache from `start`.
pub(super) fn follow(
    spec: WatchSpec,
    state: Arc<RwLock<CacheState>>,
    mut progress: watch::Receiver<Progress>,
    start: Start,
) -> EventStream {
    Box::pin(async_stream::stream! {
        let WatchSpec { kind, filter, bookmark_interval } = spec;
        let Start { epoch, mut pos, initial, end_bookmark } = start;
        for obj in initial {
            yield ClientEvent { event_type: "ADDED", object: obj };
        }
        if end_bookmark {
            yield bookmark(kind, pos, true);
        }
        let mut ticker = bookmark_interval.map(|d| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + d, d);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        loop {
            // Mark the progress seen before reading, so a change made after the read
            // wakes the wait below.
            progress.borrow_and_update();
            let batch = read_state(&state).since(epoch, pos);
            match batch {
                Ok((events, rv)) => {
                    for event in events {
                        if let Some((ty, object)) = transition(&filter, &event) {
                            yield ClientEvent { event_type: ty.as_str(), object };
                        }
                    }
                    pos = pos.max(rv);
                }
                Err(lost) => {
                    yield error(&lost_error(lost));
                    return;
                }
            }
            let wake = match ticker.as_mut() {
                Some(t) => tokio::select! {
                    changed = progress.changed() => if changed.is_ok() { Wake::Progress } else { Wake::Closed },
                    _ = t.tick() => Wake::Bookmark,
                },
                None => match progress.changed().await {
                    Ok(()) => Wake::Progress,
                    Err(_) => Wake::Closed,
                },
            };
            match wake {
                Wake::Progress => {}
                Wake::Bookmark => yield bookmark(kind, pos, false),
                // The cache was dropped (gateway stopping): end the watch.
                Wake::Closed => return,
            }
        }
    })
}

/// How a direct store watch starts.
pub(super) enum StoreStart {
    /// List the store (matching objects as ADDED when `initial_events`), then watch from
    /// the list's revision.
    Snapshot {
        initial_events: bool,
        end_bookmark: bool,
    },
    /// Watch after this revision.
    Resume(u64),
}

/// A watch straight on the store: one store watch (one JetStream consumer) for this
/// client. Used only where the cache cannot serve the start (see the module doc of
/// [`super`]). Label and field selectors are applied per event, without transitions
/// (the store's events carry no previous object).
pub(super) async fn from_store(
    store: &Store,
    spec: WatchSpec,
    opts: &ListOptions,
    start: StoreStart,
) -> Result<EventStream, ApiError> {
    let WatchSpec {
        kind,
        filter,
        bookmark_interval,
    } = spec;
    let (initial, from, end_bookmark) = match start {
        StoreStart::Snapshot {
            initial_events,
            end_bookmark,
        } => {
            let unpaged = ListOptions {
                label_selector: opts.label_selector.clone(),
                field_selector: opts.field_selector.clone(),
                ..Default::default()
            };
            let listed = store
                .list(kind, filter.namespace(), &unpaged)
                .await
                .map_err(|e| ApiError::from_store(kind, "", e))?;
            let initial = if initial_events {
                listed.items
            } else {
                Vec::new()
            };
            (initial, listed.resource_version, end_bookmark)
        }
        StoreStart::Resume(rv) => (Vec::new(), rv, false),
    };
    let watch_opts = WatchOptions { bookmark_interval };
    let started = store
        .watch(kind, filter.namespace(), from, watch_opts)
        .await;
    Ok(Box::pin(async_stream::stream! {
        for obj in initial {
            yield ClientEvent { event_type: "ADDED", object: Arc::new(obj) };
        }
        if end_bookmark {
            yield bookmark(kind, from, true);
        }
        let mut events = match started {
            Ok(w) => w,
            Err(e) => {
                // Kubernetes answers an expired watch with 200 and one ERROR event.
                yield error(&ApiError::from_store(kind, "", e));
                return;
            }
        };
        while let Some(event) = events.next().await {
            let (ty, obj) = match event {
                Err(e) => {
                    yield error(&ApiError::from_store(kind, "", e));
                    return;
                }
                Ok(WatchEvent::Bookmark(rv)) => {
                    yield bookmark(kind, rv, false);
                    continue;
                }
                Ok(WatchEvent::Added(o)) => ("ADDED", o),
                Ok(WatchEvent::Modified(o)) => ("MODIFIED", o),
                Ok(WatchEvent::Deleted(o)) => ("DELETED", o),
            };
            if filter.matches(&obj) {
                yield ClientEvent { event_type: ty, object: Arc::new(obj) };
            }
        }
    }))
}

/// A BOOKMARK event at `rv`; `initial_end` marks the end of `sendInitialEvents`.
fn bookmark(kind: &KindInfo, rv: u64, initial_end: bool) -> ClientEvent {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    ClientEvent {
        event_type: "BOOKMARK",
        object: Arc::new(
            json!({"kind": kind.kind, "apiVersion": kind.api_version(), "metadata": meta}),
        ),
    }
}

fn error(e: &ApiError) -> ClientEvent {
    ClientEvent {
        event_type: "ERROR",
        object: Arc::new(e.to_status()),
    }
}

/// The 410 a watcher gets when its position is lost.
fn lost_error(lost: Lost) -> ApiError {
    let message = match lost {
        Lost::TooOld { pos, oldest } => format!(
            "too old resource version: {pos} ({oldest}): the watch fell behind the watch cache"
        ),
        Lost::Relisted => {
            "the watch cache re-listed from the store; list again and watch from the list's resourceVersion"
                .to_string()
        }
    };
    super::expired(message)
}
