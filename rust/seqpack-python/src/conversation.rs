//! Bindings for the conversation half: tokenizer and template handles, record encoding, and
//! the per-record reports (kept in Rust until read).

use crate::convert::{options, to_python};
use crate::errors::Result;
use numpy::IntoPyArray;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use seqpack_core::conversation::records::parse_record;
use seqpack_core::conversation::template::{openai_messages, CharSpan, JinjaTemplate};
use seqpack_core::conversation::tokenize::TokensWithOffsets;
use seqpack_core::conversation::{
    encode_records as encode, jsonl_lines_after as find_lines, parse_line, read_records, EncodeOptions, Format,
    Mapping, Origin, RawRecord, RecordReport, ReportSummary, Template, Tokenizer,
};
use seqpack_core::store::writer::report_lines;
use seqpack_core::Error;
use std::sync::Arc;

/// A loaded `tokenizer.json`, shared by every call that uses it.
#[pyclass(frozen, module = "seqpack._seqpack")]
pub struct NativeTokenizer {
    inner: Arc<Tokenizer>,
}

#[pymethods]
impl NativeTokenizer {
    #[new]
    #[pyo3(signature = (json, *, fast = true))]
    fn new(py: Python<'_>, json: &str, fast: bool) -> Result<Self> {
        let inner = py.detach(|| Tokenizer::from_json(json, fast))?;
        Ok(Self { inner: Arc::new(inner) })
    }

    /// blake3 of the `tokenizer.json` text.
    #[getter]
    fn fingerprint(&self) -> &str {
        self.inner.fingerprint()
    }

    #[getter]
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Token ids and byte offsets of `text` (no special tokens added).
    fn encode(&self, py: Python<'_>, text: &str) -> Result<TokensWithOffsets> {
        Ok(py.detach(|| self.inner.encode(text))?)
    }

    /// Many texts at once on `threads` threads (0: all cores): the flat ids (uint32) and
    /// each text's end in them (uint64). What `benches/bench_tokenizer.py` times.
    #[pyo3(signature = (texts, *, threads = 0))]
    fn encode_batch<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
        threads: usize,
    ) -> Result<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        let (ids, ends) = py.detach(|| self.inner.encode_batch(&texts, threads))?;
        Ok((ids.into_pyarray(py).into_any(), ends.into_pyarray(py).into_any()))
    }

    /// The same, always through the `tokenizers` library (the reference for the fast path).
    fn encode_reference(&self, py: Python<'_>, text: &str) -> Result<TokensWithOffsets> {
        Ok(py.detach(|| self.inner.encode_reference(text))?)
    }

    /// Whether the exact byte-level BPE fast path is in use for this tokenizer.
    #[getter]
    fn is_fast(&self) -> bool {
        self.inner.is_fast()
    }
}

/// A chat template: built in (rendered in Rust) or Jinja (rendered by minijinja).
#[pyclass(frozen, module = "seqpack._seqpack")]
pub struct NativeTemplate {
    inner: Arc<Template>,
}

impl NativeTokenizer {
    pub(crate) fn inner(&self) -> &Tokenizer {
        &self.inner
    }
}

impl NativeTemplate {
    pub(crate) fn inner(&self) -> &Template {
        &self.inner
    }
}

#[pymethods]
impl NativeTemplate {
    /// The built-in's name, or `jinja:` and the blake3 of the template.
    #[getter]
    fn fingerprint(&self) -> String {
        self.inner.fingerprint()
    }

    #[staticmethod]
    fn builtin(name: &str) -> Result<Self> {
        Ok(Self { inner: Arc::new(Template::from_name(name)?) })
    }

    #[staticmethod]
    fn jinja(source: &str, end_of_turn: &str, bos_token: &str, eos_token: &str) -> Result<Self> {
        let template = JinjaTemplate::new(source, end_of_turn, bos_token, eos_token)?;
        Ok(Self { inner: Arc::new(Template::Jinja(Box::new(template))) })
    }

    /// Render one record: its text and every span as (message or None, start, `body_start`,
    /// `body_end`, end) in characters.
    #[pyo3(signature = (record, *, format = "auto", mapping = None))]
    fn render(
        &self,
        record: &Bound<'_, PyAny>,
        format: &str,
        mapping: Option<&Bound<'_, PyAny>>,
    ) -> Result<(String, Vec<CharSpan>)> {
        let conversation = parse_one(record, format, mapping)?;
        let all: Vec<usize> = (0..conversation.messages.len()).collect();
        let rendered = self.inner.render(&conversation, &all)?;
        let spans = rendered.char_spans();
        Ok((rendered.text, spans))
    }

    /// The text of one record, every message kept, without locating messages (as
    /// `apply_chat_template(..., tokenize=False)` renders it).
    #[pyo3(signature = (record, *, add_generation_prompt = false, format = "auto", mapping = None))]
    fn render_text(
        &self,
        record: &Bound<'_, PyAny>,
        add_generation_prompt: bool,
        format: &str,
        mapping: Option<&Bound<'_, PyAny>>,
    ) -> Result<String> {
        let conversation = parse_one(record, format, mapping)?;
        Ok(self.inner.render_text(&conversation, add_generation_prompt)?)
    }

    /// The record normalised, as `OpenAI` messages plus tools (what `apply_chat_template` takes).
    #[staticmethod]
    #[pyo3(signature = (record, *, format = "auto", mapping = None))]
    fn normalise<'py>(
        py: Python<'py>,
        record: &Bound<'py, PyAny>,
        format: &str,
        mapping: Option<&Bound<'py, PyAny>>,
    ) -> Result<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        let conversation = parse_one(record, format, mapping)?;
        Ok((to_python(py, &openai_messages(&conversation))?, to_python(py, &conversation.tools)?))
    }
}

fn parse_one(
    record: &Bound<'_, PyAny>,
    format: &str,
    mapping: Option<&Bound<'_, PyAny>>,
) -> Result<seqpack_core::conversation::Conversation> {
    let format: Format = format.parse()?;
    let mapping: Mapping = mapping.map(options).transpose()?.unwrap_or_default();
    let raw = raw_record(0, record);
    Ok(parse_record(&raw.value?, format, &mapping, raw.origin)?)
}

/// One Python object as a record's JSON, or why it is not JSON-like data.
pub(crate) fn raw_record(record: usize, object: &Bound<'_, PyAny>) -> RawRecord {
    let origin = Origin { record, line: None };
    let value = pythonize::depythonize::<serde_json::Value>(object)
        .map_err(|e| origin.error("", format!("is not JSON-like data ({e})")));
    RawRecord { origin, value }
}

/// Encode records (Python objects, converted while attached, or a file, read while detached):
/// flat samples as numpy arrays and the reports.
/// Python objects are numbered from `first_record` (a chunk of a larger input). With
/// `lines`, each record is the raw bytes of a `.jsonl` line and `lines` their line numbers:
/// parsed (in parallel) as the file reader parses them, so errors and reports are the same.
#[pyfunction]
#[pyo3(signature = (records, path, tokenizer, template, encode_options, first_record = 0, lines = None))]
#[allow(clippy::too_many_arguments, reason = "one binding mirrors the core call")]
pub fn encode_records<'py>(
    py: Python<'py>,
    records: Option<Bound<'py, PyList>>,
    path: Option<String>,
    tokenizer: &NativeTokenizer,
    template: &NativeTemplate,
    encode_options: &Bound<'py, PyAny>,
    first_record: usize,
    lines: Option<Vec<usize>>,
) -> Result<Bound<'py, PyDict>> {
    let encode_options: EncodeOptions = options(encode_options)?;
    let raw: Vec<RawRecord> = match (records, path.as_deref(), lines) {
        (Some(list), _, Some(lines)) => {
            let texts: Vec<Vec<u8>> = list.iter().map(|item| item.extract::<Vec<u8>>()).collect::<PyResult<_>>()?;
            if texts.len() != lines.len() {
                return Err(Error::InvalidOption {
                    name: "lines",
                    message: format!("{} line numbers for {} lines", lines.len(), texts.len()),
                }
                .into());
            }
            py.detach(|| {
                use rayon::prelude::*;
                seqpack_core::threads::install(|| {
                    texts
                        .par_iter()
                        .zip(&lines)
                        .enumerate()
                        .map(|(k, (text, &line))| {
                            parse_line(Origin { record: first_record + k, line: Some(line) }, text)
                        })
                        .collect()
                })
            })
        }
        (Some(list), _, None) => {
            list.iter().enumerate().map(|(index, object)| raw_record(first_record + index, &object)).collect()
        }
        (None, Some(path), _) => py.detach(|| read_records(std::path::Path::new(path)))?,
        (None, None, _) => Vec::new(),
    };
    let (tokenizer, template) = (tokenizer.inner.clone(), template.inner.clone());
    let encoded = py.detach(move || encode(raw, &template, &tokenizer, &encode_options)).map_err(|e| match &path {
        Some(path) => e.in_file(std::path::Path::new(path)),
        None => e,
    })?;
    let flat = encoded.flat;
    let dict = PyDict::new(py);
    dict.set_item("tokens", flat.tokens.into_pyarray(py))?;
    dict.set_item("labels", flat.labels.into_pyarray(py))?;
    dict.set_item("offsets", flat.offsets.into_pyarray(py))?;
    dict.set_item("sample_record", flat.sample_record.into_pyarray(py))?;
    dict.set_item("sample_window", flat.sample_window.into_pyarray(py))?;
    dict.set_item("reports", NativeReports { inner: encoded.reports })?;
    Ok(dict)
}

/// Per-record reports, kept in Rust until asked for: building a hundred thousand Python
/// dicts costs more than encoding the records, so the Python report reads them on demand.
#[pyclass(frozen, module = "seqpack._seqpack")]
pub struct NativeReports {
    inner: Vec<RecordReport>,
}

#[pymethods]
impl NativeReports {
    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// Every report as a dict (the fields of `seqpack.RecordReport`).
    fn records<'py>(&self, py: Python<'py>) -> Result<Bound<'py, PyAny>> {
        to_python(py, &self.inner)
    }

    /// The reports as a token store keeps them (`report.jsonl`): one JSON object per line.
    fn to_jsonl<'py>(&self, py: Python<'py>) -> Result<Bound<'py, PyBytes>> {
        let text =
            report_lines(&self.inner).map_err(|e| Error::InvalidOption { name: "reports", message: e.to_string() })?;
        Ok(PyBytes::new(py, &text))
    }

    /// Totals over all records (the fields of `seqpack.ReportSummary`).
    fn summary<'py>(&self, py: Python<'py>) -> Result<Bound<'py, PyAny>> {
        to_python(py, &ReportSummary::of(&self.inner))
    }
}

/// Where the records of a `.jsonl` text lie, as the file reader finds them: starts, ends and
/// line numbers (int64) of the lines that are not blank. A part of a file (whole lines) is
/// numbered after `lines_before`; a byte order mark is skipped only at the `file_start`.
#[pyfunction]
#[pyo3(signature = (data, lines_before=0, file_start=true))]
pub fn jsonl_lines<'py>(
    py: Python<'py>,
    data: &[u8],
    lines_before: usize,
    file_start: bool,
) -> (Bound<'py, PyAny>, Bound<'py, PyAny>, Bound<'py, PyAny>) {
    let found = py.detach(|| find_lines(data, lines_before, file_start));
    let column = |pick: fn(&(usize, usize, usize)) -> usize| -> Vec<i64> {
        found.iter().map(|line| i64::try_from(pick(line)).unwrap_or(i64::MAX)).collect()
    };
    (
        column(|l| l.0).into_pyarray(py).into_any(),
        column(|l| l.1).into_pyarray(py).into_any(),
        column(|l| l.2).into_pyarray(py).into_any(),
    )
}
