//! drover-membership: SWIM membership between drover's node agents, built on foca.
//!
//! [`Membership::start`] binds a UDP socket and spawns one tokio task that owns the foca
//! state machine: it feeds foca the datagrams it receives and the timers foca asked for
//! (a deadline heap woken by tokio sleeps, so timers fire in order), sends what foca wants
//! sent, and turns foca's notifications into [`MemberEvent`]s and a [`Member`] snapshot.
//! Every member's identity ([`NodeId`]) carries its [`NodeMetadata`] (pod CIDR, zone, agent
//! API address), so peers learn it from the gossip itself. How fast members are declared down
//! is [`timing()`]'s business; see its module for the numbers.

mod dedup;
pub mod events;
pub mod health;
pub mod identity;
pub mod sync;
pub mod timing;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
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
    /// Piggybacked updates taken out of received datagrams because foca had applied them
    /// already (see the `dedup` module).
    pub repeats: u64,
    /// Times this member's timers fired late and were pushed back (see [`health`]).
    pub late_timers: u64,
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    rejected: AtomicU64,
    sent: AtomicU64,
    dropped_outgoing: AtomicU64,
    repeats: AtomicU64,
    late_timers: AtomicU64,
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

/// How many queued datagrams are read before due timers run (see `Driver::drain`).
const DRAIN_MAX: usize = 256;

/// How often a member that knows nobody re-announces to its seeds (and one that has not
/// heard a seed's sync reply asks again).
const REANNOUNCE: Duration = Duration::from_secs(1);

/// How often a member pulls one random member's state (memberlist's push/pull runs every
/// 30 s). It repairs what the gossip missed: a join a member never heard of, and a
/// refuted suspicion it never heard refuted (foca clears a suspicion only on the
/// refutation, so a member that missed it would hold a live member suspect until that
/// member happened to talk to it directly).
const SYNC_PERIOD: Duration = Duration::from_secs(15);

/// How long a pulled member's reply is awaited.
const SYNC_WINDOW: Duration = Duration::from_secs(2);

/// How many times a newcomer asks its seeds for their state before it leaves the rest to
/// foca's probes and periodic announces.
const SYNC_TRIES: u32 = 10;

/// The least time between two publications of the member view. Building the view clones
/// every member and sorts them; when a large cluster forms, every member learns of others
/// many times a second, and rebuilding on each would cost more than the protocol. A change
/// after a quiet spell is published at once; a burst waits at most this long, events
/// included (they follow the view they describe). A member going down is always published
/// this fast; other changes (joins, suspicions, refutations) wait [`VIEW_INTERVAL_PER_MEMBER`]
/// per known member if that is longer (see [`Driver::interval`]).
const VIEW_INTERVAL: Duration = Duration::from_millis(100);

/// How much longer than [`VIEW_INTERVAL`] a large cluster's view may wait for changes that
/// are not a member going down: 0.5 ms per member, 500 ms at 1,000. A publication costs
/// O(n), and every member of a forming cluster has something to publish all the time, so
/// with a fixed interval `drover sim`'s thousand members in one process spent most of
/// their CPU rebuilding views nobody read. Down is what failover waits for, and is never
/// held back.
const VIEW_INTERVAL_PER_MEMBER: Duration = Duration::from_micros(500);

impl Membership {
    /// Binds the socket, announces to the seeds and starts gossiping.
    pub async fn start(config: MembershipConfig) -> Result<Membership, Error> {
        check_probability(config.drop_outgoing)?;
        let bind_error = |source| Error::Bind {
            addr: config.bind,
            source,
        };
        // One socket, two handles: tokio's for receiving, a non-blocking std clone for
        // sending (see `Driver::send`).
        let std_socket = std::net::UdpSocket::bind(config.bind).map_err(bind_error)?;
        std_socket.set_nonblocking(true).map_err(bind_error)?;
        let sender = std_socket.try_clone().map_err(bind_error)?;
        let socket = UdpSocket::from_std(std_socket).map_err(bind_error)?;
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
            name: Arc::from(config.name.as_str()),
            addr,
            // Milliseconds since the epoch: a restarted member wins over its old self.
            bump: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            meta: Arc::new(config.metadata.clone()),
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
            sender,
            timers: BinaryHeap::new(),
            drop_outgoing: config.drop_outgoing,
            loss_rng: StdRng::seed_from_u64(seed.wrapping_add(1)),
            view: view_tx,
            me: me_tx,
            events: events.clone(),
            counters: counters.clone(),
            seeds,
            seen: Vec::new(),
            places: Vec::new(),
            raw_out: Vec::new(),
            sync_tries: 0,
            synced: false,
            pulls: Vec::new(),
            pull_rng: StdRng::seed_from_u64(seed.wrapping_add(2)),
            pending: Vec::new(),
            last_publish: None,
            publish_due: None,
            check_due: None,
            last_check: None,
            max_packet: config.timing.max_packet_size.get(),
            dedup: dedup::Dedup::new(config.timing.remove_down_after, Instant::now()),
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
            repeats: c.repeats.load(Ordering::Relaxed),
            late_timers: c.late_timers.load(Ordering::Relaxed),
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
    /// The same socket, non-blocking, for sending.
    sender: std::net::UdpSocket,
    timers: BinaryHeap<Reverse<(Instant, Timer<NodeId>)>>,
    /// Probability of dropping an outgoing datagram, and the RNG that decides.
    drop_outgoing: f64,
    loss_rng: StdRng,
    view: watch::Sender<Arc<Vec<Member>>>,
    me: watch::Sender<NodeId>,
    events: broadcast::Sender<MemberEvent>,
    counters: Arc<Counters>,
    seeds: Vec<SocketAddr>,
    /// What the published view was built from (see `changed`), in foca's order.
    seen: Vec<(SocketAddr, u64, MemberState)>,
    /// Where each of `seen`'s members sits in the published (sorted) view.
    places: Vec<usize>,
    /// Datagrams of drover's own (sync) to send with foca's in the next flush.
    raw_out: Vec<(SocketAddr, Vec<u8>)>,
    /// Sync requests sent so far, and whether a seed has answered one.
    sync_tries: u32,
    synced: bool,
    /// Periodic pulls awaiting replies: from whom, until when.
    pulls: Vec<(SocketAddr, Instant)>,
    pull_rng: StdRng,
    /// foca's notifications not yet published as events (see [`VIEW_INTERVAL`]).
    pending: Vec<OwnedNotification<NodeId>>,
    /// When the view was last published, and when a held-back change is due.
    last_publish: Option<Instant>,
    publish_due: Option<Instant>,
    /// When to look for changes foca did not notify (see [`Driver::check`]).
    check_due: Option<Instant>,
    last_check: Option<Instant>,
    /// foca's packet size limit, which sync datagrams keep to as well.
    max_packet: usize,
    /// Updates foca applied already, taken out of what it receives.
    dedup: dedup::Dedup,
}

impl Driver {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        // Datagrams over max_packet_size are read whole so foca can refuse them (DataTooBig)
        // rather than parse a truncated prefix.
        let mut buf = vec![0u8; 65_536];
        self.announce_to_seeds();
        self.request_sync();
        self.flush();
        let mut reannounce = tokio::time::interval_at(Instant::now() + REANNOUNCE, REANNOUNCE);
        // Members started together should not all pull at once.
        let offset = SYNC_PERIOD.mul_f64(self.pull_rng.random_range(0.5..1.5));
        let mut pull = tokio::time::interval_at(Instant::now() + offset, SYNC_PERIOD);
        loop {
            let next_timer = self.timers.peek().map(|Reverse((at, _))| *at);
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Leave(done)) => {
                        if let Err(error) = self.foca.leave_cluster(&mut self.runtime) {
                            tracing::warn!(%error, "leaving the cluster");
                        }
                        self.flush();
                        let _ = done.send(());
                        return;
                    }
                    Some(Command::SetMetadata(meta, done)) => {
                        let result = self.set_metadata(meta);
                        // Published before the caller hears back: identity() is the new one.
                        self.flush();
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
                    Ok((len, from)) => self.receive(&buf[..len], from),
                    Err(error) => tracing::debug!(%error, "gossip socket receive"),
                },
                () = sleep_until(next_timer.unwrap_or_else(Instant::now)), if next_timer.is_some() => {
                    // What arrived before the deadline goes first: an ack waiting in the
                    // socket must not lose to the timer that gives up on it (select! picks
                    // among ready branches at random).
                    self.drain(&mut buf);
                    let now = Instant::now();
                    let pushed_back = self.catch_up(now);
                    while let Some(Reverse((at, _))) = self.timers.peek() {
                        if pushed_back || *at > now {
                            break;
                        }
                        let Some(Reverse((_, timer))) = self.timers.pop() else { break };
                        if let Err(error) = self.foca.handle_timer(timer, &mut self.runtime) {
                            tracing::debug!(%error, "gossip timer");
                        }
                    }
                }
                () = sleep_until(self.publish_due.unwrap_or_else(Instant::now)), if self.publish_due.is_some() => {
                    self.publish();
                }
                () = sleep_until(self.check_due.unwrap_or_else(Instant::now)), if self.check_due.is_some() => {
                    self.check();
                }
                _ = pull.tick() => self.pull(),
                _ = reannounce.tick() => {
                    if self.foca.num_members() == 0 {
                        self.announce_to_seeds();
                    }
                    if !self.synced && self.sync_tries < SYNC_TRIES {
                        // The seed answers only members it knows: the announce may have
                        // been lost, so it goes again with the request.
                        if self.foca.num_members() != 0 {
                            self.announce_to_seeds();
                        }
                        self.request_sync();
                    }
                }
            }
            self.flush();
        }
    }

    /// A foca datagram: repeated updates taken out (see the `dedup` module), the rest
    /// handed to foca, and what foca applied remembered.
    fn handle_data(&mut self, data: &[u8], from: SocketAddr) {
        let now = Instant::now();
        let verdict = self.dedup.filter(data, self.foca.identity(), now);
        let (packet, src) = match verdict {
            dedup::Verdict::AsIs => (data, None),
            dedup::Verdict::Apply { src, rewritten } => {
                let packet = if rewritten { self.dedup.packet() } else { data };
                (packet, Some(src))
            }
        };
        self.counters
            .repeats
            .store(self.dedup.dropped, Ordering::Relaxed);
        if let Err(error) = self.foca.handle_data(packet, &mut self.runtime) {
            self.counters.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%from, %error, len = data.len(), "gossip datagram refused");
            return;
        }
        // foca applies a sender's updates only while it holds the sender active.
        if let Some(src) = src
            && self.dedup.has_novel()
            && self
                .foca
                .iter_membership_state()
                .any(|m| m.id().addr == src && m.state() != foca::State::Down)
        {
            self.dedup.record(data, now);
        }
    }

    /// One received datagram.
    fn receive(&mut self, data: &[u8], from: SocketAddr) {
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        if sync::is_sync(data) {
            self.handle_sync(data, from);
        } else {
            self.handle_data(data, from);
        }
    }

    /// Reads what is queued in the socket now (at most [`DRAIN_MAX`] datagrams), through
    /// the non-blocking std handle: tokio's would answer from its cached readiness.
    fn drain(&mut self, buf: &mut [u8]) {
        for _ in 0..DRAIN_MAX {
            match self.sender.recv_from(buf) {
                Ok((len, from)) => self.receive(&buf[..len], from),
                Err(error) => {
                    if error.kind() != io::ErrorKind::WouldBlock {
                        tracing::debug!(%error, "gossip socket receive");
                    }
                    return;
                }
            }
        }
    }

    /// Pushes every timer back when the earliest due one fires late (see [`health`]);
    /// returns whether it did.
    fn catch_up(&mut self, now: Instant) -> bool {
        let Some(Reverse((earliest, _))) = self.timers.peek() else {
            return false;
        };
        let late = now.saturating_duration_since(*earliest);
        let Some(shift) = health::push_back(late) else {
            return false;
        };
        self.timers = std::mem::take(&mut self.timers)
            .into_iter()
            .map(|Reverse((at, timer))| Reverse((at + shift, timer)))
            .collect();
        self.counters.late_timers.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(?late, ?shift, "gossip timers late; pushed back");
        true
    }

    fn set_metadata(&mut self, meta: NodeMetadata) -> Result<NodeId, Error> {
        let current = self.foca.identity();
        if *current.meta == meta {
            return Ok(current.clone());
        }
        let next = NodeId {
            bump: current.bump.wrapping_add(1),
            meta: Arc::new(meta),
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

    /// Asks every seed for its members (see [`sync`]); a member without seeds has nobody
    /// to ask and counts as synced.
    fn request_sync(&mut self) {
        if self.seeds.is_empty() {
            self.synced = true;
            return;
        }
        self.sync_tries += 1;
        for seed in &self.seeds {
            self.raw_out.push((*seed, sync::encode_request()));
        }
    }

    /// Asks one random active member for its state (see [`SYNC_PERIOD`]).
    fn pull(&mut self) {
        let now = Instant::now();
        self.pulls.retain(|(_, until)| *until > now);
        let active = self
            .foca
            .iter_membership_state()
            .filter(|m| m.state() != foca::State::Down)
            .count();
        if active == 0 {
            return;
        }
        let pick = self.pull_rng.random_range(0..active);
        let Some(to) = self
            .foca
            .iter_membership_state()
            .filter(|m| m.state() != foca::State::Down)
            .nth(pick)
            .map(|m| m.id().addr)
        else {
            return;
        };
        self.pulls.push((to, now + SYNC_WINDOW));
        self.raw_out.push((to, sync::encode_request()));
    }

    /// A sync datagram: a request is answered (only for a known, active member, so a forged
    /// source address cannot turn one small datagram into a stream of large ones towards a
    /// stranger); a reply is accepted only from a seed or a member pulled within the last
    /// [`SYNC_WINDOW`], and only its active members are applied, without re-broadcasting.
    fn handle_sync(&mut self, data: &[u8], from: SocketAddr) {
        let message = match sync::decode(data) {
            Ok(message) => message,
            Err(error) => {
                self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%from, %error, "sync datagram refused");
                return;
            }
        };
        match message {
            sync::SyncMessage::Request => {
                let known = self
                    .foca
                    .iter_membership_state()
                    .any(|m| m.id().addr == from && m.state() != foca::State::Down);
                if !known {
                    tracing::debug!(%from, "sync request from a stranger ignored");
                    return;
                }
                for datagram in
                    sync::encode_replies(self.foca.iter_membership_state(), self.max_packet)
                {
                    self.raw_out.push((from, datagram));
                }
            }
            sync::SyncMessage::Reply(members) => {
                if !sync::accepts_reply(from, &self.seeds, &self.pulls, Instant::now()) {
                    self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%from, "unasked-for sync reply ignored");
                    return;
                }
                self.synced = true;
                // foca looks each update's member up in a list of all it knows, so a
                // reply of n members costs O(n^2) and, with every member pulling every
                // 15 s, a thousand members in one process spent most of a core on it.
                // What foca already holds in exactly that state would change nothing.
                let known: HashMap<SocketAddr, (u64, u16, foca::State)> = self
                    .foca
                    .iter_membership_state()
                    .map(|m| (m.id().addr, (m.id().bump, m.incarnation(), m.state())))
                    .collect();
                let news = members.into_iter().filter(|m| {
                    known.get(&m.id().addr) != Some(&(m.id().bump, m.incarnation(), m.state()))
                });
                if let Err(error) = self.foca.apply_many(news, false, &mut self.runtime) {
                    tracing::debug!(%from, %error, "applying a sync reply");
                }
            }
        }
    }

    /// Sends one datagram, unless the loss injection drops it. Never waits: when the socket
    /// cannot take the datagram now (on Linux a UDP sender's buffer holds its datagrams
    /// until the receivers read them, so a few slow receivers fill it) the datagram is
    /// dropped, as the network would drop it. Waiting instead would stop this member from
    /// reading its own socket and answering probes, and on a loaded host one slow member
    /// would stall its senders, theirs, and so on: a suspicion storm. The send goes
    /// through the std handle because tokio's `try_send_to` answers `WouldBlock` from its
    /// cached readiness, without asking the kernel, until its reactor has seen the socket
    /// writable, which dropped a new member's first probes.
    fn send(&mut self, to: SocketAddr, data: &[u8]) {
        if self.drop_outgoing > 0.0 && self.loss_rng.random_bool(self.drop_outgoing) {
            self.counters
                .dropped_outgoing
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        match self.sender.send_to(data, to) {
            Ok(_) => {
                self.counters.sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => tracing::debug!(%to, %error, "gossip send"),
        }
    }

    /// Carries out what foca asked for: sends, timers, notifications; then publishes the
    /// view and the events, or schedules that (see [`VIEW_INTERVAL`]).
    fn flush(&mut self) {
        while let Some((to, data)) = self.runtime.to_send() {
            self.send(to.addr, &data);
        }
        for (to, data) in std::mem::take(&mut self.raw_out) {
            self.send(to, &data);
        }
        let now = Instant::now();
        while let Some((after, timer)) = self.runtime.to_schedule() {
            // A configured delay too large for an Instant (say Duration::MAX) means "never".
            if let Some(at) = now.checked_add(after) {
                self.timers.push(Reverse((at, timer)));
            }
        }
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
            self.pending.push(note);
        }
        // Our own identity at once: set_metadata's caller reads it when we answer.
        let me = self.foca.identity();
        self.me.send_if_modified(|current| {
            let changed = current != me;
            if changed {
                *current = me.clone();
            }
            changed
        });
        let urgent = self
            .pending
            .iter()
            .any(|n| matches!(n, OwnedNotification::MemberDown(_)));
        let slot = self.next_slot(urgent);
        // Already due: only a member going down may bring it forward.
        if let Some(due) = self.publish_due {
            if slot < due {
                self.publish_due = Some(slot);
            }
            return;
        }
        let now = Instant::now();
        if self.pending.is_empty() {
            // No notification, but a member may have turned suspect (foca does not notify
            // that): walking every member after each datagram would cost a large cluster
            // more than the protocol, so the walk waits for the next view slot.
            if self.check_due.is_none() {
                let after_last = self.last_check.map_or(now, |at| at + self.interval());
                self.check_due = Some(slot.max(after_last).max(now));
            }
            return;
        }
        match slot {
            due if due > now => self.publish_due = Some(due),
            _ => self.publish(),
        }
    }

    /// How long changes other than a member going down may wait to be published (see
    /// [`VIEW_INTERVAL_PER_MEMBER`]).
    fn interval(&self) -> Duration {
        let n = u32::try_from(self.foca.num_members()).unwrap_or(u32::MAX);
        VIEW_INTERVAL.max(VIEW_INTERVAL_PER_MEMBER.saturating_mul(n))
    }

    /// The earliest time the view may be published again; `urgent` when a member went down.
    fn next_slot(&self, urgent: bool) -> Instant {
        let wait = if urgent {
            VIEW_INTERVAL
        } else {
            self.interval()
        };
        self.last_publish.map_or_else(Instant::now, |at| at + wait)
    }

    /// The check [`Driver::flush`] deferred: publishes if the members changed.
    fn check(&mut self) {
        self.check_due = None;
        self.last_check = Some(Instant::now());
        if self.publish_due.is_none() && self.changed() {
            self.publish();
        }
    }

    /// Publishes the member view, then the events of the notifications behind it.
    fn publish(&mut self) {
        self.publish_due = None;
        self.check_due = None;
        self.last_publish = Some(Instant::now());
        let fingerprint: Vec<_> = self.fingerprint().collect();
        let members = Arc::new(self.build_view(&fingerprint));
        self.seen = fingerprint;
        // The view first: a subscriber that reacts to an event finds it in members().
        self.view.send_if_modified(|view| {
            if **view == *members {
                false
            } else {
                *view = members.clone();
                true
            }
        });
        let batch = std::mem::take(&mut self.pending);
        if !batch.is_empty() {
            let state_of = |id: &NodeId| {
                members
                    .binary_search_by(|m| m.name.cmp(&id.name).then(m.addr.cmp(&id.addr)))
                    .ok()
                    .map(|i| members[i].state)
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

    /// The view of the members `fingerprint` describes (this member, then foca's, in foca's
    /// order). When the same identities sit in the same places as at the last publication
    /// (only states changed: a suspicion, its refutation) the last view is patched; otherwise
    /// it is rebuilt and sorted, and `places` remembers where each member went.
    fn build_view(&mut self, fingerprint: &[(SocketAddr, u64, MemberState)]) -> Vec<Member> {
        let same_places = fingerprint.len() == self.seen.len()
            && self.places.len() == fingerprint.len()
            && fingerprint
                .iter()
                .zip(&self.seen)
                .all(|(now, was)| now.0 == was.0 && now.1 == was.1);
        if same_places {
            let mut view = self.view.borrow().as_ref().clone();
            for ((now, was), &at) in fingerprint.iter().zip(&self.seen).zip(&self.places) {
                if now.2 != was.2
                    && let Some(member) = view.get_mut(at)
                {
                    member.state = now.2;
                }
            }
            return view;
        }
        let mut members: Vec<(Member, usize)> =
            std::iter::once(Member::new(self.foca.identity(), MemberState::Alive))
                .chain(
                    self.foca
                        .iter_membership_state()
                        .map(|m| Member::new(m.id(), m.state().into())),
                )
                .zip(0..)
                .collect();
        members.sort_by(|(a, _), (b, _)| a.name.cmp(&b.name).then(a.addr.cmp(&b.addr)));
        self.places = vec![0; members.len()];
        for (place, (_, index)) in members.iter().enumerate() {
            self.places[*index] = place;
        }
        members.into_iter().map(|(member, _)| member).collect()
    }
}
