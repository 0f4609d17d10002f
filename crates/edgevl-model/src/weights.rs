//! Typed views of GGUF tensors: matrices stay in the mapped file or, for the formats with a faster packed kernel on
//! this CPU, are repacked once at load (and their mapped pages released); small vectors are copied out.

use std::sync::Arc;

use crate::ModelError;
use edgevl_gguf::{GgmlType, GgufFile};
use edgevl_kernels::packed::{PackArena, PackedWeights};
use edgevl_kernels::{dequantize_row, kernels, DType, WeightRef};

/// The kernel format of a GGUF type, if the kernels compute with it.
pub fn dtype_of(t: GgmlType) -> Option<DType> {
    Some(match t {
        GgmlType::F32 => DType::F32,
        GgmlType::F16 => DType::F16,
        GgmlType::BF16 => DType::BF16,
        GgmlType::Q8_0 => DType::Q8_0,
        GgmlType::Q4_0 => DType::Q4_0,
        GgmlType::Q4_1 => DType::Q4_1,
        GgmlType::Q4_K => DType::Q4_K,
        GgmlType::Q6_K => DType::Q6_K,
        _ => return None,
    })
}

/// A weight matrix of `rows` x `cols`: tensor number `index` of the mapped file, or its packed copy.
#[derive(Clone, Debug)]
pub(crate) struct Matrix {
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    index: usize,
    packed: Option<Arc<PackedWeights>>,
}

/// Whether matrices are repacked at load: when the kernel table has a SIMD packed kernel for the format, unless
/// `EDGEVL_NO_PACK=1` (to compare with the unpacked kernels).
fn should_pack(dtype: DType) -> bool {
    kernels().prefers_packed(dtype) && !std::env::var("EDGEVL_NO_PACK").is_ok_and(|v| v == "1")
}

/// One [`PackArena`] for all the matrices of `file` this CPU repacks (every 2-D tensor of a packable type: an
/// upper bound, as a table only read row by row stays unpacked and its share is never touched), so that nearly all
/// packed weights sit on huge pages; `None` when nothing would be packed.
pub(crate) fn pack_arena(file: &GgufFile) -> Option<Arc<PackArena>> {
    let bytes: usize = file
        .tensors()
        .iter()
        .filter_map(|t| match t.dims.as_slice() {
            &[cols, rows] => {
                let dtype = dtype_of(t.ggml_type).filter(|&d| should_pack(d))?;
                let (rows, cols) = (usize::try_from(rows).ok()?, usize::try_from(cols).ok()?);
                PackedWeights::packed_bytes(dtype, rows, cols).ok()
            }
            _ => None,
        })
        .fold(0usize, usize::saturating_add);
    // A file whose shapes overflow is refused by `Matrix::load` before anything is packed. Tensors may share
    // bytes in a GGUF file, so the sum is bounded by twice the file's length (packing adds padding only): the
    // header cannot make the arena larger than that, and matrices that do not fit get buffers of their own.
    let cap = usize::try_from(file.file_len()).unwrap_or(usize::MAX).saturating_mul(2);
    let bytes = bytes.min(cap);
    (bytes > 0 && bytes < usize::MAX).then(|| Arc::new(PackArena::new(bytes)))
}

impl Matrix {
    /// Look up `name` with GGUF dims `[cols, rows]`; repacked (into `arena` while it has room) when this CPU has a
    /// packed kernel for its type.
    pub fn load(
        file: &GgufFile,
        arena: Option<&Arc<PackArena>>,
        name: &str,
        cols: usize,
        rows: usize,
    ) -> Result<Self, ModelError> {
        Self::load_with(file, arena, name, cols, rows, true)
    }

    /// [`Matrix::load`] that never repacks: for tables only read row by row ([`Matrix::row_into`]), whose pages
    /// then stay in the file except the rows used.
    pub fn load_unpacked(file: &GgufFile, name: &str, cols: usize, rows: usize) -> Result<Self, ModelError> {
        Self::load_with(file, None, name, cols, rows, false)
    }

    fn load_with(
        file: &GgufFile,
        arena: Option<&Arc<PackArena>>,
        name: &str,
        cols: usize,
        rows: usize,
        pack: bool,
    ) -> Result<Self, ModelError> {
        let (info, _) = file.require_tensor(name, &[cols as u64, rows as u64])?;
        let dtype = dtype_of(info.ggml_type).ok_or_else(|| ModelError::UnsupportedTensorType {
            tensor: name.to_string(),
            ggml_type: info.ggml_type.name().to_string(),
        })?;
        let index = file
            .tensors()
            .iter()
            .position(|t| t.name == name)
            .ok_or_else(|| edgevl_gguf::GgufError::MissingTensor(name.to_string()))?;
        let packed = if pack && should_pack(dtype) {
            let t = &file.tensors()[index];
            let p = PackedWeights::pack_in(arena, dtype, file.tensor_data(t), rows, cols)
                .map_err(|e| ModelError::BadHparams(format!("tensor {name}: {e}")))?;
            // The packed copy replaces the mapped bytes: drop them from memory so both are never resident.
            file.release_tensor_pages(t);
            Some(Arc::new(p))
        } else {
            None
        };
        Ok(Matrix { dtype, rows, cols, index, packed })
    }

    /// The kernel view of this matrix in `file` (the file it was loaded from).
    pub fn view<'a>(&'a self, file: &'a GgufFile) -> WeightRef<'a> {
        if let Some(p) = &self.packed {
            return WeightRef::from_packed(p);
        }
        let data = file.tensor_data(&file.tensors()[self.index]);
        WeightRef { dtype: self.dtype, data, rows: self.rows, cols: self.cols, packed: None }
    }

    /// Dequantise row `r` into `out` (`cols` long).
    pub fn row_into(&self, file: &GgufFile, r: usize, out: &mut [f32]) {
        if let Some(p) = &self.packed {
            p.dequantize_row(r, out);
            return;
        }
        let data = file.tensor_data(&file.tensors()[self.index]);
        let row_bytes = data.len() / self.rows;
        dequantize_row(self.dtype, &data[r * row_bytes..(r + 1) * row_bytes], out);
    }
}

/// Load a 1-D tensor of `n` elements as f32 (norm weights, biases).
pub(crate) fn load_vector(file: &GgufFile, name: &str, n: usize) -> Result<Vec<f32>, ModelError> {
    let (info, data) = file.require_tensor(name, &[n as u64])?;
    let dtype = dtype_of(info.ggml_type).ok_or_else(|| ModelError::UnsupportedTensorType {
        tensor: name.to_string(),
        ggml_type: info.ggml_type.name().to_string(),
    })?;
    let mut out = vec![0f32; n];
    dequantize_row(dtype, data, &mut out);
    Ok(out)
}

/// Like [`load_vector`] but `None` when the tensor is absent.
pub(crate) fn load_optional_vector(
    file: &GgufFile,
    name: &str,
    n: usize,
) -> Result<Option<Vec<f32>>, ModelError> {
    if file.tensor(name).is_none() {
        return Ok(None);
    }
    load_vector(file, name, n).map(Some)
}
