//! drover-dns end to end: a real nats-server and store, Services and EndpointSlices
//! written through the store, and queries over UDP and TCP to 127.0.0.1 with hickory's
//! client. Waits poll the server until the expected answer arrives; the timeout is a
//! failure guard only.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use drover_dns::{Dns, DnsConfig};
use drover_store::{DeleteOptions, Store, StoreConfig};
use drover_testkit::TestNats;
use hickory_client::client::{Client, ClientHandle};
use hickory_client::proto::op::ResponseCode;
use hickory_client::proto::rr::{DNSClass, Name, RData, RecordType};
use hickory_client::proto::runtime::TokioRuntimeProvider;
use hickory_client::proto::tcp::TcpClientStream;
use hickory_client::proto::udp::UdpClientStream;
use serde_json::{Value, json};

const GUARD: Duration = Duration::from_secs(30);

fn kind(group: &str, plural: &str) -> &'static bus_schema::KindInfo {
    bus_schema::kinds::by_group_resource(group, plural).unwrap()
}

fn service(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": "ns"}, "spec": spec})
}

fn slice(name: &str, service: &str, endpoints: Value) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "ns",
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
        "endpoints": endpoints,
    })
}

fn ep(ip: &str, hostname: Option<&str>) -> Value {
    let mut e = json!({"addresses": [ip], "conditions": {"ready": true}});
    if let Some(h) = hostname {
        e["hostname"] = json!(h);
    }
    e
}

/// One answer, reduced to comparable text: rcode and sorted answer records.
#[derive(Debug, PartialEq, Eq)]
struct Reply {
    code: ResponseCode,
    answers: Vec<String>,
    authority_soa: bool,
}

fn reply(code: ResponseCode, answers: &[&str], authority_soa: bool) -> Reply {
    Reply {
        code,
        answers: answers.iter().map(|s| s.to_string()).collect(),
        authority_soa,
    }
}

async fn client(addr: SocketAddr, tcp: bool) -> Client {
    if tcp {
        let (stream, sender) = TcpClientStream::new(addr, None, None, TokioRuntimeProvider::new());
        let (client, bg) = Client::new(stream, sender, None).await.unwrap();
        tokio::spawn(bg);
        client
    } else {
        let conn = UdpClientStream::builder(addr, TokioRuntimeProvider::new()).build();
        let (client, bg) = Client::connect(conn).await.unwrap();
        tokio::spawn(bg);
        client
    }
}

async fn ask(client: &mut Client, name: &str, t: RecordType) -> Reply {
    let resp = client
        .query(Name::from_str(name).unwrap(), DNSClass::IN, t)
        .await
        .unwrap();
    let mut answers: Vec<String> = resp
        .answers()
        .iter()
        .map(|r| match r.data() {
            RData::A(a) => a.to_string(),
            RData::SRV(s) => format!(
                "{} {} {} {}",
                s.priority(),
                s.weight(),
                s.port(),
                s.target()
            ),
            RData::CNAME(c) => format!("CNAME {}", c.0),
            RData::PTR(p) => format!("PTR {}", p.0),
            other => format!("{other:?}"),
        })
        .collect();
    answers.sort();
    Reply {
        code: resp.response_code(),
        answers,
        authority_soa: resp
            .name_servers()
            .iter()
            .any(|r| r.record_type() == RecordType::SOA),
    }
}

/// Asks until the reply is `want` (the index follows the store's watch).
async fn wait_for(client: &mut Client, name: &str, t: RecordType, want: Reply) {
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        let got = ask(client, name, t).await;
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} {t}: still {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Env {
    _nats: TestNats,
    store: Store,
    dns: Dns,
}

async fn start() -> Env {
    start_with(Vec::new()).await
}

async fn start_with(upstreams: Vec<SocketAddr>) -> Env {
    let nats = TestNats::start().await;
    let store = Store::new(nats.client().await, StoreConfig::default())
        .await
        .unwrap();
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}});
    store.create(kind("", "namespaces"), ns).await.unwrap();
    let dns = Dns::start(
        store.clone(),
        DnsConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            zone: "cluster.local".into(),
            upstreams,
        },
    )
    .await
    .unwrap();
    Env {
        _nats: nats,
        store,
        dns,
    }
}

const OK: ResponseCode = ResponseCode::NoError;

#[tokio::test]
async fn services_endpoints_and_changes_over_udp_and_tcp() {
    let env = start().await;
    let services = kind("", "services");
    let slices = kind("discovery.k8s.io", "endpointslices");
    let web = service(
        "web",
        json!({"clusterIP": "10.96.0.20", "selector": {"app": "web"},
               "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}),
    );
    env.store.create(services, web).await.unwrap();
    let db = service(
        "db",
        json!({"clusterIP": "None", "selector": {"app": "db"},
               "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]}),
    );
    env.store.create(services, db).await.unwrap();
    let ext = service(
        "ext",
        json!({"type": "ExternalName", "externalName": "example.com"}),
    );
    env.store.create(services, ext).await.unwrap();
    let s = slice(
        "db-1",
        "db",
        json!([ep("10.0.0.1", Some("db-0")), ep("10.0.0.2", Some("db-1"))]),
    );
    env.store.create(slices, s).await.unwrap();

    let addr = env.dns.local_addr();
    let mut udp = client(addr, false).await;
    let mut tcp = client(addr, true).await;
    let web = "web.ns.svc.cluster.local.";
    let db = "db.ns.svc.cluster.local.";
    wait_for(
        &mut udp,
        web,
        RecordType::A,
        reply(OK, &["10.96.0.20"], false),
    )
    .await;
    wait_for(
        &mut udp,
        db,
        RecordType::A,
        reply(OK, &["10.0.0.1", "10.0.0.2"], false),
    )
    .await;
    for c in [&mut udp, &mut tcp] {
        assert_eq!(
            ask(c, web, RecordType::A).await,
            reply(OK, &["10.96.0.20"], false)
        );
        assert_eq!(
            ask(c, "_http._tcp.web.ns.svc.cluster.local.", RecordType::SRV).await,
            reply(OK, &["0 100 80 web.ns.svc.cluster.local."], false)
        );
        assert_eq!(
            ask(c, "_pg._tcp.db.ns.svc.cluster.local.", RecordType::SRV).await,
            reply(
                OK,
                &[
                    "0 50 5432 db-0.db.ns.svc.cluster.local.",
                    "0 50 5432 db-1.db.ns.svc.cluster.local."
                ],
                false
            )
        );
        assert_eq!(
            ask(c, "db-1.db.ns.svc.cluster.local.", RecordType::A).await,
            reply(OK, &["10.0.0.2"], false)
        );
        assert_eq!(
            ask(c, "ext.ns.svc.cluster.local.", RecordType::A).await,
            reply(OK, &["CNAME example.com."], false)
        );
        assert_eq!(
            ask(c, "nope.ns.svc.cluster.local.", RecordType::A).await,
            reply(ResponseCode::NXDomain, &[], true)
        );
        assert_eq!(
            ask(c, web, RecordType::AAAA).await,
            reply(OK, &[], true),
            "an existing name without the type is NODATA"
        );
        assert_eq!(
            ask(c, "example.com.", RecordType::A).await,
            reply(ResponseCode::Refused, &[], false),
            "no recursion"
        );
    }

    // An endpoint added to the slice is seen by a later query.
    let mut s = env.store.get(slices, Some("ns"), "db-1").await.unwrap();
    s["endpoints"]
        .as_array_mut()
        .unwrap()
        .push(ep("10.0.0.3", None));
    env.store.update(slices, s).await.unwrap();
    wait_for(
        &mut udp,
        db,
        RecordType::A,
        reply(OK, &["10.0.0.1", "10.0.0.2", "10.0.0.3"], false),
    )
    .await;
    assert_eq!(
        ask(&mut tcp, "10-0-0-3.db.ns.svc.cluster.local.", RecordType::A).await,
        reply(OK, &["10.0.0.3"], false)
    );

    // A deleted service is gone.
    env.store
        .delete(services, Some("ns"), "web", &DeleteOptions::default())
        .await
        .unwrap();
    wait_for(
        &mut udp,
        web,
        RecordType::A,
        reply(ResponseCode::NXDomain, &[], true),
    )
    .await;
    env.dns.stop().await;
}

#[tokio::test]
async fn reverse_lookups_of_cluster_ips_and_headless_endpoints() {
    let env = start().await;
    let services = kind("", "services");
    let slices = kind("discovery.k8s.io", "endpointslices");
    let web = service(
        "web",
        json!({"clusterIP": "10.96.0.20", "ports": [{"name": "http", "port": 80}]}),
    );
    env.store.create(services, web).await.unwrap();
    let db = service(
        "db",
        json!({"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}),
    );
    env.store.create(services, db).await.unwrap();
    let s = slice(
        "db-1",
        "db",
        json!([ep("10.0.0.1", Some("db-0")), ep("10.0.0.2", None)]),
    );
    env.store.create(slices, s).await.unwrap();

    let addr = env.dns.local_addr();
    let mut udp = client(addr, false).await;
    let mut tcp = client(addr, true).await;
    wait_for(
        &mut udp,
        "2.0.0.10.in-addr.arpa.",
        RecordType::PTR,
        reply(OK, &["PTR 10-0-0-2.db.ns.svc.cluster.local."], false),
    )
    .await;
    for c in [&mut udp, &mut tcp] {
        assert_eq!(
            ask(c, "20.0.96.10.in-addr.arpa.", RecordType::PTR).await,
            reply(OK, &["PTR web.ns.svc.cluster.local."], false)
        );
        assert_eq!(
            ask(c, "1.0.0.10.in-addr.arpa.", RecordType::PTR).await,
            reply(OK, &["PTR db-0.db.ns.svc.cluster.local."], false)
        );
        assert_eq!(
            ask(c, "9.9.9.10.in-addr.arpa.", RecordType::PTR).await,
            reply(ResponseCode::Refused, &[], false),
            "an address the cluster does not know is not this server's without upstreams"
        );
    }
    // The Service goes: so does its reverse name.
    env.store
        .delete(services, Some("ns"), "web", &DeleteOptions::default())
        .await
        .unwrap();
    wait_for(
        &mut udp,
        "20.0.96.10.in-addr.arpa.",
        RecordType::PTR,
        reply(ResponseCode::Refused, &[], false),
    )
    .await;
    env.dns.stop().await;
}

#[tokio::test]
async fn names_outside_the_zone_go_to_the_upstream() {
    // The upstream: a second server (hickory, like the first) on 127.0.0.2, authoritative
    // for its own zone over the same store.
    let nats = TestNats::start().await;
    let store = Store::new(nats.client().await, StoreConfig::default())
        .await
        .unwrap();
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}});
    store.create(kind("", "namespaces"), ns).await.unwrap();
    let web = service(
        "web",
        json!({"clusterIP": "10.96.0.20", "ports": [{"port": 80}]}),
    );
    store.create(kind("", "services"), web).await.unwrap();
    let upstream = Dns::start(
        store.clone(),
        DnsConfig {
            listen: SocketAddr::from(([127, 0, 0, 2], 0)),
            zone: "upstream.test".into(),
            upstreams: Vec::new(),
        },
    )
    .await
    .unwrap();
    // A port nothing answers on, tried first: the forwarder moves on to the next.
    let silent = std::net::UdpSocket::bind("127.0.0.2:0").unwrap();
    let env = start_with(vec![silent.local_addr().unwrap(), upstream.local_addr()]).await;
    let mut udp = client(env.dns.local_addr(), false).await;
    let mut tcp = client(env.dns.local_addr(), true).await;
    let name = "web.ns.svc.upstream.test.";
    wait_for(
        &mut udp,
        name,
        RecordType::A,
        reply(OK, &["10.96.0.20"], false),
    )
    .await;
    assert_eq!(
        ask(&mut tcp, name, RecordType::A).await,
        reply(OK, &["10.96.0.20"], false)
    );
    // The upstream's NXDOMAIN (with its SOA) and REFUSED come back as it gave them.
    assert_eq!(
        ask(&mut udp, "nope.ns.svc.upstream.test.", RecordType::A).await,
        reply(ResponseCode::NXDomain, &[], true)
    );
    assert_eq!(
        ask(&mut udp, "example.com.", RecordType::A).await,
        reply(ResponseCode::Refused, &[], false)
    );
    // The cluster zone is still answered here, never forwarded.
    assert_eq!(
        ask(&mut udp, "web.ns.svc.cluster.local.", RecordType::A).await,
        reply(ResponseCode::NXDomain, &[], true)
    );
    env.dns.stop().await;

    // Only silent upstreams: SERVFAIL.
    let env = start_with(vec![silent.local_addr().unwrap()]).await;
    let mut udp = client(env.dns.local_addr(), false).await;
    assert_eq!(
        ask(&mut udp, name, RecordType::A).await,
        reply(ResponseCode::ServFail, &[], false)
    );
    env.dns.stop().await;
    upstream.stop().await;
}
