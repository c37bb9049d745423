//! The threads that write the rules' memories and deliver their notices: a small pool shared
//! by every rule of a server, instead of a thread per rule.
//!
//! A rule is queued at most once (its own flag says it is queued or being worked on), so one
//! thread at a time works on it and its deliveries stay in order. A pass that leaves work
//! (a channel backing off) comes back after a pause without holding a thread meanwhile.
//!
//! A channel that hangs holds its thread until its timeout. So that it never holds back other
//! rules, a watcher adds a thread whenever work has waited [`STALL`] with every thread busy
//! (up to [`MAX_THREADS`]); such extra threads leave after [`LINGER`] without work.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use eddy_base::sync::lock;

/// Threads always there.
pub(crate) const CORE_THREADS: usize = 4;
/// The most threads, whatever hangs.
pub(crate) const MAX_THREADS: usize = 256;
/// How long queued work may wait with every thread busy before one more thread is added.
pub(crate) const STALL: Duration = Duration::from_millis(100);
/// How long an extra thread waits for work before it leaves.
const LINGER: Duration = Duration::from_secs(5);

/// Work for the pool.
pub(crate) trait Task: Send + Sync + 'static {
    /// One pass; `Some(pause)` if there is more to do after `pause` (the task stays queued).
    fn run(self: &Arc<Self>) -> Option<Duration>;
}

/// A fixed set of threads that grows while its work is stuck.
pub(crate) struct Pool<T: Task> {
    inner: Arc<Inner<T>>,
}

struct Inner<T> {
    name: &'static str,
    state: Mutex<State<T>>,
    /// The workers wait here for work.
    work: Condvar,
    /// The watcher waits here for work to look after.
    watch: Condvar,
}

struct State<T> {
    /// Ready to run, with when each was queued.
    ready: VecDeque<(Arc<T>, Instant)>,
    /// To run again once their pause is over.
    later: Vec<(Arc<T>, Instant)>,
    /// Workers (the core and the extra).
    threads: usize,
    /// Workers waiting for work.
    idle: usize,
    started: bool,
    stop: bool,
    handles: Vec<JoinHandle<()>>,
}

impl<T: Task> Pool<T> {
    /// A pool whose threads are called `name-…`; none runs until the first task.
    pub(crate) fn new(name: &'static str) -> Pool<T> {
        Pool {
            inner: Arc::new(Inner {
                name,
                state: Mutex::new(State {
                    ready: VecDeque::new(),
                    later: Vec::new(),
                    threads: 0,
                    idle: 0,
                    started: false,
                    stop: false,
                    handles: Vec::new(),
                }),
                work: Condvar::new(),
                watch: Condvar::new(),
            }),
        }
    }

    /// Queues `task` (the caller makes sure it is not queued already).
    pub(crate) fn submit(&self, task: Arc<T>) {
        let mut state = lock(&self.inner.state);
        if state.stop {
            return;
        }
        if !state.started {
            state.started = true;
            for _ in 0..CORE_THREADS {
                spawn_worker(&self.inner, &mut state, false);
            }
            let inner = self.inner.clone();
            match std::thread::Builder::new()
                .name(format!("{}-watch", inner.name))
                .spawn(move || inner.watch())
            {
                Ok(t) => state.handles.push(t),
                Err(e) => tracing::error!("cannot start the {} watcher: {e}", self.inner.name),
            }
        }
        state.ready.push_back((task, Instant::now()));
        drop(state);
        self.inner.work.notify_one();
        self.inner.watch.notify_one();
    }

    /// How many threads work now.
    #[cfg(test)]
    pub(crate) fn threads(&self) -> usize {
        lock(&self.inner.state).threads
    }

    /// Stops the threads once their pass is over, and waits for them; queued tasks are
    /// dropped.
    pub(crate) fn stop(&self) {
        let me = std::thread::current().id();
        for h in self.shut() {
            // A task dropped on a pool thread may be what drops the pool.
            if h.thread().id() != me {
                let _ = h.join();
            }
        }
    }

    /// Tells the threads to stop; their handles.
    fn shut(&self) -> Vec<JoinHandle<()>> {
        let handles = {
            let mut state = lock(&self.inner.state);
            state.stop = true;
            state.ready.clear();
            state.later.clear();
            std::mem::take(&mut state.handles)
        };
        self.inner.work.notify_all();
        self.inner.watch.notify_all();
        handles
    }
}

impl<T: Task> Drop for Pool<T> {
    fn drop(&mut self) {
        // Not waited for: the last task may be dropped on one of its threads.
        self.shut();
    }
}

impl<T: Task> std::fmt::Debug for Pool<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = lock(&self.inner.state);
        write!(
            f,
            "Pool({}: {} threads, {} ready, {} later)",
            self.inner.name,
            state.threads,
            state.ready.len(),
            state.later.len()
        )
    }
}

fn spawn_worker<T: Task>(inner: &Arc<Inner<T>>, state: &mut State<T>, extra: bool) {
    let worker = inner.clone();
    let name = inner.name;
    match std::thread::Builder::new()
        .name(format!("{name}-{}", state.threads))
        .spawn(move || worker.work(extra))
    {
        Ok(t) => {
            state.threads += 1;
            state.handles.retain(|h| !h.is_finished());
            state.handles.push(t);
        }
        Err(e) => tracing::error!("cannot start a {name} thread: {e}"),
    }
}

impl<T: Task> Inner<T> {
    fn work(&self, extra: bool) {
        let mut state = lock(&self.state);
        loop {
            if state.stop {
                state.threads -= 1;
                return;
            }
            let Some((task, _)) = state.ready.pop_front() else {
                state.idle += 1;
                let (s, timeout) = self
                    .work
                    .wait_timeout(state, LINGER)
                    .unwrap_or_else(|p| p.into_inner());
                state = s;
                state.idle -= 1;
                if extra && timeout.timed_out() && state.ready.is_empty() {
                    state.threads -= 1;
                    return;
                }
                continue;
            };
            drop(state);
            let again = task.run();
            state = lock(&self.state);
            match again {
                Some(pause) if pause.is_zero() => state.ready.push_back((task, Instant::now())),
                Some(pause) => {
                    state.later.push((task, Instant::now() + pause));
                    self.watch.notify_one();
                }
                None => {}
            }
        }
    }

    /// Moves paused tasks back to the queue when their pause is over, and adds a thread when
    /// queued work waits on busy ones.
    fn watch(self: Arc<Self>) {
        let mut state = lock(&self.state);
        loop {
            if state.stop {
                return;
            }
            let now = Instant::now();
            let mut moved = false;
            let mut i = 0;
            while i < state.later.len() {
                if state.later[i].1 <= now {
                    let (task, _) = state.later.swap_remove(i);
                    state.ready.push_back((task, now));
                    moved = true;
                } else {
                    i += 1;
                }
            }
            if moved {
                self.work.notify_all();
            }
            let stalled = state.idle == 0
                && state
                    .ready
                    .front()
                    .is_some_and(|(_, at)| now.duration_since(*at) >= STALL);
            if stalled && state.threads < MAX_THREADS {
                spawn_worker(&self, &mut state, true);
            }
            // Sleep until the next pause ends or the next stall could be told.
            let mut until = state.later.iter().map(|(_, at)| *at).min();
            if let Some((_, at)) = state.ready.front() {
                let check = (*at + STALL).max(now + STALL / 2);
                until = Some(until.map_or(check, |u| u.min(check)));
            }
            state = match until {
                Some(at) => self.wait(state, at.saturating_duration_since(now)),
                None => self.watch.wait(state).unwrap_or_else(|p| p.into_inner()),
            };
        }
    }

    fn wait<'a>(&self, state: MutexGuard<'a, State<T>>, d: Duration) -> MutexGuard<'a, State<T>> {
        self.watch
            .wait_timeout(state, d)
            .map(|(s, _)| s)
            .unwrap_or_else(|p| p.into_inner().0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    /// A task that reports each pass, and hangs on its first while `hang` is set.
    struct Probe {
        id: usize,
        passes: AtomicUsize,
        left: AtomicUsize,
        hang: Mutex<Option<mpsc::Receiver<()>>>,
        done: mpsc::Sender<(usize, usize)>,
    }

    impl Task for Probe {
        fn run(self: &Arc<Self>) -> Option<Duration> {
            if let Some(rx) = lock(&self.hang).take() {
                let _ = rx.recv();
            }
            let pass = self.passes.fetch_add(1, Ordering::SeqCst);
            let _ = self.done.send((self.id, pass));
            (self.left.fetch_sub(1, Ordering::SeqCst) > 1).then_some(Duration::from_millis(5))
        }
    }

    fn probe(id: usize, passes: usize, done: &mpsc::Sender<(usize, usize)>) -> Arc<Probe> {
        Arc::new(Probe {
            id,
            passes: AtomicUsize::new(0),
            left: AtomicUsize::new(passes),
            hang: Mutex::new(None),
            done: done.clone(),
        })
    }

    #[test]
    fn a_task_that_asks_again_runs_again_after_its_pause_in_order() {
        let pool = Pool::new("test");
        let (tx, rx) = mpsc::channel();
        let task = probe(7, 3, &tx);
        pool.submit(task);
        let got: Vec<_> = (0..3)
            .map(|_| rx.recv_timeout(Duration::from_secs(60)).unwrap())
            .collect();
        assert_eq!(got, vec![(7, 0), (7, 1), (7, 2)]);
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
    }

    #[test]
    fn tasks_hanging_on_every_core_thread_do_not_hold_back_another() {
        let pool = Pool::new("test");
        let (tx, rx) = mpsc::channel();
        let mut releases = Vec::new();
        for id in 0..CORE_THREADS {
            let task = probe(id, 1, &tx);
            let (release, hang) = mpsc::channel();
            *lock(&task.hang) = Some(hang);
            releases.push(release);
            pool.submit(task);
        }
        let free = probe(99, 1, &tx);
        pool.submit(free);
        // Only the free task can finish while the others hang.
        assert_eq!(rx.recv_timeout(Duration::from_secs(60)).unwrap(), (99, 0));
        assert!(pool.threads() > CORE_THREADS);
        for r in releases {
            r.send(()).unwrap();
        }
        let mut rest: Vec<_> = (0..CORE_THREADS)
            .map(|_| rx.recv_timeout(Duration::from_secs(60)).unwrap().0)
            .collect();
        rest.sort_unstable();
        assert_eq!(rest, (0..CORE_THREADS).collect::<Vec<_>>());
    }

    #[test]
    fn a_stopped_pool_runs_nothing_more() {
        let pool = Pool::new("test");
        let (tx, rx) = mpsc::channel();
        pool.stop();
        let task = probe(1, 1, &tx);
        pool.submit(task);
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
    }
}
