//! A memory-read probe: XOR of a word buffer, streamed with AVX2 loads, so a timed pass over a
//! buffer larger than the caches measures read bandwidth (the roofline of memory-bound decoding).
//!
//! The buffer is allocated as packed weights are (huge pages where the OS has them), so the probe
//! measures what the weights could be streamed at; 256-bit loads stream faster than 512-bit ones
//! on the Xeon this was tuned on (18.4 vs 16.2 GB/s on one core), so the probe uses the faster.

use crate::buffer::AlignedBuf;
use crate::ThreadPool;
use std::time::Instant;

/// Read bandwidth in GB/s of the pool's threads streaming a `bytes` buffer (best of 5 passes,
/// each thread taking 8 contiguous parts in turn); pick `bytes` much larger than the caches.
pub fn read_bandwidth_gbs(pool: &ThreadPool, bytes: usize) -> f64 {
    let mut buf = AlignedBuf::zeroed_lines(bytes.div_ceil(64).max(1));
    // Fill the buffer (touching every page) with a pattern the reads cannot predict away.
    for (i, w) in buf.as_mut_slice().chunks_exact_mut(8).enumerate() {
        w.copy_from_slice(&(i as u64).to_le_bytes());
    }
    let bytes_all = buf.as_slice();
    // SAFETY: the buffer is 64-byte aligned and a whole number of 8-byte words; any bits are a valid u64.
    let words: &[u64] =
        unsafe { std::slice::from_raw_parts(bytes_all.as_ptr().cast::<u64>(), bytes_all.len() / 8) };
    let tasks = pool.n_threads() * 8;
    let chunk = words.len().div_ceil(tasks);
    let sink = std::sync::atomic::AtomicU64::new(0);
    let mut best = 0f64;
    for _ in 0..5 {
        let t0 = Instant::now();
        pool.run(tasks, &|t| {
            let part = &words[(t * chunk).min(words.len())..((t + 1) * chunk).min(words.len())];
            sink.fetch_xor(xor_words(part), std::sync::atomic::Ordering::Relaxed);
        });
        best = best.max(bytes_all.len() as f64 / t0.elapsed().as_secs_f64() / 1e9);
    }
    std::hint::black_box(sink.into_inner());
    best
}

/// XOR of all `words` (the value only keeps the reads from being optimised away). Uses AVX2
/// loads when the CPU has them; the result is the same on every path.
pub fn xor_words(words: &[u64]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if let Some(avx2) = crate::x86::Avx2::detect() {
        return xor_words_avx2(avx2, words);
    }
    xor_words_scalar(words)
}

/// Portable twin of the SIMD probe.
pub fn xor_words_scalar(words: &[u64]) -> u64 {
    let mut acc = [0u64; 8];
    let mut chunks = words.chunks_exact(8);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a ^= v;
        }
    }
    chunks.remainder().iter().chain(acc.iter()).fold(0, |a, &b| a ^ b)
}

/// [`xor_words`] with AVX2 (for the proof that the CPU has it).
#[cfg(target_arch = "x86_64")]
fn xor_words_avx2(_: crate::x86::Avx2, words: &[u64]) -> u64 {
    // SAFETY: the argument proves that the CPU has AVX2.
    unsafe { xor_words_avx2_loop(words) }
}

/// Four independent 256-bit accumulators, 128 bytes per iteration.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn xor_words_avx2_loop(words: &[u64]) -> u64 {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_setzero_si256(); 4];
    let mut chunks = words.chunks_exact(16);
    for c in &mut chunks {
        for (k, a) in acc.iter_mut().enumerate() {
            // SAFETY: `c` holds 16 words, so words 4k..4k+4 are readable; the load is unaligned.
            let v = unsafe { _mm256_loadu_si256(c.as_ptr().add(4 * k).cast()) };
            *a = _mm256_xor_si256(*a, v);
        }
    }
    let v = _mm256_xor_si256(_mm256_xor_si256(acc[0], acc[1]), _mm256_xor_si256(acc[2], acc[3]));
    let mut lanes = [0u64; 4];
    // SAFETY: `lanes` is 32 writable bytes.
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), v) };
    chunks.remainder().iter().chain(lanes.iter()).fold(0, |a, &b| a ^ b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simd_and_scalar_agree_with_a_plain_fold_on_odd_sizes() {
        let words: Vec<u64> = (0..1000u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect();
        for n in [0, 1, 7, 15, 16, 17, 100, 999, 1000] {
            let want = words[..n].iter().fold(0, |a, &b| a ^ b);
            assert_eq!(xor_words_scalar(&words[..n]), want, "scalar n={n}");
            assert_eq!(xor_words(&words[..n]), want, "dispatched n={n}");
        }
    }

    #[test]
    fn bandwidth_probe_returns_a_positive_finite_rate() {
        let bw = read_bandwidth_gbs(&ThreadPool::new(2), 1 << 20);
        assert!(bw.is_finite() && bw > 0.0, "{bw}");
    }
}
