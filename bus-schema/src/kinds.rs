//! The kinds drover stores and serves, with the facts every layer needs about them:
//! group/version, plural, scope, short names, and the JetStream KV bucket that holds them.
//!
//! Built-in kinds are the `k8s-openapi` types; drover's own kinds live in [`crate::drover`].
//! The gateway's discovery documents and the store's bucket names are both derived from
//! this one table, so they cannot drift apart.

/// Static description of one API kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KindInfo {
    /// API group; empty for the core group.
    pub group: &'static str,
    /// API version inside the group, e.g. `v1`.
    pub version: &'static str,
    /// `kind` as it appears in objects, e.g. `Pod`.
    pub kind: &'static str,
    /// Plural resource name used in URLs, e.g. `pods`.
    pub plural: &'static str,
    /// Lower-case singular name, e.g. `pod`.
    pub singular: &'static str,
    /// `kubectl` short names, e.g. `po`.
    pub short_names: &'static [&'static str],
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Discovery categories, e.g. `all`.
    pub categories: &'static [&'static str],
}

impl KindInfo {
    /// `group/version`, or just `version` for the core group: the `apiVersion` field.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural.group` (or just `plural` for core), the name used in RBAC and errors.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Name of the JetStream KV bucket holding this kind: `drover-<plural>[-<group>]`
    /// with dots in the group replaced, since bucket names allow only `[A-Za-z0-9_-]`.
    pub fn bucket(&self) -> String {
        crate::subjects::kv_bucket(self)
    }
}

macro_rules! kind {
    ($group:expr, $version:expr, $kind:expr, $plural:expr, $singular:expr, [$($short:expr),*], $ns:expr, [$($cat:expr),*]) => {
        KindInfo {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            short_names: &[$($short),*],
            namespaced: $ns,
            categories: &[$($cat),*],
        }
    };
}

/// Every kind drover serves, in discovery order.
pub static KINDS: &[KindInfo] = &[
    kind!(
        "",
        "v1",
        "Namespace",
        "namespaces",
        "namespace",
        ["ns"],
        false,
        []
    ),
    kind!("", "v1", "Pod", "pods", "pod", ["po"], true, ["all"]),
    kind!(
        "",
        "v1",
        "Service",
        "services",
        "service",
        ["svc"],
        true,
        ["all"]
    ),
    kind!(
        "",
        "v1",
        "Endpoints",
        "endpoints",
        "endpoints",
        ["ep"],
        true,
        []
    ),
    kind!(
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        "configmap",
        ["cm"],
        true,
        []
    ),
    kind!("", "v1", "Secret", "secrets", "secret", [], true, []),
    kind!("", "v1", "Node", "nodes", "node", ["no"], false, []),
    kind!("", "v1", "Event", "events", "event", ["ev"], true, []),
    kind!(
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        "persistentvolume",
        ["pv"],
        false,
        []
    ),
    kind!(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        ["pvc"],
        true,
        []
    ),
    kind!(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        ["sa"],
        true,
        []
    ),
    kind!(
        "",
        "v1",
        "ResourceQuota",
        "resourcequotas",
        "resourcequota",
        ["quota"],
        true,
        []
    ),
    kind!(
        "",
        "v1",
        "LimitRange",
        "limitranges",
        "limitrange",
        ["limits"],
        true,
        []
    ),
    kind!(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        "deployment",
        ["deploy"],
        true,
        ["all"]
    ),
    kind!(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        "replicaset",
        ["rs"],
        true,
        ["all"]
    ),
    kind!(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        "statefulset",
        ["sts"],
        true,
        ["all"]
    ),
    kind!(
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        "daemonset",
        ["ds"],
        true,
        ["all"]
    ),
    kind!(
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        "controllerrevision",
        [],
        true,
        []
    ),
    kind!("batch", "v1", "Job", "jobs", "job", [], true, ["all"]),
    kind!(
        "batch",
        "v1",
        "CronJob",
        "cronjobs",
        "cronjob",
        ["cj"],
        true,
        ["all"]
    ),
    kind!(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        ["hpa"],
        true,
        ["all"]
    ),
    kind!(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        "endpointslice",
        [],
        true,
        []
    ),
    kind!(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        ["pdb"],
        true,
        []
    ),
    kind!(
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        "priorityclasses",
        "priorityclass",
        ["pc"],
        false,
        []
    ),
    kind!(
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "storageclasses",
        "storageclass",
        ["sc"],
        false,
        []
    ),
    kind!(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        "lease",
        [],
        true,
        []
    ),
    kind!(
        "drover.io",
        "v1",
        "TrafficSplit",
        "trafficsplits",
        "trafficsplit",
        ["ts"],
        true,
        []
    ),
];

/// Looks a kind up by group and kind name (`("apps", "Deployment")`).
pub fn by_group_kind(group: &str, kind: &str) -> Option<&'static KindInfo> {
    KINDS.iter().find(|k| k.group == group && k.kind == kind)
}

/// Looks a kind up by group and plural resource name (`("apps", "deployments")`).
pub fn by_group_resource(group: &str, plural: &str) -> Option<&'static KindInfo> {
    KINDS
        .iter()
        .find(|k| k.group == group && k.plural == plural)
}

/// Looks a kind up from an object's `apiVersion` and `kind` fields.
pub fn by_api_version_kind(api_version: &str, kind: &str) -> Option<&'static KindInfo> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    KINDS
        .iter()
        .find(|k| k.group == group && k.version == version && k.kind == kind)
}

/// The [`KindInfo`] of a typed resource (a `k8s-openapi` type or one of drover's kinds).
///
/// # Panics
/// Never for the kinds in [`KINDS`]; a type missing from the table is a programming error
/// caught by this crate's tests, not by input.
pub fn of<K: k8s_openapi::Resource>() -> &'static KindInfo {
    by_group_kind(K::GROUP, K::KIND).unwrap_or_else(|| {
        panic!(
            "kind {}/{} is not in bus_schema::kinds::KINDS",
            K::GROUP,
            K::KIND
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::{apps::v1 as apps, core::v1 as core};

    #[test]
    fn typed_kinds_agree_with_k8s_openapi() {
        fn check<K: k8s_openapi::Resource>() {
            let info = of::<K>();
            assert_eq!(info.api_version(), K::API_VERSION);
            assert_eq!(info.plural, K::URL_PATH_SEGMENT);
        }
        check::<core::Pod>();
        check::<core::Node>();
        check::<core::Namespace>();
        check::<apps::Deployment>();
        check::<k8s_openapi::api::batch::v1::CronJob>();
        check::<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler>();
        check::<k8s_openapi::api::discovery::v1::EndpointSlice>();
        check::<k8s_openapi::api::policy::v1::PodDisruptionBudget>();
        check::<crate::drover::TrafficSplit>();
    }

    #[test]
    fn bucket_names_are_unique_and_valid() {
        let mut seen = std::collections::HashSet::new();
        for k in KINDS {
            let b = k.bucket();
            assert!(
                b.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                "{b}"
            );
            assert!(seen.insert(b.clone()), "duplicate bucket {b}");
        }
    }

    #[test]
    fn lookups() {
        assert_eq!(
            by_api_version_kind("apps/v1", "Deployment").unwrap().plural,
            "deployments"
        );
        assert_eq!(by_api_version_kind("v1", "Pod").unwrap().plural, "pods");
        assert!(by_api_version_kind("v2", "Pod").is_none());
        assert_eq!(by_group_resource("", "services").unwrap().kind, "Service");
    }
}
