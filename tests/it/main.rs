//! The integration tests, in one binary: a module per area, run in parallel.
//!
//! Each test starts the real `ringgate` binary (gateway and mock provider)
//! through the harness in `tests/common/` and talks to it over loopback;
//! `tests/raw/` has the scripted raw-socket peers of the hardening suites.
//! The tests that need the machine to themselves live in the other binary,
//! `tests/alone/main.rs`, which runs them one at a time.
//!
//! `cargo test --test it MODULE::` runs one area.

#[path = "../common/mod.rs"]
mod common;
#[path = "../raw/mod.rs"]
mod raw;

mod admin_api;
mod admin_http;
mod admin_persistence;
mod balancing;
mod bench_scripts;
mod budget;
mod cache;
mod conformance;
mod console;
mod cost;
mod fallbacks;
mod health;
mod http_framing;
mod io_paths;
mod mock_upstream;
mod observability;
mod plugins;
mod provider_credentials;
mod providers;
mod proxy_basic;
mod sse_keepalive;
mod streaming;
mod tls_upstream;
mod trustgate_compat;
mod upstream_faults;
