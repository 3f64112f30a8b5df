//! The load balancer with real BPF: each test runs in a fresh network namespace
//! (`drover_testkit::netns::enter`) and a fresh child cgroup v2 that the test process
//! joins; the programs are attached to that cgroup only and pinned under a unique
//! directory in /sys/fs/bpf. Backends are servers on 127.0.0.1; VIPs are in
//! 10.96.0.0/12, blackholed inside the namespace so nothing untranslated leaves.
//! Needs root.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use aya::maps::{Array, Map, MapData};
use aya::programs::ProgramInfo;
use drover_bpf::{Backend, Loaded, Loader, Protocol, Service, ServiceKey};
use drover_testkit::cgroup::{TestCgroup, cgroup2_root};
use drover_testkit::netns;

const TIMEOUT: Duration = Duration::from_secs(5);

/// Where cgroup2 is mounted: /sys/fs/cgroup/unified on these hybrid machines,
/// /sys/fs/cgroup on a pure cgroup2 one.
/// The test's cgroup (joined) and pin directory; dropping it detaches and unpins
/// everything, then the cgroup goes (the process moves back), also on failure.
struct Fixture {
    pin_dir: PathBuf,
    cgroup: TestCgroup,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let unique = format!("drover-bpf-test-{}-{name}", std::process::id());
        let f = Fixture {
            pin_dir: PathBuf::from("/sys/fs/bpf").join(&unique),
            cgroup: TestCgroup::new(&unique, true),
        };
        netns::run("ip", &["route", "add", "blackhole", "10.96.0.0/12"]);
        f
    }

    fn load(&self) -> Loader {
        Loader::load(&self.pin_dir, self.cgroup.path()).unwrap()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Before the cgroup goes (the field drops after this).
        let _ = drover_bpf::unpin(&self.pin_dir);
    }
}

/// A TCP server on 127.0.0.1 that answers every connection with its one-byte id.
fn tcp_backend(id: u8) -> SocketAddrV4 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let SocketAddr::V4(addr) = l.local_addr().unwrap() else {
        unreachable!()
    };
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let _ = s.write_all(&[id]);
        }
    });
    addr
}

/// A UDP server on 127.0.0.1 that echoes every datagram with its id appended.
fn udp_backend(id: u8) -> SocketAddrV4 {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let SocketAddr::V4(addr) = s.local_addr().unwrap() else {
        unreachable!()
    };
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            buf[n] = id;
            let _ = s.send_to(&buf[..=n], from);
        }
    });
    addr
}

fn key(last: u8, proto: Protocol) -> ServiceKey {
    ServiceKey {
        vip: Ipv4Addr::new(10, 96, 0, last),
        port: 80,
        proto,
    }
}

fn vip(k: &ServiceKey) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(k.vip, k.port))
}

fn service(backends: &[(SocketAddrV4, u32)]) -> Service {
    Service {
        backends: backends
            .iter()
            .map(|(addr, weight)| Backend {
                addr: *addr,
                weight: *weight,
            })
            .collect(),
        affinity: None,
    }
}

/// Connects to the VIP and returns the id of the backend that answered and the peer
/// address the socket reports.
fn ask(k: &ServiceKey) -> (u8, SocketAddr) {
    let mut s = TcpStream::connect_timeout(&vip(k), TIMEOUT).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).unwrap();
    (b[0], s.peer_addr().unwrap())
}

#[test]
fn tcp_connect_to_vip_reaches_backends_and_getpeername_shows_vip() {
    if !netns::enter("tcp_connect_to_vip_reaches_backends_and_getpeername_shows_vip") {
        return;
    }
    let f = Fixture::new("tcp");
    let mut lb = f.load();
    assert_eq!(lb.loaded(), Loaded::Fresh);
    let k = key(10, Protocol::Tcp);
    lb.upsert_service(k, &service(&[(tcp_backend(0), 1), (tcp_backend(1), 1)]))
        .unwrap();
    let mut seen = [0u32; 2];
    for _ in 0..64 {
        let (id, peer) = ask(&k);
        assert_eq!(peer, vip(&k), "getpeername shows the VIP");
        seen[id as usize] += 1;
    }
    assert!(seen[0] > 0 && seen[1] > 0, "both backends answer: {seen:?}");
}

#[test]
fn weights_90_10_split_connections() {
    if !netns::enter("weights_90_10_split_connections") {
        return;
    }
    let f = Fixture::new("weights");
    let mut lb = f.load();
    let k = key(11, Protocol::Tcp);
    lb.upsert_service(k, &service(&[(tcp_backend(0), 90), (tcp_backend(1), 10)]))
        .unwrap();
    assert_eq!(lb.slot_table(&k).unwrap().unwrap().len(), 10);
    let n = 2000;
    let mut first = 0;
    for _ in 0..n {
        if ask(&k).0 == 0 {
            first += 1;
        }
    }
    // 1,800 expected; the standard deviation is about 13, so +-60 is far outside chance.
    assert!(
        (1740..=1860).contains(&first),
        "{first} of {n} connections on the 90% backend"
    );
}

#[test]
fn udp_through_vip_replies_from_vip() {
    if !netns::enter("udp_through_vip_replies_from_vip") {
        return;
    }
    let f = Fixture::new("udp");
    let mut lb = f.load();
    let k = key(12, Protocol::Udp);
    lb.upsert_service(k, &service(&[(udp_backend(7), 1)]))
        .unwrap();
    // Unconnected: sendmsg4 translates, recvmsg4 shows the VIP as the source.
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.send_to(b"ping", vip(&k)).unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = c.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"ping\x07");
    assert_eq!(from, vip(&k), "the reply comes from the VIP");
    // Connected: connect4 translates, getpeername shows the VIP.
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.connect(vip(&k)).unwrap();
    assert_eq!(c.peer_addr().unwrap(), vip(&k));
    c.send(b"pong").unwrap();
    let n = c.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"pong\x07");
    // A TCP service on the same VIP:port is a different service: not translated.
    assert_eq!(lb.services(), vec![k]);
}

#[test]
fn no_backends_refuses_connections() {
    if !netns::enter("no_backends_refuses_connections") {
        return;
    }
    let f = Fixture::new("refuse");
    let mut lb = f.load();
    let k = key(13, Protocol::Tcp);
    lb.upsert_service(k, &Service::default()).unwrap();
    let refused = |k: &ServiceKey| {
        let e = TcpStream::connect_timeout(&vip(k), TIMEOUT).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
    };
    refused(&k);
    // Backends come, then all go again.
    let be = tcp_backend(3);
    lb.upsert_service(k, &service(&[(be, 1)])).unwrap();
    assert_eq!(ask(&k).0, 3);
    lb.upsert_service(k, &service(&[(be, 0)])).unwrap();
    refused(&k);
    assert_eq!(lb.slot_table(&k).unwrap(), Some(vec![]));
    // UDP to a service without backends is refused too.
    let u = key(13, Protocol::Udp);
    lb.upsert_service(u, &Service::default()).unwrap();
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    let e = c.send_to(b"x", vip(&u)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
}

#[test]
fn updates_change_only_the_service_and_removal_cleans_up() {
    if !netns::enter("updates_change_only_the_service_and_removal_cleans_up") {
        return;
    }
    let f = Fixture::new("update");
    let mut lb = f.load();
    let (a, b, c) = (tcp_backend(0), tcp_backend(1), tcp_backend(2));
    let k1 = key(14, Protocol::Tcp);
    let k2 = key(15, Protocol::Tcp);
    lb.upsert_service(k1, &service(&[(a, 1), (b, 1), (c, 1)]))
        .unwrap();
    lb.upsert_service(k2, &service(&[(c, 1)])).unwrap();
    assert_eq!(lb.slot_table(&k1).unwrap(), Some(vec![a, b, c]));
    // Shrink k1 to one backend: every connection now lands on it; k2 is untouched.
    lb.upsert_service(k1, &service(&[(b, 1)])).unwrap();
    assert_eq!(lb.slot_table(&k1).unwrap(), Some(vec![b]));
    for _ in 0..16 {
        assert_eq!(ask(&k1).0, 1);
    }
    assert_eq!(lb.slot_table(&k2).unwrap(), Some(vec![c]));
    assert_eq!(ask(&k2).0, 2);
    // Removing k1 leaves k2; a removed VIP is no longer translated (blackholed here).
    lb.remove_service(&k1).unwrap();
    assert_eq!(lb.services(), vec![k2]);
    assert_eq!(lb.slot_table(&k1).unwrap(), None);
    assert!(TcpStream::connect_timeout(&vip(&k1), TIMEOUT).is_err());
    assert_eq!(ask(&k2).0, 2);
    lb.remove_service(&k1).unwrap();
}

#[test]
fn client_ip_affinity_keeps_a_client_on_one_backend() {
    if !netns::enter("client_ip_affinity_keeps_a_client_on_one_backend") {
        return;
    }
    let f = Fixture::new("affinity");
    let mut lb = f.load();
    let k = key(16, Protocol::Tcp);
    let mut svc = service(&[(tcp_backend(0), 1), (tcp_backend(1), 1)]);
    svc.affinity = Some(Duration::from_secs(10_800));
    lb.upsert_service(k, &svc).unwrap();
    let first = ask(&k).0;
    for _ in 0..32 {
        assert_eq!(ask(&k).0, first, "affinity keeps the client on one backend");
    }
    // The pinned backend leaves: the client moves to the one that is left.
    let left = svc.backends[1 - first as usize];
    lb.upsert_service(k, &service_with_affinity(&[(left.addr, 1)]))
        .unwrap();
    for _ in 0..8 {
        assert_eq!(ask(&k).0, 1 - first);
    }
}

fn service_with_affinity(backends: &[(SocketAddrV4, u32)]) -> Service {
    Service {
        affinity: Some(Duration::from_secs(10_800)),
        ..service(backends)
    }
}

#[test]
fn reload_from_pins_keeps_maps_and_traffic() {
    if !netns::enter("reload_from_pins_keeps_maps_and_traffic") {
        return;
    }
    let f = Fixture::new("reload");
    let mut lb = f.load();
    let k = key(17, Protocol::Tcp);
    let be = tcp_backend(5);
    lb.upsert_service(k, &service(&[(be, 1)])).unwrap();
    let k2 = key(18, Protocol::Tcp);
    lb.upsert_service(k2, &service(&[(be, 1)])).unwrap();
    lb.remove_service(&k2).unwrap();
    // An agent restart: all fds closed, only the pins remain.
    drop(lb);
    assert_eq!(ask(&k).0, 5, "traffic flows while no loader runs");
    let mut lb = f.load();
    assert_eq!(lb.loaded(), Loaded::Reopened);
    assert_eq!(lb.services(), vec![k]);
    assert_eq!(lb.slot_table(&k).unwrap(), Some(vec![be]));
    assert_eq!(ask(&k).0, 5);
    // Ids are rebuilt: a new service does not collide with the surviving one.
    let other = tcp_backend(6);
    lb.upsert_service(k2, &service(&[(other, 1)])).unwrap();
    assert_eq!(ask(&k2).0, 6);
    assert_eq!(ask(&k).0, 5);
    lb.unload().unwrap();
    assert!(!f.pin_dir.exists());
}

#[test]
fn one_change_costs_a_few_writes_however_many_services() {
    if !netns::enter("one_change_costs_a_few_writes_however_many_services") {
        return;
    }
    let f = Fixture::new("writes");
    let mut lb = f.load();
    let be = |i: u32| SocketAddrV4::new(Ipv4Addr::from(0x0af4_0000 + i), 8080);
    let vip_n = |i: u32| ServiceKey {
        vip: Ipv4Addr::from(0x0a60_0000 + i),
        port: 80,
        proto: Protocol::Tcp,
    };
    // Cost of the first service: 2 members + 2 slots + 1 service entry.
    let before = lb.map_writes();
    lb.upsert_service(vip_n(1), &service(&[(be(1), 1), (be(2), 1)]))
        .unwrap();
    assert_eq!(lb.map_writes() - before, 5);
    let start = std::time::Instant::now();
    for i in 2..=2000 {
        lb.upsert_service(vip_n(i), &service(&[(be(i), 1), (be(i + 1), 1)]))
            .unwrap();
    }
    // Reported, not asserted: what a full resync of 2,000 services costs here.
    eprintln!("1,999 service upserts took {:?}", start.elapsed());
    // The 2001st costs the same as the first.
    let before = lb.map_writes();
    lb.upsert_service(vip_n(2001), &service(&[(be(1), 1), (be(2), 1)]))
        .unwrap();
    assert_eq!(lb.map_writes() - before, 5);
    // Unchanged: nothing written.
    let before = lb.map_writes();
    lb.upsert_service(vip_n(7), &service(&[(be(7), 1), (be(8), 1)]))
        .unwrap();
    assert_eq!(lb.map_writes(), before);
    // One backend replaced: its slot, one member in, one out.
    lb.upsert_service(vip_n(7), &service(&[(be(7), 1), (be(9), 1)]))
        .unwrap();
    assert_eq!(lb.map_writes() - before, 3);
    assert_eq!(lb.slot_table(&vip_n(7)).unwrap(), Some(vec![be(7), be(9)]));
    // Removal: the entry, two slots, two members.
    let before = lb.map_writes();
    lb.remove_service(&vip_n(7)).unwrap();
    assert_eq!(lb.map_writes() - before, 5);
    assert_eq!(lb.services().len(), 2000);
}

#[test]
fn a_failed_load_leaves_no_pins() {
    let pin_dir = PathBuf::from(format!(
        "/sys/fs/bpf/drover-bpf-test-{}-fail",
        std::process::id()
    ));
    let missing = cgroup2_root().join("drover-bpf-test-no-such-cgroup");
    let e = Loader::load(&pin_dir, &missing).unwrap_err();
    assert!(e.to_string().contains("opening cgroup"), "{e}");
    // A path that is a file, not a cgroup directory: attaching fails after the maps were
    // pinned, and the load removes them again.
    let not_cgroup = PathBuf::from("/proc/self/status");
    let e = Loader::load(&pin_dir, &not_cgroup).unwrap_err();
    assert!(e.to_string().contains("attaching"), "{e}");
    assert!(!pin_dir.exists(), "{} left behind", pin_dir.display());
}

#[test]
fn ipv6_sockets_reach_a_vip_v4_mapped() {
    if !netns::enter("ipv6_sockets_reach_a_vip_v4_mapped") {
        return;
    }
    let f = Fixture::new("mapped");
    let mut lb = f.load();
    let t = key(19, Protocol::Tcp);
    lb.upsert_service(t, &service(&[(tcp_backend(4), 1)]))
        .unwrap();
    let mapped = |k: &ServiceKey| {
        SocketAddr::V6(std::net::SocketAddrV6::new(
            k.vip.to_ipv6_mapped(),
            k.port,
            0,
            0,
        ))
    };
    let mut s = TcpStream::connect_timeout(&mapped(&t), TIMEOUT).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).unwrap();
    assert_eq!(b[0], 4);
    assert_eq!(
        s.peer_addr().unwrap(),
        mapped(&t),
        "getpeername shows the VIP"
    );
    let u = key(19, Protocol::Udp);
    lb.upsert_service(u, &service(&[(udp_backend(8), 1)]))
        .unwrap();
    let c = UdpSocket::bind("[::]:0").unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.send_to(b"hi", mapped(&u)).unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = c.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hi\x08");
    assert_eq!(from, mapped(&u), "the reply comes from the VIP");
    // Without backends, refused as over IPv4.
    lb.upsert_service(t, &Service::default()).unwrap();
    let e = TcpStream::connect_timeout(&mapped(&t), TIMEOUT).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
}

#[test]
fn another_build_swaps_programs_in_place_keeping_maps() {
    if !netns::enter("another_build_swaps_programs_in_place_keeping_maps") {
        return;
    }
    let f = Fixture::new("upgrade");
    let mut lb = f.load();
    let k = key(20, Protocol::Tcp);
    lb.upsert_service(k, &service(&[(tcp_backend(9), 1)]))
        .unwrap();
    drop(lb);
    let prog_pin = f.pin_dir.join("programs/drover_connect4");
    let old_id = ProgramInfo::from_pin(&prog_pin).unwrap().id();
    // Make the pins look written by another build: another object hash, same layout.
    let md = MapData::from_pin(f.pin_dir.join("maps/meta")).unwrap();
    let mut meta: Array<MapData, u64> = Array::try_from(Map::Array(md)).unwrap();
    meta.set(0, 1, 0).unwrap();
    drop(meta);
    let lb = f.load();
    assert_eq!(lb.loaded(), Loaded::Upgraded);
    assert_ne!(ProgramInfo::from_pin(&prog_pin).unwrap().id(), old_id);
    assert_eq!(lb.services(), vec![k]);
    assert_eq!(
        ask(&k).0,
        9,
        "the swapped programs translate with the kept maps"
    );
    drop(lb);
    assert_eq!(f.load().loaded(), Loaded::Reopened);
    // Another map layout: loaded afresh, the old maps dropped.
    let md = MapData::from_pin(f.pin_dir.join("maps/meta")).unwrap();
    let mut meta: Array<MapData, u64> = Array::try_from(Map::Array(md)).unwrap();
    meta.set(1, 999, 0).unwrap();
    drop(meta);
    let lb = f.load();
    assert_eq!(lb.loaded(), Loaded::Fresh);
    assert_eq!(lb.services(), vec![]);
}
