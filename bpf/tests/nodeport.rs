//! NodePort with real BPF. Each test runs in a fresh network namespace
//! (`drover_testkit::netns::enter`), which plays the node. For traffic from outside, two
//! more namespaces hang off it by veth pairs: a client at 192.168.77.2 reaching the
//! node's external interface `np-ext` (192.168.77.1), and a "pod" namespace behind
//! `np-pod` holding the backends at 10.244.1.2 and 10.244.1.3, routed through the node
//! (which forwards). The tcx programs run on `np-ext` only; the cgroup programs are
//! attached to a cgroup nobody is in, so only TC translates. For traffic from the node,
//! the test process joins the cgroup. Needs root.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use aya::maps::{Array, Map, MapData};
use aya::programs::ProgramInfo;
use drover_bpf::{Backend, Loaded, Loader, Protocol, Service, ServiceKey};
use drover_testkit::netns;

const TIMEOUT: Duration = Duration::from_secs(5);
const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 2);
const POD_A: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
const POD_B: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 3);
const NODE_PORT: u16 = 30080;

fn cgroup_root() -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    mounts
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2] == "cgroup2")
        .map(|f| PathBuf::from(f[1]))
        .expect("a cgroup2 mount (the BPF tests attach to a cgroup v2)")
}

/// The test's cgroup, pin directory and extra network namespaces; dropping it detaches
/// and unpins everything (tcx links included), deletes the namespaces (their veths go
/// with them), moves the process back to its old cgroup and removes the new one, also
/// on failure.
struct Fixture {
    pin_dir: PathBuf,
    cgroup: PathBuf,
    old_cgroup: Option<PathBuf>,
    namespaces: Vec<String>,
}

impl Fixture {
    /// `join`: whether the test process joins the cgroup (its sockets get translated).
    fn new(name: &str, join: bool) -> Fixture {
        let unique = format!("drover-np-test-{}-{name}", std::process::id());
        let pin_dir = PathBuf::from("/sys/fs/bpf").join(&unique);
        let cgroup = cgroup_root().join(&unique);
        std::fs::create_dir(&cgroup).unwrap();
        let mut f = Fixture {
            pin_dir,
            cgroup,
            old_cgroup: None,
            namespaces: Vec::new(),
        };
        if join {
            let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
            let rel = own
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .expect("a cgroup v2 line in /proc/self/cgroup");
            f.old_cgroup = Some(cgroup_root().join(rel.trim_start_matches('/')));
            join_cgroup(&f.cgroup);
        }
        f
    }

    fn load(&self) -> Loader {
        Loader::load(&self.pin_dir, &self.cgroup).unwrap()
    }

    /// Adds a named network namespace (deleted on drop) with loopback up.
    fn netns(&mut self, tag: &str) -> String {
        let name = format!("drover-np-{}-{tag}", std::process::id());
        netns::run("ip", &["netns", "add", &name]);
        self.namespaces.push(name.clone());
        netns::run("ip", &["-n", &name, "link", "set", "lo", "up"]);
        name
    }

    /// The client and pod namespaces and their veths; returns (client, pod) names.
    fn outside(&mut self) -> (String, String) {
        let client = self.netns("client");
        let pod = self.netns("pod");
        let sh = |args: &str| netns::run("ip", &args.split(' ').collect::<Vec<_>>());
        sh("link add np-ext type veth peer name np-ext-c");
        sh(&format!("link set np-ext-c netns {client}"));
        sh("addr add 192.168.77.1/24 dev np-ext");
        sh("link set np-ext up");
        sh(&format!(
            "-n {client} addr add 192.168.77.2/24 dev np-ext-c"
        ));
        sh(&format!("-n {client} link set np-ext-c up"));
        sh("link add np-pod type veth peer name np-pod-p");
        sh(&format!("link set np-pod-p netns {pod}"));
        sh("addr add 10.244.1.1/24 dev np-pod");
        sh("link set np-pod up");
        sh(&format!("-n {pod} addr add 10.244.1.2/24 dev np-pod-p"));
        sh(&format!("-n {pod} addr add 10.244.1.3/24 dev np-pod-p"));
        sh(&format!("-n {pod} link set np-pod-p up"));
        sh(&format!("-n {pod} route add default via 10.244.1.1"));
        // The node forwards between the client side and the pods (this namespace only).
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").unwrap();
        (client, pod)
    }
}

fn join_cgroup(cgroup: &std::path::Path) {
    std::fs::write(cgroup.join("cgroup.procs"), std::process::id().to_string()).unwrap();
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = drover_bpf::unpin(&self.pin_dir);
        for ns in &self.namespaces {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", ns])
                .status();
        }
        if let Some(old) = &self.old_cgroup {
            join_cgroup(old);
        }
        let _ = std::fs::remove_dir(&self.cgroup);
    }
}

/// Runs `f` on a thread inside the named network namespace (setns moves that thread
/// only) and returns its result.
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = File::open(&path).unwrap();
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap()
}

/// A TCP server at `addr` (in namespace `ns`, or here) that greets each connection with
/// its one-byte id and the client address it sees, then echoes what it reads.
fn tcp_backend(ns: Option<&str>, addr: SocketAddrV4, id: u8) {
    let bind = move || TcpListener::bind(addr).unwrap();
    let l = match ns {
        Some(ns) => in_netns(ns, bind),
        None => bind(),
    };
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let IpAddr::V4(peer) = s.peer_addr().unwrap().ip() else {
                    return;
                };
                let mut hello = vec![id];
                hello.extend_from_slice(&peer.octets());
                if s.write_all(&hello).is_err() {
                    return;
                }
                let mut buf = [0u8; 256];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
}

/// A UDP server at `addr` (in namespace `ns`, or here) that echoes each datagram with
/// its id appended.
fn udp_backend(ns: Option<&str>, addr: SocketAddrV4, id: u8) {
    let bind = move || UdpSocket::bind(addr).unwrap();
    let s = match ns {
        Some(ns) => in_netns(ns, bind),
        None => bind(),
    };
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            buf[n] = id;
            let _ = s.send_to(&buf[..=n], from);
        }
    });
}

fn service(backends: &[SocketAddrV4]) -> Service {
    Service {
        backends: backends
            .iter()
            .map(|addr| Backend {
                addr: *addr,
                weight: 1,
            })
            .collect(),
        affinity: None,
    }
}

fn node_port() -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(NODE_IP, NODE_PORT))
}

/// From the current namespace: connects to `to`, returns the greeting (backend id, the
/// client address the backend saw) and the open stream.
fn hello(to: SocketAddr) -> std::io::Result<(u8, Ipv4Addr, TcpStream)> {
    let mut s = TcpStream::connect_timeout(&to, TIMEOUT)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    let mut b = [0u8; 5];
    s.read_exact(&mut b)?;
    Ok((b[0], Ipv4Addr::new(b[1], b[2], b[3], b[4]), s))
}

/// Sends `rounds` messages over one connection, each echoed back whole.
fn echo_rounds(s: &mut TcpStream, rounds: usize) {
    for i in 0..rounds {
        let msg = format!("message {i}");
        s.write_all(msg.as_bytes()).unwrap();
        let mut back = vec![0u8; msg.len()];
        s.read_exact(&mut back).unwrap();
        assert_eq!(back, msg.as_bytes());
    }
}

#[test]
fn nodeport_from_outside_reaches_pods_and_replies_from_the_node() {
    if !netns::enter("nodeport_from_outside_reaches_pods_and_replies_from_the_node") {
        return;
    }
    let mut f = Fixture::new("outside", false);
    let (client, pod) = f.outside();
    let (a, b) = (
        SocketAddrV4::new(POD_A, 8080),
        SocketAddrV4::new(POD_B, 8080),
    );
    tcp_backend(Some(&pod), a, 0);
    tcp_backend(Some(&pod), b, 1);
    udp_backend(Some(&pod), SocketAddrV4::new(POD_A, 5353), 7);
    udp_backend(Some(&pod), SocketAddrV4::new(POD_B, 5353), 8);
    let mut lb = f.load();
    lb.set_node_ips(&BTreeSet::from([NODE_IP])).unwrap();
    lb.attach_nodeport(&["np-ext".to_string()]).unwrap();
    let tcp = ServiceKey::node_port(NODE_PORT, Protocol::Tcp);
    let udp = ServiceKey::node_port(NODE_PORT, Protocol::Udp);
    lb.upsert_service(tcp, &service(&[a, b])).unwrap();
    lb.upsert_service(
        udp,
        &service(&[
            SocketAddrV4::new(POD_A, 5353),
            SocketAddrV4::new(POD_B, 5353),
        ]),
    )
    .unwrap();

    // TCP: the handshake completes only if the SYN-ACK comes from node:nodePort; the
    // backends see the client's own address (no SNAT); connections spread over both;
    // every packet of one connection reaches the same backend (many round trips).
    let seen = in_netns(&client, || {
        let mut seen = [0u32; 2];
        for _ in 0..48 {
            let (id, saw, mut s) = hello(node_port()).unwrap();
            assert_eq!(saw, CLIENT_IP, "the backend sees the client's address");
            echo_rounds(&mut s, 3);
            seen[id as usize] += 1;
        }
        seen
    });
    assert!(seen[0] > 0 && seen[1] > 0, "both backends answer: {seen:?}");

    // UDP: the reply comes from node:nodePort; one client socket stays on one backend.
    in_netns(&client, || {
        let c = UdpSocket::bind("0.0.0.0:0").unwrap();
        c.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut ids = BTreeSet::new();
        for i in 0..20u8 {
            c.send_to(&[i], node_port()).unwrap();
            let mut buf = [0u8; 8];
            let (n, from) = c.recv_from(&mut buf).unwrap();
            assert_eq!(from, node_port(), "the reply comes from the node port");
            assert_eq!(n, 2);
            assert_eq!(buf[0], i);
            ids.insert(buf[1]);
        }
        assert_eq!(ids.len(), 1, "one UDP flow, one backend: {ids:?}");
    });

    // An agent restart: no loader for a while, then the pins re-opened; an open
    // connection keeps working throughout and attaching again changes nothing.
    let mut open = in_netns(&client, || hello(node_port()).unwrap().2);
    drop(lb);
    let mut lb = f.load();
    assert_eq!(lb.loaded(), Loaded::Reopened);
    lb.attach_nodeport(&["np-ext".to_string()]).unwrap();
    assert_eq!(lb.nodeport_interfaces().unwrap().len(), 1);
    open = in_netns(&client, move || {
        echo_rounds(&mut open, 3);
        open
    });

    // A newer build: the tcx links stay and run its programs (swapped in place); the
    // open connection and its flow entries survive that too.
    let ingress_pin = f.pin_dir.join("programs/drover_nodeport_ingress");
    let old_id = ProgramInfo::from_pin(&ingress_pin).unwrap().id();
    let md = MapData::from_pin(f.pin_dir.join("maps/meta")).unwrap();
    let mut meta: Array<MapData, u64> = Array::try_from(Map::Array(md)).unwrap();
    meta.set(0, 1, 0).unwrap();
    drop((meta, lb));
    let mut lb = f.load();
    assert_eq!(lb.loaded(), Loaded::Upgraded);
    let new_id = ProgramInfo::from_pin(&ingress_pin).unwrap().id();
    assert_ne!(new_id, old_id);
    let running = |id: u32| {
        aya::programs::loaded_links()
            .filter_map(Result::ok)
            .filter(|l| l.prog_id == id)
            .count()
    };
    assert_eq!((running(old_id), running(new_id)), (0, 1));
    open = in_netns(&client, move || {
        echo_rounds(&mut open, 3);
        open
    });
    drop(open);

    // The service goes: packets are no longer translated (the node itself refuses).
    lb.remove_service(&tcp).unwrap();
    let e = in_netns(&client, || hello(node_port()).unwrap_err());
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");

    // Back, then the interface is no longer named: detached, refused again.
    lb.upsert_service(tcp, &service(&[a])).unwrap();
    assert_eq!(in_netns(&client, || hello(node_port()).unwrap().0), 0);
    lb.attach_nodeport(&[]).unwrap();
    assert!(lb.nodeport_interfaces().unwrap().is_empty());
    let e = in_netns(&client, || hello(node_port()).unwrap_err());
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");

    // Unknown interfaces are an error naming them.
    let e = lb.attach_nodeport(&["np-nosuch".to_string()]).unwrap_err();
    assert!(e.to_string().contains("np-nosuch"), "{e}");
    lb.unload().unwrap();
    assert!(!f.pin_dir.exists());
}

#[test]
fn nodeport_from_the_node_and_localhost_but_not_a_pods_localhost() {
    if !netns::enter("nodeport_from_the_node_and_localhost_but_not_a_pods_localhost") {
        return;
    }
    let mut f = Fixture::new("local", true);
    let pod = f.netns("pod");
    netns::run("ip", &["addr", "add", "192.168.78.1/32", "dev", "lo"]);
    let node_ip = Ipv4Addr::new(192, 168, 78, 1);
    let be = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9090);
    tcp_backend(None, be, 4);
    udp_backend(None, be, 5);
    let mut lb = f.load();
    lb.set_node_ips(&BTreeSet::from([node_ip])).unwrap();
    assert_eq!(lb.node_ips().unwrap(), BTreeSet::from([node_ip]));
    let tcp = ServiceKey::node_port(NODE_PORT, Protocol::Tcp);
    lb.upsert_service(tcp, &service(&[be])).unwrap();
    lb.upsert_service(
        ServiceKey::node_port(NODE_PORT, Protocol::Udp),
        &service(&[be]),
    )
    .unwrap();

    // The node's address: translated; getpeername shows what was dialled.
    let at_node = SocketAddr::V4(SocketAddrV4::new(node_ip, NODE_PORT));
    let (id, _, s) = hello(at_node).unwrap();
    assert_eq!(id, 4);
    assert_eq!(s.peer_addr().unwrap(), at_node);
    // UDP, unconnected: the reply comes from the node address and nodePort.
    let c = UdpSocket::bind("0.0.0.0:0").unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.send_to(b"u", at_node).unwrap();
    let mut buf = [0u8; 8];
    let (n, from) = c.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"u\x05"[..], at_node));
    // Localhost from the host's namespace, as kube-proxy allows for IPv4.
    let local = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, NODE_PORT));
    assert_eq!(hello(local).unwrap().0, 4);
    // A pod's localhost is its own: not translated (nothing listens there: refused).
    let e = in_netns(&pod, move || hello(local).unwrap_err());
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
    // An address that is not the node's: not translated.
    lb.set_node_ips(&BTreeSet::new()).unwrap();
    let e = hello(at_node).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
    // Setting the same addresses again writes nothing.
    let before = lb.map_writes();
    lb.set_node_ips(&BTreeSet::new()).unwrap();
    assert_eq!(lb.map_writes(), before);
}

/// One packet for the checksum table: addresses, ports, protocol and header shape.
#[derive(Clone, Copy)]
struct Pkt {
    proto: u8,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    /// Four bytes of IP options (IHL 6).
    options: bool,
    /// A non-first fragment (offset 8 bytes).
    fragment: bool,
    /// UDP sent without a checksum (0).
    no_udp_csum: bool,
}

fn sum16(data: &[u8], mut acc: u32) -> u32 {
    for c in data.chunks(2) {
        acc += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

fn pseudo(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> u32 {
    let mut p = Vec::new();
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&[0, proto]);
    p.extend_from_slice(&(len as u16).to_be_bytes());
    sum16(&p, 0)
}

/// An Ethernet frame carrying `p` with correct IP and TCP/UDP checksums.
fn frame(p: Pkt) -> Vec<u8> {
    let payload = b"drover nodeport checksum probe";
    let mut l4 = Vec::new();
    l4.extend_from_slice(&p.src.port().to_be_bytes());
    l4.extend_from_slice(&p.dst.port().to_be_bytes());
    if p.proto == 6 {
        l4.extend_from_slice(&0x1234_5678u32.to_be_bytes()); // seq
        l4.extend_from_slice(&0u32.to_be_bytes()); // ack
        l4.extend_from_slice(&[5 << 4, 0x02, 0xff, 0xff, 0, 0, 0, 0]); // SYN, csum, urg
    } else {
        l4.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        l4.extend_from_slice(&[0, 0]);
    }
    l4.extend_from_slice(payload);
    let csum_at = if p.proto == 6 { 16 } else { 6 };
    if !(p.proto == 17 && p.no_udp_csum) {
        let c = !fold(sum16(
            &l4,
            pseudo(*p.src.ip(), *p.dst.ip(), p.proto, l4.len()),
        ));
        l4[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
    }
    let ihl = if p.options { 6 } else { 5 };
    let mut ip = vec![0x40 | ihl, 0];
    ip.extend_from_slice(&((ihl as usize * 4 + l4.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 1]); // id
    ip.extend_from_slice(&(if p.fragment { 1u16 } else { 0x4000 }).to_be_bytes());
    ip.extend_from_slice(&[64, p.proto, 0, 0]);
    ip.extend_from_slice(&p.src.ip().octets());
    ip.extend_from_slice(&p.dst.ip().octets());
    if p.options {
        ip.extend_from_slice(&[1, 1, 1, 0]); // NOP NOP NOP EOL
    }
    let c = !fold(sum16(&ip, 0));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
    f.extend_from_slice(&ip);
    f.extend_from_slice(&l4);
    f
}

/// Reads a frame back: (src, dst, IP checksum valid, L4 checksum valid or absent,
/// the L4 checksum field).
fn read_frame(f: &[u8]) -> (SocketAddrV4, SocketAddrV4, bool, bool, u16) {
    let ip = &f[14..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let ip_ok = fold(sum16(&ip[..ihl], 0)) == 0xffff;
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let l4 = &ip[ihl..total];
    let port = |i: usize| u16::from_be_bytes([l4[i], l4[i + 1]]);
    let csum_at = if ip[9] == 6 { 16 } else { 6 };
    let field = port(csum_at);
    let l4_ok =
        (ip[9] == 17 && field == 0) || fold(sum16(l4, pseudo(src, dst, ip[9], l4.len()))) == 0xffff;
    (
        SocketAddrV4::new(src, port(0)),
        SocketAddrV4::new(dst, port(2)),
        ip_ok,
        l4_ok,
        field,
    )
}

/// Runs one packet through a program and checks the verdict, the addresses after it
/// and that both checksums are valid (a zero UDP checksum must stay zero).
fn check_rewrite(
    lb: &Loader,
    what: &str,
    ingress: bool,
    p: Pkt,
    verdict: i32,
    want: (SocketAddrV4, SocketAddrV4),
) {
    let (got_verdict, out) = lb.run_nodeport_program(ingress, &frame(p)).unwrap();
    assert_eq!(got_verdict, verdict, "{what}: verdict");
    let (src, dst, ip_ok, l4_ok, field) = read_frame(&out);
    assert_eq!((src, dst), want, "{what}: addresses");
    assert!(ip_ok, "{what}: IP checksum");
    assert!(l4_ok, "{what}: TCP/UDP checksum");
    if p.no_udp_csum {
        assert_eq!(field, 0, "{what}: a UDP packet without checksum keeps none");
    }
}

/// What the case shows, ingress (else egress), the packet, the verdict, (src, dst) after.
type Case = (&'static str, bool, Pkt, i32, (SocketAddrV4, SocketAddrV4));

#[test]
fn rewritten_packets_have_valid_checksums() {
    if !netns::enter("rewritten_packets_have_valid_checksums") {
        return;
    }
    let f = Fixture::new("csum", false);
    let mut lb = f.load();
    lb.set_node_ips(&BTreeSet::from([NODE_IP])).unwrap();
    let be = SocketAddrV4::new(POD_A, 8080);
    for proto in [Protocol::Tcp, Protocol::Udp] {
        lb.upsert_service(ServiceKey::node_port(NODE_PORT, proto), &service(&[be]))
            .unwrap();
    }
    let client = SocketAddrV4::new(CLIENT_IP, 40000);
    let node = SocketAddrV4::new(NODE_IP, NODE_PORT);
    let plain = Pkt {
        proto: 6,
        src: client,
        dst: node,
        options: false,
        fragment: false,
        no_udp_csum: false,
    };
    let (next, drop) = (-1, 2);
    let cases: Vec<Case> = vec![
        (
            "TCP to the node port: DNAT",
            true,
            plain,
            next,
            (client, be),
        ),
        (
            "the backend's TCP reply: source back to the node port",
            false,
            Pkt {
                src: be,
                dst: client,
                ..plain
            },
            next,
            (node, client),
        ),
        (
            "UDP with a checksum",
            true,
            Pkt { proto: 17, ..plain },
            next,
            (client, be),
        ),
        (
            "UDP reply",
            false,
            Pkt {
                proto: 17,
                src: be,
                dst: client,
                ..plain
            },
            next,
            (node, client),
        ),
        (
            "UDP without a checksum keeps none",
            true,
            Pkt {
                proto: 17,
                no_udp_csum: true,
                src: SocketAddrV4::new(CLIENT_IP, 40001),
                ..plain
            },
            next,
            (SocketAddrV4::new(CLIENT_IP, 40001), be),
        ),
        (
            "IP options: the ports are found after them",
            true,
            Pkt {
                options: true,
                src: SocketAddrV4::new(CLIENT_IP, 40002),
                ..plain
            },
            next,
            (SocketAddrV4::new(CLIENT_IP, 40002), be),
        ),
        (
            "a fragment is left alone",
            true,
            Pkt {
                fragment: true,
                ..plain
            },
            next,
            (client, node),
        ),
        (
            "another port is left alone",
            true,
            Pkt {
                dst: SocketAddrV4::new(NODE_IP, 30081),
                ..plain
            },
            next,
            (client, SocketAddrV4::new(NODE_IP, 30081)),
        ),
        (
            "another address is left alone",
            true,
            Pkt {
                dst: SocketAddrV4::new(CLIENT_IP, NODE_PORT),
                ..plain
            },
            next,
            (client, SocketAddrV4::new(CLIENT_IP, NODE_PORT)),
        ),
        (
            "a reply of no known flow is left alone",
            false,
            Pkt {
                src: be,
                dst: SocketAddrV4::new(CLIENT_IP, 49999),
                ..plain
            },
            next,
            (be, SocketAddrV4::new(CLIENT_IP, 49999)),
        ),
    ];
    for (what, ingress, p, verdict, want) in cases {
        check_rewrite(&lb, what, ingress, p, verdict, want);
    }
    // An external-only entry (externalTrafficPolicy Local) wins for packets from
    // outside; without it they use the nodePort entry again.
    let local = SocketAddrV4::new(POD_B, 8080);
    let external = ServiceKey::node_port_external(NODE_PORT, Protocol::Tcp);
    lb.upsert_service(external, &service(&[local])).unwrap();
    let from = SocketAddrV4::new(CLIENT_IP, 40010);
    let p = Pkt { src: from, ..plain };
    check_rewrite(&lb, "external-only entry", true, p, next, (from, local));
    lb.remove_service(&external).unwrap();
    let from = SocketAddrV4::new(CLIENT_IP, 40011);
    let p = Pkt { src: from, ..plain };
    check_rewrite(&lb, "external-only entry gone", true, p, next, (from, be));
    // A node port without a ready endpoint drops (nothing to rewrite to).
    lb.upsert_service(
        ServiceKey::node_port(NODE_PORT, Protocol::Tcp),
        &Service::default(),
    )
    .unwrap();
    let other = Pkt {
        src: SocketAddrV4::new(CLIENT_IP, 40003),
        ..plain
    };
    let (verdict, _) = lb.run_nodeport_program(true, &frame(other)).unwrap();
    assert_eq!(verdict, drop, "no endpoints: dropped");
}
