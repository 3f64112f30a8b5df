//! Node agents in the gossip (hollow runtime, real store, real UDP on 127.0.0.1): each
//! advertises its claimed pod CIDR, zone and fence timeout; `stop` leaves (the peer sees
//! it Down at once, the failure detector is set too slow to be what did it), and a
//! stopped-then-restarted node comes back Up. Timeouts are failure guards only.

use std::sync::Arc;
use std::time::Duration;

use drover_membership::{Member, MemberState, Membership};
use drover_node::{AgentConfig, GossipConfig, HollowConfig, HollowRuntime, NodeAgent};
use drover_store::{Store, StoreConfig};
use drover_testkit::TestNats;
use rand::SeedableRng;

const GUARD: Duration = Duration::from_secs(60);
/// The guard on the Down after a leave: shorter than the failure detector here (Lan
/// timing for a million members suspects for 24 s after a missed 1 s probe), so only
/// the leave can pass it.
const LEAVE_GUARD: Duration = Duration::from_secs(15);

async fn agent(
    store: &Store,
    name: &str,
    zone: &str,
    seeds: Vec<std::net::SocketAddr>,
) -> NodeAgent {
    let mut config = AgentConfig::new(name);
    config.capacity = Some(drover_node::node::Capacity {
        cpu_millis: 4000,
        memory_bytes: 8 << 30,
        ephemeral_storage_bytes: 100 << 30,
        pods: 110,
    });
    config.identity.zone = Some(zone.into());
    let mut gossip = GossipConfig::new("127.0.0.1:0".parse().unwrap());
    gossip.seeds = seeds;
    // Suspicion so slow that only a graceful leave can mark a member Down in this test.
    gossip.profile = drover_membership::Profile::Lan;
    gossip.expected_members = 1_000_000;
    config.gossip = Some(gossip);
    // The fence timeout the node advertises is the one its fence really uses.
    config.fence = Some(drover_node::fence::FenceConfig {
        timeout: Duration::from_millis(2500),
        ..Default::default()
    });
    let runtime = Arc::new(HollowRuntime::new(
        HollowConfig::default(),
        rand::rngs::StdRng::seed_from_u64(7),
    ));
    NodeAgent::start(store.clone(), runtime, config)
        .await
        .unwrap()
}

/// Waits until `membership` holds a member named `name` that satisfies `pred`.
async fn wait_member(
    membership: &Membership,
    guard: Duration,
    name: &str,
    pred: impl Fn(&Member) -> bool,
) -> Member {
    let mut view = membership.watch();
    tokio::time::timeout(guard, async {
        loop {
            if let Some(m) = view
                .borrow_and_update()
                .iter()
                .find(|m| *m.name == *name && pred(m))
            {
                return m.clone();
            }
            view.changed().await.expect("membership running");
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{name} not as expected in {:#?}", membership.members()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_gossip_their_metadata_and_leave_on_stop() {
    let nats = TestNats::start().await;
    let store = Store::new(nats.client().await, StoreConfig::default())
        .await
        .unwrap();
    let a = agent(&store, "gossip-a", "zone-a", vec![]).await;
    let a_addr = a.membership().expect("gossip on").addr();
    let b = agent(&store, "gossip-b", "zone-b", vec![a_addr]).await;

    // A learns B's metadata from the gossip: the CIDR B claimed in the store.
    let seen = wait_member(a.membership().unwrap(), GUARD, "gossip-b", |m| {
        m.state == MemberState::Alive
    })
    .await;
    assert_eq!(seen.metadata.pod_cidr, b.pod_cidr());
    assert_ne!(seen.metadata.pod_cidr, a.pod_cidr());
    assert_eq!(seen.metadata.zone, "zone-b");
    assert_eq!(seen.metadata.fence_timeout_ms, 2500);
    assert_eq!(seen.metadata.api, None);

    // A graceful stop leaves: Down at A without waiting for the failure detector.
    b.stop().await;
    wait_member(a.membership().unwrap(), LEAVE_GUARD, "gossip-b", |m| {
        m.state == MemberState::Down
    })
    .await;

    // The node's next agent rejoins under a newer identity and is Up again.
    let b = agent(&store, "gossip-b", "zone-b", vec![a_addr]).await;
    wait_member(a.membership().unwrap(), GUARD, "gossip-b", |m| {
        m.state == MemberState::Alive
    })
    .await;
    // Dropping is a crash (no leave); nothing to assert beyond it not hanging.
    drop(b);
    a.stop().await;
}
