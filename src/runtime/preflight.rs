//! Host checks shared by `ringgate check` and `serve` start-up.

use argh::FromArgs;

/// check the host: io_uring, memlock, nofile, somaxconn, CPUs
#[derive(FromArgs, Debug, Clone)]
#[argh(subcommand, name = "check")]
pub struct CheckArgs {}

pub fn main(_args: CheckArgs) -> i32 {
    0
}
