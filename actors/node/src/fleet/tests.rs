use super::*;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

fn ports(addrs: &[SocketAddr]) -> Vec<u16> {
    addrs.iter().map(|a| a.port()).collect()
}

fn check(idx: usize, seeds: &[u16], joined: &[u16], expected: &[u16]) {
    let seeds: Vec<SocketAddr> = seeds.iter().map(|p| addr(*p)).collect();
    let joined: Vec<SocketAddr> = joined.iter().map(|p| addr(*p)).collect();
    assert_eq!(
        ports(&seeds_for(idx, &seeds, &joined)),
        expected,
        "idx {idx}, seeds {seeds:?}, joined {joined:?}"
    );
}

#[test]
fn seeds_are_the_given_ones_plus_spread_fleet_members() {
    // The first nodes know only the given seeds.
    check(0, &[7946], &[], &[7946]);
    // One joined node: it is the only extra.
    check(1, &[7946], &[1], &[7946, 1]);
    // Two joined: both, in an order that depends on idx.
    check(2, &[7946], &[1, 2], &[7946, 1, 2]);
    check(3, &[7946], &[1, 2], &[7946, 2, 1]);
    // Many joined: two distinct picks, moving with idx so joins spread.
    check(10, &[7946], &[1, 2, 3, 4, 5, 6], &[7946, 5, 2]);
    check(11, &[7946], &[1, 2, 3, 4, 5, 6], &[7946, 6, 3]);
    // No configured seed: fleet members only.
    check(4, &[], &[1, 2, 3], &[2, 3]);
    // A pick equal to a given seed is not repeated.
    check(0, &[1], &[1, 2, 3], &[1, 2]);
}

#[test]
fn every_seed_list_has_distinct_members() {
    let joined: Vec<SocketAddr> = (1..=50).map(addr).collect();
    for n in 0..joined.len() {
        for idx in 0..200 {
            let got = seeds_for(idx, &[addr(7946)], &joined[..n]);
            let mut unique = got.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), got.len(), "idx {idx}, {n} joined: {got:?}");
            assert_eq!(got.len(), 1 + EXTRA_SEEDS.min(n), "idx {idx}, {n} joined");
        }
    }
}

#[test]
fn gossip_config_of_a_hollow_node() {
    let seed = addr(7946);
    let config = FleetConfig {
        gossip: Some(FleetGossip {
            seeds: vec![seed],
            expected_members: 1000,
            ..FleetGossip::default()
        }),
        ..FleetConfig::default()
    };
    let agent = node_config(&config, 3);
    let gossip = agent.gossip.expect("gossip set");
    assert_eq!(gossip.bind, addr(0));
    assert_eq!(gossip.seeds, vec![seed]);
    assert_eq!(gossip.expected_members, 1000);
    assert!(!gossip.pod_routes);
    assert!(agent.fence.is_none());

    let fenced = FleetConfig {
        gossip: Some(FleetGossip {
            fence: true,
            ..FleetGossip::default()
        }),
        ..FleetConfig::default()
    };
    assert!(node_config(&fenced, 0).fence.is_some());
    assert!(node_config(&FleetConfig::default(), 0).gossip.is_none());
}
