//! The pod index: node agents see only the pods bound to them.
//!
//! [`PodIndex`] runs in the control plane. It follows the pods bucket with one list +
//! watch, keeps every bound pod grouped by `spec.nodeName`, publishes each change to the
//! node it concerns and answers paged list requests (wire format and subjects:
//! [`bus_schema::pod_index`]). [`NodePods`] is the node agent's side: a list followed by
//! the node's event subject, re-listed on a gap, a new epoch or the index's resync
//! broadcast. Without it every agent would receive every pod change of the cluster — at
//! 1,000 nodes, a thousand copies of each status write.
//!
//! The index holds its state in one task (watch events and list requests are handled in
//! turn), so a page and the event sequence number it reports are always consistent.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use async_nats::{Client, Subscriber};
use bus_schema::envelope::{self, Meta};
use bus_schema::pod_index::{
    self, DEFAULT_PAGE, PodIndexChange, PodIndexEvent, PodIndexListRequest, PodIndexPage,
};
use bus_schema::{KindInfo, subjects};
use futures::StreamExt;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::{ListOptions, Result, Store, StoreError, WatchEvent, WatchOptions, object};

/// Pause before the index rebuilds after its watch failed.
const REBUILD_AFTER: Duration = Duration::from_secs(1);
/// How often a [`NodePods`] asks the index whether it missed events (core NATS drops
/// messages to slow consumers and across reconnects).
pub const CHECK_INTERVAL: Duration = Duration::from_secs(30);
/// How long a [`NodePods`] waits for one list page.
const LIST_TIMEOUT: Duration = Duration::from_secs(10);
/// Sender name in the envelope of the index's messages.
const SENDER: &str = "pod-index";

fn pod_kind() -> &'static KindInfo {
    bus_schema::kinds::of::<k8s_openapi::api::core::v1::Pod>()
}

fn revision_of(obj: &Value) -> u64 {
    object::meta_str(obj, "resourceVersion")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

// ---- the index's state: pure, no I/O --------------------------------------------------

#[derive(Default)]
struct NodeEntry {
    /// Last event sequence number published for the node in this epoch.
    seq: u64,
    /// The node's pods by key.
    pods: BTreeMap<String, Value>,
}

/// Every bound pod, grouped by node. Built from a list, advanced by watch events.
pub struct IndexState {
    epoch: String,
    nodes: HashMap<String, NodeEntry>,
    /// Which node holds each pod key.
    placed: HashMap<String, String>,
}

impl IndexState {
    /// State of a fresh epoch from a list of pods (unbound ones are ignored).
    pub fn new(epoch: String, pods: Vec<Value>) -> IndexState {
        let mut state = IndexState {
            epoch,
            nodes: HashMap::new(),
            placed: HashMap::new(),
        };
        for pod in pods {
            if let Some(node) = pod_index::node_name(&pod).map(str::to_string) {
                let key = pod_index::pod_key(&pod);
                state.placed.insert(key.clone(), node.clone());
                state.nodes.entry(node).or_default().pods.insert(key, pod);
            }
        }
        state
    }

    /// The epoch.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    fn event(&mut self, node: &str, change: PodIndexChange) -> (String, PodIndexEvent) {
        let entry = self.nodes.entry(node.to_string()).or_default();
        entry.seq += 1;
        (
            node.to_string(),
            PodIndexEvent {
                epoch: self.epoch.clone(),
                seq: entry.seq,
                change,
            },
        )
    }

    /// Applies one watch event; returns the events to publish, each with its node.
    pub fn apply(&mut self, event: WatchEvent) -> Vec<(String, PodIndexEvent)> {
        let mut out = Vec::new();
        let (obj, deleted) = match event {
            WatchEvent::Added(o) | WatchEvent::Modified(o) => (o, false),
            WatchEvent::Deleted(o) => (o, true),
            WatchEvent::Bookmark(_) => return out,
        };
        let key = pod_index::pod_key(&obj);
        let new_node = if deleted {
            None
        } else {
            pod_index::node_name(&obj).map(str::to_string)
        };
        let old_node = self.placed.get(&key).cloned();
        if let Some(old) = &old_node
            && Some(old) != new_node.as_ref()
        {
            if let Some(entry) = self.nodes.get_mut(old) {
                entry.pods.remove(&key);
            }
            self.placed.remove(&key);
            out.push(self.event(old, PodIndexChange::Removed(obj.clone())));
        }
        if let Some(node) = new_node {
            self.placed.insert(key.clone(), node.clone());
            self.nodes
                .entry(node.clone())
                .or_default()
                .pods
                .insert(key, obj.clone());
            out.push(self.event(&node, PodIndexChange::Upsert(obj)));
        }
        out
    }

    /// One page of a node's pods.
    pub fn page(&self, node: &str, request: &PodIndexListRequest) -> PodIndexPage {
        let mut page = PodIndexPage {
            epoch: self.epoch.clone(),
            ..Default::default()
        };
        let Some(entry) = self.nodes.get(node) else {
            return page;
        };
        page.seq = entry.seq;
        if request.limit == 0 {
            return page;
        }
        let limit = request.limit as usize;
        let range = match &request.after {
            Some(after) => entry
                .pods
                .range::<String, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
                .take(limit + 1)
                .collect::<Vec<_>>(),
            None => entry.pods.iter().take(limit + 1).collect(),
        };
        if range.len() > limit {
            page.next = Some(range[limit - 1].0.clone());
        }
        page.items = range
            .into_iter()
            .take(limit)
            .map(|(_, v)| v.clone())
            .collect();
        page
    }
}

// ---- the index service ----------------------------------------------------------------

/// The running pod index; dropping it stops the service.
pub struct PodIndex {
    task: JoinHandle<()>,
}

impl Drop for PodIndex {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PodIndex {
    /// Subscribes to list requests, builds the index (list + watch of the pods bucket),
    /// broadcasts a resync so agents re-list, and keeps serving until stopped.
    pub async fn start(store: Store) -> Result<PodIndex> {
        let client = store.nats_client().clone();
        // Requests that arrive while the index (re)builds wait in the subscription.
        let requests = client
            .queue_subscribe(subjects::POD_INDEX_LIST_ALL, "pod-index".into())
            .await
            .map_err(StoreError::nats)?;
        let (state, watch) = build(&store).await?;
        let task = tokio::spawn(serve(store, client, requests, state, watch));
        Ok(PodIndex { task })
    }

    /// Stops the service.
    pub async fn stop(self) {
        self.task.abort();
    }
}

async fn build(store: &Store) -> Result<(IndexState, crate::Watch)> {
    let kind = pod_kind();
    let listed = store.list(kind, None, &ListOptions::default()).await?;
    let watch = store
        .watch(kind, None, listed.resource_version, WatchOptions::default())
        .await?;
    let state = IndexState::new(uuid::Uuid::new_v4().simple().to_string(), listed.items);
    let (headers, body) = envelope::encode(&state.epoch, &meta()).map_err(StoreError::nats)?;
    store
        .nats_client()
        .publish_with_headers(subjects::POD_INDEX_RESYNC, headers, body)
        .await
        .map_err(StoreError::nats)?;
    tracing::info!(
        message = "pod index built",
        epoch = %state.epoch,
        nodes = state.nodes.len(),
        pods = state.placed.len()
    );
    Ok((state, watch))
}

fn meta() -> Meta {
    Meta {
        sender: SENDER.into(),
        traceparent: None,
    }
}

async fn serve(
    store: Store,
    client: Client,
    mut requests: Subscriber,
    mut state: IndexState,
    mut watch: crate::Watch,
) {
    loop {
        tokio::select! {
            event = watch.next() => match event {
                Some(Ok(event)) => {
                    for (node, event) in state.apply(event) {
                        publish(&client, &subjects::pod_index_events(&node), &event).await;
                    }
                }
                other => {
                    if let Some(Err(error)) = other {
                        tracing::warn!(message = "pod index watch failed; rebuilding", %error);
                    }
                    loop {
                        tokio::time::sleep(REBUILD_AFTER).await;
                        match build(&store).await {
                            Ok((s, w)) => {
                                state = s;
                                watch = w;
                                break;
                            }
                            Err(error) => {
                                tracing::warn!(message = "pod index rebuild failed", %error);
                            }
                        }
                    }
                }
            },
            request = requests.next() => {
                let Some(request) = request else { return };
                let Some(reply) = request.reply.clone() else { continue };
                let Some(node) = subjects::parse_pod_index_list(&request.subject) else {
                    continue;
                };
                let page = match envelope::decode::<PodIndexListRequest>(
                    request.headers.as_ref(),
                    &request.payload,
                ) {
                    Ok((_, req)) => state.page(&node, &req),
                    Err(error) => {
                        // A malformed request gets no page; the requester times out and
                        // logs. Never fatal for the index.
                        tracing::warn!(message = "bad pod index request", %error);
                        continue;
                    }
                };
                publish(&client, reply.as_str(), &page).await;
            }
        }
    }
}

async fn publish<T: serde::Serialize>(client: &Client, subject: &str, body: &T) {
    match envelope::encode(body, &meta()) {
        Ok((headers, payload)) => {
            if let Err(error) = client
                .publish_with_headers(subject.to_string(), headers, payload)
                .await
            {
                // Receivers detect the gap (sequence or periodic check) and re-list.
                tracing::warn!(message = "pod index publish failed", %error);
            }
        }
        Err(error) => tracing::warn!(message = "pod index encode failed", %error),
    }
}

// ---- the node agent's side ------------------------------------------------------------

/// What a [`NodePods`] reports.
#[derive(Debug, Clone, PartialEq)]
pub enum NodePodsEvent {
    /// A (re)list: these are all the node's pods now; forget anything not in it.
    Synced(Vec<Value>),
    /// A pod bound to the node, in its newest state.
    Upsert(Value),
    /// A pod that is no longer the node's (deleted), in its last state.
    Removed(Value),
}

/// A node's view of its pods through the [`PodIndex`].
pub struct NodePods {
    client: Client,
    node: String,
    events: Subscriber,
    resyncs: Subscriber,
    check: tokio::time::Interval,
    /// The sequence a periodic check saw, to verify at the next check.
    checked_seq: Option<u64>,
    epoch: String,
    /// Epochs given up (events of theirs still buffered are ignored, not re-listed on).
    retired: VecDeque<String>,
    seq: u64,
    known: HashMap<String, u64>,
    queue: VecDeque<NodePodsEvent>,
}

impl NodePods {
    /// Subscribes to the node's events and lists its pods; the first event is
    /// [`NodePodsEvent::Synced`]. Fails with [`StoreError::Nats`] when no index answers.
    pub async fn start(store: &Store, node: &str) -> Result<NodePods> {
        let client = store.nats_client().clone();
        let events = client
            .subscribe(subjects::pod_index_events(node))
            .await
            .map_err(StoreError::nats)?;
        let resyncs = client
            .subscribe(subjects::POD_INDEX_RESYNC)
            .await
            .map_err(StoreError::nats)?;
        let mut check = tokio::time::interval_at(Instant::now() + CHECK_INTERVAL, CHECK_INTERVAL);
        check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut pods = NodePods {
            client,
            node: node.to_string(),
            events,
            resyncs,
            check,
            checked_seq: None,
            epoch: String::new(),
            retired: VecDeque::new(),
            seq: 0,
            known: HashMap::new(),
            queue: VecDeque::new(),
        };
        pods.resync().await?;
        Ok(pods)
    }

    async fn request(&self, request: &PodIndexListRequest) -> Result<PodIndexPage> {
        let (headers, body) = envelope::encode(request, &meta()).map_err(StoreError::nats)?;
        let send =
            self.client
                .request_with_headers(subjects::pod_index_list(&self.node), headers, body);
        let msg = match tokio::time::timeout(LIST_TIMEOUT, send).await {
            Ok(Ok(msg)) => msg,
            Ok(Err(error)) => {
                return Err(StoreError::Nats(format!(
                    "pod index for node {:?}: {error}",
                    self.node
                )));
            }
            Err(_) => {
                return Err(StoreError::Nats(format!(
                    "pod index for node {:?}: no answer within {LIST_TIMEOUT:?}",
                    self.node
                )));
            }
        };
        envelope::decode::<PodIndexPage>(msg.headers.as_ref(), &msg.payload)
            .map(|(_, page)| page)
            .map_err(|e| StoreError::Nats(format!("pod index page: {e}")))
    }

    /// Lists every page; queues a `Synced` with all pods.
    async fn resync(&mut self) -> Result<()> {
        'again: loop {
            let mut items = Vec::new();
            let mut after = None;
            let mut first: Option<(String, u64)> = None;
            loop {
                let page = self
                    .request(&PodIndexListRequest {
                        after: after.clone(),
                        limit: DEFAULT_PAGE,
                    })
                    .await?;
                match &first {
                    None => first = Some((page.epoch.clone(), page.seq)),
                    // The index rebuilt between pages: start over.
                    Some((epoch, _)) if *epoch != page.epoch => continue 'again,
                    Some(_) => {}
                }
                items.extend(page.items);
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            let (epoch, seq) = first.unwrap_or_default();
            if epoch != self.epoch && !self.epoch.is_empty() {
                self.retired.push_back(std::mem::take(&mut self.epoch));
                if self.retired.len() > 4 {
                    self.retired.pop_front();
                }
            }
            self.epoch = epoch;
            self.seq = seq;
            self.checked_seq = None;
            self.known = items
                .iter()
                .map(|p| (pod_index::pod_key(p), revision_of(p)))
                .collect();
            self.queue.clear();
            self.queue.push_back(NodePodsEvent::Synced(items));
            return Ok(());
        }
    }

    /// The next change. Errors are NATS failures; the caller starts over (a new
    /// [`NodePods`]) after a pause.
    pub async fn next(&mut self) -> Result<NodePodsEvent> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Ok(event);
            }
            tokio::select! {
                msg = self.events.next() => {
                    let Some(msg) = msg else {
                        return Err(StoreError::Nats("pod index subscription closed".into()));
                    };
                    let event = match envelope::decode::<PodIndexEvent>(msg.headers.as_ref(), &msg.payload) {
                        Ok((_, e)) => e,
                        Err(error) => {
                            tracing::warn!(message = "undecodable pod index event; re-listing", %error);
                            self.resync().await?;
                            continue;
                        }
                    };
                    if self.retired.contains(&event.epoch) {
                        continue;
                    }
                    if event.epoch != self.epoch || event.seq > self.seq + 1 {
                        self.resync().await?;
                        continue;
                    }
                    if event.seq <= self.seq {
                        continue; // Already in the list we merged.
                    }
                    self.seq = event.seq;
                    self.merge(event.change);
                }
                _ = self.resyncs.next() => self.resync().await?,
                _ = self.check.tick() => {
                    // Events in flight when the answer was taken are fine; events still
                    // missing one check later were lost.
                    if let Some(seen) = self.checked_seq.take()
                        && seen > self.seq
                    {
                        self.resync().await?;
                        continue;
                    }
                    let page = self.request(&PodIndexListRequest { after: None, limit: 0 }).await?;
                    if page.epoch != self.epoch {
                        self.resync().await?;
                    } else if page.seq > self.seq {
                        self.checked_seq = Some(page.seq);
                    }
                }
            }
        }
    }

    /// Applies a change if it is newer than what the node already knows.
    fn merge(&mut self, change: PodIndexChange) {
        match change {
            PodIndexChange::Upsert(pod) => {
                let key = pod_index::pod_key(&pod);
                let rv = revision_of(&pod);
                if self.known.get(&key).is_none_or(|known| rv > *known) {
                    self.known.insert(key, rv);
                    self.queue.push_back(NodePodsEvent::Upsert(pod));
                }
            }
            PodIndexChange::Removed(pod) => {
                let key = pod_index::pod_key(&pod);
                if self
                    .known
                    .get(&key)
                    .is_some_and(|known| revision_of(&pod) >= *known)
                {
                    self.known.remove(&key);
                    self.queue.push_back(NodePodsEvent::Removed(pod));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
