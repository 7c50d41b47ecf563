//! Bindings for the conversation path: tokenizer and template handles, record encoding.

use crate::{to_py, TokensOut};
use numpy::IntoPyArray;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use seqpack_core::chat::{parse_record, read_records, Format, Mapping, Origin, Role, RoleAlias};
use seqpack_core::encode::{encode_all, CutKeep, EncodeOptions, OnError, Parsed, RecordReport, Sample, Train};
use seqpack_core::template::{openai_messages, JinjaTemplate, Template};
use seqpack_core::tokenize::{Tokenizer, TokensWithOffsets};
use seqpack_core::Error;
use std::sync::Arc;

/// A loaded `tokenizer.json`, shared by every call that uses it.
#[pyclass(frozen, module = "seqpack._seqpack")]
pub struct NativeTokenizer {
    pub inner: Arc<Tokenizer>,
}

#[pymethods]
impl NativeTokenizer {
    #[new]
    fn new(py: Python<'_>, json: &str) -> PyResult<Self> {
        let inner = py.detach(|| Tokenizer::from_json(json)).map_err(|e| to_py(py, e))?;
        Ok(Self { inner: Arc::new(inner) })
    }

    #[getter]
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Token ids and byte offsets of `text` (no special tokens added).
    fn encode(&self, py: Python<'_>, text: &str) -> PyResult<TokensWithOffsets> {
        py.detach(|| self.inner.encode(text)).map_err(|e| to_py(py, e))
    }

    /// The same, always through the `tokenizers` library (the reference for the fast path).
    fn encode_reference(&self, py: Python<'_>, text: &str) -> PyResult<TokensWithOffsets> {
        py.detach(|| self.inner.encode_reference(text)).map_err(|e| to_py(py, e))
    }

    /// Whether the exact byte-level BPE fast path is in use for this tokenizer.
    #[getter]
    fn is_fast(&self) -> bool {
        self.inner.is_fast()
    }
}

/// (message or None, start, body_start, body_end, end) in characters.
type SpanTuple = (Option<usize>, usize, usize, usize, usize);

/// A chat template: built in (rendered in Rust) or Jinja (rendered by minijinja).
#[pyclass(frozen, module = "seqpack._seqpack")]
pub struct NativeTemplate {
    pub inner: Arc<Template>,
}

#[pymethods]
impl NativeTemplate {
    #[staticmethod]
    fn builtin(py: Python<'_>, name: &str) -> PyResult<Self> {
        Template::from_name(name).map(|t| Self { inner: Arc::new(t) }).map_err(|e| to_py(py, e))
    }

    #[staticmethod]
    fn jinja(py: Python<'_>, source: &str, end_of_turn: &str, bos_token: &str, eos_token: &str) -> PyResult<Self> {
        JinjaTemplate::new(source, end_of_turn, bos_token, eos_token)
            .map(|t| Self { inner: Arc::new(Template::Jinja(Box::new(t))) })
            .map_err(|e| to_py(py, e))
    }

    /// Render one record: (text, [(message or None, start, body_start, body_end, end)]) with
    /// character (not byte) offsets.
    #[pyo3(signature = (record, *, format = "auto", mapping = None))]
    fn render<'py>(
        &self,
        py: Python<'py>,
        record: &Bound<'py, PyAny>,
        format: &str,
        mapping: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<(String, Vec<SpanTuple>)> {
        let conversation = parse_one(py, record, format, mapping)?;
        let all: Vec<usize> = (0..conversation.messages.len()).collect();
        let rendered = self.inner.render(&conversation, &all).map_err(|e| to_py(py, e))?;
        let chars = |byte: usize| rendered.text[..byte].chars().count();
        let spans = rendered
            .spans
            .iter()
            .map(|s| (s.message, chars(s.start), chars(s.body_start), chars(s.body_end), chars(s.end)))
            .collect();
        Ok((rendered.text, spans))
    }

    /// The record normalised, as OpenAI messages plus tools (what `apply_chat_template` takes).
    #[staticmethod]
    #[pyo3(signature = (record, *, format = "auto", mapping = None))]
    fn normalise<'py>(
        py: Python<'py>,
        record: &Bound<'py, PyAny>,
        format: &str,
        mapping: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        let conversation = parse_one(py, record, format, mapping)?;
        let messages = pythonize::pythonize(py, &openai_messages(&conversation))
            .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))?;
        let tools = pythonize::pythonize(py, &conversation.tools)
            .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))?;
        Ok((messages, tools))
    }
}

fn parse_one(
    py: Python<'_>,
    record: &Bound<'_, PyAny>,
    format: &str,
    mapping: Option<&Bound<'_, PyDict>>,
) -> PyResult<seqpack_core::chat::Conversation> {
    let format = Format::from_name(format).map_err(|e| to_py(py, e))?;
    let mapping = mapping_from(py, mapping)?;
    let origin = Origin { record: 0, line: None };
    let value = to_json(record, origin).map_err(|e| to_py(py, e))?;
    parse_record(&value, format, &mapping, origin).map_err(|e| to_py(py, e))
}

fn to_json(object: &Bound<'_, PyAny>, origin: Origin) -> Result<serde_json::Value, Error> {
    pythonize::depythonize::<serde_json::Value>(object)
        .map_err(|e| origin.error("", format!("is not JSON-like data ({e})")))
}

fn mapping_from(py: Python<'_>, mapping: Option<&Bound<'_, PyDict>>) -> PyResult<Mapping> {
    let mut out = Mapping::default();
    let Some(mapping) = mapping else { return Ok(out) };
    let bad = |message: String| to_py(py, Error::InvalidOption { name: "mapping", message });
    for (key, value) in mapping.iter() {
        let key: String = key.extract().map_err(|_| bad("keys must be strings".into()))?;
        if key == "roles" {
            let roles = value.cast::<PyDict>().map_err(|_| bad("'roles' must map spellings to roles".into()))?;
            for (spelling, role) in roles.iter() {
                let spelling: String = spelling.extract().map_err(|_| bad("role spellings must be strings".into()))?;
                let role: String = role.extract().map_err(|_| bad("roles must be strings".into()))?;
                let alias = match role.as_str() {
                    "function_call" => RoleAlias::FunctionCall,
                    "observation" => RoleAlias::Observation,
                    other => RoleAlias::Role(Role::from_name(other).ok_or_else(|| {
                        bad(format!(
                            "role '{other}' for '{spelling}' is not one of {}, function_call, observation",
                            Role::NAMES
                        ))
                    })?),
                };
                out.roles.push((spelling, alias));
            }
            continue;
        }
        let value: String = value.extract().map_err(|_| bad(format!("'{key}' must name a field (a string)")))?;
        let slot = match key.as_str() {
            "messages" => &mut out.messages,
            "conversations" => &mut out.conversations,
            "role" => &mut out.role,
            "content" => &mut out.content,
            "from" => &mut out.sharegpt_role,
            "value" => &mut out.sharegpt_content,
            "system" => &mut out.system,
            "tools" => &mut out.tools,
            "instruction" => &mut out.instruction,
            "input" => &mut out.input,
            "output" => &mut out.output,
            "history" => &mut out.history,
            other => {
                return Err(bad(format!(
                    "unknown key '{other}'; expected messages, conversations, role, content, from, \
                     value, system, tools, instruction, input, output, history or roles"
                )))
            }
        };
        *slot = value;
    }
    Ok(out)
}

/// Options of the conversation path, as the Python layer passes them.
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
pub struct ConversationArgs {
    pub format: String,
    pub max_length: i64,
    pub keep_first_turn: bool,
    pub overflow: String,
    pub cut_keep: String,
    pub train_on_cut_turns: bool,
    /// Role names to train on; `None` = every token.
    pub train_roles: Option<Vec<String>>,
    pub min_trainable_tokens: usize,
    pub on_error: String,
}

fn encode_options(args: &ConversationArgs) -> Result<(EncodeOptions, Format, OnError), Error> {
    let invalid = |name: &'static str, message: String| Error::InvalidOption { name, message };
    let max_length = usize::try_from(args.max_length)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| invalid("max_length", format!("must be a positive integer, got {}", args.max_length)))?;
    let split = match args.overflow.as_str() {
        "truncate" => false,
        "split" => true,
        other => return Err(invalid("overflow", format!("unknown policy '{other}'; expected 'truncate' or 'split'"))),
    };
    let train = match &args.train_roles {
        None => Train::All,
        Some(names) => Train::Roles(
            names
                .iter()
                .map(|n| {
                    Role::from_name(n).ok_or_else(|| invalid("train_on", format!("role '{n}' is not one of {}", Role::NAMES)))
                })
                .collect::<Result<_, _>>()?,
        ),
    };
    let on_error = match args.on_error.as_str() {
        "raise" => OnError::Raise,
        "skip" => OnError::Skip,
        other => return Err(invalid("on_error", format!("unknown policy '{other}'; expected 'raise' or 'skip'"))),
    };
    let options = EncodeOptions {
        max_length,
        keep_first_turn: args.keep_first_turn,
        split,
        cut_keep: CutKeep::from_name(&args.cut_keep)?,
        train_on_cut_turns: args.train_on_cut_turns,
        train,
        min_trainable_tokens: args.min_trainable_tokens,
    };
    Ok((options, Format::from_name(&args.format)?, on_error))
}

/// Records from Python objects (converted while attached) or a file (read while detached).
pub enum Source<'py> {
    Objects(Bound<'py, PyList>),
    File(String),
}

/// Encode records into samples; also returns the reports.
pub fn encode_source(
    py: Python<'_>,
    source: Source<'_>,
    tokenizer: &NativeTokenizer,
    template: &NativeTemplate,
    mapping: Option<&Bound<'_, PyDict>>,
    args: &ConversationArgs,
) -> PyResult<(Vec<Sample>, Vec<RecordReport>)> {
    let (options, format, on_error) = encode_options(args).map_err(|e| to_py(py, e))?;
    let mapping = mapping_from(py, mapping)?;
    let raw: Vec<(Origin, Result<serde_json::Value, Error>)> = match source {
        Source::Objects(list) => list
            .iter()
            .enumerate()
            .map(|(record, object)| {
                let origin = Origin { record, line: None };
                (origin, to_json(&object, origin))
            })
            .collect(),
        Source::File(path) => py
            .detach(|| read_records(std::path::Path::new(&path)))
            .map_err(|e| to_py(py, e))?
            .into_iter()
            .map(|r| (r.origin, r.value))
            .collect(),
    };
    let tokenizer = tokenizer.inner.clone();
    let template = template.inner.clone();
    py.detach(move || {
        use rayon::prelude::*;
        let parsed: Vec<Parsed> = raw
            .into_par_iter()
            .map(|(origin, value)| Parsed {
                record: origin.record,
                line: origin.line,
                conversation: value.and_then(|v| parse_record(&v, format, &mapping, origin)),
            })
            .collect();
        if parsed.is_empty() {
            return Err(Error::EmptyInput);
        }
        encode_all(&parsed, &template, &tokenizer, &options, on_error)
    })
    .map_err(|e| to_py(py, e))
}

/// Per-record reports, kept in Rust until asked for: building a hundred thousand Python
/// dicts costs more than encoding the records, so `pack()` returns this handle and the
/// Python report materialises records on first access.
#[pyclass(frozen, module = "seqpack._seqpack")]
pub struct NativeReports {
    pub inner: Vec<RecordReport>,
}

const ROLE_NAMES: [&str; 5] = ["system", "user", "assistant", "tool", "template"];

#[pymethods]
impl NativeReports {
    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// Every report as a dict (the fields of `seqpack.RecordReport`).
    fn records<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        reports_list(py, &self.inner)
    }

    /// Records per status.
    fn counts(&self) -> std::collections::BTreeMap<&'static str, usize> {
        let mut out = std::collections::BTreeMap::new();
        for r in &self.inner {
            *out.entry(r.status.name()).or_default() += 1;
        }
        out
    }

    /// Records per reason.
    fn reasons(&self) -> std::collections::BTreeMap<String, usize> {
        let mut out = std::collections::BTreeMap::new();
        for r in &self.inner {
            *out.entry(r.reason.clone()).or_default() += 1;
        }
        out
    }

    /// Tokens removed per role (and by the template's own text), over all records.
    fn tokens_removed(&self) -> Vec<(&'static str, i64)> {
        let mut totals = [0i64; 5];
        for r in &self.inner {
            for (total, removed) in totals.iter_mut().zip(r.tokens_removed) {
                *total += removed;
            }
        }
        ROLE_NAMES.iter().copied().zip(totals).collect()
    }
}

pub fn reports_list<'py>(py: Python<'py>, reports: &[RecordReport]) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for r in reports {
        let dict = PyDict::new(py);
        dict.set_item("record", r.record)?;
        dict.set_item("line", r.line)?;
        dict.set_item("status", r.status.name())?;
        dict.set_item("reason", &r.reason)?;
        dict.set_item("message", &r.message)?;
        dict.set_item("dropped_messages", &r.dropped_messages)?;
        dict.set_item("cut_messages", &r.cut_messages)?;
        let removed = PyDict::new(py);
        for (slot, role) in ROLE_NAMES.iter().enumerate() {
            removed.set_item(role, r.tokens_removed[slot])?;
        }
        dict.set_item("tokens_removed", removed)?;
        dict.set_item("system_kept", r.system_kept)?;
        dict.set_item("first_user_kept", r.first_user_kept)?;
        dict.set_item("tokens_before", r.tokens_before)?;
        dict.set_item("tokens_after", r.tokens_after)?;
        dict.set_item("trained_before", r.trained_before)?;
        dict.set_item("trained_after", r.trained_after)?;
        dict.set_item("windows", r.windows)?;
        let by_role = PyDict::new(py);
        for (slot, role) in ROLE_NAMES.iter().enumerate() {
            by_role.set_item(role, r.role_tokens[slot])?;
        }
        dict.set_item("role_tokens", by_role)?;
        dict.set_item("turns", r.turns)?;
        dict.set_item("boundary_merges", r.boundary_merges)?;
        list.append(dict)?;
    }
    Ok(list)
}

/// Flatten samples into int32 tokens, int64 labels and offsets, plus their origins; the
/// copies run in parallel, one sample per task.
pub fn flatten_samples(samples: &[Sample]) -> TokensOut {
    use rayon::prelude::*;
    let mut offsets = Vec::with_capacity(samples.len() + 1);
    offsets.push(0usize);
    for sample in samples {
        offsets.push(offsets.last().copied().unwrap_or(0) + sample.tokens.len());
    }
    let total = offsets.last().copied().unwrap_or(0);
    let mut tokens = vec![0i32; total];
    let mut labels = vec![0i64; total];
    let mut token_slices = Vec::with_capacity(samples.len());
    let mut label_slices = Vec::with_capacity(samples.len());
    let (mut token_rest, mut label_rest) = (&mut tokens[..], &mut labels[..]);
    for sample in samples {
        let (head, tail) = std::mem::take(&mut token_rest).split_at_mut(sample.tokens.len());
        token_slices.push(head);
        token_rest = tail;
        let (head, tail) = std::mem::take(&mut label_rest).split_at_mut(sample.labels.len());
        label_slices.push(head);
        label_rest = tail;
    }
    token_slices
        .into_par_iter()
        .zip(label_slices)
        .zip(samples)
        .with_min_len(64)
        .for_each(|((token_out, label_out), sample)| {
            for (cell, &token) in token_out.iter_mut().zip(&sample.tokens) {
                *cell = token as i32;
            }
            label_out.copy_from_slice(&sample.labels);
        });
    TokensOut {
        tokens,
        labels,
        offsets,
        sample_record: samples.iter().map(|s| s.record as i64).collect(),
        sample_window: samples.iter().map(|s| s.window as i64).collect(),
    }
}

/// Encode only: flat samples and reports.
#[pyfunction]
#[pyo3(signature = (records, path, tokenizer, template, mapping, args))]
pub fn encode_records<'py>(
    py: Python<'py>,
    records: Option<Bound<'py, PyList>>,
    path: Option<String>,
    tokenizer: &NativeTokenizer,
    template: &NativeTemplate,
    mapping: Option<Bound<'py, PyDict>>,
    args: ConversationArgs,
) -> PyResult<Bound<'py, PyDict>> {
    let source = match (records, path) {
        (Some(list), _) => Source::Objects(list),
        (None, Some(path)) => Source::File(path),
        (None, None) => return Err(to_py(py, Error::EmptyInput)),
    };
    let (samples, reports) = encode_source(py, source, tokenizer, template, mapping.as_ref(), &args)?;
    let flat = py.detach(|| flatten_samples(&samples));
    let dict = PyDict::new(py);
    dict.set_item("tokens", flat.tokens.into_pyarray(py))?;
    dict.set_item("labels", flat.labels.into_pyarray(py))?;
    dict.set_item("offsets", flat.offsets.iter().map(|&o| o as i64).collect::<Vec<_>>().into_pyarray(py))?;
    dict.set_item("sample_record", flat.sample_record.into_pyarray(py))?;
    dict.set_item("sample_window", flat.sample_window.into_pyarray(py))?;
    dict.set_item("reports", NativeReports { inner: reports })?;
    Ok(dict)
}
