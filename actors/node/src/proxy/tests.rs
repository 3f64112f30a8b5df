use super::*;
use serde_json::json;

fn svc(spec: Value) -> Service {
    serde_json::from_value(
        json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec}),
    )
    .unwrap()
}

fn slice(name: &str, ports: Value, endpoints: Value) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default",
                     "labels": {SERVICE_NAME_LABEL: "web"}},
        "addressType": "IPv4", "ports": ports, "endpoints": endpoints,
    }))
    .unwrap()
}

fn ep(ip: &str, ready: Option<bool>, serving: Option<bool>, terminating: Option<bool>) -> Value {
    json!({"addresses": [ip], "conditions": {"ready": ready, "serving": serving, "terminating": terminating}})
}

fn key(port: u16, proto: Protocol) -> ServiceKey {
    ServiceKey {
        vip: Ipv4Addr::new(10, 96, 0, 50),
        port,
        proto,
    }
}

fn lb(backends: &[&str], affinity: Option<u64>) -> LbService {
    LbService {
        backends: backends
            .iter()
            .map(|a| Backend {
                addr: a.parse().unwrap(),
                weight: 1,
            })
            .collect(),
        affinity: affinity.map(Duration::from_secs),
    }
}

fn check(what: &str, s: &Service, slices: &[EndpointSlice], expected: &[(ServiceKey, LbService)]) {
    let refs: Vec<&EndpointSlice> = slices.iter().collect();
    let got = desired(s, &refs);
    let want: Desired = expected.iter().cloned().collect();
    assert_eq!(got, want, "{what}");
}

fn http() -> Value {
    json!([{"name": "http", "port": 8080, "protocol": "TCP"}])
}

/// What the case shows, the Service, its slices, the entries expected.
type Case = (
    &'static str,
    Service,
    Vec<EndpointSlice>,
    Vec<(ServiceKey, LbService)>,
);

#[test]
fn desired_table() {
    let basic = json!({"clusterIP": "10.96.0.50", "ports": [{"name": "http", "port": 80, "targetPort": 8080}]});
    let a = ep("10.1.0.1", Some(true), Some(true), Some(false));
    let b = ep("10.1.0.2", Some(true), Some(true), Some(false));
    let not_ready = ep("10.1.0.3", Some(false), Some(false), Some(false));
    let term = ep("10.1.0.4", Some(false), Some(true), Some(true));
    let cases: Vec<Case> = vec![
        (
            "ready endpoints of two slices, sorted, not-ready left out",
            svc(basic.clone()),
            vec![
                slice("web-b", http(), json!([b.clone(), not_ready.clone()])),
                slice("web-a", http(), json!([a.clone()])),
            ],
            vec![(
                key(80, Protocol::Tcp),
                lb(&["10.1.0.1:8080", "10.1.0.2:8080"], None),
            )],
        ),
        (
            "no slices: the entry exists without backends (connections refused)",
            svc(basic.clone()),
            vec![],
            vec![(key(80, Protocol::Tcp), lb(&[], None))],
        ),
        (
            "terminating-but-serving used only when nothing is ready",
            svc(basic.clone()),
            vec![slice(
                "web-a",
                http(),
                json!([term.clone(), not_ready.clone()]),
            )],
            vec![(key(80, Protocol::Tcp), lb(&["10.1.0.4:8080"], None))],
        ),
        (
            "terminating ignored when a ready one exists",
            svc(basic.clone()),
            vec![slice("web-a", http(), json!([term.clone(), a.clone()]))],
            vec![(key(80, Protocol::Tcp), lb(&["10.1.0.1:8080"], None))],
        ),
        (
            "ready unset counts as ready",
            svc(basic.clone()),
            vec![slice("web-a", http(), json!([{"addresses": ["10.1.0.9"]}]))],
            vec![(key(80, Protocol::Tcp), lb(&["10.1.0.9:8080"], None))],
        ),
        (
            "port resolved by name, a slice port of another name gives nothing",
            svc(basic.clone()),
            vec![slice(
                "web-a",
                json!([{"name": "metrics", "port": 9090}]),
                json!([a.clone()]),
            )],
            vec![(key(80, Protocol::Tcp), lb(&[], None))],
        ),
        (
            "two ports, UDP and unnamed-vs-named distinct; SCTP skipped",
            svc(json!({"clusterIP": "10.96.0.50", "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                {"name": "s", "port": 9, "protocol": "SCTP"}]})),
            vec![slice(
                "web-a",
                json!([
                {"name": "dns", "port": 5353, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 5354, "protocol": "TCP"}]),
                json!([a.clone()]),
            )],
            vec![
                (key(53, Protocol::Udp), lb(&["10.1.0.1:5353"], None)),
                (key(53, Protocol::Tcp), lb(&["10.1.0.1:5354"], None)),
            ],
        ),
        (
            "ClientIP affinity defaults to 10800 s",
            svc(
                json!({"clusterIP": "10.96.0.50", "sessionAffinity": "ClientIP",
                       "ports": [{"name": "http", "port": 80}]}),
            ),
            vec![slice("web-a", http(), json!([a.clone()]))],
            vec![(key(80, Protocol::Tcp), lb(&["10.1.0.1:8080"], Some(10800)))],
        ),
        (
            "ClientIP affinity with timeoutSeconds",
            svc(
                json!({"clusterIP": "10.96.0.50", "sessionAffinity": "ClientIP",
                       "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
                       "ports": [{"name": "http", "port": 80}]}),
            ),
            vec![slice("web-a", http(), json!([a.clone()]))],
            vec![(key(80, Protocol::Tcp), lb(&["10.1.0.1:8080"], Some(60)))],
        ),
        (
            "headless: nothing",
            svc(json!({"clusterIP": "None", "ports": [{"name": "http", "port": 80}]})),
            vec![slice("web-a", http(), json!([a.clone()]))],
            vec![],
        ),
        (
            "no clusterIP yet: nothing",
            svc(json!({"ports": [{"name": "http", "port": 80}]})),
            vec![],
            vec![],
        ),
        (
            "ExternalName: nothing",
            svc(json!({"type": "ExternalName", "externalName": "x.example",
            "clusterIP": "10.96.0.50", "ports": [{"name": "http", "port": 80}]})),
            vec![],
            vec![],
        ),
        (
            "IPv6 clusterIP: nothing",
            svc(json!({"clusterIP": "fd00::1", "ports": [{"name": "http", "port": 80}]})),
            vec![],
            vec![],
        ),
        (
            "IPv6 slices ignored",
            svc(basic.clone()),
            vec![
                serde_json::from_value(
                    json!({"metadata": {"name": "web-v6", "namespace": "default"},
                "addressType": "IPv6", "ports": http(), "endpoints": [{"addresses": ["fd00::9"]}]}),
                )
                .unwrap(),
            ],
            vec![(key(80, Protocol::Tcp), lb(&[], None))],
        ),
        (
            "the same endpoint in two slices counts once",
            svc(basic.clone()),
            vec![
                slice("web-a", http(), json!([a.clone()])),
                slice("web-b", http(), json!([a.clone()])),
            ],
            vec![(key(80, Protocol::Tcp), lb(&["10.1.0.1:8080"], None))],
        ),
    ];
    for (what, s, slices, expected) in cases {
        check(what, &s, &slices, &expected);
    }
}

fn check_diff(
    what: &str,
    old: &[(ServiceKey, LbService)],
    new: &[(ServiceKey, LbService)],
    expected: &[Op],
) {
    let old: Desired = old.iter().cloned().collect();
    let new: Desired = new.iter().cloned().collect();
    assert_eq!(diff(&old, &new), expected, "{what}");
}

#[test]
fn diff_table() {
    let k80 = key(80, Protocol::Tcp);
    let k53 = key(53, Protocol::Udp);
    let one = lb(&["10.1.0.1:8080"], None);
    let two = lb(&["10.1.0.1:8080", "10.1.0.2:8080"], None);
    check_diff("nothing to nothing", &[], &[], &[]);
    check_diff(
        "unchanged: no op",
        &[(k80, one.clone())],
        &[(k80, one.clone())],
        &[],
    );
    check_diff(
        "new entry",
        &[],
        &[(k80, one.clone())],
        &[Op::Upsert(k80, one.clone())],
    );
    check_diff(
        "scaled",
        &[(k80, one.clone())],
        &[(k80, two.clone())],
        &[Op::Upsert(k80, two.clone())],
    );
    check_diff(
        "deleted",
        &[(k80, one.clone()), (k53, one.clone())],
        &[],
        &[Op::Remove(k53), Op::Remove(k80)],
    );
    check_diff(
        "port replaced: removal first, the other port untouched",
        &[(k80, one.clone()), (k53, two.clone())],
        &[(k80, one.clone()), (key(81, Protocol::Tcp), two.clone())],
        &[
            Op::Remove(k53),
            Op::Upsert(key(81, Protocol::Tcp), two.clone()),
        ],
    );
    check_diff(
        "affinity change is a change",
        &[(k80, one.clone())],
        &[(k80, lb(&["10.1.0.1:8080"], Some(60)))],
        &[Op::Upsert(k80, lb(&["10.1.0.1:8080"], Some(60)))],
    );
}

#[test]
fn reconcile_table() {
    let k80 = key(80, Protocol::Tcp);
    let k53 = key(53, Protocol::Udp);
    let one = lb(&["10.1.0.1:8080"], None);
    let check =
        |what: &str, maps: &[ServiceKey], wanted: &[(ServiceKey, LbService)], expected: &[Op]| {
            let wanted: Desired = wanted.iter().cloned().collect();
            assert_eq!(reconcile(maps, &wanted), expected, "{what}");
        };
    check("empty maps, nothing wanted", &[], &[], &[]);
    check("stale removed", &[k53], &[], &[Op::Remove(k53)]);
    check(
        "missing added",
        &[],
        &[(k80, one.clone())],
        &[Op::Upsert(k80, one.clone())],
    );
    check(
        "kept ones re-upserted (free when unchanged), stale removed",
        &[k53, k80],
        &[(k80, one.clone())],
        &[Op::Remove(k53), Op::Upsert(k80, one.clone())],
    );
}

fn split_obj(name: &str, root: &str, backends: &[&str]) -> TrafficSplit {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"service": root,
                 "backends": backends.iter().map(|b| json!({"service": b, "weight": 1})).collect::<Vec<_>>()},
    }))
    .unwrap()
}

fn r(name: &str) -> ServiceRef {
    ("default".into(), name.into())
}

/// Which roots a change recomputes: the splits index, after a sequence of split
/// writes (`Some`) and deletions (`None`).
#[test]
fn a_change_recomputes_only_the_roots_that_use_it() {
    type Step = (
        &'static str,
        Option<(&'static str, &'static [&'static str])>,
    );
    /// What the case shows, the split writes, the Service changed, its dependents,
    /// the roots the last write recomputes.
    type Case = (
        &'static str,
        &'static [Step],
        &'static str,
        &'static [&'static str],
        &'static [&'static str],
    );
    let cases: &[Case] = &[
        ("no split", &[], "web", &["web"], &[]),
        (
            "a backend's change recomputes the root",
            &[("s", Some(("web", &["v1", "v2"])))],
            "v2",
            &["v2", "web"],
            &["web"],
        ),
        (
            "an unrelated service only itself",
            &[("s", Some(("web", &["v1"])))],
            "other",
            &["other"],
            &["web"],
        ),
        (
            "a root is its own dependent",
            &[("s", Some(("web", &["v1"])))],
            "web",
            &["web"],
            &["web"],
        ),
        (
            "a split moved to another root recomputes both",
            &[("s", Some(("web", &["v1"]))), ("s", Some(("api", &["v1"])))],
            "v1",
            &["api", "v1"],
            &["api", "web"],
        ),
        (
            "a deleted split is forgotten",
            &[("s", Some(("web", &["v1"]))), ("s", None)],
            "v1",
            &["v1"],
            &["web"],
        ),
        (
            "two splits using one backend: both roots",
            &[
                ("s", Some(("web", &["v1"]))),
                ("t", Some(("api", &["v1", "v3"]))),
            ],
            "v1",
            &["api", "v1", "web"],
            &["api"],
        ),
        (
            "one of two splits deleted: the other root stays",
            &[
                ("s", Some(("web", &["v1"]))),
                ("t", Some(("api", &["v1"]))),
                ("s", None),
            ],
            "v1",
            &["api", "v1"],
            &["web"],
        ),
    ];
    for (what, steps, changed, want, last_roots) in cases {
        let mut state = State::default();
        let mut roots = BTreeSet::new();
        for (name, split) in *steps {
            let obj = split.map(|(root, bs)| split_obj(name, root, bs));
            roots = state.set_split(&r(name), obj);
        }
        let got: Vec<String> = state
            .dependents(&r(changed))
            .into_iter()
            .map(|d| d.1)
            .collect();
        assert_eq!(got, *want, "{what}: dependents");
        let got: Vec<String> = roots.into_iter().map(|d| d.1).collect();
        assert_eq!(got, *last_roots, "{what}: roots of the last write");
    }
}
