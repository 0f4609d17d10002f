//! Special tokens and token pieces compared with what llama.cpp reports
//! (`tests/fixtures/tokenizer/<model>-vocab.json`, written by scripts/gen_tokenizer_goldens.sh
//! from `llama-tokenize -v` and from the pieces `llama-tokenize` prints).

use edgevl_testdata::{repo_root as repo, smollm2_path};
use std::collections::BTreeMap;
use std::path::Path;

use edgevl_gguf::GgufFile;
use edgevl_tokenizer::{StreamDecoder, Tokenizer};
use serde::Deserialize;

#[derive(Deserialize)]
struct VocabGolden {
    bos: Option<u32>,
    eos: Option<u32>,
    eot: Option<u32>,
    unk: Option<u32>,
    pad: Option<u32>,
    eog: Vec<u32>,
    /// id -> hex bytes of token_to_piece(id, special = true)
    pieces: BTreeMap<u32, String>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
}

fn load(model: &Path) -> Tokenizer {
    let file = GgufFile::open(model).unwrap_or_else(|e| panic!("opening {}: {e}", model.display()));
    Tokenizer::from_gguf(file.metadata()).unwrap_or_else(|e| panic!("tokenizer of {}: {e}", model.display()))
}

fn read<T: for<'de> Deserialize<'de>>(path: &Path) -> T {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn check(model: &Path, name: &str) {
    let tok = load(model);
    let g: VocabGolden = read(&repo().join(format!("tests/fixtures/tokenizer/{name}-vocab.json")));
    assert_eq!(tok.bos(), g.bos, "BOS");
    assert_eq!(tok.eos(), g.eos, "EOS");
    assert_eq!(tok.eot(), g.eot, "EOT");
    assert_eq!(tok.unk(), g.unk, "UNK");
    assert_eq!(tok.pad(), g.pad, "PAD");
    assert_eq!(tok.eog_tokens().collect::<Vec<_>>(), g.eog, "end-of-generation set");
    assert!(g.pieces.len() > 100, "too few pieces in the golden file");
    let bad: Vec<String> = g
        .pieces
        .iter()
        .filter(|(&id, want)| hex(tok.piece(id, true)) != **want)
        .map(|(id, want)| format!("id {id}: llama.cpp {want}, edgevl {}", hex(tok.piece(*id, true))))
        .collect();
    assert!(bad.is_empty(), "{} pieces differ:\n{}", bad.len(), bad.join("\n"));
}

#[test]
fn smollm2_specials_and_pieces_match_llama_cpp() {
    check(&smollm2_path(), "smollm2");
}

#[test]
fn tiny_llama_spm_specials_and_pieces_match_llama_cpp() {
    check(&repo().join("tests/fixtures/tiny-llama-spm/model.gguf"), "tiny-llama-spm");
}

#[test]
fn tiny_qwen2_specials_and_pieces_match_llama_cpp() {
    check(&repo().join("tests/fixtures/tiny-qwen2/model.gguf"), "tiny-qwen2");
}

/// Byte-level BPE is lossless: the pieces of the golden ids (control tokens rendered) give the
/// text back, and decoding / streaming without control tokens gives it minus those tokens.
#[test]
fn smollm2_decoding_round_trips() {
    let tok = load(&smollm2_path());
    let cases: Vec<Case> = read(&repo().join("tests/fixtures/tokenizer/smollm2.json"));
    for case in &cases {
        assert_eq!(tok.decode_with_special(&case.ids), case.text);

        let mut plain = case.text.clone();
        for id in 0..tok.n_vocab() as u32 {
            if tok.is_control(id) && case.ids.contains(&id) {
                plain = plain.replace(tok.token_text(id).unwrap_or_default(), "");
            }
        }
        assert_eq!(tok.decode(&case.ids), plain, "decode of {:?}", case.text);

        let mut stream = StreamDecoder::new();
        let mut streamed: String = case.ids.iter().map(|&id| stream.push(&tok, id)).collect();
        streamed += &stream.finish();
        assert_eq!(streamed, plain, "streamed {:?}", case.text);
    }
}

#[test]
fn smollm2_api_basics() {
    let tok = load(&smollm2_path());
    assert_eq!(tok.n_vocab(), 49152);
    assert!(!tok.add_bos() && !tok.add_eos());
    assert_eq!(tok.token_id("<|im_end|>"), Some(2));
    assert_eq!(tok.token_text(2), Some("<|im_end|>"));
    assert_eq!(tok.token_text(49152), None);
    assert!(tok.token_bytes(2).is_empty(), "control tokens render as nothing");
    assert!(tok.token_bytes(u32::MAX).is_empty());
    assert!(tok.is_eog(2) && tok.is_eog(0) && !tok.is_eog(1));
    // Without parse_special the markup is plain text.
    let plain = tok.encode("<|im_end|>", false, false);
    assert!(plain.len() > 1 && !plain.contains(&2));
    assert_eq!(tok.decode(&plain), "<|im_end|>");
    assert_eq!(tok.encode("<|im_end|>", false, true), [2]);
}
