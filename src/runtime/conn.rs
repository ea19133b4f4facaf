//! A TCP connection of the request path, on whichever data path the shard
//! runs: its own ring ([`super::uring`], the default where the kernel has
//! what it needs) or glommio's sockets (the fallback, and `--io glommio`).
//!
//! Callers read and write through [`Conn::fill`] and [`Conn::send`], which
//! take their time limit as an argument: on the ring it becomes a deadline
//! in the driver's wheel, on glommio a timer raced against the operation.

use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::buf::ReadBuf;
use crate::runtime::uring;

pub enum Conn {
    Ring(uring::Socket),
    Glommio(glommio::net::TcpStream),
}

/// Races `fut` against a timer; `None` when the time ran out first.
pub async fn timed<T>(d: Duration, fut: impl std::future::Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        glommio::timer::sleep(d).await;
        None
    })
    .await
}

/// `write_all` then `flush` (TLS holds records until flushed; plain
/// glommio streams make it a no-op), bounded by `d`; false on an error or
/// when the time ran out.
pub async fn send_within<S: AsyncWrite + Unpin>(d: Duration, stream: &mut S, bytes: &[u8]) -> bool {
    let write = async {
        stream.write_all(bytes).await?;
        stream.flush().await
    };
    match timed(d, write).await {
        Some(Ok(())) => true,
        Some(Err(_)) => false,
        None => {
            log::debug!("peer did not take {} bytes in {d:?}: dropped", bytes.len());
            false
        }
    }
}

/// Half-closes `stream`'s write side, then reads and discards what the peer
/// still sends, up to `budget` bytes or until `within` has passed (or EOF).
/// Closing with unread bytes would make the kernel send a reset, which can
/// destroy the answer before the peer reads it.
pub async fn linger(stream: &mut Conn, buf: &mut ReadBuf, budget: usize, within: Duration) {
    let deadline = Instant::now() + within;
    stream.shutdown_write(within).await;
    let mut discarded = 0usize;
    while discarded < budget {
        buf.clear();
        let left = deadline.saturating_duration_since(Instant::now());
        match stream.fill(buf, left).await {
            Some(Ok(n)) if n > 0 => discarded += n,
            _ => break,
        }
    }
}

impl Conn {
    pub fn peer_ip(&self) -> Option<IpAddr> {
        match self {
            Conn::Ring(s) => s.peer_addr().ok().map(|a| a.ip()),
            Conn::Glommio(s) => s.peer_addr().ok().map(|a| a.ip()),
        }
    }

    pub fn set_nodelay(&self) {
        match self {
            Conn::Ring(s) => s.set_nodelay(),
            Conn::Glommio(s) => {
                let _ = s.set_nodelay(true);
            }
        }
    }

    /// Waits until the peer sent something (or closed) without taking it,
    /// within `wait`: `Some(true)` readable, `Some(false)` closed or failed,
    /// `None` the time ran out. glommio's path cannot wait without reading:
    /// there it answers readable at once and the read does the waiting.
    pub async fn readable(&self, wait: Duration) -> Option<bool> {
        match self {
            Conn::Ring(s) => match s.readable(uring::deadline(wait)).await {
                Ok(()) => Some(true),
                Err(e) if e.kind() == io::ErrorKind::TimedOut => None,
                Err(_) => Some(false),
            },
            Conn::Glommio(_) => Some(true),
        }
    }

    /// One read into the free space of `buf`, within `wait`. `None`: the
    /// time ran out; `Some(Ok(0))`: end of stream.
    pub async fn fill(&mut self, buf: &mut ReadBuf, wait: Duration) -> Option<io::Result<usize>> {
        match self {
            Conn::Ring(s) => {
                let spare = match buf.spare_mut() {
                    Ok(s) => s,
                    Err(e) => return Some(Err(e)),
                };
                match s.read(spare, uring::deadline(wait)).await {
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => None,
                    Err(e) => Some(Err(e)),
                    Ok(n) => {
                        buf.advance(n);
                        Some(Ok(n))
                    }
                }
            }
            Conn::Glommio(s) => timed(wait, buf.fill_from(s)).await,
        }
    }

    /// Hands all of `bytes` to the connection within `wait`; false when the
    /// peer is gone or stopped reading. On the ring the bytes are sent
    /// behind: the next send (or the close) waits for them.
    pub async fn send(&mut self, bytes: &[u8], wait: Duration) -> bool {
        match self {
            Conn::Ring(s) => s.send_all(bytes, uring::deadline(wait)).await.is_ok(),
            Conn::Glommio(s) => {
                let write = async {
                    s.write_all(bytes).await?;
                    s.flush().await
                };
                matches!(timed(wait, write).await, Some(Ok(())))
            }
        }
    }

    /// Sends a FIN after everything written (bounded by `wait`).
    pub async fn shutdown_write(&mut self, wait: Duration) {
        match self {
            Conn::Ring(s) => {
                let _ = s.shutdown_write(uring::deadline(wait)).await;
            }
            Conn::Glommio(s) => {
                let _ = timed(wait, s.shutdown(std::net::Shutdown::Write)).await;
            }
        }
    }

    /// True when an idle connection received neither data nor a close.
    /// `peek`: also ask the kernel (the ring's armed receive may not have
    /// reported yet).
    pub fn quiet(&self, peek: bool) -> bool {
        use std::os::fd::AsRawFd;
        let fd = match self {
            Conn::Ring(s) => {
                if !s.quiet() {
                    return false;
                }
                if !peek {
                    return true;
                }
                s.fd()
            }
            Conn::Glommio(s) => s.as_raw_fd(),
        };
        let mut byte = 0u8;
        // SAFETY: a one-byte peek into a local on a socket we own.
        let r = unsafe {
            libc::recv(
                fd,
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        r < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Ring(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Glommio(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Ring(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Glommio(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Ring(s) => Pin::new(s).poll_flush(cx),
            Conn::Glommio(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Ring(s) => Pin::new(s).poll_close(cx),
            Conn::Glommio(s) => Pin::new(s).poll_close(cx),
        }
    }
}
