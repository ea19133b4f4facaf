//! The access log: one JSON line per request, to stdout or a file.
//!
//! A shard formats lines into its own buffer ([`ShardLog`]) and hands the
//! full buffer to one writer thread every [`FLUSH_BYTES`] or every
//! [`FLUSH_EVERY`], whichever comes first, with a non-blocking `try_send`:
//! when the writer falls behind, the batch is dropped and counted, the shard
//! never waits. The writer thread owns the file and reopens it on SIGHUP
//! (for logrotate).
//!
//! Lines carry the key's id, never the key; the path without its query.

use std::cell::{Cell, RefCell};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crate::config::snapshot::{ApiKey, Gateway};

/// A shard hands its buffer over once it holds this much.
pub const FLUSH_BYTES: usize = 32 << 10;
/// ... or this long after the last hand-over.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Batches queued for the writer before shards start dropping lines.
const QUEUE: usize = 64;

/// Where lines go (`--access-log off|stdout|PATH`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Off,
    Stdout,
    File(PathBuf),
}

impl Destination {
    pub fn parse(v: &str) -> Destination {
        match v.trim() {
            "" | "off" => Destination::Off,
            "stdout" | "-" => Destination::Stdout,
            path => Destination::File(PathBuf::from(path)),
        }
    }
}

/// The writer thread and the sender shards clone.
pub struct Writer {
    pub sender: SyncSender<Vec<u8>>,
    thread: JoinHandle<()>,
}

impl Writer {
    /// Opens the destination (a clear error when the file cannot be
    /// opened) and starts the writer thread. `None` when the log is off.
    pub fn start(dest: &Destination, reopen: Arc<AtomicBool>) -> Result<Option<Writer>, String> {
        let sink = match dest {
            Destination::Off => return Ok(None),
            Destination::Stdout => Sink::Stdout,
            Destination::File(path) => Sink::File(
                open(path).map_err(|e| format!("--access-log {}: {e}", path.display()))?,
                path.clone(),
            ),
        };
        let (sender, rx) = mpsc::sync_channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_loop(sink, rx, reopen))
            .map_err(|e| format!("cannot start the access-log thread: {e}"))?;
        Ok(Some(Writer { sender, thread }))
    }

    /// Waits until every batch sent is written (every sender must be gone).
    pub fn finish(self) {
        drop(self.sender);
        let _ = self.thread.join();
    }
}

enum Sink {
    Stdout,
    File(File, PathBuf),
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn write_loop(mut sink: Sink, rx: Receiver<Vec<u8>>, reopen: Arc<AtomicBool>) {
    loop {
        let batch = rx.recv_timeout(Duration::from_millis(200));
        if reopen.swap(false, Ordering::Relaxed) {
            if let Sink::File(file, path) = &mut sink {
                match open(path) {
                    Ok(f) => {
                        *file = f;
                        log::info!("access log reopened: {}", path.display());
                    }
                    Err(e) => log::error!("access log {}: cannot reopen: {e}", path.display()),
                }
            }
        }
        let batch = match batch {
            Ok(b) => b,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let written = match &mut sink {
            Sink::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(&batch).and_then(|_| out.flush())
            }
            Sink::File(file, _) => file.write_all(&batch),
        };
        if let Err(e) = written {
            log::error!("access log: write failed: {e}");
        }
    }
}

/// Sampling as a threshold on 32 random bits.
#[derive(Debug, Clone, Copy)]
enum Sample {
    Never,
    Always,
    Below(u32),
}

/// One shard's side of the access log.
pub struct ShardLog {
    sink: Option<SyncSender<Vec<u8>>>,
    sample: Sample,
    rng: Cell<u64>,
    buf: RefCell<Vec<u8>>,
    lines: Cell<u64>,
    /// Lines handed to the writer.
    pub written: Cell<u64>,
    /// Lines dropped because the writer was behind.
    pub dropped: Cell<u64>,
}

impl ShardLog {
    /// `rate` in 0..=1: the share of requests logged.
    pub fn new(sink: Option<SyncSender<Vec<u8>>>, rate: f64, seed: u64) -> ShardLog {
        let sample = match sink {
            None => Sample::Never,
            Some(_) if rate >= 1.0 => Sample::Always,
            Some(_) if rate <= 0.0 => Sample::Never,
            Some(_) => Sample::Below((rate * f64::from(u32::MAX)) as u32),
        };
        let mut s = [0u8; 8];
        let _ = getrandom::getrandom(&mut s);
        ShardLog {
            buf: RefCell::new(if sink.is_some() {
                Vec::with_capacity(FLUSH_BYTES + 1024)
            } else {
                Vec::new()
            }),
            sink,
            sample,
            rng: Cell::new(u64::from_le_bytes(s) ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
            lines: Cell::new(0),
            written: Cell::new(0),
            dropped: Cell::new(0),
        }
    }

    pub fn enabled(&self) -> bool {
        !matches!(self.sample, Sample::Never)
    }

    /// Whether the next request is logged.
    #[inline]
    pub fn sample(&self) -> bool {
        match self.sample {
            Sample::Never => false,
            Sample::Always => true,
            Sample::Below(t) => {
                // xorshift64*
                let mut x = self.rng.get();
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                self.rng.set(x);
                ((x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32) < t
            }
        }
    }

    /// Formats `line` into the buffer; hands the buffer over when full.
    pub fn write(&self, line: &Line<'_>) {
        if self.sink.is_none() {
            return;
        }
        let full = {
            let mut buf = self.buf.borrow_mut();
            line.format(&mut buf);
            buf.len() >= FLUSH_BYTES
        };
        self.lines.set(self.lines.get() + 1);
        if full {
            self.flush();
        }
    }

    /// Hands whatever is buffered to the writer, never waiting for it.
    pub fn flush(&self) {
        let Some(sink) = &self.sink else { return };
        let mut buf = self.buf.borrow_mut();
        if buf.is_empty() {
            return;
        }
        let lines = self.lines.replace(0);
        let batch = std::mem::replace(&mut *buf, Vec::with_capacity(FLUSH_BYTES + 1024));
        match sink.try_send(batch) {
            Ok(()) => self.written.set(self.written.get() + lines),
            Err(TrySendError::Full(mut batch)) | Err(TrySendError::Disconnected(mut batch)) => {
                self.dropped.set(self.dropped.get() + lines);
                batch.clear();
                *buf = batch;
            }
        }
    }

    /// Flushes every [`FLUSH_EVERY`] until the task is dropped.
    pub fn start_flusher(self: &std::rc::Rc<Self>) -> Option<glommio::task::JoinHandle<()>> {
        if !self.enabled() {
            return None;
        }
        let log = self.clone();
        let task = glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(FLUSH_EVERY).await;
                log.flush();
            }
        });
        Some(task.detach())
    }
}

/// One request's line; names are looked up in the request's snapshot.
pub struct Line<'a> {
    pub request_id: &'a [u8],
    pub gateway: Option<&'a Gateway>,
    /// Index into the gateway's rules.
    pub rule: Option<usize>,
    pub key: Option<&'a ApiKey>,
    pub method: &'a [u8],
    pub path: &'a [u8],
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub target: Option<&'a [u8]>,
    pub upstream_latency: Option<Duration>,
    pub total: Duration,
    pub tokens: Option<(u64, u64)>,
    /// Micro-dollars, when the answer reported usage of a priced model.
    pub cost: Option<u64>,
    /// On a rule with model fallbacks or aliases: the model sent upstream
    /// (empty: unknown) and the fallback step that answered.
    pub served: Option<(&'a [u8], u8)>,
}

impl Line<'_> {
    pub fn format(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"time\":\"");
        let _ = write!(
            out,
            "{}",
            humantime::format_rfc3339_micros(SystemTime::now())
        );
        out.extend_from_slice(b"\",\"request_id\":");
        string(out, self.request_id);
        out.extend_from_slice(b",\"gateway\":");
        optional(out, self.gateway.map(|g| g.name.as_bytes()));
        out.extend_from_slice(b",\"rule\":");
        let rule = self
            .gateway
            .zip(self.rule)
            .and_then(|(g, r)| g.rules.get(r));
        optional(out, rule.map(|r| r.name.as_bytes()));
        out.extend_from_slice(b",\"key_id\":");
        optional(out, self.key.map(|k| k.id.as_bytes()));
        out.extend_from_slice(b",\"method\":");
        string(out, self.method);
        out.extend_from_slice(b",\"path\":");
        string(out, self.path);
        let _ = write!(
            out,
            ",\"status\":{},\"bytes_in\":{},\"bytes_out\":{},\"target\":",
            self.status, self.bytes_in, self.bytes_out
        );
        optional(out, self.target);
        out.extend_from_slice(b",\"upstream_ms\":");
        match self.upstream_latency {
            Some(d) => millis(out, d),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"total_ms\":");
        millis(out, self.total);
        match self.tokens {
            Some((p, c)) => {
                let _ = write!(out, ",\"prompt_tokens\":{p},\"completion_tokens\":{c}");
            }
            None => out.extend_from_slice(b",\"prompt_tokens\":null,\"completion_tokens\":null"),
        }
        match self.cost {
            Some(c) => {
                let _ = write!(out, ",\"cost_usd\":{}.{:06}", c / 1_000_000, c % 1_000_000);
            }
            None => out.extend_from_slice(b",\"cost_usd\":null"),
        }
        if let Some((model, step)) = self.served {
            out.extend_from_slice(b",\"model_used\":");
            optional(out, Some(model).filter(|m| !m.is_empty()));
            let _ = write!(out, ",\"fallback_step\":{step}");
        }
        out.extend_from_slice(b"}\n");
    }
}

/// Milliseconds with microsecond precision.
fn millis(out: &mut Vec<u8>, d: Duration) {
    let us = d.as_micros();
    let _ = write!(out, "{}.{:03}", us / 1000, us % 1000);
}

fn optional(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        Some(v) => string(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

/// A JSON string; bytes that are not UTF-8 become U+FFFD.
fn string(out: &mut Vec<u8>, v: &[u8]) {
    out.push(b'"');
    for chunk in v.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                c if (c as u32) < 0x20 || c == '\u{7f}' => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => {
                    let mut b = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                }
            }
        }
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{fffd}".as_bytes());
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_is_json_with_escapes() {
        let line = Line {
            request_id: b"abc",
            gateway: None,
            rule: Some(0),
            key: None,
            method: b"GET",
            path: b"/a\"b\\c\x01\xff\xc3\xa9",
            status: 404,
            bytes_in: 10,
            bytes_out: 20,
            target: None,
            upstream_latency: Some(Duration::from_micros(1500)),
            total: Duration::from_micros(2_000_007),
            tokens: Some((3, 4)),
            cost: Some(1_002_500),
            served: None,
        };
        let mut out = Vec::new();
        line.format(&mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["path"], "/a\"b\\c\u{1}\u{fffd}é");
        assert_eq!(v["gateway"], serde_json::Value::Null);
        assert_eq!(v["status"], 404);
        assert_eq!(v["upstream_ms"], 1.5);
        assert_eq!(v["total_ms"], 2000.007);
        assert_eq!(v["completion_tokens"], 4);
        assert_eq!(v["cost_usd"], 1.0025);
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
        assert!(v.get("fallback_step").is_none(), "only on fallback rules");
        // A rule with fallbacks: the model sent and the step that answered.
        let mut out = Vec::new();
        Line {
            served: Some((b"claude-x", 2)),
            ..line
        }
        .format(&mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            (&v["model_used"], &v["fallback_step"]),
            (&"claude-x".into(), &2.into())
        );
    }

    #[test]
    fn sampling_rates() {
        let (tx, _rx) = mpsc::sync_channel(1);
        let never = ShardLog::new(Some(tx.clone()), 0.0, 1);
        let always = ShardLog::new(Some(tx.clone()), 1.0, 1);
        let tenth = ShardLog::new(Some(tx), 0.1, 1);
        let hits = (0..100_000).filter(|_| tenth.sample()).count();
        assert!((8_000..12_000).contains(&hits), "{hits}");
        assert!((0..1000).all(|_| !never.sample() && always.sample()));
        assert!(!ShardLog::new(None, 1.0, 1).sample());
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let (tx, rx) = mpsc::sync_channel(1);
        let log = ShardLog::new(Some(tx), 1.0, 1);
        log.buf.borrow_mut().extend_from_slice(b"a\n");
        log.lines.set(1);
        log.flush();
        log.buf.borrow_mut().extend_from_slice(b"b\n");
        log.lines.set(1);
        log.flush();
        assert_eq!((log.written.get(), log.dropped.get()), (1, 1));
        assert_eq!(rx.recv().unwrap(), b"a\n");
    }
}
