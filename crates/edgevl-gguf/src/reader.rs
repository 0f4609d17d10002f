//! Parsing and validating the GGUF header, metadata and tensor-info table.

use std::collections::HashMap;

use crate::cursor::{Ctx, Cursor};
use crate::tensor::{tensor_n_bytes, MAX_DIMS};
use crate::value_reader::{read_type, read_value, HEAP_BLOCK, MAX_RESERVE};
use crate::{GgmlType, GgufError, Metadata, TensorInfo};

/// `general.alignment`: data alignment of the tensor section.
pub const KEY_ALIGNMENT: &str = "general.alignment";

/// Alignment used when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Largest accepted `general.alignment`.
pub const MAX_ALIGNMENT: u64 = 1 << 20;
/// Smallest encoded key/value pair: key length (8), value type (4), a one-byte value.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;
/// Smallest encoded tensor info: name length (8), n_dims (4), type (4), offset (8).
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 4 + 8;
/// What a key/value pair takes in memory besides its key's bytes and its value's own
/// allocations: the key's `String` and heap block, the value, and a map entry.
const KV_MEMORY: u64 =
    (std::mem::size_of::<String>() + std::mem::size_of::<crate::Value>() + 16) as u64 + HEAP_BLOCK;
/// What a tensor info takes in memory besides its name and dimensions: the info, its index
/// entry (a name and a position, and the table's control byte), and three heap blocks (two
/// copies of the name, the dimensions).
const TENSOR_INFO_MEMORY: u64 =
    (std::mem::size_of::<TensorInfo>() + std::mem::size_of::<(String, usize)>() + 1) as u64 + 3 * HEAP_BLOCK;

/// Everything parsed from a GGUF file except the tensor bytes.
#[derive(Debug)]
pub(crate) struct Layout {
    pub(crate) version: u32,
    pub(crate) metadata: Metadata,
    pub(crate) tensors: Vec<TensorInfo>,
    pub(crate) index: HashMap<String, usize>,
    pub(crate) alignment: u64,
    pub(crate) data_offset: u64,
}

/// Parses and fully validates `buf` as a GGUF file.
pub(crate) fn parse(buf: &[u8]) -> Result<Layout, GgufError> {
    let mut cur = Cursor::new(buf);
    let version = read_preamble(&mut cur)?;
    let n_tensors_offset = cur.offset();
    let n_tensors = cur.u64(Ctx::header("tensor count"))?;
    let n_kv_offset = cur.offset();
    let n_kv = cur.u64(Ctx::header("metadata key/value count"))?;
    cur.check_count(n_kv, n_kv_offset, MIN_KV_BYTES, Ctx::header("metadata key/value count"))?;
    cur.check_count(n_tensors, n_tensors_offset, MIN_TENSOR_INFO_BYTES, Ctx::header("tensor count"))?;
    let metadata = read_metadata(&mut cur, n_kv)?;
    let alignment = alignment_of(&metadata)?;
    let (tensors, index) = read_tensor_infos(&mut cur, n_tensors)?;
    let data_offset = align_up(cur.offset(), alignment)
        .ok_or_else(|| GgufError::Overflow { what: "start of the data section".into() })?;
    let data_len = (buf.len() as u64).saturating_sub(data_offset);
    if data_offset > buf.len() as u64 && !tensors.is_empty() {
        return Err(GgufError::Truncated {
            what: "padding before the tensor data section".into(),
            offset: cur.offset(),
            needed: data_offset - cur.offset(),
            available: cur.remaining(),
        });
    }
    check_data_section(&tensors, alignment, data_len)?;
    Ok(Layout { version, metadata, tensors, index, alignment, data_offset })
}

/// Reads magic and version, refusing byte-swapped files and versions other than 2 and 3.
fn read_preamble(cur: &mut Cursor<'_>) -> Result<u32, GgufError> {
    let magic: [u8; 4] = cur.array(Ctx::header("magic"))?;
    match &magic {
        b"GGUF" => {}
        b"FUGG" => return Err(GgufError::ByteSwapped { detail: "magic reads \"FUGG\"".into() }),
        _ => return Err(GgufError::BadMagic { found: magic }),
    }
    let version = cur.u32(Ctx::header("version"))?;
    match version {
        2 | 3 => Ok(version),
        v if matches!(v.swap_bytes(), 1..=3) => {
            Err(GgufError::ByteSwapped { detail: format!("version field reads {v:#010x}") })
        }
        v => Err(GgufError::UnsupportedVersion(v)),
    }
}

/// Reads `n_kv` key/value pairs, refusing duplicate keys.
fn read_metadata(cur: &mut Cursor<'_>, n_kv: u64) -> Result<Metadata, GgufError> {
    let mut metadata = Metadata::new();
    for i in 0..n_kv {
        let key_offset = cur.offset();
        let key = cur.str(Ctx::kv("key", i))?;
        // The key, its value's slot and the map's entry.
        cur.charge(key.len() as u64 + KV_MEMORY, Ctx::key("key", key))?;
        let t = read_type(cur, Ctx::key("value type", key))?;
        let value = read_value(cur, t, Ctx::key("value", key))?;
        metadata
            .insert_new(key.to_owned(), value)
            .map_err(|(key, _)| GgufError::DuplicateKey { key, offset: Some(key_offset) })?;
    }
    Ok(metadata)
}

/// The file's alignment: `general.alignment` (any integer type) or the default of 32.
pub(crate) fn alignment_of(metadata: &Metadata) -> Result<u64, GgufError> {
    let Some(value) = metadata.get(KEY_ALIGNMENT) else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    let Some(n) = value.as_integer() else {
        return Err(GgufError::WrongType {
            key: KEY_ALIGNMENT.into(),
            expected: "u32",
            found: value.type_name(),
        });
    };
    let bad = || GgufError::BadAlignment { value: u64::try_from(n).unwrap_or(u64::MAX), max: MAX_ALIGNMENT };
    let a = u64::try_from(n).map_err(|_| bad())?;
    if a == 0 || !a.is_power_of_two() || a > MAX_ALIGNMENT {
        return Err(bad());
    }
    Ok(a)
}

/// Reads the tensor-info table, computing every tensor's size with checked arithmetic.
fn read_tensor_infos(
    cur: &mut Cursor<'_>,
    n_tensors: u64,
) -> Result<(Vec<TensorInfo>, HashMap<String, usize>), GgufError> {
    // n_tensors * MIN_TENSOR_INFO_BYTES <= bytes left was checked; the infos' memory is
    // counted before any is read, and at most MAX_RESERVE reserved.
    cur.charge(n_tensors.saturating_mul(TENSOR_INFO_MEMORY), Ctx::header("tensor count"))?;
    let cap = usize::try_from(n_tensors).unwrap_or(0).min(MAX_RESERVE);
    let mut tensors = Vec::with_capacity(cap);
    let mut index = HashMap::with_capacity(cap);
    for i in 0..n_tensors {
        let info_offset = cur.offset();
        let name = cur.str(Ctx::tensor_index("name", i))?;
        let n_dims = cur.u32(Ctx::tensor("dimension count", name))?;
        if n_dims > MAX_DIMS {
            return Err(GgufError::TooManyDims { tensor: name.to_owned(), n_dims, max: MAX_DIMS });
        }
        // The name twice (the info and the index) and the dimensions.
        cur.charge(2 * name.len() as u64 + 8 * u64::from(n_dims), Ctx::tensor("name", name))?;
        let dims =
            (0..n_dims).map(|_| cur.u64(Ctx::tensor("dimension", name))).collect::<Result<Vec<u64>, _>>()?;
        let type_id = cur.u32(Ctx::tensor("type", name))?;
        let ggml_type = GgmlType::from_id(type_id)
            .ok_or_else(|| GgufError::UnknownType { tensor: name.to_owned(), id: type_id })?;
        let offset = cur.u64(Ctx::tensor("data offset", name))?;
        let n_bytes = tensor_n_bytes(name, ggml_type, &dims)?;
        if index.insert(name.to_owned(), tensors.len()).is_some() {
            return Err(GgufError::DuplicateTensor { name: name.to_owned(), offset: Some(info_offset) });
        }
        tensors.push(TensorInfo { name: name.to_owned(), dims, ggml_type, offset, n_bytes });
    }
    Ok((tensors, index))
}

/// Checks the total data size (as llama.cpp sums it) and each tensor's alignment and bounds.
fn check_data_section(tensors: &[TensorInfo], alignment: u64, data_len: u64) -> Result<(), GgufError> {
    tensors.iter().try_fold(0u64, |total, t| {
        align_up(t.n_bytes, alignment).and_then(|padded| total.checked_add(padded)).ok_or_else(|| {
            GgufError::Overflow {
                what: format!("total size of the tensor data section (at tensor '{}')", t.name),
            }
        })
    })?;
    for t in tensors {
        if t.offset % alignment != 0 {
            return Err(GgufError::Misaligned { name: t.name.clone(), offset: t.offset, alignment });
        }
        let in_bounds = t.offset.checked_add(t.n_bytes).is_some_and(|end| end <= data_len);
        if !in_bounds {
            return Err(GgufError::TensorOutOfBounds {
                name: t.name.clone(),
                offset: t.offset,
                n_bytes: t.n_bytes,
                data_len,
            });
        }
    }
    // No two tensors share bytes (in bounds, so `offset + n_bytes` does not overflow): the data
    // section then holds every tensor once, and what is built from the tensors is bounded by
    // the file's size.
    let mut by_offset: Vec<&TensorInfo> = tensors.iter().filter(|t| t.n_bytes > 0).collect();
    by_offset.sort_by_key(|t| t.offset);
    for pair in by_offset.windows(2) {
        if pair[0].offset + pair[0].n_bytes > pair[1].offset {
            return Err(GgufError::OverlappingTensors {
                first: pair[0].name.clone(),
                second: pair[1].name.clone(),
                offset: pair[1].offset,
            });
        }
    }
    Ok(())
}

/// Rounds `x` up to a multiple of `alignment` (a nonzero power of two); `None` on overflow.
pub(crate) fn align_up(x: u64, alignment: u64) -> Option<u64> {
    let mask = alignment.checked_sub(1)?;
    x.checked_add(mask).map(|v| v & !mask)
}
