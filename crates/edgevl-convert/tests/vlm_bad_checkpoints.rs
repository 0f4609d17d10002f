//! Bad vision-language checkpoints fail with an error naming the file and the tensor (or field), and
//! leave neither the language model's file, nor the mmproj, nor a temporary file behind: a missing
//! vision tensor, a shape that disagrees with `vision_config`, a vision tensor that is not the
//! family's, a dtype edgevl cannot read, a truncated file, a missing `image_mean`, a value edgevl
//! does not compute, `--mmproj-out` for a text-only checkpoint, an mmproj that cannot be created
//! after the language model was written, a write that fails half way, and `config.json` values
//! that would overflow the planner, exhaust memory or make an mmproj edgevl cannot load. Each
//! starts from a valid tiny checkpoint of tests/fixtures/hf (tiny-edgevl unless named).

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{write_st, FailingWriter, T};
use edgevl_convert::{
    convert, convert_to_writer, ConvertOptions, LlmType, Part, PlanOptions, Scheme, Silent,
};
use serde_json::Value;

const WEIGHTS: &str = "model.safetensors";

/// The tensors of a safetensors file, in file order.
fn read_st(path: &Path) -> Vec<T> {
    let bytes = fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, Value> = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let mut out: Vec<(usize, T)> = header
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(name, v)| {
            let dtype = match v["dtype"].as_str().unwrap() {
                "F32" => "F32",
                "F16" => "F16",
                other => panic!("fixture dtype {other}"),
            };
            let shape = v["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).collect();
            let off: Vec<usize> =
                v["data_offsets"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
            (off[0], (name.clone(), dtype, shape, data[off[0]..off[1]].to_vec()))
        })
        .collect();
    out.sort_by_key(|(o, _)| *o);
    out.into_iter().map(|(_, t)| t).collect()
}

struct Case {
    root: PathBuf,
    dir: PathBuf,
    out_dir: PathBuf,
}

impl Case {
    /// A copy of the valid tiny checkpoint in a fresh directory.
    fn new(tag: &str) -> Self {
        Self::of("tiny-edgevl", tag)
    }

    /// A copy of the valid tiny checkpoint tests/fixtures/hf/`fixture` in a fresh directory.
    fn of(fixture: &str, tag: &str) -> Self {
        let root = std::env::temp_dir().join(format!("edgevl-vlm-bad-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let (dir, out_dir) = (root.join(fixture), root.join("out"));
        fs::create_dir_all(&dir).unwrap();
        fs::create_dir_all(&out_dir).unwrap();
        let src = edgevl_testdata::fixture(&format!("hf/{fixture}"));
        for e in fs::read_dir(&src).unwrap() {
            let e = e.unwrap();
            fs::copy(e.path(), dir.join(e.file_name())).unwrap();
        }
        Case { root, dir, out_dir }
    }

    fn opts() -> ConvertOptions {
        ConvertOptions {
            plan: PlanOptions { scheme: Scheme::BlueLm, llm_type: LlmType::Q4_0, pure: false },
            threads: 2,
            cancel: None,
            pre_tokenizer: Some("smollm".into()),
        }
    }

    /// Rewrites the weights through `edit`.
    fn edit_weights(&self, edit: impl FnOnce(&mut Vec<T>)) {
        let path = self.dir.join(WEIGHTS);
        let mut t = read_st(&path);
        edit(&mut t);
        write_st(&path, &t, |h| h);
    }

    /// Rewrites `file` (JSON) through `edit`.
    fn edit_json(&self, file: &str, edit: impl FnOnce(&mut Value)) {
        let path = self.dir.join(file);
        let mut v: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        edit(&mut v);
        fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    }

    /// Converts with `--mmproj-out` (into `mmproj` below the output directory); returns the error
    /// text and checks the output directory is empty.
    fn fails_with(&self, mmproj: &str) -> String {
        let err = convert(
            &self.dir,
            &self.out_dir.join("model.gguf"),
            Some(&self.out_dir.join(mmproj)),
            &Self::opts(),
            &mut Silent,
        )
        .expect_err("conversion should fail")
        .to_string();
        let left: Vec<_> = fs::read_dir(&self.out_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "left behind: {left:?} after: {err}");
        err
    }

    fn fails(&self) -> String {
        self.fails_with("mmproj.gguf")
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

#[test]
fn the_valid_checkpoint_converts() {
    let c = Case::new("ok");
    let s = convert(
        &c.dir,
        &c.out_dir.join("model.gguf"),
        Some(&c.out_dir.join("mmproj.gguf")),
        &Case::opts(),
        &mut Silent,
    )
    .unwrap();
    assert_eq!(s.mmproj_tensors.len(), 3 + 2 * 16 + 2 + 6);
    let mut left: Vec<_> =
        fs::read_dir(&c.out_dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    left.sort();
    assert_eq!(left, ["mmproj.gguf", "model.gguf"]);
}

#[test]
fn missing_vision_tensor_is_named() {
    let c = Case::new("missing");
    c.edit_weights(|t| t.retain(|(n, ..)| n != "multi_modal_projector.linear_2.bias"));
    let e = c.fails();
    assert!(e.contains("multi_modal_projector.linear_2.bias") && e.contains("missing"), "{e}");
}

#[test]
fn shape_disagreeing_with_vision_config_names_file_and_tensor() {
    let c = Case::new("shape");
    c.edit_json("config.json", |v| v["vision_config"]["intermediate_size"] = 96.into());
    let e = c.fails();
    assert!(e.contains(WEIGHTS) && e.contains("layers.0.mlp.fc1.bias") && e.contains("implies [96]"), "{e}");
}

#[test]
fn unknown_vision_tensor_is_refused() {
    let c = Case::new("unexpected");
    c.edit_weights(|t| t.push(("vision_tower.vision_model.head.weight".into(), "F32", vec![2], vec![0; 8])));
    let e = c.fails();
    assert!(e.contains(WEIGHTS) && e.contains("vision_tower.vision_model.head.weight"), "{e}");
}

#[test]
fn unreadable_dtype_names_the_tensor() {
    let c = Case::new("dtype");
    c.edit_weights(|t| {
        let ln = t.iter_mut().find(|(n, ..)| n == "multi_modal_projector.layer_norm.bias").unwrap();
        ln.1 = "I32";
    });
    let e = c.fails();
    assert!(e.contains("multi_modal_projector.layer_norm.bias") && e.contains("I32"), "{e}");
}

#[test]
fn truncated_file_is_named() {
    let c = Case::new("truncated");
    let path = c.dir.join(WEIGHTS);
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() - 1000]).unwrap();
    let e = c.fails();
    assert!(e.contains(WEIGHTS), "{e}");
}

#[test]
fn missing_normalisation_names_the_processor_config() {
    let c = Case::new("mean");
    c.edit_json("preprocessor_config.json", |v| {
        v.as_object_mut().unwrap().remove("image_mean");
    });
    let e = c.fails();
    assert!(e.contains("preprocessor_config.json") && e.contains("image_mean"), "{e}");
}

#[test]
fn values_edgevl_does_not_compute_are_refused() {
    let c = Case::new("act");
    c.edit_json("config.json", |v| v["vision_config"]["hidden_act"] = "quick_gelu".into());
    let e = c.fails();
    assert!(e.contains("vision_config.hidden_act") && e.contains("quick_gelu"), "{e}");
    let c = Case::new("merge");
    c.edit_json("config.json", |v| v["downsample_factor"] = 3.into());
    let e = c.fails();
    assert!(e.contains("downsample_factor"), "{e}");
}

#[test]
fn text_only_checkpoint_has_no_mmproj() {
    let c = Case::new("text");
    c.edit_json("config.json", |v| {
        let text = v["text_config"].clone();
        *v = text;
    });
    c.edit_weights(|t| t.retain(|(n, ..)| n.starts_with("language_model.")));
    let e = c.fails();
    assert!(e.contains("config.json") && e.contains("no vision tower"), "{e}");
}

#[test]
fn mmproj_that_cannot_be_created_leaves_no_language_model() {
    // The language model's file is written first; the mmproj's cannot even be created.
    let c = Case::new("create");
    let e = c.fails_with("no-such-dir/mmproj.gguf");
    assert!(e.contains("mmproj.gguf"), "{e}");
}

/// A [`edgevl_convert::Progress`] that puts a non-empty folder where the mmproj is to be
/// renamed as its writing starts, so its commit fails after the language model's succeeded.
struct FolderInTheWay(PathBuf);

impl edgevl_convert::Progress for FolderInTheWay {
    fn start(&mut self, out: &Path, _: usize, _: u64) {
        if out == self.0 {
            fs::create_dir(&self.0).unwrap();
            fs::write(self.0.join("x"), b"x").unwrap();
        }
    }
    fn tensor(&mut self, _: usize, _: &str, _: edgevl_gguf::GgmlType, _: &str) {}
    fn advance(&mut self, _: u64) {}
    fn finish(&mut self) {}
}

#[test]
fn a_failed_mmproj_commit_puts_back_the_file_a_linked_output_named() {
    // With -o a link, the language model's old file (the link's target) was lost and a stray
    // `.old-PID` link left beside the link.
    let c = Case::new("link");
    let target = c.out_dir.join("target.gguf");
    fs::write(&target, b"OLD-TARGET").unwrap();
    let link = c.out_dir.join("link.gguf");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let mm = c.out_dir.join("mm.gguf");
    let e = convert(&c.dir, &link, Some(&mm), &Case::opts(), &mut FolderInTheWay(mm.clone()))
        .expect_err("the mmproj's rename fails")
        .to_string();
    assert!(e.contains("mm.gguf"), "{e}");
    assert!(fs::read(&target).unwrap() == b"OLD-TARGET", "the link's target was not put back");
    assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    let mut left: Vec<_> = fs::read_dir(&c.out_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    left.sort();
    assert_eq!(left, ["link.gguf", "mm.gguf", "target.gguf"], "a backup or part file left");
}

#[test]
fn mmproj_write_failure_names_output_and_tensor() {
    let c = Case::new("write");
    let label = c.out_dir.join("mmproj.gguf");
    let err = convert_to_writer(
        &c.dir,
        Part::Mmproj,
        FailingWriter { left: 20_000 },
        &label,
        &Case::opts(),
        &mut Silent,
    )
    .map(|_| ())
    .expect_err("the sink fails")
    .to_string();
    assert!(
        err.contains("mmproj.gguf") && err.contains("tensor '") && err.contains("no space left"),
        "{err}"
    );
}

#[test]
fn config_values_that_would_overflow_or_exhaust_memory_are_refused() {
    // (fixture, edit of config.json, the field the error names); each used to panic on an
    // overflowing multiply, take gigabytes before failing, or write an mmproj `edgevl run` refuses.
    type Edit = fn(&mut Value);
    let cases: [(&str, Edit, &str); 6] = [
        ("tiny-smolvlm", |v| v["scale_factor"] = 4_000_000_000u64.into(), "'scale_factor'"),
        ("tiny-smolvlm", |v| v["scale_factor"] = 17.into(), "'scale_factor'"),
        ("tiny-internvl", |v| v["downsample_ratio"] = 1e-300.into(), "'downsample_ratio'"),
        (
            "tiny-smolvlm",
            |v| v["vision_config"]["num_hidden_layers"] = 100_000_000.into(),
            "'vision_config.num_hidden_layers'",
        ),
        (
            "tiny-internvl",
            |v| v["vision_config"]["num_hidden_layers"] = 5.into(),
            "'vision_config.num_hidden_layers'",
        ),
        (
            "tiny-edgevl",
            |v| v["vision_config"]["layer_norm_eps"] = (-1.0).into(),
            "'vision_config.layer_norm_eps'",
        ),
    ];
    for (i, (fixture, edit, field)) in cases.into_iter().enumerate() {
        let c = Case::of(fixture, &format!("limits{i}"));
        c.edit_json("config.json", edit);
        let e = c.fails();
        assert!(e.contains("config.json") && e.contains(&format!("field {field}")), "{fixture} {field}: {e}");
    }
}

#[test]
fn smolvlm_vision_fields_left_out_take_transformers_defaults() {
    // The published SmolVLM configs leave out the tower's depth, MLP width and epsilon, relying on
    // `SmolVLMVisionConfig`'s defaults (12, 3072, 1e-6): they were "missing", and a missing epsilon
    // was written as 1e-5.
    let c = Case::of("tiny-smolvlm", "defaults");
    c.edit_json("config.json", |v| {
        let vc = v["vision_config"].as_object_mut().unwrap();
        vc.remove("layer_norm_eps");
        vc.remove("hidden_act");
    });
    let (out, mm) = (c.out_dir.join("model.gguf"), c.out_dir.join("mmproj.gguf"));
    let f16 =
        ConvertOptions { plan: PlanOptions { scheme: Scheme::F16, ..Case::opts().plan }, ..Case::opts() };
    let summary = convert(&c.dir, &out, Some(&mm), &f16, &mut Silent).expect("converts");
    let f = edgevl_gguf::GgufFile::open(&mm).unwrap();
    assert_eq!(f.metadata().get_f32("clip.vision.attention.layer_norm_epsilon").unwrap(), 1e-6);
    // And in an F16 file SmolVLM's patch kernel is F32, as its `.embeddings.` rule says in llama.cpp
    // (it was F16).
    let patch = summary.mmproj_tensors.iter().find(|(n, _)| n == "v.patch_embd.weight").expect("patch");
    assert_eq!(patch.1, edgevl_gguf::GgmlType::F32);
    // The counts: each default is applied (and here disagrees with the tiny tensors, which says so).
    type Edit = fn(&mut Value);
    let cases: [(Edit, &str); 2] = [
        (|v| drop(v["vision_config"].as_object_mut().unwrap().remove("num_hidden_layers")), "12 blocks"),
        (|v| drop(v["vision_config"].as_object_mut().unwrap().remove("intermediate_size")), "3072"),
    ];
    for (i, (edit, want)) in cases.into_iter().enumerate() {
        let c = Case::of("tiny-smolvlm", &format!("defaults{i}"));
        c.edit_json("config.json", edit);
        let e = c.fails();
        assert!(e.contains(want), "{want}: {e}");
    }
}

#[test]
fn the_language_model_file_is_named_for_the_checkpoint_not_its_text_config() {
    // An InternVL checkpoint's llm_config names the Qwen2.5 it started from; the LLM file was named
    // "Qwen2.5 0.5B Instruct" where llama.cpp's converter writes the checkpoint's own name.
    let c = Case::of("tiny-internvl", "naming");
    c.edit_json("config.json", |v| {
        v["_name_or_path"] = "OpenGVLab/InternVL3-1B".into();
        v["llm_config"]["_name_or_path"] = "Qwen/Qwen2.5-0.5B-Instruct".into();
    });
    let (out, mm) = (c.out_dir.join("model.gguf"), c.out_dir.join("mmproj.gguf"));
    convert(&c.dir, &out, Some(&mm), &Case::opts(), &mut Silent).expect("converts");
    for path in [&out, &mm] {
        let f = edgevl_gguf::GgufFile::open(path).unwrap();
        assert_eq!(f.metadata().get_str("general.name").unwrap(), "InternVL3 1B", "{}", path.display());
    }
}

#[test]
fn an_mmproj_its_loader_would_refuse_is_not_written() {
    // A preprocessor std of 1e-30: a finite, positive number the converter's own checks pass, but
    // normalised pixels of 1e30 would give NaN embeddings, so the loader refuses the file.
    let c = Case::of("tiny-smolvlm", "unloadable");
    c.edit_json("preprocessor_config.json", |v| v["image_std"] = serde_json::json!([1e-30, 0.5, 0.5]));
    let e = c.fails();
    assert!(e.contains("config.json") && e.contains("the mmproj it converts to would not load"), "{e}");
    assert!(e.contains("image_std"), "{e}");
}

#[test]
fn a_pre_tokenizer_edgevl_does_not_run_is_refused_before_writing() {
    // llama.cpp knows "deepseek-llm" (its own regexes), edgevl's tokenizer does not: the file would
    // have been written and then refused by every edgevl command.
    let c = Case::new("pre");
    let opts = ConvertOptions { pre_tokenizer: Some("deepseek-llm".into()), ..Case::opts() };
    let err = convert(
        &c.dir,
        &c.out_dir.join("model.gguf"),
        Some(&c.out_dir.join("mmproj.gguf")),
        &opts,
        &mut Silent,
    )
    .expect_err("refused")
    .to_string();
    assert!(err.contains("deepseek-llm") && err.contains("edgevl could not run"), "{err}");
    let left: Vec<_> = fs::read_dir(&c.out_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
