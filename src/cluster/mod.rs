//! Cluster mode (`serve --store redis://HOST:PORT/DB`): several nodes share
//! one configuration and one set of rate limits through Redis.
//!
//! **Client choice.** Redis is spoken over glommio sockets with the
//! `redis-protocol` crate doing the RESP2 framing ([`resp`]): no tokio, no
//! extra thread, no channel between a blocking client thread and the
//! executors. The control thread uses it for the configuration
//! ([`config`]); a shard uses its own connection for rate-limit leases
//! ([`limits`]), taken only when its local lease runs out.
//!
//! **Configuration** (`ringgate:config`, `ringgate:generation`): the whole
//! configuration document (the `GET /api/v1/config` shape, keys as
//! `key_hash`) and its generation, changed together by one Lua script that
//! compares-and-sets the generation and publishes it on
//! `ringgate:<db>:config`. Every node applies a newer generation through
//! `ControlPlane::apply`, the same path as a local change.
//!
//! **Limits** (`ringgate:rl:<key>`): see [`limits`].

pub mod config;
pub mod limits;
pub mod resp;

use std::net::{SocketAddr, ToSocketAddrs};

/// Where Redis is: `redis://[[USER]:PASSWORD@]HOST:PORT[/DB]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisUrl {
    pub addr: SocketAddr,
    pub db: u32,
    pub password: Option<String>,
    /// The URL without the password, for logs and errors.
    pub shown: String,
}

impl RedisUrl {
    /// Parses and resolves the URL (blocking DNS: start-up only).
    pub fn parse(url: &str) -> Result<RedisUrl, String> {
        let rest = url.strip_prefix("redis://").ok_or_else(|| {
            format!("{url:?} is neither \"local\" nor a redis://HOST:PORT/DB URL")
        })?;
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((a, r)) => (Some(a), r),
            None => (None, rest),
        };
        let password = auth
            .map(|a| a.split_once(':').map_or(a, |(_, p)| p).to_string())
            .filter(|p| !p.is_empty());
        let (hostport, db) = match rest.split_once('/') {
            Some((h, "")) => (h, 0),
            Some((h, d)) => (
                h,
                d.parse()
                    .map_err(|_| format!("{d:?} is not a database number"))?,
            ),
            None => (rest, 0),
        };
        let hostport = if hostport.contains(':') {
            hostport.to_string()
        } else {
            format!("{hostport}:6379")
        };
        let addr = hostport
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| format!("cannot resolve {hostport:?}"))?;
        Ok(RedisUrl {
            addr,
            db,
            password,
            shown: format!("redis://{hostport}/{db}"),
        })
    }

    /// The pub/sub channel of configuration changes (channels are not per
    /// database in Redis, so the database is in the name).
    pub fn channel(&self) -> String {
        format!("ringgate:{}:config", self.db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = RedisUrl::parse("redis://127.0.0.1:6380/3").unwrap();
        assert_eq!(t.addr, "127.0.0.1:6380".parse().unwrap());
        assert_eq!((t.db, t.password.as_deref()), (3, None));
        let t = RedisUrl::parse("redis://:s3cret@127.0.0.1").unwrap();
        assert_eq!(t.addr.port(), 6379);
        assert_eq!((t.db, t.password.as_deref()), (0, Some("s3cret")));
        assert_eq!(t.shown, "redis://127.0.0.1:6379/0");
        assert!(RedisUrl::parse("http://x").is_err());
        assert!(RedisUrl::parse("redis://127.0.0.1:1/x").is_err());
    }
}
