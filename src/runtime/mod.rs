//! Shards, pinning, listeners, preflight checks and the control plane.

pub mod preflight;

use argh::FromArgs;

/// run the gateway: proxy listener, admin listener, embedded store
#[derive(FromArgs, Debug, Clone)]
#[argh(subcommand, name = "serve")]
pub struct ServeArgs {
    /// proxy listen address (default 0.0.0.0:8081) [RINGGATE_PROXY]
    #[argh(option)]
    pub proxy: Option<String>,
}

/// Runs the gateway until SIGINT/SIGTERM; returns the process exit code.
pub fn serve(_args: ServeArgs) -> i32 {
    2
}
