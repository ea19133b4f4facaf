//! Listening sockets, built with socket2 on the main thread before any shard
//! starts, so that a taken port is a clean start-up error and the kernel's
//! `SO_REUSEPORT` group is complete before the first accept.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{IntoRawFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

pub struct ProxySockets {
    /// The address actually bound (port 0 resolved).
    pub local_addr: SocketAddr,
    /// One listening socket per shard, all on `local_addr`.
    pub sockets: Vec<RawFd>,
}

fn socket(addr: SocketAddr, reuse_port: bool, backlog: i32) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    s.set_nodelay(true)?;
    s.bind(&addr.into())?;
    s.listen(backlog)?;
    Ok(s)
}

fn explain(what: &str, addr: SocketAddr, e: std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => format!("{what} address {addr} is already in use (another process listens there: pick another with --{what})"),
        std::io::ErrorKind::PermissionDenied => format!("{what} address {addr}: permission denied (ports below 1024 need CAP_NET_BIND_SERVICE)"),
        std::io::ErrorKind::AddrNotAvailable => format!("{what} address {addr} is not an address of this host"),
        _ => format!("cannot listen on {what} address {addr}: {e}"),
    }
}

/// `shards` sockets on one address with `SO_REUSEPORT`: the kernel spreads
/// new connections over them, and each shard accepts only on its own.
///
/// `SO_REUSEPORT` would also let a second gateway (same user) join the group
/// and silently take half the connections, so unless `share` is set the
/// address is first probed with a socket that does not ask to share it:
/// that bind fails while anyone listens there.
pub fn proxy_listeners(
    addr: SocketAddr,
    shards: usize,
    backlog: i32,
    share: bool,
) -> Result<ProxySockets, String> {
    reuse_port_group("proxy", addr, shards, backlog, share)
}

/// `n` sockets on `addr` in one `SO_REUSEPORT` group, probed first unless
/// `share` (see [`proxy_listeners`]). `what` names the address, and its
/// command-line flag, in errors. The mock provider binds with it too.
pub fn reuse_port_group(
    what: &str,
    addr: SocketAddr,
    n: usize,
    backlog: i32,
    share: bool,
) -> Result<ProxySockets, String> {
    if !share && addr.port() != 0 {
        probe_unshared(what, addr)?;
    }
    let first = socket(addr, true, backlog).map_err(|e| explain(what, addr, e))?;
    let local_addr = first
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .ok_or_else(|| format!("{what} listener has no address"))?;
    let mut sockets = vec![first.into_raw_fd()];
    for _ in 1..n {
        let s = socket(local_addr, true, backlog).map_err(|e| explain(what, local_addr, e))?;
        sockets.push(s.into_raw_fd());
    }
    Ok(ProxySockets {
        local_addr,
        sockets,
    })
}

/// Fails when some process already listens on `addr`.
fn probe_unshared(what: &str, addr: SocketAddr) -> Result<(), String> {
    let taken = |e: std::io::Error| {
        match e.kind() {
        std::io::ErrorKind::AddrInUse if what == "proxy" => format!(
            "proxy address {addr} is already in use (another gateway listens there?): pick another with --proxy, or pass --share-proxy-port on to share it on purpose (zero-downtime upgrade: start the new binary, then stop the old one)"
        ),
        _ => explain(what, addr, e),
    }
    };
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| explain(what, addr, e))?;
    s.set_reuse_address(true)
        .map_err(|e| explain(what, addr, e))?;
    s.bind(&addr.into()).map_err(taken)?;
    Ok(())
}

/// The admin listener (one socket, served by the control thread).
pub fn admin_listener(addr: SocketAddr, backlog: i32) -> Result<TcpListener, String> {
    let s = socket(addr, false, backlog.min(1024)).map_err(|e| explain("admin", addr, e))?;
    Ok(s.into())
}
