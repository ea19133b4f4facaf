//! The `ringgate` command line: parses arguments and hands over to the
//! library, or to the mock provider (`mock_upstream.rs`, a test and benchmark
//! tool that is part of the binary, not of the gateway's library).

use argh::FromArgs;

mod mock_upstream;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// ringgate: a thread-per-core AI gateway on io_uring.
#[derive(FromArgs)]
struct Cli {
    #[argh(subcommand)]
    command: Command,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Command {
    Serve(ringgate::runtime::ServeArgs),
    MockUpstream(mock_upstream::MockArgs),
    Check(ringgate::runtime::preflight::CheckArgs),
}

fn main() {
    let cli: Cli = argh::from_env();
    let code = match cli.command {
        Command::Serve(args) => ringgate::app::serve(args),
        Command::MockUpstream(args) => mock_upstream::main(args),
        Command::Check(args) => ringgate::runtime::preflight::main(args),
    };
    std::process::exit(code);
}
