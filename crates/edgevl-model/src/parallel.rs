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

/// Applies `f(i, piece)` to every `chunk`-long piece of `buf` (the `i`-th; the last may be shorter), the pieces
/// spread over the pool's threads in runs of consecutive pieces.
pub(crate) fn par_chunks_mut(
    pool: &edgevl_kernels::ThreadPool,
    buf: &mut [f32],
    chunk: usize,
    f: &(dyn Fn(usize, &mut [f32]) + Sync),
) {
    let chunk = chunk.max(1);
    let n = buf.len().div_ceil(chunk);
    let tasks = (4 * pool.n_threads()).min(n);
    if tasks <= 1 {
        buf.chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i, c));
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
        part.chunks_mut(chunk).enumerate().for_each(|(i, c)| f(t * per_task + i, c));
    });
}

/// `x += y` (a residual), rows of `d` spread over the pool (a single row stays on this thread).
pub(crate) fn add_rows(pool: &edgevl_kernels::ThreadPool, x: &mut [f32], y: &[f32], d: usize) {
    par_chunks_mut(pool, x, d, &|i, row| edgevl_kernels::ops::add_assign(row, &y[i * d..][..d]));
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgevl_kernels::ThreadPool;

    #[test]
    fn par_chunks_mut_hands_every_piece_its_index() {
        for threads in [1, 2, 3] {
            let pool = ThreadPool::new(threads);
            for (len, chunk) in [(0, 4), (3, 10), (5, 4), (64, 4), (1000, 7), (1001, 1)] {
                // Each piece writes its elements' positions computed from its index: all right only if every
                // piece is visited once with the right index.
                let mut buf = vec![-1f32; len];
                par_chunks_mut(&pool, &mut buf, chunk, &|i, c| {
                    c.iter_mut().enumerate().for_each(|(j, v)| *v = (i * chunk + j) as f32)
                });
                assert!(
                    buf.iter().enumerate().all(|(k, &v)| v == k as f32),
                    "{threads} threads, {len}/{chunk}"
                );
            }
        }
    }

    #[test]
    fn add_rows_adds_every_row() {
        let pool = ThreadPool::new(2);
        let (d, m) = (5, 37);
        let mut x: Vec<f32> = (0..d * m).map(|i| i as f32).collect();
        let y: Vec<f32> = (0..d * m).map(|i| (i * 3) as f32).collect();
        add_rows(&pool, &mut x, &y, d);
        assert!(x.iter().enumerate().all(|(i, &v)| v == (4 * i) as f32));
    }
}
