//! The private native module `seqpack._seqpack`: converts Python inputs, runs the core with
//! the interpreter detached, and hands the arrays back to numpy without copying them.
//! Argument normalisation and documentation live in the Python package.

mod chat;

use numpy::{IntoPyArray, PyArray1, PyArrayMethods, PyReadonlyArray1};
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use seqpack_core::{
    materialize, Error, Keep, LayoutOptions, LossWeighting, Overlong, Packed, Plan, PlanOptions,
    Sequences, Strategy,
};

create_exception!(seqpack, SeqpackError, PyValueError, "Base class of every error seqpack raises; a ValueError.");
create_exception!(seqpack, InvalidOptionError, SeqpackError, "An option is out of range or not a known name.");
create_exception!(seqpack, EmptyInputError, SeqpackError, "There is nothing to pack.");
create_exception!(seqpack, EmptySequenceError, SeqpackError, "A sequence has no tokens.");
create_exception!(seqpack, OverlongSequenceError, SeqpackError, "A sequence is longer than max_length and overlong='error'.");
create_exception!(seqpack, InvalidTokenError, SeqpackError, "A token id is negative or does not fit the output dtype.");
create_exception!(seqpack, InvalidLabelsError, SeqpackError, "Labels do not line up with their tokens or hold an invalid value.");
create_exception!(seqpack, InvalidOffsetsError, SeqpackError, "Offsets into the flat token array do not describe sequences.");
create_exception!(seqpack, TooManyTokensError, SeqpackError, "The packed batch is too large for int32 cu_seqlens.");
create_exception!(seqpack, InvalidRecordError, SeqpackError, "A chat record cannot be read as a conversation.");
create_exception!(seqpack, InvalidFileError, SeqpackError, "A file of chat records cannot be read.");
create_exception!(seqpack, TemplateError, SeqpackError, "A chat template does not compile, raises, or cannot be mapped to messages.");
create_exception!(seqpack, TokenizerError, SeqpackError, "A tokenizer cannot be loaded or fails.");

/// Map a core error to its exception class; errors about one sequence carry its `index`.
pub(crate) fn to_py(py: Python<'_>, error: Error) -> PyErr {
    let message = error.to_string();
    let (exception, index) = match &error {
        Error::InvalidOption { .. } => (InvalidOptionError::new_err(message), None),
        Error::EmptyInput | Error::NoSamples { .. } => (EmptyInputError::new_err(message), None),
        Error::EmptySequence { index } => (EmptySequenceError::new_err(message), Some(*index)),
        Error::Overlong { index, .. } => (OverlongSequenceError::new_err(message), Some(*index)),
        Error::InvalidToken { index, .. } => (InvalidTokenError::new_err(message), Some(*index)),
        Error::InvalidLabels { index, .. } => (InvalidLabelsError::new_err(message), Some(*index)),
        Error::InvalidOffsets { .. } => (InvalidOffsetsError::new_err(message), None),
        Error::TooManyTokens { .. } => (TooManyTokensError::new_err(message), None),
        Error::InvalidRecord { record, .. } => (InvalidRecordError::new_err(message), Some(*record)),
        Error::InvalidFile { .. } => (InvalidFileError::new_err(message), None),
        Error::Template { .. } => (TemplateError::new_err(message), None),
        Error::Tokenizer { .. } => (TokenizerError::new_err(message), None),
        Error::InRecord { record, source, .. } => match source.as_ref() {
            Error::Tokenizer { .. } => (TokenizerError::new_err(message), Some(*record)),
            _ => (TemplateError::new_err(message), Some(*record)),
        },
    };
    // Attaching an attribute to a fresh exception instance cannot fail in practice; if it did,
    // the message still names the sequence, so the error itself is what matters.
    let _ = exception.value(py).setattr("index", index);
    exception
}

#[allow(clippy::too_many_arguments)]
fn plan_options(
    max_length: i64,
    strategy: &str,
    max_seqs_per_row: Option<i64>,
    overlong: &str,
    truncate_keep: &str,
    pad_rows_to_multiple_of: i64,
    seed: Option<u64>,
) -> Result<PlanOptions, Error> {
    let positive = |name: &'static str, value: i64| {
        usize::try_from(value).map_err(|_| Error::InvalidOption {
            name,
            message: format!("must be a positive integer, got {value}"),
        })
    };
    Ok(PlanOptions {
        max_length: positive("max_length", max_length)?,
        strategy: Strategy::from_name(strategy)?,
        max_seqs_per_row: max_seqs_per_row.map(|v| positive("max_seqs_per_row", v)).transpose()?,
        overlong: Overlong::from_name(overlong, Keep::from_name(truncate_keep)?)?,
        pad_rows_to_multiple_of: positive("pad_rows_to_multiple_of", pad_rows_to_multiple_of)?,
        seed,
    })
}

fn lengths_from(raw: &[i64]) -> Result<Vec<usize>, Error> {
    raw.iter()
        .enumerate()
        .map(|(index, &length)| {
            usize::try_from(length).map_err(|_| Error::InvalidOption {
                name: "lengths",
                message: format!("sequence {index} has a negative length ({length})"),
            })
        })
        .collect()
}

fn stats_dict<'py>(py: Python<'py>, plan: &Plan) -> PyResult<Bound<'py, PyDict>> {
    let stats = plan.stats();
    let dict = PyDict::new(py);
    dict.set_item("rows", stats.rows)?;
    dict.set_item("max_length", stats.max_length)?;
    dict.set_item("packed_sequences", stats.packed_sequences)?;
    dict.set_item("real_tokens", stats.real_tokens)?;
    dict.set_item("pad_tokens", stats.pad_tokens)?;
    dict.set_item("efficiency", stats.efficiency)?;
    dict.set_item("lower_bound_rows", stats.lower_bound_rows)?;
    dict.set_item("input_sequences", stats.input_sequences)?;
    dict.set_item("input_tokens", stats.input_tokens)?;
    dict.set_item("dropped_sequences", stats.dropped_sequences)?;
    dict.set_item("dropped_tokens", stats.dropped_tokens)?;
    dict.set_item("truncated_sequences", stats.truncated_sequences)?;
    dict.set_item("truncated_tokens", stats.truncated_tokens)?;
    dict.set_item("split_sequences", stats.split_sequences)?;
    dict.set_item("padding_rows", stats.padding_rows)?;
    Ok(dict)
}

/// Events as a list of `(source, reason, length, tokens_removed, pieces)` tuples.
fn events_list<'py>(py: Python<'py>, plan: &Plan) -> PyResult<Bound<'py, PyList>> {
    PyList::new(
        py,
        plan.events
            .iter()
            .map(|e| (e.source, e.kind.reason(), e.length, e.tokens_removed, e.pieces)),
    )
}

fn as_i64<T: Copy>(values: impl Iterator<Item = T>, f: impl Fn(T) -> i64) -> Vec<i64> {
    values.map(f).collect()
}

/// Plan rows from lengths alone.
#[pyfunction]
#[pyo3(signature = (lengths, *, max_length, strategy, max_seqs_per_row, overlong, truncate_keep, pad_rows_to_multiple_of, seed))]
#[allow(clippy::too_many_arguments)]
fn plan_lengths<'py>(
    py: Python<'py>,
    lengths: PyReadonlyArray1<'py, i64>,
    max_length: i64,
    strategy: &str,
    max_seqs_per_row: Option<i64>,
    overlong: &str,
    truncate_keep: &str,
    pad_rows_to_multiple_of: i64,
    seed: Option<u64>,
) -> PyResult<Bound<'py, PyDict>> {
    let raw = lengths.as_slice()?;
    let plan = py
        .detach(|| {
            let options = plan_options(max_length, strategy, max_seqs_per_row, overlong, truncate_keep, pad_rows_to_multiple_of, seed)?;
            seqpack_core::plan(&lengths_from(raw)?, &options)
        })
        .map_err(|e| to_py(py, e))?;
    let pieces = &plan.pieces;
    let mut row_of = Vec::with_capacity(pieces.len());
    for row in 0..plan.num_rows() {
        row_of.extend(std::iter::repeat_n(row as i64, plan.row(row).len()));
    }
    let dict = PyDict::new(py);
    dict.set_item("source_index", as_i64(pieces.iter(), |p| p.source as i64).into_pyarray(py))?;
    dict.set_item("chunk_index", as_i64(pieces.iter(), |p| p.chunk as i64).into_pyarray(py))?;
    dict.set_item("start", as_i64(pieces.iter(), |p| p.start as i64).into_pyarray(py))?;
    dict.set_item("length", as_i64(pieces.iter(), |p| p.length as i64).into_pyarray(py))?;
    dict.set_item("row", row_of.into_pyarray(py))?;
    dict.set_item("row_offsets", as_i64(plan.row_offsets.iter(), |&o| o as i64).into_pyarray(py))?;
    dict.set_item("stats", stats_dict(py, &plan)?)?;
    dict.set_item("events", events_list(py, &plan)?)?;
    Ok(dict)
}

/// Flat tokens as int32 or int64, borrowed from numpy for the duration of the call.
enum TokensIn<'py> {
    I32(PyReadonlyArray1<'py, i32>),
    I64(PyReadonlyArray1<'py, i64>),
}

fn pack_with<I: seqpack_core::layout::TokenIn, O: seqpack_core::layout::TokenOut>(
    tokens: &[I],
    raw_offsets: &[i64],
    labels: Option<&[i64]>,
    options: &PlanOptions,
    layout: &LayoutOptions,
) -> Result<(Plan, Packed<O>), Error> {
    let offsets = Sequences::<I>::offsets_from(raw_offsets, tokens.len())?;
    let sequences = Sequences { tokens, offsets: &offsets, labels };
    let plan = seqpack_core::plan(&sequences.lengths(), options)?;
    let packed = materialize(&sequences, &plan, layout)?;
    Ok((plan, packed))
}

fn packed_dict<'py, O: numpy::Element>(
    py: Python<'py>,
    plan: &Plan,
    packed: Packed<O>,
) -> PyResult<Bound<'py, PyDict>> {
    let shape = [packed.rows, packed.max_length];
    let segments = packed.seq_lens.len();
    let dict = PyDict::new(py);
    dict.set_item("input_ids", packed.input_ids.into_pyarray(py).reshape(shape)?)?;
    dict.set_item("labels", packed.labels.into_pyarray(py).reshape(shape)?)?;
    dict.set_item("position_ids", packed.position_ids.into_pyarray(py).reshape(shape)?)?;
    dict.set_item("segment_ids", packed.segment_ids.into_pyarray(py).reshape(shape)?)?;
    dict.set_item("attention_mask", packed.attention_mask.into_pyarray(py).reshape(shape)?)?;
    match packed.loss_weights {
        Some(weights) => dict.set_item("loss_weights", weights.into_pyarray(py).reshape(shape)?)?,
        None => dict.set_item("loss_weights", py.None())?,
    }
    dict.set_item("cu_seqlens", packed.cu_seqlens.into_pyarray(py))?;
    dict.set_item("seq_lens", packed.seq_lens.into_pyarray(py))?;
    dict.set_item("source_index", packed.source_index.into_pyarray(py).reshape([segments, 2])?)?;
    dict.set_item("source_start", packed.source_start.into_pyarray(py))?;
    dict.set_item("max_seqlen", packed.max_seqlen)?;
    dict.set_item("stats", stats_dict(py, plan)?)?;
    dict.set_item("events", events_list(py, plan)?)?;
    Ok(dict)
}

/// Plan and materialise with the interpreter detached, in the requested output dtype.
#[allow(clippy::too_many_arguments)]
fn pack_to_dict<'py, I: seqpack_core::layout::TokenIn>(
    py: Python<'py>,
    tokens: &[I],
    raw_offsets: &[i64],
    labels: Option<&[i64]>,
    options: &PlanOptions,
    layout: &LayoutOptions,
    output_dtype: &str,
) -> PyResult<Bound<'py, PyDict>> {
    match output_dtype {
        "int64" => {
            let (plan, packed) = py
                .detach(|| pack_with::<I, i64>(tokens, raw_offsets, labels, options, layout))
                .map_err(|e| to_py(py, e))?;
            packed_dict(py, &plan, packed)
        }
        "int32" => {
            let (plan, packed) = py
                .detach(|| pack_with::<I, i32>(tokens, raw_offsets, labels, options, layout))
                .map_err(|e| to_py(py, e))?;
            packed_dict(py, &plan, packed)
        }
        other => Err(to_py(py, Error::InvalidOption {
            name: "dtype",
            message: format!("unknown dtype '{other}'; expected 'int64' or 'int32'"),
        })),
    }
}

/// Plan and materialise packed rows from a flat token array and offsets.
#[pyfunction]
#[pyo3(signature = (tokens, offsets, labels, *, max_length, strategy, max_seqs_per_row, overlong, truncate_keep, pad_rows_to_multiple_of, seed, pad_id, output_dtype, loss_weights))]
#[allow(clippy::too_many_arguments)]
fn pack_flat<'py>(
    py: Python<'py>,
    tokens: &Bound<'py, PyAny>,
    offsets: PyReadonlyArray1<'py, i64>,
    labels: Option<PyReadonlyArray1<'py, i64>>,
    max_length: i64,
    strategy: &str,
    max_seqs_per_row: Option<i64>,
    overlong: &str,
    truncate_keep: &str,
    pad_rows_to_multiple_of: i64,
    seed: Option<u64>,
    pad_id: i64,
    output_dtype: &str,
    loss_weights: Option<&str>,
) -> PyResult<Bound<'py, PyDict>> {
    let tokens = if let Ok(array) = tokens.cast::<PyArray1<i64>>() {
        TokensIn::I64(array.readonly())
    } else if let Ok(array) = tokens.cast::<PyArray1<i32>>() {
        TokensIn::I32(array.readonly())
    } else {
        return Err(to_py(py, Error::InvalidOption {
            name: "tokens",
            message: "the flat token array must be a 1-D int32 or int64 numpy array".into(),
        }));
    };
    let offsets_slice = offsets.as_slice()?;
    let labels_slice = labels.as_ref().map(|l| l.as_slice()).transpose()?;
    let options = plan_options(max_length, strategy, max_seqs_per_row, overlong, truncate_keep, pad_rows_to_multiple_of, seed)
        .map_err(|e| to_py(py, e))?;
    let layout = LayoutOptions {
        pad_id,
        loss_weights: loss_weights.map(LossWeighting::from_name).transpose().map_err(|e| to_py(py, e))?,
    };
    match &tokens {
        TokensIn::I64(array) => pack_to_dict(py, array.as_slice()?, offsets_slice, labels_slice, &options, &layout, output_dtype),
        TokensIn::I32(array) => pack_to_dict(py, array.as_slice()?, offsets_slice, labels_slice, &options, &layout, output_dtype),
    }
}

/// Samples of the conversation path, flattened for packing.
pub(crate) struct TokensOut {
    pub tokens: Vec<i32>,
    pub labels: Vec<i64>,
    pub offsets: Vec<usize>,
    pub sample_record: Vec<i64>,
    pub sample_window: Vec<i64>,
}

/// Encode chat records and pack the samples, in one call.
#[pyfunction]
#[pyo3(signature = (records, path, tokenizer, template, mapping, args, *, strategy, max_seqs_per_row, pad_rows_to_multiple_of, seed, pad_id, output_dtype, loss_weights))]
#[allow(clippy::too_many_arguments)]
fn pack_records<'py>(
    py: Python<'py>,
    records: Option<Bound<'py, PyList>>,
    path: Option<String>,
    tokenizer: &chat::NativeTokenizer,
    template: &chat::NativeTemplate,
    mapping: Option<Bound<'py, PyDict>>,
    args: chat::ConversationArgs,
    strategy: &str,
    max_seqs_per_row: Option<i64>,
    pad_rows_to_multiple_of: i64,
    seed: Option<u64>,
    pad_id: i64,
    output_dtype: &str,
    loss_weights: Option<&str>,
) -> PyResult<Bound<'py, PyDict>> {
    let source = match (records, path) {
        (Some(list), _) => chat::Source::Objects(list),
        (None, Some(path)) => chat::Source::File(path),
        (None, None) => return Err(to_py(py, Error::EmptyInput)),
    };
    let options = plan_options(args.max_length, strategy, max_seqs_per_row, "error", "head", pad_rows_to_multiple_of, seed)
        .map_err(|e| to_py(py, e))?;
    let layout = LayoutOptions {
        pad_id,
        loss_weights: loss_weights.map(LossWeighting::from_name).transpose().map_err(|e| to_py(py, e))?,
    };
    let (samples, reports) = chat::encode_source(py, source, tokenizer, template, mapping.as_ref(), &args)?;
    if samples.is_empty() {
        let mut reasons: std::collections::BTreeMap<&str, usize> = Default::default();
        for report in &reports {
            *reasons.entry(report.reason.as_str()).or_default() += 1;
        }
        let reasons = reasons.iter().map(|(r, n)| format!("{r}: {n}")).collect::<Vec<_>>().join(", ");
        return Err(to_py(py, Error::NoSamples { records: reports.len(), reasons }));
    }
    let flat = py.detach(|| chat::flatten_samples(&samples));
    let raw_offsets: Vec<i64> = flat.offsets.iter().map(|&o| o as i64).collect();
    let dict = pack_to_dict(py, &flat.tokens, &raw_offsets, Some(&flat.labels), &options, &layout, output_dtype)?;
    dict.set_item("sample_record", flat.sample_record.into_pyarray(py))?;
    dict.set_item("sample_window", flat.sample_window.into_pyarray(py))?;
    dict.set_item("reports", chat::NativeReports { inner: reports })?;
    Ok(dict)
}

#[pymodule(gil_used = false)]
fn _seqpack(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    module.add_function(wrap_pyfunction!(plan_lengths, module)?)?;
    module.add_function(wrap_pyfunction!(pack_flat, module)?)?;
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
    module.add_class::<chat::NativeTokenizer>()?;
    module.add_class::<chat::NativeTemplate>()?;
    module.add_class::<chat::NativeReports>()?;
    module.add_function(wrap_pyfunction!(chat::encode_records, module)?)?;
    module.add_function(wrap_pyfunction!(pack_records, module)?)?;
    Ok(())
}
