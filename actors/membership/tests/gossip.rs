//! Real members on 127.0.0.1 talking real UDP: convergence, crash and leave detection,
//! restart, no false downs under loss, garbage datagrams.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use drover_membership::{
    Member, MemberEvent, MemberState, Membership, MembershipConfig, NodeMetadata, Profile, timing,
};
use tokio::sync::broadcast;
use tokio::time::timeout;

const SIZE: usize = 5;
/// Generous guards: these bound a wait, they are not what is tested.
const CONVERGE: Duration = Duration::from_secs(30);
const DETECT: Duration = Duration::from_secs(30);

fn metadata(i: usize) -> NodeMetadata {
    NodeMetadata {
        pod_cidr: format!("10.244.{i}.0/24"),
        zone: format!("zone-{}", i % 2),
        api: Some(SocketAddr::from(([127, 0, 0, 1], 10250 + i as u16))),
        fence_timeout_ms: 5_000,
    }
}

fn config(i: usize, bind: SocketAddr, seeds: Vec<SocketAddr>) -> MembershipConfig {
    MembershipConfig {
        seeds,
        metadata: metadata(i),
        timing: timing(SIZE as u32, Profile::Fast),
        seed: Some(i as u64),
        ..MembershipConfig::new(format!("node-{i}"), bind)
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Starts `n` members; every one after the first joins through the first.
async fn cluster(n: usize, tweak: impl Fn(&mut MembershipConfig)) -> Vec<Membership> {
    let mut members: Vec<Membership> = Vec::new();
    for i in 0..n {
        let seeds = members.first().map(|m| vec![m.addr()]).unwrap_or_default();
        let mut c = config(i, loopback(), seeds);
        tweak(&mut c);
        members.push(Membership::start(c).await.unwrap());
    }
    members
}

/// Waits until `m`'s member list satisfies `pred`; panics with the list after `guard`.
async fn wait_view(m: &Membership, guard: Duration, what: &str, pred: impl Fn(&[Member]) -> bool) {
    let mut watch = m.watch();
    let waited = timeout(guard, watch.wait_for(|view| pred(view))).await;
    assert!(
        matches!(waited, Ok(Ok(_))),
        "{}: {what} not reached within {guard:?}; view: {:#?}",
        m.identity().name,
        m.members()
    );
}

fn state_of(view: &[Member], name: &str) -> Option<MemberState> {
    view.iter().find(|m| *m.name == *name).map(|m| m.state)
}

/// Every member sees all `n` members alive with the right metadata.
async fn converged(members: &[Membership], n: usize) {
    let expected: BTreeMap<String, NodeMetadata> =
        (0..n).map(|i| (format!("node-{i}"), metadata(i))).collect();
    for m in members {
        wait_view(m, CONVERGE, "all alive with metadata", |view| {
            let alive: BTreeMap<String, NodeMetadata> = view
                .iter()
                .filter(|x| x.state == MemberState::Alive)
                .map(|x| (x.name.to_string(), (*x.metadata).clone()))
                .collect();
            alive == expected && view.len() == n
        })
        .await;
    }
}

/// Waits for an event about `name` that `pred` accepts.
async fn wait_event(
    rx: &mut broadcast::Receiver<MemberEvent>,
    guard: Duration,
    name: &str,
    pred: impl Fn(&MemberEvent) -> bool,
) -> MemberEvent {
    let found = timeout(guard, async {
        loop {
            match rx.recv().await {
                Ok(e) if *e.member().name == *name && pred(&e) => return e,
                Ok(_) => {}
                Err(error) => panic!("event stream: {error}"),
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("no matching event about {name} within {guard:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_members_converge_with_metadata() {
    let members = cluster(SIZE, |_| {}).await;
    converged(&members, SIZE).await;
    let view = members[2].members();
    let n4 = view.iter().find(|m| &*m.name == "node-4").unwrap();
    assert_eq!(n4.addr, members[4].addr());
    assert_eq!(n4.metadata.pod_cidr, "10.244.4.0/24");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_member_is_declared_down() {
    let mut members = cluster(SIZE, |_| {}).await;
    converged(&members, SIZE).await;
    let mut subs: Vec<_> = members[..4].iter().map(|m| m.subscribe()).collect();
    let crashed_at = std::time::Instant::now();
    members.pop().unwrap().stop().await;
    for (m, rx) in members.iter().zip(subs.iter_mut()) {
        let e = wait_event(rx, DETECT, "node-4", |e| matches!(e, MemberEvent::Down(_))).await;
        // Reported, not asserted: the detection time on this machine.
        eprintln!(
            "{} saw node-4 down after {:?}",
            m.identity().name,
            crashed_at.elapsed()
        );
        assert_eq!(*e.member().metadata, metadata(4));
        wait_view(m, DETECT, "node-4 down", |v| {
            state_of(v, "node-4") == Some(MemberState::Down)
        })
        .await;
        // Nobody else went down.
        let alive = m
            .members()
            .iter()
            .filter(|x| x.state == MemberState::Alive)
            .count();
        assert_eq!(alive, 4, "{:#?}", m.members());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_leaves_is_down_without_waiting_for_the_detector() {
    // Suspicion lasts ten minutes here, so within the guard only the leave itself can make
    // the others see node-4 down.
    let mut members = cluster(SIZE, |c| {
        c.timing.suspect_to_down_after = Duration::from_secs(600)
    })
    .await;
    converged(&members, SIZE).await;
    let mut subs: Vec<_> = members[..4].iter().map(|m| m.subscribe()).collect();
    members.pop().unwrap().leave().await.unwrap();
    for (m, rx) in members.iter().zip(subs.iter_mut()) {
        wait_event(rx, Duration::from_secs(20), "node-4", |e| {
            matches!(e, MemberEvent::Down(_))
        })
        .await;
        assert_eq!(state_of(&m.members(), "node-4"), Some(MemberState::Down));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_member_rejoins_under_a_renewed_identity() {
    let mut members = cluster(SIZE, |_| {}).await;
    converged(&members, SIZE).await;
    let old = members.pop().unwrap();
    let (addr, old_bump) = (old.addr(), old.identity().bump);
    let mut subs: Vec<_> = members.iter().map(|m| m.subscribe()).collect();
    old.stop().await;
    for rx in subs.iter_mut() {
        wait_event(rx, DETECT, "node-4", |e| matches!(e, MemberEvent::Down(_))).await;
    }
    // Same name, same address, a new process.
    let restarted = Membership::start(config(4, addr, vec![members[0].addr()]))
        .await
        .unwrap();
    assert!(restarted.identity().bump > old_bump);
    for (m, rx) in members.iter().zip(subs.iter_mut()) {
        let e = wait_event(rx, DETECT, "node-4", |e| matches!(e, MemberEvent::Up(_))).await;
        assert_eq!(e.member().addr, addr);
        wait_view(m, DETECT, "node-4 alive again", |v| {
            state_of(v, "node-4") == Some(MemberState::Alive)
        })
        .await;
    }
    members.push(restarted);
    converged(&members, SIZE).await;
}

/// A restarted member of a cluster larger than one foca `Feed` (a 1,400-byte packet carries
/// a few dozen identities) learns every member from its seed's sync reply, not one probe at
/// a time (which took about 20 s at 100 members). The others learn of it through the gossip.
/// With the sync, the whole cluster sees it alive well within the probe round-robin; the
/// guard below is only a bound on the wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_member_of_a_large_cluster_relearns_everyone_from_its_seed() {
    const N: usize = 80;
    // Slower probes than Fast (500 ms): the probe round-robin, which is what the restarted
    // member would otherwise wait for, takes 40 s here, far from the 10 s guard below; and
    // 80 debug-built members forming at once stay clear of false suspicions.
    let big = |i: usize, bind: SocketAddr, seeds: Vec<SocketAddr>| {
        let mut timing = timing(N as u32, Profile::Fast);
        timing.probe_period = Duration::from_millis(500);
        timing.probe_rtt = Duration::from_millis(200);
        timing.suspect_to_down_after = Duration::from_millis(1500);
        MembershipConfig {
            timing,
            ..config(i, bind, seeds)
        }
    };
    let mut members: Vec<Membership> = Vec::new();
    for i in 0..N {
        let seeds = members.first().map(|m| vec![m.addr()]).unwrap_or_default();
        members.push(Membership::start(big(i, loopback(), seeds)).await.unwrap());
    }
    // Metadata and full view on every member, with a guard scaled to the size.
    let all_alive =
        |view: &[Member]| view.len() == N && view.iter().all(|x| x.state == MemberState::Alive);
    for m in &members {
        wait_view(m, Duration::from_secs(60), "all alive", all_alive).await;
    }
    let old = members.pop().unwrap();
    let (addr, old_bump) = (old.addr(), old.identity().bump);
    let last = format!("node-{}", N - 1);
    let mut subs: Vec<_> = members.iter().map(|m| m.subscribe()).collect();
    old.stop().await;
    for rx in subs.iter_mut() {
        wait_event(rx, DETECT, &last, |e| matches!(e, MemberEvent::Down(_))).await;
    }
    // Same name and address, a new process whose only seed is node-0. The Feed answering
    // its announce lists at most a few dozen of the 79 others; the sync lists all of them.
    let restarted = Membership::start(big(N - 1, addr, vec![members[0].addr()]))
        .await
        .unwrap();
    assert!(restarted.identity().bump > old_bump);
    // Well under the 40 s (80 members x 500 ms) a probe round-robin would take.
    let guard = Duration::from_secs(10);
    wait_view(&restarted, guard, "every member alive", all_alive).await;
    for m in &members {
        wait_view(m, guard, "the restarted member alive", |v| {
            state_of(v, &last) == Some(MemberState::Alive)
                && v.iter()
                    .any(|x| *x.name == *last && *x.metadata == metadata(N - 1))
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_metadata_reaches_every_member_as_an_update() {
    let members = cluster(3, |_| {}).await;
    converged(&members, 3).await;
    let mut subs: Vec<_> = members[..2].iter().map(|m| m.subscribe()).collect();
    let moved = NodeMetadata {
        zone: "zone-moved".to_string(),
        ..metadata(2)
    };
    let before = members[2].identity();
    let renewed = members[2].set_metadata(moved.clone()).await.unwrap();
    assert!(renewed.bump > before.bump);
    assert_eq!(members[2].identity(), renewed);
    for (m, rx) in members.iter().zip(subs.iter_mut()) {
        // An Up from before the subscription may still be on its way (the view is published
        // before the events of the same step); the update is what this test is about.
        let e = wait_event(rx, DETECT, "node-2", |e| {
            matches!(e, MemberEvent::Updated(_))
        })
        .await;
        assert_eq!(
            e,
            MemberEvent::Updated(Member {
                name: "node-2".into(),
                addr: members[2].addr(),
                metadata: moved.clone().into(),
                state: MemberState::Alive,
            })
        );
        wait_view(m, DETECT, "node-2's new zone", |v| {
            v.iter().any(|x| {
                &*x.name == "node-2" && *x.metadata == moved && x.state == MemberState::Alive
            }) && v.len() == 3
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspected_member_that_is_alive_refutes() {
    // Suspicion lasts 5 s here so the refutation has room whatever the machine's load.
    let members = cluster(SIZE, |c| {
        c.timing.suspect_to_down_after = Duration::from_secs(5)
    })
    .await;
    converged(&members, SIZE).await;
    let mut subs: Vec<_> = members[..4].iter().map(|m| m.subscribe()).collect();
    // node-4 goes mute (it still hears everything): its probes fail, it becomes suspect.
    members[4].set_drop_outgoing(1.0).await.unwrap();
    // The suspicion is gossiped, so node-0 hears of it whoever probed.
    wait_view(&members[0], DETECT, "node-4 suspect", |v| {
        state_of(v, "node-4") == Some(MemberState::Suspect)
    })
    .await;
    // It speaks again: it refutes with a higher incarnation before anyone declares it down.
    members[4].set_drop_outgoing(0.0).await.unwrap();
    for m in &members[..4] {
        wait_view(m, DETECT, "node-4 alive again", |v| {
            state_of(v, "node-4") == Some(MemberState::Alive)
        })
        .await;
    }
    for (m, rx) in members.iter().zip(subs.iter_mut()) {
        while let Ok(e) = rx.try_recv() {
            assert!(
                !matches!(e, MemberEvent::Down(_)),
                "{} saw {e:?}",
                m.identity().name
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_percent_loss_declares_no_one_down() {
    let members = cluster(SIZE, |c| c.drop_outgoing = 0.05).await;
    converged(&members, SIZE).await;
    let mut subs: Vec<_> = members.iter().map(|m| m.subscribe()).collect();
    // 20 s of gossip under loss: about 100 probe periods per member.
    tokio::time::sleep(Duration::from_secs(20)).await;
    for (m, rx) in members.iter().zip(subs.iter_mut()) {
        let mut downs = Vec::new();
        loop {
            match rx.try_recv() {
                Ok(MemberEvent::Down(x)) => downs.push(x.name),
                Ok(_) => {}
                Err(broadcast::error::TryRecvError::Empty) => break,
                Err(error) => panic!("event stream: {error}"),
            }
        }
        assert!(
            downs.is_empty(),
            "{} saw false downs: {downs:?}",
            m.identity().name
        );
        let stats = m.stats();
        assert!(stats.dropped_outgoing > 0, "loss was injected: {stats:?}");
    }
    converged(&members, SIZE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_datagrams_are_counted_and_ignored() {
    let mut members = cluster(2, |_| {}).await;
    converged(&members, 2).await;
    let target = members[0].addr();
    let before = members[0].stats().rejected;
    let attacker = tokio::net::UdpSocket::bind(loopback()).await.unwrap();
    let mut garbage: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        vec![0xd5],
        vec![0xd5, 0x01],
        vec![0xd5, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        vec![0xd5, 0x01, 0x00, 0x00, 0x00],
        vec![0xab; 9000],
    ];
    // Pseudo-random junk behind a valid envelope, deterministic.
    let mut x: u32 = 0x9e37_79b9;
    for len in [3usize, 17, 64, 200, 1399] {
        let mut d = vec![0xd5, 0x01];
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            d.push(x as u8);
        }
        garbage.push(d);
    }
    for d in &garbage {
        attacker.send_to(d, target).await.unwrap();
    }
    let want = before + garbage.len() as u64;
    let counted = timeout(CONVERGE, async {
        while members[0].stats().rejected < want {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        counted.is_ok(),
        "rejected {:?}, want {want}",
        members[0].stats()
    );
    // Still a working member: a newcomer joins through it and everyone sees three.
    members.push(
        Membership::start(config(2, loopback(), vec![target]))
            .await
            .unwrap(),
    );
    converged(&members, 3).await;
}

#[tokio::test]
async fn bad_configs_are_refused() {
    let mut c = config(0, loopback(), vec![]);
    c.drop_outgoing = 1.5;
    assert!(
        Membership::start(c)
            .await
            .unwrap_err()
            .to_string()
            .contains("drop_outgoing")
    );
    let c = MembershipConfig::new("", loopback());
    assert_eq!(
        Membership::start(c).await.unwrap_err().to_string(),
        "member name must not be empty"
    );
    let c = MembershipConfig::new("n", SocketAddr::from(([0, 0, 0, 0], 0)));
    assert!(
        Membership::start(c)
            .await
            .unwrap_err()
            .to_string()
            .contains("set advertise")
    );
}
