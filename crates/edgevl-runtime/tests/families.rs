//! InternVL and SmolVLM end to end against transformers, on the tiny random models of
//! tests/fixtures/tiny-internvl and tiny-smolvlm (scripts/make_family_fixtures.py; the GGUF files
//! are llama.cpp's converter's): an image and a conversation go in as a user would give them
//! (pixels from the fixture's recipe, messages with the image where the reference's content parts
//! put it), and the prompt ids, the projected embeddings of a multi-view image, the logits at every
//! position and the greedy continuation must be the processor's and the model's.

use edgevl_model::{DecoderInput, KvType, LogitsWanted};
use edgevl_runtime::{
    ImageInfo, Sampler, SamplerConfig, Segment, Session, SessionConfig, TileBudget, MEDIA_MARKER,
};
use edgevl_tokenizer::ChatMessage;
use edgevl_vision::RgbImage;
use serde_json::Value;

fn fixture(family: &str, name: &str) -> std::path::PathBuf {
    edgevl_testdata::fixture(&format!("tiny-{family}/{name}"))
}

fn reference(family: &str) -> Value {
    serde_json::from_slice(&std::fs::read(fixture(family, "reference.json")).expect("reference.json"))
        .expect("json")
}

fn read_f32(family: &str, file: &str) -> Vec<f32> {
    let bytes = std::fs::read(fixture(family, file)).expect("reference output");
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn session(family: &str) -> Session {
    let cfg = SessionConfig {
        n_threads: 2,
        n_ctx: Some(4096),
        chunk: 128,
        kv_type: KvType::F32,
        mmproj: Some(fixture(family, "mmproj.gguf")),
        kernels: edgevl_testdata::kernel_config(),
        ..SessionConfig::default()
    };
    Session::load(fixture(family, "model.gguf"), &cfg).expect("tiny VLM loads")
}

/// The fixture's image recipe: W x H RGB bytes from the LCG seeded with `W * 65536 + H`.
fn lcg_image(spec: &Value) -> RgbImage {
    let (w, h) = (spec["width"].as_u64().unwrap() as u32, spec["height"].as_u64().unwrap() as u32);
    let mut state = w.wrapping_mul(65536).wrapping_add(h);
    assert_eq!(u64::from(state), spec["seed"].as_u64().unwrap());
    let bytes = (0..w as usize * h as usize * 3)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8
        })
        .collect();
    RgbImage::from_raw(w, h, bytes).unwrap()
}

/// The processor arguments as a tile budget: Idefics3's `size.longest_edge` L is the budget
/// (L / 512)^2 (edgevl's idefics3 `--max-tiles N` = longest edge 512 x floor(sqrt(N))).
fn budget(case: &Value) -> TileBudget {
    match case["processor_kwargs"]["size"]["longest_edge"].as_u64() {
        Some(edge) => TileBudget::MaxTiles(((edge / 512) * (edge / 512)) as u32),
        None => TileBudget::Default,
    }
}

/// The case's messages with `<__media__>` where its content parts have images.
fn messages(case: &Value) -> Vec<ChatMessage> {
    case["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let content = match &m["content"] {
                Value::String(s) => s.clone(),
                Value::Array(parts) => parts
                    .iter()
                    .map(|p| match p["type"].as_str() {
                        Some("image") => MEDIA_MARKER.to_string(),
                        _ => p["text"].as_str().unwrap().to_string(),
                    })
                    .collect(),
                other => panic!("content {other}"),
            };
            ChatMessage::new(m["role"].as_str().unwrap(), content)
        })
        .collect()
}

/// Sets the session's conversation to `case` (its images encoded); returns the images' infos.
fn set_case(s: &mut Session, case: &Value) -> Vec<ImageInfo> {
    let enc = s.image_encoder().expect("vision");
    let images: Vec<_> = case["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|spec| enc.prepare("lcg", lcg_image(spec), budget(case)).expect("image prepares"))
        .collect();
    let infos = images.iter().map(|p| p.info().clone()).collect();
    s.set_conversation(messages(case), images).expect("conversation");
    infos
}

/// The ids the segments stand for: text tokens as they are, each embedding row as `row_id`.
fn ids_of(segments: &[Segment], row_id: u32, d: usize) -> Vec<u32> {
    segments
        .iter()
        .flat_map(|seg| match seg {
            Segment::Tokens(t) => t.clone(),
            Segment::Embeddings(_) => vec![row_id; seg.n_positions(d)],
        })
        .collect()
}

fn check_prompt_ids(family: &str) {
    let r = reference(family);
    let mut s = session(family);
    let row_id = r["config"]["image_token_id"].as_u64().unwrap() as u32;
    let d = s.decoder().hparams().n_embd;
    let cases = r["prompt_cases"].as_array().unwrap();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let infos = set_case(&mut s, case);
        for (info, layout) in infos.iter().zip(case["image_layout"].as_array().unwrap()) {
            let grid = [u64::from(info.plan.grid.cols), u64::from(info.plan.grid.rows)];
            let want = [layout["grid"][0].as_u64().unwrap(), layout["grid"][1].as_u64().unwrap()];
            // SmolVLM's processor reports an unsplit image as a 0x0 grid.
            assert!(
                grid == want || (want == [0, 0] && info.plan.views() == 1),
                "{name}: grid {grid:?} vs {want:?}"
            );
            assert_eq!(u64::from(info.plan.views()), layout["views"].as_u64().unwrap(), "{name}: views");
            assert_eq!(
                info.n_tokens as u64,
                layout["image_tokens"].as_u64().unwrap(),
                "{name}: image tokens"
            );
        }
        let (segments, _) = s.conversation_segments().expect("segments");
        let ours = ids_of(&segments, row_id, d);
        let want: Vec<u32> =
            case["input_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        if let Some(i) = ours.iter().zip(&want).position(|(a, b)| a != b) {
            panic!(
                "{family} {name}: ids differ at {i}: {:?} vs {:?}",
                &ours[i..(i + 8).min(ours.len())],
                &want[i..(i + 8).min(want.len())]
            );
        }
        assert_eq!(ours.len(), want.len(), "{family} {name}: prompt length");
    }
    eprintln!("{family}: {} prompt cases, ids identical", cases.len());
}

/// The reference's text-only conversation, with the family's LLM loaded without its mmproj (a
/// text chat): the same ids as the processor's. SmolVLM's template reads contents only as parts,
/// and given strings it dropped the user's text.
fn check_text_only_without_mmproj(family: &str) {
    let r = reference(family);
    let case =
        r["prompt_cases"].as_array().unwrap().iter().find(|c| c["name"] == "text_only").expect("text_only");
    let cfg = SessionConfig {
        n_threads: 2,
        n_ctx: Some(4096),
        kv_type: KvType::F32,
        kernels: edgevl_testdata::kernel_config(),
        ..SessionConfig::default()
    };
    let mut s = Session::load(fixture(family, "model.gguf"), &cfg).expect("the LLM alone loads");
    s.set_conversation(messages(case), Vec::new()).expect("conversation");
    let want: Vec<u32> =
        case["input_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    assert_eq!(
        s.conversation_tokens().expect("tokens"),
        want,
        "{family}: text-only prompt without the mmproj"
    );
}

#[test]
fn text_only_prompts_without_the_mmproj_equal_the_processors() {
    check_text_only_without_mmproj("internvl");
    check_text_only_without_mmproj("smolvlm");
}

#[test]
fn internvl_prompt_ids_equal_the_processors() {
    check_prompt_ids("internvl");
}

#[test]
fn smolvlm_prompt_ids_equal_the_processors() {
    check_prompt_ids("smolvlm");
}

/// `max |ours - ref| / max |ref|`.
fn max_rel_err(ours: &[f32], reference: &[f32]) -> f32 {
    assert_eq!(ours.len(), reference.len());
    let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
    ours.iter().zip(reference).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale
}

fn argmax(row: &[f32]) -> u32 {
    row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i as u32)
}

fn check_whole_model(family: &str) {
    let r = reference(family);
    let mut s = session(family);
    // The multi-view image's embeddings, from the session's encoder, against get_image_features.
    let multi = &r["embeddings"]["multi_view"];
    let case = serde_json::json!({"images": [multi["image"]], "processor_kwargs": multi["processor_kwargs"],
        "messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "x"}]}]});
    set_case(&mut s, &case);
    let (segments, _) = s.conversation_segments().unwrap();
    let mut rows: Vec<f32> = Vec::new();
    for seg in &segments {
        if let Segment::Embeddings(b) = seg {
            let d = s.decoder().hparams().n_embd;
            let range = b.range.clone().unwrap_or(0..b.rows.len() / d);
            rows.extend_from_slice(&b.rows[range.start * d..range.end * d]);
        }
    }
    let err = max_rel_err(&rows, &read_f32(family, multi["projected"]["file"].as_str().unwrap()));
    eprintln!("{family} multi-view embeddings ({} views): max relative error {err:.2e}", multi["views"]);
    assert!(err < 1e-3, "{family} multi-view embeddings: {err}");

    for case in r["whole_model"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        set_case(&mut s, case);
        let (segments, _) = s.conversation_segments().unwrap();
        let dec = s.decoder();
        let (d, n_vocab) = (dec.hparams().n_embd, dec.n_vocab());
        let n: usize = segments.iter().map(|seg| seg.n_positions(d)).sum();
        let mut kv = dec.new_cache(n + 32, KvType::F32);
        let mut st = dec.new_state(n, n + 32);
        let mut logits = Vec::with_capacity(n * n_vocab);
        for seg in &segments {
            let input = match seg {
                Segment::Tokens(t) => DecoderInput::Tokens(t),
                Segment::Embeddings(b) => {
                    let range = b.range.clone().unwrap_or(0..b.rows.len() / d);
                    DecoderInput::Embeddings(&b.rows[range.start * d..range.end * d])
                }
            };
            logits.extend_from_slice(
                dec.forward(input, &mut kv, &mut st, s.pool(), LogitsWanted::All).unwrap(),
            );
        }
        let want = read_f32(family, case["logits"]["file"].as_str().unwrap());
        let err = max_rel_err(&logits, &want);
        let top1: Vec<u64> = case["argmax"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        let margins: Vec<f64> =
            case["top1_top2_margin"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let mut checked = 0;
        for (pos, row) in logits.chunks_exact(n_vocab).enumerate() {
            if margins[pos] > 1e-3 {
                assert_eq!(u64::from(argmax(row)), top1[pos], "{family} {name}: top-1 at position {pos}");
                checked += 1;
            }
        }
        eprintln!(
            "{family} {name}: {n} positions, logits max relative error {err:.2e}, top-1 equal at {checked}"
        );
        assert!(err < 1e-3, "{family} {name}: logits {err}");
        // Greedy continuation: argmax, feed it back.
        let want_ids: Vec<u32> =
            case["generated_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let mut ids = vec![argmax(&logits[(n - 1) * n_vocab..])];
        while ids.len() < want_ids.len() {
            let last = [*ids.last().unwrap()];
            let l = dec
                .forward(DecoderInput::Tokens(&last), &mut kv, &mut st, s.pool(), LogitsWanted::Last)
                .unwrap();
            ids.push(argmax(l));
        }
        assert_eq!(ids, want_ids, "{family} {name}: greedy tokens");
        // The session's own generation (prefill in chunks, greedy sampler) says the same.
        let mut sampler = Sampler::new(SamplerConfig { temp: 0.0, ..SamplerConfig::default() });
        let stats = s.generate(want_ids.len(), &mut sampler, |_| true).unwrap();
        assert_eq!(stats.generated_tokens, want_ids.len(), "{family} {name}: session generation length");
        let reply = &s.messages().last().unwrap().content;
        assert_eq!(reply, &s.tokenizer().decode(&want_ids), "{family} {name}: session reply");
    }
}

#[test]
fn internvl_whole_model_matches_transformers() {
    check_whole_model("internvl");
}

#[test]
fn smolvlm_whole_model_matches_transformers() {
    check_whole_model("smolvlm");
}
