//! Core errors become Python exceptions here and nowhere else: one exception class per error
//! variant, all under `SeqpackError(ValueError)`, each carrying the offending sequence or
//! record as `.index`. Binding functions return [`Result`], so `?` converts core errors,
//! Python errors and option errors alike.

use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use seqpack_core::Error;

create_exception!(seqpack, SeqpackError, PyValueError, "Base class of every error seqpack raises; a ValueError.");
create_exception!(seqpack, InvalidOptionError, SeqpackError, "An option is out of range or not a known name.");
create_exception!(seqpack, EmptyInputError, SeqpackError, "There is nothing to pack.");
create_exception!(seqpack, EmptySequenceError, SeqpackError, "A sequence has no tokens.");
create_exception!(
    seqpack,
    OverlongSequenceError,
    SeqpackError,
    "A sequence or record is longer than max_length and overlong='error'."
);
create_exception!(seqpack, InvalidTokenError, SeqpackError, "A token id is negative or does not fit the output dtype.");
create_exception!(
    seqpack,
    InvalidLabelsError,
    SeqpackError,
    "Labels do not line up with their tokens or hold a bad value."
);
create_exception!(
    seqpack,
    InvalidOffsetsError,
    SeqpackError,
    "Offsets do not describe sequences of the flat token array."
);
create_exception!(seqpack, TooManyTokensError, SeqpackError, "The packed batch is too large for int32 cu_seqlens.");
create_exception!(seqpack, InvalidRecordError, SeqpackError, "A chat record cannot be read as a conversation.");
create_exception!(seqpack, InvalidFileError, SeqpackError, "A file of records cannot be read.");
create_exception!(
    seqpack,
    TemplateError,
    SeqpackError,
    "A chat template does not compile, raises, or cannot be mapped to messages."
);
create_exception!(seqpack, TokenizerError, SeqpackError, "A tokenizer cannot be loaded or fails on a text.");
create_exception!(
    seqpack,
    InvalidStoreError,
    SeqpackError,
    "A token store is truncated, corrupted, or of another layout version."
);

/// Why a binding call failed.
pub enum Failure {
    /// The core refused (a typed error with a message naming what is wrong).
    Core(Error),
    /// An option the core could not read (its message names the option).
    Option(String),
    /// Python itself raised (a wrong argument type, memory).
    Python(PyErr),
}

pub type Result<T> = std::result::Result<T, Failure>;

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Self::Core(error)
    }
}

impl From<PyErr> for Failure {
    fn from(error: PyErr) -> Self {
        Self::Python(error)
    }
}

impl From<Failure> for PyErr {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Core(error) => core_error(&error),
            Failure::Option(message) => InvalidOptionError::new_err(message),
            Failure::Python(error) => error,
        }
    }
}

/// The exception for a core error, with `.index` set to the sequence or record it names.
fn core_error(error: &Error) -> PyErr {
    let message = error.to_string();
    // A record's error in a named file: the record's exception, with the file in the message.
    let named = match error {
        Error::InFile { source, .. } => source.as_ref(),
        other => other,
    };
    let (exception, index) = match named {
        Error::InvalidOption { .. } => (InvalidOptionError::new_err(message), None),
        Error::EmptyInput => (EmptyInputError::new_err(message), None),
        Error::EmptySequence { index } => (EmptySequenceError::new_err(message), Some(*index)),
        Error::Overlong { index, .. } => (OverlongSequenceError::new_err(message), Some(*index)),
        Error::OverlongRecord { record, .. } => (OverlongSequenceError::new_err(message), Some(*record)),
        Error::InvalidToken { index, .. } => (InvalidTokenError::new_err(message), Some(*index)),
        Error::InvalidLabels { index, .. } => (InvalidLabelsError::new_err(message), Some(*index)),
        Error::InvalidOffsets { .. } => (InvalidOffsetsError::new_err(message), None),
        Error::TooManyTokens { .. } => (TooManyTokensError::new_err(message), None),
        Error::InvalidRecord { record, .. } | Error::SpecialTokenInContent { record, .. } => {
            (InvalidRecordError::new_err(message), Some(*record))
        }
        Error::InvalidFile { .. } => (InvalidFileError::new_err(message), None),
        Error::Template { .. } => (TemplateError::new_err(message), None),
        Error::Tokenizer { .. } => (TokenizerError::new_err(message), None),
        Error::InvalidStore { .. } => (InvalidStoreError::new_err(message), None),
        // Not a ValueError: the input was fine, the disk said no.
        Error::Io { .. } => return pyo3::exceptions::PyOSError::new_err(message),
        Error::InRecord { record, source, .. } => match source.as_ref() {
            Error::Tokenizer { .. } => (TokenizerError::new_err(message), Some(*record)),
            _ => (TemplateError::new_err(message), Some(*record)),
        },
        Error::InFile { .. } => (SeqpackError::new_err(message), None),
    };
    // Setting an attribute on a fresh exception instance cannot fail in practice; if it did,
    // the message still names the sequence, which is what matters.
    Python::attach(|py| {
        let _ = exception.value(py).setattr("index", index);
    });
    exception
}

/// Add every exception class to the module.
pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    module.add("SeqpackError", py.get_type::<SeqpackError>())?;
    module.add("InvalidOptionError", py.get_type::<InvalidOptionError>())?;
    module.add("EmptyInputError", py.get_type::<EmptyInputError>())?;
    module.add("EmptySequenceError", py.get_type::<EmptySequenceError>())?;
    module.add("OverlongSequenceError", py.get_type::<OverlongSequenceError>())?;
    module.add("InvalidTokenError", py.get_type::<InvalidTokenError>())?;
    module.add("InvalidLabelsError", py.get_type::<InvalidLabelsError>())?;
    module.add("InvalidOffsetsError", py.get_type::<InvalidOffsetsError>())?;
    module.add("TooManyTokensError", py.get_type::<TooManyTokensError>())?;
    module.add("InvalidRecordError", py.get_type::<InvalidRecordError>())?;
    module.add("InvalidFileError", py.get_type::<InvalidFileError>())?;
    module.add("TemplateError", py.get_type::<TemplateError>())?;
    module.add("TokenizerError", py.get_type::<TokenizerError>())?;
    module.add("InvalidStoreError", py.get_type::<InvalidStoreError>())?;
    Ok(())
}
