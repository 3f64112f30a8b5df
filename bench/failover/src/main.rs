//! `failover-bench`: how fast the control plane notices a dead node and how fast its
//! pods run elsewhere, on a hollow fleet that gossips for real.
//!
//! One process, everything real but the containers: a nats-server (JetStream, fsync per
//! write, as `drover up` runs it), the store, the controllers with the node lifecycle
//! controller on a control-plane gossip member (`Controllers::start_with`), the
//! scheduler, and N hollow node agents, each with its own SWIM member on a loopback UDP
//! port, seeded to the control plane's. A Deployment of `pods-per-node x N` replicas runs
//! on them. Each trial picks a live node running some of its pods, crashes it
//! ([`drover_node::HollowFleet::crash`]: tasks aborted, gossip member stopped without
//! leaving) and measures from the crash:
//! - *down*: the control plane's member reports it Down (`subscribe()`);
//! - *taint*: its Node gets the `node.kubernetes.io/unreachable` NoExecute taint;
//! - *failover*: the Deployment's pods all Running again, none counted on a dead node.
//!
//! False downs are Down events, on the control plane or any fleet member, for a node
//! that was never crashed. Crashed nodes stay dead. Not a test: it measures and prints
//! markdown.

mod core;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use drover_controllers::{Controllers, ControllersConfig};
use drover_membership::{MemberEvent, MemberState, Membership, MembershipConfig};
use drover_node::fleet::FleetGossip;
use drover_node::{FleetConfig, run_hollow_fleet};
use drover_store::{ListOptions, Store, StoreConfig, WatchEvent, WatchOptions, object};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::core::{PodState, failed_over, has_unreachable_taint, nodes_with_pods, pod_state};

/// The Deployment's name and `app` label.
const APP: &str = "failover";

#[derive(Parser, Debug)]
#[command(
    about = "Crash hollow nodes on real gossip: time to Down, to the taint, to pods Running elsewhere"
)]
struct Args {
    /// Hollow nodes.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Crash trials (each kills one more node).
    #[arg(long, default_value_t = 10)]
    trials: usize,
    /// Deployment replicas per node.
    #[arg(long, default_value_t = 2)]
    pods_per_node: usize,
    /// The cluster size the control plane's member is tuned for; 16 is what `drover up`
    /// uses (`MembershipConfig::new`), 0 takes the fleet size + 1.
    #[arg(long, default_value_t = 16)]
    control_plane_expected: u32,
    /// Longest wait for the control plane to see the whole fleet alive.
    #[arg(long, default_value_t = 240)]
    converge_secs: u64,
    /// Longest wait for one trial (crash to failover).
    #[arg(long, default_value_t = 60)]
    trial_secs: u64,
    /// Seed of the victim choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Each hollow pod's idle re-check period in seconds (the agent's default is 1). Not on
    /// the measured path (a replacement pod starts on its creation, not on a tick); at
    /// 2,000 pods in one process the 1 s re-reads were about a tenth of the CPU.
    #[arg(long, default_value_t = 10)]
    pod_sync_secs: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    run(Args::parse()).await
}

fn kind(group: &str, kind: &str) -> &'static bus_schema::KindInfo {
    bus_schema::kinds::by_group_kind(group, kind).expect("a built-in kind")
}

/// Down events for nodes never crashed, counted on every member's event stream.
#[derive(Default)]
struct FalseDowns {
    crashed: BTreeSet<String>,
    /// (observer, node) of each false down.
    seen: Vec<(String, String)>,
}

fn count_false_downs(
    observer: String,
    membership: &Membership,
    book: Arc<Mutex<FalseDowns>>,
) -> tokio::task::JoinHandle<()> {
    let mut events = membership.subscribe();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(MemberEvent::Down(m)) => {
                    if let Ok(mut b) = book.lock()
                        && !b.crashed.contains(&*m.name)
                        && m.name.starts_with("hollow-")
                    {
                        b.seen.push((observer.clone(), m.name.to_string()));
                    }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    eprintln!("warning: {observer} lagged {n} membership events");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    })
}

/// The Deployment's pods and the tainted Nodes, followed by two store watches.
struct View {
    pods: BTreeMap<String, PodState>,
    pod_watch: drover_store::Watch,
    tainted: BTreeSet<String>,
    node_watch: drover_store::Watch,
}

impl View {
    async fn start(store: &Store) -> Result<View> {
        let pods_kind = kind("", "Pod");
        let list = store
            .list(pods_kind, Some("default"), &ListOptions::default())
            .await?;
        let pods = list
            .items
            .iter()
            .filter_map(|p| Some((object::name(p).to_string(), pod_state(p, APP)?)))
            .collect();
        let pod_watch = store
            .watch(
                pods_kind,
                Some("default"),
                list.resource_version,
                WatchOptions::default(),
            )
            .await?;
        let nodes_kind = kind("", "Node");
        let list = store
            .list(nodes_kind, None, &ListOptions::default())
            .await?;
        let tainted = list
            .items
            .iter()
            .filter(|n| has_unreachable_taint(n))
            .map(|n| object::name(n).to_string())
            .collect();
        let node_watch = store
            .watch(
                nodes_kind,
                None,
                list.resource_version,
                WatchOptions::default(),
            )
            .await?;
        Ok(View {
            pods,
            pod_watch,
            tainted,
            node_watch,
        })
    }

    /// Applies the next change from either watch.
    async fn next(&mut self) -> Result<()> {
        tokio::select! {
            e = self.pod_watch.next() => {
                match e.context("the pods watch ended")?? {
                    WatchEvent::Added(p) | WatchEvent::Modified(p) => {
                        if let Some(s) = pod_state(&p, APP) {
                            self.pods.insert(object::name(&p).to_string(), s);
                        }
                    }
                    WatchEvent::Deleted(p) => {
                        self.pods.remove(object::name(&p));
                    }
                    WatchEvent::Bookmark(_) => {}
                }
            }
            e = self.node_watch.next() => {
                match e.context("the nodes watch ended")?? {
                    WatchEvent::Added(n) | WatchEvent::Modified(n) => {
                        let name = object::name(&n).to_string();
                        if has_unreachable_taint(&n) {
                            self.tainted.insert(name);
                        } else {
                            self.tainted.remove(&name);
                        }
                    }
                    WatchEvent::Deleted(n) => {
                        self.tainted.remove(object::name(&n));
                    }
                    WatchEvent::Bookmark(_) => {}
                }
            }
        }
        Ok(())
    }
}

/// One trial's times from the crash.
struct Trial {
    node: String,
    pods_on_it: usize,
    down: Duration,
    taint: Duration,
    failover: Duration,
}

/// A small deterministic generator for the victim choice (xorshift64*).
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

async fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    let nats = drover_testkit::TestNats::start().await;
    let store = Store::new(nats.client().await, StoreConfig::default()).await?;

    // The control plane's member, as `drover up --no-agent --gossip-bind` starts it.
    let mut cp_config = MembershipConfig::new(
        "control-plane-bench",
        SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0),
    );
    if args.control_plane_expected != 16 {
        let n = if args.control_plane_expected == 0 {
            u32::try_from(args.nodes + 1).unwrap_or(u32::MAX)
        } else {
            args.control_plane_expected
        };
        cp_config.timing = drover_membership::timing(n, drover_membership::Profile::Fast);
    }
    let cp = Membership::start(cp_config).await?;
    let _controllers = Controllers::start_with(
        store.clone(),
        ControllersConfig {
            membership: Some(cp.watch()),
            ..Default::default()
        },
    );
    let scheduler = tokio::spawn(drover_scheduler::run(store.clone()));

    let config = FleetConfig {
        // A /24 per node: a /8 has room for 65,536.
        cluster_cidr: "10.0.0.0/8".into(),
        gossip: Some(FleetGossip {
            seeds: vec![cp.addr()],
            expected_members: u32::try_from(args.nodes + 1).unwrap_or(u32::MAX),
            ..FleetGossip::default()
        }),
        pod_sync_interval: Duration::from_secs(args.pod_sync_secs.max(1)),
        ..FleetConfig::default()
    };
    let t = Instant::now();
    // Progress while the fleet starts: how many members the control plane sees.
    let progress = {
        let view = cp.watch();
        tokio::spawn(async move {
            let started = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let alive = view
                    .borrow()
                    .iter()
                    .filter(|m| m.state == MemberState::Alive)
                    .count();
                eprintln!(
                    "  {:.0} s: the control plane sees {alive} members alive",
                    started.elapsed().as_secs_f64()
                );
            }
        })
    };
    let mut fleet = run_hollow_fleet(store.clone(), args.nodes, config).await?;
    progress.abort();
    eprintln!(
        "{} hollow nodes registered and in the gossip in {:.1} s",
        args.nodes,
        t.elapsed().as_secs_f64()
    );

    // Convergence: the control plane sees every node alive.
    let t = Instant::now();
    let want_alive = args.nodes + 1;
    let alive = |ms: &[drover_membership::Member]| {
        ms.iter().filter(|m| m.state == MemberState::Alive).count()
    };
    let mut view = cp.watch();
    let deadline = Instant::now() + Duration::from_secs(args.converge_secs);
    let mut last_print = Instant::now();
    loop {
        let seen = alive(&view.borrow_and_update());
        if seen >= want_alive {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the control plane sees {seen} of {want_alive} members alive after {} s",
                args.converge_secs
            );
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), view.changed()).await;
        if last_print.elapsed() >= Duration::from_secs(10) {
            eprintln!("  converging: {seen} of {want_alive} alive");
            last_print = Instant::now();
        }
    }
    eprintln!(
        "the control plane sees all {want_alive} members alive after {:.1} s more",
        t.elapsed().as_secs_f64()
    );

    let book: Arc<Mutex<FalseDowns>> = Arc::default();
    let mut counters = vec![count_false_downs("control-plane".into(), &cp, book.clone())];
    for a in &fleet.agents {
        if let Some(m) = a.membership() {
            counters.push(count_false_downs(a.node_name().into(), m, book.clone()));
        }
    }

    // The Deployment, all Running.
    let replicas = args.nodes * args.pods_per_node;
    let mut view = View::start(&store).await?;
    let t = Instant::now();
    store
        .create(kind("apps", "Deployment"), deployment(replicas))
        .await?;
    let guard = Instant::now() + Duration::from_secs(300);
    while !failed_over(&view.pods, &[], replicas) {
        tokio::time::timeout_at(guard.into(), view.next())
            .await
            .context("the Deployment's pods are not all Running after 300 s")??;
    }
    eprintln!(
        "{replicas} pods Running in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let mut dead: Vec<String> = Vec::new();
    let mut trials: Vec<Trial> = Vec::new();
    let mut rng = args.seed.max(1);
    for i in 0..args.trials {
        let candidates = nodes_with_pods(&view.pods, &dead);
        if candidates.is_empty() {
            bail!("no live node runs a pod of the Deployment");
        }
        let pick = (next_random(&mut rng) % candidates.len() as u64) as usize;
        let (victim, pods_on_it) = candidates
            .iter()
            .nth(pick)
            .map(|(n, c)| (n.clone(), *c))
            .context("a candidate")?;
        let mut events = cp.subscribe();
        if let Ok(mut b) = book.lock() {
            b.crashed.insert(victim.clone());
        }
        dead.push(victim.clone());
        let t0 = Instant::now();
        if !fleet.crash(&victim).await {
            bail!("{victim} is not a live agent");
        }
        let deadline = t0 + Duration::from_secs(args.trial_secs);
        let (mut down, mut taint, mut failover) = (None, None, None);
        while down.is_none() || taint.is_none() || failover.is_none() {
            let step = async {
                tokio::select! {
                    e = events.recv(), if down.is_none() => {
                        match e {
                            Ok(MemberEvent::Down(m)) if *m.name == *victim => down = Some(t0.elapsed()),
                            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                            Err(e) => return Err(anyhow::anyhow!("control plane events: {e}")),
                        }
                    }
                    r = view.next() => r?,
                }
                Ok::<_, anyhow::Error>(())
            };
            tokio::time::timeout_at(deadline.into(), step)
                .await
                .with_context(|| {
                    format!(
                        "trial {i} ({victim}): down {down:?}, taint {taint:?}, failover {failover:?} after {} s",
                        args.trial_secs
                    )
                })??;
            if taint.is_none() && view.tainted.contains(&victim) {
                taint = Some(t0.elapsed());
            }
            if failover.is_none() && failed_over(&view.pods, &dead, replicas) {
                failover = Some(t0.elapsed());
            }
        }
        let trial = Trial {
            node: victim,
            pods_on_it,
            down: down.unwrap_or_default(),
            taint: taint.unwrap_or_default(),
            failover: failover.unwrap_or_default(),
        };
        eprintln!(
            "trial {i}: {} ({} pods): down {:.2} s, taint {:.2} s, failover {:.2} s",
            trial.node,
            trial.pods_on_it,
            trial.down.as_secs_f64(),
            trial.taint.as_secs_f64(),
            trial.failover.as_secs_f64()
        );
        trials.push(trial);
    }
    // Late false downs (a suspicion raised during the last trial) get a moment to show.
    tokio::time::sleep(Duration::from_secs(3)).await;
    report(&args, &trials, &book, started.elapsed());

    for c in counters {
        c.abort();
    }
    scheduler.abort();
    // Dropped, not stopped: a thousand graceful leaves would only log each member's
    // view of the others leaving.
    drop(fleet);
    Ok(())
}

fn report(args: &Args, trials: &[Trial], book: &Arc<Mutex<FalseDowns>>, run: Duration) {
    use drover_testkit::stats::{percentile, secs};
    let col = |f: fn(&Trial) -> Duration| trials.iter().map(f).collect::<Vec<_>>();
    let (down, taint, failover) = (col(|t| t.down), col(|t| t.taint), col(|t| t.failover));
    let false_downs = book.lock().map(|b| b.seen.clone()).unwrap_or_default();
    println!(
        "\n| nodes | pods | trials | down p50 / p99 | taint p50 / p99 | failover p50 / p99 | false downs |"
    );
    println!("|---:|---:|---:|---|---|---|---:|");
    println!(
        "| {} | {} | {} | {} / {} s | {} / {} s | {} / {} s | {} |",
        args.nodes,
        args.nodes * args.pods_per_node,
        trials.len(),
        secs(percentile(&down, 50.0)),
        secs(percentile(&down, 99.0)),
        secs(percentile(&taint, 50.0)),
        secs(percentile(&taint, 99.0)),
        secs(percentile(&failover, 50.0)),
        secs(percentile(&failover, 99.0)),
        false_downs.len(),
    );
    for (observer, node) in false_downs.iter().take(20) {
        println!("false down: {observer} saw {node} down");
    }
    println!("\nwhole run {:.0} s", run.as_secs_f64());
}

fn deployment(replicas: usize) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": APP, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": APP}},
            "template": {
                "metadata": {"labels": {"app": APP}},
                "spec": {"containers": [{"name": "c", "image": "hollow:1",
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}
            }
        }
    })
}
