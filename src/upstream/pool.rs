//! Per-shard keep-alive pools of upstream connections, keyed by address.
//!
//! Idle connections are checked before reuse with a non-blocking peek: a
//! peer that closed (FIN or RST already received) or sent unsolicited bytes
//! is evicted instead of handed out. A close that races the check is caught
//! by the proxy's retry of a reused connection. A reaper closes connections
//! idle for longer than the idle timeout.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::net::TcpStream;

use crate::buf::ReadBuf;

/// Read-buffer size of an upstream connection; response heads larger than
/// this are refused as 502.
pub const UPSTREAM_BUF: usize = 16 << 10;
pub const UPSTREAM_HEAD_MAX: usize = 64 << 10;

pub struct UpstreamConn {
    pub stream: TcpStream,
    pub buf: ReadBuf,
    /// Served at least one request before this one.
    pub reused: bool,
}

impl UpstreamConn {
    fn new(stream: TcpStream) -> UpstreamConn {
        UpstreamConn {
            stream,
            buf: ReadBuf::new(UPSTREAM_BUF, UPSTREAM_HEAD_MAX),
            reused: false,
        }
    }
}

/// Opens a connection with TCP_NODELAY, bounded by `timeout`.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<UpstreamConn> {
    let stream = TcpStream::connect_timeout(addr, timeout)
        .await
        .map_err(io::Error::from)?;
    stream.set_nodelay(true).map_err(io::Error::from)?;
    Ok(UpstreamConn::new(stream))
}

struct Idle {
    conn: UpstreamConn,
    since: Instant,
}

#[derive(Clone)]
pub struct Pool {
    idle: Rc<RefCell<HashMap<SocketAddr, Vec<Idle>>>>,
    max_idle: usize,
    idle_timeout: Duration,
}

/// True when the peer has neither closed nor written anything.
fn quiet(stream: &TcpStream) -> bool {
    let mut byte = 0u8;
    // SAFETY: a one-byte peek into a local on a socket we own.
    let r = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    r < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
}

impl Pool {
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Pool {
        Pool {
            idle: Rc::new(RefCell::new(HashMap::new())),
            max_idle,
            idle_timeout,
        }
    }

    /// The most recently used live connection to `addr`, if any.
    pub fn take(&self, addr: &SocketAddr) -> Option<UpstreamConn> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(addr)?;
        while let Some(entry) = list.pop() {
            if entry.since.elapsed() < self.idle_timeout && quiet(&entry.conn.stream) {
                let mut conn = entry.conn;
                conn.reused = true;
                return Some(conn);
            }
        }
        None
    }

    /// Keeps a connection whose last response was read completely.
    pub fn put(&self, addr: SocketAddr, conn: UpstreamConn) {
        if !conn.buf.is_empty() {
            return; // bytes after a complete response: the peer is confused
        }
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
                    list.retain(|e| e.since.elapsed() < pool.idle_timeout && quiet(&e.conn.stream));
                }
                idle.retain(|_, l| !l.is_empty());
            }
        });
        task.detach()
    }
}
