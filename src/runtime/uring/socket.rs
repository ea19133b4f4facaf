//! Sockets on the shard's ring: a TCP stream ([`Socket`]) and a listener
//! ([`Listener`]). Each is a handle to a slot of the driver, which owns
//! every buffer the kernel reads or writes.
//!
//! - Reads are resumable: a read whose future is dropped (a timeout, a
//!   race with a drain) leaves its receive armed, and whatever it brings
//!   is returned by the next read.
//! - Writes are written behind: `write` copies the bytes into the slot's
//!   send buffer, queues the send and returns; the next write, `flush`,
//!   `shutdown_write` or the close waits for it. A dropped socket still
//!   sends what was written (within the linger time), then closes.
//! - Deadlines are [`super::now_ms`] ticks (0: none); a wait that outlives
//!   its deadline fails with `TimedOut`.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use io_uring::{opcode, squeue, types};

use super::{user_data, Driver, Kind, Recv, Send, BUF_GROUP};

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "timed out")
}

/// A connected TCP socket on the shard's ring.
pub struct Socket {
    driver: Rc<Driver>,
    id: u32,
}

impl Socket {
    /// Adopts a connected, non-blocking socket.
    pub fn adopt(driver: Rc<Driver>, fd: RawFd) -> Socket {
        let id = driver.inner.borrow_mut().alloc(fd).0;
        Socket { driver, id }
    }

    /// Connects to `addr` (TCP_NODELAY set), failing with `TimedOut` past `deadline`.
    pub async fn connect(
        driver: Rc<Driver>,
        addr: SocketAddr,
        deadline: u64,
    ) -> io::Result<Socket> {
        let domain = if addr.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        };
        // SAFETY: socket takes plain integers; the result is checked.
        let fd = unsafe {
            libc::socket(
                domain,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let socket = Socket::adopt(driver, fd);
        socket.set_nodelay();
        let (storage, len) = sockaddr(addr);
        {
            let mut inner = socket.driver.inner.borrow_mut();
            let slot = inner.slot(socket.id);
            let boxed = Box::new((storage, len));
            let e = opcode::Connect::new(
                types::Fd(fd),
                &boxed.0 as *const libc::sockaddr_storage as *const libc::sockaddr,
                boxed.1,
            )
            .build()
            .user_data(user_data(socket.id, slot.gen, Kind::Connect));
            slot.addr = Some(boxed);
            slot.send = Send::Connecting;
            slot.in_flight += 1;
            inner.push(&e);
        }
        socket.driver.kick();
        poll_fn(|cx| socket.poll_flush(cx, deadline)).await?;
        Ok(socket)
    }

    pub fn set_nodelay(&self) {
        let one: libc::c_int = 1;
        // SAFETY: setsockopt reads an int we own.
        unsafe {
            libc::setsockopt(
                self.fd(),
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }

    pub fn fd(&self) -> RawFd {
        self.driver.inner.borrow_mut().slot(self.id).fd
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        peer_addr(self.fd())
    }

    /// Copies received bytes into `dst`; `Ok(0)` is end of stream.
    pub fn poll_read(
        &self,
        cx: &mut Context<'_>,
        dst: &mut [u8],
        deadline: u64,
    ) -> Poll<io::Result<usize>> {
        self.poll_read_inner(cx, dst, deadline, true)
    }

    /// `take`: copy the data out (false: only wait for it).
    fn poll_read_inner(
        &self,
        cx: &mut Context<'_>,
        dst: &mut [u8],
        deadline: u64,
        take: bool,
    ) -> Poll<io::Result<usize>> {
        let mut guard = self.driver.inner.borrow_mut();
        let inner = &mut *guard;
        let id = self.id;
        let slot = inner.slots[id as usize].as_mut().expect("live slot");
        match slot.recv {
            Recv::Ready { .. } | Recv::Eof if !take => {
                slot.rd.done();
                Poll::Ready(Ok(0))
            }
            Recv::Ready { bid, off, len } => {
                let src = match bid {
                    Some(b) => &inner.bufs.get(b, (off + len) as usize)[off as usize..],
                    None => &slot.heap[off as usize..(off + len) as usize],
                };
                let n = src.len().min(dst.len());
                dst[..n].copy_from_slice(&src[..n]);
                if n < len as usize {
                    slot.recv = Recv::Ready {
                        bid,
                        off: off + n as u32,
                        len: len - n as u32,
                    };
                } else {
                    slot.recv = Recv::Idle;
                    match bid {
                        Some(b) => inner.bufs.give(b),
                        None => slot.heap = Vec::new(),
                    }
                }
                slot.rd.done();
                Poll::Ready(Ok(n))
            }
            Recv::Eof => {
                slot.rd.done();
                Poll::Ready(Ok(0))
            }
            Recv::Failed(e) => {
                slot.rd.done();
                Poll::Ready(Err(io::Error::from_raw_os_error(e)))
            }
            Recv::Idle | Recv::Armed { .. } => {
                if slot.rd.timed_out {
                    slot.rd.done();
                    return Poll::Ready(Err(timed_out()));
                }
                if dst.is_empty() {
                    return Poll::Ready(Ok(0));
                }
                let mut entry: Option<squeue::Entry> = None;
                if matches!(slot.recv, Recv::Idle) {
                    entry = Some(
                        opcode::Recv::new(types::Fd(slot.fd), std::ptr::null_mut(), 0)
                            .buf_group(BUF_GROUP)
                            .build()
                            .flags(squeue::Flags::BUFFER_SELECT)
                            .user_data(user_data(id, slot.gen, Kind::Recv)),
                    );
                    slot.recv = Recv::Armed { heap: false };
                    slot.in_flight += 1;
                }
                let earlier = deadline != 0 && (slot.filed == 0 || deadline < slot.filed);
                slot.rd.wait(cx, deadline);
                inner.file(id);
                let queued = entry.is_some();
                if let Some(e) = entry {
                    inner.push(&e);
                }
                drop(guard);
                if queued || earlier {
                    self.driver.kick();
                }
                Poll::Pending
            }
        }
    }

    /// Ready once data (or end of stream, or an error) waits to be read.
    pub fn poll_readable(&self, cx: &mut Context<'_>, deadline: u64) -> Poll<io::Result<()>> {
        {
            let mut inner = self.driver.inner.borrow_mut();
            let slot = inner.slot(self.id);
            match slot.recv {
                Recv::Ready { .. } | Recv::Eof => {
                    slot.rd.done();
                    return Poll::Ready(Ok(()));
                }
                Recv::Failed(e) => {
                    slot.rd.done();
                    return Poll::Ready(Err(io::Error::from_raw_os_error(e)));
                }
                _ => {}
            }
        }
        // Arms the receive and waits, like a read that takes nothing yet.
        let mut probe = [0u8; 1];
        match self.poll_read_inner(cx, &mut probe, deadline, false) {
            Poll::Ready(Ok(_)) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Polls `f` to completion; a wait dropped midway (a timeout, a race)
    /// forgets its waker and deadline, so neither can fire later.
    async fn wait<T>(&self, read: bool, mut f: impl FnMut(&mut Context<'_>) -> Poll<T>) -> T {
        let guard = WaitGuard { socket: self, read };
        let r = poll_fn(|cx| f(cx)).await;
        std::mem::forget(guard);
        r
    }

    pub async fn readable(&self, deadline: u64) -> io::Result<()> {
        self.wait(true, |cx| self.poll_readable(cx, deadline)).await
    }

    /// Queues `src` to be sent once the previous send finished.
    pub fn poll_write(
        &self,
        cx: &mut Context<'_>,
        src: &[u8],
        deadline: u64,
    ) -> Poll<io::Result<usize>> {
        let mut guard = self.driver.inner.borrow_mut();
        let inner = &mut *guard;
        let id = self.id;
        let spare = &mut inner.spare;
        let slot = inner.slots[id as usize].as_mut().expect("live slot");
        match slot.send {
            Send::Idle => {
                if src.is_empty() {
                    return Poll::Ready(Ok(0));
                }
                let mut out = spare.pop().unwrap_or_default();
                out.clear();
                out.extend_from_slice(src);
                slot.out = out;
                let e = opcode::Send::new(types::Fd(slot.fd), slot.out.as_ptr(), src.len() as u32)
                    .flags(libc::MSG_NOSIGNAL)
                    .build()
                    .user_data(user_data(id, slot.gen, Kind::Send));
                slot.send = Send::Busy { off: 0 };
                slot.in_flight += 1;
                slot.wr.done();
                inner.push(&e);
                drop(guard);
                self.driver.kick();
                Poll::Ready(Ok(src.len()))
            }
            Send::Failed(e) => {
                slot.wr.done();
                Poll::Ready(Err(io::Error::from_raw_os_error(e)))
            }
            Send::Busy { .. } | Send::Connecting => self.wait_write(inner, cx, deadline),
        }
    }

    /// Waits until everything written was sent (or the connect finished).
    pub fn poll_flush(&self, cx: &mut Context<'_>, deadline: u64) -> Poll<io::Result<()>> {
        let mut guard = self.driver.inner.borrow_mut();
        let inner = &mut *guard;
        let slot = inner.slot(self.id);
        match slot.send {
            Send::Idle => {
                slot.wr.done();
                Poll::Ready(Ok(()))
            }
            Send::Failed(e) => {
                slot.wr.done();
                Poll::Ready(Err(io::Error::from_raw_os_error(e)))
            }
            Send::Busy { .. } | Send::Connecting => {
                self.wait_write(inner, cx, deadline).map(|r| r.map(drop))
            }
        }
    }

    fn wait_write(
        &self,
        inner: &mut super::Inner,
        cx: &mut Context<'_>,
        deadline: u64,
    ) -> Poll<io::Result<usize>> {
        let slot = inner.slot(self.id);
        if slot.wr.timed_out {
            slot.wr.done();
            return Poll::Ready(Err(timed_out()));
        }
        let earlier = deadline != 0 && (slot.filed == 0 || deadline < slot.filed);
        slot.wr.wait(cx, deadline);
        inner.file(self.id);
        if earlier {
            // The driver may be parked with a later timer armed.
            self.driver.queued.set(true);
            if let Some(w) = self.driver.waiting.borrow_mut().take() {
                w.wake();
            }
        }
        Poll::Pending
    }

    /// Forgets a wait whose future was dropped, so its deadline cannot fire.
    fn cancel_wait(&self, read: bool) {
        let mut inner = self.driver.inner.borrow_mut();
        let slot = inner.slot(self.id);
        if read {
            slot.rd.done();
        } else {
            slot.wr.done();
        }
    }

    pub async fn read(&self, dst: &mut [u8], deadline: u64) -> io::Result<usize> {
        self.wait(true, |cx| self.poll_read(cx, dst, deadline))
            .await
    }

    /// Queues all of `src` (waiting for the previous send first).
    pub async fn send_all(&self, src: &[u8], deadline: u64) -> io::Result<()> {
        self.wait(false, |cx| self.poll_write(cx, src, deadline))
            .await
            .map(drop)
    }

    pub async fn flush(&self, deadline: u64) -> io::Result<()> {
        self.wait(false, |cx| self.poll_flush(cx, deadline)).await
    }

    /// Sends a FIN once everything written went out.
    pub async fn shutdown_write(&self, deadline: u64) -> io::Result<()> {
        self.flush(deadline).await?;
        // SAFETY: shutdown on a socket we own.
        if unsafe { libc::shutdown(self.fd(), libc::SHUT_WR) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// True when nothing arrived on an idle connection: neither data nor a
    /// close. Arms a receive if none is armed, so the next check (and the
    /// next read) needs no system call.
    pub fn quiet(&self) -> bool {
        let mut inner = self.driver.inner.borrow_mut();
        let id = self.id;
        let slot = inner.slot(id);
        match slot.recv {
            Recv::Armed { .. } => true,
            Recv::Idle => {
                let e = opcode::Recv::new(types::Fd(slot.fd), std::ptr::null_mut(), 0)
                    .buf_group(BUF_GROUP)
                    .build()
                    .flags(squeue::Flags::BUFFER_SELECT)
                    .user_data(user_data(id, slot.gen, Kind::Recv));
                slot.recv = Recv::Armed { heap: false };
                slot.in_flight += 1;
                inner.push(&e);
                drop(inner);
                self.driver.kick();
                true
            }
            _ => false,
        }
    }
}

/// Clears a wait's waker and deadline when its future is dropped midway.
struct WaitGuard<'a> {
    socket: &'a Socket,
    read: bool,
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        self.socket.cancel_wait(self.read);
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        let mut inner = self.driver.inner.borrow_mut();
        let linger = super::deadline(inner.linger);
        let slot = inner.slot(self.id);
        slot.dropped = true;
        slot.rd.done();
        slot.wr.done();
        if matches!(slot.send, Send::Busy { .. }) {
            slot.linger_until = linger;
            inner.file(self.id);
        }
        inner.settle(self.id);
        drop(inner);
        self.driver.kick();
    }
}

impl futures_lite::AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Socket::poll_read(&self, cx, buf, 0)
    }
}

impl futures_lite::AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Socket::poll_write(&self, cx, buf, 0)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Socket::poll_flush(&self, cx, 0)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Socket::poll_flush(&self, cx, 0)
    }
}

/// A listening socket on the shard's ring, accepting with one multishot accept.
pub struct Listener {
    driver: Rc<Driver>,
    id: u32,
}

impl Listener {
    /// Adopts a bound, listening socket.
    pub fn adopt(driver: Rc<Driver>, fd: RawFd) -> Listener {
        let mut inner = driver.inner.borrow_mut();
        let id = inner.alloc(fd).0;
        inner.slot(id).listener = Some(Box::default());
        drop(inner);
        Listener { driver, id }
    }

    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<Socket>> {
        let mut inner = self.driver.inner.borrow_mut();
        let id = self.id;
        let slot = inner.slot(id);
        let (fd, gen) = (slot.fd, slot.gen);
        let acc = slot.listener.as_mut().expect("listener slot");
        if let Some(conn) = acc.ready.pop_front() {
            drop(inner);
            return Poll::Ready(Ok(Socket::adopt(self.driver.clone(), conn)));
        }
        if let Some(e) = acc.error.take() {
            return Poll::Ready(Err(io::Error::from_raw_os_error(e)));
        }
        let arm = !acc.armed;
        if arm {
            acc.armed = true;
            slot.in_flight += 1;
        }
        slot.rd.wait(cx, 0);
        if arm {
            let e = opcode::AcceptMulti::new(types::Fd(fd))
                .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
                .build()
                .user_data(user_data(id, gen, Kind::Accept));
            inner.push(&e);
            drop(inner);
            self.driver.kick();
        }
        Poll::Pending
    }

    pub async fn accept(&self) -> io::Result<Socket> {
        poll_fn(|cx| self.poll_accept(cx)).await
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let mut inner = self.driver.inner.borrow_mut();
        let slot = inner.slot(self.id);
        slot.dropped = true;
        slot.rd.done();
        inner.settle(self.id);
        drop(inner);
        self.driver.kick();
    }
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    let sock = socket2::SockAddr::from(addr);
    // SAFETY: SockAddr holds a valid sockaddr_storage of `len` bytes.
    let storage = unsafe { *(sock.as_ptr() as *const libc::sockaddr_storage) };
    (storage, sock.len())
}

fn peer_addr(fd: RawFd) -> io::Result<SocketAddr> {
    // SAFETY: getpeername writes at most `len` bytes into the storage.
    let (_, addr) = unsafe {
        socket2::SockAddr::try_init(|storage, len| {
            if libc::getpeername(fd, storage.cast(), len) == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        })
    }?;
    addr.as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::Other, "not an IP socket"))
}
