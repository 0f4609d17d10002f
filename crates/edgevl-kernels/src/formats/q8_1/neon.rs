//! ggml-cpu's x86 Q8_1 activation quantiser with NEON (Q8_0's rounding; `s = f16(d * sum)`), bit-identical to the
//! scalar one.

use super::{BlockQ8_1, QK8_1};
use crate::formats::{as_blocks_mut, f32_to_f16, q8_0::neon::quantize_block};

/// Table entry ([`crate::dispatch::QuantizeFn`]) for Q8_1 activations. Only installed after NEON was detected.
pub(crate) fn quantize(x: &[f32], out: &mut [u8]) {
    for (xb, b) in x.chunks_exact(QK8_1).zip(as_blocks_mut::<BlockQ8_1>(out)) {
        // SAFETY: installed only after NEON was detected (it is the aarch64 baseline).
        let (d, sum) = unsafe { quantize_block(xb, &mut b.qs) };
        b.d = f32_to_f16(d);
        b.s = f32_to_f16(d * sum as f32);
    }
}
