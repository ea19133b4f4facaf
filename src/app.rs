//! The application: the wiring of the layers below into a running gateway.
//!
//! `serve` does all fallible start-up work on the main thread (settings,
//! host checks, binding every socket, loading the configuration), then starts
//! one pinned shard per CPU and runs the control thread (admin API, the
//! cluster follower, signals) until a signal drains the shards.

use std::io::Write;
use std::net::TcpListener;
use std::os::fd::IntoRawFd;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use glommio::Placement;

use crate::runtime::{ServeArgs, Settings};

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

    let report = crate::runtime::preflight::run(&crate::runtime::preflight::Needs::of(&settings));
    for line in report
        .lines
        .iter()
        .filter(|l| l.level != crate::runtime::preflight::Level::Pass)
    {
        log::warn!("{line}");
    }
    if let Some(line) = report
        .lines
        .iter()
        .find(|l| l.level == crate::runtime::preflight::Level::Fail)
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
    let (store, durable) = crate::admin::apply::open(&settings)?;
    let snapshot = store.snapshot();

    let proxy = crate::runtime::bind::proxy_listeners(
        settings.proxy,
        settings.shards,
        settings.backlog,
        settings.share_proxy_port,
    )?;
    let admin = crate::runtime::bind::admin_listener(settings.admin, settings.backlog)?;
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

    let mut bells = crate::runtime::bell::bells(settings.shards + 1)
        .map_err(|e| format!("cannot start the executors' wake-up bell: {e}"))?;
    let control_bell = bells.pop().expect("one bell per executor");
    let (links, shards) =
        crate::runtime::worker::start_all(&settings, proxy.sockets, snapshot, sender, bells)?;
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

    let result = control_thread(
        settings.clone(),
        admin,
        links,
        (store, durable),
        stop,
        control_bell,
    );
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

/// Runs the control thread until a signal stops the gateway.
fn control_thread(
    settings: Arc<Settings>,
    admin: TcpListener,
    ends: Vec<crate::runtime::control::ControlEnds>,
    (store, durable): (crate::admin::Store, crate::admin::Durable),
    stop: Arc<AtomicBool>,
    bell: crate::runtime::bell::Bell,
) -> Result<(), String> {
    let ex = crate::runtime::executor::make("control", Placement::Unbound, Duration::ZERO)
        .map_err(|e| format!("cannot start the control executor: {e}"))?;
    let admin_fd = admin.into_raw_fd();
    ex.run(async move {
        bell.listen();
        let plane = Rc::new(
            crate::runtime::control::ControlPlane::connect(ends, Duration::from_secs(5)).await,
        );
        // SAFETY: the fd is a listening TCP socket we own; glommio takes it over.
        let listener =
            unsafe { <glommio::net::TcpListener as std::os::fd::FromRawFd>::from_raw_fd(admin_fd) };
        let admin = crate::admin::Admin::new(settings.clone(), store, durable, plane.clone());
        let follower = admin
            .cluster
            .clone()
            .map(|c| glommio::spawn_local(crate::admin::apply::follow(admin.clone(), c)));
        let server = glommio::spawn_local(admin.serve(listener));
        while !crate::runtime::stopping(&stop) {
            glommio::timer::sleep(Duration::from_millis(50)).await;
        }
        log::info!(
            "signal received: draining (up to {:?})",
            settings.limits.drain_timeout
        );
        server.cancel().await;
        if let Some(f) = follower {
            f.cancel().await;
        }
        plane
            .shutdown(settings.limits.drain_timeout + Duration::from_secs(2))
            .await;
    });
    Ok(())
}
