//! Tables of configuration and policy kinds: ConfigMap, Secret, ServiceAccount and
//! ResourceQuota.

use jiff::Timestamp;
use serde_json::Value;

use super::fields::{age, len_at, name, obj_at, quantity, str_or};
use super::{AGE, Column, NAME};

pub(super) const CONFIG_MAP_COLUMNS: &[Column] = &[
    NAME,
    Column::string("Data", "The number of entries in data and binaryData."),
    AGE,
];

pub(super) fn config_map_cells(config_map: &Value, now: Timestamp) -> Vec<Value> {
    let entries = len_at(config_map, "/data") + len_at(config_map, "/binaryData");
    vec![
        name(config_map).into(),
        (entries as i64).into(),
        age(config_map, now).into(),
    ]
}

pub(super) const SECRET_COLUMNS: &[Column] = &[
    NAME,
    Column::string(
        "Type",
        "Used to facilitate programmatic handling of secret data.",
    ),
    Column::string("Data", "The number of entries in data."),
    AGE,
];

/// `type` when unset: the API server defaults it.
const DEFAULT_SECRET_TYPE: &str = "Opaque";

pub(super) fn secret_cells(secret: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(secret).into(),
        str_or(secret, "/type", DEFAULT_SECRET_TYPE).into(),
        (len_at(secret, "/data") as i64).into(),
        age(secret, now).into(),
    ]
}

pub(super) const SERVICE_ACCOUNT_COLUMNS: &[Column] = &[
    NAME,
    Column::string(
        "Secrets",
        "The number of secrets listed as usable by pods running as this service account.",
    ),
    AGE,
];

pub(super) fn service_account_cells(account: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(account).into(),
        (len_at(account, "/secrets") as i64).into(),
        age(account, now).into(),
    ]
}

pub(super) const RESOURCE_QUOTA_COLUMNS: &[Column] = &[
    NAME,
    Column::string(
        "Request",
        "Request represents a minimum amount of cpu/memory that a container may consume.",
    ),
    Column::string(
        "Limit",
        "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
    ),
    AGE,
];

/// `requests.cpu: 500m/2, pods: 3/10` and `limits.memory: 1Gi/4Gi`: used over hard for each
/// resource in `status.hard`, sorted by name, `limits.*` in their own cell.
pub(super) fn resource_quota_cells(quota: &Value, now: Timestamp) -> Vec<Value> {
    let used = obj_at(quota, "/status/used");
    let mut requests = Vec::new();
    let mut limits = Vec::new();
    let mut hard: Vec<(&String, &Value)> = obj_at(quota, "/status/hard")
        .into_iter()
        .flatten()
        .collect();
    hard.sort_by(|a, b| a.0.cmp(b.0));
    for (resource, hard) in hard {
        let entry = format!(
            "{resource}: {}/{}",
            quantity(used.and_then(|u| u.get(resource))),
            quantity(Some(hard))
        );
        if resource.starts_with("limits.") {
            limits.push(entry);
        } else {
            requests.push(entry);
        }
    }
    vec![
        name(quota).into(),
        requests.join(", ").into(),
        limits.join(", ").into(),
        age(quota, now).into(),
    ]
}
