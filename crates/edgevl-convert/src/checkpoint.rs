//! A Hugging Face checkpoint directory: `config.json` and the safetensors weights (one file, or
//! shards listed by `model.safetensors.index.json`), with tensors in the order llama.cpp's converter
//! visits them (shard files by name, then tensor names sorted within each).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value as Json};

use crate::error::{ConvertError, Result};
use crate::safetensors::{Dtype, HeaderBudget, SafetensorsFile, TensorView};

/// `model.safetensors.index.json`.
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// `config.json`.
pub const CONFIG_FILE: &str = "config.json";

/// A JSON object read from a file, with the path kept for error messages.
#[derive(Debug, Clone)]
pub struct JsonFile {
    /// The file.
    pub path: PathBuf,
    /// Its top-level object.
    pub root: Map<String, Json>,
}

/// The largest JSON (or template) file of a checkpoint read: 64 MiB, twice the largest
/// tokenizer.json of the public models (Gemma 3's, 33 MB). A JSON tree takes up to about 16
/// times its text (a list of small numbers), so this bounds a file's tree near 1 GiB.
pub const MAX_JSON_BYTES: u64 = 64 << 20;

impl JsonFile {
    /// Reads `path`, which must be a regular file of at most [`MAX_JSON_BYTES`] holding a JSON
    /// object.
    pub fn read(path: &Path) -> Result<Self> {
        let text = edgevl_gguf::read_regular_text(path, MAX_JSON_BYTES)
            .map_err(|source| ConvertError::Io { path: path.to_path_buf(), source })?;
        let json = |message: String| ConvertError::Json { path: path.to_path_buf(), message };
        match serde_json::from_str::<Json>(&text).map_err(|e| json(format!("not valid JSON: {e}")))? {
            Json::Object(root) => Ok(Self { path: path.to_path_buf(), root }),
            _ => Err(json("not a JSON object".into())),
        }
    }

    /// Reads `path` if it exists.
    pub fn read_optional(path: &Path) -> Result<Option<Self>> {
        if path.is_file() {
            Self::read(path).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// An open checkpoint directory.
#[derive(Debug)]
pub struct Checkpoint {
    dir: PathBuf,
    /// `config.json`.
    pub config: JsonFile,
    files: Vec<SafetensorsFile>,
    /// (file, tensor) indices in llama.cpp's visiting order.
    order: Vec<(usize, usize)>,
    by_name: HashMap<String, (usize, usize)>,
}

impl Checkpoint {
    /// Opens and validates `dir`: `config.json`, the index (if any) against the shards, every shard's
    /// header (all of them within one [`HeaderBudget`]).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let config = JsonFile::read(&dir.join(CONFIG_FILE))?;
        let index_path = dir.join(INDEX_FILE);
        let index = JsonFile::read_optional(&index_path)?;
        let mut weight_map: Vec<(String, String)> = Vec::new();
        let part_names: Vec<String> = match &index {
            Some(index) => {
                let Some(Json::Object(map)) = index.root.get("weight_map") else {
                    return Err(ConvertError::Json {
                        path: index_path,
                        message: "no 'weight_map' object".into(),
                    });
                };
                for (tensor, file) in map {
                    let Some(file) = file.as_str() else {
                        return Err(ConvertError::IndexMismatch {
                            path: index_path,
                            tensor: tensor.clone(),
                            message: "its weight_map entry is not a file name".into(),
                        });
                    };
                    if file.contains('/') || file.contains('\\') || file == ".." {
                        return Err(ConvertError::IndexMismatch {
                            path: index_path,
                            tensor: tensor.clone(),
                            message: format!("shard '{file}' is not a file name in the checkpoint directory"),
                        });
                    }
                    weight_map.push((tensor.clone(), file.to_string()));
                }
                let mut parts: Vec<String> = weight_map.iter().map(|(_, f)| f.clone()).collect();
                parts.sort();
                parts.dedup();
                for part in &parts {
                    if !dir.join(part).is_file() {
                        let tensor = weight_map
                            .iter()
                            .find(|(_, f)| f == part)
                            .map(|(t, _)| t.clone())
                            .unwrap_or_default();
                        return Err(ConvertError::MissingShard {
                            index: index_path,
                            shard: dir.join(part),
                            tensor,
                        });
                    }
                }
                parts
            }
            None => {
                let io = |source| ConvertError::Io { path: dir.clone(), source };
                let mut parts = Vec::new();
                for entry in fs::read_dir(&dir).map_err(io)? {
                    let name = entry.map_err(io)?.file_name().to_string_lossy().into_owned();
                    if name.starts_with("model") && name.ends_with(".safetensors") {
                        parts.push(name);
                    }
                }
                parts.sort();
                if parts.is_empty()
                    && (dir.join("pytorch_model.bin").is_file()
                        || dir.join("pytorch_model.bin.index.json").is_file())
                {
                    return Err(ConvertError::Options(format!(
                        "'{}' holds PyTorch .bin weights, which edgevl does not read: save the model as \
                         safetensors first (transformers: model.save_pretrained(DIR, safe_serialization=True))",
                        dir.display()
                    )));
                }
                if parts.is_empty() {
                    return Err(ConvertError::MissingTensor {
                        dir,
                        tensor: "model*.safetensors (no weights file)".into(),
                    });
                }
                parts
            }
        };
        let mut files = Vec::with_capacity(part_names.len());
        let mut order = Vec::new();
        let mut by_name = HashMap::new();
        let mut budget = HeaderBudget::default();
        for (fi, part) in part_names.iter().enumerate() {
            let f = SafetensorsFile::open(dir.join(part), &mut budget)?;
            for (ti, t) in f.tensors().iter().enumerate() {
                if by_name.insert(t.name.clone(), (fi, ti)).is_some() {
                    return Err(ConvertError::Safetensors {
                        path: f.path().to_path_buf(),
                        tensor: Some(t.name.clone()),
                        message: "the tensor is also in another shard".into(),
                    });
                }
                order.push((fi, ti));
            }
            files.push(f);
        }
        if index.is_some() {
            let listed: HashSet<&str> = weight_map.iter().map(|(t, _)| t.as_str()).collect();
            for (t, file) in &weight_map {
                match by_name.get(t) {
                    None => {
                        return Err(ConvertError::IndexMismatch {
                            path: index_path,
                            tensor: t.clone(),
                            message: format!("listed in shard '{file}', which does not hold it"),
                        })
                    }
                    Some(&(fi, _)) if part_names[fi] != *file => {
                        return Err(ConvertError::IndexMismatch {
                            path: index_path,
                            tensor: t.clone(),
                            message: format!("listed in shard '{file}' but found in '{}'", part_names[fi]),
                        })
                    }
                    Some(_) => {}
                }
            }
            if let Some(extra) = by_name.keys().find(|n| !listed.contains(n.as_str())) {
                return Err(ConvertError::IndexMismatch {
                    path: index_path,
                    tensor: extra.clone(),
                    message: "found in a shard but not listed in the weight_map".into(),
                });
            }
        }
        Ok(Self { dir, config, files, order, by_name })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every tensor, in llama.cpp's visiting order, with the file holding it.
    pub fn tensors(&self) -> impl Iterator<Item = (&SafetensorsFile, &TensorView)> {
        self.order.iter().map(|&(f, t)| (&self.files[f], &self.files[f].tensors()[t]))
    }

    /// The tensor named `name`.
    pub fn get(&self, name: &str) -> Option<(&SafetensorsFile, &TensorView)> {
        self.by_name.get(name).map(|&(f, t)| (&self.files[f], &self.files[f].tensors()[t]))
    }
}

/// The tensor's element type is one the converter reads (F32, F16, BF16).
pub fn require_float(file: &SafetensorsFile, view: &TensorView) -> Result<()> {
    if matches!(view.dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
        Ok(())
    } else {
        Err(ConvertError::UnsupportedDtype {
            path: file.path().to_path_buf(),
            tensor: view.name.clone(),
            dtype: view.dtype.name().into(),
        })
    }
}

/// The tensor has the (row-major) shape `config.json` implies.
pub fn require_shape(file: &SafetensorsFile, view: &TensorView, expected: Vec<u64>) -> Result<()> {
    if expected == view.shape {
        Ok(())
    } else {
        Err(ConvertError::ShapeMismatch {
            path: file.path().to_path_buf(),
            tensor: view.name.clone(),
            expected,
            found: view.shape.clone(),
        })
    }
}
