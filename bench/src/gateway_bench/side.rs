//! The two sides under test behind one trait: the gateway over HTTPS ([`GatewaySide`])
//! and the store called directly ([`StoreSide`]). Both hand back decoded
//! `serde_json::Value`s, so neither skips work the other does.

use std::future::Future;

use anyhow::{Context, Result};
use bus_schema::KindInfo;
use bytes::Bytes;
use drover_store::{ListOptions, Store, StoreError};
use futures::{StreamExt, TryStreamExt};
use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::https::ApiClient;
use crate::backend::EventStream;

/// How many watches are being opened at once while setting up many (as many as the
/// concurrent phases have clients).
const WATCH_SETUP_CONCURRENCY: usize = 50;

/// One way to reach the pods: through the gateway or straight to the store.
pub trait Side: Clone + Send + Sync + 'static {
    /// Creates namespace `name` if it does not exist (setup, not measured).
    fn ensure_namespace(&self, name: &str) -> impl Future<Output = Result<()>> + Send;

    /// Creates a pod that must not exist yet; returns it as stored.
    fn create(&self, pod: Value) -> impl Future<Output = Result<Value>> + Send;

    /// Reads one pod.
    fn get(&self, namespace: &str, name: &str) -> impl Future<Output = Result<Value>> + Send;

    /// Lists (and decodes) every pod of a namespace; returns how many there were.
    fn list(&self, namespace: &str) -> impl Future<Output = Result<usize>> + Send;

    /// Sets label `key` to `value` on a pod, as a JSON merge patch does: read, change,
    /// write back if nobody wrote in between.
    fn patch_label(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
        value: &str,
    ) -> impl Future<Output = Result<Value>> + Send;

    /// Opens `n` watches on a namespace's pods that see every change after
    /// `after_revision`; returns once the side has confirmed all of them.
    fn watch_many(
        &self,
        namespace: &str,
        after_revision: u64,
        n: usize,
    ) -> impl Future<Output = Result<Vec<EventStream>>> + Send;
}

/// The Pod kind.
pub fn pods_kind() -> &'static KindInfo {
    bus_schema::kinds::by_group_kind("", "Pod").expect("Pod is in KINDS")
}

fn namespaces_kind() -> &'static KindInfo {
    bus_schema::kinds::by_group_kind("", "Namespace").expect("Namespace is in KINDS")
}

fn pods_path(namespace: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/pods")
}

/// The gateway, over HTTPS.
#[derive(Clone)]
pub struct GatewaySide {
    api: ApiClient,
}

impl GatewaySide {
    /// Wraps `api` and starts the gateway's pods watch cache with one unmeasured list,
    /// as a long-running gateway would have it started (Kubernetes starts its caches at
    /// startup). This also opens the first pooled connection.
    pub async fn new(api: ApiClient) -> Result<GatewaySide> {
        api.json(
            Method::GET,
            "/api/v1/pods?resourceVersion=0",
            None,
            Bytes::new(),
            &[StatusCode::OK],
        )
        .await
        .context("starting the pods watch cache")?;
        Ok(GatewaySide { api })
    }
}

impl Side for GatewaySide {
    async fn ensure_namespace(&self, name: &str) -> Result<()> {
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        self.api
            .json(
                Method::POST,
                "/api/v1/namespaces",
                Some("application/json"),
                Bytes::from(serde_json::to_vec(&body)?),
                &[StatusCode::CREATED, StatusCode::CONFLICT],
            )
            .await?;
        Ok(())
    }

    async fn create(&self, pod: Value) -> Result<Value> {
        let namespace = drover_store::object::namespace(&pod)
            .context("pod without a namespace")?
            .to_string();
        let (_, created) = self
            .api
            .json(
                Method::POST,
                &pods_path(&namespace),
                Some("application/json"),
                Bytes::from(serde_json::to_vec(&pod)?),
                &[StatusCode::CREATED],
            )
            .await?;
        Ok(created)
    }

    async fn get(&self, namespace: &str, name: &str) -> Result<Value> {
        let path = format!("{}/{name}", pods_path(namespace));
        let (_, pod) = self
            .api
            .json(Method::GET, &path, None, Bytes::new(), &[StatusCode::OK])
            .await?;
        Ok(pod)
    }

    async fn list(&self, namespace: &str) -> Result<usize> {
        let (_, list) = self
            .api
            .json(
                Method::GET,
                &pods_path(namespace),
                None,
                Bytes::new(),
                &[StatusCode::OK],
            )
            .await?;
        list.get("items")
            .and_then(Value::as_array)
            .map(Vec::len)
            .context("a list without items")
    }

    async fn patch_label(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
        value: &str,
    ) -> Result<Value> {
        let path = format!("{}/{name}", pods_path(namespace));
        let patch = json!({"metadata": {"labels": {key: value}}});
        let (_, patched) = self
            .api
            .json(
                Method::PATCH,
                &path,
                Some("application/merge-patch+json"),
                Bytes::from(serde_json::to_vec(&patch)?),
                &[StatusCode::OK],
            )
            .await?;
        Ok(patched)
    }

    async fn watch_many(
        &self,
        namespace: &str,
        after_revision: u64,
        n: usize,
    ) -> Result<Vec<EventStream>> {
        let path = format!(
            "{}?watch=true&resourceVersion={after_revision}",
            pods_path(namespace)
        );
        futures::stream::iter(0..n)
            .map(|_| self.api.watch(&path))
            .buffer_unordered(WATCH_SETUP_CONCURRENCY)
            .try_collect()
            .await
    }
}

/// The store, called directly: what the gateway itself calls underneath.
#[derive(Clone)]
pub struct StoreSide {
    store: Store,
}

impl StoreSide {
    /// The store side on `store` (its pods bucket should exist already).
    pub fn new(store: Store) -> StoreSide {
        StoreSide { store }
    }
}

impl Side for StoreSide {
    async fn ensure_namespace(&self, name: &str) -> Result<()> {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        match self.store.create(namespaces_kind(), ns).await {
            Ok(_) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn create(&self, pod: Value) -> Result<Value> {
        Ok(self.store.create(pods_kind(), pod).await?)
    }

    async fn get(&self, namespace: &str, name: &str) -> Result<Value> {
        Ok(self.store.get(pods_kind(), Some(namespace), name).await?)
    }

    async fn list(&self, namespace: &str) -> Result<usize> {
        let list = self
            .store
            .list(pods_kind(), Some(namespace), &ListOptions::default())
            .await?;
        Ok(list.items.len())
    }

    async fn patch_label(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
        value: &str,
    ) -> Result<Value> {
        // The read carries its resourceVersion, so the write is a compare-and-swap.
        let mut pod = self.store.get(pods_kind(), Some(namespace), name).await?;
        let meta = drover_store::object::meta_mut(&mut pod);
        let labels = meta.entry("labels").or_insert_with(|| json!({}));
        if let Some(labels) = labels.as_object_mut() {
            labels.insert(key.into(), json!(value));
        }
        Ok(self.store.update(pods_kind(), pod).await?)
    }

    async fn watch_many(
        &self,
        namespace: &str,
        after_revision: u64,
        n: usize,
    ) -> Result<Vec<EventStream>> {
        crate::backend::drover::store_watches(
            &self.store,
            pods_kind(),
            namespace,
            after_revision,
            n,
            WATCH_SETUP_CONCURRENCY,
        )
        .await
    }
}

/// Either side, so one round can run both in turns through the same (generic) phases.
#[derive(Clone)]
pub enum AnySide {
    /// Through the gateway.
    Gateway(GatewaySide),
    /// Straight to the store.
    Store(StoreSide),
}

impl AnySide {
    /// `gateway` or `store`, as the report names the sides.
    pub fn name(&self) -> &'static str {
        match self {
            AnySide::Gateway(_) => "gateway",
            AnySide::Store(_) => "store",
        }
    }
}

impl Side for AnySide {
    async fn ensure_namespace(&self, name: &str) -> Result<()> {
        match self {
            AnySide::Gateway(s) => s.ensure_namespace(name).await,
            AnySide::Store(s) => s.ensure_namespace(name).await,
        }
    }

    async fn create(&self, pod: Value) -> Result<Value> {
        match self {
            AnySide::Gateway(s) => s.create(pod).await,
            AnySide::Store(s) => s.create(pod).await,
        }
    }

    async fn get(&self, namespace: &str, name: &str) -> Result<Value> {
        match self {
            AnySide::Gateway(s) => s.get(namespace, name).await,
            AnySide::Store(s) => s.get(namespace, name).await,
        }
    }

    async fn list(&self, namespace: &str) -> Result<usize> {
        match self {
            AnySide::Gateway(s) => s.list(namespace).await,
            AnySide::Store(s) => s.list(namespace).await,
        }
    }

    async fn patch_label(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
        value: &str,
    ) -> Result<Value> {
        match self {
            AnySide::Gateway(s) => s.patch_label(namespace, name, key, value).await,
            AnySide::Store(s) => s.patch_label(namespace, name, key, value).await,
        }
    }

    async fn watch_many(
        &self,
        namespace: &str,
        after_revision: u64,
        n: usize,
    ) -> Result<Vec<EventStream>> {
        match self {
            AnySide::Gateway(s) => s.watch_many(namespace, after_revision, n).await,
            AnySide::Store(s) => s.watch_many(namespace, after_revision, n).await,
        }
    }
}
