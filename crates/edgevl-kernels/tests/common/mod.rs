//! Helpers shared by the kernel tests.
#![allow(dead_code)]

use edgevl_kernels::formats::quantize_ref;
use edgevl_kernels::{matmul, DType, KernelConfig, Kernels, MatmulScratch, SimdLevel, ThreadPool, WeightRef};
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

/// The tables of every SIMD level this CPU has (scalar excluded), for tests comparing them with the scalar twins.
/// Fails, rather than letting such a test pass having compared nothing, unless this machine really has no SIMD
/// level (an x86-64 CPU without AVX2/FMA/F16C, or another architecture; NEON is the aarch64 baseline), as found
/// by the standard library's own feature detection.
pub fn simd_levels() -> Vec<Kernels> {
    let levels: Vec<Kernels> =
        Kernels::all_levels().into_iter().filter(|k| k.level() != SimdLevel::Scalar).collect();
    println!("SIMD levels under test: {:?}", levels.iter().map(Kernels::level).collect::<Vec<_>>());
    assert!(
        !levels.is_empty() || !machine_has_simd(),
        "no SIMD table on a CPU that has a SIMD level: the comparison with the scalar twins would be vacuous"
    );
    levels
}

/// Whether this CPU has one of the kernels' SIMD levels, by the standard library's detection alone.
#[cfg(target_arch = "x86_64")]
pub fn machine_has_simd() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
}

/// Whether this CPU has one of the kernels' SIMD levels, by the standard library's detection alone.
#[cfg(target_arch = "aarch64")]
pub fn machine_has_simd() -> bool {
    std::arch::is_aarch64_feature_detected!("neon")
}

/// Whether this CPU has a SIMD packed-GEMM kernel (x86-64: AVX2; aarch64: the dot-product instructions), by the
/// standard library's detection alone.
pub fn machine_has_packed_simd() -> bool {
    #[cfg(target_arch = "x86_64")]
    return machine_has_simd();
    #[cfg(target_arch = "aarch64")]
    return std::arch::is_aarch64_feature_detected!("dotprod");
    #[allow(unreachable_code)]
    false
}

/// Whether this CPU has one of the kernels' SIMD levels (none on this architecture).
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub fn machine_has_simd() -> bool {
    false
}

/// The kernel options the override variables of this test process ask for (tests are an edge of the program:
/// they read `EDGEVL_MAX_SIMD`, `EDGEVL_FORCE_SCALAR` and `EDGEVL_NO_PACK` themselves).
pub fn env_config() -> KernelConfig {
    KernelConfig::from_vars(|name| std::env::var(name).ok()).unwrap_or_else(|e| panic!("{e}"))
}

/// Checks `y` (`m` rows of `rows` outputs: weights `w` of `dtype`, `rows x cols`, times activation rows `x`) against
/// an f64 product of the dequantised weights and the values of the activation format: each output within
/// `tol(cols) * sum |terms|`.
#[allow(dead_code)]
pub fn assert_close_to_f64(
    dtype: DType,
    w: &[u8],
    x: &[f32],
    (rows, cols, m): (usize, usize, usize),
    y: &[f32],
    tol: f64,
) {
    let scalar = Kernels::scalar();
    let vdt = dtype.vec_dot_type();
    let mut buf = vec![0u8; vdt.row_bytes(cols).unwrap()];
    let mut wd = vec![0f32; rows * cols];
    scalar.format(dtype).dequantize(w, &mut wd);
    let mut xd = vec![0f32; cols];
    for i in 0..m {
        scalar.quantizer(vdt).quantize(&x[i * cols..(i + 1) * cols], &mut buf);
        edgevl_kernels::formats::dequantize_act(vdt, &buf, &mut xd);
        for j in 0..rows {
            let (mut s, mut a) = (0f64, 0f64);
            for c in 0..cols {
                let p = f64::from(wd[j * cols + c]) * f64::from(xd[c]);
                s += p;
                a += p.abs();
            }
            let yv = f64::from(y[i * rows + j]);
            assert!(
                (yv - s).abs() <= tol * a + 1e-30,
                "{dtype} {rows}x{cols} out ({i},{j}): {yv} vs f64 {s}"
            );
        }
    }
}

/// `x W^T` for `m` rows of `x` with the kernels of `k`, the output filled with NaN first (so an output a kernel
/// never writes shows).
#[allow(dead_code)]
pub fn run_matmul(k: &Kernels, pool: &ThreadPool, w: WeightRef, x: &[f32], m: usize) -> Vec<f32> {
    let mut y = vec![f32::NAN; m * w.rows()];
    matmul(k, pool, w, x, m, &mut y, &mut MatmulScratch::new());
    y
}
