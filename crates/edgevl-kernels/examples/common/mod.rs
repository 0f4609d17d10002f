//! What the kernel examples share: the kernel table the override variables ask for, and a fixed
//! pseudo-random sequence for their data.

use edgevl_kernels::{KernelConfig, Kernels};

/// The kernel table of `EDGEVL_MAX_SIMD` / `EDGEVL_FORCE_SCALAR` / `EDGEVL_NO_PACK`; a bad value ends
/// the example `name` with the error and exit code 2.
pub fn kernels_from_env(name: &str) -> Kernels {
    match KernelConfig::from_vars(|var| std::env::var(var).ok()) {
        Ok(cfg) => Kernels::new(cfg),
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::exit(2);
        }
    }
}

/// Values in [-0.5, 0.5) from a xorshift64 generator with a fixed seed (the same data every run).
pub fn xorshift() -> impl FnMut() -> f32 {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }
}
