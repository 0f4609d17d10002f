//! A validating safetensors reader over mmap.
//!
//! Layout: a little-endian `u64` header length `n`, `n` bytes of JSON (`{name: {dtype, shape,
//! data_offsets: [begin, end]}, "__metadata__": {...}}`), then the data. Checked as the GGUF reader
//! checks its files, before any tensor is touched: the header length is bounded (100 MB, and the
//! file), every shape x dtype size equals its byte range (checked arithmetic), and the ranges,
//! sorted, are contiguous from 0 to the end of the file: no gap, no overlap, nothing past the end.
//! The header is streamed, not built as a JSON tree: a shape has at most [`MAX_RANK`] dimensions,
//! `__metadata__` is checked to be an object of strings and dropped, and the tensors of all the
//! files of a checkpoint together stay within one [`HeaderBudget`].

use std::fmt;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use serde::de::{self, Deserializer as _, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::error::{ConvertError, Result};

/// Largest header accepted (the `safetensors` crate's limit).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Most dimensions a tensor may have. Tensors of real checkpoints have at most 5 (a video patch
/// embedding's Conv3d weight) and GGUF holds 4 once trailing ones are trimmed; 8 accepts any real
/// file while a header of a million `1`s cannot become a million-element shape.
pub const MAX_RANK: usize = 8;

/// Most memory the parsed headers of all the files of one checkpoint may take, estimated per
/// tensor before it is kept: the GGUF reader's budget (`edgevl_gguf::MAX_HEADER_MEMORY`, 1 GiB).
/// The largest public checkpoints have about 10^5 tensors, a few tens of MB.
pub const MAX_HEADER_MEMORY: u64 = edgevl_gguf::MAX_HEADER_MEMORY;

/// Memory charged per tensor besides its name and shape: its [`TensorView`] with the spare
/// capacity of the vector holding it, the checkpoint's order and by-name entries (which copy the
/// name once more) and the allocator's bookkeeping.
const TENSOR_OVERHEAD: u64 = 256;

/// What is left of [`MAX_HEADER_MEMORY`] for the headers of one checkpoint: every file parsed with
/// it charges its tensors, so many shards cannot add up to more than one budget.
#[derive(Debug)]
pub struct HeaderBudget {
    left: u64,
}

impl Default for HeaderBudget {
    fn default() -> Self {
        Self { left: MAX_HEADER_MEMORY }
    }
}

impl HeaderBudget {
    /// Charges a tensor named `name` of `rank` dimensions; false (nothing charged) when the
    /// budget cannot hold it.
    fn charge(&mut self, name: &str, rank: usize) -> bool {
        let cost = 2 * name.len() as u64 + 8 * rank as u64 + TENSOR_OVERHEAD;
        match self.left.checked_sub(cost) {
            Some(left) => {
                self.left = left;
                true
            }
            None => false,
        }
    }
}

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
    /// Maps and validates `path`, charging its tensors to `budget` (shared by the files of a
    /// checkpoint).
    pub fn open(path: impl AsRef<Path>, budget: &mut HeaderBudget) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let io = |source| ConvertError::Io { path: path.clone(), source };
        let (file, _) = edgevl_gguf::open_regular(&path).map_err(io)?;
        // SAFETY: the file is mapped read-only; like every mmap-based model reader, we rely on no
        // other process truncating or rewriting it while it is converted.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        let tensors = parse_header_within(&path, &map, budget)?;
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
/// the ranges contiguous over the data section; within a [`HeaderBudget`] of its own.
pub fn parse_header(path: &Path, bytes: &[u8]) -> Result<Vec<TensorView>> {
    parse_header_within(path, bytes, &mut HeaderBudget::default())
}

/// [`parse_header`], charging the tensors to `budget`.
pub fn parse_header_within(path: &Path, bytes: &[u8], budget: &mut HeaderBudget) -> Result<Vec<TensorView>> {
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
    let mut header =
        Header { path, data_start, data_len: file_len - data_start as u64, budget, failure: None };
    let mut de = serde_json::Deserializer::from_slice(&bytes[8..data_start]);
    let parsed = (&mut de).deserialize_map(&mut header).and_then(|t| de.end().map(|()| t));
    let mut tensors = match (parsed, header.failure) {
        (Ok(t), _) => t,
        (Err(_), Some(failure)) => return Err(failure),
        (Err(e), None) => return Err(err(None, format!("header is not a JSON object of tensors: {e}"))),
    };
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
    if let Some(w) = tensors.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(err(Some(&w[0].name), "named twice in the header".into()));
    }
    Ok(tensors)
}

/// The header as it streams through serde: each tensor checked and charged as it is read; a
/// problem of a tensor or of `__metadata__` is kept in `failure` (serde's error cannot name it).
struct Header<'a> {
    path: &'a Path,
    data_start: usize,
    data_len: u64,
    budget: &'a mut HeaderBudget,
    failure: Option<ConvertError>,
}

impl Header<'_> {
    /// Records the failure (the first one is kept) and returns the error that stops serde.
    fn fail<E: de::Error>(&mut self, tensor: Option<&str>, message: String) -> E {
        self.failure.get_or_insert_with(|| ConvertError::Safetensors {
            path: self.path.to_path_buf(),
            tensor: tensor.map(str::to_string),
            message,
        });
        E::custom("invalid safetensors header")
    }

    /// The view of tensor `name` read as `raw`, or what is wrong with it.
    fn view(&self, name: String, raw: RawEntry) -> std::result::Result<TensorView, String> {
        let dtype_s = raw.dtype.ok_or("no string 'dtype'")?;
        let dtype = Dtype::parse(&dtype_s).ok_or_else(|| format!("unknown dtype '{dtype_s}'"))?;
        let shape = match raw.shape {
            Some(Shape::Dims(d)) => d,
            Some(Shape::TooLong) => return Err(format!("shape has more than {MAX_RANK} dimensions")),
            None => return Err("no 'shape' list of non-negative integers".into()),
        };
        let [begin, end] = raw.data_offsets.ok_or("no 'data_offsets' pair of non-negative integers")?;
        let data_len = self.data_len;
        if begin > end || end > data_len {
            return Err(format!(
                "data_offsets [{begin}, {end}] are not inside the {data_len} data bytes of the file"
            ));
        }
        let need = shape
            .iter()
            .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| format!("shape {shape:?} x {} overflows", dtype.name()))?;
        if need != end - begin {
            return Err(format!(
                "shape {shape:?} of {} needs {need} bytes but data_offsets [{begin}, {end}] hold {}",
                dtype.name(),
                end - begin
            ));
        }
        // Both fit in the mapped file, so in usize.
        let (start, end) = (self.data_start + begin as usize, self.data_start + end as usize);
        Ok(TensorView { name, dtype, shape, start, end })
    }
}

impl<'de> Visitor<'de> for &mut Header<'_> {
    type Value = Vec<TensorView>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of tensors")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Value, A::Error> {
        let mut tensors = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            if name == "__metadata__" {
                if let Err(e) = map.next_value::<StringMap>() {
                    return Err(self.fail(None, format!("'__metadata__' is not an object of strings: {e}")));
                }
                continue;
            }
            let t = Some(name.as_str());
            let raw = match map.next_value::<RawEntry>() {
                Ok(raw) => raw,
                Err(e) => {
                    return Err(self.fail(t, format!("not an object of dtype, shape and data_offsets: {e}")))
                }
            };
            let rank = match &raw.shape {
                Some(Shape::Dims(d)) => d.len(),
                _ => 0,
            };
            if !self.budget.charge(&name, rank) {
                return Err(self.fail(
                    t,
                    format!(
                        "the checkpoint's headers describe more tensors than fit their budget of {} MiB",
                        MAX_HEADER_MEMORY >> 20
                    ),
                ));
            }
            match self.view(name.clone(), raw) {
                Ok(view) => tensors.push(view),
                Err(message) => return Err(self.fail(Some(&name), message)),
            }
        }
        Ok(tensors)
    }
}

/// A shape as read: its dimensions, or more than [`MAX_RANK`] of them (the rest skipped unread).
enum Shape {
    Dims(Vec<u64>),
    TooLong,
}

/// The fields of one tensor's entry the converter reads (others are skipped).
#[derive(serde::Deserialize)]
struct RawEntry {
    dtype: Option<String>,
    shape: Option<Shape>,
    data_offsets: Option<[u64; 2]>,
}

impl<'de> de::Deserialize<'de> for Shape {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Shape;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of non-negative integers")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Shape, A::Error> {
                let mut dims = Vec::new();
                while let Some(x) = seq.next_element::<u64>()? {
                    if dims.len() == MAX_RANK {
                        while seq.next_element::<IgnoredAny>()?.is_some() {}
                        return Ok(Shape::TooLong);
                    }
                    dims.push(x);
                }
                Ok(Shape::Dims(dims))
            }
        }
        d.deserialize_seq(V)
    }
}

/// `__metadata__`, checked to be an object of strings as safetensors defines it, and dropped.
struct StringMap;

impl<'de> de::Deserialize<'de> for StringMap {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_map(StringMap)
    }
}

impl<'de> Visitor<'de> for StringMap {
    type Value = StringMap;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of strings")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<StringMap, A::Error> {
        while map.next_entry::<IgnoredAny, Str>()?.is_some() {}
        Ok(StringMap)
    }
}

/// A string, checked and dropped.
struct Str;

impl<'de> de::Deserialize<'de> for Str {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_str(Str)
    }
}

impl Visitor<'_> for Str {
    type Value = Str;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, _: &str) -> std::result::Result<Str, E> {
        Ok(Str)
    }
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

    #[test]
    fn header_memory_is_bounded_by_rank_metadata_and_budget() {
        // A shape of a million ones is refused after MAX_RANK of them, not built.
        let ones = vec!["1"; 1_000_000].join(",");
        let e = parse(&format!(r#"{{"a":{{"dtype":"F32","shape":[{ones}],"data_offsets":[0,4]}}}}"#), 4)
            .unwrap_err()
            .to_string();
        assert!(e.contains("tensor 'a'") && e.contains("more than 8 dimensions"), "{e}");
        let rank8 =
            format!(r#"{{"a":{{"dtype":"F32","shape":[{}],"data_offsets":[0,4]}}}}"#, ["1"; 8].join(","));
        assert_eq!(parse(&rank8, 4).unwrap()[0].shape.len(), 8);
        // __metadata__ is an object of strings (safetensors' Dict[str, str]), or the file is refused.
        for meta in ["[1,1,1]", r#"{"a":[{}]}"#, r#"{"a":1}"#, "7"] {
            let e = parse(&format!(r#"{{"__metadata__":{meta}}}"#), 0).unwrap_err().to_string();
            assert!(e.contains("'__metadata__' is not an object of strings"), "{meta}: {e}");
        }
        // A name twice would hide a tensor.
        let twice = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;
        assert!(parse(twice, 8).unwrap_err().to_string().contains("named twice"));
        // One budget across the files of a checkpoint: the second file's tensors no longer fit.
        let two = r#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"b":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}"#;
        let mut budget = HeaderBudget { left: 3 * (TENSOR_OVERHEAD + 10) };
        parse_header_within(Path::new("1.safetensors"), &image(two, 0), &mut budget).unwrap();
        let e = parse_header_within(Path::new("2.safetensors"), &image(two, 0), &mut budget)
            .unwrap_err()
            .to_string();
        assert!(e.contains("2.safetensors") && e.contains("tensor 'b'") && e.contains("budget"), "{e}");
    }
}
