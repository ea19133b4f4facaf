//! An OpenAI-compatible mock provider for tests and benchmarks (in progress).

use argh::FromArgs;

/// run an OpenAI-compatible mock upstream (tests and benchmarks)
#[derive(FromArgs, Debug, Clone)]
#[argh(subcommand, name = "mock-upstream")]
pub struct MockArgs {
    /// address to listen on (default 127.0.0.1:9000; port 0 picks a free one)
    #[argh(option, default = "String::from(\"127.0.0.1:9000\")")]
    pub listen: String,
    /// name sent back in the `x-mock-name` header of every response
    #[argh(option)]
    pub name: Option<String>,
    /// executors (threads) to run, unpinned (default 1)
    #[argh(option, default = "1")]
    pub shards: usize,
}

/// Runs the mock until killed; returns the process exit code.
pub fn main(_args: MockArgs) -> i32 {
    eprintln!("mock-upstream: not built yet");
    2
}
