//! Helpers shared by the kernel tests.
#![allow(dead_code)]

use edgevl_kernels::formats::quantize_ref;
use edgevl_kernels::DType;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A seeded RNG.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// `n` values ~ uniform(-1, 1) * scale, with occasional outliers.
pub fn random_f32(r: &mut StdRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let v: f32 = r.gen_range(-1.0..1.0) * scale;
            if r.gen_range(0..64) == 0 {
                v * 8.0
            } else {
                v
            }
        })
        .collect()
}

/// A random `rows x cols` weight matrix quantised to `dtype`.
pub fn random_weights(r: &mut StdRng, dtype: DType, rows: usize, cols: usize) -> Vec<u8> {
    let x = random_f32(r, rows * cols, 0.5);
    quantize_ref(dtype, &x).expect("whole blocks")
}

/// Column counts that are whole blocks for every type.
pub fn cols_for(dtype: DType) -> Vec<usize> {
    match dtype.block_size() {
        256 => vec![256, 512, 1280],
        _ => vec![32, 64, 96, 288, 1280, 256 * 3],
    }
}
