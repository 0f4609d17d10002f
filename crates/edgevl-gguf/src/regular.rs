//! Opening input files safely: model files only when regular (a FIFO would block the open
//! forever, a device such as `/dev/zero` never ends), and whole-file reads bounded by a size limit.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::path::Path;

/// The error for a path that is not a regular file, saying what it is: "is a directory", or
/// "is not a regular file (a device, FIFO or socket)", followed by `then` (may be empty).
pub(crate) fn not_regular(meta: &Metadata, then: &str) -> io::Error {
    let what =
        if meta.is_dir() { "is a directory" } else { "is not a regular file (a device, FIFO or socket)" };
    io::Error::new(io::ErrorKind::InvalidInput, format!("{what}{then}"))
}

/// Opens `path` for reading if it is a regular file (symbolic links followed), checked before the
/// open; returns the file and its length.
pub fn open_regular(path: &Path) -> io::Result<(File, u64)> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(not_regular(&meta, ""));
    }
    let file = File::open(path)?;
    Ok((file, meta.len()))
}

/// Reads the regular file at `path` whole, refusing one of more than `max_bytes` (checked before
/// reading, and again while reading should it grow).
pub fn read_regular(path: &Path, max_bytes: u64) -> io::Result<Vec<u8>> {
    let (file, len) = open_regular(path)?;
    read_limited(file, len, max_bytes)
}

/// Reads the text at `path` whole: a regular file, or a stream a user points to on purpose (a
/// pipe such as `<(zcat text.gz)` or `/dev/stdin`); a directory is refused, and so is more than
/// `max_bytes` (so `/dev/zero` ends with an error).
pub fn read_text_or_stream(path: &Path, max_bytes: u64) -> io::Result<String> {
    let meta = std::fs::metadata(path)?;
    if meta.is_dir() {
        return Err(not_regular(&meta, ""));
    }
    let len = if meta.is_file() { meta.len() } else { 0 };
    utf8(read_limited(File::open(path)?, len, max_bytes)?)
}

/// Reads `file` (`len` bytes announced, 0 for a stream) to its end, refusing more than `max_bytes`.
fn read_limited(file: File, len: u64, max_bytes: u64) -> io::Result<Vec<u8>> {
    let too_large = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than the {} MiB accepted", max_bytes >> 20),
        )
    };
    if len > max_bytes {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(max_bytes + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_large());
    }
    Ok(bytes)
}

/// `bytes` as text, or an error saying it is not UTF-8 and where.
fn utf8(bytes: Vec<u8>) -> io::Result<String> {
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not UTF-8 text (byte {at} is not part of a UTF-8 character)"),
        )
    })
}

/// As [`read_regular`], as UTF-8 text.
pub fn read_regular_text(path: &Path, max_bytes: u64) -> io::Result<String> {
    utf8(read_regular(path, max_bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_limit_are_read() {
        let dir = std::env::temp_dir().join(format!("edgevl-regular-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        // Neither blocks: the FIFO is refused before it is opened.
        for (path, needle) in [(&fifo, "not a regular file"), (&dir, "is a directory")] {
            let err = read_regular(path, 1 << 20).unwrap_err();
            assert!(err.to_string().contains(needle), "{err}");
        }
        let err = read_regular(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let text = dir.join("t.txt");
        std::fs::write(&text, "héllo").unwrap();
        assert_eq!(read_regular_text(&text, 6).unwrap(), "héllo");
        assert!(read_regular(&text, 5).unwrap_err().to_string().contains("larger than"));
        std::fs::write(&text, [0xFF, 0xFE]).unwrap();
        assert!(read_regular_text(&text, 6).unwrap_err().to_string().contains("UTF-8"));
        // Texts may come through a pipe a writer feeds; /dev/zero ends at the limit.
        let writer = std::thread::spawn({
            let fifo = fifo.clone();
            move || std::fs::write(fifo, "from a pipe")
        });
        assert_eq!(read_text_or_stream(&fifo, 1 << 20).unwrap(), "from a pipe");
        writer.join().unwrap().unwrap();
        let err = read_text_or_stream(Path::new("/dev/zero"), 1 << 10).unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");
        assert!(read_text_or_stream(&dir, 1 << 10).unwrap_err().to_string().contains("is a directory"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
