//! A persistent thread pool with low-latency wake-up.
//!
//! Threads are created once. A job is published by bumping a generation number packed with the next task index
//! into one atomic word; workers claim tasks by compare-and-swap on that word, so a worker that wakes late can never
//! claim a task of a newer job with an older job's closure. Idle workers spin briefly, then park on a condvar.

use std::cell::UnsafeCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// How many polls an idle worker spins before parking.
const SPIN_ITERS: u32 = 1 << 14;

type Job = *const (dyn Fn(usize) + Sync);

struct Shared {
    /// `generation << 40 | n_tasks << 20 | next task index` (see [`pack`]).
    state: AtomicU64,
    /// Tasks of the current job that have finished.
    done: AtomicUsize,
    /// The current job's closure; written only while no task of any job is claimable or running.
    job: UnsafeCell<Option<Job>>,
    /// A task panicked during the current job.
    panicked: AtomicBool,
    shutdown: AtomicBool,
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

// SAFETY: `job` is written by the submitting thread only between jobs (no task claimable or running, enforced by
// the `done == n_tasks` wait and the generation check in `claim`) and read by workers only after claiming a task,
// which synchronises with the write through the Release store / AcqRel CAS on `state`. Everything else is atomic.
unsafe impl Sync for Shared {}
// SAFETY: as above; the raw closure pointer is only dereferenced under that protocol.
unsafe impl Send for Shared {}

impl Shared {
    /// Claims the next task of generation `gen`, if any is left.
    fn claim(&self, gen: u32) -> Option<usize> {
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            let (g, n, idx) = unpack(cur);
            if g != gen || idx >= n {
                return None;
            }
            match self.state.compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(idx),
                Err(now) => cur = now,
            }
        }
    }

    /// Runs tasks of generation `gen` until none is left.
    fn work(&self, gen: u32) {
        while let Some(task) = self.claim(gen) {
            // SAFETY: a task of `gen` is claimed and not finished, so the submitter is still inside `run`, the
            // closure it published for `gen` is alive and `job` holds it (see `unsafe impl Sync`).
            let job = unsafe { (*self.job.get()).map(|j| &*j) };
            if let Some(f) = job {
                if catch_unwind(AssertUnwindSafe(|| f(task))).is_err() {
                    self.panicked.store(true, Ordering::Release);
                }
            }
            self.done.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn generation(&self) -> u32 {
        unpack(self.state.load(Ordering::SeqCst)).0
    }
}

const IDX_BITS: u32 = 20;
const GEN_MASK: u32 = (1 << 24) - 1;
/// Most tasks one [`ThreadPool::run`] call accepts on the pool (more run on the caller alone).
const MAX_TASKS: usize = (1 << IDX_BITS) - 1;

/// Packs a 24-bit generation, a task count and a next index (each < 2^20) into one word.
fn pack(gen: u32, n_tasks: usize, idx: usize) -> u64 {
    (u64::from(gen & GEN_MASK) << (2 * IDX_BITS)) | ((n_tasks as u64) << IDX_BITS) | idx as u64
}

fn unpack(w: u64) -> (u32, usize, usize) {
    let mask = (1u64 << IDX_BITS) - 1;
    ((w >> (2 * IDX_BITS)) as u32 & GEN_MASK, ((w >> IDX_BITS) & mask) as usize, (w & mask) as usize)
}

/// A persistent thread pool: `n_threads - 1` workers plus the calling thread.
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    n_threads: usize,
    submit: Mutex<()>,
}

impl ThreadPool {
    /// Creates a pool computing on `n_threads` threads in total (the caller of [`ThreadPool::run`] is one of them);
    /// `0` is treated as `1`. Threads that fail to spawn are simply not used.
    pub fn new(n_threads: usize) -> Self {
        let shared = Arc::new(Shared {
            state: AtomicU64::new(0),
            done: AtomicUsize::new(0),
            job: UnsafeCell::new(None),
            panicked: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let mut workers = Vec::new();
        for i in 1..n_threads.max(1) {
            let s = Arc::clone(&shared);
            let spawned =
                std::thread::Builder::new().name(format!("edgevl-worker-{i}")).spawn(move || worker_loop(&s));
            if let Ok(h) = spawned {
                workers.push(h);
            }
        }
        let n_threads = workers.len() + 1;
        ThreadPool { shared, workers, n_threads, submit: Mutex::new(()) }
    }

    /// Threads computing in [`ThreadPool::run`], the caller included.
    pub fn n_threads(&self) -> usize {
        self.n_threads
    }

    /// Runs `f(task)` for every task in `0..n_tasks` across the pool and returns when all are done.
    /// Tasks may run in any order on any thread. A nested call (from inside a task) runs serially.
    ///
    /// # Panics
    /// Re-raises (as a new panic) if any task panicked.
    pub fn run(&self, n_tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        if n_tasks == 0 {
            return;
        }
        if self.workers.is_empty() || n_tasks == 1 || n_tasks > MAX_TASKS {
            (0..n_tasks).for_each(f);
            return;
        }
        // A `run` from inside a task (or from another thread while a job is running) executes serially on its
        // caller instead of waiting for the pool, so nesting cannot deadlock.
        let _guard = match self.submit.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                (0..n_tasks).for_each(f);
                return;
            }
        };
        let s = &*self.shared;
        let gen = s.generation().wrapping_add(1) & GEN_MASK;
        // SAFETY: the previous job finished (all its tasks claimed and done) before the last `run` returned, and
        // generation `gen` is not yet published, so no thread reads `job` now. The lifetime is erased: the pointer is
        // dereferenced only while a task of `gen` is unfinished, and this call waits for all of them below.
        unsafe {
            let erased: Job = std::mem::transmute::<&(dyn Fn(usize) + Sync), Job>(f);
            *s.job.get() = Some(erased);
        }
        s.done.store(0, Ordering::Release);
        s.panicked.store(false, Ordering::Release);
        s.state.store(pack(gen, n_tasks, 0), Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _l = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        s.work(gen);
        let mut spins = 0u32;
        while s.done.load(Ordering::Acquire) < n_tasks {
            if spins < SPIN_ITERS {
                std::hint::spin_loop();
                spins += 1;
            } else {
                std::thread::yield_now();
            }
        }
        // SAFETY: all tasks of `gen` are done and no more can be claimed, so nobody reads `job`.
        unsafe {
            *s.job.get() = None;
        }
        if s.panicked.load(Ordering::Acquire) {
            panic!("ThreadPool::run: a task panicked");
        }
    }
}

fn worker_loop(s: &Shared) {
    let mut seen = 0u32;
    loop {
        let mut spins = 0u32;
        let gen = loop {
            if s.shutdown.load(Ordering::Acquire) {
                return;
            }
            let g = s.generation();
            if g != seen {
                break g;
            }
            if spins < SPIN_ITERS {
                std::hint::spin_loop();
                spins += 1;
                continue;
            }
            let guard = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.sleepers.fetch_add(1, Ordering::SeqCst);
            let g = s.generation();
            let _guard = if g == seen && !s.shutdown.load(Ordering::SeqCst) {
                s.wake.wait(guard).unwrap_or_else(|e| e.into_inner())
            } else {
                guard
            };
            s.sleepers.fetch_sub(1, Ordering::SeqCst);
            spins = 0;
        };
        seen = gen;
        s.work(gen);
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        {
            let _l = self.shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_every_task_exactly_once_many_times() {
        let pool = ThreadPool::new(3);
        assert_eq!(pool.n_threads(), 3);
        for round in 0..2000usize {
            let n = 1 + round % 37;
            let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            pool.run(n, &|t| {
                hits[t].fetch_add(1, Ordering::Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "round {round}");
        }
    }

    #[test]
    fn wakes_parked_workers() {
        let pool = ThreadPool::new(2);
        std::thread::sleep(std::time::Duration::from_millis(50));
        let sum = AtomicUsize::new(0);
        pool.run(100, &|t| {
            sum.fetch_add(t, Ordering::Relaxed);
        });
        assert_eq!(sum.load(Ordering::Relaxed), 4950);
    }

    #[test]
    fn nested_run_does_not_deadlock() {
        let pool = ThreadPool::new(2);
        let sum = AtomicUsize::new(0);
        pool.run(4, &|_| {
            pool.run(3, &|t| {
                sum.fetch_add(t + 1, Ordering::Relaxed);
            });
        });
        assert_eq!(sum.load(Ordering::Relaxed), 4 * 6);
    }

    #[test]
    fn task_panic_is_reported_and_pool_survives() {
        let pool = ThreadPool::new(2);
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.run(8, &|t| {
                if t == 5 {
                    panic!("boom");
                }
            })
        }));
        assert!(r.is_err());
        let sum = AtomicUsize::new(0);
        pool.run(4, &|t| {
            sum.fetch_add(t, Ordering::Relaxed);
        });
        assert_eq!(sum.load(Ordering::Relaxed), 6);
    }
}
