//! The durable store in `--data-dir` (design: `STORE.md` next to this file).
//!
//! The whole configuration is one file, `state.json`, rewritten on every
//! change: write `state.json.tmp`, fsync it, rename it over `state.json`,
//! fsync the directory. The file starts with a header line carrying the
//! format, the generation and the SHA-256 of the body, so a truncated or
//! damaged file is detected at start-up and named, never silently dropped.
//! `ringgate.lock` is `flock`ed for the process lifetime: a second `serve` on
//! the same directory is refused.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::config::model::Config;
use crate::config::{compile, Snapshot};
use crate::runtime::Settings;

/// The state file's name inside the data dir.
pub const STATE_FILE: &str = "state.json";
const TEMP_FILE: &str = "state.json.tmp";
const LOCK_FILE: &str = "ringgate.lock";
const MAGIC: &str = "ringgate-state v1";

/// The configuration, its generation and its compiled snapshot, backed by
/// the data dir — or, in cluster mode, by Redis (`crate::cluster::config`;
/// then the data dir is not used).
pub struct Store {
    dir: PathBuf,
    /// Held (and `flock`ed) for the process lifetime (not in cluster mode).
    _lock: Option<File>,
    /// Cluster mode: where the configuration lives instead.
    pub redis: Option<crate::cluster::RedisUrl>,
    config: Config,
    generation: u64,
    snapshot: Arc<Snapshot>,
}

impl Store {
    /// Locks the data dir, loads and checks the stored state, then applies
    /// `--config` when given: the file replaces the stored state and is
    /// persisted before anything is served.
    pub fn open(settings: &Settings) -> Result<Store, String> {
        if let Some(target) = &settings.redis {
            return Store::open_redis(settings, target);
        }
        let dir = settings.data_dir.clone();
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("data dir {}: cannot create it: {e}", dir.display()))?;
        let lock = lock(&dir)?;
        let state_path = dir.join(STATE_FILE);
        let (mut config, mut generation) = match std::fs::read(&state_path) {
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

        let mut store_now = generation == 0;
        if let Some(path) = &settings.config {
            let bytes =
                std::fs::read(path).map_err(|e| format!("config {}: {e}", path.display()))?;
            config = compile::load(&bytes, SystemTime::now())
                .map_err(|e| format!("config {}: {e}", path.display()))?;
            generation += 1;
            store_now = true;
            log::info!(
                "config {} replaces the stored state (generation {generation})",
                path.display()
            );
        }
        generation = generation.max(1);
        let store = Store {
            snapshot: Arc::new(compile::compile(&config, generation)),
            dir,
            _lock: Some(lock),
            redis: None,
            config,
            generation,
        };
        if store_now {
            // Also proves the data dir is writable before we serve.
            store
                .persist(&store.config, generation)
                .map_err(|e| format!("data dir {}: {e}", store.dir.display()))?;
        }
        Ok(store)
    }

    /// Cluster mode: the configuration (and generation) Redis holds, or
    /// `--config` written there as the next generation.
    fn open_redis(settings: &Settings, target: &crate::cluster::RedisUrl) -> Result<Store, String> {
        let file = match &settings.config {
            None => None,
            Some(path) => {
                let bytes =
                    std::fs::read(path).map_err(|e| format!("config {}: {e}", path.display()))?;
                Some(
                    compile::load(&bytes, SystemTime::now())
                        .map_err(|e| format!("config {}: {e}", path.display()))?,
                )
            }
        };
        let (config, generation) = crate::cluster::config::load_at_start(target, file)?;
        log::info!(
            "configuration generation {generation} from {}",
            target.shown
        );
        Ok(Store {
            dir: settings.data_dir.clone(),
            _lock: None,
            redis: Some(target.clone()),
            snapshot: Arc::new(compile::compile(&config, generation)),
            config,
            generation,
        })
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

    /// Makes `config` durable as `generation`: once this returns `Ok`, a
    /// crash at any moment leaves exactly this state on disk.
    pub fn persist(&self, config: &Config, generation: u64) -> std::io::Result<()> {
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

    /// Makes a persisted state the current one.
    pub fn install(&mut self, config: Config, generation: u64, snapshot: Arc<Snapshot>) {
        self.config = config;
        self.generation = generation;
        self.snapshot = snapshot;
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
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
mod tests {
    use super::*;

    fn demo() -> Config {
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
}
