//! Who a member is on the wire: its name, UDP address, a restart counter and its metadata,
//! and the codec foca writes packets with.
//!
//! The whole identity travels in every packet (foca puts the sender and the receiver in each
//! header, and one copy in every cluster update), so it is kept small: postcard's varints and
//! length-prefixed strings make a typical node (`node-17`, `10.244.17.0/24`, `zone-a`, an API
//! address) about 50 bytes, and a 1,400-byte packet still carries twenty-odd updates. The
//! metadata is small enough that a separate custom broadcast (and a name -> metadata map that
//! a newcomer would have to be re-sent) would cost more than it saves.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, BufMut};
use foca::{Codec, Header, Member, PostcardCodec};
use serde::{Deserialize, Serialize};

/// Longest node name accepted (a Kubernetes DNS subdomain).
pub const MAX_NAME_LEN: usize = 253;

/// Largest encoded identity accepted at start: a bound on what every packet carries.
pub const MAX_IDENTITY_LEN: usize = 320;

/// The two bytes every drover gossip packet starts with: a tag and the wire version. A
/// datagram without them (a port scan, another protocol, an older drover) is rejected before
/// anything is decoded.
pub const WIRE_MAGIC: [u8; 2] = [0xd5, 0x01];

/// What a node tells its peers about itself through the gossip.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeMetadata {
    /// The node's pod CIDR (`10.244.3.0/24`); routes to it are programmed from membership.
    pub pod_cidr: String,
    /// The node's zone (`topology.kubernetes.io/zone`), empty when unknown.
    pub zone: String,
    /// Where the member's API listens, if it serves one (control-plane members set the
    /// gateway's address; node agents serve none).
    pub api: Option<SocketAddr>,
    /// How long (ms) the node may be cut off from the bus before it stops its StatefulSet
    /// pods itself; 0: it never does. The control plane recreates a down node's StatefulSet
    /// pods only after this long without the node's bus heartbeats, so the two sides use
    /// the node's own value and cannot disagree.
    pub fence_timeout_ms: u32,
}

/// A member's identity as foca knows it.
///
/// The name and the metadata are shared (`Arc`): foca clones identities for every packet it
/// sends (its header names both ends) and every member it picks, and the member view is
/// rebuilt from them, so a clone must not allocate. On the wire they are plain fields.
///
/// Two identities with one address are the same member at two points in time: the one with
/// the larger `bump` wins ([`foca::Identity::win_addr_conflict`]). `bump` starts at the
/// process start time in milliseconds, so a restarted agent replaces its old self everywhere,
/// and [`foca::Identity::renew`] adds one to it, so a member that was declared down while
/// alive (a pause, a partition) rejoins under a fresh identity by itself.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeId {
    /// The node's name (the Node object's name).
    pub name: Arc<str>,
    /// The UDP address peers reach its gossip socket at; the key foca tracks members by.
    pub addr: SocketAddr,
    /// Restart / rejoin counter; larger wins.
    pub bump: u64,
    /// What the node advertises about itself.
    pub meta: Arc<NodeMetadata>,
}

impl NodeId {
    /// A placeholder identity for a seed address: foca announces to identities, and a seed is
    /// known only by address. The real identity replaces it when the seed answers.
    pub(crate) fn seed(addr: SocketAddr) -> Self {
        NodeId {
            name: Arc::from(""),
            addr,
            bump: 0,
            meta: Arc::default(),
        }
    }
}

impl foca::Identity for NodeId {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(NodeId {
            bump: self.bump.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.bump > adversary.bump
    }
}

/// Why an identity cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    /// The name is empty.
    #[error("member name must not be empty")]
    EmptyName,
    /// The name is longer than [`MAX_NAME_LEN`].
    #[error("member name is {0} bytes long, the limit is {MAX_NAME_LEN}")]
    NameTooLong(usize),
    /// The encoded identity is longer than [`MAX_IDENTITY_LEN`].
    #[error(
        "member identity encodes to {0} bytes, the limit is {MAX_IDENTITY_LEN}; shorten the metadata"
    )]
    TooLarge(usize),
}

/// Checks an identity before it is put on the wire; returns its encoded length.
pub fn validate(id: &NodeId) -> Result<usize, IdentityError> {
    if id.name.is_empty() {
        return Err(IdentityError::EmptyName);
    }
    if id.name.len() > MAX_NAME_LEN {
        return Err(IdentityError::NameTooLong(id.name.len()));
    }
    let len = encoded_len(id);
    if len > MAX_IDENTITY_LEN {
        return Err(IdentityError::TooLarge(len));
    }
    Ok(len)
}

/// The number of bytes `id` takes on the wire.
pub fn encoded_len(id: &NodeId) -> usize {
    postcard::to_allocvec(id).map_or(usize::MAX, |bytes| bytes.len())
}

/// Why a datagram could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The datagram does not start with [`WIRE_MAGIC`].
    #[error("not a drover gossip packet (bad magic or version)")]
    BadMagic,
    /// The postcard payload is malformed.
    #[error("malformed gossip payload: {0}")]
    Postcard(#[from] postcard::Error),
}

/// foca's postcard codec behind a two-byte envelope ([`WIRE_MAGIC`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct WireCodec;

impl Codec<NodeId> for WireCodec {
    type Error = CodecError;

    fn encode_header(
        &mut self,
        header: &Header<NodeId>,
        mut buf: impl BufMut,
    ) -> Result<(), CodecError> {
        if buf.remaining_mut() < WIRE_MAGIC.len() {
            return Err(CodecError::Postcard(postcard::Error::SerializeBufferFull));
        }
        buf.put_slice(&WIRE_MAGIC);
        Ok(PostcardCodec.encode_header(header, buf)?)
    }

    fn decode_header(&mut self, mut buf: impl Buf) -> Result<Header<NodeId>, CodecError> {
        if buf.remaining() < WIRE_MAGIC.len() || buf.chunk()[..WIRE_MAGIC.len()] != WIRE_MAGIC {
            return Err(CodecError::BadMagic);
        }
        buf.advance(WIRE_MAGIC.len());
        Ok(PostcardCodec.decode_header(buf)?)
    }

    fn encode_member(
        &mut self,
        member: &Member<NodeId>,
        buf: impl BufMut,
    ) -> Result<(), CodecError> {
        Ok(PostcardCodec.encode_member(member, buf)?)
    }

    fn decode_member(&mut self, buf: impl Buf) -> Result<Member<NodeId>, CodecError> {
        Ok(PostcardCodec.decode_member(buf)?)
    }
}

#[cfg(test)]
mod tests;
