//! How the decoder reads the metadata and tensors llama.cpp's loader reads, on the tiny LLaMA
//! (normal RoPE) fixture edited: RoPE frequency factors (`rope_freqs.weight`, Llama 3.1's scaling),
//! the linear scaling keys as llama.cpp defaults them, and files edgevl would compute otherwise
//! than llama.cpp or transformers (a tensor the decoder would not read, a split GGUF, experts,
//! partial rotary) refused with their reason.

use edgevl_gguf::{GgmlType, GgufFile, GgufWriter, TensorEdit, Value};
use edgevl_kernels::ThreadPool;
use edgevl_model::{Decoder, DecoderInput, KvType, LogitsWanted};
use std::sync::Arc;

fn fixture() -> GgufFile {
    GgufFile::open(edgevl_testdata::fixture("tiny-llama-spm/model.gguf")).expect("open")
}

/// The fixture with `edit` applied to a copy of it.
fn edited(edit: impl FnOnce(&GgufFile, &mut GgufWriter)) -> GgufFile {
    let src = fixture();
    let mut w = GgufWriter::copy_of(&src, |_, _| TensorEdit::Keep).expect("copy");
    edit(&src, &mut w);
    GgufFile::from_bytes(w.to_bytes().expect("bytes")).expect("reopen")
}

fn load(file: GgufFile) -> Result<Decoder, String> {
    Decoder::load(Arc::new(file), &edgevl_testdata::kernels()).map_err(|e| e.to_string())
}

/// The error loading `file` gives.
fn load_error(file: GgufFile) -> String {
    load(file).err().expect("refused")
}

/// The logits at every position of a 40-token prompt (long enough for the angles to differ).
fn logits(file: GgufFile) -> Vec<f32> {
    let dec = load(file).expect("load");
    let pool = ThreadPool::new(2);
    let ids: Vec<u32> = (0..40).map(|i| (i * 7 + 3) % dec.n_vocab() as u32).collect();
    let mut kv = dec.new_cache(64, KvType::F32);
    let mut st = dec.new_state(64, 64);
    dec.forward(DecoderInput::Tokens(&ids), &mut kv, &mut st, &pool, LogitsWanted::All)
        .expect("forward")
        .to_vec()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn n_rot() -> usize {
    let f = fixture();
    let md = f.metadata();
    let head_dim =
        md.get_u64("llama.embedding_length").unwrap() / md.get_u64("llama.attention.head_count").unwrap();
    head_dim as usize
}

/// `rope_freqs.weight` holding `factors`.
fn with_factors(factors: &[f32]) -> GgufFile {
    let bytes: Vec<u8> = factors.iter().flat_map(|v| v.to_le_bytes()).collect();
    let n = factors.len() as u64;
    edited(|_, w| {
        w.add_tensor("rope_freqs.weight", GgmlType::F32, &[n], bytes).expect("add");
    })
}

fn with_kv(pairs: &[(&str, Value)]) -> GgufFile {
    edited(|_, w| {
        for (k, v) in pairs {
            w.add_kv(*k, v.clone());
        }
    })
}

#[test]
fn rope_frequency_factors_divide_each_pairs_angle() {
    let half = n_rot() / 2;
    let plain = logits(fixture());
    // Factors of 1 change nothing, bit for bit.
    assert_eq!(logits(with_factors(&vec![1.0; half])), plain);
    // Factors of 8 on every pair are linear scaling by 8 (the same angles, rounded in another order);
    // before the tensor was read, they were silently ignored and the logits were the plain ones.
    let eight = logits(with_factors(&vec![8.0; half]));
    let linear = logits(with_kv(&[
        ("llama.rope.scaling.type", Value::Str("linear".into())),
        ("llama.rope.scaling.factor", Value::F32(8.0)),
    ]));
    assert!(max_abs_diff(&eight, &linear) < 1e-3, "factors 8 vs linear 8: {}", max_abs_diff(&eight, &linear));
    assert!(max_abs_diff(&eight, &plain) > 1e-2, "the factors changed nothing");
    // A factor that is not a positive number is refused, as is a table of the wrong length.
    let mut bad = vec![1.0; half];
    bad[1] = 0.0;
    assert!(load_error(with_factors(&bad)).contains("rope_freqs.weight"));
    assert!(load_error(with_factors(&vec![1.0; half + 1])).contains("rope_freqs.weight"));
}

#[test]
fn linear_scaling_keys_are_read_as_llama_cpp_reads_them() {
    let linear4 = logits(with_kv(&[
        ("llama.rope.scaling.type", Value::Str("linear".into())),
        ("llama.rope.scaling.factor", Value::F32(4.0)),
    ]));
    assert_ne!(linear4, logits(fixture()));
    // The type defaults to linear; the factor falls back to the older `rope.scale_linear` key (both
    // were ignored: the plain logits came out).
    assert_eq!(logits(with_kv(&[("llama.rope.scaling.factor", Value::F32(4.0))])), linear4);
    assert_eq!(logits(with_kv(&[("llama.rope.scale_linear", Value::F32(4.0))])), linear4);
    // `none` turns a factor off; a factor of 0 is no scaling.
    let plain = logits(fixture());
    let none = [
        ("llama.rope.scaling.type", Value::Str("none".into())),
        ("llama.rope.scaling.factor", Value::F32(4.0)),
    ];
    assert_eq!(logits(with_kv(&none)), plain);
    assert_eq!(logits(with_kv(&[("llama.rope.scaling.factor", Value::F32(0.0))])), plain);
    // llama.cpp forces no scaling for `none` whatever the factor says; a negative factor is refused for linear only.
    let none_bad = [
        ("llama.rope.scaling.type", Value::Str("none".into())),
        ("llama.rope.scaling.factor", Value::F32(-1.0)),
    ];
    assert_eq!(logits(with_kv(&none_bad)), plain);
    assert!(load_error(with_kv(&[("llama.rope.scaling.factor", Value::F32(-1.0))])).contains("factor"));
}

#[test]
fn a_trained_context_past_a_million_positions_loads() {
    // llama.cpp loads 4M-context models; the context used is set at load, not by this number.
    let dec = load(with_kv(&[("llama.context_length", Value::U32(4_194_304))])).expect("load");
    assert_eq!(dec.hparams().n_ctx_train, 4_194_304);
}

#[test]
fn files_edgevl_would_compute_otherwise_are_refused_with_the_reason() {
    // A tensor the decoder does not read (a bias of the output projection, which llama.cpp adds; a block past
    // the count).
    let extra = edited(|src, w| {
        let d = src.metadata().get_u64("llama.embedding_length").unwrap();
        w.add_tensor("blk.0.attn_output.bias", GgmlType::F32, &[d], vec![0u8; d as usize * 4]).expect("add");
    });
    let e = load_error(extra);
    assert!(e.contains("blk.0.attn_output.bias") && e.contains("not supported"), "{e}");
    let e = load_error(with_kv(&[("llama.block_count", Value::U32(1))]));
    assert!(e.contains("'blk.1."), "{e}");
    // One part of a split file.
    let e = load_error(with_kv(&[("split.count", Value::U16(2)), ("split.no", Value::U16(0))]));
    assert!(e.contains("split GGUF") && e.contains("llama-gguf-split --merge"), "{e}");
    // Experts.
    let e = load_error(with_kv(&[("llama.expert_count", Value::U32(8))]));
    assert!(e.contains("mixture-of-experts"), "{e}");
    // Partial rotary (llama.cpp's llama: "invalid n_rot"; transformers rotates whole heads).
    let half = (n_rot() / 2) as u32;
    let e = load_error(with_kv(&[("llama.rope.dimension_count", Value::U32(half))]));
    assert!(e.contains("partial rotary"), "{e}");
    // An odd head width: RoPE rotates pairs (refused before the shapes are read).
    let e = load_error(with_kv(&[
        ("llama.attention.key_length", Value::U32(15)),
        ("llama.attention.value_length", Value::U32(15)),
        ("llama.rope.dimension_count", Value::U32(15)),
    ]));
    assert!(e.contains("must be even"), "{e}");
}
