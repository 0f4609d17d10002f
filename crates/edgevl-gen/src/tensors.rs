//! Seeded random tensors in any storage format the kernels can quantise to.

use edgevl_gguf::{GgmlType, GgufWriter};
use edgevl_kernels::{quantize_ref, DType};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Errors of model generation.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// The GGUF writer refused the model.
    #[error(transparent)]
    Gguf(#[from] edgevl_gguf::GgufError),
    /// A tensor cannot be stored in the requested type (row length not a block multiple, or
    /// no quantiser).
    #[error("tensor '{tensor}' of row length {cols} cannot be stored as {dtype}")]
    BadType {
        /// Tensor name.
        tensor: String,
        /// Row length.
        cols: usize,
        /// Requested type.
        dtype: String,
    },
}

/// The output file at `path`, created (as a part file beside it) before anything is generated.
pub(crate) fn create(path: &std::path::Path) -> Result<edgevl_gguf::AtomicFile, GenError> {
    edgevl_gguf::AtomicFile::create(path)
        .map_err(|source| GenError::Gguf(edgevl_gguf::GgufError::Io { path: path.to_path_buf(), source }))
}

/// One tensor to generate: name, GGUF dims (`dims[0]` = row length), type and value scale.
#[derive(Clone, Debug)]
pub struct TensorSpec {
    /// GGUF tensor name.
    pub name: String,
    /// GGUF dims, contiguous first.
    pub dims: Vec<u64>,
    /// Storage type.
    pub dtype: DType,
    /// Values are uniform in `[-scale, scale]`; a negative scale gives the constant `-scale`
    /// (e.g. norm weights of 1.0).
    pub scale: f32,
}

/// The bytes of `spec` filled from a generator seeded with `seed` (and the tensor's name, so
/// adding a tensor does not change the others).
pub fn random_tensor(spec: &TensorSpec, seed: u64) -> Result<(GgmlType, Vec<u8>), GenError> {
    let n: u64 = spec.dims.iter().product();
    let name_hash =
        spec.name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    let mut rng = StdRng::seed_from_u64(seed ^ name_hash);
    let values: Vec<f32> = if spec.scale < 0.0 {
        vec![-spec.scale; n as usize]
    } else {
        (0..n).map(|_| rng.gen_range(-spec.scale..=spec.scale)).collect()
    };
    let bad = || GenError::BadType {
        tensor: spec.name.clone(),
        cols: spec.dims.first().copied().unwrap_or(0) as usize,
        dtype: spec.dtype.name().to_string(),
    };
    let bytes = quantize_ref(spec.dtype, &values).ok_or_else(bad)?;
    let ggml = GgmlType::from_id(spec.dtype.ggml_type_id()).ok_or_else(bad)?;
    Ok((ggml, bytes))
}

/// llama.cpp's `general.file_type` (`LLAMA_FTYPE_MOSTLY_*`) for matrices stored as `dtype`.
pub(crate) fn file_type(dtype: DType) -> u32 {
    match dtype {
        DType::F32 => 0,
        DType::F16 => 1,
        DType::Q4_0 => 2,
        DType::Q4_1 => 3,
        DType::Q8_0 => 7,
        DType::Q5_0 => 8,
        DType::Q6_K => 18,
        DType::Q4_K => 15,
        DType::BF16 => 32,
    }
}

/// Adds the seeded random tensors of `specs` to `w` in order, calling `progress(done, total)`
/// after each one (generating a big model takes a while: callers report it).
pub fn add_random_tensors(
    w: &mut GgufWriter,
    specs: &[TensorSpec],
    seed: u64,
    mut progress: impl FnMut(usize, usize),
) -> Result<(), GenError> {
    for (i, spec) in specs.iter().enumerate() {
        let (t, bytes) = random_tensor(spec, seed)?;
        w.add_tensor(spec.name.clone(), t, &spec.dims, bytes)?;
        progress(i + 1, specs.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_and_independent_of_other_tensors() {
        let spec =
            |name: &str| TensorSpec { name: name.into(), dims: vec![64, 3], dtype: DType::Q8_0, scale: 0.5 };
        let (t, a) = random_tensor(&spec("a"), 7).unwrap();
        assert_eq!(t, GgmlType::Q8_0);
        assert_eq!(a, random_tensor(&spec("a"), 7).unwrap().1);
        assert_ne!(a, random_tensor(&spec("b"), 7).unwrap().1);
        assert_ne!(a, random_tensor(&spec("a"), 8).unwrap().1);
        assert_eq!(a.len(), 3 * 2 * 34); // 3 rows of two 34-byte Q8_0 blocks
    }

    #[test]
    fn refuses_rows_that_are_not_block_multiples() {
        let spec = TensorSpec { name: "w".into(), dims: vec![30, 2], dtype: DType::Q4_0, scale: 1.0 };
        assert!(random_tensor(&spec, 1).unwrap_err().to_string().contains("'w'"));
    }
}
