use super::*;

fn ip(s: &str) -> u32 {
    u32::from(s.parse::<Ipv4Addr>().unwrap())
}

fn cidr() -> Range {
    Range::service_cidr(DEFAULT_SERVICE_CIDR).unwrap()
}

#[test]
fn ranges_parse_with_kubernetes_bounds() {
    let r = cidr();
    assert_eq!(r.text(), "10.96.0.0/12");
    assert!(!r.contains(ip("10.96.0.0")), "network address reserved");
    assert!(r.contains(ip("10.96.0.1")));
    assert!(r.contains(ip("10.111.255.254")));
    assert!(!r.contains(ip("10.111.255.255")), "broadcast reserved");
    assert!(!r.contains(ip("10.112.0.1")));
    assert_eq!(r.static_size, 256);
    assert_eq!(r.dns_ip(), Some(Ipv4Addr::new(10, 96, 0, 10)));
    assert_eq!(Range::node_ports(30000, 32767).unwrap().dns_ip(), None);
    let small = Range::service_cidr("192.168.7.9/28").unwrap();
    assert_eq!(small.text(), "192.168.7.0/28");
    assert_eq!(small.size, 14);
    assert_eq!(small.static_size, 14, "a tiny range is all static band");
    for bad in ["10.96.0.0", "10.96.0.0/31", "x/12", "10.0.0.0/4", ""] {
        assert!(Range::service_cidr(bad).is_err(), "{bad}");
    }
    let p = Range::node_ports(30000, 32767).unwrap();
    assert_eq!((p.size, p.static_size), (2768, 86));
    assert!(p.contains(30000) && p.contains(32767) && !p.contains(29999) && !p.contains(32768));
    assert!(Range::node_ports(0, 10).is_err());
    assert!(Range::node_ports(20, 10).is_err());
}

#[test]
fn picks() {
    // (range, taken, random, expected)
    fn check(r: &Range, taken: &[u32], random: u64, expected: Option<u32>) {
        let taken: BTreeSet<u32> = taken.iter().copied().collect();
        assert_eq!(
            r.pick(&taken, random),
            expected,
            "taken {taken:?} random {random}"
        );
    }
    let small = Range::node_ports(100, 139).unwrap(); // 40 ports, static band 16
    // The dynamic band starts after the static band; the random offset is taken modulo
    // its length.
    check(&small, &[], 0, Some(116));
    check(&small, &[], 5, Some(121));
    check(&small, &[], 24 + 5, Some(121));
    // Taken values are skipped, the scan wraps to the band's start.
    check(&small, &[121, 122, 123], 5, Some(124));
    check(&small, &[139], 23, Some(116));
    check(&small, &(116..=139).collect::<Vec<_>>(), 3, Some(103));
    check(
        &small,
        &(116..=139).chain([103]).collect::<Vec<_>>(),
        3,
        Some(104),
    );
    check(&small, &(100..=139).collect::<Vec<_>>(), 7, None);
    // The DNS address sits in the static band of the default range: never picked
    // while the dynamic band has room.
    let r = cidr();
    for random in [0, 1, 9, 255, 1 << 40] {
        let got = r.pick(&BTreeSet::new(), random).unwrap();
        assert!(got >= ip("10.96.1.1"), "{}", r.render(got));
        assert!(r.contains(got));
    }
    check(&r, &[], 0, Some(ip("10.96.1.1")));
}

#[test]
fn requested_values() {
    fn check(r: &Range, v: u32, taken: &[u32], expected: Result<(), &str>) {
        let taken: BTreeSet<u32> = taken.iter().copied().collect();
        let got = r.check(v, &taken).map_err(|why| r.message(why));
        assert_eq!(got, expected.map_err(str::to_string), "{}", r.render(v));
    }
    let r = cidr();
    check(&r, ip("10.96.0.10"), &[], Ok(()));
    check(
        &r,
        ip("10.96.0.5"),
        &[ip("10.96.0.5")],
        Err("provided IP is already allocated"),
    );
    check(
        &r,
        ip("192.168.0.5"),
        &[],
        Err("provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/12"),
    );
    check(
        &r,
        ip("10.96.0.0"),
        &[],
        Err("provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/12"),
    );
    let p = Range::node_ports(30000, 32767).unwrap();
    check(
        &p,
        30080,
        &[30080],
        Err("provided port is already allocated"),
    );
    check(
        &p,
        8080,
        &[],
        Err("provided port is not in the valid range. The range of valid ports is 30000-32767"),
    );
    check(&p, 32767, &[30080], Ok(()));
}

fn svc(ty: &str, ip: &str, node_ports: &[(&str, i64)]) -> Value {
    let ports: Vec<Value> = node_ports
        .iter()
        .enumerate()
        .map(|(i, (name, np))| {
            let mut p = json!({"name": name, "port": 80 + i, "protocol": "TCP"});
            if *np != 0 {
                p["nodePort"] = json!(np);
            }
            p
        })
        .collect();
    let mut s = json!({"type": ty, "ports": ports});
    if !ip.is_empty() {
        s["clusterIP"] = json!(ip);
    }
    s
}

#[test]
fn plans() {
    // (name, old spec, new spec, expected plan or error messages, new spec after patching)
    fn check(
        name: &str,
        old: Option<Value>,
        mut new: Value,
        expected: Result<Plan, Vec<&str>>,
        patched: Option<Value>,
    ) {
        let got = plan(old.as_ref(), &mut new).map_err(|errs| {
            errs.iter()
                .map(|e| format!("{}: {}", e.field, e.detail))
                .collect::<Vec<_>>()
        });
        let expected = expected.map_err(|e| e.iter().map(|s| s.to_string()).collect());
        assert_eq!(got, expected, "{name}");
        if let Some(p) = patched {
            assert_eq!(new, p, "{name}: patched spec");
        }
    }
    let any = Want::Any;
    let at = |s: &str| Want::Specific(s.into());
    let plan_of = |ip: Option<Want>, ports: Vec<(usize, Want)>| Ok(Plan { ip, ports });
    check(
        "clusterip create",
        None,
        svc("ClusterIP", "", &[("a", 0)]),
        plan_of(Some(any.clone()), vec![]),
        None,
    );
    check(
        "requested ip",
        None,
        svc("ClusterIP", "10.96.0.5", &[("a", 0)]),
        plan_of(Some(at("10.96.0.5")), vec![]),
        None,
    );
    check(
        "headless",
        None,
        svc("ClusterIP", "None", &[("a", 0)]),
        plan_of(None, vec![]),
        None,
    );
    check(
        "external name",
        None,
        json!({"type": "ExternalName", "externalName": "x.example"}),
        plan_of(None, vec![]),
        None,
    );
    check(
        "nodeport create",
        None,
        svc("NodePort", "", &[("a", 0), ("b", 30080)]),
        plan_of(Some(any.clone()), vec![(0, any.clone()), (1, at("30080"))]),
        None,
    );
    check(
        "loadbalancer, one node port for tcp and udp",
        None,
        svc("LoadBalancer", "", &[("a", 30080), ("b", 30080)]),
        plan_of(Some(any.clone()), vec![(0, at("30080"))]),
        None,
    );
    check(
        "node port on ClusterIP",
        None,
        svc("ClusterIP", "", &[("a", 30080)]),
        Err(vec![
            "spec.ports[0].nodePort: may not be used when `type` is 'ClusterIP'",
        ]),
        None,
    );
    // Updates.
    let old = svc("NodePort", "10.96.4.4", &[("a", 30001), ("b", 30002)]);
    check(
        "update keeps ip and node ports left out",
        Some(old.clone()),
        svc("NodePort", "", &[("a", 0), ("b", 0)]),
        plan_of(None, vec![]),
        Some(svc("NodePort", "10.96.4.4", &[("a", 30001), ("b", 30002)])),
    );
    check(
        "update changes the ip",
        Some(old.clone()),
        svc("NodePort", "10.96.4.5", &[("a", 30001), ("b", 30002)]),
        Err(vec!["spec.clusterIP: field is immutable"]),
        None,
    );
    check(
        "update to headless",
        Some(svc("ClusterIP", "10.96.4.4", &[("a", 0)])),
        svc("ClusterIP", "None", &[("a", 0)]),
        Err(vec!["spec.clusterIP: field is immutable"]),
        None,
    );
    check(
        "update adds a port and moves one",
        Some(old.clone()),
        svc(
            "NodePort",
            "10.96.4.4",
            &[("a", 30001), ("b", 30009), ("c", 0)],
        ),
        plan_of(None, vec![(1, at("30009")), (2, any.clone())]),
        None,
    );
    check(
        "an old node port taken by another port of the update is not carried over",
        Some(old.clone()),
        svc("NodePort", "", &[("a", 30002), ("b", 0)]),
        plan_of(None, vec![(1, any.clone())]),
        Some(svc("NodePort", "10.96.4.4", &[("a", 30002), ("b", 0)])),
    );
    check(
        "type change to ClusterIP drops unchanged node ports",
        Some(old.clone()),
        svc("ClusterIP", "10.96.4.4", &[("a", 30001), ("b", 30002)]),
        plan_of(None, vec![]),
        Some(svc("ClusterIP", "10.96.4.4", &[("a", 0), ("b", 0)])),
    );
    check(
        "type change to ClusterIP with a new node port",
        Some(old.clone()),
        svc("ClusterIP", "10.96.4.4", &[("a", 30001), ("b", 30003)]),
        Err(vec![
            "spec.ports[1].nodePort: may not be used when `type` is 'ClusterIP'",
        ]),
        None,
    );
    check(
        "ClusterIP to NodePort allocates node ports only",
        Some(svc("ClusterIP", "10.96.4.4", &[("a", 0)])),
        svc("NodePort", "", &[("a", 0)]),
        plan_of(None, vec![(0, any.clone())]),
        None,
    );
    check(
        "to ExternalName holds nothing",
        Some(old.clone()),
        json!({"type": "ExternalName", "externalName": "x.example", "ports": [{"name": "a", "port": 80, "protocol": "TCP", "nodePort": 30001}]}),
        plan_of(None, vec![]),
        Some(
            json!({"type": "ExternalName", "externalName": "x.example", "ports": [{"name": "a", "port": 80, "protocol": "TCP"}]}),
        ),
    );
    check(
        "from ExternalName allocates",
        Some(json!({"type": "ExternalName", "externalName": "x.example"})),
        svc("ClusterIP", "", &[("a", 0)]),
        plan_of(Some(any.clone()), vec![]),
        None,
    );
}

#[test]
fn held_values() {
    assert_eq!(
        held_ip(&svc("ClusterIP", "10.96.0.7", &[])),
        Some("10.96.0.7".into())
    );
    assert_eq!(held_ip(&svc("ClusterIP", "None", &[])), None);
    assert_eq!(held_ip(&svc("ClusterIP", "", &[])), None);
    let np = svc("NodePort", "10.96.0.7", &[("a", 30001), ("b", 0)]);
    assert_eq!(held_ports(&np), BTreeSet::from(["30001".to_string()]));
    assert!(held_ports(&svc("ClusterIP", "10.96.0.7", &[("a", 30001)])).is_empty());
    let mut s = svc("ClusterIP", "", &[]);
    set_ip(&mut s, "10.96.0.9");
    assert_eq!(s["clusterIPs"], json!(["10.96.0.9"]));
    assert_eq!(s["ipFamilies"], json!(["IPv4"]));
    assert_eq!(s["ipFamilyPolicy"], json!("SingleStack"));
    let mut headless = svc("ClusterIP", "None", &[]);
    fill_families(&mut headless);
    assert_eq!(headless["clusterIPs"], json!(["None"]));
}

#[test]
fn registry_entries() {
    // (entry, owner, claimed at)
    fn check(e: &str, expected: (&str, Option<u64>)) {
        assert_eq!(parse_entry(e), expected, "{e}");
    }
    check(
        &entry("default/web", 1700000000),
        ("default/web", Some(1700000000)),
    );
    check("default/web", ("default/web", None));
    check("default/web@soon", ("default/web", None));
    // (claimed at, now, leak possible)
    for (at, now, want) in [
        (Some(100), 100, false),
        (Some(100), 159, false),
        (Some(100), 160, true),
        (Some(200), 100, false),
        (None, 0, true),
    ] {
        assert_eq!(may_be_leaked(at, now, 60), want, "{at:?} {now}");
    }
}
