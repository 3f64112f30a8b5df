//! The agent's end of one logs or exec stream: numbered frames to the gateway's inbox
//! within the credit window, control messages from the gateway, keepalives both ways,
//! and the idle timeout that ends a stream whose gateway (or HTTP client) vanished.

use std::collections::VecDeque;
use std::time::Duration;

use bus_schema::envelope::{self, Meta};
use bus_schema::podstream::{Control, Credit, Frame, FrameBody, IDLE_TIMEOUT, KEEPALIVE_INTERVAL};
use bus_schema::subjects;
use futures::StreamExt;
use tokio::time::Instant;

/// Why a stream stopped before its natural end. Nothing to retry: the stream is over.
#[derive(Debug, thiserror::Error)]
pub enum Stop {
    /// The gateway said `Close` (its client disconnected).
    #[error("the client closed the stream")]
    Closed,
    /// Nothing was heard from the gateway for [`IDLE_TIMEOUT`].
    #[error("no word from the gateway for {0:?}")]
    Idle(Duration),
    /// NATS refused a publish or a subscription.
    #[error("bus: {0}")]
    Bus(String),
}

/// One stream's state on the agent.
pub struct Session {
    client: async_nats::Client,
    reply: async_nats::Subject,
    control: async_nats::Subscriber,
    meta: Meta,
    credit: Credit,
    /// Input controls (stdin, resize, EOF) received while waiting for credit.
    pending: VecDeque<Control>,
    heard: Instant,
    sent: Instant,
}

impl Session {
    /// Subscribes to the session's control subject; frames go to `reply`.
    pub async fn open(
        client: async_nats::Client,
        reply: async_nats::Subject,
        session: &str,
        sender: String,
    ) -> Result<Session, Stop> {
        let control = client
            .subscribe(subjects::podstream_control(session))
            .await
            .map_err(|e| Stop::Bus(e.to_string()))?;
        Ok(Session {
            client,
            reply,
            control,
            meta: Meta {
                sender,
                traceparent: None,
            },
            credit: Credit::default(),
            pending: VecDeque::new(),
            heard: Instant::now(),
            sent: Instant::now(),
        })
    }

    /// Sends one frame, first waiting (reading control messages) until the window has
    /// room. Errors when the gateway closed the stream or went quiet.
    pub async fn send(&mut self, body: FrameBody) -> Result<(), Stop> {
        while !self.credit.can_send() {
            self.receive(IDLE_TIMEOUT).await?;
        }
        let frame = Frame {
            seq: self.credit.take(),
            body,
        };
        let (headers, payload) =
            envelope::encode(&frame, &self.meta).map_err(|e| Stop::Bus(e.to_string()))?;
        self.client
            .publish_with_headers(self.reply.clone(), headers, payload)
            .await
            .map_err(|e| Stop::Bus(e.to_string()))?;
        self.sent = Instant::now();
        Ok(())
    }

    /// Waits at most `wait` for an input control message (stdin, EOF, resize), handling
    /// acks and keepalives on the way and sending a keepalive frame when the agent has
    /// been quiet. `Ok(None)` when the wait ended without input.
    pub async fn next_input(&mut self, wait: Duration) -> Result<Option<Control>, Stop> {
        if let Some(c) = self.pending.pop_front() {
            return Ok(Some(c));
        }
        let deadline = Instant::now() + wait;
        loop {
            if self.sent.elapsed() >= KEEPALIVE_INTERVAL && self.credit.can_send() {
                self.send(FrameBody::Keepalive).await?;
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            self.receive(deadline - now).await?;
            if let Some(c) = self.pending.pop_front() {
                return Ok(Some(c));
            }
        }
    }

    /// Reads one control message within `wait` (less if the idle timeout comes first).
    async fn receive(&mut self, wait: Duration) -> Result<(), Stop> {
        // A zero wait still takes a message that is already queued (timeout polls the
        // inner future first), so a long local wait never reads as the gateway's silence.
        let idle_left = IDLE_TIMEOUT.saturating_sub(self.heard.elapsed());
        let msg = match tokio::time::timeout(wait.min(idle_left), self.control.next()).await {
            Err(_) if self.heard.elapsed() >= IDLE_TIMEOUT => {
                return Err(Stop::Idle(IDLE_TIMEOUT));
            }
            Err(_) => return Ok(()),
            Ok(None) => return Err(Stop::Bus("control subscription ended".into())),
            Ok(Some(msg)) => msg,
        };
        let control = match envelope::decode::<Control>(msg.headers.as_ref(), &msg.payload) {
            Ok((_, c)) => c,
            Err(error) => {
                tracing::debug!(message = "bad control message dropped", %error);
                return Ok(());
            }
        };
        self.heard = Instant::now();
        match control {
            Control::Ack { seq } => self.credit.ack(seq),
            Control::Keepalive => {}
            Control::Close => return Err(Stop::Closed),
            input => self.pending.push_back(input),
        }
        Ok(())
    }
}
