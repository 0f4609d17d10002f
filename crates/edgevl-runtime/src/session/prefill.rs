//! Bringing the KV cache in line with a sequence of segments: keep the longest common prefix,
//! drop what differs, and run the rest through the decoder in chunks.

use super::Session;
use crate::segment::{common_prefix, pieces, Cell, Piece, Segment};
use crate::{Progress, RuntimeError};
use edgevl_model::{DecoderInput, LogitsWanted};
use std::sync::atomic::Ordering;

/// What a prefill reused and what it computed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefillReport {
    /// Leading positions that were already in the KV cache.
    pub reused: usize,
    /// Positions run through the decoder.
    pub prefilled: usize,
}

impl Session {
    /// Make the KV cache hold exactly `segments`: the longest prefix already cached is kept
    /// (at least the last position is always recomputed, for its logits), everything after the
    /// first differing position is dropped, and the rest goes through the decoder in chunks of
    /// the configured size. Afterwards [`Session::logits`] holds the last position's logits.
    ///
    /// Fails with [`RuntimeError::ContextFull`] (cache untouched) when `segments` do not fit
    /// the context, and with [`RuntimeError::Cancelled`] when the cancel flag is set between
    /// two chunks (the cache then holds the chunks done so far).
    pub fn prefill(&mut self, segments: &[Segment]) -> Result<PrefillReport, RuntimeError> {
        let mut report = PrefillReport::default();
        self.prefill_into(segments, &mut report).map(|()| report)
    }

    /// [`Session::prefill`], keeping in `report` what was reused and computed so far, so a
    /// prefill cancelled part-way still counts the chunks it left in the cache.
    pub(super) fn prefill_into(
        &mut self,
        segments: &[Segment],
        report: &mut PrefillReport,
    ) -> Result<(), RuntimeError> {
        let d = self.decoder.hparams().n_embd;
        for s in segments {
            if let Segment::Embeddings(b) = s {
                if b.rows.len() % d != 0 {
                    return Err(RuntimeError::BadInput(format!(
                        "embedding block {:#x} has {} values, not a whole number of rows of width {d}",
                        b.key,
                        b.rows.len()
                    )));
                }
                if let Some(r) = &b.range {
                    if r.start > r.end || r.end > b.rows.len() / d {
                        return Err(RuntimeError::BadInput(format!(
                            "embedding block {:#x} has {} rows; rows {r:?} were asked for",
                            b.key,
                            b.rows.len() / d
                        )));
                    }
                }
            }
        }
        let target: Vec<Cell> = segments.iter().flat_map(|s| s.cells(d)).collect();
        if target.is_empty() {
            return Err(RuntimeError::BadInput("nothing to prefill: the input is empty".into()));
        }
        let n_ctx = self.kv.n_ctx();
        let reused = common_prefix(&self.cells, &target).min(target.len() - 1);
        if target.len() > n_ctx {
            return Err(RuntimeError::ContextFull {
                needed: target.len() - reused,
                left: n_ctx - reused,
                n_ctx,
                n_ctx_train: self.decoder.hparams().n_ctx_train,
            });
        }
        self.kv.truncate(reused);
        self.cells.truncate(reused);
        *report = PrefillReport { reused, prefilled: 0 };
        let todo = pieces(segments, reused, self.chunk, d);
        let last = todo.len().saturating_sub(1);
        let total = target.len() - reused;
        let tell = |done| {
            if let Some(f) = &self.progress {
                f(Progress::Prefill { done, total });
            }
        };
        tell(0);
        for (i, piece) in todo.iter().enumerate() {
            if i > 0 && self.cancel.load(Ordering::Relaxed) {
                return Err(RuntimeError::Cancelled);
            }
            let input = match *piece {
                Piece::Tokens(t) => DecoderInput::Tokens(t),
                Piece::Embeddings { data, .. } => DecoderInput::Embeddings(data),
            };
            let want = if i == last { LogitsWanted::Last } else { LogitsWanted::None };
            self.decoder.forward(input, &mut self.kv, &mut self.state, &self.pool, want)?;
            self.cells.extend(piece.cells(d));
            report.prefilled = self.cells.len() - reused;
            tell(report.prefilled);
        }
        Ok(())
    }

    /// [`Session::prefill`] of the conversation as [`Session::conversation_segments`] lays it out.
    pub fn prefill_conversation(&mut self) -> Result<PrefillReport, RuntimeError> {
        let (segments, _) = self.conversation_segments()?;
        self.prefill(&segments)
    }
}
