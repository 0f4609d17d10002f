//! The vision side of Hugging Face vision-language checkpoints: which `architectures[0]` names a
//! vision-language model of which family, where its tower and projector live, and the mmproj
//! tensor each checkpoint tensor becomes (llama.cpp's `convert_hf_to_gguf.py --mmproj`:
//! `InternVisionModel`, `SmolVLMModel`, and for this project's own layout the `lfm2` names of
//! `LFM2VLModel`; `docs/checkpoint-format.md`).
//!
//! ```
//! use edgevl_arch::family::VisionFamily;
//! use edgevl_arch::hf::vision::{self, Mapped};
//! let f = vision::family_of("InternVLChatModel").unwrap();
//! assert_eq!(f, VisionFamily::InternVl);
//! assert_eq!(
//!     vision::map(f, "vision_model.encoder.layers.3.mlp.fc1.bias"),
//!     Some(Mapped::One("v.blk.3.ffn_up.bias".into()))
//! );
//! assert_eq!(
//!     vision::map(f, "vision_model.encoder.layers.3.attn.qkv.weight"),
//!     Some(Mapped::FusedQkv(["v.blk.3.attn_q.weight".into(), "v.blk.3.attn_k.weight".into(), "v.blk.3.attn_v.weight".into()]))
//! );
//! ```

use crate::clip::{MmTensor, VisionTensor, VitTensor};
use crate::family::VisionFamily;

/// `architectures[0]` of this project's own vision-language layout (`docs/checkpoint-format.md`).
pub const EDGEVL_ARCH: &str = "EdgeVlForConditionalGeneration";

/// The vision-language architectures a converter reads, with the family of their mmproj.
pub const ARCHITECTURES: [(&str, VisionFamily); 4] = [
    (EDGEVL_ARCH, VisionFamily::EdgeVl),
    ("InternVLChatModel", VisionFamily::InternVl),
    ("Idefics3ForConditionalGeneration", VisionFamily::Idefics3),
    ("SmolVLMForConditionalGeneration", VisionFamily::Idefics3),
];

/// The family of a vision-language checkpoint whose `architectures[0]` is `arch`.
pub fn family_of(arch: &str) -> Option<VisionFamily> {
    ARCHITECTURES.iter().find(|(n, _)| *n == arch).map(|(_, f)| *f)
}

/// Where a family's tower lives in its checkpoint (names below it as `SiglipVisionModel` or
/// `InternVisionModel` name them).
pub fn tower_prefix(family: VisionFamily) -> &'static str {
    match family {
        VisionFamily::EdgeVl => "vision_tower.vision_model.",
        VisionFamily::InternVl => "vision_model.",
        VisionFamily::Idefics3 => "model.vision_model.",
    }
}

/// Prefix of the tower's blocks below [`tower_prefix`], followed by `{layer}.`.
pub const BLOCKS_PREFIX: &str = "encoder.layers.";

/// How a checkpoint tensor's name ends relative to the GGUF name it becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Suffix {
    /// `{hf}.weight` / `{hf}.bias` become `{gguf}.weight` / `{gguf}.bias`.
    WeightBias,
    /// `{hf}.weight` becomes `{gguf}.weight` (a Linear without bias).
    Weight,
    /// `{hf}` (an `nn.Parameter`, no suffix) becomes `{gguf}.weight`.
    BareToWeight,
    /// `{hf}` becomes `{gguf}` (InternViT's class token).
    Bare,
}

/// A GGUF tensor (without `.weight` / `.bias`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Tower(VisionTensor),
    Block(VitTensor),
    Projector(MmTensor),
}

/// Tensors of the tower outside its blocks, below [`tower_prefix`].
fn tower_table(family: VisionFamily) -> &'static [(&'static str, VisionTensor, Suffix)] {
    const SIGLIP: [(&str, VisionTensor, Suffix); 3] = [
        ("embeddings.patch_embedding", VisionTensor::PatchEmbd, Suffix::WeightBias),
        ("embeddings.position_embedding", VisionTensor::PositionEmbd, Suffix::Weight),
        ("post_layernorm", VisionTensor::PostLn, Suffix::WeightBias),
    ];
    const INTERNVIT: [(&str, VisionTensor, Suffix); 3] = [
        ("embeddings.class_embedding", VisionTensor::ClassEmbd, Suffix::Bare),
        ("embeddings.patch_embedding", VisionTensor::PatchEmbd, Suffix::WeightBias),
        ("embeddings.position_embedding", VisionTensor::PositionEmbd, Suffix::BareToWeight),
    ];
    match family {
        VisionFamily::EdgeVl | VisionFamily::Idefics3 => &SIGLIP,
        VisionFamily::InternVl => &INTERNVIT,
    }
}

/// Tensors of one block, below `{tower}encoder.layers.{layer}.` (InternViT's fused `attn.qkv`
/// apart).
fn block_table(family: VisionFamily) -> &'static [(&'static str, VitTensor, Suffix)] {
    const SIGLIP: [(&str, VitTensor, Suffix); 8] = [
        ("layer_norm1", VitTensor::Ln1, Suffix::WeightBias),
        ("self_attn.q_proj", VitTensor::AttnQ, Suffix::WeightBias),
        ("self_attn.k_proj", VitTensor::AttnK, Suffix::WeightBias),
        ("self_attn.v_proj", VitTensor::AttnV, Suffix::WeightBias),
        ("self_attn.out_proj", VitTensor::AttnOut, Suffix::WeightBias),
        ("layer_norm2", VitTensor::Ln2, Suffix::WeightBias),
        ("mlp.fc1", VitTensor::FfnUp, Suffix::WeightBias),
        ("mlp.fc2", VitTensor::FfnDown, Suffix::WeightBias),
    ];
    const INTERNVIT: [(&str, VitTensor, Suffix); 7] = [
        ("norm1", VitTensor::Ln1, Suffix::WeightBias),
        ("attn.proj", VitTensor::AttnOut, Suffix::WeightBias),
        ("ls1", VitTensor::Ls1, Suffix::BareToWeight),
        ("norm2", VitTensor::Ln2, Suffix::WeightBias),
        ("mlp.fc1", VitTensor::FfnUp, Suffix::WeightBias),
        ("mlp.fc2", VitTensor::FfnDown, Suffix::WeightBias),
        ("ls2", VitTensor::Ls2, Suffix::BareToWeight),
    ];
    match family {
        VisionFamily::EdgeVl | VisionFamily::Idefics3 => &SIGLIP,
        VisionFamily::InternVl => &INTERNVIT,
    }
}

/// InternViT's fused query/key/value projection, below a block's prefix; its rows are the query's,
/// the key's and the value's in that order.
pub const FUSED_QKV: &str = "attn.qkv";

/// The projector's tensors (full checkpoint names without `.weight` / `.bias`).
fn projector_table(family: VisionFamily) -> &'static [(&'static str, MmTensor, Suffix)] {
    const EDGEVL: [(&str, MmTensor, Suffix); 3] = [
        ("multi_modal_projector.layer_norm", MmTensor::InputNorm, Suffix::WeightBias),
        ("multi_modal_projector.linear_1", MmTensor::Seq(1), Suffix::WeightBias),
        ("multi_modal_projector.linear_2", MmTensor::Seq(2), Suffix::WeightBias),
    ];
    const INTERNVL: [(&str, MmTensor, Suffix); 3] = [
        ("mlp1.0", MmTensor::ModelMlp(0), Suffix::WeightBias),
        ("mlp1.1", MmTensor::ModelMlp(1), Suffix::WeightBias),
        ("mlp1.3", MmTensor::ModelMlp(3), Suffix::WeightBias),
    ];
    const IDEFICS3: [(&str, MmTensor, Suffix); 1] =
        [("model.connector.modality_projection.proj", MmTensor::ModelFc, Suffix::Weight)];
    match family {
        VisionFamily::EdgeVl => &EDGEVL,
        VisionFamily::InternVl => &INTERNVL,
        VisionFamily::Idefics3 => &IDEFICS3,
    }
}

/// Whether a checkpoint tensor belongs to the mmproj of a `family` checkpoint (llama.cpp's
/// `filter_tensors` of the family's mmproj converter); the rest is the language model's.
pub fn is_vision_tensor(family: VisionFamily, name: &str) -> bool {
    match family {
        VisionFamily::EdgeVl => {
            name.starts_with("vision_tower.") || name.starts_with("multi_modal_projector.")
        }
        VisionFamily::InternVl => name.starts_with("vision_model") || name.starts_with("mlp"),
        VisionFamily::Idefics3 => {
            name.contains("vision_tower") || name.contains("vision_model") || name.contains("model.connector")
        }
    }
}

/// What a checkpoint tensor becomes in the mmproj.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mapped {
    /// One GGUF tensor of the same data.
    One(String),
    /// InternViT's fused projection: its rows in three equal parts, the query's, key's and value's.
    FusedQkv([String; 3]),
}

/// The GGUF name of `target` for a checkpoint name ending `hf_suffix` (`""`, `.weight` or `.bias`).
fn gguf_name(target: Target, layer: usize, suffix: Suffix, hf_suffix: &str) -> Option<String> {
    let prefix = match target {
        Target::Tower(t) => t.prefix().to_string(),
        Target::Block(t) => t.prefix(layer),
        Target::Projector(t) => t.prefix(),
    };
    match (suffix, hf_suffix) {
        (Suffix::WeightBias, ".weight" | ".bias") | (Suffix::Weight, ".weight") => {
            Some(format!("{prefix}{hf_suffix}"))
        }
        (Suffix::BareToWeight, "") => Some(format!("{prefix}.weight")),
        (Suffix::Bare, "") => Some(prefix),
        _ => None,
    }
}

/// Finds `name` among `table`'s entries (each `{entry}` or `{entry}.weight|.bias`).
fn lookup<T: Copy>(table: &[(&'static str, T, Suffix)], name: &str) -> Option<(T, Suffix, &'static str)> {
    table.iter().find_map(|&(hf, t, suffix)| {
        let rest = name.strip_prefix(hf)?;
        let hf_suffix = ["", ".weight", ".bias"].into_iter().find(|s| *s == rest)?;
        Some((t, suffix, hf_suffix))
    })
}

/// The mmproj tensor(s) a `family` checkpoint tensor becomes, or `None` when the name is not one
/// of the family's vision tensors.
pub fn map(family: VisionFamily, name: &str) -> Option<Mapped> {
    if let Some((t, suffix, s)) = lookup(projector_table(family), name) {
        return gguf_name(Target::Projector(t), 0, suffix, s).map(Mapped::One);
    }
    let rest = name.strip_prefix(tower_prefix(family))?;
    let Some(block) = rest.strip_prefix(BLOCKS_PREFIX) else {
        let (t, suffix, s) = lookup(tower_table(family), rest)?;
        return gguf_name(Target::Tower(t), 0, suffix, s).map(Mapped::One);
    };
    let (layer, inner) = block.split_once('.')?;
    if layer.is_empty() || !layer.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let layer: usize = layer.parse().ok()?;
    if family == VisionFamily::InternVl {
        if let Some(s @ (".weight" | ".bias")) = inner.strip_prefix(FUSED_QKV) {
            return Some(Mapped::FusedQkv(
                [VitTensor::AttnQ, VitTensor::AttnK, VitTensor::AttnV]
                    .map(|t| format!("{}{s}", t.prefix(layer))),
            ));
        }
    }
    let (t, suffix, s) = lookup(block_table(family), inner)?;
    gguf_name(Target::Block(t), layer, suffix, s).map(Mapped::One)
}

/// Every checkpoint tensor a `family` checkpoint with `n_layer` tower blocks must hold.
pub fn required_tensors(family: VisionFamily, n_layer: usize) -> Vec<String> {
    let with_suffixes = |base: String, suffix: Suffix| -> Vec<String> {
        match suffix {
            Suffix::WeightBias => vec![format!("{base}.weight"), format!("{base}.bias")],
            Suffix::Weight => vec![format!("{base}.weight")],
            Suffix::BareToWeight | Suffix::Bare => vec![base],
        }
    };
    let tower = tower_prefix(family);
    let mut out = Vec::new();
    for &(hf, _, suffix) in tower_table(family) {
        out.extend(with_suffixes(format!("{tower}{hf}"), suffix));
    }
    for layer in 0..n_layer {
        let block = format!("{tower}{BLOCKS_PREFIX}{layer}.");
        for &(hf, _, suffix) in block_table(family) {
            out.extend(with_suffixes(format!("{block}{hf}"), suffix));
        }
        if family == VisionFamily::InternVl {
            out.extend(with_suffixes(format!("{block}{FUSED_QKV}"), Suffix::WeightBias));
        }
    }
    for &(hf, _, suffix) in projector_table(family) {
        out.extend(with_suffixes(hf.to_string(), suffix));
    }
    out
}

/// `config.json` and processor-config fields of the vision side, with the alternatives llama.cpp's
/// converter accepts (first found wins).
pub mod config {
    /// InternVL's name for the language model's config (read as `text_config`).
    pub const LLM_CONFIG: &str = "llm_config";
    /// The vision config.
    pub const VISION_CONFIG: &str = "vision_config";
    /// Tile side in pixels (InternVL may give a list: its first entry).
    pub const IMAGE_SIZE: &str = "image_size";
    /// Patch side in pixels (a list: its first entry).
    pub const PATCH_SIZE: &str = "patch_size";
    /// Tower width.
    pub const N_EMBD: [&str; 3] = ["hidden_size", "width", "vt_hidden_size"];
    /// Tower MLP width.
    pub const N_FF: [&str; 2] = ["intermediate_size", "vt_intermediate_size"];
    /// Tower blocks.
    pub const N_LAYER: [&str; 8] = [
        "n_layers",
        "num_hidden_layers",
        "n_layer",
        "num_layers",
        "depth",
        "layers",
        "encoder_layers",
        "vt_num_hidden_layers",
    ];
    /// Tower attention heads.
    pub const N_HEAD: [&str; 4] = ["num_attention_heads", "num_heads", "heads", "vt_num_attention_heads"];
    /// The tower's LayerNorm epsilon.
    pub const LAYER_NORM_EPS: &str = "layer_norm_eps";
    /// The tower's MLP activation.
    pub const HIDDEN_ACT: &str = "hidden_act";
    /// The language model's width (the projector's output), in the text config merged over the root.
    pub const TEXT_N_EMBD: [&str; 2] = ["hidden_size", "n_embd"];
    /// InternVL: the pixel shuffle's ratio (0.5 merges 2x2 patches).
    pub const DOWNSAMPLE_RATIO: &str = "downsample_ratio";
    /// InternVL: the smallest tile count.
    pub const MIN_DYNAMIC_PATCH: &str = "min_dynamic_patch";
    /// InternVL: the largest tile count.
    pub const MAX_DYNAMIC_PATCH: &str = "max_dynamic_patch";
    /// Idefics3: the pixel shuffle's scale factor.
    pub const SCALE_FACTOR: &str = "scale_factor";
    /// This project's layout (and LFM2-VL): side of the merged block of patches.
    pub const DOWNSAMPLE_FACTOR: &str = "downsample_factor";
    /// This project's layout: the projector's activation.
    pub const PROJECTOR_HIDDEN_ACT: &str = "projector_hidden_act";
    /// This project's layout: the projector's LayerNorm epsilon.
    pub const PROJECTOR_LAYER_NORM_EPS: &str = "projector_layer_norm_eps";
    /// The image processor's config (`image_mean`, `image_std`, `size`).
    pub const PREPROCESSOR_CONFIG: &str = "preprocessor_config.json";
    /// The processor's config, merged over the image processor's (its `image_processor` object
    /// over its root).
    pub const PROCESSOR_CONFIG: &str = "processor_config.json";
    /// `image_processor` inside [`PROCESSOR_CONFIG`].
    pub const IMAGE_PROCESSOR: &str = "image_processor";
    /// Normalisation mean (3 numbers).
    pub const IMAGE_MEAN: &str = "image_mean";
    /// Normalisation standard deviation (3 numbers).
    pub const IMAGE_STD: &str = "image_std";
    /// Idefics3: `size.longest_edge`, the longest edge before tiling.
    pub const SIZE: &str = "size";
    /// See [`SIZE`].
    pub const LONGEST_EDGE: &str = "longest_edge";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_required_tensor_maps_and_others_do_not() {
        for family in VisionFamily::ALL {
            let names = required_tensors(family, 2);
            let mut gguf: Vec<String> = Vec::new();
            for n in &names {
                assert!(is_vision_tensor(family, n), "{n}");
                match map(family, n) {
                    Some(Mapped::One(g)) => gguf.push(g),
                    Some(Mapped::FusedQkv(qkv)) => gguf.extend(qkv),
                    None => panic!("{family:?}: {n} does not map"),
                }
            }
            let mut unique = gguf.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), gguf.len(), "{family:?}: two tensors map to one name");
            let tower = tower_prefix(family);
            for bad in [
                format!("{tower}encoder.layers.x.mlp.fc1.weight"),
                format!("{tower}encoder.layers.0.mlp.fc3.weight"),
                format!("{tower}head.weight"),
                "language_model.model.norm.weight".to_string(),
            ] {
                assert_eq!(map(family, &bad), None, "{family:?}: {bad}");
            }
        }
        assert_eq!(family_of("SmolVLMForConditionalGeneration"), Some(VisionFamily::Idefics3));
        assert_eq!(family_of("LlamaForCausalLM"), None);
        assert_eq!(
            map(VisionFamily::InternVl, "vision_model.embeddings.class_embedding"),
            Some(Mapped::One("v.class_embd".into()))
        );
        assert_eq!(
            map(VisionFamily::InternVl, "vision_model.encoder.layers.1.ls2"),
            Some(Mapped::One("v.blk.1.ls2.weight".into()))
        );
        assert_eq!(
            map(VisionFamily::EdgeVl, "multi_modal_projector.linear_2.bias"),
            Some(Mapped::One("mm.2.bias".into()))
        );
        assert!(!is_vision_tensor(VisionFamily::Idefics3, "model.text_model.layers.0.mlp.up_proj.weight"));
    }
}
