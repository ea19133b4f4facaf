//! The write steps of a configuration change, and how a node follows the
//! configuration in Redis (cluster mode).
//!
//! A change (`api.rs`) holds the write permit, catches up
//! ([`Admin::before_change`]), validates and compiles, makes the result
//! durable ([`Admin::commit`]: the data dir's `state.json`, or Redis), and
//! only then broadcasts it to the shards.
//!
//! In cluster mode a node follows with two tasks on the control thread
//! ([`follow`]): a subscriber that syncs on every published generation (and
//! right after it (re)subscribes, which is the catch-up after an outage),
//! and a poll of the generation every `POLL` as the safety net for a missed
//! message. A sync ([`catch_up`]) loads a newer generation and applies it
//! through `ControlPlane::apply`; when Redis holds an *older* generation
//! than the node (it was restarted without its data), the node writes its
//! own state back, so the highest generation any node has wins.
//!
//! While Redis is unreachable the node keeps serving what it has; admin
//! writes answer 503. The Redis side (`cluster/config.rs`) reports typed
//! errors; the HTTP answers are made here.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::admin::{Admin, Reply};
use crate::cluster::config::{self, Cluster, CommitError};
use crate::cluster::resp::Error;
use crate::cluster::RedisUrl;
use crate::config::compile;
use crate::runtime::control::Lagging;

impl Admin {
    /// Before a change (write permit held): in cluster mode, catch up with
    /// Redis, so the change starts from the newest generation; 503 when
    /// Redis cannot be reached.
    pub async fn before_change(&self) -> Result<(), Reply> {
        match &self.cluster {
            None => Ok(()),
            Some(c) => catch_up(c, self)
                .await
                .map_err(|e| unavailable(c.target(), &e)),
        }
    }

    /// Makes a change durable before it is broadcast: the data dir's
    /// `state.json`, or Redis in cluster mode.
    pub async fn commit(
        &self,
        config: &crate::config::model::Config,
        generation: u64,
    ) -> Result<(), Reply> {
        if let Some(c) = &self.cluster {
            return c.commit(config, generation).await.map_err(|e| match e {
                CommitError::Conflict(stored) => Reply::error(
                    409,
                    &format!("the configuration changed on another node meanwhile (generation {stored}); nothing was changed, retry"),
                ),
                CommitError::Unreachable(e) => unavailable(c.target(), &e),
            });
        }
        let store = self.store.borrow();
        store.persist(config, generation).map_err(|e| {
            let path = store.state_path();
            log::error!(
                "cannot store generation {generation} in {}: {e}",
                path.display()
            );
            Reply::error(
                500,
                &format!(
                    "the change could not be stored in {}: {e}; nothing was changed",
                    path.display()
                ),
            )
        })
    }
}

impl Admin {
    /// The last steps of every change, a local one (after [`Admin::commit`])
    /// or one read from Redis: compile `config` as `generation`, install it
    /// in the admin store, then broadcast it to every shard. Installed before
    /// the shards get it, so once a shard serves a generation this node's
    /// admin API shows it too. The caller holds the write permit.
    pub async fn publish(
        &self,
        config: crate::config::model::Config,
        generation: u64,
    ) -> Result<(), Lagging> {
        let snapshot = Arc::new(compile::compile(&config, generation));
        self.store
            .borrow_mut()
            .install(config, generation, snapshot.clone());
        self.plane.apply(snapshot).await
    }
}

/// Brings this node to Redis's generation (or Redis to this node's,
/// when Redis lost its data). The caller holds the admin write permit.
pub async fn catch_up(cluster: &Cluster, admin: &Admin) -> Result<(), Error> {
    let result = catch_up_inner(cluster, admin).await;
    cluster.note(&result);
    result
}

async fn catch_up_inner(cluster: &Cluster, admin: &Admin) -> Result<(), Error> {
    let theirs = cluster.generation().await?;
    let ours = admin.store.borrow().generation();
    if theirs > ours {
        let (generation, doc) = cluster.read().await?;
        let Some(doc) = doc.filter(|_| generation > ours) else {
            return Ok(());
        };
        let config = match crate::config::compile::parse_state(&doc) {
            Ok(c) => c,
            Err(e) => {
                log::error!("{}: generation {generation} is not a valid configuration ({e}); still serving generation {ours}", cluster.target().shown);
                return Ok(());
            }
        };
        if let Err(lagging) = admin.publish(config, generation).await {
            log::error!("generation {generation} from Redis: {lagging}");
        }
        log::info!(
            "now serving generation {generation} from {}",
            cluster.target().shown
        );
    } else if theirs < ours {
        log::warn!(
            "{} holds generation {theirs}, this node {ours} (Redis lost its data?): writing ours back",
            cluster.target().shown
        );
        let config = admin.store.borrow().config().clone();
        if let Some(stored) = cluster.write(theirs, ours, &config).await? {
            log::info!("another node wrote generation {stored} first");
        }
    }
    Ok(())
}

/// `catch_up` under the admin write permit (one change at a time).
pub async fn sync(cluster: &Cluster, admin: &Admin) {
    let Ok(_turn) = admin.writes.acquire_permit(1).await else {
        return;
    };
    let _ = catch_up(cluster, admin).await;
}

/// The 503 an admin write gets while Redis cannot be reached.
pub fn unavailable(target: &RedisUrl, e: &Error) -> Reply {
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
                match config::subscribe(cluster.target()).await {
                    Ok(mut conn) => {
                        // Whatever was published while we were away.
                        sync(&cluster, &admin).await;
                        while conn.recv().await.is_ok() {
                            sync(&cluster, &admin).await;
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
        sync(&cluster, &admin).await;
    }
}
