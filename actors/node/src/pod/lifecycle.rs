//! Stopping a pod's containers the kubelet's way: each container's preStop hook runs
//! first (exec, httpGet or sleep) within the grace period, then the container is stopped
//! with what is left of it (SIGTERM, SIGKILL after). Regular containers stop together;
//! sidecars stop after them, in reverse order; then the sandbox and the volumes go.

use std::time::Duration;

use drover_store::{DeleteOptions, StoreError, object};
use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::Value;
use tokio::time::Instant;

use super::{PodCtx, Running, pod_kind};
use crate::events::{self, EventType};
use crate::podspec;
use crate::probe;
use crate::runtime::{ContainerId, ContainerState, SandboxInfo};
use crate::volumes;

/// The least a container gets to stop after its preStop hook (kubelet
/// `minimumGracePeriodInSeconds`).
const MIN_STOP_GRACE: Duration = Duration::from_secs(2);

/// Runs the container's preStop hook (bounded by `deadline`), then stops it with the
/// remaining grace. `grace` zero means a forced stop: no hook, no minimum.
pub(super) async fn stop_one(
    ctx: &PodCtx,
    spec: &Container,
    id: &ContainerId,
    pod_ip: &str,
    deadline: Instant,
    grace: Duration,
) {
    let pre_stop = spec.lifecycle.as_ref().and_then(|l| l.pre_stop.clone());
    if let Some(hook) = pre_stop.filter(|_| !grace.is_zero()) {
        let budget = deadline.saturating_duration_since(Instant::now());
        let target = probe::Target {
            runtime: ctx.runtime.as_ref(),
            id,
            spec,
            pod_ip,
            scripted_network: ctx.runtime_name == crate::hollow::HOLLOW_RUNTIME_NAME,
        };
        let run = async {
            if let Some(exec) = &hook.exec {
                let command = exec.command.clone().unwrap_or_default();
                match ctx.runtime.exec_sync(id, &command, budget).await {
                    Ok(out) if out.exit_code == 0 => Ok(()),
                    Ok(out) => Err(format!("exited with {}", out.exit_code)),
                    Err(e) => Err(e.to_string()),
                }
            } else if let Some(http) = &hook.http_get {
                probe::run_http(&target, http, budget).await
            } else if let Some(sleep) = &hook.sleep {
                tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64)).await;
                Ok(())
            } else {
                Ok(())
            }
        };
        match tokio::time::timeout(budget, run).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(message = "preStop hook failed", container = %spec.name, %error)
            }
            Err(_) => {
                tracing::warn!(message = "preStop hook ran out of grace", container = %spec.name)
            }
        }
    }
    let mut remaining = deadline.saturating_duration_since(Instant::now());
    if !grace.is_zero() {
        remaining = remaining.max(MIN_STOP_GRACE);
    }
    if let Err(error) = ctx.runtime.stop_container(id, remaining).await {
        tracing::warn!(message = "stopping container failed", container = %spec.name, %error);
    }
}

/// Stops the pod's running containers in order: regular ones together, then sidecars
/// in reverse spec order.
async fn stop_in_order(
    ctx: &PodCtx,
    running: &mut Running,
    pod: &Pod,
    sandbox: &SandboxInfo,
    grace: Duration,
) {
    let deadline = Instant::now() + grace;
    let spec = pod.spec.clone().unwrap_or_default();
    let mut live = std::collections::BTreeMap::new();
    if let Ok(all) = ctx.runtime.list_containers(Some(&sandbox.id)).await {
        for c in all {
            if matches!(c.state, ContainerState::Running | ContainerState::Created) {
                live.insert(c.name.clone(), c.id);
            }
        }
    }
    let mains: Vec<(&Container, ContainerId)> = spec
        .containers
        .iter()
        .filter_map(|c| live.get(&c.name).map(|id| (c, id.clone())))
        .collect();
    for (c, _) in &mains {
        let fp = events::container_field_path(false, &c.name);
        running
            .event(
                &fp,
                EventType::Normal,
                "Killing",
                &format!("Stopping container {}", c.name),
            )
            .await;
    }
    futures::future::join_all(
        mains
            .iter()
            .map(|(c, id)| stop_one(ctx, c, id, &sandbox.ip, deadline, grace)),
    )
    .await;
    let sidecars: Vec<&Container> = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| podspec::is_sidecar(c))
        .collect();
    for c in sidecars.into_iter().rev() {
        let Some(id) = live.get(&c.name) else {
            continue;
        };
        let fp = events::container_field_path(true, &c.name);
        running
            .event(
                &fp,
                EventType::Normal,
                "Killing",
                &format!("Stopping container {}", c.name),
            )
            .await;
        stop_one(ctx, c, id, &sandbox.ip, deadline, grace).await;
    }
}

/// Stops the pod's running sidecars in reverse order (after its regular containers
/// finished for good).
pub(super) async fn stop_sidecars(
    ctx: &PodCtx,
    running: &mut Running,
    pod: &Pod,
    sandbox: &SandboxInfo,
    grace: Duration,
) {
    let spec = pod.spec.clone().unwrap_or_default();
    let deadline = Instant::now() + grace;
    for c in spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| podspec::is_sidecar(c))
        .rev()
    {
        let Some(id) = running.containers.get(&c.name).cloned() else {
            continue;
        };
        let live = ctx
            .runtime
            .container_status(&id)
            .await
            .is_ok_and(|s| s.state == ContainerState::Running);
        if !live {
            continue;
        }
        let fp = events::container_field_path(true, &c.name);
        running
            .event(
                &fp,
                EventType::Normal,
                "Killing",
                &format!("Stopping container {}", c.name),
            )
            .await;
        stop_one(ctx, c, &id, &sandbox.ip, deadline, grace).await;
    }
}

/// Graceful deletion: stop everything within the pod's grace period, then delete the
/// pod with grace 0 (uid precondition: never a newer pod of the same name).
pub(super) async fn terminate(ctx: &PodCtx, running: &mut Running, pod: &Value) {
    let uid = object::meta_str(pod, "uid").unwrap_or("").to_string();
    let grace_seconds = pod
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(object::DEFAULT_POD_GRACE_SECONDS)
        .max(0);
    let grace = Duration::from_secs(grace_seconds as u64);
    if let Ok(typed) = serde_json::from_value::<Pod>(pod.clone()) {
        if running.recorder.is_none() {
            running.recorder = Some(crate::events::Recorder::new(
                ctx.store.clone(),
                &ctx.node_name,
                crate::events::Involved {
                    namespace: typed.metadata.namespace.clone().unwrap_or_default(),
                    name: typed.metadata.name.clone().unwrap_or_default(),
                    uid: uid.clone(),
                },
            ));
        }
        match super::adopt(ctx, running, &uid).await {
            Ok(Some(sandbox)) => {
                // Out of Service traffic first, then preStop and SIGTERM with what is left.
                let host_network = typed
                    .spec
                    .as_ref()
                    .and_then(|s| s.host_network)
                    .unwrap_or(false);
                let spent = if host_network {
                    Duration::ZERO
                } else {
                    super::drain::drain(
                        ctx,
                        object::namespace(pod).unwrap_or(""),
                        &uid,
                        &sandbox.ip,
                        grace / 2,
                    )
                    .await
                };
                stop_in_order(ctx, running, &typed, &sandbox, grace.saturating_sub(spent)).await
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(message = "finding the pod's sandbox failed", %error),
        }
    }
    teardown(ctx, running, &uid, Duration::ZERO).await;
    let opts = DeleteOptions {
        uid: Some(uid),
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    match ctx
        .store
        .delete(pod_kind(), object::namespace(pod), object::name(pod), &opts)
        .await
    {
        Ok(_) | Err(StoreError::NotFound { .. }) => {}
        // Finalizers of others keep it; or a different pod now holds the name.
        Err(error) => tracing::warn!(message = "final pod delete failed", %error),
    }
}

/// Stops and removes every container and sandbox of the pod (found by uid in the
/// runtime, so it also cleans up what a previous agent started), then its volumes.
/// Errors are logged: removal is retried by the next agent start's re-adoption.
pub(super) async fn teardown(ctx: &PodCtx, running: &mut Running, uid: &str, grace: Duration) {
    let mut sandboxes: Vec<SandboxInfo> = running.sandbox.take().into_iter().collect();
    match ctx.runtime.list_sandboxes().await {
        Ok(all) => {
            for s in all {
                if s.config.pod_uid == uid && !sandboxes.iter().any(|k| k.id == s.id) {
                    sandboxes.push(s);
                }
            }
        }
        Err(error) => tracing::warn!(message = "listing sandboxes failed", %error),
    }
    running.containers.clear();
    running.previous.clear();
    running.probes.clear();
    for sandbox in sandboxes {
        match ctx.runtime.list_containers(Some(&sandbox.id)).await {
            Ok(containers) => {
                for c in containers {
                    if c.state == ContainerState::Exited {
                        continue;
                    }
                    if let Err(error) = ctx.runtime.stop_container(&c.id, grace).await {
                        tracing::warn!(message = "stopping container failed", container = %c.name, %error);
                    }
                }
            }
            Err(error) => tracing::warn!(message = "listing containers failed", %error),
        }
        if let Err(error) = ctx.runtime.stop_sandbox(&sandbox.id).await {
            tracing::warn!(message = "stopping sandbox failed", %error);
        }
        if let Err(error) = ctx.runtime.remove_sandbox(&sandbox.id).await {
            tracing::warn!(message = "removing sandbox failed", %error);
        }
    }
    running.volumes = None;
    if let Some(dir) = &ctx.pods_dir
        && let Err(error) = volumes::teardown(dir, uid)
    {
        tracing::warn!(message = "removing pod volumes failed", %error);
    }
}
