//! Every glommio executor of the process is made here (the shards, the
//! control thread, the start-up Redis loader, the mock provider's), with
//! the same small I/O memory.

use std::time::Duration;

use glommio::{GlommioError, LocalExecutor, LocalExecutorBuilder, Placement};

/// Each executor's I/O memory. The proxy's sockets use the shard's own ring
/// (`uring/`); glommio's rings carry timers, files and the control plane.
const IO_MEMORY: usize = 256 << 10;

/// An executor named `name` on `placement`. A nonzero `spin` keeps it
/// spinning that long before it parks: waking a parked executor on an idle
/// (v)CPU costs tens of microseconds, so a short spin keeps a busy one awake.
pub fn make(
    name: &str,
    placement: Placement,
    spin: Duration,
) -> Result<LocalExecutor, GlommioError<()>> {
    let mut builder = LocalExecutorBuilder::new(placement)
        .name(name)
        .io_memory(IO_MEMORY);
    if !spin.is_zero() {
        builder = builder.spin_before_park(spin);
    }
    builder.make()
}
