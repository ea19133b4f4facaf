//! Per-shard keep-alive pools of upstream connections, keyed by address and
//! TLS identity ([`PoolKey`]).
//!
//! Idle connections are checked before reuse: a peer that closed (FIN or
//! RST already received) or sent unsolicited bytes is evicted instead of
//! handed out. On the shard's own ring an idle connection keeps a receive
//! armed, so the check reads its state without a system call; one idle for
//! longer than [`PEEK_AFTER`] (or on glommio's path, any) is also peeked
//! with a non-blocking `recv(MSG_PEEK)`. A close that races the check is
//! caught by the proxy's retry of a reused connection. A reaper closes
//! connections idle for longer than the idle timeout.
//!
//! TLS connections are checked on the raw socket too: any readable byte
//! (a `close_notify`, a late session ticket) makes one not reusable.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::net::TcpStream;

use crate::runtime::conn::Conn;

use crate::buf::ReadBuf;
use crate::upstream::tls::{self, Stream, TlsClient};

/// Which pooled connections can serve a target: same address, same TLS
/// name and trust (`tls == 0`: plain TCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub addr: SocketAddr,
    pub tls: u64,
}

/// Read-buffer size of an upstream connection; response heads larger than
/// this are refused as 502.
pub const UPSTREAM_BUF: usize = 16 << 10;
pub const UPSTREAM_HEAD_MAX: usize = 64 << 10;

pub struct UpstreamConn {
    pub stream: Stream,
    pub buf: ReadBuf,
    /// Served at least one request before this one.
    pub reused: bool,
}

impl UpstreamConn {
    fn new(stream: Stream) -> UpstreamConn {
        UpstreamConn {
            stream,
            buf: ReadBuf::new(UPSTREAM_BUF, UPSTREAM_HEAD_MAX),
            reused: false,
        }
    }
}

/// Why a new connection failed.
#[derive(Debug)]
pub enum ConnectError {
    /// TCP: refused, unreachable, timed out.
    Tcp(io::Error),
    /// The TLS handshake failed (certificate not trusted, wrong name,
    /// protocol error) or timed out.
    Tls(io::Error),
}

/// An idle pooled connection older than this is also peeked before reuse.
pub const PEEK_AFTER: Duration = Duration::from_secs(1);

/// Opens a connection with TCP_NODELAY (and TLS when `tls` is set), each
/// step bounded by `timeout`, on the shard's data path.
pub async fn connect(
    addr: SocketAddr,
    timeout: Duration,
    tls: Option<&TlsClient>,
) -> Result<UpstreamConn, ConnectError> {
    let stream = match crate::runtime::uring::current() {
        Some(driver) => {
            let deadline = crate::runtime::uring::deadline(timeout);
            Conn::Ring(
                crate::runtime::uring::Socket::connect(driver, addr, deadline)
                    .await
                    .map_err(ConnectError::Tcp)?,
            )
        }
        None => {
            let stream = TcpStream::connect_timeout(addr, timeout)
                .await
                .map_err(|e| ConnectError::Tcp(io::Error::from(e)))?;
            stream
                .set_nodelay(true)
                .map_err(|e| ConnectError::Tcp(io::Error::from(e)))?;
            Conn::Glommio(stream)
        }
    };
    let stream = match tls {
        None => Stream::Plain(stream),
        Some(tls) => {
            match crate::runtime::conn::timed(timeout, tls::handshake(stream, tls)).await {
                Some(Ok(s)) => s,
                Some(Err(e)) => {
                    log::warn!(
                        "TLS handshake with {addr} ({:?}) failed: {e}",
                        tls.server_name
                    );
                    return Err(ConnectError::Tls(e));
                }
                None => {
                    return Err(ConnectError::Tls(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "TLS handshake timed out",
                    )))
                }
            }
        }
    };
    Ok(UpstreamConn::new(stream))
}

struct Idle {
    conn: UpstreamConn,
    since: Instant,
}

#[derive(Clone)]
pub struct Pool {
    idle: Rc<RefCell<HashMap<PoolKey, Vec<Idle>>>>,
    max_idle: usize,
    idle_timeout: Duration,
}

/// True when the peer has neither closed nor written anything; `idle`:
/// how long the connection sat in the pool.
fn quiet(stream: &Stream, idle: Duration) -> bool {
    stream.tcp().quiet(idle >= PEEK_AFTER)
}

impl Pool {
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Pool {
        Pool {
            idle: Rc::new(RefCell::new(HashMap::new())),
            max_idle,
            idle_timeout,
        }
    }

    /// The most recently used live connection for `addr`, if any.
    pub fn take(&self, addr: &PoolKey) -> Option<UpstreamConn> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(addr)?;
        while let Some(entry) = list.pop() {
            let idle = entry.since.elapsed();
            if idle < self.idle_timeout && quiet(&entry.conn.stream, idle) {
                let mut conn = entry.conn;
                conn.reused = true;
                return Some(conn);
            }
        }
        None
    }

    /// Keeps a connection whose last response was read completely.
    pub fn put(&self, addr: PoolKey, conn: UpstreamConn) {
        if !conn.buf.is_empty() {
            return; // bytes after a complete response: the peer is confused
        }
        // Arms a receive on the ring path: the check before reuse reads it.
        let _ = conn.stream.tcp().quiet(false);
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(addr).or_default();
        if list.len() < self.max_idle {
            list.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    /// Idle connections, all addresses.
    pub fn idle_count(&self) -> usize {
        self.idle.borrow().values().map(Vec::len).sum()
    }

    /// Closes expired and peer-closed idle connections every half idle timeout.
    /// The task stops when the returned handle is dropped.
    pub fn start_reaper(&self) -> glommio::task::JoinHandle<()> {
        let pool = self.clone();
        let every = (self.idle_timeout / 2).max(Duration::from_millis(100));
        let task = glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(every).await;
                let mut idle = pool.idle.borrow_mut();
                for list in idle.values_mut() {
                    list.retain(|e| {
                        let idle = e.since.elapsed();
                        idle < pool.idle_timeout && quiet(&e.conn.stream, idle)
                    });
                }
                idle.retain(|_, l| !l.is_empty());
            }
        });
        task.detach()
    }
}

/// Resolves `host:port`, preferring the first IPv4 address. IP literals
/// (bracketed or not) never touch DNS.
pub fn resolve(host: &str, port: u16) -> Option<SocketAddr> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, port));
    }
    match (bare, port).to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            let found = addrs
                .iter()
                .find(|a| a.is_ipv4())
                .or_else(|| addrs.first())
                .copied();
            if found.is_none() {
                log::warn!("{host}:{port} resolved to no address");
            }
            found
        }
        Err(e) => {
            log::warn!("cannot resolve {host}:{port}: {e}");
            None
        }
    }
}
