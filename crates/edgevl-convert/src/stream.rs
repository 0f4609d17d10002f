//! Streaming a planned file: each tensor is read through mmap a slab of rows at a time, widened to
//! f32, rows permuted if the plan says so, quantised on `threads` threads and appended to the
//! output; the source pages are released after each slab, so memory stays at a few slabs
//! whatever the model's size.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use edgevl_gguf::{GgmlType, GgufStreamWriter, Metadata, TensorSpec};
use edgevl_kernels::formats::quantize_ref;
use edgevl_kernels::DType;

use crate::error::{ConvertError, Result};
use crate::safetensors::{Dtype, SafetensorsFile, TensorView};

/// Elements converted per slab (all threads together): 4 Mi f32 = 16 MiB.
const SLAB_ELEMENTS: usize = 1 << 22;

/// A row transformation applied while reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rows {
    /// Rows as stored.
    AsIs,
    /// llama.cpp's `LlamaModel.permute(w, n_head)`: output row `(h, i, j)` is input row `(h, j, i)`
    /// for `h < n_head`, `i < rows / n_head / 2`, `j < 2`. It permutes the checkpoint tensor's first
    /// axis: a matrix's rows, a vector's (a bias's) elements. The planner checks that the rows
    /// split into `n_head` heads of an even width.
    PermuteQk {
        /// Heads the rows are split into.
        n_head: u64,
    },
    /// Rows `first..` of the source, as many as the output has (one third of InternViT's fused
    /// `attn.qkv`); a 1-D source counts rows of the output's length.
    Slice {
        /// The first source row.
        first: usize,
    },
}

impl Rows {
    /// Elements per row and rows of a tensor of ggml dims `dims` as it is streamed: its ggml rows,
    /// except that a permuted vector is streamed as rows of one element, so the permutation moves
    /// its elements.
    fn layout(self, dims: &[u64]) -> (usize, usize) {
        match (self, dims) {
            (Rows::PermuteQk { .. }, &[n]) => (1, n as usize),
            _ => (dims.first().copied().unwrap_or(1) as usize, dims.iter().skip(1).product::<u64>() as usize),
        }
    }

    /// The source row of output row `r` of a tensor with `n_rows` rows.
    fn source(self, r: usize, n_rows: usize) -> usize {
        match self {
            Rows::AsIs => r,
            Rows::Slice { first } => first + r,
            Rows::PermuteQk { n_head } => {
                let per_head = n_rows / n_head as usize;
                let half = per_head / 2;
                let (h, k) = (r / per_head, r % per_head);
                let (i, j) = (k / 2, k % 2);
                h * per_head + j * half + i
            }
        }
    }
}

/// A file ready to stream: its metadata and planned tensors, in write order.
#[derive(Debug)]
pub struct Job<'a> {
    /// Metadata in write order.
    pub metadata: Metadata,
    /// Tensors in write order.
    pub tensors: Vec<PlannedTensor<'a>>,
}

impl Job<'_> {
    /// Each tensor's name and type, in file order.
    pub fn summary(&self) -> Vec<(String, GgmlType)> {
        self.tensors.iter().map(|t| (t.spec.name.clone(), t.spec.ggml_type)).collect()
    }
}

/// Elements of all tensors (gguf-py's parameter count, for `general.size_label`).
pub fn n_params(tensors: &[PlannedTensor]) -> u64 {
    tensors.iter().map(|t| t.spec.dims.iter().product::<u64>()).sum()
}

/// One output tensor and where its data comes from.
#[derive(Debug)]
pub struct PlannedTensor<'a> {
    /// Name, type and ggml dims in the output.
    pub spec: TensorSpec,
    /// Its values.
    pub source: Source<'a>,
    /// Row transformation.
    pub rows: Rows,
}

/// Where a planned tensor's values are.
#[derive(Debug)]
pub enum Source<'a> {
    /// A tensor of a safetensors file.
    Mapped {
        /// The file holding it.
        file: &'a SafetensorsFile,
        /// The tensor.
        view: &'a TensorView,
    },
    /// Values the converter computes (llama.cpp's extra tensors, e.g. `rope_freqs.weight`).
    Computed(Vec<f32>),
}

impl Source<'_> {
    /// The values' bytes and their dtype.
    fn data(&self) -> (std::borrow::Cow<'_, [u8]>, Dtype) {
        match self {
            Source::Mapped { file, view } => (std::borrow::Cow::Borrowed(file.data(view)), view.dtype),
            Source::Computed(v) => {
                (v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>().into(), Dtype::F32)
            }
        }
    }

    /// Tells the file that bytes `from..to` of it are not needed again (nothing for computed values).
    fn release(&self, from: usize, to: usize) {
        if let Source::Mapped { file, .. } = self {
            file.release(from, to);
        }
    }

    /// Where the values start in their file (0 for computed ones).
    fn start(&self) -> usize {
        match self {
            Source::Mapped { view, .. } => view.start,
            Source::Computed(_) => 0,
        }
    }

    /// The file the values come from, or `out` for computed ones (named in errors).
    fn path<'p>(&'p self, out: &'p Path) -> &'p Path {
        match self {
            Source::Mapped { file, .. } => file.path(),
            Source::Computed(_) => out,
        }
    }
}

/// Progress of a conversion, reported as it streams.
pub trait Progress {
    /// The conversion of `out` starts: `n_tensors` tensors, `total_bytes` bytes of tensor data.
    fn start(&mut self, out: &Path, n_tensors: usize, total_bytes: u64);
    /// Tensor `index` (0-based) starts.
    fn tensor(&mut self, index: usize, name: &str, ggml_type: GgmlType, source: &str);
    /// `bytes` more output bytes were written.
    fn advance(&mut self, bytes: u64);
    /// The file is complete.
    fn finish(&mut self);
}

/// A [`Progress`] that reports nothing.
#[derive(Debug, Default)]
pub struct Silent;

impl Progress for Silent {
    fn start(&mut self, _: &Path, _: usize, _: u64) {}
    fn tensor(&mut self, _: usize, _: &str, _: GgmlType, _: &str) {}
    fn advance(&mut self, _: u64) {}
    fn finish(&mut self) {}
}

/// Widens row `src` of a tensor to f32.
fn widen(dtype: Dtype, row: &[u8], out: &mut [f32]) {
    match dtype {
        Dtype::F16 => {
            for (o, b) in out.iter_mut().zip(row.chunks_exact(2)) {
                *o = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        Dtype::BF16 => {
            for (o, b) in out.iter_mut().zip(row.chunks_exact(2)) {
                *o = f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16);
            }
        }
        _ => {
            for (o, b) in out.iter_mut().zip(row.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
    }
}

/// A value a quantised type cannot stand for, found in the rows of `x` (`row` counts from `x`'s
/// first).
struct NonFinite {
    row: usize,
    column: usize,
    value: f32,
}

impl std::fmt::Display for NonFinite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "column {} is {}: llama-quantize refuses to quantise such data (the checkpoint is damaged)",
            self.column, self.value
        )
    }
}

/// The first infinite or NaN value of `x` when `t` is a quantised type (a block's scale would be
/// infinite, or the NaN silently zero), as llama-quantize's `ggml_validate_row_data` refuses the
/// tensor; float types keep what they are given, as llama.cpp's converter does.
fn non_finite(t: GgmlType, x: &[f32], row_len: usize) -> Option<NonFinite> {
    if matches!(t, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16) {
        return None;
    }
    let i = x.iter().position(|v| !v.is_finite())?;
    Some(NonFinite { row: i / row_len.max(1), column: i % row_len.max(1), value: x[i] })
}

/// Encodes f32 values (whole rows) as `t` with llama.cpp's reference quantisers.
fn encode(t: GgmlType, x: &[f32]) -> Option<Vec<u8>> {
    quantize_ref(DType::from_ggml_type_id(t.id())?, x)
}

/// Writes `job` to `sink`, converting each tensor in slabs on `threads` threads.
pub fn write_all<W: Write>(
    sink: W,
    out: &Path,
    job: &Job,
    threads: usize,
    cancel: Option<&AtomicBool>,
    progress: &mut dyn Progress,
) -> Result<W> {
    let werr = |tensor: Option<&str>, source| ConvertError::Write {
        path: out.to_path_buf(),
        tensor: tensor.map(str::to_string),
        source,
    };
    let (metadata, tensors) = (&job.metadata, &job.tensors);
    let specs: Vec<TensorSpec> = tensors.iter().map(|t| t.spec.clone()).collect();
    let mut total = 0u64;
    for s in &specs {
        total = total.saturating_add(s.n_bytes().map_err(|e| werr(Some(&s.name), e))?);
    }
    let mut w = GgufStreamWriter::new(sink, metadata, &specs).map_err(|e| werr(None, e))?;
    progress.start(out, tensors.len(), total);
    let threads = threads.max(1);
    for (index, t) in tensors.iter().enumerate() {
        let name = t.spec.name.as_str();
        let (src, dtype) = t.source.data();
        progress.tensor(index, name, t.spec.ggml_type, dtype.name());
        let (row_len, n_rows) = t.rows.layout(&t.spec.dims);
        let src: &[u8] = &src;
        let src_row_bytes = row_len * dtype.size() as usize;
        let slab_rows = (SLAB_ELEMENTS / row_len.max(1)).max(1);
        let mut r0 = 0;
        while r0 < n_rows {
            if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                return Err(ConvertError::Cancelled { path: out.to_path_buf() });
            }
            let rows = slab_rows.min(n_rows - r0);
            let per = rows.div_ceil(threads);
            let parts: Vec<std::result::Result<Vec<u8>, String>> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..rows)
                    .step_by(per)
                    .map(|a| {
                        let b = (a + per).min(rows);
                        s.spawn(move || {
                            let mut x = vec![0f32; (b - a) * row_len];
                            for (k, out_row) in x.chunks_exact_mut(row_len).enumerate() {
                                let sr = t.rows.source(r0 + a + k, n_rows);
                                widen(dtype, &src[sr * src_row_bytes..(sr + 1) * src_row_bytes], out_row);
                            }
                            if let Some(bad) = non_finite(t.spec.ggml_type, &x, row_len) {
                                return Err(format!(
                                    "row {}, {bad}",
                                    t.rows.source(r0 + a + bad.row, n_rows)
                                ));
                            }
                            encode(t.spec.ggml_type, &x)
                                .ok_or_else(|| format!("cannot encode as {}", t.spec.ggml_type))
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|_| Err("the encoding thread failed".into())))
                    .collect()
            });
            for part in parts {
                let bytes = part.map_err(|message| ConvertError::Safetensors {
                    path: t.source.path(out).to_path_buf(),
                    tensor: Some(name.to_string()),
                    message,
                })?;
                w.write_data(&bytes).map_err(|e| werr(Some(name), e))?;
                progress.advance(bytes.len() as u64);
            }
            if t.rows == Rows::AsIs {
                // Rows read so far are not needed again: keep RSS at a slab, not a tensor.
                let from = t.source.start() + r0 * src_row_bytes;
                t.source.release(from, from + rows * src_row_bytes);
            }
            r0 += rows;
        }
        t.source.release(t.source.start(), t.source.start() + src.len());
    }
    let sink = w.finish().map_err(|e| werr(None, e))?;
    progress.finish();
    Ok(sink)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_matches_llama_cpp_permute() {
        // numpy: w.reshape(n_head, 2, rows // n_head // 2, cols).swapaxes(1, 2).reshape(w.shape)
        // on rows 0..12 with n_head = 2 gives [0, 3, 1, 4, 2, 5, 6, 9, 7, 10, 8, 11].
        let p = Rows::PermuteQk { n_head: 2 };
        let got: Vec<usize> = (0..12).map(|r| p.source(r, 12)).collect();
        assert_eq!(got, [0, 3, 1, 4, 2, 5, 6, 9, 7, 10, 8, 11]);
    }

    #[test]
    fn a_permuted_vector_is_streamed_element_by_element() {
        // A bias of 12 is 12 rows of one element (llama.cpp permutes its first axis); a matrix keeps
        // its rows, and a sliced vector counts rows of its whole length.
        assert_eq!(Rows::PermuteQk { n_head: 2 }.layout(&[12]), (1, 12));
        assert_eq!(Rows::PermuteQk { n_head: 2 }.layout(&[8, 12]), (8, 12));
        assert_eq!(Rows::Slice { first: 1 }.layout(&[12]), (12, 1));
        assert_eq!(Rows::AsIs.layout(&[4, 3, 2]), (4, 6));
    }
}
