//! The pieces a server builds on: sibling sessions sharing one loaded model, stepped
//! round-robin one token at a time, give each the reply it gives alone through `ask`;
//! `set_conversation` replaces the messages and keeps the KV cache's common prefix; a per-image
//! tile budget (`TileBudget`) changes the plan, the global view alone costing one view.

use edgevl_model::KvType;
use edgevl_runtime::{
    Finish, ImageConfig, Sampler, SamplerConfig, Session, SessionConfig, TileBudget, MEDIA_MARKER,
};
use edgevl_tokenizer::ChatMessage;
use edgevl_vision::{Fill, Size};

fn greedy() -> Sampler {
    Sampler::new(SamplerConfig { temp: 0.0, ..SamplerConfig::default() })
}

fn load() -> Session {
    let cfg = SessionConfig {
        n_threads: 2,
        n_ctx: Some(512),
        chunk: 64,
        kv_type: KvType::F32,
        kernels: edgevl_testdata::kernel_config(),
        ..SessionConfig::default()
    };
    Session::load(edgevl_testdata::fixture("tiny-qwen2/model.gguf"), &cfg).expect("load")
}

fn alone(prompt: &str, n: usize) -> String {
    let mut s = load();
    let mut out = String::new();
    s.ask(prompt, n, &mut greedy(), |p| {
        out.push_str(p);
        true
    })
    .expect("turn");
    out
}

#[test]
fn siblings_stepped_round_robin_reply_as_they_would_alone() {
    let prompts = ["Hello there!", "Count to five, please."];
    let n = 12;
    let want: Vec<String> = prompts.iter().map(|p| alone(p, n)).collect();
    assert!(want.iter().all(|w| !w.is_empty()));

    let first = load();
    let second = first.sibling().expect("sibling");
    // A sibling's stats report the model's load (they said 0 ms: server slots, Python's pool).
    assert!(first.load_ms() > 0.0 && second.load_ms() == first.load_ms());
    let mut sessions = [first, second];
    let mut samplers = [greedy(), greedy()];
    let mut gens = Vec::new();
    for ((s, sampler), p) in sessions.iter_mut().zip(&mut samplers).zip(prompts) {
        s.set_conversation(vec![ChatMessage::new("user", p)], Vec::new()).expect("conversation");
        gens.push(s.start_reply(n, sampler).expect("start"));
    }
    let mut got = vec![String::new(), String::new()];
    while gens.iter().any(|g| g.finish().is_none()) {
        for i in 0..2 {
            got[i] += &sessions[i].step(&mut gens[i], &mut samplers[i]).expect("step");
        }
    }
    assert_eq!(got, want);
    for ((s, g), text) in sessions.iter_mut().zip(gens).zip(&got) {
        assert!(matches!(g.finish(), Some(Finish::Eog | Finish::Length)));
        let (reply, stats) = s.end_reply(g);
        assert_eq!(&reply, text);
        assert!(stats.generated_tokens <= n);
        // The reply is not added to the conversation.
        assert_eq!(s.messages().len(), 1);
    }

    // The same conversation again on the first slot: all but the last prompt position reused.
    let s = &mut sessions[0];
    s.set_conversation(vec![ChatMessage::new("user", prompts[0])], Vec::new()).expect("again");
    let g = s.start_reply(1, &mut greedy()).expect("start");
    let report = g.prefill_report();
    assert_eq!(report.prefilled, 1);
    // A stopped generation reports what it was stopped with.
    let mut g2 = g;
    g2.stop(Finish::Cancelled);
    assert_eq!(s.end_reply(g2).1.finish, Finish::Cancelled);
    // Images without an mmproj are refused; markers are then plain text.
    assert!(s.set_conversation(vec![ChatMessage::new("user", MEDIA_MARKER)], Vec::new()).is_ok());
}

#[test]
fn a_tile_budget_overrides_the_sessions_plan() {
    let cfg = ImageConfig::default();
    let size = Size::new(900, 500);
    let full = cfg.plan(size, TileBudget::Default).expect("plan");
    let two = cfg.plan(size, TileBudget::MaxTiles(2)).expect("plan");
    let low = cfg.plan(size, TileBudget::GlobalOnly).expect("plan");
    assert!(full.views() > two.views() && two.views() > low.views());
    assert!(two.tiles() <= 2);
    // One view: the rule (relaxed here) with a budget of one tile, no global view beside it.
    assert_eq!((low.views(), low.global_view(), low.fill), (1, false, Fill::Pad));
    assert_eq!(low, cfg.plan(size, TileBudget::MaxTiles(1)).expect("plan"));
    assert_eq!((low.canvas, low.resize), (Size::new(384, 384), Size::new(384, 214)));
    assert!(cfg.plan(Size::new(0, 5), TileBudget::GlobalOnly).is_err());
    assert!(cfg.plan(size, TileBudget::MaxTiles(0)).is_err());
}
