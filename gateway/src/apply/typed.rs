//! Schema-aware walks over objects: the field set of an applied configuration, the
//! difference between two objects, the merge of a configuration into a live object, and
//! the removal of fields an applier gave up.
//!
//! The "type" of every node comes from the strategic-merge tables in `patch/schema.rs`,
//! read the way structured-merge-diff reads the OpenAPI list annotations they mirror:
//! a list tagged `merge` with a key is a map keyed by that key (plus `protocol` for ports
//! and `whenUnsatisfiable` for topology spread constraints, as in the OpenAPI
//! `x-kubernetes-list-map-keys`), a `merge` list without key is a set, every other list is
//! atomic, and `replace` fields and label selectors are atomic structs. Objects are
//! otherwise granular: each field is owned on its own. Lists whose items cannot be keyed
//! (a missing key, a duplicate) are atomic in live objects and an error in an applied
//! configuration.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::fieldset::{Element, Set, display_path};
use crate::patch::schema::{Field, Schema, Strategy};

/// A key field of a keyed list, with the value an item missing it is keyed by.
#[derive(Debug)]
pub(crate) struct KeyField {
    name: &'static str,
    default: Option<&'static str>,
}

const PROTOCOL_TCP: KeyField = KeyField {
    name: "protocol",
    default: Some("TCP"),
};

/// How a node is merged, compared and owned.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Ty {
    /// Objects are granular with this schema for their fields; lists are atomic.
    Plain(&'static Schema),
    /// Owned and replaced as a whole.
    Atomic,
    /// A list of objects identified by `key` and `extra_keys`, each object of `schema`.
    Keyed {
        key: &'static str,
        extra_keys: &'static [KeyField],
        schema: &'static Schema,
    },
    /// A list of scalars identified by value.
    Set,
}

/// Per-kind facts the schema tables do not hold.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ctx {
    /// Whether a field named `selector` is a `LabelSelector` (an atomic struct in
    /// Kubernetes' OpenAPI) rather than a plain `map[string]string` (Service,
    /// ReplicationController).
    selector_is_label_selector: bool,
}

impl Ctx {
    /// The context of `kind`.
    pub(crate) fn for_kind(kind: &str) -> Ctx {
        Ctx {
            selector_is_label_selector: !matches!(kind, "Service" | "ReplicationController"),
        }
    }

    /// The type of field `name` of an object of `schema`.
    pub(crate) fn field_ty(self, schema: &'static Schema, name: &str) -> Ty {
        let field: &'static Field = schema.field(name);
        match field.strategy {
            Strategy::Replace => Ty::Atomic,
            Strategy::MergeSet => Ty::Set,
            Strategy::MergeByKey(key) => Ty::Keyed {
                key,
                extra_keys: extra_keys(name, key),
                schema: field.schema,
            },
            Strategy::Plain if self.is_label_selector(name) => Ty::Atomic,
            Strategy::Plain => Ty::Plain(field.schema),
        }
    }

    fn is_label_selector(self, name: &str) -> bool {
        match name {
            "selector" => self.selector_is_label_selector,
            "labelSelector" | "namespaceSelector" | "podSelector" => true,
            _ => false,
        }
    }
}

/// The key fields the OpenAPI schema adds to a strategic merge key.
fn extra_keys(name: &str, key: &str) -> &'static [KeyField] {
    match (name, key) {
        ("ports", "containerPort" | "port") => &[PROTOCOL_TCP],
        ("topologySpreadConstraints", "topologyKey") => &[KeyField {
            name: "whenUnsatisfiable",
            default: None,
        }],
        _ => &[],
    }
}

/// What a value is under a type.
enum Shape<'v> {
    /// A scalar, an atomic value, or a list whose items cannot be keyed.
    Leaf,
    /// A granular object whose fields have this schema.
    Map(&'v Map<String, Value>, &'static Schema),
    /// A granular list: each item with its element and type.
    List(Vec<(Element, &'v Value)>, Ty),
}

/// Why the items of a list cannot be identified.
fn list_error(path: &[Element], why: impl std::fmt::Display) -> String {
    format!("{}: {why}", display_path(path))
}

/// The element of every item of a granular list, or why there is none.
fn list_items<'v>(
    ty: Ty,
    items: &'v [Value],
    path: &[Element],
) -> Result<Vec<(Element, &'v Value)>, String> {
    let mut out = Vec::with_capacity(items.len());
    let mut seen = HashSet::with_capacity(items.len());
    for item in items {
        let element = match ty {
            Ty::Keyed {
                key, extra_keys, ..
            } => keyed_element(key, extra_keys, item).map_err(|why| list_error(path, why))?,
            Ty::Set if item.is_object() || item.is_array() => {
                return Err(list_error(path, "a set may only hold scalars"));
            }
            Ty::Set => Element::value(item),
            Ty::Plain(_) | Ty::Atomic => return Err(list_error(path, "not a granular list")),
        };
        if !seen.insert(element.clone()) {
            return Err(list_error(
                path,
                format!("duplicate entries for key {}", element.display()),
            ));
        }
        out.push((element, item));
    }
    Ok(out)
}

fn keyed_element(
    key: &'static str,
    extra_keys: &'static [KeyField],
    item: &Value,
) -> Result<Element, String> {
    let Value::Object(map) = item else {
        return Err("a keyed list may only hold objects".to_owned());
    };
    let Some(key_value) = map.get(key) else {
        return Err(format!("an item lacks its key field {key:?}"));
    };
    let defaults: Vec<Value> = extra_keys
        .iter()
        .map(|k| k.default.map(Value::from).unwrap_or(Value::Null))
        .collect();
    let mut pairs = vec![(key, key_value)];
    for (extra, default) in extra_keys.iter().zip(&defaults) {
        match map.get(extra.name) {
            Some(value) => pairs.push((extra.name, value)),
            None if extra.default.is_some() => pairs.push((extra.name, default)),
            None => {}
        }
    }
    Ok(Element::key(pairs))
}

/// The shape of `value` under `ty`, tolerating lists that cannot be keyed (as leaves).
fn shape<'v>(ty: Ty, value: &'v Value, path: &[Element]) -> Shape<'v> {
    strict_shape(ty, value, path).unwrap_or(Shape::Leaf)
}

/// The shape of `value` under `ty`; an error for a granular list whose items cannot be
/// identified.
fn strict_shape<'v>(ty: Ty, value: &'v Value, path: &[Element]) -> Result<Shape<'v>, String> {
    Ok(match (ty, value) {
        (Ty::Atomic, _) => Shape::Leaf,
        (Ty::Plain(schema) | Ty::Keyed { schema, .. }, Value::Object(map)) => {
            Shape::Map(map, schema)
        }
        (Ty::Keyed { schema, .. }, Value::Array(items)) => {
            Shape::List(list_items(ty, items, path)?, Ty::Plain(schema))
        }
        (Ty::Set, Value::Array(items)) => Shape::List(list_items(ty, items, path)?, Ty::Atomic),
        _ => Shape::Leaf,
    })
}

/// The fields an applied configuration sets: every scalar and atomic value, every item of
/// a granular list, and every empty object or `null`. An error names a list whose items
/// cannot be identified.
pub(crate) fn field_set(ctx: Ctx, ty: Ty, value: &Value) -> Result<Set, String> {
    let mut set = Set::new();
    walk_field_set(ctx, ty, value, &mut Vec::new(), &mut set)?;
    Ok(set)
}

fn walk_field_set(
    ctx: Ctx,
    ty: Ty,
    value: &Value,
    path: &mut Vec<Element>,
    set: &mut Set,
) -> Result<(), String> {
    match strict_shape(ty, value, path)? {
        Shape::Leaf => set.insert(path),
        Shape::Map(map, schema) => {
            for (name, child) in map {
                path.push(Element::field(name));
                walk_field_set(ctx, ctx.field_ty(schema, name), child, path, set)?;
                let empty_object = child.as_object().is_some_and(Map::is_empty);
                if child.is_null() || empty_object {
                    set.insert(path);
                }
                path.pop();
            }
        }
        Shape::List(items, item_ty) => {
            for (element, item) in items {
                path.push(element);
                walk_field_set(ctx, item_ty, item, path, set)?;
                set.insert(path);
                path.pop();
            }
        }
    }
    Ok(())
}

/// How one object differs from another, as field sets. No path is in two of them.
#[derive(Debug, Default)]
pub(crate) struct Comparison {
    /// Present in both, with different values (leaves only).
    pub(crate) modified: Set,
    /// Present only in the new object (every node of a new subtree).
    pub(crate) added: Set,
    /// Present only in the old object (every node of a removed subtree).
    pub(crate) removed: Set,
}

/// Compares `old` with `new`, both of type `ty`.
pub(crate) fn compare(ctx: Ctx, ty: Ty, old: &Value, new: &Value) -> Comparison {
    let mut out = Comparison::default();
    walk_compare(ctx, ty, Some(old), Some(new), &mut Vec::new(), &mut out);
    out
}

fn walk_compare(
    ctx: Ctx,
    ty: Ty,
    old: Option<&Value>,
    new: Option<&Value>,
    path: &mut Vec<Element>,
    out: &mut Comparison,
) {
    let old_shape = old.map(|v| shape(ty, v, path));
    let new_shape = new.map(|v| shape(ty, v, path));
    match (old_shape, new_shape) {
        (Some(Shape::Map(old_map, schema)), Some(Shape::Map(new_map, _)))
            if !(old_map.is_empty() && new_map.is_empty()) =>
        {
            let names: Vec<&String> = old_map
                .keys()
                .chain(new_map.keys().filter(|k| !old_map.contains_key(*k)))
                .collect();
            for name in names {
                path.push(Element::field(name));
                let child_ty = ctx.field_ty(schema, name);
                walk_compare(
                    ctx,
                    child_ty,
                    old_map.get(name),
                    new_map.get(name),
                    path,
                    out,
                );
                path.pop();
            }
        }
        (Some(Shape::List(old_items, item_ty)), Some(Shape::List(new_items, _)))
            if !(old_items.is_empty() && new_items.is_empty()) =>
        {
            let old_by: HashMap<&Element, &Value> =
                old_items.iter().map(|(e, v)| (e, *v)).collect();
            let new_by: HashMap<&Element, &Value> =
                new_items.iter().map(|(e, v)| (e, *v)).collect();
            let elements: Vec<&Element> = old_items
                .iter()
                .map(|(e, _)| e)
                .chain(
                    new_items
                        .iter()
                        .map(|(e, _)| e)
                        .filter(|e| !old_by.contains_key(e)),
                )
                .collect();
            for element in elements {
                path.push(element.clone());
                walk_compare(
                    ctx,
                    item_ty,
                    old_by.get(element).copied(),
                    new_by.get(element).copied(),
                    path,
                    out,
                );
                path.pop();
            }
        }
        (Some(_), Some(_)) => {
            if old != new {
                out.modified.insert(path);
            }
        }
        (Some(old_shape), None) => {
            descend_one_side(ctx, old_shape, path, &mut out.removed);
            out.removed.insert(path);
        }
        (None, Some(new_shape)) => {
            descend_one_side(ctx, new_shape, path, &mut out.added);
            out.added.insert(path);
        }
        (None, None) => {}
    }
}

/// Records every node below a subtree present on one side only.
fn descend_one_side(ctx: Ctx, shape: Shape<'_>, path: &mut Vec<Element>, set: &mut Set) {
    match shape {
        Shape::Leaf => {}
        Shape::Map(map, schema) => {
            for (name, child) in map {
                path.push(Element::field(name));
                let child_shape = self::shape(ctx.field_ty(schema, name), child, path);
                descend_one_side(ctx, child_shape, path, set);
                set.insert(path);
                path.pop();
            }
        }
        Shape::List(items, item_ty) => {
            for (element, item) in items {
                path.push(element);
                let child_shape = self::shape(item_ty, item, path);
                descend_one_side(ctx, child_shape, path, set);
                set.insert(path);
                path.pop();
            }
        }
    }
}

/// Merges an applied configuration into a live object: objects merge field by field,
/// granular lists item by item (see [`merge_list_order`]), everything else is replaced
/// by the configuration's value. A `null` in the configuration removes the field.
/// `None` means "no value".
pub(crate) fn merge(ctx: Ctx, ty: Ty, live: Option<&Value>, config: &Value) -> Option<Value> {
    merge_at(ctx, ty, live, config, &mut Vec::new())
}

fn merge_at(
    ctx: Ctx,
    ty: Ty,
    live: Option<&Value>,
    config: &Value,
    path: &mut Vec<Element>,
) -> Option<Value> {
    if config.is_null() {
        return None;
    }
    let live_shape = live.map(|v| shape(ty, v, path));
    match (live_shape, shape(ty, config, path)) {
        (live_shape, Shape::Map(config_map, schema)) => {
            let mut out = match live_shape {
                Some(Shape::Map(live_map, _)) => live_map.clone(),
                _ => Map::new(),
            };
            for (name, child) in config_map {
                path.push(Element::field(name));
                let child_ty = ctx.field_ty(schema, name);
                match merge_at(ctx, child_ty, out.get(name), child, path) {
                    Some(merged) => {
                        out.insert(name.clone(), merged);
                    }
                    None => {
                        out.remove(name);
                    }
                }
                path.pop();
            }
            Some(Value::Object(out))
        }
        (live_shape, Shape::List(config_items, item_ty)) => {
            let live_items = match live_shape {
                Some(Shape::List(items, _)) => items,
                _ => Vec::new(),
            };
            let mut out = Vec::new();
            for (element, live_item, config_item) in merge_list_order(&live_items, &config_items) {
                path.push(element.clone());
                let merged = match config_item {
                    Some(config_item) => merge_at(ctx, item_ty, live_item, config_item, path),
                    None => live_item.cloned(),
                };
                path.pop();
                out.extend(merged);
            }
            Some(Value::Array(out))
        }
        (_, Shape::Leaf) => Some(config.clone()),
    }
}

/// The order of a merged granular list, after structured-merge-diff: items in both lists
/// follow the configuration's order, live-only items keep their place relative to the
/// shared items around them, and configuration-only items come right after the item that
/// precedes them in the configuration. Yields each item's element, live value and
/// configuration value.
pub(crate) fn merge_list_order<'a, 'v>(
    live: &'a [(Element, &'v Value)],
    config: &'a [(Element, &'v Value)],
) -> Vec<(&'a Element, Option<&'v Value>, Option<&'v Value>)> {
    let live_by: HashMap<&Element, &Value> = live.iter().map(|(e, v)| (e, *v)).collect();
    let config_by: HashMap<&Element, &Value> = config.iter().map(|(e, v)| (e, *v)).collect();
    // Shared items in configuration order: the live walk may only emit the next one.
    let shared: Vec<&Element> = config
        .iter()
        .map(|(e, _)| e)
        .filter(|e| live_by.contains_key(e))
        .collect();
    let mut next_shared = 0;
    let mut emitted: HashSet<&Element> = HashSet::new();
    let mut out = Vec::with_capacity(live.len().max(config.len()));
    let (mut l, mut c) = (0, 0);
    while l < live.len() || c < config.len() {
        if l < live.len() && c < config.len() {
            let live_element = &live[l].0;
            if *live_element == config[c].0 {
                out.push((
                    live_element,
                    Some(live[l].1),
                    config_by.get(live_element).copied(),
                ));
                emitted.insert(live_element);
                l += 1;
                c += 1;
                next_shared += 1;
                continue;
            }
            let is_next_shared = shared.get(next_shared) == Some(&live_element);
            if config_by.contains_key(live_element) && !is_next_shared {
                // A shared item the configuration moved later: emitted when reached there.
                l += 1;
                continue;
            }
        }
        if l < live.len() {
            let live_element = &live[l].0;
            if !config_by.contains_key(live_element) {
                out.push((live_element, Some(live[l].1), None));
                l += 1;
                continue;
            }
            if emitted.contains(live_element) {
                l += 1;
            }
        }
        if c < config.len() {
            let element = &config[c].0;
            if emitted.insert(element) {
                out.push((element, live_by.get(element).copied(), Some(config[c].1)));
            }
            if shared.get(next_shared) == Some(&element) {
                next_shared += 1;
            }
            c += 1;
        }
    }
    out
}

/// Removes from `value` the fields an applier owned last time (`last`) and no manager
/// owns now (`managed`, the new configuration's fields included), the way
/// structured-merge-diff prunes: a removed field takes its whole subtree, and a field
/// still owned is removed too when it sits under one that nobody owns any more (an
/// item the applier dropped takes the fields another manager owns inside it). Both sets
/// must hold their object fields as members ([`Set::with_fields_as_members`]).
/// Objects and lists emptied by the removal are removed as well.
pub(crate) fn prune(ctx: Ctx, ty: Ty, value: &mut Value, last: &Set, managed: &Set) {
    let level = Level {
        last,
        managed: Some(managed),
        under_last: false,
        under_unowned: false,
    };
    prune_at(ctx, ty, value, level, &mut Vec::new());
}

/// Where a pruning walk stands.
#[derive(Clone, Copy)]
struct Level<'s> {
    /// The applier's previous fields below this node.
    last: &'s Set,
    /// Everyone's current fields below this node.
    managed: Option<&'s Set>,
    /// This node or an ancestor is in `last`.
    under_last: bool,
    /// An ancestor is in `last`'s reach and owned by nobody.
    under_unowned: bool,
}

fn prune_at(ctx: Ctx, ty: Ty, value: &mut Value, level: Level<'_>, path: &mut Vec<Element>) {
    // The children's elements and types, in the order of the object's keys or the
    // list's items (computed first: the shape borrows `value`).
    let children: Vec<(Element, Ty)> = match shape(ty, value, path) {
        Shape::Leaf => return,
        Shape::Map(map, schema) => map
            .keys()
            .map(|name| (Element::field(name), ctx.field_ty(schema, name)))
            .collect(),
        Shape::List(items, item_ty) => items
            .into_iter()
            .map(|(element, _)| (element, item_ty))
            .collect(),
    };
    match value {
        Value::Object(map) => {
            let names: Vec<String> = map.keys().cloned().collect();
            for (name, (element, child_ty)) in names.into_iter().zip(children) {
                if let Some(child) = map.get_mut(&name)
                    && prune_child(ctx, child_ty, child, &element, level, path)
                {
                    map.remove(&name);
                }
            }
        }
        Value::Array(items) => {
            let mut children = children.into_iter();
            items.retain_mut(|item| match children.next() {
                Some((element, child_ty)) => {
                    !prune_child(ctx, child_ty, item, &element, level, path)
                }
                None => true,
            });
        }
        _ => {}
    }
}

/// Prunes below the child `element` of a node at `level`; true when the child must go.
fn prune_child(
    ctx: Ctx,
    ty: Ty,
    child: &mut Value,
    element: &Element,
    level: Level<'_>,
    path: &mut Vec<Element>,
) -> bool {
    let in_last = level.last.has_member(element);
    let owned = level.managed.is_some_and(|m| m.has_member(element));
    if in_last && (!owned || level.under_unowned) {
        return true;
    }
    let Some(last) = level.last.child(element) else {
        return false;
    };
    let under_last = level.under_last || in_last;
    let below = Level {
        last,
        managed: level.managed.and_then(|m| m.child(element)),
        under_last,
        under_unowned: level.under_unowned || (under_last && !owned),
    };
    let was_empty = is_empty_container(child);
    path.push(element.clone());
    prune_at(ctx, ty, child, below, path);
    path.pop();
    !was_empty && is_empty_container(child)
}

fn is_empty_container(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}
