//! ownerReferences: which object controls another, and the reference a controller
//! puts on what it creates.

use bus_schema::KindInfo;
use serde_json::{Value, json};

use super::ObjectKey;

/// The apiVersion of a kind (`apps/v1`, `v1`).
pub fn api_version(kind: &KindInfo) -> String {
    if kind.group.is_empty() {
        kind.version.to_string()
    } else {
        format!("{}/{}", kind.group, kind.version)
    }
}

/// The ownerReference with `controller: true`, if any.
pub fn controller_ref(obj: &Value) -> Option<&Value> {
    obj.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
}

/// The uid of the controller, if any.
pub fn controller_uid(obj: &Value) -> Option<&str> {
    controller_ref(obj)?.get("uid")?.as_str()
}

/// The key of `obj`'s controller when the controller is of `owner_kind` (same
/// namespace, as ownerReferences are namespace-local).
pub fn controller_key(obj: &Value, owner_kind: &KindInfo) -> Option<ObjectKey> {
    let r = controller_ref(obj)?;
    if r.get("kind")?.as_str()? != owner_kind.kind {
        return None;
    }
    let group = r
        .get("apiVersion")?
        .as_str()?
        .rsplit_once('/')
        .map_or("", |(g, _)| g);
    if group != owner_kind.group {
        return None;
    }
    Some(ObjectKey {
        namespace: drover_store::object::namespace(obj).map(str::to_string),
        name: r.get("name")?.as_str()?.to_string(),
    })
}

/// Whether `obj` is controlled by the object with uid `owner_uid`.
pub fn is_controlled_by(obj: &Value, owner_uid: &str) -> bool {
    controller_uid(obj) == Some(owner_uid)
}

/// The controller ownerReference a controller puts on what it creates from `owner`
/// (`blockOwnerDeletion` so foreground deletion waits for it).
pub fn controller_reference(owner_kind: &KindInfo, owner: &Value) -> Value {
    json!({
        "apiVersion": api_version(owner_kind),
        "kind": owner_kind.kind,
        "name": drover_store::object::name(owner),
        "uid": drover_store::object::meta_str(owner, "uid").unwrap_or_default(),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(group: &str, plural: &str) -> &'static KindInfo {
        bus_schema::kinds::by_group_resource(group, plural).unwrap()
    }

    #[test]
    fn the_controller_key_needs_the_right_kind_and_group() {
        let rs = kind("apps", "replicasets");
        let pod = json!({"metadata": {"namespace": "ns", "name": "p", "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "1"},
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "2", "controller": true}]}});
        assert_eq!(
            controller_key(&pod, rs),
            Some(ObjectKey::namespaced("ns", "web-1"))
        );
        assert_eq!(controller_key(&pod, kind("apps", "deployments")), None);
        assert_eq!(controller_uid(&pod), Some("2"));
        let reference =
            controller_reference(rs, &json!({"metadata": {"name": "web-1", "uid": "2"}}));
        assert_eq!(reference["apiVersion"], "apps/v1");
        assert_eq!(reference["controller"], true);
    }
}
