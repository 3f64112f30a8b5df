use super::*;
use drover_bpf::{MAX_SLOTS, ServiceKey, layout};
use serde_json::{Value, json};
use std::net::Ipv4Addr;

/// A backend Service's (weight, number of endpoints).
type Group = (u32, usize);

/// A backend of a split case: weight, the Service, its slices.
type Backend = (u32, Option<Service>, Vec<EndpointSlice>);

#[test]
fn endpoint_weights_table() {
    /// What the case shows, the groups, the seed, the weights per group.
    type Case<'a> = (&'a str, &'a [Group], u64, &'a [&'a [u32]]);
    let cases: &[Case] = &[
        ("one service", &[(1, 3)], 0, &[&[1, 1, 1]]),
        (
            "90/10 over 1 and 3 endpoints",
            &[(90, 1), (10, 3)],
            0,
            &[&[27], &[1, 1, 1]],
        ),
        (
            "50/50 over 2 and 3",
            &[(50, 2), (50, 3)],
            0,
            &[&[3, 3], &[2, 2, 2]],
        ),
        (
            "weight 0 gets nothing",
            &[(0, 2), (100, 4)],
            0,
            &[&[0, 0], &[1, 1, 1, 1]],
        ),
        (
            "no endpoints gets nothing",
            &[(90, 0), (10, 2)],
            0,
            &[&[], &[1, 1]],
        ),
        ("nothing live", &[(0, 2), (5, 0)], 0, &[&[0, 0], &[]]),
        (
            "large weights reduce",
            &[(u32::MAX, 7), (u32::MAX, 11)],
            0,
            &[&[11; 7], &[7; 11]],
        ),
        // 37 and 41 need 1517 slots for exact: 512 each, 512 = 37 * 13 + 31 = 41 * 12 + 20.
        (
            "too many slots for exact: the slots themselves",
            &[(1, 37), (1, 41)],
            0,
            &[
                &[&[14u32; 31][..], &[13; 6]].concat(),
                &[&[13u32; 20][..], &[12; 21]].concat(),
            ],
        ),
        (
            "the seed moves which endpoints get the extra slot",
            &[(1, 37), (1, 41)],
            1,
            &[
                &[&[13u32][..], &[14; 31], &[13; 5]].concat(),
                &[&[12u32][..], &[13; 20], &[12; 20]].concat(),
            ],
        ),
        (
            "fewer slots than endpoints: one each to as many as fit",
            &[(1, 1030), (0, 3)],
            0,
            &[&[&[1u32; 1024][..], &[0u32; 6][..]].concat(), &[0, 0, 0]],
        ),
    ];
    for (what, groups, seed, want) in cases {
        let want: Vec<Vec<u32>> = want.iter().map(|w| w.to_vec()).collect();
        assert_eq!(endpoint_weights(groups, *seed), want, "{what}");
    }
}

/// The share of the slots each group gets once the weights are laid out.
fn slot_shares(groups: &[(u32, usize)]) -> Vec<f64> {
    let per = endpoint_weights(groups, 7);
    let mut weights = Vec::new();
    let mut group_of = Vec::new();
    for (g, ws) in per.into_iter().enumerate() {
        group_of.extend(std::iter::repeat_n(g, ws.len()));
        weights.extend(ws);
    }
    let slots = layout(&weights, MAX_SLOTS);
    let mut counts = vec![0usize; groups.len()];
    for s in &slots {
        counts[group_of[*s]] += 1;
    }
    counts
        .iter()
        .map(|c| *c as f64 / slots.len() as f64)
        .collect()
}

#[test]
fn slot_layout_keeps_the_split_within_one_percent() {
    let cases: &[(&[Group], &[f64])] = &[
        (&[(90, 1), (10, 3)], &[0.9, 0.1]),
        (&[(90, 3), (10, 1)], &[0.9, 0.1]),
        (&[(90, 7), (10, 13)], &[0.9, 0.1]),
        (&[(1, 1), (1, 1), (1, 1)], &[1.0 / 3.0; 3]),
        (&[(99, 50), (1, 1)], &[0.99, 0.01]),
        (&[(70, 97), (30, 89)], &[0.7, 0.3]),
        (&[(90, 1), (10, 500)], &[0.9, 0.1]),
        (&[(99, 2000), (1, 10)], &[0.99, 0.01]),
        (&[(u32::MAX, 7), (u32::MAX, 11)], &[0.5, 0.5]),
    ];
    for (groups, want) in cases {
        let got = slot_shares(groups);
        for (g, w) in got.iter().zip(*want) {
            assert!(
                (g - w).abs() < 0.01,
                "{groups:?}: shares {got:?}, want {want:?}"
            );
        }
    }
}

fn meta(name: &str, created: &str) -> Value {
    json!({"name": name, "namespace": "default", "creationTimestamp": created})
}

fn ts(name: &str, created: &str) -> TrafficSplit {
    serde_json::from_value(json!({
        "metadata": meta(name, created),
        "spec": {"service": "web", "backends": []},
    }))
    .unwrap()
}

#[test]
fn the_oldest_split_wins_then_the_name() {
    /// Splits as (name, creationTimestamp), and the one that wins.
    type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>);
    let cases: &[Case] = &[
        (&[], None),
        (&[("b", "2026-01-01T00:00:00Z")], Some("b")),
        (
            &[("b", "2026-01-01T00:00:00Z"), ("a", "2026-01-02T00:00:00Z")],
            Some("b"),
        ),
        (
            &[("b", "2026-01-01T00:00:00Z"), ("a", "2026-01-01T00:00:00Z")],
            Some("a"),
        ),
    ];
    for (splits, want) in cases {
        let objs: Vec<TrafficSplit> = splits.iter().map(|(n, c)| ts(n, c)).collect();
        let refs: Vec<&TrafficSplit> = objs.iter().collect();
        let got = effective(&refs).and_then(|t| t.metadata.name.as_deref());
        assert_eq!(got, *want, "{splits:?}");
    }
}

fn svc(name: &str, ip: &str, ports: Value) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"clusterIP": ip, "ports": ports},
    }))
    .unwrap()
}

/// A slice of `service` with ready endpoints `10.1.<net>.<n>` at port `http` 8080 (and
/// `admin` 9090), optionally hinted for a zone.
fn slice(service: &str, net: u8, ns: &[u8], zone: Option<&str>) -> EndpointSlice {
    let eps: Vec<Value> = ns
        .iter()
        .map(|n| {
            let mut e =
                json!({"addresses": [format!("10.1.{net}.{n}")], "conditions": {"ready": true}});
            if let Some(z) = zone {
                e["hints"] = json!({"forZones": [{"name": z}]});
            }
            e
        })
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": format!("{service}-x"), "namespace": "default",
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                  {"name": "admin", "port": 9090, "protocol": "TCP"}],
        "endpoints": eps,
    }))
    .unwrap()
}

fn http_port() -> Value {
    json!([{"name": "http", "port": 80, "protocol": "TCP"}])
}

/// Backends wanted at root port 80: (address, weight).
type Want = Vec<(&'static str, u32)>;

fn check(
    what: &str,
    root: &Service,
    root_slices: &[EndpointSlice],
    backends: &[Backend],
    here: &Locality,
    want: Want,
) {
    let rs: Vec<&EndpointSlice> = root_slices.iter().collect();
    let bs: Vec<SplitBackend<'_>> = backends
        .iter()
        .map(|(w, s, sl)| SplitBackend {
            weight: *w,
            service: s.as_ref(),
            slices: sl.iter().collect(),
        })
        .collect();
    let got = desired(root, &rs, &bs, here);
    let key = ServiceKey {
        vip: Ipv4Addr::new(10, 96, 0, 50),
        port: 80,
        proto: drover_bpf::Protocol::Tcp,
    };
    let entry = got
        .get(&key)
        .unwrap_or_else(|| panic!("{what}: no entry in {got:?}"));
    let backends: Vec<(String, u32)> = entry
        .backends
        .iter()
        .map(|b| (b.addr.to_string(), b.weight))
        .collect();
    let want: Vec<(String, u32)> = want.into_iter().map(|(a, w)| (a.to_string(), w)).collect();
    assert_eq!(backends, want, "{what}");
}

#[test]
fn split_desired_table() {
    let root = svc("web", "10.96.0.50", http_port());
    let root_slices = vec![slice("web", 0, &[1], None)];
    let v1 = Some(svc("v1", "10.96.0.51", http_port()));
    let v2 = Some(svc("v2", "10.96.0.52", http_port()));
    // v3 names its port differently and uses 8000: matched by number? no (80 != 8000),
    // by name? no: it takes no share.
    let v3 = Some(svc(
        "v3",
        "10.96.0.53",
        json!([{"name": "web", "port": 8000}]),
    ));
    // v4's port 80 is unnamed: matched by number.
    let v4 = Some(svc(
        "v4",
        "10.96.0.54",
        json!([{"name": "admin", "port": 80}]),
    ));
    let nowhere = Locality::default();
    let z1 = Locality {
        node: "n".into(),
        zone: Some("z1".into()),
    };
    let cases: Vec<(&str, Vec<Backend>, &Locality, Want)> = vec![
        (
            "90/10 over one and three endpoints",
            vec![
                (90, v1.clone(), vec![slice("v1", 1, &[1], None)]),
                (10, v2.clone(), vec![slice("v2", 2, &[1, 2, 3], None)]),
            ],
            &nowhere,
            vec![
                ("10.1.1.1:8080", 27),
                ("10.1.2.1:8080", 1),
                ("10.1.2.2:8080", 1),
                ("10.1.2.3:8080", 1),
            ],
        ),
        (
            "weight 0 removes a backend",
            vec![
                (0, v1.clone(), vec![slice("v1", 1, &[1], None)]),
                (100, v2.clone(), vec![slice("v2", 2, &[1, 2], None)]),
            ],
            &nowhere,
            vec![("10.1.2.1:8080", 1), ("10.1.2.2:8080", 1)],
        ),
        (
            "all weights 0: the root's own endpoints",
            vec![
                (0, v1.clone(), vec![slice("v1", 1, &[1], None)]),
                (0, v2.clone(), vec![slice("v2", 2, &[1], None)]),
            ],
            &nowhere,
            vec![("10.1.0.1:8080", 1)],
        ),
        (
            "no backend endpoints: the root's own endpoints",
            vec![(50, v1.clone(), vec![]), (50, None, vec![])],
            &nowhere,
            vec![("10.1.0.1:8080", 1)],
        ),
        (
            "a backend without endpoints gives its share to the others",
            vec![
                (90, v1.clone(), vec![]),
                (10, v2.clone(), vec![slice("v2", 2, &[1], None)]),
            ],
            &nowhere,
            vec![("10.1.2.1:8080", 1)],
        ),
        (
            "a deleted backend service takes no share",
            vec![
                (90, None, vec![slice("v1", 1, &[1], None)]),
                (10, v2.clone(), vec![slice("v2", 2, &[1], None)]),
            ],
            &nowhere,
            vec![("10.1.2.1:8080", 1)],
        ),
        (
            "no matching port (name nor number) takes no share",
            vec![
                (50, v3.clone(), vec![slice("v3", 3, &[1], None)]),
                (50, v2.clone(), vec![slice("v2", 2, &[1], None)]),
            ],
            &nowhere,
            vec![("10.1.2.1:8080", 1)],
        ),
        (
            "matched by port number, endpoints at that port's name",
            vec![
                (50, v4.clone(), vec![slice("v4", 4, &[1], None)]),
                (50, v2.clone(), vec![slice("v2", 2, &[1], None)]),
            ],
            &nowhere,
            vec![("10.1.2.1:8080", 1), ("10.1.4.1:9090", 1)],
        ),
        (
            "an endpoint in two backends gets both shares",
            vec![
                (30, v1.clone(), vec![slice("v1", 1, &[1], None)]),
                (70, v2.clone(), vec![slice("v1", 1, &[1], None)]),
            ],
            &nowhere,
            vec![("10.1.1.1:8080", 10)],
        ),
        (
            "topology applies within each backend",
            vec![
                (
                    50,
                    v1.clone(),
                    vec![
                        slice("v1", 1, &[1, 2], Some("z1")),
                        slice("v1b", 5, &[1], Some("z2")),
                    ],
                ),
                (50, v2.clone(), vec![slice("v2", 2, &[1, 2], Some("z2"))]),
            ],
            &z1,
            vec![
                ("10.1.1.1:8080", 1),
                ("10.1.1.2:8080", 1),
                ("10.1.2.1:8080", 1),
                ("10.1.2.2:8080", 1),
            ],
        ),
    ];
    for (what, backends, here, want) in cases {
        check(what, &root, &root_slices, &backends, here, want);
    }
}

#[test]
fn a_split_keeps_the_roots_affinity_and_needs_its_vip() {
    let mut root = svc("web", "10.96.0.50", http_port());
    root.spec.as_mut().unwrap().session_affinity = Some("ClientIP".into());
    let v1 = svc("v1", "10.96.0.51", http_port());
    let sl = [slice("v1", 1, &[1], None)];
    let b = [SplitBackend {
        weight: 1,
        service: Some(&v1),
        slices: sl.iter().collect(),
    }];
    let got = desired(&root, &[], &b, &Locality::default());
    let entry = got.values().next().unwrap();
    assert_eq!(entry.affinity, Some(std::time::Duration::from_secs(10800)));
    assert_eq!(entry.backends.len(), 1);
    // A headless root has no VIP to split.
    root.spec.as_mut().unwrap().cluster_ip = Some("None".into());
    assert!(desired(&root, &[], &b, &Locality::default()).is_empty());
}
