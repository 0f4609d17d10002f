//! The LLaMA-family decoder (llama, qwen2): a forward pass over a batch of tokens (or input
//! embeddings) that appends to the KV cache and returns the logits asked for.
//!
//! Per block: `x += Wo · attn(rope(Wq·n(x) + bq), rope(Wk·n(x) + bk), Wv·n(x) + bv)` then
//! `x += Wdown · (silu(Wgate·n(x)) * Wup·n(x))`, with `n` the block's RMSNorm.

use crate::causal_attention::{self, CausalShape};
use crate::compute::Compute;
use crate::hparams::{DecoderHparams, MAX_HEAD_DIM};
use crate::kv_cache::{KvElem, KvPlanes, KvType};
use crate::parallel::{add_rows, par_chunks_mut, DisjointSlice};
use crate::split_attention::{self, SplitScratch};
use crate::weights::{Loader, Matrix};
use crate::{Hook, KvCache, ModelError};
use edgevl_arch::llm::{self as names, Block};
use edgevl_gguf::GgufFile;
use edgevl_kernels::formats::q8_0::{BlockQ8_0, QK8_0};
use edgevl_kernels::ops::{rms_norm, softmax, swiglu};
use edgevl_kernels::{
    matmul, matmul_many, matmul_many_biased, DType, Kernels, MatmulScratch, ThreadPool, VecDotType,
};
use std::sync::Arc;

/// What goes into the decoder.
#[derive(Clone, Copy, Debug)]
pub enum DecoderInput<'a> {
    /// Token ids, embedded with the model's table.
    Tokens(&'a [u32]),
    /// Ready embeddings, `n_tokens * n_embd` values row-major (e.g. projected image tiles).
    Embeddings(&'a [f32]),
}

impl DecoderInput<'_> {
    fn n_tokens(&self, n_embd: usize) -> usize {
        match self {
            DecoderInput::Tokens(t) => t.len(),
            DecoderInput::Embeddings(e) => e.len() / n_embd,
        }
    }
}

/// Which logits a forward pass computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogitsWanted {
    /// None (prefill chunks before the last).
    None,
    /// Only the last position's (generation).
    Last,
    /// Every position's (perplexity, tests).
    All,
}

struct Layer {
    attn_norm: Vec<f32>,
    wq: Matrix,
    wk: Matrix,
    wv: Matrix,
    bq: Option<Vec<f32>>,
    bk: Option<Vec<f32>>,
    bv: Option<Vec<f32>>,
    wo: Matrix,
    ffn_norm: Vec<f32>,
    gate: Matrix,
    up: Matrix,
    down: Matrix,
}

/// A loaded decoder; weights stay in the memory-mapped GGUF file (or are repacked at load for its kernel table).
pub struct Decoder {
    file: Arc<GgufFile>,
    /// The kernel table every product and attention loop runs on (and the weights were laid out for).
    kernels: Kernels,
    hp: DecoderHparams,
    n_vocab: usize,
    tok_embd: Matrix,
    output_norm: Vec<f32>,
    output: Matrix,
    /// RoPE frequency factors (`rope_freqs.weight`, `[n_rot / 2]`), when the file has them.
    rope_factors: Option<Vec<f32>>,
    layers: Vec<Layer>,
    hook: Hook,
}

/// Scratch buffers of one session, sized once for a maximum batch (chunk) size.
pub struct RunState {
    max_batch: usize,
    /// Residual stream `[max_batch, n_embd]`.
    x: Vec<f32>,
    /// Normalised input of a sub-layer `[max_batch, n_embd]`.
    xn: Vec<f32>,
    /// Queries `[max_batch, q_dim]`.
    q: Vec<f32>,
    /// Keys `[max_batch, kv_dim]`.
    k: Vec<f32>,
    /// Values `[max_batch, kv_dim]`.
    v: Vec<f32>,
    /// Attention output `[max_batch, q_dim]`.
    attn: Vec<f32>,
    /// Output of a projection back to the residual width `[max_batch, n_embd]`.
    proj: Vec<f32>,
    /// SwiGLU gate `[max_batch, n_ff]`.
    gate: Vec<f32>,
    /// SwiGLU up `[max_batch, n_ff]`.
    up: Vec<f32>,
    /// Attention scores, one row of `n_ctx` per attention task `[QUERY_SPLIT * n_head, n_ctx]`.
    scores: Vec<f32>,
    /// RoPE cos/sin for one position `[n_rot / 2]` each.
    cos: Vec<f32>,
    sin: Vec<f32>,
    /// Logits `[rows, n_vocab]`, grown on demand.
    logits: Vec<f32>,
    scratch: MatmulScratch,
    /// Partial results of the split attention of small batches.
    split: SplitScratch,
}

impl RunState {
    /// The logits of the last forward pass that asked for `Last` (the first `n_vocab` values).
    pub fn logits(&self, n_vocab: usize) -> &[f32] {
        &self.logits[..n_vocab.min(self.logits.len())]
    }

    /// The most tokens one forward pass with this scratch takes.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }
}

/// `split.count`: the number of parts of a split GGUF (llama-gguf-split).
const SPLIT_COUNT: &str = "split.count";

/// Refuses a file with a tensor the decoder does not read: a bias, a norm or a block edgevl does
/// not compute would otherwise be dropped without a word, and the model would compute something
/// else (llama.cpp computes some of these, e.g. an output-projection bias, and refuses a file
/// with tensors it did not load).
fn refuse_unread_tensors(f: &GgufFile, hp: &DecoderHparams) -> Result<(), ModelError> {
    let mut read: std::collections::HashSet<String> =
        [names::TOKEN_EMBD, names::OUTPUT, names::OUTPUT_NORM, names::ROPE_FREQS].map(String::from).into();
    read.extend((0..hp.n_layer).flat_map(|l| Block::ALL.map(|b| b.name(l))));
    match f.tensors().iter().find(|t| !read.contains(&t.name)) {
        Some(t) => Err(ModelError::BadHparams(format!(
            "tensor '{}' is not part of a {} decoder of {} blocks as edgevl computes it (not supported)",
            t.name,
            hp.arch.key_prefix(),
            hp.n_layer
        ))),
        None => Ok(()),
    }
}

impl Decoder {
    /// Build a decoder from an open GGUF file, checking every tensor's presence, shape and type, to compute with
    /// the kernels of `kernels` (which also decide the matrices repacked at load).
    pub fn load(file: Arc<GgufFile>, kernels: &Kernels) -> Result<Self, ModelError> {
        let f = file.as_ref();
        if let Some(n) = f.metadata().opt_u64(SPLIT_COUNT)?.filter(|&n| n > 1) {
            return Err(ModelError::BadHparams(format!(
                "this file is one of {n} parts of a split GGUF: merge them first (llama-gguf-split --merge)"
            )));
        }
        let hp = DecoderHparams::try_from(file.metadata())?;
        // Before anything is loaded or repacked: a refused file costs no load.
        refuse_unread_tensors(f, &hp)?;
        let d = hp.n_embd;
        let embd_info = f
            .tensor(names::TOKEN_EMBD)
            .ok_or_else(|| edgevl_gguf::GgufError::MissingTensor(names::TOKEN_EMBD.into()))?;
        let n_vocab = match embd_info.dims.as_slice() {
            [_, v] if *v > 0 && *v <= (1 << 24) => *v as usize,
            dims => {
                return Err(ModelError::BadHparams(format!(
                    "{} has dims {dims:?}, expected [{d}, n_vocab]",
                    names::TOKEN_EMBD
                )))
            }
        };
        let has_output = f.tensor(names::OUTPUT).is_some();
        let ld = Loader::new(f, kernels);
        // Checked before the matrices are loaded: a refused file costs no load.
        let rope_factors = ld.optional_vector(names::ROPE_FREQS, hp.rope.n_rot / 2)?;
        if let Some(bad) = rope_factors.iter().flatten().find(|v| !(v.is_finite() && **v > 0.0)) {
            return Err(ModelError::BadHparams(format!(
                "{} holds {bad}: factors must be positive",
                names::ROPE_FREQS
            )));
        }
        // With a separate output matrix the embedding table is only read row by row: it stays in the file.
        let tok_embd = if has_output {
            ld.matrix_unpacked(names::TOKEN_EMBD, d, n_vocab)?
        } else {
            ld.matrix(names::TOKEN_EMBD, d, n_vocab)?
        };
        let output = if has_output { ld.matrix(names::OUTPUT, d, n_vocab)? } else { tok_embd.clone() };
        let output_norm = ld.vector(names::OUTPUT_NORM, d)?;
        let (qd, kvd, ff) = (hp.q_dim(), hp.kv_dim(), hp.n_ff);
        let layers = (0..hp.n_layer)
            .map(|l| {
                let mat = |b: Block, cols, rows| ld.matrix(&b.name(l), cols, rows);
                let opt = |b: Block, n| ld.optional_vector(&b.name(l), n);
                Ok(Layer {
                    attn_norm: ld.vector(&Block::AttnNorm.name(l), d)?,
                    wq: mat(Block::AttnQ, d, qd)?,
                    wk: mat(Block::AttnK, d, kvd)?,
                    wv: mat(Block::AttnV, d, kvd)?,
                    bq: opt(Block::AttnQBias, qd)?,
                    bk: opt(Block::AttnKBias, kvd)?,
                    bv: opt(Block::AttnVBias, kvd)?,
                    wo: mat(Block::AttnOutput, qd, d)?,
                    ffn_norm: ld.vector(&Block::FfnNorm.name(l), d)?,
                    gate: mat(Block::FfnGate, d, ff)?,
                    up: mat(Block::FfnUp, d, ff)?,
                    down: mat(Block::FfnDown, ff, d)?,
                })
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        let kernels = kernels.clone();
        Ok(Decoder {
            file,
            kernels,
            hp,
            n_vocab,
            tok_embd,
            output_norm,
            output,
            rope_factors,
            layers,
            hook: Hook::default(),
        })
    }

    /// The kernel table the decoder computes with.
    pub fn kernels(&self) -> &Kernels {
        &self.kernels
    }

    /// Sets the activation hook (see [`crate::ActivationHook`]): `inp_embd` (the batch's input
    /// rows), per block `attn_norm`, `attn_out` (after the output projection), `ffn_norm`,
    /// `ffn_out` and `layer_out` (transformers' `hidden_states[l + 1]` before the final norm), then
    /// `result_norm` and `result_output` (the logits computed) — each for the rows of the pass.
    pub fn set_hook(&mut self, hook: Hook) {
        self.hook = hook;
    }

    /// Hyper-parameters.
    pub fn hparams(&self) -> &DecoderHparams {
        &self.hp
    }

    /// Vocabulary size (rows of the output projection).
    pub fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    /// The GGUF file the weights live in.
    pub fn file(&self) -> &Arc<GgufFile> {
        &self.file
    }

    /// A KV cache for `n_ctx` positions holding `kv_type` values; an error when the type cannot
    /// hold this model's heads (Q8_0 needs a head width that is a multiple of 32) or the size
    /// overflows.
    pub fn try_new_cache(&self, n_ctx: usize, kv_type: KvType) -> Result<KvCache, ModelError> {
        KvCache::new(self.hp.n_layer, n_ctx, self.hp.kv_dim(), self.hp.head_dim, kv_type)
    }

    /// As [`Decoder::try_new_cache`], for callers that pick a type every model supports (f16,
    /// f32): should creation fail, the cache returned makes every forward pass fail with the
    /// reason instead.
    pub fn new_cache(&self, n_ctx: usize, kv_type: KvType) -> KvCache {
        self.try_new_cache(n_ctx, kv_type)
            .unwrap_or_else(|e| KvCache::unusable(n_ctx, self.hp.kv_dim(), kv_type, &e))
    }

    /// Scratch for batches of at most `max_batch` tokens in a context of `n_ctx`.
    pub fn new_state(&self, max_batch: usize, n_ctx: usize) -> RunState {
        let hp = &self.hp;
        let max_batch = max_batch.max(1);
        let z = |n: usize| vec![0f32; n];
        RunState {
            max_batch,
            x: z(max_batch * hp.n_embd),
            xn: z(max_batch * hp.n_embd),
            q: z(max_batch * hp.q_dim()),
            k: z(max_batch * hp.kv_dim()),
            v: z(max_batch * hp.kv_dim()),
            attn: z(max_batch * hp.q_dim()),
            proj: z(max_batch * hp.n_embd),
            gate: z(max_batch * hp.n_ff),
            up: z(max_batch * hp.n_ff),
            scores: z(QUERY_SPLIT * hp.n_head * n_ctx),
            cos: z(hp.rope.n_rot / 2),
            sin: z(hp.rope.n_rot / 2),
            logits: Vec::new(),
            scratch: MatmulScratch::new(),
            split: SplitScratch::default(),
        }
    }

    /// Run `input` at the next positions of `kv` and return the logits asked for
    /// (`n_vocab` values for `Last`, `n_tokens * n_vocab` for `All`, empty for `None`).
    pub fn forward<'s>(
        &self,
        input: DecoderInput<'_>,
        kv: &mut KvCache,
        st: &'s mut RunState,
        pool: &ThreadPool,
        want: LogitsWanted,
    ) -> Result<&'s [f32], ModelError> {
        let hp = &self.hp;
        let d = hp.n_embd;
        let m = input.n_tokens(d);
        if let DecoderInput::Embeddings(e) = input {
            if e.len() % d != 0 {
                return Err(ModelError::BadInput(format!(
                    "{} embedding values are not a whole number of rows of width {d}",
                    e.len()
                )));
            }
        }
        if m == 0 || m > st.max_batch {
            return Err(ModelError::BadInput(format!(
                "batch of {m} tokens; this run state takes 1..={}",
                st.max_batch
            )));
        }
        kv.check_usable()?;
        let pos0 = kv.len();
        if pos0 + m > kv.n_ctx() || st.scores.len() < QUERY_SPLIT * hp.n_head * kv.n_ctx() {
            return Err(ModelError::ContextOverflow { needed: pos0 + m, used: pos0, n_ctx: kv.n_ctx() });
        }
        self.embed(input, &mut st.x[..m * d])?;
        self.hook.emit("inp_embd", None, &st.x[..m * d]);
        for (l, layer) in self.layers.iter().enumerate() {
            self.attention_block(l, layer, m, pos0, kv, st, pool);
            self.ffn_block(l, layer, m, st, pool);
            self.hook.emit("layer_out", Some(l), &st.x[..m * d]);
        }
        kv.set_len(pos0 + m);
        let (first, rows) = match want {
            LogitsWanted::None => return Ok(&st.logits[..0]),
            LogitsWanted::Last => (m - 1, 1),
            LogitsWanted::All => (0, m),
        };
        for r in 0..rows {
            let row = (first + r) * d;
            rms_norm(&st.x[row..row + d], &self.output_norm, hp.rms_eps, &mut st.xn[r * d..(r + 1) * d]);
        }
        if st.logits.len() < rows * self.n_vocab {
            st.logits.resize(rows * self.n_vocab, 0.0);
        }
        self.hook.emit("result_norm", None, &st.xn[..rows * d]);
        let out = &mut st.logits[..rows * self.n_vocab];
        let w = self.output.view(&self.file);
        matmul(&self.kernels, pool, w, &st.xn[..rows * d], rows, out, &mut st.scratch);
        self.hook.emit("result_output", None, out);
        Ok(&st.logits[..rows * self.n_vocab])
    }

    fn embed(&self, input: DecoderInput<'_>, x: &mut [f32]) -> Result<(), ModelError> {
        let d = self.hp.n_embd;
        match input {
            DecoderInput::Tokens(tokens) => {
                for (i, &t) in tokens.iter().enumerate() {
                    if t as usize >= self.n_vocab {
                        return Err(ModelError::TokenOutOfRange { id: t, n_vocab: self.n_vocab });
                    }
                    self.tok_embd.row_into(&self.kernels, &self.file, t as usize, &mut x[i * d..(i + 1) * d]);
                }
            }
            DecoderInput::Embeddings(e) => x.copy_from_slice(e),
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn attention_block(
        &self,
        l: usize,
        layer: &Layer,
        m: usize,
        pos0: usize,
        kv: &mut KvCache,
        st: &mut RunState,
        pool: &ThreadPool,
    ) {
        let hp = &self.hp;
        let (d, qd, kvd, hd) = (hp.n_embd, hp.q_dim(), hp.kv_dim(), hp.head_dim);
        rms_norm_rows(pool, &st.x[..m * d], &layer.attn_norm, hp.rms_eps, &mut st.xn[..m * d]);
        self.hook.emit("attn_norm", Some(l), &st.xn[..m * d]);
        let xn = &st.xn[..m * d];
        let f = &self.file;
        // One pool job for the three projections and their biases (bit-identical to three `matmul` calls and
        // bias additions).
        matmul_many_biased(
            &self.kernels,
            pool,
            &[layer.wq.view(f), layer.wk.view(f), layer.wv.view(f)],
            &[layer.bq.as_deref(), layer.bk.as_deref(), layer.bv.as_deref()],
            xn,
            m,
            &mut [&mut st.q[..m * qd], &mut st.k[..m * kvd], &mut st.v[..m * kvd]],
            &mut st.scratch,
        );
        for i in 0..m {
            hp.rope.angles(pos0 + i, self.rope_factors.as_deref(), &mut st.cos, &mut st.sin);
            let heads = st.q[i * qd..(i + 1) * qd].chunks_exact_mut(hd);
            for head in heads.chain(st.k[i * kvd..(i + 1) * kvd].chunks_exact_mut(hd)) {
                hp.rope.apply(head, &st.cos, &st.sin);
            }
        }
        kv.store(&self.kernels, l, pos0, &st.k[..m * kvd], &st.v[..m * kvd]);
        self.attend(m, pos0, kv, l, st, pool);
        let wo = layer.wo.view(f);
        matmul(&self.kernels, pool, wo, &st.attn[..m * qd], m, &mut st.proj[..m * d], &mut st.scratch);
        self.hook.emit("attn_out", Some(l), &st.proj[..m * d]);
        add_rows(pool, &mut st.x[..m * d], &st.proj[..m * d], d);
    }

    /// Causal attention of the `m` new queries over positions `0..pos0 + i + 1`. On an f16 cache,
    /// batches of fewer than [`FLASH_TILE_Q`] queries (decode steps) split the context across tasks
    /// ([`split_attention`]: f32 dot products and value sums, exact softmax per split, splits merged),
    /// larger batches compute two small GEMMs per (head, block of queries) in f32 with an exact softmax
    /// ([`causal_attention`]),
    /// as llama.cpp's tiled kernel does. An f32 cache is computed in f32 per query head with an exact
    /// softmax. A Q8_0 cache takes llama.cpp's per-query flash-attention kernel for batches under
    /// [`FLASH_TILE_Q`] queries, and for larger ones the tiled path with llama.cpp's integer scores
    /// ([`causal_attention::attend_q8_0`]: per-query exponentials and value rows cost 30% of the
    /// prefill's speed at depth 1344).
    fn attend(&self, m: usize, pos0: usize, kv: &KvCache, l: usize, st: &mut RunState, pool: &ThreadPool) {
        let hp = &self.hp;
        let (qd, hd, n_ctx) = (hp.q_dim(), hp.head_dim, kv.n_ctx());
        let planes = kv.planes();
        let sh = CausalShape { m, pos0, hd, n_head: hp.n_head, n_head_kv: hp.n_head_kv };
        let cx = Compute { kernels: &self.kernels, pool };
        match planes {
            KvPlanes::F16(p) => {
                let out = &mut st.attn[..m * qd];
                if m >= FLASH_TILE_Q {
                    causal_attention::attend(cx, sh, &st.q[..m * qd], p.layer(l), out);
                } else {
                    split_attention::attend(cx, sh, &st.q[..m * qd], p.layer(l), &mut st.split, out);
                }
                return;
            }
            KvPlanes::Q8_0(p) if m >= FLASH_TILE_Q => {
                let out = &mut st.attn[..m * qd];
                causal_attention::attend_q8_0(cx, sh, &st.q[..m * qd], p, l, out);
                return;
            }
            _ => {}
        }
        let group = hp.n_head / hp.n_head_kv;
        let scale = 1.0 / (hd as f32).sqrt();
        let q = &st.q;
        let k = &self.kernels;
        // Each head's queries are split (interleaved, so causal work stays balanced) over
        // `QUERY_SPLIT` tasks, each with its own score row; every output is computed alone, so
        // results do not depend on the split.
        let split = if m > 1 { QUERY_SPLIT } else { 1 };
        let attn = DisjointSlice::new(&mut st.attn[..m * qd]);
        let scores = DisjointSlice::new(&mut st.scores[..QUERY_SPLIT * hp.n_head * n_ctx]);
        pool.run(hp.n_head * split, &|task| {
            let (h, part) = (task / split, task % split);
            let g = h / group;
            // SAFETY: task `task` is the only one touching score row `task`.
            let s_row = unsafe { scores.range_mut(task * n_ctx, n_ctx) };
            for i in (part..m).step_by(split) {
                let qh = &q[i * qd + h * hd..i * qd + (h + 1) * hd];
                // SAFETY: the (i, h) output slot is written by this task only (query i of head h).
                let out = unsafe { attn.range_mut(i * qd + h * hd, hd) };
                let n = pos0 + i + 1;
                let s = &mut s_row[..n];
                match planes {
                    KvPlanes::F32(p) => {
                        let (keys, values) = p.layer(l).head(g, n);
                        attend_exact(qh, keys, values, scale, s, out)
                    }
                    // Taken by `split_attention` above.
                    KvPlanes::F16(_) => unreachable!("f16 caches take the split or causal path"),
                    KvPlanes::Q8_0(p) => {
                        let rows = p.head_rows(g, n);
                        let (keys, values) = (&p.k[l][rows.clone()], &p.v[l][rows]);
                        attend_flash_q8_0(k, qh, keys, values, p.head_bytes, scale, s, out)
                    }
                    // `forward` refuses an unusable cache before any layer runs.
                    KvPlanes::Unusable(_) => out.fill(0.0),
                }
            }
        });
    }

    fn ffn_block(&self, l: usize, layer: &Layer, m: usize, st: &mut RunState, pool: &ThreadPool) {
        let hp = &self.hp;
        let (d, ff) = (hp.n_embd, hp.n_ff);
        rms_norm_rows(pool, &st.x[..m * d], &layer.ffn_norm, hp.rms_eps, &mut st.xn[..m * d]);
        self.hook.emit("ffn_norm", Some(l), &st.xn[..m * d]);
        let f = &self.file;
        let xn = &st.xn[..m * d];
        matmul_many(
            &self.kernels,
            pool,
            &[layer.gate.view(f), layer.up.view(f)],
            xn,
            m,
            &mut [&mut st.gate[..m * ff], &mut st.up[..m * ff]],
            &mut st.scratch,
        );
        let up = &st.up[..m * ff];
        par_chunks_mut(pool, &mut st.gate[..m * ff], ff, &|i, gate| swiglu(gate, &up[i * ff..][..ff]));
        let down = layer.down.view(f);
        matmul(&self.kernels, pool, down, &st.gate[..m * ff], m, &mut st.proj[..m * d], &mut st.scratch);
        self.hook.emit("ffn_out", Some(l), &st.proj[..m * d]);
        add_rows(pool, &mut st.x[..m * d], &st.proj[..m * d], d);
    }
}

/// RMSNorm of every `w.len()`-wide row of `x` into `out`, rows spread over the pool (one row: on this thread).
fn rms_norm_rows(pool: &ThreadPool, x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let d = w.len();
    par_chunks_mut(pool, out, d, &|i, o| rms_norm(&x[i * d..][..d], w, eps, o));
}

/// Query batches at least this large take llama.cpp's tiled (f32) attention path.
pub(crate) const FLASH_TILE_Q: usize = 64;

/// Tasks per head when a batch has several queries.
const QUERY_SPLIT: usize = 2;

/// One query head over the `s.len()` cached positions in f32 (`keys` and `values` hold that head's
/// rows, position by position): scores, softmax, weighted sum.
fn attend_exact<T: KvElem>(q: &[f32], keys: &[T], values: &[T], scale: f32, s: &mut [f32], out: &mut [f32]) {
    let hd = q.len();
    let mut row = [0f32; MAX_HEAD_DIM];
    let row = &mut row[..hd];
    for (sj, k) in s.iter_mut().zip(keys.chunks_exact(hd)) {
        T::row_to_f32(k, row);
        *sj = q.iter().zip(row.iter()).map(|(&a, &b)| a * b).sum::<f32>() * scale;
    }
    softmax(s);
    out.fill(0.0);
    for (&p, v) in s.iter().zip(values.chunks_exact(hd)) {
        T::row_to_f32(v, row);
        for (o, &v) in out.iter_mut().zip(row.iter()) {
            *o += p * v;
        }
    }
}

/// One query head over the `s.len()` cached positions of a Q8_0 cache (`keys` and `values` hold
/// that head's rows of `head_bytes`, position by position), as ggml's CPU flash attention over a
/// q8_0 K/V (its one-query kernel, which it uses for every batch size when the cache is
/// quantised): the query converted to Q8_0 (K's `vec_dot_type`) and dotted with the quantised
/// keys, times `scale`; a running maximum and sum; each value row dequantised to f32 and added
/// with a fused multiply-add to an f32 accumulator, divided by the sum at the end.
#[allow(clippy::too_many_arguments)]
fn attend_flash_q8_0(
    k: &Kernels,
    q: &[f32],
    keys: &[u8],
    values: &[u8],
    head_bytes: usize,
    scale: f32,
    s: &mut [f32],
    out: &mut [f32],
) {
    let mut qq = [0u8; MAX_HEAD_DIM / QK8_0 * std::mem::size_of::<BlockQ8_0>()];
    let qq = &mut qq[..head_bytes];
    k.quantizer(VecDotType::Q8_0).quantize(q, qq);
    k.format(DType::Q8_0).dot(&keys[..s.len() * head_bytes], head_bytes, qq, head_bytes, 1, s);
    s.iter_mut().for_each(|sj| *sj *= scale);
    let att = k.attention();
    let (mut max, mut sum) = (f32::NEG_INFINITY, 0f32);
    out.fill(0.0);
    for (j, &sj) in s.iter().enumerate() {
        let (mut ms, mut vs) = (1f32, 1f32);
        if sj > max {
            ms = (max - sj).exp();
            max = sj;
            out.iter_mut().for_each(|a| *a *= ms);
        } else {
            vs = (sj - max).exp();
        }
        att.mad_q8_0(out, vs, &values[j * head_bytes..(j + 1) * head_bytes]);
        sum = sum * ms + vs;
    }
    let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
    out.iter_mut().for_each(|a| *a *= inv);
}
