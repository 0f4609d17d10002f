//! A global allocator wrapper that records the largest single allocation request made by the
//! current thread (each test runs on its own thread), so tests can prove that hostile headers
//! never make the reader allocate hugely.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    /// Largest single allocation (or reallocation) request of this thread, in bytes.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn record(size: usize) {
    // `try_with`: allocations during thread teardown are simply not recorded.
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

/// `System`, recording request sizes per thread.
pub struct Tracking;

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Largest allocation request this thread has made so far.
pub fn largest() -> usize {
    LARGEST.with(Cell::get)
}

/// Panics if this thread ever requested more than `limit` bytes at once.
pub fn assert_no_allocation_over(limit: usize) {
    let largest = largest();
    assert!(largest <= limit, "largest allocation was {largest} bytes (limit {limit})");
}
