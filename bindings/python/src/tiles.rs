//! `edgevl.tiles`: the tiling plan of an image size, as one object of `edgevl tiles --json`.

use edgevl_runtime::{ImageConfig, ImageTiling, TileBudget, TilingChoice, VisionFamily};
use edgevl_vision::{Plan, Size};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The tile grid a dynamic-resolution strategy picks for a `width` x `height` image and what it
/// costs in image tokens: the same dict as one object of `edgevl tiles --json`
/// (`strategy`, `grid` [cols, rows], `canvas` [width, height], `tiles`, `thumbnail` (a global
/// view is added), `tokens`).
///
/// `strategy`: "family" (the family's own rule), "relaxed", "llava-next", "internvl" or
/// "idefics3". `family`: "edgevl" (this project's 384-pixel tiles, 196 tokens a view; the
/// default), "internvl" (448, 256) or "idefics3" (SmolVLM: 512, 64), at the family's
/// published limits. `max_tiles`: the tile budget (default: the rule's own). `alpha`: relaxed
/// matching's tolerance on effective resolution. Bad arguments raise ValueError.
#[pyfunction]
#[pyo3(signature = (width, height, strategy = "family", family = None, max_tiles = None, alpha = 0.1))]
pub(crate) fn tiles<'py>(
    py: Python<'py>,
    width: i64,
    height: i64,
    strategy: &str,
    family: Option<&str>,
    max_tiles: Option<i64>,
    alpha: f64,
) -> PyResult<Bound<'py, PyDict>> {
    let (width, height) = (crate::count::<u32>("width", width)?, crate::count::<u32>("height", height)?);
    let max_tiles = max_tiles.map(|m| crate::count::<u32>("max_tiles", m)).transpose()?;
    let family = match family {
        None => VisionFamily::EdgeVl,
        Some(name) => VisionFamily::from_name(name).ok_or_else(|| {
            PyValueError::new_err(format!("unknown family {name:?}; expected edgevl, internvl or idefics3"))
        })?,
    };
    let cfg = ImageConfig { strategy: parse_strategy(strategy)?, alpha, max_tiles, ..ImageConfig::default() };
    let plan = ImageTiling::family_defaults(&cfg, family)
        .plan(Size::new(width, height), TileBudget::Default)
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    plan_dict(py, &plan)
}

/// `strategy` as a tiling choice ("family" or a strategy name); ValueError otherwise.
pub(crate) fn parse_strategy(strategy: &str) -> PyResult<TilingChoice> {
    strategy.parse().map_err(|e: String| PyValueError::new_err(format!("strategy: {e}")))
}

/// A plan as `edgevl tiles --json` writes it.
pub(crate) fn plan_dict<'py>(py: Python<'py>, p: &Plan) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("strategy", p.strategy.name())?;
    d.set_item("grid", vec![p.grid.cols, p.grid.rows])?;
    d.set_item("canvas", vec![p.canvas.width, p.canvas.height])?;
    d.set_item("tiles", p.tiles())?;
    d.set_item("thumbnail", p.global_view())?;
    d.set_item("tokens", p.image_tokens())?;
    Ok(d)
}
