//! The control plane: the messages between the control thread and the
//! shards, the broadcast that waits for every shard's acknowledgement, and
//! the shutdown that drains them. The control thread itself is started in
//! `app.rs`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use glommio::channels::shared_channel::{
    self, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};
use glommio::sync::Semaphore;

use crate::config::Snapshot;
use crate::metrics::ShardStats;

/// What the control thread tells a shard.
pub enum ToShard {
    /// Serve this configuration from the next request on.
    Apply(Arc<Snapshot>),
    /// Send a copy of your counters.
    Stats,
    /// Stop accepting, drain in-flight requests, then stop.
    Shutdown,
}

/// What a shard answers.
#[derive(Debug)]
pub enum FromShard {
    Applied { shard: usize, generation: u64 },
    Stopped { shard: usize, drained: bool },
    Stats(Box<ShardStats>),
}

/// The shard's ends of its control channels.
pub struct ShardEnds {
    pub rx: SharedReceiver<ToShard>,
    pub tx: SharedSender<FromShard>,
}

/// The control thread's ends of one shard's channels.
pub struct ControlEnds {
    pub tx: SharedSender<ToShard>,
    pub rx: SharedReceiver<FromShard>,
}

/// A pair of channels per shard.
pub fn channels() -> (ControlEnds, ShardEnds) {
    let (to_tx, to_rx) = shared_channel::new_bounded(8);
    let (from_tx, from_rx) = shared_channel::new_bounded(8);
    (
        ControlEnds {
            tx: to_tx,
            rx: from_rx,
        },
        ShardEnds {
            rx: to_rx,
            tx: from_tx,
        },
    )
}

struct Link {
    tx: ConnectedSender<ToShard>,
    rx: Rc<Inbox>,
}

/// A shard's answers, received by one task that only ever awaits a plain
/// `recv` ([`Inbox::pump`]), so waiting for them can be bounded by a timer.
///
/// Why not race `recv` against a timer: glommio 0.9 adds a
/// waker to the channel on every pending poll, never removes it when the
/// future is dropped, and wakes the *oldest* `min(items, wakers)` of them
/// when items arrive — a timed-out wait leaves wakers behind that can take
/// a later waiter's wake-up. (Not reproduced as a stall here; see
/// `a_late_answer_does_not_slow_later_calls`.)
#[derive(Default)]
struct Inbox {
    queue: RefCell<VecDeque<FromShard>>,
    /// The one waiter (calls are serialized by `one_at_a_time`).
    waker: RefCell<Option<Waker>>,
    closed: Cell<bool>,
}

impl Inbox {
    fn pump(rx: ConnectedReceiver<FromShard>) -> Rc<Inbox> {
        let inbox = Rc::new(Inbox::default());
        let me = inbox.clone();
        glommio::spawn_local(async move {
            while let Some(msg) = rx.recv().await {
                me.queue.borrow_mut().push_back(msg);
                if let Some(w) = me.waker.borrow_mut().take() {
                    w.wake();
                }
            }
            me.closed.set(true);
            if let Some(w) = me.waker.borrow_mut().take() {
                w.wake();
            }
        })
        .detach();
        inbox
    }

    /// The next answer, or `None` after `wait` (or when the shard is gone).
    async fn recv_within(&self, wait: Duration) -> Option<FromShard> {
        let next = futures_lite::future::poll_fn(|cx| {
            if let Some(msg) = self.queue.borrow_mut().pop_front() {
                return Poll::Ready(Some(msg));
            }
            if self.closed.get() {
                return Poll::Ready(None);
            }
            *self.waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        });
        crate::runtime::conn::timed(wait, next).await.flatten()
    }
}

/// Broadcasts to every shard and gathers acknowledgements. One broadcast at a
/// time (each sender has one user at a time, as glommio requires).
pub struct ControlPlane {
    links: Vec<Link>,
    one_at_a_time: Semaphore,
    ack_timeout: Duration,
    /// How long the last successful apply took to reach every shard.
    last_apply: Cell<Option<Duration>>,
}

/// Shards that did not acknowledge in time.
#[derive(Debug)]
pub struct Lagging(pub Vec<usize>);

impl std::fmt::Display for Lagging {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "shard(s) {:?} did not acknowledge the change in time",
            self.0
        )
    }
}

impl ControlPlane {
    pub async fn connect(ends: Vec<ControlEnds>, ack_timeout: Duration) -> ControlPlane {
        let mut links = Vec::with_capacity(ends.len());
        for e in ends {
            links.push(Link {
                tx: e.tx.connect().await,
                rx: Inbox::pump(e.rx.connect().await),
            });
        }
        ControlPlane {
            links,
            one_at_a_time: Semaphore::new(1),
            ack_timeout,
            last_apply: Cell::new(None),
        }
    }

    pub fn shards(&self) -> usize {
        self.links.len()
    }

    /// Sends `snapshot` to every shard; returns once every shard serves it.
    pub async fn apply(&self, snapshot: Arc<Snapshot>) -> Result<(), Lagging> {
        let _turn = self
            .one_at_a_time
            .acquire_permit(1)
            .await
            .map_err(|_| Lagging(vec![]))?;
        let generation = snapshot.generation;
        let started = std::time::Instant::now();
        let mut lagging = Vec::new();
        for (i, link) in self.links.iter().enumerate() {
            if link
                .tx
                .send(ToShard::Apply(snapshot.clone()))
                .await
                .is_err()
            {
                lagging.push(i);
            }
        }
        let deadline = std::time::Instant::now() + self.ack_timeout;
        for (i, link) in self.links.iter().enumerate() {
            if lagging.contains(&i) {
                continue;
            }
            // Skip late acknowledgements of earlier generations.
            loop {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                match recv_within(&link.rx, left).await {
                    Some(FromShard::Applied { generation: g, .. }) if g >= generation => break,
                    Some(_) => continue,
                    None => {
                        lagging.push(i);
                        break;
                    }
                }
            }
        }
        if lagging.is_empty() {
            self.last_apply.set(Some(started.elapsed()));
            Ok(())
        } else {
            log::error!("config generation {generation}: shard(s) {lagging:?} did not acknowledge within {:?}", self.ack_timeout);
            Err(Lagging(lagging))
        }
    }

    /// How long the last configuration change took to reach every shard.
    pub fn last_apply(&self) -> Option<Duration> {
        self.last_apply.get()
    }

    /// A copy of every shard's counters, in shard order; a shard that does
    /// not answer within the acknowledgement timeout is left out.
    pub async fn stats(&self) -> Vec<ShardStats> {
        let Ok(_turn) = self.one_at_a_time.acquire_permit(1).await else {
            return Vec::new();
        };
        let mut asked = Vec::with_capacity(self.links.len());
        for link in &self.links {
            asked.push(link.tx.send(ToShard::Stats).await.is_ok());
        }
        let deadline = std::time::Instant::now() + self.ack_timeout;
        let mut all = Vec::with_capacity(self.links.len());
        for (i, link) in self.links.iter().enumerate() {
            if !asked[i] {
                continue;
            }
            loop {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                match recv_within(&link.rx, left).await {
                    Some(FromShard::Stats(s)) => {
                        all.push(*s);
                        break;
                    }
                    Some(_) => continue,
                    None => {
                        log::warn!("shard {i} did not send its counters in time");
                        break;
                    }
                }
            }
        }
        all
    }

    /// Tells every shard to drain and waits (up to `wait`) until all stopped.
    pub async fn shutdown(&self, wait: Duration) {
        let _turn = self.one_at_a_time.acquire_permit(1).await;
        for link in &self.links {
            let _ = link.tx.send(ToShard::Shutdown).await;
        }
        let deadline = std::time::Instant::now() + wait;
        for link in &self.links {
            loop {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                match recv_within(&link.rx, left).await {
                    Some(FromShard::Stopped { shard, drained }) => {
                        if !drained {
                            log::warn!(
                                "shard {shard}: drain deadline passed with requests in flight"
                            );
                        }
                        break;
                    }
                    Some(_) => continue,
                    None => break,
                }
            }
        }
    }
}

async fn recv_within(rx: &Inbox, wait: Duration) -> Option<FromShard> {
    rx.recv_within(wait).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use glommio::Placement;
    use std::time::Instant;

    /// One shard that answers its first `Stats` late (after the control
    /// side gave up) and everything else at once. An `apply` after that
    /// must not wait for its timeout: the late answer's wake-up must not be
    /// lost to the timed-out wait.
    #[test]
    fn a_late_answer_does_not_slow_later_calls() {
        let (control, shard) = channels();
        let shard = std::thread::spawn(move || {
            let ex = crate::runtime::executor::make("shard", Placement::Unbound, Duration::ZERO)
                .unwrap();
            ex.run(async move {
                let rx = shard.rx.connect().await;
                let tx = shard.tx.connect().await;
                let mut first = true;
                while let Some(msg) = rx.recv().await {
                    let answer = match msg {
                        ToShard::Stats => {
                            if std::mem::take(&mut first) {
                                glommio::timer::sleep(Duration::from_millis(600)).await;
                            }
                            FromShard::Stats(Box::default())
                        }
                        ToShard::Apply(s) => FromShard::Applied {
                            shard: 0,
                            generation: s.generation,
                        },
                        ToShard::Shutdown => break,
                    };
                    let _ = tx.send(answer).await;
                }
            });
        });
        let ex =
            crate::runtime::executor::make("control", Placement::Unbound, Duration::ZERO).unwrap();
        ex.run(async move {
            let ack = Duration::from_millis(300);
            let plane = Rc::new(ControlPlane::connect(vec![control], ack).await);
            // Each call in its own task, as each admin connection is.
            let p = plane.clone();
            let late = glommio::spawn_local(async move { p.stats().await.len() }).await;
            assert_eq!(late, 0, "the first answer is late");
            glommio::timer::sleep(Duration::from_millis(500)).await;
            for generation in 1..=3 {
                let p = plane.clone();
                let started = Instant::now();
                let snapshot = Arc::new(
                    crate::config::compile::compile(
                        &crate::config::model::Config::default(),
                        generation,
                    )
                    .unwrap(),
                );
                let applied = glommio::spawn_local(async move { p.apply(snapshot).await }).await;
                let took = started.elapsed();
                assert!(applied.is_ok(), "generation {generation}");
                assert!(took < ack / 2, "generation {generation} took {took:?}");
            }
            plane.shutdown(Duration::from_millis(100)).await;
        });
        shard.join().unwrap();
    }
}
