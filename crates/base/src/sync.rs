//! Taking locks whose holder panicked.
//!
//! Policy: **a poisoned lock is taken as it is** (the guard is recovered, never turned into an
//! error or a panic). eddy's writers change shared state only after the I/O it describes has
//! succeeded (a segment counts a batch once it is written, a partition publishes its committed
//! mark once the fsync returned, the store lists a segment once it is sealed), so a panic in the
//! middle of an update leaves the last consistent state behind, not a half-made one. Refusing
//! every later caller instead would turn one bug into a dead partition or a dead server, while
//! the panic itself is already reported where it happened. Failures the data cannot survive,
//! such as a failed fsync, are the owner's to record explicitly (the log's partition refuses
//! writes after one); a lock is not the place.

use std::sync::{
    Condvar, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard,
};
use std::time::Duration;

/// Locks `m`, recovering the guard if a holder panicked.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Takes `l` for reading, recovering the guard if a writer panicked.
pub fn read<T: ?Sized>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

/// Takes `l` for writing, recovering the guard if a holder panicked.
pub fn write<T: ?Sized>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

/// Waits on `cv` with `guard`'s lock, recovering the guard if a holder panicked meanwhile.
pub fn wait<'a, T>(cv: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    cv.wait(guard).unwrap_or_else(PoisonError::into_inner)
}

/// [`wait`] for at most `timeout` (it may also wake early, as any condition variable does).
pub fn wait_timeout<'a, T>(
    cv: &Condvar,
    guard: MutexGuard<'a, T>,
    timeout: Duration,
) -> MutexGuard<'a, T> {
    cv.wait_timeout(guard, timeout)
        .unwrap_or_else(PoisonError::into_inner)
        .0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poison<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) {
        assert!(std::thread::spawn(f).join().is_err());
    }

    #[test]
    fn a_mutex_poisoned_by_a_panic_still_gives_its_last_value() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let held = m.clone();
        poison(move || {
            let mut guard = lock(&held);
            *guard = 2;
            panic!("a bug while holding the lock");
        });
        assert!(m.is_poisoned());
        assert_eq!(*lock(&m), 2);
    }

    #[test]
    fn a_rwlock_poisoned_by_a_panic_still_reads_and_writes() {
        let l = std::sync::Arc::new(RwLock::new(vec![1]));
        let held = l.clone();
        poison(move || {
            let mut guard = write(&held);
            guard.push(2);
            panic!("a bug while holding the lock");
        });
        assert!(l.is_poisoned());
        write(&l).push(3);
        assert_eq!(*read(&l), [1, 2, 3]);
    }

    #[test]
    fn waiting_on_a_poisoned_mutex_gives_the_guard_back() {
        let m = std::sync::Arc::new(Mutex::new(0));
        let held = m.clone();
        poison(move || {
            let _guard = lock(&held);
            panic!("a bug while holding the lock");
        });
        let cv = Condvar::new();
        let guard = wait_timeout(&cv, lock(&m), Duration::from_millis(1));
        assert_eq!(*guard, 0);
    }
}
