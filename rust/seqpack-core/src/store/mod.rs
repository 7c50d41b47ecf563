//! The on-disk token store: what `encode` produces, written once, read memory-mapped by every
//! training process. A folder of flat little-endian arrays plus a manifest:
//!
//! | file | contents |
//! |---|---|
//! | `tokens.u32` | every sample's token ids, end to end |
//! | `offsets.i64` | `samples + 1` offsets: sample `i` is `tokens[offsets[i]..offsets[i + 1]]` |
//! | `lengths.u32` | tokens per sample (what planning reads) |
//! | `trained.bits` | one bit per token, set where the token is trained (bit `t % 8` of byte `t / 8`) |
//! | `labels.i32` | only when some label is neither the token itself nor -100: every label |
//! | `sample_record.i64`, `sample_window.i32` | the input record of every sample, and its window |
//! | `report.jsonl` | one report per input record (conversations) |
//! | `manifest.json` | format version, counts, options, file sizes and the content fingerprint |
//!
//! [`writer::StoreWriter`] appends chunks to a staging folder and renames it into place at the
//! end, so an interrupted write leaves nothing that opens; [`format::check`] validates a
//! manifest against the files' sizes before anything is read.

pub mod format;
pub mod ingest;
pub mod writer;

pub use format::{check, Manifest, FORMAT, VERSION};
pub use ingest::{encode_file_into, encode_into};
pub use writer::StoreWriter;
