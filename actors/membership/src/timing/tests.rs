use super::*;

/// What a profile gives for one cluster size, in milliseconds (and transmissions).
#[derive(Debug, PartialEq)]
struct Row {
    probe: u128,
    rtt: u128,
    suspicion: u128,
    gossip: u128,
    max_tx: u8,
}

fn check(size: u32, profile: Profile, expected: Row) {
    let c = timing(size, profile);
    let got = Row {
        probe: c.probe_period.as_millis(),
        rtt: c.probe_rtt.as_millis(),
        suspicion: c.suspect_to_down_after.as_millis(),
        gossip: c
            .periodic_gossip
            .as_ref()
            .map_or(0, |g| g.frequency.as_millis()),
        max_tx: c.max_transmissions.get(),
    };
    assert_eq!(got, expected, "{size} members, {profile:?}");
}

#[test]
fn fast_profile_table() {
    let row = |suspicion, max_tx| Row {
        probe: 100,
        rtt: 50,
        suspicion,
        gossip: 100,
        max_tx,
    };
    check(0, Profile::Fast, row(600, 7));
    check(1, Profile::Fast, row(600, 7));
    check(5, Profile::Fast, row(600, 9));
    check(10, Profile::Fast, row(600, 10));
    check(100, Profile::Fast, row(600, 15));
    check(316, Profile::Fast, row(750, 17));
    check(1000, Profile::Fast, row(900, 19));
    check(10_000, Profile::Fast, row(1200, 24));
}

#[test]
fn lan_profile_is_focas_memberlist_like_default() {
    check(
        10,
        Profile::Lan,
        Row {
            probe: 1000,
            rtt: 500,
            suspicion: 4000,
            gossip: 200,
            max_tx: 4,
        },
    );
    check(
        1000,
        Profile::Lan,
        Row {
            probe: 1000,
            rtt: 500,
            suspicion: 12000,
            gossip: 200,
            max_tx: 12,
        },
    );
}

#[test]
fn fast_keeps_suspicion_and_room_for_indirect_probes() {
    for size in [1, 5, 100, 1000, 5000] {
        let c = timing(size, Profile::Fast);
        // Indirect probes run between the rtt and the end of the period.
        assert!(c.probe_rtt < c.probe_period, "{size}");
        // Suspicion spans several probe periods, so a live member can refute.
        assert!(c.suspect_to_down_after >= 3 * c.probe_period, "{size}");
        assert!(c.notify_down_members && c.periodic_announce_to_down_members.is_some());
        assert_eq!(c.max_packet_size.get(), MAX_PACKET);
        // Five relays: a false suspicion under 5% loss is ~2 in 100,000 probes.
        assert_eq!(c.num_indirect_probes.get(), 5);
    }
}
