//! Writer -> reader round trips, and re-writing SmolLM2 byte for byte.

mod common;

use edgevl_gguf::{Array, GgmlType, GgufError, GgufFile, GgufWriter, TensorEdit, Value};

/// One value of every type, including empty, nested and unicode arrays.
fn every_value() -> Vec<(&'static str, Value)> {
    vec![
        ("t.u8", Value::U8(250)),
        ("t.i8", Value::I8(-128)),
        ("t.u16", Value::U16(65535)),
        ("t.i16", Value::I16(-32768)),
        ("t.u32", Value::U32(u32::MAX)),
        ("t.i32", Value::I32(i32::MIN)),
        ("t.f32", Value::F32(-0.1)),
        ("t.f32.inf", Value::F32(f32::INFINITY)),
        ("t.bool.t", Value::Bool(true)),
        ("t.bool.f", Value::Bool(false)),
        ("t.str", Value::Str("héllo 🌍 \n\0 world".into())),
        ("t.str.empty", Value::Str(String::new())),
        ("t.u64", Value::U64(u64::MAX)),
        ("t.i64", Value::I64(i64::MIN)),
        ("t.f64", Value::F64(std::f64::consts::PI)),
        ("a.u8", Value::Array(Array::U8(vec![0, 1, 255]))),
        ("a.i8", Value::Array(Array::I8(vec![-1, 1]))),
        ("a.u16", Value::Array(Array::U16(vec![1, 65535]))),
        ("a.i16", Value::Array(Array::I16(vec![-2, 2]))),
        ("a.u32", Value::Array(Array::U32(vec![7; 5]))),
        ("a.i32", Value::Array(Array::I32(vec![-7, 0, 7]))),
        ("a.f32", Value::Array(Array::F32(vec![1.5, -2.25, 1e-30]))),
        ("a.bool", Value::Array(Array::Bool(vec![true, false, true]))),
        ("a.str", Value::Array(Array::Str(vec!["a".into(), String::new(), "ü€".into()]))),
        ("a.u64", Value::Array(Array::U64(vec![u64::MAX, 0]))),
        ("a.i64", Value::Array(Array::I64(vec![i64::MIN, i64::MAX]))),
        ("a.f64", Value::Array(Array::F64(vec![0.5, -1e300]))),
        ("a.empty", Value::Array(Array::F32(vec![]))),
        (
            "a.nested",
            Value::Array(Array::Nested(vec![
                Array::I32(vec![1, 2]),
                Array::Str(vec!["x".into()]),
                Array::Nested(vec![Array::U8(vec![9])]),
                Array::Nested(vec![]),
            ])),
        ),
    ]
}

/// Deterministic filler bytes.
fn bytes(n: u64, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// Several tensor types and shapes (1 to 4 dims, one empty).
fn tensors() -> Vec<(&'static str, GgmlType, Vec<u64>)> {
    vec![
        ("f32.vec", GgmlType::F32, vec![7]),
        ("f16.mat", GgmlType::F16, vec![3, 5]),
        ("q8_0.mat", GgmlType::Q8_0, vec![64, 3]),
        ("q4_1.mat", GgmlType::Q4_1, vec![32, 2]),
        ("q4_k.mat", GgmlType::Q4_K, vec![256, 2]),
        ("q6_k.3d", GgmlType::Q6_K, vec![256, 1, 3]),
        ("bf16.4d", GgmlType::BF16, vec![4, 1, 2, 3]),
        ("i32.empty", GgmlType::I32, vec![0, 5]),
        ("i8.last", GgmlType::I8, vec![3]),
    ]
}

fn build(alignment: Option<u32>) -> GgufWriter {
    let mut w = GgufWriter::new();
    if let Some(a) = alignment {
        w.add_kv("general.alignment", Value::U32(a));
    }
    for (k, v) in every_value() {
        w.add_kv(k, v);
    }
    for (i, (name, t, dims)) in tensors().into_iter().enumerate() {
        let n = edgevl_gguf::tensor_n_bytes(name, t, &dims).expect("size");
        w.add_tensor(name, t, &dims, bytes(n, i as u8)).expect("add tensor");
    }
    w
}

fn check(file: &GgufFile, alignment: u64) {
    assert_eq!(file.version(), 3);
    assert_eq!(file.alignment(), alignment);
    assert_eq!(file.data_offset() % alignment, 0);
    let values: Vec<(&str, Value)> = every_value();
    let extra = usize::from(file.metadata().get("general.alignment").is_some());
    assert_eq!(file.metadata().len(), values.len() + extra);
    for ((k, v), (gk, gv)) in values.iter().zip(file.metadata().iter().skip(extra)) {
        assert_eq!(*k, gk);
        assert_eq!(v, gv, "value of {k}");
    }
    assert_eq!(file.tensors().len(), tensors().len());
    for (i, ((name, t, dims), info)) in tensors().into_iter().zip(file.tensors()).enumerate() {
        assert_eq!(info.name, name);
        assert_eq!(info.ggml_type, t);
        assert_eq!(info.dims, dims);
        assert_eq!(info.offset % alignment, 0, "{name} aligned");
        let data = file.tensor_data(info);
        assert_eq!(data, bytes(info.n_bytes, i as u8).as_slice(), "data of {name}");
        assert_eq!(file.require_tensor(name, &dims).map(|(_, d)| d).ok(), Some(data));
    }
}

#[test]
fn round_trip_every_value_type_and_tensor_type_default_alignment() {
    let bytes = build(None).to_bytes().expect("write");
    check(&GgufFile::from_bytes(bytes).expect("read back"), 32);
}

#[test]
fn round_trip_honours_custom_alignment() {
    for a in [1, 8, 64, 4096] {
        let bytes = build(Some(a)).to_bytes().expect("write");
        assert_eq!(bytes.len() as u64 % u64::from(a), 0, "file padded to {a}");
        check(&GgufFile::from_bytes(bytes).expect("read back"), u64::from(a));
    }
}

#[test]
fn write_to_path_round_trips_and_leaves_no_part_file() {
    let dir = std::env::temp_dir().join(format!("edgevl-gguf-rt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("model.gguf");
    build(None).write_to_path(&path).expect("write_to_path");
    check(&GgufFile::open(&path).expect("open"), 32);
    let names: Vec<_> =
        std::fs::read_dir(&dir).expect("list").filter_map(|e| e.ok().map(|e| e.file_name())).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("model.gguf")]);
    // Writing into a missing directory fails with an Io error naming the path, leaving nothing.
    let bad = dir.join("missing-dir/model.gguf");
    let e = build(None).write_to_path(&bad).expect_err("missing dir");
    assert!(matches!(e, GgufError::Io { .. }));
    assert!(e.to_string().contains("missing-dir/model.gguf"), "{e}");
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn writer_refuses_what_the_reader_would_refuse() {
    let mut w = GgufWriter::new();
    let e = w.add_tensor("a", GgmlType::F32, &[2, 2], vec![0; 15]).err();
    assert!(matches!(e, Some(GgufError::DataSizeMismatch { expected: 16, found: 15, .. })));
    let e = w.add_tensor("b", GgmlType::Q8_0, &[31], vec![0; 34]).err();
    assert!(matches!(e, Some(GgufError::BadRowLength { .. })));
    let e = w.add_tensor("c", GgmlType::F32, &[1, 1, 1, 1, 1], vec![0; 4]).err();
    assert!(matches!(e, Some(GgufError::TooManyDims { n_dims: 5, .. })));
    assert!(w.add_tensor("d", GgmlType::F32, &[1], vec![0; 4]).is_ok());
    let e = w.add_tensor("d", GgmlType::F32, &[1], vec![0; 4]).err();
    assert!(matches!(e, Some(GgufError::DuplicateTensor { .. })));
    w.add_kv("general.alignment", Value::U32(48));
    assert!(matches!(w.to_bytes(), Err(GgufError::BadAlignment { value: 48, .. })));
    let mut deep = Array::U8(vec![1]);
    for _ in 0..edgevl_gguf::MAX_ARRAY_DEPTH {
        deep = Array::Nested(vec![deep]);
    }
    let mut w = GgufWriter::new();
    w.add_kv("deep", Value::Array(deep));
    assert!(matches!(w.to_bytes(), Err(GgufError::NestingTooDeep { .. })));
}

/// Re-writing every key and tensor of SmolLM2 (written by llama.cpp) reproduces it byte for byte.
#[test]
fn rewriting_smollm2_reproduces_llama_cpp_bytes() {
    let path = common::smollm2_path();
    let original = std::fs::read(&path).expect("read SmolLM2");
    let f = GgufFile::from_bytes(original.clone()).expect("parse SmolLM2");
    let w = GgufWriter::copy_of(&f, |_, _| TensorEdit::Keep).expect("copy");
    let rewritten = w.to_bytes().expect("write");
    assert_eq!(rewritten.len(), original.len());
    let first_diff = rewritten.iter().zip(&original).position(|(a, b)| a != b);
    assert_eq!(first_diff, None, "first differing byte");
}

/// A copy with keys removed and set and tensors dropped and replaced holds exactly those changes.
#[test]
fn a_copy_holds_its_edits() {
    let src = GgufFile::from_bytes(build(None).to_bytes().expect("write")).expect("parse");
    let mut w = GgufWriter::copy_of(&src, |info, data| match info.name.as_str() {
        "f16.mat" => TensorEdit::Drop,
        "i8.last" => TensorEdit::Replace(
            GgmlType::F32,
            vec![2],
            data.iter().chain(data).chain(&[0; 2]).copied().collect(),
        ),
        _ => TensorEdit::Keep,
    })
    .expect("copy");
    assert_eq!(w.remove_kv("t.i8"), Some(Value::I8(-128)));
    assert_eq!(w.remove_kv("t.i8"), None);
    w.add_kv("t.u8", Value::U8(1)).add_kv("new", Value::Bool(true));
    let copy = GgufFile::from_bytes(w.to_bytes().expect("write")).expect("parse copy");

    let mut want: Vec<(&str, Value)> = every_value().into_iter().filter(|(k, _)| *k != "t.i8").collect();
    want[0].1 = Value::U8(1);
    want.push(("new", Value::Bool(true)));
    let got: Vec<(&str, Value)> = copy.metadata().iter().map(|(k, v)| (k, v.clone())).collect();
    assert_eq!(got, want);
    for (k, v) in &want {
        assert_eq!(copy.metadata().get(k), Some(v), "lookup of {k} after a removal");
    }

    let names: Vec<&str> = copy.tensors().iter().map(|t| t.name.as_str()).collect();
    let want_names: Vec<&str> = tensors().iter().map(|t| t.0).filter(|n| *n != "f16.mat").collect();
    assert_eq!(names, want_names);
    for info in copy.tensors() {
        let old = src.tensors().iter().find(|t| t.name == info.name).expect("from the source");
        if info.name == "i8.last" {
            assert_eq!((info.ggml_type, info.dims.as_slice()), (GgmlType::F32, &[2u64][..]));
            assert_eq!(&copy.tensor_data(info)[..3], src.tensor_data(old));
        } else {
            assert_eq!((info.ggml_type, &info.dims), (old.ggml_type, &old.dims));
            assert_eq!(copy.tensor_data(info), src.tensor_data(old), "{}", info.name);
        }
    }
}
