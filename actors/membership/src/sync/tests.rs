use super::*;
use crate::identity::NodeMetadata;

fn id(i: u16) -> NodeId {
    NodeId {
        name: format!("node-{i}").into(),
        addr: std::net::SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 7946)),
        bump: 1_700_000_000_000 + u64::from(i),
        meta: NodeMetadata {
            pod_cidr: format!("10.244.{i}.0/24"),
            zone: "zone-a".to_string(),
            api: None,
            fence_timeout_ms: 5_000,
        }
        .into(),
    }
}

fn alive(i: u16) -> Member<NodeId> {
    Member::new(id(i), i % 3, State::Alive)
}

/// `check(datagram, expected decode result as a string)`: the decoded message, or the
/// error's message.
fn check(datagram: &[u8], expected: Result<SyncMessage, &str>) {
    let got = decode(datagram).map_err(|e| e.to_string());
    assert_eq!(got, expected.map_err(str::to_string), "{datagram:?}");
}

fn reply_bytes(members: &[Member<NodeId>]) -> Vec<u8> {
    let mut replies = encode_replies(members, 65_000);
    assert_eq!(replies.len(), 1);
    replies.remove(0)
}

#[test]
fn decode_table() {
    let two = [alive(1), Member::new(id(2), 4, State::Suspect)];
    let good = reply_bytes(&two);
    let mut trailing = good.clone();
    trailing.push(0);
    let mut count_too_big = good.clone();
    count_too_big[3..5].copy_from_slice(&u16::MAX.to_be_bytes());
    let mut count_short = good.clone();
    count_short[3..5].copy_from_slice(&3u16.to_be_bytes());
    let mut down = reply_bytes(&[alive(1)]);
    // The member's state is its last byte (postcard: id, incarnation, state as a varint).
    *down.last_mut().unwrap() = 2;
    let mut nameless = id(9);
    nameless.name = "".into();
    let empty_name = reply_bytes(&[Member::new(nameless, 0, State::Alive)]);

    check(&encode_request(), Ok(SyncMessage::Request));
    // A suspect goes out as alive at its incarnation (see encode_replies).
    check(
        &good,
        Ok(SyncMessage::Reply(vec![
            alive(1),
            Member::new(id(2), 4, State::Alive),
        ])),
    );
    check(&[0xd6, 0x01, 1, 0, 0], Ok(SyncMessage::Reply(vec![])));
    check(
        &[],
        Err("not a drover sync datagram (bad magic or version)"),
    );
    check(
        &[0xd5, 0x01, 0],
        Err("not a drover sync datagram (bad magic or version)"),
    );
    check(
        &[0xd6, 0x02, 0],
        Err("not a drover sync datagram (bad magic or version)"),
    );
    check(
        &[0xd6, 0x01],
        Err("malformed sync datagram: no message kind"),
    );
    check(&[0xd6, 0x01, 7], Err("unknown sync message kind 7"));
    check(
        &[0xd6, 0x01, 0, 0],
        Err("malformed sync datagram: trailing bytes after a request"),
    );
    check(
        &[0xd6, 0x01, 1, 0],
        Err("malformed sync datagram: no member count"),
    );
    check(&trailing, Err("malformed sync datagram: 1 trailing bytes"));
    check(
        &count_too_big,
        Err(&format!(
            "malformed sync datagram: 65535 members in {} bytes",
            good.len() - 5
        )),
    );
    assert!(matches!(decode(&count_short), Err(SyncError::Malformed(_))));
    check(&down, Err("sync reply lists a down member"));
    check(
        &empty_name,
        Err("sync datagram carries a bad identity: member name must not be empty"),
    );
}

#[test]
fn garbage_never_panics() {
    let mut x: u32 = 0x9e37_79b9;
    for len in 0..300usize {
        let mut d = vec![0xd6, 0x01, (len % 3) as u8];
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            d.push(x as u8);
        }
        let _ = decode(&d);
    }
}

#[test]
fn replies_split_at_the_packet_size_and_skip_down_members() {
    let mut members: Vec<Member<NodeId>> = (0..1000).map(alive).collect();
    members.push(Member::new(id(5000), 0, State::Down));
    members[7] = Member::new(id(7), 3, State::Suspect);
    let replies = encode_replies(&members, 1400);
    assert!(replies.len() > 1);
    let mut back = Vec::new();
    for r in &replies {
        assert!(r.len() <= 1400, "{}", r.len());
        assert!(is_sync(r));
        match decode(r).unwrap() {
            SyncMessage::Reply(m) => back.extend(m),
            other => panic!("{other:?}"),
        }
    }
    members.pop();
    // The suspect is listed as alive at its incarnation.
    members[7] = Member::new(id(7), 3, State::Alive);
    assert_eq!(back, members);
    // Every datagram but the last is full: the next member (under 100 bytes here) did
    // not fit.
    for r in &replies[..replies.len() - 1] {
        assert!(r.len() > 1300, "{}", r.len());
    }
    // Nothing to send, no datagram; a packet too small for any member, none either.
    assert!(encode_replies(&[], 1400).is_empty());
    assert!(encode_replies(&members, 20).is_empty());
}

#[test]
fn replies_are_accepted_only_when_asked_for() {
    let a = |p: u16| std::net::SocketAddr::from(([127, 0, 0, 1], p));
    let seeds = [a(1), a(2)];
    let pulls = [(a(3), 10u32), (a(4), 5)];
    // (from, now, accepted)
    let table = [
        (a(1), 100, true), // a seed, any time
        (a(2), 0, true),   // the other seed
        (a(3), 9, true),   // pulled, window open
        (a(3), 10, false), // pulled, window closed
        (a(4), 4, true),   // pulled
        (a(4), 6, false),  // too late
        (a(5), 0, false),  // never asked
    ];
    for (from, now, expected) in table {
        assert_eq!(
            accepts_reply(from, &seeds, &pulls, now),
            expected,
            "{from} at {now}"
        );
    }
    assert!(!accepts_reply(a(1), &[], &[], 0));
}
