//! Taking a deleted pod out of Service traffic before it is told to stop.
//!
//! The EndpointSlice controller marks a terminating pod's endpoints `ready: false`, and
//! every node's service proxy then stops sending it new connections. Kubernetes sends
//! SIGTERM at the same time as that happens, so connections race the shutdown unless
//! the user adds a `preStop` sleep. The agent instead waits, before the preStop hooks
//! and SIGTERM, until no EndpointSlice lists the pod as ready any more, plus a short
//! drain delay for the proxies to apply it and for connections opened just before to
//! finish. A pod no Service selects waits not at all. The wait is bounded by half the
//! grace period, so the containers keep most of theirs.

use std::time::Duration;

use drover_store::ListOptions;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::Value;
use tokio::time::Instant;

use super::PodCtx;

/// How often the slices are re-read while waiting.
const POLL: Duration = Duration::from_millis(100);

/// Where a pod stands in its namespace's EndpointSlices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listed {
    /// No slice lists it: no Service selects it (or its endpoints are gone).
    Nowhere,
    /// At least one slice lists it as ready: proxies still send it new connections.
    Ready,
    /// Every slice that lists it says not ready (terminating).
    NotReady,
}

/// The pod's state in `slices`, matching endpoints by `targetRef.uid` (or by address,
/// for slices written without a targetRef). An endpoint without `ready` counts as
/// ready, as the proxy treats it.
pub fn listed(slices: &[Value], uid: &str, ip: &str) -> Listed {
    let mut state = Listed::Nowhere;
    let endpoints = slices
        .iter()
        .filter_map(|s| s.get("endpoints").and_then(Value::as_array))
        .flatten();
    for ep in endpoints {
        let by_ref = ep.pointer("/targetRef/uid").and_then(Value::as_str);
        let ours = match by_ref {
            Some(u) => !uid.is_empty() && u == uid,
            None => {
                !ip.is_empty()
                    && ep
                        .get("addresses")
                        .and_then(Value::as_array)
                        .is_some_and(|a| a.iter().any(|a| a.as_str() == Some(ip)))
            }
        };
        if !ours {
            continue;
        }
        let ready = ep
            .pointer("/conditions/ready")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        if ready {
            return Listed::Ready;
        }
        state = Listed::NotReady;
    }
    state
}

/// Waits until the pod is out of every Service's ready endpoints and the drain delay has
/// passed, at most `limit`. Returns how long it waited. Store errors end the wait early
/// (the pod still stops; only the ordering guarantee is lost, and logged).
pub(super) async fn drain(
    ctx: &PodCtx,
    namespace: &str,
    uid: &str,
    ip: &str,
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    if limit.is_zero() || (uid.is_empty() && ip.is_empty()) {
        return Duration::ZERO;
    }
    let deadline = started + limit;
    let kind = bus_schema::kinds::of::<EndpointSlice>();
    let mut was_listed = false;
    loop {
        let slices = match ctx
            .store
            .list(kind, Some(namespace), &ListOptions::default())
            .await
        {
            Ok(l) => l.items,
            Err(error) => {
                tracing::warn!(message = "reading EndpointSlices before stopping a pod failed", %error);
                return started.elapsed();
            }
        };
        match listed(&slices, uid, ip) {
            Listed::Nowhere if !was_listed => return started.elapsed(),
            Listed::Ready if Instant::now() + POLL < deadline => {
                was_listed = true;
                tokio::time::sleep(POLL).await;
            }
            Listed::Ready => {
                tracing::warn!(
                    message = "pod still a ready endpoint at the end of its drain time; stopping it",
                    pod.uid = %uid
                );
                return started.elapsed();
            }
            Listed::Nowhere | Listed::NotReady => {
                tokio::time::sleep_until(deadline.min(Instant::now() + ctx.endpoint_drain_delay))
                    .await;
                return started.elapsed();
            }
        }
    }
}

#[cfg(test)]
mod tests;
