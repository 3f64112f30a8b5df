//! `bus-schema` is drover's contract: the API object types, the wire envelope every bus
//! message uses, the names of every NATS subject and JetStream bucket, and validation.
//!
//! - Built-in kinds are the `k8s-openapi` types (re-exported as [`k8s`]); drover's own
//!   kinds are in [`drover`] and share `ObjectMeta`. [`kinds`] lists every kind served.
//! - [`envelope`] is the only place that knows the wire encoding (MessagePack via
//!   `rmp_serde::to_vec_named`, plus NATS headers for `traceparent`, schema version and
//!   sender).
//! - [`subjects`] is the only place that spells a NATS subject or bucket name.
//! - [`metrics`] is the resource usage node agents publish (`kubectl top`, the HPA).
//! - [`podstream`] is the wire protocol of `kubectl logs` and `kubectl exec` between the
//!   gateway and a node agent.
//! - [`json_schema`] maps every kind to its JSON schema (`schemars`), the source of the
//!   gateway's OpenAPI documents.
//! - [`convert`] lists the versions served beside a kind's storage version and converts
//!   between them (autoscaling/v1 HorizontalPodAutoscalers).
//! - [`validation`] returns every problem of an object with its field path;
//!   [`selector`] parses label and field selectors.

pub mod convert;
pub mod defaults;
pub mod drover;
pub mod envelope;
pub mod json_schema;
pub mod kinds;
pub mod members;
pub mod metrics;
pub mod pod_index;
pub mod podstream;
pub mod quota;
pub mod selector;
pub mod subjects;
pub mod validation;

pub use k8s_openapi as k8s;
pub use kinds::{KINDS, KindInfo};
