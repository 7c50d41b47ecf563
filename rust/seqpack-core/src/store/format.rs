//! The store's manifest and the rules a folder must meet to be opened: the format and version
//! this code reads, and a size for every file that matches the counts.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The manifest's `format` value.
pub const FORMAT: &str = "seqpack-token-store";
/// The layout version this code writes and reads.
pub const VERSION: u32 = 1;

pub const TOKENS: &str = "tokens.u32";
pub const OFFSETS: &str = "offsets.i64";
pub const LENGTHS: &str = "lengths.u32";
pub const TRAINED: &str = "trained.bits";
pub const LABELS: &str = "labels.i32";
pub const SAMPLE_RECORD: &str = "sample_record.i64";
pub const SAMPLE_WINDOW: &str = "sample_window.i32";
pub const REPORT: &str = "report.jsonl";
pub const MANIFEST: &str = "manifest.json";

/// How labels are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelStorage {
    /// Every label is the token itself or -100: one bit per token says which.
    TrainedMask,
    /// Some label is neither: `labels.i32` holds them all (and the mask still says which are
    /// trained).
    Int32,
}

/// Everything about a store that is not its arrays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    /// `"conversations"` (chat records encoded with a template) or `"tokens"`.
    pub kind: String,
    pub samples: u64,
    pub tokens: u64,
    /// Input records read (conversations: records, including those that left no sample).
    pub records: u64,
    pub labels: LabelStorage,
    /// The longest sample.
    pub max_sample_length: u64,
    /// Trained tokens over all samples.
    pub trained_tokens: u64,
    /// blake3 of the data files' contents, in a fixed order: what identifies this store's
    /// data wherever it is copied (loader states carry it).
    pub fingerprint: String,
    /// Size in bytes of every file but the manifest.
    pub files: BTreeMap<String, u64>,
    /// What produced the data: the encode options, the tokenizer's and template's hashes, the
    /// seqpack version. Free-form, written by the caller.
    pub source: serde_json::Value,
}

impl Manifest {
    /// The size each data file must have for these counts.
    pub fn expected_sizes(&self) -> BTreeMap<&'static str, u64> {
        let mut sizes = BTreeMap::from([
            (TOKENS, self.tokens * 4),
            (OFFSETS, (self.samples + 1) * 8),
            (LENGTHS, self.samples * 4),
            (TRAINED, self.tokens.div_ceil(8)),
            (SAMPLE_RECORD, self.samples * 8),
            (SAMPLE_WINDOW, self.samples * 4),
        ]);
        if self.labels == LabelStorage::Int32 {
            sizes.insert(LABELS, self.tokens * 4);
        }
        sizes
    }
}

/// Read a manifest and check it against the sizes of the files found beside it (`actual`:
/// file name → bytes). Every mismatch is an `InvalidStore` error naming the file.
pub fn check(path: &str, manifest_text: &str, actual: &BTreeMap<String, u64>) -> Result<Manifest> {
    let bad = |message: String| Error::InvalidStore { path: path.to_string(), message };
    let manifest: Manifest = serde_json::from_str(manifest_text)
        .map_err(|e| bad(format!("{MANIFEST} is not a seqpack manifest ({e}); was the write interrupted?")))?;
    if manifest.format != FORMAT {
        return Err(bad(format!("{MANIFEST}: format is '{}', not '{FORMAT}'", manifest.format)));
    }
    if manifest.version != VERSION {
        return Err(bad(format!(
            "{MANIFEST}: layout version {} is not the version this seqpack reads ({VERSION}); rewrite the store",
            manifest.version
        )));
    }
    for (name, expected) in manifest.expected_sizes() {
        match actual.get(name) {
            None => return Err(bad(format!("{name} is missing"))),
            Some(&size) if size != expected => {
                return Err(bad(format!(
                    "{name} holds {size} bytes, but the manifest's counts ({} samples, {} tokens) need {expected}; \
                     the store is truncated or was changed after it was written",
                    manifest.samples, manifest.tokens
                )))
            }
            Some(_) => {}
        }
        if manifest.files.get(name) != Some(&expected) {
            return Err(bad(format!("{MANIFEST} does not list {name} with {expected} bytes")));
        }
    }
    Ok(manifest)
}

/// Offsets must start at 0, never decrease, end at the token count, and agree with the
/// lengths; checked once when a store is opened.
pub fn check_offsets(path: &str, offsets: &[i64], lengths: &[u32], tokens: u64) -> Result<()> {
    let bad = |message: String| Error::InvalidStore { path: path.to_string(), message };
    if offsets.first() != Some(&0) {
        return Err(bad(format!("{OFFSETS} does not start at 0")));
    }
    if offsets.len() != lengths.len() + 1 {
        return Err(bad(format!("{OFFSETS} and {LENGTHS} disagree on the number of samples")));
    }
    if let Some(sample) = offsets.windows(2).zip(lengths).position(|(pair, &n)| pair[1] - pair[0] != i64::from(n)) {
        return Err(bad(format!("sample {sample}: {OFFSETS} and {LENGTHS} disagree (the store is corrupted)")));
    }
    if offsets.last().copied() != i64::try_from(tokens).ok() {
        return Err(bad(format!("{OFFSETS} does not end at the token count {tokens}")));
    }
    Ok(())
}
