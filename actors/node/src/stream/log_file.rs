//! Reads a container's CRI log file for one request and, with `follow`, keeps reading
//! what the runtime appends (polling: a few syscalls per interval per follower, and it
//! works the same on every filesystem) until the container has exited and the file is
//! drained. A file replaced under the same path (rotation: a new inode) is read to its
//! end and then the new one from its start (how the kubelet and containerd rotate); a
//! file truncated in place is read again from its start once it is shorter than what was
//! read (best effort: a truncated file that has already grown past that point is missed).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use bus_schema::podstream::{Channel, FrameBody, LogRequest, MAX_CHUNK_BYTES, StreamError};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::logs::{LogOptions, Printer, complete_lines};
use super::session::{Session, Stop};
use super::{Instance, fail, find_container};
use crate::runtime::{ContainerId, ContainerState, Runtime, RuntimeError};

/// How often a followed file is checked for new data.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Most bytes read from the file per poll (bounds memory for a fast writer).
const READ_BYTES_PER_POLL: u64 = 1 << 20;

/// Why reading ended early.
#[derive(Debug, thiserror::Error)]
enum ReadEnd {
    #[error(transparent)]
    Stop(#[from] Stop),
    #[error("reading the log file: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves one log request on `session`.
pub async fn run(session: &mut Session, runtime: &dyn Runtime, req: &LogRequest) {
    let options = match LogOptions::from_request(req, jiff::Timestamp::now()) {
        Ok(o) => o,
        Err(message) => return fail(session, StreamError::bad_request(message)).await,
    };
    let instance = if req.previous {
        Instance::Previous
    } else {
        Instance::Current
    };
    let container = match find_container(
        runtime,
        &req.namespace,
        &req.pod,
        &req.pod_uid,
        &req.container,
        instance,
    )
    .await
    {
        Ok(c) => c,
        Err(e) => return fail(session, e).await,
    };
    let Some(path) = container.log_path.clone() else {
        let message = format!(
            "the container runtime keeps no log for container {:?} in pod {:?}",
            req.container, req.pod
        );
        return fail(session, StreamError::bad_request(message)).await;
    };
    let follow = req.follow && instance == Instance::Current;
    let mut printer = Printer::new(options);
    match read(session, runtime, &container.id, &path, &mut printer, follow).await {
        Ok(()) => {
            if let Err(e) = session.send(FrameBody::End).await {
                tracing::debug!(message = "log stream ended by the gateway", error = %e);
            }
        }
        Err(ReadEnd::Stop(e)) => tracing::debug!(message = "log stream stopped", error = %e),
        Err(ReadEnd::Io(e)) => fail(session, StreamError::internal(e.to_string())).await,
    }
}

async fn send_output(session: &mut Session, out: Vec<u8>) -> Result<(), Stop> {
    let out = Bytes::from(out);
    for start in (0..out.len()).step_by(MAX_CHUNK_BYTES) {
        let end = (start + MAX_CHUNK_BYTES).min(out.len());
        session
            .send(FrameBody::Data {
                channel: Channel::Stdout,
                data: out.slice(start..end),
            })
            .await?;
    }
    Ok(())
}

/// Whether the container will write no more (exited, or gone from the runtime).
async fn finished(runtime: &dyn Runtime, id: &ContainerId) -> bool {
    match runtime.container_status(id).await {
        Ok(s) => matches!(s.state, ContainerState::Exited | ContainerState::Unknown),
        Err(RuntimeError::NotFound { .. }) => true,
        Err(_) => false,
    }
}

async fn read(
    session: &mut Session,
    runtime: &dyn Runtime,
    id: &ContainerId,
    path: &Path,
    printer: &mut Printer,
    follow: bool,
) -> Result<(), ReadEnd> {
    let mut file = match tokio::fs::File::open(path).await {
        Ok(f) => Some(f),
        // The runtime creates the file with the container's first write.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    let mut pending = Vec::new();
    if let Some(f) = file.as_mut() {
        f.read_to_end(&mut pending).await?;
    }
    let (out, consumed) = printer.print_initial(&pending);
    pending.drain(..consumed);
    send_output(session, out).await?;
    if !follow || printer.exhausted() {
        return Ok(());
    }
    let mut inode = match file.as_ref() {
        Some(f) => Some(f.metadata().await?.ino()),
        None => None,
    };
    let mut exited = false;
    loop {
        // Controls (acks, close) and keepalives are handled while waiting.
        session.next_input(POLL_INTERVAL).await?;
        let mut n_read = 0;
        if let Some(f) = file.as_mut() {
            let len = f.metadata().await?.len();
            let pos = f.stream_position().await?;
            if len < pos {
                // Truncated in place: start over.
                f.seek(std::io::SeekFrom::Start(0)).await?;
                pending.clear();
            }
            n_read = f
                .take(READ_BYTES_PER_POLL)
                .read_to_end(&mut pending)
                .await?;
        }
        if n_read == 0 {
            // Drained: was the file replaced (or created)?
            match tokio::fs::metadata(path).await {
                Ok(m) if Some(m.ino()) != inode => {
                    file = Some(tokio::fs::File::open(path).await?);
                    inode = Some(m.ino());
                    pending.clear();
                    continue;
                }
                _ => {}
            }
            if exited {
                return Ok(());
            }
            // Checked after a drained read, so lines written before the exit are sent.
            exited = finished(runtime, id).await;
            continue;
        }
        let (lines, consumed) = complete_lines(&pending);
        let out = printer.print(&lines);
        pending.drain(..consumed);
        send_output(session, out).await?;
        if printer.exhausted() {
            return Ok(());
        }
    }
}
