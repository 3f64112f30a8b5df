//! Supervision of drover's actors: an actor is an async body (a future) that a
//! supervisor restarts, under a [`RestartPolicy`], when it panics.
//!
//! Why not actix actors: drover's actors are reconcilers whose input is "the newest state
//! of one object" (a `tokio::sync::watch` channel, so a burst of ten updates is one
//! reconcile of the last), whose work is long awaits on a runtime or the store, and whose
//! state after a crash is rebuilt from the runtime and the store rather than kept in the
//! actor. actix's FIFO mailbox would queue stale states, its single-threaded arbiters
//! would have to interleave or serialise those awaits (`AtomicResponse`), and its
//! `Supervisor` restarts at once and forever. A supervised task keeps what DESIGN wants
//! from actors — one owner per object, messages instead of shared state, restart with
//! budget and backoff — without those costs (ARCHITECTURE.md, "Actors").
//!
//! Semantics: the body returning is a deliberate stop and is not restarted; a panic is a
//! crash: logged, then the body is started again from scratch (`make()` builds a fresh
//! future, which rebuilds its state) after the policy's backoff, until the budget is spent,
//! after which the supervisor logs an error and stops. Aborting the supervisor's task
//! aborts the body.

use std::future::Future;
use std::time::Instant;

use tokio::task::JoinHandle;

use crate::restart::{Decision, RestartPolicy};

/// How a supervised actor ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The body returned (a deliberate stop).
    Stopped,
    /// It kept crashing until the restart budget was spent.
    GaveUp,
}

/// Runs `make()` as a supervised actor named `name` on the current tokio runtime.
pub fn supervise<F, Fut>(name: String, policy: RestartPolicy, make: F) -> JoinHandle<Outcome>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(run(name, policy, make))
}

/// The supervisor loop itself, for callers that want to await it in place.
pub async fn run<F, Fut>(name: String, mut policy: RestartPolicy, mut make: F) -> Outcome
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let started = Instant::now();
        // A child task, so a panic is caught as a JoinError instead of unwinding here;
        // the guard aborts the child if the supervisor itself is aborted.
        let mut child = AbortOnDrop(tokio::spawn(make()));
        let result = (&mut child.0).await;
        match result {
            Ok(()) => return Outcome::Stopped,
            Err(error) if error.is_cancelled() => return Outcome::Stopped,
            Err(error) => {
                let panic = panic_message(error);
                match policy.on_exit(started, Instant::now()) {
                    Decision::RestartAfter(delay) => {
                        tracing::warn!(
                            message = "actor crashed; restarting",
                            actor = %name,
                            panic = %panic,
                            after_ms = delay.as_millis() as u64
                        );
                        tokio::time::sleep(delay).await;
                    }
                    Decision::GiveUp => {
                        tracing::error!(
                            message = "actor keeps crashing; giving up",
                            actor = %name,
                            panic = %panic
                        );
                        return Outcome::GaveUp;
                    }
                }
            }
        }
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn panic_message(error: tokio::task::JoinError) -> String {
    match error.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic".into()),
        Err(error) => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn policy(max: usize) -> RestartPolicy {
        RestartPolicy::new(
            max,
            Duration::from_secs(60),
            Duration::from_millis(1),
            Duration::from_millis(4),
            Duration::from_secs(30),
        )
    }

    #[tokio::test]
    async fn restarts_a_crashing_body_until_it_stops() {
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = runs.clone();
        let outcome = supervise("t".into(), policy(5), move || {
            let counter = counter.clone();
            async move {
                // Crash twice, then stop deliberately.
                if counter.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("boom");
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(outcome, Outcome::Stopped);
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn gives_up_when_the_budget_is_spent() {
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = runs.clone();
        let outcome = run("t".into(), policy(2), move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                panic!("always");
            }
        })
        .await;
        assert_eq!(outcome, Outcome::GaveUp);
        // The first run plus two restarts.
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn aborting_the_supervisor_aborts_the_body() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut tx = Some(tx);
        let handle = supervise("t".into(), policy(1), move || {
            let tx = tx.take();
            async move {
                // Held until the body is dropped.
                let _tx = tx;
                std::future::pending::<()>().await;
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        handle.abort();
        // The sender is dropped with the aborted body: the receiver sees the close.
        assert!(rx.await.is_err());
    }
}
