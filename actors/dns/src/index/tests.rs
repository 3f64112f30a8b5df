use std::net::IpAddr;

use serde_json::{Value, json};

use super::{Answer, Data, Index, QType, Rec};

fn svc(ns: &str, name: &str, spec: Value) -> Value {
    json!({"metadata": {"namespace": ns, "name": name}, "spec": spec})
}

fn slice(ns: &str, name: &str, service: &str, ports: Value, endpoints: Value) -> Value {
    json!({
        "metadata": {"namespace": ns, "name": name,
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": endpoints,
    })
}

/// The index every table row queries.
fn index() -> Index {
    let mut ix = Index::new("Cluster.Local.");
    let http = json!([{"name": "http", "port": 80, "protocol": "TCP"},
                      {"name": "dns", "port": 53, "protocol": "UDP"}]);
    ix.upsert_service(&svc(
        "ns",
        "web",
        json!({"clusterIP": "10.96.0.20", "ports": http}),
    ));
    ix.upsert_service(&svc(
        "ns",
        "dual",
        json!({"clusterIP": "10.96.0.21", "clusterIPs": ["10.96.0.21", "fd00::21"]}),
    ));
    ix.upsert_service(&svc(
        "ns",
        "db",
        json!({"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}),
    ));
    ix.upsert_slice(&slice(
        "ns",
        "db-abc",
        "db",
        json!([{"name": "pg", "port": 5432, "protocol": "TCP"}]),
        json!([
            {"addresses": ["10.0.0.2"], "hostname": "db-1", "conditions": {"ready": true}},
            {"addresses": ["10.0.0.1"], "hostname": "db-0"},
            {"addresses": ["10.0.0.9"], "hostname": "db-2", "conditions": {"ready": false}},
        ]),
    ));
    ix.upsert_slice(&slice(
        "ns",
        "db-def",
        "db",
        json!([{"name": "pg", "port": 5432, "protocol": "TCP"}]),
        json!([{"addresses": ["10.0.0.3"]}]),
    ));
    // A slice of another namespace's service with the same name stays apart.
    ix.upsert_slice(&slice(
        "other",
        "db-x",
        "db",
        json!([]),
        json!([{"addresses": ["10.9.9.9"]}]),
    ));
    ix.upsert_service(&svc(
        "ns",
        "ext",
        json!({"type": "ExternalName", "externalName": "Example.COM"}),
    ));
    ix.upsert_service(&svc("ns", "pending", json!({"ports": [{"port": 80}]})));
    ix
}

fn a(name: &str, ip: &str) -> Rec {
    let data = match ip.parse::<IpAddr>().unwrap() {
        IpAddr::V4(v4) => Data::A(v4),
        IpAddr::V6(v6) => Data::Aaaa(v6),
    };
    Rec {
        name: name.into(),
        data,
    }
}

fn srv(name: &str, weight: u16, port: u16, target: &str) -> Rec {
    Rec {
        name: name.into(),
        data: Data::Srv {
            priority: 0,
            weight,
            port,
            target: target.into(),
        },
    }
}

fn ok(answers: Vec<Rec>) -> Answer {
    Answer::Records {
        answers,
        additionals: Vec::new(),
    }
}

#[track_caller]
fn check(qname: &str, qtype: QType, expected: Answer) {
    assert_eq!(index().answer(qname, qtype), expected, "{qname} {qtype:?}");
}

const WEB: &str = "web.ns.svc.cluster.local.";
const DB: &str = "db.ns.svc.cluster.local.";

#[test]
fn cluster_ip_services() {
    check(WEB, QType::A, ok(vec![a(WEB, "10.96.0.20")]));
    // Any case, no trailing dot: the owner is the name as asked.
    check(
        "WEB.ns.SVC.cluster.local",
        QType::A,
        ok(vec![a("WEB.ns.SVC.cluster.local.", "10.96.0.20")]),
    );
    check(WEB, QType::Aaaa, ok(vec![]));
    check(WEB, QType::Other, ok(vec![]));
    check(
        "dual.ns.svc.cluster.local.",
        QType::Aaaa,
        ok(vec![a("dual.ns.svc.cluster.local.", "fd00::21")]),
    );
    check(
        "dual.ns.svc.cluster.local.",
        QType::A,
        ok(vec![a("dual.ns.svc.cluster.local.", "10.96.0.21")]),
    );
    // No cluster IP allocated yet: the name exists, without addresses.
    check("pending.ns.svc.cluster.local.", QType::A, ok(vec![]));
}

#[test]
fn srv_records() {
    let q = "_http._tcp.web.ns.svc.cluster.local.";
    check(q, QType::Srv, ok(vec![srv(q, 100, 80, WEB)]));
    check(q, QType::A, ok(vec![a(q, "10.96.0.20")]));
    let q = "_dns._udp.web.ns.svc.cluster.local.";
    check(q, QType::Srv, ok(vec![srv(q, 100, 53, WEB)]));
    // Wrong protocol or an unknown port name: no such name.
    check(
        "_dns._tcp.web.ns.svc.cluster.local.",
        QType::Srv,
        Answer::NxDomain,
    );
    check(
        "_ftp._tcp.web.ns.svc.cluster.local.",
        QType::Srv,
        Answer::NxDomain,
    );
    // SRV of the service name itself: every port, weight shared.
    check(
        WEB,
        QType::Srv,
        ok(vec![srv(WEB, 50, 53, WEB), srv(WEB, 50, 80, WEB)]),
    );
}

#[test]
fn headless_services() {
    check(
        DB,
        QType::A,
        ok(vec![
            a(DB, "10.0.0.1"),
            a(DB, "10.0.0.2"),
            a(DB, "10.0.0.3"),
        ]),
    );
    let q = "_pg._tcp.db.ns.svc.cluster.local.";
    let t0 = "db-0.db.ns.svc.cluster.local.";
    let t1 = "db-1.db.ns.svc.cluster.local.";
    let t3 = "10-0-0-3.db.ns.svc.cluster.local.";
    check(
        q,
        QType::Srv,
        Answer::Records {
            answers: vec![
                srv(q, 33, 5432, t3),
                srv(q, 33, 5432, t0),
                srv(q, 33, 5432, t1),
            ],
            additionals: vec![a(t3, "10.0.0.3"), a(t0, "10.0.0.1"), a(t1, "10.0.0.2")],
        },
    );
    // Hostname records; the unready db-2 is not named.
    check(t1, QType::A, ok(vec![a(t1, "10.0.0.2")]));
    check(
        "DB-0.db.ns.svc.cluster.local.",
        QType::A,
        ok(vec![a("DB-0.db.ns.svc.cluster.local.", "10.0.0.1")]),
    );
    check(t3, QType::A, ok(vec![a(t3, "10.0.0.3")]));
    check(t1, QType::Aaaa, ok(vec![]));
    check("db-2.db.ns.svc.cluster.local.", QType::A, Answer::NxDomain);
    check("db-9.web.ns.svc.cluster.local.", QType::A, Answer::NxDomain);
}

#[test]
fn external_name() {
    let q = "ext.ns.svc.cluster.local.";
    let cname = ok(vec![Rec {
        name: q.into(),
        data: Data::Cname("example.com.".into()),
    }]);
    check(q, QType::A, cname.clone());
    check(q, QType::Cname, cname.clone());
    check(q, QType::Srv, cname);
    check("x.ext.ns.svc.cluster.local.", QType::A, Answer::NxDomain);
}

#[test]
fn missing_names_and_the_zone() {
    check("nope.ns.svc.cluster.local.", QType::A, Answer::NxDomain);
    check("web.other.svc.cluster.local.", QType::A, Answer::NxDomain);
    check("a.b.c.d.e.f.cluster.local.", QType::A, Answer::NxDomain);
    check("x.cluster.local.", QType::A, Answer::NxDomain);
    // Existing interior names: NODATA.
    check("ns.svc.cluster.local.", QType::A, ok(vec![]));
    check("svc.cluster.local.", QType::A, ok(vec![]));
    check("other.svc.cluster.local.", QType::A, Answer::NxDomain);
    check("cluster.local.", QType::A, ok(vec![]));
    check("cluster.local.", QType::Soa, ok(vec![index().soa()]));
    // Outside the zone, including a name that merely ends in the same letters.
    check("example.com.", QType::A, Answer::Refused);
    check("evilcluster.local.", QType::A, Answer::Refused);
    check(".", QType::A, Answer::Refused);
}

#[test]
fn pod_names() {
    let q = "10-0-0-7.ns.pod.cluster.local.";
    check(q, QType::A, ok(vec![a(q, "10.0.0.7")]));
    check(q, QType::Aaaa, ok(vec![]));
    check(
        "fd00--7.ns.pod.cluster.local.",
        QType::Aaaa,
        ok(vec![a("fd00--7.ns.pod.cluster.local.", "fd00::7")]),
    );
    check(
        "not-an-ip.ns.pod.cluster.local.",
        QType::A,
        Answer::NxDomain,
    );
}

#[test]
fn updates_report_changes_and_bump_the_serial() {
    let mut ix = index();
    let serial = |ix: &Index| match ix.soa().data {
        Data::Soa(s) => s.serial,
        _ => unreachable!(),
    };
    let before = serial(&ix);
    let web = svc(
        "ns",
        "web",
        json!({"clusterIP": "10.96.0.20", "ports": [
        {"name": "http", "port": 80, "protocol": "TCP"},
        {"name": "dns", "port": 53, "protocol": "UDP"}]}),
    );
    assert!(
        !ix.upsert_service(&web),
        "the same service again changes nothing"
    );
    assert_eq!(serial(&ix), before);
    let moved = svc("ns", "web", json!({"clusterIP": "10.96.0.30"}));
    assert!(ix.upsert_service(&moved));
    assert_eq!(ix.answer(WEB, QType::A), ok(vec![a(WEB, "10.96.0.30")]));
    assert!(ix.remove_service(&moved));
    assert!(!ix.remove_service(&moved));
    assert_eq!(ix.answer(WEB, QType::A), Answer::NxDomain);
    // A slice losing its service label is forgotten.
    assert!(ix.upsert_slice(&json!({"metadata": {"namespace": "ns", "name": "db-def"}})));
    assert_eq!(
        ix.answer(DB, QType::A),
        ok(vec![a(DB, "10.0.0.1"), a(DB, "10.0.0.2")])
    );
    assert!(ix.replace_slices(&[]));
    assert_eq!(ix.answer(DB, QType::A), ok(vec![]));
    assert!(!ix.replace_slices(&[]));
    assert!(ix.replace_services(&[]));
    assert_eq!(ix.answer(DB, QType::A), Answer::NxDomain);
    assert!(serial(&ix) > before);
    // Objects without a namespace/name are ignored, never a panic.
    assert!(!ix.upsert_service(&json!({"spec": 3})));
    assert!(!ix.upsert_slice(&json!(null)));
}

fn ptr(name: &str, target: &str) -> Rec {
    Rec {
        name: name.into(),
        data: Data::Ptr(target.into()),
    }
}

#[test]
fn reverse_names() {
    // A cluster IP names its Service; the dual-stack one by either family.
    let q = "20.0.96.10.in-addr.arpa.";
    check(q, QType::Ptr, ok(vec![ptr(q, WEB)]));
    check("20.0.96.10.IN-ADDR.ARPA", QType::Ptr, {
        ok(vec![ptr("20.0.96.10.IN-ADDR.ARPA.", WEB)])
    });
    let v6 = "1.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.";
    check(
        v6,
        QType::Ptr,
        ok(vec![ptr(v6, "dual.ns.svc.cluster.local.")]),
    );
    // Endpoint addresses name their endpoint: hostname, else the dashed address.
    let q = "2.0.0.10.in-addr.arpa.";
    check(
        q,
        QType::Ptr,
        ok(vec![ptr(q, "db-1.db.ns.svc.cluster.local.")]),
    );
    let q = "3.0.0.10.in-addr.arpa.";
    check(
        q,
        QType::Ptr,
        ok(vec![ptr(q, "10-0-0-3.db.ns.svc.cluster.local.")]),
    );
    // A known address asked for another type: NODATA.
    check("20.0.96.10.in-addr.arpa.", QType::A, ok(vec![]));
    // Not ours: an unready endpoint, a slice whose Service does not exist, an unknown
    // address, partial or malformed reverse names.
    for q in [
        "9.0.0.10.in-addr.arpa.",
        "9.9.9.10.in-addr.arpa.",
        "1.1.1.1.in-addr.arpa.",
        "96.10.in-addr.arpa.",
        "020.0.96.10.in-addr.arpa.",
        "256.0.96.10.in-addr.arpa.",
        "x.0.96.10.in-addr.arpa.",
        "in-addr.arpa.",
        "1.2.ip6.arpa.",
    ] {
        check(q, QType::Ptr, Answer::Refused);
    }
}
