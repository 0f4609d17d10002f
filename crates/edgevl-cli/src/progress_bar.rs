//! The long steps of a turn on a terminal (`run`, `chat`): a bar for an image's views through the ViT, then one
//! for the prompt's positions through the decoder, each cleared when its step ends (or the observer is dropped, as
//! after an error or a cancel), so the answer is written below no bar.

use edgevl_runtime::{Progress, ProgressFn};
use indicatif::{ProgressBar, ProgressFinish, ProgressStyle};
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

/// The bar of the step under way: whether it counts image views, and the bar.
type Current = Option<(bool, ProgressBar)>;

/// An observer drawing the steps on stderr when stderr is a terminal; `None` otherwise (logs and pipes get the
/// summary lines only).
pub fn on_terminal() -> Option<ProgressFn> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let current: Mutex<Current> = Mutex::new(None);
    Some(Arc::new(move |p: Progress| {
        let (views, done, total) = match p {
            Progress::ImageViews { done, total } => (true, done, total),
            Progress::Prefill { done, total } => (false, done, total),
        };
        // A panic elsewhere cannot leave the bar half-updated.
        let mut current = current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, bar)) = current.take_if(|(v, _)| *v != views) {
            bar.finish_and_clear();
        }
        let (_, bar) = current.get_or_insert_with(|| (views, new_bar(views, done, total)));
        bar.set_position(done as u64);
        if done >= total {
            bar.finish_and_clear();
            *current = None;
        }
    }))
}

/// A bar of `total` image views (`views`) or prompt positions, `done` of them before it is drawn (an image encoded
/// ahead may be part way), its ETA counted from there.
fn new_bar(views: bool, done: usize, total: usize) -> ProgressBar {
    let (what, unit) = if views { ("encoding the image", "views") } else { ("reading the prompt", "tokens") };
    let bar = ProgressBar::new(total as u64).with_finish(ProgressFinish::AndClear);
    bar.set_style(
        ProgressStyle::with_template(&format!("{what} [{{bar:30}}] {{pos}}/{{len}} {unit}, ETA {{eta}}"))
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    // The estimator takes the steps of a `set_position` as made since the last; a reset after the first keeps
    // those made before the bar out of its rate.
    bar.set_position(done as u64);
    bar.reset_eta();
    bar
}
