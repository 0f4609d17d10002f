//! GELU of a slice in place ([`crate::Kernels::gelu`]): [`crate::ops::gelu_tanh`] and [`crate::ops::gelu_erf`],
//! each one portable body (plain arithmetic on [`crate::ops::exp_approx`], no fused multiply-adds: Rust never
//! contracts `a * b + c`) compiled once per SIMD level behind the level's proof, so that the compiler vectorises
//! it at the level's width; every level computes the same operations in the same order, so the results are
//! bit-identical to the scalar twins.

use crate::ops::{gelu_erf, gelu_tanh};

/// Which GELU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gelu {
    /// The tanh approximation (SigLIP's `gelu_pytorch_tanh`), [`crate::ops::gelu_tanh`].
    Tanh,
    /// The exact error function (PyTorch's `nn.GELU()`), [`crate::ops::gelu_erf`].
    Erf,
}

/// One level's builds of the two activations.
#[derive(Clone, Copy)]
pub(crate) struct GeluKernels {
    tanh: fn(&mut [f32]),
    erf: fn(&mut [f32]),
}

impl GeluKernels {
    /// The scalar twins (vectorised for the compile-time target only).
    pub(crate) const SCALAR: Self = GeluKernels { tanh: gelu_tanh, erf: gelu_erf };

    /// Applies `kind` to `x` in place.
    pub(crate) fn apply(&self, kind: Gelu, x: &mut [f32]) {
        match kind {
            Gelu::Tanh => (self.tanh)(x),
            Gelu::Erf => (self.erf)(x),
        }
    }
}

/// `$name(proof)`: the bodies compiled with `$features`, handed out for the proof token `$proof` of those features.
#[cfg(target_arch = "x86_64")]
macro_rules! level {
    ($(#[$doc:meta])* $name:ident, $proof:ty, $features:literal) => {
        $(#[$doc])*
        pub(crate) fn $name(_: $proof) -> GeluKernels {
            #[target_feature(enable = $features)]
            fn tanh_body(x: &mut [f32]) {
                gelu_tanh(x)
            }
            #[target_feature(enable = $features)]
            fn erf_body(x: &mut [f32]) {
                gelu_erf(x)
            }
            fn tanh(x: &mut [f32]) {
                // SAFETY: handed out only for the proof token of these features.
                unsafe { tanh_body(x) }
            }
            fn erf(x: &mut [f32]) {
                // SAFETY: as above.
                unsafe { erf_body(x) }
            }
            GeluKernels { tanh, erf }
        }
    };
}

#[cfg(target_arch = "x86_64")]
level!(
    /// The bodies compiled for AVX2 and FMA.
    avx2,
    crate::x86::Avx2,
    "avx2,fma"
);

#[cfg(target_arch = "x86_64")]
level!(
    /// The bodies compiled for AVX-512 F/BW/VL.
    avx512,
    crate::x86::Avx512Vnni,
    "avx2,fma,avx512f,avx512bw,avx512vl"
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Kernels;

    #[test]
    fn every_level_equals_the_scalar_twins_bit_for_bit() {
        let mut s = 7u64;
        let mut r = move || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 24.0 - 12.0
        };
        for n in [1, 3, 8, 15, 16, 17, 31, 64, 100, 4304] {
            let mut x: Vec<f32> = (0..n).map(|_| r()).collect();
            x[0] = if n % 2 == 0 { -95.0 } else { 95.0 }; // past exp_approx's clamp
            for kind in [Gelu::Tanh, Gelu::Erf] {
                let mut want = x.clone();
                GeluKernels::SCALAR.apply(kind, &mut want);
                for k in Kernels::all_levels() {
                    let mut got = x.clone();
                    k.gelu(kind, &mut got);
                    assert!(
                        got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{kind:?} {:?} n={n}",
                        k.level()
                    );
                }
            }
        }
    }
}
