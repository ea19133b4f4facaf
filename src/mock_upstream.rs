//! An OpenAI-compatible mock provider for tests and benchmarks.
//!
//! `ringgate mock-upstream --listen ADDR [--name NAME] [--shards N]` runs N unpinned glommio
//! executors, each accepting on its own `SO_REUSEPORT` socket. It answers
//! `POST /v1/chat/completions` (plain and SSE streaming), `POST /v1/messages` (Anthropic's
//! messages API, plain and SSE; 400 without `max_tokens`), `GET /v1/models`, `/echo[/...]`
//! (reflects the request as JSON) and 404 for the rest. Every answer carries
//! `x-mock-conn: s<shard>-<n>` (and `x-mock-name` with `--name`).
//!
//! Per-request headers: `x-mock-delay-ms: N` (before the head), `x-mock-status: N`,
//! `x-mock-fault: close | reset-mid-body | stall | garbage | close-after | slow-body`,
//! `x-mock-chunks` / `x-mock-stream-chunks: N` and `x-mock-interval-ms: N` (streaming),
//! `x-mock-chunked: 1` (chunked `/echo` answer), `x-mock-error: context-length` (a 400 saying
//! the prompt exceeds the context, in OpenAI's words, or Anthropic's on `/v1/messages`).
//!
//! The hot path keeps one read buffer and two output buffers per connection, parses heads
//! with `httparse` into a stack array and writes every plain response with a single write.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::io::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::Range;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use argh::FromArgs;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::Placement;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// run an OpenAI-compatible mock upstream (tests and benchmarks)
#[derive(FromArgs, Debug, Clone)]
#[argh(subcommand, name = "mock-upstream")]
pub struct MockArgs {
    /// address to listen on (default 127.0.0.1:9000; port 0 picks a free one)
    #[argh(option, default = "String::from(\"127.0.0.1:9000\")")]
    pub listen: String,
    /// name sent back in the `x-mock-name` header of every response
    #[argh(option)]
    pub name: Option<String>,
    /// executors (threads) to run, unpinned (default 1)
    #[argh(option, default = "1")]
    pub shards: usize,
    /// content events per streamed completion (default 5; header `x-mock-chunks`)
    #[argh(option, default = "5")]
    pub stream_chunks: usize,
    /// milliseconds between streamed events (default 10; header `x-mock-interval-ms`)
    #[argh(option, default = "10")]
    pub stream_interval_ms: u64,
}

const MAX_HEAD: usize = 64 << 10;
const MAX_BODY: usize = 16 << 20;
const MAX_HEADERS: usize = 128;
const INITIAL_BUF: usize = 16 << 10;
const MAX_STREAM_CHUNKS: usize = 100_000;
const REPLY: &str = "Hello from mock";
const REPLY_WORDS: u64 = 3;

/// Process-wide settings every shard reads.
struct Settings {
    name: Option<String>,
    shards: usize,
    stream_chunks: usize,
    stream_interval_ms: u64,
}

/// Per-shard state (one executor, one thread).
struct Shard {
    idx: usize,
    settings: Arc<Settings>,
    conns: Cell<u64>,
    completions: Cell<u64>,
}

impl Shard {
    /// A completion id unique across shards without shared counters.
    fn next_completion_id(&self) -> u64 {
        let n = self.completions.get() + 1;
        self.completions.set(n);
        n * self.settings.shards as u64 + self.idx as u64
    }
}

/// Runs the mock until killed; returns the process exit code.
pub fn main(args: MockArgs) -> i32 {
    match start(args) {
        Ok(handles) => {
            for h in handles {
                if h.join().is_err() {
                    eprintln!("mock-upstream: a shard stopped unexpectedly");
                    return 1;
                }
            }
            0
        }
        Err(e) => {
            eprintln!("mock-upstream: {e}");
            2
        }
    }
}

fn start(args: MockArgs) -> Result<Vec<std::thread::JoinHandle<()>>, String> {
    if args.shards == 0 || args.shards > 1024 {
        return Err(format!("--shards must be 1..=1024, got {}", args.shards));
    }
    let addr = resolve(&args.listen)?;
    check_memlock()?;
    let group =
        ringgate::runtime::bind::reuse_port_group("listen", addr, args.shards, 4096, false)?;
    let (local, sockets) = (group.local_addr, group.sockets);

    // Panics inside executor start-up (e.g. io_uring blocked) become one line on stderr.
    std::panic::set_hook(Box::new(|info| {
        let msg = if let Some(s) = info.payload().downcast_ref::<&str>() {
            (*s).to_string()
        } else if let Some(s) = info.payload().downcast_ref::<String>() {
            s.clone()
        } else {
            "panic".to_string()
        };
        eprintln!("mock-upstream: fatal: {}", msg.replace('\n', " "));
    }));

    let settings = Arc::new(Settings {
        name: args.name.clone(),
        shards: args.shards,
        stream_chunks: args.stream_chunks.min(MAX_STREAM_CHUNKS),
        stream_interval_ms: args.stream_interval_ms,
    });
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let mut handles = Vec::with_capacity(args.shards);
    // The mock's executors park like the gateway's: the same bell keeps a
    // lost wake-up (an accept completes on glommio's latency ring) short.
    let bells = ringgate::runtime::bell::bells(args.shards)
        .map_err(|e| format!("cannot start the executors' wake-up bell: {e}"))?;
    for ((idx, fd), bell) in sockets.into_iter().enumerate().zip(bells) {
        let settings = settings.clone();
        let ready = ready_tx.clone();
        let h = std::thread::Builder::new()
            .name(format!("mock-shard-{idx}"))
            .spawn(move || run_shard(idx, fd, settings, ready, bell))
            .map_err(|e| format!("cannot start shard thread: {e}"))?;
        handles.push(h);
    }
    drop(ready_tx);
    for _ in 0..args.shards {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err("an executor failed to start (is io_uring usable?)".into()),
        }
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "ringgate mock-upstream listening on http://{}", local);
    let _ = out.flush();
    Ok(handles)
}

fn resolve(listen: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = listen.parse::<SocketAddr>() {
        return Ok(a);
    }
    listen
        .to_socket_addrs()
        .map_err(|e| format!("invalid --listen address '{listen}': {e}"))?
        .next()
        .ok_or_else(|| format!("invalid --listen address '{listen}': no address"))
}

fn check_memlock() -> Result<(), String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes into the struct we pass.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
    if rc == 0 && lim.rlim_cur != libc::RLIM_INFINITY && lim.rlim_cur < 512 * 1024 {
        return Err(format!(
            "RLIMIT_MEMLOCK is {} KiB, io_uring needs at least 512 KiB (raise it with `ulimit -l`)",
            lim.rlim_cur / 1024
        ));
    }
    Ok(())
}

fn run_shard(
    idx: usize,
    fd: RawFd,
    settings: Arc<Settings>,
    ready: mpsc::Sender<Result<(), String>>,
    bell: ringgate::runtime::bell::Bell,
) {
    let ex = match ringgate::runtime::executor::make(
        &format!("mock{idx}"),
        Placement::Unbound,
        Duration::ZERO,
    ) {
        Ok(ex) => ex,
        Err(e) => {
            let _ = ready.send(Err(format!("cannot start executor {idx}: {e}")));
            return;
        }
    };
    ex.run(async move {
        bell.listen();
        // SAFETY: fd is a listening TCP socket whose ownership moved to this thread.
        let listener = unsafe { TcpListener::from_raw_fd(fd) };
        let shard = Rc::new(Shard {
            idx,
            settings,
            conns: Cell::new(0),
            completions: Cell::new(0),
        });
        let _ = ready.send(Ok(()));
        drop(ready);
        loop {
            match listener.accept().await {
                Ok(stream) => {
                    let n = shard.conns.get() + 1;
                    shard.conns.set(n);
                    let conn = Conn::new(stream, shard.clone(), n);
                    glommio::spawn_local(conn.serve()).detach();
                }
                Err(e) => {
                    log::warn!("mock-upstream: accept failed: {e}");
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Requests

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    None,
    Close,
    ResetMidBody,
    Stall,
    Garbage,
    CloseAfter,
    SlowBody,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    None,
    Len(usize),
    Chunked,
}

/// What the connection loop needs from a parsed head; offsets index the read buffer.
struct Head {
    len: usize,
    method: Range<usize>,
    target: Range<usize>,
    minor: u8,
    body: BodyKind,
    keep_alive: bool,
    expect_continue: bool,
    delay_ms: u64,
    status: Option<u16>,
    /// Answer the status with a context-length error body.
    context_error: bool,
    fault: Fault,
    chunked_echo: bool,
    chunks: Option<usize>,
    interval_ms: Option<u64>,
}

/// A request the mock refuses before routing; answered and then the connection is closed.
struct Reject(u16, &'static str);

fn offset(buf: &[u8], s: &str) -> Range<usize> {
    let start = s.as_ptr() as usize - buf.as_ptr() as usize;
    start..start + s.len()
}

fn parse_num<T: std::str::FromStr>(v: &[u8]) -> Option<T> {
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

fn has_token(v: &[u8], token: &str) -> bool {
    v.split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

impl Head {
    fn from_request(
        req: &httparse::Request<'_, '_>,
        len: usize,
        buf: &[u8],
    ) -> Result<Head, Reject> {
        let method = offset(buf, req.method.unwrap_or(""));
        let target = offset(buf, req.path.unwrap_or("/"));
        let minor = req.version.unwrap_or(1);
        let mut h = Head {
            len,
            method,
            target,
            minor,
            body: BodyKind::None,
            keep_alive: minor >= 1,
            expect_continue: false,
            delay_ms: 0,
            status: None,
            context_error: false,
            fault: Fault::None,
            chunked_echo: false,
            chunks: None,
            interval_ms: None,
        };
        let mut content_length: Option<usize> = None;
        let mut chunked = false;
        for hd in req.headers.iter() {
            let name = hd.name.as_bytes();
            let v = hd.value;
            if name.eq_ignore_ascii_case(b"content-length") {
                let n: usize = parse_num(v).ok_or(Reject(400, "invalid Content-Length"))?;
                if content_length.is_some_and(|c| c != n) {
                    return Err(Reject(400, "conflicting Content-Length"));
                }
                content_length = Some(n);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                let last = v.rsplit(|&b| b == b',').next().unwrap_or(b"").trim_ascii();
                if !last.eq_ignore_ascii_case(b"chunked") {
                    return Err(Reject(400, "unsupported Transfer-Encoding"));
                }
                chunked = true;
            } else if name.eq_ignore_ascii_case(b"connection") {
                if has_token(v, "close") {
                    h.keep_alive = false;
                } else if has_token(v, "keep-alive") {
                    h.keep_alive = true;
                }
            } else if name.eq_ignore_ascii_case(b"expect") {
                h.expect_continue = v.trim_ascii().eq_ignore_ascii_case(b"100-continue");
            } else if name.len() > 7 && name[..7].eq_ignore_ascii_case(b"x-mock-") {
                let n = &name[7..];
                if n.eq_ignore_ascii_case(b"delay-ms") {
                    h.delay_ms = parse_num(v).ok_or(Reject(400, "invalid x-mock-delay-ms"))?;
                } else if n.eq_ignore_ascii_case(b"status") {
                    let s: u16 = parse_num(v).ok_or(Reject(400, "invalid x-mock-status"))?;
                    if !(200..=599).contains(&s) {
                        return Err(Reject(400, "x-mock-status must be 200..=599"));
                    }
                    h.status = Some(s);
                } else if n.eq_ignore_ascii_case(b"error") {
                    if !v.trim_ascii().eq_ignore_ascii_case(b"context-length") {
                        return Err(Reject(400, "unknown x-mock-error"));
                    }
                    h.status = Some(400);
                    h.context_error = true;
                } else if n.eq_ignore_ascii_case(b"fault") {
                    let f = v.trim_ascii();
                    h.fault = if f.eq_ignore_ascii_case(b"close") {
                        Fault::Close
                    } else if f.eq_ignore_ascii_case(b"reset-mid-body") {
                        Fault::ResetMidBody
                    } else if f.eq_ignore_ascii_case(b"stall") {
                        Fault::Stall
                    } else if f.eq_ignore_ascii_case(b"garbage") {
                        Fault::Garbage
                    } else if f.eq_ignore_ascii_case(b"close-after") {
                        Fault::CloseAfter
                    } else if f.eq_ignore_ascii_case(b"slow-body") {
                        Fault::SlowBody
                    } else {
                        return Err(Reject(400, "unknown x-mock-fault"));
                    };
                } else if n.eq_ignore_ascii_case(b"chunked") {
                    let t = v.trim_ascii();
                    h.chunked_echo = t == b"1" || t.eq_ignore_ascii_case(b"true");
                } else if n.eq_ignore_ascii_case(b"chunks")
                    || n.eq_ignore_ascii_case(b"stream-chunks")
                {
                    let c: usize = parse_num(v).ok_or(Reject(400, "invalid x-mock-chunks"))?;
                    h.chunks = Some(c.min(MAX_STREAM_CHUNKS));
                } else if n.eq_ignore_ascii_case(b"interval-ms") {
                    h.interval_ms =
                        Some(parse_num(v).ok_or(Reject(400, "invalid x-mock-interval-ms"))?);
                }
            }
        }
        h.body = match (chunked, content_length) {
            (true, Some(_)) => {
                return Err(Reject(400, "both Content-Length and Transfer-Encoding"))
            }
            (true, None) => BodyKind::Chunked,
            (false, Some(0)) | (false, None) => BodyKind::None,
            (false, Some(n)) if n > MAX_BODY => return Err(Reject(413, "request body too large")),
            (false, Some(n)) => BodyKind::Len(n),
        };
        Ok(h)
    }
}

// ---------------------------------------------------------------------------------------------
// Connections

enum Next {
    KeepAlive,
    Close,
    /// Close gracefully: half-close and drain what the peer still sends, so it reads our answer.
    Linger,
    Reset,
}

struct Conn {
    stream: TcpStream,
    shard: Rc<Shard>,
    buf: Vec<u8>,
    filled: usize,
    out: Vec<u8>,
    tmp: Vec<u8>,
    /// `x-mock-name` / `x-mock-conn` header lines, fixed per connection.
    ident: Vec<u8>,
}

impl Conn {
    fn new(stream: TcpStream, shard: Rc<Shard>, n: u64) -> Conn {
        let _ = stream.set_nodelay(true);
        let mut ident = Vec::with_capacity(64);
        if let Some(name) = &shard.settings.name {
            let _ = write!(ident, "x-mock-name: {name}\r\n");
        }
        let _ = write!(ident, "x-mock-conn: s{}-{}\r\n", shard.idx, n);
        Conn {
            stream,
            shard,
            buf: vec![0; INITIAL_BUF],
            filled: 0,
            out: Vec::with_capacity(4096),
            tmp: Vec::with_capacity(1024),
            ident,
        }
    }

    async fn serve(mut self) {
        let next = loop {
            let head = match self.read_head().await {
                Ok(Some(h)) => h,
                Ok(None) => return,
                Err(Reject(code, msg)) => {
                    self.reject(code, msg).await;
                    break Next::Linger;
                }
            };
            let (body, consumed) = match self.read_body(&head).await {
                Ok(Some(b)) => b,
                Ok(None) => return,
                Err(Reject(code, msg)) => {
                    self.reject(code, msg).await;
                    break Next::Linger;
                }
            };
            let next = self.respond(&head, body).await;
            self.buf.copy_within(consumed..self.filled, 0);
            self.filled -= consumed;
            if self.buf.len() > 256 << 10 && self.filled <= INITIAL_BUF {
                self.buf.truncate(INITIAL_BUF);
                self.buf.shrink_to_fit();
            }
            if !matches!(next, Next::KeepAlive) {
                break next;
            }
        };
        match next {
            Next::Reset => {
                let lg = libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                };
                // SAFETY: setsockopt on our own open socket with a correctly sized struct.
                unsafe {
                    libc::setsockopt(
                        self.stream.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_LINGER,
                        &lg as *const libc::linger as *const libc::c_void,
                        std::mem::size_of::<libc::linger>() as libc::socklen_t,
                    );
                }
            }
            Next::Linger => {
                let _ = self.stream.shutdown(std::net::Shutdown::Write).await;
                let Conn { stream, buf, .. } = &mut self;
                let drain = async {
                    let mut total = 0usize;
                    while let Ok(n) = stream.read(&mut buf[..]).await {
                        total += n;
                        if n == 0 || total > 32 << 20 {
                            break;
                        }
                    }
                };
                futures_lite::future::or(drain, glommio::timer::sleep(Duration::from_secs(2)))
                    .await;
            }
            Next::Close | Next::KeepAlive => {}
        }
        // Dropping the stream closes the socket.
    }

    /// Reads more bytes into `buf[filled..]`, growing it up to `limit`. Ok(0) means EOF.
    async fn fill(&mut self, limit: usize) -> Result<usize, Reject> {
        if self.filled == self.buf.len() {
            if self.buf.len() >= limit {
                return Err(Reject(413, "request too large"));
            }
            let n = (self.buf.len() * 2).min(limit);
            self.buf.resize(n, 0);
        }
        match self.stream.read(&mut self.buf[self.filled..]).await {
            Ok(n) => {
                self.filled += n;
                Ok(n)
            }
            Err(_) => Ok(0),
        }
    }

    async fn read_head(&mut self) -> Result<Option<Head>, Reject> {
        loop {
            if self.filled > 0 {
                let mut hdrs = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut req = httparse::Request::new(&mut hdrs);
                match req.parse(&self.buf[..self.filled]) {
                    Ok(httparse::Status::Complete(n)) => {
                        return Head::from_request(&req, n, &self.buf).map(Some)
                    }
                    Ok(httparse::Status::Partial) => {
                        if self.filled >= MAX_HEAD {
                            return Err(Reject(431, "request head too large"));
                        }
                    }
                    Err(httparse::Error::TooManyHeaders) => {
                        return Err(Reject(431, "too many request headers"))
                    }
                    Err(_) => return Err(Reject(400, "malformed request head")),
                }
            }
            match self.fill(MAX_HEAD).await {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(_) => return Err(Reject(431, "request head too large")),
            }
        }
    }

    async fn send_continue(&mut self, head: &Head) -> bool {
        if head.expect_continue && head.minor >= 1 {
            return self
                .stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .is_ok();
        }
        true
    }

    /// Reads the body; returns its range in `buf` and how many bytes the request used.
    /// Ok(None): the peer went away.
    async fn read_body(&mut self, head: &Head) -> Result<Option<(Range<usize>, usize)>, Reject> {
        match head.body {
            BodyKind::None => Ok(Some((head.len..head.len, head.len))),
            BodyKind::Len(n) => {
                let need = head.len + n;
                if self.buf.len() < need {
                    self.buf.resize(need, 0);
                }
                if self.filled < need && !self.send_continue(head).await {
                    return Ok(None);
                }
                while self.filled < need {
                    if self.fill(need).await? == 0 {
                        return Ok(None);
                    }
                }
                Ok(Some((head.len..need, need)))
            }
            BodyKind::Chunked => self.read_chunked(head).await,
        }
    }

    /// Decodes a chunked body in place: data is moved down to `head.len..dec`, framing dropped.
    async fn read_chunked(&mut self, head: &Head) -> Result<Option<(Range<usize>, usize)>, Reject> {
        let limit = head.len + MAX_BODY + (64 << 10);
        let mut dec = head.len; // end of decoded data
        let mut pos = head.len; // next undecoded byte
        if self.filled == pos && !self.send_continue(head).await {
            return Ok(None);
        }
        macro_rules! more {
            () => {{
                if pos > dec {
                    self.buf.copy_within(pos..self.filled, dec);
                    self.filled -= pos - dec;
                    pos = dec;
                }
                if self.fill(limit).await? == 0 {
                    return Ok(None);
                }
            }};
        }
        loop {
            // chunk-size [; ext] CRLF
            let line_end = loop {
                if let Some(i) = find_crlf(&self.buf[pos..self.filled]) {
                    break pos + i;
                }
                if self.filled - pos > 4096 {
                    return Err(Reject(400, "invalid chunk size line"));
                }
                more!();
            };
            let line = &self.buf[pos..line_end];
            let size_part = line
                .split(|&b| b == b';')
                .next()
                .unwrap_or(b"")
                .trim_ascii();
            let size = std::str::from_utf8(size_part)
                .ok()
                .filter(|s| !s.is_empty() && s.len() <= 16)
                .and_then(|s| usize::from_str_radix(s, 16).ok())
                .ok_or(Reject(400, "invalid chunk size"))?;
            pos = line_end + 2;
            if size == 0 {
                // trailers until an empty line
                loop {
                    if let Some(i) = find_crlf(&self.buf[pos..self.filled]) {
                        pos += i + 2;
                        if i == 0 {
                            return Ok(Some((head.len..dec, pos)));
                        }
                        continue;
                    }
                    if self.filled - pos > 16 << 10 {
                        return Err(Reject(400, "trailers too large"));
                    }
                    more!();
                }
            }
            if dec - head.len + size > MAX_BODY {
                return Err(Reject(413, "request body too large"));
            }
            let mut rem = size;
            while rem > 0 {
                let take = rem.min(self.filled - pos);
                if take > 0 {
                    self.buf.copy_within(pos..pos + take, dec);
                    dec += take;
                    pos += take;
                    rem -= take;
                }
                if rem > 0 {
                    more!();
                }
            }
            while self.filled - pos < 2 {
                more!();
            }
            if &self.buf[pos..pos + 2] != b"\r\n" {
                return Err(Reject(400, "missing CRLF after chunk data"));
            }
            pos += 2;
        }
    }

    async fn reject(&mut self, code: u16, msg: &str) {
        let Conn {
            stream,
            out,
            tmp,
            ident,
            ..
        } = self;
        tmp.clear();
        error_body(tmp, msg, "invalid_request_error");
        out.clear();
        plain_head(
            out,
            code,
            "application/json",
            Some(tmp.len()),
            Some("close"),
            ident,
        );
        out.extend_from_slice(tmp);
        let _ = stream.write_all(out).await;
    }

    async fn respond(&mut self, h: &Head, body: Range<usize>) -> Next {
        if h.delay_ms > 0 {
            glommio::timer::sleep(Duration::from_millis(h.delay_ms)).await;
        }
        let Conn {
            stream,
            shard,
            buf,
            out,
            tmp,
            ident,
            ..
        } = self;
        match h.fault {
            Fault::Close => return Next::Close,
            Fault::Garbage => {
                let _ = stream.write_all(b"this is not http\r\n\r\n").await;
                return Next::Close;
            }
            Fault::Stall => {
                let wait = async {
                    let mut scratch = [0u8; 1024];
                    while let Ok(n) = stream.read(&mut scratch).await {
                        if n == 0 {
                            break;
                        }
                    }
                };
                futures_lite::future::or(wait, glommio::timer::sleep(Duration::from_secs(120)))
                    .await;
                return Next::Close;
            }
            Fault::ResetMidBody => {
                out.clear();
                plain_head(out, 200, "application/json", Some(1000), None, ident);
                out.extend_from_slice(b"{\"partial\":\"");
                out.extend(std::iter::repeat_n(b'x', 88));
                if stream.write_all(out).await.is_ok() {
                    glommio::timer::sleep(Duration::from_millis(20)).await;
                }
                return Next::Reset;
            }
            _ => {}
        }

        let buf: &[u8] = buf;
        let method = &buf[h.method.clone()];
        let target = &buf[h.target.clone()];
        let (path, query) = match target.iter().position(|&b| b == b'?') {
            Some(i) => (&target[..i], Some(&target[i + 1..])),
            None => (target, None),
        };
        let is_head = method == b"HEAD";
        let conn_hdr = if !h.keep_alive {
            Some("close")
        } else if h.minor == 0 {
            Some("keep-alive")
        } else {
            None
        };
        let mut keep = h.keep_alive;
        // Where a second write starts (chunked echo sends its body in two writes).
        let mut split = None;
        out.clear();
        tmp.clear();
        let body_start;
        if let Some(code) = h.status {
            if code == 204 || code == 304 {
                body_start = plain_head(out, code, "application/json", None, conn_hdr, ident);
            } else {
                if !h.context_error {
                    let _ = write!(
                        tmp,
                        "{{\"error\":{{\"message\":\"mock status {code}\",\"type\":\"mock\"}}}}"
                    );
                } else if path == b"/v1/messages" {
                    tmp.extend_from_slice(br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 250000 tokens > 200000 maximum"}}"#);
                } else {
                    tmp.extend_from_slice(br#"{"error":{"message":"This model's maximum context length is 8192 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#);
                }
                body_start = plain_head(
                    out,
                    code,
                    "application/json",
                    Some(tmp.len()),
                    conn_hdr,
                    ident,
                );
                out.extend_from_slice(tmp);
            }
        } else if path == b"/v1/chat/completions" {
            if method != b"POST" {
                body_start = method_not_allowed(out, tmp, conn_hdr, ident, "POST");
            } else {
                match serde_json::from_slice::<ChatRequest<'_>>(&buf[body.clone()]) {
                    Err(e) => {
                        error_body(
                            tmp,
                            &format!("invalid JSON body: {e}"),
                            "invalid_request_error",
                        );
                        body_start = plain_head(
                            out,
                            400,
                            "application/json",
                            Some(tmp.len()),
                            conn_hdr,
                            ident,
                        );
                        out.extend_from_slice(tmp);
                    }
                    Ok(req) => {
                        let model = req.model.as_deref().unwrap_or("mock-model");
                        let prompt = (req.messages.map_or(0, |m| m.0) / 4).max(1) as u64;
                        let id = shard.next_completion_id();
                        let created = unix_now();
                        if req.stream == Some(true) {
                            let s = StreamPlan {
                                id,
                                created,
                                model,
                                prompt,
                                chunks: h.chunks.unwrap_or(shard.settings.stream_chunks),
                                interval: Duration::from_millis(
                                    h.interval_ms.unwrap_or(shard.settings.stream_interval_ms),
                                ),
                                chunked: h.minor >= 1,
                                head_only: is_head,
                            };
                            let keep = keep && s.chunked;
                            let hdr = if keep { conn_hdr } else { Some("close") };
                            let ok = stream_chat(stream, out, tmp, ident, hdr, &s).await;
                            return if ok && keep && h.fault != Fault::CloseAfter {
                                Next::KeepAlive
                            } else {
                                Next::Close
                            };
                        }
                        let _ = write!(tmp, "{{\"id\":\"chatcmpl-mock-{id}\",\"object\":\"chat.completion\",\"created\":{created},\"model\":");
                        json_str(tmp, model.as_bytes());
                        let _ = write!(
                            tmp,
                            ",\"choices\":[{{\"index\":0,\"message\":{{\"role\":\"assistant\",\"content\":\"{REPLY}\"}},\"finish_reason\":\"stop\"}}],\"usage\":{{\"prompt_tokens\":{prompt},\"completion_tokens\":{REPLY_WORDS},\"total_tokens\":{}}}}}",
                            prompt + REPLY_WORDS
                        );
                        body_start = plain_head(
                            out,
                            200,
                            "application/json",
                            Some(tmp.len()),
                            conn_hdr,
                            ident,
                        );
                        out.extend_from_slice(tmp);
                    }
                }
            }
        } else if path == b"/v1/messages" && method == b"POST" {
            // Anthropic mode: the messages API, JSON or SSE.
            let req: serde_json::Value =
                serde_json::from_slice(&buf[body.clone()]).unwrap_or_default();
            let model = req["model"].as_str().unwrap_or("mock-claude").to_string();
            let id = shard.next_completion_id();
            if req
                .get("max_tokens")
                .and_then(serde_json::Value::as_u64)
                .is_none()
            {
                let e = br#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: Field required"}}"#;
                body_start =
                    plain_head(out, 400, "application/json", Some(e.len()), conn_hdr, ident);
                out.extend_from_slice(e);
            } else if req["stream"] == serde_json::Value::Bool(true) && h.minor >= 1 {
                let chunks = h.chunks.unwrap_or(shard.settings.stream_chunks);
                let interval = Duration::from_millis(
                    h.interval_ms.unwrap_or(shard.settings.stream_interval_ms),
                );
                let ok =
                    stream_messages(stream, out, ident, conn_hdr, id, &model, chunks, interval)
                        .await;
                return if ok && keep {
                    Next::KeepAlive
                } else {
                    Next::Close
                };
            } else {
                let v = serde_json::json!({
                    "id": format!("msg_mock_{id}"), "type": "message", "role": "assistant",
                    "model": model, "content": [{"type": "text", "text": REPLY}],
                    "stop_reason": "end_turn", "stop_sequence": null,
                    "usage": {"input_tokens": 9, "output_tokens": REPLY_WORDS},
                    "echo_system": req.get("system"),
                });
                let _ = serde_json::to_writer(&mut *tmp, &v);
                body_start = plain_head(
                    out,
                    200,
                    "application/json",
                    Some(tmp.len()),
                    conn_hdr,
                    ident,
                );
                out.extend_from_slice(tmp);
            }
        } else if path == b"/v1/models" {
            if method != b"GET" && method != b"HEAD" {
                body_start = method_not_allowed(out, tmp, conn_hdr, ident, "GET, HEAD");
            } else {
                let m = br#"{"object":"list","data":[{"id":"mock-model","object":"model","owned_by":"ringgate"}]}"#;
                body_start =
                    plain_head(out, 200, "application/json", Some(m.len()), conn_hdr, ident);
                out.extend_from_slice(m);
            }
        } else if path == b"/echo" || path.starts_with(b"/echo/") {
            echo_body(tmp, buf, h, method, path, query, &buf[body.clone()]);
            if h.chunked_echo && h.minor >= 1 {
                body_start = head_with(
                    out,
                    200,
                    "application/json",
                    "Transfer-Encoding: chunked\r\n",
                    conn_hdr,
                    ident,
                );
                let half = tmp.len() / 2;
                ringgate::http::encode_chunk(&tmp[..half], out);
                split = Some(out.len());
                ringgate::http::encode_chunk(&tmp[half..], out);
                out.extend_from_slice(ringgate::http::LAST_CHUNK);
            } else if h.chunked_echo {
                // HTTP/1.0 has no chunked coding: close-delimited instead.
                keep = false;
                body_start = head_with(out, 200, "application/json", "", Some("close"), ident);
                out.extend_from_slice(tmp);
            } else {
                body_start = plain_head(
                    out,
                    200,
                    "application/json",
                    Some(tmp.len()),
                    conn_hdr,
                    ident,
                );
                out.extend_from_slice(tmp);
            }
        } else {
            error_body(tmp, "not found", "invalid_request_error");
            body_start = plain_head(
                out,
                404,
                "application/json",
                Some(tmp.len()),
                conn_hdr,
                ident,
            );
            out.extend_from_slice(tmp);
        }

        if is_head {
            out.truncate(body_start);
            split = None;
        }
        let ok = if h.fault == Fault::SlowBody {
            slow_write(stream, out, body_start).await
        } else if let Some(at) = split {
            stream.write_all(&out[..at]).await.is_ok() && stream.write_all(&out[at..]).await.is_ok()
        } else {
            stream.write_all(out).await.is_ok()
        };
        if out.capacity() > 1 << 20 {
            *out = Vec::with_capacity(4096);
        }
        if tmp.capacity() > 1 << 20 {
            *tmp = Vec::with_capacity(1024);
        }
        if ok && keep && h.fault != Fault::CloseAfter {
            Next::KeepAlive
        } else {
            Next::Close
        }
    }
}

async fn slow_write(stream: &mut TcpStream, out: &[u8], body_start: usize) -> bool {
    if stream.write_all(&out[..body_start]).await.is_err() {
        return false;
    }
    for b in &out[body_start..] {
        glommio::timer::sleep(Duration::from_millis(5)).await;
        if stream.write_all(std::slice::from_ref(b)).await.is_err() {
            return false;
        }
    }
    true
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

// ---------------------------------------------------------------------------------------------
// Response building

/// Writes a head with `extra` header lines (each ending in CRLF); returns where the body starts.
fn head_with(
    out: &mut Vec<u8>,
    code: u16,
    ctype: &str,
    extra: &str,
    conn: Option<&str>,
    ident: &[u8],
) -> usize {
    let _ = write!(
        out,
        "HTTP/1.1 {code} {}\r\ncontent-type: {ctype}\r\n",
        ringgate::http::errors::reason(code)
    );
    out.extend_from_slice(extra.as_bytes());
    end_head(out, ident, conn)
}

/// The identity headers, `connection` when given, and the blank line;
/// returns where the body starts.
fn end_head(out: &mut Vec<u8>, ident: &[u8], conn: Option<&str>) -> usize {
    out.extend_from_slice(ident);
    if let Some(c) = conn {
        let _ = write!(out, "connection: {c}\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.len()
}

/// A head with `content-length` (or none, for bodiless statuses); returns where the body starts.
fn plain_head(
    out: &mut Vec<u8>,
    code: u16,
    ctype: &str,
    len: Option<usize>,
    conn: Option<&str>,
    ident: &[u8],
) -> usize {
    let _ = write!(
        out,
        "HTTP/1.1 {code} {}\r\n",
        ringgate::http::errors::reason(code)
    );
    if let Some(n) = len {
        let _ = write!(out, "content-type: {ctype}\r\ncontent-length: {n}\r\n");
    }
    end_head(out, ident, conn)
}

fn method_not_allowed(
    out: &mut Vec<u8>,
    tmp: &mut Vec<u8>,
    conn: Option<&str>,
    ident: &[u8],
    allow: &str,
) -> usize {
    error_body(tmp, "method not allowed", "invalid_request_error");
    let _ = write!(out, "HTTP/1.1 405 Method Not Allowed\r\nallow: {allow}\r\n");
    let _ = write!(
        out,
        "content-type: application/json\r\ncontent-length: {}\r\n",
        tmp.len()
    );
    out.extend_from_slice(ident);
    if let Some(c) = conn {
        let _ = write!(out, "connection: {c}\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let start = out.len();
    out.extend_from_slice(tmp);
    start
}

fn error_body(tmp: &mut Vec<u8>, msg: &str, kind: &str) {
    tmp.extend_from_slice(b"{\"error\":{\"message\":");
    json_str(tmp, msg.as_bytes());
    let _ = write!(tmp, ",\"type\":\"{kind}\"}}}}");
}

/// Appends `s` (lossy UTF-8) as a JSON string literal.
fn json_str(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    json_str_inner(out, s);
    out.push(b'"');
}

fn json_str_inner(out: &mut Vec<u8>, s: &[u8]) {
    let s = String::from_utf8_lossy(s);
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f | 0x7f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{:04x}", b);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

fn echo_body(
    tmp: &mut Vec<u8>,
    buf: &[u8],
    h: &Head,
    method: &[u8],
    path: &[u8],
    query: Option<&[u8]>,
    body: &[u8],
) {
    tmp.extend_from_slice(b"{\"method\":");
    json_str(tmp, method);
    tmp.extend_from_slice(b",\"path\":");
    json_str(tmp, path);
    tmp.extend_from_slice(b",\"query\":");
    match query {
        Some(q) => json_str(tmp, q),
        None => tmp.extend_from_slice(b"null"),
    }
    let _ = write!(tmp, ",\"version\":\"HTTP/1.{}\",\"headers\":{{", h.minor);
    let mut hdrs = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut hdrs);
    if req.parse(&buf[..h.len]).is_ok() {
        let list = &req.headers[..];
        let mut first = true;
        for (i, hd) in list.iter().enumerate() {
            if list[..i]
                .iter()
                .any(|p| p.name.eq_ignore_ascii_case(hd.name))
            {
                continue;
            }
            if !first {
                tmp.push(b',');
            }
            first = false;
            tmp.push(b'"');
            tmp.extend(hd.name.bytes().map(|b| b.to_ascii_lowercase()));
            tmp.extend_from_slice(b"\":\"");
            json_str_inner(tmp, hd.value);
            for later in list[i + 1..]
                .iter()
                .filter(|p| p.name.eq_ignore_ascii_case(hd.name))
            {
                tmp.extend_from_slice(b", ");
                json_str_inner(tmp, later.value);
            }
            tmp.push(b'"');
        }
    }
    tmp.extend_from_slice(b"},\"body\":");
    json_str(tmp, body);
    let _ = write!(tmp, ",\"body_len\":{}}}", body.len());
}

// ---------------------------------------------------------------------------------------------
// Chat completions

struct StreamPlan<'a> {
    id: u64,
    created: u64,
    model: &'a str,
    prompt: u64,
    chunks: usize,
    interval: Duration,
    chunked: bool,
    head_only: bool,
}

fn chunk_prefix(tmp: &mut Vec<u8>, s: &StreamPlan<'_>) {
    let _ = write!(
        tmp,
        "data: {{\"id\":\"chatcmpl-mock-{}\",\"object\":\"chat.completion.chunk\",\"created\":{},\"model\":",
        s.id, s.created
    );
    json_str(tmp, s.model.as_bytes());
}

/// Streams the SSE answer, one write (and one chunk) per event. Returns false on write error.
async fn stream_chat(
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    tmp: &mut Vec<u8>,
    ident: &[u8],
    conn: Option<&str>,
    s: &StreamPlan<'_>,
) -> bool {
    out.clear();
    let te = if s.chunked {
        "cache-control: no-cache\r\ntransfer-encoding: chunked\r\n"
    } else {
        "cache-control: no-cache\r\n"
    };
    head_with(out, 200, "text/event-stream", te, conn, ident);
    if s.head_only {
        return stream.write_all(out).await.is_ok();
    }
    // events: chunks content events, the stop event, the usage event, [DONE]
    let total = s.chunks + 3;
    for ev in 0..total {
        if ev > 0 && !s.interval.is_zero() {
            glommio::timer::sleep(s.interval).await;
        }
        tmp.clear();
        if ev < s.chunks {
            chunk_prefix(tmp, s);
            let role = if ev == 0 {
                "\"role\":\"assistant\","
            } else {
                ""
            };
            let _ = write!(
                tmp,
                ",\"choices\":[{{\"index\":0,\"delta\":{{{role}\"content\":\"tok{ev} \"}},\"finish_reason\":null}}]}}\n\n"
            );
        } else if ev == s.chunks {
            chunk_prefix(tmp, s);
            tmp.extend_from_slice(
                b",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
            );
        } else if ev == s.chunks + 1 {
            chunk_prefix(tmp, s);
            let c = s.chunks as u64;
            let _ = write!(
                tmp,
                ",\"choices\":[],\"usage\":{{\"prompt_tokens\":{},\"completion_tokens\":{c},\"total_tokens\":{}}}}}\n\n",
                s.prompt,
                s.prompt + c
            );
        } else {
            tmp.extend_from_slice(b"data: [DONE]\n\n");
        }
        if s.chunked {
            ringgate::http::encode_chunk(tmp, out);
            if ev + 1 == total {
                out.extend_from_slice(ringgate::http::LAST_CHUNK);
            }
        } else {
            out.extend_from_slice(tmp);
        }
        if stream.write_all(out).await.is_err() {
            return false;
        }
        out.clear();
    }
    true
}

/// Anthropic-style SSE: message_start, one text block of `chunks` deltas,
/// message_delta with the stop reason and usage, message_stop.
#[allow(clippy::too_many_arguments)]
async fn stream_messages(
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    ident: &[u8],
    conn: Option<&str>,
    id: u64,
    model: &str,
    chunks: usize,
    interval: Duration,
) -> bool {
    out.clear();
    head_with(
        out,
        200,
        "text/event-stream",
        "cache-control: no-cache\r\ntransfer-encoding: chunked\r\n",
        conn,
        ident,
    );
    let mut events: Vec<(&str, serde_json::Value)> = vec![
        (
            "message_start",
            serde_json::json!({"type": "message_start", "message": {"id": format!("msg_mock_{id}"), "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 9, "output_tokens": 1}}}),
        ),
        (
            "content_block_start",
            serde_json::json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        ("ping", serde_json::json!({"type": "ping"})),
    ];
    for i in 0..chunks {
        events.push(("content_block_delta", serde_json::json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": format!("tok{i} ")}})));
    }
    events.push((
        "content_block_stop",
        serde_json::json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push(("message_delta", serde_json::json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": chunks}})));
    events.push(("message_stop", serde_json::json!({"type": "message_stop"})));
    let n = events.len();
    for (i, (name, data)) in events.into_iter().enumerate() {
        if i > 0 && !interval.is_zero() {
            glommio::timer::sleep(interval).await;
        }
        let ev = format!("event: {name}\ndata: {data}\n\n");
        ringgate::http::encode_chunk(ev.as_bytes(), out);
        if i + 1 == n {
            out.extend_from_slice(ringgate::http::LAST_CHUNK);
        }
        if stream.write_all(out).await.is_err() {
            return false;
        }
        out.clear();
    }
    true
}

#[derive(Deserialize)]
struct ChatRequest<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    messages: Option<ContentChars>,
}

/// Total characters of text content in `messages` (or in one message's `content`).
#[derive(Default)]
struct ContentChars(usize);

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    content: ContentChars,
    #[serde(default)]
    text: ContentChars,
}

impl<'de> Deserialize<'de> for ContentChars {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ContentChars;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("message content")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ContentChars, E> {
                Ok(ContentChars(s.chars().count()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<ContentChars, E> {
                Ok(ContentChars(0))
            }
            fn visit_none<E: de::Error>(self) -> Result<ContentChars, E> {
                Ok(ContentChars(0))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<ContentChars, E> {
                Ok(ContentChars(0))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<ContentChars, E> {
                Ok(ContentChars(0))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<ContentChars, E> {
                Ok(ContentChars(0))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<ContentChars, E> {
                Ok(ContentChars(0))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ContentChars, A::Error> {
                // messages, or content parts: each element is an object with content / text
                let mut n = 0;
                while let Some(m) = seq.next_element::<Message>()? {
                    n += m.content.0 + m.text.0;
                }
                Ok(ContentChars(n))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ContentChars, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(ContentChars(0))
            }
        }
        d.deserialize_any(V)
    }
}
