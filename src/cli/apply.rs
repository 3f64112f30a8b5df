//! `drover apply -f FILE|DIR|-`: makes the server's objects match manifests, printing
//! `kind/name created|configured|unchanged` per object like kubectl.
//!
//! By default this is server-side apply (PATCH `application/apply-patch+yaml`,
//! `fieldManager=drover`): the gateway merges the manifest's fields and remembers which
//! fields drover applied, so a field dropped from the manifest is removed and a field
//! another manager changed is a conflict (`--force-conflicts` takes it over).
//! `--server-side=false` instead reads the object and creates or replaces it (see
//! [`replace_body`] for what a replace keeps).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use serde_json::{Map, Value};

use super::manifest::{self, Document};
use super::{AlreadyReported, ClientArgs, Ctx, error_line, to_value};

/// The field manager drover's writes are recorded under.
pub const FIELD_MANAGER: &str = "drover";

/// Arguments of `drover apply`.
#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    /// Manifest file, directory (its .yaml, .yml and .json files) or `-` for standard
    /// input; repeatable.
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILE|DIR|-",
        required = true
    )]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub client: ClientArgs,
    /// With server-side apply: take ownership of fields other managers own instead of
    /// failing with a conflict. (Read-and-replace always overwrites.)
    #[arg(long)]
    pub force_conflicts: bool,
    /// Server-side apply (the default); `--server-side=false` reads and replaces instead.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub server_side: bool,
}

/// What applying one object did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It did not exist.
    Created,
    /// It existed and changed.
    Configured,
    /// It existed and already matched.
    Unchanged,
}

impl Outcome {
    fn verb(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Configured => "configured",
            Outcome::Unchanged => "unchanged",
        }
    }
}

/// How `apply` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// GET, then POST when absent, else PUT at the live resourceVersion.
    ReadAndReplace,
    /// PATCH with `application/apply-patch+yaml`.
    ServerSide { force: bool },
}

/// Runs `drover apply`: every object in order; an object that fails prints its error and
/// the rest still apply (exit status 1 then).
pub async fn run(args: ApplyArgs) -> Result<()> {
    let docs = manifest::read_all(&args.files)?;
    if docs.is_empty() {
        bail!("no objects passed to apply");
    }
    let ctx = Ctx::connect(&args.client).await?;
    let mode = mode(&args);
    let mut failed = false;
    for doc in &docs {
        match apply_document(&ctx, doc, mode).await {
            Ok((kind_ref, outcome)) => println!("{kind_ref}/{} {}", doc.name(), outcome.verb()),
            Err(e) => {
                eprintln!("{}", error_line(&e));
                failed = true;
            }
        }
    }
    if failed {
        return Err(AlreadyReported.into());
    }
    Ok(())
}

/// Server-side apply unless `--server-side=false` asked for read-and-replace.
fn mode(args: &ApplyArgs) -> Mode {
    if args.server_side {
        Mode::ServerSide {
            force: args.force_conflicts,
        }
    } else {
        Mode::ReadAndReplace
    }
}

async fn apply_document(ctx: &Ctx, doc: &Document, mode: Mode) -> Result<(String, Outcome)> {
    let resources = ctx.resources().await?;
    let resource = resources.by_api_version_kind(doc.api_version(), doc.kind())?;
    let name = doc.name();
    if name.is_empty() {
        bail!(
            "error from {}: {} has no metadata.name",
            doc.source,
            doc.kind()
        );
    }
    let namespace = if resource.namespaced {
        match doc.namespace() {
            Some(ns) if ctx.namespace_given && ns != ctx.namespace => bail!(
                "the namespace from the provided object \"{ns}\" does not match the namespace \"{}\". You must pass '--namespace={ns}' to perform this operation.",
                ctx.namespace
            ),
            Some(ns) => Some(ns.to_string()),
            None => Some(ctx.namespace.clone()),
        }
    } else {
        None
    };
    let mut desired = doc.object.clone();
    if let Some(ns) = &namespace
        && let Some(meta) = desired.get_mut("metadata").and_then(Value::as_object_mut)
    {
        meta.insert("namespace".into(), ns.clone().into());
    }
    let api = ctx.api(resource, namespace.as_deref());
    let outcome = apply_object(&api, name, desired, mode).await?;
    Ok((resource.kind_ref(), outcome))
}

/// Applies one object with the chosen mode (see [`mode`], the switch point).
async fn apply_object(
    api: &Api<DynamicObject>,
    name: &str,
    desired: Value,
    mode: Mode,
) -> Result<Outcome> {
    let live = api.get_opt(name).await?;
    match mode {
        Mode::ServerSide { force } => server_side_apply(api, name, desired, live, force).await,
        Mode::ReadAndReplace => read_and_replace(api, name, desired, live).await,
    }
}

/// Server-side apply: the server merges the manifest's fields, owned by [`FIELD_MANAGER`].
/// `live` (read before) tells created from configured from unchanged.
async fn server_side_apply(
    api: &Api<DynamicObject>,
    name: &str,
    desired: Value,
    live: Option<DynamicObject>,
    force: bool,
) -> Result<Outcome> {
    let mut params = PatchParams::apply(FIELD_MANAGER);
    if force {
        params = params.force();
    }
    let applied = api.patch(name, &params, &Patch::Apply(&desired)).await?;
    Ok(match live {
        None => Outcome::Created,
        Some(l) if l.metadata.resource_version == applied.metadata.resource_version => {
            Outcome::Unchanged
        }
        Some(_) => Outcome::Configured,
    })
}

/// Read-and-replace (`--server-side=false`): create when absent; otherwise replace (PUT at
/// the live resourceVersion) with [`replace_body`], skipping the write when that equals
/// the live object.
async fn read_and_replace(
    api: &Api<DynamicObject>,
    name: &str,
    desired: Value,
    live: Option<DynamicObject>,
) -> Result<Outcome> {
    let Some(live) = live else {
        let obj: DynamicObject =
            serde_json::from_value(desired).context("the manifest is not a Kubernetes object")?;
        api.create(&PostParams::default(), &obj).await?;
        return Ok(Outcome::Created);
    };
    let live = to_value(&live);
    let body = replace_body(&live, desired);
    if body == live {
        return Ok(Outcome::Unchanged);
    }
    let obj: DynamicObject =
        serde_json::from_value(body).context("the manifest is not a Kubernetes object")?;
    let written = api.replace(name, &PostParams::default(), &obj).await?;
    // The store writes nothing when nothing changed, and then keeps the resourceVersion.
    if to_value(&written).pointer("/metadata/resourceVersion")
        == live.pointer("/metadata/resourceVersion")
    {
        return Ok(Outcome::Unchanged);
    }
    Ok(Outcome::Configured)
}

/// What the read-and-replace fallback PUTs: the manifest's top-level fields replace the
/// live ones (so a field removed from a manifest's `spec` goes away); top-level fields the
/// manifest leaves out (`status`, a Namespace's defaulted `spec`) stay as they are; in
/// `metadata`, the manifest's labels and annotations are added to the live ones and its
/// other fields replace theirs, while everything the server set (uid,
/// resourceVersion, creationTimestamp, generation, finalizers, ...) stays. Server-side apply
/// replaces this approximation of kubectl's three-way merge.
pub fn replace_body(live: &Value, desired: Value) -> Value {
    let (Some(live_map), Value::Object(desired_map)) = (live.as_object(), desired) else {
        return live.clone();
    };
    let mut body: Map<String, Value> = live_map.clone();
    for (key, value) in desired_map {
        if key == "metadata" {
            let meta = body
                .entry("metadata")
                .or_insert_with(|| Value::Object(Map::new()));
            if let (Some(meta), Value::Object(desired_meta)) = (meta.as_object_mut(), value) {
                merge_metadata(meta, desired_meta);
            }
        } else if key != "status" {
            body.insert(key, value);
        }
    }
    Value::Object(body)
}

fn merge_metadata(meta: &mut Map<String, Value>, desired: Map<String, Value>) {
    for (key, value) in desired {
        match (key.as_str(), value) {
            ("labels" | "annotations", Value::Object(add)) => {
                let entry = meta.entry(key).or_insert_with(|| Value::Object(Map::new()));
                match entry.as_object_mut() {
                    Some(existing) => existing.extend(add),
                    None => *entry = Value::Object(add),
                }
            }
            // Set by the server; a manifest copied from `get -o yaml` carries stale ones.
            (
                "uid" | "resourceVersion" | "creationTimestamp" | "generation" | "managedFields"
                | "deletionTimestamp" | "selfLink",
                _,
            ) => {}
            (_, value) => {
                meta.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(live: Value, desired: Value, expected: Value) {
        assert_eq!(replace_body(&live, desired.clone()), expected, "{desired}");
    }

    #[test]
    fn replace_body_keeps_server_fields_and_replaces_given_ones() {
        let live = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "d", "uid": "u", "resourceVersion": "7",
                         "labels": {"a": "1", "added-by-someone": "x"}},
            "data": {"k": "v", "old": "gone"},
        });
        // Same manifest: the body equals the live object, so nothing is written.
        check(
            live.clone(),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "c", "namespace": "d", "labels": {"a": "1"}},
                   "data": {"k": "v", "old": "gone"}}),
            live.clone(),
        );
        // A changed manifest replaces data wholesale and adds labels.
        check(
            live.clone(),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "c", "namespace": "d", "labels": {"b": "2"},
                                "uid": "stale", "resourceVersion": "1"},
                   "data": {"k": "w"}, "status": {"ignored": true}}),
            json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "c", "namespace": "d", "uid": "u", "resourceVersion": "7",
                             "labels": {"a": "1", "added-by-someone": "x", "b": "2"}},
                "data": {"k": "w"},
            }),
        );
    }

    #[test]
    fn replace_body_keeps_defaulted_top_level_fields() {
        let live = json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "n", "labels": {"kubernetes.io/metadata.name": "n"}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"},
        });
        check(
            live.clone(),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}}),
            live,
        );
        // Garbage in either place never panics.
        check(json!("x"), json!({"a": 1}), json!("x"));
        check(
            json!({"metadata": "odd"}),
            json!({"metadata": {"labels": {"a": "1"}}}),
            json!({"metadata": "odd"}),
        );
    }
}
