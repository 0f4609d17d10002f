//! Images in a session, on the tiny VLM fixture (tests/fixtures/tiny-vlm: a random SigLIP-shaped
//! tower + lfm2 projector of width 64, checked against PyTorch in edgevl-model's tests) paired
//! with the tiny llama (width 64): the prompt's image block is exactly the encoder's output for
//! the image's tiles (global view first) at the marker, the session's logits equal one decoder
//! pass over [tokens, embeddings, tokens], a second attach of the same image runs the ViT zero
//! times, pipelined and encode-on-demand give the same rows, progress is told per ViT batch and
//! prefill chunk, images nothing waits for any more (a reset) are not encoded, and bad input is a
//! clear error.

use edgevl_kernels::ThreadPool;
use edgevl_model::vision::VisionEncoder;
use edgevl_model::{DecoderInput, KvType, LogitsWanted};
use edgevl_runtime::{
    ImageConfig, Progress, RuntimeError, Sampler, SamplerConfig, Segment, Session, SessionConfig,
    MEDIA_MARKER,
};
use edgevl_vision::{load_image, make_tiles, LoadLimits, Preprocess, Strategy, TilingParams};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

fn llm() -> PathBuf {
    edgevl_testdata::fixture("tiny-llama-spm/model.gguf")
}

fn mmproj() -> PathBuf {
    edgevl_testdata::fixture("tiny-vlm/mmproj.gguf")
}

/// 900x500: relaxed matching tiles it (the test checks there is more than one view).
fn wide_image() -> PathBuf {
    edgevl_testdata::fixture("vision/pipeline/input.png")
}

fn config(image: ImageConfig) -> SessionConfig {
    SessionConfig {
        n_threads: 2,
        // Past the tiny llama's 512 training positions (RoPE): room for a tiled image.
        n_ctx: Some(4096),
        chunk: 64,
        kv_type: KvType::F32,
        mmproj: Some(mmproj()),
        image,
        kernels: edgevl_testdata::kernel_config(),
    }
}

fn session(image: ImageConfig) -> Session {
    Session::load(llm(), &config(image)).expect("tiny VLM loads")
}

fn greedy() -> Sampler {
    Sampler::new(SamplerConfig { temp: 0.0, ..SamplerConfig::default() })
}

/// The image's embeddings straight from the libraries: tiles by the relaxed plan, encoded one
/// view at a time.
fn reference_embeddings(path: &Path) -> (Vec<f32>, u32) {
    let enc = VisionEncoder::open(mmproj(), &edgevl_testdata::kernels()).unwrap();
    let img = load_image(path, &LoadLimits::default()).unwrap();
    let plan = Strategy::Relaxed.plan(img.size(), &TilingParams::default()).unwrap();
    let tiles = make_tiles(&img, &plan, &Preprocess::BLUELM).unwrap();
    (enc.encode_tiles(tiles.data(), tiles.n_tiles(), 1, &ThreadPool::new(1)).unwrap(), plan.views())
}

fn image_blocks(segments: &[Segment]) -> Vec<&[f32]> {
    segments
        .iter()
        .filter_map(|s| match s {
            Segment::Embeddings(b) => Some(&b.rows[..]),
            Segment::Tokens(_) => None,
        })
        .collect()
}

#[test]
fn image_goes_in_at_the_marker_as_the_encoders_rows() {
    let path = wide_image();
    let (want, views) = reference_embeddings(&path);
    let mut s = session(ImageConfig::default());
    let info = s.add_image(&path).unwrap();
    assert_eq!((info.plan.views(), info.n_tokens, info.cached), (views, views as usize * 196, false));
    assert!(views > 1, "the fixture image should need tiles");
    let stats = s.ask(&format!("Look: {MEDIA_MARKER} What is it?"), 3, &mut greedy(), |_| true).unwrap();
    assert_eq!(stats.image_tokens, info.n_tokens);
    assert_eq!(s.stats().vit_tiles_encoded, views as usize);
    assert!(s.messages()[0].content.contains(MEDIA_MARKER));
    let (segments, _) = s.conversation_segments().unwrap();
    let blocks = image_blocks(&segments);
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0], &want[..], "the prompt's image rows differ from the encoder's");
    // Text on both sides of the marker: tokens, embeddings, tokens.
    assert!(matches!(
        segments.as_slice(),
        [Segment::Tokens(_), Segment::Embeddings(_), Segment::Tokens(_), ..]
    ));
}

#[test]
fn without_a_marker_the_image_goes_first_and_logits_match_one_decoder_pass() {
    let path = edgevl_testdata::fixture("vision/pipeline/small.png");
    let mut s = session(ImageConfig::default());
    s.add_image(&path).unwrap();
    s.ask("Describe the picture.", 1, &mut greedy(), |_| true).unwrap();
    let content = &s.messages()[0].content;
    assert!(content.starts_with(MEDIA_MARKER) && content.ends_with("Describe the picture."), "{content}");

    // The session's prefill (chunked, 64 positions) against one decoder pass per segment.
    s.add_text("user", "And now?");
    s.prefill_conversation().unwrap();
    let ours = s.logits().to_vec();
    let (segments, _) = s.conversation_segments().unwrap();
    let dec = s.decoder();
    let mut kv = dec.new_cache(4096, KvType::F32);
    let mut st = dec.new_state(4096, 4096);
    let pool = ThreadPool::new(2);
    let mut last = Vec::new();
    for seg in &segments {
        let input = match seg {
            Segment::Tokens(t) => DecoderInput::Tokens(t),
            Segment::Embeddings(b) => DecoderInput::Embeddings(&b.rows),
        };
        last = dec.forward(input, &mut kv, &mut st, &pool, LogitsWanted::Last).unwrap().to_vec();
    }
    let diff = ours.iter().zip(&last).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    let scale = last.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(diff <= 1e-4 * scale, "session logits differ from one pass: max abs diff {diff} (scale {scale})");
}

#[test]
fn a_second_attach_of_the_same_image_is_not_encoded_again() {
    let path = wide_image();
    let mut s = session(ImageConfig::default());
    let first = s.add_image(&path).unwrap();
    s.ask("What is this?", 2, &mut greedy(), |_| true).unwrap();
    let encoded = s.stats().vit_tiles_encoded;
    assert_eq!(encoded, first.plan.views() as usize);
    // In a new conversation (the cache outlives /reset) and again in the same one.
    s.reset();
    let again = s.add_image(&path).unwrap();
    assert!(again.cached && again.key == first.key);
    s.ask("And this?", 2, &mut greedy(), |_| true).unwrap();
    s.add_image(&path).unwrap();
    s.ask("Same again?", 2, &mut greedy(), |_| true).unwrap();
    let stats = s.stats();
    assert_eq!((stats.vit_tiles_encoded, stats.image_cache_hits, stats.images), (encoded, 2, 2));
    assert_eq!(stats.image_cache_entries, 1);

    // With the cache off, the same image is encoded each time.
    let mut off = session(ImageConfig { cache_mb: 0, ..ImageConfig::default() });
    for _ in 0..2 {
        off.add_image(&path).unwrap();
        off.ask("What is this?", 1, &mut greedy(), |_| true).unwrap();
    }
    assert_eq!((off.stats().vit_tiles_encoded, off.stats().image_cache_hits), (2 * encoded, 0));
}

#[test]
fn pipelined_and_on_demand_encoding_give_the_same_rows() {
    let path = wide_image();
    let rows = |cfg: ImageConfig| {
        let mut s = session(cfg);
        s.add_image(&path).unwrap();
        s.ask("Hi", 1, &mut greedy(), |_| true).unwrap();
        let (segments, _) = s.conversation_segments().unwrap();
        image_blocks(&segments)[0].to_vec()
    };
    let sequential = rows(ImageConfig { vit_batch: 2, ..ImageConfig::default() });
    let pipelined = rows(ImageConfig { vit_batch: 2, pipelined: true, ..ImageConfig::default() });
    assert_eq!(sequential, pipelined);
    let batch1 = rows(ImageConfig { vit_batch: 1, pipelined: true, ..ImageConfig::default() });
    assert_eq!(sequential, batch1);

    // Encoding ahead off: nothing runs until the turn needs it, then the same rows.
    let mut s = session(ImageConfig { encode_ahead: false, ..ImageConfig::default() });
    let info = s.add_image(&path).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(s.stats().vit_tiles_encoded, 0);
    let stats = s.ask("Hi", 1, &mut greedy(), |_| true).unwrap();
    assert_eq!(s.stats().vit_tiles_encoded, info.plan.views() as usize);
    assert!(stats.image_wait_ms > 0.0);
    let (segments, _) = s.conversation_segments().unwrap();
    assert_eq!(image_blocks(&segments)[0], &sequential[..]);
}

#[test]
fn progress_is_told_per_vit_batch_and_prefill_chunk_up_to_the_totals() {
    // Encoding ahead off: the turn queues the image as it starts waiting, so it sees every batch.
    let (mut s, log) = deferred_session_with_a_log();
    let info = s.add_image(wide_image()).unwrap();
    let stats = s.ask(&format!("Look: {MEDIA_MARKER} What is it?"), 2, &mut greedy(), |_| true).unwrap();
    let events = log.lock().unwrap().clone();
    let views = info.plan.views() as usize;
    let image: Vec<Progress> =
        events.iter().copied().filter(|p| matches!(p, Progress::ImageViews { .. })).collect();
    // One report at the start, then one a batch of two views, the last at every view.
    let want: Vec<Progress> = (0..=views.div_ceil(2))
        .map(|k| Progress::ImageViews { done: (2 * k).min(views), total: views })
        .collect();
    assert_eq!(image, want);
    let prefill = prefill_reports(&events);
    // One report at the start, then one a forward pass of at most a chunk (64 here; text and image rows go in
    // separate passes), rising to the positions this turn computed.
    assert!(prefill.len() > stats.prefilled_tokens.div_ceil(64), "{prefill:?}");
    assert!(prefill.iter().all(|&(_, total)| total == stats.prefilled_tokens), "{prefill:?}");
    assert_eq!((prefill[0].0, prefill.last().map(|p| p.0)), (0, Some(stats.prefilled_tokens)));
    assert!(prefill.windows(2).all(|w| w[0].0 < w[1].0 && w[1].0 - w[0].0 <= 64), "{prefill:?}");
    // The same image again: its embeddings are ready, so only the prefill is told.
    assert!(s.add_image(wide_image()).unwrap().cached);
    let stats = s.ask(&format!("And {MEDIA_MARKER}?"), 1, &mut greedy(), |_| true).unwrap();
    let again = log.lock().unwrap()[events.len()..].to_vec();
    assert!(stats.prefilled_tokens > info.n_tokens, "{stats:?}");
    assert_eq!(prefill_reports(&again).len(), again.len(), "{again:?}");
    assert_eq!(prefill_reports(&again).last(), Some(&(stats.prefilled_tokens, stats.prefilled_tokens)));
    // With no observer nothing more is told.
    let told = log.lock().unwrap().len();
    s.set_progress(None);
    s.ask("And then?", 1, &mut greedy(), |_| true).unwrap();
    assert_eq!(log.lock().unwrap().len(), told);
}

#[test]
fn a_second_deferred_copy_of_an_image_encoded_meanwhile_tells_nothing() {
    let (mut s, log) = deferred_session_with_a_log();
    // Deferred, the second copy is not found in flight: it is its own job, whose embeddings the first's puts in
    // the cache before the turn waits for it.
    let info = s.add_image(wide_image()).unwrap();
    assert!(!s.add_image(wide_image()).unwrap().cached);
    s.ask(&format!("{MEDIA_MARKER} and {MEDIA_MARKER}?"), 1, &mut greedy(), |_| true).unwrap();
    let views = info.plan.views() as usize;
    let image: Vec<Progress> =
        log.lock().unwrap().iter().copied().filter(|p| matches!(p, Progress::ImageViews { .. })).collect();
    let once: Vec<Progress> = (0..=views.div_ceil(2))
        .map(|k| Progress::ImageViews { done: (2 * k).min(views), total: views })
        .collect();
    assert_eq!(image, once);
    assert_eq!(s.stats().vit_tiles_encoded, views);
}

/// A session encoding a ViT batch of two views at a time, with encoding ahead off, and the log its progress
/// observer writes.
fn deferred_session_with_a_log() -> (Session, Arc<Mutex<Vec<Progress>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut s = session(ImageConfig { vit_batch: 2, encode_ahead: false, ..ImageConfig::default() });
    let sink = log.clone();
    s.set_progress(Some(Arc::new(move |p| sink.lock().unwrap().push(p))));
    (s, log)
}

/// The (done, total) of the prefill reports among `events`.
fn prefill_reports(events: &[Progress]) -> Vec<(usize, usize)> {
    events
        .iter()
        .filter_map(|p| match *p {
            Progress::Prefill { done, total } => Some((done, total)),
            Progress::ImageViews { .. } => None,
        })
        .collect()
}

#[test]
fn marker_count_mismatch_is_refused_and_loses_nothing() {
    let mut s = session(ImageConfig::default());
    let info = s.add_image(wide_image()).unwrap();
    let e = s.ask(&format!("{MEDIA_MARKER} and {MEDIA_MARKER}?"), 2, &mut greedy(), |_| true).unwrap_err();
    assert!(matches!(e, RuntimeError::BadInput(_)), "{e}");
    assert!(e.to_string().contains("2 <__media__> marker(s) but 1 image(s)"), "{e}");
    assert!(s.messages().is_empty());
    assert_eq!(s.stats().pending_images, 1);
    let stats = s.ask("One image then.", 2, &mut greedy(), |_| true).unwrap();
    // The image kept its place: every view's embeddings, nothing more.
    assert_eq!(stats.image_tokens, info.n_tokens);
    assert_eq!(info.n_tokens, info.plan.views() as usize * 196);
}

#[test]
fn bad_images_and_mismatched_files_are_clear_errors() {
    let dir = std::env::temp_dir().join(format!("edgevl-images-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // A projector whose output width is not the LLM's: both numbers in the message.
    let wide = dir.join("mmproj-96.gguf");
    let shape = edgevl_gen::vision::VisionShape { projection_dim: 96, ..edgevl_gen::vision::TINY_VISION };
    edgevl_gen::vision::write_mmproj(&shape, edgevl_gen::vision::VisionDType::F32, 1, &wide).unwrap();
    let cfg = SessionConfig { mmproj: Some(wide), ..config(ImageConfig::default()) };
    let e = Session::load(llm(), &cfg).err().expect("width mismatch must fail");
    let msg = e.to_string();
    assert!(matches!(e, RuntimeError::WidthMismatch { projector: 96, llm: 64, .. }), "{msg}");
    assert!(msg.contains("96") && msg.contains("64"), "{msg}");

    // An mmproj that is not one: a language model's file, said so with the flag it goes with.
    let cfg = SessionConfig { mmproj: Some(llm()), ..config(ImageConfig::default()) };
    let msg = Session::load(llm(), &cfg).err().expect("an LLM is not an mmproj").to_string();
    assert!(msg.contains("a language model's file (architecture 'llama'), not an mmproj"), "{msg}");

    // Corrupt and missing images fail when attached; nothing is attached.
    let mut s = session(ImageConfig::default());
    let corrupt = dir.join("corrupt.png");
    let mut bytes = std::fs::read(edgevl_testdata::fixture("vision/pipeline/small.png")).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&corrupt, bytes).unwrap();
    let msg = s.add_image(&corrupt).unwrap_err().to_string();
    assert!(msg.contains("corrupt.png"), "{msg}");
    let msg = s.add_image(dir.join("missing.png")).unwrap_err().to_string();
    assert!(msg.contains("missing.png"), "{msg}");
    assert_eq!(s.stats().pending_images, 0);

    // A text-only session refuses images.
    let cfg = SessionConfig { mmproj: None, ..config(ImageConfig::default()) };
    let mut text_only = Session::load(llm(), &cfg).unwrap();
    let e = text_only.add_image(wide_image()).unwrap_err();
    assert!(matches!(e, RuntimeError::NoVision), "{e}");
    assert!(e.to_string().contains("--mmproj"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_image_past_the_whole_context_is_refused_when_attached() {
    // It was attached and encoded, then failed every ask until a reset lost the conversation.
    let mut s = session(ImageConfig { max_tiles: Some(36), ..ImageConfig::default() });
    let big = edgevl_vision::RgbImage::from_raw(2304, 2304, vec![7; 2304 * 2304 * 3]).unwrap();
    let e = s.add_image_decoded("big", big).unwrap_err();
    assert!(matches!(e, RuntimeError::PromptTooLong { at_least: 7252, n_ctx: 4096, .. }), "{e}");
    assert_eq!(s.stats().pending_images, 0);
    // Two that fit alone but not together: the second is refused, the first stays.
    let half = || edgevl_vision::RgbImage::from_raw(1536, 1536, vec![9; 1536 * 1536 * 3]).unwrap();
    let first = s.add_image_decoded("first", half()).unwrap().n_tokens;
    assert!(first <= 4096 && 2 * first > 4096, "{first}");
    assert!(matches!(s.add_image_decoded("second", half()), Err(RuntimeError::PromptTooLong { .. })));
    assert_eq!(s.stats().pending_images, 1);
    s.ask("What is it?", 1, &mut greedy(), |_| true).unwrap();
}

#[test]
fn images_nothing_waits_for_any_more_are_not_encoded() {
    // A context the 37 views (7,252 tokens) and the six small images (1,176) fit, or the images are
    // refused when attached.
    let cfg = SessionConfig {
        n_ctx: Some(16384),
        ..config(ImageConfig { max_tiles: Some(36), ..ImageConfig::default() })
    };
    let mut s = Session::load(llm(), &cfg).expect("tiny VLM loads");
    let pixels = |w: u32, h: u32, v: u8| {
        edgevl_vision::RgbImage::from_raw(w, h, vec![v; (w * h * 3) as usize]).unwrap()
    };
    // A large image (37 views) keeps the worker busy while six small ones (a view each, quick to
    // prepare) are queued behind it; a reset drops them.
    let busy = s.add_image_decoded("busy", pixels(2304, 2304, 7)).unwrap().plan.views() as usize;
    let t0 = std::time::Instant::now();
    let mut queued = 0;
    for i in 0..6 {
        queued = s.add_image_decoded(&format!("dropped {i}"), pixels(64, 64, 20 + i)).unwrap().plan.views()
            as usize;
    }
    s.reset();
    let queue_time = t0.elapsed();
    let new = s.add_image_decoded("new", pixels(900, 500, 200)).unwrap().plan.views() as usize;
    s.ask("What is this?", 1, &mut greedy(), |_| true).unwrap();
    let encoded = s.stats().vit_tiles_encoded;
    // The busy image and the new one; at most one dropped image taken before the reset came. (Had
    // the worker not yet taken the busy image when the reset came, on a loaded machine, it was
    // dropped too: only the new one.)
    assert!(
        encoded == new || (encoded >= busy + new && encoded <= busy + new + queued),
        "{encoded}: {busy} + {new} (+ {queued}); queued and reset in {queue_time:?}"
    );
    assert!(encoded < busy + new + 6 * queued, "the dropped images were encoded: {encoded}");
}

#[test]
fn a_question_cancelled_before_its_first_token_is_taken_back_with_its_image() {
    // It stayed in the conversation with an empty reply after it, so asking again rendered the
    // question twice and gave another answer.
    let question = "What is it?";
    let mut fresh = session(ImageConfig::default());
    fresh.add_image(wide_image()).unwrap();
    let mut want = String::new();
    fresh
        .ask(question, 8, &mut greedy(), |p| {
            want.push_str(p);
            true
        })
        .unwrap();

    let mut s = session(ImageConfig::default());
    s.add_image(wide_image()).unwrap();
    let flag = s.cancel_flag();
    // Cancelled once the prefill has begun.
    s.set_progress(Some(Arc::new(move |p| {
        if matches!(p, Progress::Prefill { done, .. } if done > 0) {
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    })));
    let stats = s.ask(question, 8, &mut greedy(), |_| true).unwrap();
    assert_eq!((stats.finish, stats.generated_tokens), (edgevl_runtime::Finish::Cancelled, 0));
    assert!(s.messages().is_empty(), "{:?}", s.messages());
    // The image is attached again: the same question gets the fresh session's answer.
    s.set_progress(None);
    let mut got = String::new();
    s.ask(question, 8, &mut greedy(), |p| {
        got.push_str(p);
        true
    })
    .unwrap();
    assert_eq!(got, want);
    assert_eq!(s.messages().len(), 2);
}
