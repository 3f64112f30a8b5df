//! The membership view the control plane answers on [`crate::subjects::MEMBERS_VIEW`] and
//! the gateway serves at `/drover/members` (`drover members`, `kubectl get --raw
//! /drover/members`): one observer's view of the gossip, JSON.

use serde::{Deserialize, Serialize};

/// Path the gateway serves the view at (a non-resource URL, like `/healthz`).
pub const MEMBERS_PATH: &str = "/drover/members";

/// One observer's view of the gossip membership.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MembersView {
    /// The member whose view this is (the control plane's gossip member, or the node
    /// agent running inside `drover up`).
    pub observer: String,
    /// Every member it knows, itself included, down ones until they are forgotten.
    pub members: Vec<MemberInfo>,
}

/// One member as the observer sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberInfo {
    /// The member's name (a Node's name for node agents).
    pub name: String,
    /// Its gossip address (`ip:port`).
    pub address: String,
    /// `alive`, `suspect` or `down`.
    pub status: String,
    /// Its pod CIDR (empty for a control-plane member).
    #[serde(default)]
    pub pod_cidr: String,
    /// Its zone, empty when unknown.
    #[serde(default)]
    pub zone: String,
    /// The API address it serves, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    /// Its StatefulSet fence timeout in milliseconds (0: it does not fence).
    #[serde(default)]
    pub fence_timeout_ms: u32,
}
