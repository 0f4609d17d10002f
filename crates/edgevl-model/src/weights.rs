//! Typed views of GGUF tensors: matrices stay in the mapped file or, for the formats with a faster packed kernel in
//! the model's kernel table (and a vision tower's float matrices, into panels), are repacked once at load (and
//! their mapped pages released); small vectors are copied out.

use std::sync::Arc;

use crate::ModelError;
use edgevl_gguf::{GgmlType, GgufFile};
use edgevl_kernels::fpanel::FloatPanels;
use edgevl_kernels::packed::{PackArena, PackedWeights};
use edgevl_kernels::{DType, Kernels, WeightRef};

/// The kernel format of a GGUF type, if the kernels compute with it.
pub fn dtype_of(t: GgmlType) -> Option<DType> {
    Some(match t {
        GgmlType::F32 => DType::F32,
        GgmlType::F16 => DType::F16,
        GgmlType::BF16 => DType::BF16,
        GgmlType::Q8_0 => DType::Q8_0,
        GgmlType::Q4_0 => DType::Q4_0,
        GgmlType::Q4_1 => DType::Q4_1,
        GgmlType::Q5_0 => DType::Q5_0,
        GgmlType::Q4_K => DType::Q4_K,
        GgmlType::Q6_K => DType::Q6_K,
        _ => return None,
    })
}

/// The kernel format of tensor `name`'s GGUF type, or the error naming both.
fn dtype_of_tensor(name: &str, t: GgmlType) -> Result<DType, ModelError> {
    dtype_of(t).ok_or_else(|| ModelError::UnsupportedTensorType {
        tensor: name.to_string(),
        ggml_type: t.name().to_string(),
    })
}

/// A weight matrix of `rows` x `cols`: tensor number `index` of the mapped file (its bytes checked against the
/// shape at load), or its repacked copy.
#[derive(Clone, Debug)]
pub(crate) struct Matrix {
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    index: usize,
    copy: Option<Repacked>,
}

/// A matrix's copy in a kernel layout.
#[derive(Clone, Debug)]
enum Repacked {
    /// Quantised weights in row groups ([`PackedWeights`]).
    Packed(Arc<PackedWeights>),
    /// Float weights in panels ([`FloatPanels`]).
    Panels(Arc<FloatPanels>),
}

/// What loading a model's tensors needs: the file, the kernel table (which decides the matrices repacked at load,
/// and converts vectors), and one [`PackArena`] for all the matrices the table repacks (every 2-D tensor of a
/// packable type: an upper bound, as a table only read row by row stays unpacked and its share is never touched),
/// so that nearly all packed weights sit on huge pages.
pub(crate) struct Loader<'a> {
    pub file: &'a GgufFile,
    pub kernels: &'a Kernels,
    arena: Option<Arc<PackArena>>,
    /// Whether float matrices are laid out in panels ([`Loader::for_batches`]).
    panels: bool,
}

impl<'a> Loader<'a> {
    /// A loader of `file`'s tensors for the kernels of `kernels`.
    pub fn new(file: &'a GgufFile, kernels: &'a Kernels) -> Self {
        let bytes: usize = file
            .tensors()
            .iter()
            .filter_map(|t| match t.dims.as_slice() {
                &[cols, rows] => {
                    let dtype = dtype_of(t.ggml_type).filter(|&d| kernels.prefers_packed(d))?;
                    let (rows, cols) = (usize::try_from(rows).ok()?, usize::try_from(cols).ok()?);
                    PackedWeights::packed_bytes(dtype, rows, cols).ok()
                }
                _ => None,
            })
            .fold(0usize, usize::saturating_add);
        // A file whose shapes overflow is refused by `Loader::matrix` before anything is packed. The reader refuses
        // tensors that share bytes, so the matrices' bytes sum to at most the file's length and their packed forms
        // (packing adds padding only) to at most twice it: the cap guards that estimate, and matrices that do not
        // fit get buffers of their own.
        let cap = usize::try_from(file.file_len()).unwrap_or(usize::MAX).saturating_mul(2);
        let bytes = bytes.min(cap);
        let arena = (bytes > 0 && bytes < usize::MAX).then(|| Arc::new(PackArena::new(bytes)));
        Loader { file, kernels, arena, panels: false }
    }

    /// A loader for a model whose products always have many activation rows (a vision tower, never decoding): its
    /// float matrices are also repacked, into panels, when the kernel table has a SIMD panel kernel.
    pub fn for_batches(file: &'a GgufFile, kernels: &'a Kernels) -> Self {
        Loader { panels: true, ..Self::new(file, kernels) }
    }

    /// The matrix `name` with GGUF dims `[cols, rows]`; repacked (into the arena while it has room) when the
    /// kernel table has a packed kernel for its type.
    pub fn matrix(&self, name: &str, cols: usize, rows: usize) -> Result<Matrix, ModelError> {
        self.load_matrix(name, cols, rows, true)
    }

    /// [`Loader::matrix`] that never repacks: for tables only read row by row ([`Matrix::row_into`]), whose pages
    /// then stay in the file except the rows used.
    pub fn matrix_unpacked(&self, name: &str, cols: usize, rows: usize) -> Result<Matrix, ModelError> {
        self.load_matrix(name, cols, rows, false)
    }

    fn load_matrix(&self, name: &str, cols: usize, rows: usize, pack: bool) -> Result<Matrix, ModelError> {
        let file = self.file;
        let (info, _) = file.require_tensor(name, &[cols as u64, rows as u64])?;
        let dtype = dtype_of_tensor(name, info.ggml_type)?;
        let index = tensor_index(file, name)?;
        let m = Matrix::in_file(file, name, index, dtype, rows, cols)?;
        let t = &file.tensors()[index];
        let tensor_err = |source| ModelError::Tensor { tensor: name.to_string(), source };
        let copy = if pack && self.kernels.prefers_packed(dtype) {
            let p = PackedWeights::pack_in(self.arena.as_ref(), dtype, file.tensor_data(t), rows, cols);
            Repacked::Packed(Arc::new(p.map_err(tensor_err)?))
        } else if pack && self.panels && self.kernels.prefers_panels(dtype) {
            let p = FloatPanels::pack(dtype, file.tensor_data(t), rows, cols);
            Repacked::Panels(Arc::new(p.map_err(tensor_err)?))
        } else {
            return Ok(m);
        };
        // The copy replaces the mapped bytes: drop them from memory so both are never resident.
        file.release_tensor_pages(t);
        Ok(Matrix { copy: Some(copy), ..m })
    }

    /// The matrix `name` (GGUF dims `[cols, rows]`, of any type the kernels read) requantised to Q8_0 and repacked,
    /// each row zero-padded to whole Q8_0 blocks and zero rows added up to `rows_p`: INT8 weights for a matrix the
    /// file keeps as floats (so400m's `ffn_down`, whose 4304 columns are not whole blocks). Each row is dequantised
    /// to f32 and quantised as llama.cpp's `quantize_row_q8_0_ref` does. `None` when the kernel table does not
    /// repack Q8_0 (the scalar level, `EDGEVL_NO_PACK`): the matrix is then used as stored.
    ///
    /// # Errors
    /// As [`Loader::matrix`]; also if the padded size overflows.
    pub fn matrix_q8_0_padded(
        &self,
        name: &str,
        (cols, rows): (usize, usize),
        rows_p: usize,
    ) -> Result<Option<Matrix>, ModelError> {
        if !self.kernels.prefers_packed(DType::Q8_0) {
            return Ok(None);
        }
        let m = self.load_matrix(name, cols, rows, false)?;
        let rows_p = rows_p.max(rows);
        let size = cols.checked_next_multiple_of(32).and_then(|c| Some((c, rows_p.checked_mul(c)?)));
        let Some((cols_p, len)) = size else {
            let source = edgevl_kernels::KernelError::SizeOverflow { dtype: DType::Q8_0, rows: rows_p, cols };
            return Err(ModelError::Tensor { tensor: name.to_string(), source });
        };
        let mut f = vec![0f32; len];
        for (r, row) in f.chunks_exact_mut(cols_p).take(rows).enumerate() {
            m.row_into(self.kernels, self.file, r, &mut row[..cols]);
        }
        // Cannot fail: `len` is whole rows of `cols_p`, a multiple of the block size.
        let q = edgevl_kernels::quantize_ref(DType::Q8_0, &f).unwrap_or_default();
        drop(f);
        let p = PackedWeights::pack_in(self.arena.as_ref(), DType::Q8_0, &q, rows_p, cols_p)
            .map_err(|source| ModelError::Tensor { tensor: name.to_string(), source })?;
        self.file.release_tensor_pages(&self.file.tensors()[m.index]);
        let copy = Some(Repacked::Packed(Arc::new(p)));
        Ok(Some(Matrix { dtype: DType::Q8_0, rows: rows_p, cols: cols_p, copy, ..m }))
    }

    /// Whether tensor `name` is stored as floats (F32, F16 or BF16); `false` when it is absent.
    pub fn is_float(&self, name: &str) -> bool {
        let dtype = self.file.tensor(name).and_then(|info| dtype_of(info.ggml_type));
        dtype.is_some_and(|d| matches!(d, DType::F32 | DType::F16 | DType::BF16))
    }

    /// The 1-D tensor `name` of `n` elements as f32 (norm weights, biases).
    pub fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>, ModelError> {
        let (info, data) = self.file.require_tensor(name, &[n as u64])?;
        let dtype = dtype_of_tensor(name, info.ggml_type)?;
        // One row of `n` elements of the tensor's type, checked as a matrix is.
        WeightRef::new(dtype, data, 1, n)
            .map_err(|source| ModelError::Tensor { tensor: name.into(), source })?;
        let mut out = vec![0f32; n];
        self.kernels.format(dtype).dequantize(data, &mut out);
        Ok(out)
    }

    /// Like [`Loader::vector`] but `None` when the tensor is absent.
    pub fn optional_vector(&self, name: &str, n: usize) -> Result<Option<Vec<f32>>, ModelError> {
        if self.file.tensor(name).is_none() {
            return Ok(None);
        }
        self.vector(name, n).map(Some)
    }
}

/// The position of tensor `name` in `file`'s tensor list.
fn tensor_index(file: &GgufFile, name: &str) -> Result<usize, ModelError> {
    let found = file.tensors().iter().position(|t| t.name == name);
    Ok(found.ok_or_else(|| edgevl_gguf::GgufError::MissingTensor(name.to_string()))?)
}

impl Matrix {
    /// Tensor `index` (named `name`) of `file` used in place as `rows` rows of `cols` elements of `dtype`, after
    /// checking that its bytes are exactly those rows.
    pub fn in_file(
        file: &GgufFile,
        name: &str,
        index: usize,
        dtype: DType,
        rows: usize,
        cols: usize,
    ) -> Result<Self, ModelError> {
        let data = file.tensor_data(&file.tensors()[index]);
        WeightRef::new(dtype, data, rows, cols)
            .map_err(|source| ModelError::Tensor { tensor: name.into(), source })?;
        Ok(Matrix { dtype, rows, cols, index, copy: None })
    }

    /// The kernel view of this matrix in `file` (the file it was loaded from).
    pub fn view<'a>(&'a self, file: &'a GgufFile) -> WeightRef<'a> {
        match &self.copy {
            Some(Repacked::Packed(p)) => return WeightRef::from_packed(p),
            Some(Repacked::Panels(p)) => return WeightRef::from_panels(p),
            None => {}
        }
        let data = file.tensor_data(&file.tensors()[self.index]);
        // The same bytes passed the same check when the matrix was loaded (`Matrix::in_file`), and a file never
        // changes once open.
        WeightRef::new(self.dtype, data, self.rows, self.cols)
            .unwrap_or_else(|e| unreachable!("a matrix checked at load no longer fits its file: {e}"))
    }

    /// Dequantise row `r` into `out` (`cols` long) with the kernels of `k`.
    pub fn row_into(&self, k: &Kernels, file: &GgufFile, r: usize, out: &mut [f32]) {
        match &self.copy {
            Some(Repacked::Packed(p)) => return p.dequantize_row(r, out),
            Some(Repacked::Panels(p)) => return p.dequantize_row(r, out),
            None => {}
        }
        let w = self.view(file);
        let (rb, data) = (w.row_bytes(), w.data().unwrap_or_default());
        k.format(self.dtype).dequantize(&data[r * rb..(r + 1) * rb], out);
    }
}
