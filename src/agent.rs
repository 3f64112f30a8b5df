//! `drover agent`: a node agent with the containerd runtime as its own process, and the
//! same agent inside `drover up` (see [`NodeHandle::start`]).
//!
//! Lifetimes: containerd is the agent's child and dies with it (SIGKILL on the agent's
//! death via PR_SET_PDEATHSIG, SIGTERM then SIGKILL on a clean stop). Containers do not:
//! they run under their shims, and the next agent on the same data dir restarts
//! containerd on the same state and re-adopts them.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use drover_node::host::{ContainerdHost, HostConfig};
use drover_node::{AgentConfig, NodeAgent, Runtime};
use drover_store::{Store, StoreConfig};
use k8s_openapi::api::core::v1::Taint;

/// Default NATS URL of the control plane (`drover up` listens on 4222).
const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// The node-side options `drover agent` and `drover up` share.
#[derive(clap::Args, Debug, Clone)]
pub struct NodeArgs {
    /// The node's name (default: this machine's hostname).
    #[arg(long)]
    pub node_name: Option<String>,
    /// Use the containerd listening on this socket instead of starting one. Its CRI
    /// config must read CNI configs from <data-dir>/cni/net.d.
    #[arg(long, value_name = "PATH")]
    pub containerd_socket: Option<PathBuf>,
    /// A registry (host:port) containerd may pull from over plain HTTP; repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure_registries: Vec<String>,
    /// The address the node reports (`status.hostIP`, the Node's InternalIP).
    #[arg(long, default_value = "127.0.0.1")]
    pub node_address: String,
    /// Taints the Node is registered with (`key=value:Effect` or `key:Effect`,
    /// comma-separated; as the kubelet's flag: applied when the Node is created).
    #[arg(long, value_name = "TAINTS", value_delimiter = ',', value_parser = parse_taint)]
    pub register_with_taints: Vec<Taint>,
    /// Run no eBPF service proxy (by default the agent translates Service VIPs for every
    /// process through cgroup programs and blackholes 10.96.0.0/12).
    #[arg(long)]
    pub no_service_proxy: bool,
    /// The cgroup v2 the service proxy's programs attach to (default: the cgroup2 root,
    /// so every process's sockets are translated).
    #[arg(long, value_name = "PATH")]
    pub proxy_cgroup: Option<PathBuf>,
    /// Where the service proxy pins its BPF maps, programs and links (a bpffs dir).
    #[arg(long, value_name = "PATH", default_value = drover_bpf::DEFAULT_PIN_DIR)]
    pub bpf_pin_dir: PathBuf,
    /// The cgroup pods' cgroups are created under (the kubelet's `--cgroup-root`).
    #[arg(long, value_name = "PATH", default_value = drover_node::podspec::DEFAULT_CGROUP_ROOT)]
    pub cgroup_root: String,
    /// The nameserver pods get in resolv.conf (`dnsPolicy: ClusterFirst`), the
    /// kube-dns Service's ClusterIP (default: the tenth address of the service CIDR,
    /// 10.96.0.10). Needs the service proxy.
    #[arg(long, value_name = "IP")]
    pub cluster_dns: Option<std::net::Ipv4Addr>,
    /// Run no node-local DNS server (by default each agent serves the cluster zone on
    /// its pod gateway address and is an endpoint of kube-system/kube-dns).
    #[arg(long)]
    pub no_node_dns: bool,
    /// The cluster domain DNS serves and pods search.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// The interfaces NodePort traffic from outside arrives on (comma-separated; the
    /// proxy attaches tcx programs there). Default: the interfaces of the default route;
    /// an empty value attaches none (nodePorts then reach only from the node itself).
    #[arg(long, value_name = "IFACES", value_delimiter = ',')]
    pub nodeport_interfaces: Option<Vec<String>>,
    /// Resolver that cluster DNS forwards names outside the cluster domain to
    /// (repeatable, tried in order), e.g. 192.0.2.53:53. None by default: such names are
    /// refused and no query leaves the machine.
    #[arg(long, value_name = "ADDR:PORT")]
    pub dns_upstream: Vec<std::net::SocketAddr>,
    /// Join the node gossip (SWIM over UDP) on this address, e.g. 192.168.1.10:7946;
    /// the agent then programs routes to the other nodes' pod CIDRs. No gossip when
    /// absent.
    #[arg(long, value_name = "ADDR:PORT")]
    pub gossip_bind: Option<std::net::SocketAddr>,
    /// The gossip address peers reach this node at (default: --gossip-bind). Its IP is
    /// the next hop the other nodes route this node's pods through.
    #[arg(long, value_name = "ADDR:PORT", requires = "gossip_bind")]
    pub gossip_advertise: Option<std::net::SocketAddr>,
    /// A gossip member to join through (repeatable or comma-separated).
    #[arg(
        long = "gossip-seed",
        value_name = "ADDR:PORT",
        value_delimiter = ',',
        requires = "gossip_bind"
    )]
    pub gossip_seeds: Vec<std::net::SocketAddr>,
    /// The node's zone (the `topology.kubernetes.io/zone` label, and in the gossip).
    #[arg(long, value_name = "ZONE")]
    pub zone: Option<String>,
    /// How long (ms) this node, cut off from the bus (or its agent frozen), keeps running
    /// its StatefulSet pods before it stops them itself; 0 never does. With gossip only;
    /// advertised there so the control plane waits as long before recreating them.
    #[arg(long, value_name = "MS", default_value_t = drover_node::DEFAULT_FENCE_TIMEOUT_MS)]
    pub fence_timeout_ms: u32,
}

impl NodeArgs {
    /// The agent's gossip settings from the flags (`None` without `--gossip-bind`).
    pub fn gossip(&self) -> Option<drover_node::GossipConfig> {
        let bind = self.gossip_bind?;
        let mut gossip = drover_node::GossipConfig::new(bind);
        gossip.advertise = self.gossip_advertise;
        gossip.seeds = self.gossip_seeds.clone();
        // A real node: its pods need the way to the other nodes' pods.
        gossip.pod_routes = true;
        Some(gossip)
    }
}

/// Parses `key=value:Effect` / `key:Effect` (the kubelet's `--register-with-taints`).
fn parse_taint(s: &str) -> Result<Taint, String> {
    let (kv, effect) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("taint {s:?}: want key=value:Effect or key:Effect"))?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(format!(
            "taint {s:?}: effect must be NoSchedule, PreferNoSchedule or NoExecute"
        ));
    }
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (kv, None),
    };
    if key.is_empty() {
        return Err(format!("taint {s:?}: empty key"));
    }
    Ok(Taint {
        key: key.to_string(),
        value,
        effect: effect.to_string(),
        time_added: None,
    })
}

/// `drover agent`'s arguments.
#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// NATS URL(s) of the control plane, comma-separated.
    #[arg(long, default_value = DEFAULT_NATS_URL)]
    pub nats: String,
    /// The agent's data directory (containerd's root and state, CNI config, pod logs).
    /// Default: $XDG_DATA_HOME/drover/node.
    #[arg(long, env = "DROVER_NODE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// The agent's default data dir: `node` under drover's data dir.
pub fn default_node_data_dir() -> Result<PathBuf> {
    Ok(crate::default_data_dir()?.join("node"))
}

/// This machine's hostname, lower-cased (Node names are DNS subdomains).
pub(crate) fn hostname() -> Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .context("reading the hostname; pass --node-name")?;
    let name = name.trim().to_ascii_lowercase();
    anyhow::ensure!(!name.is_empty(), "empty hostname; pass --node-name");
    Ok(name)
}

/// A running node: the agent's tasks and the containerd under them.
pub struct NodeHandle {
    agent: NodeAgent,
    host: ContainerdHost,
}

impl NodeHandle {
    /// The agent's gossip view, when it joined one.
    pub fn members(
        &self,
    ) -> Option<tokio::sync::watch::Receiver<std::sync::Arc<Vec<drover_membership::Member>>>> {
        self.agent.membership().map(|m| m.watch())
    }

    /// Starts the runtime (containerd, pause image) under `data_dir` and the agent on
    /// `store`; returns once the node is registered.
    pub async fn start(store: Store, data_dir: PathBuf, args: &NodeArgs) -> Result<NodeHandle> {
        let node_name = match &args.node_name {
            Some(n) => n.clone(),
            None => hostname()?,
        };
        let mut host_config = HostConfig::new(&data_dir);
        host_config.containerd_socket = args.containerd_socket.clone();
        host_config.insecure_registries = args.insecure_registries.clone();
        let (runtime, host) = ContainerdHost::start(host_config)
            .await
            .context("starting the container runtime")?;
        let runtime: Arc<dyn Runtime> = runtime;
        let mut config = AgentConfig::new(&node_name);
        // Volumes live beside the CRI log directories (`<data dir>/pods/...`).
        config.pods_dir = Some(data_dir.join("pods"));
        config.data_dir = data_dir;
        config.identity.address = args.node_address.clone();
        config.identity.taints = args.register_with_taints.clone();
        config.cgroup_root = args.cgroup_root.clone();
        config.identity.zone = args.zone.clone();
        config.gossip = args.gossip();
        // Fencing goes with the gossip: only a control plane that sees the node down in
        // the gossip recreates its StatefulSet pods, so without gossip there is nothing to
        // fence against.
        if config.gossip.is_some() && args.fence_timeout_ms > 0 {
            let timeout = std::time::Duration::from_millis(u64::from(args.fence_timeout_ms));
            let guard = match spawn_fence_guard(&config.data_dir, timeout) {
                Ok(g) => g,
                Err(e) => {
                    host.stop().await;
                    return Err(e);
                }
            };
            config.fence = Some(drover_node::fence::FenceConfig {
                timeout,
                guard: Some(guard),
                ..Default::default()
            });
        }
        if !args.no_service_proxy {
            match drover_node::proxy::ProxyConfig::host() {
                Ok(mut p) => {
                    p.pin_dir = args.bpf_pin_dir.clone();
                    if let Some(cg) = &args.proxy_cgroup {
                        p.cgroup = cg.clone();
                    }
                    p.nodeport_interfaces = args.nodeport_interfaces.clone();
                    config.proxy = Some(p);
                }
                Err(e) => {
                    host.stop().await;
                    return Err(e).context("configuring the service proxy");
                }
            }
            // Pods resolve through the kube-dns VIP, which only the proxy translates.
            let dns_ip = args.cluster_dns.or_else(|| {
                drover_node::dns::cluster_dns_ip(drover_node::proxy::DEFAULT_SERVICE_CIDR)
            });
            config.cluster_dns = dns_ip.map(|ip| ip.to_string()).into_iter().collect();
            if !args.no_node_dns {
                config.node_dns = Some(drover_node::dns::NodeDnsConfig {
                    zone: args.cluster_domain.clone(),
                    upstreams: args.dns_upstream.clone(),
                    ..Default::default()
                });
            }
        }
        let agent = match NodeAgent::start(store, runtime, config).await {
            Ok(a) => a,
            Err(e) => {
                host.stop().await;
                return Err(e).context("registering the node");
            }
        };
        let gossip = agent
            .membership()
            .map(|m| format!(", gossip {}", m.addr()))
            .unwrap_or_default();
        eprintln!(
            "drover: node {} ready (pod CIDR {}, containerd socket {}{gossip})",
            agent.node_name(),
            agent.pod_cidr(),
            host.socket().display()
        );
        Ok(NodeHandle { agent, host })
    }

    /// Stops the agent's tasks, then containerd; pods keep running.
    pub async fn stop(self) {
        self.agent.stop().await;
        self.host.stop().await;
    }
}

/// `drover agent`: runs until SIGINT/SIGTERM.
pub async fn run(args: AgentArgs) -> Result<()> {
    let data_dir = match args.data_dir {
        Some(d) => d,
        None => default_node_data_dir()?,
    };
    let addrs: Vec<async_nats::ServerAddr> = args
        .nats
        .split(',')
        .map(|u| {
            u.trim()
                .parse()
                .with_context(|| format!("invalid NATS URL {u:?}"))
        })
        .collect::<Result<_>>()?;
    let client = async_nats::ConnectOptions::new()
        .name("drover-agent")
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connect(addrs)
        .await
        .with_context(|| format!("connecting to {}", args.nats))?;
    let store = Store::new(
        client.clone(),
        StoreConfig {
            sender: "drover-agent".into(),
            ..Default::default()
        },
    )
    .await?;
    let node = NodeHandle::start(store, data_dir, &args.node).await?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = sigterm.recv() => {}
    }
    eprintln!("drover: agent stopping (pods keep running)");
    node.stop().await;
    client.flush().await.ok();
    Ok(())
}

/// `drover fence-guard` (internal; started by the agent): see
/// [`drover_node::fence::guard`].
#[derive(clap::Args, Debug)]
pub struct FenceGuardArgs {
    /// Kill the StatefulSet pods' processes after this long without an `ok` from the agent.
    #[arg(long)]
    pub timeout_ms: u64,
    /// Where the guard writes its PID (the next agent on the data dir replaces it).
    #[arg(long)]
    pub pid_file: PathBuf,
}

/// Runs the fence guard on stdin until the agent's pipe closes and the guard has done its
/// last duty.
pub fn run_fence_guard(args: FenceGuardArgs) -> Result<()> {
    let me = std::process::id();
    std::fs::write(&args.pid_file, me.to_string())
        .with_context(|| format!("writing {}", args.pid_file.display()))?;
    drover_node::fence::guard::run(
        std::io::stdin(),
        std::time::Duration::from_millis(args.timeout_ms),
        std::path::Path::new("/sys/fs/cgroup"),
    );
    // Leave the file to a successor that already replaced it.
    if std::fs::read_to_string(&args.pid_file).is_ok_and(|p| p.trim() == me.to_string()) {
        let _ = std::fs::remove_file(&args.pid_file);
    }
    Ok(())
}

/// The guard's PID file in a node's data dir.
fn guard_pid_file(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("fence-guard.pid")
}

/// Stops the fence guard a previous agent on this data dir left (by the PID in its file,
/// after checking that PID is that guard), so two guards never disagree.
fn replace_old_guard(pid_file: &std::path::Path) {
    let Ok(text) = std::fs::read_to_string(pid_file) else {
        return;
    };
    let Ok(pid) = text.trim().parse::<i32>() else {
        return;
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline);
    if pid <= 1
        || !cmdline.contains("fence-guard")
        || !cmdline.contains(pid_file.to_string_lossy().as_ref())
    {
        return;
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    for _ in 0..100 {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Starts this agent's fence guard (`drover fence-guard`) in its own process group, so
/// neither a SIGSTOP nor a kill of the agent's process group reaches it.
pub fn spawn_fence_guard(
    data_dir: &std::path::Path,
    timeout: std::time::Duration,
) -> Result<drover_node::fence::GuardLink> {
    use std::os::unix::process::CommandExt;
    std::fs::create_dir_all(data_dir)?;
    let pid_file = guard_pid_file(data_dir);
    replace_old_guard(&pid_file);
    let mut cmd = std::process::Command::new(
        std::env::current_exe().context("finding the drover binary for the fence guard")?,
    );
    cmd.arg("fence-guard")
        .arg("--timeout-ms")
        .arg(timeout.as_millis().to_string())
        .arg("--pid-file")
        .arg(&pid_file)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .process_group(0);
    let mut child = cmd.spawn().context("starting the fence guard")?;
    let stdin = child.stdin.take().context("the fence guard's stdin")?;
    // Reap it if it ever exits while the agent runs.
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    Ok(drover_node::fence::GuardLink::new(stdin))
}

#[cfg(test)]
mod tests {
    use super::parse_taint;

    #[test]
    fn taints_parse_like_the_kubelets_flag() {
        let t = parse_taint("dedicated=gpu:NoSchedule").unwrap();
        assert_eq!(
            (t.key.as_str(), t.value.as_deref(), t.effect.as_str()),
            ("dedicated", Some("gpu"), "NoSchedule")
        );
        let t = parse_taint("node.kubernetes.io/special:NoExecute").unwrap();
        assert_eq!(
            (t.key.as_str(), t.value),
            ("node.kubernetes.io/special", None)
        );
        for bad in ["nokey", "k=v:Sometimes", ":NoSchedule", "=v:NoSchedule"] {
            assert!(parse_taint(bad).is_err(), "{bad}");
        }
    }
}
