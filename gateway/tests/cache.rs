//! The watch cache end to end, over HTTPS against a real store: a thousand watches share
//! one store watch (JetStream consumer), selector transitions, resuming from the ring,
//! recovery after a nats-server restart, and kubectl's watch.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bus_schema::{KindInfo, kinds, subjects};
use common::Cluster;
use drover_store::{Store, StoreConfig};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;

/// Failure guard for any single wait; never a timing assertion.
const GUARD: Duration = Duration::from_secs(60);

/// Concurrent client watches in the fan-out test.
const N_WATCHERS: usize = 1000;

/// A bare HTTPS client that opens watches and reads their JSON lines.
struct Https {
    connector: TlsConnector,
    addr: SocketAddr,
    token: String,
}

impl Https {
    fn new(c: &Cluster) -> Https {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(c.pki.ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        Https {
            connector: TlsConnector::from(Arc::new(config)),
            addr: c.gateway.addr,
            token: c.pki.admin_token.clone(),
        }
    }

    /// Opens `GET path` and checks for a 200 with a chunked body.
    async fn watch(&self, path: &str) -> WatchConn {
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = self.connector.connect(name, tcp).await.unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\nAccept: application/json\r\n\r\n",
            self.token
        );
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut reader = BufReader::new(tls);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).await.unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push_str(&line);
        }
        assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
            "{head}"
        );
        WatchConn {
            reader,
            pending: Vec::new(),
        }
    }
}

/// One open watch: a chunked body of JSON lines.
struct WatchConn {
    reader: BufReader<TlsStream<TcpStream>>,
    pending: Vec<u8>,
}

impl WatchConn {
    /// The next event, `None` when the server ended the watch.
    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(i) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=i).collect();
                return Some(serde_json::from_slice(&line).unwrap());
            }
            let mut size = String::new();
            if self.reader.read_line(&mut size).await.ok()? == 0 {
                return None;
            }
            let size = usize::from_str_radix(size.trim(), 16).unwrap();
            if size == 0 {
                return None;
            }
            let mut chunk = vec![0; size + 2];
            self.reader.read_exact(&mut chunk).await.ok()?;
            chunk.truncate(size);
            self.pending.extend_from_slice(&chunk);
        }
    }

    /// Reads until an event satisfies `want`; returns it. Panics at the end of the watch
    /// or after [`GUARD`].
    async fn until(&mut self, what: &str, want: impl Fn(&Value) -> bool) -> Value {
        let found = tokio::time::timeout(GUARD, async {
            while let Some(ev) = self.next().await {
                if want(&ev) {
                    return Some(ev);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(ev)) => ev,
            Ok(None) => panic!("watch ended before {what}"),
            Err(_) => panic!("no {what} within {GUARD:?}"),
        }
    }

    /// The next event that is not a BOOKMARK, as (type, name).
    async fn next_change(&mut self) -> (String, String) {
        let ev = self.until("a change", |ev| ev["type"] != "BOOKMARK").await;
        (
            ev["type"].as_str().unwrap_or("").to_string(),
            ev["object"]["metadata"]["name"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        )
    }
}

fn is(ev: &Value, ty: &str, name: &str) -> bool {
    ev["type"] == ty && ev["object"]["metadata"]["name"] == name
}

fn configmaps() -> &'static KindInfo {
    kinds::by_group_kind("", "ConfigMap").unwrap()
}

fn cm(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": "default", "labels": labels},
           "data": {"k": "v"}})
}

fn rv_of(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn store(c: &Cluster) -> Store {
    Store::new(c.nats.client().await, StoreConfig::default())
        .await
        .unwrap()
}

/// Consumers of the kind's bucket stream, as JetStream counts them.
async fn consumer_count(c: &Cluster, kind: &KindInfo) -> usize {
    let js = async_nats::jetstream::new(c.nats.client().await);
    let name = subjects::kv_stream(&subjects::kv_bucket(kind));
    let mut stream = js.get_stream(&name).await.unwrap();
    stream.info().await.unwrap().state.consumer_count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_watches_share_one_store_watch() {
    let c = Cluster::start().await;
    let store = store(&c).await;
    let kind = configmaps();
    store.create(kind, cm("seed", json!({}))).await.unwrap();
    let https = Arc::new(Https::new(&c));

    // Each watch proves it is live by receiving the seed as ADDED (its initial state).
    let mut watchers = Vec::with_capacity(N_WATCHERS);
    for batch in 0..N_WATCHERS / 100 {
        let opening = (0..100).map(|i| {
            let https = https.clone();
            // Both "" (consistent) and "0" (any state) starts.
            let rv = if (batch * 100 + i) % 2 == 0 { "" } else { "0" };
            tokio::spawn(async move {
                let path = format!(
                    "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}"
                );
                let mut w = https.watch(&path).await;
                w.until("the seed", |ev| is(ev, "ADDED", "seed")).await;
                w
            })
        });
        for w in futures::future::join_all(opening).await {
            watchers.push(w.unwrap());
        }
    }

    let consumers = consumer_count(&c, kind).await;
    assert!(
        consumers <= 5,
        "{N_WATCHERS} client watches made {consumers} JetStream consumers"
    );

    store.create(kind, cm("probe", json!({}))).await.unwrap();
    let seen = watchers.into_iter().map(|mut w| {
        tokio::spawn(async move {
            w.until("the probe", |ev| is(ev, "ADDED", "probe")).await;
        })
    });
    for done in futures::future::join_all(seen).await {
        done.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selector_transitions_and_resume_from_the_ring() {
    let c = Cluster::start().await;
    let store = store(&c).await;
    let kind = configmaps();
    let https = Https::new(&c);
    let selected = "/api/v1/namespaces/default/configmaps?watch=true&labelSelector=app%3Dweb";

    // A label watcher sees the object leave and re-enter its selection.
    let mut web = https.watch(&format!("{selected}&resourceVersion=")).await;
    let created = store
        .create(kind, cm("x", json!({"app": "web"})))
        .await
        .unwrap();
    assert_eq!(web.next_change().await, ("ADDED".into(), "x".into()));
    let mut relabeled = created.clone();
    relabeled["metadata"]["labels"] = json!({"app": "db"});
    let relabeled = store.update(kind, relabeled).await.unwrap();
    let gone = web.until("DELETED x", |ev| ev["type"] != "BOOKMARK").await;
    assert!(is(&gone, "DELETED", "x"), "{gone}");
    // The DELETED carries the object the watcher knew, at the change's revision.
    assert_eq!(gone["object"]["metadata"]["labels"]["app"], "web");
    assert_eq!(rv_of(&gone["object"]), rv_of(&relabeled));
    let mut unlabeled = relabeled.clone();
    unlabeled["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("labels");
    let unlabeled = store.update(kind, unlabeled).await.unwrap();
    let mut back = unlabeled.clone();
    back["metadata"]["labels"] = json!({"app": "web"});
    store.update(kind, back).await.unwrap();
    assert_eq!(web.next_change().await, ("ADDED".into(), "x".into()));

    // Resuming from a revision inside the ring replays the changes after it, with the
    // same transitions (a direct store watch could not produce the DELETED: its events
    // carry no previous object).
    let from = rv_of(&created);
    let mut resumed = https
        .watch(&format!("{selected}&resourceVersion={from}"))
        .await;
    assert_eq!(resumed.next_change().await, ("DELETED".into(), "x".into()));
    assert_eq!(resumed.next_change().await, ("ADDED".into(), "x".into()));

    // An unfiltered resume sees every change after `from` in order.
    let all = "/api/v1/namespaces/default/configmaps?watch=true";
    let mut every = https.watch(&format!("{all}&resourceVersion={from}")).await;
    for want in ["MODIFIED", "MODIFIED", "MODIFIED"] {
        assert_eq!(every.next_change().await, (want.into(), "x".into()));
    }

    // A watch-list (client-go's WatchList): the state, a bookmark ending it, then changes.
    let mut watch_list = https
        .watch(&format!(
            "{all}&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"
        ))
        .await;
    let first = watch_list.until("the initial x", |_| true).await;
    assert!(is(&first, "ADDED", "x"), "{first}");
    let end = watch_list.until("the end bookmark", |_| true).await;
    assert_eq!(end["type"], "BOOKMARK", "{end}");
    assert_eq!(
        end["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );

    // The cache serves consistent and exact lists too.
    let ca = c.dir.path().join("pki/ca.crt");
    let list = |q: &str| {
        common::curl(
            &ca,
            Some(&c.pki.admin_token),
            "GET",
            &format!(
                "https://127.0.0.1:{}/api/v1/namespaces/default/configmaps{q}",
                c.port()
            ),
            None,
        )
    };
    let (code, body) = list("?labelSelector=app%3Dweb");
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["items"].as_array().map(Vec::len), Some(1), "{body}");
    let current: u64 = body["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let (code, _) = list(&format!(
        "?resourceVersion={current}&resourceVersionMatch=Exact"
    ));
    assert_eq!(code, 200);
    let (code, body) = list(&format!(
        "?resourceVersion={from}&resourceVersionMatch=Exact"
    ));
    assert_eq!(
        (code, body["reason"].as_str()),
        (410, Some("Expired")),
        "{body}"
    );
    let (code, body) = list(&format!("?resourceVersion={}", current + 1000));
    assert_eq!(
        (code, body["reason"].as_str()),
        (504, Some("Timeout")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_survive_a_nats_restart() {
    let mut c = Cluster::start().await;
    let kind = configmaps();
    let https = Https::new(&c);
    let mut w = https
        .watch("/api/v1/namespaces/default/configmaps?watch=true")
        .await;
    {
        let store = store(&c).await;
        store.create(kind, cm("before", json!({}))).await.unwrap();
    }
    assert_eq!(w.next_change().await, ("ADDED".into(), "before".into()));

    c.nats.restart().await;
    let store = store(&c).await;
    // Writes fail until the gateway's and this client's connections are back.
    let deadline = tokio::time::Instant::now() + GUARD;
    while let Err(e) = store.create(kind, cm("after", json!({}))).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no write after restart: {e}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The same watch goes on: the cache resumed its store watch.
    assert_eq!(w.next_change().await, ("ADDED".into(), "after".into()));

    // The cache's consumer is deleted under it: its store watch ends (missed
    // heartbeats) and the cache resumes from its own revision.
    let js = async_nats::jetstream::new(c.nats.client().await);
    let stream = js
        .get_stream(subjects::kv_stream(&subjects::kv_bucket(kind)))
        .await
        .unwrap();
    let names: Vec<String> = futures::TryStreamExt::try_collect(stream.consumer_names())
        .await
        .unwrap();
    assert!(!names.is_empty());
    for name in names {
        stream.delete_consumer(&name).await.unwrap();
    }
    store
        .create(kind, cm("after-delete", json!({})))
        .await
        .unwrap();
    assert_eq!(
        w.next_change().await,
        ("ADDED".into(), "after-delete".into())
    );
    assert!(consumer_count(&c, kind).await <= 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_pods_watch() {
    let c = Cluster::start().await;
    let mut watcher = std::process::Command::new("kubectl")
        .args(["get", "pods", "--watch", "--request-timeout=60s"])
        .env("KUBECONFIG", &c.kubeconfig)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = watcher.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let store = store(&c).await;
    let pods = kinds::by_group_kind("", "Pod").unwrap();
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "watched-pod", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
    store.create(pods, pod).await.unwrap();
    let seen = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + GUARD;
        let mut lines = Vec::new();
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("watched-pod") => return Ok(line),
                Ok(line) => lines.push(line),
                Err(_) => break,
            }
        }
        Err(lines)
    })
    .await
    .unwrap();
    let _ = watcher.kill();
    let _ = watcher.wait();
    let line = seen.unwrap_or_else(|lines| panic!("kubectl printed no watched-pod: {lines:?}"));
    assert!(line.contains("Pending") || line.contains("0/1"), "{line}");
}
