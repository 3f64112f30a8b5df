//! Tables of the kinds that run pods or govern them: Deployment, ReplicaSet, StatefulSet,
//! DaemonSet, Job, CronJob, HorizontalPodAutoscaler, PodDisruptionBudget and
//! ControllerRevision.

use jiff::Timestamp;
use serde_json::Value;

use super::duration::human_duration_between;
use super::fields::{
    age, arr_at, at, container_cells, int_at, int_or_string, is_deleting, name, opt_bool, opt_int,
    opt_str, quantity_or, since, str_at, time_at,
};
use super::selector::{format_label_selector, format_labels, selector_string};
use super::{AGE, CONTAINERS, Column, IMAGES, NAME};

/// `apps/v1` defaults `spec.replicas` to 1; an object stored without it means one replica.
const DEFAULT_REPLICAS: i64 = 1;

fn replicas(object: &Value) -> i64 {
    opt_int(object, "/spec/replicas").unwrap_or(DEFAULT_REPLICAS)
}

/// The CONTAINERS and IMAGES cells of an object whose pod template is at `template`.
fn template_cells(object: &Value, template: &str) -> [Value; 2] {
    let (names, images) = container_cells(at(object, &format!("{template}/spec")));
    [names.into(), images.into()]
}

pub(super) const DEPLOYMENT_COLUMNS: &[Column] = &[
    NAME,
    Column::string("Ready", "Number of the pod with ready state"),
    Column::string(
        "Up-to-date",
        "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
    ),
    Column::string(
        "Available",
        "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    Column::string("Selector", "Label selector for pods.").wide(),
];

pub(super) fn deployment_cells(deployment: &Value, now: Timestamp) -> Vec<Value> {
    // Unlike the other printers, the Deployment one prints an empty selector as nothing.
    let selector = selector_string(at(deployment, "/spec/selector"))
        .unwrap_or_else(|_| "<invalid>".to_string());
    let [containers, images] = template_cells(deployment, "/spec/template");
    vec![
        name(deployment).into(),
        format!(
            "{}/{}",
            int_at(deployment, "/status/readyReplicas"),
            replicas(deployment)
        )
        .into(),
        int_at(deployment, "/status/updatedReplicas").into(),
        int_at(deployment, "/status/availableReplicas").into(),
        age(deployment, now).into(),
        containers,
        images,
        selector.into(),
    ]
}

pub(super) const REPLICA_SET_COLUMNS: &[Column] = &[
    NAME,
    Column::integer("Desired", "Number of desired pods."),
    Column::integer("Current", "The most recently observed number of replicas."),
    Column::integer(
        "Ready",
        "The number of pods targeted by this ReplicaSet that are ready.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    Column::string("Selector", "Label selector for pods.").wide(),
];

pub(super) fn replica_set_cells(replica_set: &Value, now: Timestamp) -> Vec<Value> {
    let [containers, images] = template_cells(replica_set, "/spec/template");
    vec![
        name(replica_set).into(),
        replicas(replica_set).into(),
        int_at(replica_set, "/status/replicas").into(),
        int_at(replica_set, "/status/readyReplicas").into(),
        age(replica_set, now).into(),
        containers,
        images,
        format_label_selector(at(replica_set, "/spec/selector")).into(),
    ]
}

pub(super) const STATEFUL_SET_COLUMNS: &[Column] = &[
    NAME,
    Column::string("Ready", "Number of the pod with ready state"),
    AGE,
    CONTAINERS,
    IMAGES,
];

pub(super) fn stateful_set_cells(stateful_set: &Value, now: Timestamp) -> Vec<Value> {
    let [containers, images] = template_cells(stateful_set, "/spec/template");
    vec![
        name(stateful_set).into(),
        format!(
            "{}/{}",
            int_at(stateful_set, "/status/readyReplicas"),
            replicas(stateful_set)
        )
        .into(),
        age(stateful_set, now).into(),
        containers,
        images,
    ]
}

pub(super) const DAEMON_SET_COLUMNS: &[Column] = &[
    NAME,
    Column::integer(
        "Desired",
        "The total number of nodes that should be running the daemon pod.",
    ),
    Column::integer(
        "Current",
        "The number of nodes that are running at least one daemon pod and are supposed to run it.",
    ),
    Column::integer(
        "Ready",
        "The number of nodes that should be running the daemon pod and have one or more of it running and ready.",
    ),
    Column::integer(
        "Up-to-date",
        "The total number of nodes that are running the updated daemon pod.",
    ),
    Column::integer(
        "Available",
        "The number of nodes that should be running the daemon pod and have one or more of it running and available.",
    ),
    Column::string(
        "Node Selector",
        "The node labels the daemon pods are restricted to.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    Column::string("Selector", "Label selector for pods.").wide(),
];

pub(super) fn daemon_set_cells(daemon_set: &Value, now: Timestamp) -> Vec<Value> {
    let [containers, images] = template_cells(daemon_set, "/spec/template");
    vec![
        name(daemon_set).into(),
        int_at(daemon_set, "/status/desiredNumberScheduled").into(),
        int_at(daemon_set, "/status/currentNumberScheduled").into(),
        int_at(daemon_set, "/status/numberReady").into(),
        int_at(daemon_set, "/status/updatedNumberScheduled").into(),
        int_at(daemon_set, "/status/numberAvailable").into(),
        format_labels(at(daemon_set, "/spec/template/spec/nodeSelector")).into(),
        age(daemon_set, now).into(),
        containers,
        images,
        format_label_selector(at(daemon_set, "/spec/selector")).into(),
    ]
}

pub(super) const JOB_COLUMNS: &[Column] = &[
    NAME,
    Column::string("Status", "Status of the job."),
    Column::string(
        "Completions",
        "The number of pods which reached phase Succeeded, of those required.",
    ),
    Column::string("Duration", "Time required to complete the job."),
    AGE,
    CONTAINERS,
    IMAGES,
    Column::string("Selector", "Label selector for pods.").wide(),
];

pub(super) fn job_cells(job: &Value, now: Timestamp) -> Vec<Value> {
    let succeeded = int_at(job, "/status/succeeded");
    let completions = match opt_int(job, "/spec/completions") {
        Some(completions) => format!("{succeeded}/{completions}"),
        None => match int_at(job, "/spec/parallelism") {
            parallelism if parallelism > 1 => format!("{succeeded}/1 of {parallelism}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match time_at(job, "/status/startTime") {
        None => String::new(),
        Some(start) => {
            let end = time_at(job, "/status/completionTime").unwrap_or(now);
            human_duration_between(start, end)
        }
    };
    let conditions = arr_at(job, "/status/conditions");
    let status = if job_condition(conditions, "Complete") {
        "Complete"
    } else if job_condition(conditions, "Failed") {
        "Failed"
    } else if is_deleting(job) {
        "Terminating"
    } else if job_condition(conditions, "Suspended") {
        "Suspended"
    } else if job_condition(conditions, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let [containers, images] = template_cells(job, "/spec/template");
    vec![
        name(job).into(),
        status.into(),
        completions.into(),
        duration.into(),
        age(job, now).into(),
        containers,
        images,
        format_label_selector(at(job, "/spec/selector")).into(),
    ]
}

/// Whether the first condition of `condition_type` is true (later duplicates are ignored,
/// as in Kubernetes).
fn job_condition(conditions: &[Value], condition_type: &str) -> bool {
    conditions
        .iter()
        .find(|c| str_at(c, "/type") == condition_type)
        .is_some_and(|c| str_at(c, "/status") == "True")
}

pub(super) const CRON_JOB_COLUMNS: &[Column] = &[
    NAME,
    Column::string(
        "Schedule",
        "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.",
    ),
    Column::string("Timezone", "The time zone name for the given schedule."),
    Column::boolean(
        "Suspend",
        "Whether subsequent executions are suspended; running ones are not affected.",
    ),
    Column::integer("Active", "The number of currently running jobs."),
    Column::string(
        "Last Schedule",
        "How long ago the job was last successfully scheduled.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    Column::string("Selector", "Label selector for pods.").wide(),
];

pub(super) fn cron_job_cells(cron_job: &Value, now: Timestamp) -> Vec<Value> {
    let last_schedule = match at(cron_job, "/status/lastScheduleTime") {
        Some(_) => since(time_at(cron_job, "/status/lastScheduleTime"), now),
        None => "<none>".to_string(),
    };
    // The column is typed boolean but Kubernetes fills it with these words.
    let suspend = match opt_bool(cron_job, "/spec/suspend") {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    };
    let [containers, images] = template_cells(cron_job, "/spec/jobTemplate/spec/template");
    vec![
        name(cron_job).into(),
        str_at(cron_job, "/spec/schedule").into(),
        opt_str(cron_job, "/spec/timeZone")
            .unwrap_or("<none>")
            .into(),
        suspend.into(),
        (arr_at(cron_job, "/status/active").len() as i64).into(),
        last_schedule.into(),
        age(cron_job, now).into(),
        containers,
        images,
        format_label_selector(at(cron_job, "/spec/jobTemplate/spec/selector")).into(),
    ]
}

pub(super) const HPA_COLUMNS: &[Column] = &[
    NAME,
    Column::string("Reference", "The scaled resource: its kind and name."),
    Column::string(
        "Targets",
        "Current and target values of the metrics used to compute the desired replica count.",
    ),
    Column::string(
        "MinPods",
        "The lower limit for the number of replicas to which the autoscaler can scale down.",
    ),
    Column::string(
        "MaxPods",
        "The upper limit for the number of replicas to which the autoscaler can scale up.",
    ),
    Column::string(
        "Replicas",
        "Current number of replicas of pods managed by this autoscaler.",
    ),
    AGE,
];

pub(super) fn hpa_cells(hpa: &Value, now: Timestamp) -> Vec<Value> {
    let reference = format!(
        "{}/{}",
        str_at(hpa, "/spec/scaleTargetRef/kind"),
        str_at(hpa, "/spec/scaleTargetRef/name")
    );
    let min_pods =
        opt_int(hpa, "/spec/minReplicas").map_or_else(|| "<unset>".to_string(), |n| n.to_string());
    vec![
        name(hpa).into(),
        reference.into(),
        hpa_targets(
            arr_at(hpa, "/spec/metrics"),
            arr_at(hpa, "/status/currentMetrics"),
        )
        .into(),
        min_pods.into(),
        int_at(hpa, "/spec/maxReplicas").into(),
        int_at(hpa, "/status/currentReplicas").into(),
        age(hpa, now).into(),
    ]
}

/// How many metrics the TARGETS cell spells out before `+ N more...`.
const HPA_TARGETS_SHOWN: usize = 2;

/// The TARGETS cell (`formatHPAMetrics`): `cpu: 40%/80%, memory: 1Gi/2Gi + 1 more...`, each
/// spec metric paired with the status metric at the same index.
fn hpa_targets(specs: &[Value], statuses: &[Value]) -> String {
    if specs.is_empty() {
        return "<none>".to_string();
    }
    let list: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(idx, spec)| hpa_metric(spec, statuses.get(idx)))
        .collect();
    if list.len() > HPA_TARGETS_SHOWN {
        format!(
            "{} + {} more...",
            list[..HPA_TARGETS_SHOWN].join(", "),
            list.len() - HPA_TARGETS_SHOWN
        )
    } else {
        list.join(", ")
    }
}

/// Stands in for a struct Kubernetes always has (a metric's `current`) when the JSON lacks it.
static NULL: Value = Value::Null;

/// One metric of the TARGETS cell. `<unknown>` stands for a current value not yet observed;
/// `<nil>` is what Kubernetes prints for a quantity missing from an otherwise valid metric.
fn hpa_metric(spec: &Value, status: Option<&Value>) -> String {
    let unknown = || "<unknown>".to_string();
    let quantity = |v: Option<&Value>| quantity_or(v, "<nil>");
    let (key, averaged_name) = match str_at(spec, "/type") {
        "External" => ("external", false),
        "Object" => ("object", false),
        "Pods" => ("pods", false),
        "Resource" => ("resource", true),
        "ContainerResource" => ("containerResource", true),
        _ => return "<unknown type>".to_string(),
    };
    let target = at(spec, &format!("/{key}/target")).unwrap_or(&NULL);
    // The reported value, once the status has an entry for this metric's source.
    let current = status
        .and_then(|s| at(s, &format!("/{key}")))
        .map(|source| at(source, "/current").unwrap_or(&NULL));
    let average_target = at(target, "/averageValue");
    if key == "pods" {
        let now = current.map_or_else(unknown, |c| quantity(at(c, "/averageValue")));
        return format!("{now}/{}", quantity(average_target));
    }
    if !averaged_name {
        return match average_target {
            Some(average) => {
                let now = current
                    .and_then(|c| at(c, "/averageValue"))
                    .map_or_else(unknown, |v| quantity(Some(v)));
                format!("{now}/{} (avg)", quantity(Some(average)))
            }
            None => {
                let now = current.map_or_else(unknown, |c| quantity(at(c, "/value")));
                format!("{now}/{}", quantity(at(target, "/value")))
            }
        };
    }
    let resource = str_at(spec, &format!("/{key}/name"));
    match average_target {
        Some(average) => {
            let now = current.map_or_else(unknown, |c| quantity(at(c, "/averageValue")));
            format!("{resource}: {now}/{}", quantity(Some(average)))
        }
        None => {
            let now = current
                .and_then(|c| opt_int(c, "/averageUtilization"))
                .map_or_else(unknown, |u| format!("{u}%"));
            let goal = opt_int(target, "/averageUtilization")
                .map_or_else(|| "<auto>".to_string(), |u| format!("{u}%"));
            format!("{resource}: {now}/{goal}")
        }
    }
}

pub(super) const PDB_COLUMNS: &[Column] = &[
    NAME,
    Column::string(
        "Min Available",
        "The minimum number of pods that must be available.",
    ),
    Column::string(
        "Max Unavailable",
        "The maximum number of pods that may be unavailable.",
    ),
    Column::integer(
        "Allowed Disruptions",
        "Calculated number of pods that may be disrupted at this time.",
    ),
    AGE,
];

pub(super) fn pdb_cells(pdb: &Value, now: Timestamp) -> Vec<Value> {
    let bound = |pointer: &str| int_or_string(at(pdb, pointer)).unwrap_or_else(|| "N/A".into());
    vec![
        name(pdb).into(),
        bound("/spec/minAvailable").into(),
        bound("/spec/maxUnavailable").into(),
        int_at(pdb, "/status/disruptionsAllowed").into(),
        age(pdb, now).into(),
    ]
}

pub(super) const CONTROLLER_REVISION_COLUMNS: &[Column] = &[
    NAME,
    Column::string("Controller", "Controller of the object"),
    Column::string("Revision", "The revision this object represents."),
    AGE,
];

pub(super) fn controller_revision_cells(revision: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(revision).into(),
        controller_of(revision).into(),
        int_at(revision, "/revision").into(),
        age(revision, now).into(),
    ]
}

/// The controlling owner as `kind.group/name` in lower case (`statefulset.apps/web`),
/// `<none>` without one.
fn controller_of(object: &Value) -> String {
    let Some(owner) = arr_at(object, "/metadata/ownerReferences")
        .iter()
        .find(|o| opt_bool(o, "/controller") == Some(true))
    else {
        return "<none>".to_string();
    };
    let kind = str_at(owner, "/kind");
    // `apps/v1` has group `apps`; a bare `v1` is the core group.
    let group = str_at(owner, "/apiVersion")
        .split_once('/')
        .map_or("", |(group, _)| group);
    let group_kind = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    if group_kind.is_empty() {
        return str_at(owner, "/name").to_string();
    }
    format!("{}/{}", group_kind.to_lowercase(), str_at(owner, "/name"))
}
