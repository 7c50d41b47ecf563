//! The choices a caller makes before planning: strategy, row limits, and what to do with a
//! sequence that cannot fit a row. Parsing from names lives here so Rust and Python accept the
//! same spellings.

use crate::error::{Error, Result};

/// Largest `max_length` accepted. Planning keeps one slot per possible remaining capacity, and
/// `cu_seqlens` is int32, so a bound is needed; 2^24 tokens is far past any context in use.
pub const MAX_MAX_LENGTH: usize = 1 << 24;

/// How sequences are assigned to rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Best-fit decreasing: longest first, each into the fullest row that still has room.
    BestFitDecreasing,
    /// First-fit decreasing: longest first, each into the earliest row that has room.
    FirstFitDecreasing,
    /// Next-fit in input order: a row is closed as soon as the next sequence does not fit.
    Sequential,
    /// Concatenate everything in input order and cut every `max_length` tokens.
    Wrapped,
}

impl Strategy {
    pub const NAMES: &'static str = "'bfd', 'ffd', 'sequential', 'wrapped'";

    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "bfd" => Ok(Self::BestFitDecreasing),
            "ffd" => Ok(Self::FirstFitDecreasing),
            "sequential" => Ok(Self::Sequential),
            "wrapped" => Ok(Self::Wrapped),
            other => Err(Error::InvalidOption {
                name: "strategy",
                message: format!("unknown strategy '{other}'; expected one of {}", Self::NAMES),
            }),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::BestFitDecreasing => "bfd",
            Self::FirstFitDecreasing => "ffd",
            Self::Sequential => "sequential",
            Self::Wrapped => "wrapped",
        }
    }
}

/// Which end of an overlong sequence survives truncation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    Head,
    Tail,
}

impl Keep {
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "head" => Ok(Self::Head),
            "tail" => Ok(Self::Tail),
            other => Err(Error::InvalidOption {
                name: "truncate_keep",
                message: format!("unknown side '{other}'; expected 'head' or 'tail'"),
            }),
        }
    }
}

/// What happens to a sequence longer than `max_length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlong {
    /// Refuse the whole input, naming the sequence (the default: nothing is lost silently).
    Error,
    /// Leave it out; it is reported as dropped with its length.
    Drop,
    /// Keep `max_length` tokens from one end; the rest is reported as truncated.
    Truncate(Keep),
    /// Cut it into `max_length` chunks, each packed as its own segment.
    Split,
}

impl Overlong {
    pub fn from_name(name: &str, keep: Keep) -> Result<Self> {
        match name {
            "error" => Ok(Self::Error),
            "drop" => Ok(Self::Drop),
            "truncate" => Ok(Self::Truncate(keep)),
            "split" => Ok(Self::Split),
            other => Err(Error::InvalidOption {
                name: "overlong",
                message: format!(
                    "unknown policy '{other}'; expected 'error', 'drop', 'truncate' or 'split'"
                ),
            }),
        }
    }
}

/// Everything planning needs besides the lengths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOptions {
    pub max_length: usize,
    pub strategy: Strategy,
    /// At most this many packed sequences in one row (`None`: no limit).
    pub max_seqs_per_row: Option<usize>,
    pub overlong: Overlong,
    /// Append all-padding rows until the row count is a multiple of this (1: never).
    pub pad_rows_to_multiple_of: usize,
    /// Shuffle the order of rows with this seed (`None`: rows stay in planning order).
    pub seed: Option<u64>,
}

impl PlanOptions {
    pub fn new(max_length: usize) -> Self {
        Self {
            max_length,
            strategy: Strategy::BestFitDecreasing,
            max_seqs_per_row: None,
            overlong: Overlong::Error,
            pad_rows_to_multiple_of: 1,
            seed: None,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.max_length == 0 || self.max_length > MAX_MAX_LENGTH {
            return Err(Error::InvalidOption {
                name: "max_length",
                message: format!(
                    "must be between 1 and {MAX_MAX_LENGTH}, got {}",
                    self.max_length
                ),
            });
        }
        if self.max_seqs_per_row == Some(0) {
            return Err(Error::InvalidOption {
                name: "max_seqs_per_row",
                message: "must be at least 1 (or None for no limit), got 0".into(),
            });
        }
        if self.pad_rows_to_multiple_of == 0 {
            return Err(Error::InvalidOption {
                name: "pad_rows_to_multiple_of",
                message: "must be at least 1, got 0".into(),
            });
        }
        Ok(())
    }
}
