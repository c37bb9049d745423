//! De-duplication of client-supplied `@id`s within a window.
//!
//! At-least-once clients resend a batch when they did not see its acknowledgement; with the same
//! `@id`s the second copy is dropped. An id is *pending* while the request carrying it is being
//! stored and *stored* once that request is durable. A request that meets an id pending in
//! another request is refused as busy (the client retries and then finds it stored), so a
//! duplicate is never acknowledged before its original is durable. Memory is bounded: ids leave
//! after the window, and the oldest leave early when there are more than `max_ids`.

use std::collections::{HashMap, HashSet, VecDeque};

use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    Pending { ticket: u64 },
    Stored { at: i64 },
}

/// The ids of one repository.
#[derive(Debug)]
pub struct DedupWindow {
    window_ns: i64,
    max_ids: usize,
    entries: HashMap<Uuid, Entry>,
    /// Stored ids in the order they were stored, for expiry.
    order: VecDeque<(i64, Uuid)>,
    /// Ids forgotten before their window ended because of `max_ids`.
    pub evicted_early: u64,
}

/// What [`DedupWindow::reserve`] decided for a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Reservation {
    /// `keep[i]` says whether the i-th event is new; the new ids are now pending.
    Keep(Vec<bool>),
    /// An id is pending in another request; nothing was reserved.
    Busy(Uuid),
}

impl DedupWindow {
    /// A window of `window_ns` remembering at most `max_ids` ids.
    pub fn new(window_ns: i64, max_ids: usize) -> DedupWindow {
        DedupWindow {
            window_ns,
            max_ids: max_ids.max(1),
            entries: HashMap::new(),
            order: VecDeque::new(),
            evicted_early: 0,
        }
    }

    /// Ids remembered (pending and stored).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn expire(&mut self, now: i64) {
        let horizon = now.saturating_sub(self.window_ns);
        while let Some(&(at, id)) = self.order.front() {
            let over = self.order.len() > self.max_ids;
            if at >= horizon && !over {
                break;
            }
            self.order.pop_front();
            if self.entries.get(&id) == Some(&Entry::Stored { at }) {
                self.entries.remove(&id);
                if at >= horizon {
                    self.evicted_early += 1;
                }
            }
        }
    }

    /// Decides which of `ids` (`None`: no client id, always kept) are new, and marks the new
    /// ones pending under `ticket`. A repeat within `ids` is kept once.
    pub fn reserve(&mut self, ids: &[Option<Uuid>], ticket: u64, now: i64) -> Reservation {
        self.expire(now);
        let mut keep = Vec::with_capacity(ids.len());
        let mut reserved = HashSet::new();
        for id in ids {
            let Some(id) = id else {
                keep.push(true);
                continue;
            };
            match self.entries.get(id) {
                Some(Entry::Stored { .. }) => keep.push(false),
                Some(Entry::Pending { ticket: t }) if *t == ticket => keep.push(false),
                Some(Entry::Pending { .. }) => {
                    for id in &reserved {
                        self.entries.remove(id);
                    }
                    return Reservation::Busy(*id);
                }
                None => {
                    self.entries.insert(*id, Entry::Pending { ticket });
                    reserved.insert(*id);
                    keep.push(true);
                }
            }
        }
        Reservation::Keep(keep)
    }

    /// The request's new ids are durable: remember them as stored at `now`.
    pub fn commit(&mut self, ids: impl IntoIterator<Item = Uuid>, now: i64) {
        for id in ids {
            self.entries.insert(id, Entry::Stored { at: now });
            self.order.push_back((now, id));
        }
        self.expire(now);
    }

    /// The request failed: forget its pending ids.
    pub fn release(&mut self, ids: impl IntoIterator<Item = Uuid>) {
        for id in ids {
            if matches!(self.entries.get(&id), Some(Entry::Pending { .. })) {
                self.entries.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Option<Uuid> {
        Some(Uuid::from_u128(n))
    }

    #[test]
    fn a_stored_id_is_dropped_within_the_window_and_accepted_after() {
        let mut w = DedupWindow::new(100, 10);
        assert_eq!(
            w.reserve(&[id(1), None, id(2)], 1, 0),
            Reservation::Keep(vec![true, true, true])
        );
        w.commit([Uuid::from_u128(1), Uuid::from_u128(2)], 0);
        assert_eq!(
            w.reserve(&[id(1), id(3), None], 2, 50),
            Reservation::Keep(vec![false, true, true])
        );
        w.commit([Uuid::from_u128(3)], 50);
        assert_eq!(
            w.reserve(&[id(1), id(3)], 3, 120),
            Reservation::Keep(vec![true, false])
        );
    }

    #[test]
    fn a_repeat_in_one_request_is_kept_once() {
        let mut w = DedupWindow::new(100, 10);
        assert_eq!(
            w.reserve(&[id(1), id(1)], 1, 0),
            Reservation::Keep(vec![true, false])
        );
    }

    #[test]
    fn an_id_pending_elsewhere_makes_the_request_busy_and_reserves_nothing() {
        let mut w = DedupWindow::new(100, 10);
        w.reserve(&[id(1)], 1, 0);
        assert_eq!(
            w.reserve(&[id(2), id(1)], 2, 0),
            Reservation::Busy(Uuid::from_u128(1))
        );
        assert_eq!(w.len(), 1, "id 2 was released");
        // The first request failed: its id may come again.
        w.release([Uuid::from_u128(1)]);
        assert_eq!(w.reserve(&[id(1)], 3, 0), Reservation::Keep(vec![true]));
    }

    #[test]
    fn memory_is_bounded_by_max_ids() {
        let mut w = DedupWindow::new(1_000_000, 100);
        for n in 0..1000u128 {
            w.reserve(&[id(n)], n as u64, 0);
            w.commit([Uuid::from_u128(n)], 0);
        }
        assert!(w.len() <= 100, "{}", w.len());
        assert_eq!(w.evicted_early, 900);
        // The newest are still known.
        assert_eq!(
            w.reserve(&[id(999)], 5000, 0),
            Reservation::Keep(vec![false])
        );
    }
}
