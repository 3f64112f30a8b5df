//! drover-membership: SWIM membership between drover's node agents, built on foca.
//!
//! [`Membership::start`] binds a UDP socket and spawns one tokio task that owns the foca
//! state machine: it feeds foca the datagrams it receives and the timers foca asked for
//! (a deadline heap woken by tokio sleeps, so timers fire in order), sends what foca wants
//! sent, and turns foca's notifications into [`MemberEvent`]s and a [`Member`] snapshot.
//! Every member's identity ([`NodeId`]) carries its [`NodeMetadata`] (pod CIDR, zone, agent
//! API address), so peers learn it from the gossip itself. How fast members are declared down
//! is [`timing()`]'s business; see its module for the numbers.

pub mod events;
pub mod identity;
pub mod timing;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use foca::{AccumulatingRuntime, Config, Foca, NoCustomBroadcast, OwnedNotification, Timer};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Duration, Instant, sleep_until};

pub use events::{Member, MemberEvent, MemberState};
pub use identity::{IdentityError, NodeId, NodeMetadata, WireCodec};
pub use timing::{Profile, timing};

/// How a member starts.
#[derive(Clone, Debug)]
pub struct MembershipConfig {
    /// The node's name.
    pub name: String,
    /// The UDP address to bind (port 0 picks one).
    pub bind: SocketAddr,
    /// The address peers reach this member at; `None` uses the bound address, which must
    /// then be a specific IP (not 0.0.0.0).
    pub advertise: Option<SocketAddr>,
    /// Members to announce to when joining; this member's own address is skipped. Until a
    /// member knows anyone it re-announces to its seeds every second.
    pub seeds: Vec<SocketAddr>,
    /// What this node advertises.
    pub metadata: NodeMetadata,
    /// foca's timing, usually [`timing()`] for the expected cluster size.
    pub timing: Config,
    /// Probability (0..=1) that an outgoing datagram is dropped instead of sent: loss
    /// injection for tests and `drover sim`. 0 in production.
    pub drop_outgoing: f64,
    /// Seed for foca's and the loss injection's random choices; `None` takes a random one.
    pub seed: Option<u64>,
}

impl MembershipConfig {
    /// A config with drover's fast LAN timing for a cluster of about 16, no seeds, no loss.
    pub fn new(name: impl Into<String>, bind: SocketAddr) -> Self {
        MembershipConfig {
            name: name.into(),
            bind,
            advertise: None,
            seeds: Vec::new(),
            metadata: NodeMetadata::default(),
            timing: timing(16, Profile::Fast),
            drop_outgoing: 0.0,
            seed: None,
        }
    }
}

/// Why membership could not start or act.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The UDP socket could not be bound.
    #[error("binding gossip socket {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// The identity is unusable.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// A config field is out of range.
    #[error("invalid membership config: {0}")]
    InvalidConfig(String),
    /// The membership task is gone.
    #[error("membership has stopped")]
    Stopped,
}

/// Counters of the membership task, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams received.
    pub received: u64,
    /// Datagrams foca refused (undecodable, too big, or otherwise malformed).
    pub rejected: u64,
    /// Datagrams sent.
    pub sent: u64,
    /// Datagrams dropped by [`MembershipConfig::drop_outgoing`].
    pub dropped_outgoing: u64,
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    rejected: AtomicU64,
    sent: AtomicU64,
    dropped_outgoing: AtomicU64,
}

enum Command {
    Leave(oneshot::Sender<()>),
    SetMetadata(NodeMetadata, oneshot::Sender<Result<NodeId, Error>>),
    SetDropOutgoing(f64, oneshot::Sender<()>),
}

/// A running member: a handle on the gossip task.
///
/// Dropping it (or [`Membership::stop`]) ends the task without telling anyone, as a crash
/// would; [`Membership::leave`] tells the cluster first.
pub struct Membership {
    identity: watch::Receiver<NodeId>,
    addr: SocketAddr,
    commands: mpsc::Sender<Command>,
    view: watch::Receiver<Arc<Vec<Member>>>,
    events: broadcast::Sender<MemberEvent>,
    counters: Arc<Counters>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("identity", &*self.identity.borrow())
            .finish_non_exhaustive()
    }
}

/// How many events a slow subscriber may fall behind before it sees `Lagged`.
const EVENT_BUFFER: usize = 4096;

/// How often a member that knows nobody re-announces to its seeds.
const REANNOUNCE: Duration = Duration::from_secs(1);

impl Membership {
    /// Binds the socket, announces to the seeds and starts gossiping.
    pub async fn start(config: MembershipConfig) -> Result<Membership, Error> {
        check_probability(config.drop_outgoing)?;
        let socket = UdpSocket::bind(config.bind)
            .await
            .map_err(|source| Error::Bind {
                addr: config.bind,
                source,
            })?;
        let local = socket.local_addr().map_err(|source| Error::Bind {
            addr: config.bind,
            source,
        })?;
        let addr = config.advertise.unwrap_or(local);
        if addr.ip().is_unspecified() {
            return Err(Error::InvalidConfig(format!(
                "cannot advertise the unspecified address {addr}; set advertise"
            )));
        }
        let identity = NodeId {
            name: config.name.clone(),
            addr,
            // Milliseconds since the epoch: a restarted member wins over its old self.
            bump: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            meta: config.metadata.clone(),
        };
        identity::validate(&identity)?;

        let seed = config.seed.unwrap_or_else(rand::random);
        let foca = Foca::new(
            identity.clone(),
            config.timing.clone(),
            StdRng::seed_from_u64(seed),
            WireCodec,
        );
        let (view_tx, view) =
            watch::channel(Arc::new(vec![Member::new(&identity, MemberState::Alive)]));
        let (me_tx, me) = watch::channel(identity.clone());
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let (commands, commands_rx) = mpsc::channel(4);
        let counters = Arc::new(Counters::default());
        let seeds: Vec<SocketAddr> = config
            .seeds
            .iter()
            .copied()
            .filter(|s| *s != addr)
            .collect();
        let driver = Driver {
            foca,
            runtime: AccumulatingRuntime::new(),
            socket,
            timers: BinaryHeap::new(),
            drop_outgoing: config.drop_outgoing,
            loss_rng: StdRng::seed_from_u64(seed.wrapping_add(1)),
            view: view_tx,
            me: me_tx,
            events: events.clone(),
            counters: counters.clone(),
            seeds,
            seen: Vec::new(),
        };
        let task = tokio::spawn(driver.run(commands_rx));
        Ok(Membership {
            identity: me,
            addr,
            commands,
            view,
            events,
            counters,
            task: Some(task),
        })
    }

    /// This member's current identity: its bump grows when foca renews it (after being
    /// declared down while alive) and with each [`Membership::set_metadata`].
    pub fn identity(&self) -> NodeId {
        self.identity.borrow().clone()
    }

    /// The gossip address this member advertises.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every member this one knows, itself included, down ones until they are forgotten;
    /// sorted by name, then address.
    pub fn members(&self) -> Vec<Member> {
        self.view.borrow().as_ref().clone()
    }

    /// A watch on the member list, for waiting on a condition.
    pub fn watch(&self) -> watch::Receiver<Arc<Vec<Member>>> {
        self.view.clone()
    }

    /// Membership changes from now on. Each step publishes the member list before its
    /// events, so a subscriber that reacts to an event finds it in [`Membership::members`],
    /// and one that reads the list and then subscribes may still get an event the list
    /// already showed (apply events idempotently). A subscriber more than 4,096 events
    /// behind gets `Lagged` and should re-read the list.
    pub fn subscribe(&self) -> broadcast::Receiver<MemberEvent> {
        self.events.subscribe()
    }

    /// The task's counters.
    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            received: c.received.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            sent: c.sent.load(Ordering::Relaxed),
            dropped_outgoing: c.dropped_outgoing.load(Ordering::Relaxed),
        }
    }

    /// Advertises new metadata: this member takes a renewed identity carrying it, which
    /// peers apply as an [`MemberEvent::Updated`]. Returns the new identity.
    pub async fn set_metadata(&self, metadata: NodeMetadata) -> Result<NodeId, Error> {
        let (done, wait) = oneshot::channel();
        self.commands
            .send(Command::SetMetadata(metadata, done))
            .await
            .map_err(|_| Error::Stopped)?;
        wait.await.map_err(|_| Error::Stopped)?
    }

    /// Changes [`MembershipConfig::drop_outgoing`] while running: 1.0 makes this member
    /// mute but still listening (a gray failure), back to 0.0 lets it refute.
    pub async fn set_drop_outgoing(&self, probability: f64) -> Result<(), Error> {
        check_probability(probability)?;
        let (done, wait) = oneshot::channel();
        self.commands
            .send(Command::SetDropOutgoing(probability, done))
            .await
            .map_err(|_| Error::Stopped)?;
        wait.await.map_err(|_| Error::Stopped)
    }

    /// Leaves gracefully: tells some members this one is down (so the cluster need not wait
    /// for the failure detector), then stops.
    pub async fn leave(mut self) -> Result<(), Error> {
        let (done, wait) = oneshot::channel();
        self.commands
            .send(Command::Leave(done))
            .await
            .map_err(|_| Error::Stopped)?;
        wait.await.map_err(|_| Error::Stopped)?;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        Ok(())
    }

    /// Stops at once, telling no one (as a crash would); the socket is closed on return.
    pub async fn stop(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

fn check_probability(p: f64) -> Result<(), Error> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(Error::InvalidConfig(format!(
            "drop_outgoing must be between 0 and 1, got {p}"
        )))
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// The task that owns foca and the socket.
struct Driver {
    foca: Foca<NodeId, WireCodec, StdRng, NoCustomBroadcast>,
    runtime: AccumulatingRuntime<NodeId>,
    socket: UdpSocket,
    timers: BinaryHeap<Reverse<(Instant, Timer<NodeId>)>>,
    /// Probability of dropping an outgoing datagram, and the RNG that decides.
    drop_outgoing: f64,
    loss_rng: StdRng,
    view: watch::Sender<Arc<Vec<Member>>>,
    me: watch::Sender<NodeId>,
    events: broadcast::Sender<MemberEvent>,
    counters: Arc<Counters>,
    seeds: Vec<SocketAddr>,
    /// What the published view was built from (see `changed`).
    seen: Vec<(SocketAddr, u64, MemberState)>,
}

impl Driver {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        // Datagrams over max_packet_size are read whole so foca can refuse them (DataTooBig)
        // rather than parse a truncated prefix.
        let mut buf = vec![0u8; 65_536];
        self.announce_to_seeds();
        self.flush().await;
        let mut reannounce = tokio::time::interval_at(Instant::now() + REANNOUNCE, REANNOUNCE);
        loop {
            let next_timer = self.timers.peek().map(|Reverse((at, _))| *at);
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Leave(done)) => {
                        if let Err(error) = self.foca.leave_cluster(&mut self.runtime) {
                            tracing::warn!(%error, "leaving the cluster");
                        }
                        self.flush().await;
                        let _ = done.send(());
                        return;
                    }
                    Some(Command::SetMetadata(meta, done)) => {
                        let result = self.set_metadata(meta);
                        // Published before the caller hears back: identity() is the new one.
                        self.flush().await;
                        let _ = done.send(result);
                    }
                    Some(Command::SetDropOutgoing(p, done)) => {
                        self.drop_outgoing = p;
                        let _ = done.send(());
                    }
                    // The handle was dropped without stop(): Drop aborts us anyway.
                    None => return,
                },
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((len, from)) => {
                        self.counters.received.fetch_add(1, Ordering::Relaxed);
                        if let Err(error) = self.foca.handle_data(&buf[..len], &mut self.runtime) {
                            self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(%from, %error, len, "gossip datagram refused");
                        }
                    }
                    Err(error) => tracing::debug!(%error, "gossip socket receive"),
                },
                () = sleep_until(next_timer.unwrap_or_else(Instant::now)), if next_timer.is_some() => {
                    let now = Instant::now();
                    while let Some(Reverse((at, _))) = self.timers.peek() {
                        if *at > now {
                            break;
                        }
                        let Some(Reverse((_, timer))) = self.timers.pop() else { break };
                        if let Err(error) = self.foca.handle_timer(timer, &mut self.runtime) {
                            tracing::debug!(%error, "gossip timer");
                        }
                    }
                }
                _ = reannounce.tick() => {
                    if self.foca.num_members() == 0 {
                        self.announce_to_seeds();
                    }
                }
            }
            self.flush().await;
        }
    }

    fn set_metadata(&mut self, meta: NodeMetadata) -> Result<NodeId, Error> {
        let current = self.foca.identity();
        if current.meta == meta {
            return Ok(current.clone());
        }
        let next = NodeId {
            bump: current.bump.wrapping_add(1),
            meta,
            ..current.clone()
        };
        identity::validate(&next)?;
        self.foca
            .change_identity(next.clone(), &mut self.runtime)
            .map_err(|error| Error::InvalidConfig(format!("changing identity: {error}")))?;
        Ok(next)
    }

    fn announce_to_seeds(&mut self) {
        for seed in &self.seeds {
            if let Err(error) = self.foca.announce(NodeId::seed(*seed), &mut self.runtime) {
                tracing::debug!(%seed, %error, "announcing to seed");
            }
        }
    }

    /// Carries out what foca asked for: sends, timers, notifications; then refreshes the view.
    async fn flush(&mut self) {
        while let Some((to, data)) = self.runtime.to_send() {
            if self.drop_outgoing > 0.0 && self.loss_rng.random_bool(self.drop_outgoing) {
                self.counters
                    .dropped_outgoing
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            }
            match self.socket.send_to(&data, to.addr).await {
                Ok(_) => {
                    self.counters.sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => tracing::debug!(to = %to.addr, %error, "gossip send"),
            }
        }
        let now = Instant::now();
        while let Some((after, timer)) = self.runtime.to_schedule() {
            // A configured delay too large for an Instant (say Duration::MAX) means "never".
            if let Some(at) = now.checked_add(after) {
                self.timers.push(Reverse((at, timer)));
            }
        }
        let mut batch = Vec::new();
        while let Some(note) = self.runtime.to_notify() {
            match &note {
                OwnedNotification::Defunct => {
                    tracing::warn!("this member was declared down and cannot rejoin")
                }
                OwnedNotification::Rejoin(id) => {
                    tracing::info!(bump = id.bump, "declared down while alive; rejoined")
                }
                _ => {}
            }
            batch.push(note);
        }
        if batch.is_empty() && !self.changed() {
            return;
        }
        self.seen = self.fingerprint().collect();
        let me = self.foca.identity();
        self.me.send_if_modified(|current| {
            let changed = current != me;
            if changed {
                *current = me.clone();
            }
            changed
        });
        let members = self.snapshot();
        // The view first: a subscriber that reacts to an event finds it in members().
        self.view.send_if_modified(|view| {
            if view.as_slice() == members.as_slice() {
                false
            } else {
                *view = Arc::new(members.clone());
                true
            }
        });
        if !batch.is_empty() {
            let state_of = |id: &NodeId| {
                members
                    .iter()
                    .find(|m| m.addr == id.addr && m.name == id.name)
                    .map(|m| m.state)
            };
            for event in events::events(&batch, state_of) {
                tracing::info!(?event, "membership");
                // No subscribers is fine.
                let _ = self.events.send(event);
            }
        }
    }

    /// (address, bump, state) of this member and then every known one, in foca's order.
    fn fingerprint(&self) -> impl Iterator<Item = (SocketAddr, u64, MemberState)> + '_ {
        let me = self.foca.identity();
        std::iter::once((me.addr, me.bump, MemberState::Alive)).chain(
            self.foca
                .iter_membership_state()
                .map(|m| (m.id().addr, m.id().bump, m.state().into())),
        )
    }

    /// Whether the members differ from the last published view. Checked without allocating,
    /// because most steps (an ack, a gossip round) change nothing, and with many members
    /// (`drover sim` runs a thousand in one process) rebuilding the view on each would cost
    /// more than the protocol. A change of metadata always changes the bump.
    fn changed(&self) -> bool {
        self.foca.iter_membership_state().len() + 1 != self.seen.len()
            || self
                .fingerprint()
                .zip(&self.seen)
                .any(|(now, seen)| now != *seen)
    }

    fn snapshot(&self) -> Vec<Member> {
        let mut members: Vec<Member> =
            std::iter::once(Member::new(self.foca.identity(), MemberState::Alive))
                .chain(
                    self.foca
                        .iter_membership_state()
                        .map(|m| Member::new(m.id(), m.state().into())),
                )
                .collect();
        members.sort_by(|a, b| a.name.cmp(&b.name).then(a.addr.cmp(&b.addr)));
        members
    }
}
