//! The gateway benchmark: drover's Kubernetes API (the `drover-gateway` crate, started
//! in-process over TLS exactly as `drover up` starts it) driven over HTTPS by an HTTP/1.1
//! keep-alive client pool, side by side with the same operations done directly on the
//! store (`drover_store::Store`), so that what the gateway adds on top of the store shows.
//!
//! - [`side`]: the two sides behind one trait ([`side::Side`]).
//! - [`https`]: the HTTPS client (hyper's pool over rustls, trusting the generated CA).
//! - [`phases`]: the closed-loop phases (create, get, list, patch, watch delivery) and
//!   what each measures.
//! - [`open_loop`]: the fixed-rate run (scheduled send times; latency from the scheduled
//!   time, so a stalled server is not hidden by a client that waits for it).
//! - [`report`]: the markdown for BENCHMARKS.md.

pub mod https;
pub mod open_loop;
pub mod phases;
pub mod report;
pub mod side;
