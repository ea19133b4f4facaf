//! The shard threads: each starts its executor pinned to a CPU, adopts its
//! listening socket on the data path `--io` chose, answers the control
//! thread's messages, accepts connections and hands each to the proxy, and
//! drains on shutdown. The state they share lives in [`Shard`].

use std::os::fd::{FromRawFd, RawFd};
use std::rc::Rc;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use glommio::net::TcpListener;
use glommio::sync::Gate;
use glommio::Placement;

use crate::config::Snapshot;
use crate::runtime::bell::Bell;
use crate::runtime::conn::Conn;
use crate::runtime::control::{self, ControlEnds, FromShard, ShardEnds, ToShard};
use crate::runtime::shard::Shard;
use crate::runtime::Settings;

/// Whether the shards' sockets will run on their own rings.
fn ring_path(io: crate::runtime::settings::IoPath) -> bool {
    use crate::runtime::settings::IoPath;
    match io {
        IoPath::Uring => true,
        IoPath::Glommio => false,
        IoPath::Auto => crate::runtime::uring::probe().is_ok(),
    }
}

/// The shard's listener, on the data path `--io` chose.
enum Accept {
    Ring(crate::runtime::uring::Listener),
    Glommio(TcpListener),
}

impl Accept {
    /// Adopts the shard's listening socket `fd`, starting the shard's ring
    /// first unless the glommio path was chosen or is all the kernel offers.
    fn new(settings: &Settings, index: usize, fd: RawFd) -> Result<Accept, String> {
        use crate::runtime::settings::IoPath;
        if settings.io != IoPath::Glommio {
            match crate::runtime::uring::Driver::start(settings.limits.send_timeout, settings.spin)
            {
                Ok(driver) => {
                    if index == 0 {
                        log::info!("data path: each shard's own io_uring");
                    }
                    return Ok(Accept::Ring(crate::runtime::uring::Listener::adopt(
                        driver, fd,
                    )));
                }
                Err(e) if settings.io == IoPath::Uring => {
                    return Err(format!("--io uring: {e}"));
                }
                Err(e) => {
                    if index == 0 {
                        log::warn!("{e}; the proxy's sockets use glommio's path");
                    }
                }
            }
        }
        // SAFETY: `fd` is a bound, listening TCP socket made for this shard alone.
        Ok(Accept::Glommio(unsafe { TcpListener::from_raw_fd(fd) }))
    }

    async fn accept(&self) -> std::io::Result<Conn> {
        match self {
            Accept::Ring(l) => l.accept().await.map(Conn::Ring),
            Accept::Glommio(l) => l
                .accept()
                .await
                .map(Conn::Glommio)
                .map_err(std::io::Error::from),
        }
    }
}

/// Starts one shard thread per socket; returns the control ends and threads
/// once every executor is up, or the first start-up error.
pub fn start_all(
    settings: &Arc<Settings>,
    sockets: Vec<RawFd>,
    snapshot: Arc<Snapshot>,
    access_log: Option<SyncSender<Vec<u8>>>,
    bells: Vec<Bell>,
) -> Result<(Vec<ControlEnds>, Vec<JoinHandle<()>>), String> {
    let cpus: Vec<usize> = core_affinity::get_core_ids()
        .map(|ids| ids.into_iter().map(|c| c.id).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| vec![0]);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let mut ends = Vec::new();
    let mut threads = Vec::new();
    let mesh = crate::plugin::counters::mesh(sockets.len());
    let health = crate::upstream::health::links(sockets.len());
    for (((index, fd), health), bell) in sockets.into_iter().enumerate().zip(health).zip(bells) {
        let mesh = mesh.clone();
        let (control_ends, shard_ends) = control::channels();
        ends.push(control_ends);
        let cpu = cpus[index % cpus.len()];
        let settings = settings.clone();
        let snapshot = snapshot.clone();
        let access_log = access_log.clone();
        let ready = ready_tx.clone();
        let thread = std::thread::Builder::new()
            .name(format!("shard-{index}"))
            .spawn(move || {
                // On the ring path the driver spins instead, yielding the CPU
                // to whatever else wants it; glommio's spin would not.
                let spin = if ring_path(settings.io) {
                    Duration::ZERO
                } else {
                    settings.spin
                };
                let ex = crate::runtime::executor::make(
                    &format!("shard-{index}"),
                    Placement::Fixed(cpu),
                    spin,
                );
                match ex {
                    Err(e) => {
                        let _ = ready.send(Err(format!(
                            "shard {index}: cannot start an executor on CPU {cpu}: {e}"
                        )));
                    }
                    Ok(ex) => {
                        let _ = ready.send(Ok(()));
                        ex.run(run(
                            bell, index, cpu, fd, shard_ends, settings, snapshot, access_log, mesh,
                            health,
                        ));
                    }
                }
            })
            .map_err(|e| format!("cannot start shard thread {index}: {e}"))?;
        threads.push(thread);
    }
    drop(ready_tx);
    for _ in 0..threads.len() {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err("a shard thread died while starting".into()),
        }
    }
    Ok((ends, threads))
}

async fn run(
    bell: Bell,
    index: usize,
    cpu: usize,
    fd: RawFd,
    ends: ShardEnds,
    settings: Arc<Settings>,
    snapshot: Arc<Snapshot>,
    access_log: Option<SyncSender<Vec<u8>>>,
    mesh: Option<crate::plugin::counters::Mesh>,
    health: crate::upstream::health::Link,
) {
    let listener = match Accept::new(&settings, index, fd) {
        Ok(l) => l,
        Err(e) => {
            log::error!("shard {index}: {e}");
            std::process::exit(2);
        }
    };
    bell.listen();
    let shard = Rc::new(Shard::new(index, settings.clone(), snapshot, access_log));
    log::debug!("shard {index} on CPU {cpu}: accepting");

    // Every shard joins before any accepts, so an owner is always there to ask.
    let mut counters = None;
    if let Some(m) = mesh {
        if let Some(receivers) = shard.counters.join(m).await {
            counters = Some(glommio::spawn_local(
                shard.counters.clone().serve(receivers),
            ));
        }
    }
    let rx = ends.rx.connect().await;
    let tx = ends.tx.connect().await;
    let control = {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            while let Some(msg) = rx.recv().await {
                match msg {
                    ToShard::Apply(snapshot) => {
                        let generation = snapshot.generation;
                        shard.swap(snapshot);
                        let _ = tx
                            .send(FromShard::Applied {
                                shard: index,
                                generation,
                            })
                            .await;
                    }
                    ToShard::Stats => {
                        let stats = shard.stats(cpu);
                        let _ = tx.send(FromShard::Stats(Box::new(stats))).await;
                    }
                    ToShard::Shutdown => break,
                }
            }
            shard.begin_draining();
            tx
        })
    };
    let reaper = shard.pool.start_reaper();
    let health = crate::upstream::health::start(shard.clone(), health);
    let log_flusher = shard.access_log.start_flusher();

    let gate = Gate::new();
    let max = settings.limits.max_connections;
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            shard.drained().await;
            None
        })
        .await;
        let stream = match accepted {
            None => break,
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                // EMFILE and friends: back off a little instead of spinning.
                log::warn!("shard {index}: accept failed: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if shard.open_connections.get() >= max {
            shard
                .metrics
                .connections_refused
                .set(shard.metrics.connections_refused.get() + 1);
            drop(stream); // refused fast: the client sees a close, not a queue
            continue;
        }
        shard.open_connections.set(shard.open_connections.get() + 1);
        let shard = shard.clone();
        let fut = async move {
            crate::proxy::serve_connection(&shard, stream).await;
            shard.open_connections.set(shard.open_connections.get() - 1);
        };
        let spawned = gate.spawn(fut);
        if let Ok(task) = spawned {
            task.detach();
        }
    }
    drop(listener);
    let in_flight = shard.open_connections.get();
    log::info!("shard {index}: draining {in_flight} connection(s)");
    let drained = futures_lite::future::or(async { gate.close().await.is_ok() }, async {
        glommio::timer::sleep(settings.limits.drain_timeout).await;
        false
    })
    .await;
    reaper.cancel();
    health.cancel();
    if let Some(flusher) = log_flusher {
        flusher.cancel();
    }
    shard.access_log.flush();
    shard.counters.leave();
    if let Some(c) = counters {
        c.detach();
    }
    let tx = control.await;
    let _ = tx
        .send(FromShard::Stopped {
            shard: index,
            drained,
        })
        .await;
}
