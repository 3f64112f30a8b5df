//! The node side of `kubectl logs` and `kubectl exec`: a service subscribed to this
//! node's [`bus_schema::subjects::node_logs`] and [`bus_schema::subjects::node_exec`]
//! subjects that answers each request with a stream of frames (protocol in
//! [`bus_schema::podstream`]). The gateway never reaches containerd; this is the only
//! way to a container's output.
//!
//! Containers are found through the [`Runtime`] alone (sandbox by pod namespace, name
//! and uid; container by name; the newest attempt is the current instance, the one
//! before it the previous), so the service needs nothing from the PodActors.
//!
//! Layout: [`logs`] decides what a log request shows (pure), [`log_file`] reads and
//! follows the file, [`exec`] runs commands, [`session`] is the agent's end of one
//! stream (credit window, keepalives, idle timeout).

pub mod exec;
pub mod log_file;
pub mod logs;
pub mod session;

use std::sync::Arc;

use bus_schema::podstream::{ExecRequest, FrameBody, LogRequest, StreamError};
use bus_schema::{envelope, subjects};
use futures::StreamExt;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::runtime::{ContainerState, ContainerStatus, Runtime, RuntimeError};
use session::Session;

/// Starts the service for `node_name`; it runs until the returned task is aborted.
/// Each request gets its own task, so a followed log never holds up another request.
pub async fn serve(
    client: async_nats::Client,
    node_name: &str,
    runtime: Arc<dyn Runtime>,
) -> Result<JoinHandle<()>, async_nats::SubscribeError> {
    let mut logs = client.subscribe(subjects::node_logs(node_name)).await?;
    let mut execs = client.subscribe(subjects::node_exec(node_name)).await?;
    let sender = format!("node/{node_name}");
    let task = tokio::spawn(async move {
        loop {
            let (msg, is_exec) = tokio::select! {
                Some(m) = logs.next() => (m, false),
                Some(m) = execs.next() => (m, true),
                else => break,
            };
            let Some(reply) = msg.reply.clone() else {
                tracing::debug!(message = "stream request without a reply subject dropped");
                continue;
            };
            let (client, runtime, sender) = (client.clone(), runtime.clone(), sender.clone());
            if is_exec {
                match envelope::decode::<ExecRequest>(msg.headers.as_ref(), &msg.payload) {
                    Ok((_, req)) => {
                        let span =
                            tracing::info_span!("exec", pod = %req.pod, container = %req.container);
                        tokio::spawn(
                            async move {
                                let Some(mut s) = open(client, reply, &req.session, sender).await
                                else {
                                    return;
                                };
                                exec::run(&mut s, runtime.as_ref(), &req).await;
                            }
                            .instrument(span),
                        );
                    }
                    Err(error) => tracing::warn!(message = "bad exec request dropped", %error),
                }
            } else {
                match envelope::decode::<LogRequest>(msg.headers.as_ref(), &msg.payload) {
                    Ok((_, req)) => {
                        let span =
                            tracing::info_span!("logs", pod = %req.pod, container = %req.container);
                        tokio::spawn(
                            async move {
                                let Some(mut s) = open(client, reply, &req.session, sender).await
                                else {
                                    return;
                                };
                                log_file::run(&mut s, runtime.as_ref(), &req).await;
                            }
                            .instrument(span),
                        );
                    }
                    Err(error) => tracing::warn!(message = "bad logs request dropped", %error),
                }
            }
        }
    });
    Ok(task)
}

async fn open(
    client: async_nats::Client,
    reply: async_nats::Subject,
    session: &str,
    sender: String,
) -> Option<Session> {
    match Session::open(client, reply, session, sender).await {
        Ok(s) => Some(s),
        Err(error) => {
            tracing::warn!(message = "cannot open stream session", %error);
            None
        }
    }
}

/// Which instance of a container a request wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instance {
    /// The newest instance (running or exited).
    Current,
    /// The exited instance before it (`--previous`).
    Previous,
}

/// Picks the instance among every runtime container of that name in the pod
/// (pure; `containers` in any order). Newest = highest attempt, then latest creation.
pub fn pick_instance(
    mut containers: Vec<ContainerStatus>,
    instance: Instance,
) -> Option<ContainerStatus> {
    containers.sort_by_key(|c| std::cmp::Reverse((c.attempt, c.created_at)));
    match instance {
        Instance::Current => containers.into_iter().next(),
        Instance::Previous => containers
            .into_iter()
            .skip(1)
            .find(|c| c.state == ContainerState::Exited),
    }
}

/// Finds the container instance a request names, or the `Status`-shaped error to send.
pub async fn find_container(
    runtime: &dyn Runtime,
    namespace: &str,
    pod: &str,
    pod_uid: &str,
    container: &str,
    instance: Instance,
) -> Result<ContainerStatus, StreamError> {
    let unavailable = |e: RuntimeError| StreamError::internal(format!("container runtime: {e}"));
    let sandboxes = runtime.list_sandboxes().await.map_err(unavailable)?;
    let mut candidates = Vec::new();
    for sandbox in sandboxes.iter().filter(|s| {
        s.config.namespace == namespace
            && s.config.name == pod
            && (pod_uid.is_empty() || s.config.pod_uid == pod_uid)
    }) {
        let containers = runtime
            .list_containers(Some(&sandbox.id))
            .await
            .map_err(unavailable)?;
        candidates.extend(containers.into_iter().filter(|c| c.name == container));
    }
    pick_instance(candidates, instance).ok_or_else(|| match instance {
        Instance::Current => StreamError::bad_request(format!(
            "container {container:?} in pod {pod:?} is waiting to start: ContainerCreating"
        )),
        Instance::Previous => StreamError::bad_request(format!(
            "previous terminated container {container:?} in pod {pod:?} not found"
        )),
    })
}

/// Sends an error frame, logging when even that fails.
pub(crate) async fn fail(session: &mut Session, error: StreamError) {
    tracing::debug!(message = "stream failed", error = %error.message);
    if let Err(e) = session.send(FrameBody::Error(error)).await {
        tracing::debug!(message = "could not send the error frame", error = %e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{ContainerId, SandboxId};

    fn container(id: &str, attempt: u32, state: ContainerState) -> ContainerStatus {
        ContainerStatus {
            id: ContainerId(id.into()),
            sandbox_id: SandboxId("s".into()),
            name: "c".into(),
            image: "i".into(),
            state,
            exit_code: None,
            reason: None,
            message: None,
            attempt,
            created_at: jiff::Timestamp::UNIX_EPOCH,
            started_at: None,
            finished_at: None,
            log_path: None,
        }
    }

    #[test]
    fn instances() {
        let id = |c: Option<ContainerStatus>| c.map(|c| c.id.0);
        let all = vec![
            container("a0", 0, ContainerState::Exited),
            container("a2", 2, ContainerState::Running),
            container("a1", 1, ContainerState::Exited),
        ];
        assert_eq!(
            id(pick_instance(all.clone(), Instance::Current)),
            Some("a2".into())
        );
        assert_eq!(
            id(pick_instance(all, Instance::Previous)),
            Some("a1".into())
        );
        let one = vec![container("a0", 0, ContainerState::Exited)];
        assert_eq!(
            id(pick_instance(one.clone(), Instance::Current)),
            Some("a0".into())
        );
        assert_eq!(id(pick_instance(one, Instance::Previous)), None);
        assert_eq!(id(pick_instance(Vec::new(), Instance::Current)), None);
    }
}
