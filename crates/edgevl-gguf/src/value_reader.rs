//! Decoding metadata values, with every count checked before allocation.

use crate::cursor::{Ctx, Cursor};
use crate::value::ValueType;
use crate::{Array, GgufError, Value};

/// Deepest array-of-array nesting accepted.
pub const MAX_ARRAY_DEPTH: usize = 4;

/// What a heap allocation costs at least, as the header's memory is estimated (the allocator's
/// smallest block).
pub(crate) const HEAP_BLOCK: u64 = 32;

/// Most elements (or tensor infos) reserved before they are read; a longer list grows as it is
/// read, so what is allocated follows what the file holds, not what its counts declare.
pub(crate) const MAX_RESERVE: usize = 1 << 16;

/// What one element of an array of `t` takes in memory (a string's bytes are counted as read).
fn element_memory(t: ValueType) -> u64 {
    match t {
        ValueType::Str => std::mem::size_of::<String>() as u64 + HEAP_BLOCK,
        ValueType::Array => std::mem::size_of::<Array>() as u64,
        fixed => fixed.min_encoded_size(),
    }
}

/// Reads a string and copies it, counting its memory.
fn owned_str(cur: &mut Cursor<'_>, ctx: Ctx<'_>) -> Result<String, GgufError> {
    let s = cur.str(ctx)?;
    cur.charge(s.len() as u64, ctx)?;
    Ok(s.to_owned())
}

/// Reads a value-type id.
pub(crate) fn read_type(cur: &mut Cursor<'_>, ctx: Ctx<'_>) -> Result<ValueType, GgufError> {
    let offset = cur.offset();
    let id = cur.u32(ctx)?;
    ValueType::from_id(id).ok_or_else(|| GgufError::UnknownValueType { what: ctx.to_string(), offset, id })
}

/// Reads one value of type `t`.
pub(crate) fn read_value(cur: &mut Cursor<'_>, t: ValueType, ctx: Ctx<'_>) -> Result<Value, GgufError> {
    Ok(match t {
        ValueType::U8 => Value::U8(u8::from_le_bytes(cur.array(ctx)?)),
        ValueType::I8 => Value::I8(i8::from_le_bytes(cur.array(ctx)?)),
        ValueType::U16 => Value::U16(u16::from_le_bytes(cur.array(ctx)?)),
        ValueType::I16 => Value::I16(i16::from_le_bytes(cur.array(ctx)?)),
        ValueType::U32 => Value::U32(u32::from_le_bytes(cur.array(ctx)?)),
        ValueType::I32 => Value::I32(i32::from_le_bytes(cur.array(ctx)?)),
        ValueType::F32 => Value::F32(f32::from_le_bytes(cur.array(ctx)?)),
        ValueType::U64 => Value::U64(u64::from_le_bytes(cur.array(ctx)?)),
        ValueType::I64 => Value::I64(i64::from_le_bytes(cur.array(ctx)?)),
        ValueType::F64 => Value::F64(f64::from_le_bytes(cur.array(ctx)?)),
        ValueType::Bool => Value::Bool(read_bool(cur, ctx)?),
        ValueType::Str => {
            cur.charge(element_memory(ValueType::Str), ctx)?;
            Value::Str(owned_str(cur, ctx)?)
        }
        ValueType::Array => Value::Array(read_array(cur, ctx, 1)?),
    })
}

/// Reads a bool byte, refusing anything but 0 and 1.
fn read_bool(cur: &mut Cursor<'_>, ctx: Ctx<'_>) -> Result<bool, GgufError> {
    let offset = cur.offset();
    match cur.array::<1>(ctx)? {
        [0] => Ok(false),
        [1] => Ok(true),
        [byte] => Err(GgufError::InvalidBool { what: ctx.to_string(), offset, byte }),
    }
}

/// Reads an array header (element type, count) and its elements; `depth` counts nesting.
fn read_array(cur: &mut Cursor<'_>, ctx: Ctx<'_>, depth: usize) -> Result<Array, GgufError> {
    let start = cur.offset();
    if depth > MAX_ARRAY_DEPTH {
        return Err(GgufError::NestingTooDeep {
            what: ctx.to_string(),
            offset: start,
            limit: MAX_ARRAY_DEPTH,
        });
    }
    let elem = read_type(cur, ctx)?;
    let count_offset = cur.offset();
    let count = cur.u64(ctx)?;
    cur.check_count(count, count_offset, elem.min_encoded_size(), ctx)?;
    // `count * min_encoded_size <= remaining`; the memory of the elements is counted before any
    // is read.
    cur.charge(count.saturating_mul(element_memory(elem)), ctx)?;
    let n = usize::try_from(count)
        .map_err(|_| GgufError::Overflow { what: format!("{ctx}: array length {count}") })?;
    Ok(match elem {
        ValueType::U8 => Array::U8(fixed(cur, n, ctx, u8::from_le_bytes)?),
        ValueType::I8 => Array::I8(fixed(cur, n, ctx, i8::from_le_bytes)?),
        ValueType::U16 => Array::U16(fixed(cur, n, ctx, u16::from_le_bytes)?),
        ValueType::I16 => Array::I16(fixed(cur, n, ctx, i16::from_le_bytes)?),
        ValueType::U32 => Array::U32(fixed(cur, n, ctx, u32::from_le_bytes)?),
        ValueType::I32 => Array::I32(fixed(cur, n, ctx, i32::from_le_bytes)?),
        ValueType::F32 => Array::F32(fixed(cur, n, ctx, f32::from_le_bytes)?),
        ValueType::U64 => Array::U64(fixed(cur, n, ctx, u64::from_le_bytes)?),
        ValueType::I64 => Array::I64(fixed(cur, n, ctx, i64::from_le_bytes)?),
        ValueType::F64 => Array::F64(fixed(cur, n, ctx, f64::from_le_bytes)?),
        ValueType::Bool => Array::Bool(repeat(n, || read_bool(cur, ctx))?),
        ValueType::Str => Array::Str(repeat(n, || owned_str(cur, ctx))?),
        ValueType::Array => Array::Nested(repeat(n, || read_array(cur, ctx, depth + 1))?),
    })
}

/// Reads `n` fixed-size little-endian numbers.
fn fixed<T, const N: usize>(
    cur: &mut Cursor<'_>,
    n: usize,
    ctx: Ctx<'_>,
    decode: fn([u8; N]) -> T,
) -> Result<Vec<T>, GgufError> {
    let len = (n as u64)
        .checked_mul(N as u64)
        .ok_or_else(|| GgufError::Overflow { what: format!("{ctx}: array byte size") })?;
    let bytes = cur.take(len, ctx)?;
    Ok(bytes
        .chunks_exact(N)
        .map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            decode(a)
        })
        .collect())
}

/// Calls `next` `n` times, collecting the results (`n` already checked against the file size
/// and the header's memory; at most [`MAX_RESERVE`] reserved before they are read).
fn repeat<T>(n: usize, mut next: impl FnMut() -> Result<T, GgufError>) -> Result<Vec<T>, GgufError> {
    let mut out = Vec::with_capacity(n.min(MAX_RESERVE));
    for _ in 0..n {
        out.push(next()?);
    }
    Ok(out)
}
