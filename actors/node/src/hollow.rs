//! The hollow runtime: [`Runtime`] without processes, for simulated fleets
//! (`run_hollow_fleet`) and scale tests. Sandboxes get real-looking IPs from the node's pod
//! CIDR; containers "run" after a configurable start latency, fail to start with a
//! configurable probability, and report synthetic CPU and memory usage.
//!
//! Scripted behaviour for tests of the PodActor, all deterministic:
//! * a container whose env has `HOLLOW_EXIT_AFTER_MS` exits that long after it started,
//!   with `HOLLOW_EXIT_CODE` (default 0) and `HOLLOW_EXIT_REASON` (`OOMKilled` makes
//!   it an OOM kill, exit code 137 unless given);
//! * [`HollowRuntime::script_exec`] sets what `exec_sync` of a command returns in a
//!   container (unscripted commands succeed);
//! * images in [`HollowConfig::unpullable_images`] fail to pull, those in
//!   [`HollowConfig::absent_images`] are missing until pulled;
//! * a container whose env has `HOLLOW_CPU_MILLICORES` / `HOLLOW_MEMORY_BYTES` reports
//!   exactly that usage; [`HollowRuntime::set_usage`] sets it for every other container
//!   (load that a test raises and drops; `kubectl top` and the HPA see it);
//! * [`HollowRuntime::journal`] lists starts, stops (with their grace) and execs in order.
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
    ContainerConfig, ContainerId, ContainerState, ContainerStats, ContainerStatus, ExecOutput,
    Result, Runtime, RuntimeError, RuntimeVersion, SandboxConfig, SandboxId, SandboxInfo,
    SandboxState,
};

/// Runtime name reported in `containerRuntimeVersion`.
pub const HOLLOW_RUNTIME_NAME: &str = "hollow";
/// Version reported in `containerRuntimeVersion`.
pub const HOLLOW_RUNTIME_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Default synthetic CPU use of a running container (millicores).
pub const DEFAULT_CPU_MILLIS: u64 = 5;
/// Default synthetic memory use of a running container (bytes).
pub const DEFAULT_MEMORY_BYTES: u64 = 8 * 1024 * 1024;

/// Container env var that fixes the CPU a hollow container reports (millicores, exact).
pub const HOLLOW_CPU_MILLICORES_ENV: &str = "HOLLOW_CPU_MILLICORES";
/// Container env var that fixes the memory a hollow container reports (bytes, exact).
pub const HOLLOW_MEMORY_BYTES_ENV: &str = "HOLLOW_MEMORY_BYTES";

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
    /// Images whose pull fails (`ErrImagePull`), e.g. a reference that does not exist.
    pub unpullable_images: BTreeSet<String>,
    /// Images not on the node until pulled (every other image is present).
    pub absent_images: BTreeSet<String>,
}

impl Default for HollowConfig {
    fn default() -> Self {
        HollowConfig {
            start_latency: Duration::ZERO,
            failure_rate: 0.0,
            cpu_millis: DEFAULT_CPU_MILLIS,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            unpullable_images: BTreeSet::new(),
            absent_images: BTreeSet::new(),
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
    /// The config each container was created from (tests read env, mounts, resources).
    configs: BTreeMap<ContainerId, ContainerConfig>,
    /// Scripted exits (from the container's env) of created containers.
    scripts: BTreeMap<ContainerId, ExitScript>,
    /// When each scripted container exits (set when it starts).
    exit_at: BTreeMap<ContainerId, tokio::time::Instant>,
    /// `exec_sync` results by (container name, command).
    exec_results: BTreeMap<(String, Vec<String>), ExecOutput>,
    /// Images pulled so far.
    pulled: BTreeSet<String>,
    /// Every pull, in order.
    pulls: Vec<String>,
    /// Starts, stops and execs, in order.
    journal: Vec<String>,
    /// Usage every container reports instead of the jittered default ([`HollowRuntime::set_usage`]).
    usage_override: Option<ContainerStats>,
}

/// A container's scripted exit.
#[derive(Debug, Clone, PartialEq)]
struct ExitScript {
    after: Duration,
    code: i32,
    reason: String,
}

impl ExitScript {
    fn from_env(env: &[(String, String)]) -> Option<ExitScript> {
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let after_ms: u64 = get("HOLLOW_EXIT_AFTER_MS")?.parse().ok()?;
        let reason = get("HOLLOW_EXIT_REASON").unwrap_or_default();
        let oom = reason == "OOMKilled";
        let code = get("HOLLOW_EXIT_CODE")
            .and_then(|c| c.parse().ok())
            .unwrap_or(if oom { 137 } else { 0 });
        let reason = if !reason.is_empty() {
            reason
        } else if code == 0 {
            "Completed".into()
        } else {
            "Error".into()
        };
        Some(ExitScript {
            after: Duration::from_millis(after_ms),
            code,
            reason,
        })
    }
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
                configs: BTreeMap::new(),
                scripts: BTreeMap::new(),
                exit_at: BTreeMap::new(),
                exec_results: BTreeMap::new(),
                pulled: BTreeSet::new(),
                pulls: Vec::new(),
                journal: Vec::new(),
                usage_override: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way
        // that matters more than losing the runtime, so keep going with the data.
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.settle((self.clock)());
        st
    }

    /// Makes `exec_sync` of `command` in containers named `container` return
    /// `exit_code` with `stdout` (replacing an earlier script).
    pub fn script_exec(&self, container: &str, command: &[&str], exit_code: i32, stdout: &str) {
        let key = (
            container.to_string(),
            command.iter().map(|s| s.to_string()).collect(),
        );
        self.lock().exec_results.insert(
            key,
            ExecOutput {
                exit_code,
                stdout: stdout.as_bytes().to_vec(),
                stderr: Vec::new(),
            },
        );
    }

    /// Starts (`start <name>`), stops (`stop <name> grace=<secs>s`) and execs
    /// (`exec <name> <command...>`) so far, in order.
    pub fn journal(&self) -> Vec<String> {
        self.lock().journal.clone()
    }

    /// The config the newest container named `name` (in any sandbox) was created from.
    pub fn config_of(&self, name: &str) -> Option<ContainerConfig> {
        let st = self.lock();
        st.containers
            .values()
            .filter(|c| c.name == name)
            .max_by_key(|c| (c.attempt, c.id.clone()))
            .and_then(|c| st.configs.get(&c.id).cloned())
    }

    /// Makes every running container without its own `HOLLOW_CPU_MILLICORES` /
    /// `HOLLOW_MEMORY_BYTES` report exactly `usage` (no jitter) from now on; `None`
    /// returns to the configured, jittered default. Tests raise and drop load with it.
    pub fn set_usage(&self, usage: Option<ContainerStats>) {
        self.lock().usage_override = usage;
    }

    /// Every image pull so far, in order.
    pub fn pulls(&self) -> Vec<String> {
        self.lock().pulls.clone()
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

    /// Applies scripted exits that are due.
    fn settle(&mut self, now: Timestamp) {
        if self.exit_at.is_empty() {
            return;
        }
        let instant = tokio::time::Instant::now();
        let due: Vec<ContainerId> = self
            .exit_at
            .iter()
            .filter(|(_, at)| **at <= instant)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            self.exit_at.remove(&id);
            let script = self.scripts.get(&id).cloned();
            if let (Some(c), Some(script)) = (self.containers.get_mut(&id), script)
                && c.state == ContainerState::Running
            {
                c.state = ContainerState::Exited;
                c.exit_code = Some(script.code);
                c.reason = Some(script.reason);
                c.finished_at = Some(now);
            }
        }
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
        let State {
            containers,
            configs,
            scripts,
            exit_at,
            ..
        } = &mut *st;
        configs.retain(|c, _| containers.contains_key(c));
        scripts.retain(|c, _| containers.contains_key(c));
        exit_at.retain(|c, _| containers.contains_key(c));
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
        if self.config.unpullable_images.contains(&config.image) {
            return Err(RuntimeError::ImagePull {
                image: config.image.clone(),
                reason: "hollow runtime: image not found".into(),
            });
        }
        let id = ContainerId(st.id("container"));
        if let Some(script) = ExitScript::from_env(&config.env) {
            st.scripts.insert(id.clone(), script);
        }
        st.configs.insert(id.clone(), config.clone());
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
        let name = c.name.clone();
        st.journal.push(format!("start {name}"));
        if let Some(script) = st.scripts.get(id).cloned() {
            st.exit_at
                .insert(id.clone(), tokio::time::Instant::now() + script.after);
            st.settle(now);
        }
        Ok(())
    }

    async fn stop_container(&self, id: &ContainerId, grace: Duration) -> Result<()> {
        // Hollow processes honour SIGTERM at once, so the grace period is never used.
        let now = (self.clock)();
        let mut st = self.lock();
        st.exit_at.remove(id);
        let c = st
            .containers
            .get_mut(id)
            .ok_or_else(|| not_found("container", &id.0))?;
        let entry = (c.state == ContainerState::Running)
            .then(|| format!("stop {} grace={}s", c.name, grace.as_secs()));
        if matches!(c.state, ContainerState::Running | ContainerState::Created) {
            let was_running = c.state == ContainerState::Running;
            c.state = ContainerState::Exited;
            // 143 = killed by SIGTERM, as a shell-less process reports it.
            c.exit_code = Some(if was_running { 143 } else { 0 });
            c.reason = Some(if was_running { "Error" } else { "Completed" }.into());
            c.finished_at = Some(now);
        }
        st.journal.extend(entry);
        Ok(())
    }

    async fn remove_container(&self, id: &ContainerId) -> Result<()> {
        let mut st = self.lock();
        st.containers.remove(id);
        st.configs.remove(id);
        st.scripts.remove(id);
        st.exit_at.remove(id);
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
        // Per-container env first (exact), then the runtime-wide override (exact), then
        // the configured default with jitter.
        let env = st.configs.get(id).map(|c| c.env.as_slice()).unwrap_or(&[]);
        let from_env = |key: &str| {
            env.iter()
                .find(|(n, _)| n == key)
                .and_then(|(_, v)| v.parse::<u64>().ok())
        };
        let (env_cpu, env_memory) = (
            from_env(HOLLOW_CPU_MILLICORES_ENV),
            from_env(HOLLOW_MEMORY_BYTES_ENV),
        );
        let fallback = match st.usage_override {
            Some(usage) => usage,
            None => ContainerStats {
                cpu_millis: st.jitter(self.config.cpu_millis),
                memory_bytes: st.jitter(self.config.memory_bytes),
            },
        };
        Ok(ContainerStats {
            cpu_millis: env_cpu.unwrap_or(fallback.cpu_millis),
            memory_bytes: env_memory.unwrap_or(fallback.memory_bytes),
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

    async fn image_present(&self, image: &str) -> Result<bool> {
        let st = self.lock();
        Ok(st.pulled.contains(image)
            || !(self.config.absent_images.contains(image)
                || self.config.unpullable_images.contains(image)))
    }

    async fn pull_image(&self, image: &str) -> Result<()> {
        self.latency().await;
        let mut st = self.lock();
        st.pulls.push(image.to_string());
        if self.config.unpullable_images.contains(image) {
            return Err(RuntimeError::ImagePull {
                image: image.to_string(),
                reason: "hollow runtime: image not found".into(),
            });
        }
        st.pulled.insert(image.to_string());
        Ok(())
    }

    async fn exec_sync(
        &self,
        id: &ContainerId,
        command: &[String],
        _timeout: Duration,
    ) -> Result<ExecOutput> {
        let mut st = self.lock();
        let c = st
            .containers
            .get(id)
            .ok_or_else(|| not_found("container", &id.0))?;
        if c.state != ContainerState::Running {
            return Err(RuntimeError::Invalid(format!(
                "container {id} is not running"
            )));
        }
        let name = c.name.clone();
        st.journal
            .push(format!("exec {name} {}", command.join(" ")));
        Ok(st
            .exec_results
            .get(&(name, command.to_vec()))
            .cloned()
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests;
