//! The configuration in Redis, and how a node follows it.
//!
//! Keys: `ringgate:generation` (decimal) and `ringgate:config` (the JSON
//! document), in the URL's database. A write runs [`WRITE`]: it
//! compares the stored generation with the one the writer started from and,
//! only if equal, sets both keys and publishes the new generation — one
//! atomic step, so two nodes writing at once cannot both win.
//!
//! How a node follows (the subscriber, the poll, the catch-up that applies
//! a newer generation) is the admin side's, in `admin/apply.rs`: this file
//! only reads, writes and subscribes, and reports failures as typed errors
//! ([`Error`], [`CommitError`]) that the admin side turns into answers.

use std::cell::Cell;
use std::time::Duration;

use redis_protocol::resp2::types::OwnedFrame;

use super::resp::{int, Conn, Error, RedisClient};
use super::RedisUrl;
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
    client: RedisClient,
    /// Whether the last exchange with Redis worked (logs transitions only).
    reachable: Cell<bool>,
}

impl Cluster {
    pub fn new(target: RedisUrl) -> Cluster {
        Cluster {
            client: RedisClient::new(target, TIMEOUT),
            reachable: Cell::new(true),
        }
    }

    pub fn target(&self) -> &RedisUrl {
        &self.client.target
    }

    pub async fn generation(&self) -> Result<u64, Error> {
        let g = int(&self.client.call(&[b"GET", GENERATION]).await?)?;
        Ok(g.max(0) as u64)
    }

    /// Generation and document, read together (`MGET` is atomic).
    pub async fn read(&self) -> Result<(u64, Option<Vec<u8>>), Error> {
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
    pub async fn write(
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

    pub fn note(&self, result: &Result<(), Error>) {
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

    /// Stores a change made on this node as `generation` (the caller holds
    /// the write permit and caught up first).
    pub async fn commit(&self, config: &Config, generation: u64) -> Result<(), CommitError> {
        let result = self.write(generation - 1, generation, config).await;
        match result {
            Ok(None) => Ok(()),
            Ok(Some(stored)) => Err(CommitError::Conflict(stored)),
            Err(e) => {
                self.note(&Err(e.clone()));
                Err(CommitError::Unreachable(e))
            }
        }
    }
}

/// Why a change could not be stored in Redis.
#[derive(Debug)]
pub enum CommitError {
    /// Another node wrote this generation (the one stored) meanwhile.
    Conflict(u64),
    /// Redis could not be reached or answered wrongly.
    Unreachable(Error),
}

/// Subscribes to the generation's channel; each published generation
/// arrives as a message on the connection.
pub async fn subscribe(target: &RedisUrl) -> Result<Conn, Error> {
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
pub fn load_at_start(target: &RedisUrl, file: Option<Config>) -> Result<(Config, u64), String> {
    let t = target.clone();
    let thread = std::thread::spawn(move || {
        let ex = crate::runtime::executor::make(
            "redis-load",
            glommio::Placement::Unbound,
            Duration::ZERO,
        )
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
                Some(doc) => crate::config::compile::parse_state(&doc)
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
