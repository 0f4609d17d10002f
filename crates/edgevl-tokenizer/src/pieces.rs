//! The bytes each token stands for (llama.cpp's `token_to_piece` with `special = true`).

use crate::unicode::ByteLevel;
use crate::vocab::{attr, ModelKind, Vocab};

/// Computes the piece of every token.
pub(crate) fn build(vocab: &Vocab) -> Vec<Box<[u8]>> {
    let byte_level = ByteLevel::new();
    vocab.tokens.iter().map(|t| piece(vocab.kind, &t.text, t.attr, &byte_level).into_boxed_slice()).collect()
}

fn piece(kind: ModelKind, text: &str, a: u16, byte_level: &ByteLevel) -> Vec<u8> {
    if a & (attr::UNKNOWN | attr::CONTROL | attr::USER_DEFINED) != 0 {
        return text.as_bytes().to_vec();
    }
    if a & attr::NORMAL != 0 {
        return match kind {
            ModelKind::Spm => text.replace('\u{2581}', " ").into_bytes(),
            ModelKind::Bpe => decode_byte_level(text, byte_level),
        };
    }
    if a & attr::BYTE != 0 {
        return vec![byte_token_value(text)];
    }
    // Unused and undefined tokens render as nothing.
    Vec::new()
}

/// Maps each character of a byte-level token back to its byte; a character outside the
/// 256-character alphabet is rendered as llama.cpp does: `[UNK_BYTE_0x<utf8 hex><text>]`.
fn decode_byte_level(text: &str, byte_level: &ByteLevel) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match byte_level.char_to_byte(c) {
            Some(b) => out.push(b),
            None => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(b"[UNK_BYTE_0x");
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                out.extend_from_slice(text.as_bytes());
                out.push(b']');
            }
        }
    }
    out
}

/// The value of a byte token `<0xXX>`: like llama.cpp, the (up to) two characters after
/// `<0x` parsed as hexadecimal, stopping at the first non-hex character.
pub(crate) fn byte_token_value(text: &str) -> u8 {
    let digits = text.get(3..).unwrap_or("");
    let mut v = 0u8;
    for c in digits.chars().take(2) {
        match c.to_digit(16) {
            Some(d) => v = v.wrapping_mul(16).wrapping_add(d as u8),
            None => break,
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_tokens_and_byte_level_text() {
        assert_eq!(byte_token_value("<0x0A>"), 0x0A);
        assert_eq!(byte_token_value("<0xff>"), 0xFF);
        assert_eq!(byte_token_value("<0x"), 0);
        let bl = ByteLevel::new();
        assert_eq!(decode_byte_level("ĠhelloĊ", &bl), b" hello\n");
        assert_eq!(decode_byte_level("a€", &bl), b"a[UNK_BYTE_0xe282aca\xe2\x82\xac]".to_vec());
    }
}
