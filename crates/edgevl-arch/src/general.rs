//! `general.*` keys of every GGUF file.

/// `general.architecture`: `llama`, `qwen2`, `clip`, ... (the GGUF layer reads it too).
pub const ARCHITECTURE: &str = edgevl_gguf::KEY_ARCHITECTURE;
/// `general.alignment`: data alignment of the tensor section (a GGUF format key).
pub const ALIGNMENT: &str = edgevl_gguf::KEY_ALIGNMENT;
/// `general.name`: a human-readable model name.
pub const NAME: &str = "general.name";
/// `general.type`: `model` or `mmproj`.
pub const TYPE: &str = "general.type";
/// `general.file_type`: llama.cpp's `llama_ftype` of the file's main weights.
pub const FILE_TYPE: &str = "general.file_type";
/// `general.quantization_version`: version of the quantisation formats (2).
pub const QUANTIZATION_VERSION: &str = "general.quantization_version";

/// `general.type` of an mmproj file.
pub const TYPE_MMPROJ: &str = "mmproj";
/// `general.architecture` of an mmproj file.
pub const ARCH_CLIP: &str = "clip";

/// `edgevl.quantization.scheme`: the precision scheme `edgevl convert` used (e.g. `bluelm`).
pub const EDGEVL_QUANT_SCHEME: &str = "edgevl.quantization.scheme";
