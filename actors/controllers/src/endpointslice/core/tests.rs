use serde_json::json;

use super::*;

fn svc(ports: Value, spec: Value) -> Value {
    let mut s = json!({
        "metadata": {"name": "web", "namespace": "ns", "uid": "svc-uid",
                     "labels": {"app": "web"}, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"selector": {"app": "web"}, "ports": ports, "clusterIP": "10.96.0.10"},
    });
    for (k, v) in spec.as_object().unwrap() {
        s["spec"][k] = v.clone();
    }
    s
}

fn http() -> Value {
    json!([{"name": "http", "port": 80, "targetPort": 8080}])
}

/// A pod `name` with IP 10.0.0.`n`; `state` letters: r = Ready, t = terminating,
/// n = port named "web" (8080) in its container, u = unlabeled, x = no IP, f = Failed.
fn pod(name: &str, n: u32, state: &str) -> Value {
    let mut p = json!({
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"),
                     "labels": {"app": "web"}, "creationTimestamp": "2026-01-01T00:00:01Z"},
        "spec": {"nodeName": "node-a", "containers": [{"name": "c", "ports": []}]},
        "status": {"phase": "Running", "podIP": format!("10.0.0.{n}"),
                   "conditions": [{"type": "Ready", "status": if state.contains('r') { "True" } else { "False" },
                                   "lastTransitionTime": "2026-01-01T00:00:02Z"}]},
    });
    if state.contains('t') {
        p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:05Z");
    }
    if state.contains('n') {
        p["spec"]["containers"][0]["ports"] = json!([{"name": "web", "containerPort": 8080}]);
    }
    if state.contains('u') {
        p["metadata"]["labels"] = json!({"app": "other"});
    }
    if state.contains('x') {
        p["status"].as_object_mut().unwrap().remove("podIP");
    }
    if state.contains('f') {
        p["status"]["phase"] = json!("Failed");
    }
    p
}

fn zones() -> BTreeMap<String, String> {
    BTreeMap::from([("node-a".to_string(), "zone-1".to_string())])
}

/// A slice as `ports | pod:conditions ...` where conditions are R (ready), S (serving),
/// T (terminating), each or `-`.
fn render(slice: &Value) -> String {
    let ports: Vec<String> = slice_ports(slice)
        .iter()
        .map(|p| format!("{}:{}/{}", p.name, p.port, p.protocol))
        .collect();
    let eps: Vec<String> = slice_endpoints(slice)
        .iter()
        .map(|e| {
            let c = |f: &str, l: &str| {
                if e["conditions"][f] == true {
                    l.to_string()
                } else {
                    "-".to_string()
                }
            };
            format!(
                "{}:{}{}{}",
                endpoint_key(e),
                c("ready", "R"),
                c("serving", "S"),
                c("terminating", "T")
            )
        })
        .collect();
    format!("{} | {}", ports.join(","), eps.join(" "))
}

/// What a plan writes, rendered: `create <slice>`, `update <name> <slice>`, `delete <name>`.
fn render_plan(plan: &SlicePlan) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    out.extend(plan.create.iter().map(|s| format!("create {}", render(s))));
    out.extend(
        plan.update
            .iter()
            .map(|s| format!("update {} {}", str_at(s, "/metadata/name"), render(s))),
    );
    out.extend(plan.delete.iter().map(|(n, _)| format!("delete {n}")));
    out
}

/// Applies a plan to the existing slices as the store would (created slices get names
/// `web-<i>` and uids).
fn apply(existing: &[Value], plan: &SlicePlan) -> Vec<Value> {
    let mut out: Vec<Value> = existing
        .iter()
        .filter(|s| {
            !plan
                .delete
                .iter()
                .any(|(n, _)| n == str_at(s, "/metadata/name"))
        })
        .map(|s| {
            plan.update
                .iter()
                .find(|u| str_at(u, "/metadata/name") == str_at(s, "/metadata/name"))
                .unwrap_or(s)
                .clone()
        })
        .collect();
    for (i, s) in plan.create.iter().enumerate() {
        let mut s = s.clone();
        let name = format!("web-{}{i}", existing.len());
        s["metadata"]["name"] = json!(name);
        s["metadata"]["uid"] = json!(format!("uid-{name}"));
        out.push(s);
    }
    out
}

fn check(service: &Value, pods: &[Value], existing: &[Value], want: &[&str]) -> Vec<Value> {
    let pods: Vec<&Value> = pods.iter().collect();
    let existing_refs: Vec<&Value> = existing.iter().collect();
    let plan = plan_slices(service, &pods, &zones(), &existing_refs).expect("managed");
    assert_eq!(render_plan(&plan), want, "pods: {pods:?}");
    let after = apply(existing, &plan);
    // A second pass over what was written finds nothing to do: writes only on change.
    let after_refs: Vec<&Value> = after.iter().collect();
    let again = plan_slices(service, &pods, &zones(), &after_refs).unwrap();
    assert!(
        again.is_empty(),
        "not idempotent: {:?}",
        render_plan(&again)
    );
    after
}

#[test]
fn endpoints_and_their_conditions() {
    let s = svc(http(), json!({}));
    check(
        &s,
        &[
            pod("a", 1, "r"),
            pod("b", 2, ""),
            pod("c", 3, "rt"),
            pod("d", 4, "t"),
            pod("e", 5, "ru"),
            pod("f", 6, "rx"),
            pod("g", 7, "rf"),
        ],
        &[],
        &["create http:8080/TCP | a:RS- b:--- c:-ST d:--T"],
    );
    // publishNotReadyAddresses: every endpoint is ready and serving.
    let s = svc(http(), json!({"publishNotReadyAddresses": true}));
    check(
        &s,
        &[pod("a", 1, "r"), pod("b", 2, ""), pod("c", 3, "t")],
        &[],
        &["create http:8080/TCP | a:RS- b:RS- c:RST"],
    );
}

#[test]
fn endpoint_fields() {
    let s = svc(http(), json!({}));
    let mut p = pod("a", 1, "r");
    p["spec"]["hostname"] = json!("a");
    p["spec"]["subdomain"] = json!("web");
    let ep = endpoint(&s, &p, &zones()).unwrap();
    assert_eq!(
        ep,
        json!({"addresses": ["10.0.0.1"],
               "conditions": {"ready": true, "serving": true, "terminating": false},
               "targetRef": {"kind": "Pod", "namespace": "ns", "name": "a", "uid": "uid-a"},
               "nodeName": "node-a", "zone": "zone-1", "hostname": "a"})
    );
}

#[test]
fn topology_hints_follow_traffic_distribution_and_the_annotations() {
    let zone = json!({"forZones": [{"name": "zone-1"}]});
    let node = json!({"forZones": [{"name": "zone-1"}], "forNodes": [{"name": "node-a"}]});
    let anno = |k: &str, v: &str| {
        let mut s = svc(http(), json!({}));
        s["metadata"]["annotations"] = json!({k: v});
        s
    };
    let mut both = anno("service.kubernetes.io/topology-mode", "Disabled");
    both["metadata"]["annotations"]["service.kubernetes.io/topology-aware-hints"] = json!("auto");
    let mut no_zone = pod("b", 2, "r");
    no_zone["spec"]["nodeName"] = json!("node-b");
    let mut no_node = pod("c", 3, "r");
    no_node["spec"].as_object_mut().unwrap().remove("nodeName");
    let dist = |d: &str| svc(http(), json!({"trafficDistribution": d}));
    let cases: Vec<(&str, Value, Value, HintMode, Option<Value>)> = vec![
        (
            "no preference",
            svc(http(), json!({})),
            pod("a", 1, "r"),
            HintMode::None,
            None,
        ),
        (
            "PreferClose",
            dist("PreferClose"),
            pod("a", 1, "r"),
            HintMode::SameZone,
            Some(zone.clone()),
        ),
        (
            "PreferSameZone",
            dist("PreferSameZone"),
            pod("a", 1, "r"),
            HintMode::SameZone,
            Some(zone.clone()),
        ),
        (
            "PreferSameNode",
            dist("PreferSameNode"),
            pod("a", 1, "r"),
            HintMode::SameNode,
            Some(node.clone()),
        ),
        (
            "unknown distribution",
            dist("PreferFar"),
            pod("a", 1, "r"),
            HintMode::None,
            None,
        ),
        (
            "topology-mode Auto",
            anno("service.kubernetes.io/topology-mode", "Auto"),
            pod("a", 1, "r"),
            HintMode::SameZone,
            Some(zone.clone()),
        ),
        (
            "older annotation auto",
            anno("service.kubernetes.io/topology-aware-hints", "auto"),
            pod("a", 1, "r"),
            HintMode::SameZone,
            Some(zone.clone()),
        ),
        (
            "annotation Disabled",
            anno("service.kubernetes.io/topology-mode", "Disabled"),
            pod("a", 1, "r"),
            HintMode::None,
            None,
        ),
        (
            "the newer annotation wins",
            both,
            pod("a", 1, "r"),
            HintMode::None,
            None,
        ),
        (
            "not ready: no hints",
            dist("PreferSameNode"),
            pod("a", 1, ""),
            HintMode::SameNode,
            None,
        ),
        (
            "node without a zone: node hint only",
            dist("PreferSameNode"),
            no_zone.clone(),
            HintMode::SameNode,
            Some(json!({"forNodes": [{"name": "node-b"}]})),
        ),
        (
            "node without a zone, same zone asked: none",
            dist("PreferClose"),
            no_zone,
            HintMode::SameZone,
            None,
        ),
        (
            "no node at all: none",
            dist("PreferSameNode"),
            no_node,
            HintMode::SameNode,
            None,
        ),
    ];
    for (what, s, p, mode, want) in cases {
        assert_eq!(hint_mode(&s), mode, "{what}");
        let ep = endpoint(&s, &p, &zones()).unwrap();
        assert_eq!(ep.get("hints"), want.as_ref(), "{what}");
    }
}

#[test]
fn ports_resolve_against_the_pod() {
    // (service port, pod state, wanted port)
    let table = [
        (json!({"port": 80}), "", Some(80)),
        (json!({"port": 80, "targetPort": 9090}), "", Some(9090)),
        (json!({"port": 80, "targetPort": "web"}), "n", Some(8080)),
        (json!({"port": 80, "targetPort": "web"}), "", None),
        (
            json!({"port": 80, "targetPort": "web", "protocol": "UDP"}),
            "n",
            None,
        ),
    ];
    for (sp, state, want) in table {
        assert_eq!(
            find_port(&pod("a", 1, state), &sp),
            want,
            "{sp} on {state:?}"
        );
    }
}

#[test]
fn a_named_target_port_groups_pods_by_port_set() {
    let s = svc(
        json!([{"name": "http", "port": 80, "targetPort": "web", "appProtocol": "http"},
               {"name": "metrics", "port": 9100, "protocol": "TCP"}]),
        json!({}),
    );
    let after = check(
        &s,
        &[pod("a", 1, "rn"), pod("b", 2, "r"), pod("c", 3, "rn")],
        &[],
        &[
            "create http:8080/TCP,metrics:9100/TCP | a:RS- c:RS-",
            "create metrics:9100/TCP | b:RS-",
        ],
    );
    assert_eq!(after[0]["ports"][0]["appProtocol"], "http");
}

#[test]
fn more_than_100_endpoints_split_and_stay_put() {
    let s = svc(http(), json!({}));
    let pods: Vec<Value> = (0..250).map(|i| pod(&format!("p{i:03}"), i, "r")).collect();
    let pods_refs: Vec<&Value> = pods.iter().collect();
    let plan = plan_slices(&s, &pods_refs, &zones(), &[]).unwrap();
    let sizes: Vec<usize> = plan
        .create
        .iter()
        .map(|s| slice_endpoints(s).len())
        .collect();
    assert_eq!(sizes, [100, 100, 50]);
    let after = apply(&[], &plan);
    // One pod goes away from the first slice and two arrive: the first slice takes them
    // back up to 100, the others are not written.
    let mut next: Vec<Value> = pods[1..].to_vec();
    next.push(pod("q1", 251, "r"));
    next.push(pod("q2", 252, "r"));
    let next_refs: Vec<&Value> = next.iter().collect();
    let after_refs: Vec<&Value> = after.iter().collect();
    let plan = plan_slices(&s, &next_refs, &zones(), &after_refs).unwrap();
    assert!(plan.create.is_empty() && plan.delete.is_empty(), "{plan:?}");
    let written: Vec<usize> = plan
        .update
        .iter()
        .map(|s| slice_endpoints(s).len())
        .collect();
    assert_eq!(written, [100, 51]);
}

#[test]
fn scaling_to_zero_keeps_one_placeholder_slice() {
    let s = svc(http(), json!({}));
    let after = check(
        &s,
        &[pod("a", 1, "r")],
        &[],
        &["create http:8080/TCP | a:RS-"],
    );
    let after = check(&s, &[], &after, &["update web-00  | "]);
    check(
        &s,
        &[pod("b", 2, "r")],
        &after,
        &["update web-00 http:8080/TCP | b:RS-"],
    );
    // Nothing at all yet: a placeholder is created.
    check(&s, &[], &[], &["create  | "]);
}

#[test]
fn foreign_and_stale_slices() {
    let s = svc(http(), json!({}));
    let after = check(
        &s,
        &[pod("a", 1, "r")],
        &[],
        &["create http:8080/TCP | a:RS-"],
    );
    // A slice of an earlier Service of the same name is deleted; a user's slice (another
    // manager) is not touched.
    let mut stale = after[0].clone();
    stale["metadata"]["name"] = json!("web-old");
    stale["metadata"]["ownerReferences"][0]["uid"] = json!("old-uid");
    let mut user = after[0].clone();
    user["metadata"]["name"] = json!("web-user");
    user["metadata"]["labels"][MANAGED_BY_LABEL] = json!("someone-else");
    let existing = vec![after[0].clone(), stale, user];
    check(&s, &[pod("a", 1, "r")], &existing, &["delete web-old"]);
}

#[test]
fn services_without_selector_are_not_managed() {
    let table = [
        (json!({"selector": null}), false),
        (json!({"selector": {}}), false),
        (
            json!({"type": "ExternalName", "externalName": "x.example"}),
            false,
        ),
        (json!({"clusterIP": "None"}), true),
    ];
    for (spec, managed) in table {
        let s = svc(http(), spec.clone());
        let p = [pod("a", 1, "r")];
        let pods: Vec<&Value> = p.iter().collect();
        assert_eq!(
            plan_slices(&s, &pods, &zones(), &[]).is_some(),
            managed,
            "{spec}"
        );
        assert_eq!(desired_endpoints(&s, &pods).is_some(), managed, "{spec}");
    }
}

#[test]
fn headless_slices_are_labelled() {
    let s = svc(http(), json!({"clusterIP": "None"}));
    let labels = slice_labels(&s);
    assert_eq!(labels.get(HEADLESS_LABEL).map(String::as_str), Some(""));
    assert_eq!(
        labels.get(SERVICE_NAME_LABEL).map(String::as_str),
        Some("web")
    );
    assert_eq!(
        labels.get(MANAGED_BY_LABEL).map(String::as_str),
        Some(MANAGED_BY)
    );
}

/// Endpoints rendered as `ports | ready... | notReady...` per subset.
fn check_endpoints(service: &Value, pods: &[Value], want: &[&str]) {
    let refs: Vec<&Value> = pods.iter().collect();
    let e = desired_endpoints(service, &refs).unwrap();
    let names = |s: &Value, f: &str| -> String {
        s.get(f)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|a| format!("{}={}", str_at(a, "/targetRef/name"), str_at(a, "/ip")))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let got: Vec<String> = e
        .get("subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|s| {
            let ports: Vec<String> = s
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|p| format!("{}:{}", str_at(p, "/name"), p["port"]))
                .collect();
            format!(
                "{} | {} | {}",
                ports.join(","),
                names(s, "addresses"),
                names(s, "notReadyAddresses")
            )
        })
        .collect();
    assert_eq!(got, want);
}

#[test]
fn legacy_endpoints_subsets() {
    let s = svc(http(), json!({}));
    // Terminating pods are left out of Endpoints; not-ready ones are notReadyAddresses.
    check_endpoints(
        &s,
        &[
            pod("b", 12, "r"),
            pod("a", 2, "r"),
            pod("c", 3, ""),
            pod("d", 4, "rt"),
        ],
        &["http:8080 | a=10.0.0.2 b=10.0.0.12 | c=10.0.0.3"],
    );
    let s = svc(http(), json!({"publishNotReadyAddresses": true}));
    check_endpoints(
        &s,
        &[pod("a", 1, ""), pod("d", 4, "t")],
        &["http:8080 | a=10.0.0.1 d=10.0.0.4 | "],
    );
    // A pod without the named port is left out of that port's subset.
    let s = svc(
        json!([{"name": "http", "port": 80, "targetPort": "web"}, {"name": "m", "port": 9100}]),
        json!({}),
    );
    check_endpoints(
        &s,
        &[pod("a", 1, "rn"), pod("b", 2, "r")],
        &["http:8080,m:9100 | a=10.0.0.1 | ", "m:9100 | b=10.0.0.2 | "],
    );
    // Headless without ports: addresses only.
    let s = svc(json!([]), json!({"clusterIP": "None"}));
    check_endpoints(&s, &[pod("a", 1, "r")], &[" | a=10.0.0.1 | "]);
    // Not headless and without ports: nothing.
    let s = svc(json!([]), json!({}));
    check_endpoints(&s, &[pod("a", 1, "r")], &[]);
}

#[test]
fn endpoints_are_written_only_when_they_change() {
    let s = svc(http(), json!({}));
    let p = [pod("a", 1, "r")];
    let refs: Vec<&Value> = p.iter().collect();
    let desired = desired_endpoints(&s, &refs).unwrap();
    assert_eq!(
        desired["metadata"]["annotations"][TRIGGER_TIME_ANNOTATION],
        "2026-01-01T00:00:02Z"
    );
    let mut stored = endpoints_update(&desired, None).unwrap();
    stored["metadata"]["resourceVersion"] = json!("7");
    assert_eq!(endpoints_update(&desired, Some(&stored)), None);
    // A later trigger time alone is not a change.
    let mut later = desired.clone();
    later["metadata"]["annotations"][TRIGGER_TIME_ANNOTATION] = json!("2027-01-01T00:00:00Z");
    assert_eq!(endpoints_update(&later, Some(&stored)), None);
    // A pod going not-ready is, and the CAS keeps the stored resourceVersion.
    let p = [pod("a", 1, "")];
    let refs: Vec<&Value> = p.iter().collect();
    let next = endpoints_update(&desired_endpoints(&s, &refs).unwrap(), Some(&stored)).unwrap();
    assert_eq!(next["metadata"]["resourceVersion"], "7");
    assert!(next["subsets"][0].get("addresses").is_none());
    assert_eq!(next["subsets"][0]["notReadyAddresses"][0]["ip"], "10.0.0.1");
}

#[test]
fn endpoints_are_truncated_at_1000_addresses() {
    let s = svc(http(), json!({}));
    let pods: Vec<Value> = (0..1001)
        .map(|i| {
            let mut p = pod(&format!("p{i:04}"), 0, "r");
            p["status"]["podIP"] = json!(format!("10.1.{}.{}", i / 250, i % 250 + 1));
            p
        })
        .collect();
    let refs: Vec<&Value> = pods.iter().collect();
    let e = desired_endpoints(&s, &refs).unwrap();
    assert_eq!(
        e["subsets"][0]["addresses"].as_array().unwrap().len(),
        MAX_ENDPOINTS
    );
    assert_eq!(
        e["metadata"]["annotations"][OVER_CAPACITY_ANNOTATION],
        "truncated"
    );
    // Slices carry every endpoint.
    let plan = plan_slices(&s, &refs, &zones(), &[]).unwrap();
    let total: usize = plan.create.iter().map(|s| slice_endpoints(s).len()).sum();
    assert_eq!((plan.create.len(), total), (11, 1001));
}

#[test]
fn the_trigger_time_is_the_latest_change() {
    let s = svc(http(), json!({}));
    // (pod states, wanted time): the Service's creation without pods, else the latest of
    // the pods' creation, Ready transition and deletion.
    let table: [(&[&str], &str); 3] = [
        (&[], "2026-01-01T00:00:00Z"),
        (&["r"], "2026-01-01T00:00:02Z"),
        (&["r", "t"], "2026-01-01T00:00:05Z"),
    ];
    for (states, want) in table {
        let pods: Vec<Value> = states.iter().map(|st| pod("a", 1, st)).collect();
        let refs: Vec<&Value> = pods.iter().collect();
        assert_eq!(trigger_time(&s, &refs).as_deref(), Some(want), "{states:?}");
    }
}
