//! Reading the real SmolLM2-135M-Instruct Q4_1 file, checked against the `gguf` Python package.

mod common;

use edgevl_gguf::{GgmlType, GgufFile};

#[test]
fn smollm2_header_metadata_and_tensors() {
    let f = GgufFile::open(common::smollm2_path()).expect("open SmolLM2");
    assert_eq!(f.version(), 3);
    assert_eq!(f.tensors().len(), 272);
    assert_eq!(f.metadata().len(), 33);
    assert_eq!(f.architecture().ok(), Some("llama"));
    assert_eq!(f.metadata().get_u32("llama.block_count").ok(), Some(30));
    assert_eq!(f.alignment(), 32);
    let (info, data) = f.require_tensor("token_embd.weight", &[576, 49152]).expect("token_embd.weight");
    assert_eq!(info.ggml_type, GgmlType::Q8_0);
    assert_eq!(data.len() as u64, 576 / 32 * 34 * 49152);
    assert_eq!(f.metadata().get_str_array("tokenizer.ggml.tokens").map(|t| t.len()).ok(), Some(49152));
}

/// Our reader agrees with gguf-py (scripts/gguf_reference_dump.py) on every key, type, value
/// sample, tensor name, type, shape, offset and size, and on the ggml block geometry.
#[test]
fn smollm2_layout_matches_gguf_py_reference() {
    use edgevl_gguf::{Array, Value};
    use serde_json::Value as J;

    let text = std::fs::read_to_string(common::fixture("gguf/smollm2-layout.json"))
        .expect("read tests/fixtures/gguf/smollm2-layout.json");
    let reference: J = serde_json::from_str(&text).expect("parse reference JSON");
    let f = GgufFile::open(common::smollm2_path()).expect("open SmolLM2");

    assert_eq!(Some(f.version() as u64), reference["version"].as_u64());
    assert_eq!(Some(f.alignment()), reference["alignment"].as_u64());
    assert_eq!(Some(f.data_offset()), reference["data_offset"].as_u64());

    let kvs = reference["kvs"].as_array().expect("kvs");
    assert_eq!(f.metadata().len(), kvs.len());
    for (i, ((key, value), want)) in f.metadata().iter().zip(kvs).enumerate() {
        assert_eq!(Some(key), want["key"].as_str(), "key #{i}");
        assert_eq!(Some(value.type_name().as_str()), want["type"].as_str(), "type of {key}");
        let as_json = |v: &Value| -> J {
            match v {
                Value::Str(s) => J::from(s.as_str()),
                Value::Bool(b) => J::from(*b),
                Value::F32(x) => J::from(f64::from(*x)),
                Value::F64(x) => J::from(*x),
                other => match other.as_integer() {
                    Some(n) => J::from(i64::try_from(n).expect("integer fits i64")),
                    None => J::Null,
                },
            }
        };
        match value {
            Value::Array(a) => {
                assert_eq!(Some(a.len() as u64), want["len"].as_u64(), "length of {key}");
                let elems: Vec<J> = match a {
                    Array::Str(v) => v.iter().map(|s| J::from(s.as_str())).collect(),
                    Array::I32(v) => v.iter().map(|&x| J::from(x)).collect(),
                    Array::U32(v) => v.iter().map(|&x| J::from(x)).collect(),
                    Array::F32(v) => v.iter().map(|&x| J::from(f64::from(x))).collect(),
                    other => panic!("{key}: array type {} not expected in SmolLM2", other.type_name()),
                };
                let first: Vec<J> = elems.iter().take(3).cloned().collect();
                assert_eq!(Some(&first), want["first"].as_array(), "first elements of {key}");
                assert_eq!(elems.last(), Some(&want["last"]), "last element of {key}");
            }
            scalar => assert_eq!(as_json(scalar), want["value"], "value of {key}"),
        }
    }

    let tensors = reference["tensors"].as_array().expect("tensors");
    assert_eq!(f.tensors().len(), tensors.len());
    for (t, want) in f.tensors().iter().zip(tensors) {
        assert_eq!(Some(t.name.as_str()), want["name"].as_str());
        assert_eq!(Some(t.ggml_type.name()), want["type"].as_str(), "type of {}", t.name);
        let shape: Vec<u64> = want["shape"].as_array().expect("shape").iter().filter_map(J::as_u64).collect();
        assert_eq!(t.dims, shape, "shape of {}", t.name);
        assert_eq!(Some(t.offset), want["offset"].as_u64(), "offset of {}", t.name);
        assert_eq!(Some(t.n_bytes), want["n_bytes"].as_u64(), "size of {}", t.name);
        assert_eq!(f.tensor_data(t).len() as u64, t.n_bytes);
    }

    let geometry = reference["ggml_types"].as_object().expect("ggml_types");
    assert_eq!(geometry.len(), GgmlType::ALL.len());
    for t in GgmlType::ALL {
        let g = &geometry[t.name()];
        assert_eq!(Some(t.id() as u64), g["id"].as_u64(), "id of {t}");
        assert_eq!(Some(t.block_size() as u64), g["block_size"].as_u64(), "block size of {t}");
        assert_eq!(Some(t.type_size() as u64), g["type_size"].as_u64(), "type size of {t}");
    }
}
