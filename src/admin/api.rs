//! The `/api/v1` routes (in progress: only the configuration export).

use crate::admin::server::Request;
use crate::admin::{Admin, Reply};

pub async fn handle(admin: &Admin, req: &Request) -> Reply {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/api/v1/config") => match serde_json::to_value(admin.store.borrow().config()) {
            Ok(v) => Reply::json(200, &v),
            Err(e) => Reply::error(500, &e.to_string()),
        },
        _ => Reply::error(404, "not found"),
    }
}
