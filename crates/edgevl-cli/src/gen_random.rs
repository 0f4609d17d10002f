//! `edgevl gen-random`: a seeded random-weight model with an exact architecture shape, written
//! atomically as a GGUF file both edgevl and llama.cpp load.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use edgevl_gen::llm::{self, PRESETS};
use edgevl_kernels::DType;

/// Options of `edgevl gen-random`.
#[derive(Args, Debug, Clone)]
pub struct GenRandomArgs {
    /// Shape to generate: bluelm-v-3b, smollm2-135m or tiny.
    #[arg(long)]
    pub preset: String,
    /// Storage type of the weight matrices (norms stay f32).
    #[arg(long = "type", value_enum, default_value_t = WeightType::Q4_0)]
    pub dtype: WeightType,
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
}

impl From<WeightType> for DType {
    fn from(t: WeightType) -> Self {
        match t {
            WeightType::Q4_0 => DType::Q4_0,
            WeightType::Q4_1 => DType::Q4_1,
            WeightType::Q8_0 => DType::Q8_0,
            WeightType::F16 => DType::F16,
        }
    }
}

/// Generates the model; progress goes to stderr, nothing to stdout.
pub fn run(a: &GenRandomArgs) -> anyhow::Result<()> {
    if llm::preset(&a.preset).is_none() {
        let known: Vec<_> = PRESETS.iter().map(|p| p.name).collect();
        anyhow::bail!("unknown preset '{}' (known: {})", a.preset, known.join(", "));
    }
    let dtype = DType::from(a.dtype);
    let t0 = std::time::Instant::now();
    let mut last_pct = usize::MAX;
    let progress = |done: usize, total: usize| {
        let pct = done * 100 / total.max(1);
        if pct != last_pct {
            last_pct = pct;
            eprint!("\rgen-random: {} {}: {pct:3}% ({done}/{total} tensors)", a.preset, dtype.name());
            let _ = std::io::stderr().flush();
        }
    };
    llm::write_llama(&a.preset, dtype, a.seed, &a.output, progress)
        .with_context(|| format!("cannot write {}", a.output.display()))?;
    eprintln!("\ngen-random: wrote {} in {:.1} s", a.output.display(), t0.elapsed().as_secs_f64());
    Ok(())
}
