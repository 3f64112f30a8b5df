//! The node's resource metrics (the kubelet's `/metrics/resource` role): every
//! `metrics_interval` the agent samples each running container through the
//! [`Runtime`] seam (`container_stats`: synthetic for hollow nodes, containerd's CRI
//! stats for real ones) and publishes one [`UsageReport`] for the node and its pods on
//! core NATS ([`bus_schema::subjects::metrics_usage`]). Nothing is stored: usage is not
//! desired state, and a lost report is replaced by the next.
//!
//! The node's own usage is the sum of its pods' (no system overhead is measured yet).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bus_schema::envelope;
use bus_schema::metrics::{ContainerUsage, PodUsage, Usage, UsageReport};

use crate::runtime::{
    ContainerState, ContainerStats, ContainerStatus, Runtime, RuntimeError, SandboxInfo,
    SandboxState,
};

/// Default publishing period (the kubelet's resource metrics are scraped every 15 s by
/// metrics-server).
pub const DEFAULT_METRICS_INTERVAL: Duration = Duration::from_secs(15);

/// Builds the report from the runtime's sandboxes and its running containers with their
/// stats. Pure: containers of unknown or stopped sandboxes are left out, pods without a
/// running container are left out, and pods are ordered by namespace and name.
pub fn build_report(
    node: &str,
    timestamp_ms: i64,
    window: Duration,
    sandboxes: &[SandboxInfo],
    containers: &[(ContainerStatus, ContainerStats)],
) -> UsageReport {
    let mut pods: BTreeMap<(String, String), PodUsage> = BTreeMap::new();
    for (status, stats) in containers {
        if status.state != ContainerState::Running {
            continue;
        }
        let Some(sandbox) = sandboxes
            .iter()
            .find(|s| s.id == status.sandbox_id && s.state == SandboxState::Ready)
        else {
            continue;
        };
        let pod = pods
            .entry((
                sandbox.config.namespace.clone(),
                sandbox.config.name.clone(),
            ))
            .or_insert_with(|| PodUsage {
                namespace: sandbox.config.namespace.clone(),
                name: sandbox.config.name.clone(),
                uid: sandbox.config.pod_uid.clone(),
                labels: sandbox.config.labels.clone(),
                containers: Vec::new(),
            });
        pod.containers.push(ContainerUsage {
            name: status.name.clone(),
            usage: Usage {
                cpu_millis: stats.cpu_millis,
                memory_bytes: stats.memory_bytes,
            },
        });
    }
    let pods: Vec<PodUsage> = pods.into_values().collect();
    let node_usage = pods
        .iter()
        .fold(Usage::default(), |acc, p| acc.plus(p.total()));
    UsageReport {
        node: node.to_string(),
        timestamp_ms,
        window_ms: window.as_millis() as u64,
        node_usage,
        pods,
    }
}

/// Samples the runtime once. A container that vanished between the list and its stats
/// is skipped.
pub async fn sample(
    runtime: &dyn Runtime,
    node: &str,
    window: Duration,
) -> Result<UsageReport, RuntimeError> {
    let sandboxes = runtime.list_sandboxes().await?;
    let mut containers = Vec::new();
    for status in runtime.list_containers(None).await? {
        if status.state != ContainerState::Running {
            continue;
        }
        match runtime.container_stats(&status.id).await {
            Ok(stats) => containers.push((status, stats)),
            Err(RuntimeError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let now = jiff::Timestamp::now().as_millisecond();
    Ok(build_report(node, now, window, &sandboxes, &containers))
}

/// Publishes a report every `interval` until the task is aborted. Failures are logged
/// and the next tick tries again.
pub async fn publish_loop(
    client: async_nats::Client,
    node: String,
    runtime: Arc<dyn Runtime>,
    interval: Duration,
) {
    let subject = bus_schema::subjects::metrics_usage(&node);
    let meta = envelope::Meta {
        sender: format!("node/{node}"),
        traceparent: None,
    };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let report = match sample(runtime.as_ref(), &node, interval).await {
            Ok(r) => r,
            Err(error) => {
                tracing::debug!(message = "usage sample failed", %error);
                continue;
            }
        };
        let (headers, body) = match envelope::encode(&report, &meta) {
            Ok(m) => m,
            Err(error) => {
                tracing::warn!(message = "usage report not encodable", %error);
                continue;
            }
        };
        if let Err(error) = client
            .publish_with_headers(subject.clone(), headers, body)
            .await
        {
            tracing::debug!(message = "usage report not published", %error);
        }
    }
}

#[cfg(test)]
mod tests;
