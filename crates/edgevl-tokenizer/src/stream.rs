//! Incremental decoding for streaming output.

use crate::Tokenizer;

/// Turns tokens into text one at a time, emitting only complete UTF-8 characters.
///
/// A token may end in the middle of a multi-byte character (byte-level BPE and `<0xXX>`
/// byte tokens split emoji and CJK characters); those bytes are held back until the
/// character is complete. Bytes that can never form a valid character are emitted as
/// U+FFFD.
#[derive(Debug, Default, Clone)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the piece of `id` (control tokens render as nothing) and returns the text that
    /// is now complete (possibly empty).
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> String {
        self.push_bytes(tokenizer.token_bytes(id))
    }

    /// Adds raw bytes and returns the text that is now complete.
    pub fn push_bytes(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        // Invalid sequence: replace it and go on.
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = after.get(n..).unwrap_or(&[]);
                        }
                        // Incomplete character at the end: keep it for later.
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        out
    }

    /// Returns whatever is still held back (an incomplete character becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_byte_split_reassembles_the_text() {
        let text = "héllo 世界 😀 ok";
        let bytes = text.as_bytes();
        for cut1 in 0..bytes.len() {
            for cut2 in cut1..bytes.len() {
                let mut d = StreamDecoder::new();
                let mut s = d.push_bytes(&bytes[..cut1]);
                s += &d.push_bytes(&bytes[cut1..cut2]);
                s += &d.push_bytes(&bytes[cut2..]);
                s += &d.finish();
                assert_eq!(s, text);
            }
        }
    }

    #[test]
    fn partial_character_is_held_back() {
        let mut d = StreamDecoder::new();
        assert_eq!(d.push_bytes(&[0xF0, 0x9F]), "");
        assert_eq!(d.push_bytes(&[0x98, 0x80, b'!']), "😀!");
        assert_eq!(d.push_bytes(&[0xFF, b'a']), "\u{FFFD}a");
        assert_eq!(d.push_bytes(&[0xE4]), "");
        assert_eq!(d.finish(), "\u{FFFD}");
    }
}
