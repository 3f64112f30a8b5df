//! The containerd implementation of [`Runtime`]: every call goes over CRI
//! ([`crate::cri::CriClient`]) to a containerd the agent started or was pointed at.
//!
//! Stateless on purpose: nothing about pods is cached here, so a restarted agent sees
//! exactly what containerd has. What a restart needs to recognise its pods travels with
//! the CRI objects themselves (pod identity in sandbox metadata, the drover config in a
//! sandbox annotation; see [`convert`]). The mapping between drover and CRI types, and of
//! CRI errors to [`RuntimeError`], is pure and lives in [`convert`].

pub mod convert;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jiff::Timestamp;
use k8s_cri::v1 as cri;

use crate::cni::{self, PodCidr};
use crate::containerd::ContainerdPaths;
use crate::cri::{CriClient, CriError};
use crate::runtime::{
    ContainerConfig, ContainerId, ContainerStats, ContainerStatus, ExecOutput, ExecRequest, Result,
    Runtime, RuntimeError, RuntimeVersion, SandboxConfig, SandboxId, SandboxInfo, SandboxState,
};
use convert::{container_status_from_cri, runtime_error};

/// How long [`Runtime::update_pod_cidr`] waits for containerd to load the new CNI config
/// (its `NetworkReady` condition) by default.
pub const NETWORK_READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Where the runtime keeps node-side files (STYLE 8: one place).
#[derive(Debug, Clone)]
pub struct CriRuntimeConfig {
    /// Parent of the per-pod log directories (`<pods_dir>/<ns>_<name>_<uid>/`).
    pub pods_dir: PathBuf,
    /// The CNI conf dir containerd reads (the conflist is written there).
    pub cni_conf_dir: PathBuf,
    /// host-local IPAM's records.
    pub cni_ipam_dir: PathBuf,
    /// How long a pod CIDR update waits for containerd's network to become ready.
    pub network_ready_timeout: Duration,
}

impl CriRuntimeConfig {
    /// The layout under an agent data dir: `<data>/pods`, CNI dirs from `paths`.
    pub fn new(paths: &ContainerdPaths) -> CriRuntimeConfig {
        CriRuntimeConfig {
            pods_dir: paths.data_dir.join("pods"),
            cni_conf_dir: paths.cni_conf_dir(),
            cni_ipam_dir: paths.cni_ipam_dir(),
            network_ready_timeout: NETWORK_READY_TIMEOUT,
        }
    }
}

/// [`Runtime`] over CRI. Cheap to share (`Arc<dyn Runtime>`); all state is containerd's.
pub struct CriRuntime {
    client: CriClient,
    config: CriRuntimeConfig,
    /// The last pod CIDR set, to name it in `IpExhausted`.
    pod_cidr: Mutex<Option<String>>,
}

impl CriRuntime {
    /// Connects to the CRI socket. Errors: `Unavailable` when nothing accepts there.
    pub async fn connect(socket: &Path, config: CriRuntimeConfig) -> Result<CriRuntime> {
        let client = CriClient::connect(socket)
            .await
            .map_err(|e| RuntimeError::Unavailable(e.to_string()))?;
        Ok(CriRuntime::new(client, config))
    }

    /// Wraps a connected client.
    pub fn new(client: CriClient, config: CriRuntimeConfig) -> CriRuntime {
        CriRuntime {
            client,
            config,
            pod_cidr: Mutex::new(None),
        }
    }

    /// The CRI client underneath (for tests and tools).
    pub fn client(&self) -> &CriClient {
        &self.client
    }

    /// The runtime's file layout.
    pub fn config(&self) -> &CriRuntimeConfig {
        &self.config
    }

    fn current_cidr(&self) -> Option<String> {
        self.pod_cidr.lock().ok().and_then(|c| c.clone())
    }

    /// The drover config and CRI state of one sandbox.
    async fn sandbox(&self, id: &SandboxId) -> Result<(SandboxConfig, cri::PodSandboxStatus)> {
        let status = self
            .client
            .pod_sandbox_status(&id.0)
            .await
            .map_err(|e| runtime_error(e, "sandbox", &id.0))?;
        let config = convert::sandbox_config_from_cri(
            status.metadata.as_ref(),
            &status.labels,
            &status.annotations,
        );
        Ok((config, status))
    }

    async fn wait_network_ready(&self) -> Result<()> {
        let started = Instant::now();
        loop {
            let conditions = self
                .client
                .status()
                .await
                .map_err(|e| runtime_error(e, "runtime", ""))?;
            if conditions
                .iter()
                .any(|c| c.r#type == "NetworkReady" && c.status)
            {
                return Ok(());
            }
            if started.elapsed() > self.config.network_ready_timeout {
                let why = conditions
                    .iter()
                    .find(|c| c.r#type == "NetworkReady")
                    .map(|c| format!("{}: {}", c.reason, c.message))
                    .unwrap_or_else(|| "no NetworkReady condition".into());
                return Err(RuntimeError::Unavailable(format!(
                    "containerd network not ready after {:?}: {why}",
                    started.elapsed()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn sandbox_state(state: i32) -> SandboxState {
    if state == cri::PodSandboxState::SandboxReady as i32 {
        SandboxState::Ready
    } else {
        SandboxState::NotReady
    }
}

fn sandbox_ip(status: &cri::PodSandboxStatus) -> String {
    status
        .network
        .as_ref()
        .map(|n| n.ip.clone())
        .unwrap_or_default()
}

#[async_trait]
impl Runtime for CriRuntime {
    async fn version(&self) -> Result<RuntimeVersion> {
        let v = self
            .client
            .version()
            .await
            .map_err(|e| RuntimeError::Unavailable(e.to_string()))?;
        Ok(RuntimeVersion {
            name: v.runtime_name,
            version: v.runtime_version,
        })
    }

    async fn update_pod_cidr(&self, cidr: &str) -> Result<()> {
        let parsed = PodCidr::parse(cidr).map_err(|e| RuntimeError::Invalid(e.to_string()))?;
        cni::write_conflist(&self.config.cni_conf_dir, parsed, &self.config.cni_ipam_dir)
            .map_err(|e| RuntimeError::Failed(e.to_string()))?;
        if let Ok(mut c) = self.pod_cidr.lock() {
            *c = Some(parsed.to_string());
        }
        self.client
            .update_runtime_config(&parsed.to_string())
            .await
            .map_err(|e| runtime_error(e, "runtime", ""))?;
        // containerd picks the conflist up asynchronously; a sandbox started before it
        // did would fail with "cni plugin not initialized".
        self.wait_network_ready().await
    }

    async fn run_sandbox(&self, config: &SandboxConfig) -> Result<SandboxInfo> {
        if !config.host_network && self.current_cidr().is_none() {
            // After an agent restart the conflist from before is still in place.
            let has_conf = self.config.cni_conf_dir.join(cni::CONFLIST_FILE).is_file();
            if !has_conf {
                return Err(RuntimeError::Invalid("no pod CIDR configured yet".into()));
            }
        }
        let log_dir = convert::pod_log_dir(&self.config.pods_dir, config);
        std::fs::create_dir_all(&log_dir).map_err(|e| {
            RuntimeError::Failed(format!("creating log dir {}: {e}", log_dir.display()))
        })?;
        let cri_config = convert::sandbox_to_cri(config, &log_dir);
        let id = self
            .client
            .run_pod_sandbox(cri_config)
            .await
            .map_err(|e| convert::sandbox_error(e, self.current_cidr().as_deref()))?;
        let id = SandboxId(id);
        let (_, status) = self.sandbox(&id).await?;
        Ok(SandboxInfo {
            ip: sandbox_ip(&status),
            state: sandbox_state(status.state),
            config: config.clone(),
            created_at: convert::timestamp(status.created_at).unwrap_or_else(Timestamp::now),
            id,
        })
    }

    async fn stop_sandbox(&self, id: &SandboxId) -> Result<()> {
        self.client
            .stop_pod_sandbox(&id.0)
            .await
            .map_err(|e| runtime_error(e, "sandbox", &id.0))
    }

    async fn remove_sandbox(&self, id: &SandboxId) -> Result<()> {
        match self.client.remove_pod_sandbox(&id.0).await {
            Err(e) if e.is_not_found() => Ok(()),
            other => other.map_err(|e| runtime_error(e, "sandbox", &id.0)),
        }
    }

    async fn create_container(
        &self,
        sandbox: &SandboxId,
        config: &ContainerConfig,
    ) -> Result<ContainerId> {
        let (sandbox_config, status) = self.sandbox(sandbox).await?;
        if sandbox_state(status.state) != SandboxState::Ready {
            return Err(RuntimeError::Invalid(format!(
                "sandbox {sandbox} is not ready"
            )));
        }
        if !self.image_present(&config.image).await? {
            self.pull_image(&config.image).await?;
        }
        let log_dir = convert::pod_log_dir(&self.config.pods_dir, &sandbox_config);
        let container_log_dir = log_dir.join(&config.name);
        std::fs::create_dir_all(&container_log_dir).map_err(|e| {
            RuntimeError::Failed(format!(
                "creating log dir {}: {e}",
                container_log_dir.display()
            ))
        })?;
        let cri_sandbox = convert::sandbox_to_cri(&sandbox_config, &log_dir);
        let cri_container = convert::container_to_cri(config, &sandbox_config);
        let id = self
            .client
            .create_container(&sandbox.0, cri_container, cri_sandbox)
            .await
            .map_err(|e| match e {
                // NotFound here is the sandbox (it went away since the status above).
                e if e.is_not_found() => RuntimeError::NotFound {
                    what: "sandbox",
                    id: sandbox.0.clone(),
                },
                e => runtime_error(e, "container", &config.name),
            })?;
        Ok(ContainerId(id))
    }

    async fn start_container(&self, id: &ContainerId) -> Result<()> {
        self.client.start_container(&id.0).await.map_err(|e| {
            match runtime_error(e, "container", &id.0) {
                RuntimeError::Unavailable(m) => RuntimeError::Unavailable(m),
                RuntimeError::NotFound { what, id } => RuntimeError::NotFound { what, id },
                RuntimeError::Invalid(m) => RuntimeError::Invalid(m),
                other => RuntimeError::Failed(other.to_string()),
            }
        })
    }

    async fn stop_container(&self, id: &ContainerId, grace: Duration) -> Result<()> {
        self.client
            .stop_container(&id.0, grace)
            .await
            .map_err(|e| runtime_error(e, "container", &id.0))
    }

    async fn remove_container(&self, id: &ContainerId) -> Result<()> {
        match self.client.remove_container(&id.0).await {
            Err(e) if e.is_not_found() => Ok(()),
            other => other.map_err(|e| runtime_error(e, "container", &id.0)),
        }
    }

    async fn container_status(&self, id: &ContainerId) -> Result<ContainerStatus> {
        let status = self
            .client
            .container_status(&id.0)
            .await
            .map_err(|e| runtime_error(e, "container", &id.0))?;
        // ContainerStatus does not name the sandbox; the container list does.
        let sandbox = self
            .client
            .container(&id.0)
            .await
            .map_err(|e| runtime_error(e, "container", &id.0))?
            .map(|c| SandboxId(c.pod_sandbox_id))
            .unwrap_or_else(|| SandboxId(String::new()));
        Ok(container_status_from_cri(&status, &sandbox))
    }

    async fn container_stats(&self, id: &ContainerId) -> Result<ContainerStats> {
        let stats = self
            .client
            .container_stats(&id.0)
            .await
            .map_err(|e| runtime_error(e, "container", &id.0))?;
        let cpu_nanos = stats
            .cpu
            .and_then(|c| c.usage_nano_cores)
            .map(|v| v.value)
            .unwrap_or(0);
        let memory = stats
            .memory
            .and_then(|m| m.working_set_bytes)
            .map(|v| v.value)
            .unwrap_or(0);
        Ok(ContainerStats {
            cpu_millis: cpu_nanos / 1_000_000,
            memory_bytes: memory,
        })
    }

    async fn list_sandboxes(&self) -> Result<Vec<SandboxInfo>> {
        let listed = self
            .client
            .list_pod_sandboxes()
            .await
            .map_err(|e| runtime_error(e, "sandbox", ""))?;
        let mut out = Vec::with_capacity(listed.len());
        for s in listed {
            let state = sandbox_state(s.state);
            // The list has no IP; ask for ready sandboxes only (a stopped one has none).
            let ip = if state == SandboxState::Ready {
                match self.client.pod_sandbox_status(&s.id).await {
                    Ok(status) => sandbox_ip(&status),
                    Err(e) if e.is_not_found() => continue, // removed meanwhile
                    Err(e) => return Err(runtime_error(e, "sandbox", &s.id)),
                }
            } else {
                String::new()
            };
            out.push(SandboxInfo {
                config: convert::sandbox_config_from_cri(
                    s.metadata.as_ref(),
                    &s.labels,
                    &s.annotations,
                ),
                created_at: convert::timestamp(s.created_at).unwrap_or(Timestamp::UNIX_EPOCH),
                id: SandboxId(s.id),
                ip,
                state,
            });
        }
        Ok(out)
    }

    async fn list_containers(&self, sandbox: Option<&SandboxId>) -> Result<Vec<ContainerStatus>> {
        let listed = self
            .client
            .list_containers(sandbox.map(|s| s.0.as_str()))
            .await
            .map_err(|e| runtime_error(e, "container", ""))?;
        let mut out = Vec::with_capacity(listed.len());
        for c in listed {
            match self.client.container_status(&c.id).await {
                Ok(status) => out.push(container_status_from_cri(
                    &status,
                    &SandboxId(c.pod_sandbox_id),
                )),
                Err(e) if e.is_not_found() => {} // removed meanwhile
                Err(e) => return Err(runtime_error(e, "container", &c.id)),
            }
        }
        Ok(out)
    }

    async fn image_present(&self, image: &str) -> Result<bool> {
        match self.client.image_status(image).await {
            Ok(found) => Ok(found.is_some()),
            Err(e @ CriError::Call { .. }) if e.is_not_found() => Ok(false),
            Err(e) => Err(match runtime_error(e, "image", image) {
                RuntimeError::Invalid(m) => RuntimeError::Invalid(m),
                RuntimeError::Unavailable(m) => RuntimeError::Unavailable(m),
                other => RuntimeError::ImagePull {
                    image: image.to_string(),
                    reason: other.to_string(),
                },
            }),
        }
    }

    async fn pull_image(&self, image: &str) -> Result<()> {
        self.client
            .pull_image(image, None)
            .await
            .map(|_| ())
            .map_err(|e| convert::pull_error(e, image))
    }

    async fn exec_sync(
        &self,
        id: &ContainerId,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput> {
        let out = self
            .client
            .exec_sync(&id.0, command.to_vec(), timeout)
            .await
            .map_err(|e| match runtime_error(e, "container", &id.0) {
                // A command that outlives its timeout is the command's failure, not the
                // runtime's: probes count it as a failed probe.
                RuntimeError::Unavailable(m) if m.contains("DeadlineExceeded") => {
                    RuntimeError::Failed(m)
                }
                other => other,
            })?;
        Ok(ExecOutput {
            exit_code: out.exit_code,
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }

    async fn exec(&self, request: &ExecRequest) -> Result<String> {
        let r = cri::ExecRequest {
            container_id: request.container.0.clone(),
            cmd: request.command.clone(),
            tty: request.tty,
            stdin: request.stdin,
            stdout: request.stdout,
            stderr: request.stderr && !request.tty,
        };
        self.client
            .exec(r)
            .await
            .map_err(|e| runtime_error(e, "container", &request.container.0))
    }
}
