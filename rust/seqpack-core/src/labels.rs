//! The label convention both halves share.

/// The label that loss functions skip (`PyTorch`'s `ignore_index`, Hugging Face's -100).
pub const IGNORE_INDEX: i64 = -100;
