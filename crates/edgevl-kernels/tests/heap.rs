//! `heap::in_use_bytes` against allocations this test makes. Its own test binary with one test,
//! so no other test allocates between the readings.

/// A live allocation of 64 MiB shows in the count and leaves it when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn counts_a_live_allocation_and_its_release() {
    use edgevl_kernels::heap::in_use_bytes;
    let before = in_use_bytes().expect("glibc has mallinfo2");
    let block = std::hint::black_box(vec![1u8; 64 << 20]);
    let during = in_use_bytes().unwrap();
    drop(block);
    let after = in_use_bytes().unwrap();
    assert!(during >= before + (63 << 20), "{before} -> {during}");
    assert!(after + (63 << 20) <= during, "{during} -> {after}");
}
