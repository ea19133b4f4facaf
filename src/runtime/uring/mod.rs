//! A private io_uring per shard, driven from a glommio task.
//!
//! glommio stays the executor (task queues, timers, cross-shard channels,
//! files); the sockets of the request path (the proxy listener, client
//! connections, upstream connections) run on a ring of our own, set up the
//! way a single-threaded server wants it:
//!
//! - `SINGLE_ISSUER | DEFER_TASKRUN | TASKRUN_FLAG`: completions raised by
//!   the network stack on another CPU are queued as deferred work, run only
//!   when the shard enters the ring with `GETEVENTS`, so they never interrupt
//!   the shard. `IORING_SQ_TASKRUN` in shared memory says when such work is
//!   waiting, so the driver enters the kernel only when it has something to
//!   submit or to collect.
//! - One `io_uring_enter` per driver turn submits every operation the tasks
//!   queued since the last turn and collects every completion.
//! - Reads use a ring of provided buffers ([`bufring`]): an idle connection
//!   has a receive armed but holds no buffer; a buffer is taken when data
//!   arrives and given back as soon as the reader has copied it.
//! - Every operation's memory belongs to the driver's slot for its socket,
//!   never to a future: a future dropped by a timeout or a race leaves the
//!   operation to finish into the slot (a read's data waits there for the
//!   next read), and a socket is closed only after the kernel gave back every
//!   operation on it (cancelled first), so the FIN is sent.
//! - Deadlines live in one per-shard wheel ([`wheel`]), checked once per
//!   turn; a parked driver arms a single ring timeout for the earliest one.
//!
//! Parking goes through glommio: an eventfd registered on the ring is
//! signalled by the kernel when deferred work is queued, and the driver
//! awaits it with an ordinary glommio file read. The eventfd is switched
//! off while the driver is busy (`IORING_CQ_EVENTFD_DISABLED`), so a loaded
//! shard pays for it only when it runs out of work.
//!
//! The driver task never spins on its own: after a turn it waits to be
//! woken by a task that queued an operation or by the eventfd, so glommio's
//! own queues, timers and rings keep their turn.

mod bufring;
pub mod socket;
mod wheel;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use bufring::BufRing;
pub use socket::{Listener, Socket};
use wheel::Wheel;

/// Submission queue entries; the completion queue is [`CQ_FACTOR`] times this.
const SQ_ENTRIES: u32 = 1024;
const CQ_FACTOR: u32 = 8;
/// Provided buffers for receives: count and size.
const BUFS: u16 = 256;
const BUF_SIZE: usize = 16 << 10;
const BUF_GROUP: u16 = 0;
/// `IORING_ENTER_GETEVENTS`: runs deferred work and collects completions.
const ENTER_GETEVENTS: u32 = 1;
/// Send buffers kept for reuse, and the largest capacity kept.
const SPARE_SENDS: usize = 256;
const SPARE_SEND_MAX: usize = 64 << 10;

/// What a completion belongs to: the low byte of `user_data`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum Kind {
    Recv = 1,
    Send = 2,
    Connect = 3,
    Accept = 4,
    /// Cancels, closes: nothing waits for them.
    Ignore = 5,
    /// The ring timeout armed for the wheel's earliest deadline.
    Timer = 6,
}

fn user_data(slot: u32, gen: u32, kind: Kind) -> u64 {
    (u64::from(slot) << 32) | (u64::from(gen & 0xff_ffff) << 8) | kind as u64
}

fn split(ud: u64) -> (u32, u32, u8) {
    ((ud >> 32) as u32, ((ud >> 8) & 0xff_ffff) as u32, ud as u8)
}

/// Milliseconds on the monotonic clock (the clock ring timeouts use).
pub(crate) fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass and nothing else.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// A deadline `d` from now, in [`now_ms`] ticks (rounded up).
pub(crate) fn deadline(d: Duration) -> u64 {
    now_ms() + d.as_millis() as u64 + 1
}

/// One side (read or write) of a socket: who waits, until when.
#[derive(Default)]
struct Waiter {
    waker: Option<Waker>,
    /// [`now_ms`] tick; 0: no deadline.
    deadline: u64,
    timed_out: bool,
}

impl Waiter {
    fn wait(&mut self, cx: &Context<'_>, deadline: u64) {
        match &mut self.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            w => *w = Some(cx.waker().clone()),
        }
        self.deadline = deadline;
    }

    fn done(&mut self) {
        self.waker = None;
        self.deadline = 0;
        self.timed_out = false;
    }

    /// Wakes the waiter; its deadline no longer matters (it polls again).
    fn wake(&mut self, out: &mut Vec<Waker>) {
        self.deadline = 0;
        if let Some(w) = self.waker.take() {
            out.push(w);
        }
    }
}

/// The receive side of a socket.
enum Recv {
    Idle,
    /// A receive is in the kernel (`heap`: into the slot's own buffer,
    /// after the provided buffers ran out).
    Armed {
        heap: bool,
    },
    /// Data not yet read: a provided buffer (or the slot's own), from `off`.
    Ready {
        bid: Option<u16>,
        off: u32,
        len: u32,
    },
    Eof,
    Failed(i32),
}

/// The send side of a socket.
enum Send {
    Idle,
    /// `out[off..]` is being sent.
    Busy {
        off: usize,
    },
    Connecting,
    Failed(i32),
}

struct Slot {
    gen: u32,
    fd: RawFd,
    recv: Recv,
    /// The slot's own receive buffer, used only when no provided buffer was free.
    heap: Vec<u8>,
    rd: Waiter,
    send: Send,
    out: Vec<u8>,
    wr: Waiter,
    /// Operations the kernel holds (receive, send, connect, accept).
    in_flight: u8,
    /// The handle is gone: cancel, then close once `in_flight` is 0.
    dropped: bool,
    /// Past this tick a dropped socket's pending send is abandoned.
    linger_until: u64,
    /// The earliest tick this slot is filed under in the wheel (0: none).
    filed: u64,
    /// Connect address, alive until the connect completes.
    addr: Option<Box<(libc::sockaddr_storage, libc::socklen_t)>>,
    listener: Option<Box<Accepts>>,
}

/// A listener's accepted connections not yet taken.
#[derive(Default)]
struct Accepts {
    ready: std::collections::VecDeque<RawFd>,
    armed: bool,
    error: Option<i32>,
}

impl Slot {
    fn new(gen: u32, fd: RawFd) -> Slot {
        Slot {
            gen,
            fd,
            recv: Recv::Idle,
            heap: Vec::new(),
            rd: Waiter::default(),
            send: Send::Idle,
            out: Vec::new(),
            wr: Waiter::default(),
            in_flight: 0,
            dropped: false,
            linger_until: 0,
            filed: 0,
            addr: None,
            listener: None,
        }
    }

    /// The earliest deadline someone waits on (0: none).
    fn next_deadline(&self) -> u64 {
        let mut d = 0;
        for x in [self.rd.deadline, self.wr.deadline, self.linger_until] {
            if x != 0 && (d == 0 || x < d) {
                d = x;
            }
        }
        d
    }
}

/// Counters for `/metrics` and the benchmark notes.
#[derive(Default, Clone, Copy, Debug)]
pub struct Stats {
    pub enters: u64,
    pub completions: u64,
    pub parks: u64,
    pub no_buffers: u64,
}

struct Inner {
    ring: IoUring,
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    next_gen: u32,
    bufs: BufRing,
    wheel: Wheel,
    spare: Vec<Vec<u8>>,
    wake: Vec<Waker>,
    /// The ring timeout in flight, at this tick (0: none).
    timer_at: u64,
    timer_spec: Box<types::Timespec>,
    /// How long a dropped socket may finish its last send.
    linger: Duration,
    stats: Stats,
}

/// The per-shard driver. Reached through [`current`] by the sockets.
pub struct Driver {
    inner: RefCell<Inner>,
    /// The driver task's waker, while it waits for work.
    waiting: RefCell<Option<Waker>>,
    /// Operations were queued since the last turn.
    queued: Cell<bool>,
    eventfd: OwnedFd,
    /// How long an idle driver watches for work before parking.
    spin: Duration,
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<Driver>>> = const { RefCell::new(None) };
}

/// The driver of this thread's shard, when the shard runs on its own ring.
pub fn current() -> Option<Rc<Driver>> {
    CURRENT.with(|c| c.borrow().clone())
}

/// What the kernel offers, for `ringgate check` and the choice of data path.
pub fn probe() -> Result<(), String> {
    Driver::build(Duration::from_secs(1)).map(drop)
}

impl Driver {
    fn build(linger: Duration) -> Result<Driver, String> {
        let mut ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_taskrun_flag()
            .setup_cqsize(SQ_ENTRIES * CQ_FACTOR)
            .build(SQ_ENTRIES)
            .map_err(|e| {
                format!(
                    "io_uring with SINGLE_ISSUER|DEFER_TASKRUN (Linux 6.1+) is not available: {e}"
                )
            })?;
        if !ring.params().is_feature_nodrop() {
            return Err("io_uring lacks IORING_FEAT_NODROP (Linux 5.5+)".into());
        }
        let bufs = BufRing::new(&ring, BUFS, BUF_SIZE, BUF_GROUP)
            .map_err(|e| format!("io_uring provided-buffer rings (Linux 5.19+): {e}"))?;
        // SAFETY: eventfd takes plain integers; the fd is checked below.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if efd < 0 {
            return Err(format!("eventfd: {}", io::Error::last_os_error()));
        }
        // SAFETY: a fresh descriptor nothing else owns.
        let eventfd = unsafe { OwnedFd::from_raw_fd(efd) };
        ring.submitter()
            .register_eventfd(eventfd.as_raw_fd())
            .map_err(|e| format!("io_uring eventfd registration: {e}"))?;
        ring.completion().disable_eventfd();
        Ok(Driver {
            inner: RefCell::new(Inner {
                ring,
                slots: Vec::new(),
                free: Vec::new(),
                next_gen: 1,
                bufs,
                wheel: Wheel::default(),
                spare: Vec::new(),
                wake: Vec::new(),
                timer_at: 0,
                timer_spec: Box::new(types::Timespec::new()),
                linger,
                stats: Stats::default(),
            }),
            waiting: RefCell::new(None),
            queued: Cell::new(false),
            eventfd,
            spin: Duration::ZERO,
        })
    }

    /// Makes this thread's driver and starts its task on the current glommio
    /// executor. Must run on the shard's thread, inside its executor.
    /// `spin`: how long an idle driver watches for work before it parks.
    pub fn start(linger: Duration, spin: Duration) -> Result<Rc<Driver>, String> {
        let mut driver = Driver::build(linger)?;
        driver.spin = spin;
        let driver = Rc::new(driver);
        CURRENT.with(|c| *c.borrow_mut() = Some(driver.clone()));
        let task = driver.clone();
        glommio::spawn_local(async move { task.run().await }).detach();
        Ok(driver)
    }

    pub fn stats(&self) -> Stats {
        self.inner.borrow().stats
    }

    /// Wakes the driver task if it waits: an operation was queued.
    fn kick(&self) {
        self.queued.set(true);
        if let Some(w) = self.waiting.borrow_mut().take() {
            w.wake();
        }
    }

    async fn run(self: Rc<Self>) {
        // SAFETY: the eventfd outlives the file: `self` holds it and this task
        // holds `self`. The file is never closed through glommio (forgotten below).
        let efd = Rc::new(unsafe {
            <glommio::io::BufferedFile as FromRawFd>::from_raw_fd(self.eventfd.as_raw_fd())
        });
        let mut bell: Option<Pin<Box<dyn Future<Output = ()>>>> = None;
        loop {
            self.queued.set(false);
            let busy = self.turn();
            if busy || self.queued.get() {
                // Let the woken tasks run, then take what they queued.
                futures_lite::future::yield_now().await;
                continue;
            }
            // Nothing to do. Watch the task-run flag for a moment first: an
            // answer that is microseconds away is then taken without the
            // eventfd's round through glommio's ring.
            if self.spin_for_work().await {
                continue;
            }
            // Still nothing: let the kernel ring the eventfd when work arrives.
            if self.prepare_park() {
                continue;
            }
            if bell.is_none() {
                let f = efd.clone();
                bell = Some(Box::pin(async move {
                    let _ = f.read_at(0, 8).await;
                }));
                self.inner.borrow_mut().stats.parks += 1;
            }
            let rang = Wait {
                driver: &self,
                bell: bell.as_mut(),
            }
            .await;
            if rang {
                bell = None;
            }
            self.inner.borrow_mut().ring.completion().disable_eventfd();
        }
    }

    /// Yields to the shard's other tasks, watching the task-run flag and the
    /// queue, for up to `spin`. True when work arrived.
    async fn spin_for_work(&self) -> bool {
        if self.spin.is_zero() {
            return false;
        }
        let until = std::time::Instant::now() + self.spin;
        loop {
            futures_lite::future::yield_now().await;
            // Spin politely: a client, an upstream or another shard woken on
            // this CPU runs now instead of waiting for the spin to end (on
            // two shared cores that wait was most of a stream's first-event
            // latency). A lone shard gets the CPU straight back.
            // SAFETY: no arguments, no memory; sched_yield cannot fail.
            unsafe { libc::sched_yield() };
            if self.queued.get() {
                return true;
            }
            let waiting = {
                let mut inner = self.inner.borrow_mut();
                let sq = inner.ring.submission();
                sq.taskrun() || sq.cq_overflow()
            };
            if waiting {
                return true;
            }
            if std::time::Instant::now() >= until {
                return false;
            }
        }
    }

    /// Enables the eventfd, then looks once more for work that raced it, and
    /// arms a ring timeout for the earliest deadline. True: work arrived.
    fn prepare_park(&self) -> bool {
        let mut inner = self.inner.borrow_mut();
        inner.ring.completion().enable_eventfd();
        // The kernel sets IORING_SQ_TASKRUN, then reads the eventfd switch;
        // we write the switch, then read IORING_SQ_TASKRUN. Without a full
        // fence between our store and load (x86 may reorder them), both
        // sides can miss each other and the shard sleeps on queued work.
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        let due = inner.wheel.earliest();
        if due != 0 && (inner.timer_at == 0 || due < inner.timer_at) {
            inner.arm_timer(due);
            drop(inner);
            return true; // submit it on the next turn
        }
        let pending = {
            let mut sq = inner.ring.submission();
            sq.sync();
            sq.taskrun() || !sq.is_empty()
        };
        pending || !inner.ring.completion().is_empty()
    }

    /// One turn: submit what was queued, run deferred work, collect
    /// completions, expire deadlines, then wake whoever they concern. True
    /// when anything completed or expired.
    fn turn(&self) -> bool {
        let (any, mut wake) = {
            let mut guard = self.inner.borrow_mut();
            let inner = &mut *guard;
            let (to_submit, taskrun) = {
                let mut sq = inner.ring.submission();
                sq.sync();
                (sq.len(), sq.taskrun() || sq.cq_overflow())
            };
            if to_submit > 0 || taskrun {
                inner.stats.enters += 1;
                // SAFETY: every queued entry points at memory its slot owns
                // until the completion (see `Slot`).
                let r = unsafe {
                    inner.ring.submitter().enter::<libc::sigset_t>(
                        to_submit as u32,
                        0,
                        ENTER_GETEVENTS,
                        None,
                    )
                };
                if let Err(e) = r {
                    if !matches!(
                        e.raw_os_error(),
                        Some(libc::EINTR | libc::EBUSY | libc::EAGAIN)
                    ) {
                        log::error!("io_uring_enter failed: {e}");
                    }
                }
            }
            let mut any = inner.reap();
            let now = now_ms();
            if inner.wheel.due(now) {
                any |= inner.expire(now);
            }
            (any, std::mem::take(&mut inner.wake))
        };
        for w in wake.drain(..) {
            w.wake();
        }
        self.inner.borrow_mut().wake = wake;
        any
    }
}

/// The driver task's wait: woken by a task that queued an operation, or
/// (when parked) by the eventfd. Resolves to true when the eventfd rang.
struct Wait<'a, 'b> {
    driver: &'a Driver,
    bell: Option<&'b mut Pin<Box<dyn Future<Output = ()>>>>,
}

impl Future for Wait<'_, '_> {
    type Output = bool;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        if let Some(bell) = self.bell.as_mut() {
            if bell.as_mut().poll(cx).is_ready() {
                return Poll::Ready(true);
            }
        }
        if self.driver.queued.get() {
            return Poll::Ready(false);
        }
        *self.driver.waiting.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Inner {
    /// Queues an entry, making room by submitting when the queue is full.
    fn push(&mut self, entry: &squeue::Entry) {
        loop {
            // SAFETY: callers pass entries whose memory the slot owns.
            let pushed = unsafe { self.ring.submission().push(entry).is_ok() };
            if pushed {
                return;
            }
            self.stats.enters += 1;
            if let Err(e) = self.ring.submit() {
                log::error!("io_uring submit (queue full) failed: {e}");
                return;
            }
        }
    }

    fn arm_timer(&mut self, tick: u64) {
        *self.timer_spec = types::Timespec::new()
            .sec(tick / 1000)
            .nsec(((tick % 1000) * 1_000_000) as u32);
        let e = opcode::Timeout::new(&*self.timer_spec)
            .flags(types::TimeoutFlags::ABS)
            .build()
            .user_data(user_data(0, 0, Kind::Timer));
        self.push(&e);
        self.timer_at = tick;
    }

    fn alloc(&mut self, fd: RawFd) -> (u32, u32) {
        let gen = self.next_gen;
        self.next_gen = (self.next_gen + 1) & 0xff_ffff;
        let slot = Slot::new(gen, fd);
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = Some(slot);
                id
            }
            None => {
                self.slots.push(Some(slot));
                (self.slots.len() - 1) as u32
            }
        };
        (id, gen)
    }

    fn slot(&mut self, id: u32) -> &mut Slot {
        self.slots[id as usize]
            .as_mut()
            .expect("a live socket handle has a slot")
    }

    /// Files `id` in the wheel for its earliest deadline, unless filed earlier.
    fn file(&mut self, id: u32) {
        let slot = self.slots[id as usize].as_mut().expect("live slot");
        let d = slot.next_deadline();
        if d != 0 && (slot.filed == 0 || d < slot.filed) {
            slot.filed = d;
            let gen = slot.gen;
            self.wheel.insert(d, id, gen);
        }
    }

    fn reap(&mut self) -> bool {
        let mut any = false;
        loop {
            let cqe = {
                let mut cq = self.ring.completion();
                match cq.next() {
                    Some(c) => c,
                    None => break,
                }
            };
            any = true;
            self.stats.completions += 1;
            self.complete(cqe.user_data(), cqe.result(), cqe.flags());
        }
        any
    }

    fn complete(&mut self, ud: u64, res: i32, flags: u32) {
        let (id, gen, kind) = split(ud);
        if kind == Kind::Ignore as u8 {
            return;
        }
        if kind == Kind::Timer as u8 {
            self.timer_at = 0;
            return;
        }
        let Some(Some(slot)) = self.slots.get_mut(id as usize) else {
            debug_assert!(false, "completion for a free slot");
            return;
        };
        debug_assert_eq!(slot.gen & 0xff_ffff, gen);
        let more = cqueue::more(flags);
        if !more {
            slot.in_flight -= 1;
        }
        match kind {
            k if k == Kind::Recv as u8 => {
                let heap = matches!(slot.recv, Recv::Armed { heap: true });
                slot.recv = if res > 0 {
                    let bid = if heap {
                        None
                    } else {
                        cqueue::buffer_select(flags)
                    };
                    if !heap && bid.is_none() {
                        Recv::Failed(libc::EIO)
                    } else {
                        Recv::Ready {
                            bid,
                            off: 0,
                            len: res as u32,
                        }
                    }
                } else if res == 0 {
                    Recv::Eof
                } else if res == -libc::ENOBUFS && !slot.dropped {
                    // No provided buffer free: receive into the slot's own.
                    self.stats.no_buffers += 1;
                    Recv::Idle
                } else {
                    Recv::Failed(-res)
                };
                if matches!(slot.recv, Recv::Idle) {
                    slot.heap.resize(BUF_SIZE, 0);
                    let e = opcode::Recv::new(
                        types::Fd(slot.fd),
                        slot.heap.as_mut_ptr(),
                        slot.heap.len() as u32,
                    )
                    .build()
                    .user_data(user_data(id, slot.gen, Kind::Recv));
                    slot.recv = Recv::Armed { heap: true };
                    slot.in_flight += 1;
                    self.push(&e);
                    return;
                }
                if slot.dropped {
                    if let Recv::Ready { bid: Some(b), .. } = slot.recv {
                        self.bufs.give(b);
                    }
                    slot.recv = Recv::Eof;
                } else {
                    slot.rd.wake(&mut self.wake);
                }
            }
            k if k == Kind::Send as u8 => {
                if let Send::Busy { off } = slot.send {
                    if res < 0 {
                        slot.send = Send::Failed(-res);
                    } else {
                        let off = off + res as usize;
                        if off < slot.out.len() && res > 0 {
                            slot.send = Send::Busy { off };
                            let rest = &slot.out[off..];
                            let e = opcode::Send::new(
                                types::Fd(slot.fd),
                                rest.as_ptr(),
                                rest.len() as u32,
                            )
                            .flags(libc::MSG_NOSIGNAL)
                            .build()
                            .user_data(user_data(
                                id,
                                slot.gen,
                                Kind::Send,
                            ));
                            slot.in_flight += 1;
                            self.push(&e);
                            return;
                        }
                        slot.send = if off < slot.out.len() {
                            Send::Failed(libc::EPIPE)
                        } else {
                            Send::Idle
                        };
                        let out = std::mem::take(&mut slot.out);
                        if out.capacity() <= SPARE_SEND_MAX && self.spare.len() < SPARE_SENDS {
                            self.spare.push(out);
                        }
                    }
                }
                let slot = self.slots[id as usize].as_mut().expect("live slot");
                if slot.dropped {
                    slot.linger_until = 0;
                } else {
                    slot.wr.wake(&mut self.wake);
                }
            }
            k if k == Kind::Connect as u8 => {
                slot.addr = None;
                slot.send = if res < 0 {
                    Send::Failed(-res)
                } else {
                    Send::Idle
                };
                slot.wr.wake(&mut self.wake);
            }
            k if k == Kind::Accept as u8 => {
                let dropped = slot.dropped;
                if let Some(acc) = slot.listener.as_mut() {
                    if !more {
                        acc.armed = false;
                    }
                    if res >= 0 {
                        if dropped {
                            // SAFETY: a descriptor the kernel just gave us.
                            unsafe { libc::close(res) };
                        } else {
                            acc.ready.push_back(res);
                        }
                    } else if res != -libc::ECANCELED {
                        acc.error = Some(-res);
                    }
                }
                slot.rd.wake(&mut self.wake);
            }
            _ => {}
        }
        self.settle(id);
    }

    /// Moves a dropped socket towards its close: its last send finishes (or
    /// lingers out), armed operations are cancelled, and the descriptor is
    /// closed once the kernel holds none.
    fn settle(&mut self, id: u32) {
        let slot = self.slots[id as usize].as_mut().expect("live slot");
        if !slot.dropped {
            return;
        }
        let sending = matches!(slot.send, Send::Busy { .. });
        if sending && slot.linger_until != 0 {
            return; // let the answer go out first
        }
        if slot.in_flight > 0 {
            let gen = slot.gen;
            let mut cancels = Vec::new();
            if matches!(slot.recv, Recv::Armed { .. }) {
                cancels.push(Kind::Recv);
            }
            if sending {
                cancels.push(Kind::Send);
            }
            if matches!(slot.send, Send::Connecting) {
                cancels.push(Kind::Connect);
            }
            if slot.listener.as_ref().is_some_and(|a| a.armed) {
                cancels.push(Kind::Accept);
            }
            for k in cancels {
                let e = opcode::AsyncCancel::new(user_data(id, gen, k))
                    .build()
                    .user_data(user_data(id, gen, Kind::Ignore));
                self.push(&e);
            }
            // Marked so the cancels are sent once: the next completion settles again.
            let slot = self.slots[id as usize].as_mut().expect("live slot");
            slot.linger_until = 0;
            if let Recv::Armed { .. } = slot.recv {
                slot.recv = Recv::Eof;
            }
            if let Send::Busy { .. } | Send::Connecting = slot.send {
                slot.send = Send::Failed(libc::ECANCELED);
            }
            if let Some(a) = slot.listener.as_mut() {
                a.armed = false;
            }
            return;
        }
        let slot = self.slots[id as usize].take().expect("live slot");
        if let Recv::Ready { bid: Some(b), .. } = slot.recv {
            self.bufs.give(b);
        }
        if let Some(acc) = slot.listener {
            for fd in acc.ready {
                // SAFETY: accepted descriptors no handle took.
                unsafe { libc::close(fd) };
            }
        }
        let e = opcode::Close::new(types::Fd(slot.fd))
            .build()
            .user_data(user_data(id, slot.gen, Kind::Ignore));
        self.push(&e);
        self.free.push(id);
    }

    /// Wakes waiters whose deadline passed; settles dropped sockets that
    /// lingered out. True when anyone was woken.
    fn expire(&mut self, now: u64) -> bool {
        let mut any = false;
        while let Some((id, gen)) = self.wheel.pop_due(now) {
            let Some(Some(slot)) = self.slots.get_mut(id as usize) else {
                continue;
            };
            if slot.gen != gen {
                continue;
            }
            slot.filed = 0;
            for w in [&mut slot.rd, &mut slot.wr] {
                if w.deadline != 0 && w.deadline <= now {
                    w.timed_out = true;
                    any |= w.waker.is_some();
                    w.wake(&mut self.wake);
                }
            }
            if slot.linger_until != 0 && slot.linger_until <= now {
                slot.linger_until = 0;
                self.settle(id);
                continue;
            }
            // Every deadline left is in the future: filing cannot loop.
            self.file(id);
        }
        any
    }
}
