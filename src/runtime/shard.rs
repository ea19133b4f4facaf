//! One shard's state: its own view of the configuration, its own upstream
//! pools, balancer state and counters. Nothing here is shared with another
//! shard; the only way in is the control channel. The shard's thread (its
//! executor, accept loop and control messages) is in `worker.rs`.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

use glommio::sync::Semaphore;

use crate::access_log::ShardLog;
use crate::config::Snapshot;
use crate::metrics::{ShardMetrics, ShardStats};
use crate::runtime::Settings;
use crate::upstream::{Balancer, Pool};

/// Per-shard state, reached through an `Rc` by every task of the shard.
pub struct Shard {
    pub index: usize,
    pub settings: Arc<Settings>,
    /// The configuration new requests use. A request clones the `Rc` once and
    /// keeps it to the end, so a swap never changes a request midway.
    view: RefCell<Rc<Arc<Snapshot>>>,
    pub pool: Pool,
    pub balancer: Balancer,
    pub metrics: ShardMetrics,
    pub access_log: Rc<ShardLog>,
    pub open_connections: Cell<usize>,
    /// Closed when the shard starts draining: wakes idle connections.
    shutdown: Semaphore,
    draining: Cell<bool>,
    request_ids: RequestIds,
    /// Rate-limit windows this shard owns, and its links to the other owners.
    pub counters: Rc<crate::plugin::Counters>,
    /// Client read buffers of parked connections, for the next request.
    read_bufs: RefCell<Vec<Vec<u8>>>,
}

impl crate::metrics::Sink for Shard {
    fn metrics(&self) -> &ShardMetrics {
        &self.metrics
    }
    fn access_log(&self) -> &ShardLog {
        &self.access_log
    }
    fn metrics_on(&self) -> bool {
        self.settings.metrics
    }
}

impl crate::upstream::health::Host for Shard {
    fn view(&self) -> Rc<Arc<Snapshot>> {
        Shard::view(self)
    }
    fn balancer(&self) -> &Balancer {
        &self.balancer
    }
}

/// Client read buffers kept for reuse per shard.
const SPARE_READ_BUFS: usize = 1024;

impl Shard {
    pub fn new(
        index: usize,
        settings: Arc<Settings>,
        snapshot: Arc<Snapshot>,
        access_log: Option<SyncSender<Vec<u8>>>,
    ) -> Shard {
        let limits = &settings.limits;
        let pool = Pool::new(limits.pool_max_idle, limits.pool_idle_timeout);
        let balancer = Balancer::new(index as u64);
        balancer.adopt(&snapshot);
        Shard {
            index,
            view: RefCell::new(Rc::new(snapshot)),
            pool,
            balancer,
            metrics: ShardMetrics::default(),
            access_log: Rc::new(ShardLog::new(
                access_log,
                settings.access_log_sample,
                index as u64,
            )),
            open_connections: Cell::new(0),
            shutdown: Semaphore::new(0),
            draining: Cell::new(false),
            request_ids: RequestIds::new(index),
            counters: Rc::new(crate::plugin::Counters::new(index).shared(settings.redis.clone())),
            read_bufs: RefCell::new(Vec::new()),
            settings,
        }
    }

    /// A copy of the shard's counters and state, for a scrape (on the
    /// shard, between requests).
    pub fn stats(&self, cpu: usize) -> ShardStats {
        ShardStats {
            shard: self.index,
            cpu,
            generation: self.view().generation,
            open_connections: self.open_connections.get() as u64,
            pool_idle: self.pool.idle_count() as u64,
            health: self.balancer.health(),
            log_lines: self.access_log.written.get(),
            log_dropped: self.access_log.dropped.get(),
            ring: crate::runtime::uring::current().map(|d| d.stats()),
            late_answers: self.counters.late_answers(),
            ..self.metrics.stats()
        }
    }

    /// The configuration a new request should use.
    pub fn view(&self) -> Rc<Arc<Snapshot>> {
        self.view.borrow().clone()
    }

    /// Serves `snapshot` from the next request on, and forgets the
    /// balancer and metrics state of targets and routes it no longer has
    /// (a configuration written again without ids gets new ones: kept, that
    /// state would grow with every write).
    pub(crate) fn swap(&self, snapshot: Arc<Snapshot>) {
        let live = snapshot.live_keys();
        self.balancer.adopt(&snapshot);
        self.balancer.retain(&live);
        self.metrics.retain(&live);
        *self.view.borrow_mut() = Rc::new(snapshot);
    }

    pub fn draining(&self) -> bool {
        self.draining.get()
    }

    pub(crate) fn begin_draining(&self) {
        self.draining.set(true);
        self.shutdown.close();
    }

    /// Resolves when the shard starts draining.
    pub async fn drained(&self) {
        let _ = self.shutdown.acquire(1).await;
    }

    /// A read buffer of `size` bytes, reused when one is free.
    pub fn take_read_buf(&self, size: usize) -> Vec<u8> {
        match self.read_bufs.borrow_mut().pop() {
            Some(b) => b,
            None => vec![0; size],
        }
    }

    /// Keeps a parked connection's read buffer for the next request, unless
    /// it grew past four times the `size` buffers start at.
    pub fn give_read_buf(&self, buf: Vec<u8>, size: usize) {
        let mut spare = self.read_bufs.borrow_mut();
        if spare.len() < SPARE_READ_BUFS && buf.len() <= 4 * size {
            spare.push(buf);
        }
    }

    /// A fresh request id (32 hex digits, unique per process run).
    pub fn request_id(&self) -> [u8; 32] {
        self.request_ids.next()
    }
}

/// Request ids: a random per-run prefix, the shard, and a counter; no
/// syscall and no allocation per request.
struct RequestIds {
    prefix: u64,
    counter: Cell<u64>,
}

impl RequestIds {
    fn new(shard: usize) -> RequestIds {
        let mut seed = [0u8; 8];
        let _ = getrandom::getrandom(&mut seed);
        RequestIds {
            prefix: u64::from_le_bytes(seed) ^ ((shard as u64) << 48),
            counter: Cell::new(0),
        }
    }

    fn next(&self) -> [u8; 32] {
        let n = self.counter.get().wrapping_add(1);
        self.counter.set(n);
        let mut out = [0u8; 32];
        hex16(self.prefix, &mut out[..16]);
        hex16(n, &mut out[16..]);
        out
    }
}

fn hex16(v: u64, out: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in out.iter_mut().enumerate() {
        *b = HEX[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
}
