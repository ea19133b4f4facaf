//! The configuration in Redis, and how a node follows it.
//!
//! Keys: `ringgate:generation` (decimal) and `ringgate:config` (the JSON
//! document), in the URL's database. A write runs [`WRITE`]: it
//! compares the stored generation with the one the writer started from and,
//! only if equal, sets both keys and publishes the new generation — one
//! atomic step, so two nodes writing at once cannot both win.
//!
//! A node follows with two tasks on the control thread ([`follow`]): a
//! subscriber that syncs on every published generation (and right after it
//! (re)subscribes, which is the catch-up after an outage), and a poll of the
//! generation every [`POLL`] as the safety net for a missed message. A sync
//! ([`Cluster::catch_up`]) loads a newer generation and applies it through
//! `ControlPlane::apply`; when Redis holds an *older* generation than the
//! node (it was restarted without its data), the node writes its own state
//! back, so the highest generation any node has wins.
//!
//! While Redis is unreachable the node keeps serving what it has; admin
//! writes answer 503.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use redis_protocol::resp2::types::OwnedFrame;

use super::resp::{int, Client, Conn, Error};
use super::Target;
use crate::admin::{Admin, Reply};
use crate::config::compile;
use crate::config::model::Config;

const GENERATION: &[u8] = b"ringgate:generation";
const DOCUMENT: &[u8] = b"ringgate:config";
/// The safety-net poll of the generation.
pub const POLL: Duration = Duration::from_secs(1);
/// Every configuration call's bound (connect, or command and reply).
const TIMEOUT: Duration = Duration::from_secs(2);

/// KEYS: generation, document. ARGV: expected generation, new generation,
/// document, channel. Returns -1 when written, else the stored generation.
const WRITE: &str = r"
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur ~= tonumber(ARGV[1]) then return cur end
redis.call('SET', KEYS[2], ARGV[3])
redis.call('SET', KEYS[1], ARGV[2])
redis.call('PUBLISH', ARGV[4], ARGV[2])
return -1
";

/// The control thread's view of the shared configuration.
pub struct Cluster {
    client: Client,
    /// Whether the last exchange with Redis worked (logs transitions only).
    reachable: Cell<bool>,
}

impl Cluster {
    pub fn new(target: Target) -> Cluster {
        Cluster {
            client: Client::new(target, TIMEOUT),
            reachable: Cell::new(true),
        }
    }

    pub fn target(&self) -> &Target {
        &self.client.target
    }

    async fn generation(&self) -> Result<u64, Error> {
        let g = int(&self.client.call(&[b"GET", GENERATION]).await?)?;
        Ok(g.max(0) as u64)
    }

    /// Generation and document, read together (`MGET` is atomic).
    async fn read(&self) -> Result<(u64, Option<Vec<u8>>), Error> {
        match self.client.call(&[b"MGET", GENERATION, DOCUMENT]).await? {
            OwnedFrame::Array(mut v) if v.len() == 2 => {
                let doc = match v.pop() {
                    Some(OwnedFrame::BulkString(b)) => Some(b),
                    _ => None,
                };
                Ok((int(&v[0])?.max(0) as u64, doc))
            }
            other => Err(Error::Reply(format!("unexpected MGET reply {other:?}"))),
        }
    }

    /// Stores `config` as `generation` if Redis still holds `expected`;
    /// `Ok(None)` when written, `Ok(Some(stored))` when another node won.
    async fn write(
        &self,
        expected: u64,
        generation: u64,
        config: &Config,
    ) -> Result<Option<u64>, Error> {
        let doc = serde_json::to_vec(config).map_err(|e| Error::Reply(e.to_string()))?;
        let (expected, generation) = (expected.to_string(), generation.to_string());
        let channel = self.target().channel();
        let r = self
            .client
            .call(&[
                b"EVAL",
                WRITE.as_bytes(),
                b"2",
                GENERATION,
                DOCUMENT,
                expected.as_bytes(),
                generation.as_bytes(),
                &doc,
                channel.as_bytes(),
            ])
            .await?;
        let stored = int(&r)?;
        Ok((stored >= 0).then_some(stored as u64))
    }

    fn note(&self, result: &Result<(), Error>) {
        let ok = result.is_ok();
        if ok != self.reachable.replace(ok) {
            match result {
                Ok(()) => log::warn!("{}: reachable again", self.target().shown),
                Err(e) => log::warn!(
                    "{}: {e}; serving the last configuration, admin writes answer 503",
                    self.target().shown
                ),
            }
        }
    }

    /// Brings this node to Redis's generation (or Redis to this node's,
    /// when Redis lost its data). The caller holds the admin write permit.
    pub async fn catch_up(&self, admin: &Admin) -> Result<(), Error> {
        let result = self.catch_up_inner(admin).await;
        self.note(&result);
        result
    }

    async fn catch_up_inner(&self, admin: &Admin) -> Result<(), Error> {
        let theirs = self.generation().await?;
        let ours = admin.store.borrow().generation();
        if theirs > ours {
            let (generation, doc) = self.read().await?;
            let Some(doc) = doc.filter(|_| generation > ours) else {
                return Ok(());
            };
            let config = match crate::admin::store::parse_state(&doc) {
                Ok(c) => c,
                Err(e) => {
                    log::error!("{}: generation {generation} is not a valid configuration ({e}); still serving generation {ours}", self.target().shown);
                    return Ok(());
                }
            };
            let snapshot = Arc::new(compile::compile(&config, generation));
            // Installed before the shards get it, so once a shard serves a
            // generation this node's admin API shows it too.
            admin
                .store
                .borrow_mut()
                .install(config, generation, snapshot.clone());
            if let Err(lagging) = admin.plane.apply(snapshot).await {
                log::error!("generation {generation} from Redis: {lagging}");
            }
            log::info!(
                "now serving generation {generation} from {}",
                self.target().shown
            );
        } else if theirs < ours {
            log::warn!(
                "{} holds generation {theirs}, this node {ours} (Redis lost its data?): writing ours back",
                self.target().shown
            );
            let config = admin.store.borrow().config().clone();
            if let Some(stored) = self.write(theirs, ours, &config).await? {
                log::info!("another node wrote generation {stored} first");
            }
        }
        Ok(())
    }

    /// `catch_up` under the admin write permit (one change at a time).
    pub async fn sync(&self, admin: &Admin) {
        let Ok(_turn) = admin.writes.acquire_permit(1).await else {
            return;
        };
        let _ = self.catch_up(admin).await;
    }

    /// Stores a change made on this node (the caller holds the write permit
    /// and caught up first).
    pub async fn commit(&self, config: &Config, generation: u64) -> Result<(), Reply> {
        let result = self.write(generation - 1, generation, config).await;
        match result {
            Ok(None) => Ok(()),
            Ok(Some(stored)) => Err(Reply::error(
                409,
                &format!("the configuration changed on another node meanwhile (generation {stored}); nothing was changed, retry"),
            )),
            Err(e) => {
                self.note(&Err(e.clone()));
                Err(unavailable(self.target(), &e))
            }
        }
    }
}

/// The 503 an admin write gets while Redis cannot be reached.
pub fn unavailable(target: &Target, e: &Error) -> Reply {
    Reply::error(
        503,
        &format!(
            "the configuration store {} is {e}; nothing was changed (this node keeps serving its last configuration)",
            target.shown
        ),
    )
}

/// Follows Redis until the control thread stops: the subscriber and the poll.
pub async fn follow(admin: Rc<Admin>, cluster: Rc<Cluster>) {
    let _subscriber = {
        let (admin, cluster) = (admin.clone(), cluster.clone());
        glommio::spawn_local(async move {
            loop {
                match subscribe(cluster.target()).await {
                    Ok(mut conn) => {
                        // Whatever was published while we were away.
                        cluster.sync(&admin).await;
                        while conn.recv().await.is_ok() {
                            cluster.sync(&admin).await;
                        }
                        log::debug!("{}: subscription lost", cluster.target().shown);
                    }
                    Err(e) => log::debug!("{}: cannot subscribe: {e}", cluster.target().shown),
                }
                glommio::timer::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    loop {
        glommio::timer::sleep(POLL).await;
        cluster.sync(&admin).await;
    }
}

async fn subscribe(target: &Target) -> Result<Conn, Error> {
    let mut conn = Conn::open(target, TIMEOUT).await?;
    let channel = target.channel();
    conn.call(&[b"SUBSCRIBE", channel.as_bytes()], TIMEOUT)
        .await?;
    Ok(conn)
}

/// Start-up in cluster mode: the configuration from Redis, or `file`
/// (`--config`) written to Redis as the next generation. Runs on a
/// short-lived executor of its own thread, before the shards start; an
/// unreachable Redis stops start-up.
pub fn load_at_start(target: &Target, file: Option<Config>) -> Result<(Config, u64), String> {
    let t = target.clone();
    let thread = std::thread::spawn(move || {
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .name("redis-load")
            .io_memory(256 << 10)
            .make()
            .map_err(|e| format!("cannot start an executor: {e}"))?;
        ex.run(async move {
            let cluster = Cluster::new(t);
            let (generation, doc) = cluster.read().await.map_err(|e| e.to_string())?;
            if let Some(config) = file {
                let next = generation + 1;
                if let Some(stored) = cluster
                    .write(generation, next, &config)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    return Err(format!(
                        "another node wrote generation {stored} meanwhile; start again"
                    ));
                }
                log::info!("--config replaces the configuration in Redis (generation {next})");
                return Ok((config, next));
            }
            match doc {
                None => Ok((Config::default(), 0)),
                Some(doc) => crate::admin::store::parse_state(&doc)
                    .map(|c| (c, generation))
                    .map_err(|e| {
                        format!(
                            "generation {generation} in Redis is not a valid configuration: {e}"
                        )
                    }),
            }
        })
    });
    thread
        .join()
        .map_err(|_| "the Redis loader thread panicked".to_string())?
        .map_err(|e| format!("store {}: {e}", target.shown))
}
