//! The mmproj file of a vision-language checkpoint (vision tower + projector): tensors mapped by
//! `edgevl_arch::hf::vision`, checked against `config.json`, typed as
//! `convert_hf_to_gguf.py --mmproj --outtype` types them, metadata in that converter's order
//! (`MmprojModel.set_gguf_parameters`, then the family's keys).

use std::collections::{HashMap, HashSet};

use edgevl_arch::clip::{self, MmTensor, VisionTensor, VitTensor};
use edgevl_arch::family::{Gelu, ProjectorLayout, VisionFamily, EDGEVL_TILE_SIZE, LAYOUT_GLOBAL_FIRST};
use edgevl_arch::general;
use edgevl_arch::hf::vision::{self, config as vcfg, Mapped};
use edgevl_gguf::{Array, Metadata, TensorSpec, Value};
use serde_json::{Map, Value as Json};

use crate::checkpoint::{require_float, require_shape, Checkpoint, JsonFile};
use crate::error::{ConvertError, Result};
use crate::hparams::{self, Sign};
use crate::llm::QUANTIZATION_VERSION;
use crate::naming;
use crate::plan::{self, PlanOptions, Scheme, TypedTensor, VisionTyped};
use crate::stream::{n_params, Job, PlannedTensor, Rows, Source};

/// Largest merge factor (pixel shuffle / downsampling) the mmproj loader accepts; with it the
/// projector's input width `scale_factor^2 * n_embd` (n_embd < 2^32) cannot overflow.
const MAX_SCALE_FACTOR: u64 = edgevl_model::vision::MAX_SCALE_FACTOR;

/// The family's own keys.
#[derive(Clone, Debug, PartialEq)]
enum FamilyKeys {
    /// This project's layout: `edgevl.vision.layout`.
    EdgeVl,
    /// InternVL's tile counts (written when positive).
    InternVl { min_tiles: u64, max_tiles: u64 },
    /// SmolVLM's longest edge before tiling.
    Idefics3 { preproc_image_size: u64 },
}

/// Hyper-parameters of a vision tower and its projector, from `config.json` and the processor configs.
#[derive(Clone, Debug, PartialEq)]
struct VisionParams {
    family: VisionFamily,
    image_size: u64,
    patch_size: u64,
    n_embd: u64,
    n_ff: u64,
    n_layer: u64,
    n_head: u64,
    eps: f64,
    projection_dim: u64,
    scale_factor: u64,
    image_mean: Vec<f32>,
    image_std: Vec<f32>,
    keys: FamilyKeys,
}

/// A `config.json` field of `map` read as a count: a number, or a list's first number.
fn count(m: &Map<String, Json>, keys: &[&str]) -> Option<(String, Option<u64>)> {
    keys.iter().find_map(|k| {
        let v = m.get(*k).filter(|v| !v.is_null())?;
        let n =
            v.as_array().and_then(|a| a.first()).unwrap_or(v).as_u64().filter(|&x| x <= u64::from(u32::MAX));
        Some((k.to_string(), n))
    })
}

/// transformers' `Idefics3VisionConfig` / `SmolVLMVisionConfig` defaults (the two agree), which
/// the published SmolVLM configs rely on: they leave out the depth, the MLP width and the epsilon.
/// llama.cpp's converter reads them through `AutoConfig`.
const IDEFICS3_VISION_DEFAULTS: [(&str, u64); 6] = [
    ("image_size", 224),
    ("patch_size", 32),
    ("hidden_size", 1152),
    ("intermediate_size", 3072),
    ("num_hidden_layers", 12),
    ("num_attention_heads", 16),
];

/// The default `family`'s config class gives the first of `keys` it has one for.
fn family_default(family: VisionFamily, keys: &[&str]) -> Option<(&'static str, u64)> {
    if family != VisionFamily::Idefics3 {
        return None;
    }
    IDEFICS3_VISION_DEFAULTS.iter().copied().find(|(k, _)| keys.contains(k))
}

/// How many tower blocks the checkpoint holds tensors of (distinct `{layer}` of the family's
/// `{tower}encoder.layers.{layer}.` names).
fn blocks_present(ck: &Checkpoint, family: VisionFamily) -> u64 {
    let blocks = format!("{}{}", vision::tower_prefix(family), vision::BLOCKS_PREFIX);
    let layers: HashSet<&str> =
        ck.tensors().filter_map(|(_, v)| Some(v.name.strip_prefix(&blocks)?.split_once('.')?.0)).collect();
    layers.len() as u64
}

/// The processor configs as llama.cpp merges them: `preprocessor_config.json`, then
/// `processor_config.json` (its `image_processor` object over its root) over it.
fn processor_config(ck: &Checkpoint) -> Result<(Map<String, Json>, String)> {
    let mut out = Map::new();
    let mut read = Vec::new();
    for file in [vcfg::PREPROCESSOR_CONFIG, vcfg::PROCESSOR_CONFIG] {
        if let Some(j) = JsonFile::read_optional(&ck.dir().join(file))? {
            let mut root = j.root;
            if let Some(Json::Object(inner)) = root.get(vcfg::IMAGE_PROCESSOR).cloned() {
                root.extend(inner);
            }
            out.extend(root);
            read.push(file);
        }
    }
    let files = if read.is_empty() { vcfg::PREPROCESSOR_CONFIG.to_string() } else { read.join(" + ") };
    Ok((out, files))
}

impl VisionParams {
    fn from_checkpoint(ck: &Checkpoint, family: VisionFamily) -> Result<Self> {
        let config = &ck.config;
        let bad = |field: &str, message: String| ConvertError::Config {
            path: config.path.clone(),
            field: field.to_string(),
            message,
        };
        let vc = config
            .root
            .get(vcfg::VISION_CONFIG)
            .and_then(Json::as_object)
            .ok_or_else(|| bad(vcfg::VISION_CONFIG, "missing, or not an object".into()))?;
        let field = |k: &str| format!("{}.{k}", vcfg::VISION_CONFIG);
        let need_keyed = |keys: &[&str]| -> Result<(String, u64)> {
            match count(vc, keys) {
                Some((k, Some(n))) if n > 0 => Ok((k, n)),
                Some((k, _)) => Err(bad(&field(&k), "not a positive count".into())),
                None => match family_default(family, keys) {
                    Some((k, n)) => Ok((k.to_string(), n)),
                    None => Err(bad(&field(keys[0]), "missing".into())),
                },
            }
        };
        let need = |keys: &[&str]| need_keyed(keys).map(|(_, n)| n);
        let image_size = need(&[vcfg::IMAGE_SIZE])?;
        let patch_size = need(&[vcfg::PATCH_SIZE])?;
        let n_embd = need(&vcfg::N_EMBD)?;
        let n_ff = need(&vcfg::N_FF)?;
        let (layer_key, n_layer) = need_keyed(&vcfg::N_LAYER)?;
        // Per-block expectations are built for every block: first bound the count by the blocks
        // the checkpoint holds tensors of.
        let present = blocks_present(ck, family);
        if n_layer > present {
            return Err(bad(
                &field(&layer_key),
                format!("{n_layer} blocks, but the checkpoint holds tensors of {present}"),
            ));
        }
        let n_head = need(&vcfg::N_HEAD)?;
        if n_embd % n_head != 0 {
            return Err(bad(
                &field(vcfg::N_HEAD[0]),
                format!("{n_head} heads do not divide the width {n_embd}"),
            ));
        }
        let eps = match (vc.get(vcfg::LAYER_NORM_EPS).map(Json::as_f64), family) {
            (Some(Some(e)), _) => {
                hparams::check_f32(e, Sign::Positive).map_err(|m| bad(&field(vcfg::LAYER_NORM_EPS), m))?
            }
            (Some(None), _) => return Err(bad(&field(vcfg::LAYER_NORM_EPS), "not a number".into())),
            // transformers' default, which llama.cpp's converter reads through `AutoConfig` (its
            // own fallback of 1e-5 is never reached).
            (None, VisionFamily::Idefics3) => 1e-6,
            (None, _) => return Err(bad(&field(vcfg::LAYER_NORM_EPS), "missing".into())),
        };
        let act = vc.get(vcfg::HIDDEN_ACT).and_then(Json::as_str);
        let want_act = match family.tower_gelu() {
            Gelu::Erf => "gelu",
            Gelu::Tanh => "gelu_pytorch_tanh",
        };
        match act {
            Some(a) if a != want_act => {
                return Err(bad(
                    &field(vcfg::HIDDEN_ACT),
                    format!("'{a}': a {} tower uses '{want_act}'", family.name()),
                ))
            }
            None if family == VisionFamily::InternVl => {
                return Err(bad(&field(vcfg::HIDDEN_ACT), "missing".into()))
            }
            _ => {}
        }
        let text = hparams::merged(config);
        let projection_dim = match count(&text, &vcfg::TEXT_N_EMBD) {
            Some((_, Some(n))) if n > 0 => n,
            _ => return Err(bad("text_config.hidden_size", "the language model's width is missing".into())),
        };
        let root = &config.root;
        let (pre, files) = processor_config(ck)?;
        let (scale_factor, keys) = match family {
            VisionFamily::EdgeVl => {
                let s = count(root, &[vcfg::DOWNSAMPLE_FACTOR]).map_or(Some(2), |(_, n)| n);
                if s != family.fixed_scale_factor().map(|f| f as u64) {
                    return Err(bad(
                        vcfg::DOWNSAMPLE_FACTOR,
                        "this project's layout merges 2x2 patches".into(),
                    ));
                }
                if image_size != EDGEVL_TILE_SIZE as u64 {
                    return Err(bad(
                        &field(vcfg::IMAGE_SIZE),
                        format!("{image_size}: this project's layout tiles at {EDGEVL_TILE_SIZE} px"),
                    ));
                }
                if let Some(a) = root.get(vcfg::PROJECTOR_HIDDEN_ACT).and_then(Json::as_str) {
                    if a != "gelu_pytorch_tanh" {
                        return Err(bad(
                            vcfg::PROJECTOR_HIDDEN_ACT,
                            format!("'{a}': the projector uses tanh GELU"),
                        ));
                    }
                }
                if let Some(e) = root.get(vcfg::PROJECTOR_LAYER_NORM_EPS).and_then(Json::as_f64) {
                    if e != 1e-5 {
                        return Err(bad(
                            vcfg::PROJECTOR_LAYER_NORM_EPS,
                            format!("{e}: the projector's is 1e-5"),
                        ));
                    }
                }
                (2, FamilyKeys::EdgeVl)
            }
            VisionFamily::InternVl => {
                // 1 / ratio is the scale factor, at most MAX_SCALE_FACTOR.
                let ratio = root
                    .get(vcfg::DOWNSAMPLE_RATIO)
                    .and_then(Json::as_f64)
                    .filter(|r| (1.0 / MAX_SCALE_FACTOR as f64..=1.0).contains(r));
                let ratio = ratio.ok_or_else(|| {
                    bad(vcfg::DOWNSAMPLE_RATIO, format!("missing, or not in [1/{MAX_SCALE_FACTOR}, 1]"))
                })?;
                let tiles = |k: &str| count(root, &[k]).and_then(|(_, n)| n).unwrap_or(0);
                let keys = FamilyKeys::InternVl {
                    min_tiles: tiles(vcfg::MIN_DYNAMIC_PATCH),
                    max_tiles: tiles(vcfg::MAX_DYNAMIC_PATCH),
                };
                ((1.0 / ratio) as u64, keys)
            }
            VisionFamily::Idefics3 => {
                let s = match count(root, &[vcfg::SCALE_FACTOR]) {
                    None => 2,
                    Some((_, Some(s))) if (1..=MAX_SCALE_FACTOR).contains(&s) => s,
                    Some(_) => {
                        return Err(bad(vcfg::SCALE_FACTOR, format!("not a count in 1..={MAX_SCALE_FACTOR}")))
                    }
                };
                let longest =
                    pre.get(vcfg::SIZE).and_then(|s| s.get(vcfg::LONGEST_EDGE)).and_then(Json::as_u64);
                (s, FamilyKeys::Idefics3 { preproc_image_size: longest.unwrap_or(image_size) })
            }
        };
        let floats = |k: &str| -> Result<Vec<f32>> {
            pre.get(k)
                .and_then(Json::as_array)
                .and_then(|a| a.iter().map(|v| v.as_f64().map(|x| x as f32)).collect::<Option<Vec<_>>>())
                .ok_or_else(|| ConvertError::Config {
                    path: ck.dir().join(&files),
                    field: k.to_string(),
                    message: "missing, or not a list of numbers".into(),
                })
        };
        Ok(Self {
            family,
            image_size,
            patch_size,
            n_embd,
            n_ff,
            n_layer,
            n_head,
            eps,
            projection_dim,
            scale_factor,
            image_mean: floats(vcfg::IMAGE_MEAN)?,
            image_std: floats(vcfg::IMAGE_STD)?,
            keys,
        })
    }

    /// Every mmproj tensor with the checkpoint (row-major) shape `config.json` implies.
    fn expected_shapes(&self) -> HashMap<String, Vec<u64>> {
        let (d, ff, p) = (self.n_embd, self.n_ff, self.patch_size);
        let n_pos = (self.image_size / p).pow(2);
        let (mw, od) = (self.scale_factor * self.scale_factor * d, self.projection_dim);
        let mut m = HashMap::new();
        let mut linear = |prefix: String, rows: u64, cols: u64| {
            m.insert(format!("{prefix}.weight"), vec![rows, cols]);
            m.insert(format!("{prefix}.bias"), vec![rows]);
        };
        for l in 0..self.n_layer as usize {
            for t in [VitTensor::AttnQ, VitTensor::AttnK, VitTensor::AttnV, VitTensor::AttnOut] {
                linear(t.prefix(l), d, d);
            }
            linear(VitTensor::FfnUp.prefix(l), ff, d);
            linear(VitTensor::FfnDown.prefix(l), d, ff);
        }
        match self.family.projector() {
            ProjectorLayout::Lfm2 => {
                linear(MmTensor::Seq(1).prefix(), od, mw);
                linear(MmTensor::Seq(2).prefix(), od, od);
            }
            ProjectorLayout::InternVlMlp => {
                linear(MmTensor::ModelMlp(1).prefix(), od, mw);
                linear(MmTensor::ModelMlp(3).prefix(), od, od);
            }
            ProjectorLayout::Idefics3Linear => {
                linear(MmTensor::ModelFc.prefix(), od, mw);
            }
        }
        let mut vector = |prefix: String, n: u64| {
            m.insert(format!("{prefix}.weight"), vec![n]);
            m.insert(format!("{prefix}.bias"), vec![n]);
        };
        for l in 0..self.n_layer as usize {
            for t in [VitTensor::Ln1, VitTensor::Ln2, VitTensor::Ls1, VitTensor::Ls2] {
                vector(t.prefix(l), d);
            }
        }
        vector(VisionTensor::PostLn.prefix().into(), d);
        vector(VisionTensor::PatchEmbd.prefix().into(), d);
        vector(MmTensor::InputNorm.prefix(), mw);
        vector(MmTensor::ModelMlp(0).prefix(), mw);
        m.insert(VisionTensor::PatchEmbd.weight(), vec![d, 3, p, p]);
        if self.family.class_token() {
            m.insert(VisionTensor::ClassEmbd.prefix().into(), vec![1, 1, d]);
            m.insert(VisionTensor::PositionEmbd.weight(), vec![1, n_pos + 1, d]);
        } else {
            m.insert(VisionTensor::PositionEmbd.weight(), vec![n_pos, d]);
        }
        m
    }

    /// The metadata after the header, in llama.cpp's order.
    fn write_metadata(&self, md: &mut Metadata, outtype: edgevl_gguf::GgmlType) {
        let u = |x: u64| Value::U32(x as u32);
        md.set(general::FILE_TYPE.into(), Value::U32(plan::mmproj_file_type(outtype)));
        md.set(clip::HAS_VISION_ENCODER.into(), Value::Bool(true));
        md.set(clip::PROJECTION_DIM.into(), u(self.projection_dim));
        md.set(clip::IMAGE_SIZE.into(), u(self.image_size));
        md.set(clip::PATCH_SIZE.into(), u(self.patch_size));
        md.set(clip::EMBEDDING_LENGTH.into(), u(self.n_embd));
        md.set(clip::FEED_FORWARD_LENGTH.into(), u(self.n_ff));
        md.set(clip::BLOCK_COUNT.into(), u(self.n_layer));
        md.set(clip::HEAD_COUNT.into(), u(self.n_head));
        md.set(clip::IMAGE_MEAN.into(), Value::Array(Array::F32(self.image_mean.clone())));
        md.set(clip::IMAGE_STD.into(), Value::Array(Array::F32(self.image_std.clone())));
        md.set(clip::PROJECTOR_TYPE.into(), Value::Str(self.family.projector_type().into()));
        md.set(clip::LAYER_NORM_EPS.into(), Value::F32(self.eps as f32));
        match &self.keys {
            FamilyKeys::EdgeVl => {
                md.set(clip::SCALE_FACTOR.into(), u(self.scale_factor));
                md.set(clip::USE_GELU.into(), Value::Bool(true));
                md.set(clip::EDGEVL_LAYOUT.into(), Value::Str(LAYOUT_GLOBAL_FIRST.into()));
            }
            FamilyKeys::InternVl { min_tiles, max_tiles } => {
                md.set(clip::USE_GELU.into(), Value::Bool(true));
                md.set(clip::SCALE_FACTOR.into(), u(self.scale_factor));
                if *min_tiles > 0 {
                    md.set(clip::PREPROC_MIN_TILES.into(), u(*min_tiles));
                }
                if *max_tiles > 0 {
                    md.set(clip::PREPROC_MAX_TILES.into(), u(*max_tiles));
                }
            }
            FamilyKeys::Idefics3 { preproc_image_size } => {
                md.set(clip::SCALE_FACTOR.into(), u(self.scale_factor));
                md.set(clip::USE_GELU.into(), Value::Bool(true));
                md.set(clip::PREPROC_IMAGE_SIZE.into(), u(*preproc_image_size));
            }
        }
    }
}

/// Plans the mmproj GGUF of checkpoint `ck`, a vision-language checkpoint of `family`.
pub fn build<'a>(ck: &'a Checkpoint, family: VisionFamily, opts: &PlanOptions) -> Result<Job<'a>> {
    let params = VisionParams::from_checkpoint(ck, family)?;
    let shapes = params.expected_shapes();
    let arch = format!("{} vision", family.name());
    // (GGUF name, ggml dims, rows, checkpoint tensor)
    let mut mapped = Vec::new();
    for (file, view) in ck.tensors() {
        if !vision::is_vision_tensor(family, &view.name) {
            continue;
        }
        let unexpected = || ConvertError::UnexpectedTensor {
            path: file.path().to_path_buf(),
            tensor: view.name.clone(),
            arch: arch.clone(),
        };
        let parts: Vec<(String, usize)> = match vision::map(family, &view.name).ok_or_else(unexpected)? {
            Mapped::One(n) => vec![(n, 1)],
            Mapped::FusedQkv(qkv) => qkv.into_iter().map(|n| (n, 3)).collect(),
        };
        require_float(file, view)?;
        for (k, (name, split)) in parts.into_iter().enumerate() {
            let mut expected = shapes.get(&name).cloned().ok_or_else(unexpected)?;
            expected[0] *= split as u64;
            require_shape(file, view, expected)?;
            let mut shape = view.shape.clone();
            shape[0] /= split as u64;
            let ne: Vec<u64> = shape.iter().rev().copied().collect();
            let rows = if split == 1 {
                Rows::AsIs
            } else {
                Rows::Slice { first: k * ne.iter().skip(1).product::<u64>() as usize }
            };
            mapped.push((name, ne, rows, file, view));
        }
    }
    for name in vision::required_tensors(family, params.n_layer as usize) {
        if ck.get(&name).is_none() {
            return Err(ConvertError::MissingTensor { dir: ck.dir().to_path_buf(), tensor: name });
        }
    }
    let outtype = opts.scheme.mmproj_type();
    let tensors: Vec<PlannedTensor> = mapped
        .into_iter()
        .map(|(name, ne, rows, file, view)| {
            let typed = VisionTyped {
                hf_name: &view.name,
                hf_ndims: view.shape.len(),
                gguf: TypedTensor { name: &name, ne: &ne },
            };
            let ggml_type = plan::mmproj_tensor_type(family, outtype, &typed);
            PlannedTensor {
                spec: TensorSpec { name, ggml_type, dims: ne },
                source: Source::Mapped { file, view },
                rows,
            }
        })
        .collect();
    let mut md = Metadata::new();
    naming::write_header(
        &mut md,
        ck.dir(),
        general::ARCH_CLIP,
        general::TYPE_MMPROJ,
        &ck.config.root,
        n_params(&tensors),
    );
    params.write_metadata(&mut md, outtype);
    md.set(general::QUANTIZATION_VERSION.into(), Value::U32(QUANTIZATION_VERSION));
    if opts.scheme == Scheme::BlueLm {
        md.set(general::EDGEVL_QUANT_SCHEME.into(), Value::Str(Scheme::BlueLm.name().into()));
    }
    edgevl_model::vision::MmprojHparams::try_from(&md).map_err(|e| ConvertError::Unloadable {
        path: ck.config.path.clone(),
        what: "mmproj",
        message: e.to_string(),
    })?;
    Ok(Job { metadata: md, tensors })
}
