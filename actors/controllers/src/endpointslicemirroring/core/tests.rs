use serde_json::{Value, json};

use super::*;

fn endpoints(subsets: Value) -> Value {
    json!({
        "metadata": {"name": "ext", "namespace": "ns", "uid": "ep-uid",
                     "labels": {"team": "a"},
                     "annotations": {"note": "x",
                                     "endpoints.kubernetes.io/last-change-trigger-time": "t"}},
        "subsets": subsets,
    })
}

fn http() -> Value {
    json!([{"name": "http", "port": 8080}])
}

/// A stored mirrored slice as `plan` would have written it for `subsets`.
fn stored(name: &str, subsets: Value) -> Value {
    let mut p = plan(&endpoints(subsets), &[]).plan;
    let mut s = p.create.remove(0);
    s["metadata"]["name"] = json!(name);
    s["metadata"]["uid"] = json!(format!("uid-{name}"));
    s["metadata"]["resourceVersion"] = json!("7");
    s
}

/// Plan summary: created slices as (addressType, endpoint ips with ready flag),
/// updated slice names, deleted slice names, invalid and skipped counts.
#[derive(Debug, PartialEq)]
struct Summary {
    create: Vec<(String, Vec<String>)>,
    update: Vec<String>,
    delete: Vec<String>,
    invalid: usize,
    skipped: usize,
}

fn eps_of(slice: &Value) -> Vec<String> {
    slice["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}{}",
                e["addresses"][0].as_str().unwrap(),
                if e["conditions"]["ready"] == json!(true) {
                    ""
                } else {
                    "!"
                }
            )
        })
        .collect()
}

#[track_caller]
fn check(ep: Value, existing: &[Value], expected: Summary) {
    let existing: Vec<&Value> = existing.iter().collect();
    let m = plan(&ep, &existing);
    let got = Summary {
        create: m
            .plan
            .create
            .iter()
            .map(|s| (s["addressType"].as_str().unwrap().to_string(), eps_of(s)))
            .collect(),
        update: m
            .plan
            .update
            .iter()
            .map(|s| s["metadata"]["name"].as_str().unwrap().to_string())
            .collect(),
        delete: m.plan.delete.iter().map(|(n, _)| n.clone()).collect(),
        invalid: m.invalid_addresses,
        skipped: m.skipped_addresses,
    };
    assert_eq!(got, expected);
}

fn summary(create: &[(&str, &[&str])], update: &[&str], delete: &[&str]) -> Summary {
    Summary {
        create: create
            .iter()
            .map(|(t, e)| (t.to_string(), e.iter().map(|s| s.to_string()).collect()))
            .collect(),
        update: update.iter().map(|s| s.to_string()).collect(),
        delete: delete.iter().map(|s| s.to_string()).collect(),
        invalid: 0,
        skipped: 0,
    }
}

#[test]
fn new_endpoints_get_one_slice_per_address_type_and_port_set() {
    let subsets = json!([
        {"addresses": [{"ip": "10.1.0.1"}, {"ip": "fd00::1"}],
         "notReadyAddresses": [{"ip": "10.1.0.2"}], "ports": http()},
        {"addresses": [{"ip": "10.1.0.3"}], "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]},
        // Same ports as the first subset: the same slice.
        {"addresses": [{"ip": "10.1.0.4"}], "ports": http()},
    ]);
    check(
        endpoints(subsets),
        &[],
        summary(
            &[
                ("IPv4", &["10.1.0.3"]),
                ("IPv4", &["10.1.0.1", "10.1.0.2!", "10.1.0.4"]),
                ("IPv6", &["fd00::1"]),
            ],
            &[],
            &[],
        ),
    );
}

#[test]
fn slice_content_follows_kubernetes() {
    let ep = endpoints(json!([{
        "addresses": [{"ip": "10.1.0.1", "hostname": "h", "nodeName": "n1",
                       "targetRef": {"kind": "Pod", "name": "p", "namespace": "ns"}}],
        "ports": [{"name": "http", "port": 8080, "appProtocol": "http"}],
    }]));
    let s = &plan(&ep, &[]).plan.create[0];
    assert_eq!(
        s,
        &json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "generateName": "ext-",
                "namespace": "ns",
                "labels": {"team": "a", "kubernetes.io/service-name": "ext",
                           "endpointslice.kubernetes.io/managed-by": MANAGED_BY},
                "annotations": {"note": "x"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Endpoints", "name": "ext",
                                     "uid": "ep-uid", "controller": true,
                                     "blockOwnerDeletion": true}],
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP", "appProtocol": "http"}],
            "endpoints": [{"addresses": ["10.1.0.1"], "conditions": {"ready": true},
                           "hostname": "h", "nodeName": "n1",
                           "targetRef": {"kind": "Pod", "name": "p", "namespace": "ns"}}],
        })
    );
}

#[test]
fn existing_slices_are_kept_rewritten_reused_or_deleted() {
    let one = json!([{"addresses": [{"ip": "10.1.0.1"}], "ports": http()}]);
    let a = stored("ext-a", one.clone());
    // Nothing changed (endpoint order does not count): no write.
    check(
        endpoints(one.clone()),
        std::slice::from_ref(&a),
        summary(&[], &[], &[]),
    );
    let two = json!([{"addresses": [{"ip": "10.1.0.2"}, {"ip": "10.1.0.1"}], "ports": http()}]);
    let b = stored("ext-b", two.clone());
    check(
        endpoints(two.clone()),
        std::slice::from_ref(&b),
        summary(&[], &[], &[]),
    );
    // An address more: the slice is rewritten in place.
    check(
        endpoints(two),
        std::slice::from_ref(&a),
        summary(&[], &["ext-a"], &[]),
    );
    // Two slices for one group: the first by name stays, the other goes.
    check(
        endpoints(one.clone()),
        &[b.clone(), a.clone()],
        summary(&[], &[], &["ext-b"]),
    );
    // The ports changed: the old slice is reused for the new port set.
    let dns = json!([{"addresses": [{"ip": "10.1.0.1"}], "ports": [{"name": "dns", "port": 53}]}]);
    check(
        endpoints(dns),
        std::slice::from_ref(&a),
        summary(&[], &["ext-a"], &[]),
    );
    // No subsets: every slice goes.
    check(
        endpoints(json!([])),
        &[a.clone(), b],
        summary(&[], &[], &["ext-a", "ext-b"]),
    );
    // A label change on the Endpoints reaches the slice.
    let mut relabelled = endpoints(one);
    relabelled["metadata"]["labels"]["team"] = json!("b");
    check(relabelled, &[a], summary(&[], &["ext-a"], &[]));
}

#[test]
fn bad_and_excess_addresses_are_counted() {
    let mut many: Vec<Value> = (0..MAX_ENDPOINTS_PER_SUBSET + 2)
        .map(|i| json!({"ip": format!("10.2.{}.{}", i / 256, i % 256)}))
        .collect();
    many.push(json!({"ip": "not-an-ip"}));
    many.push(json!({"ip": 7}));
    let m = plan(
        &endpoints(json!([{"addresses": many, "ports": http()}])),
        &[],
    );
    assert_eq!(m.invalid_addresses, 2);
    assert_eq!(m.skipped_addresses, 2);
    assert_eq!(m.plan.create.len(), 1);
    assert_eq!(
        m.plan.create[0]["endpoints"].as_array().unwrap().len(),
        MAX_ENDPOINTS_PER_SUBSET
    );
    // Garbage shapes: no slice, no panic.
    for garbage in [
        json!(null),
        json!({"subsets": 3}),
        json!({"subsets": [{"addresses": "x"}]}),
    ] {
        assert!(plan(&garbage, &[]).plan.is_empty());
    }
}

#[test]
fn which_endpoints_are_mirrored() {
    let svc = |spec: Value| json!({"metadata": {"name": "ext", "namespace": "ns"}, "spec": spec});
    let plain = endpoints(json!([]));
    let mut skip = plain.clone();
    skip["metadata"]["labels"][SKIP_MIRROR_LABEL] = json!("true");
    let mut not_skip = plain.clone();
    not_skip["metadata"]["labels"][SKIP_MIRROR_LABEL] = json!("false");
    let mut leader = plain.clone();
    leader["metadata"]["annotations"][LEADER_ANNOTATION] = json!("{}");
    let no_selector = svc(json!({"ports": []}));
    let empty_selector = svc(json!({"selector": {}}));
    let selector = svc(json!({"selector": {"app": "web"}}));
    let table = [
        (Some(&plain), Some(&no_selector), true),
        (Some(&plain), Some(&empty_selector), true),
        (Some(&not_skip), Some(&no_selector), true),
        (Some(&plain), Some(&selector), false),
        (Some(&plain), None, false),
        (None, Some(&no_selector), false),
        (Some(&skip), Some(&no_selector), false),
        (Some(&leader), Some(&no_selector), false),
    ];
    for (i, (ep, svc, want)) in table.into_iter().enumerate() {
        assert_eq!(should_mirror(ep, svc), want, "row {i}");
    }
    let s = stored("ext-a", json!([{"addresses": [{"ip": "10.1.0.1"}]}]));
    assert!(is_mirrored_slice(&s, "ext"));
    assert!(!is_mirrored_slice(&s, "other"));
}
