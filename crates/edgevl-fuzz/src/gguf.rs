//! GGUF files through the loaders: the LLM (decoder, tokenizer, chat template) and the mmproj
//! (vision tower and projector of every family, the tiling it implies).

use std::sync::Arc;

use edgevl_gguf::GgufFile;
use edgevl_kernels::ThreadPool;
use edgevl_model::vision::VisionEncoder;
use edgevl_model::{Decoder, DecoderInput, KvType, LogitsWanted};
use edgevl_runtime::{ImageConfig, ImageTiling, TileBudget};
use edgevl_tokenizer::{ChatMessage, ChatTemplate, ContentForm, Tokenizer};
use edgevl_vision::{make_tiles, RgbImage, Size};

use crate::FUZZ_MAX_WORK;

/// Most tokens a tile may have for the mmproj target to encode one.
const FUZZ_MAX_ENCODE_TOKENS: usize = 64;

thread_local! {
    /// One compute thread: the targets check answers, not speed.
    static POOL: ThreadPool = ThreadPool::new(1);
    /// The kernel table every target computes with (the CPU's best level, or the level the overrides name).
    static KERNELS: edgevl_kernels::Kernels = edgevl_testdata::kernels();
}

/// An LLM file: parse, then build the tokenizer and chat template from its metadata (tokenize,
/// render a two-message conversation with and without content parts), load the decoder and,
/// when it is small, run two tokens through it and check the logits' length.
pub fn gguf_llm(data: &[u8]) {
    let Ok(file) = GgufFile::from_bytes(data.to_vec()) else { return };
    let file = Arc::new(file);
    if let Ok(tok) = Tokenizer::from_gguf(file.metadata()) {
        let ids = tok.encode("Hi <|im_start|>user\n<__media__> 🦀", true, true);
        assert!(ids.iter().all(|&id| (id as usize) < tok.n_vocab()), "ids below n_vocab");
        let _ = tok.decode_with_special(&ids);
        if let Ok(Some(template)) = ChatTemplate::from_gguf_with_tokenizer(file.metadata(), &tok) {
            let msgs = [ChatMessage::new("system", "Be brief."), ChatMessage::new("user", "<__media__>Hi")];
            let _ = template.render(&msgs, true);
            let _ = template.render_content(&msgs, false, ContentForm::Parts { image_marker: "<__media__>" });
        }
    }
    let Ok(decoder) = KERNELS.with(|k| Decoder::load(file, k)) else { return };
    let hp = decoder.hparams();
    let work = hp.n_layer.saturating_mul(hp.n_embd).saturating_mul(hp.n_ff.max(hp.q_dim()));
    if work.saturating_add(decoder.n_vocab().saturating_mul(hp.n_embd)) > FUZZ_MAX_WORK {
        return;
    }
    let Ok(mut kv) = decoder.try_new_cache(4, KvType::F32) else { return };
    let mut state = decoder.new_state(2, 4);
    let n_vocab = decoder.n_vocab();
    let tokens = [0, (n_vocab - 1) as u32];
    POOL.with(|pool| {
        let out =
            decoder.forward(DecoderInput::Tokens(&tokens), &mut kv, &mut state, pool, LogitsWanted::All);
        if let Ok(logits) = out {
            assert_eq!(logits.len(), 2 * n_vocab, "one row of logits a token");
        }
        // A token id past the vocabulary is an error, not a panic.
        let bad = [n_vocab as u32];
        let _ = decoder.forward(DecoderInput::Tokens(&bad), &mut kv, &mut state, pool, LogitsWanted::Last);
    });
}

/// An mmproj file: parse, load the tower and projector, resolve the family's tiling from the
/// file and plan a few image sizes with it; when the tower is small, render one small image's
/// views and encode them, checking the embeddings' count.
pub fn gguf_mmproj(data: &[u8]) {
    let Ok(file) = GgufFile::from_bytes(data.to_vec()) else { return };
    let Ok(encoder) = KERNELS.with(|k| VisionEncoder::load(Arc::new(file), k)) else { return };
    let hp = encoder.hparams().clone();
    let tiling = ImageTiling::of_mmproj(&ImageConfig::default(), &hp, Some(4));
    for size in [Size::new(1, 1), Size::new(640, 480), Size::new(100, 3000)] {
        for budget in [TileBudget::Default, TileBudget::GlobalOnly, TileBudget::MaxTiles(2)] {
            let _ = tiling.plan(size, budget);
        }
    }
    // Encoding runs for small grids only (InternVL's and Idefics3's seeds): this project's
    // layout always tiles at 384 px, 729 patches, too slow for a fuzzer; its tiles are encoded
    // by the model tests.
    let per_token = hp.n_layer.saturating_mul(hp.n_embd).saturating_mul(hp.n_ff.max(hp.n_embd));
    if hp.n_tokens() > FUZZ_MAX_ENCODE_TOKENS || hp.n_tokens().saturating_mul(per_token) > FUZZ_MAX_WORK {
        return;
    }
    let Ok(plan) = tiling.plan(Size::new(24, 16), TileBudget::GlobalOnly) else { return };
    let Ok(image) = RgbImage::black(24, 16) else { return };
    let Ok(batch) = make_tiles(&image, &plan, &tiling.preprocess) else { return };
    let n = batch.n_tiles();
    let out = POOL.with(|pool| encoder.encode_tiles(batch.data(), n, 2, pool));
    if let Ok(embeddings) = out {
        assert_eq!(
            embeddings.len(),
            n * encoder.tokens_per_tile() * encoder.n_embd_out(),
            "embeddings a view"
        );
    }
}
