//! The engine thread: it owns the model and `--parallel` slots (a [`Session`] each, siblings
//! sharing the weights, thread pool and image encoder), takes requests from a channel when a
//! slot is free, and decodes round-robin, one token per busy slot per round. A request whose
//! reader went away (its event channel closed) is stopped and its slot freed at the next round;
//! its cancel flag also stops a prefill between two chunks.

use crate::error::ApiError;
use crate::metrics::{add, Metrics};
use edgevl_runtime::{
    Finish, Generation, PendingImage, Progress, Sampler, SamplerConfig, Session, TurnStats,
};
use edgevl_tokenizer::ChatMessage;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;

/// A chat request ready for a slot: its images are already encoded (or cached).
pub struct Job {
    /// The whole conversation, images at `<__media__>` markers.
    pub messages: Vec<ChatMessage>,
    /// The images, in marker order.
    pub images: Vec<PendingImage>,
    /// Sampling settings.
    pub sampler: SamplerConfig,
    /// Most tokens to generate (`None`: to the end of the context).
    pub max_tokens: Option<usize>,
    /// Never stop at an end-of-generation token.
    pub ignore_eos: bool,
    /// Stop strings (not included in the reply).
    pub stop: Vec<String>,
    /// Where text and the end go.
    pub events: UnboundedSender<Event>,
    /// Set when the client goes away (stops a prefill between chunks).
    pub cancel: Arc<AtomicBool>,
    /// Send [`Event::Progress`] of the prefill (a streamed reply shows it).
    pub progress: bool,
}

/// What the engine tells a request.
#[derive(Debug)]
pub enum Event {
    /// More of the reply.
    Text(String),
    /// The end, with why and the counts.
    Done {
        /// `stop` or `length`.
        finish_reason: &'static str,
        /// The turn's counts.
        stats: Box<TurnStats>,
    },
    /// The request failed before or while generating.
    Error(ApiError),
    /// How far the image encoding or the prefill has got (for a job with `progress`; images
    /// before the job is queued).
    Progress(Progress),
}

/// A slot's request in progress.
struct Active {
    job: Job,
    sampler: Sampler,
    gen: Generation,
    stop: StopMatcher,
    stopped_by_string: bool,
}

/// How often an idle engine looks at its stop flag.
const STOP_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// One conversation slot.
struct Slot {
    session: Session,
    active: Option<Active>,
}

/// Runs the engine on this thread. `primary` is the loaded model (slot 0); the other
/// `parallel - 1` slots are its siblings.
///
/// It returns when the job channel is closed and every slot is idle, or as soon as `stop` is set
/// (the server has given up waiting for requests in flight: their replies end there). A client
/// that holds a connection open keeps a sender alive, so the channel alone may never close.
pub fn run(
    primary: Session,
    parallel: usize,
    jobs: Receiver<Job>,
    metrics: Arc<Metrics>,
    stop: &AtomicBool,
) -> Result<(), ApiError> {
    let mut slots = Vec::with_capacity(parallel);
    for _ in 1..parallel {
        let s = primary.sibling().map_err(ApiError::from)?;
        slots.push(Slot { session: s, active: None });
    }
    slots.insert(0, Slot { session: primary, active: None });
    let mut open = true;
    // The jobs taken off the channel, in order, not yet in a slot.
    let mut waiting: VecDeque<Job> = VecDeque::new();
    // A job whose client has left is dropped, and counted, wherever it waits.
    let abandoned = |job: &Job| {
        let gone = job.events.is_closed();
        if gone {
            metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
            add(&metrics.cancelled, 1);
        }
        gone
    };
    loop {
        // Every round takes in what was queued and drops what its client left: a request's
        // admission place goes back when its client leaves, so while every slot is busy the
        // abandoned jobs would otherwise pile up in the channel.
        while open {
            match jobs.try_recv() {
                Ok(j) => waiting.push_back(j),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => open = false,
            }
        }
        waiting.retain(|j| !abandoned(j));
        // Admit waiting requests into free slots (blocking only when nothing else is to do).
        while slots.iter().any(|s| s.active.is_none()) {
            let job = match waiting.pop_front() {
                Some(j) => j,
                None if !open || slots.iter().any(|s| s.active.is_some()) => break,
                None => match jobs.recv_timeout(STOP_POLL) {
                    Ok(j) if abandoned(&j) => continue,
                    Ok(j) => j,
                    Err(RecvTimeoutError::Timeout) if stop.load(Ordering::Relaxed) => return Ok(()),
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => {
                        open = false;
                        break;
                    }
                },
            };
            metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
            let i = pick_slot(&slots, &job.messages);
            let slot = &mut slots[i];
            // Busy from before the prefill (a long one showed an idle server for its whole time).
            metrics.slots_busy.fetch_add(1, Ordering::Relaxed);
            match start(&mut slot.session, job) {
                Some(a) => slot.active = Some(a),
                None => {
                    metrics.slots_busy.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
        if stop.load(Ordering::Relaxed)
            || (!open && waiting.is_empty() && slots.iter().all(|s| s.active.is_none()))
        {
            return Ok(());
        }
        for slot in slots.iter_mut() {
            if slot.active.is_some() {
                step(slot, &metrics);
            }
        }
    }
}

/// The free slot whose conversation shares the most leading messages with `messages` (its KV
/// cache then likely holds the longest prefix); the first free one on a tie.
fn pick_slot(slots: &[Slot], messages: &[ChatMessage]) -> usize {
    let mut best = (0, None);
    for (i, s) in slots.iter().enumerate().filter(|(_, s)| s.active.is_none()) {
        let shared = s.session.messages().iter().zip(messages).take_while(|(a, b)| a == b).count();
        if best.1.is_none() || shared > best.0 {
            best = (shared, Some(i));
        }
    }
    best.1.unwrap_or(0)
}

/// Sets the slot's conversation to the request's and prefills it; a failure is sent to the
/// request (and `None` returned).
fn start(session: &mut Session, mut job: Job) -> Option<Active> {
    let mut cfg = job.sampler.clone();
    if job.ignore_eos {
        cfg.logit_bias.extend(session.tokenizer().eog_tokens().map(|t| (t, f32::NEG_INFINITY)));
    }
    // With every token banned the sampler could only take a banned one (it took token 0, an end
    // of generation, and replied nothing).
    let banned: std::collections::HashSet<u32> =
        cfg.logit_bias.iter().filter(|(_, b)| *b == f32::NEG_INFINITY).map(|(t, _)| *t).collect();
    if banned.len() >= session.tokenizer().n_vocab() {
        let what = if job.ignore_eos { "logit_bias with ignore_eos" } else { "logit_bias" };
        let e = ApiError::bad_request(format!("{what} bans every token: nothing could be generated"));
        let _ = job.events.send(Event::Error(e));
        return None;
    }
    let mut sampler = Sampler::new(cfg);
    let images = std::mem::take(&mut job.images);
    let messages = std::mem::take(&mut job.messages);
    session.set_cancel_flag(job.cancel.clone());
    let n_predict = job.max_tokens.unwrap_or(usize::MAX);
    if job.progress {
        let events = job.events.clone();
        session.set_progress(Some(Arc::new(move |p| {
            let _ = events.send(Event::Progress(p));
        })));
    }
    let started = session
        .set_conversation(messages, images)
        .and_then(|()| session.start_reply(n_predict, &mut sampler));
    session.set_progress(None);
    match started {
        Ok(gen) => {
            let stop = StopMatcher::new(std::mem::take(&mut job.stop));
            Some(Active { job, sampler, gen, stop, stopped_by_string: false })
        }
        Err(e) => {
            let _ = job.events.send(Event::Error(e.into()));
            None
        }
    }
}

/// One token for the slot's request; ends it when it is done, failed or abandoned.
fn step(slot: &mut Slot, metrics: &Metrics) {
    let Some(a) = slot.active.as_mut() else { return };
    if a.job.events.is_closed() && a.gen.finish().is_none() {
        a.gen.stop(Finish::Cancelled);
    }
    let text = match slot.session.step(&mut a.gen, &mut a.sampler) {
        Ok(t) => t,
        Err(e) => {
            let _ = a.job.events.send(Event::Error(e.into()));
            finish(slot, metrics);
            return;
        }
    };
    let (mut out, matched) = a.stop.push(&text);
    if matched {
        a.stopped_by_string = true;
        a.gen.stop(Finish::Eog);
    }
    if a.gen.finish().is_some() && !matched {
        out.push_str(&a.stop.flush());
    }
    if !out.is_empty() {
        let _ = a.job.events.send(Event::Text(out));
    }
    if a.gen.finish().is_some() {
        finish(slot, metrics);
    }
}

/// Closes the slot's request: counts it and sends the end.
fn finish(slot: &mut Slot, metrics: &Metrics) {
    let Some(a) = slot.active.take() else { return };
    metrics.slots_busy.fetch_sub(1, Ordering::Relaxed);
    let (_, stats) = slot.session.end_reply(a.gen);
    add(&metrics.prompt_tokens, stats.prompt_tokens as u64);
    add(&metrics.cached_tokens, stats.reused_tokens as u64);
    add(&metrics.image_tokens, stats.image_tokens as u64);
    add(&metrics.generated_tokens, stats.generated_tokens as u64);
    if stats.generated_tokens > 1 && stats.decode_tok_s > 0.0 {
        let n = stats.generated_tokens as u64 - 1;
        add(&metrics.decoded_tokens, n);
        add(&metrics.decode_us, (n as f64 / stats.decode_tok_s * 1e6) as u64);
    }
    let finish_reason = match stats.finish {
        Finish::Cancelled if !a.stopped_by_string => {
            add(&metrics.cancelled, 1);
            return;
        }
        _ if a.stopped_by_string => "stop",
        Finish::Eog | Finish::Cancelled => "stop",
        Finish::Length | Finish::ContextFull => "length",
    };
    let _ = a.job.events.send(Event::Done { finish_reason, stats: Box::new(stats) });
}

/// Finds stop strings in streamed text, holding back what could be the start of one.
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

impl StopMatcher {
    /// A matcher for `stops` (empty strings are ignored).
    pub fn new(stops: Vec<String>) -> Self {
        StopMatcher { stops: stops.into_iter().filter(|s| !s.is_empty()).collect(), held: String::new() }
    }

    /// Adds `text`; returns what can be sent now and whether a stop string was found (the
    /// text before it is returned, the rest dropped).
    pub fn push(&mut self, text: &str) -> (String, bool) {
        self.held.push_str(text);
        if self.stops.is_empty() {
            return (std::mem::take(&mut self.held), false);
        }
        if let Some(at) = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min() {
            self.held.truncate(at);
            return (std::mem::take(&mut self.held), true);
        }
        let keep = self
            .stops
            .iter()
            .flat_map(|s| s.char_indices().skip(1).map(move |(i, _)| &s[..i]))
            .filter(|prefix| self.held.ends_with(prefix))
            .map(str::len)
            .max()
            .unwrap_or(0);
        let rest = self.held.split_off(self.held.len() - keep);
        (std::mem::replace(&mut self.held, rest), false)
    }

    /// What is still held back (at the end of the reply).
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::StopMatcher;

    #[test]
    fn stop_strings_are_cut_and_their_starts_held_back() {
        let mut m = StopMatcher::new(vec!["END".into(), "\n\n".into()]);
        assert_eq!(m.push("Hello E"), ("Hello ".to_string(), false));
        assert_eq!(m.push("N"), (String::new(), false));
        assert_eq!(m.push("X more"), ("ENX more".to_string(), false));
        assert_eq!(m.push(" then\n"), (" then".to_string(), false));
        assert_eq!(m.push("\nafter"), (String::new(), true));
        let mut m = StopMatcher::new(vec!["é!".into()]);
        assert_eq!(m.push("caf"), ("caf".to_string(), false));
        assert_eq!(m.push("é"), (String::new(), false));
        assert_eq!(m.flush(), "é");
        let mut none = StopMatcher::new(vec![String::new()]);
        assert_eq!(none.push("abc"), ("abc".to_string(), false));
    }
}
