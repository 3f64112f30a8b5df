//! drover's cluster DNS: an authoritative server for the cluster zone (`cluster.local`
//! by default) that follows Services and EndpointSlices in the store (one list + watch
//! each, into an in-memory [`index::Index`]) and answers the Kubernetes DNS schema over
//! UDP and TCP with hickory-server, including reverse (PTR) names of cluster IPs and
//! endpoint addresses. Names it does not hold go to the configured upstream resolvers
//! ([`DnsConfig::upstreams`], [`forward`]); with none configured (the default) they are
//! REFUSED, so no query leaves the machine unless asked to.

mod forward;
pub mod index;
mod server;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bus_schema::KindInfo;
use drover_store::{ListOptions, Store, WatchEvent, WatchOptions};
use futures::StreamExt;
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

use crate::index::Index;

/// Delay before listing again after the store failed.
const RELIST_AFTER: Duration = Duration::from_millis(500);
/// How long an idle TCP connection is kept.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and for which zone the server answers.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// UDP and TCP listen address (port 0 picks a free port, the same for both).
    pub listen: SocketAddr,
    /// The cluster domain.
    pub zone: String,
    /// Resolvers that names outside the zone are forwarded to, tried in order; empty
    /// (the default) means such names are REFUSED.
    pub upstreams: Vec<SocketAddr>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 53)),
            zone: "cluster.local".into(),
            upstreams: Vec::new(),
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// Binding the UDP or TCP socket failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// An upstream is this server itself: every name it does not hold would loop.
    #[error("dns upstream {0} is this server's own address")]
    UpstreamIsSelf(SocketAddr),
    /// A client for an upstream resolver could not be set up.
    #[error("cannot set up the dns upstream client: {0}")]
    Upstream(#[from] hickory_proto::ProtoError),
}

/// The running server: its informers and its sockets.
#[derive(Debug)]
pub struct Dns {
    addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Dns {
    /// Binds UDP and TCP on `config.listen` and starts following the store.
    pub async fn start(store: Store, config: DnsConfig) -> Result<Dns, DnsError> {
        let bind = |addr: SocketAddr| move |source| DnsError::Bind { addr, source };
        let udp = UdpSocket::bind(config.listen)
            .await
            .map_err(bind(config.listen))?;
        // TCP on the port UDP got, so a port-0 configuration serves one address.
        let addr = udp.local_addr().map_err(bind(config.listen))?;
        let tcp = TcpListener::bind(addr).await.map_err(bind(addr))?;
        let index = Arc::new(RwLock::new(Index::new(&config.zone)));
        if let Some(own) = config.upstreams.iter().find(|u| is_self(**u, addr)) {
            return Err(DnsError::UpstreamIsSelf(*own));
        }
        let mut tasks = Vec::new();
        let forwarder = if config.upstreams.is_empty() {
            None
        } else {
            let (forwarder, upstream_tasks) = forward::Forwarder::new(&config.upstreams).await?;
            tasks.extend(upstream_tasks);
            Some(forwarder)
        };
        let mut server =
            hickory_server::ServerFuture::new(server::Handler::new(index.clone(), forwarder));
        server.register_socket(udp);
        server.register_listener(tcp, TCP_TIMEOUT);
        let services = bus_schema::kinds::by_group_resource("", "services")
            .expect("services is a built-in kind");
        let slices = bus_schema::kinds::by_group_resource("discovery.k8s.io", "endpointslices")
            .expect("endpointslices is a built-in kind");
        tasks.extend([
            tokio::spawn(follow(store.clone(), services, index.clone())),
            tokio::spawn(follow(store, slices, index)),
            tokio::spawn(async move {
                if let Err(error) = server.block_until_done().await {
                    tracing::warn!(message = "dns server stopped", %error);
                }
            }),
        ]);
        tracing::info!(message = "dns listening", %addr, zone = %config.zone, upstreams = ?config.upstreams);
        Ok(Dns { addr, tasks })
    }

    /// The address UDP and TCP answer on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the informers and closes the sockets.
    pub async fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Whether `upstream` reaches the server listening on `listen` (same address, or a
/// loopback address when it listens on all of them).
fn is_self(upstream: SocketAddr, listen: SocketAddr) -> bool {
    upstream.port() == listen.port()
        && (upstream.ip() == listen.ip()
            || (listen.ip().is_unspecified() && upstream.ip().is_loopback()))
}

/// Lists and watches `kind` into the index forever, listing afresh after any failure
/// (the list replaces what the index held for the kind, so nothing deleted meanwhile
/// lingers).
async fn follow(store: Store, kind: &'static KindInfo, index: Arc<RwLock<Index>>) {
    let services = kind.plural == "services";
    loop {
        let error = match watch_once(&store, kind, &index, services).await {
            Ok(()) => "the watch ended".to_string(),
            Err(e) => e.to_string(),
        };
        tracing::debug!(message = "dns informer restarting", kind = kind.plural, %error);
        tokio::time::sleep(RELIST_AFTER).await;
    }
}

async fn watch_once(
    store: &Store,
    kind: &'static KindInfo,
    index: &RwLock<Index>,
    services: bool,
) -> Result<(), drover_store::StoreError> {
    let listed = store.list(kind, None, &ListOptions::default()).await?;
    {
        let mut ix = index.write().unwrap_or_else(|p| p.into_inner());
        if services {
            ix.replace_services(&listed.items);
        } else {
            ix.replace_slices(&listed.items);
        }
    }
    let mut watch = store
        .watch(kind, None, listed.resource_version, WatchOptions::default())
        .await?;
    while let Some(event) = watch.next().await {
        let event = event?;
        let mut ix = index.write().unwrap_or_else(|p| p.into_inner());
        match (&event, services) {
            (WatchEvent::Added(o) | WatchEvent::Modified(o), true) => ix.upsert_service(o),
            (WatchEvent::Added(o) | WatchEvent::Modified(o), false) => ix.upsert_slice(o),
            (WatchEvent::Deleted(o), true) => ix.remove_service(o),
            (WatchEvent::Deleted(o), false) => ix.remove_slice(o),
            (WatchEvent::Bookmark(_), _) => false,
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests;
