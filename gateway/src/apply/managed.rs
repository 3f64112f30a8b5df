//! `metadata.managedFields`: reading and writing its entries, one per manager identity.

use serde_json::{Map, Value, json};

use super::Operation;
use super::fieldset::Set;

/// Name of the entry that absorbs the oldest Update entries past the cap.
const ANCIENT_CHANGES: &str = "ancient-changes";

/// One `managedFields` entry.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Entry {
    pub(crate) manager: String,
    pub(crate) operation: Operation,
    pub(crate) api_version: String,
    /// `""` for the main resource.
    pub(crate) subresource: String,
    /// RFC 3339, as stored; `None` when the entry had none.
    pub(crate) time: Option<String>,
    pub(crate) set: Set,
}

impl Entry {
    /// Whether this entry belongs to `manager` doing `operation` on `subresource`. The
    /// API version is part of an Update manager's identity but not of an applier's, as in
    /// apimachinery's `BuildManagerIdentifier`.
    pub(crate) fn is(
        &self,
        manager: &str,
        operation: Operation,
        api_version: &str,
        subresource: &str,
    ) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource == subresource
            && (operation == Operation::Apply || self.api_version == api_version)
    }

    fn same_identity(&self, other: &Entry) -> bool {
        self.is(
            &other.manager,
            other.operation,
            &other.api_version,
            &other.subresource,
        )
    }

    fn seconds(&self) -> i64 {
        self.time
            .as_deref()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .map_or(0, |t| t.as_second())
    }

    fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("manager".into(), json!(self.manager));
        out.insert("operation".into(), json!(self.operation.as_str()));
        out.insert("apiVersion".into(), json!(self.api_version));
        if let Some(time) = &self.time {
            out.insert("time".into(), json!(time));
        }
        out.insert("fieldsType".into(), json!("FieldsV1"));
        out.insert("fieldsV1".into(), self.set.to_fields_v1());
        if !self.subresource.is_empty() {
            out.insert("subresource".into(), json!(self.subresource));
        }
        Value::Object(out)
    }

    fn from_json(index: usize, entry: &Value) -> Result<Entry, String> {
        let text = |field: &str| entry.get(field).and_then(Value::as_str);
        let operation = match text("operation") {
            Some("Apply") => Operation::Apply,
            Some("Update") => Operation::Update,
            _ => return Err(format!("entry {index}: operation must be Apply or Update")),
        };
        let api_version = text("apiVersion")
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("entry {index}: apiVersion must not be empty"))?;
        if text("fieldsType") != Some("FieldsV1") {
            return Err(format!("entry {index}: fieldsType must be FieldsV1"));
        }
        let set = match entry.get("fieldsV1") {
            None | Some(Value::Null) => Set::new(),
            Some(fields) => {
                Set::from_fields_v1(fields).map_err(|error| format!("entry {index}: {error}"))?
            }
        };
        Ok(Entry {
            manager: text("manager").unwrap_or_default().to_owned(),
            operation,
            api_version: api_version.to_owned(),
            subresource: text("subresource").unwrap_or_default().to_owned(),
            time: text("time").map(str::to_owned),
            set,
        })
    }
}

/// Removes `metadata.managedFields` from `obj` and returns it.
pub(crate) fn take(obj: &mut Value) -> Option<Value> {
    obj.get_mut("metadata")?
        .as_object_mut()?
        .remove("managedFields")
}

/// Sets `metadata.managedFields` of `obj` to `entries`, sorted as the API server sorts
/// them (Apply before Update, then oldest first, then by manager); no entries removes
/// the field. Does nothing to an object without a `metadata` object.
pub(crate) fn put(obj: &mut Value, mut entries: Vec<Entry>) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    entries.retain(|entry| !entry.set.is_empty());
    if entries.is_empty() {
        meta.remove("managedFields");
        return;
    }
    entries.sort_by(|a, b| {
        (
            a.operation,
            a.seconds(),
            &a.manager,
            &a.api_version,
            &a.subresource,
        )
            .cmp(&(
                b.operation,
                b.seconds(),
                &b.manager,
                &b.api_version,
                &b.subresource,
            ))
    });
    let encoded = entries.iter().map(Entry::to_json).collect();
    meta.insert("managedFields".into(), Value::Array(encoded));
}

/// Reads `managedFields` (absent or `null`: no entries). Two entries of one identity
/// collapse into the later one, as in apimachinery's decoding into a map.
pub(crate) fn decode(fields: Option<&Value>) -> Result<Vec<Entry>, String> {
    let items = match fields {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err("managedFields must be a list".to_owned()),
    };
    let mut entries: Vec<Entry> = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let entry = Entry::from_json(index, item)?;
        entries.retain(|seen| !seen.same_identity(&entry));
        entries.push(entry);
    }
    Ok(entries)
}

/// Whether a client asked to clear `managedFields`: an empty list, or a list holding one
/// empty entry.
pub(crate) fn is_reset(fields: Option<&Value>) -> bool {
    match fields {
        Some(Value::Array(items)) => match items.as_slice() {
            [] => true,
            [only] => only.as_object().is_some_and(Map::is_empty),
            _ => false,
        },
        _ => false,
    }
}

/// Keeps at most `max` Update entries by merging the oldest ones, per API version, into an
/// `ancient-changes` entry (apimachinery's `capManagersManager`).
pub(crate) fn cap_update_managers(entries: &mut Vec<Entry>, max: usize) {
    let mut n_updates = entries
        .iter()
        .filter(|e| e.operation == Operation::Update)
        .count();
    if n_updates <= max {
        return;
    }
    let mut updates: Vec<Entry> = Vec::new();
    entries.retain(|e| {
        if e.operation == Operation::Update {
            updates.push(e.clone());
            false
        } else {
            true
        }
    });
    updates.sort_by(|a, b| (a.seconds(), &a.manager).cmp(&(b.seconds(), &b.manager)));
    // The first entry of each API version among the merged ones becomes its bucket.
    let mut first_of_version: Vec<(String, usize)> = Vec::new();
    let mut kept: Vec<Entry> = Vec::new();
    for entry in updates {
        if n_updates <= max {
            kept.push(entry);
            continue;
        }
        let first = first_of_version
            .iter()
            .find(|(version, _)| *version == entry.api_version)
            .map(|(_, idx)| *idx);
        match first.and_then(|idx| kept.get_mut(idx)) {
            Some(bucket) => {
                bucket.manager = ANCIENT_CHANGES.to_owned();
                bucket.subresource = String::new();
                bucket.set = bucket.set.union(&entry.set);
                bucket.time = entry.time;
                n_updates -= 1;
            }
            None => {
                first_of_version.push((entry.api_version.clone(), kept.len()));
                kept.push(entry);
            }
        }
    }
    entries.extend(kept);
}
