//! `drover up`'s side of the gossip: the control plane's own member (with `--no-agent`; with
//! an agent in the process, the agent's member is the control plane's view too) and the
//! view it answers on [`bus_schema::subjects::MEMBERS_VIEW`], which the gateway serves at
//! `/drover/members` for `drover members`.

use std::sync::Arc;

use bus_schema::members::{MemberInfo, MembersView};
use drover_membership::{Member, MemberState};
use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The wire form of one observer's view.
pub fn view(observer: &str, members: &[Member]) -> MembersView {
    let mut members: Vec<MemberInfo> = members
        .iter()
        .map(|m| MemberInfo {
            name: m.name.to_string(),
            address: m.addr.to_string(),
            status: match m.state {
                MemberState::Alive => "alive",
                MemberState::Suspect => "suspect",
                MemberState::Down => "down",
            }
            .to_string(),
            pod_cidr: m.metadata.pod_cidr.clone(),
            zone: m.metadata.zone.clone(),
            api: m.metadata.api.map(|a| a.to_string()),
            fence_timeout_ms: m.metadata.fence_timeout_ms,
        })
        .collect();
    members.sort_by(|a, b| a.name.cmp(&b.name).then(a.address.cmp(&b.address)));
    MembersView {
        observer: observer.to_string(),
        members,
    }
}

/// Copies a membership view into `to` until the task is aborted (the control plane's view
/// exists before the member that feeds it).
pub fn forward(
    mut from: watch::Receiver<Arc<Vec<Member>>>,
    to: watch::Sender<Arc<Vec<Member>>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let current = from.borrow_and_update().clone();
            if to.send(current).is_err() || from.changed().await.is_err() {
                return;
            }
        }
    })
}

/// Answers [`bus_schema::subjects::MEMBERS_VIEW`] requests with the current view until
/// the task is aborted.
pub fn serve_view(
    client: async_nats::Client,
    observer: String,
    members: watch::Receiver<Arc<Vec<Member>>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match client.subscribe(bus_schema::subjects::MEMBERS_VIEW).await {
                Ok(mut sub) => {
                    while let Some(msg) = sub.next().await {
                        let Some(reply) = msg.reply else { continue };
                        let current = members.borrow().clone();
                        let body =
                            serde_json::to_vec(&view(&observer, &current)).unwrap_or_default();
                        if let Err(error) = client.publish(reply, body.into()).await {
                            tracing::debug!(message = "answering a members view request failed", %error);
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(message = "subscribing to members view requests failed", %error);
                }
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    })
}

/// Starts the control plane's own gossip member (`drover up --no-agent --gossip-bind`):
/// no pod CIDR, the API address in its metadata, never fenced.
pub async fn start_control_plane_member(
    name: String,
    bind: std::net::SocketAddr,
    advertise: Option<std::net::SocketAddr>,
    seeds: Vec<std::net::SocketAddr>,
    api: std::net::SocketAddr,
) -> anyhow::Result<drover_membership::Membership> {
    let mut config = drover_membership::MembershipConfig::new(name, bind);
    config.advertise = advertise;
    config.seeds = seeds;
    config.metadata = drover_membership::NodeMetadata {
        api: Some(api),
        ..Default::default()
    };
    drover_membership::Membership::start(config)
        .await
        .map_err(|e| anyhow::anyhow!("starting the control plane's gossip member on {bind}: {e}"))
}
