//! Versions served beside a kind's storage version, and the conversions between them.
//!
//! Every kind in [`KINDS`] is stored at exactly one group/version. A few kinds are also
//! served at an older version clients still speak (kubectl 1.32's `kubectl autoscale`
//! posts `autoscaling/v1` HorizontalPodAutoscalers). [`CONVERSIONS`] lists those extra
//! versions: each entry is the served [`KindInfo`] (same group, kind, plural and scope as
//! the stored one, another version) and two pure functions on JSON objects, into the
//! storage version and out of it. The store and the controllers only ever see the storage
//! version; the gateway converts request bodies on the way in and every object it answers
//! with (gets, lists, watch events, write results) on the way out.
//!
//! Adding a second version to another kind is one entry here plus its two functions (and
//! its schema in [`crate::json_schema`]).
//!
//! [`KINDS`]: crate::KINDS

mod hpa;

#[cfg(test)]
mod tests;

use serde_json::Value;

use crate::kinds::{self, KindInfo};
use crate::validation::FieldErrors;

pub use hpa::{
    BEHAVIOR_ANNOTATION, CONDITIONS_ANNOTATION, CURRENT_METRICS_ANNOTATION,
    DEFAULT_CPU_UTILIZATION, METRICS_ANNOTATION,
};

/// One version served beside the storage version of its kind.
#[derive(Debug)]
pub struct Conversion {
    /// The served version's description: group, kind, plural and scope as stored, its own
    /// `version`.
    pub served: KindInfo,
    /// Converts an object of the served version into the storage version (`apiVersion`
    /// included). Fails, with every problem at its field path in the served version, on
    /// input that does not decode (a wrong JSON type, a round-trip annotation that is not
    /// the JSON it must hold).
    pub to_storage: fn(&Value) -> Result<Value, FieldErrors>,
    /// Converts a stored object into the served version (`apiVersion` included). Total:
    /// anything the store holds has a representation.
    pub from_storage: fn(&Value) -> Value,
}

/// Conversions are static table entries: one is equal only to itself.
impl PartialEq for Conversion {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for Conversion {}

impl Conversion {
    /// The stored kind this version converts to and from.
    ///
    /// # Panics
    /// Never for the entries of [`CONVERSIONS`]: this module's tests check that each names
    /// a kind of [`crate::KINDS`].
    pub fn storage(&self) -> &'static KindInfo {
        kinds::by_group_kind(self.served.group, self.served.kind)
            .expect("a conversion's kind is in KINDS")
    }

    /// Converts what the gateway answers with for the storage version into the served
    /// version: an object of the kind, a `<Kind>List` (its items), or a `meta.k8s.io`
    /// Table (the objects its rows embed). Anything else (a Status, partial metadata) is
    /// returned unchanged.
    pub fn response_from_storage(&self, body: Value) -> Value {
        let storage = self.storage().api_version();
        let at_storage = body.get("apiVersion").and_then(Value::as_str) == Some(storage.as_str());
        let kind = body
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if at_storage && kind == self.served.kind {
            return (self.from_storage)(&body);
        }
        let list_kind = format!("{}List", self.served.kind);
        let mut body = body;
        if at_storage && kind == list_kind {
            body["apiVersion"] = Value::String(self.served.api_version());
            if let Some(items) = body.get_mut("items").and_then(Value::as_array_mut) {
                for item in items {
                    *item = (self.from_storage)(item);
                }
            }
            return body;
        }
        if kind == "Table" {
            if let Some(rows) = body.get_mut("rows").and_then(Value::as_array_mut) {
                for row in rows {
                    if let Some(obj) = row.get_mut("object") {
                        *obj = self.response_from_storage(obj.take());
                    }
                }
            }
            return body;
        }
        body
    }
}

/// Every version served beside a storage version.
pub static CONVERSIONS: &[Conversion] = &[Conversion {
    served: KindInfo {
        group: "autoscaling",
        version: "v1",
        kind: "HorizontalPodAutoscaler",
        plural: "horizontalpodautoscalers",
        singular: "horizontalpodautoscaler",
        short_names: &["hpa"],
        namespaced: true,
        categories: &["all"],
    },
    to_storage: hpa::v1_to_v2,
    from_storage: hpa::v2_to_v1,
}];

/// The conversion serving `plural` at `group`/`version`, if that version is not the
/// storage version but is served.
pub fn by_group_version_resource(
    group: &str,
    version: &str,
    plural: &str,
) -> Option<&'static Conversion> {
    CONVERSIONS.iter().find(|c| {
        c.served.group == group && c.served.version == version && c.served.plural == plural
    })
}

/// The served (non-storage) versions' kinds, for discovery and OpenAPI.
pub fn served_kinds() -> impl Iterator<Item = &'static KindInfo> {
    CONVERSIONS.iter().map(|c| &c.served)
}
