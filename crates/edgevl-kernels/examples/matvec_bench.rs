//! Matrix-vector (decode) and matrix-matrix (prefill) throughput of `matmul` on a 2560 x 6912 weight matrix
//! (BlueLM-V-3B's FFN shape). Not a test: prints figures to compare kernel versions.
//!
//! `cargo run --release -p edgevl-kernels --example matvec_bench -- [threads] [types...]`
//! "hot" reuses one matrix (cache resident where the cache is large); "cold" rotates over copies totalling at
//! least 1 GiB so weights stream from DRAM. `EDGEVL_FORCE_SCALAR=1` measures the scalar table. "on-cpu" divides
//! by the calling thread's on-CPU time (meaningful with 1 thread on a shared machine).

mod common;

use std::time::Instant;

use edgevl_kernels::formats::quantize_ref;
use edgevl_kernels::{matmul, DType, MatmulScratch, ThreadPool, WeightRef};

/// On-CPU nanoseconds of the calling thread (Linux), so a busy shared machine does not distort the figures;
/// falls back to wall time elsewhere.
fn cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// (wall seconds, on-CPU seconds of this thread) taken by `f`.
fn timed(f: impl FnOnce()) -> (f64, f64) {
    let (t0, c0) = (Instant::now(), cpu_ns());
    f();
    let wall = t0.elapsed().as_secs_f64();
    let cpu = match (c0, cpu_ns()) {
        (Some(a), Some(b)) => (b - a) as f64 * 1e-9,
        _ => wall,
    };
    (wall, cpu)
}

/// A plain read of `buf` (wrapping sum of u64 words, vectorised by the compiler): the bandwidth roofline.
fn read_all(buf: &[u8]) -> u64 {
    let mut acc = [0u64; 8];
    for c in buf.chunks_exact(64) {
        for (a, w) in acc.iter_mut().zip(c.chunks_exact(8)) {
            *a = a.wrapping_add(u64::from_le_bytes(w.try_into().unwrap_or([0; 8])));
        }
    }
    acc.iter().fold(0, |s, a| s ^ a)
}

const COLS: usize = 2560;
const ROWS: usize = 6912;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let threads: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(1);
    let types: Vec<DType> = if args.len() > 1 {
        args[1..]
            .iter()
            .filter_map(|n| DType::ALL.into_iter().find(|t| t.name().eq_ignore_ascii_case(n)))
            .collect()
    } else {
        vec![DType::Q4_0, DType::Q4_1]
    };
    let pool = ThreadPool::new(threads);
    let k = common::kernels_from_env("matvec_bench");
    println!("kernel level {:?}, {} thread(s), {ROWS}x{COLS}", k.level(), pool.n_threads());
    let mut rnd = common::xorshift();
    let x: Vec<f32> = (0..COLS * 512).map(|_| rnd()).collect();
    fn wr(t: DType, d: &[u8]) -> WeightRef<'_> {
        WeightRef::new(t, d, ROWS, COLS).unwrap_or_else(|e| panic!("{e}"))
    }
    // SmolLM2-135M's decode products (Q4_1 layers, Q8_0 tied output): per-call cost including pool and dispatch.
    for (t, rows, cols) in [
        (DType::Q4_1, 576usize, 576usize),
        (DType::Q4_1, 192, 576),
        (DType::Q4_1, 1536, 576),
        (DType::Q4_1, 576, 1536),
        (DType::Q8_0, 49152, 576),
    ] {
        let wf: Vec<f32> = (0..rows * cols).map(|_| rnd()).collect();
        let Some(w) = quantize_ref(t, &wf) else { continue };
        let Ok(wref) = WeightRef::new(t, &w, rows, cols) else { continue };
        let mut scratch = MatmulScratch::new();
        let mut y = vec![0f32; rows];
        let reps = (200_000_000 / w.len()).clamp(10, 20_000);
        matmul(&k, &pool, wref, &x[..cols], 1, &mut y, &mut scratch);
        let (wall, cpu) = timed(|| {
            for _ in 0..reps {
                matmul(&k, &pool, wref, &x[..cols], 1, &mut y, &mut scratch);
            }
        });
        let (us_w, us_c) = (wall / reps as f64 * 1e6, cpu / reps as f64 * 1e6);
        println!(
            "smollm2 {:>4} {rows:>5}x{cols:<4} m=1: {us_w:8.2} us wall {us_c:8.2} us on-cpu ({:.2} GB/s wall)",
            t.name(),
            w.len() as f64 / (us_w * 1e3)
        );
    }
    for t in types {
        let wf: Vec<f32> = (0..ROWS * COLS).map(|_| rnd()).collect();
        let Some(w) = quantize_ref(t, &wf) else { continue };
        drop(wf);
        let bytes = w.len();
        let copies = (1usize << 30).div_ceil(bytes).max(2);
        let cold: Vec<Vec<u8>> = (0..copies).map(|_| w.clone()).collect();
        let mut scratch = MatmulScratch::new();
        let mut y = vec![0f32; ROWS * 512];
        // matvec, hot
        let reps = 200;
        matmul(&k, &pool, wr(t, &w), &x[..COLS], 1, &mut y[..ROWS], &mut scratch);
        let (hw, hc) = timed(|| {
            for _ in 0..reps {
                matmul(&k, &pool, wr(t, &w), &x[..COLS], 1, &mut y[..ROWS], &mut scratch);
            }
        });
        // matvec, cold
        let (cw, cc) = timed(|| {
            for c in &cold {
                matmul(&k, &pool, wr(t, c), &x[..COLS], 1, &mut y[..ROWS], &mut scratch);
            }
        });
        let gbs = |secs: f64, n: usize| (bytes * n) as f64 / secs / 1e9;
        let mut sink = 0u64;
        let (rhw, rhc) = timed(|| (0..reps).for_each(|_| sink ^= read_all(&w)));
        let (rcw, rcc) = timed(|| cold.iter().for_each(|c| sink ^= read_all(c)));
        println!(
            "{:>5} read hot {:6.2} GB/s wall {:6.2} GB/s on-cpu | cold {:6.2} GB/s wall {:6.2} GB/s on-cpu (plain read, {sink:x})",
            t.name(),
            gbs(rhw, reps),
            gbs(rhc, reps),
            gbs(rcw, copies),
            gbs(rcc, copies)
        );
        println!(
            "{:>5} m=1   hot {:6.2} GB/s wall {:6.2} GB/s on-cpu | cold {:6.2} GB/s wall {:6.2} GB/s on-cpu ({:.1} MB/matrix)",
            t.name(),
            gbs(hw, reps),
            gbs(hc, reps),
            gbs(cw, copies),
            gbs(cc, copies),
            bytes as f64 / 1e6
        );
        for m in [4usize, 64, 512] {
            let reps = (64 / m).max(1);
            let (dw, dc) = timed(|| {
                for _ in 0..reps {
                    matmul(&k, &pool, wr(t, &w), &x[..m * COLS], m, &mut y[..m * ROWS], &mut scratch);
                }
            });
            let gmac = |secs: f64| (ROWS * COLS * m * reps) as f64 / secs / 1e9;
            println!("{:>5} m={m:<3} {:7.1} GMAC/s wall {:7.1} GMAC/s on-cpu", t.name(), gmac(dw), gmac(dc));
        }
    }
}
