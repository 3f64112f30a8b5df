use super::*;

fn here(node: &str, zone: Option<&str>) -> Locality {
    Locality {
        node: node.into(),
        zone: zone.map(Into::into),
    }
}

/// An endpoint `10.1.0.<n>:8080`: ready or serving-terminating, with zone and node
/// hints.
fn ep(n: u8, ready: bool, zones: &[&str], nodes: &[&str]) -> Candidate {
    Candidate {
        addr: SocketAddrV4::new(std::net::Ipv4Addr::new(10, 1, 0, n), 8080),
        ready,
        serving_terminating: !ready,
        for_zones: zones.iter().map(|z| z.to_string()).collect(),
        for_nodes: nodes.iter().map(|z| z.to_string()).collect(),
        node: None,
    }
}

fn check(what: &str, cands: &[Candidate], at: &Locality, mode_want: Mode, want: &[u8]) {
    assert_eq!(mode(cands, at), mode_want, "{what}: mode");
    let got: Vec<u8> = usable(cands, at)
        .into_iter()
        .map(|a| a.ip().octets()[3])
        .collect();
    assert_eq!(got, want, "{what}: endpoints");
}

#[test]
fn topology_table() {
    let a = here("node-a", Some("z1"));
    /// What the case shows, the endpoints, where the proxy runs, the mode and the
    /// endpoints (last octets) expected.
    type Case = (&'static str, Vec<Candidate>, Locality, Mode, Vec<u8>);
    let cases: Vec<Case> = vec![
        (
            "no hints: every ready endpoint",
            vec![ep(1, true, &[], &[]), ep(2, true, &[], &[])],
            a.clone(),
            Mode::All,
            vec![1, 2],
        ),
        (
            "zone hints: same zone only",
            vec![
                ep(1, true, &["z1"], &[]),
                ep(2, true, &["z2"], &[]),
                ep(3, true, &["z1"], &[]),
            ],
            a.clone(),
            Mode::SameZone,
            vec![1, 3],
        ),
        (
            "zone hints, none for this zone: all",
            vec![ep(1, true, &["z2"], &[]), ep(2, true, &["z3"], &[])],
            a.clone(),
            Mode::All,
            vec![1, 2],
        ),
        (
            "one ready endpoint without a hint: all",
            vec![ep(1, true, &["z1"], &[]), ep(2, true, &[], &[])],
            a.clone(),
            Mode::All,
            vec![1, 2],
        ),
        (
            "a not-ready endpoint without a hint does not matter",
            vec![
                ep(1, true, &["z1"], &[]),
                ep(2, true, &["z2"], &[]),
                ep(3, false, &[], &[]),
            ],
            a.clone(),
            Mode::SameZone,
            vec![1],
        ),
        (
            "node without a zone: zone hints ignored",
            vec![ep(1, true, &["z1"], &[]), ep(2, true, &["z2"], &[])],
            here("node-a", None),
            Mode::All,
            vec![1, 2],
        ),
        (
            "node hints: same node only",
            vec![
                ep(1, true, &["z1"], &["node-a"]),
                ep(2, true, &["z1"], &["node-b"]),
                ep(3, true, &["z2"], &["node-c"]),
            ],
            a.clone(),
            Mode::SameNode,
            vec![1],
        ),
        (
            "node hints, none for this node: same zone",
            vec![
                ep(1, true, &["z1"], &["node-b"]),
                ep(2, true, &["z2"], &["node-c"]),
            ],
            a.clone(),
            Mode::SameZone,
            vec![1],
        ),
        (
            "node hints, none for this node nor zone: all",
            vec![
                ep(1, true, &["z2"], &["node-b"]),
                ep(2, true, &["z3"], &["node-c"]),
            ],
            a.clone(),
            Mode::All,
            vec![1, 2],
        ),
        (
            "node hints missing on one endpoint: zone decides",
            vec![ep(1, true, &["z2"], &["node-a"]), ep(2, true, &["z1"], &[])],
            a.clone(),
            Mode::SameZone,
            vec![2],
        ),
        (
            "unknown locality (empty node name) matches no hint",
            vec![
                ep(1, true, &["z1"], &[""]),
                ep(2, true, &["z2"], &["node-b"]),
            ],
            Locality::default(),
            Mode::All,
            vec![1, 2],
        ),
        (
            "nothing ready: serving terminating endpoints anywhere",
            vec![ep(1, false, &["z2"], &[]), ep(2, false, &["z1"], &[])],
            a.clone(),
            Mode::All,
            vec![1, 2],
        ),
        ("nothing at all", vec![], a.clone(), Mode::All, vec![]),
    ];
    for (what, cands, at, m, want) in cases {
        check(what, &cands, &at, m, &want);
    }
}
