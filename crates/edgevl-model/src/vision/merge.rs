//! The 2x2 token merge of spec 2b (llama.cpp's `build_patch_merge_permute`).

/// Merges the `grid x grid` patch vectors of one tile (`x`, `[grid^2, d]`, row-major) into
/// `ceil(grid / s)^2` tokens of `s * s * d` values: the grid is padded with zero vectors at the
/// bottom and right, token `(r, c)` is the concatenation of patches `(s*r + i, s*c + j)` for
/// `i` in `0..s` (outer) and `j` in `0..s` (inner), and tokens are written row-major.
///
/// # Panics
/// If `x` or `out` is shorter than the shapes imply.
pub(crate) fn merge_patches(x: &[f32], grid: usize, d: usize, s: usize, out: &mut [f32]) {
    let mg = grid.div_ceil(s);
    let tw = s * s * d;
    for r in 0..mg {
        for c in 0..mg {
            let token = &mut out[(r * mg + c) * tw..][..tw];
            for i in 0..s {
                for j in 0..s {
                    let dst = &mut token[(i * s + j) * d..][..d];
                    let (y, xx) = (s * r + i, s * c + j);
                    if y < grid && xx < grid {
                        dst.copy_from_slice(&x[(y * grid + xx) * d..][..d]);
                    } else {
                        dst.fill(0.0);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_order_and_padding() {
        // 3x3 grid of 1-wide patches numbered 1..=9, merged 2x2 into a 2x2 token grid.
        let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let mut out = vec![-1.0; 16];
        merge_patches(&x, 3, 1, 2, &mut out);
        assert_eq!(out, vec![1., 2., 4., 5., 3., 0., 6., 0., 7., 8., 0., 0., 9., 0., 0., 0.]);
    }
}
