//! The schema set both documents share: every kind's schema, its list, and the meta types
//! operations refer to, keyed by the apiserver's canonical definition names.
//!
//! Built once in swagger 2.0 form (`$ref: "#/definitions/<name>"`, a `$ref` may carry a
//! `description` beside it, as kube-openapi writes v2); [`to_v3`] rewrites a schema for
//! OpenAPI 3.0, where siblings of `$ref` are ignored, so a described reference becomes
//! `allOf: [{$ref}]` with the siblings kept (what kube-openapi writes and what kubectl
//! explain's templates follow).

use std::collections::{BTreeMap, BTreeSet};

use bus_schema::k8s::api::autoscaling;
use bus_schema::k8s::apimachinery::pkg::apis::meta::v1 as meta;
use bus_schema::{KINDS, KindInfo};
use schemars::SchemaGenerator;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

/// Prefix of a reference in swagger 2.0 (the form the set is built in).
pub(crate) const V2_REF_PREFIX: &str = "#/definitions/";
/// Prefix of a reference in OpenAPI 3.0.
pub(crate) const V3_REF_PREFIX: &str = "#/components/schemas/";

/// The extension kubectl uses to find the schema and operations of a kind.
pub(crate) const GVK_EXTENSION: &str = "x-kubernetes-group-version-kind";

/// Definition names of the meta types that operations refer to.
pub(crate) const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
/// Body of a DELETE.
pub(crate) const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
/// Body of a PATCH (any patch type).
pub(crate) const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
/// Body and result of the scale subresource.
pub(crate) const SCALE: &str = "io.k8s.api.autoscaling.v1.Scale";

/// Definition names of one served kind.
#[derive(Clone, Debug)]
pub(crate) struct KindSchemas {
    /// The kind's table entry.
    pub(crate) kind: &'static KindInfo,
    /// Definition of one object, e.g. `io.k8s.api.core.v1.Pod`.
    pub(crate) object: String,
    /// Definition of its list, e.g. `io.k8s.api.core.v1.PodList`.
    pub(crate) list: String,
}

/// Every definition (swagger 2.0 form) and the names of each served kind's definitions.
#[derive(Clone, Debug)]
pub(crate) struct SchemaSet {
    /// Definitions by canonical name.
    pub(crate) definitions: BTreeMap<String, Value>,
    /// One entry per kind of `KINDS` that has a schema, in `KINDS` order.
    pub(crate) kinds: Vec<KindSchemas>,
}

impl SchemaSet {
    /// Generates the set from the types. Kinds without a schema are left out (and logged):
    /// the bus-schema tests make sure there are none.
    pub(crate) fn build() -> SchemaSet {
        let mut generator = SchemaSettings::draft07()
            .with(|settings| {
                settings.definitions_path = "/definitions".into();
                settings.meta_schema = None;
                settings.transforms = Vec::new();
            })
            .into_generator();
        generator.subschema_for::<meta::ListMeta>();
        generator.subschema_for::<meta::Status>();
        generator.subschema_for::<meta::DeleteOptions>();
        generator.subschema_for::<meta::Patch>();
        generator.subschema_for::<autoscaling::v1::Scale>();

        let mut kinds = Vec::new();
        // The storage versions, then the versions served through a conversion.
        for kind in KINDS.iter().chain(bus_schema::convert::served_kinds()) {
            let Some(name) = register(kind, &mut generator) else {
                tracing::warn!(
                    message = "kind has no json schema; left out of openapi",
                    kind = kind.kind,
                    group = kind.group
                );
                continue;
            };
            kinds.push(KindSchemas {
                kind,
                list: format!("{name}List"),
                object: name,
            });
        }

        let mut definitions: BTreeMap<String, Value> =
            generator.take_definitions(false).into_iter().collect();
        for k in &kinds {
            optional_metadata(&mut definitions, &k.object);
            let list = list_schema(k);
            definitions.insert(k.list.clone(), list);
            set_gvk(
                &mut definitions,
                &k.object,
                k.kind.group,
                k.kind.version,
                k.kind.kind,
            );
            let list_kind = format!("{}List", k.kind.kind);
            set_gvk(
                &mut definitions,
                &k.list,
                k.kind.group,
                k.kind.version,
                &list_kind,
            );
        }
        set_gvk(&mut definitions, SCALE, "autoscaling", "v1", "Scale");
        set_gvk(&mut definitions, STATUS, "", "v1", "Status");
        SchemaSet { definitions, kinds }
    }

    /// The definitions `roots` refer to, directly or through other definitions, with the
    /// roots themselves: what one group version's document must carry.
    pub(crate) fn closure<'a>(&self, roots: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut pending: Vec<String> = roots.into_iter().map(str::to_string).collect();
        while let Some(name) = pending.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            if let Some(schema) = self.definitions.get(&name) {
                collect_refs(schema, &mut |target| {
                    if !seen.contains(target) {
                        pending.push(target.to_string());
                    }
                });
            }
        }
        seen
    }
}

/// Registers `kind`'s type and returns its definition name.
fn register(kind: &KindInfo, generator: &mut SchemaGenerator) -> Option<String> {
    let reference = bus_schema::json_schema::subschema_for(kind, generator)?;
    let name = reference
        .get("$ref")?
        .as_str()?
        .strip_prefix(V2_REF_PREFIX)?;
    Some(name.to_string())
}

/// The `<Kind>List` schema; k8s-openapi has one generic `List<T>` without a schema.
fn list_schema(k: &KindSchemas) -> Value {
    json!({
        "description": format!("{}List is a list of {} objects.", k.kind.kind, k.kind.kind),
        "type": "object",
        "properties": {
            "apiVersion": {
                "description": "APIVersion defines the versioned schema of this representation of an object.",
                "type": "string",
            },
            "items": {
                "description": format!("List of {}.", k.kind.plural),
                "type": "array",
                "items": {"$ref": format!("{V2_REF_PREFIX}{}", k.object)},
            },
            "kind": {
                "description": "Kind is a string value representing the REST resource this object represents.",
                "type": "string",
            },
            "metadata": {
                "$ref": format!("{V2_REF_PREFIX}io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"),
                "description": "Standard list metadata.",
            },
        },
        "required": ["items"],
    })
}

/// k8s-openapi marks `metadata` required because its Rust field is not an `Option`; the
/// apiserver's schemas do not (`kubectl explain` would print it `-required-`).
fn optional_metadata(definitions: &mut BTreeMap<String, Value>, name: &str) {
    let Some(Value::Object(schema)) = definitions.get_mut(name) else {
        return;
    };
    if let Some(Value::Array(required)) = schema.get_mut("required") {
        required.retain(|field| field != "metadata");
        if required.is_empty() {
            schema.remove("required");
        }
    }
}

/// Marks definition `name` as the schema of one group/version/kind.
fn set_gvk(
    definitions: &mut BTreeMap<String, Value>,
    name: &str,
    group: &str,
    version: &str,
    kind: &str,
) {
    if let Some(Value::Object(schema)) = definitions.get_mut(name) {
        schema.insert(
            GVK_EXTENSION.to_string(),
            json!([gvk(group, version, kind)]),
        );
    }
}

/// The value of [`GVK_EXTENSION`] on an operation (a list of these on a schema).
pub(crate) fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "kind": kind, "version": version})
}

/// Calls `found` with the definition name of every `$ref` inside `schema`.
pub(crate) fn collect_refs(schema: &Value, found: &mut impl FnMut(&str)) {
    match schema {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(reference)) => {
                        if let Some(name) = reference.strip_prefix(V2_REF_PREFIX) {
                            found(name);
                        }
                    }
                    _ => collect_refs(value, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, found)),
        _ => {}
    }
}

/// `schema` (swagger 2.0 form) rewritten for OpenAPI 3.0: references point into
/// `#/components/schemas/`, and a reference with siblings becomes `allOf: [{$ref}]`.
pub(crate) fn to_v3(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            let mut reference = None;
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(r)) => {
                        let name = r.strip_prefix(V2_REF_PREFIX).unwrap_or(r);
                        reference = Some(format!("{V3_REF_PREFIX}{name}"));
                    }
                    _ => {
                        out.insert(key.clone(), to_v3(value));
                    }
                }
            }
            match reference {
                Some(r) if out.is_empty() => {
                    out.insert("$ref".to_string(), Value::String(r));
                }
                Some(r) => {
                    out.insert("allOf".to_string(), json!([{"$ref": r}]));
                }
                None => {}
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(to_v3).collect()),
        other => other.clone(),
    }
}
