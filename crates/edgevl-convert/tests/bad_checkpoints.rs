//! Bad checkpoints fail with an error naming the file and the tensor, and leave neither the output
//! nor its temporary file behind: a missing shard, a truncated file, offsets that overlap or run past
//! the end, a dtype edgevl cannot read, a shape that disagrees with config.json, an unknown
//! architecture, hyper-parameters edgevl cannot load, a config.json that is a FIFO or over 64 MiB,
//! and a write that fails half way. And a
//! LLaMA's query/key biases, which used to stop the conversion, are permuted as llama.cpp does.

mod common;

use std::fs;
use std::path::PathBuf;

use common::{bf16, write_st, FailingWriter, T};

use edgevl_convert::{
    convert, convert_to_writer, ConvertOptions, LlmType, Part, PlanOptions, Scheme, Silent,
};

const D: u64 = 64;
const FF: u64 = 128;
const KV: u64 = 32; // 2 KV heads of 16
const VOCAB: u64 = 49152;

/// A tiny LLaMA's tensors (2 layers, width 64, SmolLM2's vocabulary so its tokenizer fits).
fn tiny_tensors() -> Vec<T> {
    let mut v: Vec<T> =
        vec![("model.embed_tokens.weight".into(), "BF16", vec![VOCAB, D], bf16(&[VOCAB, D], 1))];
    for l in 0..2 {
        let p = format!("model.layers.{l}.");
        for (n, s) in [
            ("input_layernorm.weight", vec![D]),
            ("self_attn.q_proj.weight", vec![D, D]),
            ("self_attn.k_proj.weight", vec![KV, D]),
            ("self_attn.v_proj.weight", vec![KV, D]),
            ("self_attn.o_proj.weight", vec![D, D]),
            ("post_attention_layernorm.weight", vec![D]),
            ("mlp.gate_proj.weight", vec![FF, D]),
            ("mlp.up_proj.weight", vec![FF, D]),
            ("mlp.down_proj.weight", vec![D, FF]),
        ] {
            let b = bf16(&s, l + 7);
            v.push((format!("{p}{n}"), "BF16", s, b));
        }
    }
    v.push(("model.norm.weight".into(), "BF16", vec![D], bf16(&[D], 3)));
    v
}

struct Case {
    dir: PathBuf,
    out_dir: PathBuf,
}

impl Case {
    /// A valid two-shard checkpoint in a fresh directory.
    fn new(tag: &str) -> Self {
        let root = std::env::temp_dir().join(format!("edgevl-bad-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let dir = root.join("tiny-llama");
        let out_dir = root.join("out");
        fs::create_dir_all(&dir).unwrap();
        fs::create_dir_all(&out_dir).unwrap();
        common::smollm2_tokenizer(&dir);
        let config = format!(
            r#"{{"architectures":["LlamaForCausalLM"],"hidden_size":{D},"intermediate_size":{FF},"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":{VOCAB},"tie_word_embeddings":true,"rms_norm_eps":1e-5}}"#
        );
        fs::write(dir.join("config.json"), config).unwrap();
        let c = Case { dir, out_dir };
        c.write_shards(tiny_tensors(), |h| h);
        c
    }

    fn write_shards(&self, tensors: Vec<T>, fix: impl Fn(String) -> String + Copy) {
        let (a, b) = tensors.split_at(tensors.len() / 2);
        let names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"];
        write_st(&self.dir.join(names[0]), a, fix);
        write_st(&self.dir.join(names[1]), b, |h| h);
        let map: Vec<String> = a
            .iter()
            .map(|t| format!("\"{}\":\"{}\"", t.0, names[0]))
            .chain(b.iter().map(|t| format!("\"{}\":\"{}\"", t.0, names[1])))
            .collect();
        fs::write(
            self.dir.join("model.safetensors.index.json"),
            format!("{{\"weight_map\":{{{}}}}}", map.join(",")),
        )
        .unwrap();
    }

    fn opts() -> ConvertOptions {
        ConvertOptions {
            plan: PlanOptions { scheme: Scheme::Q8_0, llm_type: LlmType::Q4_0, pure: false },
            threads: 2,
            cancel: None,
            pre_tokenizer: None,
        }
    }

    /// Converts; returns the error text and checks nothing was left in the output directory.
    fn fails(&self) -> String {
        let out = self.out_dir.join("model.gguf");
        let err = convert(&self.dir, &out, None, &Self::opts(), &mut Silent)
            .expect_err("conversion should fail")
            .to_string();
        let left: Vec<_> = fs::read_dir(&self.out_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "left behind: {left:?} after: {err}");
        err
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        if let Some(root) = self.dir.parent() {
            let _ = fs::remove_dir_all(root);
        }
    }
}

#[test]
fn a_valid_tiny_checkpoint_converts() {
    let c = Case::new("ok");
    let out = c.out_dir.join("model.gguf");
    let s = convert(&c.dir, &out, None, &Case::opts(), &mut Silent).unwrap();
    assert_eq!(s.tensors.len(), 1 + 2 * 9 + 1);
    let f = edgevl_gguf::GgufFile::open(&out).unwrap();
    assert_eq!(f.metadata().get_str("tokenizer.ggml.pre").unwrap(), "smollm");
    assert_eq!(fs::read_dir(&c.out_dir).unwrap().count(), 1, "only the output, no temporary file");
}

#[test]
fn an_output_naming_a_file_of_the_checkpoint_is_refused_and_the_file_kept() {
    // It replaced the shard (or config.json) with the GGUF being written from it.
    let c = Case::new("self");
    for name in ["model-00001-of-00002.safetensors", "config.json", "tokenizer.json"] {
        let path = c.dir.join(name);
        let before = fs::read(&path).unwrap();
        let e = convert(&c.dir, &path, None, &Case::opts(), &mut Silent).expect_err(name).to_string();
        assert!(e.contains("is a file of the checkpoint") && e.contains(name), "{e}");
        assert_eq!(fs::read(&path).unwrap(), before, "{name} changed");
        // Named as the mmproj's output, or through a link, the same.
        let link = c.out_dir.join("link.gguf");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let e = convert(&c.dir, &c.out_dir.join("m.gguf"), Some(&link), &Case::opts(), &mut Silent)
            .expect_err(name)
            .to_string();
        assert!(e.contains("is a file of the checkpoint"), "{e}");
        fs::remove_file(&link).unwrap();
        assert_eq!(fs::read(&path).unwrap(), before, "{name} changed");
    }
    // A GGUF in the checkpoint's folder (an earlier conversion's) is replaced as usual.
    let gguf = c.dir.join("model.gguf");
    convert(&c.dir, &gguf, None, &Case::opts(), &mut Silent).unwrap();
    convert(&c.dir, &gguf, None, &Case::opts(), &mut Silent).unwrap();
    assert!(edgevl_gguf::GgufFile::open(&gguf).is_ok());
}

#[test]
fn infinite_or_nan_weights_are_refused_when_quantised() {
    // llama-quantize refuses them (`ggml_validate_row_data`); a Q8_0 block took an infinite scale,
    // a NaN became 0, and the file ran.
    for (tag, bits, what) in [("inf", 0x7f80u16, "inf"), ("nan", 0x7fc0u16, "NaN")] {
        let c = Case::new(tag);
        let mut t = tiny_tensors();
        let up = t.iter_mut().find(|t| t.0 == "model.layers.1.mlp.up_proj.weight").unwrap();
        // Row 3, column 5 (rows of D bf16 values).
        let at = (3 * D as usize + 5) * 2;
        up.3[at..at + 2].copy_from_slice(&bits.to_le_bytes());
        c.write_shards(t, |h| h);
        let e = c.fails();
        assert!(
            e.contains("blk.1.ffn_up.weight") && e.contains(&format!("row 3, column 5 is {what}")),
            "{e}"
        );
        // Kept as is in a float file, as llama.cpp's converter keeps it.
        let f32_opts =
            ConvertOptions { plan: PlanOptions { scheme: Scheme::F32, ..Case::opts().plan }, ..Case::opts() };
        convert(&c.dir, &c.out_dir.join("model.gguf"), None, &f32_opts, &mut Silent).expect("f32 converts");
    }
}

#[test]
fn named_chat_templates_are_written_as_gguf_py_writes_them() {
    // A list of named templates in tokenizer_config.json (e.g. default + tool_use) wrote no
    // template at all; additional_chat_templates/*.jinja were not read. A name given twice (after
    // `_` for other characters) is listed once, with its last template, as gguf-py lists it.
    let c = Case::new("templates");
    let tc_path = c.dir.join("tokenizer_config.json");
    let mut tc: serde_json::Value = serde_json::from_slice(&fs::read(&tc_path).unwrap()).unwrap();
    let out = c.out_dir.join("model.gguf");
    let read = |out: &std::path::Path| {
        let f = edgevl_gguf::GgufFile::open(out).unwrap();
        let md = f.metadata();
        let named: Vec<(String, String)> = md
            .get_str_array("tokenizer.chat_templates")
            .map(|names| {
                names
                    .iter()
                    .map(|n| {
                        (n.clone(), md.get_str(&format!("tokenizer.chat_template.{n}")).unwrap().to_string())
                    })
                    .collect()
            })
            .unwrap_or_default();
        (md.get_str("tokenizer.chat_template").ok().map(str::to_string), named)
    };
    tc["chat_template"] = serde_json::json!([
        {"name": "default", "template": "D"},
        {"name": "tool use", "template": "T0"},
        {"name": "no template"},
        {"name": "tool_use", "template": "T"},
    ]);
    fs::write(&tc_path, tc.to_string()).unwrap();
    convert(&c.dir, &out, None, &Case::opts(), &mut Silent).unwrap();
    assert_eq!(read(&out), (Some("D".into()), vec![("tool_use".into(), "T".into())]));
    // Without one in tokenizer_config.json: chat_template.jinja and the folder beside it.
    tc.as_object_mut().unwrap().remove("chat_template");
    fs::write(&tc_path, tc.to_string()).unwrap();
    fs::write(c.dir.join("chat_template.jinja"), "J").unwrap();
    fs::create_dir(c.dir.join("additional_chat_templates")).unwrap();
    fs::write(c.dir.join("additional_chat_templates/rag.jinja"), "R").unwrap();
    convert(&c.dir, &out, None, &Case::opts(), &mut Silent).unwrap();
    assert_eq!(read(&out), (Some("J".into()), vec![("rag".into(), "R".into())]));
    // A `chat_template` key, even null, is the template (none here): the files do not count.
    tc["chat_template"] = serde_json::Value::Null;
    fs::write(&tc_path, tc.to_string()).unwrap();
    convert(&c.dir, &out, None, &Case::opts(), &mut Silent).unwrap();
    assert_eq!(read(&out), (None, vec![]));
}

#[test]
fn pytorch_bin_weights_are_named_as_such() {
    // It said "tensor 'model*.safetensors (no weights file)' is missing".
    let c = Case::new("bin");
    for name in [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
    ] {
        fs::remove_file(c.dir.join(name)).unwrap();
    }
    fs::write(c.dir.join("pytorch_model.bin"), b"PK").unwrap();
    let e = c.fails();
    assert!(e.contains("PyTorch .bin weights") && e.contains("safe_serialization=True"), "{e}");
}

/// The factors of the committed reference (llama.cpp's `generate_extra_tensors` on torch) for
/// its case `i`: (config, float32 bits).
fn llama3_reference(i: usize) -> (serde_json::Value, Vec<u32>) {
    let path = edgevl_testdata::fixture("convert/llama3_rope_factors.json");
    let doc: serde_json::Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
    let case = &doc["cases"][i];
    let bits = case["bits"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap() as u32).collect();
    (case["config"].clone(), bits)
}

#[test]
fn llama3_rope_factors_are_llama_cpps_bit_for_bit() {
    for i in 0..6 {
        let (config, bits) = llama3_reference(i);
        let f = |k: &str, d: f64| config["rope_scaling"].get(k).and_then(|v| v.as_f64()).unwrap_or(d);
        let head_dim = config["head_dim"].as_u64().unwrap_or_else(|| {
            config["hidden_size"].as_u64().unwrap() / config["num_attention_heads"].as_u64().unwrap()
        });
        let p = edgevl_convert::Llama3Rope {
            factor: f("factor", 8.0),
            low_freq_factor: f("low_freq_factor", 1.0),
            high_freq_factor: f("high_freq_factor", 4.0),
            original_context: f("original_max_position_embeddings", 8192.0),
        };
        let got: Vec<u32> =
            edgevl_convert::llama3_factors(config["rope_theta"].as_f64().unwrap(), head_dim, &p)
                .iter()
                .map(|x| x.to_bits())
                .collect();
        assert_eq!(got, bits, "case {i}: {config}");
    }
}

#[test]
fn a_llama3_rope_scaling_is_written_as_rope_freqs_first() {
    // `rope_type: llama3` (Llama 3.1/3.2) was refused ("not supported by edgevl convert").
    let c = Case::new("llama3");
    let (config, bits) = llama3_reference(3); // this checkpoint's shape: width 64, 4 heads
    let path = c.dir.join("config.json");
    let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    v["rope_theta"] = config["rope_theta"].clone();
    v["rope_scaling"] = config["rope_scaling"].clone();
    fs::write(&path, v.to_string()).unwrap();
    let out = c.out_dir.join("model.gguf");
    let s = convert(&c.dir, &out, None, &Case::opts(), &mut Silent).unwrap();
    assert_eq!(s.tensors[0], ("rope_freqs.weight".to_string(), edgevl_gguf::GgmlType::F32));
    let f = edgevl_gguf::GgufFile::open(&out).unwrap();
    let t = f.tensor("rope_freqs.weight").unwrap();
    let got: Vec<u32> =
        f.tensor_data(t).chunks_exact(4).map(|b| u32::from_le_bytes(b.try_into().unwrap())).collect();
    assert_eq!(got, bits);
    // Only LLaMA's converter writes it: a Qwen2 with it is refused, as before.
    v["architectures"] = serde_json::json!(["Qwen2ForCausalLM"]);
    fs::write(&path, v.to_string()).unwrap();
    fs::remove_file(&out).unwrap();
    let e = c.fails();
    assert!(e.contains("RoPE scaling type 'llama3'"), "{e}");
}

#[test]
fn missing_shard() {
    let c = Case::new("shard");
    fs::remove_file(c.dir.join("model-00002-of-00002.safetensors")).unwrap();
    let e = c.fails();
    assert!(e.contains("model-00002-of-00002.safetensors") && e.contains("model."), "{e}");
}

#[test]
fn truncated_file() {
    let c = Case::new("trunc");
    let p = c.dir.join("model-00001-of-00002.safetensors");
    let len = fs::metadata(&p).unwrap().len();
    fs::OpenOptions::new().write(true).open(&p).unwrap().set_len(len - 100).unwrap();
    let e = c.fails();
    assert!(e.contains("model-00001-of-00002.safetensors") && e.contains("tensor '"), "{e}");
}

#[test]
fn overlapping_and_past_end_offsets() {
    let c = Case::new("overlap");
    // The second tensor starts 8 bytes early: it overlaps the first.
    let t = tiny_tensors();
    let first = t[0].3.len();
    let second = t[1].3.len();
    c.write_shards(t.clone(), move |h| {
        h.replacen(
            &format!("[{first},{}]", first + second),
            &format!("[{},{}]", first - 8, first + second - 8),
            1,
        )
    });
    let e = c.fails();
    assert!(e.contains("overlaps") && e.contains("tensor 'model.layers.0.input_layernorm.weight'"), "{e}");
    // The first tensor's end runs past the data.
    c.write_shards(t, move |h| h.replacen(&format!("[0,{first}]"), &format!("[0,{}]", first * 100), 1));
    let e = c.fails();
    assert!(e.contains("not inside") && e.contains("tensor 'model.embed_tokens.weight'"), "{e}");
}

#[test]
fn dtype_edgevl_cannot_read() {
    let c = Case::new("dtype");
    let mut t = tiny_tensors();
    t[2].1 = "I16"; // same byte size as BF16: a valid file, an unusable tensor
    c.write_shards(t.clone(), |h| h);
    let e = c.fails();
    assert!(
        e.contains("model-00001-of-00002.safetensors")
            && e.contains(&format!("'{}'", t[2].0))
            && e.contains("I16"),
        "{e}"
    );
    t[2].1 = "Q4";
    c.write_shards(t.clone(), |h| h);
    let e = c.fails();
    assert!(e.contains("unknown dtype 'Q4'") && e.contains(&t[2].0), "{e}");
}

#[test]
fn shape_disagreeing_with_config() {
    let c = Case::new("shape");
    fs::write(
        c.dir.join("config.json"),
        fs::read_to_string(c.dir.join("config.json"))
            .unwrap()
            .replace("\"intermediate_size\":128", "\"intermediate_size\":96"),
    )
    .unwrap();
    let e = c.fails();
    assert!(e.contains("model.layers.0.mlp.down_proj.weight") && e.contains("config.json implies"), "{e}");
}

#[test]
fn unknown_architecture() {
    let c = Case::new("arch");
    let cfg = fs::read_to_string(c.dir.join("config.json"))
        .unwrap()
        .replace("LlamaForCausalLM", "GPTNeoXForCausalLM");
    fs::write(c.dir.join("config.json"), cfg).unwrap();
    let e = c.fails();
    assert!(e.contains("config.json") && e.contains("unknown architecture 'GPTNeoXForCausalLM'"), "{e}");
}

#[test]
fn write_failure_names_output_and_tensor() {
    let c = Case::new("write");
    let label = c.out_dir.join("model.gguf");
    // Past the header (about 1.9 MB of vocabulary) and into the tensor data.
    let err = convert_to_writer(
        &c.dir,
        Part::Llm,
        FailingWriter { left: 3_000_000 },
        &label,
        &Case::opts(),
        &mut Silent,
    )
    .map(|_| ())
    .expect_err("the sink fails")
    .to_string();
    assert!(err.contains("model.gguf") && err.contains("tensor '") && err.contains("no space left"), "{err}");
}

/// Little-endian f32 bytes of 0, 1, ..., n - 1.
fn counting(n: u64) -> Vec<u8> {
    (0..n).flat_map(|i| (i as f32).to_le_bytes()).collect()
}

#[test]
fn llama_query_and_key_biases_are_permuted_like_their_rows() {
    // llama.cpp's LlamaModel.permute on a 1-D tensor of 0..len:
    // w.reshape(n_head, 2, len // n_head // 2).swapaxes(1, 2).reshape(len).
    fn permuted(len: usize, n_head: usize) -> Vec<f32> {
        let half = len / n_head / 2;
        let mut out = Vec::with_capacity(len);
        for h in 0..n_head {
            for i in 0..half {
                for j in 0..2 {
                    out.push(((h * 2 + j) * half + i) as f32);
                }
            }
        }
        out
    }
    let c = Case::new("qkbias");
    let mut t = tiny_tensors();
    t.push(("model.layers.0.self_attn.q_proj.bias".into(), "F32", vec![D], counting(D)));
    t.push(("model.layers.0.self_attn.k_proj.bias".into(), "F32", vec![KV], counting(KV)));
    c.write_shards(t, |h| h);
    let out = c.out_dir.join("model.gguf");
    convert(&c.dir, &out, None, &Case::opts(), &mut Silent).unwrap();
    let f = edgevl_gguf::GgufFile::open(&out).unwrap();
    for (name, len, n_head) in [("blk.0.attn_q.bias", D, 4), ("blk.0.attn_k.bias", KV, 2)] {
        let info = f.tensors().iter().find(|t| t.name == name).unwrap();
        let got: Vec<f32> =
            f.tensor_data(info).chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        assert_eq!(got, permuted(len as usize, n_head), "{name}");
    }
}

#[test]
fn hyper_parameters_edgevl_cannot_load_name_their_field() {
    // Each used to be written (or to stop the writing threads) and then refused by `edgevl run`.
    let eps = "\"rms_norm_eps\":1e-5";
    let cases = [
        ("\"hidden_size\":64", "\"hidden_size\":0".to_string(), "'hidden_size'"),
        ("\"intermediate_size\":128", "\"intermediate_size\":0".into(), "'intermediate_size'"),
        ("\"num_attention_heads\":4", "\"num_attention_heads\":0".into(), "'num_attention_heads'"),
        ("\"vocab_size\":49152", "\"vocab_size\":300000000".into(), "'vocab_size'"),
        (eps, "\"rms_norm_eps\":-1".into(), "'rms_norm_eps'"),
        (eps, format!("{eps},\"rope_theta\":1e300"), "'rope_theta'"),
        (eps, format!("{eps},\"max_position_embeddings\":0"), "'max_position_embeddings'"),
        (eps, format!("{eps},\"head_dim\":0"), "'head_dim'"),
        (eps, format!("{eps},\"head_dim\":15"), "'head_dim'"),
        (
            eps,
            format!("{eps},\"rope_scaling\":{{\"type\":\"linear\",\"factor\":0}}"),
            "'rope_scaling.factor'",
        ),
    ];
    for (from, to, field) in cases {
        let c = Case::new("hparams");
        let config = fs::read_to_string(c.dir.join("config.json")).unwrap();
        assert!(config.contains(from), "{from}");
        fs::write(c.dir.join("config.json"), config.replacen(from, &to, 1)).unwrap();
        let e = c.fails();
        assert!(e.contains("config.json") && e.contains(&format!("field {field}")), "{to}: {e}");
    }
}

#[test]
fn json_files_that_are_not_regular_or_too_large_are_refused() {
    // A config.json past 64 MiB (a list of numbers: its JSON tree would take ~16 times its text).
    let c = Case::new("json-large");
    let mut big = String::from("{\"architectures\":[\"LlamaForCausalLM\"],\"x\":[");
    big.push_str(&"1,".repeat(32 << 20));
    big.push_str("1]}");
    fs::write(c.dir.join("config.json"), big).unwrap();
    let e = c.fails();
    assert!(e.contains("config.json") && e.contains("larger than the 64 MiB"), "{e}");
    // A FIFO as config.json: refused before it is opened (the open would block for good).
    let c = Case::new("json-fifo");
    fs::remove_file(c.dir.join("config.json")).unwrap();
    let fifo = c.dir.join("config.json");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let e = c.fails();
    assert!(e.contains("config.json") && e.contains("not a regular file"), "{e}");
}
