//! `edgevl encode-image`: an image's projected embeddings (its views in the family's order: this
//! project's global view first, InternVL's and SmolVLM's last; tiles row-major) as a float32
//! `.npy` array `[tokens, d]`, for cross-checks; optionally the tower's activations too.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use edgevl_kernels::{KernelConfig, Kernels, ThreadPool};
use edgevl_model::vision::{VisionEncoder, VitWeightOptions};
use edgevl_runtime::{ImageConfig, ImageTiling, Progress, TileBudget, TilingChoice, MAX_VIT_BATCH};
use edgevl_vision::{load_image, make_tiles, LoadLimits};

/// Arguments of `edgevl encode-image`.
#[derive(clap::Args, Debug, Clone)]
pub struct EncodeImageArgs {
    /// The vision tower + projector GGUF (llama.cpp mmproj naming: this project's lfm2 layout,
    /// internvl or idefics3).
    #[arg(long, value_name = "FILE")]
    pub mmproj: PathBuf,
    /// The image (JPEG, PNG, WebP, BMP, GIF).
    #[arg(long, value_name = "FILE")]
    pub image: PathBuf,
    /// Tiling rule: family (the mmproj family's own), relaxed, llava-next, internvl or idefics3.
    #[arg(long, default_value = "family")]
    pub strategy: TilingChoice,
    /// Relaxed matching's tolerance on effective resolution.
    #[arg(long, default_value_t = 0.1)]
    pub alpha: f64,
    /// Tile budget (default: the rule's own).
    #[arg(long, value_name = "N")]
    pub max_tiles: Option<u32>,
    /// Views per ViT batch (each matrix product has batch x patches-a-view rows).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=MAX_VIT_BATCH as i64))]
    pub vit_batch: u32,
    /// Compute threads (default: the physical cores).
    #[arg(short = 't', long = "threads", value_parser = crate::counts::threads)]
    pub threads: Option<usize>,
    /// Output file: float32 .npy of shape [tokens, d], written atomically.
    #[arg(long, value_name = "FILE")]
    pub npy: PathBuf,
    /// Requantise the ViT's F16/F32 matrices to Q8_0 at load (as `run --vit-int8`).
    #[arg(long)]
    pub vit_int8: bool,
    #[command(flatten)]
    pub dump: crate::dump::DumpArgs,
}

/// Runs `edgevl encode-image`: writes the `.npy` and a one-line summary to stderr.
pub fn run(args: &EncodeImageArgs, kernels: KernelConfig) -> anyhow::Result<()> {
    crate::run::check_output_file(&args.npy)?;
    args.dump.check()?;
    let opts = VitWeightOptions { int8: args.vit_int8 };
    let mut enc = VisionEncoder::open_with(&args.mmproj, &Kernels::new(kernels), opts)
        .with_context(|| format!("cannot load mmproj {}", args.mmproj.display()))?;
    let cfg = ImageConfig {
        strategy: args.strategy,
        alpha: args.alpha,
        max_tiles: args.max_tiles,
        ..ImageConfig::default()
    };
    let tiling = ImageTiling::of_mmproj(&cfg, enc.hparams(), None);
    let image = load_image(&args.image, &LoadLimits::default())?;
    let plan = tiling.plan(image.size(), TileBudget::Default)?;
    let tiles = make_tiles(&image, &plan, &tiling.preprocess)?;
    let dump = args.dump.hook();
    if let Some((_, hook)) = &dump {
        enc.set_hook(hook.clone());
    }
    let pool = ThreadPool::new(args.threads.unwrap_or_else(edgevl_runtime::physical_cores));
    let start = Instant::now();
    let n = tiles.n_tiles();
    // A batch of views a call, as a session encodes them (the same rows), with a bar on a terminal.
    let (batch, tile_len) = (args.vit_batch.max(1) as usize, tiles.tile_len());
    let bar = crate::progress_bar::on_terminal();
    let tell = |done| {
        if let Some(f) = &bar {
            f(Progress::ImageViews { done, total: n });
        }
    };
    tell(0);
    let (mut emb, mut done) = (Vec::new(), 0);
    for chunk in tiles.data().chunks(batch * tile_len) {
        let views = chunk.len() / tile_len;
        emb.extend(enc.encode_tiles(chunk, views, views, &pool)?);
        done += views;
        tell(done);
    }
    let secs = start.elapsed().as_secs_f64();
    let d = enc.n_embd_out();
    let rows = emb.len() / d;
    crate::run::write_atomically(&args.npy, &crate::npy::f32_bytes(&emb, &[rows, d]))?;
    if let Some((rec, _)) = &dump {
        args.dump.write(rec)?;
    }
    eprintln!(
        "edgevl: {} {}: {} grid {}, {} views ({}) -> {rows} x {d} embeddings in {secs:.2} s ({} threads, ViT batch {}) -> {}",
        args.image.display(),
        image.size(),
        plan.strategy.name(),
        plan.grid,
        n,
        match (plan.global_view(), tiling.family.global_view_last()) {
            (false, _) => "no global view",
            (true, false) => "global view first",
            (true, true) => "global view last",
        },
        pool.n_threads(),
        args.vit_batch,
        args.npy.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use edgevl_vision::{Strategy, TilingParams};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: EncodeImageArgs,
    }

    fn args(extra: &[&str]) -> EncodeImageArgs {
        let mut argv = vec!["edgevl-encode-image"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).map(|c| c.args).expect("arguments parse")
    }

    fn fixture(rel: &str) -> String {
        edgevl_testdata::fixture(rel).display().to_string()
    }

    /// Parses a version-1.0 float32 `.npy` written by `npy_bytes`: (shape, data).
    fn read_npy(bytes: &[u8]) -> ((usize, usize), Vec<f32>) {
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
        let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        let header = std::str::from_utf8(&bytes[10..10 + hlen]).unwrap();
        assert!(
            header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (")
                && header.ends_with('\n')
        );
        let shape = header.split("'shape': (").nth(1).unwrap().split(')').next().unwrap();
        let dims: Vec<usize> = shape.split(',').map(|s| s.trim().parse().unwrap()).collect();
        let data = bytes[10 + hlen..]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        ((dims[0], dims[1]), data)
    }

    #[test]
    fn defaults_and_bounds() {
        let a = args(&["--mmproj", "m.gguf", "--image", "i.png", "--npy", "o.npy"]);
        assert_eq!(
            (a.strategy, a.alpha, a.max_tiles, a.vit_batch, a.threads),
            (TilingChoice::Family, 0.1, None, 4, None)
        );
        let mut argv = vec!["x", "--mmproj", "m", "--image", "i", "--npy", "o", "--vit-batch", "0"];
        assert!(Cli::try_parse_from(argv.clone()).is_err());
        argv[8] = "2";
        argv.extend(["--strategy", "bogus"]);
        assert!(Cli::try_parse_from(argv).is_err());
    }

    #[test]
    fn writes_the_encoders_embeddings_as_npy() {
        let dir = std::env::temp_dir().join(format!("edgevl-encode-image-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("emb.npy");
        let mmproj = fixture("tiny-vlm/mmproj.gguf");
        let image = fixture("vision/pipeline/small.png");
        let npy = out.display().to_string();
        let a = args(&["--mmproj", &mmproj, "--image", &image, "--npy", &npy, "-t", "2", "--vit-batch", "3"]);
        run(&a, edgevl_testdata::kernel_config()).unwrap();
        let ((rows, cols), data) = read_npy(&std::fs::read(&out).unwrap());
        // The same pipeline through the libraries directly.
        let enc = VisionEncoder::open(&mmproj, &edgevl_testdata::kernels()).unwrap();
        let img = load_image(std::path::Path::new(&image), &LoadLimits::default()).unwrap();
        let plan = Strategy::Relaxed.plan(img.size(), &TilingParams::default()).unwrap();
        let tiles = make_tiles(&img, &plan, &edgevl_vision::Preprocess::BLUELM).unwrap();
        let want = enc.encode_tiles(tiles.data(), tiles.n_tiles(), 1, &ThreadPool::new(1)).unwrap();
        assert_eq!((rows, cols), (plan.views() as usize * 196, 64));
        assert_eq!(data, want);
        assert!(std::fs::read_dir(&dir).unwrap().count() == 1, "temporary file left behind");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_mmproj_is_a_clear_error() {
        let image = fixture("vision/pipeline/small.png");
        let missing = args(&["--mmproj", "/nonexistent/m.gguf", "--image", &image, "--npy", "/tmp/x.npy"]);
        let e = format!("{:#}", run(&missing, edgevl_testdata::kernel_config()).unwrap_err());
        assert!(e.contains("cannot load mmproj /nonexistent/m.gguf"), "{e}");
        // A text model is not an mmproj: said so, with the flag it belongs to.
        let llm = fixture("tiny-qwen2/model.gguf");
        let wrong = args(&["--mmproj", &llm, "--image", &image, "--npy", "/tmp/x.npy"]);
        let e = format!("{:#}", run(&wrong, edgevl_testdata::kernel_config()).unwrap_err());
        assert!(e.contains("a language model's file (architecture 'qwen2'), not an mmproj"), "{e}");
        assert!(e.contains("-m (--model)"), "{e}");
    }
}
