//! The choices a caller makes before packing: strategy, row limits, what to do with a
//! sequence that cannot fit a row, and how rows are written. Each options struct is read
//! from plain values (a Python dict through serde, or Rust code) and checked here, once.

use crate::error::{Error, Result};
use crate::options::{at_least, bounded, invalid, Keep, Overlong, MAX_MAX_LENGTH};
use serde::Deserialize;
use std::str::FromStr;

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

    pub fn name(self) -> &'static str {
        match self {
            Self::BestFitDecreasing => "bfd",
            Self::FirstFitDecreasing => "ffd",
            Self::Sequential => "sequential",
            Self::Wrapped => "wrapped",
        }
    }
}

impl FromStr for Strategy {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "bfd" => Ok(Self::BestFitDecreasing),
            "ffd" => Ok(Self::FirstFitDecreasing),
            "sequential" => Ok(Self::Sequential),
            "wrapped" => Ok(Self::Wrapped),
            other => Err(invalid("strategy", format!("unknown strategy '{other}'; expected one of {}", Self::NAMES))),
        }
    }
}

/// Everything planning needs besides the lengths.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawPlanOptions")]
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
        bounded("max_length", i64::try_from(self.max_length).unwrap_or(i64::MAX), 1, MAX_MAX_LENGTH)?;
        if self.max_seqs_per_row == Some(0) {
            return Err(invalid("max_seqs_per_row", "must be at least 1 (or None for no limit), got 0"));
        }
        if self.pad_rows_to_multiple_of == 0 {
            return Err(invalid("pad_rows_to_multiple_of", "must be at least 1, got 0"));
        }
        if self.overlong == Overlong::Truncate(Keep::Ends) {
            return Err(invalid(
                "truncate_keep",
                "'ends' keeps two separate runs of a sequence, which would pack as one; use 'head' or \
                 'tail' for token sequences ('ends' is for conversation turns)",
            ));
        }
        Ok(())
    }
}

/// Planning options as a caller writes them: integers and names.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlanOptions {
    max_length: i64,
    strategy: String,
    max_seqs_per_row: Option<i64>,
    overlong: String,
    truncate_keep: String,
    pad_rows_to_multiple_of: i64,
    seed: Option<u64>,
}

impl TryFrom<RawPlanOptions> for PlanOptions {
    type Error = Error;

    fn try_from(raw: RawPlanOptions) -> Result<Self> {
        let options = Self {
            max_length: bounded("max_length", raw.max_length, 1, MAX_MAX_LENGTH)?,
            strategy: raw.strategy.parse()?,
            max_seqs_per_row: raw.max_seqs_per_row.map(|n| at_least("max_seqs_per_row", n, 1)).transpose()?,
            overlong: Overlong::parse(&raw.overlong, &raw.truncate_keep)?,
            pad_rows_to_multiple_of: at_least("pad_rows_to_multiple_of", raw.pad_rows_to_multiple_of, 1)?,
            seed: raw.seed,
        };
        options.validate()?;
        Ok(options)
    }
}

/// How `loss_weights` spreads weight over trained tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossWeighting {
    /// 1 for every trained token: a packed weighted mean equals the unpacked token mean.
    Token,
    /// 1 / (trained tokens of its sequence): a packed weighted sum over sequences equals the
    /// unpacked mean of per-sequence means.
    Sequence,
}

impl FromStr for LossWeighting {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "token" => Ok(Self::Token),
            "sequence" => Ok(Self::Sequence),
            other => Err(invalid(
                "loss_weights",
                format!("unknown weighting '{other}'; expected 'token', 'sequence' or None"),
            )),
        }
    }
}

/// The integer type of `input_ids` in the output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IdDtype {
    #[default]
    Int64,
    Int32,
}

impl FromStr for IdDtype {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "int64" => Ok(Self::Int64),
            "int32" => Ok(Self::Int32),
            other => Err(invalid("dtype", format!("unknown dtype '{other}'; expected 'int64' or 'int32'"))),
        }
    }
}

/// How rows are written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(try_from = "RawLayoutOptions")]
pub struct LayoutOptions {
    /// Token id written on padding.
    pub pad_id: i64,
    pub loss_weights: Option<LossWeighting>,
    pub dtype: IdDtype,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLayoutOptions {
    pad_id: i64,
    loss_weights: Option<String>,
    dtype: String,
}

impl TryFrom<RawLayoutOptions> for LayoutOptions {
    type Error = Error;

    fn try_from(raw: RawLayoutOptions) -> Result<Self> {
        Ok(Self {
            pad_id: raw.pad_id,
            loss_weights: raw.loss_weights.as_deref().map(str::parse).transpose()?,
            dtype: raw.dtype.parse()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(max_length: i64, overlong: &str, keep: &str) -> RawPlanOptions {
        RawPlanOptions {
            max_length,
            strategy: "bfd".into(),
            max_seqs_per_row: None,
            overlong: overlong.into(),
            truncate_keep: keep.into(),
            pad_rows_to_multiple_of: 1,
            seed: None,
        }
    }

    #[test]
    fn plain_values_become_typed_options_or_one_clear_error() {
        let options = PlanOptions::try_from(raw(8, "truncate", "tail")).unwrap();
        assert_eq!(options.overlong, Overlong::Truncate(Keep::Tail));
        let error = PlanOptions::try_from(raw(0, "error", "head")).unwrap_err().to_string();
        assert_eq!(error, format!("option max_length: must be between 1 and {MAX_MAX_LENGTH}, got 0"));
        let error = PlanOptions::try_from(raw(8, "truncate", "ends")).unwrap_err().to_string();
        assert!(error.starts_with("option truncate_keep: 'ends'"), "{error}");
        let error = "fast".parse::<Strategy>().unwrap_err().to_string();
        assert_eq!(
            error,
            "option strategy: unknown strategy 'fast'; expected one of 'bfd', 'ffd', 'sequential', 'wrapped'"
        );
    }
}
