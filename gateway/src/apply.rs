//! Server-side apply and `metadata.managedFields`, as pure functions over
//! `serde_json::Value` (Kubernetes' structured-merge-diff and apimachinery's field manager).
//!
//! Every write records who set which field. [`server_side_apply`] serves
//! `application/apply-patch+yaml`: the configuration's fields become the manager's Apply
//! entry, fields it applied before and dropped now are removed from the object unless
//! another manager owns them, and changing a field another manager owns is a
//! [`Conflict`] unless forced (then the field changes hands). [`track_update`] runs for
//! every other write (create, update, JSON / merge / strategic patches): the writer's
//! Update entry gains the fields it changed, and every other manager loses them.
//!
//! What is tracked, as in Kubernetes: every field except `apiVersion`, `kind`,
//! `metadata.{name, namespace, uid, resourceVersion, generation, creationTimestamp,
//! selfLink, managedFields}`. Writes to the main resource do not track `status`; writes to
//! the `status` subresource track only `status`. List semantics (keyed, set, atomic) come
//! from the strategic-merge tables of [`crate::patch`]; see the `typed` module. Kinds
//! without tables (custom and drover.io kinds) have granular objects and atomic lists.
//!
//! Nothing here does I/O or reads a clock: the caller passes the time. The one visible
//! difference from Kubernetes: an Update that creates an object owns the objects it
//! creates as such (`".": {}` under `f:spec`), where Go's zero values make the API server
//! record that only for pointer fields and maps.

mod fieldset;
mod managed;
mod typed;

#[cfg(test)]
mod tests;

use serde_json::{Value, json};

use fieldset::{Element, Set, display_path};
use managed::Entry;
use typed::{Ctx, Ty};

/// Most Update entries an object keeps; older ones merge into `ancient-changes`
/// (apimachinery's `DefaultMaxUpdateManagers`).
pub const MAX_UPDATE_MANAGERS: usize = 10;

/// Longest `fieldManager` accepted, in bytes (apimachinery's `FieldManagerMaxLength`).
pub const MAX_FIELD_MANAGER_BYTES: usize = 128;

/// The manager name recorded for a write that names none and has no user agent.
const UNKNOWN_MANAGER: &str = "unknown";

/// The operation of a `managedFields` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// Server-side apply: the entry holds exactly the fields of the last applied
    /// configuration.
    Apply,
    /// Any other write: the entry accumulates the fields the manager changed.
    Update,
}

impl Operation {
    /// The wire spelling (`Apply`, `Update`).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// An applied field that another manager owns with a different value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager's name.
    pub manager: String,
    /// How the other manager set the field.
    pub operation: Operation,
    /// The API version of the other manager's entry.
    pub api_version: String,
    /// The subresource the other manager wrote through, if any.
    pub subresource: Option<String>,
    /// The field, as Kubernetes prints paths: `.spec.replicas`,
    /// `.spec.template.spec.containers[name="nginx"].image`.
    pub field: String,
}

impl Conflict {
    /// The manager as the API server names it in messages: `"kubectl"` for an applier,
    /// `"kubectl-patch" using apps/v1` for an updater, with ` with subresource "status"`
    /// when it wrote a subresource.
    pub fn manager_description(&self) -> String {
        let mut out = json!(self.manager).to_string();
        if let Some(subresource) = &self.subresource {
            out.push_str(&format!(" with subresource {}", json!(subresource)));
        }
        if self.operation == Operation::Update {
            out.push_str(&format!(" using {}", self.api_version));
        }
        out
    }
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "conflict with {}: {}",
            self.manager_description(),
            self.field
        )
    }
}

/// The API server's message for apply conflicts (kubectl prints it and adds its advice):
/// `Apply failed with 1 conflict: conflict with "kubectl-patch" using apps/v1: .spec.replicas`,
/// or for several, one `conflicts with ...:` line per manager followed by `- <field>` lines.
/// Capitalized because clients match the Kubernetes wording.
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [only] = conflicts {
        return format!("Apply failed with 1 conflict: {only}");
    }
    let mut lines: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for conflict in conflicts {
        let manager = conflict.manager_description();
        if current.as_ref() != Some(&manager) {
            lines.push(format!("conflicts with {manager}:"));
            current = Some(manager);
        }
        lines.push(format!("- {}", conflict.field));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// Why [`server_side_apply`] produced no object. Neither is retryable with the same
/// request; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Applied fields other managers own with other values (sorted by manager). Retry with
    /// `force`, or drop the fields from the configuration. HTTP 409.
    #[error("{}", conflict_message(.0))]
    Conflicts(Vec<Conflict>),
    /// The configuration is not a valid apply configuration: not an object, no
    /// `apiVersion` or `kind`, `metadata.managedFields` set, or a keyed list with an item
    /// missing its key or a duplicate key. HTTP 400.
    #[error("{0}")]
    Invalid(String),
}

/// Applies `applied`, a configuration of kind `kind` ("Deployment", ...) by `manager`, to
/// the live object `current` (`None`: the object does not exist yet, and the result
/// creates it), at time `now` (RFC 3339). `subresource` is `Some("status")` for applies to
/// the status subresource. Returns the object to store, its `managedFields` updated.
/// With `force`, conflicting fields are taken from their managers instead of failing.
pub fn server_side_apply(
    kind: &str,
    current: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    subresource: Option<&str>,
    now: &str,
) -> Result<Value, ApplyError> {
    let manager = manager_or_unknown(manager);
    let api_version = check_configuration(applied)?;
    let (ctx, root) = (Ctx::for_kind(kind), root_ty(kind));
    let mut config_set = typed::field_set(ctx, root, applied).map_err(ApplyError::Invalid)?;
    config_set.retain_top(is_tracked(subresource));

    let mut live = current.cloned().unwrap_or_else(|| json!({}));
    let live_fields = managed::take(&mut live);
    // Entries this gateway wrote are always readable; anything else is dropped rather
    // than blocking every apply to the object.
    let mut entries = managed::decode(live_fields.as_ref()).unwrap_or_default();
    let subresource_name = subresource.unwrap_or_default();
    let previous = entries
        .iter()
        .position(|e| e.is(manager, Operation::Apply, "", subresource_name))
        .map(|idx| entries.remove(idx));

    let mut merged = typed::merge(ctx, root, Some(&live), applied).unwrap_or_else(|| json!({}));
    if let Some(previous) = previous.as_ref().filter(|p| !p.set.is_empty()) {
        let managed_now = entries
            .iter()
            .fold(config_set.clone(), |all, entry| all.union(&entry.set));
        typed::prune(
            ctx,
            root,
            &mut merged,
            &previous.set.with_fields_as_members(),
            &managed_now.with_fields_as_members(),
        );
    }

    let comparison = tracked_comparison(ctx, root, &live, &merged, subresource);
    let changed = comparison.modified.union(&comparison.added);
    let mut conflicts = Vec::new();
    for entry in &mut entries {
        let clash = entry.set.intersection(&changed);
        conflicts.extend(clash.paths().iter().map(|path| Conflict {
            manager: entry.manager.clone(),
            operation: entry.operation,
            api_version: entry.api_version.clone(),
            subresource: Some(entry.subresource.clone()).filter(|s| !s.is_empty()),
            field: display_path(path),
        }));
        entry.set = entry.set.difference(&clash).difference(&comparison.removed);
    }
    if !conflicts.is_empty() && !force {
        conflicts.sort_by(|a, b| {
            (&a.manager, a.operation, &a.api_version, &a.subresource).cmp(&(
                &b.manager,
                b.operation,
                &b.api_version,
                &b.subresource,
            ))
        });
        return Err(ApplyError::Conflicts(conflicts));
    }

    let applied_set = strip_untracked_metadata(&config_set);
    let unchanged = merged == live && previous.as_ref().is_some_and(|p| p.set == applied_set);
    if unchanged {
        // A no-op apply keeps the entries and their times, so the store sees no change.
        if let (Some(fields), Some(meta)) = (
            live_fields,
            merged.get_mut("metadata").and_then(Value::as_object_mut),
        ) {
            meta.insert("managedFields".into(), fields);
        }
        return Ok(merged);
    }
    entries.push(Entry {
        manager: manager.to_owned(),
        operation: Operation::Apply,
        api_version: api_version.to_owned(),
        subresource: subresource_name.to_owned(),
        time: Some(now.to_owned()),
        set: applied_set,
    });
    managed::put(&mut merged, entries);
    Ok(merged)
}

/// Records a non-apply write of `new` over `old` (`None` for a create) in
/// `new.metadata.managedFields`: `manager`'s Update entry (for `subresource`, at `new`'s
/// apiVersion) gains every field the write added or changed, other entries lose those
/// fields and every entry loses removed fields. Entries come from `new` when the client
/// sent some (an empty list clears them), else from `old`; subresource writes always use
/// `old`'s. Never fails: unreadable entries are replaced by the other side's, or dropped.
pub fn track_update(
    kind: &str,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: Option<&str>,
    now: &str,
) {
    let manager = manager_or_unknown(manager);
    let (ctx, root) = (Ctx::for_kind(kind), root_ty(kind));
    let mut old = old.cloned().unwrap_or_else(|| json!({}));
    let old_fields = managed::take(&mut old);
    let new_fields = managed::take(new);
    let from_old = || managed::decode(old_fields.as_ref()).unwrap_or_default();
    let mut entries = if subresource.is_some() {
        from_old()
    } else if managed::is_reset(new_fields.as_ref()) {
        Vec::new()
    } else {
        match managed::decode(new_fields.as_ref()) {
            Ok(entries) if !entries.is_empty() => entries,
            _ => from_old(),
        }
    };

    let comparison = tracked_comparison(ctx, root, &old, new, subresource);
    let changed = comparison.modified.union(&comparison.added);
    for entry in &mut entries {
        entry.set = entry
            .set
            .difference(&changed)
            .difference(&comparison.removed);
    }
    let gained = strip_untracked_metadata(&changed);
    if !gained.is_empty() {
        let api_version = new
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let subresource = subresource.unwrap_or_default();
        match entries
            .iter_mut()
            .find(|e| e.is(manager, Operation::Update, &api_version, subresource))
        {
            Some(entry) => {
                entry.set = entry.set.union(&gained);
                entry.time = Some(now.to_owned());
            }
            None => entries.push(Entry {
                manager: manager.to_owned(),
                operation: Operation::Update,
                api_version,
                subresource: subresource.to_owned(),
                time: Some(now.to_owned()),
                set: gained,
            }),
        }
    }
    entries.retain(|e| !e.set.is_empty());
    managed::cap_update_managers(&mut entries, MAX_UPDATE_MANAGERS);
    managed::put(new, entries);
}

/// The manager of a write that did not name one: the user agent up to its first `/`
/// (`kubectl/v1.32.0 (linux/amd64) ...` → `kubectl`), without unprintable characters,
/// cut to [`MAX_FIELD_MANAGER_BYTES`] (the API server's `prefixFromUserAgent`).
pub fn manager_from_user_agent(user_agent: &str) -> String {
    let prefix = user_agent.split('/').next().unwrap_or_default();
    let mut out = String::new();
    for c in prefix.chars().filter(|&c| is_printable(c)) {
        if out.len() + c.len_utf8() > MAX_FIELD_MANAGER_BYTES {
            break;
        }
        out.push(c);
    }
    out
}

/// Checks a `fieldManager` query parameter as the API server does; the error is the
/// field error's text (`fieldManager: Too long: ...`).
pub fn validate_field_manager(field_manager: &str) -> Result<(), String> {
    if field_manager.len() > MAX_FIELD_MANAGER_BYTES {
        return Err(format!(
            "fieldManager: Too long: may not be more than {MAX_FIELD_MANAGER_BYTES} bytes"
        ));
    }
    if !field_manager.chars().all(is_printable) {
        return Err(format!(
            "fieldManager: Invalid value: {}: must only contain printable characters",
            json!(field_manager)
        ));
    }
    Ok(())
}

/// Go's `unicode.IsPrint`, near enough: no control characters, and no spaces but ' '.
fn is_printable(c: char) -> bool {
    !c.is_control() && (c == ' ' || !c.is_whitespace())
}

fn manager_or_unknown(manager: &str) -> &str {
    if manager.is_empty() {
        UNKNOWN_MANAGER
    } else {
        manager
    }
}

/// Checks what an apply configuration must be and returns its apiVersion.
fn check_configuration(applied: &Value) -> Result<&str, ApplyError> {
    let text = |field: &str| {
        applied
            .get(field)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    if !applied.is_object() {
        return Err(ApplyError::Invalid(
            "an apply configuration must be an object".to_owned(),
        ));
    }
    let (Some(api_version), Some(_)) = (text("apiVersion"), text("kind")) else {
        return Err(ApplyError::Invalid(
            "an apply configuration must set apiVersion and kind".to_owned(),
        ));
    };
    if applied
        .pointer("/metadata/managedFields")
        .is_some_and(|fields| !fields.is_null())
    {
        return Err(ApplyError::Invalid(
            "metadata.managedFields must be nil".to_owned(),
        ));
    }
    Ok(api_version)
}

/// The type of a whole object of `kind`.
fn root_ty(kind: &str) -> Ty {
    Ty::Plain(crate::patch::schema::for_kind(kind).unwrap_or_else(crate::patch::schema::plain))
}

/// Whether a top-level field is tracked by writes through `subresource`.
fn is_tracked(subresource: Option<&str>) -> impl Fn(&Element) -> bool {
    let status = Element::field("status");
    let status_only = subresource == Some("status");
    move |element| (*element == status) == status_only
}

/// The comparison of `old` and `new`, limited to the fields writes through `subresource`
/// track.
fn tracked_comparison(
    ctx: Ctx,
    root: Ty,
    old: &Value,
    new: &Value,
    subresource: Option<&str>,
) -> typed::Comparison {
    let mut comparison = typed::compare(ctx, root, old, new);
    for set in [
        &mut comparison.modified,
        &mut comparison.added,
        &mut comparison.removed,
    ] {
        set.retain_top(is_tracked(subresource));
    }
    comparison
}

/// Metadata no manager owns (apimachinery's `stripMetaManager`).
const UNTRACKED: &[&[&str]] = &[
    &["apiVersion"],
    &["kind"],
    &["metadata"],
    &["metadata", "name"],
    &["metadata", "namespace"],
    &["metadata", "creationTimestamp"],
    &["metadata", "selfLink"],
    &["metadata", "uid"],
    &["metadata", "clusterName"],
    &["metadata", "generation"],
    &["metadata", "managedFields"],
    &["metadata", "resourceVersion"],
];

fn strip_untracked_metadata(set: &Set) -> Set {
    let mut untracked = Set::new();
    for path in UNTRACKED {
        let path: Vec<Element> = path.iter().map(|name| Element::field(name)).collect();
        untracked.insert(&path);
    }
    set.difference(&untracked)
}
