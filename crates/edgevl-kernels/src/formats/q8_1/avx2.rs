//! ggml-cpu's x86 Q8_1 activation quantiser (Q8_0's rounding; `s = f16(d * sum)`).

use super::{BlockQ8_1, QK8_1};
use crate::dispatch::QuantizeFn;
use crate::formats::{as_blocks_mut, f32_to_f16, q8_0::avx2::quantize_block};
use crate::x86::Avx2;

/// Table entry ([`QuantizeFn`]) for Q8_1 activations, handed out only for the proof that the CPU has AVX2, FMA and
/// F16C.
pub(crate) fn quantize(_: Avx2) -> QuantizeFn {
    quantize_entry
}

/// The entry [`quantize`] hands out.
fn quantize_entry(x: &[f32], out: &mut [u8]) {
    for (xb, b) in x.chunks_exact(QK8_1).zip(as_blocks_mut::<BlockQ8_1>(out)) {
        let xb: &[f32; QK8_1] = xb.try_into().unwrap_or_else(|_| unreachable!("chunks_exact"));
        // SAFETY: `quantize_entry` is private and only handed out by `quantize`, whose argument proves the
        // features `quantize_block` is compiled with.
        let (d, sum) = unsafe { quantize_block(xb, &mut b.qs) };
        b.d = f32_to_f16(d);
        b.s = f32_to_f16(d * sum as f32);
    }
}
