//! The configuration's stores: what this node serves ([`Store`]), and where
//! it is kept durably ([`ConfigStore`]: the data dir's state file,
//! [`LocalStore`], or Redis in cluster mode, `Cluster` in `apply.rs`). The
//! apply pipeline in `apply.rs` is written once against [`ConfigStore`].
//!
//! The local store (design: `STORE.md` next to this file) keeps the whole
//! configuration in one file, `state.json`, rewritten on every change: write
//! `state.json.tmp`, fsync it, rename it over `state.json`, fsync the
//! directory. The file starts with a header line carrying the format, the
//! generation and the SHA-256 of the body, so a truncated or damaged file is
//! detected at start-up and named, never silently dropped. `ringgate.lock`
//! is `flock`ed for the process lifetime: a second `serve` on the same
//! directory is refused.

use std::cell::{Cell, RefCell};
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{ErrorKind, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::config::model::Config;
use crate::config::Snapshot;

/// The state file's name inside the data dir.
pub const STATE_FILE: &str = "state.json";
const TEMP_FILE: &str = "state.json.tmp";
const LOCK_FILE: &str = "ringgate.lock";
const MAGIC: &str = "ringgate-state v1";

/// A configuration store's answer: a future on the control thread.
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Where the configuration is kept durably. Every operation runs under the
/// admin write permit (one change at a time on this node); a store shared
/// between nodes guards its writes with the generation it expects.
pub trait ConfigStore {
    /// How the store is named in messages (`data dir /x`, `store redis://…`).
    fn describe(&self) -> String;

    /// Compares the stored generation with this node's `generation`.
    fn catch_up(&self, generation: u64) -> Pending<'_, Result<CatchUp, StoreError>>;

    /// Makes `config` durable as `generation` if the store still holds
    /// `expected`; once this returns `Ok`, a crash at any moment leaves
    /// exactly this state in the store.
    fn commit<'a>(
        &'a self,
        config: &'a Config,
        expected: u64,
        generation: u64,
    ) -> Pending<'a, Result<(), StoreError>>;

    /// Whether a store that holds nothing is written at once, as generation
    /// 1 (the data dir: it also proves the directory writable before
    /// anything is served).
    fn seeds_empty(&self) -> bool {
        false
    }
}

/// The store a node keeps for its lifetime, as start-up opened it: the data
/// dir's (locked), or where Redis is (each thread connects on its own).
pub enum Durable {
    Local(LocalStore),
    Redis(crate::cluster::RedisUrl),
}

/// What [`ConfigStore::catch_up`] found.
pub enum CatchUp {
    /// The store holds this node's generation (or nothing newer to read).
    Even,
    /// A newer configuration, and its generation.
    Newer(Config, u64),
    /// The store holds an older generation than this node (it lost its data).
    Behind(u64),
    /// A newer generation that is not a valid configuration, and why.
    Invalid(u64, String),
}

/// Why a store operation failed; the admin layer turns it into an answer.
#[derive(Debug)]
pub enum StoreError {
    /// Another node wrote this generation (the one stored) meanwhile.
    Conflict(u64),
    /// The store (named as `describe` names it) could not be reached.
    Unreachable {
        store: String,
        error: crate::cluster::resp::Error,
    },
    /// The data dir's file could not be written.
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Conflict(stored) => {
                write!(f, "another node wrote generation {stored} meanwhile")
            }
            StoreError::Unreachable { error, .. } => write!(f, "{error}"),
            StoreError::Write { error, .. } => write!(f, "{error}"),
        }
    }
}

/// What this node serves: the configuration, its generation and its
/// compiled snapshot, installed by the apply pipeline once durable.
pub struct Store {
    config: Config,
    generation: u64,
    snapshot: Arc<Snapshot>,
}

impl Store {
    pub fn new(config: Config, snapshot: Arc<Snapshot>) -> Store {
        Store {
            config,
            generation: snapshot.generation,
            snapshot,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.clone()
    }

    /// Makes a committed state the current one.
    pub fn install(&mut self, config: Config, snapshot: Arc<Snapshot>) {
        self.generation = snapshot.generation;
        self.config = config;
        self.snapshot = snapshot;
    }
}

/// The data dir's store. This process holds its lock, so nothing else
/// writes it: the state read at open is the newest until this node commits.
pub struct LocalStore {
    dir: PathBuf,
    /// Held (and `flock`ed) for the process lifetime.
    _lock: File,
    /// The generation in `state.json` (0: no file yet).
    stored: Cell<u64>,
    /// The state read at open, until the first catch-up takes it.
    loaded: RefCell<Option<Config>>,
}

impl LocalStore {
    /// Locks the data dir, loads and checks the stored state.
    pub fn open(dir: &Path) -> Result<LocalStore, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("data dir {}: cannot create it: {e}", dir.display()))?;
        let lock = lock(dir)?;
        let state_path = dir.join(STATE_FILE);
        let (config, generation) = match std::fs::read(&state_path) {
            Ok(bytes) => decode(&bytes).map_err(|e| {
                format!(
                    "store file {} is corrupt: {e} (restore it from a backup, or move it away to start empty)",
                    state_path.display()
                )
            })?,
            Err(e) if e.kind() == ErrorKind::NotFound => (Config::default(), 0),
            Err(e) => return Err(format!("store file {}: {e}", state_path.display())),
        };
        // A left-over temporary file is a write that was never acknowledged.
        let _ = std::fs::remove_file(dir.join(TEMP_FILE));
        Ok(LocalStore {
            dir: dir.to_path_buf(),
            _lock: lock,
            stored: Cell::new(generation),
            loaded: RefCell::new((generation > 0).then_some(config)),
        })
    }

    /// Writes `config` as `generation`: temporary file, fsync, rename, fsync
    /// of the directory.
    fn persist(&self, config: &Config, generation: u64) -> std::io::Result<()> {
        let bytes = encode(config, generation)?;
        let temp = self.dir.join(TEMP_FILE);
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&temp, self.dir.join(STATE_FILE))?;
        File::open(&self.dir)?.sync_all()
    }
}

impl ConfigStore for LocalStore {
    fn describe(&self) -> String {
        format!("data dir {}", self.dir.display())
    }

    fn catch_up(&self, generation: u64) -> Pending<'_, Result<CatchUp, StoreError>> {
        let stored = self.stored.get();
        let found = match self.loaded.borrow_mut().take() {
            Some(config) if stored > generation => CatchUp::Newer(config, stored),
            _ => CatchUp::Even,
        };
        Box::pin(std::future::ready(Ok(found)))
    }

    fn commit<'a>(
        &'a self,
        config: &'a Config,
        expected: u64,
        generation: u64,
    ) -> Pending<'a, Result<(), StoreError>> {
        let stored = self.stored.get();
        let result = if stored != expected {
            Err(StoreError::Conflict(stored))
        } else {
            self.persist(config, generation).map_err(|error| {
                let path = self.dir.join(STATE_FILE);
                log::error!(
                    "cannot store generation {generation} in {}: {error}",
                    path.display()
                );
                StoreError::Write { path, error }
            })
        };
        if result.is_ok() {
            self.stored.set(generation);
        }
        Box::pin(std::future::ready(result))
    }

    fn seeds_empty(&self) -> bool {
        true
    }
}

/// `flock(LOCK_EX | LOCK_NB)` on the lock file; the kernel drops it when the
/// process ends, however it ends.
fn lock(dir: &Path) -> Result<File, String> {
    let path = dir.join(LOCK_FILE);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| {
            format!(
                "data dir {}: cannot open {}: {e}",
                dir.display(),
                path.display()
            )
        })?;
    // SAFETY: flock on a file descriptor we own.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        return Err(if e.kind() == ErrorKind::WouldBlock {
            format!(
                "data dir {} is already in use by another ringgate process (lock {} is held); stop it or pick another --data-dir",
                dir.display(),
                path.display()
            )
        } else {
            format!(
                "data dir {}: cannot lock {}: {e}",
                dir.display(),
                path.display()
            )
        });
    }
    Ok(f)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `ringgate-state v1 <generation> <sha256 hex of body> <body length>\n<body>`.
fn encode(config: &Config, generation: u64) -> std::io::Result<Vec<u8>> {
    let body = serde_json::to_vec_pretty(config)?;
    let mut out = format!(
        "{MAGIC} {generation} {} {}\n",
        hex(&Sha256::digest(&body)),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    Ok(out)
}

fn decode(bytes: &[u8]) -> Result<(Config, u64), String> {
    let nl = bytes
        .iter()
        .position(|b| *b == b'\n')
        .ok_or("no header line (truncated or not a ringgate store)")?;
    let header = std::str::from_utf8(&bytes[..nl]).map_err(|_| "header line is not text")?;
    let rest = header
        .strip_prefix(MAGIC)
        .ok_or("header line is not \"ringgate-state v1 ...\"")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let [generation, digest, len] = fields[..] else {
        return Err(format!("malformed header line {header:?}"));
    };
    let generation: u64 = generation
        .parse()
        .map_err(|_| format!("malformed generation in {header:?}"))?;
    let len: usize = len
        .parse()
        .map_err(|_| format!("malformed length in {header:?}"))?;
    let body = &bytes[nl + 1..];
    if body.len() != len {
        return Err(format!(
            "body is {} bytes, the header says {len} (truncated?)",
            body.len()
        ));
    }
    if hex(&Sha256::digest(body)) != digest {
        return Err("checksum mismatch: the body was altered or damaged".into());
    }
    Ok((crate::config::compile::parse_state(body)?, generation))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::compile;
    use std::time::SystemTime;

    /// A small valid configuration (fresh ids on every call).
    pub(crate) fn demo() -> Config {
        let json = br#"{"gateways":[{"name":"g","upstreams":[{"name":"u","targets":[{"host":"127.0.0.1","port":9}]}]}]}"#;
        compile::load(json, SystemTime::now()).unwrap()
    }

    #[test]
    fn round_trip() {
        let cfg = demo();
        let bytes = encode(&cfg, 7).unwrap();
        let (back, generation) = decode(&bytes).unwrap();
        assert_eq!(back, cfg);
        assert_eq!(generation, 7);
    }

    #[test]
    fn damage_is_detected() {
        let bytes = encode(&demo(), 3).unwrap();
        for cut in [0, 5, bytes.len() / 2, bytes.len() - 1] {
            assert!(decode(&bytes[..cut]).is_err(), "truncated at {cut}");
        }
        let mut flipped = bytes.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 0x20;
        assert!(decode(&flipped).unwrap_err().contains("checksum"));
        assert!(decode(b"garbage\n{}").is_err());
    }

    /// A fresh directory under the system temp dir, removed by the caller.
    pub(crate) fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "ringgate-store-{name}-{}-{:?}",
            std::process::id(),
            SystemTime::now()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The local store's futures are ready at once.
    fn now<T>(f: Pending<'_, T>) -> T {
        futures_lite::future::block_on(f)
    }

    #[test]
    fn local_commit_checks_the_generation_and_survives_a_reopen() {
        let dir = scratch("commit");
        let cfg = demo();
        {
            let store = LocalStore::open(&dir).unwrap();
            assert!(matches!(now(store.catch_up(0)).unwrap(), CatchUp::Even));
            now(store.commit(&cfg, 0, 1)).unwrap();
            // A writer that started from generation 0 again is refused and
            // changes nothing.
            let stale = now(store.commit(&Config::default(), 0, 2));
            assert!(matches!(stale, Err(StoreError::Conflict(1))), "{stale:?}");
            now(store.commit(&cfg, 1, 2)).unwrap();
        }
        let store = LocalStore::open(&dir).unwrap();
        match now(store.catch_up(0)).unwrap() {
            CatchUp::Newer(config, 2) => assert_eq!(config, cfg),
            _ => panic!("generation 2 is not read back"),
        }
        // Taken once: this node now serves it.
        assert!(matches!(now(store.catch_up(2)).unwrap(), CatchUp::Even));
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn local_store_is_locked_while_open() {
        let dir = scratch("lock");
        let store = LocalStore::open(&dir).unwrap();
        let second = LocalStore::open(&dir).err().unwrap_or_default();
        assert!(second.contains("already in use"), "{second}");
        drop(store);
        assert!(LocalStore::open(&dir).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
