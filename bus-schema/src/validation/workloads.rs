//! Workload controller rules: `Deployment`, `ReplicaSet`, `StatefulSet`, `DaemonSet`
//! (apps/v1) and `Job`, `CronJob` (batch/v1). Each checks its own fields, its selector, and
//! its pod template with the pod rules, and that the selector matches the template labels.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use serde_json::Value;

use super::meta::{
    MetaFacts, validate_annotations, validate_label_selector, validate_labels, validate_nonnegative,
};
use super::names::{is_valid_percent, name_is_dns1035_label};
use super::pod::{PodContext, validate_pod_template};
use super::value::{Ctx, IntOrString, Obj, get};
use super::{FieldError, FieldPath};
use crate::selector::LabelSelector;

const DEPLOYMENT_STRATEGIES: &[&str] = &["Recreate", "RollingUpdate"];
const DAEMON_SET_STRATEGIES: &[&str] = &["OnDelete", "RollingUpdate"];
const COMPLETION_MODES: &[&str] = &["NonIndexed", "Indexed"];
const CONCURRENCY_POLICIES: &[&str] = &["Allow", "Forbid", "Replace"];
/// Kubernetes' default `maxSurge` / `maxUnavailable`.
const DEFAULT_ROLLING_PERCENT: IntOrString<'static> = IntOrString::Str("25%");
/// CronJob names leave room for the 11-character suffix of the jobs they create.
const CRON_JOB_NAME_MAX_LEN: usize = 52;

/// Reads an int32 field and reports it when negative.
fn nonnegative_field(
    cx: &mut Ctx,
    spec: Option<&Obj>,
    field: &str,
    path: &FieldPath,
) -> Option<i64> {
    let field_path = path.child(field);
    let value = cx.int32_at(get(spec, field), &field_path)?;
    validate_nonnegative(cx, value, &field_path);
    Some(value)
}

/// Checks `selector` and `template` of a controller spec and that they agree.
fn validate_selector_and_template(
    cx: &mut Ctx,
    spec: Option<&Obj>,
    path: &FieldPath,
    selector_required: bool,
    context: PodContext,
) {
    let selector_path = path.child("selector");
    let selector = cx.obj_at(get(spec, "selector"), &selector_path);
    let mut usable_selector = None;
    match selector {
        None if selector_required => cx.push(FieldError::required(&selector_path)),
        None => {}
        Some(selector) => {
            let has_requirements = validate_label_selector(cx, selector, &selector_path);
            if !has_requirements {
                let kind = match context {
                    PodContext::Controller { kind } => kind.to_lowercase(),
                    _ => "job".to_string(),
                };
                cx.push(FieldError::invalid(
                    &selector_path,
                    Value::Object(selector.clone()).to_string(),
                    format!("empty selector is invalid for {kind}"),
                ));
            } else {
                // Malformed selectors were reported just above; only a sound one can match.
                usable_selector = serde_json::from_value::<metav1::LabelSelector>(Value::Object(
                    selector.clone(),
                ))
                .ok()
                .and_then(|s| LabelSelector::from_k8s(&s).ok());
            }
        }
    }

    let template_path = path.child("template");
    let template = cx.obj_at(get(spec, "template"), &template_path);
    let labels = validate_pod_template(cx, template, &template_path, context);
    if let Some(selector) = usable_selector
        && !selector.matches(&labels)
    {
        cx.push(FieldError::invalid(
            template_path.child("metadata").child("labels"),
            render_labels(&labels),
            "`selector` does not match template `labels`",
        ));
    }
}

fn render_labels(labels: &BTreeMap<String, String>) -> String {
    serde_json::to_string(labels).unwrap_or_default()
}

/// Spec rule for `Deployment` objects.
pub(super) fn validate_deployment(cx: &mut Ctx, spec: Option<&Obj>, path: &FieldPath) {
    nonnegative_field(cx, spec, "replicas", path);
    validate_selector_and_template(
        cx,
        spec,
        path,
        true,
        PodContext::Controller { kind: "Deployment" },
    );
    validate_deployment_strategy(cx, get(spec, "strategy"), &path.child("strategy"));
    let min_ready = nonnegative_field(cx, spec, "minReadySeconds", path).unwrap_or(0);
    nonnegative_field(cx, spec, "revisionHistoryLimit", path);
    if let Some(deadline) = nonnegative_field(cx, spec, "progressDeadlineSeconds", path)
        && deadline <= min_ready
    {
        cx.push(FieldError::invalid(
            path.child("progressDeadlineSeconds"),
            deadline.to_string(),
            "must be greater than minReadySeconds",
        ));
    }
}

fn validate_deployment_strategy(cx: &mut Ctx, strategy: Option<&Value>, path: &FieldPath) {
    let Some(strategy) = cx.obj_at(strategy, path) else {
        return;
    };
    let type_path = path.child("type");
    let strategy_type = cx.str_at(strategy.get("type"), &type_path).unwrap_or("");
    let rolling_path = path.child("rollingUpdate");
    let rolling = cx.obj_at(strategy.get("rollingUpdate"), &rolling_path);
    match strategy_type {
        "Recreate" => {
            if rolling.is_some() {
                cx.push(FieldError::forbidden(
                    &rolling_path,
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        // Absent means Kubernetes' default, RollingUpdate.
        "" | "RollingUpdate" => {
            if let Some(rolling) = rolling {
                validate_rolling_update(cx, rolling, &rolling_path, true);
            }
        }
        other => cx.push(FieldError::not_supported(
            &type_path,
            other,
            DEPLOYMENT_STRATEGIES,
        )),
    }
}

/// `maxUnavailable` / `maxSurge`: non-negative integers or percentages, not both zero.
fn validate_rolling_update(cx: &mut Ctx, rolling: &Obj, path: &FieldPath, surge_allowed: bool) {
    let unavailable_path = path.child("maxUnavailable");
    let surge_path = path.child("maxSurge");
    let max_unavailable = cx.int_or_string_at(rolling.get("maxUnavailable"), &unavailable_path);
    let max_surge = cx.int_or_string_at(rolling.get("maxSurge"), &surge_path);
    if let Some(value) = max_unavailable {
        validate_int_or_percent(cx, value, &unavailable_path);
    }
    if let Some(value) = max_surge {
        validate_int_or_percent(cx, value, &surge_path);
    }
    // Deployments default both to 25%; daemon sets default maxSurge to 0.
    let default_surge = if surge_allowed {
        DEFAULT_ROLLING_PERCENT
    } else {
        IntOrString::Int(0)
    };
    let unavailable = max_unavailable.unwrap_or(DEFAULT_ROLLING_PERCENT);
    if int_or_percent_value(unavailable) == Some(0)
        && int_or_percent_value(max_surge.unwrap_or(default_surge)) == Some(0)
    {
        cx.push(FieldError::invalid(
            &unavailable_path,
            unavailable.render(),
            "may not be 0 when `maxSurge` is 0",
        ));
    }
    if let IntOrString::Str(s) = unavailable
        && int_or_percent_value(unavailable).is_some_and(|percent| percent > 100)
    {
        cx.push(FieldError::invalid(
            &unavailable_path,
            s,
            "must not be greater than 100%",
        ));
    }
}

fn validate_int_or_percent(cx: &mut Ctx, value: IntOrString<'_>, path: &FieldPath) {
    match value {
        IntOrString::Int(i) => validate_nonnegative(cx, i, path),
        IntOrString::Str(s) => {
            for msg in is_valid_percent(s) {
                cx.push(FieldError::invalid(path, s, msg));
            }
        }
    }
}

/// The number an int-or-percent stands for (`5` or `5%` both give 5); `None` if malformed.
fn int_or_percent_value(value: IntOrString<'_>) -> Option<i64> {
    match value {
        IntOrString::Int(i) => Some(i),
        IntOrString::Str(s) => s.strip_suffix('%')?.parse().ok(),
    }
}

/// Spec rule for `ReplicaSet` objects.
pub(super) fn validate_replica_set(cx: &mut Ctx, spec: Option<&Obj>, path: &FieldPath) {
    nonnegative_field(cx, spec, "replicas", path);
    nonnegative_field(cx, spec, "minReadySeconds", path);
    validate_selector_and_template(
        cx,
        spec,
        path,
        true,
        PodContext::Controller { kind: "ReplicaSet" },
    );
}

/// Spec rule for `StatefulSet` objects.
pub(super) fn validate_stateful_set(cx: &mut Ctx, spec: Option<&Obj>, path: &FieldPath) {
    let policy_path = path.child("podManagementPolicy");
    if let Some(policy) = cx.str_at(get(spec, "podManagementPolicy"), &policy_path)
        && !matches!(policy, "" | "OrderedReady" | "Parallel")
    {
        cx.push(FieldError::invalid(
            &policy_path,
            policy,
            "must be 'OrderedReady' or 'Parallel'",
        ));
    }

    let strategy_path = path.child("updateStrategy");
    if let Some(strategy) = cx.obj_at(get(spec, "updateStrategy"), &strategy_path) {
        let type_path = strategy_path.child("type");
        let strategy_type = cx.str_at(strategy.get("type"), &type_path).unwrap_or("");
        let rolling_path = strategy_path.child("rollingUpdate");
        let rolling = cx.obj_at(strategy.get("rollingUpdate"), &rolling_path);
        match (strategy_type, rolling) {
            ("OnDelete", Some(rolling)) => cx.push(FieldError::invalid(
                &rolling_path,
                Value::Object(rolling.clone()).to_string(),
                "only allowed for updateStrategy 'RollingUpdate'",
            )),
            ("" | "RollingUpdate", Some(rolling)) => {
                nonnegative_field(cx, Some(rolling), "partition", &rolling_path);
            }
            ("" | "RollingUpdate" | "OnDelete", _) => {}
            (other, _) => cx.push(FieldError::invalid(
                &type_path,
                other,
                "must be 'RollingUpdate' or 'OnDelete'",
            )),
        }
    }

    nonnegative_field(cx, spec, "replicas", path);
    nonnegative_field(cx, spec, "minReadySeconds", path);
    let service_name_path = path.child("serviceName");
    if let Some(service_name) = cx.str_at(get(spec, "serviceName"), &service_name_path)
        && !service_name.is_empty()
    {
        for msg in name_is_dns1035_label(service_name, false) {
            cx.push(FieldError::invalid(&service_name_path, service_name, msg));
        }
    }
    // The pods get one PVC volume per claim template (named after it), so mounts of a
    // claim template are valid in the template, as in Kubernetes.
    let with_claims = spec.map(with_claim_volumes);
    validate_selector_and_template(
        cx,
        with_claims.as_ref(),
        path,
        true,
        PodContext::Controller {
            kind: "StatefulSet",
        },
    );
}

/// A StatefulSet spec whose template lists its claim templates as volumes.
fn with_claim_volumes(spec: &Obj) -> Obj {
    let mut spec = spec.clone();
    let names: Vec<String> = spec
        .get("volumeClaimTemplates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.pointer("/metadata/name")?.as_str().map(str::to_string))
        .collect();
    if names.is_empty() {
        return spec;
    }
    if let Some(pod) = spec
        .get_mut("template")
        .and_then(|t| t.get_mut("spec"))
        .and_then(Value::as_object_mut)
    {
        let volumes = pod
            .entry("volumes")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Some(volumes) = volumes.as_array_mut() {
            for name in names {
                volumes.retain(|v| v.get("name").and_then(Value::as_str) != Some(name.as_str()));
                volumes.push(serde_json::json!({
                    "name": name,
                    "persistentVolumeClaim": {"claimName": format!("{name}-claim")},
                }));
            }
        }
    }
    spec
}

/// Spec rule for `DaemonSet` objects.
pub(super) fn validate_daemon_set(cx: &mut Ctx, spec: Option<&Obj>, path: &FieldPath) {
    validate_selector_and_template(
        cx,
        spec,
        path,
        true,
        PodContext::Controller { kind: "DaemonSet" },
    );
    nonnegative_field(cx, spec, "minReadySeconds", path);
    nonnegative_field(cx, spec, "revisionHistoryLimit", path);
    let strategy_path = path.child("updateStrategy");
    let Some(strategy) = cx.obj_at(get(spec, "updateStrategy"), &strategy_path) else {
        return;
    };
    let type_path = strategy_path.child("type");
    let strategy_type = cx.str_at(strategy.get("type"), &type_path).unwrap_or("");
    let rolling_path = strategy_path.child("rollingUpdate");
    let rolling = cx.obj_at(strategy.get("rollingUpdate"), &rolling_path);
    match strategy_type {
        "" | "RollingUpdate" => {
            if let Some(rolling) = rolling {
                validate_rolling_update(cx, rolling, &rolling_path, false);
            }
        }
        "OnDelete" => {}
        other => cx.push(FieldError::not_supported(
            &type_path,
            other,
            DAEMON_SET_STRATEGIES,
        )),
    }
}

/// Spec rule for `Job` objects.
pub(super) fn validate_job(cx: &mut Ctx, spec: Option<&Obj>, path: &FieldPath) {
    for field in [
        "parallelism",
        "completions",
        "backoffLimit",
        "ttlSecondsAfterFinished",
    ] {
        nonnegative_field(cx, spec, field, path);
    }
    let deadline_path = path.child("activeDeadlineSeconds");
    if let Some(deadline) = cx.int_at(get(spec, "activeDeadlineSeconds"), &deadline_path) {
        validate_nonnegative(cx, deadline, &deadline_path);
    }
    let mode_path = path.child("completionMode");
    if let Some(mode) = cx.str_at(get(spec, "completionMode"), &mode_path) {
        if !COMPLETION_MODES.contains(&mode) {
            cx.push(FieldError::not_supported(
                &mode_path,
                mode,
                COMPLETION_MODES,
            ));
        } else if mode == "Indexed" && get(spec, "completions").is_none_or(Value::is_null) {
            cx.push(
                FieldError::required(path.child("completions"))
                    .with_detail("when completion mode is Indexed"),
            );
        }
    }
    // The store generates a job's selector when it has none.
    validate_selector_and_template(cx, spec, path, false, PodContext::Job);
}

/// `CronJob` names are shorter than other names.
pub(super) fn validate_cron_job_name(cx: &mut Ctx, meta: &MetaFacts) {
    if let Some(name) = &meta.name
        && name.len() > CRON_JOB_NAME_MAX_LEN
    {
        cx.push(FieldError::invalid(
            "metadata.name",
            name.as_str(),
            super::names::max_len_error(CRON_JOB_NAME_MAX_LEN),
        ));
    }
}

/// Spec rule for `CronJob` objects. The schedule is only required, not parsed: the cron
/// controller owns its syntax.
pub(super) fn validate_cron_job(cx: &mut Ctx, spec: Option<&Obj>, path: &FieldPath) {
    let schedule_path = path.child("schedule");
    if let Some(schedule) = cx.required_str_at(get(spec, "schedule"), &schedule_path)
        && schedule.trim().is_empty()
    {
        cx.push(FieldError::required(&schedule_path));
    }
    let deadline_path = path.child("startingDeadlineSeconds");
    if let Some(deadline) = cx.int_at(get(spec, "startingDeadlineSeconds"), &deadline_path) {
        validate_nonnegative(cx, deadline, &deadline_path);
    }
    let policy_path = path.child("concurrencyPolicy");
    if let Some(policy) = cx.str_at(get(spec, "concurrencyPolicy"), &policy_path)
        && !policy.is_empty()
        && !CONCURRENCY_POLICIES.contains(&policy)
    {
        cx.push(FieldError::not_supported(
            &policy_path,
            policy,
            CONCURRENCY_POLICIES,
        ));
    }
    cx.bool_at(get(spec, "suspend"), &path.child("suspend"));
    nonnegative_field(cx, spec, "successfulJobsHistoryLimit", path);
    nonnegative_field(cx, spec, "failedJobsHistoryLimit", path);

    let template_path = path.child("jobTemplate");
    let template = cx.obj_at(get(spec, "jobTemplate"), &template_path);
    let meta_path = template_path.child("metadata");
    let meta = cx.obj_at(get(template, "metadata"), &meta_path);
    validate_labels(cx, get(meta, "labels"), &meta_path.child("labels"));
    validate_annotations(
        cx,
        get(meta, "annotations"),
        &meta_path.child("annotations"),
    );
    let job_spec_path = template_path.child("spec");
    let job_spec = cx.obj_at(get(template, "spec"), &job_spec_path);
    validate_job(cx, job_spec, &job_spec_path);
}
