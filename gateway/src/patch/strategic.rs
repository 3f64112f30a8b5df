//! Strategic merge patch (`application/strategic-merge-patch+json`) for built-in kinds.
//!
//! Follows `k8s.io/apimachinery/pkg/util/strategicpatch` as the API server applies it
//! (`MergeParallelList` and `IgnoreUnmatchedNulls` both on):
//!
//! - maps merge recursively and `null` deletes a key;
//! - lists tagged `merge` with a key merge element-wise by that key, lists of scalars tagged
//!   `merge` are ordered sets, every other list is replaced;
//! - directives: `$patch: replace|delete` (in a map or as a list element), `$retainKeys`,
//!   `$deleteFromPrimitiveList/<field>` and `$setElementOrder/<field>`; any other `$` key is
//!   an invalid patch.
//!
//! Order of a merged list follows the apiserver: patch items keep the patch's order
//! (or `$setElementOrder`'s) and live-only items are interleaved by their live order, so an
//! item new to the list lands before live items it cannot be placed relative to (adding
//! finalizer `b` to `[a]` gives `[b, a]`, as `kubectl patch` does against Kubernetes).
//!
//! Differences from the Go code (found by running both on generated Deployment patches);
//! none changes what a `kubectl apply` or `kubectl patch` means:
//! - `$patch: delete` on a map removes the key instead of leaving `{}`;
//! - values the patch adds are cleaned of directives and `null`s recursively (Go copies a
//!   new list element verbatim, so a delete directive in a new container's `env` would
//!   become an env var);
//! - under `$setElementOrder`, live-only items are placed by the live list as it was; in Go,
//!   slice aliasing can shift them when the same list also deletes and adds items, and items
//!   missing from an empty `$setElementOrder` are sorted by an inconsistent comparator;
//! - empty lists under `$setElementOrder`, and `$patch: replace` after the ordered items,
//!   are accepted (Go fails on both);
//! - a value both added to and deleted from a primitive list ends up deleted (Go: random);
//! - errors Go reports as internal (a list element without its merge key, elements of mixed
//!   types, a `$setElementOrder` that contradicts its list) are invalid patches here.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::PatchError;
use super::schema::{Field, Schema, Strategy};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// Applies `patch` to `target`, both JSON objects, with the metadata of `schema`.
pub(super) fn apply(
    schema: &'static Schema,
    target: &Value,
    patch: Value,
) -> Result<Value, PatchError> {
    let Value::Object(target) = target else {
        return Err(PatchError::InvalidTarget(
            "the object to patch is not a json object".to_owned(),
        ));
    };
    let Value::Object(patch) = patch else {
        return Err(PatchError::InvalidPatch(
            "a strategic merge patch must be a json object".to_owned(),
        ));
    };
    // A top-level `$patch: delete` empties the object; validation of the result rejects it.
    let merged = merge_map(Some(target.clone()), patch, schema)?.unwrap_or_default();
    Ok(Value::Object(merged))
}

/// Merges a patch map into a live map (`None`: the field is absent). Returns `None` when the
/// field should end up absent (`$patch: delete`).
fn merge_map(
    live: Option<Map<String, Value>>,
    mut patch: Map<String, Value>,
    schema: &'static Schema,
) -> Result<Option<Map<String, Value>>, PatchError> {
    if let Some(directive) = patch.remove(DIRECTIVE) {
        return match directive.as_str() {
            Some("replace") => merge_map(None, patch, schema),
            Some("delete") => Ok(None),
            _ => Err(PatchError::InvalidPatch(format!(
                "unknown $patch directive {directive} in a map"
            ))),
        };
    }
    let mut live = live.unwrap_or_default();
    if let Some(retain_keys) = patch.remove(RETAIN_KEYS) {
        apply_retain_keys(&mut live, &patch, &retain_keys)?;
    }

    let mut element_orders = Vec::new();
    let mut deletions = Vec::new();
    let mut fields = Map::new();
    for (key, value) in patch {
        if let Some(name) = key.strip_prefix(SET_ELEMENT_ORDER) {
            element_orders.push((directive_target(name, &key)?, value));
        } else if let Some(name) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            deletions.push((directive_target(name, &key)?, value));
        } else if key.starts_with('$') {
            return Err(PatchError::InvalidPatch(format!(
                "unknown strategic merge patch directive {key}"
            )));
        } else {
            fields.insert(key, value);
        }
    }

    // Lists with an explicit order are merged first and taken out of `fields`, as in Go.
    for (name, order) in element_orders {
        let patch_list = fields.remove(&name);
        merge_with_element_order(&mut live, name, patch_list, order, schema)?;
    }
    for (key, value) in fields {
        if value.is_null() {
            live.remove(&key);
            continue;
        }
        let current = live.get_mut(&key).map(std::mem::take);
        match merge_value(current, value, schema.field(&key))? {
            Some(merged) => {
                live.insert(key, merged);
            }
            None => {
                live.remove(&key);
            }
        }
    }
    // Deletions come last so that a value both added and deleted ends up deleted.
    for (name, values) in deletions {
        let Value::Array(values) = values else {
            return Err(PatchError::InvalidPatch(format!(
                "{DELETE_FROM_PRIMITIVE_LIST}{name} must be a list"
            )));
        };
        if let Some(Value::Array(list)) = live.get_mut(&name) {
            let doomed: HashSet<ElementKey> = values.iter().map(ElementKey::of).collect();
            list.retain(|item| !doomed.contains(&ElementKey::of(item)));
        }
    }
    Ok(Some(live))
}

/// The field name after a `$setElementOrder/` or `$deleteFromPrimitiveList/` prefix.
fn directive_target(name: &str, key: &str) -> Result<String, PatchError> {
    if name.is_empty() {
        return Err(PatchError::InvalidPatch(format!(
            "directive {key} names no field"
        )));
    }
    Ok(name.to_owned())
}

/// Merges one field's patch value into its live value (`None`: absent).
fn merge_value(
    live: Option<Value>,
    patch: Value,
    field: &'static Field,
) -> Result<Option<Value>, PatchError> {
    match patch {
        Value::Object(patch) => {
            let live = match live {
                Some(Value::Object(live)) if field.strategy != Strategy::Replace => Some(live),
                _ => None,
            };
            Ok(merge_map(live, patch, field.schema)?.map(Value::Object))
        }
        Value::Array(patch) => {
            let live = match live {
                Some(Value::Array(live)) => Some(live),
                _ => None,
            };
            Ok(Some(Value::Array(merge_list(live, patch, field)?)))
        }
        Value::Null => Ok(None),
        scalar => Ok(Some(scalar)),
    }
}

/// Merges a patch list into a live list according to the field's strategy.
fn merge_list(
    live: Option<Vec<Value>>,
    patch: Vec<Value>,
    field: &'static Field,
) -> Result<Vec<Value>, PatchError> {
    let key = match field.strategy {
        Strategy::Plain | Strategy::Replace => return clean_list(patch, field.schema),
        Strategy::MergeByKey(key) => Some(key),
        Strategy::MergeSet => None,
    };
    let live = live.unwrap_or_default();
    if live.is_empty() && patch.is_empty() {
        return Ok(live);
    }
    match (element_kind(&live, &patch)?, key) {
        (ElementKind::Scalar, None) => Ok(merge_scalar_list(live, patch)),
        (ElementKind::Map, Some(key)) => merge_keyed_list(live, patch, key, field.schema),
        (ElementKind::Scalar, Some(key)) => Err(PatchError::InvalidPatch(format!(
            "the elements of a list merged by {key} must be maps"
        ))),
        (ElementKind::Map, None) => Err(PatchError::InvalidPatch(
            "the elements of a list of scalars must not be maps".to_owned(),
        )),
    }
}

/// A replaced list: the patch's elements without directives or `null` fields.
fn clean_list(patch: Vec<Value>, schema: &'static Schema) -> Result<Vec<Value>, PatchError> {
    let mut cleaned = Vec::with_capacity(patch.len());
    for item in patch {
        match item {
            Value::Object(map) => {
                if let Some(map) = merge_map(None, map, schema)? {
                    cleaned.push(Value::Object(map));
                }
            }
            other => cleaned.push(other),
        }
    }
    Ok(cleaned)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ElementKind {
    Scalar,
    Map,
}

/// What the elements of a merging list are; all must agree and none may be a list.
fn element_kind(live: &[Value], patch: &[Value]) -> Result<ElementKind, PatchError> {
    let mut kind = None;
    for item in live.iter().chain(patch) {
        let this = match item {
            Value::Array(_) => {
                return Err(PatchError::Unprocessable(
                    "strategic merge patch cannot merge lists of lists".to_owned(),
                ));
            }
            Value::Object(_) => ElementKind::Map,
            _ => ElementKind::Scalar,
        };
        if kind.is_some_and(|kind| kind != this) {
            return Err(PatchError::InvalidPatch(
                "the elements of a merging list mix maps and scalars".to_owned(),
            ));
        }
        kind = Some(this);
    }
    Ok(kind.unwrap_or(ElementKind::Scalar))
}

/// An ordered-set union: duplicates collapse, order as described in the module doc.
fn merge_scalar_list(live: Vec<Value>, patch: Vec<Value>) -> Vec<Value> {
    let mut seen = HashSet::new();
    let live: Vec<Value> = live
        .into_iter()
        .filter(|item| seen.insert(ElementKey::of(item)))
        .collect();
    let patch_order = Order::new(patch.iter().map(|item| Some(ElementKey::of(item))));
    let server_order = Order::new(live.iter().map(|item| Some(ElementKey::of(item))));
    let mut merged = live;
    merged.extend(
        patch
            .into_iter()
            .filter(|item| seen.insert(ElementKey::of(item))),
    );
    let identity = |item: &Value| Some(ElementKey::of(item));
    reorder(merged, &patch_order, &server_order, identity)
}

/// Merges lists of maps element-wise by `key`, honouring `$patch` elements.
fn merge_keyed_list(
    mut live: Vec<Value>,
    patch: Vec<Value>,
    key: &'static str,
    schema: &'static Schema,
) -> Result<Vec<Value>, PatchError> {
    let mut regular = Vec::with_capacity(patch.len());
    let mut replace = false;
    for item in patch {
        let Value::Object(mut item) = item else {
            // `element_kind` has checked that every element is a map.
            continue;
        };
        let Some(directive) = item.remove(DIRECTIVE) else {
            regular.push(item);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let Some(doomed) = item.get(key).map(ElementKey::of) else {
                    return Err(missing_merge_key(key));
                };
                live.retain(|live_item| keyed(live_item, key).as_ref() != Some(&doomed));
            }
            Some("replace") => replace = true,
            Some("merge") => {
                return Err(PatchError::InvalidPatch(
                    "$patch: merge is not supported in a list".to_owned(),
                ));
            }
            _ => {
                return Err(PatchError::InvalidPatch(format!(
                    "unknown $patch directive {directive} in a list"
                )));
            }
        }
    }
    if replace {
        let regular = regular.into_iter().map(Value::Object).collect();
        return clean_list(regular, schema);
    }

    let server_order = Order::new(live.iter().map(|item| keyed(item, key)));
    let mut patch_keys = Vec::with_capacity(regular.len());
    let mut position: HashMap<ElementKey, usize> = HashMap::new();
    for (idx, item) in live.iter().enumerate() {
        if let Some(item_key) = keyed(item, key) {
            position.entry(item_key).or_insert(idx);
        }
    }
    for item in regular {
        let Some(item_key) = item.get(key).map(ElementKey::of) else {
            return Err(missing_merge_key(key));
        };
        patch_keys.push(Some(item_key.clone()));
        // `position` only holds indices of `live`, so `get_mut` finds the element.
        match position.get(&item_key).and_then(|&idx| live.get_mut(idx)) {
            Some(slot) => {
                let current = match std::mem::take(slot) {
                    Value::Object(current) => current,
                    _ => Map::new(),
                };
                // Never `None`: `$patch` was taken out of `item` above.
                let merged = merge_map(Some(current), item, schema)?.unwrap_or_default();
                *slot = Value::Object(merged);
            }
            None => {
                if let Some(added) = merge_map(None, item, schema)? {
                    position.insert(item_key, live.len());
                    live.push(Value::Object(added));
                }
            }
        }
    }
    let patch_order = Order::new(patch_keys);
    Ok(reorder(live, &patch_order, &server_order, |item| {
        keyed(item, key)
    }))
}

fn missing_merge_key(key: &str) -> PatchError {
    PatchError::InvalidPatch(format!(
        "an element of a merging list lacks its merge key {key}"
    ))
}

/// The identity of a list-of-maps element: the value of its merge key.
fn keyed(item: &Value, key: &str) -> Option<ElementKey> {
    item.get(key).map(ElementKey::of)
}

/// Applies `$setElementOrder/<name>`: merges the field's patch list (if any) and orders the
/// result by `order`, keeping live-only items where their live order puts them.
fn merge_with_element_order(
    live: &mut Map<String, Value>,
    name: String,
    patch_list: Option<Value>,
    order: Value,
    schema: &'static Schema,
) -> Result<(), PatchError> {
    let field = schema.field(&name);
    let Value::Array(order) = order else {
        return Err(PatchError::InvalidPatch(format!(
            "{SET_ELEMENT_ORDER}{name} must be a list"
        )));
    };
    let patch_list = match patch_list {
        None => None,
        Some(Value::Array(list)) => Some(list),
        Some(_) => {
            return Err(PatchError::InvalidPatch(format!(
                "{name} must be a list when {SET_ELEMENT_ORDER}{name} is given"
            )));
        }
    };
    let key = match field.strategy {
        Strategy::MergeByKey(key) => Some(key),
        _ => None,
    };
    let identity = |item: &Value| match key {
        Some(key) => keyed(item, key),
        None => Some(ElementKey::of(item)),
    };
    if let Some(patch_list) = &patch_list {
        check_element_order(patch_list, &order, key, &name)?;
    }

    let live_list = match live.get(&name) {
        Some(Value::Array(list)) => Some(list.clone()),
        _ => None,
    };
    let server_order = Order::new(live_list.iter().flatten().map(identity));
    let merged = match (live_list, patch_list) {
        (Some(live_list), None) => live_list,
        (live_list, Some(patch_list)) => merge_list(live_list, patch_list, field)?,
        (None, None) => return Ok(()),
    };
    let wanted = Order::new(order.iter().map(identity));
    live.insert(
        name,
        Value::Array(reorder(merged, &wanted, &server_order, identity)),
    );
    Ok(())
}

/// The patch list must list its items in the same relative order as `$setElementOrder`.
fn check_element_order(
    patch_list: &[Value],
    order: &[Value],
    key: Option<&str>,
    name: &str,
) -> Result<(), PatchError> {
    let identity = |item: &Value| match key {
        Some(key) => keyed(item, key),
        None => Some(ElementKey::of(item)),
    };
    if order.is_empty() {
        // The apiserver skips the check then too.
        return Ok(());
    }
    let is_directive = |item: &Value| item.get(DIRECTIVE).is_some();
    let mut order_keys = order.iter().map(identity);
    for item in patch_list.iter().filter(|item| !is_directive(item)) {
        let item_key = identity(item);
        if item_key.is_none() {
            return Err(missing_merge_key(key.unwrap_or_default()));
        }
        if !order_keys.any(|order_key| order_key == item_key) {
            return Err(PatchError::InvalidPatch(format!(
                "the order of list {name} in the patch does not match {SET_ELEMENT_ORDER}{name}"
            )));
        }
    }
    Ok(())
}

/// Sorts `merged` as the apiserver does: items found in `patch_order` in that order, the rest
/// in `server_order`, interleaved where both positions are known in `server_order`.
fn reorder(
    merged: Vec<Value>,
    patch_order: &Order,
    server_order: &Order,
    identity: impl Fn(&Value) -> Option<ElementKey>,
) -> Vec<Value> {
    let mut patch_items = Vec::new();
    let mut server_items = Vec::new();
    for item in merged {
        let item_key = identity(&item);
        match patch_order.index(item_key.as_ref()) {
            Some(patch_idx) => patch_items.push((patch_idx, item_key, item)),
            None => server_items.push((server_order.index(item_key.as_ref()), item_key, item)),
        }
    }
    patch_items.sort_by_key(|(patch_idx, _, _)| *patch_idx);
    // Unknown positions sort last, keeping their relative order.
    server_items.sort_by_key(|(server_idx, _, _)| server_idx.unwrap_or(usize::MAX));

    let mut out = Vec::with_capacity(patch_items.len() + server_items.len());
    let mut patch_items = patch_items.into_iter().peekable();
    let mut server_items = server_items.into_iter().peekable();
    loop {
        let take_server = match (server_items.peek(), patch_items.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some((_, server_key, _)), Some((_, patch_key, _))) => {
                match (
                    server_order.index(server_key.as_ref()),
                    server_order.index(patch_key.as_ref()),
                ) {
                    (Some(server_idx), Some(patch_idx)) => server_idx < patch_idx,
                    _ => false,
                }
            }
        };
        let next = if take_server {
            server_items.next().map(|(_, _, item)| item)
        } else {
            patch_items.next().map(|(_, _, item)| item)
        };
        out.extend(next);
    }
    out
}

/// First position of each identity in a list, for O(1) order lookups.
struct Order(HashMap<ElementKey, usize>);

impl Order {
    fn new(keys: impl IntoIterator<Item = Option<ElementKey>>) -> Order {
        let mut positions = HashMap::new();
        for (idx, key) in keys.into_iter().enumerate() {
            if let Some(key) = key {
                positions.entry(key).or_insert(idx);
            }
        }
        Order(positions)
    }

    fn index(&self, key: Option<&ElementKey>) -> Option<usize> {
        key.and_then(|key| self.0.get(key).copied())
    }
}

/// `$retainKeys`: drops live keys not listed; every field the patch sets must be listed.
fn apply_retain_keys(
    live: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    retain_keys: &Value,
) -> Result<(), PatchError> {
    let bad_format =
        || PatchError::InvalidPatch("$retainKeys must be a list of field names".to_owned());
    let Value::Array(retain_keys) = retain_keys else {
        return Err(bad_format());
    };
    let mut retained = HashSet::new();
    for name in retain_keys {
        retained.insert(name.as_str().ok_or_else(bad_format)?);
    }
    for (key, value) in patch {
        let is_directive =
            key.starts_with(SET_ELEMENT_ORDER) || key.starts_with(DELETE_FROM_PRIMITIVE_LIST);
        if !value.is_null() && !is_directive && !retained.contains(key.as_str()) {
            return Err(PatchError::InvalidPatch(format!(
                "field {key} is in the patch but not in its $retainKeys list"
            )));
        }
    }
    live.retain(|key, _| retained.contains(key.as_str()));
    Ok(())
}

/// A hashable identity for JSON values with the apiserver's equality: maps and lists by
/// content, integers and floats never equal (`80` is not `80.0`: the apiserver decodes one
/// as int64 and the other as float64).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum ElementKey {
    Null,
    Bool(bool),
    Integer(i128),
    Float(u64),
    String(String),
    Composite(String),
}

impl ElementKey {
    fn of(value: &Value) -> ElementKey {
        match value {
            Value::Null => ElementKey::Null,
            Value::Bool(b) => ElementKey::Bool(*b),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    ElementKey::Integer(i.into())
                } else if let Some(u) = n.as_u64() {
                    ElementKey::Integer(u.into())
                } else {
                    // `+ 0.0` folds -0.0 into 0.0, which compare equal in Go.
                    ElementKey::Float((n.as_f64().unwrap_or(f64::NAN) + 0.0).to_bits())
                }
            }
            Value::String(s) => ElementKey::String(s.clone()),
            // Map keys serialize sorted without `preserve_order`; with it, equal maps in
            // different key order count as different items, which is harmless here.
            composite => ElementKey::Composite(composite.to_string()),
        }
    }
}
