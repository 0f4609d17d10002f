//! The converter's safetensors reader on arbitrary bytes.

use std::path::Path;

/// [`edgevl_convert::safetensors::parse_header`] on `data` as a whole file; on what it accepts, the
/// promises the converter relies on before it reads any tensor: tensors in name order, each byte
/// range inside the file and exactly shape x dtype long (no overflow), the ranges contiguous from
/// the end of the header to the end of the file (nothing between, nothing after).
pub fn safetensors_header(data: &[u8]) {
    let Ok(tensors) = edgevl_convert::safetensors::parse_header(Path::new("fuzz.safetensors"), data) else {
        return;
    };
    let names: Vec<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
    assert!(names.windows(2).all(|w| w[0] < w[1]), "tensors in name order: {names:?}");
    let mut ranges: Vec<(usize, usize)> = tensors.iter().map(|t| (t.start, t.end)).collect();
    for t in &tensors {
        assert!(t.start <= t.end && t.end <= data.len(), "{}: range inside the file", t.name);
        let n = t.shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
        let bytes = n.and_then(|n| n.checked_mul(t.dtype.size()));
        assert_eq!(bytes, Some((t.end - t.start) as u64), "{}: shape x dtype = byte length", t.name);
    }
    ranges.sort_unstable();
    let mut len = [0u8; 8];
    len.copy_from_slice(&data[..8]); // accepted files have the 8-byte length
    let mut at = 8 + u64::from_le_bytes(len) as usize;
    for (a, b) in ranges {
        assert_eq!(a, at, "ranges contiguous");
        at = b;
    }
    assert_eq!(at, data.len(), "ranges end at the end of the file");
}
