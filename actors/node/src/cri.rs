//! A CRI client (the `runtime.v1` API of the `k8s-cri` crate) over containerd's Unix
//! socket: the calls the PodActor needs for sandboxes, containers and images.
//!
//! Thin on purpose: requests and responses are the generated CRI types; this module adds
//! the connection, typed errors, and builders for the configs drover sends.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

pub use k8s_cri::v1::{ContainerState, PodSandboxState};

/// The CRI API version drover speaks.
pub const CRI_API_VERSION: &str = "v1";
/// How long one CRI call may take before it fails as [`CriError::Call`] (deadline
/// exceeded). Image pulls take longer; they get [`PULL_TIMEOUT`].
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Deadline for [`CriClient::pull_image`].
pub const PULL_TIMEOUT: Duration = Duration::from_secs(600);

/// Errors of CRI calls. Nothing is retried here; the caller's reconcile loop decides.
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    /// The socket could not be reached. Retryable (containerd may be restarting).
    #[error("connecting to CRI at {socket}: {message}")]
    Connect {
        /// The socket.
        socket: PathBuf,
        /// Why.
        message: String,
    },
    /// The runtime answered a call with an error. Retryable depending on `code`
    /// (`Unavailable`, `DeadlineExceeded` are; `NotFound`, `InvalidArgument` are not).
    /// What the call did to runtime state is unknown: reconcile by listing.
    #[error("CRI {op}: {code:?}: {message}")]
    Call {
        /// The CRI method.
        op: &'static str,
        /// The gRPC status code.
        code: tonic::Code,
        /// The runtime's message.
        message: String,
    },
    /// The runtime's answer lacked a field CRI promises (a runtime bug). Not retryable.
    #[error("CRI {op}: malformed response: {what}")]
    Malformed {
        /// The CRI method.
        op: &'static str,
        /// What was missing.
        what: &'static str,
    },
}

impl CriError {
    /// Whether the call failed because the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            CriError::Call {
                code: tonic::Code::NotFound,
                ..
            }
        )
    }
}

fn call_err(op: &'static str) -> impl FnOnce(tonic::Status) -> CriError {
    move |s| CriError::Call {
        op,
        code: s.code(),
        message: s.message().to_string(),
    }
}

fn req<T>(msg: T, timeout: Duration) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(timeout);
    r
}

/// A connected CRI client (runtime and image services over one channel). Cheap to clone.
#[derive(Clone)]
pub struct CriClient {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

impl CriClient {
    /// Connects to the CRI socket (containerd's gRPC socket). Fails if the socket does not
    /// accept a connection now; later calls reconnect on their own.
    pub async fn connect(socket: &Path) -> Result<CriClient, CriError> {
        let path = socket.to_path_buf();
        // The URI is required by tonic but unused: every connection goes to the socket.
        let endpoint =
            Endpoint::from_static("http://[::]:50051").connect_timeout(Duration::from_secs(5));
        let channel = endpoint
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }))
            .await
            .map_err(|e| CriError::Connect {
                socket: socket.to_path_buf(),
                message: e.to_string(),
            })?;
        Ok(CriClient {
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        })
    }

    /// The runtime's name and version (`containerd`, `1.6.20~ds1`).
    pub async fn version(&self) -> Result<cri::VersionResponse, CriError> {
        let r = cri::VersionRequest {
            version: CRI_API_VERSION.into(),
        };
        Ok(self
            .runtime
            .clone()
            .version(req(r, CALL_TIMEOUT))
            .await
            .map_err(call_err("Version"))?
            .into_inner())
    }

    /// Creates and starts a sandbox (network namespace set up by CNI); returns its id.
    pub async fn run_pod_sandbox(&self, config: cri::PodSandboxConfig) -> Result<String, CriError> {
        let r = cri::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        };
        Ok(self
            .runtime
            .clone()
            .run_pod_sandbox(req(r, CALL_TIMEOUT))
            .await
            .map_err(call_err("RunPodSandbox"))?
            .into_inner()
            .pod_sandbox_id)
    }

    /// The sandbox's status (state, network with the pod IP).
    pub async fn pod_sandbox_status(&self, id: &str) -> Result<cri::PodSandboxStatus, CriError> {
        let r = cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: false,
        };
        self.runtime
            .clone()
            .pod_sandbox_status(req(r, CALL_TIMEOUT))
            .await
            .map_err(call_err("PodSandboxStatus"))?
            .into_inner()
            .status
            .ok_or(CriError::Malformed {
                op: "PodSandboxStatus",
                what: "status",
            })
    }

    /// Stops the sandbox and all its containers, and tears down its network.
    pub async fn stop_pod_sandbox(&self, id: &str) -> Result<(), CriError> {
        let r = cri::StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.runtime
            .clone()
            .stop_pod_sandbox(req(r, CALL_TIMEOUT))
            .await
            .map_err(call_err("StopPodSandbox"))?;
        Ok(())
    }

    /// Removes a stopped sandbox and its containers.
    pub async fn remove_pod_sandbox(&self, id: &str) -> Result<(), CriError> {
        let r = cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.runtime
            .clone()
            .remove_pod_sandbox(req(r, CALL_TIMEOUT))
            .await
            .map_err(call_err("RemovePodSandbox"))?;
        Ok(())
    }

    /// All sandboxes the runtime knows.
    pub async fn list_pod_sandboxes(&self) -> Result<Vec<cri::PodSandbox>, CriError> {
        let r = cri::ListPodSandboxRequest { filter: None };
        Ok(self
            .runtime
            .clone()
            .list_pod_sandbox(req(r, CALL_TIMEOUT))
            .await
            .map_err(call_err("ListPodSandbox"))?
            .into_inner()
            .items)
    }

    /// Creates a container in a sandbox; returns its id. `sandbox_config` must be the
    /// config the sandbox was created with.
    pub async fn create_container(
        &self,
        sandbox_id: &str,
        config: cri::ContainerConfig,
        sandbox_config: cri::PodSandboxConfig,
    ) -> Result<String, CriError> {
        let r = cri::CreateContainerRequest {
            pod_sandbox_id: sandbox_id.into(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        };
        Ok(self
            .runtime
            .clone()
            .create_container(req(r, CALL_TIMEOUT))
            .await
            .map_err(call_err("CreateContainer"))?
            .into_inner()
            .container_id)
    }

    /// Starts a created container.
    pub async fn start_container(&self, id: &str) -> Result<(), CriError> {
        let r = cri::StartContainerRequest {
            container_id: id.into(),
        };
        self.runtime
            .clone()
            .start_container(req(r, CALL_TIMEOUT))
            .await
            .map_err(call_err("StartContainer"))?;
        Ok(())
    }

    /// A container's status (state, exit code, reason, log path).
    pub async fn container_status(&self, id: &str) -> Result<cri::ContainerStatus, CriError> {
        let r = cri::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        };
        self.runtime
            .clone()
            .container_status(req(r, CALL_TIMEOUT))
            .await
            .map_err(call_err("ContainerStatus"))?
            .into_inner()
            .status
            .ok_or(CriError::Malformed {
                op: "ContainerStatus",
                what: "status",
            })
    }

    /// Stops a container: SIGTERM (or the image's stop signal), SIGKILL after `grace`.
    pub async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), CriError> {
        let r = cri::StopContainerRequest {
            container_id: id.into(),
            timeout: grace.as_secs() as i64,
        };
        self.runtime
            .clone()
            .stop_container(req(r, CALL_TIMEOUT + grace))
            .await
            .map_err(call_err("StopContainer"))?;
        Ok(())
    }

    /// Removes a container (stopping it first if it still runs).
    pub async fn remove_container(&self, id: &str) -> Result<(), CriError> {
        let r = cri::RemoveContainerRequest {
            container_id: id.into(),
        };
        self.runtime
            .clone()
            .remove_container(req(r, CALL_TIMEOUT))
            .await
            .map_err(call_err("RemoveContainer"))?;
        Ok(())
    }

    /// Every container, or those of one sandbox.
    pub async fn list_containers(
        &self,
        sandbox_id: Option<&str>,
    ) -> Result<Vec<cri::Container>, CriError> {
        let r = cri::ListContainersRequest {
            filter: sandbox_id.map(|id| cri::ContainerFilter {
                pod_sandbox_id: id.into(),
                ..Default::default()
            }),
        };
        Ok(self
            .runtime
            .clone()
            .list_containers(req(r, CALL_TIMEOUT))
            .await
            .map_err(call_err("ListContainers"))?
            .into_inner()
            .containers)
    }

    /// One container's list entry (it names the sandbox, which its status does not);
    /// `None` if the runtime does not know it.
    pub async fn container(&self, id: &str) -> Result<Option<cri::Container>, CriError> {
        let r = cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                id: id.into(),
                ..Default::default()
            }),
        };
        Ok(self
            .runtime
            .clone()
            .list_containers(req(r, CALL_TIMEOUT))
            .await
            .map_err(call_err("ListContainers"))?
            .into_inner()
            .containers
            .into_iter()
            .find(|c| c.id == id))
    }

    /// One container's resource usage (CPU, working-set memory).
    pub async fn container_stats(&self, id: &str) -> Result<cri::ContainerStats, CriError> {
        let r = cri::ContainerStatsRequest {
            container_id: id.into(),
        };
        self.runtime
            .clone()
            .container_stats(req(r, CALL_TIMEOUT))
            .await
            .map_err(call_err("ContainerStats"))?
            .into_inner()
            .stats
            .ok_or(CriError::Malformed {
                op: "ContainerStats",
                what: "stats",
            })
    }

    /// Runs `cmd` in a running container and waits for it, at most `timeout` (whole
    /// seconds, rounded up; CRI has no finer unit).
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> Result<cri::ExecSyncResponse, CriError> {
        let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
        let r = cri::ExecSyncRequest {
            container_id: id.into(),
            cmd,
            timeout: secs.max(1) as i64,
        };
        Ok(self
            .runtime
            .clone()
            .exec_sync(req(r, CALL_TIMEOUT + timeout))
            .await
            .map_err(call_err("ExecSync"))?
            .into_inner())
    }

    /// Prepares a streaming exec; returns the streaming server's URL for it.
    pub async fn exec(&self, r: cri::ExecRequest) -> Result<String, CriError> {
        Ok(self
            .runtime
            .clone()
            .exec(req(r, CALL_TIMEOUT))
            .await
            .map_err(call_err("Exec"))?
            .into_inner()
            .url)
    }

    /// Tells the runtime the node's pod CIDR.
    pub async fn update_runtime_config(&self, pod_cidr: &str) -> Result<(), CriError> {
        let r = cri::UpdateRuntimeConfigRequest {
            runtime_config: Some(cri::RuntimeConfig {
                network_config: Some(cri::NetworkConfig {
                    pod_cidr: pod_cidr.into(),
                }),
            }),
        };
        self.runtime
            .clone()
            .update_runtime_config(req(r, CALL_TIMEOUT))
            .await
            .map_err(call_err("UpdateRuntimeConfig"))?;
        Ok(())
    }

    /// The runtime's conditions (`RuntimeReady`, `NetworkReady`).
    pub async fn status(&self) -> Result<Vec<cri::RuntimeCondition>, CriError> {
        let r = cri::StatusRequest { verbose: false };
        Ok(self
            .runtime
            .clone()
            .status(req(r, CALL_TIMEOUT))
            .await
            .map_err(call_err("Status"))?
            .into_inner()
            .status
            .map(|s| s.conditions)
            .unwrap_or_default())
    }

    /// The image if the runtime has it, else `None`.
    pub async fn image_status(&self, image: &str) -> Result<Option<cri::Image>, CriError> {
        let r = cri::ImageStatusRequest {
            image: Some(image_spec(image)),
            verbose: false,
        };
        Ok(self
            .images
            .clone()
            .image_status(req(r, CALL_TIMEOUT))
            .await
            .map_err(call_err("ImageStatus"))?
            .into_inner()
            .image)
    }

    /// Pulls an image; returns its image ref (the digest the runtime stored).
    pub async fn pull_image(
        &self,
        image: &str,
        sandbox_config: Option<cri::PodSandboxConfig>,
    ) -> Result<String, CriError> {
        let r = cri::PullImageRequest {
            image: Some(image_spec(image)),
            auth: None,
            sandbox_config,
        };
        Ok(self
            .images
            .clone()
            .pull_image(req(r, PULL_TIMEOUT))
            .await
            .map_err(call_err("PullImage"))?
            .into_inner()
            .image_ref)
    }
}

fn image_spec(image: &str) -> cri::ImageSpec {
    cri::ImageSpec {
        image: image.into(),
        ..Default::default()
    }
}

/// What identifies a pod's sandbox to the runtime.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    /// Pod name.
    pub name: String,
    /// Pod namespace.
    pub namespace: String,
    /// Pod UID.
    pub uid: String,
    /// Restart attempt of the sandbox (0 for the first).
    pub attempt: u32,
    /// The pod's hostname.
    pub hostname: String,
    /// Directory for the containers' CRI log files (`<log_dir>/<container log path>`).
    pub log_directory: PathBuf,
}

/// The sandbox config drover sends: pod-scoped network, PID and IPC namespaces, so the
/// pod gets its own CNI network namespace and IP.
pub fn sandbox_config(spec: &SandboxSpec) -> cri::PodSandboxConfig {
    let pod = cri::NamespaceMode::Pod as i32;
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: spec.name.clone(),
            uid: spec.uid.clone(),
            namespace: spec.namespace.clone(),
            attempt: spec.attempt,
        }),
        hostname: spec.hostname.clone(),
        log_directory: spec.log_directory.display().to_string(),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: pod,
                    pid: cri::NamespaceMode::Container as i32,
                    ipc: pod,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A container config: name, image, command, args, and the log file (relative to the
/// sandbox's log directory).
pub fn container_config(
    name: &str,
    attempt: u32,
    image: &str,
    command: Vec<String>,
    args: Vec<String>,
) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt,
        }),
        image: Some(image_spec(image)),
        command,
        args,
        log_path: format!("{name}/{attempt}.log"),
        ..Default::default()
    }
}

/// One line of a CRI container log (`<RFC 3339 time> <stream> <P|F> <text>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine<'a> {
    /// The timestamp as written by the runtime.
    pub time: &'a str,
    /// `stdout` or `stderr`.
    pub stream: &'a str,
    /// `false` for a partial line (`P`), continued by the next.
    pub full: bool,
    /// The text.
    pub text: &'a str,
}

/// Parses one CRI log line; `None` if it is not in the CRI format.
pub fn parse_log_line(line: &str) -> Option<LogLine<'_>> {
    let mut parts = line.splitn(4, ' ');
    let time = parts.next()?;
    let stream = parts.next()?;
    let full = match parts.next()? {
        "F" => true,
        "P" => false,
        _ => return None,
    };
    if stream != "stdout" && stream != "stderr" {
        return None;
    }
    Some(LogLine {
        time,
        stream,
        full,
        text: parts.next().unwrap_or(""),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines() {
        assert_eq!(
            parse_log_line("2026-11-23T08:00:00.1Z stdout F hello world"),
            Some(LogLine {
                time: "2026-11-23T08:00:00.1Z",
                stream: "stdout",
                full: true,
                text: "hello world"
            })
        );
        assert_eq!(parse_log_line("t stderr P ").map(|l| l.full), Some(false));
        assert_eq!(parse_log_line("t stdin F x"), None);
        assert_eq!(parse_log_line("garbage"), None);
        assert_eq!(parse_log_line(""), None);
    }

    #[test]
    fn sandbox_config_uses_pod_namespaces() {
        let c = sandbox_config(&SandboxSpec {
            name: "p".into(),
            namespace: "default".into(),
            uid: "u1".into(),
            attempt: 0,
            hostname: "p".into(),
            log_directory: "/logs/default_p_u1".into(),
        });
        let ns = c
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap();
        assert_eq!(ns.network, cri::NamespaceMode::Pod as i32);
        assert_eq!(c.log_directory, "/logs/default_p_u1");
        assert_eq!(c.metadata.unwrap().uid, "u1");
    }

    #[tokio::test]
    async fn connecting_to_a_missing_socket_is_a_connect_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = CriClient::connect(&dir.path().join("absent.sock"))
            .await
            .err()
            .unwrap();
        assert!(matches!(err, CriError::Connect { .. }), "{err}");
    }

    #[test]
    fn container_log_path_is_relative() {
        let c = container_config("app", 2, "localhost/busybox:latest", vec![], vec![]);
        assert_eq!(c.log_path, "app/2.log");
    }
}
