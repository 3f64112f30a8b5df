use super::*;
use crate::identity::WireCodec;
use bytes::{Buf, BufMut};
use foca::{Codec, State};

fn node(i: u16, bump: u64) -> NodeId {
    NodeId {
        name: format!("node-{i}").into(),
        addr: SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 7946)),
        bump,
        meta: NodeMetadata {
            pod_cidr: format!("10.244.{}.0/24", i % 256),
            zone: if i.is_multiple_of(2) { "zone-a" } else { "" }.to_string(),
            api: i
                .is_multiple_of(3)
                .then(|| SocketAddr::from(([10, 0, 0, 1], 6443))),
            fence_timeout_ms: u32::from(i) * 1000,
        }
        .into(),
    }
}

fn me() -> NodeId {
    node(1, 1_795_000_000_000)
}

fn update(i: u16, incarnation: u16, state: State) -> Member<NodeId> {
    Member::new(
        node(i, 1_795_000_000_000 + u64::from(i)),
        incarnation,
        state,
    )
}

/// A datagram as foca writes it: header, then (for messages with updates) a big-endian
/// count and the updates.
fn datagram(dst: NodeId, message: Message<NodeId>, updates: &[Member<NodeId>]) -> Vec<u8> {
    let header = Header {
        src: node(2, 7),
        src_incarnation: 4,
        dst,
        message,
    };
    let mut buf = Vec::new();
    WireCodec.encode_header(&header, &mut buf).unwrap();
    // foca piggybacks on every message but these three.
    if !matches!(
        header.message,
        Message::Announce | Message::Broadcast | Message::TurnUndead
    ) {
        buf.put_u16(u16::try_from(updates.len()).unwrap());
        for u in updates {
            WireCodec.encode_member(u, &mut buf).unwrap();
        }
    }
    buf
}

/// The updates foca would decode from a datagram.
fn decoded(data: &[u8]) -> Vec<Member<NodeId>> {
    let mut buf = data;
    WireCodec.decode_header(&mut buf).unwrap();
    let count = buf.get_u16();
    let members = (0..count)
        .map(|_| WireCodec.decode_member(&mut buf).unwrap())
        .collect();
    assert!(buf.is_empty(), "trailing bytes");
    members
}

fn every_message() -> Vec<Message<NodeId>> {
    vec![
        Message::Ping(1),
        Message::Ack(2),
        Message::PingReq {
            target: node(300, 1),
            probe_number: 3,
        },
        Message::IndirectPing {
            origin: node(301, 2),
            probe_number: 4,
        },
        Message::IndirectAck {
            target: node(302, 3),
            probe_number: 5,
        },
        Message::ForwardedAck {
            origin: node(303, 4),
            probe_number: 6,
        },
        Message::Feed,
        Message::Gossip,
    ]
}

/// The mirror types read every message the way foca's codec does: same header length,
/// same update boundaries.
#[test]
fn layout_agrees_with_foca_codec() {
    let updates = [
        update(3, 0, State::Alive),
        update(4, 7, State::Suspect),
        update(700, 65_535, State::Down),
    ];
    for message in every_message() {
        for n in 0..=updates.len() {
            let data = datagram(me(), message.clone(), &updates[..n]);
            let layout = layout(&data, &me()).unwrap_or_else(|| panic!("{message:?}"));
            let mut buf = &data[..];
            WireCodec.decode_header(&mut buf).unwrap();
            assert_eq!(layout.header_end, data.len() - buf.len(), "{message:?}");
            assert_eq!(layout.updates.len(), n);
            for (range, expected) in layout.updates.iter().zip(&updates) {
                let mut one = &data[range.clone()];
                assert_eq!(&WireCodec.decode_member(&mut one).unwrap(), expected);
                assert!(one.is_empty());
            }
            assert_eq!(layout.rest, data.len());
            assert_eq!(layout.src, node(2, 7).addr);
            assert!(layout.for_me);
        }
    }
}

/// `check(datagram, expected)`: what `layout` makes of it, as (for_me, updates) or None.
fn check(data: &[u8], expected: Option<(bool, usize)>) {
    let got = layout(data, &me()).map(|l| (l.for_me, l.updates.len()));
    assert_eq!(got, expected, "{data:?}");
}

#[test]
fn layout_table() {
    let two = [update(3, 0, State::Alive), update(4, 1, State::Alive)];
    let good = datagram(me(), Message::Gossip, &two);
    check(&good, Some((true, 2)));
    // Addressed to an older or different identity of this member: foca ignores the payload.
    check(
        &datagram(node(1, 5), Message::Gossip, &two),
        Some((false, 2)),
    );
    let mut other_zone = me();
    std::sync::Arc::make_mut(&mut other_zone.meta).zone = "zone-b".to_string();
    check(
        &datagram(other_zone, Message::Gossip, &two),
        Some((false, 2)),
    );
    // No updates section: left to foca.
    check(&datagram(me(), Message::Announce, &[]), None);
    check(&datagram(me(), Message::Broadcast, &[]), None);
    check(&datagram(me(), Message::TurnUndead, &[]), None);
    // Malformed: left to foca (which rejects it).
    check(&good[..good.len() - 1], None);
    check(&good[2..], None);
    check(b"", None);
    check(&[0xd5, 0x01, 0xff, 0xff], None);
    let mut bad_count = good.clone();
    let at = layout(&good, &me()).unwrap().header_end;
    bad_count[at..at + 2].copy_from_slice(&9u16.to_be_bytes());
    check(&bad_count, None);
}

#[test]
fn repeats_are_taken_out_once_applied() {
    let t0 = Instant::now();
    let mut dedup = Dedup::new(Some(Duration::from_secs(600)), t0);
    let (a, b, c) = (
        update(3, 0, State::Alive),
        update(4, 0, State::Alive),
        update(5, 2, State::Suspect),
    );

    // New updates: the datagram goes as it is, and they are remembered once applied.
    let first = datagram(me(), Message::Ping(1), &[a.clone(), b.clone()]);
    let verdict = dedup.filter(&first, &me(), t0);
    assert_eq!(
        verdict,
        Verdict::Apply {
            src: node(2, 7).addr,
            rewritten: false
        }
    );
    assert!(dedup.has_novel());
    dedup.record(&first, t0);
    assert_eq!(dedup.remembered(), 2);

    // One repeat, one new: the repeat is taken out, the rest kept byte for byte.
    let second = datagram(me(), Message::Ack(1), &[a.clone(), c.clone()]);
    let verdict = dedup.filter(&second, &me(), t0);
    assert_eq!(
        verdict,
        Verdict::Apply {
            src: node(2, 7).addr,
            rewritten: true
        }
    );
    assert_eq!(decoded(dedup.packet()), vec![c.clone()]);
    assert_eq!(dedup.dropped, 1);

    // Not recorded (say foca held the sender down): c is still new next time.
    let third = datagram(me(), Message::Gossip, &[c.clone(), b.clone(), c.clone()]);
    dedup.filter(&third, &me(), t0);
    assert_eq!(
        decoded(dedup.packet()),
        vec![c.clone()],
        "b dropped, c once"
    );
    dedup.record(&third, t0);

    // Only repeats: an empty updates section, the message itself still delivered.
    let fourth = datagram(me(), Message::Ping(2), &[a.clone(), b.clone(), c.clone()]);
    dedup.filter(&fourth, &me(), t0);
    assert!(!dedup.has_novel());
    assert_eq!(decoded(dedup.packet()), vec![]);
    let mut rest = dedup.packet();
    assert_eq!(
        WireCodec.decode_header(&mut rest).unwrap().message,
        Message::Ping(2)
    );

    // A newer state of a remembered member is a different update.
    let newer = update(3, 1, State::Alive);
    let fifth = datagram(me(), Message::Gossip, std::slice::from_ref(&newer));
    assert!(matches!(
        dedup.filter(&fifth, &me(), t0),
        Verdict::Apply {
            rewritten: false,
            ..
        }
    ));

    // Not addressed to this identity: foca ignores the payload, nothing to remember.
    let stale_dst = datagram(node(1, 3), Message::Gossip, std::slice::from_ref(&a));
    assert_eq!(dedup.filter(&stale_dst, &me(), t0), Verdict::AsIs);
    assert!(!dedup.has_novel());
}

#[test]
fn memory_expires_before_foca_forgets_down_members() {
    let t0 = Instant::now();
    // foca forgets down members after 30 s: remember for 10 s.
    let mut dedup = Dedup::new(Some(Duration::from_secs(30)), t0);
    let a = [update(3, 0, State::Down)];
    let data = datagram(me(), Message::Gossip, &a);
    dedup.filter(&data, &me(), t0);
    dedup.record(&data, t0);
    let repeat = |dedup: &mut Dedup, at| {
        matches!(
            dedup.filter(&data, &me(), at),
            Verdict::Apply {
                rewritten: true,
                ..
            }
        )
    };
    assert!(repeat(&mut dedup, t0 + Duration::from_secs(9)));
    assert!(!repeat(&mut dedup, t0 + Duration::from_secs(11)));
    assert_eq!(dedup.remembered(), 0);

    let long = Dedup::new(None, t0);
    assert_eq!(long.ttl, TTL);
}
