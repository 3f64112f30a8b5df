//! `drover`: the single binary. Thin: parses the command line and wires crates together.
//! `up` runs the control plane (and by default a node agent beside it), `agent` a node
//! agent alone ([`agent`]); the client verbs live in [`cli`].

mod agent;
mod cli;
mod image;
mod members;
mod sim;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use drover_actors::natsd::{self, NatsServerConfig, ServerState, Supervisor};
use drover_actors::restart::RestartPolicy;
use drover_store::{Store, StoreConfig};

/// Replicas per bucket when drover joins an existing NATS cluster.
const CLUSTER_REPLICAS: usize = 3;
/// How long cluster events stay in the events stream.
const EVENTS_MAX_AGE: Duration = Duration::from_secs(3600);

#[derive(Parser)]
#[command(
    name = "drover",
    version,
    about = "A container cluster manager that runs Kubernetes manifests"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane in the foreground until SIGINT/SIGTERM.
    Up(UpArgs),
    /// Run hollow nodes (no containers) against a running control plane.
    Sim(sim::SimArgs),
    /// Run a node agent (containerd, CNI) against a running control plane until
    /// SIGINT/SIGTERM; pods keep running when it stops.
    Agent(agent::AgentArgs),
    /// Manage images on this node's containerd.
    #[command(subcommand)]
    Image(image::ImageCommand),
    #[command(flatten)]
    Client(cli::Verb),
    /// Internal: the StatefulSet fence guard a node agent starts beside itself.
    #[command(hide = true)]
    FenceGuard(agent::FenceGuardArgs),
}

#[derive(clap::Args)]
struct UpArgs {
    /// Directory for all state (NATS JetStream store, logs). Default: $XDG_DATA_HOME/drover.
    #[arg(long, env = "DROVER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Use an existing NATS cluster (comma-separated URLs) instead of starting nats-server.
    #[arg(long, value_name = "URLS")]
    nats: Option<String>,
    /// Replicas per bucket with --nats.
    #[arg(long, default_value_t = CLUSTER_REPLICAS)]
    replicas: usize,
    /// Address the nats-server drover starts listens on (agents on other machines or
    /// network namespaces connect here).
    #[arg(long, default_value = "127.0.0.1")]
    nats_address: std::net::IpAddr,
    /// Client port of the nats-server drover starts.
    #[arg(long, default_value_t = natsd::DEFAULT_CLIENT_PORT)]
    nats_port: u16,
    /// nats-server binary (default: `nats-server` on PATH, >= 2.11).
    #[arg(long, env = "DROVER_NATS_SERVER")]
    nats_server: Option<PathBuf>,
    /// Address the Kubernetes API listens on.
    #[arg(long, default_value = "127.0.0.1")]
    api_address: std::net::IpAddr,
    /// Port of the Kubernetes API (HTTPS).
    #[arg(long, default_value_t = DEFAULT_API_PORT)]
    api_port: u16,
    /// Do not run a node agent in this process (control plane only). The agent needs
    /// root, containerd, runc and the CNI plugins, and it creates the `drover0` bridge.
    #[arg(long)]
    no_agent: bool,
    /// CIDR Services' cluster IPs are allocated from (the kube-apiserver's flag).
    #[arg(long, default_value = drover_gateway::admission::DEFAULT_SERVICE_CIDR)]
    service_cluster_ip_range: String,
    /// Serve cluster DNS (UDP and TCP) on this address, e.g. 10.96.0.10:53 or
    /// 127.0.0.1:5353. Off when absent.
    #[arg(long, value_name = "ADDR:PORT")]
    dns_address: Option<std::net::SocketAddr>,
    #[command(flatten)]
    node: agent::NodeArgs,
}

/// Default HTTPS port of the Kubernetes API (the kube-apiserver's).
const DEFAULT_API_PORT: u16 = 6443;

fn main() -> Result<ExitCode> {
    let cli = Cli::parse();
    // The client verbs print results on stdout and kubectl-style errors on stderr; only
    // warnings of their own log there.
    let default_filter = match cli.command {
        Command::Up(_) | Command::Sim(_) | Command::Agent(_) => {
            // hickory-server logs every DNS query at info.
            "info,async_nats=warn,hickory_server=warn"
        }
        Command::Client(_) | Command::Image(_) | Command::FenceGuard(_) => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| default_filter.into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Up(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(up(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sim(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(sim::run(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Agent(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            // containerd is spawned from this (the main) thread: it gets SIGKILL when
            // the thread, i.e. the agent, dies.
            runtime.block_on(agent::run(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::FenceGuard(args) => {
            agent::run_fence_guard(args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Image(command) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(image::run(command))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Client(verb) => {
            // One thread is plenty for a client and leaves the cores to the cluster.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            Ok(cli::finish(runtime.block_on(verb.run())))
        }
    }
}

/// `$XDG_DATA_HOME/drover`, else `~/.local/share/drover`: where `drover up` keeps its
/// state and kubeconfig, and where the client verbs look for that kubeconfig.
pub(crate) fn default_data_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("drover"));
    }
    let home = std::env::var_os("HOME")
        .context("neither XDG_DATA_HOME nor HOME is set; pass --data-dir")?;
    Ok(PathBuf::from(home).join(".local/share/drover"))
}

async fn up(mut args: UpArgs) -> Result<()> {
    let started = Instant::now();
    let data_dir = match args.data_dir {
        Some(d) => d,
        None => default_data_dir()?,
    };
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;

    let (supervisor, client, replicas, url) = match &args.nats {
        Some(urls) => {
            let addrs: Vec<async_nats::ServerAddr> = urls
                .split(',')
                .map(|u| {
                    u.trim()
                        .parse()
                        .with_context(|| format!("invalid NATS URL {u:?}"))
                })
                .collect::<Result<_>>()?;
            let client = async_nats::ConnectOptions::new()
                .name("drover")
                .retry_on_initial_connect()
                .max_reconnects(None)
                .connect(addrs)
                .await?;
            (None, client, args.replicas, urls.clone())
        }
        None => {
            let binary = natsd::find_binary(args.nats_server.as_deref())?;
            if std::net::TcpListener::bind((args.nats_address, args.nats_port)).is_err() {
                bail!(
                    "port {} is in use: is another `drover up` running? (choose another with --nats-port)",
                    args.nats_port
                );
            }
            let mut cfg = NatsServerConfig::single(binary, data_dir.join("nats"), args.nats_port);
            cfg.server_name = "drover".into();
            cfg.host = args.nats_address.to_string();
            let url = cfg.url();
            let (supervisor, client) = Supervisor::start(cfg, RestartPolicy::default()).await?;
            (Some(supervisor), client, 1, url)
        }
    };

    let store = Store::new(
        client.clone(),
        StoreConfig {
            replicas,
            sender: "drover-up".into(),
            ..Default::default()
        },
    )
    .await?;
    store
        .ensure_buckets(bus_schema::KINDS)
        .await
        .context("creating the store's buckets")?;
    store
        .ensure_event_stream(EVENTS_MAX_AGE)
        .await
        .context("creating the events stream")?;

    let dns = match args.dns_address {
        Some(listen) => Some(
            drover_dns::Dns::start(
                store.clone(),
                drover_dns::DnsConfig {
                    listen,
                    zone: args.node.cluster_domain.clone(),
                    upstreams: args.node.dns_upstream.clone(),
                },
            )
            .await
            .context("starting cluster DNS")?,
        ),
        None => None,
    };

    let pki = drover_gateway::pki::Pki::load_or_create(
        &data_dir.join("pki"),
        &[args.api_address.to_string()],
    )?;
    let auth = std::sync::Arc::new(drover_gateway::auth::Auth::new(
        pki.admin_token.clone(),
        Box::new(drover_gateway::auth::MastersOnly),
    ));
    drover_gateway::admission::configure_service_cidr(&args.service_cluster_ip_range)?;
    // The cluster DNS Service (kube-system/kube-dns) at the range's tenth address; each
    // node agent publishes its own DNS server as an endpoint.
    let dns_ip = drover_node::dns::cluster_dns_ip(&args.service_cluster_ip_range);
    if let Some(ip) = dns_ip {
        ensure_kube_dns(&store, ip).await;
    }
    if args.node.cluster_dns.is_none() {
        args.node.cluster_dns = dns_ip;
    }
    let bind = std::net::SocketAddr::new(args.api_address, args.api_port);
    let gateway = drover_gateway::Gateway::start(
        store.clone(),
        drover_gateway::GatewayConfig {
            bind,
            tls: pki.clone(),
            auth,
        },
    )
    .await
    .with_context(|| format!("starting the API on {bind}"))?;
    // The gossip: with --gossip-bind the control plane sees the nodes through it (its own
    // member with --no-agent; the in-process agent's member otherwise, started below), and
    // the node lifecycle controller acts on that view.
    let gossip = args.node.gossip_bind.is_some();
    let (members_tx, members_rx) = tokio::sync::watch::channel(std::sync::Arc::new(Vec::new()));
    let mut gossip_tasks: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    let control_plane_member = match args.node.gossip_bind {
        Some(bind) if args.no_agent => {
            let name = format!(
                "control-plane-{}",
                agent::hostname().unwrap_or_else(|_| "drover".into())
            );
            let member = members::start_control_plane_member(
                name.clone(),
                bind,
                args.node.gossip_advertise,
                args.node.gossip_seeds.clone(),
                gateway.addr,
            )
            .await?;
            gossip_tasks.push(members::forward(member.watch(), members_tx.clone()));
            gossip_tasks.push(members::serve_view(
                client.clone(),
                name,
                members_rx.clone(),
            ));
            eprintln!(
                "drover: control plane joined the gossip at {}",
                member.addr()
            );
            Some(member)
        }
        _ => None,
    };
    let controllers = drover_controllers::Controllers::start_with(
        store.clone(),
        drover_controllers::ControllersConfig {
            membership: gossip.then(|| members_rx.clone()),
            ..Default::default()
        },
    );
    // The scheduler binds every pod the controllers and clients create; it runs beside
    // them (not inside `Controllers`, whose test harnesses bind pods themselves).
    let scheduler = tokio::spawn(drover_scheduler::run(store.clone()));
    let node = if args.no_agent {
        None
    } else {
        match agent::NodeHandle::start(store.clone(), data_dir.join("node"), &args.node).await {
            Ok(n) => Some(n),
            Err(e) => {
                scheduler.abort();
                controllers.stop().await;
                gateway.stop().await;
                if let Some(s) = supervisor {
                    s.shutdown().await;
                }
                return Err(e.context(
                    "starting the node agent (run with --no-agent for a control plane only)",
                ));
            }
        }
    };
    if control_plane_member.is_none()
        && let Some(view) = node.as_ref().and_then(agent::NodeHandle::members)
    {
        let observer = args.node.node_name.clone().unwrap_or_else(|| "node".into());
        gossip_tasks.push(members::forward(view, members_tx.clone()));
        gossip_tasks.push(members::serve_view(
            client.clone(),
            observer,
            members_rx.clone(),
        ));
    }
    let host = match args.api_address {
        std::net::IpAddr::V6(a) => format!("[{a}]"),
        a => a.to_string(),
    };
    let kubeconfig = data_dir.join("kubeconfig");
    pki.write_kubeconfig(
        &kubeconfig,
        &format!("https://{host}:{}", gateway.addr.port()),
    )?;
    eprintln!(
        "drover: ready in {} ms (NATS {url}, API https://{host}:{}, data in {})",
        started.elapsed().as_millis(),
        gateway.addr.port(),
        data_dir.display()
    );
    println!("export KUBECONFIG={}", kubeconfig.display());

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut state = supervisor.as_ref().map(Supervisor::state);
    let result = loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break Ok(()),
            _ = sigterm.recv() => break Ok(()),
            changed = async { match state.as_mut() { Some(s) => s.changed().await.is_ok(), None => std::future::pending().await } } => {
                if !changed { break Ok(()); }
                let current = state.as_ref().map(|s| s.borrow().clone());
                if let Some(ServerState::Failed(why)) = current {
                    break Err(anyhow::anyhow!(why));
                }
            }
        }
    };
    eprintln!("drover: stopping");
    for t in gossip_tasks {
        t.abort();
    }
    if let Some(member) = control_plane_member
        && let Err(error) = member.leave().await
    {
        tracing::warn!(message = "leaving the gossip failed", %error);
    }
    if let Some(node) = node {
        node.stop().await;
    }
    if let Some(dns) = dns {
        dns.stop().await;
    }
    scheduler.abort();
    controllers.stop().await;
    gateway.stop().await;
    client.flush().await.ok();
    drop(store);
    if let Some(s) = supervisor {
        s.shutdown().await;
    }
    result
}

/// Creates the kube-dns Service unless it exists (through admission, so its ClusterIP is
/// taken in the allocator). A failure is logged: the cluster runs without DNS.
async fn ensure_kube_dns(store: &drover_store::Store, ip: std::net::Ipv4Addr) {
    let kind = bus_schema::kinds::of::<k8s_openapi::api::core::v1::Service>();
    match store
        .get(
            kind,
            Some(drover_node::dns::SERVICE_NAMESPACE),
            drover_node::dns::SERVICE_NAME,
        )
        .await
    {
        Ok(_) => return,
        Err(drover_store::StoreError::NotFound { .. }) => {}
        Err(error) => {
            tracing::warn!(message = "reading the kube-dns Service failed", %error);
            return;
        }
    }
    if let Err(error) = drover_admission::create(store, kind, drover_node::dns::service(ip)).await {
        tracing::warn!(message = "creating the kube-dns Service failed", %error);
    }
}
