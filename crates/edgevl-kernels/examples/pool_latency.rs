//! Round-trip latency of `ThreadPool::run` with trivial tasks (what a decode step pays ~200 times per token).
//! `cargo run --release -p edgevl-kernels --example pool_latency -- [threads]`

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use edgevl_kernels::ThreadPool;

fn main() {
    let threads: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(2);
    let pool = ThreadPool::new(threads);
    let hits = AtomicUsize::new(0);
    for n_tasks in [1usize, 2, 8, 32] {
        let reps = 20_000;
        let t0 = Instant::now();
        for _ in 0..reps {
            pool.run(n_tasks, &|_| {
                hits.fetch_add(1, Ordering::Relaxed);
            });
        }
        let us = t0.elapsed().as_secs_f64() / reps as f64 * 1e6;
        println!("{threads} threads, {n_tasks:>2} tasks: {us:.2} us per run");
    }
    assert_eq!(hits.load(Ordering::Relaxed), 20_000 * (1 + 2 + 8 + 32));
}
