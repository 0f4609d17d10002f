//! The key/value cache: per layer, `n_ctx` rows of `kv_dim` values, written at a token's
//! position and read by every later token. Stored as f16 by default (llama.cpp's default cache
//! type) or f32 (exact; for reference checks and when memory allows).

use half::f16;
use half::slice::HalfFloatSliceExt;

/// Element type of the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KvType {
    /// Half precision (llama.cpp's default).
    #[default]
    F16,
    /// Single precision.
    F32,
}

/// A value the cache can hold.
pub(crate) trait KvElem: Copy + Send + Sync + 'static {
    fn from_f32(v: f32) -> Self;
    /// Widen a cached row to f32.
    fn row_to_f32(src: &[Self], dst: &mut [f32]);
}

impl KvElem for f32 {
    fn from_f32(v: f32) -> Self {
        v
    }
    fn row_to_f32(src: &[Self], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
}

impl KvElem for f16 {
    fn from_f32(v: f32) -> Self {
        f16::from_f32(v)
    }
    fn row_to_f32(src: &[Self], dst: &mut [f32]) {
        src.convert_to_f32_slice(dst);
    }
}

/// Per-layer key and value buffers of one element type, `[n_layer][n_ctx * kv_dim]` each.
pub(crate) struct Planes<T> {
    pub k: Vec<Vec<T>>,
    pub v: Vec<Vec<T>>,
}

impl<T: KvElem> Planes<T> {
    fn new(n_layer: usize, n: usize) -> Self {
        let zeros = || vec![T::from_f32(0.0); n];
        Planes { k: (0..n_layer).map(|_| zeros()).collect(), v: (0..n_layer).map(|_| zeros()).collect() }
    }

    fn store(&mut self, layer: usize, start: usize, k: &[f32], v: &[f32]) {
        for (dst, &src) in self.k[layer][start..start + k.len()].iter_mut().zip(k) {
            *dst = T::from_f32(src);
        }
        for (dst, &src) in self.v[layer][start..start + v.len()].iter_mut().zip(v) {
            *dst = T::from_f32(src);
        }
    }
}

/// The cache's buffers in their element type.
pub(crate) enum KvPlanes {
    F16(Planes<f16>),
    F32(Planes<f32>),
}

/// Key/value cache of one decoder, allocated once per session.
pub struct KvCache {
    n_ctx: usize,
    kv_dim: usize,
    planes: KvPlanes,
    /// Positions filled so far (the next token goes here).
    len: usize,
}

impl KvCache {
    /// A cache for `n_layer` layers of `n_ctx` positions of width `kv_dim`.
    pub fn new(n_layer: usize, n_ctx: usize, kv_dim: usize, kv_type: KvType) -> Self {
        let n = n_ctx * kv_dim;
        let planes = match kv_type {
            KvType::F16 => KvPlanes::F16(Planes::new(n_layer, n)),
            KvType::F32 => KvPlanes::F32(Planes::new(n_layer, n)),
        };
        KvCache { n_ctx, kv_dim, planes, len: 0 }
    }

    /// Context size in positions.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Positions filled.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forget positions from `len` on (e.g. `0` to reset the session).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Element type.
    pub fn kv_type(&self) -> KvType {
        match self.planes {
            KvPlanes::F16(_) => KvType::F16,
            KvPlanes::F32(_) => KvType::F32,
        }
    }

    /// Bytes held by the cache.
    pub fn size_bytes(&self) -> usize {
        let (layers, elem) = match &self.planes {
            KvPlanes::F16(p) => (p.k.len(), 2),
            KvPlanes::F32(p) => (p.k.len(), 4),
        };
        2 * layers * self.n_ctx * self.kv_dim * elem
    }

    pub(crate) fn set_len(&mut self, len: usize) {
        debug_assert!(len <= self.n_ctx);
        self.len = len;
    }

    /// Write keys and values (`m` rows of `kv_dim`) of `layer` at positions `pos0..pos0 + m`.
    pub(crate) fn store(&mut self, layer: usize, pos0: usize, k: &[f32], v: &[f32]) {
        let start = pos0 * self.kv_dim;
        match &mut self.planes {
            KvPlanes::F16(p) => p.store(layer, start, k, v),
            KvPlanes::F32(p) => p.store(layer, start, k, v),
        }
    }

    /// The buffers (row `p` of a layer is position `p`).
    pub(crate) fn planes(&self) -> &KvPlanes {
        &self.planes
    }

    /// Width of one cached row.
    pub(crate) fn kv_dim(&self) -> usize {
        self.kv_dim
    }
}
