//! `GgufWriter`: builds GGUF v3 files that the reader (and llama.cpp) accept.

use std::collections::HashSet;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::reader::{align_up, alignment_of};
use crate::tensor::{tensor_n_bytes, MAX_DIMS};
use crate::value_reader::MAX_ARRAY_DEPTH;
use crate::{Array, AtomicFile, GgmlType, GgufError, GgufFile, Metadata, TensorInfo, Value};

/// The GGUF version written.
const VERSION: u32 = 3;

/// A tensor waiting to be written.
#[derive(Debug, Clone)]
struct PendingTensor {
    name: String,
    ggml_type: GgmlType,
    dims: Vec<u64>,
    data: Vec<u8>,
}

/// What [`GgufWriter::copy_of`] does with one tensor of the file it copies.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorEdit {
    /// Copied as it is.
    Keep,
    /// Left out.
    Drop,
    /// Written with this type, shape (ggml order) and bytes instead, under the same name.
    Replace(GgmlType, Vec<u64>, Vec<u8>),
}

/// Builder of GGUF v3 files: metadata in insertion order, then tensors in insertion order, each
/// at an offset aligned to `general.alignment` (32 unless that key is set).
#[derive(Debug, Clone, Default)]
pub struct GgufWriter {
    metadata: Metadata,
    tensors: Vec<PendingTensor>,
    names: HashSet<String>,
}

impl GgufWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// A writer holding a copy of `file`: its metadata in order (change it with
    /// [`GgufWriter::add_kv`] and [`GgufWriter::remove_kv`]) and its tensors in order, each kept,
    /// dropped or replaced as `edit` says given its info and bytes. Copying with every tensor kept
    /// writes the file's bytes again.
    pub fn copy_of(
        file: &GgufFile,
        mut edit: impl FnMut(&TensorInfo, &[u8]) -> TensorEdit,
    ) -> Result<Self, GgufError> {
        let mut w = GgufWriter { metadata: file.metadata().clone(), ..GgufWriter::default() };
        for info in file.tensors() {
            let data = file.tensor_data(info);
            match edit(info, data) {
                TensorEdit::Keep => {
                    w.add_tensor(info.name.clone(), info.ggml_type, &info.dims, data.to_vec())?
                }
                TensorEdit::Drop => continue,
                TensorEdit::Replace(t, dims, data) => w.add_tensor(info.name.clone(), t, &dims, data)?,
            };
        }
        Ok(w)
    }

    /// Removes metadata `key`, returning its value; the other keys keep their order.
    pub fn remove_kv(&mut self, key: &str) -> Option<Value> {
        self.metadata.remove(key)
    }

    /// Sets metadata `key` to `v`; setting an existing key replaces its value in place.
    pub fn add_kv(&mut self, key: impl Into<String>, v: Value) -> &mut Self {
        self.metadata.set(key.into(), v);
        self
    }

    /// Adds a tensor; `dims` are in ggml order (row length first) and `data` must be exactly
    /// the bytes that type and shape need.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        t: GgmlType,
        dims: &[u64],
        data: Vec<u8>,
    ) -> Result<&mut Self, GgufError> {
        let name = name.into();
        let n_dims = u32::try_from(dims.len()).unwrap_or(u32::MAX);
        if n_dims > MAX_DIMS {
            return Err(GgufError::TooManyDims { tensor: name, n_dims, max: MAX_DIMS });
        }
        let expected = tensor_n_bytes(&name, t, dims)?;
        if expected != data.len() as u64 {
            return Err(GgufError::DataSizeMismatch { name, expected, found: data.len() as u64 });
        }
        if !self.names.insert(name.clone()) {
            return Err(GgufError::DuplicateTensor { name, offset: None });
        }
        self.tensors.push(PendingTensor { name, ggml_type: t, dims: dims.to_vec(), data });
        Ok(self)
    }

    /// The metadata added so far.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Writes the file to `PATH.part-<pid>`, syncs it and renames it to `path`, so `path` is
    /// never left partially written; the part file is removed on failure.
    pub fn write_to_path(&self, path: impl AsRef<Path>) -> Result<(), GgufError> {
        let path = path.as_ref();
        let file =
            AtomicFile::create(path).map_err(|source| GgufError::Io { path: path.to_path_buf(), source })?;
        self.write_to_file(file)
    }

    /// Writes the file into `file`, created beforehand (so a destination that cannot be written
    /// is found before the tensors are built), and commits it.
    pub fn write_to_file(&self, mut file: AtomicFile) -> Result<(), GgufError> {
        let alignment = self.validate()?;
        let path = file.dest().to_path_buf();
        let written = self.encode(&mut file, alignment).and_then(|_| file.commit());
        written.map_err(|source| GgufError::Io { path, source })
    }

    /// The whole file as bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, GgufError> {
        let alignment = self.validate()?;
        let mut out = Vec::new();
        self.encode(&mut out, alignment)
            .map_err(|source| GgufError::Io { path: PathBuf::from("<memory>"), source })?;
        Ok(out)
    }

    /// Checks what the reader would refuse; returns the alignment to use.
    fn validate(&self) -> Result<u64, GgufError> {
        validate_metadata(&self.metadata)
    }

    /// Writes header, metadata, tensor infos and aligned tensor data.
    fn encode(&self, w: &mut impl Write, alignment: u64) -> io::Result<()> {
        let mut pos = Counter { inner: w, n: 0 };
        let infos = self
            .tensors
            .iter()
            .map(|t| (t.name.as_str(), t.ggml_type, t.dims.as_slice(), t.data.len() as u64));
        write_header(&mut pos, &self.metadata, infos, alignment)?;
        for t in &self.tensors {
            pos.write_all(&t.data)?;
            pad_to(&mut pos, alignment)?;
        }
        Ok(())
    }
}

/// Checks metadata the reader would refuse; returns the alignment to use.
pub(crate) fn validate_metadata(metadata: &Metadata) -> Result<u64, GgufError> {
    for (key, value) in metadata.iter() {
        if let Value::Array(a) = value {
            if depth(a) > MAX_ARRAY_DEPTH {
                return Err(GgufError::NestingTooDeep {
                    what: format!("value of metadata key '{key}'"),
                    offset: 0,
                    limit: MAX_ARRAY_DEPTH,
                });
            }
        }
    }
    alignment_of(metadata)
}

/// Writes the GGUF header, the metadata and the tensor infos (offsets packed at `alignment`, in the
/// order given), then pads to `alignment`: the tensor data section starts at the returned position.
pub(crate) fn write_header<'a, W: Write>(
    pos: &mut Counter<'_, W>,
    metadata: &Metadata,
    tensors: impl ExactSizeIterator<Item = (&'a str, GgmlType, &'a [u64], u64)>,
    alignment: u64,
) -> io::Result<()> {
    pos.write_all(b"GGUF")?;
    pos.write_all(&VERSION.to_le_bytes())?;
    pos.write_all(&(tensors.len() as u64).to_le_bytes())?;
    pos.write_all(&(metadata.len() as u64).to_le_bytes())?;
    for (key, value) in metadata.iter() {
        write_str(pos, key)?;
        pos.write_all(&(value.value_type() as u32).to_le_bytes())?;
        write_value(pos, value)?;
    }
    let mut offset = 0u64;
    for (name, ggml_type, dims, n_bytes) in tensors {
        write_str(pos, name)?;
        pos.write_all(&(dims.len() as u32).to_le_bytes())?;
        for d in dims {
            pos.write_all(&d.to_le_bytes())?;
        }
        pos.write_all(&ggml_type.id().to_le_bytes())?;
        pos.write_all(&offset.to_le_bytes())?;
        offset = offset.checked_add(n_bytes).and_then(|end| align_up(end, alignment)).ok_or_else(too_big)?;
    }
    pad_to(pos, alignment)
}

/// A writer that counts bytes written.
pub(crate) struct Counter<'w, W: Write> {
    /// The sink.
    pub(crate) inner: &'w mut W,
    /// Bytes written so far.
    pub(crate) n: u64,
}

impl<W: Write> Write for Counter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let k = self.inner.write(buf)?;
        self.n += k as u64;
        Ok(k)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Zero-pads to the next multiple of `alignment`.
pub(crate) fn pad_to<W: Write>(w: &mut Counter<'_, W>, alignment: u64) -> io::Result<()> {
    let target = align_up(w.n, alignment).ok_or_else(too_big)?;
    let pad = usize::try_from(target - w.n).map_err(|_| too_big())?;
    w.write_all(&vec![0u8; pad])
}

/// The error for sizes beyond `u64`.
pub(crate) fn too_big() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "GGUF file size overflows u64")
}

/// Nesting depth of an array (1 for a flat array).
fn depth(a: &Array) -> usize {
    match a {
        Array::Nested(v) => 1 + v.iter().map(depth).max().unwrap_or(0),
        _ => 1,
    }
}

/// Writes a GGUF string.
fn write_str(w: &mut impl Write, s: &str) -> io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

/// Writes a value (without its type id).
fn write_value(w: &mut impl Write, v: &Value) -> io::Result<()> {
    match v {
        Value::U8(x) => w.write_all(&x.to_le_bytes()),
        Value::I8(x) => w.write_all(&x.to_le_bytes()),
        Value::U16(x) => w.write_all(&x.to_le_bytes()),
        Value::I16(x) => w.write_all(&x.to_le_bytes()),
        Value::U32(x) => w.write_all(&x.to_le_bytes()),
        Value::I32(x) => w.write_all(&x.to_le_bytes()),
        Value::F32(x) => w.write_all(&x.to_le_bytes()),
        Value::U64(x) => w.write_all(&x.to_le_bytes()),
        Value::I64(x) => w.write_all(&x.to_le_bytes()),
        Value::F64(x) => w.write_all(&x.to_le_bytes()),
        Value::Bool(x) => w.write_all(&[u8::from(*x)]),
        Value::Str(s) => write_str(w, s),
        Value::Array(a) => write_array(w, a),
    }
}

/// Writes an array: element type, count, elements.
fn write_array(w: &mut impl Write, a: &Array) -> io::Result<()> {
    w.write_all(&(a.elem_type() as u32).to_le_bytes())?;
    w.write_all(&(a.len() as u64).to_le_bytes())?;
    fn each<T>(w: &mut impl Write, v: &[T], f: impl Fn(&T) -> Vec<u8>) -> io::Result<()> {
        v.iter().try_for_each(|x| w.write_all(&f(x)))
    }
    match a {
        Array::U8(v) => w.write_all(v),
        Array::I8(v) => each(w, v, |x| x.to_le_bytes().to_vec()),
        Array::U16(v) => each(w, v, |x| x.to_le_bytes().to_vec()),
        Array::I16(v) => each(w, v, |x| x.to_le_bytes().to_vec()),
        Array::U32(v) => each(w, v, |x| x.to_le_bytes().to_vec()),
        Array::I32(v) => each(w, v, |x| x.to_le_bytes().to_vec()),
        Array::F32(v) => each(w, v, |x| x.to_le_bytes().to_vec()),
        Array::U64(v) => each(w, v, |x| x.to_le_bytes().to_vec()),
        Array::I64(v) => each(w, v, |x| x.to_le_bytes().to_vec()),
        Array::F64(v) => each(w, v, |x| x.to_le_bytes().to_vec()),
        Array::Bool(v) => each(w, v, |x| vec![u8::from(*x)]),
        Array::Str(v) => v.iter().try_for_each(|s| write_str(w, s)),
        Array::Nested(v) => v.iter().try_for_each(|inner| write_array(w, inner)),
    }
}
