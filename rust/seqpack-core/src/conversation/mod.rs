//! Conversations: chat records → [`records`] (one normalised conversation per record) →
//! [`template`] (text with the span of every message) → [`tokenize`] → [`truncate`] (which
//! turns fit) → [`encode`] (labelled samples and a [`report`] per record) → [`flatten`] (one
//! flat token array with offsets, what packing takes); [`pipeline`] runs them all.

pub mod encode;
pub mod flatten;
pub mod pipeline;
pub mod reader;
pub mod records;
pub mod report;
pub mod template;
pub mod tokenize;
pub mod truncate;

pub use encode::{encode_all, EncodeOptions, OnError, Parsed, Sample, Train};
pub use flatten::{flatten, Flat};
pub use pipeline::{encode_records, Encoded};
pub use reader::{jsonl_lines, jsonl_lines_after, parse_line, read_record_chunks, read_records};
pub use records::{Conversation, Format, Mapping, Message, Origin, RawRecord, Role};
pub use report::{Reason, RecordReport, ReportSummary, RoleCounts, Status};
pub use template::Template;
pub use tokenize::Tokenizer;
