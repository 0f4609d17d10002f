//! The ViT's products against this CPU's peak, on one thread: measures the int8 dot-product peak (AVX-512 VNNI
//! `vpdpbusd`, or AVX2's `vpmaddubsw` + `vpmaddwd` + `vpaddd`) and the f32 FMA peak with register-only loops, then
//! runs the so400m ViT's products of one 384x384 tile (729 patches) through the engine's kernels and prints each
//! one's rate and fraction of its peak: the Q8_0 weights (packed integer GEMM), the F16 `ffn_down` (float GEMM;
//! llama.cpp's converter keeps it F16 since 4304 is not whole Q8_0 blocks) and attention's two small GEMMs.
//! Not a test: figures for docs/benchmarks.md.
//!
//! `cargo run --release -p edgevl-kernels --example vit_peak` (`EDGEVL_MAX_SIMD=avx2` for the AVX2 path)

mod common;

use std::time::Instant;

use edgevl_kernels::formats::quantize_ref;
use edgevl_kernels::packed::PackedWeights;
use edgevl_kernels::{matmul, DType, MatmulScratch, Sgemm, SimdLevel, ThreadPool, WeightRef};

/// Patches of a 384x384 tile.
const TOKENS: usize = 729;
/// so400m's width.
const D: usize = 1152;
/// so400m's MLP width.
const FF: usize = 4304;
/// so400m's head width.
const HD: usize = 72;

fn main() {
    let k = common::kernels_from_env("vit_peak");
    let level = k.level();
    let int8 = peak::int8_gops(level);
    let fma = peak::fma_gflops(level);
    println!("kernel level {level}, 1 thread");
    match int8 {
        Some(p) => println!("int8 dot-product peak: {p:.0} GOPS (2 ops per multiply-add)"),
        None => println!("int8 dot-product peak: no SIMD int8 path at this level"),
    }
    println!("f32 FMA peak: {fma:.0} GFLOPS");
    let pool = ThreadPool::new(1);
    let mut scratch = MatmulScratch::new();
    let mut rnd = common::xorshift();
    let report = |name: &str, ops: f64, secs: f64, peak: Option<f64>| {
        let rate = ops / secs * 1e-9;
        match peak {
            Some(p) => println!("{name:34}: {rate:6.0} G ops/s = {:4.0}% of peak", 100.0 * rate / p),
            None => println!("{name:34}: {rate:6.0} G ops/s"),
        }
    };
    // Weight products: (name, dtype, rows, cols).
    for (name, dtype, rows, cols) in [
        ("Q8_0 attn_qkv (3 x 1152 x 1152)", DType::Q8_0, 3 * D, D),
        ("Q8_0 ffn_up (4304 x 1152)", DType::Q8_0, FF, D),
        ("F16 ffn_down (1152 x 4304)", DType::F16, D, FF),
    ] {
        let wf: Vec<f32> = (0..rows * cols).map(|_| rnd()).collect();
        let x: Vec<f32> = (0..TOKENS * cols).map(|_| rnd()).collect();
        let mut y = vec![0f32; TOKENS * rows];
        let Some(w) = quantize_ref(dtype, &wf) else { continue };
        let packed =
            k.prefers_packed(dtype).then(|| PackedWeights::pack(dtype, &w, rows, cols).ok()).flatten();
        let wr = match &packed {
            Some(p) => WeightRef::from_packed(p),
            None => WeightRef::new(dtype, &w, rows, cols).expect("weights"),
        };
        matmul(&k, &pool, wr, &x, TOKENS, &mut y, &mut scratch);
        let t0 = Instant::now();
        for _ in 0..3 {
            matmul(&k, &pool, wr, &x, TOKENS, &mut y, &mut scratch);
        }
        let secs = t0.elapsed().as_secs_f64() / 3.0;
        let peak = if dtype == DType::F16 { Some(fma) } else { int8 };
        report(name, 2.0 * (TOKENS * rows * cols) as f64, secs, peak);
    }
    // Attention of one head: S = Q K^T ([729 x 72] x [72 x 729]), O = P V ([729 x 729] x [729 x 72]).
    let gemm = k.sgemm();
    for (name, (m, n, kk)) in [
        ("sgemm scores (729 x 729 x 72)", (TOKENS, TOKENS, HD)),
        ("sgemm values (729 x 72 x 729)", (TOKENS, HD, TOKENS)),
    ] {
        let a: Vec<f32> = (0..m * kk).map(|_| rnd()).collect();
        let b: Vec<f32> = (0..kk * n).map(|_| rnd()).collect();
        let mut c = vec![0f32; m * n];
        let reps = 20;
        let t0 = Instant::now();
        for _ in 0..reps {
            let mut g = Sgemm::new((m, n, kk), &a, kk, &b, n, &mut c, n).expect("shapes");
            gemm.run(&mut g);
        }
        let secs = t0.elapsed().as_secs_f64() / reps as f64;
        report(name, 2.0 * (m * n * kk) as f64, secs, Some(fma));
    }
}

/// Register-only loops at each level's widest instructions: 12 independent accumulators, so throughput (not
/// latency) bounds them.
mod peak {
    use super::SimdLevel;
    use std::time::Instant;

    const STEPS: u64 = 20_000_000;

    /// Best of 3 runs of `f`, which does `ops` operations.
    fn best(ops: f64, f: impl Fn() -> f32) -> f64 {
        (0..3)
            .map(|_| {
                let t0 = Instant::now();
                std::hint::black_box(f());
                ops / t0.elapsed().as_secs_f64() * 1e-9
            })
            .fold(0.0, f64::max)
    }

    /// The int8 dot-product peak in GOPS, if `level` has a SIMD int8 path.
    pub fn int8_gops(level: SimdLevel) -> Option<f64> {
        #[cfg(target_arch = "x86_64")]
        {
            if level >= SimdLevel::Avx512Vnni {
                // SAFETY: the table's level proves AVX-512 F/BW/VL/VNNI.
                return Some(best(12.0 * STEPS as f64 * 128.0, || unsafe { x86::vnni512() }));
            }
            if level >= SimdLevel::Avx2 {
                // SAFETY: the table's level proves AVX2.
                return Some(best(12.0 * STEPS as f64 * 64.0, || unsafe { x86::maddubs256() }));
            }
        }
        let _ = level;
        None
    }

    /// The f32 FMA peak in GFLOPS (scalar `mul_add` below the SIMD levels).
    pub fn fma_gflops(level: SimdLevel) -> f64 {
        #[cfg(target_arch = "x86_64")]
        {
            if level >= SimdLevel::Avx512Vnni {
                // SAFETY: the table's level proves AVX-512 F.
                return best(12.0 * STEPS as f64 * 32.0, || unsafe { x86::fma512() });
            }
            if level >= SimdLevel::Avx2 {
                // SAFETY: the table's level proves AVX2 and FMA.
                return best(12.0 * STEPS as f64 * 16.0, || unsafe { x86::fma256() });
            }
        }
        let _ = level;
        best(12.0 * STEPS as f64 * 2.0, || {
            let mut acc = [0f32; 12];
            for i in 0..STEPS {
                let x = std::hint::black_box(i as f32);
                for a in acc.iter_mut() {
                    *a = x.mul_add(0.5, *a);
                }
            }
            acc.iter().sum()
        })
    }

    #[cfg(target_arch = "x86_64")]
    mod x86 {
        use super::STEPS;
        use std::arch::x86_64::*;

        /// # Safety
        /// The CPU has AVX-512 F/BW/VNNI.
        #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
        pub unsafe fn vnni512() -> f32 {
            let (a, b) = (_mm512_set1_epi8(3), _mm512_set1_epi8(5));
            let mut acc = [_mm512_setzero_si512(); 12];
            for _ in 0..STEPS {
                let b = std::hint::black_box(b);
                for x in acc.iter_mut() {
                    *x = _mm512_dpbusd_epi32(*x, a, b);
                }
            }
            acc.iter().map(|&x| _mm512_reduce_add_epi32(x) as f32).sum()
        }

        /// # Safety
        /// The CPU has AVX2.
        #[target_feature(enable = "avx2")]
        pub unsafe fn maddubs256() -> f32 {
            let (a, ones) = (_mm256_set1_epi8(3), _mm256_set1_epi16(1));
            let mut acc = [_mm256_setzero_si256(); 12];
            for i in 0..STEPS {
                let b = _mm256_set1_epi8(std::hint::black_box(i as i8));
                for x in acc.iter_mut() {
                    *x = _mm256_add_epi32(*x, _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), ones));
                }
            }
            let mut out = [0i32; 8];
            let s = acc.iter().fold(_mm256_setzero_si256(), |s, &x| _mm256_add_epi32(s, x));
            // SAFETY: `out` is 32 writable bytes.
            unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), s) };
            out.iter().map(|&x| x as f32).sum()
        }

        /// # Safety
        /// The CPU has AVX-512 F.
        #[target_feature(enable = "avx512f")]
        pub unsafe fn fma512() -> f32 {
            let (a, b) = (_mm512_set1_ps(0.999), _mm512_set1_ps(0.001));
            let mut acc = [_mm512_setzero_ps(); 12];
            for _ in 0..STEPS {
                let b = std::hint::black_box(b);
                for x in acc.iter_mut() {
                    *x = _mm512_fmadd_ps(*x, a, b);
                }
            }
            acc.iter().map(|&x| _mm512_reduce_add_ps(x)).sum()
        }

        /// # Safety
        /// The CPU has AVX2 and FMA.
        #[target_feature(enable = "avx2,fma")]
        pub unsafe fn fma256() -> f32 {
            let (a, b) = (_mm256_set1_ps(0.999), _mm256_set1_ps(0.001));
            let mut acc = [_mm256_setzero_ps(); 12];
            for _ in 0..STEPS {
                let b = std::hint::black_box(b);
                for x in acc.iter_mut() {
                    *x = _mm256_fmadd_ps(*x, a, b);
                }
            }
            let mut out = [0f32; 8];
            let s = acc.iter().fold(_mm256_setzero_ps(), |s, &x| _mm256_add_ps(s, x));
            // SAFETY: `out` is 32 writable bytes.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), s) };
            out.iter().sum()
        }
    }
}
