//! Active health checks: shard 0 probes every target of every upstream with
//! `health_checks.path`, and every shard's balancer skips a target the
//! probes call down.
//!
//! **Probe**: `GET <path>` with the target's `Host`, headers and
//! credentials, over a fresh connection (plain or TLS, the proxy's own
//! connect code) with `Connection: close`, bounded by `timeout`. A status
//! of 200–399 passes. `threshold` consecutive failures mark the target
//! down; one pass brings it back.
//!
//! **Schedule**: one long-lived task on shard 0 walks the shard's current
//! snapshot (so a configuration change is picked up within
//! [`RESYNC`]), starts a probe per target every `interval` (never two at
//! once for a target) and cancels the probes of targets that left the
//! configuration; a target that leaves while down is announced up, so no
//! verdict outlives its check.
//!
//! **Sharing**: a verdict that changes is applied on shard 0 at once and
//! sent to every other shard over its own glommio `shared_channel`
//! (`try_send` only: one sender, several probe tasks, never an await on
//! it). Each other shard reads its channel with a plain `recv().await` in a
//! dedicated task — never raced against a timer (glommio 0.9 leaks the
//! waker of a dropped shared-channel `recv`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write as _;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::channels::shared_channel::{self, ConnectedSender, SharedReceiver, SharedSender};
use glommio::task::JoinHandle;

use crate::config::snapshot::{ActiveCheck, Target};
use crate::upstream::pool::UPSTREAM_HEAD_MAX;

/// How often the scheduler looks at the configuration when no probe is due.
pub const RESYNC: Duration = Duration::from_millis(250);
/// Verdict changes in flight per shard before the sender yields.
const CHANNEL: usize = 1024;

/// A verdict change: the target with `key` is up (or down).
#[derive(Debug, Clone, Copy)]
pub struct Verdict {
    pub key: u64,
    pub up: bool,
}

/// A shard's end of the verdict channels: shard 0 sends, the others listen.
pub enum Link {
    Checker(Vec<SharedSender<Verdict>>),
    Listener(SharedReceiver<Verdict>),
}

/// One link per shard, in shard order (shard 0 is the checker).
pub fn links(shards: usize) -> Vec<Link> {
    let mut senders = Vec::new();
    let mut out = Vec::with_capacity(shards);
    out.push(Link::Checker(Vec::new()));
    for _ in 1..shards {
        let (tx, rx) = shared_channel::new_bounded(CHANNEL);
        senders.push(tx);
        out.push(Link::Listener(rx));
    }
    out[0] = Link::Checker(senders);
    out
}

/// What the checks need of their shard: its current configuration and its
/// balancer (where verdicts land). The shard implements it.
pub trait Host {
    fn view(&self) -> Rc<std::sync::Arc<crate::config::Snapshot>>;
    fn balancer(&self) -> &crate::upstream::Balancer;
}

/// Starts the shard's side: the checker on shard 0, a listener elsewhere.
/// Cancel the handle at shutdown (the checker's senders then close, which
/// ends the listeners).
pub fn start(shard: Rc<dyn Host>, link: Link) -> JoinHandle<()> {
    match link {
        Link::Checker(senders) => glommio::spawn_local(async move {
            let mut peers = Vec::with_capacity(senders.len());
            for s in senders {
                peers.push(s.connect().await);
            }
            let checker = Rc::new(Checker {
                shard,
                peers,
                checks: RefCell::new(HashMap::new()),
            });
            checker.run().await;
        })
        .detach(),
        Link::Listener(rx) => glommio::spawn_local(async move {
            let rx = rx.connect().await;
            while let Some(v) = rx.recv().await {
                shard.balancer().set_active(v.key, v.up);
            }
        })
        .detach(),
    }
}

/// One checked target.
struct Check {
    target: Target,
    settings: ActiveCheck,
    next_due: Instant,
    failures: u32,
    down: bool,
    probe: Option<JoinHandle<()>>,
    /// Configuration generation that last listed it.
    seen: u64,
}

struct Checker {
    shard: Rc<dyn Host>,
    peers: Vec<ConnectedSender<Verdict>>,
    checks: RefCell<HashMap<u64, Check>>,
}

impl Drop for Checker {
    fn drop(&mut self) {
        for c in self.checks.get_mut().values_mut() {
            if let Some(p) = c.probe.take() {
                p.cancel();
            }
        }
    }
}

impl Checker {
    async fn run(self: Rc<Self>) {
        let mut generation = None;
        loop {
            let view = self.shard.view();
            if generation != Some(view.generation) {
                generation = Some(view.generation);
                self.sync(&view).await;
            }
            let now = Instant::now();
            let mut next = now + RESYNC;
            let due: Vec<u64> = {
                let mut checks = self.checks.borrow_mut();
                let mut due = Vec::new();
                for (&key, c) in checks.iter_mut() {
                    if c.probe.is_none() && c.next_due <= now {
                        c.next_due = now + c.settings.interval;
                        due.push(key);
                    }
                    if c.probe.is_none() {
                        next = next.min(c.next_due);
                    }
                }
                due
            };
            for key in due {
                self.start_probe(key);
            }
            glommio::timer::sleep(next.saturating_duration_since(Instant::now())).await;
        }
    }

    /// Adds the snapshot's checked targets, drops the others.
    async fn sync(&self, view: &crate::config::Snapshot) {
        let now = Instant::now();
        {
            let mut checks = self.checks.borrow_mut();
            for gw in &view.gateways {
                for up in &gw.upstreams {
                    let Some(settings) = &up.active_check else {
                        continue;
                    };
                    for t in up.targets.iter().filter(|t| t.addr.is_some()) {
                        let c = checks.entry(t.key).or_insert_with(|| Check {
                            target: t.clone(),
                            settings: settings.clone(),
                            next_due: now,
                            failures: 0,
                            down: false,
                            probe: None,
                            seen: view.generation,
                        });
                        c.seen = view.generation;
                        c.target = t.clone();
                        if c.settings != *settings {
                            c.next_due = c.next_due.min(now + settings.interval);
                            c.settings = settings.clone();
                        }
                    }
                }
            }
        }
        let gone: Vec<(u64, bool)> = {
            let mut checks = self.checks.borrow_mut();
            let keys: Vec<u64> = checks
                .iter()
                .filter(|(_, c)| c.seen != view.generation)
                .map(|(&k, _)| k)
                .collect();
            keys.into_iter()
                .filter_map(|k| checks.remove(&k).map(|c| (k, c)))
                .map(|(k, mut c)| {
                    if let Some(p) = c.probe.take() {
                        p.cancel();
                    }
                    (k, c.down)
                })
                .collect()
        };
        for (key, was_down) in gone {
            if was_down {
                self.publish(key, true).await;
            }
        }
    }

    fn start_probe(self: &Rc<Self>, key: u64) {
        let (target, settings) = {
            let checks = self.checks.borrow();
            let Some(c) = checks.get(&key) else { return };
            (c.target.clone(), c.settings.clone())
        };
        let me = self.clone();
        let task = glommio::spawn_local(async move {
            let result = probe(&target, &settings).await;
            me.report(key, result).await;
        })
        .detach();
        if let Some(c) = self.checks.borrow_mut().get_mut(&key) {
            c.probe = Some(task);
        }
    }

    /// Counts a probe's result; publishes a verdict that changed.
    async fn report(&self, key: u64, result: Result<u16, String>) {
        let change = {
            let mut checks = self.checks.borrow_mut();
            let Some(c) = checks.get_mut(&key) else {
                return;
            };
            c.probe = None; // this task is ending: nothing to cancel
            let t = &c.target;
            match result {
                Ok(_) if c.down => {
                    log::warn!(
                        "target {}:{} passed its health check: back up",
                        t.host,
                        t.port
                    );
                    c.failures = 0;
                    c.down = false;
                    Some(true)
                }
                Ok(_) => {
                    c.failures = 0;
                    None
                }
                Err(why) => {
                    c.failures += 1;
                    log::debug!("target {}:{} health check failed: {why}", t.host, t.port);
                    if !c.down && c.failures >= c.settings.threshold {
                        log::warn!(
                            "target {}:{} marked down: {} health check(s) failed ({why})",
                            t.host,
                            t.port,
                            c.failures
                        );
                        c.down = true;
                        Some(false)
                    } else {
                        None
                    }
                }
            }
        };
        if let Some(up) = change {
            self.publish(key, up).await;
        }
    }

    /// Applies a verdict here and sends it to every other shard.
    async fn publish(&self, key: u64, up: bool) {
        self.shard.balancer().set_active(key, up);
        for (i, peer) in self.peers.iter().enumerate() {
            let mut v = Verdict { key, up };
            loop {
                match peer.try_send(v) {
                    Ok(()) => break,
                    Err(glommio::GlommioError::WouldBlock(glommio::ResourceType::Channel(
                        back,
                    ))) => {
                        v = back;
                        futures_lite::future::yield_now().await;
                    }
                    Err(e) => {
                        log::debug!("health verdict to shard {}: {e}", i + 1);
                        break;
                    }
                }
            }
        }
    }
}

/// One probe: `Ok(status)` when it passed, `Err(why)` otherwise.
pub async fn probe(target: &Target, check: &ActiveCheck) -> Result<u16, String> {
    match crate::runtime::conn::timed(check.timeout, probe_once(target, check)).await {
        Some(r) => r,
        None => Err(format!("no answer within {:?}", check.timeout)),
    }
}

async fn probe_once(target: &Target, check: &ActiveCheck) -> Result<u16, String> {
    let addr = target.addr.ok_or("address not resolved")?;
    if target.tls && target.tls_client.is_none() {
        return Err("TLS is not usable for this target".into());
    }
    let mut conn = crate::upstream::connect(addr, check.timeout, target.tls_client.as_ref())
        .await
        .map_err(|e| format!("{e:?}"))?;
    let mut req = Vec::with_capacity(256 + target.inject.len());
    let _ = write!(
        req,
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ringgate-health-check\r\nAccept: */*\r\n",
        check.path, target.authority
    );
    req.extend_from_slice(&target.inject);
    req.extend_from_slice(b"Connection: close\r\n\r\n");
    if !crate::runtime::conn::send_within(check.timeout, &mut conn.stream, &req).await {
        return Err("could not send the request".into());
    }
    let limits = crate::http::Limits {
        max_head_bytes: UPSTREAM_HEAD_MAX,
        max_headers: crate::http::MAX_HEADERS,
    };
    loop {
        if !conn.buf.is_empty() {
            match crate::http::parse_response(conn.buf.filled(), &limits, false) {
                Ok(Some(h)) if h.is_interim() => conn.buf.consume(h.head_len),
                Ok(Some(h)) if (200..400).contains(&h.status) => return Ok(h.status),
                Ok(Some(h)) => return Err(format!("status {}", h.status)),
                Ok(None) if !conn.buf.is_full() => {}
                _ => return Err("invalid response".into()),
            }
        }
        match conn.buf.fill_from(&mut conn.stream).await {
            Ok(0) => return Err("closed before a response".into()),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}
