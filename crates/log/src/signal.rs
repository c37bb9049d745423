//! A change counter that blocking and async waiters can both sleep on: followers are woken the
//! moment new data becomes readable, with no polling loop.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use eddy_base::sync::{lock, wait_timeout};
use tokio::sync::watch;

/// Bumped every time new data in a topic becomes visible to readers.
#[derive(Debug)]
pub(crate) struct Signal {
    version: Mutex<u64>,
    cv: Condvar,
    tx: watch::Sender<u64>,
}

impl Default for Signal {
    fn default() -> Self {
        Signal {
            version: Mutex::new(0),
            cv: Condvar::new(),
            tx: watch::Sender::new(0),
        }
    }
}

impl Signal {
    /// Current version.
    pub fn version(&self) -> u64 {
        *lock(&self.version)
    }

    /// Announces new data.
    pub fn bump(&self) {
        let mut v = lock(&self.version);
        *v += 1;
        self.tx.send_replace(*v);
        self.cv.notify_all();
    }

    /// Sleeps until the version differs from `seen` or `timeout` passes; returns the version.
    pub fn wait_past(&self, seen: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        let mut v = lock(&self.version);
        while *v == seen {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            v = wait_timeout(&self.cv, v, left);
        }
        *v
    }

    /// An async receiver that changes with every bump.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }
}
