//! The hollow runtime: [`Runtime`] without processes, for simulated fleets
//! (`run_hollow_fleet`) and scale tests. Sandboxes get real-looking IPs from the node's pod
//! CIDR; containers "run" after a configurable start latency, fail to start with a
//! configurable probability, and report synthetic CPU and memory usage.
//!
//! Deterministic: latency is a `tokio::time::sleep` (so tests under tokio's paused clock
//! replay exactly), randomness comes from the seeded RNG passed in, and timestamps from an
//! injectable clock.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::cidr::Ipv4Cidr;
use crate::runtime::{
    ContainerConfig, ContainerId, ContainerState, ContainerStats, ContainerStatus, Result, Runtime,
    RuntimeError, RuntimeVersion, SandboxConfig, SandboxId, SandboxInfo, SandboxState,
};

/// Runtime name reported in `containerRuntimeVersion`.
pub const HOLLOW_RUNTIME_NAME: &str = "hollow";
/// Version reported in `containerRuntimeVersion`.
pub const HOLLOW_RUNTIME_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Default synthetic CPU use of a running container (millicores).
pub const DEFAULT_CPU_MILLIS: u64 = 5;
/// Default synthetic memory use of a running container (bytes).
pub const DEFAULT_MEMORY_BYTES: u64 = 8 * 1024 * 1024;

/// How a hollow runtime behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct HollowConfig {
    /// Time `run_sandbox` and `start_container` each take.
    pub start_latency: Duration,
    /// Probability in `[0, 1]` that `start_container` fails (the container ends `Exited`
    /// with reason `StartError`).
    pub failure_rate: f64,
    /// CPU a running container reports, millicores (jittered by up to +-20 %).
    pub cpu_millis: u64,
    /// Memory a running container reports, bytes (jittered by up to +-20 %).
    pub memory_bytes: u64,
}

impl Default for HollowConfig {
    fn default() -> Self {
        HollowConfig {
            start_latency: Duration::ZERO,
            failure_rate: 0.0,
            cpu_millis: DEFAULT_CPU_MILLIS,
            memory_bytes: DEFAULT_MEMORY_BYTES,
        }
    }
}

/// Where timestamps come from (wall clock by default; tests inject a fixed one).
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The in-memory runtime. Cheap: one mutex-guarded map per node.
pub struct HollowRuntime {
    config: HollowConfig,
    clock: Clock,
    state: Mutex<State>,
}

struct State {
    rng: StdRng,
    pod_cidr: Option<Ipv4Cidr>,
    used_ips: BTreeSet<Ipv4Addr>,
    next_id: u64,
    sandboxes: BTreeMap<SandboxId, SandboxInfo>,
    containers: BTreeMap<ContainerId, ContainerStatus>,
}

impl HollowRuntime {
    /// A hollow runtime drawing its failures and jitter from `rng`, with the wall clock.
    pub fn new(config: HollowConfig, rng: StdRng) -> HollowRuntime {
        HollowRuntime::with_clock(config, rng, Arc::new(Timestamp::now))
    }

    /// A hollow runtime seeded with `seed` (see [`HollowRuntime::new`]).
    pub fn seeded(config: HollowConfig, seed: u64) -> HollowRuntime {
        HollowRuntime::new(config, StdRng::seed_from_u64(seed))
    }

    /// As [`HollowRuntime::new`] with timestamps from `clock`.
    pub fn with_clock(config: HollowConfig, rng: StdRng, clock: Clock) -> HollowRuntime {
        HollowRuntime {
            config,
            clock,
            state: Mutex::new(State {
                rng,
                pod_cidr: None,
                used_ips: BTreeSet::new(),
                next_id: 0,
                sandboxes: BTreeMap::new(),
                containers: BTreeMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way
        // that matters more than losing the runtime, so keep going with the data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn latency(&self) {
        if !self.config.start_latency.is_zero() {
            tokio::time::sleep(self.config.start_latency).await;
        }
    }
}

impl State {
    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}-{:016x}", self.next_id)
    }

    fn jitter(&mut self, base: u64) -> u64 {
        let factor: f64 = self.rng.random_range(0.8..=1.2);
        (base as f64 * factor) as u64
    }
}

fn not_found(what: &'static str, id: &str) -> RuntimeError {
    RuntimeError::NotFound {
        what,
        id: id.to_string(),
    }
}

#[async_trait]
impl Runtime for HollowRuntime {
    async fn version(&self) -> Result<RuntimeVersion> {
        Ok(RuntimeVersion {
            name: HOLLOW_RUNTIME_NAME.into(),
            version: HOLLOW_RUNTIME_VERSION.into(),
        })
    }

    async fn update_pod_cidr(&self, cidr: &str) -> Result<()> {
        let cidr: Ipv4Cidr = cidr
            .parse()
            .map_err(|e: crate::cidr::CidrError| RuntimeError::Invalid(e.to_string()))?;
        self.lock().pod_cidr = Some(cidr);
        Ok(())
    }

    async fn run_sandbox(&self, config: &SandboxConfig) -> Result<SandboxInfo> {
        self.latency().await;
        let now = (self.clock)();
        let mut st = self.lock();
        let ip = if config.host_network {
            // Hollow nodes have no address of their own; loopback keeps it harmless.
            Ipv4Addr::LOCALHOST
        } else {
            let cidr = st
                .pod_cidr
                .ok_or_else(|| RuntimeError::Invalid("no pod cidr configured yet".into()))?;
            let ip = cidr.pod_ips().find(|ip| !st.used_ips.contains(ip)).ok_or(
                RuntimeError::IpExhausted {
                    cidr: cidr.to_string(),
                },
            )?;
            st.used_ips.insert(ip);
            ip
        };
        let info = SandboxInfo {
            id: SandboxId(st.id("sandbox")),
            ip: ip.to_string(),
            state: SandboxState::Ready,
            config: config.clone(),
            created_at: now,
        };
        st.sandboxes.insert(info.id.clone(), info.clone());
        Ok(info)
    }

    async fn stop_sandbox(&self, id: &SandboxId) -> Result<()> {
        let now = (self.clock)();
        let mut st = self.lock();
        let sandbox = st
            .sandboxes
            .get_mut(id)
            .ok_or_else(|| not_found("sandbox", &id.0))?;
        sandbox.state = SandboxState::NotReady;
        let ip = sandbox.ip.parse::<Ipv4Addr>().ok();
        let host_network = sandbox.config.host_network;
        if let (Some(ip), false) = (ip, host_network) {
            st.used_ips.remove(&ip);
        }
        for c in st.containers.values_mut().filter(|c| &c.sandbox_id == id) {
            if c.state == ContainerState::Running {
                c.state = ContainerState::Exited;
                c.exit_code = Some(137);
                c.reason = Some("Error".into());
                c.finished_at = Some(now);
            }
        }
        Ok(())
    }

    async fn remove_sandbox(&self, id: &SandboxId) -> Result<()> {
        let mut st = self.lock();
        if let Some(sandbox) = st.sandboxes.remove(id)
            && !sandbox.config.host_network
            && let Ok(ip) = sandbox.ip.parse::<Ipv4Addr>()
        {
            st.used_ips.remove(&ip);
        }
        st.containers.retain(|_, c| &c.sandbox_id != id);
        Ok(())
    }

    async fn create_container(
        &self,
        sandbox: &SandboxId,
        config: &ContainerConfig,
    ) -> Result<ContainerId> {
        let now = (self.clock)();
        let mut st = self.lock();
        match st.sandboxes.get(sandbox) {
            None => return Err(not_found("sandbox", &sandbox.0)),
            Some(s) if s.state != SandboxState::Ready => {
                return Err(RuntimeError::Invalid(format!(
                    "sandbox {sandbox} is not ready"
                )));
            }
            Some(_) => {}
        }
        if config.image.trim().is_empty() {
            return Err(RuntimeError::Invalid("image reference is empty".into()));
        }
        let id = ContainerId(st.id("container"));
        st.containers.insert(
            id.clone(),
            ContainerStatus {
                id: id.clone(),
                sandbox_id: sandbox.clone(),
                name: config.name.clone(),
                image: config.image.clone(),
                state: ContainerState::Created,
                exit_code: None,
                reason: None,
                message: None,
                attempt: config.attempt,
                created_at: now,
                started_at: None,
                finished_at: None,
                log_path: None,
            },
        );
        Ok(id)
    }

    async fn start_container(&self, id: &ContainerId) -> Result<()> {
        {
            let st = self.lock();
            let c = st
                .containers
                .get(id)
                .ok_or_else(|| not_found("container", &id.0))?;
            if c.state != ContainerState::Created {
                return Err(RuntimeError::Invalid(format!(
                    "container {id} is not in the created state"
                )));
            }
        }
        self.latency().await;
        let now = (self.clock)();
        let mut st = self.lock();
        let fail = self.config.failure_rate > 0.0
            && st.rng.random_bool(self.config.failure_rate.clamp(0.0, 1.0));
        // It may have been removed while we slept.
        let c = st
            .containers
            .get_mut(id)
            .ok_or_else(|| not_found("container", &id.0))?;
        if fail {
            c.state = ContainerState::Exited;
            c.exit_code = Some(128);
            c.reason = Some("StartError".into());
            c.message = Some("hollow runtime: injected start failure".into());
            c.finished_at = Some(now);
            return Err(RuntimeError::Failed(format!(
                "starting container {id}: injected failure"
            )));
        }
        c.state = ContainerState::Running;
        c.started_at = Some(now);
        Ok(())
    }

    async fn stop_container(&self, id: &ContainerId, _grace: Duration) -> Result<()> {
        // Hollow processes honour SIGTERM at once, so the grace period is never used.
        let now = (self.clock)();
        let mut st = self.lock();
        let c = st
            .containers
            .get_mut(id)
            .ok_or_else(|| not_found("container", &id.0))?;
        if matches!(c.state, ContainerState::Running | ContainerState::Created) {
            let was_running = c.state == ContainerState::Running;
            c.state = ContainerState::Exited;
            // 143 = killed by SIGTERM, as a shell-less process reports it.
            c.exit_code = Some(if was_running { 143 } else { 0 });
            c.reason = Some(if was_running { "Error" } else { "Completed" }.into());
            c.finished_at = Some(now);
        }
        Ok(())
    }

    async fn remove_container(&self, id: &ContainerId) -> Result<()> {
        self.lock().containers.remove(id);
        Ok(())
    }

    async fn container_status(&self, id: &ContainerId) -> Result<ContainerStatus> {
        self.lock()
            .containers
            .get(id)
            .cloned()
            .ok_or_else(|| not_found("container", &id.0))
    }

    async fn container_stats(&self, id: &ContainerId) -> Result<ContainerStats> {
        let mut st = self.lock();
        let state = st
            .containers
            .get(id)
            .map(|c| c.state)
            .ok_or_else(|| not_found("container", &id.0))?;
        if state != ContainerState::Running {
            return Ok(ContainerStats::default());
        }
        Ok(ContainerStats {
            cpu_millis: st.jitter(self.config.cpu_millis),
            memory_bytes: st.jitter(self.config.memory_bytes),
        })
    }

    async fn list_sandboxes(&self) -> Result<Vec<SandboxInfo>> {
        Ok(self.lock().sandboxes.values().cloned().collect())
    }

    async fn list_containers(&self, sandbox: Option<&SandboxId>) -> Result<Vec<ContainerStatus>> {
        Ok(self
            .lock()
            .containers
            .values()
            .filter(|c| sandbox.is_none_or(|s| &c.sandbox_id == s))
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests;
