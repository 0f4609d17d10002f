//! `edgevl info FILE`: what a GGUF file holds — an LLM (architecture, shapes, tensor types,
//! tokenizer, chat template) or an mmproj (vision family, tower, merge, projector, tiling) — in a
//! few lines, or as JSON.

use anyhow::Context;
use clap::Args;
use edgevl_arch::family::VisionFamily;
use edgevl_arch::{general, tokenizer as tok_keys};
use edgevl_gguf::GgufFile;
use edgevl_model::vision::MmprojHparams;
use edgevl_model::DecoderHparams;
use edgevl_tokenizer::Tokenizer;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Arguments of `edgevl info`.
#[derive(Args, Debug)]
pub struct InfoArgs {
    /// The GGUF file (an LLM or an mmproj).
    file: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Run `edgevl info`.
pub fn run(a: &InfoArgs) -> anyhow::Result<()> {
    let file = GgufFile::open(&a.file).with_context(|| format!("cannot read {}", a.file.display()))?;
    let info = describe(&file).with_context(|| format!("cannot describe {}", a.file.display()))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        print_text(&info);
    }
    Ok(())
}

/// Tensor count, elements and bytes per storage type.
fn tensor_types(file: &GgufFile) -> Value {
    let mut by_type: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
    for t in file.tensors() {
        let e = by_type.entry(t.ggml_type.name()).or_default();
        e.0 += 1;
        e.1 += t.n_elements();
        e.2 += t.n_bytes;
    }
    by_type
        .into_iter()
        .map(|(ty, (n, elems, bytes))| json!({"type": ty, "tensors": n, "parameters": elems, "bytes": bytes}))
        .collect()
}

/// Everything `info` prints, as JSON.
fn describe(file: &GgufFile) -> anyhow::Result<Value> {
    let md = file.metadata();
    let arch = file.architecture().unwrap_or("(none)").to_string();
    let mut out = json!({
        "architecture": arch,
        "name": md.opt_str(general::NAME).ok().flatten(),
        "file_bytes": file.file_len(),
        "tensors": file.tensors().len(),
        "parameters": file.tensors().iter().map(|t| t.n_elements()).sum::<u64>(),
        "types": tensor_types(file),
        "quantization_scheme": md.opt_str(general::EDGEVL_QUANT_SCHEME).ok().flatten(),
    });
    if arch == general::ARCH_CLIP {
        let hp = MmprojHparams::try_from(md)?;
        let family = hp.family;
        out["kind"] = json!("mmproj");
        out["vision"] = json!({
            "family": family.name(),
            "projector_type": family.projector_type(),
            "tile_size": hp.image_size,
            "patch_size": hp.patch_size,
            "patch_grid": hp.grid(),
            "tokens_per_view": hp.tokens_per_tile(),
            "width": hp.n_embd,
            "layers": hp.n_layer,
            "heads": hp.n_head,
            "ffn": hp.n_ff,
            "class_token": family.class_token(),
            "layer_scale": family.layer_scale(),
            "gelu": format!("{:?}", family.tower_gelu()).to_lowercase(),
            "merge": format!("{0}x{0}", hp.scale_factor),
            "projector": format!("{:?}", family.projector()),
            "output_width": hp.projection_dim,
            "tiling": format!("{:?}", family.tiling()).to_lowercase(),
            "resample": format!("{:?}", family.resample()).to_lowercase(),
            "global_view": if family.global_view_last() { "last" } else { "first" },
            "preproc_tiles": [hp.preproc_tiles.0, hp.preproc_tiles.1],
            "preproc_image_size": hp.preproc_image_size,
            "image_mean": hp.image_mean,
            "image_std": hp.image_std,
        });
        return Ok(out);
    }
    let hp = DecoderHparams::try_from(md)?;
    out["kind"] = json!("llm");
    out["llm"] = json!({
        "width": hp.n_embd,
        "layers": hp.n_layer,
        "heads": hp.n_head,
        "kv_heads": hp.n_head_kv,
        "head_dim": hp.head_dim,
        "ffn": hp.n_ff,
        "context_train": hp.n_ctx_train,
        "rope_base": hp.rope.freq_base,
    });
    let tok = Tokenizer::from_gguf(md)?;
    let text = |id: Option<u32>| id.and_then(|i| tok.token_text(i)).map(str::to_string);
    // The families' row tokens, and the lfm2 wrapper llama-mtmd-cli needs around this project's
    // embeddings (`gen-random --image-tokens`; edgevl itself needs none).
    let image_tokens: Vec<&str> = VisionFamily::ALL
        .into_iter()
        .filter_map(|f| f.prompt().row_token())
        .chain([edgevl_gen::image_tokens::IMAGE_START])
        .filter(|t| tok.token_id(t).is_some())
        .collect();
    let template = md.opt_str(tok_keys::CHAT_TEMPLATE).ok().flatten();
    out["tokenizer"] = json!({
        "model": md.opt_str(tok_keys::MODEL).ok().flatten(),
        "pre": md.opt_str(tok_keys::PRE).ok().flatten(),
        "vocab": tok.n_vocab(),
        "bos": text(tok.bos()),
        "eos": text(tok.eos()),
        "add_bos": tok.add_bos(),
        "image_tokens": image_tokens,
        "chat_template_chars": template.map(str::len),
        "chat_template_start": template.map(|t| t.chars().take(60).collect::<String>()),
    });
    Ok(out)
}

fn print_text(v: &Value) {
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    let floats = |v: &Value| {
        v.as_array().map_or("-".into(), |a| {
            a.iter().map(|x| format!("{:.3}", x.as_f64().unwrap_or(f64::NAN))).collect::<Vec<_>>().join(", ")
        })
    };
    println!(
        "file: {} ({} MB, {} tensors, {:.1} M parameters)",
        s(&v["architecture"]),
        v["file_bytes"].as_u64().unwrap_or(0) / 1_000_000,
        v["tensors"],
        v["parameters"].as_u64().unwrap_or(0) as f64 / 1e6
    );
    if !v["name"].is_null() {
        println!("name: {}", s(&v["name"]));
    }
    let types: Vec<String> = v["types"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| {
                    format!(
                        "{} x{} ({} MB)",
                        s(&t["type"]),
                        t["tensors"],
                        t["bytes"].as_u64().unwrap_or(0) / 1_000_000
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    println!("types: {}", types.join(", "));
    if let Some(l) = v.get("llm") {
        println!(
            "llm: width {}, {} layers, {} heads ({} kv, {} wide), ffn {}, trained context {}, rope base {}",
            l["width"],
            l["layers"],
            l["heads"],
            l["kv_heads"],
            l["head_dim"],
            l["ffn"],
            l["context_train"],
            l["rope_base"]
        );
        let t = &v["tokenizer"];
        println!(
            "tokenizer: {} / {}, {} tokens, bos {}, eos {}, add_bos {}, image tokens: {}",
            s(&t["model"]),
            s(&t["pre"]),
            t["vocab"],
            s(&t["bos"]),
            s(&t["eos"]),
            t["add_bos"],
            t["image_tokens"].as_array().map_or("-".into(), |a| if a.is_empty() {
                "none".into()
            } else {
                a.iter().map(s).collect::<Vec<_>>().join(" ")
            })
        );
        match t["chat_template_chars"].as_u64() {
            Some(n) => println!("chat template: {n} chars, starts {:?}", s(&t["chat_template_start"])),
            None => println!("chat template: none (ChatML is used)"),
        }
    }
    if let Some(m) = v.get("vision") {
        println!(
            "vision: family {} (projector {}), {}px tiles, patch {} ({}x{} patches), {} tokens a view",
            s(&m["family"]),
            s(&m["projector_type"]),
            m["tile_size"],
            m["patch_size"],
            m["patch_grid"],
            m["patch_grid"],
            m["tokens_per_view"]
        );
        println!(
            "tower: width {}, {} layers, {} heads, ffn {}, gelu {}, class token {}, layer scale {}",
            m["width"],
            m["layers"],
            m["heads"],
            m["ffn"],
            s(&m["gelu"]),
            m["class_token"],
            m["layer_scale"]
        );
        println!(
            "merge {} -> projector {} -> width {}",
            s(&m["merge"]),
            s(&m["projector"]),
            m["output_width"]
        );
        println!(
            "images: {} tiling, {} resampling, global view {}, mean [{}] std [{}]",
            s(&m["tiling"]),
            s(&m["resample"]),
            s(&m["global_view"]),
            floats(&m["image_mean"]),
            floats(&m["image_std"])
        );
    }
    if !v["quantization_scheme"].is_null() {
        println!("quantization scheme: {}", s(&v["quantization_scheme"]));
    }
}
