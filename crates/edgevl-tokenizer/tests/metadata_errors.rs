//! Malformed tokenizer metadata gives an error naming the key, never a panic.

use edgevl_gguf::{Array, Metadata, Value};
use edgevl_tokenizer::{Tokenizer, TokenizerError};

fn strs(v: &[&str]) -> Value {
    Value::Array(Array::Str(v.iter().map(|s| s.to_string()).collect()))
}

/// A small valid byte-level BPE vocabulary: "a", "b", "ab", "Ġ", "Ġab", with merges.
fn bpe() -> Metadata {
    let mut md = Metadata::new();
    md.set("tokenizer.ggml.model".into(), Value::Str("gpt2".into()));
    md.set("tokenizer.ggml.pre".into(), Value::Str("gpt-2".into()));
    md.set("tokenizer.ggml.tokens".into(), strs(&["a", "b", "ab", "Ġ", "Ġab", "<|end|>"]));
    md.set("tokenizer.ggml.token_type".into(), Value::Array(Array::I32(vec![1, 1, 1, 1, 1, 3])));
    md.set("tokenizer.ggml.merges".into(), strs(&["a b", "Ġ ab"]));
    md
}

fn err(md: &Metadata) -> String {
    match Tokenizer::from_gguf(md) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_valid_base_case_works() {
    let tok = Tokenizer::from_gguf(&bpe()).expect("valid");
    assert_eq!(tok.encode("ab ab", false, false), [2, 4]);
    assert_eq!(tok.encode("ab<|end|>", true, true), [2, 5]);
    assert!(tok.is_eog(5), "<|end|> ends generation");
    assert_eq!(tok.bos(), None, "gpt2's default BOS id 11 is outside this vocabulary");
    // bytes with no token are dropped, as llama.cpp does
    assert_eq!(tok.encode("ac", false, false), [0]);
}

#[test]
fn missing_keys_are_named() {
    for key in ["tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.merges"] {
        let mut md = Metadata::new();
        for (k, v) in bpe().iter() {
            if k != key {
                md.set(k.to_owned(), v.clone());
            }
        }
        let e = err(&md);
        assert!(e.contains(key) && e.contains("missing"), "{e}");
    }
}

#[test]
fn wrong_value_and_element_types_are_named() {
    let cases: [(&str, Value); 6] = [
        ("tokenizer.ggml.model", Value::U32(1)),
        ("tokenizer.ggml.tokens", Value::Array(Array::I32(vec![1, 2]))),
        ("tokenizer.ggml.token_type", Value::Array(Array::F32(vec![1.0; 6]))),
        ("tokenizer.ggml.merges", Value::Array(Array::U8(vec![1]))),
        ("tokenizer.ggml.scores", Value::Array(Array::Str(vec!["x".into(); 6]))),
        ("tokenizer.ggml.bos_token_id", Value::Str("1".into())),
    ];
    for (key, value) in cases {
        let mut md = bpe();
        md.set(key.into(), value);
        let e = err(&md);
        assert!(e.contains(key), "{key}: {e}");
    }
}

#[test]
fn lengths_and_ids_are_checked() {
    let mut md = bpe();
    md.set("tokenizer.ggml.token_type".into(), Value::Array(Array::I32(vec![1; 5])));
    let e = err(&md);
    assert!(e.contains("token_type") && e.contains('5') && e.contains('6'), "{e}");

    let mut md = bpe();
    md.set("tokenizer.ggml.scores".into(), Value::Array(Array::F32(vec![0.0; 7])));
    assert!(err(&md).contains("tokenizer.ggml.scores"));

    // A special id past the vocabulary keeps the default, as llama.cpp's loader does (it warns
    // "bad special token ... using default id"); the byte-level BPE default (11) is past these 6 tokens.
    let mut md = bpe();
    md.set("tokenizer.ggml.eos_token_id".into(), Value::U32(5));
    md.set("tokenizer.ggml.padding_token_id".into(), Value::U32(2));
    let tok = Tokenizer::from_gguf(&md).expect("valid");
    assert_eq!((tok.eos(), tok.pad()), (Some(5), Some(2)));
    for key in
        ["tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.padding_token_id"]
    {
        let mut md = bpe();
        md.set(key.into(), Value::U32(6));
        let tok = Tokenizer::from_gguf(&md).unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!((tok.bos(), tok.eos(), tok.pad()), (None, None, None), "{key}");
    }

    let mut md = bpe();
    md.set("tokenizer.ggml.tokens".into(), strs(&[]));
    md.set("tokenizer.ggml.token_type".into(), Value::Array(Array::I32(vec![])));
    assert!(matches!(Tokenizer::from_gguf(&md), Err(TokenizerError::EmptyVocabulary)));
}

#[test]
fn unsupported_model_and_pre_tokenizer() {
    let mut md = bpe();
    md.set("tokenizer.ggml.model".into(), Value::Str("bert".into()));
    assert!(err(&md).contains("\"bert\""));
    let mut md = bpe();
    md.set("tokenizer.ggml.pre".into(), Value::Str("tekken".into()));
    let e = err(&md);
    assert!(e.contains("\"tekken\"") && e.contains("smollm"), "{e}");
}

#[test]
fn odd_but_legal_content_does_not_panic() {
    let mut md = bpe();
    // empty tokens, merges without a space, unknown token types, an SPM vocabulary without
    // byte tokens: all accepted like llama.cpp does, and tokenizing anything works.
    md.set("tokenizer.ggml.tokens".into(), strs(&["", "b", "ab", "Ġ", "Ġab", "<|end|>"]));
    md.set("tokenizer.ggml.merges".into(), strs(&["ab", "", " ", "a b"]));
    md.set("tokenizer.ggml.token_type".into(), Value::Array(Array::I32(vec![0, 99, -1, 6, 2, 3])));
    let tok = Tokenizer::from_gguf(&md).expect("accepted");
    let text = "a\u{0} b😀<|end|>\u{10FFFF}[EMPTY_0]";
    for (add, parse) in [(false, false), (true, true)] {
        let ids = tok.encode(text, add, parse);
        let _ = tok.decode(&ids);
    }
    md.set("tokenizer.ggml.model".into(), Value::Str("llama".into()));
    md.set(
        "tokenizer.ggml.scores".into(),
        Value::Array(Array::F32(vec![f32::NAN, 1.0, -1.0, 0.0, 2.0, 0.0])),
    );
    let tok = Tokenizer::from_gguf(&md).expect("spm accepted");
    let ids = tok.encode(text, true, true);
    assert_eq!(ids.first(), Some(&1), "llama's default BOS id 1");
    let _ = tok.decode(&ids);
}
