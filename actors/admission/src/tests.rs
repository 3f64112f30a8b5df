use serde_json::json;

use super::*;

/// `want`: `Some(prefix)` when a name `prefix` + five characters is expected, `None`
/// when the object must come back unchanged.
fn check(obj: Value, want: Option<&str>) {
    let mut named = obj.clone();
    name_from_generate(&mut named);
    match want {
        None => assert_eq!(named, obj),
        Some(prefix) => {
            let name = drover_store::object::name(&named);
            assert!(name.starts_with(prefix), "{name}");
            assert_eq!(name.len(), prefix.len() + 5, "{name}");
            let mut rest = named.clone();
            rest["metadata"].as_object_mut().map(|m| m.remove("name"));
            let mut without = obj.clone();
            without["metadata"]
                .as_object_mut()
                .map(|m| m.remove("name"));
            assert_eq!(rest, without, "only the name changes");
        }
    }
}

#[test]
fn names_from_generate_name() {
    check(json!({"metadata": {"generateName": "web-"}}), Some("web-"));
    check(
        json!({"metadata": {"name": "", "generateName": "web-"}}),
        Some("web-"),
    );
    // A name wins over generateName, as in the API server.
    check(
        json!({"metadata": {"name": "fixed", "generateName": "web-"}}),
        None,
    );
    // Neither: left for validation to refuse.
    check(json!({"metadata": {}}), None);
}

#[test]
fn refusals_read_as_kubernetes_words_them() {
    let pods = kind_of("", "Pod");
    let err = forbidden(pods, "web-x", "exceeded quota: q1");
    assert_eq!(
        err.to_string(),
        "pods \"web-x\" is forbidden: exceeded quota: q1"
    );
    let AdmissionError::Refused(r) = err else {
        panic!("not a refusal");
    };
    assert_eq!((r.code, r.reason), (403, "Forbidden"));
    assert_eq!(
        r.details,
        Some(json!({"name": "web-x", "group": "", "kind": "pods"}))
    );
}

#[test]
fn invalid_objects_are_told_apart() {
    let pods = kind_of("", "Pod");
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "ns"}, "spec": {"containers": []}});
    let err = prepare(pods, &mut pod).unwrap_err();
    assert!(err.is_invalid(), "{err}");
    assert!(!forbidden(pods, "p", "no").is_invalid());
}
