//! The tensors of an mmproj file (llama.cpp names), checked for presence, shape and type.

use super::{MmprojError, MmprojHparams, Projector};
use crate::weights::{dtype_of, load_optional_vector, load_vector, Matrix};
use crate::ModelError;
use edgevl_gguf::{GgufError, GgufFile};
use edgevl_kernels::{DType, WeightRef};

/// A LayerNorm's weight and bias.
pub(crate) struct Norm {
    pub w: Vec<f32>,
    pub b: Vec<f32>,
}

impl Norm {
    fn load(file: &GgufFile, prefix: &str, n: usize) -> Result<Self, MmprojError> {
        Ok(Norm {
            w: load_vector(file, &format!("{prefix}.weight"), n)?,
            b: load_vector(file, &format!("{prefix}.bias"), n)?,
        })
    }

    fn load_optional(file: &GgufFile, prefix: &str, n: usize) -> Result<Option<Self>, MmprojError> {
        match load_optional_vector(file, &format!("{prefix}.weight"), n)? {
            None => Ok(None),
            Some(w) => Ok(Some(Norm { w, b: load_vector(file, &format!("{prefix}.bias"), n)? })),
        }
    }
}

/// A linear layer: weight matrix `[rows = out, cols = in]` and bias `[out]`.
pub(crate) struct Linear {
    pub w: Matrix,
    pub b: Vec<f32>,
}

impl Linear {
    fn load(file: &GgufFile, prefix: &str, cols: usize, rows: usize) -> Result<Self, MmprojError> {
        let w = Matrix::load(file, &format!("{prefix}.weight"), cols, rows)?;
        Ok(Linear { w, b: load_vector(file, &format!("{prefix}.bias"), rows)? })
    }
}

/// The patch-embedding convolution kernel, a 4-D tensor `[p, p, 3, n_embd]` (GGUF order), used as
/// the matrix `[n_embd, 3 * p * p]` over unfolded patches (channel, row, column order).
pub(crate) struct PatchKernel {
    dtype: DType,
    index: usize,
    rows: usize,
    cols: usize,
}

impl PatchKernel {
    fn load(file: &GgufFile, name: &str, p: usize, n_embd: usize) -> Result<Self, MmprojError> {
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
        Ok(PatchKernel { dtype, index, rows: n_embd, cols })
    }

    /// The kernel view of this matrix in `file`.
    pub fn view<'a>(&self, file: &'a GgufFile) -> WeightRef<'a> {
        let data = file.tensor_data(&file.tensors()[self.index]);
        WeightRef { dtype: self.dtype, data, rows: self.rows, cols: self.cols }
    }
}

/// One pre-LN SigLIP block.
pub(crate) struct VitBlock {
    pub ln1: Norm,
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub out: Linear,
    pub ln2: Norm,
    pub up: Linear,
    pub down: Linear,
}

/// The projector's tensors (one variant per [`Projector`]).
pub(crate) enum ProjectorWeights {
    /// `mm.input_norm`, `mm.1`, `mm.2`.
    Lfm2 { norm: Norm, fc1: Linear, fc2: Linear },
}

/// All tensors of the vision tower and projector.
pub(crate) struct VisionWeights {
    pub patch: PatchKernel,
    pub patch_bias: Vec<f32>,
    pub pos: Vec<f32>,
    pub pre_ln: Option<Norm>,
    pub blocks: Vec<VitBlock>,
    pub post_ln: Option<Norm>,
    pub projector: ProjectorWeights,
}

impl VisionWeights {
    /// Loads every tensor `hp` implies from `file`.
    pub fn load(file: &GgufFile, hp: &MmprojHparams) -> Result<Self, MmprojError> {
        let (d, ff) = (hp.n_embd, hp.n_ff);
        let patch = PatchKernel::load(file, "v.patch_embd.weight", hp.patch_size, d)?;
        let patch_bias = load_vector(file, "v.patch_embd.bias", d)?;
        let pos_matrix = Matrix::load(file, "v.position_embd.weight", d, hp.n_patches())?;
        let mut pos = vec![0f32; hp.n_patches() * d];
        for (r, row) in pos.chunks_exact_mut(d).enumerate() {
            pos_matrix.row_into(file, r, row);
        }
        let blocks = (0..hp.n_layer)
            .map(|i| {
                let p = |s: &str| format!("v.blk.{i}.{s}");
                Ok(VitBlock {
                    ln1: Norm::load(file, &p("ln1"), d)?,
                    q: Linear::load(file, &p("attn_q"), d, d)?,
                    k: Linear::load(file, &p("attn_k"), d, d)?,
                    v: Linear::load(file, &p("attn_v"), d, d)?,
                    out: Linear::load(file, &p("attn_out"), d, d)?,
                    ln2: Norm::load(file, &p("ln2"), d)?,
                    up: Linear::load(file, &p("ffn_up"), d, ff)?,
                    down: Linear::load(file, &p("ffn_down"), ff, d)?,
                })
            })
            .collect::<Result<Vec<_>, MmprojError>>()?;
        let extra = format!("v.blk.{}.ln1.weight", hp.n_layer);
        if file.tensor(&extra).is_some() {
            return Err(MmprojError::BadHparam {
                key: "clip.vision.block_count".into(),
                reason: format!("is {} but the file also has '{extra}'", hp.n_layer),
            });
        }
        let projector = match hp.projector {
            Projector::Lfm2 => {
                let mw = hp.merged_width();
                ProjectorWeights::Lfm2 {
                    norm: Norm::load(file, "mm.input_norm", mw)?,
                    fc1: Linear::load(file, "mm.1", mw, hp.projection_dim)?,
                    fc2: Linear::load(file, "mm.2", hp.projection_dim, hp.projection_dim)?,
                }
            }
        };
        Ok(VisionWeights {
            patch,
            patch_bias,
            pos,
            pre_ln: Norm::load_optional(file, "v.pre_ln", d)?,
            blocks,
            post_ln: Norm::load_optional(file, "v.post_ln", d)?,
            projector,
        })
    }
}
