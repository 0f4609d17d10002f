//! Owned, zero-initialised byte buffers for repacked weights, 64-byte aligned and, when large, backed by
//! transparent huge pages (Linux); and [`PackArena`], one such buffer shared by all the packed matrices of a model.
//!
//! Decode streams every weight once per token. With 4 KiB pages the TLB misses every 4 KiB and the hardware
//! prefetchers stop at every page boundary: on a 2-core Xeon (Sapphire Rapids class) a plain read loop streams
//! 25-27 GB/s from 4 KiB pages and 34-38 GB/s from 2 MiB pages, and the packed Q4_0 decode kernel 22 GB/s vs
//! 27-28 GB/s. An anonymous mapping advised with `MADV_HUGEPAGE` before it is first touched gets 2 MiB pages for
//! every aligned 2 MiB of it, so one mapping for all of a model's matrices (rather than one per matrix, whose
//! ends each lose a partial huge page) puts nearly all weights on huge pages. The advice is only a hint: where the
//! kernel has no transparent huge pages the mapping is simply backed by small pages.

use std::sync::atomic::{AtomicUsize, Ordering};

/// A 64-byte aligned line, the allocation unit of heap buffers.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Line([u8; 64]);

/// Buffers at least this large are mapped and advised to use huge pages.
const HUGE_MIN_BYTES: usize = 2 << 20;

/// A zeroed byte buffer, 64-byte aligned (see the module documentation).
pub(crate) enum AlignedBuf {
    /// Small buffers, and large ones where no mapping could be made.
    Heap(Vec<Line>),
    /// An anonymous mapping (page-aligned), advised to use huge pages.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    Mapped(memmap2::MmapMut),
}

impl AlignedBuf {
    /// `lines * 64` zero bytes.
    pub(crate) fn zeroed_lines(lines: usize) -> Self {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let Some(bytes) = lines.checked_mul(64).filter(|&b| b >= HUGE_MIN_BYTES) {
            if let Ok(map) = memmap2::MmapMut::map_anon(bytes) {
                // A hint (see the module documentation); failure leaves small pages.
                #[cfg(target_os = "linux")]
                let _ = map.advise(memmap2::Advice::HugePage);
                return AlignedBuf::Mapped(map);
            }
        }
        AlignedBuf::Heap(vec![Line([0; 64]); lines])
    }

    /// The bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            // SAFETY: `Line` is 64 plain bytes without padding; the slice covers exactly the lines' bytes.
            AlignedBuf::Heap(v) => unsafe {
                std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), v.len() * 64)
            },
            #[cfg(any(target_os = "linux", target_os = "android"))]
            AlignedBuf::Mapped(m) => m,
        }
    }

    /// The bytes, mutably.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        match self {
            AlignedBuf::Heap(v) => {
                let n = v.len() * 64;
                // SAFETY: as in `as_slice`, with the exclusive borrow of the vector.
                unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), n) }
            }
            #[cfg(any(target_os = "linux", target_os = "android"))]
            AlignedBuf::Mapped(m) => m,
        }
    }
}

/// One zeroed, huge-page-advised buffer from which the packed matrices of a model take disjoint, 64-byte aligned
/// ranges ([`crate::packed::PackedWeights::pack_in`]); it lives as long as the last matrix packed into it.
///
/// Size it with [`crate::packed::PackedWeights::packed_bytes`] summed over the matrices; space reserved but never
/// written is never touched, so an upper bound costs address space only.
pub struct PackArena {
    /// Keeps the memory alive; never accessed through after construction except via `base`.
    _buf: AlignedBuf,
    /// Start of the buffer's bytes.
    base: *mut u8,
    cap: usize,
    used: AtomicUsize,
}

// SAFETY: the arena hands out disjoint ranges (`reserve` advances `used` atomically and never goes back); a range
// is written only through the `&mut` slice returned to the one caller that reserved it, and read only after that
// borrow ended. `base` stays valid while `_buf` lives (a heap vector is never resized, a mapping never moved).
unsafe impl Send for PackArena {}
// SAFETY: as above.
unsafe impl Sync for PackArena {}

impl std::fmt::Debug for PackArena {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackArena").field("cap", &self.cap).field("used", &self.used()).finish()
    }
}

impl PackArena {
    /// An arena of `bytes` (rounded up to whole 64-byte lines).
    pub fn new(bytes: usize) -> Self {
        let lines = bytes.div_ceil(64);
        let mut buf = AlignedBuf::zeroed_lines(lines);
        let base = buf.as_mut_slice().as_mut_ptr();
        PackArena { _buf: buf, base, cap: lines * 64, used: AtomicUsize::new(0) }
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Bytes handed out so far.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Reserves `len` bytes (rounded up to whole lines) and returns their offset, or `None` when the arena is full.
    pub(crate) fn reserve(&self, len: usize) -> Option<usize> {
        let len = len.checked_next_multiple_of(64)?;
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                u.checked_add(len).filter(|&e| e <= self.cap)
            })
            .ok()
    }

    /// The bytes `off..off + len` of a reservation.
    ///
    /// # Safety
    /// `off..off + len` lies inside one range returned by [`PackArena::reserve`], and no `&mut` slice of that
    /// range is alive.
    pub(crate) unsafe fn slice(&self, off: usize, len: usize) -> &[u8] {
        debug_assert!(off + len <= self.cap);
        // SAFETY: inside the buffer (caller), no writer alive (caller).
        unsafe { std::slice::from_raw_parts(self.base.add(off), len) }
    }

    /// The bytes of a reservation, to fill it.
    ///
    /// # Safety
    /// `off..off + len` is (inside) a range returned by [`PackArena::reserve`] to this caller, and no other slice
    /// of it is alive while the returned one is.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice_mut(&self, off: usize, len: usize) -> &mut [u8] {
        debug_assert!(off + len <= self.cap);
        // SAFETY: inside the buffer, exclusively the caller's (caller).
        unsafe { std::slice::from_raw_parts_mut(self.base.add(off), len) }
    }
}

/// Bytes of a layout from which [`fill_units`] spreads the work over several threads.
const PARALLEL_FILL_BYTES: usize = 4 << 20;

/// Fills `out`, cut into units of `unit` bytes (its length a multiple of `unit`), by `fill(index, unit)`: on the
/// calling thread, or, when `out` is at least 4 MiB, on up to 4 scoped threads each taking consecutive units (the
/// layouts made at load: packed groups, float panels).
pub(crate) fn fill_units(out: &mut [u8], unit: usize, fill: impl Fn(usize, &mut [u8]) + Sync) {
    if unit == 0 {
        return;
    }
    let units = out.len() / unit;
    let threads = if out.len() >= PARALLEL_FILL_BYTES {
        std::thread::available_parallelism().map_or(1, |n| n.get()).min(4)
    } else {
        1
    };
    let per_thread = units.div_ceil(threads).max(1);
    let fill = &fill;
    std::thread::scope(|scope| {
        for (c, chunk) in out.chunks_mut(per_thread * unit).enumerate() {
            let mut job = move || {
                for (i, dst) in chunk.chunks_exact_mut(unit).enumerate() {
                    fill(c * per_thread + i, dst);
                }
            };
            if threads == 1 {
                job();
            } else {
                scope.spawn(job);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_large_buffers_are_zeroed_aligned_and_writable() {
        for lines in [0, 1, 3, HUGE_MIN_BYTES / 64, HUGE_MIN_BYTES / 64 + 5] {
            let mut b = AlignedBuf::zeroed_lines(lines);
            assert_eq!(b.as_slice().len(), lines * 64);
            assert!(b.as_slice().iter().all(|&x| x == 0));
            assert_eq!(b.as_slice().as_ptr() as usize % 64, 0, "{lines} lines");
            if let Some(last) = b.as_mut_slice().last_mut() {
                *last = 7;
                assert_eq!(b.as_slice()[lines * 64 - 1], 7);
            }
        }
    }

    #[test]
    fn arena_reservations_are_disjoint_aligned_and_bounded() {
        let a = PackArena::new(1000);
        assert_eq!(a.capacity(), 1024);
        assert_eq!(a.reserve(1), Some(0));
        assert_eq!(a.reserve(64), Some(64));
        assert_eq!(a.reserve(65), Some(128));
        assert_eq!(a.used(), 256);
        assert_eq!(a.reserve(800), None, "past the capacity");
        assert_eq!(a.reserve(768), Some(256));
        assert_eq!(a.reserve(1), None);
        assert_eq!(a.reserve(usize::MAX), None, "overflowing length");
    }
}
