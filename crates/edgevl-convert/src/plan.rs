//! Which type each tensor gets: `convert_hf_to_gguf.py`'s rules for the float schemes, and
//! `llama-quantize`'s (`llama_tensor_get_type`) applied to that F32 file for the quantised ones,
//! including its fallbacks for rows that are not a multiple of the block size and its choices for
//! `token_embd` and `output`; `bluelm` is the paper's mixed precision.

use edgevl_arch::family::VisionFamily;
use edgevl_arch::{clip, llm};
use edgevl_gguf::GgmlType;

/// A precision scheme (`--scheme`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Everything F32 (`convert_hf_to_gguf.py --outtype f32`).
    F32,
    /// 2-D weights F16, norms and 1-D tensors F32 (`--outtype f16`).
    F16,
    /// 2-D weights BF16 (`--outtype bf16`).
    BF16,
    /// `llama-quantize Q8_0` of the F32 file.
    Q8_0,
    /// `llama-quantize Q4_0`.
    Q4_0,
    /// `llama-quantize Q4_1`.
    Q4_1,
    /// `llama-quantize Q4_K_M` (Q4_K, with Q6_K for half of `attn_v` and `ffn_down`).
    Q4K,
    /// The paper's mixed precision: LLM linear weights 4-bit, token embedding and output Q8_0, vision
    /// tower and projector Q8_0, norms and biases F32.
    BlueLm,
}

impl Scheme {
    /// Every scheme with its `--scheme` name.
    pub const ALL: [(Scheme, &'static str); 8] = [
        (Scheme::F32, "f32"),
        (Scheme::F16, "f16"),
        (Scheme::BF16, "bf16"),
        (Scheme::Q8_0, "q8_0"),
        (Scheme::Q4_0, "q4_0"),
        (Scheme::Q4_1, "q4_1"),
        (Scheme::Q4K, "q4_k"),
        (Scheme::BlueLm, "bluelm"),
    ];

    /// The scheme named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().find(|(_, n)| *n == s).map(|(x, _)| *x)
    }

    /// Its `--scheme` name.
    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(x, _)| *x == self).map(|(_, n)| *n).unwrap_or("")
    }
}

/// The 4-bit type of the LLM's linear weights under `bluelm` (`--llm-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LlmType {
    /// Q4_0 (the default).
    Q4_0,
    /// Q4_K (Q4_0 for rows that are not a multiple of 256).
    Q4K,
}

impl LlmType {
    /// The type named `s` (`q4_0`, `q4_k`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "q4_0" => Some(Self::Q4_0),
            "q4_k" => Some(Self::Q4K),
            _ => None,
        }
    }

    fn ggml(self) -> GgmlType {
        match self {
            Self::Q4_0 => GgmlType::Q4_0,
            Self::Q4K => GgmlType::Q4_K,
        }
    }
}

/// How to choose types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanOptions {
    /// The scheme.
    pub scheme: Scheme,
    /// `bluelm`'s LLM type.
    pub llm_type: LlmType,
    /// llama-quantize's `--pure`: every quantisable tensor the scheme's type (fallbacks still apply).
    pub pure: bool,
}

impl PlanOptions {
    /// `general.file_type` (llama.cpp's `llama_ftype`).
    pub fn file_type(&self) -> u32 {
        match self.scheme {
            Scheme::F32 => 0,
            Scheme::F16 => 1,
            Scheme::Q4_0 => 2,
            Scheme::Q4_1 => 3,
            Scheme::Q8_0 => 7,
            Scheme::Q4K => 15,
            Scheme::BF16 => 32,
            Scheme::BlueLm => match self.llm_type {
                LlmType::Q4_0 => 2,
                LlmType::Q4K => 14,
            },
        }
    }
}

impl Scheme {
    /// The `--outtype` of `convert_hf_to_gguf.py --mmproj` the scheme's mmproj is written with:
    /// the float schemes their own, every quantised scheme Q8_0 (the paper's INT8 ViT and
    /// projector; llama-quantize does not quantise mmproj files).
    pub fn mmproj_type(self) -> GgmlType {
        match self {
            Scheme::F32 => GgmlType::F32,
            Scheme::F16 => GgmlType::F16,
            Scheme::BF16 => GgmlType::BF16,
            Scheme::Q8_0 | Scheme::Q4_0 | Scheme::Q4_1 | Scheme::Q4K | Scheme::BlueLm => GgmlType::Q8_0,
        }
    }
}

/// `general.file_type` of an mmproj written as `outtype` (llama.cpp's `llama_ftype`).
pub fn mmproj_file_type(outtype: GgmlType) -> u32 {
    match outtype {
        GgmlType::F16 => 1,
        GgmlType::Q8_0 => 7,
        GgmlType::BF16 => 32,
        _ => 0,
    }
}

/// A vision tensor to be typed: its checkpoint name and number of dims, and its GGUF name and dims.
#[derive(Clone, Debug)]
pub struct VisionTyped<'a> {
    /// Checkpoint name.
    pub hf_name: &'a str,
    /// Number of dims of the checkpoint tensor (as PyTorch counts them).
    pub hf_ndims: usize,
    /// GGUF name and ggml dims.
    pub gguf: TypedTensor<'a>,
}

/// The type `convert_hf_to_gguf.py --mmproj --outtype` gives a vision tensor of `family`
/// (`prepare_tensors` with the family's `tensor_force_quant`, which asks `MmprojModel`'s only for
/// what it does not force itself): the family's embeddings F32 (SmolVLM's patch kernel among
/// them, F32 even in an F16 file), other patch kernels F32 (F16 in an F16 file), 1-D tensors,
/// norms, position embeddings and names not ending in `.weight` F32, everything else `outtype`,
/// falling back to F16 when Q8_0 cannot hold the rows.
pub fn mmproj_tensor_type(family: VisionFamily, outtype: GgmlType, t: &VisionTyped) -> GgmlType {
    let name = t.gguf.name;
    let forced = match family {
        VisionFamily::InternVl if name.contains(".position_embd.") => Some(GgmlType::F32),
        VisionFamily::Idefics3 if t.hf_name.contains(".embeddings.") => Some(GgmlType::F32),
        _ if name.contains(".patch_embd.weight") => {
            Some(if outtype == GgmlType::F16 { GgmlType::F16 } else { GgmlType::F32 })
        }
        _ => None,
    };
    if t.hf_ndims <= 1 || name.ends_with("_norm.weight") {
        return GgmlType::F32;
    }
    if let Some(ty) = forced {
        return ty;
    }
    if name == clip::VisionTensor::PositionEmbd.weight() || !name.ends_with(".weight") {
        return GgmlType::F32;
    }
    let row = t.gguf.ne.first().copied().unwrap_or(1);
    if row % outtype.block_size() as u64 != 0 {
        GgmlType::F16
    } else {
        outtype
    }
}

/// A tensor to be typed: its GGUF name and ggml dims (row length first).
#[derive(Clone, Debug)]
pub struct TypedTensor<'a> {
    /// GGUF name.
    pub name: &'a str,
    /// ggml dims.
    pub ne: &'a [u64],
}

/// The type `convert_hf_to_gguf.py` gives a tensor for a float out-type.
fn converter_type(t: &TypedTensor, float: GgmlType) -> GgmlType {
    if t.ne.len() <= 1 || t.name.ends_with("_norm.weight") || !t.name.ends_with(".weight") {
        GgmlType::F32
    } else {
        float
    }
}

/// llama-quantize's `tensor_allows_quantization` (the parts that concern LLaMA-family decoders and CLIP towers).
fn allows_quantization(t: &TypedTensor) -> bool {
    let n = t.name;
    ggml_n_dims(t.ne) >= 2
        && n.ends_with("weight")
        && !n.contains("_norm.weight")
        && !n.contains("ffn_gate_inp.weight")
        && !n.contains(".position_embd")
        && !n.contains(".patch_embd")
        && !n.contains(".patch_merger")
        && !n.contains(".rel_pos")
}

/// `ggml_n_dims`: dims up to the last one larger than 1 (at least 1).
fn ggml_n_dims(ne: &[u64]) -> usize {
    ne.iter().rposition(|&d| d > 1).map_or(1, |i| i + 1)
}

/// llama-quantize's tensor categories.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Category {
    Output,
    TokenEmbd,
    AttnV,
    FfnDown,
    Other,
}

fn category(name: &str) -> Category {
    if name == llm::OUTPUT {
        Category::Output
    } else if name == llm::TOKEN_EMBD {
        Category::TokenEmbd
    } else if name.contains("attn_v.weight") {
        Category::AttnV
    } else if name.contains("ffn_down") {
        Category::FfnDown
    } else {
        Category::Other
    }
}

/// `tensor_type_fallback`: a compatible type for rows that are not a multiple of the block size.
pub fn fallback(row_len: u64, t: GgmlType) -> GgmlType {
    let qk = t.block_size() as u64;
    if row_len % qk == 0 {
        return t;
    }
    let f = match t {
        GgmlType::Q2_K | GgmlType::Q3_K => GgmlType::Q4_0,
        GgmlType::Q4_K => GgmlType::Q5_0,
        GgmlType::Q5_K => GgmlType::Q5_1,
        GgmlType::Q6_K => GgmlType::Q8_0,
        other => other,
    };
    if row_len % f.block_size() as u64 != 0 {
        GgmlType::F16
    } else {
        f
    }
}

/// `use_more_bits` of llama-quantize.
fn use_more_bits(i: i64, n: i64) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// The layer of `blk.N.` names (-1 otherwise), as llama.cpp's `weight_name_comparer` reads it.
fn layer_of(name: &str) -> i64 {
    name.strip_prefix("blk.")
        .and_then(|r| r.split_once('.'))
        .and_then(|(n, _)| n.parse::<i64>().ok())
        .unwrap_or(-1)
}

/// The type of every tensor (same order as `tensors`); `n_layer` is the decoder's block count.
pub fn plan(opts: &PlanOptions, tensors: &[TypedTensor], n_layer: u64) -> Vec<GgmlType> {
    let float = match opts.scheme {
        Scheme::F32 => Some(GgmlType::F32),
        Scheme::F16 => Some(GgmlType::F16),
        Scheme::BF16 => Some(GgmlType::BF16),
        _ => None,
    };
    if let Some(f) = float {
        return tensors.iter().map(|t| converter_type(t, f)).collect();
    }
    if opts.scheme == Scheme::BlueLm {
        return tensors.iter().map(|t| bluelm_type(t, opts.llm_type)).collect();
    }
    let default = match opts.scheme {
        Scheme::Q8_0 => GgmlType::Q8_0,
        Scheme::Q4_0 => GgmlType::Q4_0,
        Scheme::Q4_1 => GgmlType::Q4_1,
        _ => GgmlType::Q4_K,
    };
    let q4_k_m = opts.scheme == Scheme::Q4K;
    let tied = !tensors.iter().any(|t| t.name == llm::OUTPUT);
    let n_attn_v = tensors.iter().filter(|t| category(t.name) == Category::AttnV).count() as i64;
    let n_layer = n_layer as i64;
    // llama-quantize visits tensors by layer, then name; its counters follow that order.
    let mut visit: Vec<usize> = (0..tensors.len()).collect();
    visit.sort_by(|&a, &b| {
        (layer_of(tensors[a].name), tensors[a].name).cmp(&(layer_of(tensors[b].name), tensors[b].name))
    });
    let mut out = vec![GgmlType::F32; tensors.len()];
    let (mut i_attn_v, mut i_ffn_down) = (0i64, 0i64);
    for i in visit {
        let t = &tensors[i];
        if !allows_quantization(t) {
            continue; // stays F32, its type in the converter's F32 file
        }
        let row = t.ne[0];
        let mut ty = default;
        if !opts.pure {
            match category(t.name) {
                Category::Output | Category::TokenEmbd if t.name == llm::OUTPUT || tied => {
                    if row % ty.block_size() as u64 != 0 {
                        ty = GgmlType::Q8_0;
                    } else if ty != GgmlType::Q8_0 {
                        ty = GgmlType::Q6_K;
                    }
                }
                Category::AttnV => {
                    if q4_k_m && use_more_bits(i_attn_v, n_attn_v) {
                        ty = GgmlType::Q6_K;
                    }
                    i_attn_v += 1;
                }
                Category::FfnDown => {
                    if q4_k_m && use_more_bits(i_ffn_down, n_layer) {
                        ty = GgmlType::Q6_K;
                    }
                    i_ffn_down += 1;
                }
                _ => {}
            }
        }
        out[i] = fallback(row, ty);
    }
    out
}

/// `bluelm`: decoder linear weights 4-bit, token embedding / output Q8_0, vision tower and
/// projector weights Q8_0, everything llama-quantize keeps in float (norms, biases, position and
/// patch embeddings) F32.
fn bluelm_type(t: &TypedTensor, llm_type: LlmType) -> GgmlType {
    if !allows_quantization(t) {
        return GgmlType::F32;
    }
    let row = t.ne[0];
    let vision = t.name.starts_with("v.") || t.name.starts_with("mm.");
    let ty = if vision || t.name == llm::TOKEN_EMBD || t.name == llm::OUTPUT {
        GgmlType::Q8_0
    } else {
        llm_type.ggml()
    };
    // Rows that Q4_K cannot hold stay 4-bit as Q4_0 (the paper keeps the LLM at 4 bits; llama-quantize writes Q5_0).
    match fallback(row, ty) {
        GgmlType::Q5_0 => fallback(row, GgmlType::Q4_0),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tt<'a>(names: &'a [(String, Vec<u64>)]) -> Vec<TypedTensor<'a>> {
        names.iter().map(|(n, ne)| TypedTensor { name: n, ne }).collect()
    }

    #[test]
    fn smollm2_shapes_get_llama_quantize_fallbacks() {
        // SmolLM2: 576 wide (not a multiple of 256), FFN 1536 (6 x 256), tied embeddings.
        let mut v = vec![
            ("token_embd.weight".to_string(), vec![576, 49152]),
            ("output_norm.weight".into(), vec![576]),
        ];
        for l in 0..30 {
            v.push((format!("blk.{l}.attn_v.weight"), vec![576, 192]));
            v.push((format!("blk.{l}.ffn_down.weight"), vec![1536, 576]));
            v.push((format!("blk.{l}.attn_norm.weight"), vec![576]));
        }
        let t = tt(&v);
        let q4 = plan(&PlanOptions { scheme: Scheme::Q4_0, llm_type: LlmType::Q4_0, pure: false }, &t, 30);
        assert_eq!(q4[0], GgmlType::Q8_0, "tied token_embd: Q6_K falls back to Q8_0");
        assert_eq!(q4[1], GgmlType::F32);
        assert_eq!(q4[2], GgmlType::Q4_0);
        let km = plan(&PlanOptions { scheme: Scheme::Q4K, llm_type: LlmType::Q4_0, pure: false }, &t, 30);
        assert_eq!(km[2], GgmlType::Q8_0, "attn_v of layer 0: Q6_K -> Q8_0");
        assert_eq!(km[3], GgmlType::Q6_K, "ffn_down of layer 0: Q6_K, 1536 is 6 x 256");
        assert_eq!(km[3 * 4 + 2], GgmlType::Q5_0, "attn_v of layer 4: Q4_K -> Q5_0");
        assert_eq!(km[3 * 4 + 3], GgmlType::Q4_K);
        let pure = plan(&PlanOptions { scheme: Scheme::Q4K, llm_type: LlmType::Q4_0, pure: true }, &t, 30);
        assert_eq!((pure[0], pure[3]), (GgmlType::Q5_0, GgmlType::Q4_K));
        let f16 = plan(&PlanOptions { scheme: Scheme::F16, llm_type: LlmType::Q4_0, pure: false }, &t, 30);
        assert_eq!((f16[0], f16[1]), (GgmlType::F16, GgmlType::F32));
        assert_eq!(fallback(33, GgmlType::Q4_K), GgmlType::F16);
        let bl = plan(&PlanOptions { scheme: Scheme::BlueLm, llm_type: LlmType::Q4K, pure: false }, &t, 30);
        assert_eq!(
            (bl[0], bl[1], bl[2], bl[3]),
            (GgmlType::Q8_0, GgmlType::F32, GgmlType::Q4_0, GgmlType::Q4_K)
        );
    }
}
