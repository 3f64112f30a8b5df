//! Watches: an ordered JetStream consumer on a bucket's stream, turned into
//! ADDED / MODIFIED / DELETED / BOOKMARK events by a task that feeds a channel.
//! Undecodable values are logged and skipped; the watch goes on.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_nats::jetstream;
use bus_schema::{KindInfo, subjects};
use futures::{Stream, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::{Result, StoreError, decode_value, is_create, is_delete, object};

/// Events per watch buffered before the reader is applied backpressure.
const WATCH_BUFFER: usize = 256;

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    /// The object was created.
    Added(Value),
    /// The object was updated.
    Modified(Value),
    /// The object was deleted; this is its last state, with the deletion's revision.
    Deleted(Value),
    /// Nothing this watch cares about changed up to this revision: resume from here.
    Bookmark(u64),
}

impl WatchEvent {
    /// The revision this event brings the watcher to.
    pub fn revision(&self) -> u64 {
        match self {
            WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => {
                object::meta_str(o, "resourceVersion")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0)
            }
            WatchEvent::Bookmark(rv) => *rv,
        }
    }
}

/// Options for [`crate::Store::watch`].
#[derive(Debug, Clone, Default)]
pub struct WatchOptions {
    /// Send a [`WatchEvent::Bookmark`] at this interval (none when `None`).
    pub bookmark_interval: Option<Duration>,
}

/// A live watch; dropping it stops the consumer.
pub struct Watch {
    rx: mpsc::Receiver<Result<WatchEvent>>,
    task: JoinHandle<()>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Stream for Watch {
    type Item = Result<WatchEvent>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn start(
    client: async_nats::Client,
    stream: jetstream::stream::Stream,
    kind: &'static KindInfo,
    bucket: String,
    prefix: String,
    namespace: Option<&str>,
    from: u64,
    opts: WatchOptions,
) -> Result<Watch> {
    let deliver_policy = if from == 0 {
        jetstream::consumer::DeliverPolicy::All
    } else {
        jetstream::consumer::DeliverPolicy::ByStartSequence {
            start_sequence: from + 1,
        }
    };
    let consumer = stream
        .create_consumer(jetstream::consumer::push::OrderedConfig {
            deliver_subject: client.new_inbox(),
            filter_subject: subjects::kv_filter(&bucket, namespace),
            deliver_policy,
            replay_policy: jetstream::consumer::ReplayPolicy::Instant,
            ..Default::default()
        })
        .await
        .map_err(StoreError::nats)?;
    let mut messages = consumer.messages().await.map_err(StoreError::nats)?;
    let (tx, rx) = mpsc::channel(WATCH_BUFFER);
    let task = tokio::spawn(async move {
        let mut last = from;
        let mut ticker = opts.bookmark_interval.map(|d| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + d, d);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        loop {
            let next = async {
                match ticker.as_mut() {
                    Some(t) => {
                        tokio::select! {
                            m = messages.next() => Some(m),
                            _ = t.tick() => None,
                        }
                    }
                    None => Some(messages.next().await),
                }
            };
            let event = match next.await {
                None => Ok(WatchEvent::Bookmark(last)),
                Some(None) => {
                    let _ = tx
                        .send(Err(StoreError::Nats(format!("watch on {bucket} ended"))))
                        .await;
                    return;
                }
                Some(Some(Err(e))) => {
                    let _ = tx.send(Err(StoreError::nats(e))).await;
                    return;
                }
                Some(Some(Ok(msg))) => {
                    let Ok(info) = msg.info() else {
                        tracing::warn!(message = "watch message without JetStream metadata", bucket = %bucket);
                        continue;
                    };
                    let seq = info.stream_sequence;
                    last = last.max(seq);
                    let key = msg
                        .subject
                        .strip_prefix(prefix.as_str())
                        .unwrap_or(&msg.subject)
                        .to_string();
                    match to_event(kind, &key, msg.headers.as_ref(), &msg.payload, seq) {
                        Some(ev) => Ok(ev),
                        None => continue,
                    }
                }
            };
            if tx.send(event).await.is_err() {
                return;
            }
        }
    });
    Ok(Watch { rx, task })
}

fn to_event(
    kind: &KindInfo,
    key: &str,
    headers: Option<&async_nats::HeaderMap>,
    payload: &[u8],
    seq: u64,
) -> Option<WatchEvent> {
    if headers.is_some_and(is_delete) {
        // drover tombstones carry the last state; foreign deletes (e.g. `nats kv del`)
        // do not, so rebuild the identity from the key.
        let obj = match decode_value(kind, key, headers, payload, seq) {
            Ok(obj) => obj,
            Err(_) => {
                let (namespace, name) = subjects::parse_kv_key(key)?;
                let mut obj = serde_json::json!({"apiVersion": kind.api_version(), "kind": kind.kind, "metadata": {"name": name, "resourceVersion": seq.to_string()}});
                if let Some(ns) = namespace {
                    object::meta_mut(&mut obj).insert("namespace".into(), Value::String(ns));
                }
                obj
            }
        };
        return Some(WatchEvent::Deleted(obj));
    }
    match decode_value(kind, key, headers, payload, seq) {
        Ok(obj) if is_create(headers) => Some(WatchEvent::Added(obj)),
        Ok(obj) => Some(WatchEvent::Modified(obj)),
        Err(error) => {
            tracing::warn!(message = "skipping undecodable stored value", kind = kind.kind, %key, %error);
            None
        }
    }
}
