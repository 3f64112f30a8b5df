//! One run inside the fresh network namespace: N services, both proxies, all paths.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use drover_bpf::{Backend, Loader, Protocol, Service, ServiceKey};

use crate::rules::{self, Svc, Sync};
use crate::stats::{human, median_p99};
use crate::{Flavour, Opts, cgroup_root};

/// Pod IPs: 10.244.0.0/14 is a local route on `lo`, so one wildcard listener answers
/// every endpoint address (262,144 of them: 4 per service) and the reply names the
/// address the connection reached.
const POD_CIDR: &str = "10.244.0.0/14";
const POD_BASE: u32 = u32::from_be_bytes([10, 244, 0, 0]);
/// The service CIDR: blackholed (BPF phase) or routed to `lo` (iptables phase).
const SVC_CIDR: &str = "10.96.0.0/12";
const SVC_BASE: u32 = u32::from_be_bytes([10, 96, 0, 10]);
/// The client's source while the iptables rules run (on `lo`, outside the pod CIDR, so
/// kube-proxy's `! -s <cluster CIDR>` masquerade rule applies as it does for a host).
const NODE_IP: &str = "10.0.0.1";
const SERVICE_PORT: u16 = 80;
const TARGET_PORT: u16 = 8080;
const ENDPOINTS: usize = 3;
const SERVER_THREADS: usize = 8;
const ROUNDS: usize = 10;
const TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST: [u8; 16] = *b"GET / svc-bench\n";

fn pin_dir(tag: &str) -> PathBuf {
    PathBuf::from("/sys/fs/bpf").join(format!("drover-svc-bench-{tag}"))
}

fn cgroup_dir(tag: &str) -> Result<PathBuf> {
    Ok(cgroup_root()?.join(format!("drover-svc-bench-{tag}")))
}

/// Removes the pins and the cgroup of the run `tag` if they are still there (the child
/// was killed); both are gone after a normal exit.
pub fn cleanup(tag: &str) {
    let _ = drover_bpf::unpin(&pin_dir(tag));
    if let Ok(cg) = cgroup_dir(tag) {
        let _ = std::fs::remove_dir(cg);
    }
}

/// The run's cgroup and pins; dropping it detaches and unpins everything, moves the
/// process back to its old cgroup and removes the new one, also on error.
struct Fixture {
    pin_dir: PathBuf,
    cgroup: PathBuf,
    old_cgroup: PathBuf,
}

impl Fixture {
    fn new(tag: &str) -> Result<Self> {
        let own =
            std::fs::read_to_string("/proc/self/cgroup").context("reading /proc/self/cgroup")?;
        let rel = own
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .context("no cgroup v2 line in /proc/self/cgroup")?;
        let f = Fixture {
            pin_dir: pin_dir(tag),
            cgroup: cgroup_dir(tag)?,
            old_cgroup: cgroup_root()?.join(rel.trim_start_matches('/')),
        };
        std::fs::create_dir(&f.cgroup)
            .with_context(|| format!("creating cgroup {}", f.cgroup.display()))?;
        Ok(f)
    }

    /// Moves this process (all threads) into the load balancer's cgroup or out of it.
    fn inside(&self, yes: bool) -> Result<()> {
        let cg = if yes { &self.cgroup } else { &self.old_cgroup };
        std::fs::write(cg.join("cgroup.procs"), std::process::id().to_string())
            .with_context(|| format!("joining {}", cg.display()))
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = drover_bpf::unpin(&self.pin_dir);
        let _ = self.inside(false);
        let _ = std::fs::remove_dir(&self.cgroup);
    }
}

fn sh(cmd: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .with_context(|| format!("running {cmd}"))?;
    ensure!(
        out.status.success(),
        "{cmd} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

fn sysctl(key: &str, value: &str) -> Result<()> {
    let p = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::write(&p, value).with_context(|| format!("writing {p}"))
}

/// A small xorshift generator: the paths need cheap, not good, randomness.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(7, |d| d.as_nanos() as u64)
}

fn endpoint(service: usize, j: usize) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::from(POD_BASE + 1 + (service * (ENDPOINTS + 1) + j) as u32),
        TARGET_PORT,
    )
}

fn services(n: usize) -> Vec<Svc> {
    (0..n)
        .map(|i| Svc {
            name: format!("bench/svc-{i}:http"),
            vip: Ipv4Addr::from(SVC_BASE + i as u32),
            port: SERVICE_PORT,
            endpoints: (0..ENDPOINTS).map(|j| endpoint(i, j)).collect(),
        })
        .collect()
}

/// The one change the apply benchmarks make: the last endpoint of service `i` is
/// replaced (by the spare address, or back). Returns the endpoint chain that went away.
fn change(svcs: &mut [Svc], i: usize) -> String {
    let s = &mut svcs[i];
    let old = s.endpoints[ENDPOINTS - 1];
    let gone = s.sep_chain(&old);
    s.endpoints[ENDPOINTS - 1] = if old == endpoint(i, ENDPOINTS - 1) {
        endpoint(i, ENDPOINTS)
    } else {
        endpoint(i, ENDPOINTS - 1)
    };
    gone
}

fn key(s: &Svc) -> ServiceKey {
    ServiceKey {
        vip: s.vip,
        port: s.port,
        proto: Protocol::Tcp,
    }
}

fn bpf_service(s: &Svc) -> Service {
    Service {
        backends: s
            .endpoints
            .iter()
            .map(|a| Backend {
                addr: *a,
                weight: 1,
            })
            .collect(),
        affinity: None,
    }
}

/// Starts the backends: threads accepting on 0.0.0.0:8080 that read the 16-byte request,
/// answer with the 6-byte address the connection reached, and close first (so TIME_WAIT
/// stays on the server side and the client's ports are free again at once).
fn start_servers() -> Result<()> {
    let l = TcpListener::bind(("0.0.0.0", TARGET_PORT)).context("binding the backends")?;
    for _ in 0..SERVER_THREADS {
        let l = l.try_clone().context("cloning the listener")?;
        std::thread::spawn(move || {
            loop {
                let Ok((mut s, _)) = l.accept() else { continue };
                let _ = s.set_nodelay(true);
                let mut req = [0u8; REQUEST.len()];
                if s.read_exact(&mut req).is_err() {
                    continue;
                }
                let Ok(SocketAddr::V4(me)) = s.local_addr() else {
                    continue;
                };
                let mut reply = [0u8; 6];
                reply[..4].copy_from_slice(&me.ip().octets());
                reply[4..].copy_from_slice(&me.port().to_be_bytes());
                let _ = s.write_all(&reply);
            }
        });
    }
    Ok(())
}

/// One short connection: connect, request, reply. Returns the time it took and the
/// endpoint that answered.
fn one(addr: SocketAddrV4) -> Result<(Duration, SocketAddrV4)> {
    let t = Instant::now();
    let mut s = TcpStream::connect_timeout(&SocketAddr::V4(addr), TIMEOUT)
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.write_all(&REQUEST)?;
    let mut b = [0u8; 6];
    s.read_exact(&mut b)
        .with_context(|| format!("reading the reply from {addr}"))?;
    let took = t.elapsed();
    Ok((
        took,
        SocketAddrV4::new(
            Ipv4Addr::new(b[0], b[1], b[2], b[3]),
            u16::from_be_bytes([b[4], b[5]]),
        ),
    ))
}

/// What a connection goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// A random endpoint's pod IP, the client outside the LB cgroup: the physical limit.
    Direct,
    /// The same, the client inside the LB cgroup (connect4 runs and misses).
    DirectInCgroup,
    /// The VIP of the last service, translated by drover's connect4.
    BpfLast,
    /// A random service's VIP, translated by drover's connect4.
    BpfRandom,
    /// The VIP of the last service in KUBE-SERVICES, through kube-proxy's DNAT chains.
    IptLast,
    /// A random service's VIP through kube-proxy's DNAT chains.
    IptRandom,
}

impl Path {
    fn label(self) -> &'static str {
        match self {
            Path::Direct => "direct pod IP",
            Path::DirectInCgroup => "direct pod IP, client in LB cgroup",
            Path::BpfLast => "**drover VIP**, last service",
            Path::BpfRandom => "**drover VIP**, random service",
            Path::IptLast => "iptables VIP, last service",
            Path::IptRandom => "iptables VIP, random service",
        }
    }

    fn in_cgroup(self) -> bool {
        matches!(self, Path::DirectInCgroup | Path::BpfLast | Path::BpfRandom)
    }

    /// The address to connect to and the endpoints allowed to answer.
    fn pick<'a>(self, svcs: &'a [Svc], rng: &mut Rng) -> (SocketAddrV4, &'a [SocketAddrV4]) {
        let n = svcs.len();
        let s = match self {
            Path::BpfLast | Path::IptLast => &svcs[n - 1],
            _ => &svcs[rng.below(n)],
        };
        match self {
            Path::Direct | Path::DirectInCgroup => {
                let j = rng.below(s.endpoints.len());
                (s.endpoints[j], &s.endpoints[j..=j])
            }
            _ => (SocketAddrV4::new(s.vip, s.port), &s.endpoints),
        }
    }
}

/// One path's results.
struct Measured {
    path: Path,
    seq: Vec<Duration>,
    seq_wall: Duration,
    conc: Vec<Duration>,
    conc_wall: Duration,
}

fn connections(path: Path, svcs: &[Svc], count: usize, rng: &mut Rng) -> Result<Vec<Duration>> {
    let mut v = Vec::with_capacity(count);
    for _ in 0..count {
        let (addr, allowed) = path.pick(svcs, rng);
        let (took, who) = one(addr)?;
        ensure!(
            allowed.contains(&who),
            "{addr} ({path:?}) answered by {who}, not one of {allowed:?}"
        );
        v.push(took);
    }
    Ok(v)
}

/// Measures `paths` in interleaved rounds (so background load on a shared machine falls
/// on all of them alike): per round and path, `conns / ROUNDS` sequential connections,
/// then twice that spread over `concurrency` client threads.
fn measure(f: &Fixture, paths: &[Path], svcs: &[Svc], opts: &Opts) -> Result<Vec<Measured>> {
    let mut rng = Rng::new(seed());
    let mut out: Vec<Measured> = paths
        .iter()
        .map(|p| Measured {
            path: *p,
            seq: Vec::new(),
            seq_wall: Duration::ZERO,
            conc: Vec::new(),
            conc_wall: Duration::ZERO,
        })
        .collect();
    let per_round = opts.conns / ROUNDS;
    let per_thread = (2 * per_round).div_ceil(opts.concurrency);
    for round in 0..=ROUNDS {
        for m in &mut out {
            f.inside(m.path.in_cgroup())?;
            if round == 0 {
                // Warm-up: first touches of map entries, conntrack tables, listeners.
                connections(m.path, svcs, 100, &mut rng)?;
                continue;
            }
            let t = Instant::now();
            m.seq
                .extend(connections(m.path, svcs, per_round, &mut rng)?);
            m.seq_wall += t.elapsed();
            let t = Instant::now();
            let path = m.path;
            let results: Vec<Result<Vec<Duration>>> = std::thread::scope(|sc| {
                let hs: Vec<_> = (0..opts.concurrency)
                    .map(|k| {
                        let mut rng = Rng::new(seed() ^ ((k as u64 + 1) * 0x9e37_79b9));
                        sc.spawn(move || connections(path, svcs, per_thread, &mut rng))
                    })
                    .collect();
                hs.into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| bail!("a client thread panicked"))
                    })
                    .collect()
            });
            m.conc_wall += t.elapsed();
            for r in results {
                m.conc.extend(r?);
            }
        }
    }
    f.inside(true)?;
    Ok(out)
}

fn rate(count: usize, wall: Duration) -> String {
    format!("{:.0}", count as f64 / wall.as_secs_f64())
}

fn report_connections(
    n: usize,
    flavour: Flavour,
    env: &str,
    results: &mut [Measured],
    direct_median: Duration,
) {
    for m in results {
        let (med, p99) = median_p99(&mut m.seq);
        let (_, cp99) = median_p99(&mut m.conc);
        let vs = (med.as_secs_f64() / direct_median.as_secs_f64() - 1.0) * 100.0;
        println!(
            "conn\t| {n} | {} | {} | {env} | {} | {} | {vs:+.1}% | {} | {} | {} |",
            flavour.name(),
            m.path.label(),
            human(med),
            human(p99),
            rate(m.seq.len(), m.seq_wall),
            rate(m.conc.len(), m.conc_wall),
            human(cp99),
        );
    }
}

/// Runs `iptables-restore --noflush --counters` with `input`; returns how long it took
/// (start of the process to its exit, as kube-proxy waits for it).
fn restore(flavour: Flavour, input: &str) -> Result<Duration> {
    let t = Instant::now();
    let mut c = Command::new(flavour.restore())
        .args(["--noflush", "--counters"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", flavour.restore()))?;
    let mut stdin = c.stdin.take().context("restore stdin")?;
    stdin
        .write_all(input.as_bytes())
        .with_context(|| format!("writing to {}", flavour.restore()))?;
    drop(stdin);
    let out = c.wait_with_output()?;
    let took = t.elapsed();
    ensure!(
        out.status.success(),
        "{} failed ({}): {}",
        flavour.restore(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(took)
}

fn spread(v: &mut [Duration]) -> String {
    let (median, _) = median_p99(v);
    match (v.first(), v.last()) {
        (Some(lo), Some(hi)) => format!(
            "{} ({}-{}, {})",
            human(median),
            human(*lo),
            human(*hi),
            v.len()
        ),
        _ => "not run".into(),
    }
}

/// The run inside the fresh network namespace (the parent started it under `unshare
/// --net`; refuses to run anywhere else).
pub fn run(n: usize, flavour: Flavour, tag: &str, opts: &Opts) -> Result<()> {
    // A fresh namespace has only a down loopback; refuse a namespace with routes, which
    // would mean this is not the one unshare made.
    let routes = Command::new("ip").args(["-4", "route", "show"]).output()?;
    ensure!(
        routes.stdout.is_empty(),
        "not in a fresh network namespace (it has routes); run svc-bench without --child"
    );
    sh("ip", &["link", "set", "lo", "up"])?;
    sh("ip", &["route", "add", "local", POD_CIDR, "dev", "lo"])?;
    sh("ip", &["route", "add", "blackhole", SVC_CIDR])?;
    sh(
        "ip",
        &["addr", "add", &format!("{NODE_IP}/32"), "dev", "lo"],
    )?;
    sysctl("net.ipv4.ip_local_port_range", "1024 65535")?;
    sysctl("net.ipv4.tcp_tw_reuse", "1")?;
    sysctl("net.core.somaxconn", "4096")?;
    start_servers()?;

    let mut svcs = services(n);
    let f = Fixture::new(tag)?;
    f.inside(true)?;
    let mut lb = Loader::load(&f.pin_dir, &f.cgroup).context("loading the BPF programs")?;
    let t = Instant::now();
    for s in &svcs {
        lb.upsert_service(key(s), &bpf_service(s))?;
    }
    let bpf_initial = t.elapsed();
    eprintln!(
        "programmed {n} services into the BPF maps in {}",
        human(bpf_initial)
    );

    // One change at a time into the BPF maps.
    let mut rng = Rng::new(seed());
    let writes0 = lb.map_writes();
    let mut bpf_changes = Vec::with_capacity(opts.changes);
    for _ in 0..opts.changes {
        let i = rng.below(n);
        change(&mut svcs, i);
        let (k, svc) = (key(&svcs[i]), bpf_service(&svcs[i]));
        let t = Instant::now();
        lb.upsert_service(k, &svc)?;
        bpf_changes.push(t.elapsed());
    }
    let writes_per_change = (lb.map_writes() - writes0) as f64 / opts.changes as f64;

    eprintln!("measuring connections, no netfilter rules in the namespace");
    let mut clean = measure(
        &f,
        &[
            Path::Direct,
            Path::DirectInCgroup,
            Path::BpfLast,
            Path::BpfRandom,
        ],
        &svcs,
        opts,
    )?;
    let direct = median_p99(&mut clean[0].seq).0;
    report_connections(n, flavour, "none", &mut clean, direct);

    // kube-proxy's rules for the same services. A blackholed VIP fails in connect()
    // before netfilter's OUTPUT hook, so the VIPs now route to `lo` (this kernel has no
    // dummy or veth devices): DNAT in OUTPUT re-routes translated packets to the pods,
    // and an untranslated one comes back in on `lo`, is not local and is dropped
    // (forwarding is off in a fresh namespace).
    sh("ip", &["route", "del", "blackhole", SVC_CIDR])?;
    sh(
        "ip",
        &["route", "add", SVC_CIDR, "dev", "lo", "src", NODE_IP],
    )?;
    let input = rules::restore_input(&svcs, POD_CIDR, Sync::Initial);
    let nat_rules = input
        .split("*nat\n")
        .nth(1)
        .map_or(0, |t| t.lines().filter(|l| l.starts_with("-A ")).count());
    eprintln!(
        "loading {nat_rules} nat rules ({} MB) with {}",
        input.len() / 1_000_000,
        flavour.restore()
    );
    let ipt_initial = restore(flavour, &input)?;
    drop(input);
    eprintln!("first load took {}", human(ipt_initial));

    let full_reps = match (opts.full_reps, n) {
        (0, ..=2_000) => 10,
        (0, ..=20_000) => 3,
        (0, _) => 1,
        (r, _) => r,
    };
    let partial_reps = full_reps * 2;
    let mut full = Vec::new();
    let mut partial = Vec::new();
    for rep in 0..full_reps + partial_reps {
        let i = rng.below(n);
        let gone = [change(&mut svcs, i)];
        // Keep the BPF maps on the same endpoints (untimed), so every path is checked
        // against one model.
        lb.upsert_service(key(&svcs[i]), &bpf_service(&svcs[i]))?;
        if rep < full_reps {
            let input = rules::restore_input(&svcs, POD_CIDR, Sync::Full { deleted: &gone });
            full.push(restore(flavour, &input)?);
        } else {
            let input = rules::restore_input(
                &svcs,
                POD_CIDR,
                Sync::Partial {
                    changed: &[i],
                    deleted: &gone,
                },
            );
            partial.push(restore(flavour, &input)?);
        }
    }
    eprintln!(
        "full restore {}, partial {}",
        spread(&mut full),
        spread(&mut partial)
    );

    eprintln!("measuring connections, kube-proxy rules loaded");
    let mut loaded = measure(
        &f,
        &[
            Path::Direct,
            Path::DirectInCgroup,
            Path::BpfLast,
            Path::BpfRandom,
            Path::IptLast,
            Path::IptRandom,
        ],
        &svcs,
        opts,
    )?;
    report_connections(
        n,
        flavour,
        "kube-proxy rules, conntrack",
        &mut loaded,
        direct,
    );

    let (bmed, bp99) = median_p99(&mut bpf_changes);
    println!(
        "apply\t| {n} | {} | {} | {} | {writes_per_change:.1} | {} | {} | {} | {} | {nat_rules} |",
        flavour.name(),
        human(bmed),
        human(bp99),
        spread(&mut full),
        spread(&mut partial),
        human(bpf_initial),
        human(ipt_initial),
    );
    lb.unload().context("unloading the BPF programs")?;
    drop(f);
    if pin_dir(tag).exists() {
        bail!("pins left under {}", pin_dir(tag).display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_swaps_the_last_endpoint_and_back() {
        let mut s = services(3);
        let before = s[1].clone();
        let gone = change(&mut s, 1);
        assert_eq!(gone, before.sep_chain(&endpoint(1, 2)));
        assert_eq!(
            s[1].endpoints,
            vec![endpoint(1, 0), endpoint(1, 1), endpoint(1, 3)]
        );
        let gone = change(&mut s, 1);
        assert_eq!(gone, before.sep_chain(&endpoint(1, 3)));
        assert_eq!(s[1], before);
        assert_eq!(s[0], services(3)[0], "other services untouched");
    }

    #[test]
    fn addresses_stay_in_their_ranges_at_the_largest_count() {
        let s = services(60_000);
        let last = s.last().unwrap();
        assert_eq!(last.vip, Ipv4Addr::new(10, 96, 234, 105));
        // The spare endpoint of the last service is inside 10.244.0.0/14.
        assert_eq!(*endpoint(59_999, 3).ip(), Ipv4Addr::new(10, 247, 169, 128));
    }
}
