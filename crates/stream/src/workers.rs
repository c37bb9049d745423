//! Named workers, each on a thread of its own with a stop flag, a configuration and a status:
//! what the pipelines and the alert rules of a server both are.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use eddy_base::sync::lock;

/// One worker.
pub(crate) struct Worker<C, S> {
    pub(crate) config: C,
    pub(crate) status: Arc<S>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The running workers of one kind, by name.
pub(crate) struct Workers<C, S> {
    running: Mutex<BTreeMap<String, Worker<C, S>>>,
}

impl<C, S> Default for Workers<C, S> {
    fn default() -> Workers<C, S> {
        Workers {
            running: Mutex::new(BTreeMap::new()),
        }
    }
}

impl<C, S> Workers<C, S> {
    /// Runs `run` on a thread named `thread_name` as worker `name` (replacing none: the caller
    /// checks it is new); `run` should return once `stop` is set. A thread that cannot start
    /// is the error, the worker listed without one.
    pub(crate) fn start(
        &self,
        name: &str,
        thread_name: String,
        config: C,
        status: Arc<S>,
        stop: Arc<AtomicBool>,
        run: impl FnOnce() + Send + 'static,
    ) -> Result<(), std::io::Error> {
        let spawned = std::thread::Builder::new().name(thread_name).spawn(run);
        let (thread, result) = match spawned {
            Ok(t) => (Some(t), Ok(())),
            Err(e) => (None, Err(e)),
        };
        lock(&self.running).insert(
            name.to_string(),
            Worker {
                config,
                status,
                stop,
                thread,
            },
        );
        result
    }

    /// Stops worker `name` and waits for its thread; `false` if it was not running.
    pub(crate) fn stop(&self, name: &str) -> bool {
        let Some(mut w) = lock(&self.running).remove(name) else {
            return false;
        };
        w.stop.store(true, Ordering::Relaxed);
        if let Some(t) = w.thread.take() {
            let _ = t.join();
        }
        true
    }

    /// Stops them all.
    pub(crate) fn stop_all(&self) {
        let names: Vec<String> = lock(&self.running).keys().cloned().collect();
        for name in names {
            self.stop(&name);
        }
    }

    /// Whether `name` runs.
    pub(crate) fn contains(&self, name: &str) -> bool {
        lock(&self.running).contains_key(name)
    }

    /// How many run.
    pub(crate) fn len(&self) -> usize {
        lock(&self.running).len()
    }

    /// `describe` of each worker (only `only`, if given), by name.
    pub(crate) fn describe<T>(
        &self,
        only: Option<&str>,
        describe: impl Fn(&str, &Worker<C, S>) -> T,
    ) -> Vec<T> {
        lock(&self.running)
            .iter()
            .filter(|(name, _)| only.is_none_or(|o| o == name.as_str()))
            .map(|(name, w)| describe(name, w))
            .collect()
    }
}
