//! Services end to end with real pods: `drover up` (control plane) and `drover agent`
//! (containerd, runc, CNI, the eBPF service proxy and the node-local DNS) as separate
//! processes, kubectl as the client, inside fresh network and mount namespaces.
//!
//! The proxy's programs attach to a fresh cgroup v2 that this test process joins and
//! under which the agent creates the pods' cgroups (`--cgroup-root`), so the test's own
//! connections and the pods' are translated, and nothing outside the test is.
//!
//! One scenario, in phases: ClusterIP over TCP from the node and from a pod (by DNS
//! name); NodePort from outside the node (another namespace over a veth) and from the
//! node; UDP through the kube-dns ClusterIP (the pod's resolver); headless Service DNS;
//! ClientIP session affinity; a 90/10 TrafficSplit over real pods; a rolling update of a 3-replica Deployment while a client
//! opens connections continuously (zero failed); `kill -9` of the agent while the client
//! runs (zero failed); scaling to 0 gives connection refused, not a hang.

mod common;

/// [`common::poll_until`] with this test's guard.
async fn wait_until<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    common::poll_until(what, GUARD, f).await
}

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{Purge, Up, kubectl, ok};
use drover_node::containerd::ContainerdPaths;
use drover_testkit::cgroup::{TestCgroup, remove_tree};
use drover_testkit::free_port;

const IMAGE: &str = "localhost/busybox:latest";
/// Failure guard for waits; never a timing assertion.
const GUARD: Duration = Duration::from_secs(120);
const APPLETS: &[&str] = &[
    "sh", "sleep", "echo", "cat", "true", "mkdir", "httpd", "wget", "nslookup", "hostname",
];

#[test]
fn services_end_to_end_with_real_pods() {
    if !drover_testkit::netns::enter("services_end_to_end_with_real_pods") {
        return;
    }
    drover_testkit::init_tracing();
    let fixture = Fixture::new();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(scenario(&fixture));
}

/// The test's cgroup v2 (joined by this process; the pods' cgroups go under it in every
/// hierarchy) and BPF pin dir. Dropping it detaches the programs, moves the process back
/// and removes every cgroup left under the test's root, also when the test fails.
struct Fixture {
    name: String,
    cgroup: TestCgroup,
    pin_dir: PathBuf,
    /// A network namespace outside the node, joined to it by the veth pair
    /// `np-node` (192.168.77.1, the node's address) / `np-out` (192.168.77.2).
    outside: String,
}

/// The node's address on the link to the outside namespace.
const NODE_IP: &str = "192.168.77.1";

impl Fixture {
    fn new() -> Fixture {
        let name = format!("drover-svc-test-{}", std::process::id());
        let f = Fixture {
            cgroup: TestCgroup::new(&name, true),
            pin_dir: PathBuf::from("/sys/fs/bpf").join(&name),
            outside: format!("{name}-out"),
            name,
        };
        let ip = |args: &str| {
            drover_testkit::netns::run("ip", &args.split(' ').collect::<Vec<_>>());
        };
        ip(&format!("netns add {}", f.outside));
        ip(&format!("-n {} link set lo up", f.outside));
        ip("link add np-node type veth peer name np-out");
        ip(&format!("link set np-out netns {}", f.outside));
        ip(&format!("addr add {NODE_IP}/24 dev np-node"));
        ip("link set np-node up");
        ip(&format!(
            "-n {} addr add 192.168.77.2/24 dev np-out",
            f.outside
        ));
        ip(&format!("-n {} link set np-out up", f.outside));
        f
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // The namespace's file under /run/netns is on the host's filesystem.
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.outside])
            .status();
        let _ = drover_bpf::unpin(&self.pin_dir);
        // runc made the pods' cgroups under the test's name in the v1 hierarchies too;
        // the v2 one goes with `cgroup` (after this).
        if let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") {
            for h in hierarchies.flatten() {
                remove_tree(&h.path().join(&self.name));
            }
        }
    }
}

/// `drover agent` for this test's node.
fn spawn_agent(nats: &str, data: &Path, fixture: &Fixture) -> Up {
    let cgroup_root = format!("/{}/kubepods", fixture.name);
    Up::spawn_drover(&[
        "agent",
        "--nats",
        nats,
        "--data-dir",
        data.to_str().unwrap(),
        "--node-name",
        "node-a",
        "--proxy-cgroup",
        fixture.cgroup.path().to_str().unwrap(),
        "--bpf-pin-dir",
        fixture.pin_dir.to_str().unwrap(),
        "--cgroup-root",
        &cgroup_root,
        "--node-address",
        NODE_IP,
        "--nodeport-interfaces",
        "np-node",
    ])
}

/// One HTTP GET over a fresh connection; the body (the serving pod's hostname).
fn get(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim().to_string())
        .unwrap_or_default();
    if !out.starts_with("HTTP/1.") || !out.contains(" 200 ") || body.is_empty() {
        return Err(std::io::Error::other(format!("bad response {out:?}")));
    }
    Ok(body)
}

/// A client that opens a new connection for every request, as fast as it can, until
/// stopped; it counts answers and failures and remembers who answered.
struct Hammer {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<(BTreeSet<String>, Vec<String>)>,
}

impl Hammer {
    fn start(addr: SocketAddr) -> Hammer {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let (s, o, f) = (stop.clone(), ok.clone(), failed.clone());
        let thread = std::thread::spawn(move || {
            let mut seen = BTreeSet::new();
            let mut errors = Vec::new();
            while !s.load(Ordering::Relaxed) {
                match get(addr) {
                    Ok(who) => {
                        seen.insert(who);
                        o.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        f.fetch_add(1, Ordering::Relaxed);
                        if errors.len() < 10 {
                            errors.push(e.to_string());
                        }
                    }
                }
            }
            (seen, errors)
        });
        Hammer {
            stop,
            ok,
            failed,
            thread,
        }
    }

    /// Stops the client: (answers, failures, who answered, the first errors).
    fn stop(self) -> (u64, u64, BTreeSet<String>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let (seen, errors) = self.thread.join().unwrap();
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            seen,
            errors,
        )
    }
}

fn manifests(dir: &Path) -> PathBuf {
    let path = dir.join("web.yaml");
    std::fs::write(
        &path,
        format!(
            r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: httpd
        image: {IMAGE}
        imagePullPolicy: Never
        env: [{{name: VERSION, value: "1"}}]
        # Exits at once on SIGTERM, as most servers do (PID 1 ignores it otherwise).
        command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && trap 'exit 0' TERM && httpd -f -p 8080 -h /www & wait"]
        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe:
          tcpSocket: {{port: http}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: http}}]
---
apiVersion: v1
kind: Service
metadata:
  name: web-sticky
spec:
  selector: {{app: web}}
  sessionAffinity: ClientIP
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata:
  name: web-np
spec:
  type: NodePort
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: http}}]
---
apiVersion: v1
kind: Service
metadata:
  name: web-headless
spec:
  clusterIP: None
  selector: {{app: web}}
  ports: [{{name: http, port: 8080}}]
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: canary
spec:
  replicas: 1
  selector:
    matchLabels: {{app: canary}}
  template:
    metadata:
      labels: {{app: canary}}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
      - name: httpd
        image: {IMAGE}
        imagePullPolicy: Never
        command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe:
          tcpSocket: {{port: http}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: web-stable
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: http}}]
---
apiVersion: v1
kind: Service
metadata:
  name: web-canary
spec:
  selector: {{app: canary}}
  ports: [{{name: http, port: 80, targetPort: http}}]
---
apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["sleep", "3600"]
"#
        ),
    )
    .unwrap();
    path
}

fn vip(kc: &str, svc: &str) -> SocketAddr {
    let ip = ok(kc, &["get", "svc", svc, "-o", "jsonpath={.spec.clusterIP}"]);
    format!("{}:80", ip.trim()).parse().unwrap()
}

/// The ready pod IPs of the Deployment's pods.
fn web_pod_ips(kc: &str) -> BTreeSet<String> {
    let out = ok(
        kc,
        &[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={range .items[*]}{.status.podIP}{\"\\n\"}{end}",
        ],
    );
    out.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

async fn scenario(fixture: &Fixture) {
    let dir = tempfile::Builder::new()
        .prefix("drover-services-")
        .tempdir()
        .unwrap();
    let node_data = dir.path().join("node");
    let _purge = Purge(ContainerdPaths::new(&node_data));
    let nats_port = free_port().to_string();
    let api_port = free_port().to_string();
    let mut up = Up::spawn(&[
        "--data-dir",
        dir.path().join("cp").to_str().unwrap(),
        "--nats-port",
        &nats_port,
        "--api-port",
        &api_port,
    ]);
    let kubeconfig = up.kubeconfig().await;
    let kc = kubeconfig.as_str();
    let nats = format!("nats://127.0.0.1:{nats_port}");
    let mut agent = spawn_agent(&nats, &node_data, fixture);
    agent.wait_for("node node-a ready").await;

    // The cluster DNS Service exists at the range's tenth address.
    let dns_ip = ok(
        kc,
        &[
            "get",
            "svc",
            "-n",
            "kube-system",
            "kube-dns",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ],
    );
    assert_eq!(dns_ip, "10.96.0.10");

    let archive = common::busybox_archive(dir.path(), IMAGE, APPLETS);
    common::import_image(&archive, &node_data);

    let manifest = manifests(dir.path());
    ok(kc, &["apply", "-f", manifest.to_str().unwrap()]);
    ok(
        kc,
        &["rollout", "status", "deployment/web", "--timeout=120s"],
    );
    ok(
        kc,
        &[
            "wait",
            "--for=condition=Ready",
            "pod/client",
            "--timeout=120s",
        ],
    );

    // ClusterIP over TCP from the node: every request answered, by more than one pod.
    let web = vip(kc, "web");
    let hosts = wait_until("the web VIP answering from 3 pods", || {
        let mut hosts = BTreeSet::new();
        for _ in 0..30 {
            hosts.insert(get(web).ok()?);
        }
        (hosts.len() > 1).then_some(hosts)
    })
    .await;
    eprintln!("web VIP {web} answered by {hosts:?}");

    // From inside a pod: resolv.conf points at kube-dns; the Service's name resolves over
    // UDP through the kube-dns VIP (the node's DNS server behind it) to the VIP; a GET by
    // short name (search path) crosses the VIP over TCP.
    let resolv = ok(kc, &["exec", "client", "--", "cat", "/etc/resolv.conf"]);
    assert!(resolv.contains("nameserver 10.96.0.10"), "{resolv}");
    assert!(
        resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local"),
        "{resolv}"
    );
    assert!(resolv.contains("ndots:5"), "{resolv}");
    let looked_up = ok(
        kc,
        &[
            "exec",
            "client",
            "--",
            "nslookup",
            "web.default.svc.cluster.local",
        ],
    );
    assert!(
        looked_up.contains(&web.ip().to_string()),
        "nslookup web: {looked_up}"
    );
    let page = ok(kc, &["exec", "client", "--", "wget", "-qO-", "http://web/"]);
    assert!(
        hosts.contains(page.trim()) || page.trim().starts_with("web-"),
        "{page}"
    );

    // Headless: the name resolves to the ready pods' IPs.
    let ips = web_pod_ips(kc);
    assert_eq!(ips.len(), 3, "{ips:?}");
    let headless = ok(
        kc,
        &[
            "exec",
            "client",
            "--",
            "nslookup",
            "web-headless.default.svc.cluster.local",
        ],
    );
    for ip in &ips {
        assert!(headless.contains(ip.as_str()), "{ip} missing in {headless}");
    }

    // NodePort: from outside the node (a client in another namespace reaches the node's
    // address over a veth; TC translates), and from the node itself.
    let node_port = ok(
        kc,
        &[
            "get",
            "svc",
            "web-np",
            "-o",
            "jsonpath={.spec.ports[0].nodePort}",
        ],
    );
    let outside: SocketAddr = format!("{NODE_IP}:{}", node_port.trim()).parse().unwrap();
    // The client runs outside the node's cgroup (the socket programs would translate
    // its connect() before TC saw a packet) and inside the outside namespace.
    let outside_get = format!(
        "echo $$ > {}/cgroup.procs && exec ip netns exec {} sh -c \
         'for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do busybox wget -qO- http://{outside}/ || exit 1; done'",
        fixture.cgroup.previous().unwrap().display(),
        fixture.outside
    );
    let from_outside = wait_until("the nodePort answering from outside", || {
        let out = std::process::Command::new("sh")
            .args(["-c", &outside_get])
            .output()
            .unwrap();
        let hosts: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_string())
            .collect();
        (out.status.success() && hosts.len() > 1).then_some(hosts)
    })
    .await;
    assert!(
        from_outside.is_subset(&hosts),
        "{from_outside:?} vs {hosts:?}"
    );
    let local: SocketAddr = format!("127.0.0.1:{}", node_port.trim()).parse().unwrap();
    assert!(hosts.contains(&get(local).unwrap()));

    // ClientIP affinity: one client, one backend.
    let sticky = vip(kc, "web-sticky");
    let stuck: BTreeSet<String> = (0..20).map(|_| get(sticky).unwrap()).collect();
    assert_eq!(stuck.len(), 1, "affinity broken: {stuck:?}");

    // A 90/10 TrafficSplit of `web` between the 3 stable pods and the canary pod.
    ok(
        kc,
        &["rollout", "status", "deployment/canary", "--timeout=120s"],
    );
    let split = dir.path().join("split.yaml");
    std::fs::write(
        &split,
        "apiVersion: drover.io/v1\nkind: TrafficSplit\nmetadata:\n  name: web\nspec:\n  service: web\n  backends:\n  - {service: web-stable, weight: 90}\n  - {service: web-canary, weight: 10}\n",
    )
    .unwrap();
    ok(kc, &["apply", "-f", split.to_str().unwrap()]);
    wait_until("the canary answering through web", || {
        (0..50)
            .any(|_| get(web).is_ok_and(|h| h.starts_with("canary-")))
            .then_some(())
    })
    .await;
    const N: u32 = 10_000;
    let mut canary = 0;
    for _ in 0..N {
        if get(web).unwrap().starts_with("canary-") {
            canary += 1;
        }
    }
    let share = f64::from(canary) / f64::from(N);
    eprintln!("traffic split 90/10: canary got {canary} of {N} ({share:.3})");
    assert!((share - 0.10).abs() <= 0.03, "canary share {share}");
    ok(kc, &["delete", "trafficsplit", "web"]);
    ok(kc, &["delete", "deployment", "canary"]);

    // A rolling update while a client connects continuously: nothing fails, and the new
    // pods answer by the end.
    let hammer = Hammer::start(web);
    tokio::time::sleep(Duration::from_millis(500)).await;
    ok(kc, &["set", "env", "deployment/web", "VERSION=2"]);
    ok(
        kc,
        &["rollout", "status", "deployment/web", "--timeout=120s"],
    );
    let new_ips = wait_until("the old pods gone", || {
        let ips = web_pod_ips(kc);
        (ips.len() == 3).then_some(ips)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (answered, failed, seen, errors) = hammer.stop();
    eprintln!("rolling update: {answered} answered, {failed} failed, by {seen:?}");
    assert_eq!(
        failed, 0,
        "connections failed during the rollout: {errors:?}"
    );
    assert!(answered > 0);
    assert!(new_ips.is_disjoint(&ips), "{new_ips:?} vs {ips:?}");

    // kill -9 of the agent (its containerd dies with it; pods keep running) while the
    // client runs, then a new agent: nothing fails.
    let hammer = Hammer::start(web);
    tokio::time::sleep(Duration::from_millis(500)).await;
    agent.kill9().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut agent = spawn_agent(&nats, &node_data, fixture);
    agent.wait_for("node node-a ready").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (answered, failed, _, errors) = hammer.stop();
    eprintln!("agent kill -9: {answered} answered, {failed} failed");
    assert_eq!(
        failed, 0,
        "connections failed across the agent's death: {errors:?}"
    );
    assert!(answered > 0);

    // Scaled to zero: the VIP refuses at once instead of hanging.
    ok(kc, &["scale", "deployment/web", "--replicas=0"]);
    let err = wait_until(
        "connection refused on the empty VIP",
        || match TcpStream::connect_timeout(&web, Duration::from_secs(10)) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => Some(e),
            _ => None,
        },
    )
    .await;
    eprintln!("empty VIP: {err}");

    let (code, _, _) = kubectl(kc, &["delete", "pod", "client", "--wait=false"]);
    assert_eq!(code, 0);
    let status = agent.terminate().await;
    assert!(status.success(), "agent exit status {status}");
    let status = up.terminate().await;
    assert!(status.success(), "drover up exit status {status}");
}
