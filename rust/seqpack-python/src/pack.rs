//! Bindings for the packing half: plan from lengths, pack a flat token array.

use crate::convert::{options, to_python};
use crate::errors::{Failure, Result};
use numpy::{Element, IntoPyArray, PyArray1, PyArrayMethods, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use seqpack_core::pack::layout::{TokenIn, TokenOut};
use seqpack_core::pack::{
    lengths_from, materialize, plan, IdDtype, Labels, LayoutOptions, Packed, Plan, PlanOptions, Sequences,
};
use seqpack_core::Error;

/// Plan rows from lengths alone.
#[pyfunction]
pub fn plan_lengths<'py>(
    py: Python<'py>,
    lengths: PyReadonlyArray1<'py, i64>,
    plan_options: &Bound<'py, PyAny>,
) -> Result<Bound<'py, PyDict>> {
    let plan_options: PlanOptions = options(plan_options)?;
    let raw = lengths.as_slice().map_err(PyErr::from)?;
    let plan = py.detach(|| plan(&lengths_from(raw)?, &plan_options))?;
    let columns = plan.columns();
    let dict = PyDict::new(py);
    dict.set_item("source_index", columns.source_index.into_pyarray(py))?;
    dict.set_item("chunk_index", columns.chunk_index.into_pyarray(py))?;
    dict.set_item("source_start", columns.source_start.into_pyarray(py))?;
    dict.set_item("seq_lens", columns.seq_lens.into_pyarray(py))?;
    dict.set_item("row", columns.row.into_pyarray(py))?;
    dict.set_item("row_offsets", columns.row_offsets.into_pyarray(py))?;
    add_report(py, &dict, &plan)?;
    Ok(dict)
}

/// The plan's figures and events, for `PackStats` and `Event`.
fn add_report(py: Python<'_>, dict: &Bound<'_, PyDict>, plan: &Plan) -> Result<()> {
    dict.set_item("stats", to_python(py, &plan.stats())?)?;
    dict.set_item("events", to_python(py, &plan.events)?)?;
    Ok(())
}

/// Flat tokens as int32 or int64, borrowed from numpy for the duration of the call.
enum TokensIn<'py> {
    I32(PyReadonlyArray1<'py, i32>),
    I64(PyReadonlyArray1<'py, i64>),
}

/// Plan and materialise packed rows from a flat token array and offsets.
#[pyfunction]
#[pyo3(signature = (tokens, offsets, labels, plan_options, layout_options))]
pub fn pack_flat<'py>(
    py: Python<'py>,
    tokens: &Bound<'py, PyAny>,
    offsets: PyReadonlyArray1<'py, i64>,
    labels: Option<PyReadonlyArray1<'py, i64>>,
    plan_options: &Bound<'py, PyAny>,
    layout_options: &Bound<'py, PyAny>,
) -> Result<Bound<'py, PyDict>> {
    let plan_options: PlanOptions = options(plan_options)?;
    let layout: LayoutOptions = options(layout_options)?;
    let tokens = if let Ok(array) = tokens.cast::<PyArray1<i64>>() {
        TokensIn::I64(array.readonly())
    } else if let Ok(array) = tokens.cast::<PyArray1<i32>>() {
        TokensIn::I32(array.readonly())
    } else {
        return Err(Failure::Core(Error::InvalidOption {
            name: "tokens",
            message: "the flat token array must be a 1-D int32 or int64 numpy array".into(),
        }));
    };
    let offsets = offsets.as_slice().map_err(PyErr::from)?;
    let labels = labels.as_ref().map(PyReadonlyArray1::as_slice).transpose().map_err(PyErr::from)?;
    let input = Input { offsets, labels, plan_options: &plan_options, layout: &layout };
    match &tokens {
        TokensIn::I64(array) => input.pack(py, array.as_slice().map_err(PyErr::from)?),
        TokensIn::I32(array) => input.pack(py, array.as_slice().map_err(PyErr::from)?),
    }
}

/// Everything `pack_flat` takes besides the tokens.
struct Input<'a> {
    offsets: &'a [i64],
    labels: Option<&'a [i64]>,
    plan_options: &'a PlanOptions,
    layout: &'a LayoutOptions,
}

impl Input<'_> {
    /// Plan and materialise with the interpreter detached, in the requested output dtype.
    fn pack<'py, I: TokenIn>(&self, py: Python<'py>, tokens: &[I]) -> Result<Bound<'py, PyDict>> {
        match self.layout.dtype {
            IdDtype::Int64 => {
                let (plan, packed) = py.detach(|| self.run::<I, i64>(tokens))?;
                packed_dict(py, &plan, packed)
            }
            IdDtype::Int32 => {
                let (plan, packed) = py.detach(|| self.run::<I, i32>(tokens))?;
                packed_dict(py, &plan, packed)
            }
        }
    }

    fn run<I: TokenIn, O: TokenOut>(&self, tokens: &[I]) -> seqpack_core::Result<(Plan, Packed<O>)> {
        let labels = self.labels.map_or(Labels::Tokens, Labels::Given);
        let sequences = Sequences::new(tokens, self.offsets, labels)?;
        let plan = plan(&sequences.lengths()?, self.plan_options)?;
        let packed = materialize(&sequences, &plan, self.layout)?;
        Ok((plan, packed))
    }
}

/// The packed arrays as numpy arrays over the Rust buffers (no copy), plus the report.
fn packed_dict<'py, O: Element>(py: Python<'py>, plan: &Plan, packed: Packed<O>) -> Result<Bound<'py, PyDict>> {
    let shape = [packed.rows, packed.max_length];
    let dict = PyDict::new(py);
    dict.set_item("input_ids", packed.input_ids.into_pyarray(py).reshape(shape)?)?;
    dict.set_item("labels", packed.labels.into_pyarray(py).reshape(shape)?)?;
    dict.set_item("position_ids", packed.position_ids.into_pyarray(py).reshape(shape)?)?;
    dict.set_item("segment_ids", packed.segment_ids.into_pyarray(py).reshape(shape)?)?;
    match packed.loss_weights {
        Some(weights) => dict.set_item("loss_weights", weights.into_pyarray(py).reshape(shape)?)?,
        None => dict.set_item("loss_weights", py.None())?,
    }
    dict.set_item("row_offsets", packed.row_offsets.into_pyarray(py))?;
    dict.set_item("cu_seqlens", packed.cu_seqlens.into_pyarray(py))?;
    dict.set_item("seq_lens", packed.seq_lens.into_pyarray(py))?;
    dict.set_item("source_index", packed.source_index.into_pyarray(py))?;
    dict.set_item("chunk_index", packed.chunk_index.into_pyarray(py))?;
    dict.set_item("source_start", packed.source_start.into_pyarray(py))?;
    dict.set_item("max_seqlen", packed.max_seqlen)?;
    add_report(py, &dict, plan)?;
    Ok(dict)
}
