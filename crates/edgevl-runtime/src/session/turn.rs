//! One turn: prefill what is new, then sample and stream tokens until an end-of-generation
//! token, the length limit, the context's end or a cancel. A turn is a [`Generation`] advanced
//! one token at a time by [`Session::step`], so a caller can interleave several sessions (a
//! server decoding round-robin) or drive one to the end with a callback ([`Session::ask`]).

use super::{PrefillReport, Session};
use crate::segment::{Cell, Segment};
use crate::{peak_rss_mb, Finish, RuntimeError, Sampler, TurnStats};
use edgevl_model::{DecoderInput, LogitsWanted};
use edgevl_tokenizer::{ChatMessage, StreamDecoder};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// A reply being generated: made by [`Session::start_reply`], advanced by [`Session::step`],
/// closed by [`Session::end_reply`]. It belongs to the session that made it.
pub struct Generation {
    /// Start of the turn (time to first token counts from here, image waits included).
    t0: Instant,
    /// Start of the prefill.
    t_prefill: Instant,
    /// When the first token was sampled.
    t_first: Instant,
    prompt_tokens: usize,
    image_tokens: usize,
    image_wait_ms: f64,
    /// What the prefill reused and computed (as far as it got when it was cancelled).
    report: PrefillReport,
    n_predict: usize,
    /// The sampled token not yet emitted.
    next: u32,
    /// Tokens emitted.
    out: Vec<u32>,
    stream: StreamDecoder,
    reply: String,
    finish: Option<Finish>,
}

impl Generation {
    /// Why generation stopped; `None` while it goes on.
    pub fn finish(&self) -> Option<Finish> {
        self.finish
    }

    /// The text generated so far.
    pub fn reply(&self) -> &str {
        &self.reply
    }

    /// Tokens generated so far.
    pub fn generated_tokens(&self) -> usize {
        self.out.len()
    }

    /// What the prefill reused and computed (as far as it got when it was cancelled).
    pub fn prefill_report(&self) -> PrefillReport {
        self.report
    }

    /// Stop here with `finish` (e.g. [`Finish::Cancelled`] when the reader went away); returns
    /// the text the UTF-8 stream decoder still held, which is also added to the reply. Does
    /// nothing (and returns nothing) when already stopped.
    pub fn stop(&mut self, finish: Finish) -> String {
        if self.finish.is_some() {
            return String::new();
        }
        self.finish = Some(finish);
        let rest = self.stream.finish();
        self.reply.push_str(&rest);
        rest
    }
}

impl Session {
    /// Add `user_text` as a user message, with the images attached since the last message (at
    /// its `<__media__>` markers, else in front of the text), and generate the reply (see
    /// [`Session::generate`]). On an error the message is taken back and its images are
    /// attached again, so the conversation is as before.
    ///
    /// A reply cancelled before its first token is not kept: the message is taken back the same
    /// way, so the question can be asked again (it left an empty reply after the question).
    pub fn ask(
        &mut self,
        user_text: &str,
        n_predict: usize,
        sampler: &mut Sampler,
        on_text: impl FnMut(&str) -> bool,
    ) -> Result<TurnStats, RuntimeError> {
        self.with_user_message(user_text, |s| {
            let g = s.start_reply(n_predict, sampler)?;
            let (reply, stats) = s.drive(g, sampler, on_text)?;
            s.keep_reply(reply, &stats);
            Ok(stats)
        })
    }

    /// Closes a turn begun by [`Session::start_turn`] as [`Session::ask`] closes its own: the
    /// reply becomes the assistant message, or, cancelled before its first token, the user
    /// message is taken back (its images attached again). Returns the reply and the stats.
    pub fn end_turn(&mut self, g: Generation) -> (String, TurnStats) {
        let (reply, stats) = self.end_reply(g);
        self.keep_reply(reply.clone(), &stats);
        (reply, stats)
    }

    /// Adds `reply` as the assistant message, unless the turn was cancelled before its first
    /// token: then the user message it answered is taken back instead.
    fn keep_reply(&mut self, reply: String, stats: &TurnStats) {
        if stats.finish == Finish::Cancelled && stats.generated_tokens == 0 {
            self.take_back_user_message();
        } else {
            self.messages.push(ChatMessage::new("assistant", reply));
        }
    }

    /// [`Session::ask`] one token at a time: add `user_text` as a user message (binding the
    /// attached images as `ask` does) and begin the reply ([`Session::start_reply`]); step it
    /// with [`Session::step`] and close it with [`Session::end_turn`] (which adds the reply, or
    /// takes the question back when it was cancelled before its first token). On an error the
    /// message is taken back and its images are attached again.
    pub fn start_turn(
        &mut self,
        user_text: &str,
        n_predict: usize,
        sampler: &mut Sampler,
    ) -> Result<Generation, RuntimeError> {
        self.with_user_message(user_text, |s| s.start_reply(n_predict, sampler))
    }

    /// Adds `user_text` (with the attached images bound) as a user message and runs `f`; takes
    /// the message back, images attached again, when `f` fails.
    fn with_user_message<T>(
        &mut self,
        user_text: &str,
        f: impl FnOnce(&mut Self) -> Result<T, RuntimeError>,
    ) -> Result<T, RuntimeError> {
        let (text, n_images) = self.bind_images(user_text)?;
        self.messages.push(ChatMessage::new("user", text));
        let result = f(self);
        if result.is_err() {
            self.messages.pop();
            self.unbind_images(n_images);
        }
        result
    }

    /// Takes back the last message, a user message, with its images attached again (as many as
    /// its markers: binding put one per image).
    fn take_back_user_message(&mut self) {
        if self.messages.last().is_some_and(|m| m.role == "user") {
            let m = self.messages.pop().expect("a last message");
            if self.vision.is_some() {
                self.unbind_images(m.content.matches(crate::MEDIA_MARKER).count());
            }
        }
    }

    /// Render the conversation, prefill only what the KV cache does not already hold, and
    /// sample up to `n_predict` tokens, passing each piece of text to `on_text` as soon as it
    /// is complete UTF-8 (return false to stop). The reply, as far as it got, becomes an
    /// assistant message.
    pub fn generate(
        &mut self,
        n_predict: usize,
        sampler: &mut Sampler,
        on_text: impl FnMut(&str) -> bool,
    ) -> Result<TurnStats, RuntimeError> {
        let g = self.start_reply(n_predict, sampler)?;
        let (reply, stats) = self.drive(g, sampler, on_text)?;
        self.messages.push(ChatMessage::new("assistant", reply));
        Ok(stats)
    }

    /// Continue exactly `prompt` (no chat template, conversation untouched): prefill what the
    /// cache does not already hold, then sample as [`Session::generate`]. Returns the generated
    /// text and the turn's stats.
    pub fn complete(
        &mut self,
        prompt: &[Segment],
        n_predict: usize,
        sampler: &mut Sampler,
        on_text: impl FnMut(&str) -> bool,
    ) -> Result<(String, TurnStats), RuntimeError> {
        self.begin_turn(sampler)?;
        let g = self.start(Instant::now(), prompt, 0.0, n_predict, sampler)?;
        self.drive(g, sampler, on_text)
    }

    /// Begin the reply to the conversation: render it (waiting for its images' embeddings),
    /// prefill what the KV cache does not already hold and sample the first token; then call
    /// [`Session::step`] for each token and [`Session::end_reply`] at the end. The reply is not
    /// added to the conversation. A prefill cut short by the cancel flag gives a generation
    /// already stopped with [`Finish::Cancelled`].
    pub fn start_reply(
        &mut self,
        n_predict: usize,
        sampler: &mut Sampler,
    ) -> Result<Generation, RuntimeError> {
        let t0 = Instant::now();
        self.begin_turn(sampler)?;
        let (segments, image_wait_ms) = self.conversation_segments()?;
        self.start(t0, &segments, image_wait_ms, n_predict, sampler)
    }

    /// Advance `g` by one token: returns the text it completed (often one token's, empty while
    /// a UTF-8 character is incomplete, plus what the stream decoder held when it stops). Once
    /// [`Generation::finish`] is set, stepping does nothing. Checks the cancel flag, the length
    /// limit and the context's end before running the previous token through the decoder.
    pub fn step(&mut self, g: &mut Generation, sampler: &mut Sampler) -> Result<String, RuntimeError> {
        if g.finish.is_some() {
            return Ok(String::new());
        }
        if let Some(&last) = g.out.last() {
            let stop = if self.cancel.load(Ordering::Relaxed) {
                Some(Finish::Cancelled)
            } else if g.out.len() >= g.n_predict {
                Some(Finish::Length)
            } else if self.kv.len() >= self.kv.n_ctx() {
                Some(Finish::ContextFull)
            } else {
                None
            };
            if let Some(finish) = stop {
                return Ok(g.stop(finish));
            }
            self.decoder.forward(
                DecoderInput::Tokens(&[last]),
                &mut self.kv,
                &mut self.state,
                &self.pool,
                LogitsWanted::Last,
            )?;
            self.cells.push(Cell::Token(last));
            g.next = sampler.sample(self.logits());
        }
        let next = g.next;
        if self.tokenizer.is_eog(next) {
            return Ok(g.stop(Finish::Eog));
        }
        if g.out.len() >= g.n_predict {
            return Ok(g.stop(Finish::Length));
        }
        g.out.push(next);
        sampler.accept(&[next]);
        let piece = g.stream.push(&self.tokenizer, next);
        g.reply.push_str(&piece);
        Ok(piece)
    }

    /// Close `g` (stopping it as cancelled if it is still going): counts it in the session's
    /// totals and returns the reply and the turn's stats.
    pub fn end_reply(&mut self, mut g: Generation) -> (String, TurnStats) {
        g.stop(Finish::Cancelled);
        let t_end = Instant::now();
        let prefill_s = g.t_first.saturating_duration_since(g.t_prefill).as_secs_f64();
        let decode_s = t_end.saturating_duration_since(g.t_first).as_secs_f64();
        let n_decoded = g.out.len().saturating_sub(1);
        // A prefill cancelled part-way still left its finished chunks in the cache.
        let prefilled = g.report.prefilled;
        let stats = TurnStats {
            prompt_tokens: g.prompt_tokens,
            reused_tokens: g.report.reused,
            prefilled_tokens: prefilled,
            generated_tokens: g.out.len(),
            load_ms: self.load_ms,
            ttft_ms: g.t_first.saturating_duration_since(g.t0).as_secs_f64() * 1e3,
            prefill_tok_s: prefilled as f64 / prefill_s.max(1e-9),
            decode_tok_s: if n_decoded > 0 { n_decoded as f64 / decode_s.max(1e-9) } else { 0.0 },
            peak_rss_mb: peak_rss_mb(),
            threads: self.pool.n_threads(),
            n_ctx: self.kv.n_ctx(),
            chunk: self.chunk,
            n_past: self.kv.len(),
            image_tokens: g.image_tokens,
            image_wait_ms: g.image_wait_ms,
            finish: g.finish.unwrap_or(Finish::Cancelled),
        };
        self.totals.turns += 1;
        self.totals.prefilled += prefilled;
        self.totals.generated += g.out.len();
        self.totals.last_turn = Some(stats.clone());
        (g.reply, stats)
    }

    /// Steps `g` to its end, passing each piece of text to `on_text` (false stops it).
    fn drive(
        &mut self,
        mut g: Generation,
        sampler: &mut Sampler,
        mut on_text: impl FnMut(&str) -> bool,
    ) -> Result<(String, TurnStats), RuntimeError> {
        while g.finish.is_none() {
            let text = self.step(&mut g, sampler)?;
            if !text.is_empty() && !on_text(&text) {
                let rest = g.stop(Finish::Cancelled);
                if !rest.is_empty() {
                    on_text(&rest);
                }
            }
        }
        Ok(self.end_reply(g))
    }

    /// What every turn does first: refuses sampling settings the chain cannot use (before any
    /// image is waited for) and clears the cancel flag (before that wait, so a cancel during it
    /// stops the turn).
    fn begin_turn(&self, sampler: &Sampler) -> Result<(), RuntimeError> {
        sampler.config().check().map_err(RuntimeError::BadSetting)?;
        self.cancel.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// Prefills `prompt` and samples the first token.
    fn start(
        &mut self,
        t0: Instant,
        prompt: &[Segment],
        image_wait_ms: f64,
        n_predict: usize,
        sampler: &mut Sampler,
    ) -> Result<Generation, RuntimeError> {
        let t_prefill = Instant::now();
        let d = self.decoder.hparams().n_embd;
        let positions = |image: bool| -> usize {
            prompt
                .iter()
                .filter(|s| !image || matches!(s, Segment::Embeddings(_)))
                .map(|s| s.n_positions(d))
                .sum()
        };
        let mut g = Generation {
            t0,
            t_prefill,
            t_first: t_prefill,
            prompt_tokens: positions(false),
            image_tokens: positions(true),
            image_wait_ms,
            report: PrefillReport::default(),
            n_predict,
            next: 0,
            out: Vec::new(),
            stream: StreamDecoder::new(),
            reply: String::new(),
            finish: None,
        };
        // Filled as the prefill goes: the chunks done before a cancel stay in the cache and are counted.
        match self.prefill_into(prompt, &mut g.report) {
            Err(RuntimeError::Cancelled) => {
                g.t_first = Instant::now();
                g.finish = Some(Finish::Cancelled);
            }
            Err(e) => return Err(e),
            Ok(()) => {
                sampler.forget_recent();
                for s in prompt {
                    if let Segment::Tokens(t) = s {
                        sampler.accept(t);
                    }
                }
                g.next = sampler.sample(self.logits());
                g.t_first = Instant::now();
            }
        }
        Ok(g)
    }
}
