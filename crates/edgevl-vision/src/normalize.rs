//! Rescale (1/255) and normalise ((x - mean) / std) 8-bit samples to f32.

/// Per-channel mean and standard deviation applied after rescaling to 0..1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalization {
    /// Mean per channel (R, G, B), in 0..1 units.
    pub mean: [f32; 3],
    /// Standard deviation per channel (R, G, B); must not be zero.
    pub std: [f32; 3],
}

impl Normalization {
    /// SigLIP's processor: mean 0.5, std 0.5 (maps 0..255 to -1..1).
    pub const SIGLIP: Normalization = Normalization { mean: [0.5; 3], std: [0.5; 3] };

    /// A lookup table per channel: `table[c][v] = (v / 255 - mean[c]) / std[c]`, computed in f64.
    pub fn tables(&self) -> [[f32; 256]; 3] {
        let mut t = [[0f32; 256]; 3];
        for (c, table) in t.iter_mut().enumerate() {
            for (v, out) in table.iter_mut().enumerate() {
                let x = v as f64 / 255.0;
                *out = ((x - f64::from(self.mean[c])) / f64::from(self.std[c])) as f32;
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
