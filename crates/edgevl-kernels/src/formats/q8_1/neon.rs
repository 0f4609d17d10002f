//! ggml-cpu's x86 Q8_1 activation quantiser with NEON (Q8_0's rounding; `s = f16(d * sum)`), bit-identical to the
//! scalar one.

use super::{BlockQ8_1, QK8_1};
use crate::aarch64::Neon;
use crate::dispatch::QuantizeFn;
use crate::formats::{as_blocks_mut, f32_to_f16, q8_0::neon::quantize_block};

/// Table entry ([`QuantizeFn`]) for Q8_1 activations, handed out only for a NEON proof.
pub(crate) fn quantize(_: Neon) -> QuantizeFn {
    quantize_entry
}

/// The entry [`quantize`] hands out.
fn quantize_entry(x: &[f32], out: &mut [u8]) {
    for (xb, b) in x.chunks_exact(QK8_1).zip(as_blocks_mut::<BlockQ8_1>(out)) {
        // SAFETY: `quantize_entry` is private and only handed out by `quantize`, whose argument proves NEON.
        let (d, sum) = unsafe { quantize_block(xb, &mut b.qs) };
        b.d = f32_to_f16(d);
        b.s = f32_to_f16(d * sum as f32);
    }
}
