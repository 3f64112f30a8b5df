//! Forwarding of names the cluster zone does not hold to configured upstream resolvers,
//! as CoreDNS's `forward` plugin does after the `kubernetes` plugin falls through.
//!
//! The query goes out as a fresh message (new id, the question, the client's
//! recursion-desired bit, EDNS) over UDP with hickory's client; a truncated answer is
//! asked again over TCP. Upstreams are tried in the configured order until one answers
//! (any response code counts as an answer); when none does, the caller sends SERVFAIL.
//! hickory's resolver crate would add caching and its own upstream policy, but it is not
//! in the workspace and a relay keeps the upstream's answer (rcode, authority section)
//! intact.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_client::client::Client;
use hickory_proto::op::{Message, Query};
use hickory_proto::runtime::TokioRuntimeProvider;
use hickory_proto::tcp::TcpClientStream;
use hickory_proto::udp::UdpClientStream;
use hickory_proto::xfer::{DnsHandle, DnsRequestOptions, FirstAnswer};
use tokio::task::JoinHandle;

/// How long one upstream has to answer one query before the next is tried.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// One upstream with its UDP client (each query uses a fresh source port).
struct Upstream {
    addr: SocketAddr,
    udp: Client,
}

/// The configured upstreams, in the order they are tried.
pub(crate) struct Forwarder {
    upstreams: Vec<Upstream>,
}

impl Forwarder {
    /// Clients for `addrs`; their background tasks are returned for the caller to stop.
    /// Nothing is sent until the first query.
    pub(crate) async fn new(
        addrs: &[SocketAddr],
    ) -> Result<(Forwarder, Vec<JoinHandle<()>>), hickory_proto::ProtoError> {
        let mut upstreams = Vec::new();
        let mut tasks = Vec::new();
        for &addr in addrs {
            let stream = UdpClientStream::builder(addr, TokioRuntimeProvider::new())
                .with_timeout(Some(UPSTREAM_TIMEOUT))
                .build();
            let (udp, bg) = Client::connect(stream).await?;
            tasks.push(tokio::spawn(async move {
                if let Err(error) = bg.await {
                    tracing::debug!(message = "dns upstream client stopped", %addr, %error);
                }
            }));
            upstreams.push(Upstream { addr, udp });
        }
        Ok((Forwarder { upstreams }, tasks))
    }

    /// The first answer an upstream gives to `query`; `None` when none answered.
    pub(crate) async fn forward(&self, query: &Query, recursion_desired: bool) -> Option<Message> {
        let mut options = DnsRequestOptions::default();
        options.use_edns = true;
        options.recursion_desired = recursion_desired;
        for upstream in &self.upstreams {
            let udp = upstream
                .udp
                .lookup(query.clone(), options)
                .first_answer()
                .await;
            let answer = match udp {
                Ok(resp) if resp.truncated() => tcp_lookup(upstream.addr, query, options).await,
                Ok(resp) => Ok(resp.into_message()),
                Err(e) => Err(e),
            };
            match answer {
                Ok(msg) => return Some(msg),
                Err(error) => {
                    tracing::debug!(message = "dns upstream failed", addr = %upstream.addr, %error);
                }
            }
        }
        None
    }
}

/// One query over a new TCP connection (after a truncated UDP answer).
async fn tcp_lookup(
    addr: SocketAddr,
    query: &Query,
    options: DnsRequestOptions,
) -> Result<Message, hickory_proto::ProtoError> {
    let (stream, sender) = TcpClientStream::new(
        addr,
        None,
        Some(UPSTREAM_TIMEOUT),
        TokioRuntimeProvider::new(),
    );
    let (client, bg) = Client::with_timeout(stream, sender, UPSTREAM_TIMEOUT, None).await?;
    let bg = tokio::spawn(bg);
    let result = client
        .lookup(query.clone(), options)
        .first_answer()
        .await
        .map(|r| r.into_message());
    bg.abort();
    result
}
