//! The session against its own one-shot path: chunked prefill gives the logits of a whole-prompt
//! prefill, a multi-turn conversation gives the logits of one prefill of its exact token
//! sequence, a changed prefix is re-prefilled from the first differing position, embedding
//! blocks enter like the tokens they embed, and a turn that does not fit the context is refused
//! with the number of tokens left. KV cache in f32 so only the batch shape differs.

use edgevl_model::KvType;
use edgevl_runtime::{
    Cell, EmbeddingBlock, Finish, RuntimeError, Sampler, SamplerConfig, Segment, Session, SessionConfig,
};
use std::path::PathBuf;
use std::sync::atomic::Ordering;

const TEXT: &str = "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs! \
In 1865, the river rose 12 feet; the ferry (old, slow) kept running. How vexingly quick daft zebras jump: \
sphinx of black quartz, judge my vow. The five boxing wizards jump quickly, and the job requires extra pluck \
and zeal from every young wage earner. Waltz, bad nymph, for quick jigs vex.";

fn tiny() -> PathBuf {
    edgevl_testdata::fixture("tiny-qwen2/model.gguf")
}

fn load(model: &PathBuf, chunk: usize, n_ctx: usize) -> Session {
    let cfg = SessionConfig {
        n_threads: 2,
        n_ctx: Some(n_ctx),
        chunk,
        kv_type: KvType::F32,
        kernels: edgevl_testdata::kernel_config(),
        ..SessionConfig::default()
    };
    Session::load(model, &cfg).expect("load model")
}

fn greedy() -> Sampler {
    Sampler::new(SamplerConfig { temp: 0.0, ..SamplerConfig::default() })
}

fn tokens_of(cells: &[Cell]) -> Vec<u32> {
    cells
        .iter()
        .map(|c| match c {
            Cell::Token(t) => *t,
            Cell::Embedding { .. } => panic!("unexpected embedding cell"),
        })
        .collect()
}

/// Largest absolute difference, asserted below `tol` times the reference's largest magnitude.
fn assert_close(ours: &[f32], reference: &[f32], tol: f32, what: &str) {
    assert_eq!(ours.len(), reference.len(), "{what}: length");
    assert!(!reference.is_empty(), "{what}: no logits");
    let scale = reference.iter().fold(1f32, |m, v| m.max(v.abs()));
    let diff = ours.iter().zip(reference).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    eprintln!("{what}: max |diff| {diff:e} (scale {scale})");
    assert!(diff <= tol * scale, "{what}: max |diff| {diff} > {tol} * {scale}");
}

fn logits_after_prefill(model: &PathBuf, chunk: usize, tokens: &[u32]) -> Vec<f32> {
    let mut s = load(model, chunk, 512);
    let report = s.prefill(&[Segment::Tokens(tokens.to_vec())]).expect("prefill");
    assert_eq!((report.reused, report.prefilled), (0, tokens.len()));
    assert_eq!(s.n_past(), tokens.len());
    s.logits().to_vec()
}

/// TEXT repeated until it is more than 140 tokens long (so chunk 128 splits it).
fn long_prompt(s: &Session) -> Vec<u32> {
    let mut text = TEXT.to_string();
    loop {
        let tokens = s.tokenizer().encode(&text, true, false);
        if tokens.len() > 140 {
            return tokens;
        }
        text = format!("{text} {TEXT}");
    }
}

fn chunk_sizes_agree(model: &PathBuf) {
    let tokens = long_prompt(&load(model, 128, 512));
    assert!(tokens.len() > 128 && tokens.len() < 512, "{} prompt tokens", tokens.len());
    let whole = logits_after_prefill(model, tokens.len(), &tokens);
    // 64 and 128 take the GEMM attention of large batches (at positions 0 and 64.., so its causal mask is
    // checked with cached positions before the batch); 1 and 7 the per-query path.
    for chunk in [1, 7, 64, 128] {
        let ours = logits_after_prefill(model, chunk, &tokens);
        assert_close(
            &ours,
            &whole,
            1e-4,
            &format!("chunk {chunk} vs whole prompt ({} tokens)", tokens.len()),
        );
    }
}

#[test]
fn chunked_prefill_matches_whole_prompt_tiny_qwen2() {
    chunk_sizes_agree(&tiny());
}

#[test]
fn chunked_prefill_matches_whole_prompt_smollm2() {
    chunk_sizes_agree(&edgevl_testdata::smollm2_path());
}

/// A reply is rendered back as text, and its tokenisation may differ from the sampled tokens
/// (a random model's often does; SmolLM2's does for some words), so only the prefix up to the
/// first difference can be reused. With `exact_retokenization` (SmolLM2, whose first reply here
/// re-tokenises to the sampled tokens) the second turn must reuse the whole cache.
fn multi_turn_matches_one_prefill(model: &PathBuf, exact_retokenization: bool) {
    let mut s = load(model, 7, 512);
    let mut sampler = greedy();
    let first = s.ask("What is the capital of France?", 12, &mut sampler, |_| true).expect("turn 1");
    assert_eq!(first.reused_tokens, 0);
    let n_past_1 = s.n_past();
    let second = s.ask("And of Germany?", 12, &mut sampler, |_| true).expect("turn 2");
    assert!(second.reused_tokens > 0 && second.reused_tokens <= n_past_1);
    if exact_retokenization {
        assert_eq!(second.reused_tokens, n_past_1, "turn 2 did not reuse all of turn 1");
    }
    assert_eq!(second.prefilled_tokens, second.prompt_tokens - second.reused_tokens);
    s.add_text("user", "Thanks. Which one is bigger?");
    let n_past = s.n_past();
    let report = s.prefill_conversation().expect("turn 3 prefill");
    assert!(report.reused > 0 && report.reused <= n_past);
    let session_tokens = tokens_of(s.cells());
    // The cache holds exactly the rendered conversation.
    assert_eq!(session_tokens, s.conversation_tokens().expect("render"));
    let multi_turn = s.logits().to_vec();
    let one_shot = logits_after_prefill(model, session_tokens.len(), &session_tokens);
    assert_close(&multi_turn, &one_shot, 1e-4, "three-turn session vs one prefill");
}

#[test]
fn multi_turn_logits_equal_one_prefill_tiny_qwen2() {
    multi_turn_matches_one_prefill(&tiny(), false);
}

#[test]
fn multi_turn_logits_equal_one_prefill_smollm2() {
    multi_turn_matches_one_prefill(&edgevl_testdata::smollm2_path(), true);
}

#[test]
fn changed_prefix_is_prefilled_from_first_difference() {
    let model = tiny();
    let mut s = load(&model, 16, 512);
    let tokens = s.tokenizer().encode(TEXT, true, false);
    s.prefill(&[Segment::Tokens(tokens[..100].to_vec())]).expect("first prefill");
    let mut edited = tokens[..60].to_vec();
    edited.extend_from_slice(&tokens[120..150]);
    let report = s.prefill(&[Segment::Tokens(edited.clone())]).expect("second prefill");
    assert_eq!((report.reused, report.prefilled), (60, 30));
    assert_eq!(tokens_of(s.cells()), edited);
    let fresh = logits_after_prefill(&model, 512, &edited);
    assert_close(s.logits(), &fresh, 1e-4, "edited prefix vs fresh prefill");
    // The same sequence again recomputes only its last position.
    let again = s.prefill(&[Segment::Tokens(edited.clone())]).expect("third prefill");
    assert_eq!((again.reused, again.prefilled), (89, 1));
    assert_close(s.logits(), &fresh, 1e-4, "repeated prefill vs fresh prefill");
}

#[test]
fn embedding_blocks_enter_like_the_tokens_they_embed() {
    let model = tiny();
    let mut s = load(&model, 8, 512);
    let tokens = s.tokenizer().encode(TEXT, true, false);
    let d = s.decoder().hparams().n_embd;
    let file = s.decoder().file().clone();
    let info = file.tensor("token_embd.weight").expect("token_embd");
    assert_eq!(info.ggml_type, edgevl_gguf::GgmlType::F32, "the fixture's embedding table is f32");
    let table: Vec<f32> = file
        .tensor_data(info)
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let rows: Vec<f32> =
        tokens[10..30].iter().flat_map(|&t| table[t as usize * d..(t as usize + 1) * d].to_vec()).collect();
    let block = EmbeddingBlock::whole(0xfeed, rows.into());
    let segments = [
        Segment::Tokens(tokens[..10].to_vec()),
        Segment::Embeddings(block),
        Segment::Tokens(tokens[30..40].to_vec()),
    ];
    s.prefill(&segments).expect("prefill with embeddings");
    assert_eq!(s.cells()[10], Cell::Embedding { key: 0xfeed, row: 0 });
    assert_eq!(s.cells()[29], Cell::Embedding { key: 0xfeed, row: 19 });
    let fresh = logits_after_prefill(&model, 512, &tokens[..40]);
    assert_close(s.logits(), &fresh, 1e-4, "embedding block vs its tokens");
    let again = s.prefill(&segments).expect("again");
    assert_eq!((again.reused, again.prefilled), (39, 1));
    let ragged = EmbeddingBlock::whole(1, vec![0.0; d + 1].into());
    assert!(matches!(s.prefill(&[Segment::Embeddings(ragged)]), Err(RuntimeError::BadInput(_))));
}

#[test]
fn a_turn_that_does_not_fit_is_refused_with_tokens_left() {
    let model = tiny();
    let mut s = load(&model, 16, 64);
    let mut sampler = greedy();
    let err = s.ask(TEXT, 8, &mut sampler, |_| true).expect_err("prompt longer than the context");
    let msg = err.to_string();
    assert!(matches!(err, RuntimeError::ContextFull { left: 64, n_ctx: 64, .. }), "{err:?}");
    // Nothing is in the context: a new conversation would not help, so it is not advised.
    assert!(msg.contains("only 64 of the 64-token context are left") && !msg.contains("/reset"), "{msg}");
    assert!(msg.contains("shorten the input or use a larger context"), "{msg}");
    assert!(s.messages().is_empty(), "the refused message must be taken back");
    assert_eq!(s.n_past(), 0);
    let ok = s.ask("Hi", 4, &mut sampler, |_| true).expect("a short turn still fits");
    assert!(ok.n_past < 64, "the first turn filled the context");
    let n_past = s.n_past();
    assert_eq!(n_past, ok.n_past);
    let err = s.ask(TEXT, 4, &mut sampler, |_| true);
    match err {
        Err(e @ RuntimeError::ContextFull { left, needed, .. }) => {
            assert!(needed > left && left >= 64 - n_past && left < 64, "needed {needed}, left {left}");
            // With a conversation in the context, starting a new one is advised.
            assert!(e.to_string().contains("start a new conversation (/reset in chat"), "{e}");
        }
        other => panic!("expected ContextFull, got {other:?}"),
    }
    assert_eq!(s.n_past(), n_past, "a refused turn leaves the cache alone");
    s.reset();
    assert_eq!((s.n_past(), s.stats().turns, s.messages().len()), (0, 0, 0));
}

/// A prompt far past the context is refused from its length before it is tokenised (a 30 MiB
/// message took the tokenizer half a minute and gigabytes), and the bound it uses never counts
/// more tokens than the tokenizer makes.
#[test]
fn a_prompt_far_past_the_context_is_refused_before_tokenising() {
    for model in [tiny(), edgevl_testdata::smollm2_path()] {
        let mut s = load(&model, 16, 64);
        let mut sampler = greedy();
        let huge = "a".repeat(8 << 20);
        let err = s.ask(&huge, 4, &mut sampler, |_| true).expect_err("far too long");
        assert!(matches!(err, RuntimeError::PromptTooLong { n_ctx: 64, .. }), "{err:?}");
        assert!(s.messages().is_empty() && s.n_past() == 0, "a refused turn leaves the session alone");
        let tok = s.tokenizer();
        let texts = [
            TEXT.to_string(),
            "a".repeat(5000),
            " ".repeat(5000),
            "héllo wörld, 你好世界 🙂🙃 ".repeat(200),
            "<|im_start|>user\n<|im_end|>".repeat(100),
            "\u{0}\u{7f}\u{ffff}\u{10ffff}".repeat(300),
        ];
        for text in &texts {
            let n = tok.encode(text, false, true).len();
            let bound = text.len() / tok.max_bytes_per_token();
            assert!(bound <= n, "{} bytes: bound {bound} > {n} tokens", text.len());
        }
    }
}

#[test]
fn cancel_flag_and_callback_stop_the_answer() {
    let model = edgevl_testdata::smollm2_path();
    let mut s = load(&model, 128, 512);
    let mut sampler = greedy();
    let flag = s.cancel_flag();
    let mut pieces = 0;
    let t = s
        .ask("Write a long poem about the sea.", 64, &mut sampler, |_| {
            pieces += 1;
            flag.store(true, Ordering::Relaxed);
            true
        })
        .expect("turn");
    assert_eq!((t.finish, t.generated_tokens, pieces), (Finish::Cancelled, 1, 1));
    let t = s.ask("Another one, please.", 64, &mut sampler, |_| false).expect("turn");
    assert_eq!((t.finish, t.generated_tokens), (Finish::Cancelled, 1));
    assert_eq!(s.stats().turns, 2);
    assert_eq!(s.messages().len(), 4, "cancelled replies stay in the conversation");
}

#[test]
fn a_prefill_cancelled_part_way_counts_the_chunks_it_left() {
    // Cancelled after its second chunk of 16: the stats said 0 prefilled while the cache held 32.
    let mut s = load(&tiny(), 16, 256);
    let flag = s.cancel_flag();
    s.set_progress(Some(std::sync::Arc::new(move |p| {
        if let edgevl_runtime::Progress::Prefill { done, .. } = p {
            if done >= 32 {
                flag.store(true, Ordering::Relaxed);
            }
        }
    })));
    let t = s.ask(TEXT, 4, &mut greedy(), |_| true).expect("turn");
    assert_eq!(t.finish, Finish::Cancelled);
    assert_eq!((t.reused_tokens, t.prefilled_tokens, t.n_past), (0, 32, 32));
    assert!(t.prompt_tokens > 32, "{}", t.prompt_tokens);
    assert_eq!(s.stats().prefilled_tokens_total, 32);
}

#[test]
fn a_stepped_turn_equals_ask_and_a_refused_one_is_taken_back() {
    let model = tiny();
    let mut asked = load(&model, 16, 256);
    let mut reply = String::new();
    let want = asked
        .ask("Hello there!", 12, &mut greedy(), |p| {
            reply.push_str(p);
            true
        })
        .expect("ask");

    let mut s = load(&model, 16, 256);
    let mut sampler = greedy();
    let mut g = s.start_turn("Hello there!", 12, &mut sampler).expect("start_turn");
    let mut pieces = String::new();
    while g.finish().is_none() {
        pieces.push_str(&s.step(&mut g, &mut sampler).expect("step"));
    }
    let (text, stats) = s.end_reply(g);
    s.add_text("assistant", &text);
    assert_eq!((&pieces, &text), (&reply, &reply));
    assert_eq!((stats.generated_tokens, stats.finish), (want.generated_tokens, want.finish));
    assert_eq!(s.messages(), asked.messages());
    assert_eq!(s.cells(), asked.cells());

    let n_past = s.n_past();
    let err = s.start_turn(&TEXT.repeat(4), 4, &mut sampler).map(|_| ()).expect_err("past the context");
    assert!(matches!(err, RuntimeError::ContextFull { .. }), "{err:?}");
    assert_eq!((s.messages().len(), s.n_past()), (2, n_past), "the refused message is taken back");
}

/// `tiny-qwen2` with `extra` rows added to (or, negative, removed from) its token embedding and
/// output matrices, written to a temporary file.
fn with_embedding_rows(extra: i64) -> PathBuf {
    use edgevl_gguf::{GgmlType, GgufFile, GgufWriter, TensorEdit};
    let src = GgufFile::open(tiny()).expect("tiny-qwen2");
    let w = GgufWriter::copy_of(&src, |t, data| {
        if t.name != "token_embd.weight" && t.name != "output.weight" {
            return TensorEdit::Keep;
        }
        assert_eq!(t.ggml_type, GgmlType::F32);
        let (mut data, mut dims) = (data.to_vec(), t.dims.clone());
        let row_bytes = dims[0] as usize * 4;
        if extra >= 0 {
            let last = data[data.len() - row_bytes..].to_vec();
            (0..extra).for_each(|_| data.extend_from_slice(&last));
        } else {
            data.truncate(data.len() - row_bytes * extra.unsigned_abs() as usize);
        }
        dims[1] = (dims[1] as i64 + extra) as u64;
        TensorEdit::Replace(t.ggml_type, dims, data)
    })
    .expect("tensors");
    let path = std::env::temp_dir().join(format!("edgevl-vocab-{extra}-{}.gguf", std::process::id()));
    w.write_to_path(&path).expect("write");
    path
}

#[test]
fn a_token_embedding_of_another_size_than_the_vocabulary_is_refused() {
    // More rows: a logit past the tokenizer was sampled as a token printing nothing that never
    // ended the reply; fewer: a token past the embedding.
    for extra in [16, -16] {
        let path = with_embedding_rows(extra);
        let cfg = SessionConfig { n_threads: 1, n_ctx: Some(64), ..SessionConfig::default() };
        let err = Session::load(&path, &cfg).err().expect("a vocabulary mismatch loads");
        std::fs::remove_file(&path).expect("remove");
        assert!(matches!(err, RuntimeError::VocabMismatch { .. }), "{err}");
        let want = format!("{} rows but its tokenizer has 512 tokens", 512 + extra);
        assert!(err.to_string().contains(&want), "{err}");
    }
}
