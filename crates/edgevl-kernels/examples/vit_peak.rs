//! The ViT's products against this CPU's peak, on one thread: measures the int8 dot-product peak (AVX-512 VNNI
//! `vpdpbusd`, AVX-VNNI's 256-bit `vpdpbusd`, or AVX2's `vpmaddubsw` + `vpmaddwd` + `vpaddd`) and the f32 FMA peak
//! with register-only loops, then runs the so400m ViT's products of one 384x384 tile (729 patches) through the
//! engine's kernels and prints each one's rate and fraction of its peak: the Q8_0 weights (packed integer GEMM),
//! the F16 `ffn_down` (llama.cpp's converter keeps it F16 since 4304 is not whole Q8_0 blocks) in the file's row
//! layout (float GEMM) and in the panels the vision tower loads it into (panel GEMM), and attention's two small
//! GEMMs (and, for comparison, the 2.7B LLM's prefill attention products at depth 1600).
//! Not a test: figures for docs/benchmarks.md.
//!
//! `cargo run --release -p edgevl-kernels --example vit_peak` (`EDGEVL_MAX_SIMD=avx2` for the AVX2 path,
//! `avx-vnni` for AVX-VNNI's)

mod common;

use std::time::Instant;

use edgevl_kernels::formats::quantize_ref;
use edgevl_kernels::fpanel::FloatPanels;
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
    if let (Some(p), Some(b)) = (int8, peak::q8_block_gops(level)) {
        println!(
            "int8 ceiling of a Q8_0 block (the packed kernel's instruction pattern, q8_block_gops): {b:.0} GOPS = {:.0}% \
             of the peak",
            100.0 * b / p
        );
    }
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
    // Weight products: (name, dtype, rows, cols, in panels).
    for (name, dtype, rows, cols, panels) in [
        ("Q8_0 attn_qkv (3 x 1152 x 1152)", DType::Q8_0, 3 * D, D, false),
        ("Q8_0 ffn_up (4304 x 1152)", DType::Q8_0, FF, D, false),
        ("F16 ffn_down (1152 x 4304), rows", DType::F16, D, FF, false),
        ("F16 ffn_down (1152 x 4304), panels", DType::F16, D, FF, true),
    ] {
        let wf: Vec<f32> = (0..rows * cols).map(|_| rnd()).collect();
        let x: Vec<f32> = (0..TOKENS * cols).map(|_| rnd()).collect();
        let mut y = vec![0f32; TOKENS * rows];
        let Some(w) = quantize_ref(dtype, &wf) else { continue };
        let packed =
            k.prefers_packed(dtype).then(|| PackedWeights::pack(dtype, &w, rows, cols).ok()).flatten();
        let in_panels = panels.then(|| FloatPanels::pack(dtype, &w, rows, cols).expect("panels"));
        let wr = match (&packed, &in_panels) {
            (Some(p), _) => WeightRef::from_packed(p),
            (None, Some(p)) => WeightRef::from_panels(p),
            (None, None) => WeightRef::new(dtype, &w, rows, cols).expect("weights"),
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
    // Attention of one head: S = Q K^T ([729 x 72] x [72 x 729]), O = P V ([729 x 729] x [729 x 72]), whole and as
    // `head_attention` computes it, a block of 48 queries at a time.
    let gemm = k.sgemm();
    for (name, (m, n, kk)) in [
        ("sgemm scores (729 x 729 x 72)", (TOKENS, TOKENS, HD)),
        ("sgemm values (729 x 72 x 729)", (TOKENS, HD, TOKENS)),
        ("ViT scores (48 x 729 x 72)", (48, TOKENS, HD)),
        ("ViT values (48 x 72 x 729)", (48, HD, TOKENS)),
        // The LLM's prefill attention (one task: 48 queries of a 128-wide head over 1600 cached positions).
        ("prefill scores (48 x 1600 x 128)", (48, 1600, 128)),
        ("prefill values (48 x 128 x 1600)", (48, 128, 1600)),
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

    const STEPS: u64 = 5_000_000;
    /// Rounds over the 12 accumulators per step: one opaque input a step (so the loop is not folded away), enough
    /// instructions per step that its load does not slow the loop.
    const ROUNDS: usize = 4;

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
                return Some(best((12 * ROUNDS) as f64 * STEPS as f64 * 128.0, || unsafe { x86::vnni512() }));
            }
            if level >= SimdLevel::AvxVnni {
                // SAFETY: the table's level proves AVX2 and AVX-VNNI.
                return Some(best((12 * ROUNDS) as f64 * STEPS as f64 * 64.0, || unsafe { x86::vnni256() }));
            }
            if level >= SimdLevel::Avx2 {
                // SAFETY: the table's level proves AVX2.
                return Some(best((12 * ROUNDS) as f64 * STEPS as f64 * 64.0, || unsafe {
                    x86::maddubs256()
                }));
            }
        }
        let _ = level;
        None
    }

    /// The int8 rate of the packed kernel's Q8_0 block pattern. AVX-512 VNNI: per block of 32 and activation row, 8
    /// `vpdpbusd` in two chains, their sum converted to f32, the weight scales times the activation scale, one FMA;
    /// 8 activation rows a step with inputs in registers. The multiply and the FMA share the FMA pipes with
    /// `vpdpbusd`. AVX2: per line of 4 k-bytes of 8 weight rows and activation row, the activation broadcast from
    /// memory, `vpsignb`, `vpmaddubsw`, `vpmaddwd` and `vpaddd` (the sign trick: `vpmaddubsw`'s unsigned operand
    /// must be `|w|` for the i16 pairs not to saturate), then the same f32 step per block; 4 rows a step. Either
    /// is the packed kernel's ceiling with llama.cpp's Q8_0 numerics (per-block scales, exact integer dots).
    /// AVX-VNNI: as AVX2, one `vpdpbusd` of the stored unsigned weight bytes in place of the four instructions,
    /// and the block's `-128 * sum(a)` added before the f32 step.
    pub fn q8_block_gops(level: SimdLevel) -> Option<f64> {
        #[cfg(target_arch = "x86_64")]
        {
            if level >= SimdLevel::Avx512Vnni {
                // SAFETY: the table's level proves AVX-512 F/BW/VNNI and FMA.
                return Some(best(8.0 * STEPS as f64 * 8.0 * 128.0, || unsafe { x86::q8_block512() }));
            }
            if level >= SimdLevel::AvxVnni {
                // SAFETY: the table's level proves AVX2, FMA and AVX-VNNI.
                return Some(best(4.0 * STEPS as f64 * 8.0 * 64.0, || unsafe { x86::q8_block256_vnni() }));
            }
            if level >= SimdLevel::Avx2 {
                // SAFETY: the table's level proves AVX2 and FMA.
                return Some(best(4.0 * STEPS as f64 * 8.0 * 64.0, || unsafe { x86::q8_block256() }));
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
                return best((12 * ROUNDS) as f64 * STEPS as f64 * 32.0, || unsafe { x86::fma512() });
            }
            if level >= SimdLevel::Avx2 {
                // SAFETY: the table's level proves AVX2 and FMA.
                return best((12 * ROUNDS) as f64 * STEPS as f64 * 16.0, || unsafe { x86::fma256() });
            }
        }
        let _ = level;
        best((12 * ROUNDS) as f64 * STEPS as f64 * 2.0, || {
            let mut acc = [0f32; 12];
            for i in 0..STEPS {
                let x = std::hint::black_box(i as f32);
                for _ in 0..ROUNDS {
                    for a in acc.iter_mut() {
                        *a = x.mul_add(0.5, *a);
                    }
                }
            }
            acc.iter().sum()
        })
    }

    #[cfg(target_arch = "x86_64")]
    mod x86 {
        use super::{ROUNDS, STEPS};
        use std::arch::x86_64::*;

        /// A peak loop: 12 independent chains `x = step(x, b)`, `ROUNDS` steps each per iteration and `b` made opaque
        /// every one of the `STEPS` iterations (so no step is hoisted). Inlined into the `#[target_feature]` function
        /// whose closure `step` is the instruction measured.
        #[inline(always)]
        fn chains<T: Copy, B: Copy>(zero: T, b: B, step: impl Fn(T, B) -> T) -> [T; 12] {
            let mut acc = [zero; 12];
            for _ in 0..STEPS {
                let b = std::hint::black_box(b);
                for _ in 0..ROUNDS {
                    for x in acc.iter_mut() {
                        *x = step(*x, b);
                    }
                }
            }
            acc
        }

        /// The sum of `v`'s 8 i32 lanes, as f32: a result the optimiser cannot drop.
        fn sum_i32(v: __m256i) -> f32 {
            // SAFETY: both types are 32 bytes of plain integers, every bit pattern valid.
            let lanes: [i32; 8] = unsafe { std::mem::transmute(v) };
            lanes.iter().map(|&x| x as f32).sum()
        }

        /// The sum of `v`'s 8 f32 lanes.
        fn sum_f32(v: __m256) -> f32 {
            // SAFETY: both types are 32 bytes of plain floats, every bit pattern valid.
            let lanes: [f32; 8] = unsafe { std::mem::transmute(v) };
            lanes.iter().sum()
        }

        /// # Safety
        /// The CPU has AVX-512 F/BW/VNNI.
        #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
        pub unsafe fn vnni512() -> f32 {
            let (a, b) = (_mm512_set1_epi8(3), _mm512_set1_epi8(5));
            let acc = chains(_mm512_setzero_si512(), b, |x, b| _mm512_dpbusd_epi32(x, a, b));
            acc.iter().map(|&x| _mm512_reduce_add_epi32(x) as f32).sum()
        }

        /// # Safety
        /// The CPU has AVX-512 F/BW/VNNI and FMA.
        #[target_feature(enable = "avx512f,avx512bw,avx512vnni,fma")]
        pub unsafe fn q8_block512() -> f32 {
            let w: [__m512i; 8] = std::array::from_fn(|k| _mm512_set1_epi8(k as i8 + 1));
            let dw = _mm512_set1_ps(0.01);
            let mut acc = [_mm512_setzero_ps(); 8];
            for i in 0..STEPS {
                // Each row its own activations and scale, so no row's work can be shared with another's.
                let a: [__m512i; 8] =
                    std::hint::black_box(std::array::from_fn(|r| _mm512_set1_epi32(i as i32 + r as i32)));
                let da: [__m512; 8] =
                    std::hint::black_box(std::array::from_fn(|r| _mm512_set1_ps(r as f32 + 0.5)));
                for ((acc, &a), &da) in acc.iter_mut().zip(&a).zip(&da) {
                    let (mut s0, mut s1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
                    for k in 0..4 {
                        s0 = _mm512_dpbusd_epi32(s0, w[k], a);
                        s1 = _mm512_dpbusd_epi32(s1, w[4 + k], a);
                    }
                    let si = _mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1));
                    *acc = _mm512_fmadd_ps(si, _mm512_mul_ps(dw, da), *acc);
                }
            }
            acc.iter().map(|&x| _mm512_reduce_add_ps(x)).sum()
        }

        /// # Safety
        /// The CPU has AVX2 and AVX-VNNI.
        #[target_feature(enable = "avx2,avxvnni")]
        pub unsafe fn vnni256() -> f32 {
            let (a, b) = (_mm256_set1_epi8(3), _mm256_set1_epi8(5));
            let acc = chains(_mm256_setzero_si256(), b, |x, b| _mm256_dpbusd_avx_epi32(x, a, b));
            sum_i32(acc.iter().fold(_mm256_setzero_si256(), |s, &x| _mm256_add_epi32(s, x)))
        }

        /// # Safety
        /// The CPU has AVX2, FMA and AVX-VNNI.
        #[target_feature(enable = "avx2,fma,avxvnni")]
        pub unsafe fn q8_block256_vnni() -> f32 {
            // Unsigned weight bytes of 4 lines (reused by the 4 rows, as in the kernel's passes).
            let u: [__m256i; 4] = std::array::from_fn(|k| _mm256_set1_epi8(0x70 + 3 * k as i8));
            let dw = _mm256_set1_ps(0.01);
            // Each row's 8 activation groups of 4 bytes, read from L1 as the kernel reads its activation blocks.
            let acts: [i32; 32] = std::array::from_fn(|j| 0x0105_f703 + j as i32);
            let da: [f32; 4] = [0.5, 1.5, 2.5, 3.5];
            let mut acc = [_mm256_setzero_ps(); 4];
            for i in 0..STEPS {
                let p = std::hint::black_box(acts.as_ptr());
                let sum = std::hint::black_box(i as i32);
                for (r, acc) in acc.iter_mut().enumerate() {
                    let mut si = _mm256_setzero_si256();
                    for k in 0..8 {
                        // SAFETY: `r * 8 + k < 32`: inside `acts`.
                        let x = _mm256_set1_epi32(unsafe { p.add(r * 8 + k).read() });
                        si = _mm256_dpbusd_avx_epi32(si, u[k % 4], x);
                    }
                    let si = _mm256_add_epi32(si, _mm256_set1_epi32(-128 * (sum + r as i32)));
                    let d = _mm256_mul_ps(dw, _mm256_set1_ps(da[r]));
                    *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(si), d, *acc);
                }
            }
            sum_f32(acc.iter().fold(_mm256_setzero_ps(), |s, &x| _mm256_add_ps(s, x)))
        }

        /// # Safety
        /// The CPU has AVX2 and FMA.
        #[target_feature(enable = "avx2,fma")]
        pub unsafe fn q8_block256() -> f32 {
            // Signed weights of 4 lines and their magnitudes (reused by the 4 rows, as in the kernel's passes).
            let w: [__m256i; 4] =
                std::array::from_fn(|k| _mm256_set1_epi8(if k % 2 == 0 { 3 } else { -5 } + k as i8));
            let aw: [__m256i; 4] = std::array::from_fn(|k| _mm256_sign_epi8(w[k], w[k]));
            let ones = _mm256_set1_epi16(1);
            let dw = _mm256_set1_ps(0.01);
            // Each row's 8 activation groups of 4 bytes, read from L1 as the kernel reads its activation blocks.
            let acts: [i32; 32] = std::array::from_fn(|j| 0x0105_f703 + j as i32);
            let da: [f32; 4] = [0.5, 1.5, 2.5, 3.5];
            let mut acc = [_mm256_setzero_ps(); 4];
            for _ in 0..STEPS {
                let p = std::hint::black_box(acts.as_ptr());
                for (r, acc) in acc.iter_mut().enumerate() {
                    let mut si = _mm256_setzero_si256();
                    for k in 0..8 {
                        // SAFETY: `r * 8 + k < 32`: inside `acts`.
                        let x = _mm256_set1_epi32(unsafe { p.add(r * 8 + k).read() });
                        let q = _mm256_maddubs_epi16(aw[k % 4], _mm256_sign_epi8(x, w[k % 4]));
                        si = _mm256_add_epi32(si, _mm256_madd_epi16(q, ones));
                    }
                    let d = _mm256_mul_ps(dw, _mm256_set1_ps(da[r]));
                    *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(si), d, *acc);
                }
            }
            sum_f32(acc.iter().fold(_mm256_setzero_ps(), |s, &x| _mm256_add_ps(s, x)))
        }

        /// # Safety
        /// The CPU has AVX2.
        #[target_feature(enable = "avx2")]
        pub unsafe fn maddubs256() -> f32 {
            // The multiply instruction's own rate: `vpmaddubsw` summed with `vpaddw` (the kernels' Q4 blocks; Q8_0
            // blocks add a `vpsignb` pair and a `vpmaddwd`). Six different weight vectors and a new activation vector
            // each round, so no product is computed once and reused (the products do not depend on the accumulators).
            let a: [__m256i; 6] = std::array::from_fn(|k| _mm256_set1_epi8(k as i8 + 2));
            let step = _mm256_set1_epi8(1);
            let mut acc = [_mm256_setzero_si256(); 6];
            for i in 0..STEPS {
                let mut b = _mm256_set1_epi8(std::hint::black_box(i as i8));
                for _ in 0..2 * ROUNDS {
                    for (x, &a) in acc.iter_mut().zip(&a) {
                        *x = _mm256_add_epi16(*x, _mm256_maddubs_epi16(a, b));
                    }
                    b = _mm256_add_epi8(b, step);
                }
            }
            sum_i32(acc.iter().fold(_mm256_setzero_si256(), |s, &x| _mm256_add_epi16(s, x)))
        }

        /// # Safety
        /// The CPU has AVX-512 F.
        #[target_feature(enable = "avx512f")]
        pub unsafe fn fma512() -> f32 {
            let (a, b) = (_mm512_set1_ps(0.999), _mm512_set1_ps(0.001));
            let acc = chains(_mm512_setzero_ps(), b, |x, b| _mm512_fmadd_ps(x, a, b));
            acc.iter().map(|&x| _mm512_reduce_add_ps(x)).sum()
        }

        /// # Safety
        /// The CPU has AVX2 and FMA.
        #[target_feature(enable = "avx2,fma")]
        pub unsafe fn fma256() -> f32 {
            let (a, b) = (_mm256_set1_ps(0.999), _mm256_set1_ps(0.001));
            let acc = chains(_mm256_setzero_ps(), b, |x, b| _mm256_fmadd_ps(x, a, b));
            sum_f32(acc.iter().fold(_mm256_setzero_ps(), |s, &x| _mm256_add_ps(s, x)))
        }
    }
}
