//! Preprocessing against Pillow (fixtures from scripts/pil_reference.py): bicubic and Lanczos
//! resize of real photos and synthetic images, EXIF orientation, mode conversion, the tile views of each strategy,
//! and the refusal of bad files.

use std::path::{Path, PathBuf};

use edgevl_vision::{
    load_image, make_tiles, render_views, resize, resize_with, Filter, LoadLimits, Normalization, PassOrder,
    Preprocess, RgbImage, Size, Strategy, TilingParams, VisionError,
};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/vision")
}

fn manifest() -> Value {
    let path = root().join("pil_cases.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn load(rel: &Value) -> RgbImage {
    let path = root().join(rel.as_str().unwrap());
    load_image(&path, &LoadLimits::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn size_of(v: &Value) -> Size {
    Size::new(v[0].as_u64().unwrap() as u32, v[1].as_u64().unwrap() as u32)
}

/// Largest absolute difference between two images of the same size, in 0..255 units.
fn max_abs_diff(a: &RgbImage, b: &RgbImage) -> u8 {
    assert_eq!(a.size(), b.size());
    a.pixels().iter().zip(b.pixels()).map(|(x, y)| x.abs_diff(*y)).max().unwrap_or(0)
}

/// Resizes every fixture input to every target size with `filter` (and, where Pillow 13's pass
/// order matters, horizontal-first as Pillow <= 12) and returns (cases, pass-order cases, worst
/// difference); every output must equal Pillow's exactly.
fn check_resizes(filter: Filter, key: &str, legacy_key: &str) -> (usize, usize, u8) {
    let m = manifest();
    let (mut checked, mut legacy_checked, mut worst) = (0, 0, 0);
    for case in m["resize"].as_array().unwrap() {
        let input = load(&case["input"]);
        assert_eq!(input.size(), size_of(&case["size"]));
        for out in case["outputs"].as_array().unwrap() {
            let size = size_of(&out["size"]);
            let got = resize(&input, size.width, size.height, filter).unwrap();
            let d = max_abs_diff(&got, &load(&out[key]));
            assert_eq!(d, 0, "{} -> {size} {filter:?}: max abs diff {d}/255", case["input"]);
            if let Some(legacy) = out.get(legacy_key) {
                let order = PassOrder::HorizontalFirst;
                let got = resize_with(&input, size.width, size.height, filter, order).unwrap();
                let d = max_abs_diff(&got, &load(legacy));
                assert_eq!(
                    d, 0,
                    "{} -> {size} {filter:?} horizontal first: max abs diff {d}/255",
                    case["input"]
                );
                legacy_checked += 1;
            }
            worst = worst.max(d);
            checked += 1;
        }
    }
    eprintln!(
        "{filter:?}: {checked} resizes (+{legacy_checked} horizontal-first), worst difference {worst}/255"
    );
    (checked, legacy_checked, worst)
}

#[test]
fn bicubic_resize_matches_pillow() {
    let (checked, legacy_checked, _) = check_resizes(Filter::Bicubic, "file", "horizontal_first");
    assert!(checked >= 60, "only {checked} resize cases");
    assert!(legacy_checked >= 5, "only {legacy_checked} pass-order cases");
}

#[test]
fn lanczos_resize_matches_pillow() {
    let (checked, legacy_checked, _) = check_resizes(Filter::Lanczos, "lanczos", "lanczos_horizontal_first");
    assert!(checked >= 60, "only {checked} resize cases");
    assert!(legacy_checked >= 5, "only {legacy_checked} pass-order cases");
}

#[test]
fn same_size_resize_is_a_copy_and_huge_sizes_are_refused() {
    let a = load(&Value::from("resize/astronaut.png"));
    for f in [Filter::Bicubic, Filter::Lanczos] {
        assert_eq!(resize(&a, a.width(), a.height(), f).unwrap(), a);
        assert!(matches!(resize(&a, 0, 5, f), Err(VisionError::InvalidSize { .. })));
        assert!(matches!(resize(&a, 100_000, 100_000, f), Err(VisionError::InvalidSize { .. })));
        assert!(matches!(resize(&a, u32::MAX, u32::MAX, f), Err(VisionError::InvalidSize { .. })));
    }
}

#[test]
fn exif_orientation_matches_pillow_exif_transpose() {
    let m = manifest();
    let cases = m["exif"].as_array().unwrap();
    // Eight JPEGs, PNGs with their eXIf chunk before and after the pixels, nine files whose
    // orientation Pillow reads from an XMP packet or a PNG's raw EXIF profile (or not: one has an
    // eXIf chunk without the tag, whose raw profile Pillow therefore ignores), JPEGs whose tag is a
    // LONG or 0 (beside an XMP one it hides), and a JPEG with two Exif segments (the first counts).
    assert_eq!(cases.len(), 22);
    for case in cases {
        let got = load(&case["input"]);
        let want = load(&case["expected"]);
        assert_eq!(got.size(), size_of(&case["size"]), "orientation {}", case["orientation"]);
        // JPEG decoders differ by a few levels (IDCT); a wrong orientation differs by ~255.
        let d = max_abs_diff(&got, &want);
        assert!(d <= 6, "orientation {}: max abs diff {d}", case["orientation"]);
    }
}

#[test]
fn mode_conversion_matches_pillow_convert_rgb() {
    let m = manifest();
    for case in m["modes"].as_array().unwrap() {
        let got = load(&case["input"]);
        let want = load(&case["expected"]);
        assert_eq!(got.size(), size_of(&case["size"]), "{}", case["input"]);
        let tolerance = case["tolerance"].as_u64().unwrap();
        let d = max_abs_diff(&got, &want);
        assert!(u64::from(d) <= tolerance, "{}: max abs diff {d}", case["input"]);
    }
}

#[test]
fn tile_views_match_pillow_pipeline() {
    let m = manifest();
    let norm = Normalization::SIGLIP;
    let pre = Preprocess::BLUELM;
    let tables = norm.tables();
    for case in m["pipeline"].as_array().unwrap() {
        let image = load(&case["input"]);
        for run in case["runs"].as_array().unwrap() {
            let strategy: Strategy = run["strategy"].as_str().unwrap().parse().unwrap();
            let plan = strategy.plan(image.size(), &TilingParams::default()).unwrap();
            let want_plan: Vec<u64> =
                run["plan"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
            assert_eq!(
                (plan.grid.cols, plan.grid.rows),
                (want_plan[0] as u32, want_plan[1] as u32),
                "{strategy}"
            );
            let views = render_views(&image, &plan, &pre).unwrap();
            assert_eq!(views.len() as u64, run["views"].as_u64().unwrap());
            let strip = load(&run["expected"]);
            let tile_bytes = 384 * 384 * 3;
            let batch = make_tiles(&image, &plan, &pre).unwrap();
            assert_eq!(batch.shape(), [views.len(), 3, 384, 384]);
            for (k, view) in views.iter().enumerate() {
                let want = RgbImage::from_raw(
                    384,
                    384,
                    strip.pixels()[k * tile_bytes..(k + 1) * tile_bytes].to_vec(),
                )
                .unwrap();
                let d = max_abs_diff(view, &want);
                assert_eq!(d, 0, "{} {strategy} view {k}: max abs diff {d}", case["input"]);
                // The normalised buffer: channels first, (v/255 - 0.5) / 0.5.
                let t = batch.tile(k).unwrap();
                for (i, px) in want.pixels().chunks_exact(3).enumerate().step_by(97) {
                    for c in 0..3 {
                        let expect = (f32::from(px[c]) / 255.0 - 0.5) / 0.5;
                        let got = t[c * 384 * 384 + i];
                        assert!((got - expect).abs() <= 2.0 / 255.0 + 1e-6, "view {k} px {i} c {c}");
                        assert_eq!(got, tables[c][usize::from(view.pixels()[i * 3 + c])]);
                    }
                }
            }
        }
    }
}

#[test]
fn normalisation_maps_0_to_minus_1_and_255_to_1() {
    let t = Normalization::SIGLIP.tables();
    assert_eq!(t[0][0], -1.0);
    assert_eq!(t[1][255], 1.0);
    assert!(t[2][128].abs() < 0.005);
}

fn expect_error(rel: &str, check: impl Fn(&VisionError) -> bool) {
    let path = root().join("bad").join(rel);
    let err = load_image(&path, &LoadLimits::default()).expect_err(rel);
    assert!(check(&err), "{rel}: unexpected error {err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{rel}: message does not name the file: {msg}");
}

#[test]
fn bad_files_give_clear_errors_naming_the_file() {
    let m = manifest();
    assert_eq!(m["bad"].as_array().unwrap().len(), 5);
    expect_error("truncated.jpg", |e| matches!(e, VisionError::TruncatedJpeg { .. }));
    expect_error("empty.png", |e| matches!(e, VisionError::EmptyFile { .. }));
    expect_error("zero_width.png", |e| {
        matches!(e, VisionError::ZeroSize { .. } | VisionError::Decode { .. })
    });
    expect_error("bomb.png", |e| {
        matches!(e, VisionError::TooManyPixels { width: 100000, height: 100000, .. })
    });
    expect_error("text.png", |e| matches!(e, VisionError::UnknownFormat { .. }));
    expect_error("does-not-exist.png", |e| matches!(e, VisionError::Io { .. }));
}

#[test]
fn limits_are_checked_before_decoding() {
    let photo = root().join("resize/astronaut.png");
    let tight = LoadLimits { max_pixels: 128 * 112 - 1, ..LoadLimits::default() };
    assert!(matches!(load_image(&photo, &tight), Err(VisionError::TooManyPixels { .. })));
    let small_file = LoadLimits { max_file_bytes: 1000, ..LoadLimits::default() };
    assert!(matches!(load_image(&photo, &small_file), Err(VisionError::FileTooLarge { .. })));
    let exact = LoadLimits { max_pixels: 128 * 112, ..LoadLimits::default() };
    assert!(load_image(&photo, &exact).is_ok());
}

#[test]
fn decoded_image_and_plan_are_hashable_cache_keys() {
    use std::collections::HashSet;
    let a = load(&Value::from("resize/astronaut.png"));
    let b = load(&Value::from("resize/chelsea.png"));
    let pa = Strategy::Relaxed.plan(a.size(), &TilingParams::default()).unwrap();
    let mut set = HashSet::new();
    set.insert((a.clone(), pa));
    assert!(set.contains(&(a.clone(), pa)));
    assert!(!set.contains(&(b, pa)));
    let pb = Strategy::InternVl.plan(a.size(), &TilingParams::default()).unwrap();
    assert!(!set.contains(&(a, pb)));
}

#[test]
fn a_plan_for_another_size_is_refused() {
    let a = load(&Value::from("resize/astronaut.png"));
    let plan = Strategy::Relaxed.plan(Size::new(10, 10), &TilingParams::default()).unwrap();
    assert!(matches!(render_views(&a, &plan, &Preprocess::BLUELM), Err(VisionError::PlanMismatch { .. })));
}
