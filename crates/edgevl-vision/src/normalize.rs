//! Rescale (1/255) and normalise ((x - mean) / std) 8-bit samples to f32, bit-identical to
//! transformers' numpy `rescale` + `normalize` (the PIL backend of every image processor).

/// Per-channel mean and standard deviation applied after rescaling to 0..1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalization {
    /// Mean per channel (R, G, B), in 0..1 units.
    pub mean: [f32; 3],
    /// Standard deviation per channel (R, G, B); must not be zero.
    pub std: [f32; 3],
}

/// transformers' default `rescale_factor`, the Python float `1 / 255`.
const RESCALE_FACTOR: f64 = 1.0 / 255.0;

impl Normalization {
    /// SigLIP's and Idefics3's (SmolVLM) processors: mean 0.5, std 0.5 (maps 0..255 to -1..1).
    pub const SIGLIP: Normalization = Normalization { mean: [0.5; 3], std: [0.5; 3] };

    /// ImageNet's mean and std (`IMAGENET_DEFAULT_MEAN` / `_STD`), InternVL's processor.
    pub const IMAGENET: Normalization =
        Normalization { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };

    /// A lookup table per channel, `table[c][v]`, computed as transformers does in numpy:
    /// `rescale` multiplies the sample in float64 by `1/255` and casts to float32, then
    /// `normalize` computes `(x - mean) / std` in float32 with mean and std as float32 values.
    /// Every operation is one IEEE-754 rounding in the same precision, so the values are
    /// bit-identical to the processor's `pixel_values`.
    pub fn tables(&self) -> [[f32; 256]; 3] {
        let mut t = [[0f32; 256]; 3];
        for (c, table) in t.iter_mut().enumerate() {
            for (v, out) in table.iter_mut().enumerate() {
                let x = (v as f64 * RESCALE_FACTOR) as f32;
                *out = (x - self.mean[c]) / self.std[c];
            }
        }
        t
    }
}

impl Default for Normalization {
    fn default() -> Self {
        Self::SIGLIP
    }
}

/// Writes an interleaved RGB buffer as three channel planes (channels first) into `out`,
/// which must hold exactly `rgb.len()` values.
pub(crate) fn normalize_planar(rgb: &[u8], tables: &[[f32; 256]; 3], out: &mut [f32]) {
    let plane = rgb.len() / 3;
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for (((px, r), g), b) in rgb.chunks_exact(3).zip(r).zip(g).zip(b) {
        *r = tables[0][usize::from(px[0])];
        *g = tables[1][usize::from(px[1])];
        *b = tables[2][usize::from(px[2])];
    }
}
