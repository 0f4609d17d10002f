//! A decompression bomb: a 45 KB PNG whose header declares 12000 x 12000 pixels (144 MP, over
//! the 64 MP limit; 432 MB as RGB) is refused from its header, without the process' peak memory
//! growing by anything near the image's size. Its own test binary, so no other test's
//! allocations move the peak.

mod common;

use common::{assert_error, data_uri, image_chat, start, tiny_vlm};
use std::io::Write;

/// A valid grey PNG of `w` x `h` zero pixels, compressed row by row (small in memory).
fn zero_png(w: u32, h: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        out.extend(kind);
        out.extend(data);
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend(crc.sum().to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]); // 8-bit greyscale, deflate, no filter, no interlace
    chunk(&mut out, b"IHDR", &ihdr);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let row = vec![0u8; w as usize + 1]; // filter byte + pixels
    for _ in 0..h {
        z.write_all(&row).expect("compress");
    }
    chunk(&mut out, b"IDAT", &z.finish().expect("compress"));
    chunk(&mut out, b"IEND", &[]);
    out
}

/// Peak resident memory of this process (VmHWM), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmHWM");
    kb * 1024
}

#[test]
fn a_decompression_bomb_is_refused_from_its_header() {
    let bomb = zero_png(12_000, 12_000);
    assert!(bomb.len() < 1 << 20, "the bomb should be small: {} bytes", bomb.len());
    // The file is a real PNG: the image crate reads its header as 12000 x 12000.
    let dims =
        image::ImageReader::new(std::io::Cursor::new(&bomb)).with_guessed_format().unwrap().into_dimensions();
    assert_eq!(dims.unwrap(), (12_000, 12_000));

    let t = start(tiny_vlm());
    // Warm up: a small image through the whole path, so the baseline includes it.
    let small = data_uri(&common::png(64, 64, 9));
    t.chat_ok(&image_chat(&[(&small, None)], "Warm up.", 2));
    let before = peak_rss();
    let uri = data_uri(&bomb);
    for _ in 0..3 {
        let got = t.post("/v1/chat/completions", &image_chat(&[(&uri, None)], "What is it?", 2));
        assert_error(got, 400, Some("invalid_image"), "144000000 pixels");
        let (s, v) = t.post("/v1/images", &serde_json::json!({"image": uri}));
        assert_error((s, v), 400, Some("invalid_image"), "over the limit");
    }
    let grown = peak_rss().saturating_sub(before);
    eprintln!("peak RSS grew by {} KB", grown / 1024);
    assert!(grown < 64 << 20, "peak RSS grew by {} MB refusing a bomb", grown >> 20);
    assert_eq!(t.get("/health").0, 200);
}
