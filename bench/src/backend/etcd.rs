//! etcd 3.4 used the way kube-apiserver uses it: one key per object under
//! `/registry/pods/<namespace>/<name>`, create as a transaction on `create_revision == 0`,
//! update as a transaction on `mod_revision == <resourceVersion>`, list as a range read,
//! watches multiplexed over a few gRPC streams.
//!
//! Values are the bytes drover itself would store for the same object (MessagePack of
//! the object with the server-set uid, creationTimestamp and generation), so both systems
//! move and fsync the same amount of data.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KvClient, Txn, TxnOp, WatchOptions,
};
use serde_json::Value;
use tokio::sync::mpsc;

use super::{Backend, EventStream};

/// Objects per range request. tonic's default limit on a decoded message is 4 MiB, so a
/// list of ~1 KiB objects is read in pages at one revision, as kube-apiserver pages.
const LIST_PAGE: i64 = 2000;

/// gRPC watch streams (each on its own client connection) that many watches are spread
/// over; etcd's own client multiplexes every watch of a context onto one stream.
const WATCH_STREAMS: usize = 4;

/// The etcd client and the URL it was opened on (watches open more connections).
#[derive(Clone)]
pub struct EtcdBackend {
    kv: KvClient,
    url: String,
}

impl EtcdBackend {
    /// Wraps a connected client.
    pub fn new(client: &Client, url: String) -> EtcdBackend {
        EtcdBackend {
            kv: client.kv_client(),
            url,
        }
    }
}

fn key(namespace: &str, name: &str) -> String {
    format!("/registry/pods/{namespace}/{name}")
}

fn prefix(namespace: &str) -> String {
    format!("/registry/pods/{namespace}/")
}

/// The first key after every key that starts with `prefix`.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// What drover's store would write for `obj`: the object plus the fields the store sets
/// on create (a uid derived from the name, a fixed timestamp of the same length), without
/// resourceVersion.
fn encode(obj: &Value) -> Result<Vec<u8>> {
    let mut stored = obj.clone();
    let name = drover_store::object::name(obj).to_string();
    let meta = drover_store::object::meta_mut(&mut stored);
    meta.insert("uid".into(), Value::String(crate::workload::uid_for(&name)));
    meta.insert(
        "creationTimestamp".into(),
        Value::String(crate::workload::FIXED_TIMESTAMP.into()),
    );
    meta.insert("generation".into(), Value::from(1));
    meta.remove("resourceVersion");
    Ok(bus_schema::envelope::encode_body(&stored)?.to_vec())
}

fn decode(bytes: &[u8], revision: i64) -> Result<Value> {
    let mut obj: Value = bus_schema::envelope::decode_body(bytes)?;
    drover_store::object::meta_mut(&mut obj).insert(
        "resourceVersion".into(),
        Value::String(revision.to_string()),
    );
    Ok(obj)
}

fn namespace_and_name(obj: &Value) -> Result<(String, String)> {
    let namespace = drover_store::object::namespace(obj).context("object without namespace")?;
    Ok((
        namespace.to_string(),
        drover_store::object::name(obj).to_string(),
    ))
}

impl Backend for EtcdBackend {
    async fn create(&self, obj: Value) -> Result<u64> {
        let (namespace, name) = namespace_and_name(&obj)?;
        let key = key(&namespace, &name);
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, encode(&obj)?, None)]);
        let resp = self.kv.clone().txn(txn).await?;
        if !resp.succeeded() {
            bail!("{namespace}/{name} already exists");
        }
        Ok(resp
            .header()
            .context("txn response without header")?
            .revision() as u64)
    }

    async fn get(&self, namespace: &str, name: &str) -> Result<Value> {
        let resp = self.kv.clone().get(key(namespace, name), None).await?;
        let kv = resp
            .kvs()
            .first()
            .with_context(|| format!("{namespace}/{name} not found"))?;
        decode(kv.value(), kv.mod_revision())
    }

    async fn update(&self, obj: Value, revision: u64) -> Result<u64> {
        let (namespace, name) = namespace_and_name(&obj)?;
        let key = key(&namespace, &name);
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                revision as i64,
            )])
            .and_then([TxnOp::put(key, encode(&obj)?, None)]);
        let resp = self.kv.clone().txn(txn).await?;
        if !resp.succeeded() {
            bail!("conflict updating {namespace}/{name} at revision {revision}");
        }
        Ok(resp
            .header()
            .context("txn response without header")?
            .revision() as u64)
    }

    async fn list(&self, namespace: &str) -> Result<usize> {
        let mut kv = self.kv.clone();
        let end = prefix_end(&prefix(namespace));
        let mut start = prefix(namespace).into_bytes();
        let mut revision = 0;
        let mut items = Vec::new();
        loop {
            let mut options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(LIST_PAGE);
            if revision > 0 {
                options = options.with_revision(revision);
            }
            let resp = kv.get(start.clone(), Some(options)).await?;
            revision = resp
                .header()
                .context("range response without header")?
                .revision();
            for item in resp.kvs() {
                items.push(decode(item.value(), item.mod_revision())?);
            }
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => return Ok(items.len()),
            }
        }
    }

    async fn watch_many(
        &self,
        namespace: &str,
        after_revision: u64,
        n: usize,
    ) -> Result<Vec<EventStream>> {
        let n_streams = n.clamp(1, WATCH_STREAMS);
        let opened = futures::future::try_join_all((0..n_streams).map(|stream_idx| {
            let n_here = n / n_streams + usize::from(stream_idx < n % n_streams);
            open_stream(&self.url, prefix(namespace), after_revision, n_here)
        }))
        .await?;
        Ok(opened.into_iter().flatten().collect())
    }
}

/// Opens one gRPC watch stream carrying `n` watches of `prefix` and a task that hands
/// each watch its events (undecoded: each watcher decodes its own copy, as each drover
/// watcher does).
async fn open_stream(
    url: &str,
    prefix: String,
    after_revision: u64,
    n: usize,
) -> Result<Vec<EventStream>> {
    let options = ConnectOptions::new().with_connect_timeout(Duration::from_secs(5));
    let mut client = Client::connect([url], Some(options)).await?;
    let watch_options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(after_revision as i64 + 1);
    let mut stream = client
        .watch(prefix.clone(), Some(watch_options.clone()))
        .await?;
    for _ in 1..n {
        stream
            .watch(prefix.clone(), Some(watch_options.clone()))
            .await?;
    }
    let mut senders = HashMap::with_capacity(n);
    let mut streams = Vec::with_capacity(n);
    while senders.len() < n {
        let resp = stream
            .message()
            .await?
            .context("etcd closed the watch stream during setup")?;
        if resp.canceled() {
            bail!(
                "etcd cancelled a watch during setup: {}",
                resp.cancel_reason()
            );
        }
        if !resp.events().is_empty() {
            bail!("watch event before every watch was created (nothing should be writing)");
        }
        if resp.created() {
            let (tx, rx) = mpsc::unbounded_channel::<Result<(Vec<u8>, i64)>>();
            senders.insert(resp.watch_id(), tx);
            let events = futures::stream::unfold(rx, |mut rx| async move {
                let next = rx.recv().await?;
                Some((
                    next.and_then(|(bytes, revision)| decode(&bytes, revision)),
                    rx,
                ))
            });
            streams.push(Box::pin(events) as EventStream);
        }
    }
    tokio::spawn(async move {
        // The client owns the connection: keep it as long as the stream.
        let _client = client;
        loop {
            match stream.message().await {
                Ok(Some(resp)) => {
                    let Some(tx) = senders.get(&resp.watch_id()) else {
                        continue;
                    };
                    for event in resp.events() {
                        if let Some(kv) = event.kv() {
                            let _ = tx.send(Ok((kv.value().to_vec(), kv.mod_revision())));
                        }
                    }
                    if senders.values().all(|tx| tx.is_closed()) {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    for tx in senders.values() {
                        let _ = tx.send(Err(anyhow::anyhow!("etcd watch stream failed: {e}")));
                    }
                    return;
                }
            }
        }
    });
    Ok(streams)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(
            prefix_end("/registry/pods/default/"),
            b"/registry/pods/default0".to_vec()
        );
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
    }
}
