//! Prefill-shaped throughput of `matmul` with packed weights (a 2560 x 6912 matrix, BlueLM-V-3B's FFN shape) against
//! the unpacked kernels, in multiply-accumulates per on-CPU nanosecond of the calling thread (1 thread, so a busy
//! shared machine distorts the figures less). Not a test: prints figures to compare kernel versions.
//!
//! `cargo run --release -p edgevl-kernels --example packed_bench -- [m] [types...]`
//!
//! `EDGEVL_BENCH_ROWS=N` sets the matrix's rows (default 6912): with `m = 1` and a matrix larger than the
//! last-level cache (e.g. 55296 rows, 80 MB in Q4_0) it measures decode's streaming from DRAM rather than
//! from the caches.

mod common;

use std::time::Instant;

use edgevl_kernels::formats::quantize_ref;
use edgevl_kernels::packed::PackedWeights;
use edgevl_kernels::{matmul, DType, MatmulScratch, ThreadPool, WeightRef};

/// On-CPU nanoseconds of the calling thread (Linux); `None` elsewhere.
fn cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

const COLS: usize = 2560;
const DEFAULT_ROWS: usize = 6912;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let m: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(64);
    let types: Vec<DType> = if args.len() > 1 {
        args[1..]
            .iter()
            .filter_map(|n| DType::ALL.into_iter().find(|t| t.name().eq_ignore_ascii_case(n)))
            .collect()
    } else {
        vec![DType::Q4_0, DType::Q4_1, DType::Q8_0]
    };
    let rows: usize = std::env::var("EDGEVL_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&r| r > 0)
        .unwrap_or(DEFAULT_ROWS);
    let pool = ThreadPool::new(1);
    let k = common::kernels_from_env("packed_bench");
    println!("kernel level {:?}, 1 thread, {rows}x{COLS}, m = {m}", k.level());
    let mut rnd = common::xorshift();
    let x: Vec<f32> = (0..m * COLS).map(|_| rnd()).collect();
    let wf: Vec<f32> = (0..rows * COLS).map(|_| rnd()).collect();
    let mut y = vec![0f32; m * rows];
    let mut scratch = MatmulScratch::new();
    for t in types {
        let Some(w) = quantize_ref(t, &wf) else { continue };
        let Ok(plain) = WeightRef::new(t, &w, rows, COLS) else { continue };
        let t0 = Instant::now();
        let p = PackedWeights::pack(t, &w, rows, COLS).ok();
        let pack_s = t0.elapsed().as_secs_f64();
        let mut run = |name: &str, wr: WeightRef| {
            matmul(&k, &pool, wr, &x, m, &mut y, &mut scratch);
            let reps = (2048 * DEFAULT_ROWS / (m * rows)).max(1);
            let (t0, c0) = (Instant::now(), cpu_ns());
            for _ in 0..reps {
                matmul(&k, &pool, wr, &x, m, &mut y, &mut scratch);
            }
            let wall = t0.elapsed().as_secs_f64();
            let cpu = match (c0, cpu_ns()) {
                (Some(a), Some(b)) => (b - a) as f64 * 1e-9,
                _ => wall,
            };
            let macs = (reps * m * rows * COLS) as f64;
            println!(
                "{t} {name:8}: {:6.1} GMAC/s on-CPU ({:6.1} wall)",
                macs / cpu * 1e-9,
                macs / wall * 1e-9
            );
        };
        run("unpacked", plain);
        if let Some(p) = &p {
            run("packed", WeightRef::from_packed(p));
            println!("{t} packing: {:.1} ms ({:.0} MB/s)", pack_s * 1e3, w.len() as f64 / pack_s * 1e-6);
        }
    }
}
