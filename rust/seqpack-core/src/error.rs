//! The one error type of the core. Every message names the offending sequence (its index in
//! the caller's input), the value that is wrong and the limit it broke, so a user can find the
//! record without a debugger.

/// Everything the core can refuse. The bindings map each variant to its own Python exception
/// class (all subclasses of `seqpack.SeqpackError`, itself a `ValueError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// An option is out of its range or not one of the allowed names.
    #[error("option {name}: {message}")]
    InvalidOption { name: &'static str, message: String },

    /// There is nothing to pack.
    #[error("no sequences to pack: the input is empty")]
    EmptyInput,

    /// A sequence of length zero; it would become a segment with nothing in it.
    #[error("sequence {index} is empty (0 tokens); remove it before packing")]
    EmptySequence { index: usize },

    /// A sequence longer than `max_length` while `overlong="error"`.
    #[error(
        "sequence {index} has {length} tokens, more than max_length={max_length}; \
         pass overlong='drop', 'truncate' or 'split' to handle it"
    )]
    Overlong { index: usize, length: usize, max_length: usize },

    /// A conversation longer than `max_length` while `overlong="error"`.
    #[error(
        "record {record}{}: {length} tokens, more than max_length={max_length}; pass \
         overlong='truncate', 'split' or 'drop' to handle it",
        line.map(|l| format!(" (line {l})")).unwrap_or_default()
    )]
    OverlongRecord { record: usize, line: Option<usize>, length: usize, max_length: usize },

    /// A token id that no vocabulary has (negative), or that does not fit the output dtype.
    #[error("sequence {index}, position {position}: token id {value} is {problem}")]
    InvalidToken { index: usize, position: usize, value: i64, problem: &'static str },

    /// Labels that do not line up with their tokens, or hold a value that is neither a token
    /// id nor the ignore index.
    #[error("sequence {index}: {message}")]
    InvalidLabels { index: usize, message: String },

    /// Offsets into the flat token array that do not describe sequences.
    #[error("offsets: {message}")]
    InvalidOffsets { message: String },

    /// The packed stream is larger than the int32 `cu_seqlens` that attention kernels take.
    #[error(
        "the packed batch holds {tokens} tokens, more than cu_seqlens (int32) can address \
         ({limit}); pack the data in smaller chunks"
    )]
    TooManyTokens { tokens: u64, limit: u64 },

    /// A chat record that cannot be read as a conversation.
    #[error("record {record}{}: {}{message}", line.map(|l| format!(" (line {l})")).unwrap_or_default(), if field.is_empty() { String::new() } else { format!("field '{field}': ") })]
    InvalidRecord { record: usize, line: Option<usize>, field: String, message: String },

    /// A message whose content holds a special token's text (which the tokenizer reads as
    /// that token) while `special_tokens_in_content="error"`.
    #[error(
        "record {record}{}: message {message} ({role}) holds the text of the special token \
         '{token}', which the tokenizer reads as that token (a turn marker inside the content \
         would be trained as one); pass special_tokens_in_content='keep' to keep it as \
         transformers does, or on_error='skip'",
        line.map(|l| format!(" (line {l})")).unwrap_or_default()
    )]
    SpecialTokenInContent { record: usize, line: Option<usize>, message: usize, role: &'static str, token: String },

    /// A file of records that cannot be read (missing, not JSON, truncated).
    #[error("{path}{}: {message}", line.map(|l| format!(", line {l}")).unwrap_or_default())]
    InvalidFile { path: String, line: Option<usize>, message: String },

    /// A token store that cannot be opened: missing files, sizes that do not match the
    /// manifest, a layout version this code does not read.
    #[error("token store {path}: {message}")]
    InvalidStore { path: String, message: String },

    /// A file or folder that cannot be written.
    #[error("{path}: {message}")]
    Io { path: String, message: String },

    /// A chat template that does not compile, raises, or cannot be mapped back to messages.
    #[error("chat template: {message}")]
    Template { message: String },

    /// A tokenizer that cannot be loaded or fails on a text.
    #[error("tokenizer: {message}")]
    Tokenizer { message: String },

    /// A template or tokenizer error raised while processing one record.
    #[error("record {record}{}: {source}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    InRecord { record: usize, line: Option<usize>, source: Box<Error> },

    /// A record's error, naming the file the record came from.
    #[error("{path}: {source}")]
    InFile { path: String, source: Box<Error> },
}

impl Error {
    /// Attach the record to an error raised while processing it (templates, tokenizer).
    pub fn for_record(self, record: usize, line: Option<usize>) -> Self {
        match self {
            Error::Template { .. } | Error::Tokenizer { .. } => {
                Error::InRecord { record, line, source: Box::new(self) }
            }
            other => other,
        }
    }

    /// Name the file of a record's error (a file's own errors already name it).
    #[must_use]
    pub fn in_file(self, path: &std::path::Path) -> Self {
        match self {
            Error::InvalidRecord { .. }
            | Error::InRecord { .. }
            | Error::SpecialTokenInContent { .. }
            | Error::OverlongRecord { .. } => {
                Error::InFile { path: path.display().to_string(), source: Box::new(self) }
            }
            other => other,
        }
    }

    /// Whether this is a problem with one record's input (its JSON, shape, template or
    /// tokenization), which `on_error="skip"` may count and pass over; a policy the caller
    /// chose (`overlong="error"`) or a bad option is never skipped.
    pub fn is_record_input(&self) -> bool {
        match self {
            Error::InFile { source, .. } => source.is_record_input(),
            other => matches!(
                other,
                Error::InvalidRecord { .. }
                    | Error::InvalidFile { .. }
                    | Error::InRecord { .. }
                    | Error::SpecialTokenInContent { .. }
            ),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
