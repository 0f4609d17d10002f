//! The GEMM of float weights in panels: every kernel level is bit-identical to the scalar twin (odd sizes, partial
//! last panels, every activation-row count of a call), close to a dequantised f64 reference, independent of
//! batching and threads; the layout keeps every row (`dequantize_row`), and tiles are checked at construction.

mod common;

use common::{random_f32, random_weights, rng, run_matmul};
use edgevl_kernels::fpanel::{FloatPanels, PanelTile, ACTS, PANELS};
use edgevl_kernels::{DType, Kernels, ThreadPool, WeightRef};

#[test]
fn panel_gemm_is_bit_identical_across_levels_and_close_to_f64() {
    let pools = [ThreadPool::new(1), ThreadPool::new(2)];
    let scalar = Kernels::scalar();
    let levels = Kernels::all_levels();
    if common::machine_has_simd() {
        assert!(levels.iter().any(|k| k.float_panels().is_simd()), "no SIMD panel kernel under test");
    }
    let mut r = rng(33);
    for t in [DType::F16, DType::F32] {
        // Rows: partial panels, one and several panel pairs; m: every count of a call and several calls.
        for (rows, cols, m) in [
            (1, 1, 1),
            (5, 15, 3),
            (17, 17, 7),
            (16, 33, 12),
            (33, 100, 13),
            (48, 4304 / 8, 25),
            (70, 9, 2),
            (3, 48, 11),
        ] {
            let w = random_weights(&mut r, t, rows, cols);
            let x = random_f32(&mut r, m * cols, 2.0);
            let fp = FloatPanels::pack(t, &w, rows, cols).unwrap();
            let wr = WeightRef::from_panels(&fp);
            let ys = run_matmul(&scalar, &pools[0], wr, &x, m);
            for k in &levels {
                for pool in &pools {
                    let yk = run_matmul(k, pool, wr, &x, m);
                    for (i, (a, b)) in ys.iter().zip(&yk).enumerate() {
                        assert_eq!(
                            a.to_bits(),
                            b.to_bits(),
                            "{t} {rows}x{cols} m={m} {:?} {} threads, out {i}: {a} vs {b}",
                            k.level(),
                            pool.n_threads()
                        );
                    }
                }
                // Batching independence: the last activation row alone.
                let yl = run_matmul(k, &pools[1], wr, &x[(m - 1) * cols..], 1);
                assert_eq!(yl[..], ys[(m - 1) * rows..], "{t} {:?}: row depends on batching", k.level());
            }
            // The layout keeps every row.
            let mut wd = vec![0f32; rows * cols];
            scalar.format(t).dequantize(&w, &mut wd);
            let mut row = vec![0f32; cols];
            for j in 0..rows {
                fp.dequantize_row(j, &mut row);
                assert_eq!(row[..], wd[j * cols..(j + 1) * cols], "{t} {rows}x{cols}: row {j} of the panels");
            }
            // The panels widened to f32 (as a task of the product does) hold the same values, at every level,
            // from any first panel.
            let mut buf = Vec::new();
            for k in &levels {
                for p0 in [0, fp.panels() - 1] {
                    let wf = fp.to_f32(k, p0, 2, &mut buf);
                    assert_eq!(wf.panels(), (fp.panels() - p0).min(2), "{t} {rows}x{cols}: panels from {p0}");
                    for j in p0 * 16..rows.min((p0 + 2) * 16) {
                        let got: Vec<f32> =
                            (0..cols).map(|c| buf[(j / 16 - p0) * cols * 16 + c * 16 + j % 16]).collect();
                        assert_eq!(
                            got[..],
                            wd[j * cols..(j + 1) * cols],
                            "{t} {rows}x{cols} {:?}: row {j}",
                            k.level()
                        );
                    }
                }
            }
            // f64 reference on the activation format's values. One chain of `cols` roundings: |error| <= cols *
            // 2^-24 * sum |terms| (first order).
            common::assert_close_to_f64(t, &w, &x, (rows, cols, m), &ys, cols as f64 * 6e-8);
        }
    }
}

/// Panels are laid out only from F16/F32 rows of the stated shape, and a tile only for panels and activation
/// rows that exist.
#[test]
fn panels_and_tiles_are_checked_at_construction() {
    let w = vec![0u8; 20 * 8 * 4];
    let err = |t, rows, cols| FloatPanels::pack(t, &w, rows, cols).map(|_| ()).unwrap_err().to_string();
    assert!(err(DType::Q8_0, 1, 32).contains("float GEMM"));
    assert!(err(DType::F32, 21, 8).contains("weight data"), "past the data");
    assert!(err(DType::F32, 19, 8).contains("weight data"), "bytes left over");
    assert!(err(DType::F32, usize::MAX, 8).contains("overflow"));
    let fp = FloatPanels::pack(DType::F32, &w, 20, 8).unwrap();
    assert_eq!((fp.rows(), fp.cols(), fp.panels()), (20, 8, 2));
    assert!(fp.panel_bytes(2, 1).is_empty() && fp.panel_bytes(usize::MAX, usize::MAX).is_empty());
    assert_eq!(fp.panel_bytes(1, 5).len(), fp.panel_bytes(0, 1).len(), "clamped to the last panel");
    let x = vec![0f32; 8 * ACTS];
    let mut buf = Vec::new();
    let wf = fp.to_f32(&Kernels::scalar(), 0, usize::MAX, &mut buf);
    assert_eq!(wf.panels(), 2);
    assert!(PanelTile::new(&wf, 0, PANELS, &x, ACTS).is_ok());
    assert_eq!(fp.to_f32(&Kernels::scalar(), 1, 5, &mut Vec::new()).panels(), 1, "clamped to the last panel");
    assert_eq!(fp.to_f32(&Kernels::scalar(), 9, 1, &mut Vec::new()).panels(), 0, "past the last panel");
    let empty = FloatPanels::pack(DType::F32, &[], 3, 0).unwrap();
    assert_eq!(empty.to_f32(&Kernels::scalar(), 0, 1, &mut Vec::new()).panels(), 1, "rows of no columns");
    let err = |p, np, x: &[f32], na| PanelTile::new(&wf, p, np, x, na).map(|_| ()).unwrap_err().to_string();
    assert!(err(0, 0, &x, 1).contains("panels"));
    assert!(err(1, 2, &x, 1).contains("panels"), "past the last panel");
    assert!(err(0, PANELS + 1, &x, 1).contains("panels"));
    assert!(err(0, 1, &x, 0).contains("activation rows"));
    assert!(err(0, 1, &x, ACTS + 1).contains("activation rows"));
    assert!(err(0, 1, &x[..8 * 2], 3).contains("activations"), "past the activations");
}
