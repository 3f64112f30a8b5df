//! Typed subscriptions on drover subjects. Every message is decoded through
//! `bus_schema::envelope`; anything that does not decode (random bytes, a foreign
//! publisher, a future schema) is logged and dropped, and counted, never a panic.

use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bus_schema::envelope::{self, Meta};
use futures::Stream;
use serde::de::DeserializeOwned;

/// A subscription yielding only well-formed messages of type `T`.
pub struct TypedSubscriber<T> {
    inner: async_nats::Subscriber,
    dropped: Arc<AtomicU64>,
    _t: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> TypedSubscriber<T> {
    /// Subscribes to `subject` (wildcards allowed; spell it with `bus_schema::subjects`).
    pub async fn subscribe(
        client: &async_nats::Client,
        subject: String,
    ) -> Result<Self, async_nats::SubscribeError> {
        let inner = client.subscribe(subject).await?;
        Ok(TypedSubscriber {
            inner,
            dropped: Arc::new(AtomicU64::new(0)),
            _t: PhantomData,
        })
    }

    /// A counter of messages dropped so far (shared; keeps counting after a clone).
    pub fn dropped_counter(&self) -> Arc<AtomicU64> {
        self.dropped.clone()
    }
}

/// A decoded message.
#[derive(Debug, Clone)]
pub struct Received<T> {
    /// Subject it arrived on.
    pub subject: String,
    /// Sender and trace context.
    pub meta: Meta,
    /// The body.
    pub body: T,
}

impl<T: DeserializeOwned> Stream for TypedSubscriber<T> {
    type Item = Received<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match Pin::new(&mut self.inner).poll_next(cx) {
                Poll::Ready(Some(msg)) => {
                    match envelope::decode::<T>(msg.headers.as_ref(), &msg.payload) {
                        Ok((meta, body)) => {
                            return Poll::Ready(Some(Received {
                                subject: msg.subject.to_string(),
                                meta,
                                body,
                            }));
                        }
                        Err(error) => {
                            self.dropped.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(
                                message = "dropping undecodable bus message",
                                subject = %msg.subject,
                                bytes = msg.payload.len(),
                                %error
                            );
                        }
                    }
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
