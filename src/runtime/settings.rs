//! `serve` flags, their `RINGGATE_<NAME>` environment fallbacks, and the
//! resolved [`Settings`] every part of the gateway reads.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use argh::FromArgs;

/// run the gateway: proxy listener, admin listener, embedded store
#[derive(FromArgs, Debug, Clone, Default)]
#[argh(subcommand, name = "serve")]
pub struct ServeArgs {
    /// proxy listen address (default 0.0.0.0:8081) [RINGGATE_PROXY]
    #[argh(option)]
    pub proxy: Option<String>,
    /// admin API listen address (default 127.0.0.1:8080) [RINGGATE_ADMIN]
    #[argh(option)]
    pub admin: Option<String>,
    /// number of shards, one pinned executor each (default: online CPUs) [RINGGATE_SHARDS]
    #[argh(option)]
    pub shards: Option<String>,
    /// data directory of the embedded store (default ./ringgate-data) [RINGGATE_DATA_DIR]
    #[argh(option)]
    pub data_dir: Option<String>,
    /// where the configuration lives: "local" (the embedded store in --data-dir) or redis://[:PASSWORD@]HOST:PORT[/DB] (cluster mode: nodes share configuration and rate limits) (default local) [RINGGATE_STORE]
    #[argh(option)]
    pub store: Option<String>,
    /// declarative JSON configuration (the GET /api/v1/config shape): validated, then it replaces the state stored in --data-dir at start and is persisted [RINGGATE_CONFIG]
    #[argh(option)]
    pub config: Option<String>,
    /// bearer token every /api/v1 call must carry [RINGGATE_ADMIN_TOKEN]
    #[argh(option)]
    pub admin_token: Option<String>,
    /// log filter: error, warn, info, debug, trace (default info, or RUST_LOG) [RINGGATE_LOG_LEVEL]
    #[argh(option)]
    pub log_level: Option<String>,
    /// open client connections per shard before new ones are refused (default 16384) [RINGGATE_MAX_CONNECTIONS]
    #[argh(option)]
    pub max_connections: Option<String>,
    /// largest request head in bytes, larger gets 431 (default 32768) [RINGGATE_MAX_HEAD_BYTES]
    #[argh(option)]
    pub max_head_bytes: Option<String>,
    /// most request headers, more gets 431 (default 100) [RINGGATE_MAX_HEADERS]
    #[argh(option)]
    pub max_headers: Option<String>,
    /// largest request body in bytes, larger gets 413 (default 33554432) [RINGGATE_MAX_BODY_BYTES]
    #[argh(option)]
    pub max_body_bytes: Option<String>,
    /// time for a request head to arrive, else 408 (default 10000) [RINGGATE_HEADER_TIMEOUT_MS]
    #[argh(option)]
    pub header_timeout_ms: Option<String>,
    /// longest pause while reading a request body, else 408 (default 30000) [RINGGATE_BODY_TIMEOUT_MS]
    #[argh(option)]
    pub body_timeout_ms: Option<String>,
    /// most time a whole request body may take, else 408: bounds clients that drip a byte at a time (default 120000) [RINGGATE_BODY_DEADLINE_MS]
    #[argh(option)]
    pub body_deadline_ms: Option<String>,
    /// longest wait for a client to accept response bytes, else the connection is dropped (default 30000) [RINGGATE_SEND_TIMEOUT_MS]
    #[argh(option)]
    pub send_timeout_ms: Option<String>,
    /// idle keep-alive client connections are closed after this (default 60000) [RINGGATE_IDLE_TIMEOUT_MS]
    #[argh(option)]
    pub idle_timeout_ms: Option<String>,
    /// upstream connect timeout, then 504 (default 5000) [RINGGATE_CONNECT_TIMEOUT_MS]
    #[argh(option)]
    pub connect_timeout_ms: Option<String>,
    /// wait for the upstream's response head and between its body reads, then 504 (default 300000) [RINGGATE_UPSTREAM_TIMEOUT_MS]
    #[argh(option)]
    pub upstream_timeout_ms: Option<String>,
    /// idle pooled upstream connections kept per target and shard (default 256) [RINGGATE_POOL_MAX_IDLE]
    #[argh(option)]
    pub pool_max_idle: Option<String>,
    /// idle pooled upstream connections are closed after this (default 30000) [RINGGATE_POOL_IDLE_TIMEOUT_MS]
    #[argh(option)]
    pub pool_idle_timeout_ms: Option<String>,
    /// request bodies up to this size are kept for a retry (default 65536) [RINGGATE_REPLAY_BODY_BYTES]
    #[argh(option)]
    pub replay_body_bytes: Option<String>,
    /// on SIGTERM, time in-flight requests get to finish (default 30000) [RINGGATE_DRAIN_TIMEOUT_MS]
    #[argh(option)]
    pub drain_timeout_ms: Option<String>,
    /// microseconds a shard spins before sleeping: lower latency, more CPU; 0 never spins (default 50) [RINGGATE_SPIN_US]
    #[argh(option)]
    pub spin_us: Option<String>,
    /// data path of the proxy sockets: auto (a private io_uring per shard where the kernel has it, else glommio's sockets), uring, or glommio (default auto) [RINGGATE_IO]
    #[argh(option)]
    pub io: Option<String>,
    /// per-request metrics: on or off (the benchmark's baseline) (default on) [RINGGATE_METRICS]
    #[argh(option)]
    pub metrics: Option<String>,
    /// transparent huge pages for the heap: on or off (default off: a smaller, steadier RSS) [RINGGATE_HUGE_PAGES]
    #[argh(option)]
    pub huge_pages: Option<String>,
    /// join a proxy port another ringgate already listens on: on or off (default off: refused; on for a zero-downtime upgrade, start the new binary then drain the old) [RINGGATE_SHARE_PROXY_PORT]
    #[argh(option)]
    pub share_proxy_port: Option<String>,
    /// access log: off, stdout, or a file path (appended; SIGHUP reopens it) (default off) [RINGGATE_ACCESS_LOG]
    #[argh(option)]
    pub access_log: Option<String>,
    /// share of requests written to the access log, 0 to 1 (default 1) [RINGGATE_ACCESS_LOG_SAMPLE]
    #[argh(option)]
    pub access_log_sample: Option<String>,
}

/// Limits and timeouts of the proxy path, one place for all of them.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub max_head_bytes: usize,
    pub max_headers: usize,
    pub max_body_bytes: u64,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub body_deadline: Duration,
    /// Bounds every write to a client: one that stops reading is dropped.
    pub send_timeout: Duration,
    pub idle_timeout: Duration,
    pub connect_timeout: Duration,
    pub upstream_timeout: Duration,
    pub pool_max_idle: usize,
    pub pool_idle_timeout: Duration,
    pub replay_body_bytes: usize,
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 16384,
            max_head_bytes: 32 << 10,
            max_headers: 100,
            max_body_bytes: 32 << 20,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            body_deadline: Duration::from_secs(120),
            send_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            upstream_timeout: Duration::from_secs(300),
            pool_max_idle: 256,
            pool_idle_timeout: Duration::from_secs(30),
            replay_body_bytes: 64 << 10,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// The data path of the proxy's sockets (`--io`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoPath {
    /// The shard's own ring where the kernel supports it, else glommio.
    Auto,
    /// The shard's own ring; start-up fails where the kernel lacks it.
    Uring,
    /// glommio's sockets (the fallback path).
    Glommio,
}

impl IoPath {
    /// From `--io`, or `RINGGATE_IO` when the flag is absent.
    pub fn from_flag(flag: Option<&str>) -> Result<IoPath, String> {
        IoPath::parse(pick(&flag.map(str::to_string), "io").as_deref())
    }

    fn parse(v: Option<&str>) -> Result<IoPath, String> {
        match v.map(str::trim) {
            None | Some("auto") => Ok(IoPath::Auto),
            Some("uring") => Ok(IoPath::Uring),
            Some("glommio") => Ok(IoPath::Glommio),
            Some(other) => Err(format!("--io: '{other}' is not auto, uring or glommio")),
        }
    }
}

/// Everything `serve` was told, resolved and checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub shards: usize,
    pub data_dir: PathBuf,
    pub config: Option<PathBuf>,
    /// Cluster mode: the Redis that holds configuration and limits.
    pub redis: Option<crate::cluster::RedisUrl>,
    pub admin_token: Option<String>,
    pub log_level: Option<String>,
    pub backlog: i32,
    /// How long an idle shard spins before parking.
    pub spin: Duration,
    /// Which data path carries the proxy's sockets.
    pub io: IoPath,
    pub limits: Limits,
    /// Count requests for `/metrics` (on unless `--metrics off`).
    pub metrics: bool,
    /// Leave transparent huge pages on for this process (`--huge-pages on`).
    pub huge_pages: bool,
    /// Join a proxy port another process already listens on
    /// (`--share-proxy-port on`, for a zero-downtime upgrade).
    pub share_proxy_port: bool,
    pub access_log: crate::access_log::Destination,
    /// Share of requests logged, 0..=1.
    pub access_log_sample: f64,
}

/// An `on`/`off` flag (or its variable); `default` when neither is set.
fn on_off(flag: &Option<String>, name: &str, default: bool) -> Result<bool, String> {
    match pick(flag, name).as_deref().map(str::trim) {
        None => Ok(default),
        Some("on") => Ok(true),
        Some("off") => Ok(false),
        Some(v) => Err(format!("--{name}: '{v}' is not on or off")),
    }
}

/// The flag if given, else `RINGGATE_<NAME>`, else `None`.
fn pick(flag: &Option<String>, name: &str) -> Option<String> {
    flag.clone().or_else(|| {
        let var = format!("RINGGATE_{}", name.to_ascii_uppercase().replace('-', "_"));
        std::env::var(var).ok().filter(|v| !v.is_empty())
    })
}

fn number<T: std::str::FromStr>(
    flag: &Option<String>,
    name: &str,
    default: T,
) -> Result<T, String> {
    match pick(flag, name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("--{name}: '{v}' is not a valid number")),
    }
}

fn millis(flag: &Option<String>, name: &str, default: Duration) -> Result<Duration, String> {
    let ms: u64 = number(flag, name, default.as_millis() as u64)?;
    if ms == 0 {
        return Err(format!("--{name}: must be greater than 0"));
    }
    Ok(Duration::from_millis(ms))
}

fn address(flag: &Option<String>, name: &str, default: &str) -> Result<SocketAddr, String> {
    let v = pick(flag, name).unwrap_or_else(|| default.to_string());
    v.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| format!("--{name}: '{v}' is not a valid address (expected HOST:PORT)"))
}

impl Settings {
    pub fn resolve(a: &ServeArgs) -> Result<Settings, String> {
        let d = Limits::default();
        let online = std::thread::available_parallelism().map_or(1, |n| n.get());
        let shards: usize = number(&a.shards, "shards", online)?;
        if shards == 0 || shards > 1024 {
            return Err(format!("--shards: {shards} is out of range (1..=1024)"));
        }
        let limits = Limits {
            max_connections: number(&a.max_connections, "max-connections", d.max_connections)?,
            max_head_bytes: number(&a.max_head_bytes, "max-head-bytes", d.max_head_bytes)?,
            max_headers: number(&a.max_headers, "max-headers", d.max_headers)?,
            max_body_bytes: number(&a.max_body_bytes, "max-body-bytes", d.max_body_bytes)?,
            header_timeout: millis(&a.header_timeout_ms, "header-timeout-ms", d.header_timeout)?,
            body_timeout: millis(&a.body_timeout_ms, "body-timeout-ms", d.body_timeout)?,
            body_deadline: millis(&a.body_deadline_ms, "body-deadline-ms", d.body_deadline)?,
            send_timeout: millis(&a.send_timeout_ms, "send-timeout-ms", d.send_timeout)?,
            idle_timeout: millis(&a.idle_timeout_ms, "idle-timeout-ms", d.idle_timeout)?,
            connect_timeout: millis(
                &a.connect_timeout_ms,
                "connect-timeout-ms",
                d.connect_timeout,
            )?,
            upstream_timeout: millis(
                &a.upstream_timeout_ms,
                "upstream-timeout-ms",
                d.upstream_timeout,
            )?,
            pool_max_idle: number(&a.pool_max_idle, "pool-max-idle", d.pool_max_idle)?,
            pool_idle_timeout: millis(
                &a.pool_idle_timeout_ms,
                "pool-idle-timeout-ms",
                d.pool_idle_timeout,
            )?,
            replay_body_bytes: number(
                &a.replay_body_bytes,
                "replay-body-bytes",
                d.replay_body_bytes,
            )?,
            drain_timeout: millis(&a.drain_timeout_ms, "drain-timeout-ms", d.drain_timeout)?,
        };
        if limits.max_connections == 0 {
            return Err("--max-connections: must be greater than 0".into());
        }
        if limits.max_headers == 0 || limits.max_headers > crate::http::MAX_HEADERS {
            return Err(format!(
                "--max-headers: must be between 1 and {}",
                crate::http::MAX_HEADERS
            ));
        }
        if limits.max_head_bytes < 1024 || limits.max_head_bytes > (1 << 20) {
            return Err("--max-head-bytes: must be between 1024 and 1048576".into());
        }
        let access_log_sample: f64 = number(&a.access_log_sample, "access-log-sample", 1.0)?;
        if !(0.0..=1.0).contains(&access_log_sample) {
            return Err(format!(
                "--access-log-sample: {access_log_sample} is out of range (0 to 1)"
            ));
        }
        Ok(Settings {
            metrics: on_off(&a.metrics, "metrics", true)?,
            huge_pages: on_off(&a.huge_pages, "huge-pages", false)?,
            share_proxy_port: on_off(&a.share_proxy_port, "share-proxy-port", false)?,
            access_log: crate::access_log::Destination::parse(
                &pick(&a.access_log, "access-log").unwrap_or_default(),
            ),
            access_log_sample,
            proxy: address(&a.proxy, "proxy", "0.0.0.0:8081")?,
            admin: address(&a.admin, "admin", "127.0.0.1:8080")?,
            shards,
            data_dir: PathBuf::from(
                pick(&a.data_dir, "data-dir").unwrap_or_else(|| "./ringgate-data".into()),
            ),
            config: pick(&a.config, "config").map(PathBuf::from),
            redis: match pick(&a.store, "store").as_deref().map(str::trim) {
                None | Some("local") => None,
                Some(url) => Some(
                    crate::cluster::RedisUrl::parse(url).map_err(|e| format!("--store: {e}"))?,
                ),
            },
            admin_token: pick(&a.admin_token, "admin-token"),
            log_level: pick(&a.log_level, "log-level"),
            io: IoPath::parse(pick(&a.io, "io").as_deref())?,
            spin: Duration::from_micros(number(&a.spin_us, "spin-us", 50u64)?.min(10_000)),
            backlog: somaxconn().unwrap_or(4096).clamp(128, 65535) as i32,
            limits,
        })
    }
}

/// `net.core.somaxconn`, the kernel's cap on a listen backlog.
pub fn somaxconn() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()?
        .trim()
        .parse()
        .ok()
}
