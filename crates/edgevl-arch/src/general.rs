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

/// `general.type` of a language model's file.
pub const TYPE_MODEL: &str = "model";
/// `general.type` of an mmproj file.
pub const TYPE_MMPROJ: &str = "mmproj";
/// `general.architecture` of an mmproj file.
pub const ARCH_CLIP: &str = "clip";

/// `edgevl.quantization.scheme`: the precision scheme `edgevl convert` used (e.g. `bluelm`).
pub const EDGEVL_QUANT_SCHEME: &str = "edgevl.quantization.scheme";

/// `general.organization`: who published the model (from the hub id).
pub const ORGANIZATION: &str = "general.organization";
/// `general.basename`: the model's base name (`SmolLM2`).
pub const BASENAME: &str = "general.basename";
/// `general.finetune`: the fine-tune part of the name (`Instruct`).
pub const FINETUNE: &str = "general.finetune";
/// `general.version`: a version part of the name (`v0.1`).
pub const VERSION: &str = "general.version";
/// `general.size_label`: the parameter count as a label (`135M`, `8x7B`).
pub const SIZE_LABEL: &str = "general.size_label";

/// `general.sampling.*`: recommended sampler settings, from `generation_config.json` (the JSON
/// field each is read from, and the GGUF key it is written to, in llama.cpp's order).
pub const SAMPLING_KEYS: [(&str, &str); 12] = [
    ("sequence", "general.sampling.sequence"),
    ("top_k", "general.sampling.top_k"),
    ("top_p", "general.sampling.top_p"),
    ("min_p", "general.sampling.min_p"),
    ("xtc_probability", "general.sampling.xtc_probability"),
    ("xtc_threshold", "general.sampling.xtc_threshold"),
    ("temperature", "general.sampling.temp"),
    ("penalty_last_n", "general.sampling.penalty_last_n"),
    ("repetition_penalty", "general.sampling.penalty_repeat"),
    ("mirostat", "general.sampling.mirostat"),
    ("mirostat_tau", "general.sampling.mirostat_tau"),
    ("mirostat_eta", "general.sampling.mirostat_eta"),
];
