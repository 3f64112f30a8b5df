//! `drover get KIND [NAME...]`: the server-side Table as kubectl's columns, or the objects as
//! YAML, JSON or `kind/name`; `-w` follows changes.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use http::header::{ACCEPT, HeaderValue};
use kube::Resource as _;
use kube::api::{GetParams, ListParams};
use kube::core::DynamicObject;
use serde_json::Value;

use super::print::{self, TableLayout};
use super::watch::{self, Change};
use super::{AlreadyReported, ClientArgs, Ctx, Resource, error_line, kinds_and_names, to_value};

/// What kubectl asks for: a meta.k8s.io Table, with plain JSON as the fallback.
pub const TABLE_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

/// Arguments of `drover get`.
#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// Resource type (`pods`, `po`, `deploy`, `deployments.apps`; comma-separated for
    /// several), or TYPE/NAME.
    #[arg(value_name = "KIND")]
    pub resource: String,
    /// Objects to get (all when none); TYPE/NAME forms when KIND is one.
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
    #[command(flatten)]
    pub client: ClientArgs,
    /// List across all namespaces.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    pub all_namespaces: bool,
    /// Label selector (`app=web,tier!=db`).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Field selector (`status.phase=Running`).
    #[arg(long)]
    pub field_selector: Option<String>,
    /// Output format (default: columns).
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Output>,
    /// After printing, follow changes.
    #[arg(short = 'w', long)]
    pub watch: bool,
}

/// `-o` values.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Columns, including the ones shown only when asked for.
    Wide,
    /// The objects as YAML.
    Yaml,
    /// The objects as JSON.
    Json,
    /// `kind/name` per object.
    Name,
}

/// Runs `drover get`.
pub async fn run(args: GetArgs) -> Result<()> {
    let ctx = Ctx::connect(&args.client).await?;
    let requests = kinds_and_names(&args.resource, &args.names)?;
    if args.watch && (requests.len() != 1 || requests[0].names.len() > 1) {
        bail!("you may only specify a single resource type and at most one name with --watch");
    }
    let mut resolved = Vec::new();
    for r in &requests {
        resolved.push((
            ctx.resources().await?.resolve(&r.kind)?.clone(),
            r.names.clone(),
        ));
    }
    let several = resolved.len() > 1 || args.resource.contains('/');
    let mut failed = false;
    let mut printed_any = false;
    let mut objects = Vec::new();
    let mut single_object = false;
    for (resource, names) in &resolved {
        let namespace = scope(&ctx, resource, args.all_namespaces);
        match args.output {
            None | Some(Output::Wide) => {
                let layout = TableLayout {
                    wide: args.output == Some(Output::Wide),
                    namespace_column: args.all_namespaces && resource.namespaced,
                    name_prefix: several.then(|| format!("{}/", resource.kind_ref())),
                };
                let table =
                    match get_tables(&ctx, resource, namespace, names, &args, &mut failed).await? {
                        Some(t) => t,
                        None => continue,
                    };
                let (header, rows) = print::table_cells(&table, &layout);
                let header_printed = !rows.is_empty();
                if header_printed {
                    if printed_any {
                        println!();
                    }
                    printed_any = true;
                    let mut lines = vec![header.clone()];
                    lines.extend(rows);
                    print!(
                        "{}",
                        print::tabwrite(&lines, print::GET_MIN_WIDTH, print::GET_PADDING)
                    );
                }
                if args.watch {
                    let watched = Watched {
                        resource,
                        namespace,
                        names,
                        layout: &layout,
                    };
                    return watch_table(&ctx, &watched, &args, &table, header, header_printed)
                        .await;
                }
            }
            Some(_) => {
                let api = ctx.api(resource, namespace);
                if names.is_empty() {
                    let list = api
                        .list(&list_params(&args))
                        .await
                        .with_context(|| format!("listing {}", resource.group_resource()))?;
                    objects.extend(list.items.iter().map(|o| with_type(resource, to_value(o))));
                } else {
                    for name in names {
                        match api.get(name).await {
                            Ok(o) => objects.push(with_type(resource, to_value(&o))),
                            Err(e) => {
                                eprintln!("{}", error_line(&e.into()));
                                failed = true;
                            }
                        }
                    }
                    single_object = resolved.len() == 1 && names.len() == 1;
                }
            }
        }
    }
    match args.output {
        None | Some(Output::Wide) => {
            if !printed_any && !failed {
                eprintln!("{}", no_resources(&ctx, &resolved, args.all_namespaces));
            }
        }
        Some(output) => {
            if objects.is_empty() && !failed && !single_object && output == Output::Name {
                eprintln!("{}", no_resources(&ctx, &resolved, args.all_namespaces));
            }
            print_objects(output, &resolved, objects, single_object)?;
            if args.watch {
                let (resource, names) = &resolved[0];
                let namespace = scope(&ctx, resource, args.all_namespaces);
                return watch_objects(&ctx, resource, namespace, names, &args, output).await;
            }
        }
    }
    if failed {
        return Err(AlreadyReported.into());
    }
    Ok(())
}

/// The namespace a request addresses: none for cluster-scoped kinds and with `-A`.
fn scope<'a>(ctx: &'a Ctx, resource: &Resource, all_namespaces: bool) -> Option<&'a str> {
    (resource.namespaced && !all_namespaces).then_some(ctx.namespace.as_str())
}

fn list_params(args: &GetArgs) -> ListParams {
    ListParams {
        label_selector: args.selector.clone(),
        field_selector: args.field_selector.clone(),
        ..ListParams::default()
    }
}

/// The table of a list, or of the named objects joined into one table (`None` when every
/// name failed; the errors are printed and `failed` is set).
async fn get_tables(
    ctx: &Ctx,
    resource: &Resource,
    namespace: Option<&str>,
    names: &[String],
    args: &GetArgs,
    failed: &mut bool,
) -> Result<Option<Value>> {
    if names.is_empty() {
        let table = fetch_table(ctx, resource, namespace, None, &list_params(args), false)
            .await
            .with_context(|| format!("listing {}", resource.group_resource()))?;
        return Ok(Some(table));
    }
    let mut joined: Option<Value> = None;
    for name in names {
        match fetch_table(
            ctx,
            resource,
            namespace,
            Some(name),
            &ListParams::default(),
            false,
        )
        .await
        {
            Ok(table) => match &mut joined {
                None => joined = Some(table),
                Some(j) => {
                    let rows = table
                        .get("rows")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    if let Some(Value::Array(all)) = j.get_mut("rows") {
                        all.extend(rows);
                    }
                }
            },
            Err(e) => {
                eprintln!("{}", error_line(&e));
                *failed = true;
            }
        }
    }
    Ok(joined)
}

/// GETs a list or one object as a meta.k8s.io Table. `full_objects` asks for whole
/// objects in the rows (`includeObject=Object`) instead of their metadata.
pub(crate) async fn fetch_table(
    ctx: &Ctx,
    resource: &Resource,
    namespace: Option<&str>,
    name: Option<&str>,
    list: &ListParams,
    full_objects: bool,
) -> Result<Value> {
    let ns = namespace.filter(|_| resource.namespaced);
    let url = DynamicObject::url_path(&resource.api_resource(), ns);
    let request = kube::core::Request::new(url);
    let mut req = match name {
        Some(n) => request.get(n, &GetParams::default()),
        None => request.list(list),
    }
    .context("building the request")?;
    if full_objects {
        let uri = req.uri().to_string();
        let sep = if uri.contains('?') { '&' } else { '?' };
        *req.uri_mut() = format!("{uri}{sep}includeObject=Object")
            .parse()
            .context("building the request")?;
    }
    req.headers_mut()
        .insert(ACCEPT, HeaderValue::from_static(TABLE_ACCEPT));
    let table: Value = ctx.client.request(req).await?;
    if table.get("kind").and_then(Value::as_str) != Some("Table") {
        bail!(
            "the server did not answer with a Table (it answered kind {:?})",
            table.get("kind")
        );
    }
    Ok(table)
}

/// Fills `apiVersion` and `kind` when the server left them out of list items.
fn with_type(resource: &Resource, mut obj: Value) -> Value {
    if let Some(map) = obj.as_object_mut() {
        map.entry("apiVersion")
            .or_insert_with(|| resource.api_version().into());
        map.entry("kind")
            .or_insert_with(|| resource.kind.clone().into());
    }
    obj
}

fn print_objects(
    output: Output,
    resolved: &[(Resource, Vec<String>)],
    objects: Vec<Value>,
    single_object: bool,
) -> Result<()> {
    match output {
        Output::Name => {
            for obj in &objects {
                println!("{}", object_ref(resolved, obj));
            }
        }
        Output::Yaml | Output::Json => {
            let value = match (single_object, objects.len()) {
                (true, 1) => objects.into_iter().next().unwrap_or_default(),
                (true, 0) => return Ok(()),
                _ => print::list_of(objects),
            };
            let text = if output == Output::Yaml {
                print::to_yaml(&value)?
            } else {
                print::to_json(&value)?
            };
            print!("{text}");
        }
        Output::Wide => {}
    }
    Ok(())
}

/// `deployment.apps/web` for an object of one of the requested kinds.
fn object_ref(resolved: &[(Resource, Vec<String>)], obj: &Value) -> String {
    let kind = super::str_at(obj, "/kind");
    let api_version = super::str_at(obj, "/apiVersion");
    let kind_ref = resolved
        .iter()
        .find(|(r, _)| r.kind == kind && r.api_version() == api_version)
        .map(|(r, _)| r.kind_ref())
        .unwrap_or_else(|| kind.to_lowercase());
    format!("{kind_ref}/{}", super::str_at(obj, "/metadata/name"))
}

fn no_resources(ctx: &Ctx, resolved: &[(Resource, Vec<String>)], all_namespaces: bool) -> String {
    let namespaced = resolved.iter().any(|(r, _)| r.namespaced);
    if namespaced && !all_namespaces {
        format!("No resources found in {} namespace.", ctx.namespace)
    } else {
        "No resources found".into()
    }
}

fn name_selector(names: &[String], args: &GetArgs) -> Option<String> {
    let by_name = names.first().map(|n| format!("metadata.name={n}"));
    match (by_name, &args.field_selector) {
        (Some(a), Some(b)) => Some(format!("{a},{b}")),
        (a, b) => a.or_else(|| b.clone()),
    }
}

/// What `get -w` follows.
struct Watched<'a> {
    resource: &'a Resource,
    namespace: Option<&'a str>,
    names: &'a [String],
    layout: &'a TableLayout,
}

/// `-w` with columns: each change prints the object's row (fetched as a one-row Table)
/// under the columns printed first (printed with the first row when the list was empty);
/// a deletion prints the row last seen.
async fn watch_table(
    ctx: &Ctx,
    watched: &Watched<'_>,
    args: &GetArgs,
    table: &Value,
    header: Vec<String>,
    mut header_printed: bool,
) -> Result<()> {
    let Watched {
        resource,
        namespace,
        names,
        layout,
    } = *watched;
    let (_, rows) = print::table_cells(table, layout);
    let key = |row: &Value| {
        (
            super::str_at(row, "/object/metadata/namespace").to_string(),
            super::str_at(row, "/object/metadata/name").to_string(),
        )
    };
    let mut last_rows: HashMap<(String, String), Vec<String>> = table
        .get("rows")
        .and_then(Value::as_array)
        .map(|raw| raw.iter().map(key).zip(rows).collect())
        .unwrap_or_default();
    let rv = super::str_at(table, "/metadata/resourceVersion").to_string();
    let api = ctx.api(resource, namespace);
    let params = watch::params(
        args.selector.as_deref(),
        name_selector(names, args).as_deref(),
    );
    watch::follow(&api, &params, rv, async |change, obj| {
        let obj_ns = obj.metadata.namespace.clone().unwrap_or_default();
        let obj_name = obj.metadata.name.clone().unwrap_or_default();
        let row_key = (obj_ns.clone(), obj_name.clone());
        let row = match change {
            Change::Deleted => last_rows.remove(&row_key),
            Change::Added | Change::Modified => {
                let ns = (!obj_ns.is_empty()).then_some(obj_ns.as_str());
                match fetch_table(
                    ctx,
                    resource,
                    ns,
                    Some(&obj_name),
                    &ListParams::default(),
                    false,
                )
                .await
                {
                    Ok(t) => {
                        let row = print::table_cells(&t, layout).1.into_iter().next();
                        if let Some(r) = &row {
                            last_rows.insert(row_key, r.clone());
                        }
                        row
                    }
                    // Gone again before we could print it: the DELETED event follows.
                    Err(e) if super::server_status(&e).is_some_and(|s| s.code == 404) => None,
                    Err(e) => return Err(e),
                }
            }
        };
        if let Some(row) = row {
            print_row(&header, row, &mut header_printed);
        }
        Ok(())
    })
    .await
}

/// Prints one row of a followed table aligned with its header, and the header first if
/// it has not been printed yet.
pub(crate) fn print_row(header: &[String], row: Vec<String>, header_printed: &mut bool) {
    let text = print::tabwrite(
        &[header.to_vec(), row],
        print::GET_MIN_WIDTH,
        print::GET_PADDING,
    );
    if *header_printed {
        if let Some((_, line)) = text.split_once('\n') {
            print!("{line}");
        }
    } else {
        print!("{text}");
        *header_printed = true;
    }
}

/// `-w` with `-o yaml|json|name`: each change prints the object.
async fn watch_objects(
    ctx: &Ctx,
    resource: &Resource,
    namespace: Option<&str>,
    names: &[String],
    args: &GetArgs,
    output: Output,
) -> Result<()> {
    let api = ctx.api(resource, namespace);
    let list = api
        .list_metadata(&ListParams {
            limit: Some(1),
            ..list_params(args)
        })
        .await?;
    let rv = list.metadata.resource_version.unwrap_or_default();
    let params = watch::params(
        args.selector.as_deref(),
        name_selector(names, args).as_deref(),
    );
    let resolved = [(resource.clone(), Vec::new())];
    watch::follow(&api, &params, rv, async |_, obj| {
        let value = with_type(resource, to_value(&obj));
        match output {
            Output::Yaml => print!("---\n{}", print::to_yaml(&value)?),
            Output::Json => print!("{}", print::to_json(&value)?),
            _ => println!("{}", object_ref(&resolved, &value)),
        }
        Ok(())
    })
    .await
}
