//! Parsers of the count arguments several commands share, so each refuses the same values with
//! the same words before anything is loaded.

/// The most tokens a count of prompt, generated or cached tokens may name: the largest context a
/// session takes.
pub const MAX_TOKENS: usize = edgevl_runtime::MAX_CTX;

/// A compute thread count, 1..=[`edgevl_runtime::MAX_THREADS`].
pub fn threads(s: &str) -> Result<usize, String> {
    edgevl_runtime::check_threads(s.parse().map_err(|e| format!("{e}"))?)
}

/// A token count, 0..=[`MAX_TOKENS`].
pub fn tokens(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("{e}"))?;
    if n > MAX_TOKENS {
        return Err(format!("at most {MAX_TOKENS} tokens (the largest context), not {n}"));
    }
    Ok(n)
}

/// A context size, 1..=[`MAX_TOKENS`].
pub fn context(s: &str) -> Result<usize, String> {
    match tokens(s)? {
        0 => Err("the context must hold at least 1 token".into()),
        n => Ok(n),
    }
}
