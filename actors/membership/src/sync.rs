//! State sync on join: a newcomer asks its seeds for every member they know, so it does not
//! have to learn a large cluster one foca `Feed` (one packet, a few dozen members) at a time.
//!
//! foca's join is one `Announce` answered by one `Feed` packet: at 1,400 bytes that is about
//! fifty members. The rest a newcomer learns only when they probe it (each member probes one
//! other per period, so at n members that takes about n periods: 20 s at 100 members and
//! 200 s at 1,000) or through the periodic announce. memberlist solves this with a TCP
//! push/pull of the full state on join; drover does the same over UDP: a [`SyncMessage::Request`]
//! to each seed right after the announce, answered by as many [`SyncMessage::Reply`] datagrams
//! as the seed's active members need, which the newcomer hands to foca
//! ([`foca::Foca::apply_many`], without re-broadcasting: the cluster knows them already).
//! Every member also pulls one random member's state every 15 s, which repairs what the
//! gossip missed (memberlist's periodic push/pull, pull only).
//!
//! Sync datagrams carry their own two-byte tag ([`SYNC_MAGIC`]) so the driver tells them
//! from foca's packets before decoding anything; an older drover (or anything else) rejects
//! them as it rejects any datagram without its own magic. This module only encodes and
//! decodes; who is answered and whose replies are accepted is the driver's business.

use std::net::SocketAddr;

use bytes::{Buf, BufMut};
use foca::{Codec, Member, PostcardCodec, State};

use crate::identity::{self, IdentityError, NodeId};

/// The two bytes every sync datagram starts with: a tag (not [`crate::identity::WIRE_MAGIC`]'s)
/// and the sync protocol's version.
pub const SYNC_MAGIC: [u8; 2] = [0xd6, 0x01];

const REQUEST: u8 = 0;
const REPLY: u8 = 1;

/// Bytes before the first member of a reply: magic, kind, member count (u16).
const REPLY_HEADER: usize = SYNC_MAGIC.len() + 1 + 2;

/// A decoded sync datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncMessage {
    /// "Send me every active member you know."
    Request,
    /// Some of the sender's active members (one datagram of possibly several).
    Reply(Vec<Member<NodeId>>),
}

/// Why a sync datagram was refused.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Not a sync datagram, or an unknown version.
    #[error("not a drover sync datagram (bad magic or version)")]
    BadMagic,
    /// A kind byte this version does not know.
    #[error("unknown sync message kind {0}")]
    UnknownKind(u8),
    /// Truncated, trailing bytes, or a member that does not decode.
    #[error("malformed sync datagram: {0}")]
    Malformed(String),
    /// A member's identity is unusable.
    #[error("sync datagram carries a bad identity: {0}")]
    Identity(#[from] IdentityError),
    /// A reply listed a member as down: replies carry active members only.
    #[error("sync reply lists a down member")]
    DownMember,
}

/// Whether `datagram` is a sync datagram (rather than one of foca's).
pub fn is_sync(datagram: &[u8]) -> bool {
    datagram.starts_with(&SYNC_MAGIC)
}

/// The request datagram.
pub fn encode_request() -> Vec<u8> {
    let mut out = SYNC_MAGIC.to_vec();
    out.push(REQUEST);
    out
}

/// Reply datagrams, each at most `max_packet` bytes, listing the active ones of `members`
/// as alive at their incarnation (down members are left out). A suspect member is listed
/// as alive: the newcomer did not hear the suspicion, and neither would it hear the
/// refutation, which may be long gone from the gossip; foca never clears a suspicion it
/// did not raise itself except on that refutation, so a suspect listed as such would stay
/// suspect in the newcomer's view for good. Alive at the same incarnation is simply older
/// news: a suspicion or a down at that incarnation still wins over it. A member that
/// cannot fit a datagram on its own (impossible for a validated identity and a sane
/// `max_packet`) is skipped.
pub fn encode_replies<'a>(
    members: impl IntoIterator<Item = &'a Member<NodeId>>,
    max_packet: usize,
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut count: u16 = 0;
    let mut encoded = Vec::new();
    for member in members {
        if member.state() == State::Down {
            continue;
        }
        encoded.clear();
        let alive = Member::new(member.id().clone(), member.incarnation(), State::Alive);
        if PostcardCodec.encode_member(&alive, &mut encoded).is_err()
            || REPLY_HEADER + encoded.len() > max_packet
        {
            continue;
        }
        if count == u16::MAX || (count > 0 && current.len() + encoded.len() > max_packet) {
            out.push(finish(std::mem::take(&mut current), count));
            count = 0;
        }
        if count == 0 {
            current.extend_from_slice(&SYNC_MAGIC);
            current.push(REPLY);
            current.put_u16(0);
        }
        current.extend_from_slice(&encoded);
        count += 1;
    }
    if count > 0 {
        out.push(finish(current, count));
    }
    out
}

fn finish(mut datagram: Vec<u8>, count: u16) -> Vec<u8> {
    datagram[SYNC_MAGIC.len() + 1..REPLY_HEADER].copy_from_slice(&count.to_be_bytes());
    datagram
}

/// Whether a reply from `from` is one this member asked for: from one of its seeds (asked
/// at start), or from a member it pulled whose window (`pulls`: address, deadline) is
/// still open at `now`. Anything else is a stranger's list of members, and refused.
pub fn accepts_reply<I: PartialOrd + Copy>(
    from: SocketAddr,
    seeds: &[SocketAddr],
    pulls: &[(SocketAddr, I)],
    now: I,
) -> bool {
    seeds.contains(&from) || pulls.iter().any(|(a, until)| *a == from && *until > now)
}

/// Decodes a sync datagram; every identity in a reply is validated as a local one would be.
pub fn decode(datagram: &[u8]) -> Result<SyncMessage, SyncError> {
    let Some(rest) = datagram.strip_prefix(&SYNC_MAGIC) else {
        return Err(SyncError::BadMagic);
    };
    let Some((&kind, mut rest)) = rest.split_first() else {
        return Err(SyncError::Malformed("no message kind".to_string()));
    };
    match kind {
        REQUEST if rest.is_empty() => Ok(SyncMessage::Request),
        REQUEST => Err(SyncError::Malformed(
            "trailing bytes after a request".to_string(),
        )),
        REPLY => {
            if rest.remaining() < 2 {
                return Err(SyncError::Malformed("no member count".to_string()));
            }
            let count = rest.get_u16();
            // Each member takes at least a few bytes: a count larger than the datagram
            // cannot be honest, and is refused before allocating for it.
            if usize::from(count) > rest.remaining() {
                return Err(SyncError::Malformed(format!(
                    "{count} members in {} bytes",
                    rest.remaining()
                )));
            }
            let mut members = Vec::with_capacity(usize::from(count));
            for _ in 0..count {
                let member = PostcardCodec
                    .decode_member(&mut rest)
                    .map_err(|e| SyncError::Malformed(e.to_string()))?;
                identity::validate(member.id())?;
                if member.state() == State::Down {
                    return Err(SyncError::DownMember);
                }
                members.push(member);
            }
            if rest.has_remaining() {
                return Err(SyncError::Malformed(format!(
                    "{} trailing bytes",
                    rest.remaining()
                )));
            }
            Ok(SyncMessage::Reply(members))
        }
        other => Err(SyncError::UnknownKind(other)),
    }
}

#[cfg(test)]
mod tests;
