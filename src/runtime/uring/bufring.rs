//! A ring of provided buffers (`IORING_REGISTER_PBUF_RING`): the kernel
//! picks a buffer for a receive only when data arrives, so armed receives
//! on idle connections hold no memory. The reader copies the data out and
//! the buffer goes straight back ([`BufRing::give`]).

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::IoUring;

pub(super) struct BufRing {
    entries: *mut BufRingEntry,
    layout: Layout,
    count: u16,
    tail: u16,
    size: usize,
    memory: Vec<u8>,
}

impl BufRing {
    pub(super) fn new(ring: &IoUring, count: u16, size: usize, group: u16) -> io::Result<BufRing> {
        assert!(count.is_power_of_two());
        let layout = Layout::from_size_align(
            usize::from(count) * std::mem::size_of::<BufRingEntry>(),
            4096,
        )
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: a non-zero-sized layout.
        let entries = unsafe { alloc_zeroed(layout) } as *mut BufRingEntry;
        if entries.is_null() {
            return Err(io::ErrorKind::OutOfMemory.into());
        }
        let mut bufs = BufRing {
            entries,
            layout,
            count,
            tail: 0,
            size,
            memory: vec![0u8; usize::from(count) * size],
        };
        // SAFETY: `entries` is page-aligned, `count` entries long, and lives
        // as long as the ring (the driver drops the ring first; see `Drop`).
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(entries as u64, count, group, 0)?;
        }
        for bid in 0..count {
            bufs.push(bid);
        }
        bufs.publish();
        Ok(bufs)
    }

    fn push(&mut self, bid: u16) {
        let index = usize::from(self.tail & (self.count - 1));
        // SAFETY: `index` < count; the kernel reads entries only up to the
        // published tail, and this one is past it.
        let entry = unsafe { &mut *self.entries.add(index) };
        entry.set_addr(self.memory[usize::from(bid) * self.size..].as_ptr() as u64);
        entry.set_len(self.size as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail field of the first entry, shared with the kernel.
        let tail = unsafe { &*(BufRingEntry::tail(self.entries) as *const AtomicU16) };
        tail.store(self.tail, Ordering::Release);
    }

    /// Hands buffer `bid` back to the kernel.
    pub(super) fn give(&mut self, bid: u16) {
        self.push(bid);
        self.publish();
    }

    /// The first `len` bytes of buffer `bid`.
    pub(super) fn get(&self, bid: u16, len: usize) -> &[u8] {
        let start = usize::from(bid) * self.size;
        &self.memory[start..start + len.min(self.size)]
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout. The ring that read it
        // is gone by now: `Inner` declares `ring` before `bufs`.
        unsafe { dealloc(self.entries as *mut u8, self.layout) };
    }
}
