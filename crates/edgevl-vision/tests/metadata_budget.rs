//! What an image's metadata may cost: a 1x1 PNG whose colour profile inflates to 64 MiB
//! (fixture from scripts/pil_reference.py) is read within the decoders' 8 MiB metadata budget,
//! where the budget of the largest accepted image (about 1 GiB) once let it inflate in full.
//! The peak is measured by a counting allocator, this test binary's only one.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use edgevl_vision::{decode_image, read_dimensions, LoadLimits};
use serde_json::Value;

/// The system allocator, counting the bytes live and their peak since the last reset.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator, which upholds
// `GlobalAlloc`'s contract; the counters are plain atomics and never affect the pointers.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout is passed on as it came.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/vision")
}

/// Bytes allocated at the peak of `f`, above what was live before it.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed) - before)
}

#[test]
fn a_bloated_colour_profile_costs_at_most_the_metadata_budget() {
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("pil_cases.json")).expect("manifest"))
            .expect("json");
    let case = &manifest["limits"];
    let path = root().join(case["icc_bomb"].as_str().expect("path"));
    let bytes = std::fs::read(&path).expect("fixture");
    let inflated = case["icc_inflated_bytes"].as_u64().expect("size") as usize;
    // The budget is 8 MiB (a growing buffer may take up to twice that); the profile would take
    // 64 MiB.
    let bound = 24 << 20;
    assert!(inflated > 2 * bound);

    let (dims, peak) = peak_of(|| read_dimensions(&bytes, &path));
    assert_eq!(dims.expect("header reads"), (1, 1));
    assert!(peak < bound, "reading the header allocated {peak} bytes");

    // The profile is dropped (colour profiles are ignored), the pixel kept.
    let (image, peak) = peak_of(|| decode_image(&bytes, &path, &LoadLimits::default()));
    let image = image.expect("decodes");
    let pixel: Vec<u8> =
        case["pixel"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u8).collect();
    assert_eq!(image.pixels(), &pixel[..]);
    assert!(peak < bound, "decoding allocated {peak} bytes");
}
