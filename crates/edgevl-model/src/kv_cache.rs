//! The key/value cache: per layer, the keys and values of `n_ctx` positions, written at a token's
//! position and read by every later token. Each layer plane is head-major (`[n_head_kv][n_ctx][head]`,
//! [`HeadMajor`]): a decode step reads each head's keys and values as one contiguous stream, which
//! the CPU prefetches well, where a position-major plane (llama.cpp's) makes it read 256 bytes every
//! 5 KB on the 2.7B (a page, and a TLB entry, per row) at a third of the bandwidth. Stored as f16 by default (llama.cpp's default cache
//! type), f32 (exact; for reference checks and when memory allows) or Q8_0 (llama.cpp's
//! `-ctk q8_0 -ctv q8_0`: 34 bytes per 32 values, 53% of f16).
//!
//! The whole cache is allocated and its pages written once at creation (as llama.cpp clears its
//! cache buffer), so the memory a context of `n_ctx` needs is resident from the start and a
//! peak-RSS figure at `n_ctx` is the true one however much of the context a run fills.

use crate::ModelError;
use edgevl_kernels::formats::q8_0::{BlockQ8_0, QK8_0};
use edgevl_kernels::{Kernels, VecDotType};
use half::f16;
use half::slice::HalfFloatSliceExt;
use std::ops::Range;

/// Element type of the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KvType {
    /// Half precision (llama.cpp's default).
    #[default]
    F16,
    /// Single precision.
    F32,
    /// Q8_0 blocks of 32 values (llama.cpp's `q8_0` cache type); needs a head width that is a
    /// multiple of 32.
    Q8_0,
}

impl KvType {
    /// The name llama.cpp uses for the type (`-ctk` / `-ctv`).
    pub fn name(self) -> &'static str {
        match self {
            KvType::F16 => "f16",
            KvType::F32 => "f32",
            KvType::Q8_0 => "q8_0",
        }
    }

    /// Bytes one cached row of `n` values takes (`None` for a Q8_0 row that is not whole blocks,
    /// or on overflow).
    pub fn row_bytes(self, n: usize) -> Option<usize> {
        match self {
            KvType::F16 => n.checked_mul(2),
            KvType::F32 => n.checked_mul(4),
            KvType::Q8_0 => VecDotType::Q8_0.row_bytes(n),
        }
    }
}

/// A value the cache can hold.
pub(crate) trait KvElem: Copy + Send + Sync + 'static {
    fn from_f32(v: f32) -> Self;
    /// Widen a cached row to f32.
    fn row_to_f32(src: &[Self], dst: &mut [f32]);
    /// Round a row of f32 values into the cache's type.
    fn row_from_f32(src: &[f32], dst: &mut [Self]);
}

impl KvElem for f32 {
    fn from_f32(v: f32) -> Self {
        v
    }
    fn row_to_f32(src: &[Self], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
    fn row_from_f32(src: &[f32], dst: &mut [Self]) {
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
    fn row_from_f32(src: &[f32], dst: &mut [Self]) {
        dst.convert_from_f32_slice(src);
    }
}

/// A zero-filled buffer whose pages are all written (resident), as llama.cpp's cleared cache;
/// `None` when the allocator refuses it (a process memory limit, or no memory left).
fn resident_zeros<T: Copy>(n: usize, zero: T) -> Option<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).ok()?;
    // The optimiser may not turn the fill below into a lazily zeroed (`calloc`) allocation once
    // the fresh buffer has been observed.
    std::hint::black_box(&mut v);
    v.resize(n, zero);
    std::hint::black_box(&mut v);
    Some(v)
}

/// The memory this process can still get without swapping, in bytes: the system's
/// `MemAvailable` (Linux, Android), and under a cgroup memory limit (a container) what is left of
/// it; `None` where neither can be read.
fn available_memory() -> Option<u64> {
    let system = (|| {
        let info = std::fs::read_to_string("/proc/meminfo").ok()?;
        let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        kib.checked_mul(1024)
    })();
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    // The process's cgroup ("0::/path" in v2, "N:memory:/path" in v1): its limit less its use.
    // Without a limit, v2 says "max" and v1 a number near 2^63, both far above the system's.
    let left_in = |pick: fn(&str) -> Option<&str>, root: &str, limit: &str, usage: &str| -> Option<u64> {
        let path = own.lines().find_map(pick)?;
        let dir = std::path::Path::new(root).join(path.trim_start_matches('/'));
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok()?.trim().parse::<u64>().ok();
        Some(read(limit)?.saturating_sub(read(usage)?))
    };
    [
        system,
        left_in(|l| l.strip_prefix("0::"), "/sys/fs/cgroup", "memory.max", "memory.current"),
        left_in(
            |l| l.split_once(":memory:").map(|(_, p)| p),
            "/sys/fs/cgroup/memory",
            "memory.limit_in_bytes",
            "memory.usage_in_bytes",
        ),
    ]
    .into_iter()
    .flatten()
    .min()
}

/// What of `available` bytes a cache may take: all but a tenth, at least 256 MiB, kept for the
/// weights' pages and the scratch.
pub(crate) fn usable_memory(available: u64) -> u64 {
    available.saturating_sub((available / 10).max(256 << 20))
}

/// Refuses a cache of `bytes` that the available memory cannot hold with room to spare for the
/// weights' pages and the scratch (a tenth of it, at least 256 MiB): the cache's pages are all
/// written at creation, so it would otherwise end in the kernel's out-of-memory killer.
fn check_fits(bytes: u64, kv_type: KvType) -> Result<(), ModelError> {
    match available_memory() {
        Some(available) if bytes > usable_memory(available) => {
            Err(out_of_memory(kv_type, bytes, Some(available)))
        }
        _ => Ok(()),
    }
}

/// The error for a cache of `kv_type` and `bytes` the memory cannot hold (`available` bytes, or
/// refused by the allocator when `None`), saying what makes it smaller.
fn out_of_memory(kv_type: KvType, bytes: u64, available: Option<u64>) -> ModelError {
    let q8 = if kv_type == KvType::Q8_0 { "" } else { " or a q8_0 cache" };
    ModelError::OutOfMemory {
        what: format!("the KV cache ({})", kv_type.name()),
        needed: bytes,
        available,
        hint: format!("use a smaller context (-c, or ctx= in Python){q8}"),
    }
}

/// Where one head's row at one position sits in a head-major layer plane: `[n_head_kv][n_ctx][row]`
/// elements (values, or bytes of Q8_0 blocks), so one head's rows at consecutive positions are
/// consecutive and attention streams each head's keys and values from one contiguous range.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HeadMajor {
    /// Heads per position.
    n_head_kv: usize,
    /// Positions per head in a plane.
    n_ctx: usize,
    /// Elements of one head's row at one position.
    row: usize,
}

impl HeadMajor {
    /// The elements of head `g`'s rows at positions `0..n`.
    pub fn head_rows(&self, g: usize, n: usize) -> Range<usize> {
        let start = g * self.n_ctx * self.row;
        start..start + n * self.row
    }

    /// Calls `put(at, head)` for every head of the `rows` (each `n_head_kv` heads of `head_dim` values,
    /// positions from `pos0` on) with the index of its row in the plane.
    fn scatter<'a>(
        &self,
        rows: &'a [f32],
        head_dim: usize,
        pos0: usize,
        mut put: impl FnMut(usize, &'a [f32]),
    ) {
        // Row `i` of `rows` is heads `0..n_head_kv` of position `pos0 + i`: its head `g` is chunk
        // `i * n_head_kv + g`.
        for (c, head) in rows.chunks_exact(head_dim).enumerate() {
            let (i, g) = (c / self.n_head_kv, c % self.n_head_kv);
            put((g * self.n_ctx + pos0 + i) * self.row, head);
        }
    }
}

/// One layer's cached keys and values in f16 or f32, head-major ([`HeadMajor`], rows of `head_dim`
/// values).
#[derive(Clone, Copy)]
pub(crate) struct LayerKv<'a, T> {
    k: &'a [T],
    v: &'a [T],
    layout: HeadMajor,
}

impl<'a, T> LayerKv<'a, T> {
    /// The keys and values of `n_head_kv` heads of `head_dim` values over `n_ctx` positions, head-major.
    ///
    /// # Panics
    /// If `k` or `v` is not `n_head_kv * n_ctx * head_dim` values.
    #[cfg(test)]
    pub fn new(k: &'a [T], v: &'a [T], n_head_kv: usize, n_ctx: usize, head_dim: usize) -> Self {
        let n = n_head_kv * n_ctx * head_dim;
        assert!(k.len() == n && v.len() == n, "KV plane of {} values for {n}", k.len());
        LayerKv { k, v, layout: HeadMajor { n_head_kv, n_ctx, row: head_dim } }
    }

    /// Head `g`'s keys and values at positions `0..n`, `[n][head_dim]` each.
    pub fn head(&self, g: usize, n: usize) -> (&'a [T], &'a [T]) {
        let r = self.layout.head_rows(g, n);
        (&self.k[r.clone()], &self.v[r])
    }
}

/// Per-layer key and value buffers of one element type, head-major ([`HeadMajor`], rows of
/// `head_dim` values).
pub(crate) struct Planes<T> {
    k: Vec<Vec<T>>,
    v: Vec<Vec<T>>,
    layout: HeadMajor,
}

impl<T: KvElem> Planes<T> {
    fn new(n_layer: usize, n_ctx: usize, kv_dim: usize, head_dim: usize) -> Option<Self> {
        let zeros = || resident_zeros(n_ctx * kv_dim, T::from_f32(0.0));
        Some(Planes {
            k: (0..n_layer).map(|_| zeros()).collect::<Option<_>>()?,
            v: (0..n_layer).map(|_| zeros()).collect::<Option<_>>()?,
            layout: HeadMajor { n_head_kv: kv_dim / head_dim, n_ctx, row: head_dim },
        })
    }

    /// Layer `l`'s keys and values.
    pub fn layer(&self, l: usize) -> LayerKv<'_, T> {
        LayerKv { k: &self.k[l], v: &self.v[l], layout: self.layout }
    }

    /// Writes `m` rows of `kv_dim` keys and values at positions `pos0..pos0 + m`.
    fn store(&mut self, layer: usize, pos0: usize, k: &[f32], v: &[f32]) {
        let hd = self.layout.row;
        for (src, plane) in [(k, &mut self.k[layer]), (v, &mut self.v[layer])] {
            self.layout.scatter(src, hd, pos0, |at, head| T::row_from_f32(head, &mut plane[at..at + hd]));
        }
    }
}

/// Q8_0 key and value buffers, head-major ([`HeadMajor`], rows of `head_bytes`: `head_dim / 32`
/// blocks of 34 bytes).
pub(crate) struct Q8Planes {
    pub k: Vec<Vec<u8>>,
    pub v: Vec<Vec<u8>>,
    /// Values per head (a multiple of 32).
    pub head_dim: usize,
    /// Bytes of one head's row at one position.
    pub head_bytes: usize,
    layout: HeadMajor,
}

impl Q8Planes {
    /// Zeroed, resident planes of `plane_bytes` for `n_layer` layers of `n_ctx` positions of
    /// `kv_dim` values (heads of `head_dim`, a multiple of 32); `None` when the allocator refuses
    /// them.
    fn new(n_layer: usize, n_ctx: usize, kv_dim: usize, head_dim: usize, plane_bytes: usize) -> Option<Self> {
        let head_bytes = head_dim / QK8_0 * std::mem::size_of::<BlockQ8_0>();
        let zeros = || resident_zeros(plane_bytes, 0u8);
        Some(Q8Planes {
            k: (0..n_layer).map(|_| zeros()).collect::<Option<_>>()?,
            v: (0..n_layer).map(|_| zeros()).collect::<Option<_>>()?,
            head_dim,
            head_bytes,
            layout: HeadMajor { n_head_kv: kv_dim / head_dim, n_ctx, row: head_bytes },
        })
    }

    /// The bytes of head `g`'s rows at positions `0..n` in a layer plane.
    pub fn head_rows(&self, g: usize, n: usize) -> Range<usize> {
        self.layout.head_rows(g, n)
    }

    /// Quantises `m` rows of `kv_dim` keys and values into positions `pos0..pos0 + m`, as
    /// ggml-cpu's `set_rows` into a q8_0 cache does (its x86 `quantize_row_q8_0`), with the quantiser of
    /// `kernels`.
    fn store(&mut self, kernels: &Kernels, layer: usize, pos0: usize, k: &[f32], v: &[f32]) {
        let quantize = kernels.quantizer(VecDotType::Q8_0);
        let (hd, hb) = (self.head_dim, self.head_bytes);
        for (src, plane) in [(k, &mut self.k[layer]), (v, &mut self.v[layer])] {
            self.layout.scatter(src, hd, pos0, |at, head| quantize.quantize(head, &mut plane[at..at + hb]));
        }
    }
}

/// The cache's buffers in their element type.
pub(crate) enum KvPlanes {
    F16(Planes<f16>),
    F32(Planes<f32>),
    Q8_0(Q8Planes),
    /// A cache [`crate::Decoder::new_cache`] could not build: every forward pass fails with this
    /// message (use [`crate::Decoder::try_new_cache`] to get the error at creation).
    Unusable(String),
}

/// Key/value cache of one decoder, allocated once per session.
pub struct KvCache {
    n_ctx: usize,
    kv_dim: usize,
    kv_type: KvType,
    planes: KvPlanes,
    /// Positions filled so far (the next token goes here).
    len: usize,
}

impl KvCache {
    /// A cache for `n_layer` layers of `n_ctx` positions of `kv_dim` values (heads of
    /// `head_dim`). Fails when the type cannot hold such heads (Q8_0 needs `head_dim` to be a
    /// multiple of 32, `kv_dim` a multiple of `head_dim`), the size overflows, or the memory is
    /// not there: more than the system has available, or refused by the allocator.
    pub fn new(
        n_layer: usize,
        n_ctx: usize,
        kv_dim: usize,
        head_dim: usize,
        kv_type: KvType,
    ) -> Result<Self, ModelError> {
        if head_dim == 0 || !kv_dim.is_multiple_of(head_dim) {
            return Err(ModelError::BadHparams(format!(
                "KV width {kv_dim} is not a whole number of heads of width {head_dim}"
            )));
        }
        if kv_type == KvType::Q8_0 && !head_dim.is_multiple_of(QK8_0) {
            return Err(ModelError::BadHparams(format!(
                "KV cache type q8_0 stores blocks of {QK8_0} values, but this model's attention heads are \
                 {head_dim} wide (not a multiple of {QK8_0}); use cache type f16 or f32"
            )));
        }
        let overflow = || {
            ModelError::BadInput(format!(
                "a KV cache of {n_ctx} positions x {kv_dim} values x {n_layer} layers overflows memory sizes"
            ))
        };
        let per_layer = n_ctx.checked_mul(kv_dim).and_then(|n| kv_type.row_bytes(n)).ok_or_else(overflow)?;
        let total = per_layer.checked_mul(2 * n_layer).ok_or_else(overflow)?;
        check_fits(total as u64, kv_type)?;
        let planes = match kv_type {
            KvType::F16 => Planes::new(n_layer, n_ctx, kv_dim, head_dim).map(KvPlanes::F16),
            KvType::F32 => Planes::new(n_layer, n_ctx, kv_dim, head_dim).map(KvPlanes::F32),
            KvType::Q8_0 => Q8Planes::new(n_layer, n_ctx, kv_dim, head_dim, per_layer).map(KvPlanes::Q8_0),
        }
        .ok_or_else(|| out_of_memory(kv_type, total as u64, None))?;
        Ok(KvCache { n_ctx, kv_dim, kv_type, planes, len: 0 })
    }

    /// A cache that cannot be used: every forward pass with it fails with `err`'s reason.
    pub(crate) fn unusable(n_ctx: usize, kv_dim: usize, kv_type: KvType, err: &ModelError) -> Self {
        let why = match err {
            ModelError::BadHparams(s) | ModelError::BadInput(s) => s.clone(),
            e => e.to_string(),
        };
        KvCache { n_ctx, kv_dim, kv_type, planes: KvPlanes::Unusable(why), len: 0 }
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
        self.kv_type
    }

    /// Bytes held by the cache.
    pub fn size_bytes(&self) -> usize {
        let plane = |p: &Vec<Vec<u8>>| p.iter().map(Vec::len).sum::<usize>();
        match &self.planes {
            KvPlanes::F16(p) => 2 * p.k.len() * self.n_ctx * self.kv_dim * 2,
            KvPlanes::F32(p) => 2 * p.k.len() * self.n_ctx * self.kv_dim * 4,
            KvPlanes::Q8_0(p) => plane(&p.k) + plane(&p.v),
            KvPlanes::Unusable(_) => 0,
        }
    }

    /// `Err` with the reason when the cache could not be built.
    pub(crate) fn check_usable(&self) -> Result<(), ModelError> {
        match &self.planes {
            KvPlanes::Unusable(why) => Err(ModelError::BadHparams(why.clone())),
            _ => Ok(()),
        }
    }

    pub(crate) fn set_len(&mut self, len: usize) {
        debug_assert!(len <= self.n_ctx);
        self.len = len;
    }

    /// Write keys and values (`m` rows of `kv_dim`) of `layer` at positions `pos0..pos0 + m` (a Q8_0 cache
    /// quantises them with `kernels`).
    pub(crate) fn store(&mut self, kernels: &Kernels, layer: usize, pos0: usize, k: &[f32], v: &[f32]) {
        match &mut self.planes {
            KvPlanes::F16(p) => p.store(layer, pos0, k, v),
            KvPlanes::F32(p) => p.store(layer, pos0, k, v),
            KvPlanes::Q8_0(p) => p.store(kernels, layer, pos0, k, v),
            KvPlanes::Unusable(_) => {}
        }
    }

    /// The buffers (head-major: [`HeadMajor`]).
    pub(crate) fn planes(&self) -> &KvPlanes {
        &self.planes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_0_needs_heads_of_whole_blocks() {
        let err = KvCache::new(2, 8, 32, 16, KvType::Q8_0).err().expect("head width 16 is refused");
        let msg = err.to_string();
        assert!(msg.contains("q8_0") && msg.contains("16"), "{msg}");
        // f16 and f32 take any head width.
        assert!(KvCache::new(2, 8, 32, 16, KvType::F16).is_ok());
        assert!(KvCache::new(2, 8, 32, 16, KvType::F32).is_ok());
    }

    #[test]
    fn q8_0_takes_34_bytes_per_32_values() {
        let kv = KvCache::new(3, 10, 128, 64, KvType::Q8_0).unwrap();
        assert_eq!(kv.size_bytes(), 2 * 3 * 10 * 128 / 32 * 34);
        let f16 = KvCache::new(3, 10, 128, 64, KvType::F16).unwrap();
        assert_eq!(f16.size_bytes(), 2 * 3 * 10 * 128 * 2);
    }

    #[test]
    fn sizes_that_overflow_are_errors() {
        assert!(KvCache::new(2, usize::MAX / 4, 64, 64, KvType::F16).is_err());
        assert!(KvCache::new(usize::MAX / 2, 1 << 20, 64, 64, KvType::Q8_0).is_err());
    }

    #[test]
    fn a_cache_past_the_available_memory_is_refused_before_allocating() {
        // 2 x 32 layers x 2^20 positions x 4096 f32 values: 1 TiB, more than any machine here has.
        let err = KvCache::new(32, 1 << 20, 4096, 128, KvType::F32).err().expect("refused");
        let msg = err.to_string();
        assert!(matches!(err, ModelError::OutOfMemory { needed, .. } if needed == 1 << 40), "{msg}");
        assert!(
            msg.contains("1048576 MiB") && msg.contains("smaller context") && msg.contains("q8_0 cache"),
            "{msg}"
        );
        // What may hold it is said (a cache just under "available" was refused, the message reading as if it fit).
        if let Some(available) = available_memory() {
            let usable = format!("of which {} MiB may hold it", usable_memory(available) >> 20);
            assert!(msg.contains(&usable), "{msg}");
        }
        let q8 = KvCache::new(32, 1 << 20, 4096, 128, KvType::Q8_0).err().expect("refused").to_string();
        assert!(q8.contains("(q8_0)") && !q8.contains("q8_0 cache"), "{q8}");
    }

    #[test]
    fn q8_0_rows_land_head_major_and_dequantise_close() {
        let (n_ctx, hd, n_head_kv) = (4, 32, 2);
        let mut kv = KvCache::new(1, n_ctx, hd * n_head_kv, hd, KvType::Q8_0).unwrap();
        // Two positions written at 1..3; value = position * 100 + head * 10 + index / 8.
        let val = |p: usize, g: usize, d: usize| (p * 100 + g * 10 + d / 8) as f32;
        let rows: Vec<f32> = (1..3)
            .flat_map(|p| (0..n_head_kv).flat_map(move |g| (0..hd).map(move |d| val(p, g, d))))
            .collect();
        let k = Kernels::detect();
        kv.store(&k, 0, 1, &rows, &rows);
        let KvPlanes::Q8_0(p) = kv.planes() else { panic!("q8_0 planes") };
        let deq = k.format(edgevl_kernels::DType::Q8_0);
        for g in 0..n_head_kv {
            let bytes = &p.k[0][p.head_rows(g, n_ctx)];
            for pos in 0..n_ctx {
                let mut out = vec![0f32; hd];
                deq.dequantize(&bytes[pos * p.head_bytes..(pos + 1) * p.head_bytes], &mut out);
                for (d, &o) in out.iter().enumerate() {
                    let want = if (1..3).contains(&pos) { val(pos, g, d) } else { 0.0 };
                    assert!(
                        (o - want).abs() <= want.abs() / 127.0 + 1e-6,
                        "pos {pos} head {g} dim {d}: {o} vs {want}"
                    );
                }
            }
        }
    }
}
