//! The client verbs of the `drover` binary: `apply`, `get`, `describe`, `delete` and
//! `events`. Thin clients of the gateway's Kubernetes API, through kube-rs, for users
//! without kubectl; they speak only HTTP to the API, like kubectl does.
//!
//! Connection: `--kubeconfig`, else `$KUBECONFIG`, else the kubeconfig `drover up` writes
//! in its data directory. Errors from the server print as kubectl prints them
//! (`Error from server (NotFound): pods "x" not found`) and the process exits 1.

pub mod apply;
pub mod delete;
pub mod describe;
pub mod events;
pub mod get;
mod manifest;
pub mod members;
mod print;
mod resources;
mod watch;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{DynamicObject, Status};
use kube::{Api, Client, Config};
use tokio::sync::OnceCell;

pub use resources::{Resource, Resources};

/// The client verbs, as `drover` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum Verb {
    /// Create or update objects from manifests (files, directories, `-` for stdin).
    Apply(apply::ApplyArgs),
    /// List objects or show some as columns, YAML, JSON or names.
    Get(get::GetArgs),
    /// Show objects in detail, with their events.
    Describe(describe::DescribeArgs),
    /// Delete objects by name, by manifest or by label selector.
    Delete(delete::DeleteArgs),
    /// List a namespace's events; `-w` follows new ones.
    Events(events::EventsArgs),
    /// Show the control plane's view of the gossip membership (nodes and their state).
    Members(members::MembersArgs),
}

impl Verb {
    /// Runs the verb; errors are for [`finish`] to print.
    pub async fn run(self) -> Result<()> {
        match self {
            Verb::Apply(args) => apply::run(args).await,
            Verb::Get(args) => get::run(args).await,
            Verb::Describe(args) => describe::run(args).await,
            Verb::Delete(args) => delete::run(args).await,
            Verb::Events(args) => events::run(args).await,
            Verb::Members(args) => members::run(args).await,
        }
    }
}

/// Connection options every client verb takes.
#[derive(clap::Args, Debug, Clone)]
pub struct ClientArgs {
    /// Kubeconfig file (default: $KUBECONFIG, else <data-dir>/kubeconfig as `drover up`
    /// writes it).
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace (default: the kubeconfig context's, else "default").
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

/// A connected client, the namespace commands default to, and discovery on demand.
pub struct Ctx {
    /// The API client.
    pub client: Client,
    /// `-n`, else the kubeconfig context's namespace, else `default`.
    pub namespace: String,
    /// Whether `-n` was given (apply refuses objects of another namespace then).
    pub namespace_given: bool,
    resources: OnceCell<Resources>,
}

impl Ctx {
    /// Loads the kubeconfig and builds a client; does not contact the server.
    pub async fn connect(args: &ClientArgs) -> Result<Ctx> {
        let (kubeconfig, path) = load_kubeconfig(args.kubeconfig.as_deref())?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .with_context(|| format!("loading kubeconfig {path}"))?;
        let namespace = args
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config).context("building the API client")?;
        Ok(Ctx {
            client,
            namespace,
            namespace_given: args.namespace.is_some(),
            resources: OnceCell::new(),
        })
    }

    /// The server's resources, discovered on first use.
    pub async fn resources(&self) -> Result<&Resources> {
        self.resources
            .get_or_try_init(|| Resources::discover(&self.client))
            .await
    }

    /// The dynamic API of a resource: in `namespace` for namespaced kinds (all namespaces
    /// with `None`), cluster-wide otherwise.
    pub fn api(&self, resource: &Resource, namespace: Option<&str>) -> Api<DynamicObject> {
        let ar = resource.api_resource();
        match namespace {
            Some(ns) if resource.namespaced => Api::namespaced_with(self.client.clone(), ns, &ar),
            _ => Api::all_with(self.client.clone(), &ar),
        }
    }
}

/// `--kubeconfig`, else `$KUBECONFIG` (a path list, merged as kubectl does), else the one
/// `drover up` writes. Returns the config and a description for messages.
fn load_kubeconfig(explicit: Option<&Path>) -> Result<(Kubeconfig, String)> {
    if let Some(path) = explicit {
        let kc = Kubeconfig::read_from(path)
            .with_context(|| format!("reading kubeconfig {}", path.display()))?;
        return Ok((kc, path.display().to_string()));
    }
    if let Some(kc) = Kubeconfig::from_env().context("reading the kubeconfig(s) in $KUBECONFIG")? {
        return Ok((kc, "$KUBECONFIG".into()));
    }
    // Where `drover up` writes it: its --data-dir comes from DROVER_DATA_DIR too.
    let data_dir = match std::env::var_os("DROVER_DATA_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => crate::default_data_dir()?,
    };
    let path = data_dir.join("kubeconfig");
    if !path.exists() {
        bail!(
            "no kubeconfig at {} (is `drover up` running? pass --kubeconfig or set KUBECONFIG)",
            path.display()
        );
    }
    let kc = Kubeconfig::read_from(&path)
        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
    Ok((kc, path.display().to_string()))
}

/// An error whose message was already printed (the verb went on with other objects);
/// it only sets the exit code.
#[derive(Debug)]
pub struct AlreadyReported;

impl std::fmt::Display for AlreadyReported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("errors were reported above")
    }
}

impl std::error::Error for AlreadyReported {}

/// The kubectl spelling of an error: `Error from server (Reason): message` for a Status
/// from the server, `error: ...` for anything else.
pub fn error_line(err: &anyhow::Error) -> String {
    match server_status(err) {
        Some(status) => status_line(status),
        None => format!("error: {}", chain_text(err)),
    }
}

/// The error and its causes joined by `: `, leaving out a cause whose text the message
/// before it already includes (kube's errors print their sources themselves).
fn chain_text(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let cause = cause.to_string();
        if text.is_empty() {
            text = cause;
        } else if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// The server's Status inside an error chain, if the server answered with one.
pub fn server_status(err: &anyhow::Error) -> Option<&Status> {
    err.chain()
        .find_map(|e| match e.downcast_ref::<kube::Error>() {
            Some(kube::Error::Api(status)) => Some(status.as_ref()),
            _ => None,
        })
}

fn status_line(status: &Status) -> String {
    let message = if status.message.is_empty() {
        format!("the server responded with status {}", status.code)
    } else {
        status.message.clone()
    };
    if status.reason.is_empty() {
        format!("Error from server: {message}")
    } else {
        format!("Error from server ({}): {message}", status.reason)
    }
}

/// One kind named on the command line and the names asked for with it (empty: all).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The word for the kind (`pods`, `deploy`).
    pub kind: String,
    /// Object names.
    pub names: Vec<String>,
}

/// Splits the positional arguments kubectl's way: `pods,svc a b` or `pod/a deploy/b`.
pub fn kinds_and_names(resource: &str, names: &[String]) -> Result<Vec<Request>> {
    if resource.contains('/') {
        let mut out: Vec<Request> = Vec::new();
        for arg in std::iter::once(resource).chain(names.iter().map(String::as_str)) {
            let Some((kind, name)) = arg
                .split_once('/')
                .filter(|(k, n)| !k.is_empty() && !n.is_empty())
            else {
                bail!("arguments in resource/name form must all be TYPE/NAME; got {arg:?}");
            };
            match out.iter_mut().find(|r| r.kind == kind) {
                Some(r) => r.names.push(name.to_string()),
                None => out.push(Request {
                    kind: kind.to_string(),
                    names: vec![name.to_string()],
                }),
            }
        }
        return Ok(out);
    }
    if let Some(bad) = names.iter().find(|n| n.contains('/')) {
        bail!(
            "there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. '{bad}' instead of '{resource} {bad}')"
        );
    }
    Ok(resource
        .split(',')
        .filter(|k| !k.is_empty())
        .map(|k| Request {
            kind: k.to_string(),
            names: names.to_vec(),
        })
        .collect())
}

/// Whether an error is the server's NotFound.
pub fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 404)
}

/// Prints a verb's outcome and turns it into the process exit code.
pub fn finish(result: Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<AlreadyReported>().is_some() => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("{}", error_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// A JSON object's string at a JSON pointer, empty when missing or not a string.
pub(crate) fn str_at<'a>(v: &'a serde_json::Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(serde_json::Value::as_str)
        .unwrap_or("")
}

/// An object as JSON (a `DynamicObject` serializes to the wire shape).
pub(crate) fn to_value(obj: &DynamicObject) -> serde_json::Value {
    serde_json::to_value(obj).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lines_read_like_kubectl() {
        let status = Status::failure("pods \"x\" not found", "NotFound").with_code(404);
        let err = anyhow::Error::new(kube::Error::Api(status.boxed())).context("getting pods");
        assert_eq!(
            error_line(&err),
            "Error from server (NotFound): pods \"x\" not found"
        );
        let bare = Status::failure("", "").with_code(502);
        let err = anyhow::Error::new(kube::Error::Api(bare.boxed()));
        assert_eq!(
            error_line(&err),
            "Error from server: the server responded with status 502"
        );
        let inner = std::io::Error::other("no such file");
        let err = anyhow::Error::new(inner)
            .context("failed to read x: no such file")
            .context("reading kubeconfig x");
        assert_eq!(
            error_line(&err),
            "error: reading kubeconfig x: failed to read x: no such file"
        );
        let err = anyhow::anyhow!("the server doesn't have a resource type \"x\"");
        assert_eq!(
            error_line(&err),
            "error: the server doesn't have a resource type \"x\""
        );
    }

    fn check(resource: &str, names: &[&str], expected: &[(&str, &[&str])]) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let got = kinds_and_names(resource, &names).unwrap();
        let expected: Vec<Request> = expected
            .iter()
            .map(|(k, n)| Request {
                kind: k.to_string(),
                names: n.iter().map(|s| s.to_string()).collect(),
            })
            .collect();
        assert_eq!(got, expected, "{resource} {names:?}");
    }

    #[test]
    fn positional_arguments_split_like_kubectl() {
        check("pods", &[], &[("pods", &[])]);
        check("po", &["a", "b"], &[("po", &["a", "b"])]);
        check("pods,svc", &["a"], &[("pods", &["a"]), ("svc", &["a"])]);
        check(
            "pod/a",
            &["deploy/b", "pod/c"],
            &[("pod", &["a", "c"]), ("deploy", &["b"])],
        );
        assert!(kinds_and_names("pod/a", &["b".to_string()]).is_err());
        assert!(kinds_and_names("pod/", &[]).is_err());
        assert!(kinds_and_names("pods", &["pod/x".to_string()]).is_err());
    }
}
