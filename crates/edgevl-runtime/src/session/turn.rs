//! One turn: prefill what is new, then sample and stream tokens until an end-of-generation
//! token, the length limit, the context's end or a cancel.

use super::Session;
use crate::segment::{Cell, Segment};
use crate::{peak_rss_mb, Finish, RuntimeError, Sampler, TurnStats};
use edgevl_model::{DecoderInput, LogitsWanted};
use edgevl_tokenizer::{ChatMessage, StreamDecoder};
use std::sync::atomic::Ordering;
use std::time::Instant;

impl Session {
    /// Add `user_text` as a user message, with the images attached since the last message (at
    /// its `<__media__>` markers, else in front of the text), and generate the reply (see
    /// [`Session::generate`]). On an error the message is taken back and its images are
    /// attached again, so the conversation is as before.
    pub fn ask(
        &mut self,
        user_text: &str,
        n_predict: usize,
        sampler: &mut Sampler,
        on_text: impl FnMut(&str) -> bool,
    ) -> Result<TurnStats, RuntimeError> {
        let (text, n_images) = self.bind_images(user_text)?;
        self.messages.push(ChatMessage::new("user", text));
        let result = self.generate(n_predict, sampler, on_text);
        if result.is_err() {
            self.messages.pop();
            self.unbind_images(n_images);
        }
        result
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
        let t0 = Instant::now();
        let (segments, image_wait_ms) = self.conversation_segments()?;
        let (reply, stats) = self.run_turn(t0, &segments, image_wait_ms, n_predict, sampler, on_text)?;
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
        self.run_turn(Instant::now(), prompt, 0.0, n_predict, sampler, on_text)
    }

    fn run_turn(
        &mut self,
        t0: Instant,
        prompt: &[Segment],
        image_wait_ms: f64,
        n_predict: usize,
        sampler: &mut Sampler,
        mut on_text: impl FnMut(&str) -> bool,
    ) -> Result<(String, TurnStats), RuntimeError> {
        self.cancel.store(false, Ordering::Relaxed);
        // The turn started at `t0` (time-to-first-token counts from there, image waits
        // included); the prefill starts now.
        let t_prefill = Instant::now();
        let d = self.decoder.hparams().n_embd;
        let prompt_tokens: usize = prompt.iter().map(|s| s.n_positions(d)).sum();
        let mut out = Vec::new();
        let mut reply = String::new();
        let (report, finish, t_first) = match self.prefill(prompt) {
            Err(RuntimeError::Cancelled) => (None, Finish::Cancelled, Instant::now()),
            Err(e) => return Err(e),
            Ok(report) => {
                for s in prompt {
                    if let Segment::Tokens(t) = s {
                        sampler.accept(t);
                    }
                }
                let mut next = sampler.sample(self.logits());
                let t_first = Instant::now();
                let mut stream = StreamDecoder::new();
                let finish = loop {
                    if self.tokenizer.is_eog(next) {
                        break Finish::Eog;
                    }
                    if out.len() >= n_predict {
                        break Finish::Length;
                    }
                    out.push(next);
                    sampler.accept(&[next]);
                    let piece = stream.push(&self.tokenizer, next);
                    if !piece.is_empty() {
                        reply.push_str(&piece);
                        if !on_text(&piece) {
                            break Finish::Cancelled;
                        }
                    }
                    if self.cancel.load(Ordering::Relaxed) {
                        break Finish::Cancelled;
                    }
                    if out.len() == n_predict {
                        break Finish::Length;
                    }
                    if self.kv.len() >= self.kv.n_ctx() {
                        break Finish::ContextFull;
                    }
                    self.decoder.forward(
                        DecoderInput::Tokens(&[next]),
                        &mut self.kv,
                        &mut self.state,
                        &self.pool,
                        LogitsWanted::Last,
                    )?;
                    self.cells.push(Cell::Token(next));
                    next = sampler.sample(self.logits());
                };
                let rest = stream.finish();
                if !rest.is_empty() {
                    reply.push_str(&rest);
                    on_text(&rest);
                }
                (Some(report), finish, t_first)
            }
        };
        let t_end = Instant::now();
        let prefill_s = t_first.saturating_duration_since(t_prefill).as_secs_f64();
        let decode_s = (t_end - t_first).as_secs_f64();
        let n_decoded = out.len().saturating_sub(1);
        // A prefill cancelled part-way still left its finished chunks in the cache.
        let prefilled = report.map_or(0, |r| r.prefilled);
        let stats = TurnStats {
            prompt_tokens,
            reused_tokens: report.map_or(0, |r| r.reused),
            prefilled_tokens: prefilled,
            generated_tokens: out.len(),
            load_ms: self.load_ms,
            ttft_ms: t_first.saturating_duration_since(t0).as_secs_f64() * 1e3,
            prefill_tok_s: prefilled as f64 / prefill_s.max(1e-9),
            decode_tok_s: if n_decoded > 0 { n_decoded as f64 / decode_s.max(1e-9) } else { 0.0 },
            peak_rss_mb: peak_rss_mb(),
            threads: self.pool.n_threads(),
            n_ctx: self.kv.n_ctx(),
            chunk: self.chunk,
            n_past: self.kv.len(),
            image_tokens: prompt
                .iter()
                .filter(|s| matches!(s, Segment::Embeddings(_)))
                .map(|s| s.n_positions(d))
                .sum(),
            image_wait_ms,
            finish,
        };
        self.totals.turns += 1;
        self.totals.prefilled += prefilled;
        self.totals.generated += out.len();
        self.totals.last_turn = Some(stats.clone());
        Ok((reply, stats))
    }
}
