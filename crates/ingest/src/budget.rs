//! The in-flight budget: bytes of events being parsed or stored, across all doors. When it is
//! full, HTTP waits then answers 429, TCP stops reading, UDP queues then drops.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes of events being parsed or stored, across all doors.
#[derive(Debug)]
pub struct Budget {
    permits: Arc<Semaphore>,
    capacity: u32,
}

impl Budget {
    /// Room for `capacity` bytes in flight.
    pub fn new(capacity: usize) -> Budget {
        let capacity = u32::try_from(capacity).unwrap_or(u32::MAX);
        Budget {
            permits: Arc::new(Semaphore::new(capacity as usize)),
            capacity,
        }
    }

    fn weight(&self, bytes: usize) -> u32 {
        u32::try_from(bytes)
            .unwrap_or(u32::MAX)
            .clamp(1, self.capacity)
    }

    /// Waits for room for `bytes` (a request larger than the whole budget waits for all of it).
    pub async fn acquire(&self, bytes: usize) -> OwnedSemaphorePermit {
        match self
            .permits
            .clone()
            .acquire_many_owned(self.weight(bytes))
            .await
        {
            Ok(p) => p,
            // The semaphore is never closed.
            Err(_) => unreachable!("the in-flight budget is never closed"),
        }
    }

    /// Like [`Budget::acquire`], but gives up after `timeout`.
    pub async fn acquire_within(
        &self,
        bytes: usize,
        timeout: Duration,
    ) -> Option<OwnedSemaphorePermit> {
        tokio::time::timeout(timeout, self.acquire(bytes))
            .await
            .ok()
    }

    /// Bytes in flight now, and the capacity.
    pub fn usage(&self) -> (usize, usize) {
        let cap = self.capacity as usize;
        (cap - self.permits.available_permits().min(cap), cap)
    }

    /// What `charge` may still take: it holds the whole budget at most, so it never waits
    /// for room that cannot exist.
    fn room_for(&self, charge: &Charge, bytes: usize) -> u32 {
        let left = (self.capacity as usize).saturating_sub(charge.bytes());
        u32::try_from(bytes.min(left)).unwrap_or(self.capacity)
    }

    /// Adds room for `bytes` more to `charge` if there is room now.
    pub fn try_charge(&self, charge: &mut Charge, bytes: usize) -> bool {
        let n = self.room_for(charge, bytes);
        if n == 0 {
            return true;
        }
        match self.permits.clone().try_acquire_many_owned(n) {
            Ok(more) => {
                charge.hold(more);
                true
            }
            Err(_) => false,
        }
    }

    /// Adds room for `bytes` more to `charge`, waiting up to `timeout`; false if none came.
    pub async fn charge(&self, charge: &mut Charge, bytes: usize, timeout: Duration) -> bool {
        let n = self.room_for(charge, bytes);
        if n == 0 {
            return true;
        }
        match self.acquire_within(n as usize, timeout).await {
            Some(more) => {
                charge.hold(more);
                true
            }
            None => false,
        }
    }
}

/// Room in the budget for bytes that arrive bit by bit (an HTTP body): charged as they come,
/// so a slow client holds only what it has sent. Given back when dropped.
#[derive(Debug, Default)]
pub struct Charge {
    permit: Option<OwnedSemaphorePermit>,
}

impl Charge {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.permit
            .as_ref()
            .map_or(0, OwnedSemaphorePermit::num_permits)
    }

    fn hold(&mut self, more: OwnedSemaphorePermit) {
        match &mut self.permit {
            Some(held) => held.merge(more),
            None => self.permit = Some(more),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_bounds_bytes_in_flight_and_gives_up_after_the_timeout() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let budget = Budget::new(100);
            let a = budget.acquire(60).await;
            assert_eq!(budget.usage(), (60, 100));
            assert!(budget
                .acquire_within(50, Duration::from_millis(20))
                .await
                .is_none());
            // Larger than the whole budget: waits for all of it rather than forever.
            drop(a);
            let all = budget
                .acquire_within(1000, Duration::from_millis(20))
                .await
                .unwrap();
            assert_eq!(all.num_permits(), 100);
            drop(all);
            assert_eq!(budget.usage(), (0, 100));
        });
    }

    #[test]
    fn a_charge_grows_as_bytes_arrive_and_never_past_the_whole_budget() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let budget = Budget::new(100);
            let mut slow = Charge::default();
            // Twelve slow bodies that sent 5 bytes each hold 60, not what they declared.
            let mut others: Vec<Charge> = (0..11).map(|_| Charge::default()).collect();
            assert!(budget.try_charge(&mut slow, 5));
            for c in &mut others {
                assert!(budget.try_charge(c, 5));
            }
            assert_eq!(budget.usage(), (60, 100));
            // A fast request still finds room for its 40 bytes.
            let mut fast = Charge::default();
            assert!(budget.charge(&mut fast, 40, Duration::ZERO).await);
            assert_eq!(fast.bytes(), 40);
            // Full: one more byte waits, then gives up.
            assert!(!budget.try_charge(&mut slow, 1));
            assert!(!budget.charge(&mut slow, 1, Duration::from_millis(10)).await);
            drop(others);
            drop(fast);
            // A charge is capped at the whole budget instead of waiting forever.
            assert!(
                budget
                    .charge(&mut slow, 1000, Duration::from_millis(10))
                    .await
            );
            assert_eq!(slow.bytes(), 100);
            assert!(budget.try_charge(&mut slow, 1));
            drop(slow);
            assert_eq!(budget.usage(), (0, 100));
        });
    }
}
