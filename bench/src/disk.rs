//! How fast the disk under the temp dir makes small writes durable: back-to-back 1 KiB
//! `pwrite` + `fdatasync`, the floor under any store that syncs every write. Measured
//! before and after the rounds, because on a shared machine it drifts.

use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::{Deserialize, Serialize};

/// Size of the probe file; writes cycle through it so the file never grows.
const PROBE_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Size of each probe write, about one stored object.
const PROBE_WRITE_BYTES: usize = 1024;

/// Result of one probe.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncProbe {
    /// Durable writes per second.
    pub per_s: f64,
    /// Median write + fdatasync time.
    pub p50: Duration,
    /// 99th percentile write + fdatasync time.
    pub p99: Duration,
}

impl SyncProbe {
    /// `1,234 syncs/s (p50 0.8 ms, p99 2.1 ms)`, as the reports print it.
    pub fn describe(&self) -> String {
        format!(
            "{} syncs/s (p50 {}, p99 {})",
            crate::report::thousands(self.per_s.round() as u64),
            crate::report::fmt_latency(self.p50),
            crate::report::fmt_latency(self.p99)
        )
    }
}

/// Writes and syncs 1 KiB at a time for `duration` in a temp file.
pub fn probe(duration: Duration) -> Result<SyncProbe> {
    let file = tempfile::Builder::new()
        .prefix("drover-bench-fsync-")
        .tempfile()?;
    let f = file.as_file();
    f.set_len(PROBE_FILE_BYTES)?;
    f.sync_all()?;
    let buf = vec![b'x'; PROBE_WRITE_BYTES];
    let mut latencies = Vec::new();
    let mut offset = 0;
    let started = Instant::now();
    loop {
        let t0 = Instant::now();
        f.write_all_at(&buf, offset)?;
        f.sync_data()?;
        latencies.push(t0.elapsed());
        offset = (offset + PROBE_WRITE_BYTES as u64) % PROBE_FILE_BYTES;
        if started.elapsed() >= duration {
            break;
        }
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    Ok(SyncProbe {
        per_s: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
    })
}
