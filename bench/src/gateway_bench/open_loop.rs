//! The fixed-rate (open-loop) run: request `i` is due at `start + i / rate` whether or
//! not earlier ones have finished, and its latency runs from that scheduled time to its
//! answer. A closed loop would send less while the server stalls and so hide the stall
//! (coordinated omission); here a stall shows as the latency of every request that was
//! due during it, including time spent waiting for one of the client's connections.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::workload::{OP_TIMEOUT, median_duration, median_f64, new_histogram, record};

/// Delay before the first scheduled send, so that setting up does not make it late.
const START_DELAY: Duration = Duration::from_millis(20);

/// What a fixed-rate run achieved.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FixedRate {
    /// Requests per second offered.
    pub offered_per_s: f64,
    /// Requests sent.
    pub sent: usize,
    /// Requests that failed or timed out (their latency is not in the percentiles).
    pub errors: usize,
    /// The first failure, for the report.
    pub first_error: Option<String>,
    /// Successful requests per second, from the first scheduled send to the last answer.
    pub achieved_per_s: f64,
    /// Median latency from the scheduled send time.
    pub p50: Duration,
    /// 99th percentile latency from the scheduled send time.
    pub p99: Duration,
    /// 99.9th percentile latency from the scheduled send time.
    pub p999: Duration,
    /// Slowest request, from its scheduled send time.
    pub max: Duration,
    /// CPU time per request of the bench process (the client, and on the gateway side
    /// the gateway), over the whole run.
    pub bench_cpu_per_request: Option<Duration>,
    /// The part of `bench_cpu_per_request` spent on the gateway's HTTP worker threads
    /// (TLS, HTTP, JSON, the handlers and the store calls they poll).
    pub gateway_workers_cpu_per_request: Option<Duration>,
    /// CPU time per request of the side's nats-server.
    pub server_cpu_per_request: Option<Duration>,
}

impl FixedRate {
    /// The cell-by-cell median of several rounds (each number on its own).
    pub fn median(rounds: &[FixedRate]) -> FixedRate {
        let errors = median_f64(rounds.iter().map(|r| r.errors as f64)) as usize;
        FixedRate {
            offered_per_s: median_f64(rounds.iter().map(|r| r.offered_per_s)),
            sent: median_f64(rounds.iter().map(|r| r.sent as f64)) as usize,
            errors,
            first_error: rounds.iter().find_map(|r| r.first_error.clone()),
            achieved_per_s: median_f64(rounds.iter().map(|r| r.achieved_per_s)),
            p50: median_duration(rounds.iter().map(|r| r.p50)),
            p99: median_duration(rounds.iter().map(|r| r.p99)),
            p999: median_duration(rounds.iter().map(|r| r.p999)),
            max: median_duration(rounds.iter().map(|r| r.max)),
            bench_cpu_per_request: median_option(rounds.iter().map(|r| r.bench_cpu_per_request)),
            gateway_workers_cpu_per_request: median_option(
                rounds.iter().map(|r| r.gateway_workers_cpu_per_request),
            ),
            server_cpu_per_request: median_option(rounds.iter().map(|r| r.server_cpu_per_request)),
        }
    }
}

fn median_option(values: impl Iterator<Item = Option<Duration>>) -> Option<Duration> {
    let known: Vec<Duration> = values.flatten().collect();
    (!known.is_empty()).then(|| median_duration(known.into_iter()))
}

/// Sends `op(0..n_ops)` at `per_s` requests per second, at most `max_in_flight` at a
/// time (the client's connections; a request due while all are busy waits for one, and
/// that wait counts in its latency).
pub async fn run<F, Fut>(per_s: f64, n_ops: usize, max_in_flight: usize, op: F) -> FixedRate
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let op = Arc::new(op);
    let slots = Arc::new(Semaphore::new(max_in_flight.max(1)));
    let period = Duration::from_secs_f64(1.0 / per_s);
    let start = Instant::now() + START_DELAY;
    let mut requests = JoinSet::new();
    for i in 0..n_ops {
        let due = start + period.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let (op, slots) = (op.clone(), slots.clone());
        requests.spawn(async move {
            let _slot = slots.acquire_owned().await;
            let outcome = match tokio::time::timeout(OP_TIMEOUT, op(i)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(format!("{e:#}")),
                Err(_) => Err(format!("no answer within {OP_TIMEOUT:?}")),
            };
            (due, Instant::now(), outcome)
        });
    }
    let mut answers = Vec::with_capacity(n_ops);
    while let Some(joined) = requests.join_next().await {
        answers.push(match joined {
            Ok(answer) => answer,
            Err(e) => (start, start, Err(format!("request task failed: {e}"))),
        });
    }
    summarize(per_s, start, &answers)
}

/// One request's (due time, answer time, outcome).
pub type Answer = (Instant, Instant, Result<(), String>);

/// The numbers of a run that started at `start` and got `answers`.
pub fn summarize(per_s: f64, start: Instant, answers: &[Answer]) -> FixedRate {
    let mut latencies = new_histogram();
    let mut result = FixedRate {
        offered_per_s: per_s,
        sent: answers.len(),
        ..FixedRate::default()
    };
    let mut last_answer = start;
    for (due, answered, outcome) in answers {
        match outcome {
            Ok(()) => {
                record(&mut latencies, answered.saturating_duration_since(*due));
                last_answer = last_answer.max(*answered);
            }
            Err(e) => {
                result.errors += 1;
                result.first_error.get_or_insert_with(|| e.clone());
            }
        }
    }
    let n_ok = answers.len() - result.errors;
    let elapsed = last_answer.saturating_duration_since(start);
    if n_ok > 0 && !elapsed.is_zero() {
        result.achieved_per_s = n_ok as f64 / elapsed.as_secs_f64();
        let at = |q: f64| Duration::from_micros(latencies.value_at_quantile(q));
        result.p50 = at(0.50);
        result.p99 = at(0.99);
        result.p999 = at(0.999);
        result.max = Duration::from_micros(latencies.max());
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_runs_from_the_due_time_and_failures_are_not_timed() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        // Ten requests due every 10 ms; the first stalls the (single) connection until
        // 100 ms and the rest are answered right after it: their latency is the wait.
        let mut answers: Vec<Answer> = (0..10).map(|i| (ms(i * 10), ms(100), Ok(()))).collect();
        answers.push((ms(100), ms(101), Err("conflict".into())));
        let result = summarize(100.0, t0, &answers);
        assert_eq!((result.sent, result.errors), (11, 1));
        assert_eq!(result.first_error.as_deref(), Some("conflict"));
        // Sorted latencies 10, 20, ..., 100 ms: the median is 50 ms, not the ~0 a closed
        // loop would report (hdrhistogram keeps 3 significant digits).
        let about =
            |d: Duration, ms: u64| d.abs_diff(Duration::from_millis(ms)) < Duration::from_millis(1);
        assert!(about(result.p50, 50), "{result:?}");
        assert!(about(result.max, 100), "{result:?}");
        assert!((result.achieved_per_s - 100.0).abs() < 1e-9, "{result:?}");
    }
}
