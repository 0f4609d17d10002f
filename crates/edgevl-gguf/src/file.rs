//! `GgufFile`: a validated GGUF file backed by a read-only memory map or an owned buffer.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use memmap2::Mmap;

use crate::reader::{parse, Layout};
use crate::{GgufError, Metadata, TensorInfo};

/// The bytes of a GGUF file.
enum Backing {
    Mmap(Mmap),
    Bytes(Vec<u8>),
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Self::Mmap(m) => m,
            Self::Bytes(b) => b,
        }
    }
}

/// An opened, fully validated GGUF file (versions 2 and 3, little-endian).
///
/// All counts, lengths, shapes, offsets and sizes were checked at open, so tensor access is
/// infallible. `Debug` prints a summary, not the bytes.
pub struct GgufFile {
    backing: Backing,
    version: u32,
    metadata: Metadata,
    tensors: Vec<TensorInfo>,
    index: HashMap<String, usize>,
    alignment: u64,
    data_offset: u64,
}

impl GgufFile {
    /// Memory-maps `path` read-only and validates it.
    ///
    /// The file must not be modified while it is open (the mapping would change under us).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        let path = path.as_ref();
        let io = |source| GgufError::Io { path: path.to_path_buf(), source };
        let (file, len) = crate::open_regular(path).map_err(io)?;
        if len == 0 {
            return Self::from_backing(Backing::Bytes(Vec::new()));
        }
        // SAFETY: the map is read-only and private to this value; like every mmap reader we
        // rely on the file not being truncated or rewritten while it is open (documented above).
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        Self::from_backing(Backing::Mmap(map))
    }

    /// Validates an in-memory GGUF file.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, GgufError> {
        Self::from_backing(Backing::Bytes(bytes))
    }

    fn from_backing(backing: Backing) -> Result<Self, GgufError> {
        let Layout { version, metadata, tensors, index, alignment, data_offset } = parse(backing.bytes())?;
        Ok(Self { backing, version, metadata, tensors, index, alignment, data_offset })
    }

    /// GGUF format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The metadata key/value pairs, in file order.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The tensor infos, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// Data alignment (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute file offset of the tensor data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Total file size in bytes.
    pub fn file_len(&self) -> u64 {
        self.backing.bytes().len() as u64
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.index.get(name).and_then(|&i| self.tensors.get(i))
    }

    /// The bytes of a tensor of this file (empty if `info` does not lie inside this file, which
    /// cannot happen for infos obtained from this file).
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        let range = (|| {
            let start = usize::try_from(self.data_offset.checked_add(info.offset)?).ok()?;
            let end = start.checked_add(usize::try_from(info.n_bytes).ok()?)?;
            Some(start..end)
        })();
        range.and_then(|r| self.backing.bytes().get(r)).unwrap_or_default()
    }

    /// Drops the resident pages of a tensor's bytes from this process (`madvise(MADV_DONTNEED)` on the whole
    /// pages inside its range), after its contents were copied elsewhere (e.g. repacked weights). The bytes stay
    /// readable: the mapping is read-only and private, so a later access reads them from the file again. Does
    /// nothing for an in-memory file or off Unix; errors of the advice are ignored (it is only a hint).
    pub fn release_tensor_pages(&self, info: &TensorInfo) {
        #[cfg(unix)]
        if let Backing::Mmap(map) = &self.backing {
            let data = self.tensor_data(info);
            if data.is_empty() {
                return;
            }
            const PAGE: usize = 4096;
            let start = data.as_ptr() as usize - map.as_ptr() as usize;
            let end = start + data.len();
            // Only whole pages inside the tensor, so neighbouring tensors keep theirs.
            let (a, b) = (start.next_multiple_of(PAGE), end / PAGE * PAGE);
            if b > a {
                // SAFETY: `a..b` lies inside the map (inside the tensor's range, checked by `tensor_data`). The map is
                // a read-only private file mapping that is never written, so MADV_DONTNEED only drops clean pages
                // that the kernel reads back from the file on a later access: no reference observes a change.
                let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, a, b - a) };
            }
        }
    }

    /// The tensor `name` and its bytes, checking its dims (ggml order) equal `dims` up to
    /// trailing ones ([`TensorInfo::shape`]).
    pub fn require_tensor(&self, name: &str, dims: &[u64]) -> Result<(&TensorInfo, &[u8]), GgufError> {
        let info = self.tensor(name).ok_or_else(|| GgufError::MissingTensor(name.to_string()))?;
        if info.shape() != crate::tensor::trim_ones(dims) {
            return Err(GgufError::ShapeMismatch {
                name: name.to_string(),
                expected: dims.to_vec(),
                found: info.dims.clone(),
            });
        }
        Ok((info, self.tensor_data(info)))
    }

    /// The `general.architecture` string, e.g. `"llama"`.
    pub fn architecture(&self) -> Result<&str, GgufError> {
        self.metadata.get_str(crate::KEY_ARCHITECTURE)
    }
}

impl fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.version)
            .field("n_kv", &self.metadata.len())
            .field("n_tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_offset)
            .field("file_len", &self.file_len())
            .field("mmap", &matches!(self.backing, Backing::Mmap(_)))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gguf_file_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<GgufFile>();
    }

    #[test]
    fn debug_is_a_summary() {
        let mut bytes = b"GGUF".to_vec();
        bytes.extend_from_slice(&3u32.to_le_bytes());
        bytes.extend_from_slice(&[0; 16]);
        let f = GgufFile::from_bytes(bytes).map(|f| format!("{f:?}")).ok();
        assert_eq!(
            f.as_deref(),
            Some("GgufFile { version: 3, n_kv: 0, n_tensors: 0, alignment: 32, data_offset: 32, file_len: 24, mmap: false }")
        );
    }
}
