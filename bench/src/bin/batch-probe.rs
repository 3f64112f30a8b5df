//! `batch-probe`: fsynced JetStream write rate, one compare-and-swap write per message
//! (what every store write is today) against atomic batches of compare-and-swap writes
//! (NATS 2.12+ `allow_atomic_publish`: every message of a batch keeps its own
//! `Nats-Expected-Last-Subject-Sequence`, and the batch is stored all or nothing).
//! Its own nats-server with `sync_interval: always`, on 127.0.0.1, stopped by PID.
//! Not a test: it measures and prints markdown.

use std::time::Instant;

use anyhow::{Result, bail};
use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use clap::Parser;
use drover_bench::servers;
use futures::StreamExt;

#[derive(Parser, Debug)]
#[command(about = "fsynced writes: one CAS per publish vs atomic batches of CAS writes")]
struct Args {
    /// Writes per measurement.
    #[arg(long, default_value_t = 5000)]
    writes: usize,
    /// Single publishes in flight.
    #[arg(long, default_value_t = 64)]
    parallel: usize,
    /// Batch sizes to try.
    #[arg(long, value_delimiter = ',', default_value = "10,50,200")]
    batch: Vec<usize>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let (nats, client) = servers::start_nats().await?;
    let js = jetstream::new(client.clone());
    js.create_stream(stream::Config {
        name: "PROBE".into(),
        subjects: vec!["probe.>".into()],
        allow_atomic_publish: true,
        max_messages_per_subject: 1,
        ..Default::default()
    })
    .await?;

    println!("| mode | writes | seconds | writes/s |");
    println!("|---|---:|---:|---:|");
    // Single CAS publishes: each key is new (expected last subject sequence 0).
    let t = Instant::now();
    let results: Vec<Result<()>> = futures::stream::iter((0..args.writes).map(|i| {
        let js = js.clone();
        async move {
            let mut h = HeaderMap::new();
            h.insert("Nats-Expected-Last-Subject-Sequence", "0");
            js.publish_with_headers(format!("probe.single.{i}"), h, "x".repeat(600).into())
                .await?
                .await?;
            Ok(())
        }
    }))
    .buffer_unordered(args.parallel)
    .collect()
    .await;
    results.into_iter().collect::<Result<Vec<_>>>()?;
    let s = t.elapsed().as_secs_f64();
    println!(
        "| single CAS, {} in flight | {} | {s:.2} | {:.0} |",
        args.parallel,
        args.writes,
        args.writes as f64 / s
    );

    for &size in &args.batch {
        let t = Instant::now();
        let mut written = 0;
        let mut id = 0;
        while written < args.writes {
            id += 1;
            let n = size.min(args.writes - written);
            let batch_id = format!("b{size}-{id}");
            for k in 0..n {
                let mut h = HeaderMap::new();
                h.insert("Nats-Batch-Id", batch_id.as_str());
                h.insert("Nats-Batch-Sequence", (k + 1).to_string().as_str());
                h.insert("Nats-Expected-Last-Subject-Sequence", "0");
                let subject = format!("probe.b{size}.{}", written + k);
                if k + 1 == n {
                    h.insert("Nats-Batch-Commit", "1");
                    let reply = client
                        .request_with_headers(subject, h, "x".repeat(600).into())
                        .await?;
                    let ack: serde_json::Value = serde_json::from_slice(&reply.payload)?;
                    if ack.get("error").is_some() {
                        bail!("batch {batch_id}: {ack}");
                    }
                } else {
                    client
                        .publish_with_headers(subject, h, "x".repeat(600).into())
                        .await?;
                }
            }
            written += n;
        }
        let s = t.elapsed().as_secs_f64();
        println!(
            "| atomic batches of {size} CAS writes, one batch in flight | {} | {s:.2} | {:.0} |",
            args.writes,
            args.writes as f64 / s
        );
    }

    // A batch where one CAS fails is refused whole.
    let mut h = HeaderMap::new();
    h.insert("Nats-Batch-Id", "conflict");
    h.insert("Nats-Batch-Sequence", "1");
    h.insert("Nats-Expected-Last-Subject-Sequence", "0");
    client
        .publish_with_headers("probe.conflict.fresh", h, "x".into())
        .await?;
    let mut h = HeaderMap::new();
    h.insert("Nats-Batch-Id", "conflict");
    h.insert("Nats-Batch-Sequence", "2");
    h.insert("Nats-Batch-Commit", "1");
    // probe.single.0 exists: its expected sequence 0 is wrong.
    h.insert("Nats-Expected-Last-Subject-Sequence", "0");
    let reply = client
        .request_with_headers("probe.single.0", h, "x".into())
        .await?;
    println!(
        "\nA batch with one stale CAS: {}",
        String::from_utf8_lossy(&reply.payload)
    );
    let fresh = js
        .get_stream("PROBE")
        .await?
        .get_last_raw_message_by_subject("probe.conflict.fresh")
        .await
        .is_ok();
    println!("its other message stored: {fresh}");
    nats.stop().await;
    Ok(())
}
