//! `GET /metrics` (Prometheus text) and `GET /api/v1/status` (shards, their
//! CPUs, connections and configuration generation): both ask every shard for
//! a copy of its counters over the control channels.

use serde_json::json;

use crate::admin::Request;
use crate::admin::{Admin, Reply};
use crate::metrics::render::{render, Process};

impl Admin {
    pub(crate) async fn metrics(&self) -> Reply {
        let shards = self.plane.stats().await;
        let (snapshot, generation) = {
            let store = self.store.borrow();
            (store.snapshot(), store.generation())
        };
        let process = Process {
            generation,
            last_apply: self.plane.last_apply(),
            uptime: self.started.elapsed(),
        };
        Reply {
            status: 200,
            body: render(&shards, &snapshot, &process).into_bytes(),
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            headers: Vec::new(),
        }
    }

    pub(crate) async fn status(&self, req: &Request) -> Reply {
        if req.method != "GET" {
            return Reply::error(405, "method not allowed");
        }
        let shards = self.plane.stats().await;
        let generation = self.store.borrow().generation();
        let list: Vec<_> = shards
            .iter()
            .map(|s| {
                json!({
                    "shard": s.shard,
                    "cpu": s.cpu,
                    "open_connections": s.open_connections,
                    "config_generation": s.generation,
                })
            })
            .collect();
        Reply::json(
            200,
            &json!({
                "version": env!("CARGO_PKG_VERSION"),
                "uptime_seconds": self.started.elapsed().as_secs(),
                "config_generation": generation,
                "shards_expected": self.plane.shards(),
                "shards": list,
            }),
        )
    }
}
