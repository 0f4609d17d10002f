//! What an image's metadata may cost: a 1x1 PNG whose colour profile inflates to 512 MiB is read
//! within the decoders' 64 MiB metadata budget (the budget of the largest accepted image, about
//! 1 GiB, once let it inflate in full), and a PNG with 5 MiB of text (which Pillow reads) still
//! decodes. The files are made here (a 512 MiB profile compresses to half a megabyte); the peak is
//! measured by a counting allocator (per thread), this test binary's only one.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::path::Path;

use edgevl_vision::{decode_image, read_dimensions, LoadLimits};

/// The system allocator, counting the bytes this thread holds and their peak since the last reset
/// (per thread: the tests of this binary run side by side, each on its own thread).
struct Counting;

thread_local! {
    /// Bytes allocated minus bytes freed by this thread (negative when it frees others' memory).
    static LIVE: Cell<isize> = const { Cell::new(0) };
    /// The largest `LIVE` since [`peak_of`] reset it.
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

/// Adds `delta` to this thread's live bytes and raises its peak (`try_with`: nothing is counted
/// while the thread's locals are torn down).
fn count(delta: isize) {
    let _ = LIVE.try_with(|live| {
        live.set(live.get() + delta);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(live.get())));
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator, which upholds
// `GlobalAlloc`'s contract; the counters are plain thread-local cells and never affect the pointers.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout is passed on as it came.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as isize));
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes this thread allocated at the peak of `f`, above what it held before it.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(before));
    let out = f();
    (out, (PEAK.with(Cell::get) - before) as usize)
}

/// A PNG chunk: length, type, data, CRC.
fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
    out
}

/// zlib of `n` zero bytes, written a mebibyte at a time.
fn zlib_zeros(n: usize) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let block = vec![0u8; 1 << 20];
    for _ in 0..n / block.len() {
        z.write_all(&block).expect("compress");
    }
    z.finish().expect("compress")
}

/// A 1x1 RGB PNG of `pixel` with `extra` chunks before its pixels.
fn png(pixel: [u8; 3], extra: &[Vec<u8>]) -> Vec<u8> {
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&1u32.to_be_bytes());
    ihdr.extend_from_slice(&1u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&[0, pixel[0], pixel[1], pixel[2]]).expect("compress");
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(chunk(b"IHDR", &ihdr));
    for c in extra {
        out.extend_from_slice(c);
    }
    out.extend(chunk(b"IDAT", &z.finish().expect("compress")));
    out.extend(chunk(b"IEND", b""));
    out
}

#[test]
fn a_bloated_colour_profile_costs_at_most_the_metadata_budget() {
    let inflated = 512 << 20;
    let mut iccp = b"icc\0\0".to_vec();
    iccp.extend(zlib_zeros(inflated));
    let bytes = png([7, 8, 9], &[chunk(b"iCCP", &iccp)]);
    let label = Path::new("icc_bomb.png");
    // The budget is 64 MiB (a growing buffer may take up to twice that); the profile 512 MiB.
    let bound = 160 << 20;
    assert!(inflated > 3 * bound);
    let (dims, peak) = peak_of(|| read_dimensions(&bytes, label));
    assert_eq!(dims.expect("header reads"), (1, 1));
    assert!(peak < bound, "reading the header allocated {peak} bytes");
    // The profile is dropped (colour profiles are ignored), the pixel kept.
    let (image, peak) = peak_of(|| decode_image(&bytes, label, &LoadLimits::default()));
    assert_eq!(image.expect("decodes").pixels(), &[7, 8, 9]);
    assert!(peak < bound, "decoding allocated {peak} bytes");
}

#[test]
fn megabytes_of_text_still_decode() {
    // Image tools store workflows of megabytes in text chunks; Pillow keeps up to 64 MiB.
    let mut text = b"workflow\0".to_vec();
    text.extend(std::iter::repeat_n(b'{', 5 << 20));
    let bytes = png([1, 2, 3], &[chunk(b"tEXt", &text)]);
    let image = decode_image(&bytes, Path::new("text.png"), &LoadLimits::default()).expect("decodes");
    assert_eq!(image.pixels(), &[1, 2, 3]);
}
