//! drover's object store on NATS JetStream KV: one bucket per kind, key
//! `<namespace>.<name>` (cluster scope `_`), resourceVersion = the KV revision (the
//! bucket stream's sequence number).
//!
//! The store is kind-agnostic: objects are `serde_json::Value`s with a standard
//! `metadata` (see [`object`]); [`Api`] is a typed view for `k8s-openapi` types and
//! drover's own kinds. Writes are raw JetStream publishes to the KV subjects so that each
//! stored value carries drover's envelope headers (schema version, sender, traceparent)
//! and a `Drover-Op` header that lets watchers tell ADDED from MODIFIED.
//!
//! What the store guarantees:
//! - create fails if the key holds a live object; update is a compare-and-swap on the
//!   revision (`Nats-Expected-Last-Subject-Sequence`), so concurrent writers get
//!   [`StoreError::Conflict`] instead of lost updates;
//! - uid, creationTimestamp and generation are set here (generation bumps only when the
//!   spec part changes), never by clients;
//! - delete of an object with finalizers (or a graceful delete) only sets
//!   `deletionTimestamp`; the object disappears when its last finalizer is removed and
//!   its grace period is zero. The tombstone carries the object's last state so watchers
//!   see a full DELETED event;
//! - unchanged updates are not written (no new revision, no fsync);
//! - watch replays every change the bucket still holds after a revision, in revision
//!   order, or fails with [`StoreError::Gone`] when that revision was compacted away.

mod error;
pub mod node_index;
pub mod object;
mod watch;

use std::collections::{BTreeMap, HashMap};
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishErrorKind, kv, stream::DirectGetErrorKind};
use base64::Engine as _;
use bus_schema::envelope::{self, Meta};
use bus_schema::selector::{FieldSelector, LabelSelector};
use bus_schema::{KindInfo, subjects};
use bytes::Bytes;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;
use tokio::sync::RwLock;

pub use error::{Result, StoreError};
pub use watch::{Watch, WatchEvent, WatchOptions};

/// Largest encoded object the store accepts (1.5 MiB), below NATS's payload limit.
pub const MAX_OBJECT_BYTES: usize = 1536 * 1024;

/// Per-key history kept by each bucket. Watch resumption needs the *latest* value of
/// every key changed after a revision, which any history keeps; more history lets a
/// resuming watcher see the intermediate states of hot objects and pushes the bucket's
/// first sequence (the "gone" horizon) back. 16 bounds storage at 16x the live data
/// while covering the churn of a pod's life (~6-10 status writes) in full.
pub const DEFAULT_HISTORY: i64 = 16;

/// NATS `max_payload` drover's own nats-server is configured with; leaves room for
/// headers above [`MAX_OBJECT_BYTES`].
pub const NATS_MAX_PAYLOAD: usize = 2 * 1024 * 1024;

/// Concurrent watches plus lists one bucket serves (each is a JetStream consumer).
/// The gateway's watch cache multiplexes client watches onto one consumer per kind, but
/// other watchers (actors, resumes older than the cache) are one each, so this stays far
/// above nats-server's default of 1,000.
pub const MAX_CONSUMERS_PER_BUCKET: i32 = 100_000;

/// Attempts to create a bucket while a NATS cluster forms (x [`BUCKET_CREATE_RETRY`]).
const BUCKET_CREATE_ATTEMPTS: usize = 60;
/// Pause between bucket creation attempts.
const BUCKET_CREATE_RETRY: Duration = Duration::from_millis(250);

/// How many times create retries a `generateName` collision.
const GENERATE_NAME_ATTEMPTS: usize = 8;

/// Header telling watchers whether a put was a create or an update.
const HEADER_OP: &str = "Drover-Op";
const KV_OPERATION: &str = "KV-Operation";

/// Store settings, one place (STYLE 8).
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Replicas per bucket: 1 for a single nats-server, 3 for a NATS cluster.
    pub replicas: usize,
    /// Per-key history depth (see [`DEFAULT_HISTORY`]).
    pub history: i64,
    /// Largest encoded object accepted.
    pub max_object_bytes: usize,
    /// Name written in the `Drover-Sender` header of every write.
    pub sender: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            replicas: 1,
            history: DEFAULT_HISTORY,
            max_object_bytes: MAX_OBJECT_BYTES,
            sender: "store".into(),
        }
    }
}

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    client: async_nats::Client,
    js: jetstream::Context,
    config: StoreConfig,
    /// The byte limit in force: the configured one, lowered to fit the server's
    /// `max_payload` when drover runs against a NATS it did not configure.
    limit: usize,
    buckets: RwLock<HashMap<String, Bucket>>,
    /// Makes atomic batch ids unique within this client.
    batches: AtomicU64,
}

/// One write of an atomic batch (see [`Store::update_batch`]).
struct Prepared {
    /// Position in the caller's input.
    index: usize,
    key: String,
    /// Expected last revision of the key.
    rev: u64,
    body: Bytes,
    /// What is stored (without its new resourceVersion).
    obj: Value,
}

enum Batched {
    Write(Prepared),
    Unchanged,
    OneByOne,
}

/// Most writes in one atomic batch (nats-server allows 1,000).
const MAX_BATCH: usize = 500;

/// JetStream's error code for a failed expected-last-sequence check.
const ERR_WRONG_LAST_SEQUENCE: u64 = 10071;

/// The reply to an atomic batch's commit.
#[derive(Deserialize)]
struct BatchAck {
    seq: Option<u64>,
    error: Option<BatchAckError>,
}

#[derive(Deserialize)]
struct BatchAckError {
    err_code: u64,
    #[serde(default)]
    description: String,
}

#[derive(Clone)]
struct Bucket {
    kind: &'static KindInfo,
    name: String,
    prefix: String,
    stream: jetstream::stream::Stream,
}

/// What the latest message of a key says.
enum Latest {
    Missing,
    Deleted(u64),
    Present(Value, u64),
}

/// Options for [`Store::list`].
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Only objects whose labels match.
    pub label_selector: Option<LabelSelector>,
    /// Only objects whose fields match.
    pub field_selector: Option<FieldSelector>,
    /// At most this many items; the rest is reachable with the returned continue token.
    pub limit: Option<usize>,
    /// Token from a previous page.
    pub continue_token: Option<String>,
}

/// A page of objects.
#[derive(Debug, Clone)]
pub struct ObjectList {
    /// The objects, ordered by key (namespace, then name).
    pub items: Vec<Value>,
    /// A revision from which a watch sees every change not reflected in `items`.
    pub resource_version: u64,
    /// Token for the next page, when there is one.
    pub continue_token: Option<String>,
    /// Number of matching items after this page, when there is a next page.
    pub remaining_item_count: Option<u64>,
}

/// Preconditions and grace for [`Store::delete`].
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// Delete only if the stored uid is this one.
    pub uid: Option<String>,
    /// Delete only if the stored resourceVersion is this one.
    pub resource_version: Option<String>,
    /// A grace period > 0 marks the object terminating (like finalizers do) so its owner
    /// (the node agent, for pods) can stop it gracefully and then delete with 0.
    pub grace_period_seconds: Option<i64>,
    /// Finalizers the delete adds as it marks the object terminating, in the same write:
    /// `foregroundDeletion` or `orphan` for the garbage collector's propagation policies.
    pub add_finalizers: Vec<String>,
}

/// Adds the finalizers `extra` that `obj` lacks; whether it added any.
fn add_finalizers(obj: &mut Value, extra: &[String]) -> bool {
    let have = object::finalizers(obj);
    let missing: Vec<Value> = extra
        .iter()
        .filter(|f| !have.contains(f))
        .map(|f| Value::from(f.as_str()))
        .collect();
    if missing.is_empty() {
        return false;
    }
    let meta = object::meta_mut(obj);
    match meta.get_mut("finalizers").and_then(Value::as_array_mut) {
        Some(list) => list.extend(missing),
        None => {
            meta.insert("finalizers".into(), Value::Array(missing));
        }
    }
    true
}

/// What a delete did.
#[derive(Debug, Clone, PartialEq)]
pub enum DeleteOutcome {
    /// The object is gone; this was its last state.
    Deleted(Value),
    /// The object now has a deletionTimestamp and waits for finalizers or its grace period.
    Terminating(Value),
}

#[derive(Serialize, Deserialize)]
struct ContinueToken {
    v: String,
    rv: u64,
    start: String,
}

impl Store {
    /// Connects the store to a NATS client. Buckets are opened (and created) on first use
    /// or up front with [`Store::ensure_buckets`].
    pub async fn new(client: async_nats::Client, config: StoreConfig) -> Result<Store> {
        let server_max = client.server_info().max_payload;
        // Leave 8 KiB of the server's payload limit for headers.
        let limit = if server_max > 0 {
            config
                .max_object_bytes
                .min(server_max.saturating_sub(8 * 1024))
        } else {
            config.max_object_bytes
        };
        let js = jetstream::new(client.clone());
        Ok(Store {
            inner: Arc::new(Inner {
                client,
                js,
                config,
                limit,
                buckets: RwLock::new(HashMap::new()),
                batches: AtomicU64::new(0),
            }),
        })
    }

    /// The NATS client the store talks through (for services that share its connection,
    /// such as the pod index).
    pub fn nats_client(&self) -> &async_nats::Client {
        &self.inner.client
    }

    /// The largest encoded object this store accepts.
    pub fn object_limit(&self) -> usize {
        self.inner.limit
    }

    /// Opens (creating where missing) the buckets of the given kinds.
    pub async fn ensure_buckets(&self, kinds: &'static [KindInfo]) -> Result<()> {
        for kind in kinds {
            self.bucket(kind).await?;
        }
        Ok(())
    }

    /// Creates (or keeps) the JetStream stream that holds cluster events
    /// (`drover.events.>`), bounded by age, for subscribers to replay.
    pub async fn ensure_event_stream(&self, max_age: Duration) -> Result<()> {
        let config = jetstream::stream::Config {
            name: subjects::EVENTS_STREAM.to_string(),
            subjects: vec![subjects::EVENTS_ALL.to_string()],
            max_age,
            storage: jetstream::stream::StorageType::File,
            num_replicas: self.inner.config.replicas,
            ..Default::default()
        };
        self.inner
            .js
            .get_or_create_stream(config)
            .await
            .map_err(StoreError::nats)?;
        Ok(())
    }

    async fn bucket(&self, kind: &'static KindInfo) -> Result<Bucket> {
        let name = subjects::kv_bucket(kind);
        if let Some(b) = self.inner.buckets.read().await.get(&name) {
            return Ok(b.clone());
        }
        let kv = match self.inner.js.get_key_value(&name).await {
            Ok(kv) => kv,
            Err(_) => {
                let (source, destination) = subjects::kv_republish(kind, &name);
                let config = kv::Config {
                    bucket: name.clone(),
                    description: format!("drover {}", kind.group_resource()),
                    history: self.inner.config.history,
                    max_value_size: i32::try_from(NATS_MAX_PAYLOAD).unwrap_or(i32::MAX),
                    storage: jetstream::stream::StorageType::File,
                    num_replicas: self.inner.config.replicas,
                    republish: Some(jetstream::stream::Republish {
                        source,
                        destination,
                        headers_only: false,
                    }),
                    ..Default::default()
                };
                // A NATS cluster that is still forming answers "no suitable peers for
                // placement" until enough servers have joined: retry for a while.
                let mut attempt = 0;
                loop {
                    match self.inner.js.create_key_value(config.clone()).await {
                        Ok(kv) => break kv,
                        // Another process created it between our get and create.
                        Err(create_err) => match self.inner.js.get_key_value(&name).await {
                            Ok(kv) => break kv,
                            Err(_) if attempt < BUCKET_CREATE_ATTEMPTS => {
                                attempt += 1;
                                tracing::info!(message = "bucket not created yet; retrying", bucket = %name, error = %create_err);
                                tokio::time::sleep(BUCKET_CREATE_RETRY).await;
                            }
                            Err(_) => {
                                return Err(StoreError::nats(format!(
                                    "creating bucket {name}: {create_err}"
                                )));
                            }
                        },
                    }
                }
            }
        };
        // Every watch and list is a consumer of the bucket's stream; nats-server caps a
        // stream at 1,000 consumers unless the stream sets its own limit.
        let mut stream = kv.stream;
        let info = stream.info().await.map_err(StoreError::nats)?.clone();
        // Atomic batches (NATS >= 2.12) carry `update_batch`: many CAS writes, one
        // request and one commit.
        if info.config.max_consumers != MAX_CONSUMERS_PER_BUCKET
            || !info.config.allow_atomic_publish
        {
            let mut config = info.config.clone();
            config.max_consumers = MAX_CONSUMERS_PER_BUCKET;
            config.allow_atomic_publish = true;
            self.inner
                .js
                .update_stream(config)
                .await
                .map_err(|e| StoreError::nats(format!("configuring the stream of {name}: {e}")))?;
        }
        let kv_stream = stream;
        let bucket = Bucket {
            kind,
            prefix: subjects::kv_subject_prefix(&name),
            name: name.clone(),
            stream: kv_stream,
        };
        self.inner
            .buckets
            .write()
            .await
            .insert(name, bucket.clone());
        Ok(bucket)
    }

    /// A typed view of one kind.
    pub fn api<K: k8s_openapi::Resource>(&self) -> Api<K> {
        Api {
            store: self.clone(),
            kind: bus_schema::kinds::of::<K>(),
            _k: PhantomData,
        }
    }

    // ---- reads -------------------------------------------------------------------

    /// Reads one object.
    pub async fn get(
        &self,
        kind: &'static KindInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value> {
        let bucket = self.bucket(kind).await?;
        match self
            .latest(&bucket, &subjects::kv_key(namespace, name))
            .await?
        {
            Latest::Present(obj, _) => Ok(obj),
            Latest::Missing | Latest::Deleted(_) => Err(not_found(kind, name)),
        }
    }

    async fn latest(&self, bucket: &Bucket, key: &str) -> Result<Latest> {
        let subject = subjects::kv_subject(&bucket.name, key);
        let msg = match bucket.stream.direct_get_last_for_subject(subject).await {
            Ok(msg) => msg,
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => return Ok(Latest::Missing),
            Err(e) => return Err(StoreError::nats(e)),
        };
        if is_delete(&msg.headers) {
            return Ok(Latest::Deleted(msg.sequence));
        }
        let obj = decode_value(
            bucket.kind,
            key,
            Some(&msg.headers),
            &msg.payload,
            msg.sequence,
        )?;
        Ok(Latest::Present(obj, msg.sequence))
    }

    /// Lists objects of a kind, in one namespace or all, ordered by key.
    pub async fn list(
        &self,
        kind: &'static KindInfo,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<ObjectList> {
        let bucket = self.bucket(kind).await?;
        let token = match &opts.continue_token {
            Some(t) if !t.is_empty() => Some(decode_continue(t)?),
            _ => None,
        };
        // The list's revision: a watch from here sees every change not in the snapshot
        // (it may also see changes that are, which level-driven clients tolerate).
        let list_rv = match &token {
            Some(t) => t.rv,
            None => {
                bucket
                    .stream
                    .get_info()
                    .await
                    .map_err(StoreError::nats)?
                    .state
                    .last_sequence
            }
        };
        // In key order, one entry per key.
        let entries = self.snapshot(&bucket, namespace).await?;
        let start = token.as_ref().map(|t| t.start.as_str()).unwrap_or("");
        let mut matching = entries.into_iter().filter(|(key, obj)| {
            key.as_str() > start
                && opts
                    .label_selector
                    .as_ref()
                    .is_none_or(|s| s.matches(&object::labels(obj)))
                && opts.field_selector.as_ref().is_none_or(|s| s.matches(obj))
        });
        let mut items = Vec::new();
        let mut last_key = String::new();
        let limit = opts.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        for (key, obj) in matching.by_ref() {
            if items.len() == limit {
                // One more matched: there is a next page.
                let remaining = 1 + matching.count() as u64;
                let token = encode_continue(list_rv, &last_key);
                return Ok(ObjectList {
                    items,
                    resource_version: list_rv,
                    continue_token: Some(token),
                    remaining_item_count: Some(remaining),
                });
            }
            last_key = key;
            items.push(obj);
        }
        Ok(ObjectList {
            items,
            resource_version: list_rv,
            continue_token: None,
            remaining_item_count: None,
        })
    }

    /// The latest live value of every key (in one namespace or all), in key order, read
    /// with an ordered consumer delivering the last message per subject.
    async fn snapshot(
        &self,
        bucket: &Bucket,
        namespace: Option<&str>,
    ) -> Result<Vec<(String, Value)>> {
        use futures::StreamExt;
        let consumer = bucket
            .stream
            .create_consumer(jetstream::consumer::push::OrderedConfig {
                deliver_subject: self.inner.client.new_inbox(),
                filter_subject: subjects::kv_filter(&bucket.name, namespace),
                deliver_policy: jetstream::consumer::DeliverPolicy::LastPerSubject,
                replay_policy: jetstream::consumer::ReplayPolicy::Instant,
                ..Default::default()
            })
            .await
            .map_err(StoreError::nats)?;
        // Keyed by key: a write that lands while the snapshot is delivered arrives as one
        // more message for a key already seen, and must replace it (or, for a delete,
        // remove it), never sit beside it.
        let mut out = BTreeMap::new();
        if consumer.cached_info().num_pending == 0 {
            return Ok(Vec::new());
        }
        let mut messages = consumer.messages().await.map_err(StoreError::nats)?;
        loop {
            let next = tokio::time::timeout(SNAPSHOT_STALL_TIMEOUT, messages.next()).await;
            let msg = match next {
                Err(_) => {
                    return Err(StoreError::Nats(format!(
                        "listing {}: no progress for {SNAPSHOT_STALL_TIMEOUT:?}",
                        bucket.name
                    )));
                }
                Ok(None) => {
                    return Err(StoreError::Nats(format!(
                        "listing {}: consumer closed",
                        bucket.name
                    )));
                }
                Ok(Some(Err(e))) => return Err(StoreError::nats(e)),
                Ok(Some(Ok(msg))) => msg,
            };
            let info = msg.info().map_err(StoreError::nats)?;
            let (seq, pending) = (info.stream_sequence, info.pending);
            let key = msg
                .subject
                .strip_prefix(bucket.prefix.as_str())
                .unwrap_or(&msg.subject)
                .to_string();
            if msg.headers.as_ref().is_some_and(is_delete) {
                out.remove(&key);
            } else {
                match decode_value(bucket.kind, &key, msg.headers.as_ref(), &msg.payload, seq) {
                    Ok(obj) => {
                        out.insert(key, obj);
                    }
                    Err(error) => {
                        out.remove(&key);
                        tracing::warn!(message = "skipping undecodable stored value", bucket = %bucket.name, %error)
                    }
                }
            }
            if pending == 0 {
                return Ok(out.into_iter().collect());
            }
        }
    }

    /// The kind's current revision: the bucket stream's last sequence, one stream-info
    /// request and no consumer. A cache that has applied every change up to this
    /// revision is as fresh as a list issued now (Kubernetes' consistent reads).
    pub async fn revision(&self, kind: &'static KindInfo) -> Result<u64> {
        let bucket = self.bucket(kind).await?;
        let info = bucket.stream.get_info().await.map_err(StoreError::nats)?;
        Ok(info.state.last_sequence)
    }

    /// Follows changes of a kind (in one namespace or all) after `resource_version`:
    /// every change the bucket still holds is replayed in revision order, then live ones.
    /// `0` replays the whole retained history. Fails with [`StoreError::Gone`] when
    /// `resource_version` is older than the bucket's first retained revision.
    pub async fn watch(
        &self,
        kind: &'static KindInfo,
        namespace: Option<&str>,
        resource_version: u64,
        opts: WatchOptions,
    ) -> Result<Watch> {
        let bucket = self.bucket(kind).await?;
        let info = bucket.stream.get_info().await.map_err(StoreError::nats)?;
        let first = info.state.first_sequence;
        // Everything after `resource_version` must still be held: the next revision
        // must not be older than the first one retained.
        if resource_version > 0 && resource_version + 1 < first {
            return Err(StoreError::Gone {
                requested: resource_version,
                oldest: first.saturating_sub(1),
            });
        }
        watch::start(
            self.inner.client.clone(),
            bucket.stream.clone(),
            bucket.kind,
            bucket.name.clone(),
            bucket.prefix.clone(),
            namespace,
            resource_version,
            opts,
        )
        .await
    }

    // ---- writes ------------------------------------------------------------------

    /// Creates an object. Sets uid, creationTimestamp and generation; fills the name
    /// from `generateName` when there is none.
    pub async fn create(&self, kind: &'static KindInfo, mut obj: Value) -> Result<Value> {
        normalize_type(kind, &mut obj);
        validate(kind, &obj)?;
        let bucket = self.bucket(kind).await?;
        let generate = object::name(&obj).is_empty();
        {
            let meta = object::meta_mut(&mut obj);
            meta.insert(
                "uid".into(),
                Value::String(uuid::Uuid::new_v4().to_string()),
            );
            meta.insert("creationTimestamp".into(), object::now_rfc3339());
            meta.insert("generation".into(), Value::from(1));
            for server_set in [
                "resourceVersion",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "selfLink",
            ] {
                meta.remove(server_set);
            }
            if !kind.namespaced {
                meta.remove("namespace");
            }
        }
        for _ in 0..GENERATE_NAME_ATTEMPTS {
            if generate {
                let prefix = object::meta_str(&obj, "generateName")
                    .unwrap_or("")
                    .to_string();
                object::meta_mut(&mut obj)
                    .insert("name".into(), Value::String(generated_name(&prefix)));
            }
            match self.create_once(&bucket, &obj).await {
                Err(StoreError::AlreadyExists { .. }) if generate => continue,
                other => return other,
            }
        }
        Err(StoreError::AlreadyExists {
            kind: kind.group_resource(),
            name: object::name(&obj).to_string(),
        })
    }

    async fn create_once(&self, bucket: &Bucket, obj: &Value) -> Result<Value> {
        let kind = bucket.kind;
        let name = object::name(obj).to_string();
        let key = subjects::kv_key(object::namespace(obj), &name);
        let body = self.encode(obj)?;
        let mut expected = 0;
        // At most two rounds: the second one replaces a delete tombstone.
        for _ in 0..2 {
            match self
                .publish(bucket, &key, WriteOp::Create, expected, body.clone())
                .await
            {
                Ok(rev) => return Ok(with_rv(obj.clone(), rev)),
                Err(StoreError::Conflict { .. }) => match self.latest(bucket, &key).await? {
                    Latest::Deleted(rev) if rev != expected => expected = rev,
                    Latest::Missing => expected = 0,
                    _ => {
                        return Err(StoreError::AlreadyExists {
                            kind: kind.group_resource(),
                            name,
                        });
                    }
                },
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::AlreadyExists {
            kind: kind.group_resource(),
            name,
        })
    }

    /// Replaces an object. With `metadata.resourceVersion` set this is a compare-and-swap
    /// ([`StoreError::Conflict`] when someone wrote first); without it, the write applies
    /// to whatever is stored. Server-owned metadata is kept; generation bumps when the
    /// spec part changed. Removing the last finalizer of a terminating object whose
    /// grace period is over deletes it.
    pub async fn update(&self, kind: &'static KindInfo, mut obj: Value) -> Result<Value> {
        normalize_type(kind, &mut obj);
        validate(kind, &obj)?;
        let bucket = self.bucket(kind).await?;
        let name = object::name(&obj).to_string();
        let namespace = if kind.namespaced {
            object::namespace(&obj).map(str::to_string)
        } else {
            None
        };
        let key = subjects::kv_key(namespace.as_deref(), &name);
        let wanted_rv = match object::meta_str(&obj, "resourceVersion").filter(|s| !s.is_empty()) {
            Some(s) => Some(parse_rv(s)?),
            None => None,
        };
        let (current, rev) = match self.latest(&bucket, &key).await? {
            Latest::Present(cur, rev) => (cur, rev),
            Latest::Missing | Latest::Deleted(_) => return Err(not_found(kind, &name)),
        };
        if let Some(wanted) = wanted_rv
            && wanted != rev
        {
            return Err(conflict(kind, &name));
        }
        carry_server_fields(&current, &mut obj);
        if object::is_terminating(&current) {
            let before = object::finalizers(&current);
            let added: Vec<String> = object::finalizers(&obj)
                .into_iter()
                .filter(|f| !before.contains(f))
                .collect();
            if !added.is_empty() {
                let errors = bus_schema::validation::FieldErrors(vec![
                    bus_schema::validation::FieldError {
                        field: "metadata.finalizers".into(),
                        error_type: bus_schema::validation::FieldErrorType::Forbidden,
                        bad_value: None,
                        detail: format!(
                            "no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                        ),
                    },
                ]);
                return Err(StoreError::Invalid {
                    kind: kind.group_resource(),
                    name,
                    errors,
                });
            }
            let grace = current
                .get("metadata")
                .and_then(|m| m.get("deletionGracePeriodSeconds"))
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if !object::blocks_removal(kind, &obj) && grace == 0 {
                return self.remove(&bucket, &key, obj, rev).await;
            }
        }
        let generation = current
            .get("metadata")
            .and_then(|m| m.get("generation"))
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let generation = if object::spec_part(&current) != object::spec_part(&obj) {
            generation + 1
        } else {
            generation
        };
        object::meta_mut(&mut obj).insert("generation".into(), Value::from(generation));
        if without_rv(&obj) == without_rv(&current) {
            // Nothing changed: no new revision, no fsync.
            return Ok(current);
        }
        let body = self.encode(&obj)?;
        let new_rev = self
            .publish(&bucket, &key, WriteOp::Update, rev, body)
            .await?;
        Ok(with_rv(obj, new_rev))
    }

    /// Compare-and-swap updates of many objects of one kind in one atomic batch. Each
    /// entry is `(current, changed)`: `current` a whole stored object as read (its
    /// `metadata.resourceVersion` is the precondition, and nothing is re-read), `changed`
    /// what to store instead. One request and one commit for the lot, where
    /// [`Store::update`] costs a read and a write each: the scheduler binds this way.
    /// The batch is stored all or nothing; when a precondition fails, its entries are
    /// retried one by one through [`Store::update`] (with `current`'s resourceVersion),
    /// so exactly the stale ones get [`StoreError::Conflict`]. Terminating objects and a
    /// key given twice also take that path. Results are in input order.
    pub async fn update_batch(
        &self,
        kind: &'static KindInfo,
        entries: Vec<(Value, Value)>,
    ) -> Vec<Result<Value>> {
        let bucket = match self.bucket(kind).await {
            Ok(b) => b,
            Err(e) => {
                let msg = e.to_string();
                return entries
                    .iter()
                    .map(|_| Err(StoreError::Nats(msg.clone())))
                    .collect();
            }
        };
        let mut results: Vec<Option<Result<Value>>> = entries.iter().map(|_| None).collect();
        let mut batch: Vec<Prepared> = Vec::new();
        let mut one_by_one: Vec<usize> = Vec::new();
        let mut keys = std::collections::HashSet::new();
        for (i, (current, changed)) in entries.iter().enumerate() {
            match self.prepare_batched(kind, current, changed.clone()) {
                Ok(Batched::Write(p)) if keys.insert(p.key.clone()) => {
                    batch.push(Prepared { index: i, ..p })
                }
                Ok(Batched::Unchanged) => results[i] = Some(Ok(current.clone())),
                Ok(_) => one_by_one.push(i),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        for chunk in batch.chunks(MAX_BATCH) {
            match self.publish_batch(&bucket, chunk).await {
                Ok(last) => {
                    let first = last + 1 - chunk.len() as u64;
                    for (k, p) in chunk.iter().enumerate() {
                        results[p.index] = Some(Ok(with_rv(p.obj.clone(), first + k as u64)));
                    }
                }
                Err(StoreError::Conflict { .. }) => {
                    one_by_one.extend(chunk.iter().map(|p| p.index));
                }
                Err(e) => {
                    let msg = e.to_string();
                    for p in chunk {
                        results[p.index] = Some(Err(StoreError::Nats(msg.clone())));
                    }
                }
            }
        }
        let singles = futures::future::join_all(one_by_one.iter().map(|&i| {
            let (current, changed) = &entries[i];
            let mut changed = changed.clone();
            if let Some(rv) = object::meta_str(current, "resourceVersion") {
                object::meta_mut(&mut changed).insert("resourceVersion".into(), rv.into());
            }
            self.update(kind, changed)
        }))
        .await;
        for (i, r) in one_by_one.into_iter().zip(singles) {
            results[i] = Some(r);
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(StoreError::Nats("not written".into()))))
            .collect()
    }

    /// What [`Store::update`] does between its read and its write, with the read given.
    fn prepare_batched(
        &self,
        kind: &'static KindInfo,
        current: &Value,
        mut obj: Value,
    ) -> Result<Batched> {
        normalize_type(kind, &mut obj);
        validate(kind, &obj)?;
        let rev = match object::meta_str(current, "resourceVersion").filter(|s| !s.is_empty()) {
            Some(s) => parse_rv(s)?,
            None => return Ok(Batched::OneByOne),
        };
        if object::is_terminating(current) {
            return Ok(Batched::OneByOne);
        }
        carry_server_fields(current, &mut obj);
        let generation = current
            .get("metadata")
            .and_then(|m| m.get("generation"))
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let generation = if object::spec_part(current) != object::spec_part(&obj) {
            generation + 1
        } else {
            generation
        };
        object::meta_mut(&mut obj).insert("generation".into(), Value::from(generation));
        if without_rv(&obj) == without_rv(current) {
            return Ok(Batched::Unchanged);
        }
        let namespace = if kind.namespaced {
            object::namespace(current).map(str::to_string)
        } else {
            None
        };
        let key = subjects::kv_key(namespace.as_deref(), object::name(current));
        let body = self.encode(&obj)?;
        Ok(Batched::Write(Prepared {
            index: 0,
            key,
            rev,
            body,
            obj,
        }))
    }

    /// Publishes `writes` as one atomic batch (each with its own expected last subject
    /// sequence); the sequence of the last message on success.
    async fn publish_batch(&self, bucket: &Bucket, writes: &[Prepared]) -> Result<u64> {
        let batch_id = generated_name("b-");
        let batch_id = format!(
            "{batch_id}{}",
            self.inner.batches.fetch_add(1, Ordering::Relaxed)
        );
        let meta = Meta {
            sender: self.inner.config.sender.clone(),
            traceparent: None,
        };
        let n = writes.len();
        for (k, Prepared { key, rev, body, .. }) in writes.iter().enumerate() {
            let mut headers =
                envelope::headers(&meta).map_err(|e| StoreError::BadRequest(e.to_string()))?;
            headers.insert(
                async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                rev.to_string().as_str(),
            );
            headers.insert(HEADER_OP, WriteOp::Update.as_str());
            headers.insert("Nats-Batch-Id", batch_id.as_str());
            headers.insert("Nats-Batch-Sequence", (k + 1).to_string().as_str());
            let subject = subjects::kv_subject(&bucket.name, key);
            if k + 1 < n {
                self.inner
                    .client
                    .publish_with_headers(subject, headers, body.clone())
                    .await
                    .map_err(StoreError::nats)?;
                continue;
            }
            headers.insert("Nats-Batch-Commit", "1");
            let reply = self
                .inner
                .client
                .request_with_headers(subject, headers, body.clone())
                .await
                .map_err(StoreError::nats)?;
            let ack: BatchAck = serde_json::from_slice(&reply.payload)
                .map_err(|e| StoreError::Nats(format!("batch ack: {e}")))?;
            if let Some(error) = ack.error {
                if error.err_code == ERR_WRONG_LAST_SEQUENCE {
                    return Err(conflict(bucket.kind, key));
                }
                return Err(StoreError::Nats(format!(
                    "batch of {n} writes refused: {} ({})",
                    error.description, error.err_code
                )));
            }
            return ack
                .seq
                .ok_or_else(|| StoreError::Nats("batch ack without a sequence".into()));
        }
        Err(StoreError::BadRequest("empty batch".into()))
    }

    /// Deletes an object, honouring finalizers, graceful deletion and preconditions.
    pub async fn delete(
        &self,
        kind: &'static KindInfo,
        namespace: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<DeleteOutcome> {
        let bucket = self.bucket(kind).await?;
        let namespace = if kind.namespaced { namespace } else { None };
        let key = subjects::kv_key(namespace, name);
        let wanted_rv = match opts.resource_version.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => Some(parse_rv(s)?),
            None => None,
        };
        // Retry only races with other writers; preconditions are checked every round.
        for _ in 0..DELETE_ATTEMPTS {
            let (current, rev) = match self.latest(&bucket, &key).await? {
                Latest::Present(cur, rev) => (cur, rev),
                Latest::Missing | Latest::Deleted(_) => return Err(not_found(kind, name)),
            };
            if let Some(uid) = &opts.uid
                && object::meta_str(&current, "uid") != Some(uid.as_str())
            {
                return Err(StoreError::Conflict {
                    kind: kind.group_resource(),
                    name: name.into(),
                    reason: format!(
                        "precondition failed: uid in precondition: {uid}, uid in object meta: {}",
                        object::meta_str(&current, "uid").unwrap_or("")
                    ),
                });
            }
            if let Some(wanted) = wanted_rv
                && wanted != rev
            {
                return Err(StoreError::Conflict {
                    kind: kind.group_resource(),
                    name: name.into(),
                    reason: format!(
                        "precondition failed: resourceVersion in precondition: {wanted}, resourceVersion in object meta: {rev}"
                    ),
                });
            }
            let grace = opts.grace_period_seconds.unwrap_or(0).max(0);
            let mut current = current;
            let added = !object::is_terminating(&current)
                && add_finalizers(&mut current, &opts.add_finalizers);
            let has_finalizers = object::blocks_removal(kind, &current);
            if object::is_namespace(kind) {
                current["status"]["phase"] = Value::from("Terminating");
            }
            let result = if has_finalizers || grace > 0 {
                if object::is_terminating(&current) {
                    let current_grace = current
                        .get("metadata")
                        .and_then(|m| m.get("deletionGracePeriodSeconds"))
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    if !added && (grace >= current_grace || has_finalizers && current_grace == 0) {
                        // Already terminating and this delete does not shorten the grace.
                        return Ok(DeleteOutcome::Terminating(current));
                    }
                }
                let mut obj = current.clone();
                let meta = object::meta_mut(&mut obj);
                meta.entry("deletionTimestamp")
                    .or_insert_with(object::now_rfc3339);
                meta.insert("deletionGracePeriodSeconds".into(), Value::from(grace));
                if !has_finalizers && grace == 0 {
                    self.remove(&bucket, &key, obj, rev)
                        .await
                        .map(DeleteOutcome::Deleted)
                } else {
                    let body = self.encode(&obj)?;
                    self.publish(&bucket, &key, WriteOp::Update, rev, body)
                        .await
                        .map(|r| DeleteOutcome::Terminating(with_rv(obj, r)))
                }
            } else {
                self.remove(&bucket, &key, current, rev)
                    .await
                    .map(DeleteOutcome::Deleted)
            };
            match result {
                Err(StoreError::Conflict { .. }) => continue,
                other => return other,
            }
        }
        Err(conflict(kind, name))
    }

    /// Writes the tombstone (KV delete marker carrying the object's last state).
    async fn remove(&self, bucket: &Bucket, key: &str, mut last: Value, rev: u64) -> Result<Value> {
        object::meta_mut(&mut last)
            .entry("deletionTimestamp")
            .or_insert_with(object::now_rfc3339);
        let body = self.encode(&last)?;
        let new_rev = self
            .publish(bucket, key, WriteOp::Delete, rev, body)
            .await?;
        Ok(with_rv(last, new_rev))
    }

    fn encode(&self, obj: &Value) -> Result<Bytes> {
        let mut stored = obj.clone();
        object::meta_mut(&mut stored).remove("resourceVersion");
        let body =
            envelope::encode_body(&stored).map_err(|e| StoreError::BadRequest(e.to_string()))?;
        if body.len() > self.inner.limit {
            return Err(StoreError::TooLarge {
                size: body.len(),
                limit: self.inner.limit,
            });
        }
        Ok(body)
    }

    /// Publishes one KV write with a CAS on the key's last revision (0 = must not exist).
    async fn publish(
        &self,
        bucket: &Bucket,
        key: &str,
        op: WriteOp,
        expected: u64,
        body: Bytes,
    ) -> Result<u64> {
        let meta = Meta {
            sender: self.inner.config.sender.clone(),
            traceparent: None,
        };
        let mut headers =
            envelope::headers(&meta).map_err(|e| StoreError::BadRequest(e.to_string()))?;
        headers.insert(
            async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
            expected.to_string().as_str(),
        );
        headers.insert(HEADER_OP, op.as_str());
        if op == WriteOp::Delete {
            headers.insert(KV_OPERATION, "DEL");
        }
        let subject = subjects::kv_subject(&bucket.name, key);
        let ack = self
            .inner
            .js
            .publish_with_headers(subject, headers, body)
            .await
            .map_err(StoreError::nats)?;
        match ack.await {
            Ok(ack) => Ok(ack.sequence),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                let name = subjects::parse_kv_key(key)
                    .map(|(_, name)| name)
                    .unwrap_or_else(|| key.to_string());
                Err(conflict(bucket.kind, &name))
            }
            Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => {
                Err(StoreError::TooLarge {
                    size: 0,
                    limit: self.inner.limit,
                })
            }
            Err(e) => Err(StoreError::nats(e)),
        }
    }
}

/// How long a list may see no message before it gives up.
const SNAPSHOT_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Rounds of a delete racing with other writers before it reports a conflict.
const DELETE_ATTEMPTS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteOp {
    Create,
    Update,
    Delete,
}

impl WriteOp {
    fn as_str(self) -> &'static str {
        match self {
            WriteOp::Create => "create",
            WriteOp::Update => "update",
            WriteOp::Delete => "delete",
        }
    }
}

pub(crate) fn is_delete(headers: &HeaderMap) -> bool {
    headers
        .get(KV_OPERATION)
        .is_some_and(|v| matches!(v.as_str(), "DEL" | "PURGE"))
}

pub(crate) fn is_create(headers: Option<&HeaderMap>) -> bool {
    headers
        .and_then(|h| h.get(HEADER_OP))
        .is_some_and(|v| v.as_str() == "create")
}

/// Decodes a stored value and stamps the revision as its resourceVersion.
pub(crate) fn decode_value(
    kind: &KindInfo,
    key: &str,
    headers: Option<&HeaderMap>,
    payload: &[u8],
    revision: u64,
) -> Result<Value> {
    let corrupt = |reason: String| StoreError::Corrupt {
        kind: kind.group_resource(),
        key: key.to_string(),
        reason,
    };
    envelope::decode_meta(headers).map_err(|e| corrupt(e.to_string()))?;
    let obj: Value = envelope::decode_body(payload).map_err(|e| corrupt(e.to_string()))?;
    if !obj.is_object() {
        return Err(corrupt("not an object".into()));
    }
    Ok(with_rv(obj, revision))
}

fn with_rv(mut obj: Value, rev: u64) -> Value {
    object::meta_mut(&mut obj).insert("resourceVersion".into(), Value::String(rev.to_string()));
    obj
}

fn without_rv(obj: &Value) -> Value {
    let mut o = obj.clone();
    object::meta_mut(&mut o).remove("resourceVersion");
    o
}

fn parse_rv(s: &str) -> Result<u64> {
    s.parse().map_err(|_| {
        StoreError::BadRequest(format!(
            "invalid resourceVersion {s:?}: must be an unsigned integer"
        ))
    })
}

/// Fills `apiVersion`/`kind` and the kind's API defaults (`bus_schema::defaults`).
fn normalize_type(kind: &KindInfo, obj: &mut Value) {
    if let Some(map) = obj.as_object_mut() {
        map.entry("apiVersion")
            .or_insert_with(|| Value::String(kind.api_version()));
        map.entry("kind")
            .or_insert_with(|| Value::String(kind.kind.to_string()));
    }
    bus_schema::defaults::apply(kind, obj);
}

fn validate(kind: &KindInfo, obj: &Value) -> Result<()> {
    use bus_schema::validation::{FieldError, FieldErrorType, FieldErrors};
    let mut errors = match bus_schema::validation::validate_object(kind, obj) {
        Ok(()) => Vec::new(),
        Err(FieldErrors(errors)) => errors,
    };
    // The store keys namespaced objects by namespace, so it must have one (the gateway
    // fills it from the URL).
    if kind.namespaced
        && object::namespace(obj).is_none()
        && !errors.iter().any(|e| e.field == "metadata.namespace")
    {
        errors.push(FieldError {
            field: "metadata.namespace".into(),
            error_type: FieldErrorType::Required,
            bad_value: None,
            detail: String::new(),
        });
    }
    if errors.is_empty() {
        return Ok(());
    }
    Err(StoreError::Invalid {
        kind: kind.group_resource(),
        name: object::name(obj).to_string(),
        errors: FieldErrors(errors),
    })
}

/// Keeps the fields only the store may set.
fn carry_server_fields(current: &Value, obj: &mut Value) {
    let cur_meta = current
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let meta = object::meta_mut(obj);
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match cur_meta.get(field) {
            Some(v) => {
                meta.insert(field.into(), v.clone());
            }
            None => {
                meta.remove(field);
            }
        }
    }
    meta.remove("resourceVersion");
}

fn not_found(kind: &KindInfo, name: &str) -> StoreError {
    StoreError::NotFound {
        kind: kind.group_resource(),
        name: name.to_string(),
    }
}

fn conflict(kind: &KindInfo, name: &str) -> StoreError {
    StoreError::Conflict {
        kind: kind.group_resource(),
        name: name.to_string(),
        reason: "the object has been modified; please apply your changes to the latest version and try again".into(),
    }
}

/// `generateName` suffix alphabet (Kubernetes': no vowels, no confusable digits).
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// A name from a `generateName` prefix: the prefix (trimmed to fit 63 characters) and a
/// random five-character suffix, as [`Store::create`] makes one.
pub fn generated_name(prefix: &str) -> String {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let suffix: String = bytes
        .iter()
        .take(5)
        .map(|b| NAME_ALPHABET[*b as usize % NAME_ALPHABET.len()] as char)
        .collect();
    // Kubernetes trims the prefix so the name stays within 63 characters.
    let max_prefix = 63 - suffix.len();
    let prefix: String = prefix.chars().take(max_prefix).collect();
    format!("{prefix}{suffix}")
}

fn encode_continue(rv: u64, start: &str) -> String {
    let token = ContinueToken {
        v: "meta.k8s.io/v1".into(),
        rv,
        start: start.into(),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&token).unwrap_or_default())
}

fn decode_continue(token: &str) -> Result<ContinueToken> {
    let bad = || {
        StoreError::BadRequest(
            "invalid continue token: it was not issued by this server or is corrupted".into(),
        )
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad())?;
    let token: ContinueToken = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if token.v != "meta.k8s.io/v1" {
        return Err(bad());
    }
    Ok(token)
}

/// A typed view of the store for one kind (`store.api::<Pod>()`).
pub struct Api<K> {
    store: Store,
    kind: &'static KindInfo,
    _k: PhantomData<fn() -> K>,
}

impl<K> Clone for Api<K> {
    fn clone(&self) -> Self {
        Api {
            store: self.store.clone(),
            kind: self.kind,
            _k: PhantomData,
        }
    }
}

impl<K: Serialize + DeserializeOwned> Api<K> {
    fn to_value(obj: &K) -> Result<Value> {
        serde_json::to_value(obj)
            .map_err(|e| StoreError::BadRequest(format!("encoding object: {e}")))
    }

    fn decode(&self, v: Value) -> Result<K> {
        serde_json::from_value(v).map_err(|e| StoreError::Corrupt {
            kind: self.kind.group_resource(),
            key: String::new(),
            reason: e.to_string(),
        })
    }

    /// The kind this view serves.
    pub fn kind(&self) -> &'static KindInfo {
        self.kind
    }

    /// See [`Store::create`].
    pub async fn create(&self, obj: &K) -> Result<K> {
        let v = self.store.create(self.kind, Self::to_value(obj)?).await?;
        self.decode(v)
    }

    /// See [`Store::get`].
    pub async fn get(&self, namespace: Option<&str>, name: &str) -> Result<K> {
        let v = self.store.get(self.kind, namespace, name).await?;
        self.decode(v)
    }

    /// See [`Store::update`].
    pub async fn update(&self, obj: &K) -> Result<K> {
        let v = self.store.update(self.kind, Self::to_value(obj)?).await?;
        self.decode(v)
    }

    /// See [`Store::delete`].
    pub async fn delete(
        &self,
        namespace: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<DeleteOutcome> {
        self.store.delete(self.kind, namespace, name, opts).await
    }

    /// See [`Store::list`]; returns the typed items and the list's revision.
    pub async fn list(
        &self,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<(Vec<K>, ObjectList)> {
        let mut list = self.store.list(self.kind, namespace, opts).await?;
        let items = std::mem::take(&mut list.items)
            .into_iter()
            .map(|v| self.decode(v))
            .collect::<Result<Vec<_>>>()?;
        Ok((items, list))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_reject_garbage() {
        let t = encode_continue(42, "default.web");
        let d = decode_continue(&t).unwrap();
        assert_eq!((d.rv, d.start.as_str()), (42, "default.web"));
        for bad in ["", "!!!", "e30", "bm90IGpzb24"] {
            assert!(
                matches!(decode_continue(bad), Err(StoreError::BadRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn generated_names_keep_prefix_and_length() {
        let n = generated_name("web-");
        assert!(n.starts_with("web-") && n.len() == 9, "{n}");
        let long = "x".repeat(80);
        assert_eq!(generated_name(&long).len(), 63);
    }

    #[test]
    fn server_fields_survive_client_updates() {
        let cur = serde_json::json!({"metadata":{"name":"a","uid":"u1","generation":3,"creationTimestamp":"t"}});
        let mut new = serde_json::json!({"metadata":{"name":"a","uid":"evil","generation":99,"resourceVersion":"5"}});
        carry_server_fields(&cur, &mut new);
        assert_eq!(new["metadata"]["uid"], "u1");
        assert_eq!(new["metadata"]["generation"], 3);
        assert!(new["metadata"].get("resourceVersion").is_none());
    }
}
