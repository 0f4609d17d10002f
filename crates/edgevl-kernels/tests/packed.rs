//! Packed weights (Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q6_K): the packed matmul of every kernel level is bit-identical to the scalar twin
//! and to the scalar dot kernel of the unpacked rows, close to a dequantised f64 reference, independent of the
//! thread count, and the packed rows dequantise exactly as the source rows do.

mod common;

use common::{random_f32, random_weights, rng, run_matmul};
use edgevl_kernels::formats::q4_1::BlockQ4_1;
use edgevl_kernels::formats::{as_blocks, dequantize_act};
use edgevl_kernels::packed::PackedWeights;
use edgevl_kernels::{matmul_many, DType, Kernels, MatmulScratch, ThreadPool, WeightRef};

const TYPES: [DType; 6] = [DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q8_0, DType::Q4_K, DType::Q6_K];
/// `(rows, cols, m)`; the `m = 1` shapes with many row groups take the multi-group (decode) kernel calls, those with
/// `m >= 16` the wide kernel (AVX-512) for their whole panels of 16 rows and the row-lane kernels for the rest
/// (`m = 300`: two chunks of activation rows).
const SHAPES: [(usize, usize, usize); 20] = [
    (1, 32, 1),
    (5, 64, 3),
    (17, 96, 8),
    (37, 288, 9),
    (50, 1280, 17),
    (16, 32, 70),
    (33, 160, 2),
    (129, 64, 5),
    (129, 64, 1),
    (300, 96, 1),
    (120, 96, 1),
    (33, 256, 9),
    (21, 768, 5),
    (70, 512, 1),
    (31, 256, 2),
    (40, 512, 6),
    (17, 256, 7),
    (300, 256, 1),
    (37, 160, 48),
    (20, 64, 300),
];

/// `y = W x` in f64 from the dequantised weights and the dequantised activation blocks, and the error allowed
/// (f32 accumulation: `2e-5 * sum |w x|`, plus Q4_1's term).
fn reference(t: DType, w: &[u8], rows: usize, cols: usize, x: &[f32], m: usize) -> (Vec<f64>, Vec<f64>) {
    let k = Kernels::scalar();
    let rb = t.row_bytes(cols).unwrap();
    let vdt = t.vec_dot_type();
    let mut wd = vec![0f32; cols];
    let mut xd = vec![0f32; m * cols];
    let mut buf = vec![0u8; vdt.row_bytes(cols).unwrap()];
    for i in 0..m {
        k.quantizer(vdt).quantize(&x[i * cols..(i + 1) * cols], &mut buf);
        dequantize_act(vdt, &buf, &mut xd[i * cols..(i + 1) * cols]);
    }
    let (mut y, mut a) = (vec![0f64; m * rows], vec![0f64; m * rows]);
    for j in 0..rows {
        k.format(t).dequantize(&w[j * rb..(j + 1) * rb], &mut wd);
        for i in 0..m {
            for c in 0..cols {
                let p = f64::from(wd[c]) * f64::from(xd[i * cols + c]);
                y[i * rows + j] += p;
                a[i * rows + j] += p.abs() * 2e-5;
            }
            if t == DType::Q4_1 {
                // Q8_1 stores `s = f16(d * sum(q))`: per block at most |m| * sum |x| * 2^-10 (+10%) more.
                let blocks = as_blocks::<BlockQ4_1>(&w[j * rb..(j + 1) * rb]);
                for (b, xs) in blocks.iter().zip(xd[i * cols..(i + 1) * cols].chunks_exact(32)) {
                    let xs: f64 = xs.iter().map(|v| f64::from(v.abs())).sum();
                    a[i * rows + j] += f64::from(b.m().abs()) * xs * 1.1 / 1024.0;
                }
            }
        }
    }
    (y, a)
}

#[test]
fn packed_matmul_is_bit_identical_across_levels_and_to_the_dots_and_close_to_f64() {
    let pool = ThreadPool::new(1);
    let scalar = Kernels::scalar();
    let levels = Kernels::all_levels();
    println!("levels {:?}", levels.iter().map(Kernels::level).collect::<Vec<_>>());
    // The packed kernels have SIMD versions on x86-64 (AVX2, AVX-512 VNNI) and aarch64 (dotprod): where the CPU has
    // one, it is tested.
    if common::machine_has_packed_simd() {
        assert!(levels.iter().any(|k| k.packed().is_simd()), "no SIMD packed kernel under test");
    }
    let mut r = rng(11);
    for t in TYPES {
        for (rows, cols, m) in SHAPES.into_iter().filter(|&(_, cols, _)| cols.is_multiple_of(t.block_size()))
        {
            let w = random_weights(&mut r, t, rows, cols);
            let x = random_f32(&mut r, m * cols, 2.0);
            let p = PackedWeights::pack(t, &w, rows, cols).unwrap();
            let ys = run_matmul(&scalar, &pool, WeightRef::from_packed(&p), &x, m);
            // The scalar dot kernel of the unpacked rows computes the same f32 sequence (one fma per block, two
            // for Q4_1; the K-quants' per-super-block sequence), so tables that do not pack (scalar, plain NEON:
            // bit-identical to the scalar dots) agree with the packed ones bit for bit.
            let yd = run_matmul(&scalar, &pool, WeightRef::new(t, &w, rows, cols).unwrap(), &x, m);
            for (i, (a, b)) in ys.iter().zip(&yd).enumerate() {
                assert_eq!(
                    a.to_bits(),
                    b.to_bits(),
                    "{t} {rows}x{cols} m={m} out {i}: packed {a} vs dot {b}"
                );
            }
            for k in &levels {
                let yk = run_matmul(k, &pool, WeightRef::from_packed(&p), &x, m);
                for (i, (a, b)) in ys.iter().zip(&yk).enumerate() {
                    assert_eq!(
                        a.to_bits(),
                        b.to_bits(),
                        "{t} {rows}x{cols} m={m} {:?} out {i}: {a} vs {b}",
                        k.level()
                    );
                }
            }
            let (yr, abs) = reference(t, &w, rows, cols, &x, m);
            for (i, y) in ys.iter().enumerate() {
                let tol = abs[i] + 1e-6;
                assert!(
                    (f64::from(*y) - yr[i]).abs() <= tol,
                    "{t} {rows}x{cols} m={m} out {i}: {y} vs f64 {}",
                    yr[i]
                );
            }
        }
    }
}

#[test]
fn packed_matmul_is_independent_of_threads_and_batching() {
    let (p1, p3) = (ThreadPool::new(1), ThreadPool::new(3));
    let k = Kernels::detect();
    let mut r = rng(12);
    for t in TYPES {
        let (rows, cols, m) = (300, 256, 75);
        let w = random_weights(&mut r, t, rows, cols);
        let x = random_f32(&mut r, m * cols, 1.0);
        let p = PackedWeights::pack(t, &w, rows, cols).unwrap();
        let y1 = run_matmul(&k, &p1, WeightRef::from_packed(&p), &x, m);
        let y3 = run_matmul(&k, &p3, WeightRef::from_packed(&p), &x, m);
        assert_eq!(y1, y3, "{t}: thread count changed the result");
        // Row 7 alone (decode) equals row 7 of the batch.
        let yd = run_matmul(&k, &p3, WeightRef::from_packed(&p), &x[7 * cols..8 * cols], 1);
        assert_eq!(yd[..], y1[7 * rows..8 * rows], "{t}: batching changed the result");
        // Mixed packed / unpacked products in one job equal separate calls.
        let w2 = random_weights(&mut r, t, 40, cols);
        let mut ya = vec![0f32; m * rows];
        let mut yb = vec![0f32; m * 40];
        let ws = [WeightRef::from_packed(&p), WeightRef::new(t, &w2, 40, cols).unwrap()];
        matmul_many(&k, &p3, &ws, &x, m, &mut [&mut ya, &mut yb], &mut MatmulScratch::new());
        assert_eq!(ya, y1, "{t}: matmul_many changed the packed product");
        assert_eq!(yb, run_matmul(&k, &p1, ws[1], &x, m), "{t}: matmul_many changed the unpacked product");
    }
}

#[test]
fn packed_rows_dequantise_like_the_source() {
    let mut r = rng(13);
    let k = Kernels::scalar();
    // The last shape packs with several threads (over 4 MiB).
    let shape = |t: DType| if t.block_size() == 256 { (21, 512) } else { (21, 96) };
    for (t, (rows, cols)) in TYPES.iter().map(|&t| (t, shape(t))).chain([(DType::Q8_0, (1003, 4096))]) {
        let w = random_weights(&mut r, t, rows, cols);
        let p = PackedWeights::pack(t, &w, rows, cols).unwrap();
        let rb = t.row_bytes(cols).unwrap();
        let (mut a, mut b) = (vec![0f32; cols], vec![0f32; cols]);
        for j in 0..rows {
            k.format(t).dequantize(&w[j * rb..(j + 1) * rb], &mut a);
            p.dequantize_row(j, &mut b);
            assert_eq!(a, b, "{t} row {j}");
        }
    }
}

#[test]
fn pack_rejects_bad_shapes_and_formats() {
    let w = vec![0u8; 18 * 4];
    assert!(PackedWeights::pack(DType::Q4_0, &w, 4, 32).is_ok());
    assert!(PackedWeights::pack(DType::Q4_0, &w, 5, 32).is_err());
    assert!(PackedWeights::pack(DType::Q4_0, &w, 1, 33).is_err());
    assert!(PackedWeights::pack(DType::F32, &w, 1, 4).is_err());
    assert!(PackedWeights::pack(DType::Q4_0, &w, usize::MAX, 32).is_err());
}

#[test]
fn packing_into_a_shared_arena_gives_the_same_bytes_and_products() {
    use edgevl_kernels::packed::PackArena;
    use std::sync::Arc;
    let mut r = rng(11);
    let pool = ThreadPool::new(2);
    // Big enough that both the arena and an own buffer of one matrix take the huge-page mapping path.
    let shapes = [
        (DType::Q4_0, 600, 4096),
        (DType::Q8_0, 37, 288),
        (DType::Q4_1, 129, 64),
        (DType::Q5_0, 50, 576),
        (DType::Q4_K, 35, 512),
        (DType::Q6_K, 19, 256),
    ];
    let cap: usize =
        shapes.iter().map(|&(t, rows, cols)| PackedWeights::packed_bytes(t, rows, cols).unwrap()).sum();
    let arena = Arc::new(PackArena::new(cap));
    for (t, rows, cols) in shapes {
        let w = random_weights(&mut r, t, rows, cols);
        let own = PackedWeights::pack(t, &w, rows, cols).unwrap();
        let shared = PackedWeights::pack_in(Some(&arena), t, &w, rows, cols).unwrap();
        assert_eq!(own.bytes(), shared.bytes(), "{t:?} {rows}x{cols}");
        let x = random_f32(&mut r, 3 * cols, 2.0);
        let k = Kernels::detect();
        let (a, b) = (WeightRef::from_packed(&own), WeightRef::from_packed(&shared));
        assert_eq!(run_matmul(&k, &pool, a, &x, 3), run_matmul(&k, &pool, b, &x, 3), "{t:?} {rows}x{cols}");
    }
    assert_eq!(arena.used(), arena.capacity(), "every reservation is a whole number of lines");
    // A full arena: the matrix gets a buffer of its own, with the same bytes.
    let w = random_weights(&mut r, DType::Q8_0, 5, 64);
    let p = PackedWeights::pack_in(Some(&arena), DType::Q8_0, &w, 5, 64).unwrap();
    assert_eq!(p.bytes(), PackedWeights::pack(DType::Q8_0, &w, 5, 64).unwrap().bytes());
    assert_eq!(arena.used(), arena.capacity());
}

/// A tile is only ever built from a packed matrix and buffers of its shape: a format without a packed layout
/// (the former unsound Q4_K call), counts out of range and short buffers are errors naming what is wrong.
#[test]
fn packed_tiles_are_checked_at_construction() {
    use edgevl_kernels::packed::{act_meta, ActMeta, PackedTile, GROUP, MAX_ACT, MAX_GROUPS};
    use edgevl_kernels::KernelError;
    let mut r = rng(14);
    let e = PackedWeights::pack(DType::F16, &random_weights(&mut r, DType::F16, 16, 64), 16, 64).unwrap_err();
    assert!(matches!(e, KernelError::NotPackable { dtype: DType::F16 }), "{e}");
    for t in TYPES {
        let (rows, cols) = (40, if t.block_size() == 256 { 512 } else { 64 });
        let p = PackedWeights::pack(t, &random_weights(&mut r, t, rows, cols), rows, cols).unwrap();
        let (vdt, nb) = (t.vec_dot_type(), p.blocks_per_row());
        let arb = vdt.row_bytes(cols).unwrap();
        let mut acts = vec![0u8; MAX_ACT * arb];
        let mut meta = vec![ActMeta::default(); MAX_ACT * nb];
        let k = Kernels::scalar();
        for (x, (a, m)) in random_f32(&mut r, MAX_ACT * cols, 1.0)
            .chunks_exact(cols)
            .zip(acts.chunks_exact_mut(arb).zip(meta.chunks_exact_mut(nb)))
        {
            k.quantizer(vdt).quantize(x, a);
            act_meta(vdt, a, m);
        }
        let err = |g0, ng, acts: &[u8], meta: &[ActMeta], n| {
            PackedTile::new(&p, g0, ng, acts, meta, n).map(|_| ()).unwrap_err().to_string()
        };
        assert!(PackedTile::new(&p, 0, 3, &acts, &meta, 1).is_ok());
        assert!(PackedTile::new(&p, 2, 1, &acts, &meta, MAX_ACT).is_ok());
        assert!(err(0, 1, &acts, &meta, 0).contains("activation rows"), "{t}");
        assert!(err(0, 1, &acts, &meta, MAX_ACT + 1).contains("activation rows"), "{t}");
        assert!(err(0, 2, &acts, &meta, 2).contains("row groups"), "{t}: several groups with several rows");
        assert!(err(0, MAX_GROUPS + 1, &acts, &meta, 1).contains("row groups"), "{t}");
        assert!(err(2, 2, &acts, &meta, 1).contains("last row group"), "{t}: past the matrix");
        assert!(err(usize::MAX, 1, &acts, &meta, 1).contains("last row group"), "{t}: overflowing group");
        assert!(err(0, 1, &acts[..arb - 1], &meta, 1).contains("activations"), "{t}");
        assert!(err(0, 1, &acts, &meta[..nb - 1], 1).contains("metadata"), "{t}");
        // A checked tile computes the same at every level.
        let tile = PackedTile::new(&p, 1, 1, &acts, &meta, 3).unwrap();
        let mut want = [0f32; GROUP * MAX_ACT];
        k.packed().dot(&tile, &mut want);
        for level in Kernels::all_levels() {
            let mut got = [0f32; GROUP * MAX_ACT];
            level.packed().dot(&tile, &mut got);
            assert_eq!(got[..3 * GROUP], want[..3 * GROUP], "{t} {:?}", level.level());
        }
    }
}

/// The largest integer sums a 4- or 5-bit block can give (every value at the top or bottom of its range, every
/// activation quant +-127) are exact at every level: the AVX2 kernels sum `vpmaddubsw` pairs in i16, which a
/// 5-bit block's 8 pair vectors (up to 62992) would overflow without widening.
#[test]
fn extreme_4_and_5_bit_blocks_give_exact_sums_at_every_level() {
    let pool = ThreadPool::new(1);
    // 21 activation rows: one panel of 16 for the wide kernel (AVX-512), 5 for the row-lane kernel.
    let (rows, cols, m) = (33, 256, 21);
    // Q4_0 blocks: `d`, 16 bytes; Q5_0: `d`, `qh`, 16 bytes. Row `j` is all top values, all bottom values or
    // alternating, with scale 1.
    let block = |t: DType, j: usize| -> Vec<u8> {
        let one = half::f16::from_f32(1.0).to_bits().to_le_bytes();
        let (qs, qh) = match j % 3 {
            0 => (0xffu8, 0xffff_ffffu32),
            1 => (0x00, 0),
            _ => (0x0f, 0x5555_5555),
        };
        let mut b = one.to_vec();
        if t == DType::Q5_0 {
            b.extend(qh.to_le_bytes());
        }
        b.extend([qs; 16]);
        b
    };
    for t in [DType::Q4_0, DType::Q5_0] {
        let w: Vec<u8> = (0..rows).flat_map(|j| (0..cols / 32).flat_map(move |_| block(t, j))).collect();
        assert_eq!(w.len(), rows * t.row_bytes(cols).unwrap());
        // Activations of one magnitude (every quant +-127): rows of one sign (the largest sums), then mixed signs.
        let sign = |i: usize| match i / cols {
            0 | 2 => 1.0,
            1 => -1.0,
            _ => (i % 7) as f32 - 3.0,
        };
        let x: Vec<f32> = (0..m * cols).map(|i| 3.0 * f32::signum(sign(i))).collect();
        let p = PackedWeights::pack(t, &w, rows, cols).unwrap();
        let want = run_matmul(&Kernels::scalar(), &pool, WeightRef::new(t, &w, rows, cols).unwrap(), &x, m);
        for k in Kernels::all_levels() {
            let got = run_matmul(&k, &pool, WeightRef::from_packed(&p), &x, m);
            assert_eq!(got, want, "{t} {:?}", k.level());
        }
        let (yr, _) = reference(t, &w, rows, cols, &x, m);
        for (y, r) in want.iter().zip(&yr) {
            assert!((f64::from(*y) - r).abs() <= r.abs() * 1e-6, "{t}: {y} vs f64 {r}");
        }
    }
}
