//! The node agent (the kubelet role, done as actors): one NodeActor per node registers
//! the Node, keeps its Lease and conditions fresh and watches only the pods bound to it;
//! one PodActor per pod drives the pod's sandbox and containers through a
//! [`runtime::Runtime`] and reports status. Two runtimes implement the trait: containerd
//! over CRI (real containers, CNI networking) and the hollow runtime ([`hollow`]: no
//! processes, for simulated fleets).
//!
//! Layout: [`runtime`] is the seam; [`cidr`] and [`node`] are I/O-free cores (CIDR
//! arithmetic, the Node object, pod status); [`agent`] is the thin loop that talks to
//! the store; [`fleet`] runs many hollow agents in one process; [`stream`] serves
//! `kubectl logs` and `kubectl exec` for the node's pods over NATS; [`metrics`] publishes
//! the node's and its pods' CPU/memory usage on NATS (`kubectl top`, the HPA).
//!
//! The PodActor ([`pod`]) does what the kubelet does for a pod spec, from small parts:
//! [`podspec`] (pure: env, QoS, resources, ports, DNS, pull policy), [`volumes`]
//! (volume plugins on the node's disk), [`probe`] (startup/liveness/readiness) and
//! [`events`] (core/v1 Events with aggregation and rate limiting).
//!
//! The containerd side is built from small modules: [`containerd`] (config + the
//! containerd child), [`cni`] (the conflist for the node's pod CIDR), [`image`] (OCI
//! archives, the pause image, `ctr` import), [`cri`] (the CRI client) and
//! [`cri_runtime`] (the [`runtime::Runtime`] over CRI); [`host`] sets them up on a node.
//!
//! **Architecture Invariant:** only this crate talks CRI; the gateway reaches node-side
//! features (logs, exec) over NATS.

pub mod agent;
pub mod cidr;
pub mod cni;
pub mod containerd;
pub mod cri;
pub mod cri_runtime;
pub mod dns;
pub mod events;
pub mod fence;
pub mod fleet;
pub mod hollow;
pub mod host;
pub mod image;
pub mod metrics;
pub mod node;
pub mod pod;
pub mod podspec;
pub mod probe;
pub mod proxy;
pub mod routes;
pub mod runtime;
pub mod stream;
pub mod volumes;

pub use agent::{AgentConfig, AgentError, DEFAULT_FENCE_TIMEOUT_MS, GossipConfig, NodeAgent};
pub use cri_runtime::{CriRuntime, CriRuntimeConfig};
pub use fleet::{FleetConfig, HollowFleet, run_hollow_fleet};
pub use hollow::{HollowConfig, HollowRuntime};
pub use host::{ContainerdHost, HostConfig};
pub use runtime::Runtime;
