//! Llama 3.1's RoPE scaling (`rope_scaling.rope_type: llama3`), which llama.cpp's converter writes
//! as the tensor `rope_freqs.weight`: one factor per rotated pair dividing its angle.

/// The `llama3` scaling parameters, with llama.cpp's defaults for those a config leaves out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Llama3Rope {
    /// `factor` (8).
    pub factor: f64,
    /// `low_freq_factor` (1).
    pub low_freq_factor: f64,
    /// `high_freq_factor` (4).
    pub high_freq_factor: f64,
    /// `original_max_position_embeddings` (8192).
    pub original_context: f64,
}

/// The factors llama.cpp's `LlamaModel.generate_extra_tensors` computes for RoPE base `theta` and
/// head width `head_dim`, bit for bit: its torch arithmetic is float32, where `x / tensor` is
/// `reciprocal(tensor) * x` (PyTorch's `__rtruediv__`); the power is taken in f64 and rounded
/// (torch's float32 `pow` is that to within its last bit; checked on six configurations).
pub fn llama3_factors(theta: f64, head_dim: u64, p: &Llama3Rope) -> Vec<f32> {
    let (base, dim) = (theta as f32, head_dim as f32);
    let two_pi = (2.0 * std::f64::consts::PI) as f32;
    let low_wavelen = (p.original_context / p.low_freq_factor) as f32;
    let high_wavelen = (p.original_context / p.high_freq_factor) as f32;
    let (factor, context) = (p.factor as f32, p.original_context as f32);
    let span = (p.high_freq_factor - p.low_freq_factor) as f32;
    (0..head_dim)
        .step_by(2)
        .map(|i| {
            let exponent = i as f32 / dim;
            let freq = 1.0 / (f64::from(base).powf(f64::from(exponent)) as f32);
            let wavelen = (1.0 / freq) * two_pi;
            if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                factor
            } else {
                let smooth = ((1.0 / wavelen) * context - p.low_freq_factor as f32) / span;
                1.0 / ((1.0 - smooth) / factor + smooth)
            }
        })
        .collect()
}
