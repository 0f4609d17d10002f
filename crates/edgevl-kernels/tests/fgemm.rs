//! The F16/F32 GEMM: every kernel level is bit-identical to the scalar twin (odd sizes, partial last chunks),
//! close to a dequantised f64 reference, and each output row equals the product with that activation row alone.

mod common;

use common::{random_f32, random_weights, rng, run_matmul};
use edgevl_kernels::{DType, Kernels, ThreadPool, WeightRef};

#[test]
fn float_gemm_is_bit_identical_across_levels_and_close_to_f64() {
    let pool = ThreadPool::new(2);
    let scalar = Kernels::scalar();
    let levels = Kernels::all_levels();
    // The float GEMM has SIMD versions on x86-64 and aarch64: where the CPU has a SIMD level, one of them is tested.
    if common::machine_has_simd() {
        assert!(levels.iter().any(|k| k.float_gemm().is_simd()), "no SIMD float GEMM under test");
    }
    let mut r = rng(21);
    for t in [DType::F16, DType::F32] {
        for (rows, cols, m) in
            [(1, 1, 1), (5, 15, 3), (7, 17, 7), (13, 100, 13), (9, 4304 / 4, 20), (3, 48, 2)]
        {
            let w = random_weights(&mut r, t, rows, cols);
            let x = random_f32(&mut r, m * cols, 2.0);
            let wr = WeightRef::new(t, &w, rows, cols).unwrap();
            let ys = run_matmul(&scalar, &pool, wr, &x, m);
            // Levels whose F16/F32 products use the float GEMM (every SIMD level).
            for k in levels.iter().filter(|k| k.uses_float_gemm(t)) {
                let yk = run_matmul(k, &pool, wr, &x, m);
                for (i, (a, b)) in ys.iter().zip(&yk).enumerate() {
                    assert_eq!(
                        a.to_bits(),
                        b.to_bits(),
                        "{t} {rows}x{cols} m={m} {:?} out {i}: {a} vs {b}",
                        k.level()
                    );
                }
                // Batching independence: the last activation row alone.
                let yl = run_matmul(k, &pool, wr, &x[(m - 1) * cols..], 1);
                assert_eq!(yl[..], yk[(m - 1) * rows..], "{t} {:?}: row depends on batching", k.level());
            }
            // f64 reference on the activation format's values.
            common::assert_close_to_f64(t, &w, &x, (rows, cols, m), &ys, 2e-6);
        }
    }
}

/// A float tile is only built for F16/F32 rows with buffers of its shape; anything else is an error.
#[test]
fn float_tiles_are_checked_at_construction() {
    use edgevl_kernels::fgemm::{FloatTile, ACTS, ROWS};
    let (w, x) = (vec![0u8; 4 * 8 * 2], vec![0f32; 8 * 2]);
    assert!(FloatTile::new(DType::F32, &w, 32, 2, &x, 8, 2).is_ok());
    assert!(FloatTile::new(DType::F16, &w, 16, 4, &x, 8, 2).is_ok());
    let err = |t, w: &[u8], wrb, nr, x: &[f32], cols, na| {
        FloatTile::new(t, w, wrb, nr, x, cols, na).map(|_| ()).unwrap_err().to_string()
    };
    assert!(err(DType::Q8_0, &w, 34, 1, &x, 32, 1).contains("float GEMM"));
    assert!(err(DType::BF16, &w, 16, 1, &x, 8, 1).contains("float GEMM"));
    assert!(err(DType::F32, &w, 32, 0, &x, 8, 1).contains("weight rows"));
    assert!(err(DType::F32, &w, 32, ROWS + 1, &x, 8, 1).contains("weight rows"));
    assert!(err(DType::F32, &w, 32, 1, &x, 8, ACTS + 1).contains("activation rows"));
    assert!(err(DType::F32, &w, 16, 1, &x, 8, 1).contains("stride"), "rows overlap");
    assert!(err(DType::F32, &w, 32, 3, &x, 8, 1).contains("weights"), "past the weights");
    assert!(err(DType::F32, &w, 32, 1, &x, 8, 3).contains("activations"), "past the activations");
    assert!(err(DType::F32, &w, usize::MAX, 2, &x, 8, 1).contains("overflow"), "overflowing stride");
}
