//! The admin side, on the control thread: an HTTP server (`server`), the
//! API routes (`api`), the stores (`store`) and the apply pipeline every
//! change goes through (`apply`). A change is validated against the whole
//! configuration, compiled, made durable, and only then broadcast to every
//! shard; the caller hears back once every shard serves it.

pub mod api;
pub mod apply;
pub mod console;
pub mod server;
pub mod spend;
pub mod stats;
pub mod status;
pub mod store;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

pub use store::{ConfigStore, Durable, LocalStore, Store};

use crate::runtime::control::ControlPlane;
use crate::runtime::Settings;

/// The control thread's admin state.
pub struct Admin {
    pub settings: Arc<Settings>,
    /// What this node serves.
    pub store: RefCell<Store>,
    /// Where it is kept durably: the data dir, or Redis in cluster mode.
    pub durable: Rc<dyn ConfigStore>,
    pub plane: Rc<ControlPlane>,
    pub started: std::time::Instant,
    /// One mutation at a time, held from validation to the answer.
    pub writes: glommio::sync::Semaphore,
    /// Cluster mode: the configuration in Redis.
    pub cluster: Option<Rc<crate::cluster::config::Cluster>>,
}

impl Admin {
    /// `durable`: the store [`apply::open`] opened, kept for the process.
    pub fn new(
        settings: Arc<Settings>,
        store: Store,
        durable: Durable,
        plane: Rc<ControlPlane>,
    ) -> Rc<Admin> {
        let (durable, cluster): (Rc<dyn ConfigStore>, _) = match durable {
            Durable::Local(local) => (Rc::new(local), None),
            Durable::Redis(target) => {
                let cluster = Rc::new(crate::cluster::config::Cluster::new(target));
                (cluster.clone(), Some(cluster))
            }
        };
        Rc::new(Admin {
            cluster,
            durable,
            settings,
            store: RefCell::new(store),
            plane,
            started: std::time::Instant::now(),
            writes: glommio::sync::Semaphore::new(1),
        })
    }
}

/// A parsed admin request, owned (admin calls are rare and small).
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A query parameter's raw value.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.as_deref()?.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then_some(v)
        })
    }
}

/// An admin answer: status, body and its type, and any headers of its own
/// (the server adds framing and the security headers every answer gets).
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply {
            status,
            body: serde_json::to_vec(value).unwrap_or_default(),
            content_type: "application/json",
            headers: Vec::new(),
        }
    }

    pub fn error(status: u16, message: &str) -> Reply {
        Reply::json(status, &serde_json::json!({ "error": message }))
    }

    pub fn no_content() -> Reply {
        Reply {
            status: 204,
            body: Vec::new(),
            content_type: "application/json",
            headers: Vec::new(),
        }
    }
}
