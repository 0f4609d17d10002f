//! Test support shared by the workspace's test suites: the committed fixtures folder, the real
//! models fetched into the cache, and the kernel table the tests compute with. A missing model is a
//! test failure that names the script to run, never a silent skip.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

use edgevl_kernels::{KernelConfig, Kernels};
use std::path::PathBuf;

/// The kernel options the override variables of the test process ask for: tests are an edge of the program, so
/// `EDGEVL_MAX_SIMD`, `EDGEVL_FORCE_SCALAR` and `EDGEVL_NO_PACK` are read here (as the CLI reads them), never
/// in model or kernel code. Panics (failing the test) on a value a variable does not take.
pub fn kernel_config() -> KernelConfig {
    KernelConfig::from_vars(|name| std::env::var(name).ok()).unwrap_or_else(|e| panic!("{e}"))
}

/// The kernel table for [`kernel_config`] on this CPU.
pub fn kernels() -> Kernels {
    Kernels::new(kernel_config())
}

/// The workspace root (where README.md and tests/fixtures are).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `tests/fixtures` at the workspace root.
pub fn fixtures_dir() -> PathBuf {
    repo_root().join("tests/fixtures")
}

/// A file under `tests/fixtures`.
pub fn fixture(rel: &str) -> PathBuf {
    fixtures_dir().join(rel)
}

/// The model cache: `$EDGEVL_CACHE`, else `~/.cache/edgevl`.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("EDGEVL_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/edgevl"),
    }
}

/// Path of SmolLM2-135M-Instruct Q4_1; panics (failing the test) with the fetch command when absent.
pub fn smollm2_path() -> PathBuf {
    let path = cache_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.is_file(),
        "test model missing: {} — run scripts/fetch-smollm2.sh (or scripts/test.sh, which fetches it)",
        path.display()
    );
    path
}

/// SmolLM2-135M-Instruct as a Hugging Face directory (F32 safetensors, tokenizer files), built from
/// its GGUF by `scripts/make-smollm2-hf.sh`; panics (failing the test) with that command when absent.
pub fn smollm2_hf_dir() -> PathBuf {
    let dir = cache_dir().join("smollm2-hf-v1/SmolLM2-135M-Instruct");
    assert!(
        dir.join("config.json").is_file(),
        "test checkpoint missing: {} — run scripts/make-smollm2-hf.sh (or scripts/test.sh, which builds it)",
        dir.display()
    );
    dir
}

/// Little-endian f32 values from `bytes` (a trailing partial value is ignored).
pub fn f32_le(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// The data of a float32 `.npy` file (version 1, as numpy and `edgevl --dump-activations` write it); panics
/// (failing the test) on another format.
pub fn npy_f32(path: &std::path::Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00", "{}: not a version 1 .npy file", path.display());
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = String::from_utf8_lossy(&bytes[10..10 + hlen]);
    assert!(header.contains("'<f4'"), "{}: not float32 ({header})", path.display());
    f32_le(&bytes[10 + hlen..])
}
