//! The option vocabulary both halves share, parsed and checked once: what to do with input
//! longer than `max_length` (`overlong` and `truncate_keep`), and the helpers that turn the
//! plain values a caller passes (integers, names) into typed options with one error message
//! per mistake, naming the option.

use crate::error::{Error, Result};
use std::str::FromStr;

/// Largest `max_length` accepted. Planning keeps one slot per possible remaining capacity, and
/// `cu_seqlens` is int32, so a bound is needed; 2^24 tokens is far past any context in use.
pub const MAX_MAX_LENGTH: usize = 1 << 24;

/// Which part of an over-long sequence (or conversation turn) a token-level cut keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The start.
    Head,
    /// The end.
    Tail,
    /// Both ends; the middle is removed (conversations only: a token sequence stays one run).
    Ends,
}

impl FromStr for Keep {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "head" => Ok(Self::Head),
            "tail" => Ok(Self::Tail),
            "ends" => Ok(Self::Ends),
            other => {
                Err(invalid("truncate_keep", format!("unknown side '{other}'; expected 'head', 'tail' or 'ends'")))
            }
        }
    }
}

/// What happens to input longer than `max_length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlong {
    /// Refuse the whole input, naming the sequence or record.
    Error,
    /// Leave it out; it is reported as dropped with its length.
    Drop,
    /// Keep `max_length` tokens: for token sequences from the `Keep` end; for conversations
    /// whole old turns go first, and a turn still too long alone is cut on the `Keep` side.
    Truncate(Keep),
    /// Token sequences: cut into `max_length` chunks, each its own segment. Conversations:
    /// windows of whole turns, each with the system prompt, so every answer is trained once.
    Split,
}

impl Overlong {
    pub const NAMES: &'static str = "'error', 'drop', 'truncate' or 'split'";

    /// The policy named `policy`, with `keep` for `truncate`.
    pub fn parse(policy: &str, keep: &str) -> Result<Self> {
        let keep: Keep = keep.parse()?;
        match policy {
            "error" => Ok(Self::Error),
            "drop" => Ok(Self::Drop),
            "truncate" => Ok(Self::Truncate(keep)),
            "split" => Ok(Self::Split),
            other => Err(invalid("overlong", format!("unknown policy '{other}'; expected {}", Self::NAMES))),
        }
    }
}

/// An `InvalidOption` error.
pub(crate) fn invalid(name: &'static str, message: impl Into<String>) -> Error {
    Error::InvalidOption { name, message: message.into() }
}

/// An integer option that must lie in `minimum..=maximum`.
pub(crate) fn bounded(name: &'static str, value: i64, minimum: usize, maximum: usize) -> Result<usize> {
    usize::try_from(value)
        .ok()
        .filter(|v| (minimum..=maximum).contains(v))
        .ok_or_else(|| invalid(name, format!("must be between {minimum} and {maximum}, got {value}")))
}

/// An integer option that must be at least `minimum`.
pub(crate) fn at_least(name: &'static str, value: i64, minimum: usize) -> Result<usize> {
    bounded(name, value, minimum, usize::MAX)
        .map_err(|_| invalid(name, format!("must be at least {minimum}, got {value}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_mistakes_name_the_option() {
        assert_eq!(Overlong::parse("truncate", "tail").unwrap(), Overlong::Truncate(Keep::Tail));
        assert_eq!(Overlong::parse("split", "head").unwrap(), Overlong::Split);
        let error = Overlong::parse("cut", "head").unwrap_err().to_string();
        assert_eq!(error, "option overlong: unknown policy 'cut'; expected 'error', 'drop', 'truncate' or 'split'");
        assert!(Overlong::parse("drop", "middle").unwrap_err().to_string().starts_with("option truncate_keep:"));
        assert_eq!(
            bounded("max_length", 0, 1, 8).unwrap_err().to_string(),
            "option max_length: must be between 1 and 8, got 0"
        );
        assert_eq!(at_least("windows", -3, 1).unwrap_err().to_string(), "option windows: must be at least 1, got -3");
    }
}
