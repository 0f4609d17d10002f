//! Typed views of GGUF tensors: matrices stay in the mapped file, small vectors are copied out.

use crate::ModelError;
use edgevl_gguf::{GgmlType, GgufFile};
use edgevl_kernels::{dequantize_row, DType, WeightRef};

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

/// A weight matrix of `rows` x `cols` that stays in the mapped file (tensor number `index`).
#[derive(Clone, Debug)]
pub(crate) struct Matrix {
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    index: usize,
}

impl Matrix {
    /// Look up `name` with GGUF dims `[cols, rows]`.
    pub fn load(file: &GgufFile, name: &str, cols: usize, rows: usize) -> Result<Self, ModelError> {
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
        Ok(Matrix { dtype, rows, cols, index })
    }

    /// The kernel view of this matrix in `file` (the file it was loaded from).
    pub fn view<'a>(&self, file: &'a GgufFile) -> WeightRef<'a> {
        let data = file.tensor_data(&file.tensors()[self.index]);
        WeightRef { dtype: self.dtype, data, rows: self.rows, cols: self.cols }
    }

    /// Dequantise row `r` into `out` (`cols` long).
    pub fn row_into(&self, file: &GgufFile, r: usize, out: &mut [f32]) {
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
