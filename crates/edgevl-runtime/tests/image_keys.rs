//! An image's key (the embedding cache's, and the KV cache's prefix reuse's) covers everything its
//! embeddings depend on: the same pixels with a transparent colour (a PNG's tRNS, a GIF's
//! transparent index), which InternVL's and SmolVLM's processors paint white, are another image.
//! Both were taken for the plain image: its cached embeddings, and its KV positions.

use edgevl_runtime::{ChatMessage, ImageConfig, KvType, Session, SessionConfig, TileBudget, MEDIA_MARKER};
use edgevl_vision::RgbImage;

/// The tiny `family` VLM with an embedding cache of `cache_mb`.
fn session(family: &str, cache_mb: usize) -> Session {
    let file = |f: &str| edgevl_testdata::fixture(&format!("tiny-{family}/{f}"));
    let cfg = SessionConfig {
        n_threads: 2,
        n_ctx: Some(4096),
        kv_type: KvType::F32,
        mmproj: Some(file("mmproj.gguf")),
        image: ImageConfig { cache_mb, ..ImageConfig::default() },
        kernels: edgevl_testdata::kernel_config(),
        ..SessionConfig::default()
    };
    Session::load(file("model.gguf"), &cfg).expect("tiny VLM loads")
}

const KEY: [u8; 3] = [10, 220, 40];

/// One buffer twice: plain, and with `KEY` (half its pixels) transparent.
fn plain_and_keyed() -> (RgbImage, RgbImage) {
    let (w, h) = (64u32, 48u32);
    let mut seed = 12345u32;
    let px: Vec<u8> = (0..w * h)
        .flat_map(|i| {
            if (i / 4) % 2 == 0 {
                KEY
            } else {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                [(seed >> 24) as u8, (seed >> 16) as u8, (seed >> 8) as u8]
            }
        })
        .collect();
    let plain = RgbImage::from_raw(w, h, px).expect("pixels");
    let keyed = plain.clone().with_transparent_colour(Some(KEY));
    (plain, keyed)
}

#[test]
fn a_transparent_colour_gets_its_own_embeddings() {
    for family in ["internvl", "smolvlm"] {
        let (plain, keyed) = plain_and_keyed();
        let s = session(family, 512);
        let enc = s.image_encoder().expect("vision");
        let a = enc.prepare("plain", plain, TileBudget::Default).expect("plain");
        let plain_embd = enc.embeddings(&a).expect("plain embeddings");
        let b = enc.prepare("keyed", keyed.clone(), TileBudget::Default).expect("keyed");
        let keyed_embd = enc.embeddings(&b).expect("keyed embeddings");
        let fresh = session(family, 512);
        let fenc = fresh.image_encoder().expect("vision");
        let want = fenc
            .embeddings(&fenc.prepare("keyed", keyed, TileBudget::Default).expect("keyed"))
            .expect("embd");
        assert_ne!(
            want, plain_embd,
            "{family}: painting the transparent colour white changes the embeddings"
        );
        assert!(!b.info().cached, "{family}: the keyed image was found in the cache");
        assert_eq!(keyed_embd, want, "{family}: the keyed image's embeddings");
    }
}

#[test]
fn a_transparent_colour_is_not_read_from_the_kv_cache() {
    // The embedding cache off: only the prefix reuse's comparison of image keys is at stake.
    let (plain, keyed) = plain_and_keyed();
    let msgs = vec![ChatMessage::new("user", format!("{MEDIA_MARKER}Describe the image."))];
    let mut s = session("smolvlm", 0);
    let enc = s.image_encoder().expect("vision");
    let a = enc.prepare("plain", plain, TileBudget::Default).expect("plain");
    s.set_conversation(msgs.clone(), vec![a]).expect("conversation");
    s.prefill_conversation().expect("prefill");
    let plain_logits = s.logits().to_vec();
    let b = enc.prepare("keyed", keyed.clone(), TileBudget::Default).expect("keyed");
    s.set_conversation(msgs.clone(), vec![b]).expect("conversation");
    s.prefill_conversation().expect("prefill");
    let mut fresh = session("smolvlm", 0);
    let fenc = fresh.image_encoder().expect("vision");
    let fb = fenc.prepare("keyed", keyed, TileBudget::Default).expect("keyed");
    fresh.set_conversation(msgs, vec![fb]).expect("conversation");
    fresh.prefill_conversation().expect("prefill");
    assert_ne!(plain_logits, fresh.logits(), "the two images give different logits from scratch");
    assert_eq!(s.logits(), fresh.logits(), "after the plain image, the keyed one as from scratch");
}
