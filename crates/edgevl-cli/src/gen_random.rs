//! `edgevl gen-random`: a seeded random-weight model with an exact architecture shape, written
//! atomically as a GGUF file both edgevl and llama.cpp load: an LLM (llama or qwen2) or an
//! mmproj of a vision family (this project's SigLIP + lfm2, InternVL, SmolVLM).

use std::io::IsTerminal;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use edgevl_gen::llm::{self, LlamaOptions, PRESETS};
use edgevl_gen::vision::{self, VisionDType, VISION_PRESETS};
use edgevl_kernels::DType;

/// Options of `edgevl gen-random`.
#[derive(Args, Debug, Clone)]
pub struct GenRandomArgs {
    /// Shape to generate: an LLM (bluelm-v-3b, smollm2-135m, internvl3-1b, smolvlm-256m, tiny) or
    /// an mmproj (siglip-so400m, whose projector output is bluelm-v-3b's width 2560; siglip-tiny,
    /// width 64 as tiny; internvl3-1b-vision and smolvlm-256m-vision, paired with the LLM presets
    /// of the same name, whose vocabularies hold their family's image tokens).
    #[arg(long)]
    pub preset: String,
    /// Storage type of the weight matrices (norms stay f32). LLMs: q4_0 (the default), q4_1,
    /// q8_0, f16, f32; mmproj: q8_0 (the default; f16 where a row is not a multiple of 32), f16,
    /// f32: the paper's INT4 LLM and INT8 ViT.
    #[arg(long = "type", value_enum)]
    pub dtype: Option<WeightType>,
    /// LLM presets: add llama.cpp's lfm2 image tokens (`<|image_start|>`, `<|image_end|>`,
    /// `<|img_thumbnail|>`, `<|img_row_R_col_C|>` for grids of up to 16 tiles) to the
    /// vocabulary, so llama-mtmd-cli pairs the model with an lfm2 mmproj.
    #[arg(long)]
    pub image_tokens: bool,
    /// Seed of the weights (the same seed gives the same bytes).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output file (written to a part file, then renamed).
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

/// Matrix storage types on the command line.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum WeightType {
    /// 4-bit, one f16 scale per 32.
    #[value(name = "q4_0")]
    Q4_0,
    /// 4-bit, f16 scale and minimum per 32.
    #[value(name = "q4_1")]
    Q4_1,
    /// 8-bit, one f16 scale per 32.
    #[value(name = "q8_0")]
    Q8_0,
    /// Half precision.
    #[value(name = "f16")]
    F16,
    /// Single precision.
    #[value(name = "f32")]
    F32,
}

impl From<WeightType> for DType {
    fn from(t: WeightType) -> Self {
        match t {
            WeightType::Q4_0 => DType::Q4_0,
            WeightType::Q4_1 => DType::Q4_1,
            WeightType::Q8_0 => DType::Q8_0,
            WeightType::F16 => DType::F16,
            WeightType::F32 => DType::F32,
        }
    }
}

/// The mmproj storage scheme of `t`, or an error naming the types an mmproj takes.
fn vision_dtype(t: WeightType) -> anyhow::Result<VisionDType> {
    match t {
        WeightType::Q8_0 => Ok(VisionDType::Q8_0),
        WeightType::F16 => Ok(VisionDType::F16),
        WeightType::F32 => Ok(VisionDType::F32),
        WeightType::Q4_0 | WeightType::Q4_1 => {
            anyhow::bail!("an mmproj is stored as q8_0, f16 or f32, not {}", DType::from(t).name())
        }
    }
}

/// Every preset name, LLMs first.
fn known_presets() -> String {
    PRESETS.iter().map(|p| p.name).chain(VISION_PRESETS.iter().map(|p| p.name)).collect::<Vec<_>>().join(", ")
}

/// Generates the model; progress goes to stderr, nothing to stdout.
pub fn run(a: &GenRandomArgs) -> anyhow::Result<()> {
    let t0 = std::time::Instant::now();
    let mut last_print = t0;
    let is_llm = llm::preset(&a.preset).is_some();
    let dtype = a.dtype.unwrap_or(if is_llm { WeightType::Q4_0 } else { WeightType::Q8_0 });
    let type_name = DType::from(dtype).name();
    // At most four updates a second, and the final 100%, redrawn on a terminal only (logs and
    // pipes get the last line alone).
    let on_terminal = std::io::stderr().is_terminal();
    let progress = |done: usize, total: usize| {
        let now = std::time::Instant::now();
        if on_terminal && (done == total || now.duration_since(last_print).as_millis() >= 250) {
            last_print = now;
            let pct = done * 100 / total.max(1);
            eprint!("\rgen-random: {} {type_name}: {pct:3}% ({done}/{total} tensors)", a.preset);
            let _ = std::io::stderr().flush();
        }
    };
    let cannot_write = || format!("cannot write {}", a.output.display());
    if is_llm {
        let opts = LlamaOptions { image_tokens: a.image_tokens };
        llm::write_llama(&a.preset, dtype.into(), a.seed, opts, &a.output, progress)
            .with_context(cannot_write)?;
    } else if let Some(shape) = VISION_PRESETS.iter().find(|p| p.name == a.preset) {
        if a.image_tokens {
            anyhow::bail!("--image-tokens goes with an LLM preset; '{}' is an mmproj", a.preset);
        }
        vision::write_mmproj_with_progress(shape, vision_dtype(dtype)?, a.seed, &a.output, progress)
            .with_context(cannot_write)?;
    } else {
        anyhow::bail!("unknown preset '{}' (known: {})", a.preset, known_presets());
    }
    if on_terminal {
        eprintln!();
    }
    eprintln!("gen-random: wrote {} in {:.1} s", a.output.display(), t0.elapsed().as_secs_f64());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgevl_gguf::{GgmlType, GgufFile};
    use edgevl_model::vision::VisionEncoder;
    use edgevl_tokenizer::Tokenizer;

    fn args(preset: &str, dtype: WeightType, image_tokens: bool, output: PathBuf) -> GenRandomArgs {
        GenRandomArgs { preset: preset.into(), dtype: Some(dtype), image_tokens, seed: 1, output }
    }

    #[test]
    fn writes_llm_and_mmproj_presets_of_matching_width() {
        let dir = std::env::temp_dir().join(format!("edgevl-gen-random-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mmproj = dir.join("mmproj.gguf");
        run(&args("siglip-tiny", WeightType::Q8_0, false, mmproj.clone())).unwrap();
        let enc = VisionEncoder::open(&mmproj, &edgevl_testdata::kernels()).unwrap();
        assert_eq!((enc.hparams().n_embd, enc.n_embd_out()), (64, 64));

        let llm = dir.join("llm.gguf");
        run(&args("tiny", WeightType::Q8_0, true, llm.clone())).unwrap();
        let f = GgufFile::open(&llm).unwrap();
        assert_eq!(f.metadata().get_u64("llama.embedding_length").unwrap(), 64);
        let tok = Tokenizer::from_gguf(f.metadata()).unwrap();
        for t in ["<|image_start|>", "<|image_end|>", "<|img_thumbnail|>", "<|img_row_4_col_4|>"] {
            assert_eq!(tok.encode(t, false, true), vec![tok.token_id(t).unwrap()], "{t}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_default_type_is_q4_0_for_an_llm_and_q8_0_for_an_mmproj() {
        // The mmproj presets failed without --type (the default q4_0 is no mmproj type).
        let dir = std::env::temp_dir().join(format!("edgevl-gen-random-default-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (preset, tensor, want) in [
            ("siglip-tiny", "v.blk.0.ffn_up.weight", GgmlType::Q8_0),
            ("tiny", "blk.0.ffn_up.weight", GgmlType::Q4_0),
        ] {
            let out = dir.join(format!("{preset}.gguf"));
            let a = GenRandomArgs {
                preset: preset.into(),
                dtype: None,
                image_tokens: false,
                seed: 1,
                output: out.clone(),
            };
            run(&a).unwrap();
            let f = GgufFile::open(&out).unwrap();
            let t =
                f.tensors().iter().find(|t| t.name == tensor).unwrap_or_else(|| panic!("{preset}: {tensor}"));
            assert_eq!(t.ggml_type, want, "{preset}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_what_an_mmproj_cannot_be() {
        let out = std::env::temp_dir().join("edgevl-gen-random-never-written.gguf");
        let e = run(&args("siglip-tiny", WeightType::Q4_0, false, out.clone())).unwrap_err().to_string();
        assert!(e.contains("q8_0, f16 or f32"), "{e}");
        let e = run(&args("siglip-so400m", WeightType::Q8_0, true, out.clone())).unwrap_err().to_string();
        assert!(e.contains("--image-tokens"), "{e}");
        let e = run(&args("nope", WeightType::Q8_0, false, out.clone())).unwrap_err().to_string();
        assert!(e.contains("tiny") && e.contains("siglip-so400m") && e.contains("siglip-tiny"), "{e}");
        assert!(!out.exists());
    }
}
