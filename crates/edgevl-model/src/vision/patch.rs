//! Unfolding a tile into patch rows, so the stride-p patch convolution is one matrix product.

/// Writes the `(size / p)^2` patches of one `[3, size, size]` tile into `out`, one row of
/// `3 * p * p` values per patch, patches row-major, each row in (channel, y, x) order — the
/// order of a PyTorch / GGUF `Conv2d` kernel `[out, 3, p, p]`.
///
/// # Panics
/// If `tile` or `out` is shorter than the shapes imply (callers size both from the hyper-parameters).
pub(crate) fn unfold_patches(tile: &[f32], size: usize, p: usize, out: &mut [f32]) {
    let grid = size / p;
    let row_len = 3 * p * p;
    for py in 0..grid {
        for px in 0..grid {
            let row = &mut out[(py * grid + px) * row_len..][..row_len];
            for c in 0..3 {
                for ky in 0..p {
                    let src = &tile[c * size * size + (py * p + ky) * size + px * p..][..p];
                    row[(c * p + ky) * p..][..p].copy_from_slice(src);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_rows_follow_conv_kernel_order() {
        // 3 channels of a 4x4 image, patch 2: value = c*100 + y*10 + x.
        let tile: Vec<f32> = (0..48).map(|i| ((i / 16) * 100 + (i % 16 / 4) * 10 + i % 4) as f32).collect();
        let mut out = vec![0.0; 4 * 12];
        unfold_patches(&tile, 4, 2, &mut out);
        // Patch (py=1, px=0) is row 2: channel 0 rows 2..4, cols 0..2, then channel 1, 2.
        assert_eq!(&out[24..36], &[20., 21., 30., 31., 120., 121., 130., 131., 220., 221., 230., 231.]);
    }
}
