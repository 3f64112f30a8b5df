//! The JSON schema of every kind in [`KINDS`]: the one place that maps a kind's table
//! entry to its Rust type, so anything generated from schemas (the gateway's OpenAPI
//! documents) covers exactly the kinds that are served.
//!
//! Built-in kinds use `k8s-openapi`'s `schemars` implementations, whose schema names are
//! already the apiserver's canonical definition names (`io.k8s.api.core.v1.Pod`); drover's
//! kinds derive theirs ([`crate::drover`]).
//!
//! [`KINDS`]: crate::KINDS

use k8s_openapi::api::{
    apps, autoscaling, batch, coordination, core, discovery, policy, scheduling, storage,
};
use schemars::{Schema, SchemaGenerator};

use crate::KindInfo;

/// Adds the schema of `kind`'s type (a kind of `KINDS` or a served version of
/// [`crate::convert::CONVERSIONS`]) (and of every type it refers to) to `generator`'s
/// definitions and returns a `$ref` schema pointing at it; `None` for a kind this table does
/// not know, which the tests rule out for every entry of `KINDS`.
pub fn subschema_for(kind: &KindInfo, generator: &mut SchemaGenerator) -> Option<Schema> {
    let schema = match (kind.group, kind.version, kind.kind) {
        ("", "v1", "Namespace") => generator.subschema_for::<core::v1::Namespace>(),
        ("", "v1", "Pod") => generator.subschema_for::<core::v1::Pod>(),
        ("", "v1", "Service") => generator.subschema_for::<core::v1::Service>(),
        ("", "v1", "Endpoints") => generator.subschema_for::<core::v1::Endpoints>(),
        ("", "v1", "ConfigMap") => generator.subschema_for::<core::v1::ConfigMap>(),
        ("", "v1", "Secret") => generator.subschema_for::<core::v1::Secret>(),
        ("", "v1", "Node") => generator.subschema_for::<core::v1::Node>(),
        ("", "v1", "Event") => generator.subschema_for::<core::v1::Event>(),
        ("", "v1", "PersistentVolume") => generator.subschema_for::<core::v1::PersistentVolume>(),
        ("", "v1", "PersistentVolumeClaim") => {
            generator.subschema_for::<core::v1::PersistentVolumeClaim>()
        }
        ("", "v1", "ServiceAccount") => generator.subschema_for::<core::v1::ServiceAccount>(),
        ("", "v1", "ResourceQuota") => generator.subschema_for::<core::v1::ResourceQuota>(),
        ("", "v1", "LimitRange") => generator.subschema_for::<core::v1::LimitRange>(),
        ("apps", "v1", "Deployment") => generator.subschema_for::<apps::v1::Deployment>(),
        ("apps", "v1", "ReplicaSet") => generator.subschema_for::<apps::v1::ReplicaSet>(),
        ("apps", "v1", "StatefulSet") => generator.subschema_for::<apps::v1::StatefulSet>(),
        ("apps", "v1", "DaemonSet") => generator.subschema_for::<apps::v1::DaemonSet>(),
        ("apps", "v1", "ControllerRevision") => {
            generator.subschema_for::<apps::v1::ControllerRevision>()
        }
        ("batch", "v1", "Job") => generator.subschema_for::<batch::v1::Job>(),
        ("batch", "v1", "CronJob") => generator.subschema_for::<batch::v1::CronJob>(),
        ("autoscaling", "v1", "HorizontalPodAutoscaler") => {
            generator.subschema_for::<autoscaling::v1::HorizontalPodAutoscaler>()
        }
        ("autoscaling", "v2", "HorizontalPodAutoscaler") => {
            generator.subschema_for::<autoscaling::v2::HorizontalPodAutoscaler>()
        }
        ("discovery.k8s.io", "v1", "EndpointSlice") => {
            generator.subschema_for::<discovery::v1::EndpointSlice>()
        }
        ("policy", "v1", "PodDisruptionBudget") => {
            generator.subschema_for::<policy::v1::PodDisruptionBudget>()
        }
        ("scheduling.k8s.io", "v1", "PriorityClass") => {
            generator.subschema_for::<scheduling::v1::PriorityClass>()
        }
        ("storage.k8s.io", "v1", "StorageClass") => {
            generator.subschema_for::<storage::v1::StorageClass>()
        }
        ("coordination.k8s.io", "v1", "Lease") => {
            generator.subschema_for::<coordination::v1::Lease>()
        }
        ("drover.io", "v1", "TrafficSplit") => {
            generator.subschema_for::<crate::drover::TrafficSplit>()
        }
        _ => return None,
    };
    Some(schema)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KINDS;

    fn generator() -> SchemaGenerator {
        schemars::generate::SchemaSettings::draft07().into_generator()
    }

    #[test]
    fn every_kind_has_a_schema_named_after_its_version_and_kind() {
        let mut generator = generator();
        for kind in KINDS.iter().chain(crate::convert::served_kinds()) {
            let schema = subschema_for(kind, &mut generator)
                .unwrap_or_else(|| panic!("no schema for {}", kind.kind));
            let reference = schema
                .get("$ref")
                .and_then(|r| r.as_str())
                .unwrap_or_default();
            let suffix = format!(".{}.{}", kind.version, kind.kind);
            assert!(reference.ends_with(&suffix), "{reference} for {kind:?}");
        }
    }

    #[test]
    fn drover_kinds_carry_their_doc_comments() {
        let mut generator = generator();
        let kind = crate::kinds::by_api_version_kind("drover.io/v1", "TrafficSplit").unwrap();
        subschema_for(kind, &mut generator).unwrap();
        let definitions = generator.definitions();
        let split = &definitions["io.drover.v1.TrafficSplit"];
        assert!(
            split["description"]
                .as_str()
                .unwrap()
                .contains("weighted split")
        );
        let spec = &definitions["io.drover.v1.TrafficSplitSpec"];
        assert!(
            spec["properties"]["backends"]["description"]
                .as_str()
                .unwrap()
                .contains("weights")
        );
        assert!(definitions.contains_key("io.drover.v1.TrafficSplitBackend"));
        assert!(definitions.contains_key("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"));
    }
}
