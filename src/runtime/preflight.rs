//! Host checks shared by `ringgate check` and `serve` start-up.
//!
//! glommio has no fallback without io_uring and refuses to start below
//! 512 KiB of locked memory; it panics or exits deep inside the executor when
//! either is missing. These checks find the problem first and say how to fix it.

use std::fmt;

use argh::FromArgs;

/// check the host: io_uring, memlock, nofile, somaxconn, CPUs
#[derive(FromArgs, Debug, Clone)]
#[argh(subcommand, name = "check")]
pub struct CheckArgs {
    /// shards the gateway will run (default: online CPUs)
    #[argh(option)]
    pub shards: Option<usize>,
    /// client connections per shard to budget file descriptors for (default 16384)
    #[argh(option, default = "16384")]
    pub max_connections: usize,
    /// the data path `serve --io` would use: auto, uring or glommio (default auto) [RINGGATE_IO]
    #[argh(option)]
    pub io: Option<String>,
}

/// Locked memory glommio's reactor insists on.
pub const MIN_MEMLOCK: u64 = 512 << 10;
/// A listen backlog below this drops connections in bursts.
pub const MIN_SOMAXCONN: u32 = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Pass,
    Warn,
    Fail,
}

#[derive(Debug, Clone)]
pub struct Line {
    pub level: Level,
    pub what: &'static str,
    pub detail: String,
    pub fix: Option<String>,
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.level {
            Level::Pass => "PASS",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        write!(f, "{tag} {}: {}", self.what, self.detail)?;
        if let Some(fix) = &self.fix {
            write!(f, " (fix: {fix})")?;
        }
        Ok(())
    }
}

/// What the gateway about to start needs from the host.
#[derive(Debug, Clone, Copy)]
pub struct Needs {
    pub shards: usize,
    pub fds: u64,
    pub io: crate::runtime::settings::IoPath,
}

impl Needs {
    /// What `settings` ask of the host.
    pub fn of(settings: &crate::runtime::Settings) -> Needs {
        Needs {
            shards: settings.shards,
            // A client and an upstream socket per connection, plus pools and files.
            fds: (settings.shards * settings.limits.max_connections * 2) as u64 + 256,
            io: settings.io,
        }
    }
}

pub struct Report {
    pub lines: Vec<Line>,
}

pub fn run(needs: &Needs) -> Report {
    Report {
        lines: vec![
            io_uring(),
            data_path(needs.io),
            memlock(),
            nofile(needs.fds),
            backlog(),
            cpus(needs.shards),
        ],
    }
}

fn line(level: Level, what: &'static str, detail: String, fix: Option<&str>) -> Line {
    Line {
        level,
        what,
        detail,
        fix: fix.map(str::to_string),
    }
}

fn io_uring() -> Line {
    if let Ok(v) = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled") {
        if v.trim() == "2" {
            return line(
                Level::Fail,
                "io_uring",
                "disabled by kernel.io_uring_disabled=2".into(),
                Some("sysctl -w kernel.io_uring_disabled=0"),
            );
        }
    }
    // Ask the kernel for a tiny ring: the only check that also sees seccomp.
    let mut params = [0u8; 120]; // struct io_uring_params
                                 // SAFETY: io_uring_setup reads and writes `params`, which is large enough.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 2u32, params.as_mut_ptr()) };
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        let fix = match err.raw_os_error() {
            Some(libc::ENOSYS) => "a kernel of 5.8 or newer with CONFIG_IO_URING",
            Some(libc::EPERM) => "allow io_uring: kernel.io_uring_disabled=0, or a container seccomp profile that permits io_uring_setup/enter/register",
            Some(libc::ENOMEM) => "raise the locked-memory limit (ulimit -l, LimitMEMLOCK=)",
            _ => "see tuning/README.md",
        };
        return line(
            Level::Fail,
            "io_uring",
            format!("io_uring_setup failed: {err}"),
            Some(fix),
        );
    }
    // SAFETY: fd is the ring we just created and own.
    unsafe { libc::close(fd as i32) };
    line(
        Level::Pass,
        "io_uring",
        format!("usable (kernel {})", kernel_release()),
        None,
    )
}

/// Which data path the proxy's sockets take: the shard's own ring where the
/// kernel has what it needs, else glommio's sockets.
fn data_path(io: crate::runtime::settings::IoPath) -> Line {
    use crate::runtime::settings::IoPath;
    const RING: &str = "the shard's own io_uring (SINGLE_ISSUER|DEFER_TASKRUN, provided buffers)";
    if io == IoPath::Glommio {
        return line(
            Level::Pass,
            "data path",
            "glommio's sockets (chosen with --io glommio)".into(),
            None,
        );
    }
    match crate::runtime::uring::probe() {
        Ok(()) => line(Level::Pass, "data path", RING.into(), None),
        Err(e) if io == IoPath::Uring => line(
            Level::Fail,
            "data path",
            format!("--io uring: {e}"),
            Some("Linux 6.1 or newer, or --io auto / glommio"),
        ),
        Err(e) => line(
            Level::Warn,
            "data path",
            format!("glommio's sockets (the fallback): {e}"),
            Some("Linux 6.1 or newer for the shard's own ring"),
        ),
    }
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn rlimit(resource: libc::__rlimit_resource_t) -> (u64, u64) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    unsafe { libc::getrlimit(resource, &mut r) };
    (r.rlim_cur as u64, r.rlim_max as u64)
}

fn human(bytes: u64) -> String {
    if bytes == libc::RLIM_INFINITY as u64 {
        "unlimited".into()
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

fn memlock() -> Line {
    let (cur, _) = rlimit(libc::RLIMIT_MEMLOCK);
    if cur < MIN_MEMLOCK {
        return line(
            Level::Fail,
            "memlock",
            format!(
                "RLIMIT_MEMLOCK is {}, glommio needs at least {}",
                human(cur),
                human(MIN_MEMLOCK)
            ),
            Some("ulimit -l 65536, or LimitMEMLOCK=64M in the systemd unit (tuning/limits.conf)"),
        );
    }
    line(
        Level::Pass,
        "memlock",
        format!("RLIMIT_MEMLOCK {}", human(cur)),
        None,
    )
}

fn nofile(need: u64) -> Line {
    let (mut cur, max) = rlimit(libc::RLIMIT_NOFILE);
    if cur < need && max > cur {
        // Raise the soft limit as far as the hard limit allows: servers are
        // expected to, and it needs no privilege.
        let r = libc::rlimit {
            rlim_cur: need.min(max) as libc::rlim_t,
            rlim_max: max as libc::rlim_t,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) } == 0 {
            cur = need.min(max);
        }
    }
    if cur < need {
        return line(
            Level::Warn,
            "nofile",
            format!("RLIMIT_NOFILE is {cur} (hard {max}), the connection caps need {need}: connections beyond it fail with EMFILE"),
            Some("ulimit -n 1048576, LimitNOFILE=1048576 (tuning/limits.conf), or a lower --max-connections"),
        );
    }
    line(
        Level::Pass,
        "nofile",
        format!("RLIMIT_NOFILE {cur}, connection caps need {need}"),
        None,
    )
}

fn backlog() -> Line {
    match crate::runtime::settings::somaxconn() {
        Some(v) if v < MIN_SOMAXCONN => line(
            Level::Warn,
            "somaxconn",
            format!("net.core.somaxconn is {v}: bursts of new connections will be dropped"),
            Some("sysctl -w net.core.somaxconn=65535 (tuning/sysctl.conf)"),
        ),
        Some(v) => line(
            Level::Pass,
            "somaxconn",
            format!("net.core.somaxconn {v}"),
            None,
        ),
        None => line(
            Level::Warn,
            "somaxconn",
            "cannot read /proc/sys/net/core/somaxconn".into(),
            None,
        ),
    }
}

fn cpus(shards: usize) -> Line {
    let online = std::thread::available_parallelism().map_or(1, |n| n.get());
    if shards > online {
        return line(
            Level::Warn,
            "cpus",
            format!("{shards} shards on {online} CPUs: shards will share cores"),
            Some(&format!("--shards {online}")),
        );
    }
    line(
        Level::Pass,
        "cpus",
        format!("{online} online, {shards} shard(s)"),
        None,
    )
}

/// `ringgate check`: prints every line; exit 1 when anything failed.
pub fn main(args: CheckArgs) -> i32 {
    let online = std::thread::available_parallelism().map_or(1, |n| n.get());
    let shards = args.shards.unwrap_or(online);
    let io = match crate::runtime::settings::IoPath::from_flag(args.io.as_deref()) {
        Ok(io) => io,
        Err(e) => {
            eprintln!("ringgate: {e}");
            return 2;
        }
    };
    let needs = Needs {
        shards,
        fds: (shards * args.max_connections * 2) as u64 + 256,
        io,
    };
    let report = run(&needs);
    for l in &report.lines {
        println!("{l}");
    }
    let failed = report
        .lines
        .iter()
        .filter(|l| l.level == Level::Fail)
        .count();
    let warned = report
        .lines
        .iter()
        .filter(|l| l.level == Level::Warn)
        .count();
    println!(
        "{} checks: {} passed, {warned} warnings, {failed} failed",
        report.lines.len(),
        report.lines.len() - failed - warned
    );
    i32::from(failed > 0)
}
