//! A validating safetensors reader over mmap.
//!
//! Layout: a little-endian `u64` header length `n`, `n` bytes of JSON (`{name: {dtype, shape,
//! data_offsets: [begin, end]}, "__metadata__": {...}}`), then the data. Checked as the GGUF reader
//! checks its files, before any tensor is touched: the header length is bounded (100 MB, and the
//! file), every shape x dtype size equals its byte range (checked arithmetic), and the ranges,
//! sorted, are contiguous from 0 to the end of the file: no gap, no overlap, nothing past the end.

use std::path::{Path, PathBuf};

use memmap2::Mmap;
use serde_json::Value as Json;

use crate::error::{ConvertError, Result};

/// Largest header accepted (the `safetensors` crate's limit).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Element types of safetensors files.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    /// bool (1 byte).
    BOOL,
    /// u8.
    U8,
    /// i8.
    I8,
    /// fp8 e5m2.
    F8_E5M2,
    /// fp8 e4m3.
    F8_E4M3,
    /// i16.
    I16,
    /// u16.
    U16,
    /// IEEE half.
    F16,
    /// bfloat16.
    BF16,
    /// i32.
    I32,
    /// u32.
    U32,
    /// f32.
    F32,
    /// f64.
    F64,
    /// i64.
    I64,
    /// u64.
    U64,
}

impl Dtype {
    const ALL: [(Dtype, &'static str, u64); 15] = [
        (Dtype::BOOL, "BOOL", 1),
        (Dtype::U8, "U8", 1),
        (Dtype::I8, "I8", 1),
        (Dtype::F8_E5M2, "F8_E5M2", 1),
        (Dtype::F8_E4M3, "F8_E4M3", 1),
        (Dtype::I16, "I16", 2),
        (Dtype::U16, "U16", 2),
        (Dtype::F16, "F16", 2),
        (Dtype::BF16, "BF16", 2),
        (Dtype::I32, "I32", 4),
        (Dtype::U32, "U32", 4),
        (Dtype::F32, "F32", 4),
        (Dtype::F64, "F64", 8),
        (Dtype::I64, "I64", 8),
        (Dtype::U64, "U64", 8),
    ];

    /// The dtype named `s` in a header.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().find(|(_, n, _)| *n == s).map(|(d, _, _)| *d)
    }

    /// Its header name.
    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(d, _, _)| *d == self).map(|(_, n, _)| *n).unwrap_or("?")
    }

    /// Bytes per element.
    pub fn size(self) -> u64 {
        Self::ALL.iter().find(|(d, _, _)| *d == self).map(|(_, _, s)| *s).unwrap_or(1)
    }
}

/// One tensor of a safetensors file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorView {
    /// Its name.
    pub name: String,
    /// Its element type.
    pub dtype: Dtype,
    /// Its shape, row-major (PyTorch order).
    pub shape: Vec<u64>,
    /// Byte range in the file.
    pub start: usize,
    /// End of the byte range (exclusive).
    pub end: usize,
}

impl TensorView {
    /// Element count.
    pub fn n_elements(&self) -> u64 {
        self.shape.iter().product()
    }
}

/// An open, validated safetensors file.
#[derive(Debug)]
pub struct SafetensorsFile {
    path: PathBuf,
    map: Mmap,
    tensors: Vec<TensorView>,
}

impl SafetensorsFile {
    /// Maps and validates `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let io = |source| ConvertError::Io { path: path.clone(), source };
        let (file, _) = edgevl_gguf::open_regular(&path).map_err(io)?;
        // SAFETY: the file is mapped read-only; like every mmap-based model reader, we rely on no
        // other process truncating or rewriting it while it is converted.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        let tensors = parse_header(&path, &map)?;
        Ok(Self { path, map, tensors })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tensors, in name order.
    pub fn tensors(&self) -> &[TensorView] {
        &self.tensors
    }

    /// The bytes of `t` (a view of this file).
    pub fn data(&self, t: &TensorView) -> &[u8] {
        &self.map[t.start..t.end]
    }

    /// Tells the kernel the pages of `[start, end)` are no longer needed, so a streamed conversion
    /// does not keep every tensor it has read resident (they stay in the page cache).
    pub fn release(&self, start: usize, end: usize) {
        const PAGE: usize = 4096;
        let lo = start / PAGE * PAGE;
        let hi = end.div_ceil(PAGE).saturating_mul(PAGE).min(self.map.len());
        if hi > lo {
            // SAFETY: MADV_DONTNEED on a read-only shared file mapping only drops the pages from
            // this process; later reads fault them in again from the file, so every `&[u8]` into
            // the map keeps reading the same bytes.
            let _ =
                unsafe { self.map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, lo, hi - lo) };
        }
    }
}

/// Parses and validates the header of a file whose bytes are `bytes` (`path` names it in errors):
/// its tensors in name order, each range inside `bytes` and as long as its shape and dtype say,
/// the ranges contiguous over the data section.
pub fn parse_header(path: &Path, bytes: &[u8]) -> Result<Vec<TensorView>> {
    let err = |tensor: Option<&str>, message: String| ConvertError::Safetensors {
        path: path.to_path_buf(),
        tensor: tensor.map(str::to_string),
        message,
    };
    let file_len = bytes.len() as u64;
    let Some(len_bytes) = bytes.get(..8) else {
        return Err(err(None, format!("file is {file_len} bytes, shorter than the 8-byte header length")));
    };
    let mut le = [0u8; 8];
    le.copy_from_slice(len_bytes);
    let n = u64::from_le_bytes(le);
    if n > MAX_HEADER_BYTES {
        return Err(err(None, format!("header length {n} is over the limit of {MAX_HEADER_BYTES} bytes")));
    }
    if n > file_len - 8 {
        return Err(err(
            None,
            format!("header length {n} runs past the end of the file ({file_len} bytes): truncated?"),
        ));
    }
    let data_start = 8 + n as usize;
    let header: Json = serde_json::from_slice(&bytes[8..data_start])
        .map_err(|e| err(None, format!("header is not valid JSON: {e}")))?;
    let Json::Object(entries) = header else {
        return Err(err(None, "header is not a JSON object".into()));
    };
    let data_len = file_len - data_start as u64;
    let mut tensors = Vec::with_capacity(entries.len());
    for (name, v) in &entries {
        if name == "__metadata__" {
            continue;
        }
        let t = Some(name.as_str());
        let dtype_s =
            v.get("dtype").and_then(Json::as_str).ok_or_else(|| err(t, "no string 'dtype'".into()))?;
        let dtype = Dtype::parse(dtype_s).ok_or_else(|| err(t, format!("unknown dtype '{dtype_s}'")))?;
        let shape = v
            .get("shape")
            .and_then(Json::as_array)
            .and_then(|a| a.iter().map(Json::as_u64).collect::<Option<Vec<u64>>>())
            .ok_or_else(|| err(t, "no 'shape' list of non-negative integers".into()))?;
        let offsets = v
            .get("data_offsets")
            .and_then(Json::as_array)
            .and_then(|a| a.iter().map(Json::as_u64).collect::<Option<Vec<u64>>>())
            .filter(|o| o.len() == 2)
            .ok_or_else(|| err(t, "no 'data_offsets' pair of non-negative integers".into()))?;
        let (begin, end) = (offsets[0], offsets[1]);
        if begin > end || end > data_len {
            return Err(err(
                t,
                format!("data_offsets [{begin}, {end}] are not inside the {data_len} data bytes of the file"),
            ));
        }
        let need = shape
            .iter()
            .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| err(t, format!("shape {shape:?} x {} overflows", dtype.name())))?;
        if need != end - begin {
            return Err(err(
                t,
                format!(
                    "shape {shape:?} of {} needs {need} bytes but data_offsets [{begin}, {end}] hold {}",
                    dtype.name(),
                    end - begin
                ),
            ));
        }
        // Both fit in the mapped file, so in usize.
        let start = data_start + begin as usize;
        tensors.push(TensorView { name: name.clone(), dtype, shape, start, end: data_start + end as usize });
    }
    // Contiguity: sorted by offset, each range starts where the previous ended, the last ends the file.
    let mut by_offset: Vec<&TensorView> = tensors.iter().collect();
    by_offset.sort_by_key(|t| (t.start, t.end));
    let mut pos = data_start;
    for t in by_offset {
        if t.start != pos {
            let what = if t.start < pos { "overlaps the tensor before it" } else { "leaves a gap before it" };
            return Err(err(
                Some(&t.name),
                format!(
                    "data_offsets [{}, {}] {what} (expected to start at {})",
                    t.start - data_start,
                    t.end - data_start,
                    pos - data_start
                ),
            ));
        }
        pos = t.end;
    }
    if pos != bytes.len() {
        return Err(err(
            None,
            format!("{} bytes after the last tensor are not covered by the header", bytes.len() - pos),
        ));
    }
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(tensors)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file image: header JSON then `data_len` zero bytes.
    fn image(header: &str, data_len: usize) -> Vec<u8> {
        let mut v = (header.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(header.as_bytes());
        v.resize(v.len() + data_len, 0);
        v
    }

    fn parse(header: &str, data_len: usize) -> Result<Vec<TensorView>> {
        parse_header(Path::new("x.safetensors"), &image(header, data_len))
    }

    #[test]
    fn valid_file_is_read_in_name_order() {
        let h = r#"{"__metadata__":{"format":"pt"},"b":{"dtype":"F32","shape":[2,3],"data_offsets":[4,28]},"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}"#;
        let t = parse(h, 28).unwrap();
        assert_eq!(t.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(t[1].shape, [2, 3]);
        assert_eq!(t[1].end - t[1].start, 24);
    }

    #[test]
    fn malformed_headers_are_errors_naming_the_tensor() {
        let cases = [
            (
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
                12,
                "overlaps",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#,
                12,
                "not inside",
            ),
            (r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, 8, "needs 12 bytes"),
            (r#"{"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}}"#, 8, "unknown dtype"),
            (r#"{"a":{"dtype":"F32","shape":[4611686018427387904,8],"data_offsets":[0,8]}}"#, 8, "overflows"),
            (r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, 8, "gap"),
        ];
        for (h, n, want) in cases {
            let e = parse(h, n).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("tensor '"), "{h}: {e}");
        }
        let e =
            parse(r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, 6).unwrap_err().to_string();
        assert!(e.contains("not covered"), "{e}");
        let mut img = image("{}", 0);
        img[..8].copy_from_slice(&1000u64.to_le_bytes());
        let e = parse_header(Path::new("t"), &img).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
        img[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(parse_header(Path::new("t"), &img).unwrap_err().to_string().contains("over the limit"));
        assert!(parse_header(Path::new("t"), &[1, 2]).is_err());
    }
}
