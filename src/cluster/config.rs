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
//! only reads, writes and subscribes. It is a [`ConfigStore`] (the apply
//! pipeline's store interface, `admin/store.rs`) and reports failures as
//! typed errors ([`StoreError`]) that the admin side turns into answers.

use std::cell::Cell;
use std::time::Duration;

use redis_protocol::resp2::types::OwnedFrame;

use super::resp::{int, Conn, Error, RedisClient};
use super::RedisUrl;
use crate::admin::store::{CatchUp, ConfigStore, Pending, StoreError};
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
}

impl ConfigStore for Cluster {
    fn describe(&self) -> String {
        format!("store {}", self.target().shown)
    }

    fn catch_up(&self, generation: u64) -> Pending<'_, Result<CatchUp, StoreError>> {
        Box::pin(async move {
            let result = self.compare(generation).await;
            self.note(&result.as_ref().map(|_| ()).map_err(Clone::clone));
            result.map_err(|error| self.unreachable(error))
        })
    }

    fn commit<'a>(
        &'a self,
        config: &'a Config,
        expected: u64,
        generation: u64,
    ) -> Pending<'a, Result<(), StoreError>> {
        Box::pin(async move {
            match self.write(expected, generation, config).await {
                Ok(None) => Ok(()),
                Ok(Some(stored)) => Err(StoreError::Conflict(stored)),
                Err(e) => {
                    self.note(&Err(e.clone()));
                    Err(self.unreachable(e))
                }
            }
        })
    }
}

impl Cluster {
    /// Redis's generation against this node's `ours`; a newer document is
    /// read and parsed.
    async fn compare(&self, ours: u64) -> Result<CatchUp, Error> {
        let theirs = self.generation().await?;
        if theirs < ours {
            return Ok(CatchUp::Behind(theirs));
        }
        if theirs == ours {
            return Ok(CatchUp::Even);
        }
        let (generation, doc) = self.read().await?;
        let Some(doc) = doc.filter(|_| generation > ours) else {
            return Ok(CatchUp::Even);
        };
        Ok(match crate::config::compile::parse_state(&doc) {
            Ok(config) => CatchUp::Newer(config, generation),
            Err(error) => CatchUp::Invalid(generation, error),
        })
    }

    fn unreachable(&self, error: Error) -> StoreError {
        StoreError::Unreachable {
            store: self.target().shown.clone(),
            error,
        }
    }
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
