//! A tiny byte builder for hand-crafted (often hostile) GGUF files.

/// GGUF value-type ids used by the crafted files.
pub mod vt {
    pub const U8: u32 = 0;
    pub const U32: u32 = 4;
    pub const STR: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
}

/// Appends little-endian GGUF fields.
#[derive(Default, Clone)]
pub struct Craft(pub Vec<u8>);

impl Craft {
    /// `GGUF`, version, tensor count, kv count.
    pub fn header(version: u32, n_tensors: u64, n_kv: u64) -> Self {
        let mut c = Craft(b"GGUF".to_vec());
        c.u32(version).u64(n_tensors).u64(n_kv);
        c
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    /// A string with its true length.
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64).raw(s.as_bytes())
    }
    /// A `u32` key/value pair.
    pub fn kv_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.str(key).u32(vt::U32).u32(v)
    }
    /// A string key/value pair.
    pub fn kv_str(&mut self, key: &str, v: &str) -> &mut Self {
        self.str(key).u32(vt::STR).str(v)
    }
    /// A tensor info: name, dims, ggml type id, data offset.
    pub fn tensor(&mut self, name: &str, dims: &[u64], type_id: u32, offset: u64) -> &mut Self {
        self.str(name).u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(type_id).u64(offset)
    }
    /// Zero padding to a multiple of `alignment`.
    pub fn pad(&mut self, alignment: usize) -> &mut Self {
        while self.0.len() % alignment != 0 {
            self.0.push(0);
        }
        self
    }
    /// `n` filler bytes.
    pub fn zeros(&mut self, n: usize) -> &mut Self {
        self.0.resize(self.0.len() + n, 0);
        self
    }
    pub fn bytes(&self) -> Vec<u8> {
        self.0.clone()
    }
}
