//! `edgevl tiles`: the grid, canvas and image-token cost of an image under each tiling strategy,
//! at this project's tile size or at a vision family's (`--mmproj FILE`, `--family NAME`).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use edgevl_arch::family::VisionFamily;
use edgevl_gguf::GgufFile;
use edgevl_model::vision::MmprojHparams;
use edgevl_runtime::{ImageConfig, ImageTiling, TilingChoice};
use edgevl_vision::{load_image, LoadLimits, Plan, Size, Strategy, TilingParams, VisionError};
use serde_json::{json, Value};

/// File extensions `--dir` looks at (case-insensitive).
const IMAGE_EXTENSIONS: [&str; 6] = ["jpg", "jpeg", "png", "webp", "bmp", "gif"];

/// Arguments of `edgevl tiles`.
#[derive(clap::Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["size", "image", "dir"])))]
pub struct TilesArgs {
    /// An image size to plan, e.g. 640x480.
    #[arg(long, value_name = "WxH")]
    pub size: Option<Size>,
    /// An image file (its size is taken after EXIF rotation).
    #[arg(long, value_name = "FILE")]
    pub image: Option<PathBuf>,
    /// A folder of images: a row per image and a summary per strategy.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// relaxed, llava-next, internvl, idefics3, all, or family (the family's own rule, as `run`
    /// and `encode-image` default to: relaxed without --mmproj or --family).
    #[arg(long, default_value = "all", value_parser = parse_strategies)]
    pub strategy: StrategyChoice,
    /// Relaxed matching's tolerance on effective resolution.
    #[arg(long, default_value_t = 0.1)]
    pub alpha: f64,
    /// Tile budget applied to every strategy (default: each strategy's published default;
    /// idefics3: longest edge tile x floor(sqrt(N)); at run time its grid also keeps to the
    /// `<row_i_col_j>` tokens the LLM has, 6 a side for SmolVLM, which this plan does not read).
    #[arg(long, value_name = "N")]
    pub max_tiles: Option<u32>,
    /// Plan at this mmproj's tile size and tokens a view, with its family's limits (InternVL's
    /// tile range, SmolVLM's longest edge) and its family's own rule marked.
    #[arg(long, value_name = "FILE", conflicts_with = "family")]
    pub mmproj: Option<PathBuf>,
    /// Plan with a family's published processor settings, without a file: edgevl (384 tiles,
    /// 196 tokens), internvl (448, 256) or idefics3 (SmolVLM: 512, 64).
    #[arg(long, value_name = "NAME", value_parser = parse_family)]
    pub family: Option<VisionFamily>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// The strategies to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrategyChoice(pub Vec<TilingChoice>);

fn parse_strategies(s: &str) -> Result<StrategyChoice, String> {
    match s {
        "all" => Ok(StrategyChoice(Strategy::ALL.iter().map(|&s| TilingChoice::Strategy(s)).collect())),
        "family" => Ok(StrategyChoice(vec![TilingChoice::Family])),
        _ => s
            .parse::<Strategy>()
            .map(|st| StrategyChoice(vec![TilingChoice::Strategy(st)]))
            .map_err(|e| format!("{e}, all or family")),
    }
}

fn parse_family(s: &str) -> Result<VisionFamily, String> {
    VisionFamily::from_name(s)
        .ok_or_else(|| format!("unknown family {s:?}; expected edgevl, internvl or idefics3"))
}

/// Each strategy with the parameters it plans with (the family's, when one is given), and the
/// family.
type Planners = (Vec<(Strategy, TilingParams)>, Option<VisionFamily>);

fn planners(args: &TilesArgs) -> anyhow::Result<Planners> {
    let cfg = |s: Strategy| ImageConfig {
        strategy: TilingChoice::Strategy(s),
        alpha: args.alpha,
        max_tiles: args.max_tiles,
        ..ImageConfig::default()
    };
    let hp = match &args.mmproj {
        Some(path) => {
            let file =
                GgufFile::open(path).with_context(|| format!("cannot read mmproj {}", path.display()))?;
            Some(
                MmprojHparams::try_from(file.metadata())
                    .with_context(|| format!("mmproj {}", path.display()))?,
            )
        }
        None => None,
    };
    let family = hp.as_ref().map(|h| h.family).or(args.family);
    let items = args
        .strategy
        .0
        .iter()
        .map(|choice| choice.strategy(family.unwrap_or(VisionFamily::EdgeVl)))
        .map(|s| {
            let tiling = match (&hp, family) {
                (Some(hp), _) => ImageTiling::of_mmproj(&cfg(s), hp, None),
                (None, Some(f)) => ImageTiling::family_defaults(&cfg(s), f),
                (None, None) => {
                    return (
                        s,
                        TilingParams {
                            alpha: args.alpha,
                            max_tiles: args.max_tiles,
                            ..TilingParams::default()
                        },
                    )
                }
            };
            (s, tiling.params)
        })
        .collect();
    Ok((items, family))
}

/// Runs `edgevl tiles`, printing to stdout (tables or JSON) and stderr (per-file problems).
pub fn run(args: &TilesArgs) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    run_to(args, &mut stdout.lock(), &mut stderr.lock())
}

fn run_to(args: &TilesArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<()> {
    let (strategies, family) = planners(args)?;
    if let Some(f) = family {
        let own = TilingChoice::Family.strategy(f);
        let tile = strategies.first().map_or(0, |(_, p)| p.tile_size);
        writeln!(err, "family {}: {tile}px tiles; its own rule is {own}", f.name())?;
    }
    if let Some(dir) = &args.dir {
        return run_dir(dir, &strategies, args, out, err);
    }
    let (size, label) = match (&args.size, &args.image) {
        (Some(size), _) => (*size, None),
        (None, Some(path)) => {
            let image = load_image(path, &LoadLimits::default())?;
            (image.size(), Some(path.display().to_string()))
        }
        (None, None) => bail!("one of --size, --image or --dir is required"),
    };
    let plans = plan_all(size, &strategies)?;
    if args.json {
        let items: Vec<String> = plans.iter().map(|p| plan_json(p).to_string()).collect();
        writeln!(out, "[\n  {}\n]", items.join(",\n  "))?;
    } else {
        write_plan_table(out, size, label.as_deref(), args, &plans)?;
    }
    Ok(())
}

fn plan_all(size: Size, strategies: &[(Strategy, TilingParams)]) -> Result<Vec<Plan>, VisionError> {
    strategies.iter().map(|(s, params)| s.plan(size, params)).collect()
}

/// The JSON object of one plan, as issue 4 specifies.
fn plan_json(p: &Plan) -> Value {
    json!({
        "strategy": p.strategy.name(),
        "grid": [p.grid.cols, p.grid.rows],
        "canvas": [p.canvas.width, p.canvas.height],
        "tiles": p.tiles(),
        "thumbnail": p.global_view(),
        "tokens": p.image_tokens(),
    })
}

fn budget_text(args: &TilesArgs) -> String {
    match args.max_tiles {
        Some(n) => format!("max tiles {n} for all strategies"),
        None => "published defaults (relaxed 16 tiles, llava-next 5 pinpoints, internvl 12, idefics3 longest edge 4 tiles)"
            .to_string(),
    }
}

fn scale_text(p: &Plan) -> String {
    let (sx, sy) = p.scale();
    match p.fill {
        edgevl_vision::Fill::Pad => format!("{:.3}", sx.min(sy)),
        edgevl_vision::Fill::Stretch => format!("{sx:.3}/{sy:.3}"),
    }
}

fn write_plan_table(
    out: &mut dyn Write,
    size: Size,
    label: Option<&str>,
    args: &TilesArgs,
    plans: &[Plan],
) -> std::io::Result<()> {
    match label {
        Some(l) => writeln!(out, "image {l}: {size}")?,
        None => writeln!(out, "image size {size}")?,
    }
    writeln!(out, "alpha {}, {}", args.alpha, budget_text(args))?;
    writeln!(
        out,
        "{:<11} {:>5} {:>11} {:>13} {:>5} {:>6} {:>6} {:>9}",
        "strategy", "grid", "canvas", "scale", "tiles", "global", "tokens", "area x"
    )?;
    for p in plans {
        writeln!(
            out,
            "{:<11} {:>5} {:>11} {:>13} {:>5} {:>6} {:>6} {:>9.2}",
            p.strategy.name(),
            p.grid.to_string(),
            p.canvas.to_string(),
            scale_text(p),
            p.tiles(),
            if p.global_view() { "yes" } else { "no" },
            p.image_tokens(),
            p.area_enlargement(),
        )?;
    }
    writeln!(
        out,
        "scale: resize factor (horizontal/vertical when stretched); area x: canvas area / image area"
    )
}

/// The entries of `dir` with an image extension, sorted by name.
fn image_entries(dir: &Path) -> anyhow::Result<(Vec<PathBuf>, usize)> {
    let mut paths = Vec::new();
    let mut skipped = 0;
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("{}: cannot list directory", dir.display()))?
    {
        let entry = entry.with_context(|| format!("{}: cannot list directory", dir.display()))?;
        let path = entry.path();
        let is_image = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
        if is_image {
            paths.push(path);
        } else {
            skipped += 1;
        }
    }
    paths.sort();
    Ok((paths, skipped))
}

/// Mean and median (the mean of the two middle values for an even count); `None` when empty.
fn mean_median(values: &[u64]) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    let n = v.len();
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
    let median = if n % 2 == 1 { v[n / 2] as f64 } else { (v[n / 2 - 1] as f64 + v[n / 2] as f64) / 2.0 };
    Some((mean, median))
}

fn run_dir(
    dir: &Path,
    strategies: &[(Strategy, TilingParams)],
    args: &TilesArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    // Validate the parameters once, before touching any file.
    plan_all(Size::new(1, 1), strategies)?;
    let (paths, skipped) = image_entries(dir)?;
    let mut tokens: Vec<Vec<u64>> = vec![Vec::new(); strategies.len()];
    let mut failed = 0usize;
    let mut rows = Vec::new();
    for path in &paths {
        let image = match load_image(path, &LoadLimits::default()) {
            Ok(image) => image,
            Err(e) => {
                writeln!(err, "error: {e}")?;
                failed += 1;
                continue;
            }
        };
        let plans = plan_all(image.size(), strategies)?;
        for (t, p) in tokens.iter_mut().zip(&plans) {
            t.push(p.image_tokens());
        }
        let name =
            path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
        rows.push((name, image.size(), plans));
    }
    if skipped > 0 {
        writeln!(
            err,
            "note: skipped {skipped} entries without an image extension ({})",
            IMAGE_EXTENSIONS.join(", ")
        )?;
    }
    if args.json {
        // One line per strategy, in the order asked for.
        let mut items = Vec::new();
        for ((s, _), t) in strategies.iter().zip(&tokens) {
            let (mean, median) =
                mean_median(t).map_or((Value::Null, Value::Null), |(a, b)| (json!(a), json!(b)));
            let summary = json!({"images": t.len(), "mean_tokens": mean, "median_tokens": median});
            items.push(format!("{}: {summary}", Value::from(s.name())));
        }
        writeln!(out, "{{\n  {}\n}}", items.join(",\n  "))?;
    } else {
        write_dir_tables(out, dir, args, strategies, &rows, &tokens)?;
    }
    if failed > 0 {
        bail!(
            "{failed} of {} image files in {} could not be read (see the errors above)",
            paths.len(),
            dir.display()
        );
    }
    Ok(())
}

fn write_dir_tables(
    out: &mut dyn Write,
    dir: &Path,
    args: &TilesArgs,
    strategies: &[(Strategy, TilingParams)],
    rows: &[(String, Size, Vec<Plan>)],
    tokens: &[Vec<u64>],
) -> std::io::Result<()> {
    writeln!(out, "{}: {} images; alpha {}, {}", dir.display(), rows.len(), args.alpha, budget_text(args))?;
    let name_w = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(5).max(5);
    writeln!(out, "each strategy's column: grid (cols x rows) and image tokens")?;
    write!(out, "{:<name_w$} {:>11}", "image", "size")?;
    for (s, _) in strategies {
        write!(out, " {:>12}", s.name())?;
    }
    writeln!(out)?;
    for (name, size, plans) in rows {
        write!(out, "{name:<name_w$} {:>11}", size.to_string())?;
        for p in plans {
            write!(out, " {:>12}", format!("{} {}", p.grid, p.image_tokens()))?;
        }
        writeln!(out)?;
    }
    writeln!(out)?;
    writeln!(out, "{:<11} {:>6} {:>11} {:>13}", "strategy", "images", "mean tokens", "median tokens")?;
    for ((s, _), t) in strategies.iter().zip(tokens) {
        match mean_median(t) {
            Some((mean, median)) => {
                writeln!(out, "{:<11} {:>6} {:>11.1} {:>13.1}", s.name(), t.len(), mean, median)?
            }
            None => writeln!(out, "{:<11} {:>6} {:>11} {:>13}", s.name(), 0, "-", "-")?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: TilesArgs,
    }

    fn args(list: &[&str]) -> Result<TilesArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("tiles").chain(list.iter().copied())).map(|c| c.args)
    }

    fn run_capture(list: &[&str]) -> (anyhow::Result<()>, String, String) {
        let a = args(list).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let r = run_to(&a, &mut out, &mut err);
        (r, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
    }

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/vision")
    }

    #[test]
    fn exactly_one_input_is_required() {
        assert!(args(&[]).is_err());
        assert!(args(&["--size", "10x10", "--dir", "."]).is_err());
        assert!(args(&["--size", "10x0"]).is_err());
        assert!(args(&["--size", "10x10", "--strategy", "llava"]).is_err());
        let all: Vec<TilingChoice> = Strategy::ALL.iter().map(|&s| TilingChoice::Strategy(s)).collect();
        assert_eq!(args(&["--size", "10x10"]).unwrap().strategy.0, all);
        let family = args(&["--size", "10x10", "--strategy", "family"]).unwrap().strategy.0;
        assert_eq!(family, vec![TilingChoice::Family]);
    }

    #[test]
    fn json_for_a_size_follows_the_issue_format() {
        let (r, out, _) = run_capture(&["--size", "768x1536", "--json"]);
        r.unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        let a = v.as_array().unwrap();
        assert_eq!(a.len(), 4);
        assert_eq!(
            a[0],
            json!({"strategy": "relaxed", "grid": [2, 4], "canvas": [768, 1536], "tiles": 8, "thumbnail": true, "tokens": 1764})
        );
        assert_eq!(a[1]["strategy"], "llava-next");
        assert_eq!(a[2]["strategy"], "internvl");
        assert_eq!(a[3]["strategy"], "idefics3");
        for o in a {
            assert_eq!(o.as_object().unwrap().len(), 6);
        }
    }

    #[test]
    fn max_tiles_applies_to_all_strategies() {
        let (r, out, _) = run_capture(&["--size", "380x76", "--json", "--max-tiles", "16"]);
        r.unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        let tokens: Vec<u64> = v.as_array().unwrap().iter().map(|o| o["tokens"].as_u64().unwrap()).collect();
        assert_eq!(tokens[..3], [196, 392, 1176]);
        let (r, _, _) = run_capture(&["--size", "380x76", "--max-tiles", "0"]);
        assert!(r.is_err());
    }

    #[test]
    fn table_for_one_strategy() {
        let (r, out, _) = run_capture(&["--size", "394x390", "--strategy", "llava-next"]);
        r.unwrap();
        assert!(out.contains("llava-next"), "{out}");
        assert!(
            !out.lines().any(|l| ["relaxed", "internvl", "idefics3"].iter().any(|s| l.starts_with(s))),
            "{out}"
        );
        let row = out.lines().find(|l| l.starts_with("llava-next")).unwrap();
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols, ["llava-next", "2x2", "768x768", "1.949", "4", "yes", "980", "3.84"]);
    }

    #[test]
    fn image_input_uses_the_size_after_exif_rotation() {
        // orient6.jpg is stored 24x16 with orientation 6 (rotate 90): 16x24 after rotation.
        let path = fixtures().join("exif/orient6.jpg");
        let (r, out, _) =
            run_capture(&["--image", path.to_str().unwrap(), "--strategy", "internvl", "--json"]);
        r.unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        let expect = Strategy::InternVl.plan(Size::new(16, 24), &TilingParams::default()).unwrap();
        assert_eq!(v[0], plan_json(&expect));
        let bad = fixtures().join("bad/bomb.png");
        let (r, _, _) = run_capture(&["--image", bad.to_str().unwrap()]);
        let msg = format!("{:#}", r.unwrap_err());
        assert!(msg.contains("bomb.png") && msg.contains("100000x100000"), "{msg}");
    }

    #[test]
    fn dir_reports_bad_files_and_goes_on() {
        let dir = std::env::temp_dir().join(format!("edgevl-tiles-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (src, dst) in [
            ("resize/astronaut.png", "a.png"),
            ("resize/chelsea.png", "b.PNG"),
            ("exif/orient3.jpg", "c.jpg"),
            ("bad/truncated.jpg", "d.jpg"),
            ("bad/text.png", "e.png"),
            ("bad/empty.png", "f.png"),
        ] {
            std::fs::copy(fixtures().join(src), dir.join(dst)).unwrap();
        }
        std::fs::write(dir.join("notes.txt"), "not an image").unwrap();
        std::fs::create_dir(dir.join("folder.png")).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(dir.join("missing-target.png"), dir.join("g.png")).unwrap();
        let d = dir.to_str().unwrap();

        let (r, out, err) = run_capture(&["--dir", d, "--json"]);
        let e = r.unwrap_err().to_string();
        assert!(e.contains("could not be read"), "{e}");
        for bad in ["d.jpg", "e.png", "f.png", "folder.png"] {
            assert!(err.contains(bad), "{bad} not reported: {err}");
        }
        #[cfg(unix)]
        assert!(err.contains("g.png"), "{err}");
        assert!(err.contains("skipped 1"), "{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        // Three good images: 128x112, 96x128, 24x16 -> all 1x1 under relaxed.
        assert_eq!(v["relaxed"], json!({"images": 3, "mean_tokens": 196.0, "median_tokens": 196.0}));
        assert_eq!(v["llava-next"]["images"], 3);
        assert_eq!(v["internvl"]["images"], 3);
        assert_eq!(v["idefics3"]["images"], 3);

        let (r, out, _) = run_capture(&["--dir", d]);
        assert!(r.is_err());
        assert!(out.contains("a.png") && out.contains("mean tokens"), "{out}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_dir_is_an_error_naming_it() {
        let (r, _, _) = run_capture(&["--dir", "/nonexistent/edgevl-photos"]);
        assert!(format!("{:#}", r.unwrap_err()).contains("/nonexistent/edgevl-photos"));
    }

    #[test]
    fn median_of_even_count_is_the_middle_mean() {
        assert_eq!(mean_median(&[1, 3, 2, 10]), Some((4.0, 2.5)));
        assert_eq!(mean_median(&[]), None);
    }
}
