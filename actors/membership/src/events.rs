//! The member view and its events, and the pure translation of foca's notifications into
//! them.

use std::net::SocketAddr;
use std::sync::Arc;

use foca::{OwnedNotification, State};

use crate::identity::{NodeId, NodeMetadata};

/// A member's state as this member sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemberState {
    /// Answering probes.
    Alive,
    /// A probe failed; it is declared down unless it refutes in time.
    Suspect,
    /// Declared down (failed, or left).
    Down,
}

impl From<State> for MemberState {
    fn from(state: State) -> Self {
        match state {
            State::Alive => MemberState::Alive,
            State::Suspect => MemberState::Suspect,
            State::Down => MemberState::Down,
        }
    }
}

/// One member of the cluster. Cloning it does not allocate (the name and metadata are
/// shared with the identity it was made from).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The node's name.
    pub name: Arc<str>,
    /// Its gossip address.
    pub addr: SocketAddr,
    /// What it advertises.
    pub metadata: Arc<NodeMetadata>,
    /// Its state.
    pub state: MemberState,
}

impl Member {
    pub(crate) fn new(id: &NodeId, state: MemberState) -> Self {
        Member {
            name: id.name.clone(),
            addr: id.addr,
            metadata: id.meta.clone(),
            state,
        }
    }
}

/// A change in the membership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberEvent {
    /// A member joined, or came back after being down.
    Up(Member),
    /// A member was declared down or left.
    Down(Member),
    /// A live member changed its identity (restarted before it was declared down, or
    /// changed its metadata).
    Updated(Member),
}

impl MemberEvent {
    /// The member the event is about.
    pub fn member(&self) -> &Member {
        match self {
            MemberEvent::Up(m) | MemberEvent::Down(m) | MemberEvent::Updated(m) => m,
        }
    }
}

/// The events for one batch of foca notifications (those one input produced).
///
/// `state_of` tells a member's state after the batch. A rename (a member replaced by a newer
/// identity with the same address) is an `Updated` only when the batch does not also bring
/// that identity up or down (then the `Up` or `Down` says it all), and only for a live
/// member. Notifications about this member itself (`Active`, `Idle`, `Defunct`, `Rejoin`)
/// are not member events.
pub fn events(
    batch: &[OwnedNotification<NodeId>],
    state_of: impl Fn(&NodeId) -> Option<MemberState>,
) -> Vec<MemberEvent> {
    let up_or_down = |id: &NodeId| {
        batch.iter().any(|n| {
            matches!(n, OwnedNotification::MemberUp(x) | OwnedNotification::MemberDown(x) if x == id)
        })
    };
    let mut out = Vec::new();
    for note in batch {
        match note {
            OwnedNotification::MemberUp(id) => {
                let state = match state_of(id) {
                    Some(MemberState::Suspect) => MemberState::Suspect,
                    _ => MemberState::Alive,
                };
                out.push(MemberEvent::Up(Member::new(id, state)));
            }
            OwnedNotification::MemberDown(id) => {
                out.push(MemberEvent::Down(Member::new(id, MemberState::Down)));
            }
            OwnedNotification::Rename(_, new) if !up_or_down(new) => {
                if let Some(state @ (MemberState::Alive | MemberState::Suspect)) = state_of(new) {
                    out.push(MemberEvent::Updated(Member::new(new, state)));
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests;
