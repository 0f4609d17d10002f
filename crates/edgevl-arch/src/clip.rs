//! Tensor names and metadata keys of mmproj files (vision tower + projector), as llama.cpp's
//! converter writes them (`gguf-py` `Keys.Clip*`, `TENSOR_NAMES` `V_*`), plus edgevl's own keys.

/// `clip.projector_type`: which projector (and so which family) the file holds.
pub const PROJECTOR_TYPE: &str = "clip.projector_type";
/// `clip.vision.projector_type`: the projector type in files with several modalities.
pub const VISION_PROJECTOR_TYPE: &str = "clip.vision.projector_type";
/// `clip.has_vision_encoder`.
pub const HAS_VISION_ENCODER: &str = "clip.has_vision_encoder";
/// `clip.has_text_encoder` (older files).
pub const HAS_TEXT_ENCODER: &str = "clip.has_text_encoder";
/// `clip.vision.image_size`: side of the square input the tower was trained on, in pixels.
pub const IMAGE_SIZE: &str = "clip.vision.image_size";
/// `clip.vision.patch_size`: side of a square patch in pixels.
pub const PATCH_SIZE: &str = "clip.vision.patch_size";
/// `clip.vision.embedding_length`: ViT width.
pub const EMBEDDING_LENGTH: &str = "clip.vision.embedding_length";
/// `clip.vision.feed_forward_length`: ViT MLP width.
pub const FEED_FORWARD_LENGTH: &str = "clip.vision.feed_forward_length";
/// `clip.vision.block_count`: number of ViT blocks.
pub const BLOCK_COUNT: &str = "clip.vision.block_count";
/// `clip.vision.attention.head_count`.
pub const HEAD_COUNT: &str = "clip.vision.attention.head_count";
/// `clip.vision.attention.head_count_kv` (optional; must equal the head count).
pub const HEAD_COUNT_KV: &str = "clip.vision.attention.head_count_kv";
/// `clip.vision.attention.head_dim` (optional; must equal width / heads).
pub const HEAD_DIM: &str = "clip.vision.attention.head_dim";
/// `clip.vision.attention.layer_norm_epsilon`: eps of the ViT's norms.
pub const LAYER_NORM_EPS: &str = "clip.vision.attention.layer_norm_epsilon";
/// `clip.vision.projection_dim`: output width of the projector (the LLM's embedding width).
pub const PROJECTION_DIM: &str = "clip.vision.projection_dim";
/// `clip.vision.image_mean` (3 floats).
pub const IMAGE_MEAN: &str = "clip.vision.image_mean";
/// `clip.vision.image_std` (3 floats).
pub const IMAGE_STD: &str = "clip.vision.image_std";
/// `clip.vision.projector.scale_factor`: side of the block of patches merged into one token.
pub const SCALE_FACTOR: &str = "clip.vision.projector.scale_factor";
/// `clip.vision.preproc_image_size`: SmolVLM's longest edge before tiling (2048).
pub const PREPROC_IMAGE_SIZE: &str = "clip.vision.preproc_image_size";
/// `clip.vision.preproc_min_tiles`: InternVL's smallest tile count (1).
pub const PREPROC_MIN_TILES: &str = "clip.vision.preproc_min_tiles";
/// `clip.vision.preproc_max_tiles`: InternVL's largest tile count (12).
pub const PREPROC_MAX_TILES: &str = "clip.vision.preproc_max_tiles";
/// `clip.use_gelu`: llama.cpp's switch to GELU in the ViT MLP (its default is gelu_quick). It
/// does not say which GELU: the family does.
pub const USE_GELU: &str = "clip.use_gelu";
/// `clip.use_silu`: llama.cpp's switch to SiLU in the ViT MLP (refused).
pub const USE_SILU: &str = "clip.use_silu";
/// `edgevl.vision.layout`: how an image's views go into the prompt in this project's own layout
/// (spec 2b); its presence tells this project's `lfm2` files from LFM2-VL's.
pub const EDGEVL_LAYOUT: &str = "edgevl.vision.layout";

/// Tensors of the vision tower outside its blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VisionTensor {
    /// `v.patch_embd`: the patch convolution `[p, p, 3, d]` and its bias.
    PatchEmbd,
    /// `v.position_embd`: learned position embeddings `[d, positions]`.
    PositionEmbd,
    /// `v.class_embd`: the class token `[d]` (InternViT).
    ClassEmbd,
    /// `v.pre_ln`: LayerNorm before the blocks.
    PreLn,
    /// `v.post_ln`: LayerNorm after the blocks.
    PostLn,
}

impl VisionTensor {
    /// The name without `.weight` / `.bias`.
    pub fn prefix(self) -> &'static str {
        match self {
            VisionTensor::PatchEmbd => "v.patch_embd",
            VisionTensor::PositionEmbd => "v.position_embd",
            VisionTensor::ClassEmbd => "v.class_embd",
            VisionTensor::PreLn => "v.pre_ln",
            VisionTensor::PostLn => "v.post_ln",
        }
    }

    /// `{prefix}.weight`.
    pub fn weight(self) -> String {
        format!("{}.weight", self.prefix())
    }

    /// `{prefix}.bias`.
    pub fn bias(self) -> String {
        format!("{}.bias", self.prefix())
    }
}

/// Tensors of one ViT block, `v.blk.{layer}.*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VitTensor {
    /// Norm before attention.
    Ln1,
    /// Query projection.
    AttnQ,
    /// Key projection.
    AttnK,
    /// Value projection.
    AttnV,
    /// Attention output projection.
    AttnOut,
    /// Layer scale of the attention branch (InternViT's `ls1` / `lambda_1`).
    Ls1,
    /// Norm before the MLP.
    Ln2,
    /// MLP up projection (`fc1`).
    FfnUp,
    /// MLP down projection (`fc2`).
    FfnDown,
    /// Layer scale of the MLP branch (InternViT's `ls2` / `lambda_2`).
    Ls2,
}

impl VitTensor {
    /// The name in block `layer` without `.weight` / `.bias`.
    pub fn prefix(self, layer: usize) -> String {
        let s = match self {
            VitTensor::Ln1 => "ln1",
            VitTensor::AttnQ => "attn_q",
            VitTensor::AttnK => "attn_k",
            VitTensor::AttnV => "attn_v",
            VitTensor::AttnOut => "attn_out",
            VitTensor::Ls1 => "ls1",
            VitTensor::Ln2 => "ln2",
            VitTensor::FfnUp => "ffn_up",
            VitTensor::FfnDown => "ffn_down",
            VitTensor::Ls2 => "ls2",
        };
        format!("v.blk.{layer}.{s}")
    }

    /// `{prefix}.weight` in block `layer`.
    pub fn weight(self, layer: usize) -> String {
        format!("{}.weight", self.prefix(layer))
    }

    /// `{prefix}.bias` in block `layer`.
    pub fn bias(self, layer: usize) -> String {
        format!("{}.bias", self.prefix(layer))
    }
}

/// Tensors of the projectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MmTensor {
    /// `mm.input_norm`: LayerNorm in front of the lfm2 projector.
    InputNorm,
    /// `mm.{n}`: the `n`-th layer of the lfm2 projector (1, 2).
    Seq(u8),
    /// `mm.model.mlp.{n}`: the `n`-th layer of InternVL's `mlp1` (0 = LayerNorm, 1 and 3 = Linear).
    ModelMlp(u8),
    /// `mm.model.fc`: Idefics3's single Linear (no bias).
    ModelFc,
}

impl MmTensor {
    /// The name without `.weight` / `.bias`.
    pub fn prefix(self) -> String {
        match self {
            MmTensor::InputNorm => "mm.input_norm".to_string(),
            MmTensor::Seq(n) => format!("mm.{n}"),
            MmTensor::ModelMlp(n) => format!("mm.model.mlp.{n}"),
            MmTensor::ModelFc => "mm.model.fc".to_string(),
        }
    }

    /// `{prefix}.weight`.
    pub fn weight(self) -> String {
        format!("{}.weight", self.prefix())
    }

    /// `{prefix}.bias`.
    pub fn bias(self) -> String {
        format!("{}.bias", self.prefix())
    }
}
