//! `drover delete KIND NAME... | -f FILE | KIND -l SEL`, printing `kind "name" deleted`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use kube::api::{DeleteParams, ListParams, PropagationPolicy};

use super::manifest;
use super::{
    AlreadyReported, ClientArgs, Ctx, Resource, error_line, is_not_found, kinds_and_names,
};

/// Arguments of `drover delete`.
#[derive(clap::Args, Debug)]
pub struct DeleteArgs {
    /// Resource type, or TYPE/NAME (then every NAME is TYPE/NAME too).
    #[arg(value_name = "KIND")]
    pub resource: Option<String>,
    /// Objects to delete.
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
    #[command(flatten)]
    pub client: ClientArgs,
    /// Delete the objects a manifest file, directory or `-` describes; repeatable.
    #[arg(short = 'f', long = "filename", value_name = "FILE|DIR|-", conflicts_with_all = ["resource", "selector"])]
    pub files: Vec<PathBuf>,
    /// Delete every object of KIND matching this label selector.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// What happens to dependents: `background` (the default), `foreground` or `orphan`.
    #[arg(long, value_enum)]
    pub cascade: Option<Cascade>,
    /// Seconds the object gets to stop gracefully (0: at once; negative: its own default).
    #[arg(long, allow_negative_numbers = true)]
    pub grace_period: Option<i64>,
    /// Treat "not found" as success.
    #[arg(long)]
    pub ignore_not_found: bool,
}

/// `--cascade` values.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cascade {
    /// The garbage collector deletes dependents after the owner.
    Background,
    /// Dependents go first; the owner waits for them.
    Foreground,
    /// Dependents stay.
    Orphan,
}

/// One object to delete.
struct Target<'a> {
    resource: &'a Resource,
    namespace: Option<String>,
    name: String,
}

/// Runs `drover delete`.
pub async fn run(args: DeleteArgs) -> Result<()> {
    let docs = if args.files.is_empty() {
        Vec::new()
    } else {
        manifest::read_all(&args.files)?
    };
    let ctx = Ctx::connect(&args.client).await?;
    let resources = ctx.resources().await?;
    let mut targets = Vec::new();
    let mut failed = false;
    if !args.files.is_empty() {
        for doc in &docs {
            let resource = resources.by_api_version_kind(doc.api_version(), doc.kind())?;
            let namespace = resource.namespaced.then(|| {
                doc.namespace()
                    .map(str::to_string)
                    .unwrap_or_else(|| ctx.namespace.clone())
            });
            targets.push(Target {
                resource,
                namespace,
                name: doc.name().to_string(),
            });
        }
    } else {
        let Some(word) = args.resource.as_deref() else {
            bail!("you must provide one or more resources by argument or filename (-f)");
        };
        let namespace = |r: &Resource| r.namespaced.then(|| ctx.namespace.clone());
        for request in kinds_and_names(word, &args.names)? {
            let resource = resources.resolve(&request.kind)?;
            match (&args.selector, request.names.is_empty()) {
                (Some(_), false) => bail!("name cannot be provided when a selector is specified"),
                (None, true) => bail!(
                    "resource(s) were provided, but no name was specified (use -l to delete by label)"
                ),
                (Some(selector), true) => {
                    let api = ctx.api(resource, namespace(resource).as_deref());
                    let list = api
                        .list_metadata(&ListParams::default().labels(selector))
                        .await
                        .with_context(|| format!("listing {}", resource.group_resource()))?;
                    if list.items.is_empty() {
                        eprintln!("No resources found");
                    }
                    for obj in list.items {
                        targets.push(Target {
                            resource,
                            namespace: obj.metadata.namespace.clone(),
                            name: obj.metadata.name.clone().unwrap_or_default(),
                        });
                    }
                }
                (None, false) => {
                    for name in request.names {
                        targets.push(Target {
                            resource,
                            namespace: namespace(resource),
                            name,
                        });
                    }
                }
            }
        }
    }
    let params = delete_params(&args);
    for t in &targets {
        let api = ctx.api(t.resource, t.namespace.as_deref());
        match api.delete(&t.name, &params).await {
            Ok(_) => println!("{} \"{}\" deleted", t.resource.kind_ref(), t.name),
            Err(e) if args.ignore_not_found && is_not_found(&e) => {}
            Err(e) => {
                eprintln!("{}", error_line(&e.into()));
                failed = true;
            }
        }
    }
    if failed {
        return Err(AlreadyReported.into());
    }
    Ok(())
}

fn delete_params(args: &DeleteArgs) -> DeleteParams {
    DeleteParams {
        propagation_policy: args.cascade.map(|c| match c {
            Cascade::Background => PropagationPolicy::Background,
            Cascade::Foreground => PropagationPolicy::Foreground,
            Cascade::Orphan => PropagationPolicy::Orphan,
        }),
        grace_period_seconds: args
            .grace_period
            .filter(|g| *g >= 0)
            .map(|g| u32::try_from(g).unwrap_or(u32::MAX)),
        ..DeleteParams::default()
    }
}
