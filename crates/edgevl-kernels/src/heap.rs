//! What the C allocator holds: the server's `/metrics` reports it so a soak can tell a leak from
//! the allocator keeping freed memory (which resident memory counts).

/// Bytes the C allocator (which Rust's default allocator calls) has handed out and not taken back:
/// glibc's `mallinfo2()`, `uordblks + hblkhd`. Unlike resident memory it does not count freed
/// memory the allocator keeps, so it returns to its level once the work in flight ends, unless
/// something leaks. None where the call does not exist (another C library, glibc before 2.33):
/// looked up at run time so the binary still starts there.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn in_use_bytes() -> Option<u64> {
    type Mallinfo2 = unsafe extern "C" fn() -> libc::mallinfo2;
    // SAFETY: dlsym only looks a name up; the name is a NUL-terminated literal.
    let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"mallinfo2".as_ptr()) };
    if sym.is_null() {
        return None;
    }
    // SAFETY: a non-null `mallinfo2` from glibc is malloc.h's `struct mallinfo2 mallinfo2(void)`,
    // which `libc::mallinfo2` mirrors field for field; it only reads the allocator's counters.
    let info = unsafe { std::mem::transmute::<*mut libc::c_void, Mallinfo2>(sym)() };
    Some((info.uordblks + info.hblkhd) as u64)
}

/// Bytes the C allocator has handed out: not known off glibc.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn in_use_bytes() -> Option<u64> {
    None
}

/// Gives the memory the C allocator keeps after frees back to the system, where it can (glibc's
/// `malloc_trim(0)`): a KV cache is many buffers of about a megabyte, which glibc serves from its
/// heap once its mmap threshold has risen past them, and keeps when they are freed, so a process
/// that dropped caches would stay at its peak. Call after dropping something large; a no-op
/// elsewhere.
pub fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only releases free memory of the allocator's own arenas; it takes a
    // pad size and has no other precondition.
    unsafe {
        libc::malloc_trim(0);
    }
}
