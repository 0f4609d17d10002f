//! Pre-tokenization: splitting text into words before byte-level BPE.
//!
//! llama.cpp applies a list of regular expressions in turn, each one splitting every piece the
//! previous ones produced (matches and the text between them both become pieces). For the
//! common GPT-2 / LLaMA-3 / Qwen2 expressions it uses hand-written matchers instead of a regex
//! engine, and those matchers differ from a true regex in corner cases; the other expressions
//! it runs through `std::regex` on text whose non-ASCII code points are collapsed to one byte
//! per Unicode category. Every rule here reproduces that exact behaviour, so no regex engine
//! (with its own Unicode tables and semantics) is involved.

use crate::unicode::{flags_of, Flags, NUMBER, PUNCTUATION};

/// One splitting step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rule {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)` (llama.cpp's
    /// hand-written GPT-2 matcher).
    Gpt2,
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max_digits}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    /// (LLaMA-3 with `max_digits` 3, Qwen2 with 1).
    Llama3 {
        /// Longest run of digits kept together.
        max_digits: usize,
    },
    /// One code point of the class: `\p{N}`.
    Single(ClassSet),
    /// A maximal run of the class: `\p{N}+`, `[\p{P}\$\+<=>\^~\|]+`.
    Run(ClassSet),
    /// `[0-9][0-9][0-9]`.
    AsciiDigitTriples,
}

/// A character class as llama.cpp's collapsed `std::regex` sees it: ASCII code points are
/// matched literally, any other code point by its single Unicode category (never when it is
/// whitespace, which collapses to `\v`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClassSet {
    ascii: u128,
    category: u8,
}

const fn ascii_mask(chars: &[u8]) -> u128 {
    let mut m = 0u128;
    let mut i = 0;
    while i < chars.len() {
        m |= 1u128 << chars[i];
        i += 1;
    }
    m
}

impl ClassSet {
    /// `\p{N}`: ASCII `0-9` and non-ASCII numbers.
    pub(crate) const NUMBER: ClassSet = ClassSet { ascii: ascii_mask(b"0123456789"), category: NUMBER };
    /// `[\p{P}\$\+<=>\^~\|]`: llama.cpp's ASCII list for `\p{P}` plus the listed symbols.
    pub(crate) const PUNCT_AND_SYMBOLS: ClassSet =
        ClassSet { ascii: ascii_mask(b"!\"#%&'()*,-./:;?@[\\]_{}$+<=>^~|"), category: PUNCTUATION };
    fn contains(self, c: char) -> bool {
        let cp = u32::from(c);
        if cp < 128 {
            return self.ascii & (1u128 << cp) != 0;
        }
        let f = flags_of(cp);
        !f.is_whitespace() && f.class() == self.category
    }
}

/// Splits `text` into words (byte ranges) by applying `rules` in order.
pub(crate) fn split(text: &str, rules: &[Rule]) -> Vec<std::ops::Range<usize>> {
    let chars: Vec<char> = text.chars().collect();
    let mut pieces = vec![chars.len()];
    for &rule in rules {
        let mut next = Vec::with_capacity(pieces.len());
        let mut start = 0usize;
        for &len in &pieces {
            let seg = Segment { chars: &chars, start, end: start + len };
            match rule {
                Rule::Gpt2 => seg.split_gpt2(&mut next),
                Rule::Llama3 { max_digits } => seg.split_llama3(max_digits, &mut next),
                Rule::Single(set) => seg.split_matches(&mut next, |p| set.contains(chars[p]).then_some(1)),
                Rule::Run(set) => seg.split_matches(&mut next, |p| {
                    let n = chars[p..seg.end].iter().take_while(|&&c| set.contains(c)).count();
                    (n > 0).then_some(n)
                }),
                Rule::AsciiDigitTriples => seg.split_matches(&mut next, |p| {
                    let three = chars.get(p..p + 3).filter(|_| p + 3 <= seg.end)?;
                    three.iter().all(|c| c.is_ascii_digit()).then_some(3)
                }),
            }
            start += len;
        }
        pieces = next;
    }
    // Code-point lengths -> byte ranges.
    let mut out = Vec::with_capacity(pieces.len());
    let mut byte = 0usize;
    let mut cp = 0usize;
    for len in pieces {
        let from = byte;
        for c in &chars[cp..cp + len] {
            byte += c.len_utf8();
        }
        cp += len;
        out.push(from..byte);
    }
    out
}

/// One piece being split further; positions are indices into `chars`.
struct Segment<'a> {
    chars: &'a [char],
    start: usize,
    end: usize,
}

impl Segment<'_> {
    /// The code point at `pos`, or `None` outside the segment.
    fn cpt(&self, pos: usize) -> Option<char> {
        (self.start <= pos && pos < self.end).then(|| self.chars[pos])
    }

    /// The flags at `pos`, [`Flags::NONE`] outside the segment.
    fn flags(&self, pos: usize) -> Flags {
        self.cpt(pos).map_or(Flags::NONE, |c| flags_of(u32::from(c)))
    }

    /// Regex-iterator semantics: scan left to right; at each position try `matcher`; matches
    /// and the unmatched gaps between them become pieces.
    fn split_matches(&self, out: &mut Vec<usize>, matcher: impl Fn(usize) -> Option<usize>) {
        let mut gap_start = self.start;
        let mut pos = self.start;
        while pos < self.end {
            match matcher(pos) {
                Some(n) => {
                    if pos > gap_start {
                        out.push(pos - gap_start);
                    }
                    out.push(n);
                    pos += n;
                    gap_start = pos;
                }
                None => pos += 1,
            }
        }
        if self.end > gap_start {
            out.push(self.end - gap_start);
        }
    }

    /// Length of a contraction (`'s`, `'re`, ...) at `pos`, case-insensitively or not.
    fn contraction(&self, pos: usize, case_insensitive: bool) -> Option<usize> {
        if self.cpt(pos) != Some('\'') || pos + 1 >= self.end {
            return None;
        }
        let low = |c: Option<char>| c.map(|c| if case_insensitive { c.to_ascii_lowercase() } else { c });
        let next = low(self.cpt(pos + 1));
        if matches!(next, Some('s' | 't' | 'm' | 'd')) {
            return Some(2);
        }
        if pos + 2 < self.end {
            let next2 = low(self.cpt(pos + 2));
            if matches!(
                (next, next2),
                (Some('r'), Some('e')) | (Some('v'), Some('e')) | (Some('l'), Some('l'))
            ) {
                return Some(3);
            }
        }
        None
    }

    /// Number of whitespace code points from `pos`.
    fn whitespace_run(&self, pos: usize) -> usize {
        let mut n = 0;
        while self.flags(pos + n).is_whitespace() {
            n += 1;
        }
        n
    }

    fn split_gpt2(&self, out: &mut Vec<usize>) {
        let mut tokens = Tokens::new(self.start, out);
        let mut pos = self.start;
        while pos < self.end {
            let cpt = self.cpt(pos);
            let flags = self.flags(pos);
            if let Some(n) = self.contraction(pos, false) {
                pos = tokens.add(pos + n);
                continue;
            }
            let space = cpt == Some(' ');
            let mut f2 = if space { self.flags(pos + 1) } else { flags };
            // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`
            type Pred = fn(Flags) -> bool;
            let classes: [Pred; 3] = [
                |f| f.is_letter(),
                |f| f.is_number(),
                |f| !(f.is_whitespace() || f.is_letter() || f.is_number()) && f.is_defined(),
            ];
            if let Some(pred) = classes.iter().find(|p| p(f2)) {
                pos += usize::from(space);
                while pred(f2) {
                    pos += 1;
                    f2 = self.flags(pos);
                }
                pos = tokens.add(pos);
                continue;
            }
            let n_ws = self.whitespace_run(pos);
            // `\s+(?!\S)`: leave the last space for the next word.
            if n_ws > 1 && self.cpt(pos + n_ws).is_some() {
                pos = tokens.add(pos + n_ws - 1);
                continue;
            }
            if n_ws > 0 {
                pos = tokens.add(pos + n_ws);
                continue;
            }
            pos = tokens.add(pos + 1);
        }
    }

    fn split_llama3(&self, max_digits: usize, out: &mut Vec<usize>) {
        let is_crlf = |c: Option<char>| matches!(c, Some('\r' | '\n'));
        let mut tokens = Tokens::new(self.start, out);
        let mut pos = self.start;
        while pos < self.end {
            let cpt = self.cpt(pos);
            let flags = self.flags(pos);
            if let Some(n) = self.contraction(pos, true) {
                pos = tokens.add(pos + n);
                continue;
            }
            // `[^\r\n\p{L}\p{N}]?\p{L}+`
            if !(is_crlf(cpt) || flags.is_number()) && (flags.is_letter() || self.flags(pos + 1).is_letter())
            {
                pos += 1;
                while self.flags(pos).is_letter() {
                    pos += 1;
                }
                pos = tokens.add(pos);
                continue;
            }
            // `\p{N}{1,max_digits}`
            if flags.is_number() {
                let mut ini = pos;
                while self.flags(pos).is_number() {
                    pos += 1;
                    if pos - ini >= max_digits {
                        tokens.add(pos);
                        ini = pos;
                    }
                }
                tokens.add(pos);
                continue;
            }
            // ` ?[^\s\p{L}\p{N}]+[\r\n]*` (note: the entry test looks at `flags`, not `f2`).
            let space = cpt == Some(' ');
            let mut f2 = if space { self.flags(pos + 1) } else { flags };
            let other = |f: Flags| !(f.is_whitespace() || f.is_letter() || f.is_number());
            if other(f2) && flags.is_defined() {
                pos += usize::from(space);
                while other(f2) && f2.is_defined() {
                    pos += 1;
                    f2 = self.flags(pos);
                }
                while is_crlf(self.cpt(pos)) {
                    pos += 1;
                }
                pos = tokens.add(pos);
                continue;
            }
            let n_ws = self.whitespace_run(pos);
            let last_crlf_end = (0..n_ws).rev().find(|&i| is_crlf(self.cpt(pos + i))).map(|i| pos + i + 1);
            // `\s*[\r\n]+`
            if let Some(end) = last_crlf_end {
                pos = tokens.add(end);
                continue;
            }
            if n_ws > 1 && self.cpt(pos + n_ws).is_some() {
                pos = tokens.add(pos + n_ws - 1);
                continue;
            }
            if n_ws > 0 {
                pos = tokens.add(pos + n_ws);
                continue;
            }
            pos = tokens.add(pos + 1);
        }
    }
}

/// Emits piece lengths for the hand-written matchers.
struct Tokens<'a> {
    prev_end: usize,
    out: &'a mut Vec<usize>,
}

impl<'a> Tokens<'a> {
    fn new(start: usize, out: &'a mut Vec<usize>) -> Self {
        Tokens { prev_end: start, out }
    }

    /// Ends the current piece at `end` (a no-op for an empty piece) and returns `end`.
    fn add(&mut self, end: usize) -> usize {
        if end > self.prev_end {
            self.out.push(end - self.prev_end);
        }
        self.prev_end = end;
        end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words<'a>(text: &'a str, rules: &[Rule]) -> Vec<&'a str> {
        split(text, rules).into_iter().map(|r| &text[r]).collect()
    }

    #[test]
    fn gpt2_splits_like_the_gpt2_regex() {
        // Reference: the GPT-2 regex applied by Python's `regex` module.
        assert_eq!(
            words("Hello world's  end!!\n 42", &[Rule::Gpt2]),
            ["Hello", " world", "'s", " ", " end", "!!", "\n", " 42"]
        );
    }

    #[test]
    fn llama3_groups_digits_by_three() {
        assert_eq!(words("1234567 ab", &[Rule::Llama3 { max_digits: 3 }]), ["123", "456", "7", " ab"]);
        assert_eq!(
            words("12 x\n\n  y", &[Rule::Llama3 { max_digits: 1 }]),
            ["1", "2", " x", "\n\n", " ", " y"]
        );
    }

    #[test]
    fn pieces_cover_the_text() {
        let text = "a\u{3000}b  \t\r\n ½ x'LL 'Re 中文😀 ...  ";
        let rules = [
            Rule::Run(ClassSet::PUNCT_AND_SYMBOLS),
            Rule::Gpt2,
            Rule::Run(ClassSet::NUMBER),
            Rule::AsciiDigitTriples,
        ];
        let pieces = split(text, &rules);
        let joined: String = pieces.iter().map(|r| &text[r.clone()]).collect();
        assert_eq!(joined, text);
        assert!(pieces.iter().all(|r| !r.is_empty()));
    }
}
