//! Store semantics against a real nats-server (JetStream, fsync per write) started by
//! the shared harness on a free loopback port.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bus_schema::kinds;
use drover_store::{
    DeleteOptions, DeleteOutcome, ListOptions, Store, StoreConfig, StoreError, WatchEvent,
    WatchOptions,
};
use drover_testkit::{TestCluster, TestNats};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

fn cm_kind() -> &'static bus_schema::KindInfo {
    kinds::by_group_kind("", "ConfigMap").unwrap()
}

fn cm(ns: &str, name: &str, data: &[(&str, &str)]) -> Value {
    let data: BTreeMap<&str, &str> = data.iter().copied().collect();
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": data})
}

async fn store(nats: &TestNats) -> Store {
    Store::new(nats.client().await, StoreConfig::default())
        .await
        .unwrap()
}

/// Waits for the next event, failing the test after a generous timeout.
async fn next_event(w: &mut drover_store::Watch) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(20), w.next())
        .await
        .expect("watch event in time")
        .expect("watch open")
        .expect("watch ok")
}

fn rv(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cas_100_tasks_x_100_increments_end_at_10000() {
    let nats = TestNats::start().await;
    let store = store(&nats).await;
    let api = store.api::<ConfigMap>();
    let counter = ConfigMap {
        metadata: ObjectMeta {
            name: Some("counter".into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        data: Some([("n".to_string(), "0".to_string())].into()),
        ..Default::default()
    };
    api.create(&counter).await.unwrap();
    let conflicts = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for task_idx in 0..100u64 {
        let api = api.clone();
        let conflicts = conflicts.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..100 {
                let mut attempt = 0u64;
                loop {
                    let mut cur = api.get(Some("default"), "counter").await.unwrap();
                    let data = cur.data.get_or_insert_with(Default::default);
                    let n: u64 = data["n"].parse().unwrap();
                    data.insert("n".into(), (n + 1).to_string());
                    match api.update(&cur).await {
                        Ok(_) => break,
                        Err(StoreError::Conflict { .. }) => {
                            conflicts.fetch_add(1, Ordering::Relaxed);
                            attempt += 1;
                            // Jittered backoff so 100 writers do not re-collide in lockstep.
                            let jitter = (task_idx * 7919 + attempt * 104729) % 2000;
                            tokio::time::sleep(Duration::from_micros(jitter * attempt.min(8)))
                                .await;
                        }
                        Err(e) => panic!("unexpected error: {e}"),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let fin = api.get(Some("default"), "counter").await.unwrap();
    assert_eq!(fin.data.unwrap()["n"], "10000");
    assert!(
        conflicts.load(Ordering::Relaxed) > 0,
        "100 concurrent writers must have collided"
    );
    // Every successful increment is exactly one revision after the create.
    let first_rv = 1;
    let final_rv: u64 = fin.metadata.resource_version.unwrap().parse().unwrap();
    assert_eq!(final_rv, first_rv + 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_get_update_semantics() {
    let nats = TestNats::start().await;
    let store = store(&nats).await;
    let k = cm_kind();
    let created = store
        .create(k, cm("default", "a", &[("x", "1")]))
        .await
        .unwrap();
    let meta = &created["metadata"];
    assert!(meta["uid"].as_str().unwrap().len() >= 32);
    assert!(meta["creationTimestamp"].is_string());
    assert_eq!(meta["generation"], 1);
    assert!(matches!(
        store.create(k, cm("default", "a", &[])).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    // Same name in another namespace is another object.
    store.create(k, cm("other", "a", &[])).await.unwrap();

    // Stale resourceVersion -> conflict, nothing written.
    let mut stale = created.clone();
    stale["metadata"]["resourceVersion"] = json!("999999");
    stale["data"]["x"] = json!("2");
    assert!(matches!(
        store.update(k, stale).await,
        Err(StoreError::Conflict { .. })
    ));

    // Metadata-only change keeps generation; spec change bumps it; clients cannot set uid.
    let mut labelled = created.clone();
    labelled["metadata"]["labels"] = json!({"app": "web"});
    labelled["metadata"]["uid"] = json!("forged");
    let labelled = store.update(k, labelled).await.unwrap();
    assert_eq!(labelled["metadata"]["generation"], 1);
    assert_eq!(labelled["metadata"]["uid"], created["metadata"]["uid"]);
    let mut changed = labelled.clone();
    changed["data"]["x"] = json!("2");
    let changed = store.update(k, changed).await.unwrap();
    assert_eq!(changed["metadata"]["generation"], 2);
    assert!(rv(&changed) > rv(&labelled));

    // An update that changes nothing writes nothing.
    let same = store.update(k, changed.clone()).await.unwrap();
    assert_eq!(rv(&same), rv(&changed));

    // generateName fills a unique name.
    let mut gen_obj = cm("default", "", &[]);
    gen_obj["metadata"].as_object_mut().unwrap().remove("name");
    gen_obj["metadata"]["generateName"] = json!("job-");
    let g1 = store.create(k, gen_obj.clone()).await.unwrap();
    let g2 = store.create(k, gen_obj).await.unwrap();
    let (n1, n2) = (
        g1["metadata"]["name"].as_str().unwrap(),
        g2["metadata"]["name"].as_str().unwrap(),
    );
    assert!(
        n1.starts_with("job-") && n2.starts_with("job-") && n1 != n2,
        "{n1} {n2}"
    );

    // Missing objects.
    assert!(matches!(
        store.get(k, Some("default"), "nope").await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.update(k, cm("default", "nope", &[])).await,
        Err(StoreError::NotFound { .. })
    ));

    // Objects over the limit are refused and nothing is written. (A Pod: ConfigMaps
    // have their own 1 MiB data limit in validation.)
    let pods = kinds::by_group_kind("", "Pod").unwrap();
    let pod = |name: &str, env_bytes: usize| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
               "spec": {"containers": [{"name": "c", "image": "busybox",
                        "env": [{"name": "BLOB", "value": "x".repeat(env_bytes)}]}]}})
    };
    let err = store
        .create(pods, pod("big", 1600 * 1024))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::TooLarge { .. }), "{err}");
    assert!(matches!(
        store.get(pods, Some("default"), "big").await,
        Err(StoreError::NotFound { .. })
    ));
    // Just under the limit is accepted.
    store.create(pods, pod("fits", 1500 * 1024)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_honours_finalizers_preconditions_and_grace() {
    let nats = TestNats::start().await;
    let store = store(&nats).await;
    let k = cm_kind();
    let mut obj = cm("default", "fin", &[]);
    obj["metadata"]["finalizers"] = json!(["drover.io/test"]);
    let created = store.create(k, obj).await.unwrap();
    let mut watch = store
        .watch(k, Some("default"), rv(&created), WatchOptions::default())
        .await
        .unwrap();

    // Wrong uid precondition: conflict, object untouched.
    let pre = DeleteOptions {
        uid: Some("not-the-uid".into()),
        ..Default::default()
    };
    assert!(matches!(
        store.delete(k, Some("default"), "fin", &pre).await,
        Err(StoreError::Conflict { .. })
    ));

    let terminating = match store
        .delete(k, Some("default"), "fin", &DeleteOptions::default())
        .await
        .unwrap()
    {
        DeleteOutcome::Terminating(o) => o,
        other => panic!("expected terminating, got {other:?}"),
    };
    assert!(terminating["metadata"]["deletionTimestamp"].is_string());
    assert!(matches!(
        next_event(&mut watch).await,
        WatchEvent::Modified(_)
    ));
    // Deleting again changes nothing.
    assert!(matches!(
        store
            .delete(k, Some("default"), "fin", &DeleteOptions::default())
            .await
            .unwrap(),
        DeleteOutcome::Terminating(_)
    ));

    // New finalizers cannot be added while terminating.
    let mut more = terminating.clone();
    more["metadata"]["finalizers"] = json!(["drover.io/test", "drover.io/other"]);
    assert!(matches!(
        store.update(k, more).await,
        Err(StoreError::Invalid { .. })
    ));

    // Removing the last finalizer removes the object; watchers see its last state.
    let mut done = terminating.clone();
    done["metadata"]["finalizers"] = json!([]);
    store.update(k, done).await.unwrap();
    assert!(matches!(
        store.get(k, Some("default"), "fin").await,
        Err(StoreError::NotFound { .. })
    ));
    match next_event(&mut watch).await {
        WatchEvent::Deleted(o) => {
            assert_eq!(o["metadata"]["name"], "fin");
            assert_eq!(o["metadata"]["uid"], created["metadata"]["uid"]);
        }
        other => panic!("expected DELETED, got {other:?}"),
    }

    // A deleted name can be created again, with a new uid.
    let again = store.create(k, cm("default", "fin", &[])).await.unwrap();
    assert_ne!(again["metadata"]["uid"], created["metadata"]["uid"]);

    // Graceful delete marks terminating; delete with grace 0 then removes.
    let opts = DeleteOptions {
        grace_period_seconds: Some(30),
        ..Default::default()
    };
    let t = store
        .delete(k, Some("default"), "fin", &opts)
        .await
        .unwrap();
    assert!(
        matches!(t, DeleteOutcome::Terminating(ref o) if o["metadata"]["deletionGracePeriodSeconds"] == 30)
    );
    let now = DeleteOptions {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    assert!(matches!(
        store.delete(k, Some("default"), "fin", &now).await.unwrap(),
        DeleteOutcome::Deleted(_)
    ));
    assert!(matches!(
        store.delete(k, Some("default"), "fin", &now).await,
        Err(StoreError::NotFound { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_pages_and_scopes() {
    let nats = TestNats::start().await;
    let store = store(&nats).await;
    let k = cm_kind();
    for i in 0..25 {
        let mut o = cm(
            if i % 5 == 0 { "kube-system" } else { "default" },
            &format!("cm-{i:02}"),
            &[],
        );
        o["metadata"]["labels"] = json!({"tier": if i % 2 == 0 { "even" } else { "odd" }});
        store.create(k, o).await.unwrap();
    }
    store
        .delete(k, Some("default"), "cm-01", &DeleteOptions::default())
        .await
        .unwrap();

    let all = store.list(k, None, &ListOptions::default()).await.unwrap();
    assert_eq!(all.items.len(), 24);
    // The bucket's revision, read without a consumer, is what a list reports.
    assert_eq!(store.revision(k).await.unwrap(), all.resource_version);
    assert_eq!(all.resource_version, 26);
    let default_ns = store
        .list(k, Some("default"), &ListOptions::default())
        .await
        .unwrap();
    assert_eq!(default_ns.items.len(), 19);
    assert!(
        default_ns
            .items
            .iter()
            .all(|o| o["metadata"]["namespace"] == "default")
    );

    let even = ListOptions {
        label_selector: Some(bus_schema::selector::LabelSelector::parse("tier=even").unwrap()),
        ..Default::default()
    };
    let evens = store.list(k, None, &even).await.unwrap();
    assert_eq!(evens.items.len(), 13);

    // Pages of 7 cover every item exactly once, in key order.
    let mut names = Vec::new();
    let mut opts = ListOptions {
        limit: Some(7),
        ..Default::default()
    };
    let mut pages = 0;
    loop {
        let page = store.list(k, None, &opts).await.unwrap();
        pages += 1;
        names.extend(page.items.iter().map(|o| {
            format!(
                "{}/{}",
                o["metadata"]["namespace"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        }));
        match page.continue_token {
            Some(t) => {
                assert_eq!(page.remaining_item_count, Some(24 - names.len() as u64));
                opts.continue_token = Some(t);
            }
            None => break,
        }
    }
    assert_eq!(pages, 4);
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(names, sorted);
    assert_eq!(names.len(), 24);

    let bad = ListOptions {
        continue_token: Some("garbage".into()),
        ..Default::default()
    };
    assert!(matches!(
        store.list(k, None, &bad).await,
        Err(StoreError::BadRequest(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_is_ordered_and_resumable() {
    let nats = TestNats::start().await;
    let store = store(&nats).await;
    let k = cm_kind();
    let start_rv = store
        .list(k, None, &ListOptions::default())
        .await
        .unwrap()
        .resource_version;
    let mut live = store
        .watch(k, None, start_rv, WatchOptions::default())
        .await
        .unwrap();
    let mut written = Vec::new();
    for i in 0..5 {
        written.push((
            "ADDED",
            rv(&store
                .create(k, cm("default", &format!("w{i}"), &[]))
                .await
                .unwrap()),
        ));
    }
    for i in [1, 3] {
        let mut o = store
            .get(k, Some("default"), &format!("w{i}"))
            .await
            .unwrap();
        o["data"] = json!({"v": "2"});
        written.push(("MODIFIED", rv(&store.update(k, o).await.unwrap())));
    }
    let DeleteOutcome::Deleted(d) = store
        .delete(k, Some("default"), "w4", &DeleteOptions::default())
        .await
        .unwrap()
    else {
        panic!()
    };
    written.push(("DELETED", rv(&d)));

    let kind_of = |e: &WatchEvent| match e {
        WatchEvent::Added(_) => "ADDED",
        WatchEvent::Modified(_) => "MODIFIED",
        WatchEvent::Deleted(_) => "DELETED",
        WatchEvent::Bookmark(_) => "BOOKMARK",
    };
    let mut seen = Vec::new();
    for _ in 0..written.len() {
        let e = next_event(&mut live).await;
        seen.push((kind_of(&e), e.revision()));
    }
    assert_eq!(seen, written, "live events in revision order");

    // Resuming from the middle replays exactly what came after.
    let (_, mid) = written[3];
    let mut resumed = store
        .watch(k, None, mid, WatchOptions::default())
        .await
        .unwrap();
    let mut replay = Vec::new();
    for _ in 0..written.len() - 4 {
        let e = next_event(&mut resumed).await;
        replay.push((kind_of(&e), e.revision()));
    }
    assert_eq!(replay, written[4..].to_vec());

    // Namespace-scoped watches only see their namespace.
    let mut scoped = store
        .watch(
            k,
            Some("other"),
            written.last().unwrap().1,
            WatchOptions::default(),
        )
        .await
        .unwrap();
    store
        .create(k, cm("default", "not-mine", &[]))
        .await
        .unwrap();
    let mine = store.create(k, cm("other", "mine", &[])).await.unwrap();
    assert_eq!(next_event(&mut scoped).await.revision(), rv(&mine));

    // Bookmarks carry the last revision the watch got to.
    let mut bm = store
        .watch(
            k,
            Some("other"),
            rv(&mine),
            WatchOptions {
                bookmark_interval: Some(Duration::from_millis(100)),
            },
        )
        .await
        .unwrap();
    assert_eq!(next_event(&mut bm).await, WatchEvent::Bookmark(rv(&mine)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_revision_is_gone() {
    let nats = TestNats::start().await;
    // History 1 so every update compacts the previous revision away.
    let config = StoreConfig {
        history: 1,
        ..Default::default()
    };
    let store = Store::new(nats.client().await, config).await.unwrap();
    let k = cm_kind();
    let r1 = rv(&store
        .create(k, cm("default", "g", &[("v", "1")]))
        .await
        .unwrap());
    let mut o = store.get(k, Some("default"), "g").await.unwrap();
    o["data"]["v"] = json!("2");
    let r2 = rv(&store.update(k, o).await.unwrap());
    let mut o = store.get(k, Some("default"), "g").await.unwrap();
    o["data"]["v"] = json!("3");
    let r3 = rv(&store.update(k, o).await.unwrap());
    assert_eq!((r1 + 1, r2 + 1), (r2, r3));

    match store.watch(k, None, r1, WatchOptions::default()).await {
        Err(StoreError::Gone { requested, oldest }) => assert_eq!((requested, oldest), (r1, r2)),
        Err(e) => panic!("expected gone, got {e}"),
        Ok(_) => panic!("expected gone, got a watch"),
    }
    let mut w = store
        .watch(k, None, r2, WatchOptions::default())
        .await
        .unwrap();
    assert_eq!(next_event(&mut w).await.revision(), r3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9_of_nats_server() {
    let mut nats = TestNats::start().await;
    let store = store(&nats).await;
    let k = cm_kind();
    store.ensure_buckets(bus_schema::KINDS).await.unwrap();
    let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let n_acked = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (store, acked, n_acked) = (store.clone(), acked.clone(), n_acked.clone());
        tokio::spawn(async move {
            for i in 0.. {
                match store
                    .create(
                        k,
                        cm("default", &format!("d-{i}"), &[("i", &i.to_string())]),
                    )
                    .await
                {
                    Ok(_) => {
                        acked.lock().unwrap().push(i);
                        n_acked.fetch_add(1, Ordering::SeqCst);
                    }
                    // The server is gone; anything not acknowledged may or may not be there.
                    Err(_) => return i,
                }
            }
            unreachable!()
        })
    };
    while n_acked.load(Ordering::SeqCst) < 300 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    nats.kill9().await;
    let attempted = tokio::time::timeout(Duration::from_secs(60), writer)
        .await
        .expect("writer notices the kill")
        .unwrap();
    nats.restart().await;

    let store = Store::new(nats.client().await, StoreConfig::default())
        .await
        .unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 300);
    for i in &acked {
        let o = store
            .get(k, Some("default"), &format!("d-{i}"))
            .await
            .unwrap_or_else(|e| panic!("acknowledged d-{i} lost: {e}"));
        assert_eq!(o["data"]["i"], i.to_string());
    }
    // Unacknowledged writes may have landed, but nothing beyond the attempted one.
    let all = store
        .list(k, Some("default"), &ListOptions::default())
        .await
        .unwrap();
    assert!(
        all.items.len() == acked.len() || all.items.len() == acked.len() + 1,
        "{} vs {} (attempted {attempted})",
        all.items.len(),
        acked.len()
    );
    // And the store takes writes again.
    store
        .create(k, cm("default", "after-restart", &[]))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_node_cluster_survives_losing_the_leader() {
    let mut cluster = TestCluster::start(3).await;
    let client = cluster.client().await;
    let store = Store::new(
        client.clone(),
        StoreConfig {
            replicas: 3,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let k = cm_kind();
    let mut acked = Vec::new();
    // Retries a write until acknowledged; a lost ack may mean it landed (AlreadyExists).
    async fn write(store: &Store, i: usize) -> usize {
        let mut failures = 0;
        loop {
            match store
                .create(cm_kind(), cm("default", &format!("c-{i}"), &[]))
                .await
            {
                Ok(_) | Err(StoreError::AlreadyExists { .. }) => return failures,
                Err(e) => {
                    failures += 1;
                    assert!(failures < 200, "writes did not resume: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    for i in 0..100 {
        write(&store, i).await;
        acked.push(i);
    }
    let js = async_nats::jetstream::new(client.clone());
    let mut stream = js
        .get_stream(bus_schema::subjects::kv_stream(&k.bucket()))
        .await
        .unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(info.config.num_replicas, 3);
    let leader = info
        .cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .expect("stream has a leader");
    let idx: usize = leader.trim_start_matches('n').parse().unwrap();
    cluster.nodes[idx].kill9().await;

    let mut failed_attempts = 0;
    for i in 100..300 {
        failed_attempts += write(&store, i).await;
        acked.push(i);
    }
    eprintln!("killed leader {leader}; {failed_attempts} failed attempts during failover");
    for i in &acked {
        let mut attempts = 0;
        loop {
            match store.get(k, Some("default"), &format!("c-{i}")).await {
                Ok(_) => break,
                Err(e @ StoreError::NotFound { .. }) => panic!("acknowledged c-{i} lost: {e}"),
                // Unavailable (timed out) is not lost: ask again.
                Err(e) => {
                    attempts += 1;
                    assert!(attempts < 20, "reads did not resume: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
    // A list creates a consumer, which the new leader may not serve yet on a loaded
    // machine: retried like the writes above (an error here is availability, not loss).
    let mut attempts = 0;
    let listed = loop {
        match store
            .list(k, Some("default"), &ListOptions::default())
            .await
        {
            Ok(listed) => break listed,
            Err(e) => {
                attempts += 1;
                assert!(attempts < 20, "lists did not resume: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    assert_eq!(listed.items.len(), 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_in_the_bucket_is_skipped_not_fatal() {
    let nats = TestNats::start().await;
    let client = nats.client().await;
    let store = store(&nats).await;
    let k = cm_kind();
    let before = store.create(k, cm("default", "good-1", &[])).await.unwrap();
    let mut w = store
        .watch(k, None, rv(&before), WatchOptions::default())
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let bucket = k.bucket();
    // Random bytes, with and without drover's headers, written straight into the stream.
    let mut seed = 0x2545F4914F6CDD1Du64;
    for i in 0..20 {
        let len = (i * 37) % 300;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let subject = bus_schema::subjects::kv_subject(&bucket, &format!("default.junk-{i}"));
        if i % 2 == 0 {
            let headers = bus_schema::envelope::headers(&Default::default()).unwrap();
            js.publish_with_headers(subject, headers, bytes.into())
                .await
                .unwrap()
                .await
                .unwrap();
        } else {
            js.publish(subject, bytes.into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    }
    let after = store.create(k, cm("default", "good-2", &[])).await.unwrap();
    // The watch skips the junk and delivers the next good object.
    assert_eq!(next_event(&mut w).await.revision(), rv(&after));
    let listed = store.list(k, None, &ListOptions::default()).await.unwrap();
    let names: Vec<&str> = listed
        .items
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["good-1", "good-2"]);
    assert!(matches!(
        store.get(k, Some("default"), "junk-3").await,
        Err(StoreError::Corrupt { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_are_republished_for_subscribers() {
    let nats = TestNats::start().await;
    let client = nats.client().await;
    let store = store(&nats).await;
    let k = cm_kind();
    store.ensure_buckets(bus_schema::KINDS).await.unwrap();
    let mut sub = client
        .subscribe("drover.objects.default.configmaps.*")
        .await
        .unwrap();
    client.flush().await.unwrap();
    store
        .create(k, cm("default", "web.config", &[("a", "b")]))
        .await
        .unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        msg.subject.as_str(),
        bus_schema::subjects::object(k, Some("default"), "web.config")
    );
    let (_, obj): (_, Value) =
        bus_schema::envelope::decode(msg.headers.as_ref(), &msg.payload).unwrap();
    assert_eq!(obj["data"]["a"], "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_objects_return_every_field_error_and_write_nothing() {
    let nats = TestNats::start().await;
    let store = store(&nats).await;
    let pods = kinds::by_group_kind("", "Pod").unwrap();
    let bad = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "Bad_Name", "namespace": "default", "labels": {"bad key!": "v", "ok": "bad value!"}},
        "spec": {"containers": [
            {"name": "c1", "image": "busybox", "ports": [{"containerPort": 70000}],
             "resources": {"requests": {"cpu": "lots"}}},
            {"name": "c1"}
        ]}
    });
    let err = store.create(pods, bad).await.unwrap_err();
    let StoreError::Invalid { errors, .. } = &err else {
        panic!("expected invalid, got {err}")
    };
    let fields: Vec<&str> = errors.0.iter().map(|e| e.field.as_str()).collect();
    for want in [
        "metadata.name",
        "metadata.labels",
        "spec.containers[0].ports[0].containerPort",
        "spec.containers[0].resources.requests[cpu]",
        "spec.containers[1].name",
        "spec.containers[1].image",
    ] {
        assert!(
            fields.iter().any(|f| f.starts_with(want)),
            "missing error for {want}: {fields:?}"
        );
    }
    assert!(errors.0.len() >= 6, "{errors}");
    let listed = store
        .list(pods, None, &ListOptions::default())
        .await
        .unwrap();
    assert!(listed.items.is_empty());

    // A namespaced object without a namespace is refused too.
    let no_ns = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}});
    let err = store.create(cm_kind(), no_ns).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Invalid { errors, .. } if errors.0.iter().any(|e| e.field == "metadata.namespace")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_a_thousand_concurrent_watches_of_one_bucket() {
    let nats = TestNats::start().await;
    let store = store(&nats).await;
    let k = cm_kind();
    let start = store
        .list(k, None, &ListOptions::default())
        .await
        .unwrap()
        .resource_version;
    let mut watches = Vec::new();
    for _ in 0..1100 {
        watches.push(
            store
                .watch(k, None, start, WatchOptions::default())
                .await
                .expect("watch beyond nats-server's default consumer cap"),
        );
    }
    let created = store.create(k, cm("default", "fanout", &[])).await.unwrap();
    for w in &mut watches {
        assert_eq!(next_event(w).await.revision(), rv(&created));
    }
}

/// A list taken while other clients write holds each key once, at its newest value, and
/// never a key whose delete it delivered (the snapshot's consumer also delivers writes
/// that land while it runs; they replace what it already holds). Before this was keyed,
/// a ResourceQuota listed twice during a burst of charges was charged twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_during_writes_hold_each_key_once() {
    let nats = TestNats::start().await;
    let store = store(&nats).await;
    let k = cm_kind();
    for i in 0..40 {
        store
            .create(k, cm("default", &format!("cm-{i:02}"), &[("n", "0")]))
            .await
            .unwrap();
    }
    let stop = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (store, stop) = (store.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while stop.load(Ordering::Relaxed) == 0 {
                    n += 1;
                    let name = format!("cm-{:02}", (n as usize * 4 + w) % 40);
                    let mut o = match store.get(k, Some("default"), &name).await {
                        Ok(o) => o,
                        Err(StoreError::NotFound { .. }) => {
                            let _ = store.create(k, cm("default", &name, &[])).await;
                            continue;
                        }
                        Err(e) => panic!("{e}"),
                    };
                    if n.is_multiple_of(7) {
                        let _ = store
                            .delete(k, Some("default"), &name, &DeleteOptions::default())
                            .await;
                        continue;
                    }
                    o["data"] = json!({"n": n.to_string()});
                    match store.update(k, o).await {
                        Ok(_) | Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    for _ in 0..60 {
        let listed = store.list(k, None, &ListOptions::default()).await.unwrap();
        let mut names: Vec<&str> = listed
            .items
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap())
            .collect();
        let total = names.len();
        names.dedup();
        assert_eq!(names.len(), total, "a key listed twice: {names:?}");
    }
    stop.store(1, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
}

/// Many CAS updates in one atomic batch: each entry's precondition is the resourceVersion
/// of the object as read; a stale entry fails alone (the batch is retried one by one),
/// an unchanged one writes nothing, and what is stored is exactly what each result says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_batch_writes_each_entry_once_and_only_stale_ones_conflict() {
    let nats = TestNats::start().await;
    let store = store(&nats).await;
    let k = cm_kind();
    let mut read = Vec::new();
    for i in 0..50 {
        read.push(
            store
                .create(k, cm("default", &format!("b-{i:02}"), &[("n", "0")]))
                .await
                .unwrap(),
        );
    }
    let changed = |o: &Value, n: &str| {
        let mut c = o.clone();
        c["data"] = json!({ "n": n });
        c
    };
    // All fresh: one batch.
    let entries: Vec<(Value, Value)> = read.iter().map(|o| (o.clone(), changed(o, "1"))).collect();
    let before = store.revision(k).await.unwrap();
    let results = store.update_batch(k, entries).await;
    let written: Vec<Value> = results.into_iter().map(Result::unwrap).collect();
    assert_eq!(store.revision(k).await.unwrap(), before + 50);
    for w in &written {
        let stored = store
            .get(k, Some("default"), w["metadata"]["name"].as_str().unwrap())
            .await
            .unwrap();
        assert_eq!(stored, *w);
        assert_eq!(stored["data"]["n"], "1");
    }
    // Entry 7 is stale (its read is the first version), entry 8 is unchanged.
    let mut entries: Vec<(Value, Value)> = written
        .iter()
        .map(|o| (o.clone(), changed(o, "2")))
        .collect();
    entries[7] = (read[7].clone(), changed(&read[7], "2"));
    entries[8] = (written[8].clone(), written[8].clone());
    let before = store.revision(k).await.unwrap();
    let results = store.update_batch(k, entries).await;
    assert!(
        matches!(results[7], Err(StoreError::Conflict { .. })),
        "{:?}",
        results[7]
    );
    assert_eq!(results[8].as_ref().unwrap(), &written[8]);
    assert_eq!(store.revision(k).await.unwrap(), before + 48);
    for (i, r) in results.iter().enumerate() {
        let name = format!("b-{i:02}");
        let stored = store.get(k, Some("default"), &name).await.unwrap();
        let want = match i {
            7 | 8 => "1",
            _ => "2",
        };
        assert_eq!(stored["data"]["n"], want, "{name}");
        if let Ok(r) = r {
            assert_eq!(rv(r), rv(&stored), "{name}");
        }
    }
}
