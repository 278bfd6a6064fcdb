//! Threads for the calls that may block (a blocking `connect`, `accept` or Fast Open
//! send), reused: starting a thread per call cost more than the rest of the call's
//! handling (BENCHMARKS.md, supervised mode). A thread that finished a call waits
//! [`IDLE`] for the next one, then exits; there are never fewer threads than calls
//! waiting, so one call's wait never delays another's start.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a thread with nothing to do waits for a call before it exits.
pub const IDLE: Duration = Duration::from_secs(30);

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Where an idle thread waits for its next call: a mutex and a condition variable
/// (a futex wait, no spinning: on a busy machine a spinning idle thread takes the CPU
/// from the call it waits for).
#[derive(Default)]
struct Slot {
    job: Mutex<Option<Job>>,
    ready: Condvar,
}

/// The idle threads.
pub struct Pool {
    idle: Mutex<Vec<Arc<Slot>>>,
}

/// The supervisor's threads for blocking calls (one supervisor per process).
pub static POOL: Pool = Pool::new();

impl Pool {
    const fn new() -> Pool {
        Pool {
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Run `job` on an idle thread, or on a new one; `Err` when no thread can be
    /// started.
    pub fn run(&'static self, job: Job) -> std::io::Result<()> {
        if let Some(slot) = self.lock_idle().pop() {
            // Popped under the lock: that thread is ours, and waits until it is given
            // a job (it leaves the list itself, under the same lock, before exiting).
            *slot.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(job);
            slot.ready.notify_one();
            return Ok(());
        }
        std::thread::Builder::new()
            .name("sockexit-call".into())
            .spawn(move || self.work(job))
            .map(|_| ())
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Slot>>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn work(&'static self, first: Job) {
        let slot = Arc::new(Slot::default());
        let mut job = first;
        loop {
            job();
            self.lock_idle().push(Arc::clone(&slot));
            job = match self.next(&slot) {
                Some(j) => j,
                None => return,
            };
        }
    }

    /// The next job given to `slot`, or `None` once it waited [`IDLE`] and left the
    /// idle list.
    fn next(&self, slot: &Arc<Slot>) -> Option<Job> {
        let deadline = Instant::now() + IDLE;
        let mut g = slot.job.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(j) = g.take() {
                return Some(j);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                drop(g);
                let mut idle = self.lock_idle();
                if let Some(at) = idle.iter().position(|s| Arc::ptr_eq(s, slot)) {
                    idle.remove(at);
                    return None;
                }
                // Taken for a call as we timed out: its job is on the way.
                drop(idle);
                g = slot.job.lock().unwrap_or_else(|e| e.into_inner());
                while g.is_none() {
                    g = slot.ready.wait(g).unwrap_or_else(|e| e.into_inner());
                }
                return g.take();
            }
            g = slot
                .ready
                .wait_timeout(g, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::POOL;
    use std::sync::mpsc::channel;
    use std::sync::{Arc, Barrier};

    #[test]
    fn calls_waiting_at_once_each_get_a_thread_also_once_threads_are_idle() {
        // Eight calls that can only finish together: none may wait for another's
        // thread. Twice, so the second round runs on the threads of the first.
        for _ in 0..2 {
            let b = Arc::new(Barrier::new(8));
            let (tx, rx) = channel();
            for i in 0..8 {
                let (b, tx) = (Arc::clone(&b), tx.clone());
                POOL.run(Box::new(move || {
                    b.wait();
                    tx.send(i).unwrap();
                }))
                .unwrap();
            }
            let mut got: Vec<i32> = (0..8).map(|_| rx.recv().unwrap()).collect();
            got.sort();
            assert_eq!(got, (0..8).collect::<Vec<_>>());
        }
    }
}
