use super::*;
use serde_json::json;

fn pod(name: &str, node: Option<&str>, rv: u64) -> Value {
    let mut p = json!({"metadata": {"name": name, "namespace": "ns",
        "resourceVersion": rv.to_string()}, "spec": {"containers": []}});
    if let Some(n) = node {
        p["spec"]["nodeName"] = json!(n);
    }
    p
}

fn changes(out: &[(String, PodIndexEvent)]) -> Vec<(String, u64, &'static str, String)> {
    out.iter()
        .map(|(node, e)| {
            let (what, obj) = match &e.change {
                PodIndexChange::Upsert(o) => ("upsert", o),
                PodIndexChange::Removed(o) => ("removed", o),
            };
            (node.clone(), e.seq, what, pod_index::pod_key(obj))
        })
        .collect()
}

#[test]
fn state_routes_changes_to_the_node_they_concern() {
    let mut s = IndexState::new(
        "e1".into(),
        vec![
            pod("a", Some("n1"), 1),
            pod("b", None, 2),
            pod("c", Some("n2"), 3),
        ],
    );
    assert_eq!(
        s.page(
            "n1",
            &PodIndexListRequest {
                after: None,
                limit: 10
            }
        )
        .items
        .len(),
        1
    );
    assert!(
        s.page(
            "n3",
            &PodIndexListRequest {
                after: None,
                limit: 10
            }
        )
        .items
        .is_empty()
    );
    // An unbound pod changing: nobody hears of it.
    assert!(s.apply(WatchEvent::Modified(pod("b", None, 4))).is_empty());
    // Binding: the node hears an upsert.
    let out = s.apply(WatchEvent::Modified(pod("b", Some("n1"), 5)));
    assert_eq!(
        changes(&out),
        vec![("n1".into(), 1, "upsert", "ns/b".into())]
    );
    // Status write on a bound pod: upsert again, next sequence number.
    let out = s.apply(WatchEvent::Modified(pod("b", Some("n1"), 6)));
    assert_eq!(
        changes(&out),
        vec![("n1".into(), 2, "upsert", "ns/b".into())]
    );
    // Moved (raw write): removed from the old node, added to the new one.
    let out = s.apply(WatchEvent::Modified(pod("b", Some("n2"), 7)));
    assert_eq!(
        changes(&out),
        vec![
            ("n1".into(), 3, "removed", "ns/b".into()),
            ("n2".into(), 1, "upsert", "ns/b".into())
        ]
    );
    // Deleted: removed from its node; deleting an unknown pod says nothing.
    let out = s.apply(WatchEvent::Deleted(pod("c", Some("n2"), 8)));
    assert_eq!(
        changes(&out),
        vec![("n2".into(), 2, "removed", "ns/c".into())]
    );
    assert!(
        s.apply(WatchEvent::Deleted(pod("zz", Some("n2"), 9)))
            .is_empty()
    );
    assert!(s.apply(WatchEvent::Bookmark(10)).is_empty());
    let page = s.page(
        "n2",
        &PodIndexListRequest {
            after: None,
            limit: 10,
        },
    );
    assert_eq!(page.seq, 2);
    assert_eq!(page.epoch, "e1");
    assert_eq!(page.items, vec![pod("b", Some("n2"), 7)]);
}

#[test]
fn pages_cover_every_pod_once_in_key_order() {
    let pods: Vec<Value> = (0..7)
        .map(|i| pod(&format!("p{i}"), Some("n"), i))
        .collect();
    let s = IndexState::new("e".into(), pods);
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = s.page(
            "n",
            &PodIndexListRequest {
                after: after.clone(),
                limit: 3,
            },
        );
        assert!(page.items.len() <= 3);
        seen.extend(page.items.iter().map(pod_index::pod_key));
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let want: Vec<String> = (0..7).map(|i| format!("ns/p{i}")).collect();
    assert_eq!(seen, want);
    // limit 0: only epoch and sequence.
    let check = s.page(
        "n",
        &PodIndexListRequest {
            after: None,
            limit: 0,
        },
    );
    assert!(check.items.is_empty() && check.next.is_none());
}
