//! A bounds-checked little-endian byte cursor that never reads past its slice.

use std::fmt;

use crate::GgufError;

/// Describes the field being read, formatted only when an error is reported.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    field: &'static str,
    owner: Owner<'a>,
}

/// Whose field is being read.
#[derive(Clone, Copy)]
enum Owner<'a> {
    Header,
    KvIndex(u64),
    Key(&'a str),
    TensorIndex(u64),
    Tensor(&'a str),
}

impl<'a> Ctx<'a> {
    /// A header field.
    pub(crate) fn header(field: &'static str) -> Self {
        Self { field, owner: Owner::Header }
    }
    /// A field of the `i`-th key/value pair, before its key is known.
    pub(crate) fn kv(field: &'static str, i: u64) -> Self {
        Self { field, owner: Owner::KvIndex(i) }
    }
    /// A field of the value of `key`.
    pub(crate) fn key(field: &'static str, key: &'a str) -> Self {
        Self { field, owner: Owner::Key(key) }
    }
    /// A field of the `i`-th tensor info, before its name is known.
    pub(crate) fn tensor_index(field: &'static str, i: u64) -> Self {
        Self { field, owner: Owner::TensorIndex(i) }
    }
    /// A field of tensor `name`.
    pub(crate) fn tensor(field: &'static str, name: &'a str) -> Self {
        Self { field, owner: Owner::Tensor(name) }
    }
}

impl fmt::Display for Ctx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.owner {
            Owner::Header => write!(f, "header {}", self.field),
            Owner::KvIndex(i) => write!(f, "{} of metadata entry #{i}", self.field),
            Owner::Key(k) => write!(f, "{} of metadata key '{k}'", self.field),
            Owner::TensorIndex(i) => write!(f, "{} of tensor info #{i}", self.field),
            Owner::Tensor(n) => write!(f, "{} of tensor '{n}'", self.field),
        }
    }
}

/// Largest string length accepted (llama.cpp stores lengths in `int32_t` in places).
pub(crate) const MAX_STRING_LEN: u64 = i32::MAX as u64;

/// Most memory the parsed header (metadata and tensor infos) may take, as the reader estimates
/// it before allocating: a value can take several times its encoded size in memory (an empty
/// string is 8 bytes in the file and a 24-byte `String` in memory, a tensor info about ten times
/// its smallest encoding), so a header that fits in a large file could otherwise ask for many
/// gigabytes. The largest real vocabularies and merge lists take tens of megabytes.
pub const MAX_HEADER_MEMORY: u64 = 1 << 30;

/// Reads little-endian values from a byte slice, checking every length first.
pub(crate) struct Cursor<'b> {
    buf: &'b [u8],
    pos: usize,
    /// What is left of [`MAX_HEADER_MEMORY`].
    memory_left: u64,
}

impl<'b> Cursor<'b> {
    /// A cursor at the start of `buf`.
    pub(crate) fn new(buf: &'b [u8]) -> Self {
        Self { buf, pos: 0, memory_left: MAX_HEADER_MEMORY }
    }

    /// Counts `bytes` of memory the parsed header will hold against [`MAX_HEADER_MEMORY`],
    /// failing before anything is allocated once the header would pass it.
    pub(crate) fn charge(&mut self, bytes: u64, ctx: Ctx<'_>) -> Result<(), GgufError> {
        match self.memory_left.checked_sub(bytes) {
            Some(left) => {
                self.memory_left = left;
                Ok(())
            }
            None => Err(GgufError::HeaderTooLarge { what: ctx.to_string(), limit: MAX_HEADER_MEMORY }),
        }
    }

    /// Current offset from the start of the buffer.
    pub(crate) fn offset(&self) -> u64 {
        self.pos as u64
    }

    /// Bytes left after the current offset.
    pub(crate) fn remaining(&self) -> u64 {
        self.buf.len().saturating_sub(self.pos) as u64
    }

    /// Takes the next `n` bytes.
    pub(crate) fn take(&mut self, n: u64, ctx: Ctx<'_>) -> Result<&'b [u8], GgufError> {
        let available = self.remaining();
        let end = match usize::try_from(n) {
            Ok(n) if n as u64 <= available => self.pos + n,
            _ => {
                return Err(GgufError::Truncated {
                    what: ctx.to_string(),
                    offset: self.offset(),
                    needed: n,
                    available,
                })
            }
        };
        let out = self.buf.get(self.pos..end).unwrap_or_default();
        self.pos = end;
        Ok(out)
    }

    /// Takes exactly `N` bytes as an array.
    pub(crate) fn array<const N: usize>(&mut self, ctx: Ctx<'_>) -> Result<[u8; N], GgufError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N as u64, ctx)?);
        Ok(out)
    }

    /// Reads a `u32`.
    pub(crate) fn u32(&mut self, ctx: Ctx<'_>) -> Result<u32, GgufError> {
        self.array(ctx).map(u32::from_le_bytes)
    }

    /// Reads a `u64`.
    pub(crate) fn u64(&mut self, ctx: Ctx<'_>) -> Result<u64, GgufError> {
        self.array(ctx).map(u64::from_le_bytes)
    }

    /// Fails unless `count` entries (declared at `count_offset`) of at least `min_entry_bytes`
    /// each can fit in what remains.
    pub(crate) fn check_count(
        &self,
        count: u64,
        count_offset: u64,
        min_entry_bytes: u64,
        ctx: Ctx<'_>,
    ) -> Result<(), GgufError> {
        let fits = count.checked_mul(min_entry_bytes).is_some_and(|need| need <= self.remaining());
        if fits {
            return Ok(());
        }
        Err(GgufError::CountTooLarge {
            what: ctx.to_string(),
            count,
            offset: count_offset,
            min_entry_bytes,
            available: self.remaining(),
        })
    }

    /// Reads a GGUF string (u64 length + UTF-8 bytes) without copying.
    pub(crate) fn str(&mut self, ctx: Ctx<'_>) -> Result<&'b str, GgufError> {
        let len_offset = self.offset();
        let len = self.u64(ctx)?;
        if len > MAX_STRING_LEN {
            return Err(GgufError::StringTooLong {
                what: ctx.to_string(),
                offset: len_offset,
                len,
                limit: MAX_STRING_LEN,
            });
        }
        let start = self.offset();
        let bytes = self.take(len, ctx)?;
        std::str::from_utf8(bytes)
            .map_err(|_| GgufError::InvalidUtf8 { what: ctx.to_string(), offset: start })
    }
}
