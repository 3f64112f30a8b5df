use serde_json::Value;

use super::schemas::{GVK_EXTENSION, V2_REF_PREFIX, V3_REF_PREFIX, collect_refs, to_v3};
use super::*;
use bus_schema::KINDS;

fn parse(document: &Document) -> Value {
    serde_json::from_slice(&document.body).unwrap()
}

fn v3(group_version: &str) -> Value {
    parse(&documents().v3[group_version])
}

fn gvk_of(kind: &bus_schema::KindInfo) -> Value {
    json!({"group": kind.group, "kind": kind.kind, "version": kind.version})
}

/// Every `$ref` string anywhere in `value`, whatever its prefix.
fn all_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => all_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| all_refs(v, out)),
        _ => {}
    }
}

#[test]
fn every_kind_has_a_schema_with_its_gvk_in_its_group_version_document() {
    let set = schemas::SchemaSet::build();
    let served: Vec<&bus_schema::KindInfo> = KINDS
        .iter()
        .chain(bus_schema::convert::served_kinds())
        .collect();
    assert_eq!(set.kinds.len(), served.len(), "a kind lacks a schema");
    for kind in served {
        let doc = v3(&group_version_key(kind));
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let with_gvk: Vec<&String> = schemas
            .iter()
            .filter(|(_, s)| {
                s[GVK_EXTENSION]
                    .as_array()
                    .is_some_and(|l| l.contains(&gvk_of(kind)))
            })
            .map(|(name, _)| name)
            .collect();
        assert_eq!(with_gvk.len(), 1, "{kind:?}: {with_gvk:?}");
        assert!(
            with_gvk[0].ends_with(&format!(".{}.{}", kind.version, kind.kind)),
            "{}",
            with_gvk[0]
        );
        let v2 = parse(&documents().v2);
        assert!(v2["definitions"][with_gvk[0].as_str()].is_object());
    }
    let core = v3("api/v1");
    let pod = &core["components"]["schemas"]["io.k8s.api.core.v1.Pod"];
    assert!(pod["description"].as_str().unwrap().contains("containers"));
    assert!(core["components"]["schemas"]["io.k8s.api.core.v1.PodList"][GVK_EXTENSION].is_array());
}

#[test]
fn every_reference_resolves_in_its_own_document() {
    for (group_version, document) in &documents().v3 {
        let doc = parse(document);
        let mut refs = Vec::new();
        all_refs(&doc, &mut refs);
        assert!(!refs.is_empty());
        for r in refs {
            let name = r
                .strip_prefix(V3_REF_PREFIX)
                .unwrap_or_else(|| panic!("{r}"));
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "{group_version}: {r} does not resolve"
            );
        }
    }
    let v2 = parse(&documents().v2);
    let mut refs = Vec::new();
    all_refs(&v2, &mut refs);
    for r in refs {
        let name = r
            .strip_prefix(V2_REF_PREFIX)
            .unwrap_or_else(|| panic!("{r}"));
        assert!(v2["definitions"][name].is_object(), "v2: {r}");
    }
}

#[test]
fn v3_references_have_no_siblings_and_schemas_are_objects() {
    fn check(value: &Value, at: &str) {
        match value {
            Value::Object(map) => {
                if map.contains_key("$ref") {
                    assert_eq!(map.len(), 1, "{at}: $ref with siblings: {value}");
                }
                for (key, v) in map {
                    check(v, &format!("{at}/{key}"));
                }
            }
            Value::Array(items) => items.iter().for_each(|v| check(v, at)),
            _ => {}
        }
    }
    for (group_version, document) in &documents().v3 {
        let doc = parse(document);
        check(&doc, group_version);
        for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
            assert!(schema.is_object(), "{name} is not an object schema");
        }
    }
}

/// The check `kubectl` (cli-runtime's `queryParamVerifierV3`) runs before it sends
/// `fieldValidation=Strict`: the first PATCH operation with the kind's GVK must list the
/// parameter as an inline query parameter. Every such operation, since paths are a map.
#[test]
fn every_patch_operation_of_a_kind_takes_field_validation() {
    for kind in KINDS {
        let doc = v3(&group_version_key(kind));
        let patches: Vec<&Value> = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .filter_map(|item| item.get("patch"))
            .filter(|op| op[GVK_EXTENSION] == gvk_of(kind))
            .collect();
        assert!(!patches.is_empty(), "{kind:?} has no PATCH operation");
        for op in patches {
            let params = op["parameters"].as_array().unwrap();
            for name in ["fieldValidation", "dryRun", "fieldManager"] {
                assert!(
                    params
                        .iter()
                        .any(|p| p["name"] == name && p["in"] == "query"),
                    "{kind:?}: {op}"
                );
            }
            let content = op["requestBody"]["content"].as_object().unwrap();
            assert!(content.contains_key("application/merge-patch+json"));
            assert!(!content.contains_key("application/strategic-merge-patch+json"));
        }
    }
}

/// The paths kubectl explain's template searches for a resource, with the GVK it takes
/// from their operations.
#[test]
fn explain_finds_each_kind_by_its_resource_paths() {
    for kind in KINDS {
        let doc = v3(&group_version_key(kind));
        let prefix = if kind.group.is_empty() {
            "/api".to_string()
        } else {
            format!("/apis/{}", kind.group)
        };
        let (collection, item) = if kind.namespaced {
            (
                format!(
                    "{prefix}/{}/namespaces/{{namespace}}/{}",
                    kind.version, kind.plural
                ),
                format!(
                    "{prefix}/{}/namespaces/{{namespace}}/{}/{{name}}",
                    kind.version, kind.plural
                ),
            )
        } else {
            (
                format!("{prefix}/{}/{}", kind.version, kind.plural),
                format!("{prefix}/{}/{}/{{name}}", kind.version, kind.plural),
            )
        };
        for path in [collection, item] {
            let get = &doc["paths"][&path]["get"];
            assert_eq!(get[GVK_EXTENSION], gvk_of(kind), "{path}");
        }
    }
    let apps = v3("apis/apps/v1");
    let scale = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"];
    assert_eq!(scale["patch"][GVK_EXTENSION]["kind"], "Scale");
    assert!(apps["components"]["schemas"]["io.k8s.api.autoscaling.v1.Scale"].is_object());
    let core = v3("api/v1");
    assert!(core["paths"]["/api/v1/pods"]["get"].is_object());
    assert!(core["paths"]["/api/v1/namespaces/{namespace}/configmaps/{name}/status"].is_null());
}

#[test]
fn the_index_links_every_group_version_with_its_hash() {
    let index = parse(&documents().v3_index);
    let paths = index["paths"].as_object().unwrap();
    assert_eq!(paths.len(), documents().v3.len());
    for (group_version, document) in &documents().v3 {
        assert_eq!(
            paths[group_version]["serverRelativeURL"],
            format!("/openapi/v3/{group_version}?hash={}", document.etag)
        );
        assert_eq!(document.etag.len(), 128);
        assert!(
            document
                .etag
                .chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        );
    }
    for key in [
        "api/v1",
        "apis/apps/v1",
        "apis/drover.io/v1",
        "apis/autoscaling/v2",
    ] {
        assert!(paths.contains_key(key), "{key}");
    }
}

#[test]
fn v2_is_swagger_with_definitions_and_paths() {
    let v2 = parse(&documents().v2);
    assert_eq!(v2["swagger"], "2.0");
    let patch = &v2["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(patch[GVK_EXTENSION]["kind"], "Deployment");
    let params = patch["parameters"].as_array().unwrap();
    assert!(params.iter().any(|p| p["in"] == "body"
        && p["schema"]["$ref"]
            == format!("{V2_REF_PREFIX}io.k8s.apimachinery.pkg.apis.meta.v1.Patch")));
    assert!(
        params
            .iter()
            .any(|p| p["name"] == "fieldValidation" && p["type"] == "string")
    );
    let split = &v2["definitions"]["io.drover.v1.TrafficSplit"];
    assert_eq!(split[GVK_EXTENSION][0]["group"], "drover.io");
    // v2 keeps a described reference as `$ref` with a sibling, as kube-openapi writes it.
    assert!(split["properties"]["metadata"]["$ref"].is_string());
}

#[test]
fn to_v3_moves_described_references_into_all_of() {
    let check = |input: Value, expected: Value| assert_eq!(to_v3(&input), expected);
    check(
        json!({"$ref": "#/definitions/a.B"}),
        json!({"$ref": "#/components/schemas/a.B"}),
    );
    check(
        json!({"$ref": "#/definitions/a.B", "description": "d"}),
        json!({"allOf": [{"$ref": "#/components/schemas/a.B"}], "description": "d"}),
    );
    check(
        json!({"type": "array", "items": {"$ref": "#/definitions/a.B"}}),
        json!({"type": "array", "items": {"$ref": "#/components/schemas/a.B"}}),
    );
    // A property that happens to be called `$ref` is a schema, not a reference.
    check(
        json!({"properties": {"$ref": {"type": "string"}}}),
        json!({"properties": {"$ref": {"type": "string"}}}),
    );
    let mut found = Vec::new();
    collect_refs(
        &json!({"a": [{"$ref": "#/definitions/x.Y"}], "$ref": "#/definitions/z.W"}),
        &mut |name| found.push(name.to_string()),
    );
    found.sort();
    assert_eq!(found, ["x.Y", "z.W"]);
}

#[test]
fn accept_negotiation() {
    use Encoding::{Json, Protobuf};
    let both = [Json, Protobuf];
    let check = |accept: Option<&str>, offered: &[Encoding], expected: Option<Encoding>| {
        assert_eq!(
            negotiate(accept, offered),
            expected,
            "{accept:?} of {offered:?}"
        )
    };
    let v2_protobuf = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
    check(None, &both, Some(Json));
    check(Some(""), &both, Some(Json));
    check(Some("*/*"), &both, Some(Json));
    check(Some("application/*"), &both, Some(Json));
    check(Some("Application/JSON; charset=utf-8"), &both, Some(Json));
    check(Some(v2_protobuf), &both, Some(Protobuf));
    check(Some(v2_protobuf), &[Json], None);
    check(
        Some("application/com.github.proto-openapi.spec.v2.v1.0+protobuf"),
        &both,
        Some(Protobuf),
    );
    check(
        Some("application/com.github.proto-openapi.spec.v3@v1.0+protobuf"),
        &both,
        None,
    );
    check(
        Some(&format!("{v2_protobuf}, application/json")),
        &both,
        Some(Protobuf),
    );
    check(
        Some(&format!("application/json;q=0.5, {v2_protobuf}")),
        &both,
        Some(Protobuf),
    );
    check(
        Some(&format!("{v2_protobuf}, application/json;q=0.9")),
        &[Json],
        Some(Json),
    );
    check(Some("application/json;q=0"), &both, None);
    check(Some("text/html"), &both, None);
    check(Some("garbage"), &both, None);
}

#[test]
fn every_schema_key_has_a_protobuf_field() {
    fn check(schema: &Value, at: &str) {
        let Some(map) = schema.as_object() else {
            return;
        };
        for (key, value) in map {
            assert!(
                key.starts_with("x-") || protobuf::SCHEMA_KEYS.contains(&key.as_str()),
                "{at}: {key} would be dropped from the protobuf document"
            );
            match key.as_str() {
                "properties" => {
                    for (name, sub) in value.as_object().into_iter().flatten() {
                        check(sub, &format!("{at}.{name}"));
                    }
                }
                "items" | "additionalProperties" => check(value, at),
                "allOf" => value
                    .as_array()
                    .into_iter()
                    .flatten()
                    .for_each(|s| check(s, at)),
                _ => {}
            }
        }
    }
    for (name, schema) in &schemas::SchemaSet::build().definitions {
        check(schema, name);
    }
    assert!(!documents().v2_protobuf.body.is_empty());
    assert_eq!(documents().v2_protobuf.etag, documents().v2.etag);
}
