//! Threads for the calls that may block (a blocking `connect`, `accept` or Fast Open
//! send), reused: starting a thread per call cost more than the rest of the call's
//! handling (BENCHMARKS.md, supervised mode). A thread that finished a call waits
//! [`IDLE`] for the next one, then exits; there are never fewer threads than calls
//! waiting, so one call's wait never delays another's start.

use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::Mutex;
use std::time::Duration;

/// How long a thread with nothing to do waits for a call before it exits.
pub const IDLE: Duration = Duration::from_secs(30);

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The idle threads, each by the channel it waits on.
pub struct Pool {
    idle: Mutex<Vec<(u64, Sender<Job>)>>,
    next_id: Mutex<u64>,
}

/// The supervisor's threads for blocking calls (one supervisor per process).
pub static POOL: Pool = Pool::new();

impl Pool {
    const fn new() -> Pool {
        Pool {
            idle: Mutex::new(Vec::new()),
            next_id: Mutex::new(0),
        }
    }

    /// Run `job` on an idle thread, or on a new one; `Err` when no thread can be
    /// started.
    pub fn run(&'static self, job: Job) -> std::io::Result<()> {
        let mut job = job;
        loop {
            let Some((_, tx)) = self.lock_idle().pop() else {
                break;
            };
            match tx.send(job) {
                Ok(()) => return Ok(()),
                // That thread exited: try the next one.
                Err(e) => job = e.0,
            }
        }
        std::thread::Builder::new()
            .name("sockexit-call".into())
            .spawn(move || self.work(job))
            .map(|_| ())
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Sender<Job>)>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn work(&'static self, first: Job) {
        let mut job = first;
        loop {
            job();
            let id = {
                let mut n = self.next_id.lock().unwrap_or_else(|e| e.into_inner());
                *n += 1;
                *n
            };
            let (tx, rx) = channel();
            self.lock_idle().push((id, tx));
            job = match rx.recv_timeout(IDLE) {
                Ok(j) => j,
                Err(RecvTimeoutError::Timeout) => {
                    let mut idle = self.lock_idle();
                    match idle.iter().position(|(i, _)| *i == id) {
                        Some(at) => {
                            idle.remove(at);
                            return;
                        }
                        // Taken for a call at the moment we timed out: it is being
                        // sent (the sender pops, then sends), so wait for it.
                        None => {
                            drop(idle);
                            match rx.recv() {
                                Ok(j) => j,
                                Err(_) => return,
                            }
                        }
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
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
