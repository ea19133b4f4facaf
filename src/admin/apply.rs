//! The apply pipeline: every configuration change goes through it, whether
//! it comes from the admin API ([`Admin::change`]), from another node
//! through Redis (the follower, [`follow`]) or from the store and
//! `--config` at start-up ([`boot`]). The steps, written once against the
//! store interface ([`ConfigStore`], `store.rs`):
//!
//! permit → catch-up → change → compile → commit → install → broadcast.
//!
//! The permit (`Admin::writes`) makes changes one at a time. Catch-up brings
//! this node to the store's newest generation first (or, when a shared store
//! holds an *older* one than this node, because Redis lost its data, writes
//! this node's back, so the highest generation any node has wins). The
//! change is applied to a copy; the copy is compiled, committed (durable,
//! guarded by the generation it started from), installed in the admin store
//! and only then broadcast to the shards. Installed before the shards get
//! it, so once a shard serves a generation the admin API shows it too. A
//! crash after the commit loses nothing: the next start (or the next
//! catch-up of another node) reads the committed state back from the store.
//!
//! In cluster mode a node follows with two tasks on the control thread: a
//! subscriber that syncs on every published generation (and right after it
//! (re)subscribes, which is the catch-up after an outage), and a poll of the
//! generation every `POLL` as the safety net for a missed message. While
//! Redis is unreachable the node keeps serving what it has; admin writes
//! answer 503. Store errors stay typed ([`StoreError`], [`ApplyError`])
//! until [`answer`] turns them into HTTP.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::admin::store::{CatchUp, ConfigStore, Durable, LocalStore, Store, StoreError};
use crate::admin::{Admin, Reply};
use crate::cluster::config::{self, Cluster};
use crate::config::compile;
use crate::config::model::Config;
use crate::config::{ConfigError, Snapshot};
use crate::runtime::control::Lagging;
use crate::runtime::Settings;

/// Why a change was not applied (or, `Lagging`, not yet served everywhere).
pub enum ApplyError<E> {
    /// The admin API is shutting down.
    ShuttingDown,
    /// The change itself refused (its own error).
    Refused(E),
    /// The changed configuration does not compile (a plugin's settings).
    Invalid(ConfigError),
    /// The store could not catch up or commit; nothing was changed.
    Store(StoreError),
    /// Committed as `generation`, but some shards did not acknowledge it yet.
    Lagging(u64, Lagging),
}

impl Admin {
    /// Runs `change` through the pipeline: permit, catch-up, `change` on a
    /// copy of the configuration (it validates), compile, commit, install,
    /// broadcast. Returns `change`'s value once every shard serves it.
    pub async fn change<T, E>(
        &self,
        change: impl FnOnce(&mut Config, SystemTime) -> Result<T, E>,
    ) -> Result<T, ApplyError<E>> {
        let _turn = self
            .writes
            .acquire_permit(1)
            .await
            .map_err(|_| ApplyError::ShuttingDown)?;
        self.catch_up().await.map_err(ApplyError::Store)?;
        let (mut config, generation) = {
            let store = self.store.borrow();
            (store.config().clone(), store.generation())
        };
        let out = change(&mut config, SystemTime::now()).map_err(ApplyError::Refused)?;
        let snapshot =
            Arc::new(compile::compile(&config, generation + 1).map_err(ApplyError::Invalid)?);
        self.durable
            .commit(&config, generation, generation + 1)
            .await
            .map_err(ApplyError::Store)?;
        self.install(config, snapshot)
            .await
            .map_err(|lagging| ApplyError::Lagging(generation + 1, lagging))?;
        Ok(out)
    }

    /// Brings this node to the store's generation (or the store to this
    /// node's, when it lost its data). The caller holds the write permit.
    async fn catch_up(&self) -> Result<(), StoreError> {
        let ours = self.store.borrow().generation();
        match self.durable.catch_up(ours).await? {
            CatchUp::Even => {}
            CatchUp::Newer(config, generation) => {
                let snapshot = match compile::compile(&config, generation) {
                    Ok(s) => Arc::new(s),
                    Err(e) => {
                        log::error!(
                            "{}: generation {generation} does not compile ({e}); still serving generation {ours}",
                            self.durable.describe()
                        );
                        return Ok(());
                    }
                };
                if let Err(lagging) = self.install(config, snapshot).await {
                    log::error!("generation {generation} from the store: {lagging}");
                }
                log::info!(
                    "now serving generation {generation} from {}",
                    self.durable.describe()
                );
            }
            CatchUp::Invalid(generation, e) => log::error!(
                "{}: generation {generation} is not a valid configuration ({e}); still serving generation {ours}",
                self.durable.describe()
            ),
            CatchUp::Behind(theirs) => {
                log::warn!(
                    "{} holds generation {theirs}, this node {ours} (Redis lost its data?): writing ours back",
                    self.durable.describe()
                );
                let config = self.store.borrow().config().clone();
                match self.durable.commit(&config, theirs, ours).await {
                    Err(StoreError::Conflict(stored)) => {
                        log::info!("another node wrote generation {stored} first")
                    }
                    other => other?,
                }
            }
        }
        Ok(())
    }

    /// The last steps: make a committed state this node's, then send it to
    /// every shard.
    async fn install(&self, config: Config, snapshot: Arc<Snapshot>) -> Result<(), Lagging> {
        self.store.borrow_mut().install(config, snapshot.clone());
        self.plane.apply(snapshot).await
    }

    /// A catch-up under the write permit (one change at a time).
    pub async fn sync(&self) {
        let Ok(_turn) = self.writes.acquire_permit(1).await else {
            return;
        };
        let _ = self.catch_up().await;
    }
}

/// The HTTP answer for a change that did not go through; a refusal of the
/// change itself is already an answer.
pub fn answer(e: ApplyError<Reply>) -> Reply {
    match e {
        ApplyError::ShuttingDown => Reply::error(503, "the admin API is shutting down"),
        ApplyError::Refused(reply) => reply,
        ApplyError::Invalid(e) => Reply::json(e.status(), &e.to_json()),
        ApplyError::Store(StoreError::Conflict(stored)) => Reply::error(
            409,
            &format!("the configuration changed on another node meanwhile (generation {stored}); nothing was changed, retry"),
        ),
        ApplyError::Store(StoreError::Unreachable { store, error }) => Reply::error(
            503,
            &format!(
                "the configuration store {store} is {error}; nothing was changed (this node keeps serving its last configuration)"
            ),
        ),
        ApplyError::Store(StoreError::Write { path, error }) => Reply::error(
            500,
            &format!(
                "the change could not be stored in {}: {error}; nothing was changed",
                path.display()
            ),
        ),
        ApplyError::Lagging(generation, lagging) => Reply::error(
            503,
            &format!(
                "the change is stored durably (generation {generation}) but {lagging}; they will serve it once they catch up"
            ),
        ),
    }
}

/// Start-up, through the same steps before any shard runs (so nothing to
/// broadcast): catch up from the store, then `file` (`--config`) as the
/// change, compile, commit. A store that holds nothing and `seeds_empty` is
/// committed as generation 1. `file` comes with how errors name it.
/// Returns what the shards start with.
pub async fn boot(
    durable: &dyn ConfigStore,
    file: Option<(String, Config)>,
) -> Result<Store, String> {
    let failed = |e: String| format!("{}: {e}", durable.describe());
    let (mut config, mut generation) = (Config::default(), 0);
    match durable
        .catch_up(0)
        .await
        .map_err(|e| failed(e.to_string()))?
    {
        CatchUp::Newer(c, g) => (config, generation) = (c, g),
        // `--config` replaces whatever is stored.
        CatchUp::Invalid(g, _) if file.is_some() => generation = g,
        CatchUp::Invalid(g, e) => {
            return Err(failed(format!(
                "generation {g} is not a valid configuration: {e}"
            )))
        }
        CatchUp::Even | CatchUp::Behind(_) => {}
    }
    let stored = generation;
    let mut source = None;
    if let Some((named, file)) = file {
        source = Some(named);
        config = file;
        generation += 1;
        log::info!(
            "--config replaces the configuration in {} (generation {generation})",
            durable.describe()
        );
    } else if generation == 0 && durable.seeds_empty() {
        generation = 1;
    }
    let snapshot = Arc::new(
        compile::compile(&config, generation).map_err(|e| match &source {
            Some(named) => format!("{named}: {e}"),
            None => failed(format!(
                "generation {generation} is not a valid configuration: {e}"
            )),
        })?,
    );
    if generation != stored {
        durable
            .commit(&config, stored, generation)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => failed(format!("{e}; start again")),
                e => failed(e.to_string()),
            })?;
    }
    log::info!(
        "configuration generation {generation} from {}",
        durable.describe()
    );
    Ok(Store::new(config, snapshot))
}

/// Opens the configured store (the data dir, or Redis with `--store`) and
/// runs [`boot`] on a short-lived executor of its own thread, before the
/// shards start. An unreachable Redis, a damaged state file or an invalid
/// `--config` stops start-up. Returns the state to serve and the store for
/// the admin side (the data dir's with its lock held).
pub fn open(settings: &Settings) -> Result<(Store, Durable), String> {
    let file = match &settings.config {
        None => None,
        Some(path) => {
            let bytes =
                std::fs::read(path).map_err(|e| format!("config {}: {e}", path.display()))?;
            let named = format!("config {}", path.display());
            let config =
                compile::load(&bytes, SystemTime::now()).map_err(|e| format!("{named}: {e}"))?;
            Some((named, config))
        }
    };
    // The data dir (locked here), or where Redis is.
    let at = match settings.redis.clone() {
        None => Ok(LocalStore::open(&settings.data_dir)?),
        Some(target) => Err(target),
    };
    let thread = std::thread::spawn(move || {
        let ex = crate::runtime::executor::make(
            "store-load",
            glommio::Placement::Unbound,
            Duration::ZERO,
        )
        .map_err(|e| format!("cannot start an executor: {e}"))?;
        ex.run(async move {
            match at {
                Ok(local) => Ok((boot(&local, file).await?, Durable::Local(local))),
                Err(target) => {
                    let store = boot(&Cluster::new(target.clone()), file).await?;
                    Ok((store, Durable::Redis(target)))
                }
            }
        })
    });
    thread
        .join()
        .map_err(|_| "the store loader thread panicked".to_string())?
}

/// Follows Redis until the control thread stops: the subscriber and the poll.
pub async fn follow(admin: Rc<Admin>, cluster: Rc<Cluster>) {
    let _subscriber = {
        let (admin, cluster) = (admin.clone(), cluster.clone());
        glommio::spawn_local(async move {
            loop {
                match config::subscribe(cluster.target()).await {
                    Ok(mut conn) => {
                        // Whatever was published while we were away.
                        admin.sync().await;
                        while conn.recv().await.is_ok() {
                            admin.sync().await;
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
        glommio::timer::sleep(config::POLL).await;
        admin.sync().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::store::tests::{demo, scratch};

    /// Start-up through the pipeline on the data dir: an empty one is
    /// committed as generation 1, `--config` becomes the next generation and
    /// is durable before anything is served, a restart reads it back.
    #[test]
    fn boot_seeds_commits_and_reads_back() {
        let dir = scratch("boot");
        let boot_on = |file: Option<(String, Config)>| {
            let local = LocalStore::open(&dir).unwrap();
            futures_lite::future::block_on(boot(&local, file)).unwrap()
        };
        let empty = boot_on(None);
        assert_eq!(empty.generation(), 1);
        assert_eq!(empty.snapshot().generation, 1);
        assert!(dir.join(crate::admin::store::STATE_FILE).exists());

        let cfg = demo();
        let replaced = boot_on(Some(("config test".into(), cfg.clone())));
        assert_eq!(replaced.generation(), 2);
        assert_eq!(replaced.snapshot().gateways.len(), 1);

        let again = boot_on(None);
        assert_eq!(again.generation(), 2);
        assert_eq!(again.config(), &cfg);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
