//! The Pod table: the READY and STATUS cells carry most of what `kubectl get pods` users
//! read, so their rules follow `printPod` step by step (init containers, sidecars,
//! container states, deletion).

use jiff::Timestamp;
use serde_json::{Value, json};

use super::fields::{
    age, arr_at, bool_at, has_obj, int_at, is_deleting, name, opt_str, since, str_at, time_at,
};
use super::{AGE, Column, NAME};

pub(super) const COLUMNS: &[Column] = &[
    NAME,
    Column::string(
        "Ready",
        "The aggregate readiness state of this pod for accepting traffic.",
    ),
    Column::string(
        "Status",
        "The aggregate status of the containers in this pod.",
    ),
    Column::string(
        "Restarts",
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
    ),
    AGE,
    Column::string("IP", "The IP address allocated to the pod.").wide(),
    Column::string("Node", "The node the pod is bound to.").wide(),
    Column::string(
        "Nominated Node",
        "The node the scheduler has nominated for the pod while preempting others.",
    )
    .wide(),
    Column::string(
        "Readiness Gates",
        "How many of the pod's readiness gates are satisfied.",
    )
    .wide(),
];

/// `status.reason` the node lifecycle controller sets on pods of an unreachable node.
const NODE_LOST_REASON: &str = "NodeLost";

pub(super) fn cells(pod: &Value, now: Timestamp) -> Vec<Value> {
    let summary = summarize(pod);
    let restarts = match summary.last_restart {
        Some(last) if summary.restarts != 0 => {
            format!("{} ({} ago)", summary.restarts, since(Some(last), now))
        }
        _ => summary.restarts.to_string(),
    };
    vec![
        name(pod).into(),
        format!("{}/{}", summary.ready, summary.total).into(),
        summary.status.into(),
        restarts.into(),
        age(pod, now).into(),
        pod_ip(pod).into(),
        none_if_empty(str_at(pod, "/spec/nodeName")).into(),
        none_if_empty(str_at(pod, "/status/nominatedNodeName")).into(),
        readiness_gates(pod).into(),
    ]
}

/// Rows of finished pods say so, as Kubernetes' do, so clients can tell them apart.
pub(super) fn row_conditions(pod: &Value) -> Option<Value> {
    let (reason, message) = match str_at(pod, "/status/phase") {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{
        "type": "Completed",
        "status": "True",
        "reason": reason,
        "message": message,
    }]))
}

/// What the READY, STATUS and RESTARTS cells are computed from.
struct Summary {
    ready: usize,
    total: usize,
    status: String,
    restarts: i64,
    last_restart: Option<Timestamp>,
}

fn summarize(pod: &Value) -> Summary {
    // The API server sets `Pending` on create, so a pod without a phase is a pending pod.
    let phase = match str_at(pod, "/status/phase") {
        "" => "Pending",
        phase => phase,
    };
    let mut status = match str_at(pod, "/status/reason") {
        "" => phase.to_string(),
        reason => reason.to_string(),
    };
    let conditions = arr_at(pod, "/status/conditions");
    if conditions
        .iter()
        .any(|c| str_at(c, "/type") == "PodScheduled" && str_at(c, "/reason") == "SchedulingGated")
    {
        status = "SchedulingGated".to_string();
    }

    let init_specs = arr_at(pod, "/spec/initContainers");
    // Sidecars are init containers that keep running; they count as pod containers.
    let sidecars: Vec<&str> = init_specs
        .iter()
        .filter(|c| str_at(c, "/restartPolicy") == "Always")
        .map(|c| str_at(c, "/name"))
        .collect();
    let is_sidecar = |name: &str| sidecars.contains(&name);
    let total = arr_at(pod, "/spec/containers").len() + sidecars.len();

    let mut ready = 0;
    let mut restarts: i64 = 0;
    let mut last_restart = None;
    let mut sidecar_restarts: i64 = 0;
    let mut last_sidecar_restart = None;
    let mut initializing = false;
    for (idx, container) in arr_at(pod, "/status/initContainerStatuses")
        .iter()
        .enumerate()
    {
        let restart_count = int_at(container, "/restartCount");
        let terminated_at = time_at(container, "/lastState/terminated/finishedAt");
        restarts = restarts.saturating_add(restart_count);
        last_restart = last_restart.max(terminated_at);
        let sidecar = is_sidecar(str_at(container, "/name"));
        if sidecar {
            sidecar_restarts = sidecar_restarts.saturating_add(restart_count);
            last_sidecar_restart = last_sidecar_restart.max(terminated_at);
        }
        let terminated = has_obj(container, "/state/terminated");
        if terminated && int_at(container, "/state/terminated/exitCode") == 0 {
            continue;
        }
        if sidecar && bool_at(container, "/started") {
            if bool_at(container, "/ready") {
                ready += 1;
            }
            continue;
        }
        let waiting_reason = str_at(container, "/state/waiting/reason");
        status = if terminated {
            match terminated_reason(container) {
                Some(reason) => format!("Init:{reason}"),
                None => format!("Init:{}", exit_description(container)),
            }
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{idx}/{}", init_specs.len())
        };
        initializing = true;
        break;
    }

    if !initializing || has_true_condition(conditions, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        // Walked backwards so that the first container's state is the one reported.
        for container in arr_at(pod, "/status/containerStatuses").iter().rev() {
            restarts = restarts.saturating_add(int_at(container, "/restartCount"));
            last_restart = last_restart.max(time_at(container, "/lastState/terminated/finishedAt"));
            let waiting_reason = str_at(container, "/state/waiting/reason");
            if !waiting_reason.is_empty() {
                status = waiting_reason.to_string();
            } else if has_obj(container, "/state/terminated") {
                status = terminated_reason(container)
                    .map_or_else(|| exit_description(container), str::to_string);
            } else if bool_at(container, "/ready") && has_obj(container, "/state/running") {
                has_running = true;
                ready += 1;
            }
        }
        // A pod whose first container completed while others still run is not completed.
        if status == "Completed" && has_running {
            status = if has_true_condition(conditions, "Ready") {
                "Running".to_string()
            } else {
                "NotReady".to_string()
            };
        }
    }

    let raw_phase = str_at(pod, "/status/phase");
    if is_deleting(pod) && str_at(pod, "/status/reason") == NODE_LOST_REASON {
        status = "Unknown".to_string();
    } else if is_deleting(pod) && raw_phase != "Succeeded" && raw_phase != "Failed" {
        status = "Terminating".to_string();
    }

    Summary {
        ready,
        total,
        status,
        restarts,
        last_restart,
    }
}

/// `state.terminated.reason`, when the runtime gave one.
fn terminated_reason(container: &Value) -> Option<&str> {
    opt_str(container, "/state/terminated/reason").filter(|r| !r.is_empty())
}

/// `Signal:9` or `ExitCode:1` for a container that terminated without a reason.
fn exit_description(container: &Value) -> String {
    let signal = int_at(container, "/state/terminated/signal");
    if signal != 0 {
        format!("Signal:{signal}")
    } else {
        format!(
            "ExitCode:{}",
            int_at(container, "/state/terminated/exitCode")
        )
    }
}

fn has_true_condition(conditions: &[Value], condition_type: &str) -> bool {
    conditions
        .iter()
        .any(|c| str_at(c, "/type") == condition_type && str_at(c, "/status") == "True")
}

/// The first pod IP; `status.podIP` stands in for `podIPs` as the API's conversion does.
fn pod_ip(pod: &Value) -> String {
    let ip = opt_str(pod, "/status/podIPs/0/ip").unwrap_or_else(|| str_at(pod, "/status/podIP"));
    none_if_empty(ip).to_string()
}

/// `satisfied/total` readiness gates, `<none>` without any.
fn readiness_gates(pod: &Value) -> String {
    let gates = arr_at(pod, "/spec/readinessGates");
    if gates.is_empty() {
        return "<none>".to_string();
    }
    let conditions = arr_at(pod, "/status/conditions");
    let satisfied = gates
        .iter()
        .filter(|gate| {
            let gate_type = str_at(gate, "/conditionType");
            conditions
                .iter()
                .find(|c| str_at(c, "/type") == gate_type)
                .is_some_and(|c| str_at(c, "/status") == "True")
        })
        .count();
    format!("{satisfied}/{}", gates.len())
}

fn none_if_empty(s: &str) -> &str {
    if s.is_empty() { "<none>" } else { s }
}
