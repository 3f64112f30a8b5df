//! Repeated cluster updates taken out of a datagram before foca sees it.
//!
//! SWIM disseminates every update by having each member that learns it piggyback it
//! [`crate::timing`]'s `2 ln(n + 1) + 5` times, so a member receives each update about that
//! many times, and all but the first change nothing. foca still pays for every copy: it
//! decodes it (a few allocations) and looks its member up in a `Vec` of every member it
//! knows, so one copy costs O(n), and while n members join (n updates, each received
//! ~19 times by each of n members) a member spends O(n^2) per second on copies. On a real
//! fleet that is a few milliseconds a second per node; `drover sim` and the benches run
//! hundreds to a thousand members in one process on two cores, where it was the wall at
//! about 300 members (BENCHMARKS.md "Membership").
//!
//! So the driver remembers the bytes of every update foca applied for [`Dedup::ttl`], and
//! a datagram carrying updates it already applied is rewritten without them. That is exact,
//! not a heuristic: an update is a member's (identity, incarnation, state), and applying the
//! same one again is a no-op in SWIM's order (a larger incarnation or a worse state wins,
//! identities with a larger bump replace smaller ones) unless foca has forgotten the member
//! in between, which it does only `remove_down_after` after the member went down, longer
//! than the memory here. An update is remembered only when foca applied the datagram: it
//! was addressed to this member's current identity, foca returned no error, and its sender
//! is active afterwards (foca ignores the updates of a sender it holds down, and those must
//! still be applied when another member relays them).
//!
//! The datagram is read with borrowed mirrors of the wire types ([`NodeIdRef`]), so a
//! datagram costs no allocation unless it is rewritten.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::net::SocketAddr;
use std::ops::Range;

use foca::{Header, Member, Message};
use serde::Deserialize;
use tokio::time::{Duration, Instant};

use crate::identity::{NodeId, NodeMetadata, WIRE_MAGIC};

/// How long an applied update is remembered when foca forgets down members late enough
/// (see [`Dedup::new`]).
const TTL: Duration = Duration::from_secs(60);

/// [`NodeId`] as it is on the wire, borrowed from the datagram (same fields, same order:
/// postcard has no field names, so this must mirror `NodeId` exactly; `same_identity`
/// destructures both so a new field does not compile until it is added here).
#[derive(Debug, Deserialize)]
pub(crate) struct NodeIdRef<'a> {
    #[serde(borrow)]
    name: &'a str,
    addr: SocketAddr,
    bump: u64,
    #[serde(borrow)]
    meta: MetadataRef<'a>,
}

/// [`NodeMetadata`] as it is on the wire.
#[derive(Debug, Deserialize)]
struct MetadataRef<'a> {
    #[serde(borrow)]
    pod_cidr: &'a str,
    #[serde(borrow)]
    zone: &'a str,
    api: Option<SocketAddr>,
    fence_timeout_ms: u32,
}

/// Whether the wire identity is `id` (foca's `accept_payload` compares whole identities).
fn same_identity(wire: &NodeIdRef<'_>, id: &NodeId) -> bool {
    let NodeId {
        name,
        addr,
        bump,
        meta,
    } = id;
    let NodeMetadata {
        pod_cidr,
        zone,
        api,
        fence_timeout_ms,
    } = &**meta;
    wire.name == &**name
        && wire.addr == *addr
        && wire.bump == *bump
        && wire.meta.pod_cidr == pod_cidr
        && wire.meta.zone == zone
        && wire.meta.api == *api
        && wire.meta.fence_timeout_ms == *fence_timeout_ms
}

/// Where a foca datagram's parts are.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    /// The sender's address.
    pub(crate) src: SocketAddr,
    /// Whether the datagram is addressed to the identity it was checked against.
    pub(crate) for_me: bool,
    /// Bytes up to the update count (magic and header).
    pub(crate) header_end: usize,
    /// Each piggybacked update's bytes, in order.
    pub(crate) updates: Vec<Range<usize>>,
    /// Where what follows the updates (custom broadcasts; none in drover) starts.
    pub(crate) rest: usize,
}

/// Reads a foca datagram the way foca's `handle_data` does; `None` when it is not one
/// foca would apply updates from (bad magic, undecodable, an `Announce`, or no updates
/// section), which is then left for foca to judge.
pub(crate) fn layout(data: &[u8], me: &NodeId) -> Option<Layout> {
    let body = data.strip_prefix(&WIRE_MAGIC[..])?;
    let (header, after): (Header<NodeIdRef<'_>>, &[u8]) = postcard::take_from_bytes(body).ok()?;
    let header_end = data.len() - after.len();
    // foca: any payload after an Announce is malformed, a Broadcast has no updates section,
    // and a section needs its two-byte count.
    if matches!(header.message, Message::Announce | Message::Broadcast) || after.len() < 2 {
        return None;
    }
    let count = u16::from_be_bytes([after[0], after[1]]);
    let mut at = header_end + 2;
    let mut updates = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let (_member, rest): (Member<NodeIdRef<'_>>, &[u8]) =
            postcard::take_from_bytes(data.get(at..)?).ok()?;
        let end = data.len() - rest.len();
        updates.push(at..end);
        at = end;
    }
    Some(Layout {
        src: header.src.addr,
        for_me: same_identity(&header.dst, me),
        header_end,
        updates,
        rest: at,
    })
}

/// What [`Dedup::filter`] decided about one datagram.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Give foca the datagram as it is; nothing to remember afterwards.
    AsIs,
    /// Give foca the datagram (as it is when `rewritten` is false, else [`Dedup::packet`]);
    /// when foca applied it and `src` is active afterwards, call [`Dedup::record`].
    Apply {
        /// The sender, whose activeness decides whether the updates were applied.
        src: SocketAddr,
        /// Whether repeats were taken out.
        rewritten: bool,
    },
}

/// The memory of applied updates (see the module docs), keyed by a 64-bit SipHash of each
/// update's bytes (keyed per process): comparing bytes was a tenth of a large cluster's
/// CPU. Two different updates sharing a hash (about one in 10^15 at ten thousand
/// remembered updates) would cost one member one missed update until its next periodic pull.
pub(crate) struct Dedup {
    seen: HashMap<u64, Instant, BuildHasherDefault<Prehashed>>,
    hasher: RandomState,
    ttl: Duration,
    next_sweep: Instant,
    /// The rewritten datagram of the last [`Dedup::filter`].
    packet: Vec<u8>,
    /// The last filtered datagram's updates not seen before.
    novel: Vec<Range<usize>>,
    /// Updates taken out so far.
    pub(crate) dropped: u64,
}

impl Dedup {
    /// A memory for a member whose foca forgets down members after `remove_down_after`
    /// (`None`: never). Updates are remembered for 60 s, or a third of that if shorter.
    pub(crate) fn new(remove_down_after: Option<Duration>, now: Instant) -> Self {
        let ttl = remove_down_after.map_or(TTL, |d| TTL.min(d / 3));
        Dedup {
            seen: HashMap::default(),
            hasher: RandomState::new(),
            ttl,
            next_sweep: now + ttl,
            packet: Vec::new(),
            novel: Vec::new(),
            dropped: 0,
        }
    }

    /// Looks at a received datagram (one that is not a sync datagram); `me` is this
    /// member's current identity.
    pub(crate) fn filter(&mut self, data: &[u8], me: &NodeId, now: Instant) -> Verdict {
        self.novel.clear();
        if now >= self.next_sweep {
            let ttl = self.ttl;
            self.seen.retain(|_, at| now.duration_since(*at) < ttl);
            self.next_sweep = now + ttl / 2;
        }
        let Some(layout) = layout(data, me) else {
            return Verdict::AsIs;
        };
        if !layout.for_me || layout.updates.is_empty() {
            return Verdict::AsIs;
        }
        let total = layout.updates.len();
        for range in layout.updates {
            let ttl = self.ttl;
            if self
                .seen
                .get(&self.hasher.hash_one(&data[range.clone()]))
                .is_some_and(|at| now.duration_since(*at) < ttl)
            {
                continue;
            }
            // A datagram carrying one update twice: the second copy is a repeat too.
            if self
                .novel
                .iter()
                .any(|r| data[r.clone()] == data[range.clone()])
            {
                continue;
            }
            self.novel.push(range);
        }
        let rewritten = self.novel.len() < total;
        if rewritten {
            self.dropped += (total - self.novel.len()) as u64;
            self.packet.clear();
            self.packet.extend_from_slice(&data[..layout.header_end]);
            // At most `total`, which came from a u16.
            let count = u16::try_from(self.novel.len()).unwrap_or(u16::MAX);
            self.packet.extend_from_slice(&count.to_be_bytes());
            for range in &self.novel {
                self.packet.extend_from_slice(&data[range.clone()]);
            }
            self.packet.extend_from_slice(&data[layout.rest..]);
        }
        Verdict::Apply {
            src: layout.src,
            rewritten,
        }
    }

    /// The rewritten datagram of the last [`Dedup::filter`] that returned `rewritten`.
    pub(crate) fn packet(&self) -> &[u8] {
        &self.packet
    }

    /// Whether the last filtered datagram carried updates not seen before (only then is
    /// [`Dedup::record`] worth the caller's check of the sender).
    pub(crate) fn has_novel(&self) -> bool {
        !self.novel.is_empty()
    }

    /// Remembers the last filtered datagram's new updates as applied; `data` is that
    /// datagram as received.
    pub(crate) fn record(&mut self, data: &[u8], now: Instant) {
        for range in self.novel.drain(..) {
            if let Some(bytes) = data.get(range) {
                self.seen.insert(self.hasher.hash_one(bytes), now);
            }
        }
    }

    /// How many updates are remembered.
    #[cfg(test)]
    pub(crate) fn remembered(&self) -> usize {
        self.seen.len()
    }
}

/// The hasher of keys that are hashes already.
#[derive(Default)]
pub(crate) struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed with this; fold anything else in anyway.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests;
