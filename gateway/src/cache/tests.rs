//! The cache's pure parts as data tables: selector transitions, ring bounds, the
//! state's (re)list settling, and the resourceVersion decisions.

use std::sync::Arc;

use bus_schema::selector::{FieldSelector, LabelSelector};
use drover_store::{ListOptions, WatchEvent};
use serde_json::{Value, json};

use super::*;

fn obj(name: &str, rv: u64, labels: &[(&str, &str)]) -> Value {
    let labels: serde_json::Map<String, Value> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": name, "namespace": "default", "resourceVersion": rv.to_string(), "labels": labels,
    }})
}

fn label_filter(selector: &str) -> Filter {
    let opts = ListOptions {
        label_selector: Some(LabelSelector::parse(selector).unwrap()),
        ..Default::default()
    };
    Filter::new(Some("default"), &opts)
}

/// Which object a transition hands out.
#[derive(Debug, PartialEq)]
enum Carried {
    New,
    /// The previous object, stamped with the change's revision.
    PrevAtChangeRv,
}

#[test]
fn selector_transitions() {
    use EventType::*;
    type Row<'a> = (
        Option<&'a [(&'a str, &'a str)]>,
        &'a [(&'a str, &'a str)],
        bool,
        Option<(EventType, Carried)>,
    );
    // (labels before (None: created), labels after, deleted, what an `app=web` watcher sees)
    let web: &[(&str, &str)] = &[("app", "web")];
    let db: &[(&str, &str)] = &[("app", "db")];
    let none: &[(&str, &str)] = &[];
    let rows: &[Row<'_>] = &[
        (None, web, false, Some((Added, Carried::New))),
        (None, db, false, None),
        (Some(web), web, false, Some((Modified, Carried::New))),
        (Some(db), web, false, Some((Added, Carried::New))),
        (
            Some(web),
            db,
            false,
            Some((Deleted, Carried::PrevAtChangeRv)),
        ),
        (
            Some(web),
            none,
            false,
            Some((Deleted, Carried::PrevAtChangeRv)),
        ),
        (Some(db), db, false, None),
        (Some(web), web, true, Some((Deleted, Carried::New))),
        (Some(db), db, true, None),
    ];
    let filter = label_filter("app=web");
    for (i, (before, after, deleted, want)) in rows.iter().enumerate() {
        let event = CacheEvent {
            rv: 9,
            object: Arc::new(obj("a", 9, after)),
            prev: before.map(|l| Arc::new(obj("a", 5, l))),
            deleted: *deleted,
        };
        let got = transition(&filter, &event).map(|(ty, o)| {
            let carried = if *o == *event.object {
                Carried::New
            } else {
                let mut expect = (**event.prev.as_ref().unwrap()).clone();
                expect["metadata"]["resourceVersion"] = json!("9");
                assert_eq!(*o, expect, "row {i}");
                Carried::PrevAtChangeRv
            };
            (ty, carried)
        });
        assert_eq!(
            &got, want,
            "row {i}: {before:?} -> {after:?} deleted={deleted}"
        );
    }
}

#[test]
fn filters_check_namespace_labels_and_fields() {
    let fields = ListOptions {
        field_selector: Some(FieldSelector::parse("metadata.name=a").unwrap()),
        ..Default::default()
    };
    let a = obj("a", 1, &[]);
    let b = obj("b", 1, &[]);
    let rows = [
        (Filter::new(None, &ListOptions::default()), &a, true),
        (
            Filter::new(Some("default"), &ListOptions::default()),
            &a,
            true,
        ),
        (
            Filter::new(Some("other"), &ListOptions::default()),
            &a,
            false,
        ),
        (Filter::new(None, &fields), &a, true),
        (Filter::new(None, &fields), &b, false),
        (label_filter("app"), &a, false),
    ];
    for (i, (filter, o, want)) in rows.iter().enumerate() {
        assert_eq!(filter.matches(o), *want, "row {i}");
    }
}

fn event(rv: u64) -> Arc<CacheEvent> {
    Arc::new(CacheEvent {
        rv,
        object: Arc::new(obj("a", rv, &[])),
        prev: None,
        deleted: false,
    })
}

#[test]
fn ring_replays_after_a_position_or_reports_it_lost() {
    // Capacity 3, complete after 1; events 2, 4, 6, 8: 2 is evicted, so the ring
    // continues from 2 onwards.
    let mut ring = Ring::new(3, 1);
    for rv in [2, 4, 6, 8] {
        ring.push(event(rv));
    }
    assert_eq!(ring.oldest(), 2);
    let rows: &[(u64, Result<&[u64], Lost>)] = &[
        (0, Err(Lost::TooOld { pos: 0, oldest: 2 })),
        (1, Err(Lost::TooOld { pos: 1, oldest: 2 })),
        (2, Ok(&[4, 6, 8])),
        (3, Ok(&[4, 6, 8])),
        (4, Ok(&[6, 8])),
        (7, Ok(&[8])),
        (8, Ok(&[])),
        (9, Ok(&[])),
    ];
    for (pos, want) in rows {
        let got = ring
            .since(*pos)
            .map(|events| events.iter().map(|e| e.rv).collect::<Vec<_>>());
        assert_eq!(got, want.map(<[u64]>::to_vec), "since({pos})");
    }
    // A ring that has evicted nothing continues from where it began.
    let fresh = Ring::new(3, 7);
    assert_eq!(fresh.since(7).map(|e| e.len()), Ok(0));
    assert!(fresh.since(6).is_err());
}

fn put(name: &str, rv: u64, labels: &[(&str, &str)]) -> WatchEvent {
    WatchEvent::Modified(obj(name, rv, labels))
}

fn del(name: &str, rv: u64) -> WatchEvent {
    WatchEvent::Deleted(obj(name, rv, &[]))
}

fn names(state: &CacheState) -> Vec<(String, u64)> {
    let (items, _) = state.snapshot(&Filter::default()).expect("ready");
    items
        .iter()
        .map(|o| (object_name(o), state::revision(o)))
        .collect()
}

fn object_name(o: &Value) -> String {
    drover_store::object::name(o).to_string()
}

#[test]
fn relist_settles_before_recording_changes() {
    // Listed at 10, but the items already include b@12 and c's deletion at 13 (the
    // list reads values after taking its revision); the store was at 13 afterwards.
    let mut state = CacheState::new(100);
    state.replace(vec![obj("a", 5, &[]), obj("b", 12, &[])], 10, 13);
    assert!(!state.progress().ready);
    assert!(state.snapshot(&Filter::default()).is_none());
    // The watch from 10 replays 11..=13; the listed items win where they are as new.
    let replay = [put("c", 11, &[]), put("b", 12, &[])];
    for ev in replay {
        assert!(state.apply(ev));
    }
    assert!(!state.progress().ready);
    assert!(state.apply(del("c", 13)));
    let p = state.progress();
    assert!(p.ready && p.rv == 13 && p.epoch == 1, "{p:?}");
    assert_eq!(names(&state), [("a".into(), 5), ("b".into(), 12)]);
    // Nothing from the settling phase is in the ring; it continues from 13.
    assert_eq!(state.oldest(), 13);
    assert_eq!(state.since(1, 13).unwrap().0.len(), 0);

    // Live changes are recorded with their previous objects.
    let live = [
        put("a", 14, &[("app", "web")]),
        del("b", 15),
        WatchEvent::Added(obj("d", 16, &[])),
        del("zz", 17),            // unknown key: only the revision moves
        put("a", 14, &[]),        // a replay: ignored
        WatchEvent::Bookmark(18), // skipped values up to 18
    ];
    let moved: Vec<bool> = live.into_iter().map(|ev| state.apply(ev)).collect();
    assert_eq!(moved, [true, true, true, true, false, true]);
    let (events, rv) = state.since(1, 13).unwrap();
    assert_eq!(rv, 18);
    let summary: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e.rv,
                object_name(&e.object),
                e.prev.as_deref().map(state::revision),
                e.deleted,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (14, "a".into(), Some(5), false),
            (15, "b".into(), Some(12), true),
            (16, "d".into(), None, false),
        ]
    );
    assert_eq!(names(&state), [("a".into(), 14), ("d".into(), 16)]);

    // A re-list starts a new epoch: old positions are lost.
    state.replace(vec![], 20, 20);
    assert_eq!(state.since(1, 18), Err(Lost::Relisted));
    assert!(state.since(2, 20).is_ok());
}

#[test]
fn snapshot_is_per_namespace_in_key_order() {
    let mut state = CacheState::new(10);
    let mut other = obj("b", 2, &[]);
    other["metadata"]["namespace"] = json!("other");
    let mut cluster = obj("n", 3, &[]);
    cluster["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("namespace");
    state.replace(
        vec![obj("z", 1, &[]), other, obj("a", 4, &[]), cluster],
        4,
        4,
    );
    let in_ns = |ns: Option<&str>| {
        let (items, _) = state
            .snapshot(&Filter::new(ns, &ListOptions::default()))
            .unwrap();
        items.iter().map(|o| object_name(o)).collect::<Vec<_>>()
    };
    assert_eq!(in_ns(Some("default")), ["a", "z"]);
    assert_eq!(in_ns(Some("other")), ["b"]);
    assert_eq!(in_ns(None), ["n", "a", "z", "b"]);
}

/// (resourceVersion, resourceVersionMatch, sendInitialEvents, parsed or error text)
type ParseRow<'a> = (
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    Result<(Freshness, Option<bool>), &'a str>,
);

#[test]
fn read_requests_parse_like_kubernetes() {
    use Freshness::*;
    let rows: &[ParseRow<'_>] = &[
        (None, None, None, Ok((Consistent, None))),
        (Some(""), Some(""), None, Ok((Consistent, None))),
        (Some("0"), None, None, Ok((Any, None))),
        (Some("0"), Some("NotOlderThan"), None, Ok((Any, None))),
        (Some("42"), None, None, Ok((NotOlderThan(42), None))),
        (
            Some("42"),
            Some("NotOlderThan"),
            None,
            Ok((NotOlderThan(42), None)),
        ),
        (Some("42"), Some("Exact"), None, Ok((Exact(42), None))),
        (
            Some("42"),
            None,
            Some("true"),
            Ok((NotOlderThan(42), Some(true))),
        ),
        (None, None, Some("false"), Ok((Consistent, Some(false)))),
        (
            Some(""),
            Some("NotOlderThan"),
            Some("true"),
            Ok((Consistent, Some(true))),
        ),
        (Some("x"), None, None, Err("invalid resourceVersion")),
        (Some("-1"), None, None, Err("invalid resourceVersion")),
        (
            None,
            Some("Exact"),
            None,
            Err("forbidden unless resourceVersion"),
        ),
        (
            Some("0"),
            Some("Exact"),
            None,
            Err("forbidden for resourceVersion \"0\""),
        ),
        (
            Some("5"),
            Some("Newest"),
            None,
            Err("unsupported resourceVersionMatch"),
        ),
        (None, None, Some("yes"), Err("invalid sendInitialEvents")),
    ];
    for (rv, rv_match, initial, want) in rows {
        let got = ReadRequest::parse(*rv, *rv_match, *initial);
        match (got, want) {
            (Ok(r), Ok((f, i))) => {
                assert_eq!(
                    (r.freshness, r.send_initial_events),
                    (*f, *i),
                    "{rv:?} {rv_match:?}"
                )
            }
            (Err(e), Err(w)) => assert!(e.contains(w), "{rv:?} {rv_match:?}: {e}"),
            (got, want) => panic!("{rv:?} {rv_match:?} {initial:?}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn paged_lists_go_to_the_store() {
    use Freshness::*;
    // (freshness, limit, continue, plan)
    let rows = [
        (Consistent, false, false, ListPlan::Cache(Consistent)),
        (Consistent, true, false, ListPlan::Store),
        (Consistent, true, true, ListPlan::Store),
        (Any, false, false, ListPlan::Cache(Any)),
        (Any, true, false, ListPlan::Cache(Any)),
        (Any, true, true, ListPlan::Store),
        (
            NotOlderThan(7),
            false,
            false,
            ListPlan::Cache(NotOlderThan(7)),
        ),
        (NotOlderThan(7), true, false, ListPlan::Store),
        (Exact(7), true, false, ListPlan::Cache(Exact(7))),
        (Exact(7), false, true, ListPlan::Store),
    ];
    for (freshness, limit, cont, want) in rows {
        assert_eq!(
            list_plan(freshness, limit, cont),
            want,
            "{freshness:?} limit={limit} continue={cont}"
        );
    }
}

#[test]
fn watch_starts() {
    use Freshness::*;
    let snap = |freshness, initial_events, end_bookmark| {
        Ok(WatchStart::Snapshot {
            freshness,
            initial_events,
            end_bookmark,
        })
    };
    let rows: &[(Freshness, Option<bool>, Result<WatchStart, ()>)] = &[
        (Consistent, None, snap(Consistent, true, false)),
        (Any, None, snap(Any, true, false)),
        (Any, Some(false), snap(Any, false, false)),
        (Consistent, Some(true), snap(Consistent, true, true)),
        (NotOlderThan(9), None, Ok(WatchStart::Resume(9))),
        (NotOlderThan(9), Some(false), Ok(WatchStart::Resume(9))),
        (
            NotOlderThan(9),
            Some(true),
            snap(NotOlderThan(9), true, true),
        ),
        (Exact(9), None, Err(())),
    ];
    for (freshness, send_initial_events, want) in rows {
        let read = ReadRequest {
            freshness: *freshness,
            send_initial_events: *send_initial_events,
        };
        assert_eq!(
            watch_start(&read).map_err(|_| ()),
            *want,
            "{freshness:?} {send_initial_events:?}"
        );
    }
}

#[test]
fn resumes_from_the_ring_only_inside_it() {
    let at = |rv, ready| Progress {
        epoch: 1,
        rv,
        ready,
    };
    // (resume after, progress, ring's oldest, decision)
    let rows = [
        (10, at(20, true), 10, ResumeFrom::Ring),
        (15, at(20, true), 10, ResumeFrom::Ring),
        (20, at(20, true), 10, ResumeFrom::Ring),
        (9, at(20, true), 10, ResumeFrom::Store),
        (1, at(20, true), 10, ResumeFrom::Store),
        (21, at(20, true), 10, ResumeFrom::Wait),
        (15, at(20, false), 10, ResumeFrom::Wait),
    ];
    for (rv, progress, oldest, want) in rows {
        assert_eq!(
            resume_from(rv, progress, oldest),
            want,
            "{rv} {progress:?} {oldest}"
        );
    }
}

/// A cache state fed by hand, and watchers following it through the real stream.
struct Fed {
    state: Arc<std::sync::RwLock<CacheState>>,
    progress: tokio::sync::watch::Sender<Progress>,
}

impl Fed {
    fn new(ring_capacity: usize, list_rv: u64) -> Fed {
        let mut state = CacheState::new(ring_capacity);
        state.replace(vec![], list_rv, list_rv);
        let (progress, _) = tokio::sync::watch::channel(state.progress());
        Fed {
            state: Arc::new(std::sync::RwLock::new(state)),
            progress,
        }
    }

    fn apply(&self, event: WatchEvent) {
        let now = {
            let mut state = write_state(&self.state);
            state.apply(event);
            state.progress()
        };
        self.progress.send_replace(now);
    }

    fn relist(&self, rv: u64) {
        let now = {
            let mut state = write_state(&self.state);
            state.replace(vec![], rv, rv);
            state.progress()
        };
        self.progress.send_replace(now);
    }

    fn watch(&self, pos: u64, selector: &str) -> EventStream {
        let spec = watcher::WatchSpec {
            kind: bus_schema::kinds::by_group_kind("", "ConfigMap").unwrap(),
            filter: label_filter(selector),
            bookmark_interval: None,
        };
        let start = watcher::Start {
            epoch: self.progress.borrow().epoch,
            pos,
            initial: Vec::new(),
            end_bookmark: false,
        };
        watcher::follow(spec, self.state.clone(), self.progress.subscribe(), start)
    }
}

async fn next(stream: &mut EventStream) -> (String, String) {
    use futures::StreamExt;
    let ev = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
        .await
        .expect("an event")
        .expect("the watch goes on");
    let detail = match ev.event_type {
        "ERROR" => format!("{} {}", ev.object["code"], ev.object["message"]),
        _ => object_name(&ev.object),
    };
    (ev.event_type.to_string(), detail)
}

#[tokio::test]
async fn watchers_fall_behind_the_ring_or_lose_it_to_a_relist() {
    let fed = Fed::new(2, 1);
    let mut slow = fed.watch(1, "");
    let mut fast = fed.watch(1, "");
    let mut web = fed.watch(1, "app=web");
    fed.apply(put("a", 2, &[("app", "web")]));
    for w in [&mut slow, &mut fast, &mut web] {
        assert_eq!(next(w).await, ("ADDED".into(), "a".into()));
    }
    fed.apply(put("a", 3, &[("app", "db")]));
    assert_eq!(next(&mut web).await, ("DELETED".into(), "a".into()));
    assert_eq!(next(&mut fast).await, ("MODIFIED".into(), "a".into()));
    // `slow` reads nothing while three more changes arrive: the ring (2 changes) no
    // longer holds what follows its position. `fast` reads each as it comes.
    for rv in 4..=6 {
        fed.apply(put("b", rv, &[]));
        assert_eq!(next(&mut fast).await.1, "b");
    }
    let (ty, detail) = next(&mut slow).await;
    assert_eq!(ty, "ERROR");
    assert!(
        detail.starts_with("410 ") && detail.contains("fell behind"),
        "{detail}"
    );
    assert!(futures::StreamExt::next(&mut slow).await.is_none());

    // A watcher that kept up goes on until the cache re-lists.
    fed.relist(8);
    let (ty, detail) = next(&mut fast).await;
    assert_eq!(ty, "ERROR");
    assert!(
        detail.starts_with("410 ") && detail.contains("re-listed"),
        "{detail}"
    );
}
