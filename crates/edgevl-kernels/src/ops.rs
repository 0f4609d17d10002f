//! Element-wise and row-wise operations of the transformer layers: norms, RoPE, softmax and
//! activations. Numerics follow ggml's CPU backend (sums of squares and softmax sums in f64,
//! RoPE angles advanced by repeated multiplication in f32) so results track llama.cpp closely.

/// RMSNorm of one row in place-free form: `out[i] = x[i] / sqrt(mean(x^2) + eps) * w[i]`.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    debug_assert!(x.len() == w.len() && x.len() == out.len());
    let sum = sum_f64(x, |v| (v * v) as f64);
    let mean = (sum / x.len() as f64) as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(w) {
        *o = v * scale * g;
    }
}

/// LayerNorm of one row: `out = (x - mean) / sqrt(var + eps) * w + b`.
pub fn layer_norm(x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32]) {
    debug_assert!(x.len() == w.len() && x.len() == b.len() && x.len() == out.len());
    let n = x.len() as f64;
    let mean = (sum_f64(x, |v| v as f64) / n) as f32;
    let var = (sum_f64(x, |v| ((v - mean) * (v - mean)) as f64) / n) as f32;
    let scale = 1.0 / (var + eps).sqrt();
    for (((o, &v), &g), &bb) in out.iter_mut().zip(x).zip(w).zip(b) {
        *o = (v - mean) * scale * g + bb;
    }
}

/// The sum of `f(v)` over `x` in f64 (as ggml's norms), in 8 interleaved partial sums added in order at the end:
/// independent chains the compiler vectorises rather than one chain of dependent additions. The order differs from
/// a sequential sum by f64 rounding only, far below the f32 the result is used in; the same on every CPU.
#[inline(always)]
fn sum_f64(x: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    let mut p = [0f64; 8];
    let chunks = x.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for c in chunks {
        for (a, &v) in p.iter_mut().zip(c) {
            *a += f(v);
        }
    }
    p.iter().sum::<f64>() + tail
}

/// How RoPE pairs the dimensions of a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeLayout {
    /// Adjacent pairs `(x[2i], x[2i+1])` (LLaMA as converted by llama.cpp).
    Normal,
    /// Half-split pairs `(x[i], x[i + n_rot/2])` (GPT-NeoX, Qwen2).
    Neox,
}

/// Rotary position embedding parameters shared by every head of a model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rope {
    /// Pairing of dimensions.
    pub layout: RopeLayout,
    /// Number of rotated dimensions per head (the rest pass through).
    pub n_rot: usize,
    /// Frequency base (theta).
    pub freq_base: f32,
    /// Linear position scale (1 / linear scaling factor).
    pub freq_scale: f32,
}

impl Rope {
    /// Fill `cos`/`sin` (each `n_rot / 2` long) with the angles for position `pos`; pair `i`'s
    /// angle is divided by `factors[i]` when given (ggml's `freq_factors`: Llama 3.1's scaling).
    pub fn angles(&self, pos: usize, factors: Option<&[f32]>, cos: &mut [f32], sin: &mut [f32]) {
        let half = self.n_rot / 2;
        debug_assert!(cos.len() >= half && sin.len() >= half);
        debug_assert!(factors.is_none_or(|f| f.len() >= half));
        let theta_scale = self.freq_base.powf(-2.0 / self.n_rot as f32);
        let mut theta = pos as f32 * self.freq_scale;
        for i in 0..half {
            let t = factors.map_or(theta, |f| theta / f[i]);
            cos[i] = t.cos();
            sin[i] = t.sin();
            theta *= theta_scale;
        }
    }

    /// Rotate one head vector in place with precomputed angles from [`Rope::angles`].
    pub fn apply(&self, head: &mut [f32], cos: &[f32], sin: &[f32]) {
        let half = self.n_rot / 2;
        match self.layout {
            RopeLayout::Normal => {
                for i in 0..half {
                    let (x0, x1) = (head[2 * i], head[2 * i + 1]);
                    head[2 * i] = x0 * cos[i] - x1 * sin[i];
                    head[2 * i + 1] = x0 * sin[i] + x1 * cos[i];
                }
            }
            RopeLayout::Neox => {
                for i in 0..half {
                    let (x0, x1) = (head[i], head[i + half]);
                    head[i] = x0 * cos[i] - x1 * sin[i];
                    head[i + half] = x0 * sin[i] + x1 * cos[i];
                }
            }
        }
    }
}

/// Softmax of one row in place (max-subtracted, sum accumulated in f64).
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f64;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v as f64;
    }
    let inv = (1.0 / sum) as f32;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// SwiGLU in place: `gate[i] = silu(gate[i]) * up[i]`, `silu(g) = g / (1 + expf(-g))` with libm's `expf` (ggml's
/// scalar `ggml_silu_f32`). Kept exact rather than on [`exp_approx`]: a change of an ulp here moves SmolLM2's
/// Q4_K_M perplexity over four chunks by -0.3% to +0.7% (measured), outside the 0.5% that the comparison with
/// llama.cpp allows, since the result is quantised to 8 bits before the down projection.
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

/// GELU, tanh approximation, in place (SigLIP's `gelu_pytorch_tanh`), as `u / (1 + exp(-2z))` (which equals
/// `0.5 u (1 + tanh z)`) with `z = sqrt(2/pi) (u + 0.044715 u^3)` and a branch-free `exp` the compiler vectorises
/// (relative error of a few f32 ulps, against libm's scalar `tanhf` per element).
#[inline(always)] // so that each SIMD level's build in `crate::gelu` compiles this body at its width
pub fn gelu_tanh(x: &mut [f32]) {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const COEF_A: f32 = 0.044_715;
    for v in x.iter_mut() {
        let u = *v;
        let z = SQRT_2_OVER_PI * u * (1.0 + COEF_A * u * u);
        *v = u / (1.0 + exp_approx(-2.0 * z));
    }
}

/// GELU with the exact error function, in place: `x * (1 + erf(x / sqrt 2)) / 2` (PyTorch's
/// `nn.GELU()`, InternViT's MLP and projector). `erf` is Abramowitz & Stegun 7.1.26 (absolute
/// error below 1.5e-7, the rational form PyTorch's vectorised CPU `erf` uses) on [`exp_approx`].
#[inline(always)] // so that each SIMD level's build in `crate::gelu` compiles this body at its width
pub fn gelu_erf(x: &mut [f32]) {
    const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [0.254_829_6, -0.284_496_74, 1.421_413_8, -1.453_152_1, 1.061_405_4];
    for v in x.iter_mut() {
        let u = *v;
        let z = (u * FRAC_1_SQRT_2).abs();
        let t = 1.0 / (1.0 + P * z);
        let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
        let erf_abs = 1.0 - poly * exp_approx(-z * z);
        let erf = erf_abs.copysign(u);
        *v = 0.5 * u * (1.0 + erf);
    }
}

/// `exp(x)` for finite `x`, clamped to `[-87, 88]` (so tiny results are about 1.6e-38 rather than 0): `2^n * p(r)`
/// with `n = round(x / ln 2)`, `r = x - n ln 2` (two-part ln 2) and a degree-6 polynomial; relative error < 3e-7.
/// The same on every CPU (plain arithmetic without fused multiply-adds), and vectorised by the compiler in loops.
#[inline(always)]
#[allow(clippy::manual_clamp)] // min/max (no NaN handling) vectorise where `clamp` may not
pub fn exp_approx(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer kept in the low mantissa bits
                                     // min/max rather than `clamp` and integer ops on the bits rather than `as` keep the loop vectorisable.
    let x = x.max(-87.0).min(88.0);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // `t`'s bits are `ROUND`'s plus n (|n| <= 127): 2^n from the exponent field, n + 127 in -126 + 127..=254.
    let bits = t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127) << 23;
    p * f32::from_bits(bits)
}

/// `acc[i] += x[i]`.
pub fn add_assign(acc: &mut [f32], x: &[f32]) {
    for (a, &b) in acc.iter_mut().zip(x) {
        *a += b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_unit_rms() {
        let x: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        let w = vec![1.0; 64];
        let mut out = vec![0.0; 64];
        rms_norm(&x, &w, 0.0, &mut out);
        let ms: f32 = out.iter().map(|v| v * v).sum::<f32>() / 64.0;
        assert!((ms - 1.0).abs() < 1e-5, "mean square {ms}");
    }

    #[test]
    fn layer_norm_zero_mean_unit_var() {
        let x: Vec<f32> = (0..33).map(|i| (i as f32 * 1.3).cos() * 5.0 + 2.0).collect();
        let (w, b) = (vec![1.0; 33], vec![0.0; 33]);
        let mut out = vec![0.0; 33];
        layer_norm(&x, &w, &b, 0.0, &mut out);
        let mean: f32 = out.iter().sum::<f32>() / 33.0;
        let var: f32 = out.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / 33.0;
        assert!(mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4);
    }

    #[test]
    fn rope_preserves_norm_and_position_zero_is_identity() {
        for layout in [RopeLayout::Normal, RopeLayout::Neox] {
            let rope = Rope { layout, n_rot: 16, freq_base: 10000.0, freq_scale: 1.0 };
            let head: Vec<f32> = (0..16).map(|i| i as f32 - 7.5).collect();
            let (mut c, mut s) = (vec![0.0; 8], vec![0.0; 8]);
            rope.angles(0, None, &mut c, &mut s);
            let mut h0 = head.clone();
            rope.apply(&mut h0, &c, &s);
            assert_eq!(h0, head);
            rope.angles(37, None, &mut c, &mut s);
            let mut h = head.clone();
            rope.apply(&mut h, &c, &s);
            let n0: f32 = head.iter().map(|v| v * v).sum();
            let n1: f32 = h.iter().map(|v| v * v).sum();
            assert!((n0 - n1).abs() / n0 < 1e-5);
            assert_ne!(h, head);
        }
    }

    #[test]
    fn rope_relative_property() {
        // <R(p) q, R(p) k> depends only on the offset: equal for (3, 3) and (10, 10).
        let rope = Rope { layout: RopeLayout::Neox, n_rot: 8, freq_base: 10000.0, freq_scale: 1.0 };
        let q: Vec<f32> = (0..8).map(|i| (i as f32).sin()).collect();
        let k: Vec<f32> = (0..8).map(|i| (i as f32).cos()).collect();
        let dot_at = |pq: usize, pk: usize| {
            let (mut c, mut s) = (vec![0.0; 4], vec![0.0; 4]);
            let (mut a, mut b) = (q.clone(), k.clone());
            rope.angles(pq, None, &mut c, &mut s);
            rope.apply(&mut a, &c, &s);
            rope.angles(pk, None, &mut c, &mut s);
            rope.apply(&mut b, &c, &s);
            a.iter().zip(&b).map(|(x, y)| x * y).sum::<f32>()
        };
        assert!((dot_at(5, 3) - dot_at(12, 10)).abs() < 1e-4);
    }

    #[test]
    fn softmax_sums_to_one() {
        let mut x = vec![1.0, 2.0, 3.0, -1e9, 0.5];
        softmax(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(x[3] == 0.0 && x[2] > x[1]);
    }

    #[test]
    fn activations_known_values() {
        let mut g = vec![0.0, 1.0, -2.0];
        swiglu(&mut g, &[5.0, 2.0, 1.0]);
        assert_eq!(g[0], 0.0);
        assert!((g[1] - 2.0 * 0.731_058_6).abs() < 1e-6);
        assert!((g[2] + 0.238_405_84).abs() < 1e-6);
        let mut x = vec![0.0, 1.0, -1.0];
        gelu_tanh(&mut x);
        assert!((x[1] - 0.841_192).abs() < 1e-5 && (x[2] + 0.158_808).abs() < 1e-5);
    }

    #[test]
    fn gelu_erf_matches_f64_erf() {
        let xs: Vec<f32> =
            (-20_000..=20_000).map(|i| i as f32 * 1e-3).chain([-90.0, 90.0, 1e-30, -1e-30, 0.0]).collect();
        let mut y = xs.clone();
        gelu_erf(&mut y);
        for (&u, &g) in xs.iter().zip(&y) {
            let u64 = f64::from(u);
            let want = 0.5 * u64 * (1.0 + libm::erf(u64 / std::f64::consts::SQRT_2));
            let err = (f64::from(g) - want).abs();
            assert!(err <= 2e-7 * u64.abs().max(1.0) + 2e-6 * want.abs(), "gelu_erf({u}) = {g}, f64 {want}");
        }
    }

    #[test]
    fn gelu_tanh_matches_f64_formula() {
        let xs: Vec<f32> =
            (-20_000..=20_000).map(|i| i as f32 * 1e-3).chain([-90.0, 90.0, 1e-30, -1e-30]).collect();
        let mut y = xs.clone();
        gelu_tanh(&mut y);
        for (&u, &g) in xs.iter().zip(&y) {
            let u64 = f64::from(u);
            let want =
                0.5 * u64 * (1.0 + (0.797_884_560_802_865_4 * (u64 + 0.044_715 * u64 * u64 * u64)).tanh());
            let err = (f64::from(g) - want).abs();
            assert!(err <= 2e-6 * want.abs() + 1e-7 * u64.abs(), "gelu({u}) = {g}, f64 {want}");
        }
    }

    #[test]
    fn swiglu_matches_f64_formula() {
        let gs: Vec<f32> =
            (-20_000..=20_000).map(|i| i as f32 * 5e-3).chain([-100.0, 100.0, 1e-30, -1e-30]).collect();
        let up: Vec<f32> = (0..gs.len()).map(|i| ((i % 7) as f32 - 3.0) * 0.7).collect();
        let mut y = gs.clone();
        swiglu(&mut y, &up);
        for ((&g, &u), &got) in gs.iter().zip(&up).zip(&y) {
            let want = f64::from(g) / (1.0 + (-f64::from(g)).exp()) * f64::from(u);
            let err = (f64::from(got) - want).abs();
            assert!(err <= 1e-6 * want.abs() + 1e-30, "swiglu({g}, {u}) = {got}, f64 {want}");
        }
    }

    #[test]
    fn norms_match_sequential_f64_sums() {
        // ggml's order (one f64 sum, element by element) against the partial sums, at odd lengths and in a row
        // whose large mean makes the variance sensitive to the sums' rounding.
        for n in [1, 7, 8, 9, 33, 1152, 2561] {
            let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.731).sin() * 3.0 + 100.0).collect();
            let (w, b) = (vec![1.5; n], vec![0.25; n]);
            let mean = (x.iter().map(|&v| v as f64).sum::<f64>() / n as f64) as f32;
            let var = (x.iter().map(|&v| ((v - mean) * (v - mean)) as f64).sum::<f64>() / n as f64) as f32;
            let scale = 1.0 / (var + 1e-6).sqrt();
            let mut out = vec![0.0; n];
            layer_norm(&x, &w, &b, 1e-6, &mut out);
            for (&o, &v) in out.iter().zip(&x) {
                let want = (v - mean) * scale * 1.5 + 0.25;
                assert!((o - want).abs() <= 1e-6 * want.abs().max(1.0), "layer_norm n={n}: {o} vs {want}");
            }
            let ms = (x.iter().map(|&v| (v * v) as f64).sum::<f64>() / n as f64) as f32;
            let scale = 1.0 / (ms + 1e-6).sqrt();
            rms_norm(&x, &w, 1e-6, &mut out);
            for (&o, &v) in out.iter().zip(&x) {
                let want = v * scale * 1.5;
                assert!((o - want).abs() <= 1e-6 * want.abs(), "rms_norm n={n}: {o} vs {want}");
            }
        }
    }
}
