//! Bad mmproj files (crafted from the tiny fixture with `GgufWriter`) give clear errors naming
//! the key, tensor or value at fault.

use edgevl_arch::family::VisionFamily;
use edgevl_gguf::{GgmlType, GgufFile, GgufWriter, TensorEdit, Value};
use edgevl_model::vision::{MmprojHparams, VisionEncoder, REQUIRED_KEYS};
use std::sync::Arc;

/// A tensor as stored: type, GGUF dims, bytes.
type Stored = (GgmlType, Vec<u64>, Vec<u8>);
/// Rewrites (or, returning `None`, drops) the named tensor.
type EditStored = dyn Fn(&str, GgmlType, Vec<u64>, Vec<u8>) -> Option<Stored>;

/// The tiny fixture rewritten with `edit_kv` applied to its metadata and `edit_tensor` to each
/// tensor (returning `None` drops it).
fn crafted(edit_kv: &dyn Fn(&mut GgufWriter), edit_tensor: &EditStored) -> Result<VisionEncoder, String> {
    let src = GgufFile::open(edgevl_testdata::fixture("tiny-vlm/mmproj.gguf")).expect("fixture");
    let mut w = GgufWriter::copy_of(&src, |info, data| {
        match edit_tensor(&info.name, info.ggml_type, info.dims.clone(), data.to_vec()) {
            Some((t, dims, data)) => TensorEdit::Replace(t, dims, data),
            None => TensorEdit::Drop,
        }
    })
    .expect("valid tensors");
    edit_kv(&mut w);
    let file = GgufFile::from_bytes(w.to_bytes().expect("writes")).map_err(|e| e.to_string())?;
    VisionEncoder::load(Arc::new(file), &edgevl_testdata::kernels()).map_err(|e| e.to_string())
}

fn keep(_: &str, t: GgmlType, d: Vec<u64>, b: Vec<u8>) -> Option<Stored> {
    Some((t, d, b))
}

fn err_kv(edit: &dyn Fn(&mut GgufWriter)) -> String {
    match crafted(edit, &keep) {
        Ok(_) => panic!("crafted file was accepted"),
        Err(e) => e,
    }
}

fn err_tensor(edit: &EditStored) -> String {
    match crafted(&|_| {}, edit) {
        Ok(_) => panic!("crafted file was accepted"),
        Err(e) => e,
    }
}

#[test]
fn unchanged_copy_loads() {
    assert!(crafted(&|_| {}, &keep).is_ok());
}

#[test]
fn unknown_projector_type() {
    let e = err_kv(&|w| {
        w.add_kv("clip.projector_type", Value::Str("mlp".into()));
    });
    assert_eq!(
        e,
        "projector type 'mlp' is not supported; edgevl runs 'lfm2' (with 'edgevl.vision.layout'), 'internvl' and 'idefics3' mmproj files"
    );
}

#[test]
fn unknown_layout() {
    let e = err_kv(&|w| {
        w.add_kv("edgevl.vision.layout", Value::Str("tiles-first".into()));
    });
    assert_eq!(e, "unknown edgevl.vision.layout 'tiles-first' (known: global-first)");
}

#[test]
fn every_missing_required_key_is_named() {
    let src = GgufFile::open(edgevl_testdata::fixture("tiny-vlm/mmproj.gguf")).expect("fixture");
    for key in REQUIRED_KEYS {
        let mut w = GgufWriter::copy_of(&src, |_, _| TensorEdit::Drop).expect("copy");
        w.remove_kv(key);
        let file = GgufFile::from_bytes(w.to_bytes().expect("writes")).expect("valid GGUF");
        let e = VisionEncoder::load(Arc::new(file), &edgevl_testdata::kernels()).err().map(|e| e.to_string());
        assert_eq!(e, Some(format!("missing metadata key '{key}'")));
    }
}

#[test]
fn gelu_quick_or_wrong_merge_refused() {
    let e = err_kv(&|w| {
        w.add_kv("clip.use_gelu", Value::Bool(false));
    });
    assert!(e.contains("clip.use_gelu") && e.contains("GELU"), "{e}");
    let e = err_kv(&|w| {
        w.add_kv("clip.vision.projector.scale_factor", Value::U32(3));
    });
    assert!(e.contains("clip.vision.projector.scale_factor") && e.contains('3'), "{e}");
}

#[test]
fn missing_tensor_is_named() {
    let e = err_tensor(&|name, t, d, b| if name == "v.blk.1.attn_v.bias" { None } else { Some((t, d, b)) });
    assert_eq!(e, "missing tensor 'v.blk.1.attn_v.bias'");
    let e = err_tensor(&|name, t, d, b| if name == "mm.2.weight" { None } else { Some((t, d, b)) });
    assert_eq!(e, "missing tensor 'mm.2.weight'");
    // The input norm is optional, but not half of it.
    let e = err_tensor(&|name, t, d, b| if name == "mm.input_norm.bias" { None } else { Some((t, d, b)) });
    assert_eq!(e, "missing tensor 'mm.input_norm.bias'");
}

/// One LCG tile, as the reference tests make them.
fn tile(size: usize) -> Vec<f32> {
    let mut state = 7u32;
    (0..3 * size * size)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ((state >> 24) as f32 / 255.0 - 0.5) / 0.5
        })
        .collect()
}

fn encode(enc: &VisionEncoder) -> Vec<f32> {
    let pool = edgevl_kernels::ThreadPool::new(2);
    enc.encode_tiles(&tile(enc.hparams().image_size), 1, 1, &pool).expect("encodes")
}

#[test]
fn a_wider_projector_hidden_layer_is_taken_from_mm_1() {
    // Published LFM2-VL files have a hidden width other than the output width. Widening the
    // fixture's hidden layer from 64 to 96 with zero weights and biases (GELU(0) = 0 feeds zero
    // columns of mm.2) must give the same embeddings.
    let zeros = |n: usize| vec![0u8; 4 * n];
    let wide = crafted(&|_| {}, &move |name, t, d, mut b| {
        assert_eq!(t, GgmlType::F32, "the fixture is F32");
        match name {
            "mm.1.weight" => {
                b.extend(zeros(32 * d[0] as usize));
                Some((t, vec![d[0], 96], b))
            }
            "mm.1.bias" => {
                b.extend(zeros(32));
                Some((t, vec![96], b))
            }
            "mm.2.weight" => {
                let row = 4 * d[0] as usize;
                let b = b.chunks_exact(row).flat_map(|r| r.iter().copied().chain(zeros(32))).collect();
                Some((t, vec![96, d[1]], b))
            }
            _ => Some((t, d, b)),
        }
    })
    .expect("a wider hidden layer loads");
    let base = crafted(&|_| {}, &keep).unwrap();
    let (a, b) = (encode(&base), encode(&wide));
    let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
    let err = a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale;
    assert!(err < 1e-6, "max rel err {err}");
}

#[test]
fn a_projector_without_input_norm_skips_it() {
    let bare = crafted(&|_| {}, &|name, t, d, b| (!name.starts_with("mm.input_norm")).then_some((t, d, b)))
        .expect("a file without mm.input_norm loads");
    let (with, without) = (encode(&crafted(&|_| {}, &keep).unwrap()), encode(&bare));
    assert_eq!(with.len(), without.len());
    assert!(without.iter().all(|v| v.is_finite()));
    assert!(with != without, "dropping the input norm changed nothing");
}

#[test]
fn wrong_shape_is_named() {
    // ffn_up stored transposed: [128, 64] instead of [64, 128].
    let e = err_tensor(&|name, t, d, b| {
        if name == "v.blk.0.ffn_up.weight" {
            Some((t, vec![d[1], d[0]], b))
        } else {
            Some((t, d, b))
        }
    });
    assert!(e.contains("v.blk.0.ffn_up.weight") && e.contains("[128, 64]") && e.contains("[64, 128]"), "{e}");
    // A patch kernel of the wrong patch size.
    let e = err_tensor(&|name, t, d, b| {
        if name == "v.patch_embd.weight" {
            Some((t, vec![d[0] * d[1], 1, d[2], d[3]], b))
        } else {
            Some((t, d, b))
        }
    });
    assert!(e.contains("v.patch_embd.weight") && e.contains("[14, 14, 3, 64]"), "{e}");
}

#[test]
fn extra_block_contradicts_block_count() {
    let e = err_kv(&|w| {
        w.add_kv("clip.vision.block_count", Value::U32(1));
    });
    assert!(e.contains("clip.vision.block_count") && e.contains("v.blk.1.ln1.weight"), "{e}");
}

#[test]
fn an_lfm2_file_without_the_layout_key_is_lfm2_vl_and_refused() {
    // llama.cpp's converters write no edgevl.vision.layout: an lfm2 file without it is LFM2-VL's,
    // which edgevl does not run (its preprocessing and prompt differ from this project's).
    let file = GgufFile::open(edgevl_testdata::fixture("tiny-vlm/mmproj.gguf")).unwrap();
    assert_eq!(MmprojHparams::try_from(file.metadata()).unwrap().family, VisionFamily::EdgeVl);
    let mut w = GgufWriter::copy_of(&file, |_, _| TensorEdit::Keep).unwrap();
    w.remove_kv("edgevl.vision.layout");
    let stripped = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
    let e = MmprojHparams::try_from(stripped.metadata()).unwrap_err().to_string();
    assert!(e.contains("LFM2-VL") && e.contains("edgevl.vision.layout"), "{e}");
}

#[test]
fn normalisation_that_overflows_is_refused() {
    // A std so small, or a mean so large, that a normalised pixel is infinite would give NaN
    // embeddings (and an empty answer) instead of an error.
    for (mean, std) in [(0.5f32, 1e-45f32), (3e38, 0.5), (0.5, 1e-4), (0.5, 0.0), (f32::NAN, 0.5)] {
        let e = err_kv(&|w| {
            w.add_kv("clip.vision.image_mean", Value::Array(edgevl_gguf::Array::F32(vec![mean; 3])));
            w.add_kv("clip.vision.image_std", Value::Array(edgevl_gguf::Array::F32(vec![std; 3])));
        });
        assert!(e.contains("clip.vision.image_std") && e.contains("(v - mean) / std"), "{mean} {std}: {e}");
    }
    // CLIP's own normalisation (about -1.8 to 2.1) is fine.
    let clip = crafted(
        &|w| {
            w.add_kv(
                "clip.vision.image_mean",
                Value::Array(edgevl_gguf::Array::F32(vec![0.481, 0.458, 0.408])),
            );
            w.add_kv(
                "clip.vision.image_std",
                Value::Array(edgevl_gguf::Array::F32(vec![0.269, 0.261, 0.276])),
            );
        },
        &keep,
    );
    assert!(clip.is_ok(), "{:?}", clip.err());
}
