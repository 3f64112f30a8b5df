use serde_json::{Value, json};

use super::*;

fn kind(k: &str) -> &'static KindInfo {
    bus_schema::kinds::KINDS
        .iter()
        .find(|i| i.kind == k)
        .expect("kind in KINDS")
}

/// An object of `k` named `name` with uid `uid`, owned by `owners` ((kind, name, uid)).
fn obj(k: &str, name: &str, uid: &str, owners: &[(&str, &str, &str)]) -> Value {
    let info = kind(k);
    let refs: Vec<Value> = owners
        .iter()
        .map(|(ok, on, ou)| {
            json!({"apiVersion": kind(ok).api_version(), "kind": ok, "name": on, "uid": ou})
        })
        .collect();
    let mut o = json!({"apiVersion": info.api_version(), "kind": k,
        "metadata": {"name": name, "uid": uid, "ownerReferences": refs}});
    if info.namespaced {
        o["metadata"]["namespace"] = json!("default");
    }
    o
}

fn deleting(mut o: Value, finalizer: &str) -> Value {
    o["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    o["metadata"]["finalizers"] = json!([finalizer]);
    o
}

fn graph(objects: &[Value]) -> Graph {
    let mut g = Graph::default();
    for o in objects {
        let info = bus_schema::kinds::KINDS
            .iter()
            .find(|i| i.kind == o["kind"])
            .unwrap();
        g.upsert(Node::from_object(info, o).unwrap());
    }
    g
}

/// One summary word per action, for table-style expectations.
fn summary(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .map(|a| match a {
            Action::Delete {
                object,
                propagation,
                ..
            } => format!("delete {} {:?}", object.name, propagation),
            Action::DeleteOrphan { object, .. } => format!("delete-orphan {}", object.name),
            Action::RemoveOwnerRefs {
                object, owner_uids, ..
            } => format!("unref {} {}", object.name, owner_uids.join(",")),
            Action::RemoveFinalizer { object, finalizer } => {
                format!("unfinalize {} {finalizer}", object.name)
            }
            Action::FinalizeNamespace { object } => format!("finalize-ns {}", object.name),
        })
        .collect()
}

#[test]
fn decisions() {
    let rs = || obj("ReplicaSet", "web-1", "rs", &[("Deployment", "web", "d")]);
    let pod = |n: &str, u: &str| obj("Pod", n, u, &[("ReplicaSet", "web-1", "rs")]);
    let cases: Vec<(&str, Vec<Value>, &str, Vec<&str>)> = vec![
        (
            "owner present: nothing",
            vec![obj("Deployment", "web", "d", &[]), rs()],
            "rs",
            vec![],
        ),
        (
            "owner gone: delete (background)",
            vec![rs()],
            "rs",
            vec!["delete-orphan web-1"],
        ),
        (
            "one of two owners gone: drop the dangling reference",
            vec![
                obj("Deployment", "web", "d", &[]),
                obj(
                    "ConfigMap",
                    "c",
                    "c1",
                    &[("Deployment", "web", "d"), ("Deployment", "old", "gone")],
                ),
            ],
            "c1",
            vec!["unref c gone"],
        ),
        (
            "owner of an unknown kind: never dangling",
            vec![
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default", "uid": "c1",
                "ownerReferences": [{"apiVersion": "example.com/v1", "kind": "Widget", "name": "w", "uid": "w1"}]}}),
            ],
            "c1",
            vec![],
        ),
        (
            "orphan: release dependents first",
            vec![deleting(rs(), ORPHAN), pod("a", "p1"), pod("b", "p2")],
            "rs",
            vec!["unref a rs", "unref b rs"],
        ),
        (
            "orphan: no dependents left, drop the finalizer",
            vec![deleting(rs(), ORPHAN)],
            "rs",
            vec!["unfinalize web-1 orphan"],
        ),
        (
            "foreground: delete dependents, the ones with dependents in foreground",
            vec![
                deleting(obj("Deployment", "web", "d", &[]), FOREGROUND),
                rs(),
                pod("a", "p1"),
            ],
            "d",
            vec!["delete web-1 Foreground"],
        ),
        (
            "foreground: wait for terminating dependents",
            vec![deleting(rs(), FOREGROUND), deleting(pod("a", "p1"), "x")],
            "rs",
            vec![],
        ),
        (
            "foreground: none left, drop the finalizer",
            vec![deleting(rs(), FOREGROUND)],
            "rs",
            vec!["unfinalize web-1 foregroundDeletion"],
        ),
        (
            "terminating dependent of a gone owner is not deleted again",
            vec![deleting(pod("a", "p1"), "x")],
            "p1",
            vec![],
        ),
    ];
    for (name, objects, uid, want) in cases {
        let g = graph(&objects);
        assert_eq!(summary(&g.decide(uid)), want, "{name}");
    }
}

#[test]
fn namespace_termination() {
    let ns = |terminating: bool| {
        let mut o = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "default", "uid": "ns"}, "spec": {"finalizers": ["kubernetes"]}});
        if terminating {
            o["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        o
    };
    let cm = obj("ConfigMap", "c", "c1", &[]);
    let pod = deleting(obj("Pod", "p", "p1", &[]), "x");
    assert!(graph(&[ns(false), cm.clone()]).decide("ns").is_empty());
    assert_eq!(
        summary(&graph(&[ns(true), cm.clone(), pod.clone()]).decide("ns")),
        vec!["delete c Background"]
    );
    assert_eq!(
        summary(&graph(&[ns(true), pod]).decide("ns")),
        Vec::<String>::new()
    );
    assert_eq!(
        summary(&graph(&[ns(true)]).decide("ns")),
        vec!["finalize-ns default"]
    );
}

#[test]
fn changes_mark_the_right_objects_dirty() {
    let mut g = graph(&[
        obj("Deployment", "web", "d", &[]),
        obj("ReplicaSet", "web-1", "rs", &[("Deployment", "web", "d")]),
    ]);
    // The owner going away makes its dependent worth a look.
    assert_eq!(g.remove("d"), vec!["rs".to_string()]);
    // A new dependent makes its owner worth a look (a foreground owner may be waiting).
    let dirty = g.upsert(
        Node::from_object(
            kind("Pod"),
            &obj("Pod", "a", "p1", &[("ReplicaSet", "web-1", "rs")]),
        )
        .unwrap(),
    );
    assert_eq!(dirty, vec!["p1".to_string(), "rs".to_string()]);
    assert_eq!(g.len(), 2);
    assert!(g.remove("missing").is_empty());
}
