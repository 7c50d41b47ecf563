//! Bindings for the token store: a writer that takes token chunks, record chunks (Python
//! objects) or whole files (read and encoded in Rust, chunk by chunk), and the checks a
//! store passes before it is opened.

use crate::conversation::{raw_record, NativeTemplate, NativeTokenizer};
use crate::convert::{options, to_python};
use crate::errors::{Failure, Result};
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use seqpack_core::conversation::{EncodeOptions, RawRecord};
use seqpack_core::pack::layout::TokenIn;
use seqpack_core::store::format::{check, check_offsets};
use seqpack_core::store::writer::{Chunk, StoreWriter};
use seqpack_core::store::{encode_file_into, encode_into};
use seqpack_core::Error;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// A store being written. The writer lives behind a mutex so the handle can be shared (and
/// finished once); a handle dropped unfinished removes its staging folder.
#[pyclass(frozen, module = "seqpack._seqpack")]
pub struct NativeStoreWriter {
    inner: Mutex<Option<StoreWriter>>,
}

/// Counts of what one call appended: (records, samples).
type Appended = (usize, usize);

impl NativeStoreWriter {
    fn with<T>(&self, run: impl FnOnce(&mut StoreWriter) -> seqpack_core::Result<T>) -> Result<T> {
        let mut guard = self.inner.lock().map_err(|_| Failure::Core(closed()))?;
        let writer = guard.as_mut().ok_or_else(|| Failure::Core(closed()))?;
        Ok(run(writer)?)
    }
}

fn closed() -> Error {
    Error::Io { path: "token store".into(), message: "the writer is already finished or aborted".into() }
}

/// Append a chunk of token sequences (each its own record).
fn append_chunk<T: TokenIn, L: TokenIn>(
    writer: &NativeStoreWriter,
    py: Python<'_>,
    chunk: &Chunk<'_, T, L>,
) -> Result<usize> {
    py.detach(|| writer.with(|w| w.append(chunk)))?;
    writer.with(|w| {
        w.add_records(chunk.sample_record.len() as u64);
        Ok(chunk.sample_record.len())
    })
}

impl NativeStoreWriter {
    /// Append one encoded chunk whose tokens and labels share a dtype, with its report lines.
    #[allow(clippy::too_many_arguments, reason = "one encoded chunk, as append_encoded takes it")]
    fn append_with_reports<T: TokenIn + numpy::Element>(
        &self,
        py: Python<'_>,
        tokens: &Bound<'_, PyArray1<T>>,
        labels: &Bound<'_, PyArray1<T>>,
        offsets: &[i64],
        sample_record: &[i64],
        sample_window: &[i64],
        reports: &[u8],
        records: u64,
    ) -> Result<usize> {
        let (tokens, labels) = (tokens.readonly(), labels.readonly());
        let chunk = Chunk {
            tokens: tokens.as_slice().map_err(PyErr::from)?,
            offsets,
            labels: Some(labels.as_slice().map_err(PyErr::from)?),
            sample_record,
            sample_window,
        };
        py.detach(|| {
            self.with(|w| {
                w.append(&chunk)?;
                w.append_report_lines(reports)?;
                w.add_records(records);
                Ok(chunk.sample_record.len())
            })
        })
    }
}

#[pymethods]
impl NativeStoreWriter {
    #[new]
    fn new(path: &str, kind: &str, overwrite: bool) -> Result<Self> {
        Ok(Self { inner: Mutex::new(Some(StoreWriter::create(std::path::Path::new(path), kind, overwrite)?)) })
    }

    /// Append token sequences: a flat int32/int64 array, local offsets, optional labels.
    #[pyo3(signature = (tokens, offsets, labels, sample_record, sample_window))]
    fn append_tokens(
        &self,
        py: Python<'_>,
        tokens: &Bound<'_, PyAny>,
        offsets: PyReadonlyArray1<'_, i64>,
        labels: Option<PyReadonlyArray1<'_, i64>>,
        sample_record: PyReadonlyArray1<'_, i64>,
        sample_window: PyReadonlyArray1<'_, i64>,
    ) -> Result<usize> {
        let offsets = offsets.as_slice().map_err(PyErr::from)?;
        let labels = labels.as_ref().map(PyReadonlyArray1::as_slice).transpose().map_err(PyErr::from)?;
        let sample_record = sample_record.as_slice().map_err(PyErr::from)?;
        let sample_window = sample_window.as_slice().map_err(PyErr::from)?;
        if let Ok(array) = tokens.cast::<PyArray1<i64>>() {
            let readonly = array.readonly();
            let tokens = readonly.as_slice().map_err(PyErr::from)?;
            append_chunk(self, py, &Chunk { tokens, offsets, labels, sample_record, sample_window })
        } else if let Ok(array) = tokens.cast::<PyArray1<i32>>() {
            let readonly = array.readonly();
            let tokens = readonly.as_slice().map_err(PyErr::from)?;
            append_chunk(self, py, &Chunk { tokens, offsets, labels, sample_record, sample_window })
        } else {
            Err(Failure::Core(Error::InvalidOption {
                name: "tokens",
                message: "the flat token array must be a 1-D int32 or int64 numpy array".into(),
            }))
        }
    }

    /// Append a chunk encoded elsewhere (`encode_records` in another process): its samples,
    /// its report lines (`NativeReports.to_jsonl`) and the number of records it covers.
    #[pyo3(signature = (tokens, offsets, labels, sample_record, sample_window, reports, records))]
    #[allow(clippy::too_many_arguments, reason = "one encoded chunk, as encode_records returns it")]
    fn append_encoded(
        &self,
        py: Python<'_>,
        tokens: &Bound<'_, PyAny>,
        offsets: PyReadonlyArray1<'_, i64>,
        labels: &Bound<'_, PyAny>,
        sample_record: PyReadonlyArray1<'_, i64>,
        sample_window: PyReadonlyArray1<'_, i64>,
        reports: &[u8],
        records: u64,
    ) -> Result<usize> {
        let offsets = offsets.as_slice().map_err(PyErr::from)?;
        let sample_record = sample_record.as_slice().map_err(PyErr::from)?;
        let sample_window = sample_window.as_slice().map_err(PyErr::from)?;
        // int32 as Arrow's list<int32> columns hold them (no conversion), or int64.
        if let (Ok(tokens), Ok(labels)) = (tokens.cast::<PyArray1<i32>>(), labels.cast::<PyArray1<i32>>()) {
            return self.append_with_reports(
                py,
                tokens,
                labels,
                offsets,
                sample_record,
                sample_window,
                reports,
                records,
            );
        }
        if let (Ok(tokens), Ok(labels)) = (tokens.cast::<PyArray1<i64>>(), labels.cast::<PyArray1<i64>>()) {
            return self.append_with_reports(
                py,
                tokens,
                labels,
                offsets,
                sample_record,
                sample_window,
                reports,
                records,
            );
        }
        Err(Failure::Core(Error::InvalidOption {
            name: "tokens",
            message: "tokens and labels must be 1-D numpy arrays, both int32 or both int64".into(),
        }))
    }

    /// Encode chat records (Python objects, numbered from `first_record`) and append them.
    /// Returns (records, samples) appended.
    #[pyo3(signature = (records, first_record, tokenizer, template, encode_options))]
    fn encode_objects(
        &self,
        py: Python<'_>,
        records: &Bound<'_, PyList>,
        first_record: usize,
        tokenizer: &NativeTokenizer,
        template: &NativeTemplate,
        encode_options: &Bound<'_, PyAny>,
    ) -> Result<Appended> {
        let encode_options: EncodeOptions = options(encode_options)?;
        let raw: Vec<RawRecord> =
            records.iter().enumerate().map(|(k, object)| raw_record(first_record + k, &object)).collect();
        py.detach(|| self.with(|w| encode_into(w, raw, template.inner(), tokenizer.inner(), &encode_options)))
    }

    /// Read a `.json` / `.jsonl` file in chunks of `chunk_size` records, encode and append each
    /// before reading the next (memory bounded by the chunk). `progress(records_so_far)` is
    /// called after each chunk (and may raise, e.g. on Ctrl-C, to stop). Returns (records,
    /// samples) appended.
    #[pyo3(signature = (path, first_record, chunk_size, tokenizer, template, encode_options, progress = None))]
    #[allow(clippy::too_many_arguments, reason = "one binding call carries the whole file's work")]
    fn encode_file(
        &self,
        py: Python<'_>,
        path: &str,
        first_record: usize,
        chunk_size: usize,
        tokenizer: &NativeTokenizer,
        template: &NativeTemplate,
        encode_options: &Bound<'_, PyAny>,
        progress: Option<Py<PyAny>>,
    ) -> Result<Appended> {
        let encode_options: EncodeOptions = options(encode_options)?;
        let mut python_error: Option<PyErr> = None;
        let outcome = py.detach(|| {
            self.with(|writer| {
                let mut progress_error = |records: usize| -> seqpack_core::Result<()> {
                    let Some(callback) = &progress else { return Ok(()) };
                    let called = Python::attach(|py| {
                        py.check_signals()?;
                        callback.call1(py, (records,)).map(drop)
                    });
                    called.map_err(|error| {
                        python_error = Some(error);
                        Error::Io { path: path.into(), message: "stopped".into() }
                    })
                };
                encode_file_into(
                    writer,
                    std::path::Path::new(path),
                    first_record,
                    chunk_size,
                    template.inner(),
                    tokenizer.inner(),
                    &encode_options,
                    &mut progress_error,
                )
            })
        });
        match (outcome, python_error) {
            (_, Some(error)) => Err(Failure::Python(error)),
            (outcome, None) => outcome,
        }
    }

    /// Write the manifest (with `source`, a JSON text saying what produced the data) and move
    /// the store into place; returns the manifest as a dict.
    fn finish<'py>(&self, py: Python<'py>, source: &str) -> Result<Bound<'py, PyAny>> {
        let writer = self.inner.lock().map_err(|_| Failure::Core(closed()))?.take().ok_or(Failure::Core(closed()))?;
        let source: serde_json::Value = serde_json::from_str(source)
            .map_err(|e| Error::InvalidOption { name: "source", message: format!("not JSON ({e})") })?;
        let manifest = py.detach(|| writer.finish(source))?;
        to_python(py, &manifest)
    }

    /// Stop without a store: the staging folder is removed.
    fn abort(&self) -> Result<()> {
        drop(self.inner.lock().map_err(|_| Failure::Core(closed()))?.take());
        Ok(())
    }
}

/// Check a store's manifest against its files' sizes; returns the manifest as a dict.
#[pyfunction]
pub fn store_check<'py>(
    py: Python<'py>,
    path: &str,
    manifest_text: &str,
    sizes: BTreeMap<String, u64>,
) -> Result<Bound<'py, PyDict>> {
    let manifest = check(path, manifest_text, &sizes)?;
    Ok(to_python(py, &manifest)?.cast_into::<PyDict>().map_err(PyErr::from)?)
}

/// Check a store's offsets against its lengths and token count.
#[pyfunction]
pub fn store_check_offsets(
    py: Python<'_>,
    path: &str,
    offsets: PyReadonlyArray1<'_, i64>,
    lengths: PyReadonlyArray1<'_, u32>,
    tokens: u64,
) -> Result<()> {
    let offsets = offsets.as_slice().map_err(PyErr::from)?;
    let lengths = lengths.as_slice().map_err(PyErr::from)?;
    Ok(py.detach(|| check_offsets(path, offsets, lengths, tokens))?)
}
