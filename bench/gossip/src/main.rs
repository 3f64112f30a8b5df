//! gossip-bench: how fast a crashed member is declared down, and how many live members are
//! declared down under loss, for drover's membership (foca) and for HashiCorp Serf, all on
//! 127.0.0.1. Not a test; `scripts/bench-gossip` runs it and BENCHMARKS.md has the results.
//!
//! Usage: `gossip-bench drover <n> <trials>`, `gossip-bench loss <n> <seconds> <p>`,
//! `gossip-bench serf <n> <trials>`.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use drover_membership::{MemberEvent, MemberState, Membership, MembershipConfig, Profile, timing};
use tokio::time::{Instant, timeout};

use drover_testkit::stats::{percentile, secs};

/// Bounds every wait; reaching it is reported, not hidden.
const CONVERGE: Duration = Duration::from_secs(300);
const DETECT: Duration = Duration::from_secs(120);

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: u64| -> Result<u64> {
        args.get(i)
            .map_or(Ok(default), |s| s.parse().context("numeric argument"))
    };
    let rt = tokio::runtime::Runtime::new()?;
    match args.first().map(String::as_str) {
        Some("drover") => {
            let loss: f64 = args.get(3).map_or(Ok(0.0), |s| s.parse())?;
            rt.block_on(drover_detection(
                num(1, 100)? as usize,
                num(2, 20)? as usize,
                loss,
            ))
        }
        Some("loss") => {
            let p: f64 = args.get(3).map_or(Ok(0.05), |s| s.parse())?;
            rt.block_on(drover_loss(num(1, 100)? as usize, num(2, 60)?, p))
        }
        Some("serf") => {
            let loss: f64 = args.get(3).map_or(Ok(0.0), |s| s.parse())?;
            serf_detection(
                num(1, 100)? as usize,
                num(2, 5)? as usize,
                loss,
                num(4, 60)?,
            )
        }
        _ => bail!(
            "usage: gossip-bench drover <n> <trials> [loss] | loss <n> <seconds> [p] | serf <n> <trials> [loss] [seconds]"
        ),
    }
}

/// A tiny deterministic generator (xorshift) for picking victims; no dependency needed.
struct Pick(u64);
impl Pick {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// `timing(n, Fast)`, with any of `PROBE_MS`, `RTT_MS`, `SUSPECT_MS`, `GOSSIP_MS` from the
/// environment overriding its field: how candidate timings were compared.
fn bench_timing(n: usize) -> drover_membership::timing::Config {
    let ms = |var: &str| {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_millis)
    };
    let mut t = timing(n as u32, Profile::Fast);
    if let Some(d) = ms("PROBE_MS") {
        t.probe_period = d;
    }
    if let Some(d) = ms("RTT_MS") {
        t.probe_rtt = d;
    }
    if let Some(d) = ms("SUSPECT_MS") {
        t.suspect_to_down_after = d;
    }
    if let (Some(d), Some(g)) = (ms("GOSSIP_MS"), t.periodic_gossip.as_mut()) {
        g.frequency = d;
    }
    t
}

fn member_config(i: usize, n: usize, seeds: Vec<SocketAddr>, loss: f64) -> MembershipConfig {
    MembershipConfig {
        seeds,
        timing: bench_timing(n),
        drop_outgoing: loss,
        ..MembershipConfig::new(format!("n{i}"), loopback())
    }
}

fn describe(t: &drover_membership::timing::Config) -> String {
    format!(
        "probe {:?} rtt {:?} suspicion {:?} gossip {:?} max_tx {}",
        t.probe_period,
        t.probe_rtt,
        t.suspect_to_down_after,
        t.periodic_gossip.as_ref().map(|g| g.frequency),
        t.max_transmissions
    )
}

/// How many members join at once; each wave joins a converged cluster.
fn wave_size() -> usize {
    std::env::var("WAVE")
        .ok()
        .and_then(|w| w.parse().ok())
        .filter(|w| *w > 0)
        .unwrap_or(100)
}

/// Up to three distinct random running members among the first `among`, as seeds.
fn pick_seeds(members: &[Option<Membership>], among: usize, pick: &mut Pick) -> Vec<SocketAddr> {
    let mut seeds = Vec::new();
    for _ in 0..8 {
        if seeds.len() == 3 {
            break;
        }
        if let Some(m) = &members[pick.below(among)]
            && !seeds.contains(&m.addr())
        {
            seeds.push(m.addr());
        }
    }
    seeds
}

/// Starts `n` members in waves of [`wave_size`]: member 0 first, then each wave's members
/// joining through three random members of the cluster so far, which converges before the
/// next wave starts (so every newcomer's seeds know the whole cluster and its sync brings
/// all of it). One seed for all would make that member answer every join. The cluster
/// forms without loss; [`start_loss`] starts it afterwards.
async fn start_cluster(n: usize) -> Result<Vec<Option<Membership>>> {
    let started = Instant::now();
    let mut members: Vec<Option<Membership>> = Vec::with_capacity(n);
    members.push(Some(
        Membership::start(member_config(0, n, Vec::new(), 0.0)).await?,
    ));
    let mut pick = Pick(0x2545_f491_4f6c_dd1d);
    let wave = wave_size();
    while members.len() < n {
        let before = members.len();
        let upto = usize::min(n, before + wave);
        for i in before..upto {
            let seeds = pick_seeds(&members, before, &mut pick);
            members.push(Some(
                Membership::start(member_config(i, n, seeds, 0.0)).await?,
            ));
        }
        converge(&members, upto).await?;
        println!(
            "  {upto} members converged at {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(members)
}

/// Every running member drops `p` of what it sends from now on. Clusters form without
/// loss: under loss, "every member sees every other alive at once", the start signal, is
/// rarely true of a large cluster (a few probes a second fail somewhere and are refuted).
async fn start_loss(members: &[Option<Membership>], p: f64) -> Result<()> {
    for m in members.iter().flatten() {
        m.set_drop_outgoing(p).await?;
    }
    Ok(())
}

/// Waits until every running member sees `n` alive members.
async fn converge(members: &[Option<Membership>], n: usize) -> Result<Duration> {
    let started = Instant::now();
    let debug = std::env::var("DEBUG_CONVERGE").is_ok();
    for m in members.iter().flatten() {
        let mut watch = m.watch();
        let alive = |v: &std::sync::Arc<Vec<drover_membership::Member>>| {
            v.iter().filter(|m| m.state == MemberState::Alive).count() == n
        };
        if debug
            && timeout(Duration::from_secs(1), watch.wait_for(alive))
                .await
                .is_err()
        {
            let v = m.members();
            let names: Vec<_> = v
                .iter()
                .filter(|x| x.state != MemberState::Alive)
                .map(|x| format!("{}:{:?}", x.name, x.state))
                .collect();
            println!(
                "    slow: {} {:?} sees {} (alive {}), not alive {names:?}",
                m.identity().name,
                m.stats(),
                v.len(),
                v.iter().filter(|x| x.state == MemberState::Alive).count()
            );
            // Who knows whom: a member nobody knows never announced; one most know
            // missed the gossip on the few that do not.
            let views: Vec<Vec<std::sync::Arc<str>>> = members
                .iter()
                .flatten()
                .map(|x| x.members().into_iter().map(|y| y.name).collect())
                .collect();
            for x in members.iter().flatten() {
                let name = x.identity().name;
                let knowers = views.iter().filter(|v| v.contains(&name)).count();
                if knowers < views.len() {
                    println!(
                        "    {name}: known by {knowers} of {}, knows {}, stats {:?}",
                        views.len(),
                        x.members().len(),
                        x.stats()
                    );
                }
            }
        }
        // Waits, with a line of progress every 3 s (what a stall looks like).
        loop {
            match timeout(Duration::from_secs(3), watch.wait_for(alive)).await {
                Ok(seen) => {
                    seen?;
                    break;
                }
                Err(_) if started.elapsed() >= CONVERGE => {
                    bail!("cluster did not converge in time")
                }
                Err(_) => progress(members, n, started.elapsed()),
            }
        }
    }
    Ok(started.elapsed())
}

/// One line about every running member's view: how many see all `n` alive, and how many
/// suspect and down entries the views hold in all; with the members' summed counters.
fn progress(members: &[Option<Membership>], n: usize, elapsed: Duration) {
    let (mut converged, mut suspect, mut down, mut running) = (0, 0, 0, 0);
    let mut stats = drover_membership::Stats::default();
    for m in members.iter().flatten() {
        running += 1;
        let view = m.watch();
        let view = view.borrow();
        let count = |state| view.iter().filter(|x| x.state == state).count();
        if count(MemberState::Alive) == n {
            converged += 1;
        }
        suspect += count(MemberState::Suspect);
        down += count(MemberState::Down);
        let s = m.stats();
        stats.sent += s.sent;
        stats.received += s.received;
        stats.repeats += s.repeats;
        stats.rejected += s.rejected;
        stats.late_timers += s.late_timers;
    }
    println!(
        "    {:.0} s: {converged}/{running} see all {n} alive; suspect entries {suspect}, down entries {down}; sent {} received {} repeats dropped {} rejected {} late timers {}",
        elapsed.as_secs_f64(),
        stats.sent,
        stats.received,
        stats.repeats,
        stats.rejected,
        stats.late_timers
    );
}

async fn drover_detection(n: usize, trials: usize, loss: f64) -> Result<()> {
    println!(
        "drover: {n} members, {trials} trials, loss {loss}, timing {}",
        describe(&bench_timing(n))
    );
    let mut members = start_cluster(n).await?;
    println!(
        "converged in {:.1} s",
        converge(&members, n).await?.as_secs_f64()
    );
    // Restarted victims drop `loss` too (their config below).
    start_loss(&members, loss).await?;
    let (mut first, mut all) = (Vec::new(), Vec::new());
    let mut pick = Pick(0x9e37_79b9_7f4a_7c15);
    for trial in 0..trials {
        // Member 0 is never the victim (kept from when it was every member's seed).
        let victim = 1 + pick.below(n - 1);
        let id = members[victim]
            .as_ref()
            .context("victim running")?
            .identity();
        let mut waits = Vec::new();
        for (i, m) in members.iter().enumerate() {
            let Some(m) = m else { continue };
            if i == victim {
                continue;
            }
            let mut events = m.subscribe();
            let id = id.clone();
            waits.push(async move {
                loop {
                    match events.recv().await {
                        Ok(MemberEvent::Down(d)) if d.name == id.name && d.addr == id.addr => {
                            return Some(());
                        }
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => return None,
                    }
                }
            });
        }
        let killed = Instant::now();
        if let Some(m) = members[victim].take() {
            m.stop().await;
        }
        let handles: Vec<_> = waits
            .into_iter()
            .map(|w| {
                tokio::spawn(async move {
                    timeout(DETECT, w)
                        .await
                        .ok()
                        .flatten()
                        .map(|()| killed.elapsed())
                })
            })
            .collect();
        let mut seen = Vec::new();
        for h in handles {
            if let Some(d) = h.await? {
                seen.push(d);
            }
        }
        let missed = n - 1 - seen.len();
        let (f, a) = (seen.iter().min().copied(), seen.iter().max().copied());
        println!(
            "trial {trial}: victim n{victim} first {} s all {} s missed {missed}",
            secs(f),
            secs(a)
        );
        first.extend(f);
        if missed == 0 {
            all.extend(a);
        }
        let seeds = pick_seeds(&members, n, &mut pick);
        members[victim] = Some(Membership::start(member_config(victim, n, seeds, loss)).await?);
        let rejoined = converge(&members, n).await?;
        println!(
            "  n{victim} restarted; all {n} alive everywhere after {:.2} s",
            rejoined.as_secs_f64()
        );
    }
    println!(
        "RESULT drover n={n} loss={loss} trials={trials} first p50 {} p99 {} | all p50 {} p99 {} (s), trials with misses {}",
        secs(percentile(&first, 50.0)),
        secs(percentile(&first, 99.0)),
        secs(percentile(&all, 50.0)),
        secs(percentile(&all, 99.0)),
        trials - all.len()
    );
    for m in members.into_iter().flatten() {
        m.stop().await;
    }
    Ok(())
}

async fn drover_loss(n: usize, seconds: u64, p: f64) -> Result<()> {
    println!(
        "drover: {n} members, drop_outgoing {p} on every member, {seconds} s, timing {}",
        describe(&bench_timing(n))
    );
    // Formed without loss (see start_loss); the soak counts from when the loss starts.
    let members = start_cluster(n).await?;
    println!(
        "converged in {:.1} s",
        converge(&members, n).await?.as_secs_f64()
    );
    let mut subs: Vec<_> = members
        .iter()
        .flatten()
        .map(Membership::subscribe)
        .collect();
    start_loss(&members, p).await?;
    let total = |f: fn(&drover_membership::Stats) -> u64| -> u64 {
        members.iter().flatten().map(|m| f(&m.stats())).sum()
    };
    let (sent0, dropped0, late0) = (
        total(|s| s.sent),
        total(|s| s.dropped_outgoing),
        total(|s| s.late_timers),
    );
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (mut downs, mut suspects, mut lagged) = (0usize, 0usize, 0u64);
    let mut whom = BTreeSet::new();
    for s in &mut subs {
        loop {
            match s.try_recv() {
                Ok(MemberEvent::Down(m)) => {
                    downs += 1;
                    whom.insert(m.name.to_string());
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(k)) => lagged += k,
                Err(_) => break,
            }
        }
    }
    for m in members.iter().flatten() {
        suspects += m
            .members()
            .iter()
            .filter(|m| m.state != MemberState::Alive)
            .count();
    }
    println!(
        "RESULT loss n={n} p={p} seconds={seconds}: down events {downs} (members {whom:?}), events missed by lagging {lagged}, non-alive at end {suspects}, datagrams sent {} dropped {}, late-timer push-backs {}",
        total(|s| s.sent) - sent0,
        total(|s| s.dropped_outgoing) - dropped0,
        total(|s| s.late_timers) - late0
    );
    for m in members.into_iter().flatten() {
        m.stop().await;
    }
    Ok(())
}

/// A loopback port free for both TCP and UDP right now (serf binds both).
fn free_port(taken: &mut BTreeSet<u16>) -> Result<u16> {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0")?;
        let port = tcp.local_addr()?.port();
        if taken.contains(&port) || UdpSocket::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        taken.insert(port);
        return Ok(port);
    }
}

/// Serf agents this run started; killed by PID on drop, so errors clean up too.
struct Agents(Vec<Option<Child>>);
impl Drop for Agents {
    fn drop(&mut self) {
        for c in self.0.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// How many agents poll serf's view of the victim in each trial.
const POLLED: usize = 5;

/// Whether the agent at `rpc` lists `name` as failed.
fn sees_failed(rpc: &str, name: &str) -> Result<bool> {
    let out = Command::new("serf")
        .args(["members", "-rpc-addr", rpc, "-status", "failed", "-name"])
        .arg(format!("^{name}$"))
        .stderr(Stdio::null())
        .output()?;
    Ok(!String::from_utf8_lossy(&out.stdout).trim().is_empty())
}

fn alive_count(rpc: &str) -> Result<usize> {
    let out = Command::new("serf")
        .args(["members", "-rpc-addr", rpc, "-status", "alive"])
        .stderr(Stdio::null())
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count())
}

/// Whether this process runs in a fresh network namespace of its own (`unshare --net`):
/// loopback the only interface and still down. Checked before anything brings it up, so
/// the loss rule below can never land in a namespace anything else uses.
fn fresh_netns() -> bool {
    let Ok(out) = Command::new("ip").args(["-o", "link", "show"]).output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let links: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    out.status.success()
        && links.len() == 1
        && links[0].contains(": lo:")
        && links[0].contains("state DOWN")
}

/// Drops `p` of every UDP datagram this namespace sends (memberlist's probes and gossip;
/// its TCP push/pull and fallback pings keep working, as drover has no TCP path at all).
fn serf_loss_rule(add: bool, p: f64) -> Result<()> {
    let status = Command::new("iptables")
        .args([if add { "-A" } else { "-D" }, "OUTPUT", "-p", "udp"])
        .args(["-m", "statistic", "--mode", "random", "--probability"])
        .arg(p.to_string())
        .args(["-j", "DROP"])
        .status()
        .context("running iptables")?;
    if !status.success() {
        bail!("iptables exited with {status}");
    }
    Ok(())
}

/// Waits until the first and the last agent both list all `n` alive; how long it took.
fn serf_all_alive(rpcs: &[String], n: usize, what: &str) -> Result<Duration> {
    let started = Instant::now();
    while alive_count(&rpcs[0])? < n || alive_count(&rpcs[n - 1])? < n {
        if started.elapsed() > CONVERGE {
            bail!("serf did not {what} in time");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(started.elapsed())
}

/// Serf's detection; with `loss` > 0 first a soak of `soak` seconds at that UDP loss
/// counting member-failed events (every agent is alive: each is a false failure). Loss
/// needs a network namespace of its own: `scripts/bench-gossip` runs this under
/// `unshare --net`.
fn serf_detection(n: usize, trials: usize, loss: f64, soak: u64) -> Result<()> {
    let fresh = fresh_netns();
    if loss > 0.0 && !fresh {
        bail!("serf loss needs a fresh network namespace (run under `unshare --net`)");
    }
    if fresh {
        let up = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()?;
        if !up.success() {
            bail!("ip link set lo up: {up}");
        }
    }
    let dir = PathBuf::from(std::env::var("GOSSIP_BENCH_DIR").unwrap_or_else(|_| {
        std::env::temp_dir()
            .join(format!("gossip-bench-{}", std::process::id()))
            .display()
            .to_string()
    }));
    std::fs::create_dir_all(&dir)?;
    let log = dir.join("failed.log");
    let handler = dir.join("handler.sh");
    // One line per member-failed event: when, who saw it, which members failed.
    std::fs::write(
        &handler,
        format!(
            "#!/bin/sh\nprintf '%s %s %s\\n' \"$(date +%s%N)\" \"$SERF_SELF_NAME\" \"$(awk '{{print $1}}' | tr '\\n' ,)\" >> {}\n",
            log.display()
        ),
    )?;
    Command::new("chmod").arg("+x").arg(&handler).status()?;
    println!(
        "serf: {n} agents (LAN defaults), {trials} trials, dir {}",
        dir.display()
    );
    let mut taken = BTreeSet::new();
    let mut agents = Agents(Vec::new());
    let mut rpcs = Vec::new();
    let mut seed = String::new();
    for i in 0..n {
        let (bind, rpc) = (free_port(&mut taken)?, free_port(&mut taken)?);
        let bind = format!("127.0.0.1:{bind}");
        let rpc = format!("127.0.0.1:{rpc}");
        let mut cmd = Command::new("serf");
        cmd.args([
            "agent",
            "-bind",
            &bind,
            "-rpc-addr",
            &rpc,
            "-node",
            &format!("n{i}"),
        ])
        .arg("-event-handler")
        .arg(format!("member-failed={}", handler.display()))
        .arg("-log-level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        if i > 0 {
            cmd.args(["-retry-join", &seed, "-retry-interval", "1s"]);
        } else {
            seed = bind.clone();
        }
        agents
            .0
            .push(Some(cmd.spawn().context("starting serf agent")?));
        // Others retry their join every second; the seed answering first saves the retries.
        if i == 0 {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while alive_count(&rpc)? < 1 {
                if std::time::Instant::now() > deadline {
                    bail!("serf seed agent did not start");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        rpcs.push(rpc);
    }
    for (i, c) in agents.0.iter_mut().enumerate() {
        if let Some(status) = c.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            bail!("serf agent n{i} exited at start: {status}");
        }
    }
    println!(
        "converged in {:.1} s",
        serf_all_alive(&rpcs, n, "converge")?.as_secs_f64()
    );
    if loss > 0.0 {
        let since = now_ns();
        serf_loss_rule(true, loss)?;
        std::thread::sleep(Duration::from_secs(soak));
        // The rule's own counter: proof the loss happened, and how much.
        let counters = Command::new("iptables")
            .args(["-L", "OUTPUT", "-v", "-n", "-x"])
            .output()
            .context("reading iptables counters")?;
        let dropped = String::from_utf8_lossy(&counters.stdout)
            .lines()
            .find(|l| l.contains("DROP") && l.contains("statistic"))
            .and_then(|l| l.split_whitespace().next().map(str::to_string))
            .unwrap_or_else(|| "?".into());
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let (mut events, mut whom) = (0usize, BTreeSet::new());
        for line in text.lines() {
            let mut f = line.split(' ');
            let (Some(at), Some(_observer), Some(failed)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            if at.parse::<u128>().is_ok_and(|at| at >= since) {
                for name in failed.split(',').filter(|x| !x.is_empty()) {
                    events += 1;
                    whom.insert(name.to_string());
                }
            }
        }
        println!(
            "RESULT serf-loss n={n} p={loss} seconds={soak}: member-failed (agent, member) pairs {events} (members {whom:?}), alive as seen by n0 at the end {}, UDP datagrams dropped {dropped}",
            alive_count(&rpcs[0])?
        );
    }
    let mut pick = Pick(0x9e37_79b9_7f4a_7c15);
    let mut alive: Vec<usize> = (1..n).collect();
    // With loss: detection under the loss first (the rule stays on), then without it.
    let phases: &[f64] = if loss > 0.0 { &[loss, 0.0] } else { &[0.0] };
    for &phase in phases {
        if loss > 0.0 && phase == 0.0 {
            serf_loss_rule(false, loss)?;
            println!(
                "loss off; healed in {:.1} s",
                serf_all_alive(&rpcs, alive.len() + 1, "heal after the loss")?.as_secs_f64()
            );
        }
        let (mut first, mut all) = (Vec::new(), Vec::new());
        let (mut poll_first, mut poll_all) = (Vec::new(), Vec::new());
        for trial in 0..trials {
            // Victims are not restarted (a restart would need serf's reconnect); each trial
            // kills another agent, so trial k runs with n - k agents.
            let victim = alive.remove(pick.below(alive.len()));
            let name = format!("n{victim}");
            // Every other live agent (agent 0 is never a victim).
            let observers = alive.len() + 1;
            let killed = now_ns();
            if let Some(mut c) = agents.0[victim].take() {
                c.kill()?;
                c.wait()?;
            }
            // Five observers poll `serf members -status failed` (serf's own view, before the
            // agent's 3 s/1 s event coalescing); the member-failed handler on every agent gives
            // the all-observer time, coalescing included.
            let watchers: Vec<usize> = alive.iter().copied().take(POLLED).collect();
            let mut polled: Vec<Option<Duration>> = vec![None; watchers.len()];
            let deadline = std::time::Instant::now() + DETECT;
            let times = loop {
                for (k, w) in watchers.iter().enumerate() {
                    if polled[k].is_none() && sees_failed(&rpcs[*w], &name)? {
                        polled[k] = Some(Duration::from_nanos((now_ns() - killed) as u64));
                    }
                }
                let times = detections(&log, &name, killed)?;
                if (times.len() >= observers && polled.iter().all(Option::is_some))
                    || std::time::Instant::now() > deadline
                {
                    break times;
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            let p: Vec<Duration> = polled.iter().flatten().copied().collect();
            let missed = observers.saturating_sub(times.len()) + (watchers.len() - p.len());
            let (pf, pa) = (p.iter().min().copied(), p.iter().max().copied());
            let (f, a) = (times.iter().min().copied(), times.iter().max().copied());
            println!(
                "trial {trial}: victim {name} polled first {} s all {} s | handler first {} s all {} s | missed {missed}",
                secs(pf),
                secs(pa),
                secs(f),
                secs(a)
            );
            if missed == 0 {
                poll_first.extend(pf);
                poll_all.extend(pa);
                first.extend(f);
                all.extend(a);
            }
        }
        println!(
            "RESULT serf n={n} loss={phase} trials={trials} polled({POLLED} observers) first p50 {} p99 {} | all p50 {} p99 {} (s)",
            secs(percentile(&poll_first, 50.0)),
            secs(percentile(&poll_first, 99.0)),
            secs(percentile(&poll_all, 50.0)),
            secs(percentile(&poll_all, 99.0)),
        );
        println!(
            "RESULT serf n={n} loss={phase} trials={trials} handler(all agents) first p50 {} p99 {} | all p50 {} p99 {} (s), trials with misses {}",
            secs(percentile(&first, 50.0)),
            secs(percentile(&first, 99.0)),
            secs(percentile(&all, 50.0)),
            secs(percentile(&all, 99.0)),
            trials - all.len()
        );
    }
    drop(agents);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Per observer, how long after `killed_ns` its handler ran for `name`'s failure.
fn detections(log: &Path, name: &str, killed_ns: u128) -> Result<Vec<Duration>> {
    let text = match std::fs::read_to_string(log) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e.into()),
    };
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let mut f = line.split(' ');
        let (Some(at), Some(observer), Some(failed)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let Ok(at) = at.parse::<u128>() else { continue };
        if at >= killed_ns && failed.split(',').any(|x| x == name) && seen.insert(observer) {
            out.push(Duration::from_nanos((at - killed_ns) as u64));
        }
    }
    Ok(out)
}
