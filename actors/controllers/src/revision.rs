//! ControllerRevisions: the history of a StatefulSet's or DaemonSet's pod template, as
//! kube-controller-manager keeps it, so `kubectl rollout history|undo` work unchanged.
//!
//! A revision's `data` is the patch kubectl applies on undo: `{"spec": {"template":
//! {..., "$patch": "replace"}}}` (a strategic merge patch). Its name is
//! `<owner>-<hash>`, the hash being Kubernetes' (fnv32 of the data, safe-encoded), and the
//! pods it produced carry the label `controller-revision-hash`. Rolling back to an old
//! template makes that old revision the newest again (its `revision` number is bumped)
//! instead of creating a duplicate. History beyond `revisionHistoryLimit` is pruned,
//! oldest first, never a revision still in use.
//!
//! [`plan`] decides without I/O; [`sync`] carries the plan out against the store.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bus_schema::KindInfo;
use drover_store::{DeleteOptions, StoreError, object};
use serde_json::{Value, json};

use crate::runtime::kinds::controller_revisions as kind;
use crate::runtime::{Context, ObjectKey, ReconcileError, owner, revision_of};

#[cfg(test)]
mod tests;

/// The pod label naming the revision a pod was made from.
pub const REVISION_LABEL: &str = "controller-revision-hash";
/// How long a reconcile waits for the cache to show its own write.
pub const CACHE_WAIT: Duration = Duration::from_secs(10);

/// The revision data of a pod template: the strategic merge patch that restores it.
pub fn patch_of(template: &Value) -> Value {
    let mut template = template.clone();
    if let Some(map) = template.as_object_mut() {
        map.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": template}})
}

/// The template a revision's data restores (the inverse of [`patch_of`]).
pub fn template_of(data: &Value) -> Option<Value> {
    let mut template = data.pointer("/spec/template")?.clone();
    template.as_object_mut()?.remove("$patch");
    Some(template)
}

/// Kubernetes' `rand.SafeEncodeString`: digits mapped to consonants and digits that
/// cannot spell words.
pub fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHANUMS[b as usize % ALPHANUMS.len()] as char)
        .collect()
}

/// FNV-1 (32 bit), the hash Kubernetes uses for revision names.
pub fn fnv32(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h = h.wrapping_mul(0x0100_0193);
        h ^= u32::from(*b);
    }
    h
}

/// The hash of revision `data` (with the owner's `collisionCount` when set).
pub fn hash(data: &Value, collision_count: Option<i64>) -> String {
    let mut bytes = serde_json::to_vec(data).unwrap_or_default();
    if let Some(c) = collision_count {
        bytes.extend_from_slice(c.to_string().as_bytes());
    }
    safe_encode(&fnv32(&bytes).to_string())
}

/// One existing revision, as [`plan`] needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct Existing {
    /// Name.
    pub name: String,
    /// `revision` number.
    pub number: i64,
    /// `data`.
    pub data: Value,
}

/// What to do with the history.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// The update revision's name (the one matching the wanted template).
    pub update: String,
    /// Its number after the plan.
    pub number: i64,
    /// Create it (it does not exist yet).
    pub create: bool,
    /// An existing equal revision whose number must become `number` (a rollback).
    pub bump: bool,
    /// Revisions to delete (beyond the history limit and not in use).
    pub delete: Vec<String>,
}

/// Decides the history for an owner named `owner` whose template has revision data
/// `wanted`, given its revisions, the names still in use (status.currentRevision and the
/// revisions of live pods) and the history limit.
pub fn plan(
    owner: &str,
    wanted: &Value,
    existing: &[Existing],
    in_use: &BTreeSet<String>,
    history_limit: usize,
    collision_count: Option<i64>,
) -> Plan {
    let max = existing.iter().map(|e| e.number).max().unwrap_or(0);
    let mut plan = match existing.iter().find(|e| &e.data == wanted) {
        Some(e) if e.number == max => Plan {
            update: e.name.clone(),
            number: e.number,
            ..Plan::default()
        },
        Some(e) => Plan {
            update: e.name.clone(),
            number: max + 1,
            bump: true,
            ..Plan::default()
        },
        None => Plan {
            update: format!("{owner}-{}", hash(wanted, collision_count)),
            number: max + 1,
            create: true,
            ..Plan::default()
        },
    };
    let mut prunable: Vec<&Existing> = existing
        .iter()
        .filter(|e| e.name != plan.update && !in_use.contains(&e.name))
        .collect();
    prunable.sort_by_key(|e| e.number);
    let excess = prunable.len().saturating_sub(history_limit);
    plan.delete = prunable[..excess].iter().map(|e| e.name.clone()).collect();
    plan
}

/// The revisions controlled by `owner` (from the cache).
pub fn owned(ctx: &Context, owner: &Value) -> Vec<Existing> {
    let uid = object::meta_str(owner, "uid").unwrap_or_default();
    let mut out: Vec<Existing> = ctx
        .cache
        .owned_by(kind(), uid)
        .iter()
        .filter(|r| owner::is_controlled_by(r, uid))
        .map(|r| Existing {
            name: object::name(r).to_string(),
            number: r.get("revision").and_then(Value::as_i64).unwrap_or(0),
            data: r.get("data").cloned().unwrap_or(Value::Null),
        })
        .collect();
    out.sort_by_key(|e| e.number);
    out
}

/// Brings the history of `owner` (of `owner_kind`) in line with its current template;
/// returns the update revision's name and number. `in_use` are the revisions that must not
/// be pruned.
pub async fn sync(
    ctx: &Context,
    owner_kind: &'static KindInfo,
    owner_obj: &Value,
    in_use: &BTreeSet<String>,
) -> Result<(String, i64), ReconcileError> {
    let template = owner_obj
        .pointer("/spec/template")
        .cloned()
        .unwrap_or(json!({}));
    let wanted = patch_of(&template);
    let existing = owned(ctx, owner_obj);
    let limit = owner_obj
        .pointer("/spec/revisionHistoryLimit")
        .and_then(Value::as_i64)
        .unwrap_or(10)
        .max(0) as usize;
    let collision = owner_obj
        .pointer("/status/collisionCount")
        .and_then(Value::as_i64);
    let name = object::name(owner_obj);
    let namespace = object::namespace(owner_obj).unwrap_or("default");
    let p = plan(name, &wanted, &existing, in_use, limit, collision);
    if p.create {
        let labels: BTreeMap<String, String> = template
            .pointer("/metadata/labels")
            .and_then(|l| serde_json::from_value(l.clone()).ok())
            .unwrap_or_default();
        let mut annotations = serde_json::Map::new();
        if let Some(cause) = owner_obj.pointer("/metadata/annotations/kubernetes.io~1change-cause")
        {
            annotations.insert("kubernetes.io/change-cause".into(), cause.clone());
        }
        let revision = json!({
            "apiVersion": "apps/v1",
            "kind": "ControllerRevision",
            "metadata": {
                "name": p.update,
                "namespace": namespace,
                "labels": labels,
                "annotations": annotations,
                "ownerReferences": [owner::controller_reference(owner_kind, owner_obj)],
            },
            "data": wanted,
            "revision": p.number,
        });
        match ctx.store.create(kind(), revision).await {
            Ok(stored) => {
                ctx.cache
                    .wait_for_revision(kind(), revision_of(&stored), CACHE_WAIT)
                    .await?
            }
            // A name collision with another template's revision (or a leftover of a
            // deleted owner): Kubernetes bumps status.collisionCount and retries; here
            // the caller's next reconcile retries after the error.
            Err(StoreError::AlreadyExists { .. }) => {
                return Err(ReconcileError::Other(format!(
                    "controllerrevision {} exists with other content",
                    p.update
                )));
            }
            Err(e) => return Err(e.into()),
        }
    } else if p.bump {
        let key = ObjectKey::namespaced(namespace, &p.update);
        if let Some(current) = ctx.cache.get(kind(), &key) {
            let mut updated = (*current).clone();
            updated["revision"] = json!(p.number);
            if let Some(cause) =
                owner_obj.pointer("/metadata/annotations/kubernetes.io~1change-cause")
            {
                updated["metadata"]["annotations"]["kubernetes.io/change-cause"] = cause.clone();
            }
            let stored = ctx.store.update(kind(), updated).await?;
            ctx.cache
                .wait_for_revision(kind(), revision_of(&stored), CACHE_WAIT)
                .await?;
        }
    }
    for old in &p.delete {
        match ctx
            .store
            .delete(kind(), Some(namespace), old, &DeleteOptions::default())
            .await
        {
            Ok(_) | Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok((p.update, p.number))
}
