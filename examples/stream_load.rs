//! The load client of `scripts/stream_bench.sh`: SSE chat-completion
//! streams over raw HTTP/1.1, timing every event.
//!
//! - `stream_load latency --direct ADDR --gateway ADDR ...`: streams one at
//!   a time, alternating direct-to-mock and through-ringgate in rounds;
//!   prints time-to-first-token and the gaps between events (p50/p90/p99/
//!   max) for both and what the gateway adds. By default its sockets are
//!   blocking: the client sleeps in `recv` the moment its request is sent,
//!   as curl or an SDK does. `--client glommio` times through the executor
//!   instead, whose turn after each send runs on the same two vCPUs as the
//!   proxy and the mock, and is paid once more per hand-off through a proxy.
//! - `stream_load concurrent --target ADDR --streams 2000 ...`: connects all
//!   streams on one glommio executor, starts them together, and counts the
//!   completed, stalled (a gap between events above `--stall-factor` × the
//!   pace) and failed ones.
//!
//! The pace comes from the mock's `x-mock-chunks` / `x-mock-interval-ms`
//! request headers. Loopback only in practice (it connects where told);
//! every read has a timeout and the whole run a deadline.

use std::cell::{Cell, RefCell};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use argh::FromArgs;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::{LocalExecutorBuilder, Placement};
use ringgate::http::ChunkedDecoder;

/// SSE stream load for ringgate's streaming benchmark
#[derive(FromArgs)]
struct Args {
    #[argh(subcommand)]
    mode: Mode,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Mode {
    Latency(Latency),
    Concurrent(Concurrent),
}

/// sequential streams, direct vs through the gateway, alternating
#[derive(FromArgs)]
#[argh(subcommand, name = "latency")]
struct Latency {
    /// the mock upstream (host:port)
    #[argh(option)]
    direct: SocketAddr,
    /// the gateway's proxy listener (host:port)
    #[argh(option)]
    gateway: SocketAddr,
    /// gateway API key
    #[argh(option)]
    key: String,
    /// streams per side (default 200)
    #[argh(option, default = "200")]
    streams: usize,
    /// streams per side in one round before switching sides (default 20)
    #[argh(option, default = "20")]
    round: usize,
    /// content events per stream (default 20)
    #[argh(option, default = "20")]
    chunks: usize,
    /// milliseconds between events at the mock (default 20)
    #[argh(option, default = "20")]
    interval_ms: u64,
    /// give up after this many seconds (default 120)
    #[argh(option, default = "120")]
    deadline_secs: u64,
    /// what the gateway side is called in the report (default ringgate)
    #[argh(option, default = "String::from(\"ringgate\")")]
    label: String,
    /// a new connection for every stream (its connect is not timed)
    #[argh(switch)]
    fresh: bool,
    /// blocking (default) or glommio: how the client waits for the answer
    #[argh(option, default = "Client::Blocking")]
    client: Client,
}

/// How `latency` waits on its sockets.
#[derive(Clone, Copy, PartialEq)]
enum Client {
    /// std sockets: the thread sleeps in the kernel until bytes arrive.
    Blocking,
    /// glommio's `TcpStream`: waits through the executor's rings.
    Glommio,
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Client::Blocking => "blocking",
            Client::Glommio => "glommio",
        }
    }
}

impl std::str::FromStr for Client {
    type Err = String;
    fn from_str(s: &str) -> Result<Client, String> {
        [Client::Blocking, Client::Glommio]
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| format!("--client is blocking or glommio, not {s:?}"))
    }
}

/// many streams at once through one address
#[derive(FromArgs)]
#[argh(subcommand, name = "concurrent")]
struct Concurrent {
    /// where to send the streams (host:port)
    #[argh(option)]
    target: SocketAddr,
    /// gateway API key (omit for the mock itself)
    #[argh(option)]
    key: Option<String>,
    /// streams, all open at once (default 2000)
    #[argh(option, default = "2000")]
    streams: usize,
    /// content events per stream (default 50)
    #[argh(option, default = "50")]
    chunks: usize,
    /// milliseconds between events at the mock (default 20)
    #[argh(option, default = "20")]
    interval_ms: u64,
    /// a gap above this many times the pace makes a stream stalled (default 10)
    #[argh(option, default = "10")]
    stall_factor: u64,
    /// give up after this many seconds (default 60)
    #[argh(option, default = "60")]
    deadline_secs: u64,
    /// spread the streams' starts evenly over this many milliseconds
    /// (default 0: all at once)
    #[argh(option, default = "0")]
    ramp_ms: u64,
}

/// The longest wait for any single read.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// What one stream saw.
#[derive(Default)]
struct Stream {
    /// Request written → first event complete.
    ttft: Option<Duration>,
    /// Between successive events (the first event excluded).
    gaps: Vec<Duration>,
    /// When each gap ended, from the request's start.
    gap_ends: Vec<Duration>,
    events: usize,
    done: bool,
    error: Option<String>,
}

fn request(key: Option<&str>, chunks: usize, interval_ms: u64) -> Vec<u8> {
    const BODY: &str =
        r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Hi"}]}"#;
    let auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\n{auth}Content-Type: application/json\r\n\
         x-mock-chunks: {chunks}\r\nx-mock-interval-ms: {interval_ms}\r\nContent-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    )
    .into_bytes()
}

async fn timed<T>(d: Duration, fut: impl std::future::Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        glommio::timer::sleep(d).await;
        None
    })
    .await
}

async fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let s = timed(Duration::from_secs(10), TcpStream::connect(addr))
        .await
        .ok_or("connect timed out")?
        .map_err(|e| format!("connect: {e}"))?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

/// A blocking std socket behind the async traits: every call finishes on
/// its first poll, so the executor never takes a turn between a send and
/// the answer. Its timeouts are the socket's (`SO_RCVTIMEO`/`SO_SNDTIMEO`).
struct Blocking(std::net::TcpStream);

impl Blocking {
    fn connect(addr: SocketAddr) -> Result<Blocking, String> {
        let s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .map_err(|e| format!("connect: {e}"))?;
        let _ = s.set_nodelay(true);
        s.set_read_timeout(Some(READ_TIMEOUT))
            .and_then(|()| s.set_write_timeout(Some(READ_TIMEOUT)))
            .map_err(|e| format!("socket timeouts: {e}"))?;
        Ok(Blocking(s))
    }
}

/// Runs a blocking socket call again when a signal interrupted it.
fn retry<T>(mut call: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    loop {
        match call() {
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

impl AsyncRead for Blocking {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(retry(|| std::io::Read::read(&mut self.0, buf)))
    }
}

impl AsyncWrite for Blocking {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(retry(|| std::io::Write::write(&mut self.0, buf)))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(self.0.shutdown(std::net::Shutdown::Write))
    }
}

/// The latency client's connection, of the kind `--client` chose.
enum Conn {
    Blocking(Blocking),
    Glommio(TcpStream),
}

impl Conn {
    async fn connect(client: Client, addr: SocketAddr) -> Result<Conn, String> {
        match client {
            Client::Blocking => Blocking::connect(addr).map(Conn::Blocking),
            Client::Glommio => connect(addr).await.map(Conn::Glommio),
        }
    }

    async fn one_stream(&mut self, req: &[u8], buf: &mut Vec<u8>) -> Stream {
        match self {
            Conn::Blocking(c) => one_stream(c, req, buf).await,
            Conn::Glommio(c) => one_stream(c, req, buf).await,
        }
    }
}

/// Sends one streaming request on `conn` and reads its answer to the end.
/// `buf` carries bytes read past the answer (none with this mock).
async fn one_stream<C: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut C,
    req: &[u8],
    buf: &mut Vec<u8>,
) -> Stream {
    let mut st = Stream::default();
    if let Err(e) = run_stream(conn, req, buf, &mut st).await {
        st.error = Some(e);
    }
    st
}

async fn run_stream<C: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut C,
    req: &[u8],
    buf: &mut Vec<u8>,
    st: &mut Stream,
) -> Result<(), String> {
    buf.clear();
    let start = Instant::now();
    conn.write_all(req)
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut scratch = vec![0u8; 16 << 10];
    // The head.
    let body_at = loop {
        let n = read(conn, &mut scratch).await?;
        buf.extend_from_slice(&scratch[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(buf) {
            Ok(httparse::Status::Complete(len)) => {
                if resp.code != Some(200) {
                    return Err(format!("status {:?}", resp.code));
                }
                let chunked = resp.headers.iter().any(|h| {
                    h.name.eq_ignore_ascii_case("transfer-encoding")
                        && h.value.eq_ignore_ascii_case(b"chunked")
                });
                if !chunked {
                    return Err("answer is not chunked".into());
                }
                break len;
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => return Err(format!("bad head: {e}")),
        }
    };
    let mut decoder = ChunkedDecoder::new();
    let mut pending: Vec<u8> = buf[body_at..].to_vec();
    let mut last_event: Option<Instant> = None;
    let mut tail = [0u8; 2];
    let mut saw_done = false;
    loop {
        let now = Instant::now();
        let mut data = Vec::new();
        let p = decoder
            .feed(&pending, &mut |d| data.extend_from_slice(d))
            .map_err(|e| format!("bad chunked body: {}", e.message))?;
        // Each "\n\n" ends an event; they are timed at the read that
        // completed them.
        for &b in &data {
            if tail[1] == b'\n' && b == b'\n' {
                st.events += 1;
                match last_event {
                    None => st.ttft = Some(now - start),
                    Some(t) => {
                        st.gaps.push(now - t);
                        st.gap_ends.push(now - start);
                    }
                }
                last_event = Some(now);
            }
            tail = [tail[1], b];
        }
        saw_done |= data.windows(12).any(|w| w == b"data: [DONE]");
        if p.done {
            if !saw_done {
                return Err("stream ended without [DONE]".into());
            }
            st.done = true;
            return Ok(());
        }
        pending.drain(..p.consumed);
        let n = read(conn, &mut scratch).await?;
        pending.extend_from_slice(&scratch[..n]);
    }
}

async fn read<C: AsyncRead + Unpin>(conn: &mut C, scratch: &mut [u8]) -> Result<usize, String> {
    match timed(READ_TIMEOUT, conn.read(scratch)).await {
        None => Err("read timed out".into()),
        Some(Ok(0)) => Err("connection closed".into()),
        Some(Ok(n)) => Ok(n),
        // A blocking socket's SO_RCVTIMEO ends a read this way.
        Some(Err(e)) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            Err("read timed out".into())
        }
        Some(Err(e)) => Err(format!("read: {e}")),
    }
}

/// Percentile `p` (0..=100) of sorted `v`, nearest rank.
fn pct(v: &[Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

fn signed_ms(a: Duration, b: Duration) -> String {
    format!("{:+.3}", (a.as_secs_f64() - b.as_secs_f64()) * 1e3)
}

/// Raises RLIMIT_NOFILE to its hard limit; `Err` when that is below `need`.
fn raise_nofile(need: u64) -> Result<u64, String> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return Err("getrlimit failed".into());
        }
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
    }
    if r.rlim_cur < need {
        return Err(format!(
            "RLIMIT_NOFILE is {} (hard limit), {need} needed: raise it (ulimit -Hn)",
            r.rlim_cur
        ));
    }
    Ok(r.rlim_cur)
}

fn main() {
    let args: Args = argh::from_env();
    let ex = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(256 << 10)
        .name("stream-load")
        .make()
        .unwrap_or_else(|e| {
            eprintln!("stream_load: cannot start the executor: {e}");
            std::process::exit(2)
        });
    let code = ex.run(async move {
        match args.mode {
            Mode::Latency(a) => latency(a).await,
            Mode::Concurrent(a) => concurrent(a).await,
        }
    });
    std::process::exit(code);
}

struct Side {
    ttft: Vec<Duration>,
    gaps: Vec<Duration>,
    ok: usize,
    failed: usize,
    first_error: Option<String>,
}

impl Side {
    fn new() -> Side {
        Side {
            ttft: Vec::new(),
            gaps: Vec::new(),
            ok: 0,
            failed: 0,
            first_error: None,
        }
    }

    fn add(&mut self, st: Stream) {
        match st.error {
            Some(e) => {
                self.failed += 1;
                self.first_error.get_or_insert(e);
            }
            None => {
                self.ok += 1;
                self.ttft.extend(st.ttft);
                self.gaps.extend(st.gaps);
            }
        }
    }
}

async fn latency(a: Latency) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(a.deadline_secs);
    let direct_req = request(None, a.chunks, a.interval_ms);
    let gw_req = request(Some(&a.key), a.chunks, a.interval_ms);
    let mut sides = [Side::new(), Side::new()];
    let mut conns: [Option<Conn>; 2] = [None, None];
    let mut buf = Vec::new();
    let mut done = 0;
    'rounds: while done < a.streams {
        let n = a.round.min(a.streams - done);
        for (i, (addr, req)) in [(a.direct, &direct_req), (a.gateway, &gw_req)]
            .into_iter()
            .enumerate()
        {
            for _ in 0..n {
                if Instant::now() > deadline {
                    eprintln!("stream_load: deadline reached after {done} streams per side");
                    break 'rounds;
                }
                if conns[i].is_none() {
                    match Conn::connect(a.client, addr).await {
                        Ok(c) => conns[i] = Some(c),
                        Err(e) => {
                            sides[i].add(Stream {
                                error: Some(e),
                                ..Stream::default()
                            });
                            continue;
                        }
                    }
                }
                let conn = conns[i].as_mut().expect("connected above");
                let st = conn.one_stream(req, &mut buf).await;
                if st.error.is_some() || a.fresh {
                    conns[i] = None;
                }
                sides[i].add(st);
            }
        }
        done += n;
    }
    for s in &mut sides {
        s.ttft.sort();
        s.gaps.sort();
    }
    let [d, g] = &sides;
    println!(
        "latency: {} streams each way, one at a time{}, {} events of {} ms pace per stream, {} client",
        d.ok + d.failed,
        if a.fresh { " on fresh connections" } else { "" },
        a.chunks + 3,
        a.interval_ms,
        a.client.name()
    );
    println!(
        "{:<26} {:>10} {:>10} {:>10} {:>10}",
        "(ms)", "p50", "p90", "p99", "max"
    );
    let row = |name: &str, v: &[Duration]| {
        println!(
            "{name:<26} {:>10} {:>10} {:>10} {:>10}",
            ms(pct(v, 50.0)),
            ms(pct(v, 90.0)),
            ms(pct(v, 99.0)),
            ms(v.last().copied().unwrap_or_default())
        );
    };
    let label = &a.label;
    row("ttft direct", &d.ttft);
    row(&format!("ttft {label}"), &g.ttft);
    row("inter-event gap direct", &d.gaps);
    row(&format!("inter-event gap {label}"), &g.gaps);
    println!(
        "added by {label}: ttft p50 {} ms, p99 {} ms; inter-event gap p50 {} ms, p99 {} ms",
        signed_ms(pct(&g.ttft, 50.0), pct(&d.ttft, 50.0)),
        signed_ms(pct(&g.ttft, 99.0), pct(&d.ttft, 99.0)),
        signed_ms(pct(&g.gaps, 50.0), pct(&d.gaps, 50.0)),
        signed_ms(pct(&g.gaps, 99.0), pct(&d.gaps, 99.0)),
    );
    println!(
        "RESULT latency{} ttft_p50_direct_ms={} ttft_p50_gateway_ms={} ttft_p99_direct_ms={} ttft_p99_gateway_ms={} gap_p50_direct_ms={} gap_p50_gateway_ms={} gap_p99_direct_ms={} gap_p99_gateway_ms={} failed={}",
        if label == "ringgate" { String::new() } else { format!("-{label}") },
        ms(pct(&d.ttft, 50.0)),
        ms(pct(&g.ttft, 50.0)),
        ms(pct(&d.ttft, 99.0)),
        ms(pct(&g.ttft, 99.0)),
        ms(pct(&d.gaps, 50.0)),
        ms(pct(&g.gaps, 50.0)),
        ms(pct(&d.gaps, 99.0)),
        ms(pct(&g.gaps, 99.0)),
        d.failed + g.failed
    );
    for (name, s) in [("direct", d), (label.as_str(), g)] {
        if let Some(e) = &s.first_error {
            println!("{name}: {} failed, first: {e}", s.failed);
        }
    }
    i32::from(d.failed + g.failed > 0)
}

async fn concurrent(a: Concurrent) -> i32 {
    match raise_nofile(a.streams as u64 + 64) {
        Ok(n) => eprintln!("stream_load: RLIMIT_NOFILE {n}"),
        Err(e) => {
            eprintln!("stream_load: {e}");
            return 2;
        }
    }
    let req = Rc::new(request(a.key.as_deref(), a.chunks, a.interval_ms));
    let stall_at = Duration::from_millis(a.interval_ms * a.stall_factor);
    let deadline = Duration::from_secs(a.deadline_secs);
    let results: Rc<RefCell<Vec<Stream>>> = Rc::new(RefCell::new(Vec::new()));
    // Every stream connects first; all requests go out once all are connected.
    let connected = Rc::new(Cell::new(0usize));
    let go = Rc::new(Cell::new(false));
    let open = Rc::new(Cell::new(0usize));
    let peak = Rc::new(Cell::new(0usize));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(a.streams);
    for i in 0..a.streams {
        let delay = Duration::from_millis(a.ramp_ms * i as u64 / a.streams.max(1) as u64);
        let (req, results, connected, go, open, peak) = (
            req.clone(),
            results.clone(),
            connected.clone(),
            go.clone(),
            open.clone(),
            peak.clone(),
        );
        let target = a.target;
        tasks.push(
            glommio::spawn_local(async move {
                let st = match connect(target).await {
                    Err(e) => {
                        connected.set(connected.get() + 1);
                        Stream {
                            error: Some(e),
                            ..Stream::default()
                        }
                    }
                    Ok(mut conn) => {
                        connected.set(connected.get() + 1);
                        while !go.get() {
                            glommio::timer::sleep(Duration::from_millis(5)).await;
                        }
                        if !delay.is_zero() {
                            glommio::timer::sleep(delay).await;
                        }
                        open.set(open.get() + 1);
                        peak.set(peak.get().max(open.get()));
                        let mut buf = Vec::new();
                        let st = one_stream(&mut conn, &req, &mut buf).await;
                        open.set(open.get() - 1);
                        st
                    }
                };
                results.borrow_mut().push(st);
            })
            .detach(),
        );
        if tasks.len() % 100 == 0 {
            // Let connects complete in waves rather than one burst of SYNs.
            glommio::yield_if_needed().await;
        }
    }
    while connected.get() < a.streams && started.elapsed() < deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    let connect_time = started.elapsed();
    go.set(true);
    let go_at = Instant::now();
    while results.borrow().len() < a.streams && started.elapsed() < deadline {
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
    let run_time = go_at.elapsed();
    let results = results.borrow();
    let unfinished = a.streams - results.len();
    let mut completed = 0;
    let mut stalled = 0;
    let mut failed = 0;
    let mut first_error = None;
    let mut gaps = Vec::new();
    let mut ttft = Vec::new();
    // When the stalls happened: the first second (everything starting at
    // once) or later.
    let mut stall_gaps_first_second = 0;
    let mut stall_gaps_later = 0;
    for st in results.iter() {
        if let Some(e) = &st.error {
            failed += 1;
            first_error.get_or_insert(e.clone());
            continue;
        }
        if st.done {
            completed += 1;
        }
        if st.gaps.iter().any(|g| *g > stall_at) {
            stalled += 1;
        }
        for (g, end) in st.gaps.iter().zip(&st.gap_ends) {
            if *g > stall_at {
                if *end <= Duration::from_secs(1) {
                    stall_gaps_first_second += 1;
                } else {
                    stall_gaps_later += 1;
                }
            }
        }
        gaps.extend_from_slice(&st.gaps);
        ttft.extend(st.ttft);
    }
    gaps.sort();
    ttft.sort();
    println!(
        "concurrent: {} streams to {}, {} events of {} ms pace each, started over {} ms; all connected in {:.2} s, peak {} open at once, {:.2} s to finish",
        a.streams,
        a.target,
        a.chunks + 3,
        a.interval_ms,
        a.ramp_ms,
        connect_time.as_secs_f64(),
        peak.get(),
        run_time.as_secs_f64()
    );
    println!(
        "  completed {completed}, stalled {stalled} (a gap > {} ms), failed {failed}, unfinished at the deadline {unfinished}",
        stall_at.as_millis()
    );
    println!(
        "  ttft ms p50 {} p99 {} max {}; inter-event gap ms p50 {} p99 {} p99.9 {} max {}",
        ms(pct(&ttft, 50.0)),
        ms(pct(&ttft, 99.0)),
        ms(ttft.last().copied().unwrap_or_default()),
        ms(pct(&gaps, 50.0)),
        ms(pct(&gaps, 99.0)),
        ms(pct(&gaps, 99.9)),
        ms(gaps.last().copied().unwrap_or_default())
    );
    if stalled > 0 {
        println!(
            "  stalled gaps ending in a stream's first second: {stall_gaps_first_second}, later: {stall_gaps_later}"
        );
    }
    if let Some(e) = first_error {
        println!("  first failure: {e}");
    }
    println!(
        "RESULT concurrent target={} streams={} completed={completed} stalled={stalled} failed={failed} unfinished={unfinished} peak_open={} gap_p99_ms={} gap_max_ms={} ttft_p99_ms={}",
        a.target,
        a.streams,
        peak.get(),
        ms(pct(&gaps, 99.0)),
        ms(gaps.last().copied().unwrap_or_default()),
        ms(pct(&ttft, 99.0))
    );
    i32::from(completed < a.streams || stalled > 0)
}
