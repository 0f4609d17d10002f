//! Kernel properties: quantiser round-trip error per bit width, quantised dot products against a dequantised f64
//! reference, every SIMD kernel against its scalar twin, and thread-count independence of `matmul`.

mod common;

use common::{cols_for, random_f32, random_weights, rng, run_matmul, simd_levels};
use edgevl_kernels::formats::q4_1::BlockQ4_1;
use edgevl_kernels::formats::{as_blocks, dequantize_act, f16_to_f32, quantize_ref};
use edgevl_kernels::{matmul, DType, Kernels, MatmulScratch, SimdLevel, ThreadPool, VecDotType, WeightRef};
use rand::Rng;

/// Max relative RMS error of `quantize_ref` then dequantise on uniform(-1, 1) data with 1/64 outliers (x8), which
/// widen the blocks they fall in.
fn rms_bound(t: DType) -> f64 {
    match t {
        DType::F32 => 0.0,
        DType::F16 => 5e-4,
        DType::BF16 => 4e-3,
        DType::Q8_0 => 1.2e-2,
        DType::Q6_K => 3.5e-2,
        DType::Q5_0 => 8e-2,
        DType::Q4_0 | DType::Q4_1 | DType::Q4_K => 0.16,
    }
}

#[test]
fn quantize_round_trip_error_is_bounded_per_bit_width() {
    let mut r = rng(1);
    let k = Kernels::scalar();
    for t in DType::ALL {
        let x = random_f32(&mut r, 256 * 16, 1.0);
        let q = quantize_ref(t, &x).expect("whole blocks");
        assert_eq!(Some(q.len()), t.row_bytes(x.len()), "{t}");
        let mut y = vec![0f32; x.len()];
        k.format(t).dequantize(&q, &mut y);
        let err: f64 = x.iter().zip(&y).map(|(a, b)| f64::from(a - b).powi(2)).sum();
        let norm: f64 = x.iter().map(|a| f64::from(*a).powi(2)).sum();
        let rel = (err / norm).sqrt();
        println!("{t}: relative RMS round-trip error {rel:.2e}");
        assert!(rel <= rms_bound(t), "{t}: relative RMS error {rel:.3e} > {:.1e}", rms_bound(t));
        // Lower bit widths must not beat higher ones by accident of a broken packer: the 4-bit error is real.
        if t.block_size() > 1 && t != DType::Q8_0 && t != DType::Q6_K {
            assert!(rel > 1e-2, "{t}: suspiciously exact 4-bit round trip");
        }
    }
}

#[test]
fn zero_blocks_quantise_to_zero() {
    for t in DType::ALL {
        let x = vec![0f32; 512];
        let q = quantize_ref(t, &x).expect("whole blocks");
        let mut y = vec![1f32; 512];
        Kernels::scalar().format(t).dequantize(&q, &mut y);
        assert!(y.iter().all(|v| *v == 0.0), "{t}");
    }
}

#[test]
fn f16_weights_dequantise_every_bit_pattern_as_one_value_at_a_time() {
    // Every f16 bit pattern, then runs at odd offsets and lengths (the slice conversion's chunks and tails).
    let bytes: Vec<u8> = (0..=u16::MAX).flat_map(u16::to_le_bytes).collect();
    for k in Kernels::all_levels() {
        for (start, len) in [(0, 1 << 16), (3, 1001), (31_745, 63), ((1 << 16) - 1, 1)] {
            let mut y = vec![0f32; len];
            k.format(DType::F16).dequantize(&bytes[2 * start..2 * (start + len)], &mut y);
            for (i, got) in y.iter().enumerate() {
                let bits = (start + i) as u16;
                let want = f16_to_f32(bits.to_le_bytes());
                assert!(
                    got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                    "{:?}: f16 {bits:#06x} widened to {got} ({:#010x}), one at a time {want}",
                    k.level(),
                    got.to_bits()
                );
            }
        }
    }
}

/// f64 reference of `y = W x` from dequantised weights and dequantised activation blocks, and the error allowed.
struct Reference {
    y: Vec<f64>,
    tol: Vec<f64>,
}

fn reference(k: &Kernels, t: DType, w: &[u8], rows: usize, cols: usize, x: &[f32], m: usize) -> Reference {
    let rb = t.row_bytes(cols).unwrap();
    let vdt = t.vec_dot_type();
    let arb = vdt.row_bytes(cols).unwrap();
    let mut wd = vec![0f32; rows * cols];
    for j in 0..rows {
        k.format(t).dequantize(&w[j * rb..(j + 1) * rb], &mut wd[j * cols..(j + 1) * cols]);
    }
    let mut xd = vec![0f32; m * cols];
    let mut buf = vec![0u8; arb];
    for i in 0..m {
        k.quantizer(vdt).quantize(&x[i * cols..(i + 1) * cols], &mut buf);
        dequantize_act(vdt, &buf, &mut xd[i * cols..(i + 1) * cols]);
    }
    let mut out = Reference { y: vec![0.0; m * rows], tol: vec![0.0; m * rows] };
    for i in 0..m {
        for j in 0..rows {
            let (mut s, mut a) = (0f64, 0f64);
            for c in 0..cols {
                let p = f64::from(wd[j * cols + c]) * f64::from(xd[i * cols + c]);
                s += p;
                a += p.abs();
            }
            out.y[i * rows + j] = s;
            out.tol[i * rows + j] = DOT_TOLERANCE * a
                + if t == DType::Q4_1 {
                    q4_1_extra_tolerance(&w[j * rb..(j + 1) * rb], &xd[i * cols..(i + 1) * cols])
                } else {
                    0.0
                };
        }
    }
    out
}

/// Allowed error of a quantised dot relative to `sum |w x|` (f32 accumulation).
const DOT_TOLERANCE: f64 = 2e-5;

/// Q4_1 x Q8_1 uses the stored `s = f16(d_f32 * sum(q))` instead of `f16(d) * sum(q)` (as ggml does): per block
/// an extra error of at most `|m| * |d * sum(q)| * 2^-10 (+10%)`, and `|d * sum(q)| <= sum |x_dequantised|`.
fn q4_1_extra_tolerance(w_row: &[u8], xd_row: &[f32]) -> f64 {
    as_blocks::<BlockQ4_1>(w_row)
        .iter()
        .zip(xd_row.chunks_exact(32))
        .map(|(b, xs)| {
            let xs: f64 = xs.iter().map(|v| f64::from(v.abs())).sum();
            f64::from(b.m().abs()) * xs * 1.1 / 1024.0
        })
        .sum()
}

#[test]
fn every_simd_kernel_matches_scalar_twin_and_f64_reference() {
    let scalar = Kernels::scalar();
    let pool = ThreadPool::new(1);
    let mut r = rng(2);
    for simd in &simd_levels() {
        for t in DType::ALL {
            for cols in cols_for(t) {
                for (rows, m) in [(1, 1), (5, 2), (13, 3), (37, 5), (9, 17)] {
                    let w = random_weights(&mut r, t, rows, cols);
                    let x = random_f32(&mut r, m * cols, 2.0);
                    // The activation converters must agree bit for bit (ggml's x86 rounding).
                    let vdt = t.vec_dot_type();
                    let arb = vdt.row_bytes(cols).unwrap();
                    let (mut qa, mut qb) = (vec![0u8; arb], vec![0u8; arb]);
                    scalar.quantizer(vdt).quantize(&x[..cols], &mut qa);
                    simd.quantizer(vdt).quantize(&x[..cols], &mut qb);
                    assert_eq!(qa, qb, "{t} cols {cols}: {vdt:?} activation quantiser differs from scalar");

                    let reference = reference(&scalar, t, &w, rows, cols, &x, m);
                    let ys = run_matmul(&scalar, &pool, WeightRef::new(t, &w, rows, cols).unwrap(), &x, m);
                    let yv = run_matmul(simd, &pool, WeightRef::new(t, &w, rows, cols).unwrap(), &x, m);
                    for i in 0..m * rows {
                        let tol = reference.tol[i] + 1e-30;
                        let (s, v, e) = (f64::from(ys[i]), f64::from(yv[i]), reference.y[i]);
                        assert!(
                            (s - e).abs() <= tol,
                            "{t} {rows}x{cols} m={m} out {i}: scalar {s:e} vs f64 {e:e}"
                        );
                        assert!(
                            (v - e).abs() <= tol,
                            "{t} {rows}x{cols} m={m} out {i}: {:?} {v:e} vs f64 {e:e}",
                            simd.level()
                        );
                        assert!(
                            (v - s).abs() <= tol,
                            "{t} {rows}x{cols} m={m} out {i}: simd {v:e} vs scalar {s:e}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn matmul_is_independent_of_threads_and_batching() {
    let mut r = rng(3);
    let p1 = ThreadPool::new(1);
    let p3 = ThreadPool::new(3);
    for k in Kernels::all_levels() {
        for t in DType::ALL {
            let cols = if t.block_size() == 256 { 512 } else { 320 };
            for (rows, m) in [(203, 1), (70, 5), (33, 17), (41, 130)] {
                let w = random_weights(&mut r, t, rows, cols);
                let x = random_f32(&mut r, m * cols, 1.0);
                let y1 = run_matmul(&k, &p1, WeightRef::new(t, &w, rows, cols).unwrap(), &x, m);
                let y3 = run_matmul(&k, &p3, WeightRef::new(t, &w, rows, cols).unwrap(), &x, m);
                assert!(
                    y1.iter().zip(&y3).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{t} {:?} {rows}x{cols} m={m}: 3 threads differ from 1",
                    k.level()
                );
                // Each output row equals a product with that activation row alone.
                for i in [0, m / 2, m - 1] {
                    let yi = run_matmul(
                        &k,
                        &p3,
                        WeightRef::new(t, &w, rows, cols).unwrap(),
                        &x[i * cols..(i + 1) * cols],
                        1,
                    );
                    assert!(
                        yi.iter().zip(&y1[i * rows..(i + 1) * rows]).all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{t} {:?} m={m}: row {i} depends on batching",
                        k.level()
                    );
                }
            }
        }
    }
}

#[test]
fn detected_simd_level_matches_this_cpu() {
    let level = Kernels::detect().level();
    println!("detected kernel level: {level:?}");
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c");
        let vnni = avx2
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vnni");
        let avx_vnni = avx2 && is_x86_feature_detected!("avxvnni");
        let want = if vnni {
            SimdLevel::Avx512Vnni
        } else if avx_vnni {
            SimdLevel::AvxVnni
        } else if avx2 {
            SimdLevel::Avx2
        } else {
            SimdLevel::Scalar
        };
        assert_eq!(
            level, want,
            "kernel table level does not use this CPU's features (silent scalar fallback?)"
        );
    }
    assert_eq!(Kernels::scalar().level(), SimdLevel::Scalar);
}

#[test]
fn activation_quantisers_round_like_ggml_cpu_on_x86() {
    // ggml-cpu's x86 quantize_row_q8_0/q8_1: id = 127 / amax, then round half to even (_mm256_round_ps).
    // amax = 127 makes id = 1, so the quants are the rounded inputs themselves.
    let mut x = vec![0f32; 32];
    x[..9].copy_from_slice(&[127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.49, -126.5]);
    let want: [i8; 9] = [127, 0, 2, 2, 0, -2, -2, 3, -126];
    for k in Kernels::all_levels() {
        let mut q8_0 = vec![0u8; 34];
        k.quantizer(VecDotType::Q8_0).quantize(&x, &mut q8_0);
        let got: Vec<i8> = q8_0[2..11].iter().map(|&b| b as i8).collect();
        assert_eq!(got, want, "{:?} Q8_0", k.level());
        assert_eq!(u16::from_le_bytes([q8_0[0], q8_0[1]]), 0x3c00, "d = 127/127 = 1.0 in f16");
        let mut q8_1 = vec![0u8; 36];
        k.quantizer(VecDotType::Q8_1).quantize(&x, &mut q8_1);
        let got: Vec<i8> = q8_1[4..13].iter().map(|&b| b as i8).collect();
        assert_eq!(got, want, "{:?} Q8_1", k.level());
        let sum: i32 = want.iter().map(|&v| i32::from(v)).sum();
        let s = half::f16::from_bits(u16::from_le_bytes([q8_1[2], q8_1[3]])).to_f32();
        assert_eq!(s, sum as f32, "{:?} Q8_1 s = d * sum", k.level());
    }
    // The model-file quantiser (quantize_row_q8_0_ref) rounds half away from zero instead.
    let q = quantize_ref(DType::Q8_0, &x).expect("one block");
    let got: Vec<i8> = q[2..11].iter().map(|&b| b as i8).collect();
    assert_eq!(got, [127, 1, 2, 3, -1, -2, -3, 3, -127]);
}

#[test]
fn exact_block_sum_simd_kernels_are_bit_identical_to_scalar() {
    let scalar = Kernels::scalar();
    let pool = ThreadPool::new(1);
    let mut r = rng(4);
    for simd in simd_levels() {
        for t in [DType::Q4_K, DType::Q6_K, DType::Q5_0] {
            for (rows, m) in [(3, 1), (7, 4), (5, 6)] {
                let cols = if t == DType::Q5_0 { 736 } else { 768 };
                let w = random_weights(&mut r, t, rows, cols);
                let x = random_f32(&mut r, m * cols, 3.0);
                let ys = run_matmul(&scalar, &pool, WeightRef::new(t, &w, rows, cols).unwrap(), &x, m);
                let yv = run_matmul(&simd, &pool, WeightRef::new(t, &w, rows, cols).unwrap(), &x, m);
                assert!(
                    ys.iter().zip(&yv).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{t} m={m} {:?}",
                    simd.level()
                );
            }
        }
    }
}

#[test]
fn matmul_handles_degenerate_and_oversized_buffers() {
    let pool = ThreadPool::new(2);
    let k = Kernels::detect();
    let mut y = vec![7f32; 6];
    matmul(
        &k,
        &pool,
        WeightRef::new(DType::Q4_0, &[], 3, 0).unwrap(),
        &[],
        2,
        &mut y,
        &mut MatmulScratch::new(),
    );
    assert_eq!(y, [0.0; 6], "zero columns give zeros");
    // Longer x / y than needed: only the first m * cols / m * rows elements are used.
    let mut r = rng(5);
    let w = random_weights(&mut r, DType::Q8_0, 3, 64);
    let x = random_f32(&mut r, 64 * 2, 1.0);
    let wr = WeightRef::new(DType::Q8_0, &w, 3, 64).unwrap();
    let want = run_matmul(&k, &pool, wr, &x[..64], 1);
    let mut y = vec![9f32; 5];
    matmul(&k, &pool, wr, &x, 1, &mut y, &mut MatmulScratch::new());
    assert_eq!(&y[..3], &want[..]);
    assert_eq!(&y[3..], &[9.0, 9.0]);
    let mut short = vec![0f32; 2];
    assert!(edgevl_kernels::try_matmul(&k, &pool, wr, &x, 1, &mut short, &mut MatmulScratch::new()).is_err());
}

#[test]
fn weight_ref_rejects_bad_shapes() {
    let data = vec![0u8; 18 * 4];
    assert!(WeightRef::new(DType::Q4_0, &data, 4, 32).is_ok());
    assert!(WeightRef::new(DType::Q4_0, &data, 5, 32).is_err());
    assert!(WeightRef::new(DType::Q4_0, &data, 3, 32).is_err(), "bytes beyond the rows");
    assert!(WeightRef::new(DType::Q4_0, &data, 1, 33).is_err());
    assert!(WeightRef::new(DType::Q4_0, &data, usize::MAX, 32).is_err());
}

/// The table the override variables of this process ask for (tests read them as the CLI does: at the edge).
#[test]
fn process_table_level() {
    let level = Kernels::new(common::env_config()).level();
    println!("process kernel level: {level:?}");
    if std::env::var("EDGEVL_FORCE_SCALAR").is_ok_and(|v| v == "1") {
        assert_eq!(level, SimdLevel::Scalar);
    } else if std::env::var("EDGEVL_MAX_SIMD").is_err() {
        assert_eq!(level, Kernels::detect().level());
    }
}

#[test]
fn force_scalar_env_selects_the_scalar_table() {
    let exe = std::env::current_exe().expect("test binary path");
    let out = std::process::Command::new(exe)
        .args(["--exact", "process_table_level", "--nocapture", "--test-threads=1"])
        .env("EDGEVL_FORCE_SCALAR", "1")
        .output()
        .expect("re-run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {stdout}");
    assert!(stdout.contains("process kernel level: Scalar"), "child output: {stdout}");
}

#[test]
fn simd_kernels_match_scalar_on_raw_random_blocks() {
    // Raw random quant bytes reach values quantize_ref never writes (Q8_0 weights of -128), with small finite
    // f16 scales.
    let scalar = Kernels::scalar();
    let pool = ThreadPool::new(1);
    let mut r = rng(6);
    for simd in &simd_levels() {
        for (t, scale_offsets) in
            [(DType::Q8_0, &[0usize][..]), (DType::Q4_0, &[0]), (DType::Q4_1, &[0, 2]), (DType::Q5_0, &[0])]
        {
            let (rows, cols, m) = (7, 96, 3);
            let mut w: Vec<u8> = (0..rows * t.row_bytes(cols).unwrap()).map(|_| r.gen()).collect();
            for blk in w.chunks_exact_mut(t.block_bytes()) {
                for &o in scale_offsets {
                    let s = half::f16::from_f32(r.gen_range(-0.01f32..0.01));
                    blk[o..o + 2].copy_from_slice(&s.to_bits().to_le_bytes());
                }
                if t == DType::Q8_0 {
                    blk[2] = 0x80; // a -128 quant in every block
                }
            }
            let x = random_f32(&mut r, m * cols, 1.0);
            let wr = WeightRef::new(t, &w, rows, cols).unwrap();
            let reference = reference(&scalar, t, &w, rows, cols, &x, m);
            let ys = run_matmul(&scalar, &pool, wr, &x, m);
            let yv = run_matmul(simd, &pool, wr, &x, m);
            for i in 0..m * rows {
                let tol = reference.tol[i] + 1e-30;
                assert!((f64::from(ys[i]) - reference.y[i]).abs() <= tol, "{t} scalar out {i}");
                assert!((f64::from(yv[i]) - reference.y[i]).abs() <= tol, "{t} {:?} out {i}", simd.level());
            }
        }
    }
}

#[test]
fn matmul_many_equals_separate_products() {
    let pool = ThreadPool::new(3);
    let mut r = rng(7);
    let cols = 256;
    for types in
        [[DType::Q4_0, DType::Q8_0, DType::Q4_0], [DType::Q4_1, DType::Q4_1, DType::Q6_K], [DType::F16; 3]]
    {
        for m in [1usize, 3, 70] {
            let shapes = [(576usize, types[0]), (40, types[1]), (193, types[2])];
            let data: Vec<Vec<u8>> =
                shapes.iter().map(|&(rows, t)| random_weights(&mut r, t, rows, cols)).collect();
            let ws: Vec<WeightRef> = shapes
                .iter()
                .zip(&data)
                .map(|(&(rows, t), d)| WeightRef::new(t, d, rows, cols).unwrap())
                .collect();
            let x = random_f32(&mut r, m * cols, 1.0);
            let mut outs: Vec<Vec<f32>> = shapes.iter().map(|&(rows, _)| vec![0f32; m * rows]).collect();
            let mut refs: Vec<&mut [f32]> = outs.iter_mut().map(|o| o.as_mut_slice()).collect();
            let k = Kernels::detect();
            edgevl_kernels::matmul_many(&k, &pool, &ws, &x, m, &mut refs, &mut MatmulScratch::new());
            for (i, w) in ws.iter().enumerate() {
                let want = run_matmul(&k, &pool, *w, &x, m);
                assert!(
                    want.iter().zip(&outs[i]).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{types:?} m={m} matrix {i}"
                );
            }
        }
    }
}

/// A product's bias added as its outputs are written (`matmul_many_biased`) equals the product followed by a
/// separate addition, bit for bit, at every level: packed weights (row-lane and, from 16 activation rows, wide
/// kernels; a K-quant), float rows, float panels and the plain row kernels, a partial last row group, products
/// with and without a bias in one job, and weights of different activation formats (one job each).
#[test]
fn biases_added_with_the_outputs_equal_a_separate_addition() {
    use edgevl_kernels::fpanel::FloatPanels;
    use edgevl_kernels::packed::PackedWeights;
    let pool = ThreadPool::new(2);
    let mut r = rng(71);
    let cols = 256;
    let shapes =
        [(DType::Q4_0, 40), (DType::Q8_0, 17), (DType::F16, 33), (DType::F16, 19), (DType::Q6_K, 16)];
    let data: Vec<Vec<u8>> = shapes.iter().map(|&(t, rows)| random_weights(&mut r, t, rows, cols)).collect();
    let biases: Vec<Vec<f32>> = shapes.iter().map(|&(_, rows)| random_f32(&mut r, rows, 4.0)).collect();
    let packed: Vec<Option<PackedWeights>> = shapes
        .iter()
        .zip(&data)
        .map(|(&(t, rows), d)| {
            matches!(t, DType::Q4_0 | DType::Q6_K).then(|| PackedWeights::pack(t, d, rows, cols).unwrap())
        })
        .collect();
    let panels = FloatPanels::pack(DType::F16, &data[2], shapes[2].1, cols).unwrap();
    let ws: Vec<WeightRef> = shapes
        .iter()
        .zip(&data)
        .enumerate()
        .map(|(i, (&(t, rows), d))| match (&packed[i], i) {
            (Some(p), _) => WeightRef::from_packed(p),
            (None, 2) => WeightRef::from_panels(&panels),
            (None, _) => WeightRef::new(t, d, rows, cols).unwrap(),
        })
        .collect();
    let with: Vec<Option<&[f32]>> =
        biases.iter().enumerate().map(|(i, b)| (i != 1).then_some(b.as_slice())).collect();
    for k in Kernels::all_levels() {
        for m in [1usize, 5, 37] {
            let x = random_f32(&mut r, m * cols, 1.0);
            let mut outs: Vec<Vec<f32>> = shapes.iter().map(|&(_, rows)| vec![f32::NAN; m * rows]).collect();
            let mut refs: Vec<&mut [f32]> = outs.iter_mut().map(|o| o.as_mut_slice()).collect();
            let mut scratch = MatmulScratch::new();
            edgevl_kernels::matmul_many_biased(&k, &pool, &ws, &with, &x, m, &mut refs, &mut scratch);
            for (i, w) in ws.iter().enumerate() {
                let mut want = run_matmul(&k, &pool, *w, &x, m);
                if let Some(b) = with[i] {
                    want.chunks_exact_mut(w.rows())
                        .for_each(|row| row.iter_mut().zip(b).for_each(|(y, b)| *y += b));
                }
                assert!(
                    want.iter().zip(&outs[i]).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{:?} {:?} m={m} matrix {i}",
                    k.level(),
                    shapes[i]
                );
            }
        }
    }
}

/// The dot-kernel contract: each output is independent of how many weight rows and activation rows one call
/// takes (kernels that share loads between rows, like the paired-row Q4_0 AVX-512 kernel, must not change a bit).
#[test]
fn dot_outputs_do_not_depend_on_rows_per_call() {
    let mut r = rng(77);
    for k in Kernels::all_levels() {
        for dtype in [DType::Q4_0, DType::Q4_1, DType::Q8_0] {
            for cols in [32, 96, 1280] {
                let rows = 5;
                let w = random_weights(&mut r, dtype, rows, cols);
                let wrb = dtype.row_bytes(cols).unwrap();
                let vdt = dtype.vec_dot_type();
                let arb = vdt.row_bytes(cols).unwrap();
                let mut acts = vec![0u8; 4 * arb];
                for a in acts.chunks_exact_mut(arb) {
                    k.quantizer(vdt).quantize(&random_f32(&mut r, cols, 2.0), a);
                }
                let f = k.format(dtype);
                for n_act in 1..=4 {
                    let mut all = vec![0f32; rows * n_act];
                    f.dot(&w, wrb, &acts[..n_act * arb], arb, n_act, &mut all);
                    for j in 0..rows {
                        for i in 0..n_act {
                            let mut one = [0f32; 1];
                            f.dot(
                                &w[j * wrb..(j + 1) * wrb],
                                wrb,
                                &acts[i * arb..(i + 1) * arb],
                                arb,
                                1,
                                &mut one,
                            );
                            assert_eq!(
                                all[j * n_act + i].to_bits(),
                                one[0].to_bits(),
                                "{:?} {dtype:?} cols {cols} n_act {n_act} row {j} act {i}",
                                k.level()
                            );
                        }
                    }
                }
            }
        }
    }
}
