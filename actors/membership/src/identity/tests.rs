use super::*;
use foca::{Identity, Message};

fn node(name: &str, zone: &str) -> NodeId {
    NodeId {
        name: name.into(),
        addr: "10.0.0.7:7946".parse().unwrap(),
        bump: 1_795_000_000_000,
        meta: NodeMetadata {
            pod_cidr: "10.244.17.0/24".to_string(),
            zone: zone.to_string(),
            api: Some("10.0.0.7:10250".parse().unwrap()),
            fence_timeout_ms: 5_000,
        }
        .into(),
    }
}

fn header(src: NodeId, dst: NodeId) -> Header<NodeId> {
    Header {
        src,
        src_incarnation: 3,
        dst,
        message: Message::Ping(9),
    }
}

fn encode(header: &Header<NodeId>) -> Vec<u8> {
    let mut buf = Vec::new();
    WireCodec.encode_header(header, &mut buf).unwrap();
    buf
}

/// `check(id, expected)`: validation of one identity.
fn check(id: NodeId, expected: Result<(), IdentityError>) {
    assert_eq!(validate(&id).map(|_| ()), expected, "{id:?}");
}

#[test]
fn validation() {
    check(node("node-17", "zone-a"), Ok(()));
    check(node("", "zone-a"), Err(IdentityError::EmptyName));
    check(
        node(&"n".repeat(254), "zone-a"),
        Err(IdentityError::NameTooLong(254)),
    );
    check(node(&"n".repeat(253), ""), Ok(()));
    let big = node("node-1", &"z".repeat(300));
    let len = encoded_len(&big);
    check(big, Err(IdentityError::TooLarge(len)));
}

#[test]
fn a_typical_identity_is_small() {
    let len = validate(&node("node-17", "zone-a")).unwrap();
    assert!(len <= 64, "identity takes {len} bytes");
}

#[test]
fn header_round_trips_with_metadata() {
    let h = header(node("a", "zone-a"), node("b", "zone-b"));
    let bytes = encode(&h);
    assert_eq!(bytes[..2], WIRE_MAGIC);
    let mut slice = bytes.as_slice();
    let decoded = WireCodec.decode_header(&mut slice).unwrap();
    assert_eq!(decoded, h);
    assert!(slice.is_empty(), "the whole header was consumed");
}

#[test]
fn member_round_trips() {
    let m = Member::new(node("a", "zone-a"), 4, foca::State::Suspect);
    let mut buf = Vec::new();
    WireCodec.encode_member(&m, &mut buf).unwrap();
    assert_eq!(WireCodec.decode_member(buf.as_slice()).unwrap(), m);
}

/// `check_garbage(datagram, bad_magic)`: a datagram is refused, by the envelope or by postcard.
fn check_garbage(datagram: &[u8], bad_magic: bool) {
    match WireCodec.decode_header(datagram) {
        Err(CodecError::BadMagic) => assert!(bad_magic, "{datagram:?} refused by the envelope"),
        Err(CodecError::Postcard(_)) => assert!(!bad_magic, "{datagram:?} refused by postcard"),
        Ok(h) => panic!("{datagram:?} decoded as {h:?}"),
    }
}

#[test]
fn garbage_is_refused() {
    let good = encode(&header(node("a", "z"), node("b", "z")));
    check_garbage(b"", true);
    check_garbage(&[0xd5], true);
    check_garbage(b"GET / HTTP/1.1\r\n", true);
    check_garbage(&[0xd5, 0x02, 1, 2, 3], true); // a future wire version
    check_garbage(&[0xd5, 0x01], false);
    check_garbage(&[0xd5, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], false);
    check_garbage(&good[..good.len() / 2], false);
}

#[test]
fn renew_wins_over_the_old_identity() {
    let old = node("a", "z");
    let new = old.renew().unwrap();
    assert_eq!(new.addr(), old.addr());
    assert!(new.win_addr_conflict(&old));
    assert!(!old.win_addr_conflict(&new));
    assert_eq!((&*new.name, &new.meta), (&*old.name, &old.meta));
}
