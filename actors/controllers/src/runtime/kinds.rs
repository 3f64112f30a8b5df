//! The kinds the controllers work on, looked up once by name. Every controller module
//! imports them from here instead of spelling its own `by_group_resource` lookups.

use bus_schema::KindInfo;

fn served(group: &str, plural: &str) -> &'static KindInfo {
    bus_schema::kinds::by_group_resource(group, plural)
        .unwrap_or_else(|| panic!("{plural}.{group} is a served kind"))
}

/// core/v1 Pod.
pub fn pods() -> &'static KindInfo {
    served("", "pods")
}
/// core/v1 Node.
pub fn nodes() -> &'static KindInfo {
    served("", "nodes")
}
/// core/v1 PersistentVolumeClaim.
pub fn persistent_volume_claims() -> &'static KindInfo {
    served("", "persistentvolumeclaims")
}
/// core/v1 PersistentVolume.
pub fn persistent_volumes() -> &'static KindInfo {
    served("", "persistentvolumes")
}
/// storage.k8s.io/v1 StorageClass.
pub fn storage_classes() -> &'static KindInfo {
    served("storage.k8s.io", "storageclasses")
}
/// apps/v1 ReplicaSet.
pub fn replicasets() -> &'static KindInfo {
    served("apps", "replicasets")
}
/// apps/v1 Deployment.
pub fn deployments() -> &'static KindInfo {
    served("apps", "deployments")
}
/// apps/v1 StatefulSet.
pub fn statefulsets() -> &'static KindInfo {
    served("apps", "statefulsets")
}
/// apps/v1 DaemonSet.
pub fn daemonsets() -> &'static KindInfo {
    served("apps", "daemonsets")
}
/// apps/v1 ControllerRevision.
pub fn controller_revisions() -> &'static KindInfo {
    served("apps", "controllerrevisions")
}
/// batch/v1 Job.
pub fn jobs() -> &'static KindInfo {
    served("batch", "jobs")
}
/// batch/v1 CronJob.
pub fn cronjobs() -> &'static KindInfo {
    served("batch", "cronjobs")
}
