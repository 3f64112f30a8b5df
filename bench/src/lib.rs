//! Side-by-side benchmarks of drover; not tests (they measure and print markdown for
//! BENCHMARKS.md). Two thin binaries share this library:
//!
//! - `store-bench` (`src/main.rs`): drover's store (JetStream KV) against etcd 3.4 at
//!   equal durability ([`backend`], [`workload`], [`report`]).
//! - `gateway-bench` (`src/gateway_main.rs`): drover's gateway over HTTPS against the
//!   same operations done directly on the store, so the gateway's own cost shows
//!   ([`gateway_bench`]).
//!
//! Both start their own servers on 127.0.0.1 and stop them by PID ([`servers`]), probe
//! the disk's sync rate before and after ([`disk`]), and run every round in a fresh child
//! process.

pub mod backend;
pub mod disk;
pub mod gateway_bench;
pub mod report;
pub mod servers;
pub mod workload;
