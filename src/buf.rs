//! A connection's read buffer: filled by the socket, consumed by the parser,
//! grown on demand up to a limit and compacted instead of reallocated.

use std::io;

use futures_lite::{AsyncRead, AsyncReadExt};

pub struct ReadBuf {
    data: Vec<u8>,
    start: usize,
    end: usize,
    initial: usize,
    max: usize,
    /// Bytes consumed since the buffer was made (request sizes for metrics).
    consumed: u64,
}

impl ReadBuf {
    /// `initial` bytes now, growing to at most `max`.
    pub fn new(initial: usize, max: usize) -> ReadBuf {
        ReadBuf {
            data: vec![0; initial.min(max)],
            start: 0,
            end: 0,
            initial,
            max,
            consumed: 0,
        }
    }

    /// The bytes read and not yet consumed.
    pub fn filled(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// True when no more bytes fit without consuming some first.
    pub fn is_full(&self) -> bool {
        self.len() >= self.max
    }

    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        let n = n.min(self.len());
        self.consumed += n as u64;
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            // An idle connection should not keep a buffer grown for one big head.
            if self.data.len() > self.initial * 4 {
                self.data.truncate(self.initial);
                self.data.shrink_to_fit();
            }
        }
    }

    /// The storage, when nothing is buffered (the buffer is empty after,
    /// and grows again on the next read unless [`ReadBuf::restore`]d).
    pub fn release(&mut self) -> Option<Vec<u8>> {
        if !self.is_empty() || self.data.is_empty() {
            return None;
        }
        self.start = 0;
        self.end = 0;
        Some(std::mem::take(&mut self.data))
    }

    /// Gives an empty buffer storage back (sized to the initial size).
    pub fn restore(&mut self, mut data: Vec<u8>) {
        if !self.data.is_empty() {
            return;
        }
        data.resize(self.initial.min(self.max).max(1), 0);
        self.data = data;
        self.start = 0;
        self.end = 0;
    }

    /// Bytes of storage held.
    pub fn capacity(&self) -> usize {
        self.data.len()
    }

    /// Bytes consumed so far, over the buffer's whole life.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Drops everything buffered.
    pub fn clear(&mut self) {
        self.consume(self.len());
    }

    fn spare(&mut self) -> &mut [u8] {
        if self.end == self.data.len() {
            if self.start > 0 {
                self.data.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == self.data.len() && self.data.len() < self.max {
                let grown = (self.data.len() * 2).max(1024).min(self.max);
                self.data.resize(grown, 0);
            }
        }
        &mut self.data[self.end..]
    }

    /// The free space for a read (compacting or growing first); an error
    /// when the buffer is full. Follow with [`ReadBuf::advance`].
    pub fn spare_mut(&mut self) -> io::Result<&mut [u8]> {
        let spare = self.spare();
        if spare.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "read buffer full",
            ));
        }
        Ok(spare)
    }

    /// Marks `n` bytes of the free space as filled.
    pub fn advance(&mut self, n: usize) {
        debug_assert!(self.end + n <= self.data.len());
        self.end = (self.end + n).min(self.data.len());
    }

    /// One read from `src` into the free space. `Ok(0)` is end of stream;
    /// a full buffer is an error (the caller checks `is_full` first).
    pub async fn fill_from<S: AsyncRead + Unpin>(&mut self, src: &mut S) -> io::Result<usize> {
        let spare = self.spare_mut()?;
        let n = src.read(spare).await?;
        self.end += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_compacts_and_shrinks() {
        let mut b = ReadBuf::new(4, 16);
        futures_lite::future::block_on(async {
            let mut src: &[u8] = b"abcdefgh";
            assert_eq!(b.fill_from(&mut src).await.unwrap(), 4);
            b.consume(2);
            assert_eq!(b.filled(), b"cd");
            // Compaction first, then growth.
            let n = b.fill_from(&mut src).await.unwrap();
            assert_eq!(n, 2);
            assert_eq!(b.filled(), b"cdef");
            let n = b.fill_from(&mut src).await.unwrap();
            assert_eq!(n, 2);
            assert_eq!(b.filled(), b"cdefgh");
            let mut src: &[u8] = &[b'x'; 64];
            while !b.is_full() {
                b.fill_from(&mut src).await.unwrap();
            }
            assert_eq!(b.len(), 16);
            assert!(b.fill_from(&mut src).await.is_err());
            b.consume(16);
            assert!(b.is_empty());
        });
    }
}
