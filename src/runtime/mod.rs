//! Shards, pinning, listeners, preflight checks and the control plane.
//!
//! `serve` does all fallible start-up work on the main thread (settings,
//! host checks, binding every socket, loading the configuration), then starts
//! one pinned shard per CPU and runs the control plane (admin API, signals)
//! on the main thread until a signal drains the shards.

pub(crate) mod bell;
pub mod bind;
pub mod conn;
pub mod control;
pub mod preflight;
pub mod settings;
pub mod shard;
pub mod uring;
pub mod worker;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub use settings::{ServeArgs, Settings};

/// Runs the gateway until SIGINT/SIGTERM; returns the process exit code.
pub fn serve(args: ServeArgs) -> i32 {
    let settings = match Settings::resolve(&args) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    init_logger(settings.log_level.as_deref());
    abort_on_panic();
    if !settings.huge_pages {
        no_huge_pages();
    }

    let report = preflight::run(&settings.host_needs());
    for line in report
        .lines
        .iter()
        .filter(|l| l.level != preflight::Level::Pass)
    {
        log::warn!("{line}");
    }
    if let Some(line) = report
        .lines
        .iter()
        .find(|l| l.level == preflight::Level::Fail)
    {
        return fail(&line.to_string());
    }

    let settings = Arc::new(settings);
    match start(settings) {
        Ok(()) => 0,
        Err(e) => fail(&e),
    }
}

fn start(settings: Arc<Settings>) -> Result<(), String> {
    let store = crate::admin::Store::open(&settings)?;
    let snapshot = store.snapshot();

    let proxy = bind::proxy_listeners(
        settings.proxy,
        settings.shards,
        settings.backlog,
        settings.share_proxy_port,
    )?;
    let admin = bind::admin_listener(settings.admin, settings.backlog)?;
    let proxy_addr = proxy.local_addr;
    let admin_addr = admin
        .local_addr()
        .map_err(|e| format!("admin listener: {e}"))?;
    if !admin_addr.ip().is_loopback() && settings.admin_token.is_none() {
        log::warn!(
            "the admin API listens on {admin_addr} (not loopback) without --admin-token: anyone who reaches it controls the gateway"
        );
    }

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| format!("cannot install signal handler: {e}"))?;
    }

    // SIGHUP reopens the access log; without a handler it would end the process.
    let reopen = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, reopen.clone())
        .map_err(|e| format!("cannot install signal handler: {e}"))?;
    let access_log = crate::access_log::Writer::start(&settings.access_log, reopen)?;
    let sender = access_log.as_ref().map(|w| w.sender.clone());

    let mut bells = bell::bells(settings.shards + 1)
        .map_err(|e| format!("cannot start the executors' wake-up bell: {e}"))?;
    let control_bell = bells.pop().expect("one bell per executor");
    let (links, shards) = worker::start_all(&settings, proxy.sockets, snapshot, sender, bells)?;
    println!(
        "ringgate ready: proxy http://{proxy_addr} admin http://{admin_addr} shards {}",
        settings.shards
    );
    let _ = std::io::stdout().flush();
    log::info!(
        "serving: proxy {proxy_addr}, admin {admin_addr}, {} shard(s), data dir {}",
        settings.shards,
        settings.data_dir.display()
    );

    let result = control::run(settings.clone(), admin, links, store, stop, control_bell);
    for handle in shards {
        let _ = handle.join();
    }
    if let Some(writer) = access_log {
        writer.finish();
    }
    log::info!("stopped");
    result
}

/// A panic on a shard would otherwise end that shard's thread alone and
/// leave a process that accepts on some sockets and not others. A bug is
/// better loud: log it and abort, so the supervisor restarts the gateway.
fn abort_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        log::error!(
            "panic on thread {}: {info}; aborting",
            thread.name().unwrap_or("?")
        );
        default(info);
        std::process::abort();
    }));
}

/// One clear line on stderr and exit code 2: how start-up failures end.
/// Opts the process out of transparent huge pages. mimalloc asks for them
/// on its heap; a gateway's heap is small and scattered over many 2 MiB
/// pages, so they cost ~20 MB of RSS at idle, turn heap growth into 2 MiB
/// steps, and (with `defrag=madvise`) can stall a fault on compaction.
fn no_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory of ours.
    let r = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if r != 0 {
        log::debug!(
            "cannot disable transparent huge pages: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn fail(message: &str) -> i32 {
    eprintln!("ringgate: {message}");
    2
}

fn init_logger(level: Option<&str>) {
    let env = env_logger::Env::default().default_filter_or(level.unwrap_or("info"));
    let mut builder = env_logger::Builder::from_env(env);
    if let Some(level) = level {
        builder.parse_filters(level);
    }
    let _ = builder.format_timestamp_micros().try_init();
}

/// True once SIGINT or SIGTERM arrived.
pub(crate) fn stopping(flag: &AtomicBool) -> bool {
    flag.load(Ordering::Relaxed)
}
