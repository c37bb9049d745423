//! A thread that runs a task every so often until the server stops it: the background care
//! of the store, the lag watch, and following the cluster's shared state.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often a waiting thread looks whether it was stopped.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// A running periodic task.
pub(crate) struct Periodic {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Periodic {
    /// Runs `task` on thread `name` every `every`, the first time at once if `at_once`, else
    /// after `every`. A thread that cannot start is logged: the server runs without it.
    pub(crate) fn start(
        name: &str,
        every: Duration,
        at_once: bool,
        mut task: impl FnMut() + Send + 'static,
    ) -> Periodic {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let mut last = (!at_once).then(Instant::now);
                while !flag.load(Ordering::Relaxed) {
                    if last.is_none_or(|l| l.elapsed() >= every) {
                        last = Some(Instant::now());
                        task();
                    }
                    std::thread::sleep(STOP_CHECK.min(every));
                }
            })
            .map_err(|e| tracing::error!("cannot start the thread {name}: {e}"))
            .ok();
        Periodic { stop, thread }
    }

    /// Stops it, waiting for a run under way to finish.
    pub(crate) fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn a_task_runs_at_once_when_asked_and_never_after_it_is_stopped() {
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        let periodic = Periodic::start(
            "test-periodic",
            Duration::from_secs(3600),
            true,
            move || {
                counted.fetch_add(1, Ordering::Relaxed);
            },
        );
        while runs.load(Ordering::Relaxed) == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        periodic.stop();
        assert_eq!(runs.load(Ordering::Relaxed), 1);
    }
}
