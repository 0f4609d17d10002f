//! The tensors of an mmproj file (llama.cpp names), checked for presence, shape and type.

use super::{MmprojError, MmprojHparams};
use crate::weights::{dtype_of, Loader, Matrix};
use crate::ModelError;
use edgevl_arch::clip::{MmTensor, VisionTensor, VitTensor};
use edgevl_arch::family::{ProjectorLayout, TileSize};
use edgevl_gguf::{GgufError, GgufFile};

/// A LayerNorm's weight and bias.
pub(crate) struct Norm {
    pub w: Vec<f32>,
    pub b: Vec<f32>,
}

impl Norm {
    fn load(ld: &Loader, prefix: &str, n: usize) -> Result<Self, MmprojError> {
        Ok(Norm {
            w: ld.vector(&format!("{prefix}.weight"), n)?,
            b: ld.vector(&format!("{prefix}.bias"), n)?,
        })
    }

    fn load_optional(ld: &Loader, prefix: &str, n: usize) -> Result<Option<Self>, MmprojError> {
        match ld.optional_vector(&format!("{prefix}.weight"), n)? {
            None => Ok(None),
            Some(w) => Ok(Some(Norm { w, b: ld.vector(&format!("{prefix}.bias"), n)? })),
        }
    }
}

/// A linear layer: weight matrix `[rows = out, cols = in]` and bias `[out]`.
pub(crate) struct Linear {
    pub w: Matrix,
    pub b: Vec<f32>,
}

impl Linear {
    fn load(ld: &Loader, prefix: &str, cols: usize, rows: usize) -> Result<Self, MmprojError> {
        let w = ld.matrix(&format!("{prefix}.weight"), cols, rows)?;
        Ok(Linear { w, b: ld.vector(&format!("{prefix}.bias"), rows)? })
    }

    /// [`Linear::load`] with the weights requantised to Q8_0 ([`Loader::matrix_q8_0_padded`]: rows zero-padded to
    /// whole blocks, zero rows up to `rows_p`, the bias zero-padded to match), or as stored when the kernel table
    /// does not repack Q8_0.
    fn load_q8_0(
        ld: &Loader,
        prefix: &str,
        cols: usize,
        rows: usize,
        rows_p: usize,
    ) -> Result<Self, MmprojError> {
        let Some(w) = ld.matrix_q8_0_padded(&format!("{prefix}.weight"), (cols, rows), rows_p)? else {
            return Self::load(ld, prefix, cols, rows);
        };
        let mut b = ld.vector(&format!("{prefix}.bias"), rows)?;
        b.resize(w.rows, 0.0);
        Ok(Linear { w, b })
    }
}

/// How the ViT's weights are held at load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VitWeightOptions {
    /// Requantise the ViT blocks' float matrices to Q8_0 (the paper's INT8 ViT weights). llama.cpp's converter keeps
    /// a matrix in F16 when its rows are not whole Q8_0 blocks (so400m's `ffn_down`: 4304 columns), which the
    /// float GEMM then computes at a quarter of the int8 rate; with this option the MLP is widened with zero
    /// channels to whole blocks (`ffn_up` gets zero rows and bias, `ffn_down` zero columns: gelu(0) = 0, so the
    /// extra channels add nothing) and every matrix is INT8. Outputs differ from the file's F16 arithmetic by
    /// the Q8_0 rounding of those weights. Takes effect when the kernel table repacks Q8_0.
    pub int8: bool,
}

/// The patch-embedding convolution kernel, a 4-D tensor `[p, p, 3, n_embd]` (GGUF order), as the
/// matrix `[n_embd, 3 * p * p]` over unfolded patches (channel, row, column order).
fn load_patch_kernel(file: &GgufFile, name: &str, p: usize, n_embd: usize) -> Result<Matrix, MmprojError> {
    let (info, _) = file.require_tensor(name, &[p as u64, p as u64, 3, n_embd as u64])?;
    let dtype = dtype_of(info.ggml_type).ok_or_else(|| ModelError::UnsupportedTensorType {
        tensor: name.to_string(),
        ggml_type: info.ggml_type.name().to_string(),
    })?;
    let cols = 3 * p * p;
    if dtype.row_bytes(cols).is_none() {
        return Err(MmprojError::BadHparam {
            key: name.to_string(),
            reason: format!(
                "stored as {}, whose block size does not divide a patch of {cols} values",
                dtype.name()
            ),
        });
    }
    let index = file
        .tensors()
        .iter()
        .position(|t| t.name == name)
        .ok_or_else(|| GgufError::MissingTensor(name.to_string()))?;
    Ok(Matrix::in_file(file, name, index, dtype, n_embd, cols)?)
}

/// The learned position embeddings `[class + grid * grid, d]` of a tile's tokens: the class
/// token's row first when `class` is 1, then the patches row-major. The file's table
/// `[d, class + side * side]` is used as stored when `side == grid`; otherwise, when `resize`
/// allows (this project's lfm2 layout), the patch rows are resized to `grid x grid` as
/// llama.cpp's `resize_position_embeddings` (ggml bilinear + antialias) and transformers'
/// Siglip2 (`F.interpolate(bilinear, align_corners=False, antialias=True)`) do; families that
/// take their tile size from the file must match it exactly.
fn load_positions(
    ld: &Loader,
    name: &str,
    d: usize,
    grid: usize,
    class: usize,
    resize: bool,
) -> Result<Vec<f32>, MmprojError> {
    let file = ld.file;
    let info = file.tensor(name).ok_or_else(|| GgufError::MissingTensor(name.to_string()))?;
    let want = class + grid * grid;
    let n_pos = match info.shape() {
        [cols, n] if *cols == d as u64 => usize::try_from(*n).ok(),
        _ => None,
    }
    .ok_or_else(|| GgufError::ShapeMismatch {
        name: name.to_string(),
        expected: vec![d as u64, want as u64],
        found: info.dims.clone(),
    })?;
    let side = n_pos.saturating_sub(class).isqrt();
    if side * side + class != n_pos || side == 0 {
        return Err(MmprojError::BadHparam {
            key: name.to_string(),
            reason: format!(
                "{n_pos} positions do not form a square grid{}",
                if class > 0 { " after the class token's" } else { "" }
            ),
        });
    }
    if side != grid && !resize {
        return Err(MmprojError::BadHparam {
            key: name.to_string(),
            reason: format!("{n_pos} positions for a {grid}x{grid} patch grid (needs {want})"),
        });
    }
    // `Loader::matrix_unpacked` checks the table's bytes are in the file, which bounds `n_pos * d`.
    let table = ld.matrix_unpacked(name, d, n_pos)?;
    let too_big = || MmprojError::BadHparam {
        key: name.to_string(),
        reason: format!("{n_pos} positions of width {d} do not fit in memory"),
    };
    let mut src = vec![0f32; n_pos.checked_mul(d).ok_or_else(too_big)?];
    for (r, row) in src.chunks_exact_mut(d).enumerate() {
        table.row_into(ld.kernels, file, r, row);
    }
    if side == grid {
        return Ok(src);
    }
    let (class_rows, patches) = src.split_at(class * d);
    // Separable: output (y, x) = sum over source (a, b) of w[y][a] * w[x][b] * table[a][b].
    let w = resize_weights(side, grid);
    let mut out = class_rows.to_vec();
    out.reserve(grid.checked_mul(grid).and_then(|n| n.checked_mul(d)).ok_or_else(too_big)?);
    let mut acc = vec![0f64; d];
    for wy in &w {
        for wx in &w {
            acc.fill(0.0);
            for (a, wa) in wy.iter().enumerate().filter(|(_, w)| **w != 0.0) {
                for (b, wb) in wx.iter().enumerate().filter(|(_, w)| **w != 0.0) {
                    let row = &patches[(a * side + b) * d..][..d];
                    acc.iter_mut().zip(row).for_each(|(o, v)| *o += wa * wb * f64::from(*v));
                }
            }
            out.extend(acc.iter().map(|v| *v as f32));
        }
    }
    Ok(out)
}

/// The weights `w[i][j]` of source sample `j` in output sample `i` when resizing `src` samples to
/// `dst` with an antialiased bilinear (triangle) filter and half-pixel centres: the filter is
/// stretched by the scale when shrinking, and each row of weights sums to 1.
fn resize_weights(src: usize, dst: usize) -> Vec<Vec<f64>> {
    let scale = src as f64 / dst as f64;
    let support = scale.max(1.0);
    (0..dst)
        .map(|i| {
            let centre = (i as f64 + 0.5) * scale - 0.5;
            let mut w: Vec<f64> =
                (0..src).map(|j| (1.0 - (j as f64 - centre).abs() / support).max(0.0)).collect();
            let sum: f64 = w.iter().sum();
            w.iter_mut().for_each(|v| *v /= sum);
            w
        })
        .collect()
}

/// One pre-norm ViT block (SigLIP; InternViT adds the layer scales).
pub(crate) struct VitBlock {
    pub ln1: Norm,
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub out: Linear,
    /// Scale of the attention branch (InternViT `ls1`).
    pub ls1: Option<Vec<f32>>,
    pub ln2: Norm,
    pub up: Linear,
    pub down: Linear,
    /// Scale of the MLP branch (InternViT `ls2`).
    pub ls2: Option<Vec<f32>>,
}

/// The projector's tensors, one variant per [`ProjectorLayout`] (the match on it is exhaustive).
pub(crate) enum ProjectorWeights {
    /// `mm.input_norm` (optional), `mm.1`, tanh-GELU, `mm.2`.
    Lfm2 { norm: Option<Norm>, fc1: Linear, fc2: Linear },
    /// `mm.model.mlp.0` (LayerNorm), `.1`, erf-GELU, `.3`.
    InternVlMlp { norm: Norm, fc1: Linear, fc2: Linear },
    /// `mm.model.fc`, no bias.
    Idefics3Linear { fc: Matrix },
}

/// All tensors of the vision tower and projector.
pub(crate) struct VisionWeights {
    /// The patch-embedding kernel as a matrix `[n_embd, 3 * p * p]`.
    pub patch: Matrix,
    pub patch_bias: Vec<f32>,
    /// The class token's embedding (InternViT).
    pub class: Option<Vec<f32>>,
    /// `[n_tokens, d]`: the class token's position first when there is one.
    pub pos: Vec<f32>,
    pub pre_ln: Option<Norm>,
    pub blocks: Vec<VitBlock>,
    pub post_ln: Option<Norm>,
    pub projector: ProjectorWeights,
}

/// The output width (rows) of the matrix `name`, which must have `cols` columns; `None` when it
/// is absent or not 2-D (the loader then reports the tensor). A width whose activations of one
/// tile (`tokens` rows) would pass [`super::hparams::MAX_TILE_VALUES`] is refused.
fn out_width(file: &GgufFile, name: &str, cols: usize, tokens: usize) -> Result<Option<usize>, MmprojError> {
    let width = match file.tensor(name).map(|t| t.dims.as_slice()) {
        Some(&[c, rows]) if c == cols as u64 => usize::try_from(rows).ok(),
        _ => None,
    };
    match width {
        Some(w) if w.saturating_mul(tokens) > super::hparams::MAX_TILE_VALUES => {
            Err(MmprojError::BadHparam {
                key: name.to_string(),
                reason: format!(
                    "a projector {w} wide holds {} values a tile, over the limit of {}",
                    w.saturating_mul(tokens),
                    super::hparams::MAX_TILE_VALUES
                ),
            })
        }
        w => Ok(w),
    }
}

impl VisionWeights {
    /// Loads every tensor `hp` implies from the loader's file.
    pub fn load(ld: &Loader, hp: &MmprojHparams, opts: VitWeightOptions) -> Result<Self, MmprojError> {
        let file = ld.file;
        let (d, ff) = (hp.n_embd, hp.n_ff);
        let family = hp.family;
        let patch = load_patch_kernel(file, &VisionTensor::PatchEmbd.weight(), hp.patch_size, d)?;
        let patch_bias = ld.vector(&VisionTensor::PatchEmbd.bias(), d)?;
        let class_token = family.class_token();
        let class = if class_token { Some(ld.vector(VisionTensor::ClassEmbd.prefix(), d)?) } else { None };
        let scale = |t: VitTensor, i: usize| -> Result<Option<Vec<f32>>, MmprojError> {
            Ok(if family.layer_scale() { Some(ld.vector(&t.weight(i), d)?) } else { None })
        };
        // With INT8 weights: a float matrix is requantised (its columns, `d` or the MLP width, padded to whole
        // blocks); the MLP is widened to whole blocks of channels whenever either of its matrices is.
        // (Only with a width of whole blocks: the activations entering every matrix but `ffn_down` are `d` wide.)
        let float = |i: usize, t: VitTensor| opts.int8 && d.is_multiple_of(32) && ld.is_float(&t.weight(i));
        let linear = |i: usize, t: VitTensor, cols: usize, rows: usize, rows_p: Option<usize>| match rows_p {
            Some(rows_p) => Linear::load_q8_0(ld, &t.prefix(i), cols, rows, rows_p),
            None => Linear::load(ld, &t.prefix(i), cols, rows),
        };
        let ff_p = ff.checked_next_multiple_of(32).unwrap_or(ff);
        let blocks = (0..hp.n_layer)
            .map(|i| {
                let p = |t: VitTensor| t.prefix(i);
                let attn = |t: VitTensor| linear(i, t, d, d, float(i, t).then_some(d));
                let mlp = float(i, VitTensor::FfnUp) || float(i, VitTensor::FfnDown);
                Ok(VitBlock {
                    ln1: Norm::load(ld, &p(VitTensor::Ln1), d)?,
                    q: attn(VitTensor::AttnQ)?,
                    k: attn(VitTensor::AttnK)?,
                    v: attn(VitTensor::AttnV)?,
                    out: attn(VitTensor::AttnOut)?,
                    ls1: scale(VitTensor::Ls1, i)?,
                    ln2: Norm::load(ld, &p(VitTensor::Ln2), d)?,
                    up: linear(i, VitTensor::FfnUp, d, ff, mlp.then_some(ff_p))?,
                    down: linear(i, VitTensor::FfnDown, ff, d, mlp.then_some(d))?,
                    ls2: scale(VitTensor::Ls2, i)?,
                })
            })
            .collect::<Result<Vec<_>, MmprojError>>()?;
        // After the blocks: their `d x d` matrices are in the file, so the width the position
        // table is resized to is bounded by the file's size, not only by the header.
        let resize = matches!(family.tile_size(), TileSize::Fixed(_));
        let pos = load_positions(
            ld,
            &VisionTensor::PositionEmbd.weight(),
            d,
            hp.grid(),
            usize::from(class_token),
            resize,
        )?;
        let extra = VitTensor::Ln1.weight(hp.n_layer);
        if file.tensor(&extra).is_some() {
            return Err(MmprojError::BadHparam {
                key: edgevl_arch::clip::BLOCK_COUNT.into(),
                reason: format!("is {} but the file also has '{extra}'", hp.n_layer),
            });
        }
        let (mw, od) = (hp.merged_width(), hp.projection_dim);
        let projector = match family.projector() {
            ProjectorLayout::Lfm2 => {
                // The hidden width is mm.1's output width: equal to the output width in files
                // edgevl writes, wider in published LFM2-VL files. A shape the data does not
                // back is refused by `Linear::load`.
                let hidden =
                    out_width(file, &MmTensor::Seq(1).weight(), mw, hp.tokens_per_tile())?.unwrap_or(od);
                ProjectorWeights::Lfm2 {
                    norm: Norm::load_optional(ld, &MmTensor::InputNorm.prefix(), mw)?,
                    fc1: Linear::load(ld, &MmTensor::Seq(1).prefix(), mw, hidden)?,
                    fc2: Linear::load(ld, &MmTensor::Seq(2).prefix(), hidden, od)?,
                }
            }
            ProjectorLayout::InternVlMlp => {
                let hidden =
                    out_width(file, &MmTensor::ModelMlp(1).weight(), mw, hp.tokens_per_tile())?.unwrap_or(od);
                ProjectorWeights::InternVlMlp {
                    norm: Norm::load(ld, &MmTensor::ModelMlp(0).prefix(), mw)?,
                    fc1: Linear::load(ld, &MmTensor::ModelMlp(1).prefix(), mw, hidden)?,
                    fc2: Linear::load(ld, &MmTensor::ModelMlp(3).prefix(), hidden, od)?,
                }
            }
            ProjectorLayout::Idefics3Linear => {
                ProjectorWeights::Idefics3Linear { fc: ld.matrix(&MmTensor::ModelFc.weight(), mw, od)? }
            }
        };
        Ok(VisionWeights {
            patch,
            patch_bias,
            class,
            pos,
            pre_ln: Norm::load_optional(ld, VisionTensor::PreLn.prefix(), d)?,
            blocks,
            post_ln: Norm::load_optional(ld, VisionTensor::PostLn.prefix(), d)?,
            projector,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::resize_weights;

    #[test]
    fn resize_weights_match_pytorch_antialiased_bilinear() {
        let same = resize_weights(4, 4);
        for (i, row) in same.iter().enumerate() {
            for (j, w) in row.iter().enumerate() {
                assert_eq!(*w, if i == j { 1.0 } else { 0.0 });
            }
        }
        // 2 -> 4, as PyTorch gives: half-pixel centres at -0.25, 0.25, 0.75, 1.25, clamped at the edges.
        let up = resize_weights(2, 4);
        let want = [[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]];
        for (row, w) in up.iter().zip(want) {
            assert!((row[0] - w[0]).abs() < 1e-12 && (row[1] - w[1]).abs() < 1e-12, "{row:?}");
        }
        // 4 -> 2 (antialiased): PyTorch's `F.interpolate(size=2, mode="bilinear",
        // align_corners=False, antialias=True)` weights are [3/7, 3/7, 1/7, 0] and [0, 1/7, 3/7, 3/7].
        let down = resize_weights(4, 2);
        let want = [[3.0 / 7.0, 3.0 / 7.0, 1.0 / 7.0, 0.0], [0.0, 1.0 / 7.0, 3.0 / 7.0, 3.0 / 7.0]];
        for (row, w) in down.iter().zip(want) {
            assert!(row.iter().zip(w).all(|(a, b)| (a - b).abs() < 1e-12), "{row:?}");
        }
    }
}
