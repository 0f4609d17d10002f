//! Token sampling: llama.cpp's default chain (repeat, frequency and presence penalties, top-k,
//! top-p, min-p, temperature, then a seeded draw), or plain argmax at temperature 0.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Sampling settings (defaults as llama.cpp's `common_params_sampling`).
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    /// Temperature; `<= 0` means greedy.
    pub temp: f32,
    /// Keep the `top_k` most likely tokens (`0` keeps all).
    pub top_k: usize,
    /// Keep the smallest set whose probability reaches `top_p` (`1.0` keeps all).
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely one (`0.0` keeps all).
    pub min_p: f32,
    /// Divide positive (multiply negative) logits of recently seen tokens by this (`1.0` = off).
    pub repeat_penalty: f32,
    /// Subtracted from a logit once for each time its token is in the window (OpenAI's
    /// `frequency_penalty`; `0.0` = off).
    pub frequency_penalty: f32,
    /// Subtracted from the logit of a token that is in the window at all (OpenAI's
    /// `presence_penalty`; `0.0` = off).
    pub presence_penalty: f32,
    /// How many recent tokens the repeat, frequency and presence penalties look at.
    pub repeat_last_n: usize,
    /// Seed of the random draw, so runs repeat.
    pub seed: u64,
    /// Added to the logits of these token ids before anything else (OpenAI's `logit_bias`);
    /// `f32::NEG_INFINITY` bans a token.
    pub logit_bias: Vec<(u32, f32)>,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temp: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            repeat_last_n: 64,
            seed: 0xED6E_5EED,
            logit_bias: Vec::new(),
        }
    }
}

impl SamplerConfig {
    /// Refuses settings the chain cannot use: a temperature that is not a finite number (any
    /// value `<= 0` is greedy), `top_p` or `min_p` outside 0..=1, a repeat penalty that is not a
    /// finite number above 0, frequency or presence penalties that are not finite numbers, a logit
    /// bias that is NaN or +infinity (-infinity bans a token).
    pub fn check(&self) -> Result<(), String> {
        let within = |v: f32, name: &str| {
            if v.is_finite() && (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("{name} must be a number from 0 to 1, not {v}"))
            }
        };
        if !self.temp.is_finite() {
            return Err(format!(
                "the temperature must be a finite number (0 or less: greedy), not {}",
                self.temp
            ));
        }
        within(self.top_p, "top-p")?;
        within(self.min_p, "min-p")?;
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            return Err(format!(
                "the repeat penalty must be a finite number above 0, not {}",
                self.repeat_penalty
            ));
        }
        for (v, name) in [(self.frequency_penalty, "frequency"), (self.presence_penalty, "presence")] {
            if !v.is_finite() {
                return Err(format!("the {name} penalty must be a finite number, not {v}"));
            }
        }
        match self.logit_bias.iter().find(|(_, b)| b.is_nan() || *b == f32::INFINITY) {
            Some((t, b)) => {
                Err(format!("the logit bias of token {t} must be a number or -infinity, not {b}"))
            }
            None => Ok(()),
        }
    }
}

/// A new random seed, for a caller that asked for none (llama.cpp's tools draw one then).
pub fn random_seed() -> u64 {
    rand::random()
}

/// The seed for a requested one, as llama.cpp's tools take it: none or -1 draws a new one
/// ([`random_seed`]), 0 to 2^64-1 is itself; anything else is an `Err` saying so. The CLI, the
/// server and the Python bindings all read a seed through this.
pub fn requested_seed(requested: Option<i128>) -> Result<u64, String> {
    match requested {
        None | Some(-1) => Ok(random_seed()),
        Some(v) => {
            u64::try_from(v).map_err(|_| format!("seed must be -1 (random) or 0 to {}, not {v}", u64::MAX))
        }
    }
}

/// A sampler with its own RNG and the recent-token window for the repeat penalty.
pub struct Sampler {
    cfg: SamplerConfig,
    rng: StdRng,
    recent: Vec<u32>,
    /// `recent` sorted (scratch of [`Sampler::sample`]).
    sorted: Vec<u32>,
    candidates: Vec<(u32, f32)>,
}

impl Sampler {
    /// A sampler seeded from `cfg.seed`.
    pub fn new(cfg: SamplerConfig) -> Self {
        let rng = StdRng::seed_from_u64(cfg.seed);
        Sampler { cfg, rng, recent: Vec::new(), sorted: Vec::new(), candidates: Vec::new() }
    }

    /// Settings in use.
    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Remember tokens (the prompt, or each accepted token) for the repeat penalty.
    pub fn accept(&mut self, tokens: &[u32]) {
        self.recent.extend_from_slice(tokens);
        let keep = self.cfg.repeat_last_n;
        if self.recent.len() > keep {
            self.recent.drain(..self.recent.len() - keep);
        }
    }

    /// Forget the remembered tokens (a turn's prompt, the whole conversation, replaces them: the
    /// penalties then look at the same window whether the sampler is new or kept across turns).
    pub fn forget_recent(&mut self) {
        self.recent.clear();
    }

    /// Choose the next token from `logits` (one per vocabulary entry).
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let cfg = &self.cfg;
        self.candidates.clear();
        self.candidates.extend(logits.iter().enumerate().map(|(i, &l)| (i as u32, l)));
        for &(t, bias) in &cfg.logit_bias {
            if let Some(c) = self.candidates.get_mut(t as usize) {
                c.1 += bias;
            }
        }
        if cfg.repeat_penalty != 1.0 || cfg.frequency_penalty != 0.0 || cfg.presence_penalty != 0.0 {
            // As llama.cpp's penalties sampler: the repeat penalty and the presence penalty once
            // per distinct token of the window, the frequency penalty once per occurrence.
            self.sorted.clear();
            self.sorted.extend_from_slice(&self.recent);
            self.sorted.sort_unstable();
            for run in self.sorted.chunk_by(|a, b| a == b) {
                if let Some(c) = self.candidates.get_mut(run[0] as usize) {
                    c.1 = if c.1 > 0.0 { c.1 / cfg.repeat_penalty } else { c.1 * cfg.repeat_penalty };
                    c.1 -= run.len() as f32 * cfg.frequency_penalty + cfg.presence_penalty;
                }
            }
        }
        if cfg.temp <= 0.0 {
            return argmax(&self.candidates);
        }
        let c = &mut self.candidates;
        keep_top(c, cfg.top_k);
        let probs = softmax_of(c);
        if cfg.top_p < 1.0 {
            let mut cum = 0.0;
            let mut keep = c.len();
            for (i, p) in probs.iter().enumerate() {
                cum += p;
                if cum >= cfg.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
            c.truncate(keep.max(1));
        }
        if cfg.min_p > 0.0 {
            let threshold = c[0].1 + (cfg.min_p as f64).ln() as f32;
            let keep = c.iter().take_while(|x| x.1 >= threshold).count();
            c.truncate(keep.max(1));
        }
        for x in c.iter_mut() {
            x.1 /= cfg.temp;
        }
        let probs = softmax_of(c);
        draw(c, &probs, self.rng.gen())
    }
}

/// Orders `c` (candidates in id order) by logit, highest first, ties by lower id, keeping the
/// first `k` (all when `k` is 0 or past the length). With `k` below the length only the kept
/// ones are sorted, after a selection: sorting a whole vocabulary for each token cost 3.6 ms at
/// 49,152 entries (SmolLM2) against 0.16 ms.
fn keep_top(c: &mut Vec<(u32, f32)>, k: usize) {
    let order = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if k > 0 && k < c.len() {
        c.select_nth_unstable_by(k - 1, order);
        c.truncate(k);
    }
    c.sort_unstable_by(order);
}

/// The candidate whose share of the cumulative probabilities holds `r` (in `0..1`); when rounding
/// leaves the sum short of `r`, the last candidate of non-zero probability (never a banned token,
/// of probability zero, that sorts last).
fn draw(c: &[(u32, f32)], probs: &[f64], r: f64) -> u32 {
    let mut cum = 0.0;
    for (x, p) in c.iter().zip(probs) {
        cum += p;
        if r < cum {
            return x.0;
        }
    }
    c.iter().zip(probs).rev().find(|(_, &p)| p > 0.0).map_or(c[0].0, |(x, _)| x.0)
}

/// The id of the largest logit (the first on ties).
pub fn argmax(c: &[(u32, f32)]) -> u32 {
    let mut best = c[0];
    for &x in &c[1..] {
        if x.1 > best.1 {
            best = x;
        }
    }
    best.0
}

fn softmax_of(c: &[(u32, f32)]) -> Vec<f64> {
    let max = c.iter().map(|x| x.1).fold(f32::NEG_INFINITY, f32::max) as f64;
    let e: Vec<f64> = c.iter().map(|x| (x.1 as f64 - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.into_iter().map(|v| v / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Vec<f32> {
        (0..100).map(|i| ((i * 37 % 100) as f32) / 10.0).collect()
    }

    #[test]
    fn settings_the_chain_cannot_use_are_refused() {
        let ok = SamplerConfig::default();
        assert_eq!(ok.check(), Ok(()));
        assert_eq!(SamplerConfig { temp: -1.0, ..ok.clone() }.check(), Ok(()), "greedy");
        let bad = [
            SamplerConfig { temp: f32::NAN, ..ok.clone() },
            SamplerConfig { temp: f32::INFINITY, ..ok.clone() },
            SamplerConfig { top_p: 2.0, ..ok.clone() },
            SamplerConfig { top_p: -0.1, ..ok.clone() },
            SamplerConfig { min_p: f32::NAN, ..ok.clone() },
            SamplerConfig { min_p: 2.0, ..ok.clone() },
            SamplerConfig { repeat_penalty: 0.0, ..ok.clone() },
            SamplerConfig { repeat_penalty: f32::NAN, ..ok.clone() },
            SamplerConfig { frequency_penalty: f32::NAN, ..ok.clone() },
            SamplerConfig { presence_penalty: f32::INFINITY, ..ok.clone() },
            SamplerConfig { logit_bias: vec![(3, f32::INFINITY)], ..ok.clone() },
            SamplerConfig { logit_bias: vec![(3, f32::NAN)], ..ok.clone() },
        ];
        for cfg in bad {
            assert!(cfg.check().is_err(), "{cfg:?}");
        }
        assert_eq!(SamplerConfig { logit_bias: vec![(3, f32::NEG_INFINITY)], ..ok }.check(), Ok(()));
    }

    #[test]
    fn frequency_and_presence_penalties_subtract_per_occurrence_and_once() {
        // OpenAI's formula: logit[j] - count[j] * frequency - (count[j] > 0) * presence, counted over
        // the window of recent tokens (which, as llama.cpp's, holds the prompt's too). Token 0 leads
        // token 1 by 1.0 and was seen three times; token 2 trails by 2.5.
        let l = [5.0f32, 4.0, 2.5, 0.0];
        let greedy = |frequency_penalty, presence_penalty, seen: &[u32]| {
            let cfg = SamplerConfig { temp: 0.0, frequency_penalty, presence_penalty, ..Default::default() };
            let mut s = Sampler::new(cfg);
            s.accept(seen);
            s.sample(&l)
        };
        let seen = [0, 3, 0, 0];
        assert_eq!(greedy(0.0, 0.0, &seen), 0);
        assert_eq!(greedy(0.3, 0.0, &seen), 0, "5 - 3 * 0.3 = 4.1 still leads");
        assert_eq!(greedy(0.35, 0.0, &seen), 1, "5 - 3 * 0.35 = 3.95 falls behind 4");
        assert_eq!(greedy(0.0, 0.9, &seen), 0, "presence counts once: 4.1");
        assert_eq!(greedy(0.0, 1.1, &seen), 1, "3.9");
        assert_eq!(greedy(0.2, 0.5, &seen), 1, "5 - 0.6 - 0.5 = 3.9");
        // A negative penalty favours what was seen: token 2 (seen twice) overtakes token 0 (unseen).
        assert_eq!(greedy(-1.3, 0.0, &[2, 2]), 2, "2.5 + 2.6 = 5.1");
        assert_eq!(greedy(-1.2, 0.0, &[2, 2]), 0, "2.5 + 2.4 = 4.9");
        // Outside the window (repeat_last_n) nothing is penalised.
        let cfg = SamplerConfig { temp: 0.0, presence_penalty: 5.0, repeat_last_n: 2, ..Default::default() };
        let mut s = Sampler::new(cfg);
        s.accept(&[0, 3, 3]);
        assert_eq!(s.sample(&l), 0);
    }

    #[test]
    fn a_requested_seed_is_itself_and_none_or_minus_one_draw_one() {
        assert_eq!(requested_seed(Some(0)), Ok(0));
        assert_eq!(requested_seed(Some(u64::MAX as i128)), Ok(u64::MAX));
        for bad in [-2, u64::MAX as i128 + 1] {
            assert!(requested_seed(Some(bad)).is_err_and(|e| e.contains("-1 (random)")), "{bad}");
        }
        // Draws: eight of them are not all the same.
        let drawn: std::collections::HashSet<u64> =
            [None, Some(-1)].into_iter().cycle().take(8).map(|s| requested_seed(s).unwrap()).collect();
        assert!(drawn.len() > 1);
    }

    #[test]
    fn keeping_the_top_k_equals_a_full_stable_sort_cut_to_k() {
        // Few distinct logits (many ties), -inf (banned) and both zeros, at odd lengths.
        let mut rng = StdRng::seed_from_u64(7);
        let levels = [f32::NEG_INFINITY, -1.5, -0.0, 0.0, 0.25, 2.0, 3.0];
        for len in [1usize, 2, 3, 17, 100, 513] {
            let logits: Vec<f32> = (0..len).map(|_| levels[rng.gen_range(0..levels.len())]).collect();
            for k in [0, 1, 2, 7, 40, len.saturating_sub(1), len, len + 5] {
                let mut want: Vec<(u32, f32)> =
                    logits.iter().enumerate().map(|(i, &l)| (i as u32, l)).collect();
                want.sort_by(|a, b| b.1.total_cmp(&a.1));
                if k > 0 && k < len {
                    want.truncate(k);
                }
                let mut got: Vec<(u32, f32)> =
                    logits.iter().enumerate().map(|(i, &l)| (i as u32, l)).collect();
                keep_top(&mut got, k);
                let bits = |v: &[(u32, f32)]| v.iter().map(|x| (x.0, x.1.to_bits())).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "len {len}, k {k}");
            }
        }
    }

    #[test]
    fn greedy_is_argmax() {
        let mut s = Sampler::new(SamplerConfig { temp: 0.0, ..Default::default() });
        let l = logits();
        let best = l.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        assert_eq!(s.sample(&l) as usize, best);
    }

    #[test]
    fn same_seed_same_draws_and_top_k_respected() {
        let cfg = SamplerConfig { temp: 1.5, top_k: 5, top_p: 1.0, min_p: 0.0, ..Default::default() };
        let l = logits();
        let mut sorted: Vec<usize> = (0..l.len()).collect();
        sorted.sort_by(|&a, &b| l[b].total_cmp(&l[a]));
        let top5 = &sorted[..5];
        let (mut a, mut b) = (Sampler::new(cfg.clone()), Sampler::new(cfg));
        let draws: Vec<u32> = (0..200).map(|_| a.sample(&l)).collect();
        assert!(draws.iter().all(|t| top5.contains(&(*t as usize))));
        assert_eq!(draws, (0..200).map(|_| b.sample(&l)).collect::<Vec<_>>());
        assert!(draws.iter().collect::<std::collections::HashSet<_>>().len() > 1);
    }

    #[test]
    fn min_p_and_top_p_cut_the_tail() {
        // One dominant token: min-p 0.5 must leave only it.
        let mut l = vec![0.0f32; 50];
        l[7] = 10.0;
        let mut s =
            Sampler::new(SamplerConfig { temp: 1.0, top_k: 0, top_p: 1.0, min_p: 0.5, ..Default::default() });
        assert!((0..100).all(|_| s.sample(&l) == 7));
        let mut s =
            Sampler::new(SamplerConfig { temp: 1.0, top_k: 0, top_p: 0.5, min_p: 0.0, ..Default::default() });
        assert!((0..100).all(|_| s.sample(&l) == 7));
    }

    #[test]
    fn repeat_penalty_changes_greedy_choice() {
        let mut l = vec![0.0f32; 10];
        l[3] = 2.0;
        l[4] = 1.5;
        let mut s = Sampler::new(SamplerConfig { temp: 0.0, repeat_penalty: 2.0, ..Default::default() });
        assert_eq!(s.sample(&l), 3);
        s.accept(&[3]);
        assert_eq!(s.sample(&l), 4);
    }

    #[test]
    fn repeat_penalty_applies_once_per_distinct_token() {
        // As llama.cpp: a token seen twice in the window has its logit halved once (2.0 -> 1.0, still
        // above 0.8), not twice (0.5).
        let mut l = vec![0.0f32; 10];
        l[3] = 2.0;
        l[4] = 0.8;
        let mut s = Sampler::new(SamplerConfig { temp: 0.0, repeat_penalty: 2.0, ..Default::default() });
        s.accept(&[3, 3, 3]);
        assert_eq!(s.sample(&l), 3);
    }

    #[test]
    fn a_draw_past_the_rounded_sum_takes_no_banned_token() {
        let c = [(5, 1.0), (6, 0.5), (7, f32::NEG_INFINITY)];
        let probs = softmax_of(&c);
        assert_eq!(probs[2], 0.0);
        assert_eq!(draw(&c, &probs, 0.0), 5);
        // A draw at or past the sum (rounding can leave it below 1) takes the last possible token.
        assert_eq!(draw(&c, &probs, 1.0), 6);
    }

    #[test]
    fn logit_bias_bans_and_favours_tokens() {
        let l = logits();
        let best = Sampler::new(SamplerConfig { temp: 0.0, ..Default::default() }).sample(&l);
        let ban =
            SamplerConfig { temp: 0.0, logit_bias: vec![(best, f32::NEG_INFINITY)], ..Default::default() };
        let second = Sampler::new(ban).sample(&l);
        assert_ne!(second, best);
        let ban_all_but_one: Vec<(u32, f32)> =
            (0..l.len() as u32).filter(|&t| t != 11).map(|t| (t, f32::NEG_INFINITY)).collect();
        let mut s =
            Sampler::new(SamplerConfig { temp: 1.0, logit_bias: ban_all_but_one, ..Default::default() });
        assert!((0..50).all(|_| s.sample(&l) == 11));
    }
}
