//! drover's actor system. Today it holds what `drover up` needs to run the bus:
//!
//! - [`restart`]: the restart policy (budget + exponential backoff) every supervised
//!   thing in drover uses, as an I/O-free core;
//! - [`natsd`]: the pinned nats-server as a supervised child process (config rendering,
//!   version check, readiness, restart, graceful stop);
//! - [`bus`]: typed subscriptions that decode drover's envelope and log-and-drop
//!   anything else;
//! - [`supervise`]: supervised actors (restart on panic under the restart policy).
//!
//! Node, pod, GPU, scheduler and controller actors (actix) arrive with their issues and
//! use the same restart policy.

pub mod bus;
pub mod natsd;
pub mod restart;
pub mod supervise;
