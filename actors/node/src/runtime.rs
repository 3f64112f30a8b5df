//! The container runtime seam. Placeholder until the node-agent work lands: the
//! NodeActor and PodActors only ever talk to a [`Runtime`], never to CRI directly.

/// A container runtime as the node agent uses it.
pub trait Runtime: Send + Sync + 'static {
    /// A short name for logs and the Node's `containerRuntimeVersion` (`containerd://1.6.20`,
    /// `hollow://0.1`).
    fn version(&self) -> String;
}
