//! Random-weight mmproj files of each vision family (`edgevl_arch::family`): this project's
//! SigLIP + 2x2 merge + lfm2 projector (with `edgevl.vision.layout`), InternVL's InternViT +
//! pixel shuffle + mlp1, SmolVLM's SigLIP + pixel shuffle + one Linear — under llama.cpp's CLIP
//! tensor names and keys, so edgevl and llama.cpp both load them.

use std::path::Path;

use edgevl_arch::clip::{self, MmTensor, VisionTensor, VitTensor};
use edgevl_arch::family::{ProjectorLayout, VisionFamily, LAYOUT_GLOBAL_FIRST};
use edgevl_arch::general;
use edgevl_gguf::{Array, GgufWriter, Value};
use edgevl_kernels::DType;

use crate::tensors::{add_random_tensors, file_type, GenError, TensorSpec};

/// Errors of mmproj generation.
#[derive(Debug, thiserror::Error)]
pub enum VisionGenError {
    /// Generating or writing a tensor failed.
    #[error(transparent)]
    Gen(#[from] GenError),
    /// No preset of that name.
    #[error("unknown vision preset '{name}' (known: {known})")]
    UnknownPreset {
        /// The name asked for.
        name: String,
        /// The presets there are.
        known: String,
    },
}

impl From<edgevl_gguf::GgufError> for VisionGenError {
    fn from(e: edgevl_gguf::GgufError) -> Self {
        VisionGenError::Gen(GenError::Gguf(e))
    }
}

/// Shape of a vision tower and its projector.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VisionShape {
    /// Preset name (also `general.name`).
    pub name: &'static str,
    /// The family (tower variant, projector, preprocessing keys).
    pub family: VisionFamily,
    /// Tile side in pixels.
    pub image_size: usize,
    /// Patch side in pixels.
    pub patch_size: usize,
    /// ViT width.
    pub n_embd: usize,
    /// ViT MLP width.
    pub n_ff: usize,
    /// ViT blocks.
    pub n_layer: usize,
    /// Attention heads.
    pub n_head: usize,
    /// Projector output width (the LLM's embedding width).
    pub projection_dim: usize,
    /// Side of the merged block of patches.
    pub scale_factor: usize,
    /// ViT LayerNorm epsilon.
    pub eps: f32,
    /// Whether the file has `v.post_ln`.
    pub post_norm: bool,
    /// Normalisation mean and standard deviation.
    pub mean_std: ([f32; 3], [f32; 3]),
}

/// SigLIP's normalisation (mean 0.5, std 0.5).
const HALF: ([f32; 3], [f32; 3]) = ([0.5; 3], [0.5; 3]);
/// ImageNet's normalisation (InternVL).
const IMAGENET: ([f32; 3], [f32; 3]) = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);

/// SigLIP so400m-patch14-384 with the projector to BlueLM-V-3B's width 2560 (spec section 1).
pub const SIGLIP_SO400M: VisionShape = VisionShape {
    name: "siglip-so400m",
    family: VisionFamily::EdgeVl,
    image_size: 384,
    patch_size: 14,
    n_embd: 1152,
    n_ff: 4304,
    n_layer: 27,
    n_head: 16,
    projection_dim: 2560,
    scale_factor: 2,
    eps: 1e-6,
    post_norm: false,
    mean_std: HALF,
};

/// A tiny tower of so400m's structure (384 px tiles, patch 14: the 27x27 grid) for tests; its
/// projector output width 64 is the width of the `tiny` LLM preset.
pub const TINY_VISION: VisionShape = VisionShape {
    name: "siglip-tiny",
    family: VisionFamily::EdgeVl,
    image_size: 384,
    patch_size: 14,
    n_embd: 64,
    n_ff: 128,
    n_layer: 2,
    n_head: 4,
    projection_dim: 64,
    scale_factor: 2,
    eps: 1e-6,
    post_norm: true,
    mean_std: HALF,
};

/// InternVL3-1B's vision side: InternViT-300M-448px (class token, layer scales) and mlp1 to the
/// width of its Qwen2.5-0.5B (896).
pub const INTERNVIT_300M: VisionShape = VisionShape {
    name: "internvl3-1b-vision",
    family: VisionFamily::InternVl,
    image_size: 448,
    patch_size: 14,
    n_embd: 1024,
    n_ff: 4096,
    n_layer: 24,
    n_head: 16,
    projection_dim: 896,
    scale_factor: 2,
    eps: 1e-6,
    post_norm: false,
    mean_std: IMAGENET,
};

/// SmolVLM-256M's vision side: SigLIP-B/16 at 512 (post-LN) and the scale-4 pixel shuffle into
/// one Linear to SmolLM2-135M's width (576).
pub const SMOLVLM_256M_VISION: VisionShape = VisionShape {
    name: "smolvlm-256m-vision",
    family: VisionFamily::Idefics3,
    image_size: 512,
    patch_size: 16,
    n_embd: 768,
    n_ff: 3072,
    n_layer: 12,
    n_head: 12,
    projection_dim: 576,
    scale_factor: 4,
    eps: 1e-6,
    post_norm: true,
    mean_std: HALF,
};

/// All vision presets.
pub const VISION_PRESETS: [VisionShape; 4] =
    [SIGLIP_SO400M, TINY_VISION, INTERNVIT_300M, SMOLVLM_256M_VISION];

/// The preset called `name`.
pub fn vision_preset(name: &str) -> Result<VisionShape, VisionGenError> {
    VISION_PRESETS.iter().find(|p| p.name == name).copied().ok_or_else(|| VisionGenError::UnknownPreset {
        name: name.to_string(),
        known: VISION_PRESETS.iter().map(|p| p.name).collect::<Vec<_>>().join(", "),
    })
}

/// Storage scheme of the weight matrices (norms, biases and position embeddings are F32).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VisionDType {
    /// Every matrix F32.
    F32,
    /// Every matrix F16.
    F16,
    /// Q8_0 where the row length is a multiple of 32, F16 otherwise (the paper's INT8 ViT).
    Q8_0,
}

impl VisionDType {
    /// The storage type of a weight matrix whose rows are `cols` long.
    pub fn matrix(self, cols: usize) -> DType {
        match self {
            VisionDType::F32 => DType::F32,
            VisionDType::F16 => DType::F16,
            VisionDType::Q8_0 if cols.is_multiple_of(32) => DType::Q8_0,
            VisionDType::Q8_0 => DType::F16,
        }
    }
}

fn spec(out: &mut Vec<TensorSpec>, name: String, dims: Vec<u64>, dtype: DType, scale: f32) {
    out.push(TensorSpec { name, dims, dtype, scale });
}

/// A linear layer `name.weight` (`[cols, rows]`) and `name.bias` (`[rows]`).
fn linear(out: &mut Vec<TensorSpec>, name: &str, cols: u64, rows: u64, dtype: VisionDType) {
    let scale = 1.0 / (cols as f32).sqrt();
    spec(out, format!("{name}.weight"), vec![cols, rows], dtype.matrix(cols as usize), scale);
    spec(out, format!("{name}.bias"), vec![rows], DType::F32, 0.02);
}

/// A LayerNorm `name.weight` (ones) and `name.bias` (small random).
fn norm(out: &mut Vec<TensorSpec>, name: &str, n: u64) {
    spec(out, format!("{name}.weight"), vec![n], DType::F32, -1.0);
    spec(out, format!("{name}.bias"), vec![n], DType::F32, 0.02);
}

/// Every tensor of `shape` with its GGUF dims, type and value scale, in file order.
pub fn mmproj_tensors(shape: &VisionShape, dtype: VisionDType) -> Vec<TensorSpec> {
    let (d, ff, p) = (shape.n_embd as u64, shape.n_ff as u64, shape.patch_size as u64);
    let family = shape.family;
    let class = u64::from(family.class_token());
    let n_pos = (shape.image_size as u64 / p).pow(2) + class;
    let s = shape.scale_factor as u64;
    let (mw, od) = (s * s * d, shape.projection_dim as u64);
    let mut out = Vec::new();
    let patch_len = 3 * p * p;
    // GGUF rows of the 4-D kernel `[p, p, 3, d]` are `p` long.
    let patch_type = dtype.matrix(p as usize);
    spec(
        &mut out,
        VisionTensor::PatchEmbd.weight(),
        vec![p, p, 3, d],
        patch_type,
        1.0 / (patch_len as f32).sqrt(),
    );
    spec(&mut out, VisionTensor::PatchEmbd.bias(), vec![d], DType::F32, 0.02);
    if class == 1 {
        spec(&mut out, VisionTensor::ClassEmbd.prefix().into(), vec![d], DType::F32, 0.1);
    }
    spec(&mut out, VisionTensor::PositionEmbd.weight(), vec![d, n_pos], DType::F32, 0.1);
    for i in 0..shape.n_layer {
        norm(&mut out, &VitTensor::Ln1.prefix(i), d);
        for m in [VitTensor::AttnQ, VitTensor::AttnK, VitTensor::AttnV, VitTensor::AttnOut] {
            linear(&mut out, &m.prefix(i), d, d, dtype);
        }
        norm(&mut out, &VitTensor::Ln2.prefix(i), d);
        linear(&mut out, &VitTensor::FfnUp.prefix(i), d, ff, dtype);
        linear(&mut out, &VitTensor::FfnDown.prefix(i), ff, d, dtype);
        if family.layer_scale() {
            for ls in [VitTensor::Ls1, VitTensor::Ls2] {
                spec(&mut out, ls.weight(i), vec![d], DType::F32, 0.1);
            }
        }
    }
    if shape.post_norm {
        norm(&mut out, VisionTensor::PostLn.prefix(), d);
    }
    match family.projector() {
        ProjectorLayout::Lfm2 => {
            norm(&mut out, &MmTensor::InputNorm.prefix(), mw);
            linear(&mut out, &MmTensor::Seq(1).prefix(), mw, od, dtype);
            linear(&mut out, &MmTensor::Seq(2).prefix(), od, od, dtype);
        }
        ProjectorLayout::InternVlMlp => {
            norm(&mut out, &MmTensor::ModelMlp(0).prefix(), mw);
            linear(&mut out, &MmTensor::ModelMlp(1).prefix(), mw, od, dtype);
            linear(&mut out, &MmTensor::ModelMlp(3).prefix(), od, od, dtype);
        }
        ProjectorLayout::Idefics3Linear => {
            let scale = 1.0 / (mw as f32).sqrt();
            spec(&mut out, MmTensor::ModelFc.weight(), vec![mw, od], dtype.matrix(mw as usize), scale);
        }
    }
    out
}

/// A writer holding the metadata and seeded random tensors of an mmproj file of `shape`.
pub fn build_mmproj(
    shape: &VisionShape,
    dtype: VisionDType,
    seed: u64,
) -> Result<GgufWriter, VisionGenError> {
    build_mmproj_with_progress(shape, dtype, seed, |_, _| {})
}

/// [`build_mmproj`], calling `progress(done, total)` after each tensor.
pub fn build_mmproj_with_progress(
    shape: &VisionShape,
    dtype: VisionDType,
    seed: u64,
    progress: impl FnMut(usize, usize),
) -> Result<GgufWriter, VisionGenError> {
    let mut w = GgufWriter::new();
    let u32v = |v: usize| Value::U32(u32::try_from(v).unwrap_or(u32::MAX));
    let family = shape.family;
    let (mean, std) = shape.mean_std;
    w.add_kv(general::ARCHITECTURE, Value::Str(general::ARCH_CLIP.into()))
        .add_kv(general::TYPE, Value::Str(general::TYPE_MMPROJ.into()))
        .add_kv(general::NAME, Value::Str(shape.name.into()))
        .add_kv(general::FILE_TYPE, Value::U32(file_type(dtype.matrix(shape.n_embd))))
        .add_kv(clip::HAS_VISION_ENCODER, Value::Bool(true))
        .add_kv(clip::HAS_TEXT_ENCODER, Value::Bool(false))
        .add_kv(clip::PROJECTOR_TYPE, Value::Str(family.projector_type().into()))
        .add_kv(clip::USE_GELU, Value::Bool(true))
        .add_kv(clip::IMAGE_SIZE, u32v(shape.image_size))
        .add_kv(clip::PATCH_SIZE, u32v(shape.patch_size))
        .add_kv(clip::EMBEDDING_LENGTH, u32v(shape.n_embd))
        .add_kv(clip::FEED_FORWARD_LENGTH, u32v(shape.n_ff))
        .add_kv(clip::BLOCK_COUNT, u32v(shape.n_layer))
        .add_kv(clip::HEAD_COUNT, u32v(shape.n_head))
        .add_kv(clip::LAYER_NORM_EPS, Value::F32(shape.eps))
        .add_kv(clip::PROJECTION_DIM, u32v(shape.projection_dim))
        .add_kv(clip::IMAGE_MEAN, Value::Array(Array::F32(mean.to_vec())))
        .add_kv(clip::IMAGE_STD, Value::Array(Array::F32(std.to_vec())))
        .add_kv(clip::SCALE_FACTOR, u32v(shape.scale_factor));
    match family {
        VisionFamily::EdgeVl => {
            w.add_kv(clip::EDGEVL_LAYOUT, Value::Str(LAYOUT_GLOBAL_FIRST.into()));
        }
        // InternVL3's `min_dynamic_patch` / `max_dynamic_patch`.
        VisionFamily::InternVl => {
            w.add_kv(clip::PREPROC_MIN_TILES, Value::U32(1)).add_kv(clip::PREPROC_MAX_TILES, Value::U32(12));
        }
        // SmolVLM's processor `size.longest_edge`.
        VisionFamily::Idefics3 => {
            w.add_kv(clip::PREPROC_IMAGE_SIZE, Value::U32(2048));
        }
    }
    add_random_tensors(&mut w, &mmproj_tensors(shape, dtype), seed, progress)?;
    Ok(w)
}

/// Writes a random-weight mmproj file of `shape` to `path` atomically (a part file renamed into
/// place).
pub fn write_mmproj(
    shape: &VisionShape,
    dtype: VisionDType,
    seed: u64,
    path: &Path,
) -> Result<(), VisionGenError> {
    write_mmproj_with_progress(shape, dtype, seed, path, |_, _| {})
}

/// [`write_mmproj`], calling `progress(done, total)` after each tensor is generated.
pub fn write_mmproj_with_progress(
    shape: &VisionShape,
    dtype: VisionDType,
    seed: u64,
    path: &Path,
    progress: impl FnMut(usize, usize),
) -> Result<(), VisionGenError> {
    // The destination first: a path that cannot be written is an error before the file is built.
    let file = crate::tensors::create(path)?;
    build_mmproj_with_progress(shape, dtype, seed, progress)?.write_to_file(file)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_scheme_falls_back_to_f16_for_odd_rows() {
        let specs = mmproj_tensors(&SIGLIP_SO400M, VisionDType::Q8_0);
        let ty = |n: &str| specs.iter().find(|s| s.name == n).map(|s| s.dtype);
        assert_eq!(ty("v.blk.0.ffn_up.weight"), Some(DType::Q8_0));
        assert_eq!(ty("v.blk.0.ffn_down.weight"), Some(DType::F16)); // rows of 4304
        assert_eq!(ty("v.patch_embd.weight"), Some(DType::F16)); // rows of 588
        assert_eq!(ty("mm.1.weight"), Some(DType::Q8_0));
        assert_eq!(ty("v.blk.26.ln2.weight"), Some(DType::F32));
        assert!(ty("v.blk.27.ln1.weight").is_none());
        assert!(vision_preset("nope").unwrap_err().to_string().contains("siglip-so400m"));
    }
}

#[cfg(test)]
mod model_tests {
    use super::*;
    use edgevl_gguf::GgufFile;
    use edgevl_kernels::ThreadPool;
    use edgevl_model::vision::{VisionEncoder, VitWeightOptions};
    use std::sync::Arc;

    fn encoder(shape: &VisionShape, dtype: VisionDType) -> VisionEncoder {
        let bytes = build_mmproj(shape, dtype, 5).unwrap().to_bytes().unwrap();
        VisionEncoder::load(Arc::new(GgufFile::from_bytes(bytes).unwrap()), &edgevl_testdata::kernels())
            .unwrap()
    }

    /// A smooth pattern in [-1, 1] standing in for normalised pixels.
    fn tiles(n: usize, size: usize) -> Vec<f32> {
        (0..n * 3 * size * size).map(|i| ((i % 977) as f32 * 0.37).sin()).collect()
    }

    /// `max |a - b| / max |b|`.
    fn rel_err(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
    }

    #[test]
    fn tiny_in_every_type_loads_and_batches_equal_one_at_a_time() {
        let pool = ThreadPool::new(2);
        let input = tiles(3, 384);
        let reference = encoder(&TINY_VISION, VisionDType::F32).encode_tiles(&input, 3, 1, &pool).unwrap();
        for (dtype, tol) in [(VisionDType::F32, 0.0), (VisionDType::F16, 5e-3), (VisionDType::Q8_0, 5e-2)] {
            let enc = encoder(&TINY_VISION, dtype);
            let one = enc.encode_tiles(&input, 3, 1, &pool).unwrap();
            assert_eq!(one.len(), 3 * 196 * TINY_VISION.projection_dim);
            // The same seed gives the same weights in every type: F32's embeddings up to rounding.
            let err = rel_err(&one, &reference);
            assert!(err <= tol, "{dtype:?}: {err} from F32's embeddings (tolerance {tol})");
            for batch in [2, 3] {
                let b = enc.encode_tiles(&input, 3, batch, &pool).unwrap();
                let diff = one.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
                assert!(diff == 0.0, "{dtype:?} batch {batch}: max abs diff {diff}");
            }
        }
    }

    #[test]
    fn int8_vit_weights_pad_the_mlp_and_stay_within_q8_0_rounding() {
        // An MLP of 100 channels: not whole Q8_0 blocks, so the Q8_0 file keeps `ffn_down` in F16 (so400m's case).
        let shape = VisionShape { n_ff: 100, ..TINY_VISION };
        let specs = mmproj_tensors(&shape, VisionDType::Q8_0);
        let down = specs.iter().find(|s| s.name == "v.blk.0.ffn_down.weight").map(|s| s.dtype);
        assert_eq!(down, Some(DType::F16));
        let pool = ThreadPool::new(2);
        let input = tiles(2, 384);
        let kernels = edgevl_testdata::kernels();
        let load = |dtype, int8| {
            let bytes = build_mmproj(&shape, dtype, 5).unwrap().to_bytes().unwrap();
            let opts = VitWeightOptions { int8 };
            let enc =
                VisionEncoder::load_with(Arc::new(GgufFile::from_bytes(bytes).unwrap()), &kernels, opts);
            enc.unwrap().encode_tiles(&input, 2, 2, &pool).unwrap()
        };
        let reference = load(VisionDType::F32, false);
        for dtype in [VisionDType::Q8_0, VisionDType::F32] {
            let (stored, int8) = (load(dtype, false), load(dtype, true));
            let err = rel_err(&int8, &reference);
            assert!(err < 5e-2, "{dtype:?} with INT8 weights: {err} from F32's embeddings");
            // The option takes effect wherever the kernel table repacks Q8_0 (the F16/F32 matrices become
            // Q8_0, so the embeddings change), and nowhere else.
            assert_eq!(int8 != stored, kernels.prefers_packed(DType::Q8_0), "{dtype:?}");
        }
    }

    #[test]
    fn family_presets_load_with_their_tower_and_projector() {
        let pool = ThreadPool::new(2);
        for (full, tokens) in [(INTERNVIT_300M, 256), (SMOLVLM_256M_VISION, 64)] {
            // The family's structure at a small width, so the test stays fast.
            let shape =
                VisionShape { n_embd: 32, n_ff: 64, n_layer: 2, n_head: 2, projection_dim: 48, ..full };
            let enc = encoder(&shape, VisionDType::Q8_0);
            let hp = enc.hparams();
            assert_eq!(
                (hp.family, hp.image_size, hp.scale_factor),
                (full.family, full.image_size, full.scale_factor)
            );
            assert_eq!(enc.tokens_per_tile(), tokens, "{}", full.name);
            let input = tiles(2, full.image_size);
            let out = enc.encode_tiles(&input, 2, 2, &pool).unwrap();
            assert_eq!(out.len(), 2 * tokens * 48);
            let reference = encoder(&shape, VisionDType::F32).encode_tiles(&input, 2, 2, &pool).unwrap();
            let err = rel_err(&out, &reference);
            assert!(err < 5e-2, "{}: Q8_0 {err} from F32's embeddings", full.name);
            // Tiles are encoded independently: the second tile alone gives the second half.
            let second = enc.encode_tiles(&input[input.len() / 2..], 1, 1, &pool).unwrap();
            assert_eq!(second, out[tokens * 48..], "{}: tile 2 alone", full.name);
        }
        assert_eq!(INTERNVIT_300M.projection_dim, crate::llm::preset("internvl3-1b").unwrap().n_embd);
        assert_eq!(SMOLVLM_256M_VISION.projection_dim, crate::llm::preset("smolvlm-256m").unwrap().n_embd);
    }

    #[test]
    fn so400m_shape_encodes_one_tile() {
        let enc = encoder(&SIGLIP_SO400M, VisionDType::Q8_0);
        let hp = enc.hparams();
        assert_eq!(
            (hp.n_embd, hp.n_layer, hp.n_head, hp.n_ff, hp.projection_dim),
            (1152, 27, 16, 4304, 2560)
        );
        assert!(!enc.has_post_norm());
        let pool = ThreadPool::new(2);
        let start = std::time::Instant::now();
        let out = enc.encode_tiles(&tiles(1, 384), 1, 1, &pool).unwrap();
        eprintln!("so400m Q8_0, one tile, 2 threads: {:.2} s", start.elapsed().as_secs_f64());
        assert_eq!(out.len(), 196 * 2560);
        assert!(out.iter().all(|v| v.is_finite()));
        let rms = (out.iter().map(|v| v * v).sum::<f32>() / out.len() as f32).sqrt();
        assert!(rms > 1e-3 && rms < 1e3, "output rms {rms}");
    }
}
