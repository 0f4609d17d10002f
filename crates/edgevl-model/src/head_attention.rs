//! Attention of many queries at once on the kernels' small GEMM ([`edgevl_kernels::sgemm`]), shared by the ViT
//! (full attention within a tile) and the decoder's large prefill batches (causal attention over the KV cache).
//!
//! One pool job over (KV head, part of its query heads and blocks of [`QUERY_BLOCK`] queries): each task lays its KV
//! head's keys and values out as f32 matrices, `K^T` (`[head][n]`) and `V` (`[n][head]`), in its own thread's
//! buffers (so they stay in that core's cache rather than going through memory for all heads at once), then for
//! each of its blocks computes `S = Q_block K^T` (the queries read in place), each row scaled and soft-maxed over
//! its visible prefix (zero beyond it), and `O = P V`, written into the output: no synchronisation between the
//! products and no head at a time. A KV head's work is split into parts only when there are too few KV heads to
//! keep the threads busy (each part then lays the head out again).
//!
//! Numerics: scores and outputs are chains of fused multiply-adds in order (over the head's values, then over the
//! keys), the softmax is [`edgevl_kernels::softmax`] (relative error below 3e-7) divided by its sum; the same at every SIMD
//! level and thread count. Over a Q8_0 cache ([`Keys::Q8_0`]) the scores are llama.cpp's instead: each query rounded
//! to Q8_0 and dotted with the quantised keys in integers (its `vec_dot_q8_0_q8_0`), then scaled.

use crate::compute::Compute;
use crate::parallel::DisjointSlice;
use edgevl_kernels::{DType, Kernels, Sgemm, VecDotType};
use std::cell::RefCell;

/// Queries per block: 8 row blocks of the small GEMM, and scores of at most a few hundred KB per thread.
const QUERY_BLOCK: usize = 48;

/// Writes KV head `g`'s `K^T` (`hd` rows of `n`; an empty slice when the scores read the keys elsewhere:
/// [`Keys::Q8_0`]) and `V` (`n` rows of `hd`): `fill(g, kt, v)`.
pub(crate) type FillHead<'a> = dyn Fn(usize, &mut [f32], &mut [f32]) + Sync + 'a;

/// Where [`attend`] takes the keys of its scores from.
pub(crate) enum Keys<'a> {
    /// Each KV head's `K^T` as the [`FillHead`] writes it (f32 products on the small GEMM).
    Transposed,
    /// Each KV head's Q8_0 key rows, `head_bytes` a position from position 0 (`rows(g)` for KV head `g`): the
    /// queries rounded to Q8_0 and dotted with them in integers, as llama.cpp scores a q8_0 cache.
    Q8_0 { rows: &'a (dyn Fn(usize) -> &'a [u8] + Sync), head_bytes: usize },
}

/// Shapes of one [`attend`] call: `m` queries over `n` keys, `n_head` query heads of `hd` values sharing `n_head_kv`
/// KV heads (grouped-query attention), scores multiplied by `scale`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HeadsShape {
    pub m: usize,
    pub n: usize,
    pub hd: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub scale: f32,
}

/// One pool thread's buffers of [`attend`]'s tasks.
struct TaskBuffers {
    /// The task's KV head's `K^T` (`[hd][n]`) and `V` (`[n][hd]`).
    kt: Vec<f32>,
    v: Vec<f32>,
    /// A block's scores (`[QUERY_BLOCK][visible keys]`), outputs (`[QUERY_BLOCK][hd]`) and Q8_0 queries.
    s: Vec<f32>,
    o: Vec<f32>,
    qq: Vec<u8>,
}

thread_local! {
    /// Kept by each pool thread from one call to the next.
    static TASK_BUFFERS: RefCell<TaskBuffers> = const {
        RefCell::new(TaskBuffers { kt: Vec::new(), v: Vec::new(), s: Vec::new(), o: Vec::new(), qq: Vec::new() })
    };
}

/// The first `len` values of `buf`, grown (never shrunk) to hold them.
fn prefix(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    &mut buf[..len]
}

/// `out[i, head h] = softmax_{j < visible(i)}(q_i,h · k_j * scale) v_j` for the `m` queries of `q` and the `n` keys
/// and values `fill` writes for each KV head (the keys as `keys` says); `q` and `out` are `[m, n_head * hd]`.
/// `visible(i)` (in `1..=n`) must not decrease with `i`.
pub(crate) fn attend(
    cx: Compute,
    sh: HeadsShape,
    q: &[f32],
    (keys, fill): (&Keys, &FillHead),
    visible: &(dyn Fn(usize) -> usize + Sync),
    out: &mut [f32],
) {
    let HeadsShape { m, n, hd, n_head, n_head_kv, scale } = sh;
    let (qd, group) = (n_head * hd, n_head / n_head_kv.max(1));
    assert!(q.len() >= m * qd && out.len() >= m * qd, "head attention: shapes do not match");
    let gemm = cx.kernels.sgemm();
    let blocks = m.div_ceil(QUERY_BLOCK);
    // A KV head's (query head, block) units, split into `parts` tasks when there are too few KV heads for about two
    // tasks a thread.
    let units = group * blocks;
    let parts = (2 * cx.pool.n_threads()).div_ceil(n_head_kv.max(1)).clamp(1, units.max(1));
    let transposed = matches!(keys, Keys::Transposed);
    let out = DisjointSlice::new(&mut out[..m * qd]);
    cx.pool.run(n_head_kv * parts, &|t| {
        let (g, part) = (t / parts, t % parts);
        TASK_BUFFERS.with_borrow_mut(|b| {
            let kt = prefix(&mut b.kt, if transposed { n * hd } else { 0 });
            let v = prefix(&mut b.v, n * hd);
            fill(g, kt, v);
            let (kt, v) = (&*kt, &*v);
            for u in part * units / parts..(part + 1) * units / parts {
                let (h, i0) = (g * group + u / blocks, u % blocks * QUERY_BLOCK);
                let rows = (m - i0).min(QUERY_BLOCK);
                // The keys any query of the block sees (`visible` does not decrease).
                let cols = visible(i0 + rows - 1).min(n);
                let (s, o) = (prefix(&mut b.s, rows * cols), prefix(&mut b.o, rows * hd));
                let qb = &q[i0 * qd + h * hd..];
                match keys {
                    Keys::Transposed => {
                        // Cannot fail: the query rows (`qd` apart), `K^T` (`n` apart) and the buffers were sized
                        // above.
                        let mut g = Sgemm::new((rows, cols, hd), qb, qd, kt, n, s, cols)
                            .expect("head attention: scores");
                        gemm.run(&mut g);
                    }
                    Keys::Q8_0 { rows: key_rows, head_bytes } => q8_0_scores(
                        cx.kernels,
                        (qb, qd),
                        (key_rows(g), *head_bytes),
                        (rows, cols, hd),
                        &mut b.qq,
                        s,
                    ),
                }
                for (r, row) in s.chunks_exact_mut(cols).enumerate() {
                    let vis = visible(i0 + r).min(cols);
                    let (seen, hidden) = row.split_at_mut(vis);
                    let (_, sum) = cx.kernels.exp_shifted(seen, scale);
                    let inv = 1.0 / sum;
                    seen.iter_mut().for_each(|p| *p *= inv);
                    hidden.fill(0.0);
                }
                let mut g =
                    Sgemm::new((rows, hd, cols), s, cols, v, hd, o, hd).expect("head attention: outputs");
                gemm.run(&mut g);
                for (r, o) in o.chunks_exact(hd).enumerate() {
                    // SAFETY: unit (h, block) is one task's alone, and alone writes head h's values of its rows.
                    unsafe { out.range_mut((i0 + r) * qd + h * hd, hd) }.copy_from_slice(o);
                }
            }
        });
    });
}

/// `s[r * cols + j]` = the integer dot of query row `r` (of `rows`, `qd` apart in `q`, `hd` values), rounded to Q8_0,
/// with Q8_0 key row `j` (of `cols`, `head_bytes` each from the start of `keys`): four queries per pass over the keys.
fn q8_0_scores(
    k: &Kernels,
    (q, qd): (&[f32], usize),
    (keys, head_bytes): (&[u8], usize),
    (rows, cols, hd): (usize, usize, usize),
    qq: &mut Vec<u8>,
    s: &mut [f32],
) {
    const QUERIES: usize = 4; // the most activation rows the format's `dot` takes
    const KEYS: usize = 64; // keys a `dot` call
    qq.resize(rows * head_bytes, 0);
    let quantize = k.quantizer(VecDotType::Q8_0);
    for (r, qr) in qq.chunks_exact_mut(head_bytes).enumerate() {
        quantize.quantize(&q[r * qd..][..hd], qr);
    }
    let dot = k.format(DType::Q8_0);
    let mut pass = [0f32; QUERIES * KEYS];
    for (qs, sr) in qq.chunks(QUERIES * head_bytes).zip(s.chunks_mut(QUERIES * cols)) {
        let n_act = qs.len() / head_bytes;
        // `pass[j * n_act + i]` holds query i's score with key j0 + j.
        for j0 in (0..cols).step_by(KEYS) {
            let nj = (cols - j0).min(KEYS);
            let out = &mut pass[..nj * n_act];
            dot.dot(&keys[j0 * head_bytes..], head_bytes, qs, head_bytes, n_act, out);
            for (i, srow) in sr.chunks_exact_mut(cols).enumerate() {
                for (j, o) in srow[j0..j0 + nj].iter_mut().enumerate() {
                    *o = out[j * n_act + i];
                }
            }
        }
    }
}
