//! `edgevl encode-image`: an image's projected embeddings (global view first, then the tiles
//! row-major; 196 per view) as a float32 `.npy` array `[tokens, d]`, for cross-checks.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use edgevl_kernels::ThreadPool;
use edgevl_model::vision::VisionEncoder;
use edgevl_vision::{load_image, make_tiles, LoadLimits, Normalization, Preprocess, Strategy, TilingParams};

/// Arguments of `edgevl encode-image`.
#[derive(clap::Args, Debug, Clone)]
pub struct EncodeImageArgs {
    /// The vision tower + projector GGUF (llama.cpp mmproj naming, projector type lfm2).
    #[arg(long, value_name = "FILE")]
    pub mmproj: PathBuf,
    /// The image (JPEG, PNG, WebP, BMP, GIF).
    #[arg(long, value_name = "FILE")]
    pub image: PathBuf,
    /// Tiling strategy: relaxed, llava-next or internvl.
    #[arg(long, default_value = "relaxed")]
    pub strategy: Strategy,
    /// Relaxed matching's tolerance on effective resolution.
    #[arg(long, default_value_t = 0.1)]
    pub alpha: f64,
    /// Tile budget (default: the strategy's published default).
    #[arg(long, value_name = "N")]
    pub max_tiles: Option<u32>,
    /// Tiles per ViT batch (each matrix product has batch x 729 rows).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub vit_batch: u32,
    /// Compute threads (default: the physical cores).
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,
    /// Output file: float32 .npy of shape [tokens, d], written atomically.
    #[arg(long, value_name = "FILE")]
    pub npy: PathBuf,
}

/// Runs `edgevl encode-image`: writes the `.npy` and a one-line summary to stderr.
pub fn run(args: &EncodeImageArgs) -> anyhow::Result<()> {
    let enc = VisionEncoder::open(&args.mmproj)
        .with_context(|| format!("cannot load mmproj {}", args.mmproj.display()))?;
    let hp = enc.hparams();
    let image = load_image(&args.image, &LoadLimits::default())?;
    let params = TilingParams { alpha: args.alpha, max_tiles: args.max_tiles, ..TilingParams::default() };
    let plan = args.strategy.plan(image.size(), &params)?;
    let norm = Normalization { mean: hp.image_mean, std: hp.image_std };
    let tiles = make_tiles(&image, &plan, &Preprocess { norm, ..Preprocess::BLUELM })?;
    let pool = ThreadPool::new(args.threads.unwrap_or_else(edgevl_runtime::physical_cores).max(1));
    let start = Instant::now();
    let n = tiles.n_tiles();
    let emb = enc.encode_tiles(tiles.data(), n, args.vit_batch as usize, &pool)?;
    let secs = start.elapsed().as_secs_f64();
    let d = enc.n_embd_out();
    let rows = emb.len() / d;
    crate::run::write_atomically(&args.npy, &npy_bytes(&emb, rows, d))?;
    eprintln!(
        "edgevl: {} {}: {} grid {}, {} views ({}) -> {rows} x {d} embeddings in {secs:.2} s ({} threads, ViT batch {}) -> {}",
        args.image.display(),
        image.size(),
        plan.strategy.name(),
        plan.grid,
        n,
        if plan.global_view() { "global view first" } else { "no global view" },
        pool.n_threads(),
        args.vit_batch,
        args.npy.display()
    );
    Ok(())
}

/// The bytes of a version-1.0 `.npy` file holding `data` as little-endian float32 `[rows, cols]`.
fn npy_bytes(data: &[f32], rows: usize, cols: usize) -> Vec<u8> {
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // magic (6) + version (2) + header length (2) + header, padded with spaces and a final
    // newline to a multiple of 64 bytes.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 4 * data.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

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
            (Strategy::Relaxed, 0.1, None, 4, None)
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
        run(&a).unwrap();
        let ((rows, cols), data) = read_npy(&std::fs::read(&out).unwrap());
        // The same pipeline through the libraries directly.
        let enc = VisionEncoder::open(&mmproj).unwrap();
        let img = load_image(std::path::Path::new(&image), &LoadLimits::default()).unwrap();
        let plan = Strategy::Relaxed.plan(img.size(), &TilingParams::default()).unwrap();
        let tiles = make_tiles(&img, &plan, &Preprocess::BLUELM).unwrap();
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
        let e = format!("{:#}", run(&missing).unwrap_err());
        assert!(e.contains("cannot load mmproj /nonexistent/m.gguf"), "{e}");
        // A text model is not an mmproj: the first missing key is named.
        let llm = fixture("tiny-qwen2/model.gguf");
        let wrong = args(&["--mmproj", &llm, "--image", &image, "--npy", "/tmp/x.npy"]);
        let e = format!("{:#}", run(&wrong).unwrap_err());
        assert!(e.contains("clip.projector_type"), "{e}");
    }
}
