//! `GET /api/v1/gateways/{id}/keys/{key_id}/spend?period=day|month`: what a
//! key spent in the current UTC day or calendar month, from the cost of its
//! answers (`crate::cost`), summed over every shard of this node.
//!
//! Spend is kept in memory per shard (the current and previous period) and
//! starts at zero when the process starts; in cluster mode each node
//! reports its own. A dollar `budget` plugin enforces limits separately.

use std::collections::BTreeMap;

use serde_json::json;

use crate::admin::Request;
use crate::admin::{Admin, Reply};
use crate::cost::Period;

impl Admin {
    pub(crate) async fn spend(&self, req: &Request, gid: &str, kid: &str) -> Reply {
        let period = match req.param("period") {
            None | Some("") | Some("day") => "day",
            Some("month") => "month",
            Some(other) => {
                return Reply::json(
                    400,
                    &json!({
                        "error": format!("period must be \"day\" or \"month\", not {other:?}"),
                        "field": "period",
                    }),
                )
            }
        };
        {
            let store = self.store.borrow();
            let Some(gw) = store
                .config()
                .gateways
                .iter()
                .find(|g| g.id.as_deref() == Some(gid))
            else {
                return Reply::error(404, &format!("no gateway with id {gid:?}"));
            };
            if !gw.keys.iter().any(|k| k.id.as_deref() == Some(kid)) {
                return Reply::error(404, &format!("no key with id {kid:?} in this gateway"));
            }
        }
        let (day, month) = Period::now();
        let want = if period == "day" { day } else { month };
        let mut total = 0u64;
        let mut by_model: BTreeMap<String, u64> = BTreeMap::new();
        let shards = self.plane.stats().await;
        for s in shards.iter().flat_map(|s| &s.spend) {
            if s.key_id == kid && s.period == want {
                total += s.micros;
            }
        }
        // Per model: the cumulative counters, not per period.
        for c in shards.iter().flat_map(|s| &s.costs) {
            if c.key_id == kid {
                *by_model.entry(c.model.clone()).or_default() += c.micros;
            }
        }
        Reply::json(
            200,
            &json!({
                "gateway_id": gid,
                "key_id": kid,
                "period": period,
                "period_start": want.start(),
                "spend_micro_usd": total,
                "spend_usd": total as f64 / 1e6,
                "since_start_by_model_micro_usd": by_model,
            }),
        )
    }
}
