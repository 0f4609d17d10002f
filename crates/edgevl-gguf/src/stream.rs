//! Streaming output: [`GgufStreamWriter`] writes the header (with every tensor's type, shape and
//! offset, known up front) and then the tensor data one piece at a time, so a converter never holds
//! more than the piece it is writing; [`AtomicFile`] is a file written beside its destination and
//! renamed onto it only when complete.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::tensor::{tensor_n_bytes, MAX_DIMS};
use crate::writer::{pad_to, validate_metadata, write_header, Counter};
use crate::{GgmlType, GgufError, Metadata};

/// Name, type and shape of a tensor to be streamed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// The tensor's GGUF name.
    pub name: String,
    /// Its element type.
    pub ggml_type: GgmlType,
    /// Its dims in ggml order (row length first).
    pub dims: Vec<u64>,
}

impl TensorSpec {
    /// Bytes the tensor's data takes (checked).
    pub fn n_bytes(&self) -> Result<u64, GgufError> {
        let n_dims = u32::try_from(self.dims.len()).unwrap_or(u32::MAX);
        if n_dims > MAX_DIMS {
            return Err(GgufError::TooManyDims { tensor: self.name.clone(), n_dims, max: MAX_DIMS });
        }
        tensor_n_bytes(&self.name, self.ggml_type, &self.dims)
    }
}

/// Writes a GGUF v3 file to `W` in one pass: [`new`](Self::new) writes the header, metadata and
/// tensor infos; [`write_data`](Self::write_data) appends the bytes of the tensors in the order
/// they were declared (any number of calls per tensor), padding each to the alignment;
/// [`finish`](Self::finish) checks every declared byte was written.
#[derive(Debug)]
pub struct GgufStreamWriter<W: Write> {
    sink: W,
    pos: u64,
    alignment: u64,
    /// (name, bytes) of each declared tensor.
    sizes: Vec<(String, u64)>,
    current: usize,
    done_in_current: u64,
}

impl<W: Write> GgufStreamWriter<W> {
    /// Validates the metadata and the tensor list (shapes, sizes, unique names) and writes the
    /// header to `sink`.
    pub fn new(mut sink: W, metadata: &Metadata, tensors: &[TensorSpec]) -> Result<Self, GgufError> {
        let alignment = validate_metadata(metadata)?;
        let mut names = HashSet::new();
        let mut sizes = Vec::with_capacity(tensors.len());
        for t in tensors {
            if !names.insert(t.name.as_str()) {
                return Err(GgufError::DuplicateTensor { name: t.name.clone(), offset: None });
            }
            sizes.push((t.name.clone(), t.n_bytes()?));
        }
        let mut pos = Counter { inner: &mut sink, n: 0 };
        let infos = tensors
            .iter()
            .zip(&sizes)
            .map(|(t, (_, n))| (t.name.as_str(), t.ggml_type, t.dims.as_slice(), *n));
        write_header(&mut pos, metadata, infos, alignment)
            .map_err(|source| GgufError::Write { what: "the header".into(), source })?;
        let pos = pos.n;
        let mut w = Self { sink, pos, alignment, sizes, current: 0, done_in_current: 0 };
        w.skip_empty()?;
        Ok(w)
    }

    /// The name of the tensor whose bytes are expected next (`None` when all are written).
    pub fn current_tensor(&self) -> Option<&str> {
        self.sizes.get(self.current).map(|(n, _)| n.as_str())
    }

    /// Bytes written so far, header included.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Appends `bytes` to the current tensor's data; they may not run past its end.
    pub fn write_data(&mut self, bytes: &[u8]) -> Result<(), GgufError> {
        let Some((name, size)) = self.sizes.get(self.current) else {
            return Err(GgufError::DataSizeMismatch {
                name: "<none>".into(),
                expected: 0,
                found: bytes.len() as u64,
            });
        };
        let left = size - self.done_in_current;
        if bytes.len() as u64 > left {
            return Err(GgufError::DataSizeMismatch {
                name: name.clone(),
                expected: *size,
                found: self.done_in_current + bytes.len() as u64,
            });
        }
        let what = || format!("tensor '{name}'");
        self.sink.write_all(bytes).map_err(|source| GgufError::Write { what: what(), source })?;
        self.pos += bytes.len() as u64;
        self.done_in_current += bytes.len() as u64;
        if self.done_in_current == *size {
            let what = what();
            let mut pos = Counter { inner: &mut self.sink, n: self.pos };
            pad_to(&mut pos, self.alignment).map_err(|source| GgufError::Write { what, source })?;
            self.pos = pos.n;
            self.current += 1;
            self.done_in_current = 0;
            self.skip_empty()?;
        }
        Ok(())
    }

    /// Moves past tensors with no data.
    fn skip_empty(&mut self) -> Result<(), GgufError> {
        while self.sizes.get(self.current).is_some_and(|(_, n)| *n == 0) {
            self.current += 1;
        }
        Ok(())
    }

    /// Checks that every declared tensor was written in full, flushes and returns the sink.
    pub fn finish(mut self) -> Result<W, GgufError> {
        if let Some((name, size)) = self.sizes.get(self.current) {
            return Err(GgufError::DataSizeMismatch {
                name: name.clone(),
                expected: *size,
                found: self.done_in_current,
            });
        }
        self.sink
            .flush()
            .map_err(|source| GgufError::Write { what: "the end of the file".into(), source })?;
        Ok(self.sink)
    }
}

/// A file written as `DEST.part-<pid>` beside its destination and renamed onto `DEST` by
/// [`commit`](Self::commit) after an fsync; dropped uncommitted (an error, a panic, a cancelled
/// run), it removes the part file, so `DEST` is either complete or untouched.
#[derive(Debug)]
pub struct AtomicFile {
    dest: PathBuf,
    part: PathBuf,
    file: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Creates the part file beside `dest`. A `dest` that is a symbolic link is written through
    /// (the file it names is replaced, the link kept); a `dest` that exists and is not a regular
    /// file (a directory, a device such as `/dev/null`, a FIFO) is refused, as the rename would
    /// replace it.
    pub fn create(dest: impl AsRef<Path>) -> io::Result<Self> {
        let dest = regular_destination(dest.as_ref())?;
        let part = part_path(&dest);
        let file = File::create(&part)?;
        let mut live = live_parts();
        if live.ending {
            drop(file);
            let _ = fs::remove_file(&part);
            return Err(io::Error::new(io::ErrorKind::Interrupted, "the process is ending"));
        }
        live.parts.push(part.clone());
        drop(live);
        Ok(Self { dest, part, file: Some(BufWriter::with_capacity(1 << 20, file)) })
    }

    /// Removes the part files of every uncommitted `AtomicFile` of the process, for a signal
    /// handler about to end it (an exiting process runs no `Drop`): whatever was being written,
    /// no part file is left and every destination stays as it was; an `AtomicFile` created after
    /// this call fails.
    pub fn remove_all_parts() {
        let mut live = live_parts();
        live.ending = true;
        for part in live.parts.drain(..) {
            let _ = fs::remove_file(part);
        }
    }

    /// The temporary path being written.
    pub fn part_path(&self) -> &Path {
        &self.part
    }

    /// The destination.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Flushes, syncs and renames the part file onto the destination; on failure the part file
    /// is removed and the destination left as it was.
    pub fn commit(mut self) -> io::Result<()> {
        let w = self.file.take().ok_or_else(|| io::Error::other("file already committed"))?;
        let done = w.into_inner().map_err(|e| e.into_error()).and_then(|file| {
            file.sync_all()?;
            drop(file);
            fs::rename(&self.part, &self.dest)
        });
        if done.is_err() {
            let _ = fs::remove_file(&self.part);
        }
        forget_part(&self.part);
        done
    }
}

/// The part files being written, and whether the process is ending (see
/// [`AtomicFile::remove_all_parts`]).
struct LiveParts {
    parts: Vec<PathBuf>,
    ending: bool,
}

/// The process's [`LiveParts`], locked.
fn live_parts() -> std::sync::MutexGuard<'static, LiveParts> {
    static LIVE: std::sync::Mutex<LiveParts> =
        std::sync::Mutex::new(LiveParts { parts: Vec::new(), ending: false });
    LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Drops `part` from the live list once it is renamed or removed.
fn forget_part(part: &Path) {
    live_parts().parts.retain(|p| p != part);
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.as_mut().ok_or_else(|| io::Error::other("file already committed"))?.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if let Some(w) = self.file.take() {
            // Uncommitted: discard buffered bytes and the part file (best effort).
            let (file, _) = w.into_parts();
            drop(file);
            let _ = fs::remove_file(&self.part);
            forget_part(&self.part);
        }
    }
}

/// The path a file written to `dest` should be renamed onto: `dest` itself, or the file a chain
/// of symbolic links names (which may not exist yet: it is created); an error when that exists
/// and is not a regular file.
fn regular_destination(dest: &Path) -> io::Result<PathBuf> {
    const MAX_LINKS: usize = 40;
    let mut path = dest.to_path_buf();
    for _ in 0..MAX_LINKS {
        let meta = match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(path),
            other => other?,
        };
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&path)?;
            path = match path.parent() {
                Some(dir) if target.is_relative() => dir.join(target),
                _ => target,
            };
        } else if meta.is_file() {
            return Ok(path);
        } else {
            let then = format!("; writing the output there would replace it ({})", path.display());
            return Err(crate::regular::not_regular(&meta, &then));
        }
    }
    Err(io::Error::other(format!("{}: more than {MAX_LINKS} symbolic links", dest.display())))
}

/// `DEST.part-<pid>`.
pub(crate) fn part_path(dest: &Path) -> PathBuf {
    let mut part = dest.as_os_str().to_owned();
    part.push(format!(".part-{}", std::process::id()));
    PathBuf::from(part)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GgufFile, GgufWriter, Value};
    use std::os::unix::fs::FileTypeExt;

    #[test]
    fn a_failed_commit_removes_its_part_file() {
        let dir = std::env::temp_dir().join(format!("edgevl-atomic-failed-{}", std::process::id()));
        let dest = dir.join("out.gguf");
        fs::create_dir_all(&dir).expect("scratch directory");
        let mut f = AtomicFile::create(&dest).expect("part file");
        f.write_all(b"bytes").expect("write");
        let part = f.part_path().to_path_buf();
        assert!(part.exists());
        // Meanwhile a directory (not empty) appears where the file should go.
        fs::create_dir_all(dest.join("inside")).expect("a directory where the file should go");
        assert!(f.commit().is_err(), "a file cannot replace a directory");
        assert!(!part.exists(), "the part file was left behind");
        assert!(dest.is_dir(), "the destination changed");
        fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn special_destinations_are_refused_and_links_written_through() {
        let dir = std::env::temp_dir().join(format!("edgevl-atomic-special-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("scratch directory");
        // A device and a directory: refused before anything is written, and left as they were.
        for dest in [Path::new("/dev/null"), dir.as_path()] {
            let err = AtomicFile::create(dest).expect_err("refused");
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
            assert!(err.to_string().contains("would replace it"), "{err}");
            assert!(!part_path(dest).exists());
        }
        assert!(fs::metadata("/dev/null").expect("still there").file_type().is_char_device());
        // A link: the file it names gets the bytes, the link stays a link.
        let (target, link) = (dir.join("target.gguf"), dir.join("link.gguf"));
        fs::write(&target, b"old").expect("target");
        std::os::unix::fs::symlink(&target, &link).expect("link");
        let mut f = AtomicFile::create(&link).expect("through the link");
        f.write_all(b"new").expect("write");
        f.commit().expect("commit");
        assert!(fs::symlink_metadata(&link).expect("link").file_type().is_symlink());
        assert_eq!(fs::read(&target).expect("target"), b"new");
        // A link to a file not there yet (relative, as `ln -s new.gguf link` makes it) creates it.
        let (new, ahead) = (dir.join("new.gguf"), dir.join("ahead.gguf"));
        std::os::unix::fs::symlink("new.gguf", &ahead).expect("link");
        let mut f = AtomicFile::create(&ahead).expect("through the link");
        f.write_all(b"fresh").expect("write");
        f.commit().expect("commit");
        assert_eq!(fs::read(&new).expect("created"), b"fresh");
        assert!(fs::symlink_metadata(&ahead).expect("link").file_type().is_symlink());
        // A link into a missing directory fails when the part file cannot be made there.
        let dangling = dir.join("dangling.gguf");
        std::os::unix::fs::symlink(dir.join("missing/x.gguf"), &dangling).expect("link");
        let err = AtomicFile::create(&dangling).expect_err("refused");
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
        fs::remove_dir_all(&dir).expect("clean up");
    }

    fn specs() -> Vec<TensorSpec> {
        vec![
            TensorSpec { name: "a".into(), ggml_type: GgmlType::F32, dims: vec![3, 2] },
            TensorSpec { name: "empty".into(), ggml_type: GgmlType::F32, dims: vec![0] },
            TensorSpec { name: "b".into(), ggml_type: GgmlType::Q8_0, dims: vec![32] },
        ]
    }

    #[test]
    fn streamed_file_equals_the_buffered_writer() {
        let mut md = Metadata::default();
        md.set("general.architecture".into(), Value::Str("llama".into()));
        let a: Vec<u8> = (0..24).collect();
        let b: Vec<u8> = (0..34).map(|x| x * 3).collect();
        let mut w = GgufStreamWriter::new(Vec::new(), &md, &specs()).unwrap();
        assert_eq!(w.current_tensor(), Some("a"));
        w.write_data(&a[..5]).unwrap();
        w.write_data(&a[5..]).unwrap();
        assert_eq!(w.current_tensor(), Some("b"));
        assert!(w.write_data(&[0; 35]).is_err(), "past the end of b");
        w.write_data(&b).unwrap();
        let streamed = w.finish().unwrap();

        let mut g = GgufWriter::new();
        g.add_kv("general.architecture", Value::Str("llama".into()));
        g.add_tensor("a", GgmlType::F32, &[3, 2], a).unwrap();
        g.add_tensor("empty", GgmlType::F32, &[0], vec![]).unwrap();
        g.add_tensor("b", GgmlType::Q8_0, &[32], b).unwrap();
        assert_eq!(streamed, g.to_bytes().unwrap());
    }

    #[test]
    fn finish_refuses_missing_bytes_and_new_refuses_bad_specs() {
        let md = Metadata::default();
        let mut w = GgufStreamWriter::new(Vec::new(), &md, &specs()).unwrap();
        w.write_data(&[0; 24]).unwrap();
        let err = w.finish().unwrap_err().to_string();
        assert!(err.contains("'b'"), "{err}");
        let mut dup = specs();
        dup[2].name = "a".into();
        assert!(GgufStreamWriter::new(Vec::new(), &md, &dup).is_err());
        let bad = [TensorSpec { name: "q".into(), ggml_type: GgmlType::Q4_0, dims: vec![33] }];
        assert!(GgufStreamWriter::new(Vec::new(), &md, &bad).is_err());
    }

    #[test]
    fn atomic_file_is_renamed_on_commit_and_removed_on_drop() {
        let dir = std::env::temp_dir().join(format!("edgevl-atomic-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let dest = dir.join("out.gguf");
        let mut f = AtomicFile::create(&dest).unwrap();
        let part = f.part_path().to_path_buf();
        f.write_all(b"partial").unwrap();
        drop(f);
        assert!(!part.exists() && !dest.exists());

        let mut md = Metadata::default();
        md.set("general.architecture".into(), Value::Str("llama".into()));
        let mut w = GgufStreamWriter::new(AtomicFile::create(&dest).unwrap(), &md, &specs()[..1]).unwrap();
        w.write_data(&[1; 24]).unwrap();
        w.finish().unwrap().commit().unwrap();
        assert!(!part.exists());
        let g = GgufFile::open(&dest).unwrap();
        assert_eq!(g.tensors().len(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}
