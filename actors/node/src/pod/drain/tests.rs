use serde_json::{Value, json};

use super::{Listed, listed};

fn ep(uid: Option<&str>, ip: &str, ready: Option<bool>) -> Value {
    let mut e = json!({"addresses": [ip]});
    if let Some(u) = uid {
        e["targetRef"] = json!({"kind": "Pod", "uid": u});
    }
    if let Some(r) = ready {
        e["conditions"] = json!({"ready": r, "terminating": !r});
    }
    e
}

fn check(slices: Vec<Value>, expected: Listed) {
    assert_eq!(listed(&slices, "u1", "10.244.0.5"), expected, "{slices:?}");
}

#[test]
fn states() {
    let slice = |eps: Vec<Value>| json!({"endpoints": eps});
    // Not behind any Service.
    check(vec![], Listed::Nowhere);
    check(vec![json!({})], Listed::Nowhere);
    check(
        vec![slice(vec![ep(Some("u2"), "10.244.0.6", Some(true))])],
        Listed::Nowhere,
    );
    // Another pod with the same IP (a reused address) is not ours when it has a uid.
    check(
        vec![slice(vec![ep(Some("u2"), "10.244.0.5", Some(true))])],
        Listed::Nowhere,
    );
    // Ours, by uid or (without a targetRef) by address; `ready` missing counts as ready.
    check(
        vec![slice(vec![ep(Some("u1"), "10.244.0.5", Some(true))])],
        Listed::Ready,
    );
    check(
        vec![slice(vec![ep(None, "10.244.0.5", None)])],
        Listed::Ready,
    );
    check(
        vec![slice(vec![ep(Some("u1"), "10.244.0.5", Some(false))])],
        Listed::NotReady,
    );
    // Two Services: ready in one of them keeps it Ready.
    check(
        vec![
            slice(vec![ep(Some("u1"), "10.244.0.5", Some(false))]),
            slice(vec![ep(Some("u1"), "10.244.0.5", Some(true))]),
        ],
        Listed::Ready,
    );
    check(
        vec![
            slice(vec![ep(Some("u1"), "10.244.0.5", Some(false))]),
            slice(vec![ep(Some("u3"), "10.244.0.7", Some(true))]),
        ],
        Listed::NotReady,
    );
}
