//! Sets of field paths and their `FieldsV1` wire form.
//!
//! A path is a list of [`Element`]s: `f:<name>` for an object field, `k:{...}` for an item
//! of a list keyed by merge keys, `v:<json>` for an item of a set of scalars and `i:<n>` for
//! a list index (only ever read from stored entries; drover never writes it). A [`Set`] is a
//! tree: at each level, `members` are the paths that end there and `children` lead deeper.
//! `FieldsV1` writes the tree as nested objects where `{}` is a member leaf and `".": {}`
//! marks a member that also has children.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

/// One step of a field path, held in its `FieldsV1` spelling (`f:spec`,
/// `k:{"name":"nginx"}`, `v:"a"`), which is canonical: key objects are written with their
/// keys sorted and no spaces, so equal elements compare equal as strings.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Element(String);

impl Element {
    /// The object field `name`.
    pub(crate) fn field(name: &str) -> Element {
        Element(format!("f:{name}"))
    }

    /// The item of a keyed list whose key fields have these values.
    pub(crate) fn key(mut pairs: Vec<(&str, &Value)>) -> Element {
        pairs.sort_by(|a, b| a.0.cmp(b.0));
        let fields: Vec<String> = pairs
            .iter()
            .map(|(name, value)| format!("{}:{}", json_string(name), canonical_json(value)))
            .collect();
        Element(format!("k:{{{}}}", fields.join(",")))
    }

    /// The item of a set of scalars equal to `value`.
    pub(crate) fn value(value: &Value) -> Element {
        Element(format!("v:{}", canonical_json(value)))
    }

    /// Parses a `FieldsV1` key, canonicalizing the JSON of `k:` and `v:` elements.
    pub(crate) fn parse(text: &str) -> Result<Element, String> {
        let invalid = |why: &str| format!("invalid field path element {text:?}: {why}");
        let Some((prefix, rest)) = text.split_once(':') else {
            return Err(invalid("missing colon"));
        };
        match prefix {
            "f" => Ok(Element(text.to_owned())),
            "k" => match serde_json::from_str::<Value>(rest) {
                Ok(Value::Object(map)) if !map.is_empty() => Ok(Element::key(
                    map.iter().map(|(k, v)| (k.as_str(), v)).collect(),
                )),
                _ => Err(invalid("a key must be a non-empty json object")),
            },
            "v" => serde_json::from_str::<Value>(rest)
                .map(|value| Element::value(&value))
                .map_err(|_| invalid("a value must be json")),
            "i" => rest
                .parse::<usize>()
                .map(|_| Element(text.to_owned()))
                .map_err(|_| invalid("an index must be a number")),
            _ => Err(invalid("unknown element type")),
        }
    }

    /// Whether this is an object field (`f:`).
    pub(crate) fn is_field(&self) -> bool {
        self.0.starts_with("f:")
    }

    /// The element as Kubernetes prints it in a path: `.name`, `[name="nginx"]`,
    /// `[=value]`, `[0]`.
    pub(crate) fn display(&self) -> String {
        let (prefix, rest) = self.0.split_at(2);
        match prefix {
            "f:" => format!(".{rest}"),
            "k:" => match serde_json::from_str::<Map<String, Value>>(rest) {
                Ok(map) => {
                    let fields: Vec<String> = map
                        .iter()
                        .map(|(k, v)| format!("{k}={}", canonical_json(v)))
                        .collect();
                    format!("[{}]", fields.join(","))
                }
                Err(_) => format!("[{rest}]"),
            },
            "v:" => format!("[={rest}]"),
            _ => format!("[{rest}]"),
        }
    }

    /// The `FieldsV1` spelling.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// A path as Kubernetes prints it in conflicts: `.spec.template.spec.containers[name="a"].image`.
pub(crate) fn display_path(path: &[Element]) -> String {
    path.iter().map(Element::display).collect()
}

fn json_string(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

/// Compact JSON with object keys sorted (serde_json's map is ordered unless its
/// `preserve_order` feature is on; sorting here keeps the spelling canonical either way).
fn canonical_json(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut fields: Vec<(&String, &Value)> = map.iter().collect();
            fields.sort_by(|a, b| a.0.cmp(b.0));
            let fields: Vec<String> = fields
                .iter()
                .map(|(k, v)| format!("{}:{}", json_string(k), canonical_json(v)))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(canonical_json).collect();
            format!("[{}]", items.join(","))
        }
        scalar => scalar.to_string(),
    }
}

/// A set of field paths, as a tree. Children are never empty sets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Set {
    members: BTreeSet<Element>,
    children: BTreeMap<Element, Set>,
}

impl Set {
    /// An empty set.
    pub(crate) fn new() -> Set {
        Set::default()
    }

    /// Whether the set holds no path.
    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    /// Adds `path` (the empty path is ignored: the root is never a member).
    pub(crate) fn insert(&mut self, path: &[Element]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    /// Whether `path` is a member.
    #[cfg(test)]
    pub(crate) fn contains(&self, path: &[Element]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self
                .children
                .get(first)
                .is_some_and(|child| child.contains(rest)),
        }
    }

    /// Whether `element` is a member at this level.
    pub(crate) fn has_member(&self, element: &Element) -> bool {
        self.members.contains(element)
    }

    /// The paths below `element`, if any.
    pub(crate) fn child(&self, element: &Element) -> Option<&Set> {
        self.children.get(element)
    }

    /// Paths in `self` or `other`.
    pub(crate) fn union(&self, other: &Set) -> Set {
        let mut out = self.clone();
        out.members.extend(other.members.iter().cloned());
        for (element, child) in &other.children {
            let merged = match out.children.get(element) {
                Some(mine) => mine.union(child),
                None => child.clone(),
            };
            out.children.insert(element.clone(), merged);
        }
        out
    }

    /// Paths in `self` but not in `other` (exact paths: a member of `other` does not
    /// remove the paths below it).
    pub(crate) fn difference(&self, other: &Set) -> Set {
        let mut out = Set {
            members: self.members.difference(&other.members).cloned().collect(),
            children: BTreeMap::new(),
        };
        for (element, child) in &self.children {
            let rest = match other.children.get(element) {
                Some(theirs) => child.difference(theirs),
                None => child.clone(),
            };
            if !rest.is_empty() {
                out.children.insert(element.clone(), rest);
            }
        }
        out
    }

    /// Paths in both sets.
    pub(crate) fn intersection(&self, other: &Set) -> Set {
        let mut out = Set {
            members: self.members.intersection(&other.members).cloned().collect(),
            children: BTreeMap::new(),
        };
        for (element, child) in &self.children {
            if let Some(theirs) = other.children.get(element) {
                let both = child.intersection(theirs);
                if !both.is_empty() {
                    out.children.insert(element.clone(), both);
                }
            }
        }
        out
    }

    /// The set with every object field that leads to a member made a member too (a set
    /// holding `.spec.replicas` then also holds `.spec`). Pruning works on these: a field
    /// that no manager reaches is one that nobody owns.
    pub(crate) fn with_fields_as_members(&self) -> Set {
        let mut out = Set {
            members: self.members.clone(),
            children: BTreeMap::new(),
        };
        for (element, child) in &self.children {
            if element.is_field() {
                out.members.insert(element.clone());
            }
            out.children
                .insert(element.clone(), child.with_fields_as_members());
        }
        out
    }

    /// Keeps only the paths under the top-level elements for which `keep` is true.
    pub(crate) fn retain_top(&mut self, keep: impl Fn(&Element) -> bool) {
        self.members.retain(|element| keep(element));
        self.children.retain(|element, _| keep(element));
    }

    /// Every member path, depth first in element order.
    pub(crate) fn paths(&self) -> Vec<Vec<Element>> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Vec<Element>, out: &mut Vec<Vec<Element>>) {
        let elements: BTreeSet<&Element> =
            self.members.iter().chain(self.children.keys()).collect();
        for element in elements {
            prefix.push(element.clone());
            if self.members.contains(element) {
                out.push(prefix.clone());
            }
            if let Some(child) = self.children.get(element) {
                child.collect_paths(prefix, out);
            }
            prefix.pop();
        }
    }

    /// The `FieldsV1` object.
    pub(crate) fn to_fields_v1(&self) -> Value {
        let mut out = Map::new();
        for element in &self.members {
            out.insert(element.as_str().to_owned(), Value::Object(Map::new()));
        }
        for (element, child) in &self.children {
            let mut encoded = match child.to_fields_v1() {
                Value::Object(map) => map,
                _ => Map::new(),
            };
            if self.members.contains(element) {
                encoded.insert(".".to_owned(), Value::Object(Map::new()));
            }
            out.insert(element.as_str().to_owned(), Value::Object(encoded));
        }
        Value::Object(out)
    }

    /// Reads a `FieldsV1` object.
    pub(crate) fn from_fields_v1(fields: &Value) -> Result<Set, String> {
        let Value::Object(map) = fields else {
            return Err("fieldsV1 must be a json object".to_owned());
        };
        let mut out = Set::new();
        for (key, sub) in map {
            if key == "." {
                continue;
            }
            let element = Element::parse(key)?;
            let Value::Object(sub_map) = sub else {
                return Err(format!("fieldsV1 entry {key:?} must be a json object"));
            };
            if sub_map.is_empty() || sub_map.contains_key(".") {
                out.members.insert(element.clone());
            }
            let child = Set::from_fields_v1(sub)?;
            if !child.is_empty() {
                out.children.insert(element, child);
            }
        }
        Ok(out)
    }
}
