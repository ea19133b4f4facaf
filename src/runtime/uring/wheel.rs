//! The driver's deadlines: sockets filed under the millisecond tick of
//! their earliest deadline. A socket is filed once per deadline it waits
//! on; an entry whose socket has moved on (completed, re-filed, freed) is
//! skipped when its tick comes, and the socket is filed again under its
//! next deadline if it has one. So a busy keep-alive connection that sets
//! a new read deadline per request costs one entry, not one per read.

use std::collections::BTreeMap;

#[derive(Default)]
pub(super) struct Wheel {
    ticks: BTreeMap<u64, Vec<(u32, u32)>>,
    /// Entries popped from the current due tick, not yet handed out.
    due: Vec<(u32, u32)>,
}

impl Wheel {
    pub(super) fn insert(&mut self, tick: u64, slot: u32, gen: u32) {
        self.ticks.entry(tick).or_default().push((slot, gen));
    }

    /// The earliest tick filed (0: none).
    pub(super) fn earliest(&self) -> u64 {
        self.ticks.keys().next().copied().unwrap_or(0)
    }

    /// True when some tick at or before `now` is filed.
    pub(super) fn due(&self, now: u64) -> bool {
        !self.due.is_empty() || self.ticks.keys().next().is_some_and(|&t| t <= now)
    }

    /// The next entry filed at or before `now`.
    pub(super) fn pop_due(&mut self, now: u64) -> Option<(u32, u32)> {
        if let Some(e) = self.due.pop() {
            return Some(e);
        }
        let (&tick, _) = self.ticks.iter().next()?;
        if tick > now {
            return None;
        }
        let mut entries = self.ticks.remove(&tick)?;
        let first = entries.pop();
        self.due = entries;
        first.or_else(|| self.pop_due(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_due_entries_in_tick_order() {
        let mut w = Wheel::default();
        w.insert(30, 3, 1);
        w.insert(10, 1, 1);
        w.insert(10, 2, 1);
        assert_eq!(w.earliest(), 10);
        assert!(!w.due(9));
        assert!(w.due(10));
        let mut got = vec![w.pop_due(20).unwrap(), w.pop_due(20).unwrap()];
        got.sort();
        assert_eq!(got, vec![(1, 1), (2, 1)]);
        assert_eq!(w.pop_due(20), None);
        assert_eq!(w.earliest(), 30);
        assert_eq!(w.pop_due(30), Some((3, 1)));
        assert_eq!(w.earliest(), 0);
    }
}
