//! A bell that wakes every executor (the shards and the control thread) at
//! a fixed interval, so a lost wake-up costs one interval, not a stall.
//!
//! Why it exists: glommio 0.9 parks an executor in `io_uring_enter` on its
//! *main* ring, whose only link to the *latency* ring is a poll on that
//! ring's file descriptor. Timers and wake-ups from other threads (shared
//! channels: the control plane, the rate limiter's owner shards) complete on
//! the latency ring. Under heavy CPU contention that link was seen to miss a
//! completion. The executor then slept until a socket event reached its main
//! ring. A stress run (three test binaries and four busy loops on two vCPUs)
//! reproduced it in about half the rounds: a shard left requests waiting for
//! another shard's answer unanswered for over 10 s, even past the 2 s timer
//! meant to end that wait, and an admin call waited in vain for an
//! acknowledgement. glommio's own tracker reports the same hangs for this
//! design (upstream PR #552 replaced it; no release carries the change).
//!
//! The bell is a Unix socket pair per executor. The executor reads its end
//! like any socket, so each ring completes on the main ring and wakes it; the
//! executor's loop then runs due timers and drains channel wake-ups, which is
//! all a lost wake-up needs. One thread rings all executors every
//! [`INTERVAL`]; an executor that is awake just reads a byte. At 50 ms that
//! is 20 wake-ups a second per idle executor.
//!
//! Without a ringer (`RINGGATE_BELL_MS=0`) each executor's end reads end of
//! stream at once and its listener task ends.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use futures_lite::AsyncReadExt;

/// How often every executor is woken, unless `RINGGATE_BELL_MS` says
/// otherwise (0 turns the bell off, to diagnose without it).
pub const INTERVAL: Duration = Duration::from_millis(50);

fn interval() -> Option<Duration> {
    match std::env::var("RINGGATE_BELL_MS")
        .ok()
        .map(|v| v.parse::<u64>())
    {
        None => Some(INTERVAL),
        Some(Ok(0)) => None,
        Some(Ok(ms)) => Some(Duration::from_millis(ms)),
        Some(Err(_)) => {
            log::warn!("RINGGATE_BELL_MS is not a number of milliseconds; using {INTERVAL:?}");
            Some(INTERVAL)
        }
    }
}

/// The executor's end of its bell.
pub struct Bell(OwnedFd);

/// Makes one bell per executor and starts the thread that rings them. The
/// thread ends once every bell is gone (each executor drops its own when it
/// stops).
pub fn bells(executors: usize) -> io::Result<Vec<Bell>> {
    let mut bells = Vec::with_capacity(executors);
    let mut ringers = Vec::with_capacity(executors);
    for _ in 0..executors {
        let (ringer, bell) = UnixStream::pair()?;
        ringer.set_nonblocking(true)?;
        ringers.push(ringer);
        bells.push(Bell(OwnedFd::from(bell)));
    }
    match interval() {
        Some(every) => {
            std::thread::Builder::new()
                .name("bell".into())
                .spawn(move || ring(ringers, every))?;
        }
        None => log::warn!("RINGGATE_BELL_MS=0: executors are not woken periodically"),
    }
    Ok(bells)
}

/// Rings every bell each interval until all are gone. A full socket buffer
/// (an executor that has not read for a while) is fine: it is already due
/// to wake.
fn ring(mut ringers: Vec<UnixStream>, every: Duration) {
    while !ringers.is_empty() {
        std::thread::sleep(every);
        ringers.retain(|r| ring_once(r.as_raw_fd()));
    }
}

/// False once the executor's end is closed.
fn ring_once(fd: RawFd) -> bool {
    // SAFETY: a one-byte send from a static on a socket we own.
    let r = unsafe { libc::send(fd, [1u8].as_ptr().cast(), 1, libc::MSG_NOSIGNAL) };
    r == 1 || io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
}

impl Bell {
    /// Listens on the current executor: each ring is read as it arrives.
    /// Call inside the executor; the task ends when the ringer is gone.
    pub fn listen(self) -> glommio::task::JoinHandle<()> {
        // SAFETY: the fd is our end of a connected Unix stream socket pair;
        // glommio takes ownership of it.
        let mut stream = unsafe { glommio::net::UnixStream::from_raw_fd(self.0.into_raw_fd()) };
        glommio::spawn_local(async move {
            let mut rings = [0u8; 64];
            while let Ok(n) = stream.read(&mut rings).await {
                if n == 0 {
                    break;
                }
            }
        })
        .detach()
    }
}
