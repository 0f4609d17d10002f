//! The SIMD level CI expects is the one detected (so a silent scalar fallback cannot pass as NEON), the attention
//! helpers are bit-identical to their scalar twins on odd sizes (NEON on aarch64, AVX2 on x86-64), and on aarch64
//! every NEON table entry (plain and `sdot`) against its scalar twin on random data with odd sizes: bit for bit
//! for the integer formats and the activation quantisers, within f32 rounding for the float dots.

mod common;

use common::{machine_has_simd, rng, simd_levels};
use edgevl_kernels::attention;
use edgevl_kernels::{Kernels, SimdLevel};
use half::f16;
use rand::Rng;

fn is_neon(l: SimdLevel) -> bool {
    matches!(l, SimdLevel::Neon | SimdLevel::NeonDotprod)
}

/// The level detected is the one `EDGEVL_EXPECT_SIMD` names (`scalar`, `neon`, `neon-dotprod`, `avx2`, `avx-vnni`,
/// `avx512-vnni`; `.ci/run` sets it from the CPU's flags), so a silent fallback to a lower level fails. Skipped
/// (with a note) only when the variable is unset.
#[test]
fn detected_level_is_the_expected_one() {
    let detected = Kernels::detect().level();
    println!("detected SIMD level: {detected}");
    match std::env::var("EDGEVL_EXPECT_SIMD") {
        Ok(want) => {
            let want_level = SimdLevel::parse(&want).unwrap_or_else(|| {
                panic!("EDGEVL_EXPECT_SIMD={want:?}: expected scalar|neon|neon-dotprod|avx2|avx-vnni|avx512-vnni")
            });
            assert_eq!(detected, want_level, "EDGEVL_EXPECT_SIMD={want}");
        }
        Err(_) => {
            println!("EDGEVL_EXPECT_SIMD unset: the detected level is not checked against the CPU's flags")
        }
    }
    // The level belongs to this architecture (NEON is the aarch64 baseline), and is SIMD where the CPU has SIMD.
    assert!(detected.is_native(), "{detected} on {}", std::env::consts::ARCH);
    assert_eq!(is_neon(detected), cfg!(target_arch = "aarch64"), "{detected} on {}", std::env::consts::ARCH);
    assert_eq!(detected != SimdLevel::Scalar, machine_has_simd(), "{detected}");
    let all: Vec<SimdLevel> = Kernels::all_levels().iter().map(Kernels::level).collect();
    assert_eq!(all.first(), Some(&SimdLevel::Scalar));
    assert_eq!(all.last(), Some(&detected));
    assert!(all.windows(2).all(|w| w[0] < w[1]), "levels {all:?}");
}

fn rand_f16(r: &mut impl Rng, n: usize, scale: f32) -> Vec<f16> {
    (0..n).map(|_| f16::from_f32(r.gen_range(-scale..scale))).collect()
}

fn bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn attention_helpers_are_bit_identical_to_the_scalar_twins_on_odd_sizes() {
    let mut r = rng(11);
    for k in simd_levels() {
        attention_twins(&k, &mut r);
    }
}

fn attention_twins(k: &Kernels, r: &mut impl Rng) {
    let att = k.attention();
    // Head widths: whole groups of 16 (SIMD entries), others (scalar twins), one above MAX_HEAD (scalar twin).
    for hd in [4, 8, 12, 16, 20, 64, 68, 80, 128, 6, attention::MAX_HEAD + 16] {
        for n in [1, 3, 4, 5, 9, 17] {
            let (off, stride) = (hd % 7, hd + hd % 7 + 3);
            let keys = rand_f16(r, n * stride, 2.0);
            let q: Vec<f32> = (0..hd).map(|_| r.gen_range(-3.0f32..3.0)).collect();
            let (mut a, mut b) = (vec![0f32; n], vec![0f32; n]);
            att.dot_f16(&q, &keys, stride, off, &mut a);
            attention::dot_f16_scalar(&q, &keys, stride, off, &mut b);
            assert_eq!(bits(&a), bits(&b), "dot hd {hd} n {n} ({:?})", k.level());
            let p: Vec<f32> = (0..n).map(|_| r.gen_range(0.0f32..1.0)).collect();
            let acc0: Vec<f32> = (0..hd).map(|_| r.gen_range(-8.0f32..8.0)).collect();
            let (mut a, mut b) = (acc0.clone(), acc0);
            att.mix_f16(&mut a, &p, &keys, stride, off);
            attention::mix_f16_scalar(&mut b, &p, &keys, stride, off);
            assert_eq!(bits(&a), bits(&b), "mix hd {hd} n {n} ({:?})", k.level());
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod aarch64 {
    use super::*;
    use common::{random_f32, random_weights};
    use edgevl_kernels::{DType, VecDotType};

    /// The NEON tables of this CPU (plain, and `sdot` when detected); at least one.
    fn neon_tables() -> Vec<Kernels> {
        let t: Vec<Kernels> = simd_levels().into_iter().filter(|k| is_neon(k.level())).collect();
        assert!(!t.is_empty(), "no NEON table on aarch64");
        println!("NEON levels under test: {:?}", t.iter().map(Kernels::level).collect::<Vec<_>>());
        t
    }

    /// Runs table entry `dot` of `t` for `rows` weight rows of `cols` with `n_act` activation rows quantised by the
    /// scalar quantiser.
    fn run_dot(k: &Kernels, t: DType, w: &[u8], cols: usize, x: &[f32], n_act: usize) -> Vec<f32> {
        let rb = t.row_bytes(cols).expect("whole blocks");
        let vdt = t.vec_dot_type();
        let arb = vdt.row_bytes(cols).expect("whole blocks");
        let mut acts = vec![0u8; arb * n_act];
        for (xr, ar) in x.chunks_exact(cols).zip(acts.chunks_exact_mut(arb)) {
            Kernels::scalar().quantizer(vdt).quantize(xr, ar);
        }
        let rows = w.len() / rb;
        let mut out = vec![f32::NAN; rows * n_act];
        k.format(t).dot(w, rb, &acts, arb, n_act, &mut out);
        out
    }

    #[test]
    fn integer_dots_are_bit_identical_to_the_scalar_twins() {
        let mut r = rng(12);
        let scalar = Kernels::scalar();
        for k in neon_tables() {
            for t in [DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q8_0, DType::Q4_K, DType::Q6_K] {
                let blocks: &[usize] = if t.block_size() == 256 { &[1, 3, 5] } else { &[1, 3, 7, 9, 41] };
                for &nb in blocks {
                    let cols = nb * t.block_size();
                    for (rows, n_act) in [(1, 1), (3, 2), (7, 3), (5, 4)] {
                        let w = random_weights(&mut r, t, rows, cols);
                        let x = random_f32(&mut r, n_act * cols, 2.0);
                        let (a, b) =
                            (run_dot(&k, t, &w, cols, &x, n_act), run_dot(&scalar, t, &w, cols, &x, n_act));
                        assert!(a.iter().all(|v| v.is_finite()), "{t} {:?}: output not written", k.level());
                        assert_eq!(bits(&a), bits(&b), "{t} {:?} {rows}x{cols} n_act {n_act}", k.level());
                    }
                }
            }
        }
    }

    #[test]
    fn activation_quantisers_are_bit_identical_to_the_scalar_ones() {
        let mut r = rng(13);
        let scalar = Kernels::scalar();
        // Random rows of odd block counts, a zero block, exact ties (amax 127: x * id = k + 0.5), tiny values.
        let mut rows: Vec<Vec<f32>> =
            [1usize, 3, 7, 33].iter().map(|&nb| random_f32(&mut r, 32 * nb, 3.0)).collect();
        rows.push(vec![0.0; 64]);
        rows.push((0..64).map(|i| if i == 0 { 127.0 } else { (i % 40) as f32 - 20.5 }).collect());
        rows.push((0..32).map(|i| (i as f32 - 16.0) * 1e-30).collect());
        // f16: odd lengths (the scalar tail after 4-lane groups), overflow to infinity, subnormals, ties.
        let f16_rows = [
            random_f32(&mut r, 7, 100.0),
            random_f32(&mut r, 1001, 1.0),
            vec![
                70000.0,
                -65520.0,
                65519.0,
                1.0e-7,
                -3.0e-6,
                6.0e-8,
                1.0 + 1.0 / 2048.0,
                1.0 + 3.0 / 2048.0,
                0.0,
            ],
        ];
        for k in neon_tables() {
            for x in &f16_rows {
                let (mut a, mut b) = (vec![0u8; 2 * x.len()], vec![0u8; 2 * x.len()]);
                k.quantizer(VecDotType::F16).quantize(x, &mut a);
                scalar.quantizer(VecDotType::F16).quantize(x, &mut b);
                assert_eq!(a, b, "F16 {:?} len {}", k.level(), x.len());
            }
            for vdt in [VecDotType::Q8_0, VecDotType::Q8_1] {
                for x in &rows {
                    let n = vdt.row_bytes(x.len()).expect("whole blocks");
                    let (mut a, mut b) = (vec![0u8; n], vec![0u8; n]);
                    k.quantizer(vdt).quantize(x, &mut a);
                    scalar.quantizer(vdt).quantize(x, &mut b);
                    assert_eq!(a, b, "{vdt:?} {:?} len {}", k.level(), x.len());
                }
            }
        }
    }

    #[test]
    fn float_dots_match_the_scalar_twins_within_f32_rounding() {
        let mut r = rng(14);
        let scalar = Kernels::scalar();
        for k in neon_tables() {
            for t in [DType::F32, DType::F16, DType::BF16] {
                // Odd lengths exercise the scalar tail after the 16-element main loop.
                for cols in [1, 7, 15, 16, 33, 100, 1001] {
                    for (rows, n_act) in [(1, 1), (3, 2), (5, 4)] {
                        let w = random_weights(&mut r, t, rows, cols);
                        let x = random_f32(&mut r, n_act * cols, 2.0);
                        let a = run_dot(&k, t, &w, cols, &x, n_act);
                        let b = run_dot(&scalar, t, &w, cols, &x, n_act);
                        // f32 accumulation: error <= (n + 4) eps sum |products|.
                        let mut wd = vec![0f32; rows * cols];
                        let rb = t.row_bytes(cols).expect("whole blocks");
                        for (wr, o) in w.chunks_exact(rb).zip(wd.chunks_exact_mut(cols)) {
                            scalar.format(t).dequantize(wr, o);
                        }
                        let mut xd = vec![0f32; n_act * cols];
                        let arb = t.vec_dot_type().row_bytes(cols).expect("whole blocks");
                        let mut buf = vec![0u8; arb];
                        for (xr, o) in x.chunks_exact(cols).zip(xd.chunks_exact_mut(cols)) {
                            scalar.quantizer(t.vec_dot_type()).quantize(xr, &mut buf);
                            edgevl_kernels::formats::dequantize_act(t.vec_dot_type(), &buf, o);
                        }
                        for j in 0..rows {
                            for i in 0..n_act {
                                let mag: f64 = (0..cols)
                                    .map(|c| f64::from(wd[j * cols + c] * xd[i * cols + c]).abs())
                                    .sum();
                                let tol = (cols as f64 + 4.0) * f64::from(f32::EPSILON) * mag + 1e-30;
                                let (v, s) = (f64::from(a[j * n_act + i]), f64::from(b[j * n_act + i]));
                                assert!(
                                    (v - s).abs() <= tol,
                                    "{t} {:?} cols {cols} row {j} act {i}: {v:e} vs scalar {s:e} (tol {tol:e})",
                                    k.level()
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
