//! The ViT forward pass over a batch of tiles, the merge and the projector, for every family.
//!
//! Per tile: unfold patches, `x = W_patch · patch + b`; the class token in front when the family
//! has one (InternViT); `+ pos`; optional pre-LN; per block
//! `x += ls1 * (W_o · attn(W_q·LN1(x) + b_q, W_k·LN1(x) + b_k, W_v·LN1(x) + b_v) + b_o)` then
//! `x += ls2 * (W_down · gelu(W_up · LN2(x) + b_up) + b_down)` (the layer scales only in
//! InternViT, GELU erf or tanh as the family says); optional post-LN; the class token dropped;
//! merge `s x s` blocks of patches (spec 2b's order, which is also transformers' pixel shuffle);
//! then the family's projector. Activations are f32; matrix products go through
//! `edgevl_kernels::matmul` (exact f32 for F32 weights).

use super::attention::{attention, AttnShape};
use super::merge::merge_patches;
use super::patch::unfold_patches;
use super::weights::{Linear, Norm, ProjectorWeights, VisionWeights, VitWeightOptions};
use super::{MmprojError, MmprojHparams};
use crate::compute::Compute;
use crate::parallel::{add_rows, par_chunks_mut};
use crate::weights::Loader;
use crate::Hook;
use edgevl_arch::family::Gelu;
use edgevl_gguf::GgufFile;
use edgevl_kernels::ops::{add_assign, layer_norm};
use edgevl_kernels::{
    matmul, matmul_many_biased, Gelu as KernelGelu, Kernels, MatmulScratch, ThreadPool, WeightRef,
};
use std::sync::Arc;

/// Values per GELU task (an element-wise op: any split gives the same result).
const GELU_CHUNK: usize = 4096;

/// LayerNorm epsilon of the projector's input norm (PyTorch's `nn.LayerNorm` default, spec 2b).
pub const PROJECTOR_NORM_EPS: f32 = 1e-5;

/// A loaded vision tower + projector; weights stay in the memory-mapped GGUF file.
pub struct VisionEncoder {
    file: Arc<GgufFile>,
    /// The kernel table every product runs on (and the weights were laid out for).
    kernels: Kernels,
    hp: MmprojHparams,
    w: VisionWeights,
    hook: Hook,
}

/// Activation buffers of one batch, sized for `m` = tiles x tokens rows.
#[derive(Default)]
struct Buffers {
    x: Vec<f32>,
    xn: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    attn: Vec<f32>,
    ff: Vec<f32>,
    scratch: MatmulScratch,
}

impl VisionEncoder {
    /// Build an encoder from an open mmproj file, checking every key and tensor, to compute with the kernels of
    /// `kernels` (which also decide the matrices repacked at load).
    pub fn load(file: Arc<GgufFile>, kernels: &Kernels) -> Result<Self, MmprojError> {
        Self::load_with(file, kernels, VitWeightOptions::default())
    }

    /// [`VisionEncoder::load`] with the ViT's weights held as `opts` asks (INT8 throughout).
    pub fn load_with(
        file: Arc<GgufFile>,
        kernels: &Kernels,
        opts: VitWeightOptions,
    ) -> Result<Self, MmprojError> {
        let hp = MmprojHparams::try_from(file.metadata())?;
        let w = VisionWeights::load(&Loader::for_batches(&file, kernels), &hp, opts)?;
        Ok(VisionEncoder { file, kernels: kernels.clone(), hp, w, hook: Hook::default() })
    }

    /// Open and load the mmproj file at `path` (see [`VisionEncoder::load`]).
    pub fn open(path: impl AsRef<std::path::Path>, kernels: &Kernels) -> Result<Self, MmprojError> {
        Self::open_with(path, kernels, VitWeightOptions::default())
    }

    /// [`VisionEncoder::open`] with the ViT's weights held as `opts` asks.
    pub fn open_with(
        path: impl AsRef<std::path::Path>,
        kernels: &Kernels,
        opts: VitWeightOptions,
    ) -> Result<Self, MmprojError> {
        Self::load_with(Arc::new(GgufFile::open(path)?), kernels, opts)
    }

    /// The kernel table the encoder computes with.
    pub fn kernels(&self) -> &Kernels {
        &self.kernels
    }

    /// The kernel table and `pool`, for one pass.
    fn compute<'a>(&'a self, pool: &'a ThreadPool) -> Compute<'a> {
        Compute { kernels: &self.kernels, pool }
    }

    /// Sets the activation hook (see [`crate::ActivationHook`]): `patch_embd` (after the class
    /// token and positions), `attn_out` and `ffn_out` (each branch after its layer scale) and
    /// `layer_out` per block (transformers' `hidden_states[i + 1]`), `vit_out` (after the
    /// post-LN), `merged` and `projected`, each over the whole batch.
    pub fn set_hook(&mut self, hook: Hook) {
        self.hook = hook;
    }

    /// The hyper-parameters.
    pub fn hparams(&self) -> &MmprojHparams {
        &self.hp
    }

    /// Width of an output embedding (the projector's output, which must equal the LLM's width).
    pub fn n_embd_out(&self) -> usize {
        self.hp.projection_dim
    }

    /// Output embeddings per tile (196).
    pub fn tokens_per_tile(&self) -> usize {
        self.hp.tokens_per_tile()
    }

    /// Whether the file has a post-LayerNorm (applied after the last block when present).
    pub fn has_post_norm(&self) -> bool {
        self.w.post_ln.is_some()
    }

    /// Encodes `n` normalised tiles (`tiles` = `n * 3 * image_size^2` values, `[n, 3, H, W]`,
    /// e.g. an `edgevl_vision::TileBatch`) `batch` tiles at a time — each ViT matrix product of a
    /// batch has `batch * patches` rows — and returns `[n * tokens_per_tile, projection_dim]`
    /// embeddings, tile after tile in input order. The result is bit-identical for every `batch`
    /// (each row of a matrix product is computed by the same kernel call whatever the batch).
    pub fn encode_tiles(
        &self,
        tiles: &[f32],
        n: usize,
        batch: usize,
        pool: &ThreadPool,
    ) -> Result<Vec<f32>, MmprojError> {
        let (t, od) = (self.hp.tokens_per_tile(), self.hp.projection_dim);
        self.run_batches(tiles, n, batch, t * od, pool, &mut |b, bufs, dst| self.project(b, bufs, dst, pool))
    }

    /// The ViT's output features (after the post-LayerNorm when the file has one) of `n` tiles,
    /// `[n * tokens, n_embd]` (the class token first in each tile when the family has one),
    /// before the merge and the projector (for cross-checks).
    pub fn vit_features(
        &self,
        tiles: &[f32],
        n: usize,
        batch: usize,
        pool: &ThreadPool,
    ) -> Result<Vec<f32>, MmprojError> {
        let per_tile = self.hp.n_tokens() * self.hp.n_embd;
        self.run_batches(tiles, n, batch, per_tile, pool, &mut |_, bufs, dst| dst.copy_from_slice(&bufs.x))
    }

    /// Checks the input, runs the ViT `batch` tiles at a time and lets `emit(b, bufs, dst)` turn
    /// each batch's features into its `b * per_tile` output values.
    fn run_batches(
        &self,
        tiles: &[f32],
        n: usize,
        batch: usize,
        per_tile: usize,
        pool: &ThreadPool,
        emit: &mut dyn FnMut(usize, &mut Buffers, &mut [f32]),
    ) -> Result<Vec<f32>, MmprojError> {
        let tl = self.hp.tile_len();
        let too_many = || MmprojError::BadInput {
            what: "tile count",
            expected: "a count whose data fits in memory".into(),
            found: n.to_string(),
        };
        let want = n.checked_mul(tl).ok_or_else(too_many)?;
        if tiles.len() != want {
            return Err(MmprojError::BadInput {
                what: "tile data",
                expected: format!("{n} x {tl} = {want} values"),
                found: tiles.len().to_string(),
            });
        }
        if batch == 0 {
            return Err(MmprojError::BadInput {
                what: "batch size",
                expected: "at least 1".into(),
                found: "0".into(),
            });
        }
        let batch = batch.min(n.max(1));
        let mut out = vec![0f32; n.checked_mul(per_tile).ok_or_else(too_many)?];
        let mut bufs = Buffers::default();
        for (chunk, dst) in tiles.chunks(batch * tl).zip(out.chunks_mut(batch * per_tile)) {
            let b = chunk.len() / tl;
            self.vit(chunk, b, &mut bufs, pool);
            emit(b, &mut bufs, dst);
        }
        Ok(out)
    }

    /// Runs the ViT on `b` tiles, leaving `[b * tokens, n_embd]` features in `bufs.x`.
    fn vit(&self, tiles: &[f32], b: usize, bufs: &mut Buffers, pool: &ThreadPool) {
        let cx = self.compute(pool);
        let hp = &self.hp;
        // The MLP's width as loaded (wider than the file's with INT8 weights padded to whole blocks).
        let ff = self.w.blocks.first().map_or(hp.n_ff, |b| b.up.w.rows);
        let (np, nt, d) = (hp.n_patches(), hp.n_tokens(), hp.n_embd);
        let m = b * nt;
        let pl = hp.patch_len();
        let f = &*self.file;
        bufs.xn.resize((b * np * pl).max(m * d), 0.0);
        for (t, tile) in tiles.chunks_exact(hp.tile_len()).enumerate() {
            unfold_patches(tile, hp.image_size, hp.patch_size, &mut bufs.xn[t * np * pl..(t + 1) * np * pl]);
        }
        bufs.x.resize(m * d, 0.0);
        bufs.q.resize(m * d, 0.0);
        let patch = self.w.patch.view(f);
        matmul(&self.kernels, pool, patch, &bufs.xn[..b * np * pl], b * np, &mut bufs.q, &mut bufs.scratch);
        // Token j of each tile: the class token first (InternViT; it gets no patch bias), then patch j - (nt - np);
        // plus position j. (`nt > np` only with a class embedding: `MmprojHparams::n_tokens`.)
        let (patches, class) = (&bufs.q, self.w.class.as_deref());
        par_chunks_mut(pool, &mut bufs.x, d, &|i, row| {
            let (t, j) = (i / nt, i % nt);
            match j.checked_sub(nt - np) {
                Some(p) => {
                    row.copy_from_slice(&patches[(t * np + p) * d..][..d]);
                    add_assign(row, &self.w.patch_bias);
                }
                None => {
                    if let Some(c) = class {
                        row.copy_from_slice(&c[j * d..][..d]);
                    }
                }
            }
            add_assign(row, &self.w.pos[j * d..][..d]);
        });
        self.hook.emit("patch_embd", None, &bufs.x);
        if let Some(norm) = &self.w.pre_ln {
            norm_in_place(pool, norm, hp.eps, d, &mut bufs.x, &mut bufs.xn);
        }
        for buf in [&mut bufs.q, &mut bufs.k, &mut bufs.v, &mut bufs.attn] {
            buf.resize(m * d, 0.0);
        }
        bufs.ff.resize(m * ff, 0.0);
        let shape = AttnShape { tiles: b, tokens: nt, heads: hp.n_head, head_dim: hp.head_dim() };
        let gelu = match hp.family.tower_gelu() {
            Gelu::Erf => KernelGelu::Erf,
            Gelu::Tanh => KernelGelu::Tanh,
        };
        for (l, blk) in self.w.blocks.iter().enumerate() {
            norm_rows(pool, &blk.ln1, hp.eps, d, &bufs.x, &mut bufs.xn[..m * d]);
            let ws = [blk.q.w.view(f), blk.k.w.view(f), blk.v.w.view(f)];
            matmul_many_biased(
                &self.kernels,
                pool,
                &ws,
                &[Some(&blk.q.b), Some(&blk.k.b), Some(&blk.v.b)],
                &bufs.xn[..m * d],
                m,
                &mut [&mut bufs.q, &mut bufs.k, &mut bufs.v],
                &mut bufs.scratch,
            );
            attention(cx, shape, &bufs.q, &bufs.k, &bufs.v, &mut bufs.attn);
            linear(cx, f, &blk.out, &bufs.attn, m, &mut bufs.q, &mut bufs.scratch);
            scale_rows(pool, &mut bufs.q, blk.ls1.as_deref());
            self.hook.emit("attn_out", Some(l), &bufs.q);
            add_rows(pool, &mut bufs.x, &bufs.q, d);
            norm_rows(pool, &blk.ln2, hp.eps, d, &bufs.x, &mut bufs.xn[..m * d]);
            linear(cx, f, &blk.up, &bufs.xn[..m * d], m, &mut bufs.ff, &mut bufs.scratch);
            par_chunks_mut(pool, &mut bufs.ff, GELU_CHUNK, &|_, c| self.kernels.gelu(gelu, c));
            linear(cx, f, &blk.down, &bufs.ff, m, &mut bufs.q, &mut bufs.scratch);
            scale_rows(pool, &mut bufs.q, blk.ls2.as_deref());
            self.hook.emit("ffn_out", Some(l), &bufs.q);
            add_rows(pool, &mut bufs.x, &bufs.q, d);
            self.hook.emit("layer_out", Some(l), &bufs.x);
        }
        if let Some(norm) = &self.w.post_ln {
            norm_in_place(pool, norm, hp.eps, d, &mut bufs.x, &mut bufs.xn);
        }
        self.hook.emit("vit_out", None, &bufs.x);
    }

    /// Merges and projects the `b` tiles' ViT features in `bufs.x` into `out` (`[b * tokens, od]`):
    /// the class token is dropped, `s x s` blocks of patches become one token each.
    fn project(&self, b: usize, bufs: &mut Buffers, out: &mut [f32], pool: &ThreadPool) {
        let cx = self.compute(pool);
        let hp = &self.hp;
        let (np, nt, d, t, mw) =
            (hp.n_patches(), hp.n_tokens(), hp.n_embd, hp.tokens_per_tile(), hp.merged_width());
        let rows = b * t;
        let mut merged = vec![0f32; rows * mw];
        for (x, dst) in bufs.x.chunks_exact(nt * d).zip(merged.chunks_exact_mut(t * mw)) {
            merge_patches(&x[(nt - np) * d..], hp.grid(), d, hp.scale_factor, dst);
        }
        self.hook.emit("merged", None, &merged);
        let f = &*self.file;
        match &self.w.projector {
            ProjectorWeights::Lfm2 { norm, fc1, fc2 } => {
                if let Some(norm) = norm {
                    norm_in_place(
                        pool,
                        norm,
                        PROJECTOR_NORM_EPS,
                        mw,
                        &mut merged,
                        &mut vec![0f32; rows * mw],
                    );
                }
                mlp(cx, f, fc1, KernelGelu::Tanh, fc2, &merged, rows, out, &mut bufs.scratch);
            }
            ProjectorWeights::InternVlMlp { norm, fc1, fc2 } => {
                norm_in_place(pool, norm, PROJECTOR_NORM_EPS, mw, &mut merged, &mut vec![0f32; rows * mw]);
                mlp(cx, f, fc1, KernelGelu::Erf, fc2, &merged, rows, out, &mut bufs.scratch);
            }
            ProjectorWeights::Idefics3Linear { fc } => {
                matmul(&self.kernels, pool, fc.view(f), &merged, rows, out, &mut bufs.scratch);
            }
        }
        self.hook.emit("projected", None, out);
    }
}

/// `y = fc2 · gelu(fc1 · x + b1) + b2` for `rows` rows.
#[allow(clippy::too_many_arguments)]
fn mlp(
    cx: Compute,
    f: &GgufFile,
    fc1: &Linear,
    gelu: KernelGelu,
    fc2: &Linear,
    x: &[f32],
    rows: usize,
    out: &mut [f32],
    scratch: &mut MatmulScratch,
) {
    let mut hidden = vec![0f32; rows * fc1.w.rows];
    linear(cx, f, fc1, x, rows, &mut hidden, scratch);
    par_chunks_mut(cx.pool, &mut hidden, GELU_CHUNK, &|_, c| cx.kernels.gelu(gelu, c));
    linear(cx, f, fc2, &hidden, rows, out, scratch);
}

/// Multiplies every row of `x` by `scale` element-wise (a layer scale); nothing without one.
fn scale_rows(pool: &ThreadPool, x: &mut [f32], scale: Option<&[f32]>) {
    if let Some(s) = scale {
        par_chunks_mut(pool, x, s.len(), &|_, row| row.iter_mut().zip(s).for_each(|(v, k)| *v *= k));
    }
}

/// LayerNorm of every `d`-wide row of `x` into `out`, rows spread over the pool.
fn norm_rows(pool: &ThreadPool, norm: &Norm, eps: f32, d: usize, x: &[f32], out: &mut [f32]) {
    par_chunks_mut(pool, out, d, &|i, o| layer_norm(&x[i * d..][..d], &norm.w, &norm.b, eps, o));
}

/// LayerNorm of every row of `x` in place, through `tmp`.
fn norm_in_place(pool: &ThreadPool, norm: &Norm, eps: f32, d: usize, x: &mut [f32], tmp: &mut [f32]) {
    let n = x.len();
    norm_rows(pool, norm, eps, d, x, &mut tmp[..n]);
    x.copy_from_slice(&tmp[..n]);
}

/// `y = x W^T + b` for `m` rows.
fn linear(
    cx: Compute,
    f: &GgufFile,
    lin: &Linear,
    x: &[f32],
    m: usize,
    y: &mut [f32],
    scratch: &mut MatmulScratch,
) {
    let w: WeightRef = lin.w.view(f);
    matmul_many_biased(cx.kernels, cx.pool, &[w], &[Some(&lin.b)], x, m, &mut [y], scratch);
}
