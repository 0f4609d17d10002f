//! A shared view of a mutable slice for pool tasks that each write a disjoint part of it.

use std::marker::PhantomData;

/// Lets tasks of `ThreadPool::run` write disjoint ranges of one slice.
pub(crate) struct DisjointSlice<'a, T> {
    ptr: *mut T,
    len: usize,
    _borrow: PhantomData<&'a mut [T]>,
}

// SAFETY: the view is only handed out through `range_mut`, whose callers guarantee that ranges
// used concurrently never overlap, so sharing the raw pointer across threads is sound.
unsafe impl<T: Send> Sync for DisjointSlice<'_, T> {}

impl<'a, T> DisjointSlice<'a, T> {
    /// Borrow `slice` mutably for the lifetime of the view.
    pub(crate) fn new(slice: &'a mut [T]) -> Self {
        Self { ptr: slice.as_mut_ptr(), len: slice.len(), _borrow: PhantomData }
    }

    /// A mutable sub-slice `start..start + len`.
    ///
    /// # Safety
    /// No two live results may overlap (each pool task takes its own range).
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn range_mut(&self, start: usize, len: usize) -> &mut [T] {
        assert!(start.checked_add(len).is_some_and(|end| end <= self.len), "range out of bounds");
        // SAFETY: in bounds (asserted) and exclusive by the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }
}

/// Applies `f` to every `chunk`-long piece of `buf` (the last may be shorter), the pieces spread
/// over the pool's threads in runs of consecutive pieces.
pub(crate) fn par_chunks_mut(
    pool: &edgevl_kernels::ThreadPool,
    buf: &mut [f32],
    chunk: usize,
    f: &(dyn Fn(&mut [f32]) + Sync),
) {
    let chunk = chunk.max(1);
    let n = buf.len().div_ceil(chunk);
    let tasks = (4 * pool.n_threads()).min(n);
    if tasks <= 1 {
        buf.chunks_mut(chunk).for_each(f);
        return;
    }
    let per_task = n.div_ceil(tasks);
    let len = buf.len();
    let view = DisjointSlice::new(buf);
    pool.run(tasks, &|t| {
        let start = (t * per_task * chunk).min(len);
        let end = ((t + 1) * per_task * chunk).min(len);
        // SAFETY: task t alone touches elements start..end (the task ranges do not overlap).
        let part = unsafe { view.range_mut(start, end - start) };
        part.chunks_mut(chunk).for_each(f);
    });
}
