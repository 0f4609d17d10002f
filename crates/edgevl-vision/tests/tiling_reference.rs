//! The three strategies against scripts/tiling_reference.py (tests/fixtures/vision/tiling_cases.json):
//! every plan field, on the paper's cases, the 24-size budget table and >= 2000 random sizes,
//! with each strategy's default budget and with max_tiles.

use edgevl_vision::{Plan, Size, Strategy, TilingParams};
use serde_json::Value;

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/vision/tiling_cases.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn params(max_tiles: u64, alpha: f64) -> TilingParams {
    TilingParams { alpha, max_tiles: (max_tiles > 0).then_some(max_tiles as u32), ..TilingParams::default() }
}

/// The plan as the fixture's field list: cols, rows, canvas w/h, resize w/h, offset x/y, global, tokens.
fn fields(p: &Plan) -> Vec<u64> {
    vec![
        p.grid.cols.into(),
        p.grid.rows.into(),
        p.canvas.width.into(),
        p.canvas.height.into(),
        p.resize.width.into(),
        p.resize.height.into(),
        p.offset.x.into(),
        p.offset.y.into(),
        u64::from(p.global_view()),
        p.image_tokens(),
    ]
}

#[test]
fn all_strategies_match_the_python_reference() {
    let fx = fixture();
    let names: Vec<&str> = fx["strategies"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    let strategies: Vec<Strategy> = names.iter().map(|n| n.parse().unwrap()).collect();
    let cases = fx["cases"].as_array().unwrap();
    let mut sizes = std::collections::HashSet::new();
    let (mut with_budget, mut without) = (0, 0);
    let mut failures = Vec::new();
    for case in cases {
        let c = case.as_array().unwrap();
        let size = Size::new(c[0].as_u64().unwrap() as u32, c[1].as_u64().unwrap() as u32);
        let n = c[2].as_u64().unwrap();
        let p = params(n, c[3].as_f64().unwrap());
        sizes.insert(size);
        if n > 0 {
            with_budget += 1
        } else {
            without += 1
        }
        for (k, s) in strategies.iter().enumerate() {
            let want: Vec<u64> = c[4 + k].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
            let plan = s.plan(size, &p).unwrap();
            assert_eq!(plan.image, size);
            let got = fields(&plan);
            if got != want {
                failures
                    .push(format!("{s} {size} max_tiles={n} alpha={}: got {got:?} want {want:?}", p.alpha));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches, first: {:#?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert!(sizes.len() >= 2000, "only {} sizes", sizes.len());
    assert!(with_budget >= 2000 && without >= 2000, "{with_budget} with max_tiles, {without} without");
}

#[test]
fn budget_table_means_at_16_tiles() {
    let fx = fixture();
    let sizes = fx["budget_sizes"].as_array().unwrap();
    assert_eq!(sizes.len(), 24);
    let p = params(16, 0.1);
    let mean = |s: Strategy| {
        let total: u64 = sizes
            .iter()
            .map(|wh| {
                let size = Size::new(wh[0].as_u64().unwrap() as u32, wh[1].as_u64().unwrap() as u32);
                s.plan(size, &p).unwrap().image_tokens()
            })
            .sum();
        total as f64 / sizes.len() as f64
    };
    // spec.md section 2: relaxed 1421, llava-next 1527, internvl 1846.
    assert_eq!(mean(Strategy::Relaxed).round(), 1421.0);
    assert_eq!(mean(Strategy::LlavaNext).round(), 1527.0);
    assert_eq!(mean(Strategy::InternVl).round(), 1846.0);
}

#[test]
fn papers_cases() {
    let d = TilingParams::default();
    let plan = |s: Strategy, w, h, p: &TilingParams| s.plan(Size::new(w, h), p).unwrap();
    // 394x390: llava-next 768x768 (2x2, about 4x the area), relaxed 1x1.
    let l = plan(Strategy::LlavaNext, 394, 390, &d);
    assert_eq!((l.grid.cols, l.grid.rows, l.canvas), (2, 2, Size::new(768, 768)));
    assert!((l.area_enlargement() - 3.84).abs() < 0.01);
    let r = plan(Strategy::Relaxed, 394, 390, &d);
    assert_eq!((r.grid.cols, r.grid.rows, r.global_view(), r.image_tokens()), (1, 1, false, 196));
    // 380x76: internvl 5x1 (1920x384, ~25x the area), relaxed 1x1.
    let i = plan(Strategy::InternVl, 380, 76, &d);
    assert_eq!((i.grid.cols, i.grid.rows, i.canvas), (5, 1, Size::new(1920, 384)));
    assert!((i.area_enlargement() - 25.5).abs() < 0.1);
    assert_eq!(plan(Strategy::Relaxed, 380, 76, &d).tiles(), 1);
    // 380x393: llava-next 384x768.
    assert_eq!(plan(Strategy::LlavaNext, 380, 393, &d).canvas, Size::new(384, 768));
    // 500x102: internvl 5x1.
    let i = plan(Strategy::InternVl, 500, 102, &d);
    assert_eq!((i.grid.cols, i.grid.rows), (5, 1));
    // 768x1536: relaxed 2x4 = 8 tiles + thumbnail = 1764 tokens.
    let r = plan(Strategy::Relaxed, 768, 1536, &d);
    assert_eq!((r.grid.cols, r.grid.rows, r.global_view(), r.image_tokens()), (2, 4, true, 1764));
    // At an equal budget of 16: 394x390 -> 196 / 980 / 196; 380x76 -> 196 / 392 / 1176.
    let n16 = params(16, 0.1);
    let paper = [Strategy::Relaxed, Strategy::LlavaNext, Strategy::InternVl];
    let tokens = |w, h| paper.map(|s| plan(s, w, h, &n16).image_tokens());
    assert_eq!(tokens(394, 390), [196, 980, 196]);
    assert_eq!(tokens(380, 76), [196, 392, 1176]);
}

#[test]
fn plans_are_consistent_for_extreme_sizes() {
    // Properties that must hold for any size, any strategy, at each family's tile size: the
    // resized image fits the canvas and is centred, the budget holds, nothing panics.
    for family in [TilingParams::BLUELM, TilingParams::INTERNVL, TilingParams::SMOLVLM] {
        let t = family.tile_size;
        for (w, h) in
            [(1, 1), (1, 4096), (4096, 1), (u32::MAX, 1), (1, u32::MAX), (65535, 65535), (u32::MAX, u32::MAX)]
        {
            for s in Strategy::ALL {
                for n in [None, Some(1), Some(16), Some(256)] {
                    let p = s.plan(Size::new(w, h), &TilingParams { max_tiles: n, ..family }).unwrap();
                    assert_eq!(p.canvas, Size::new(p.grid.cols * t, p.grid.rows * t));
                    assert!(p.offset.x + p.resize.width <= p.canvas.width, "{s} {w}x{h}");
                    assert!(p.offset.y + p.resize.height <= p.canvas.height, "{s} {w}x{h}");
                    assert!(p.resize.width >= 1 && p.resize.height >= 1);
                    if let Some(pre) = p.pre_resize {
                        assert!(pre.width >= 1 && pre.height >= 1 && pre.width.max(pre.height) <= 4096 + 1);
                    }
                    if let Some(n) = n {
                        assert!(p.tiles() <= n);
                    }
                }
            }
        }
    }
}
