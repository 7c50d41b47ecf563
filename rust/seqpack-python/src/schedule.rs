//! Bindings for the training schedule: plan once, then hand out each rank's micro-batch of
//! any (epoch, step), materialised from a memory-mapped store's arrays.

use crate::convert::{options, to_python};
use crate::errors::{Failure, Result};
use numpy::{IntoPyArray, PyArray1, PyArrayMethods, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use seqpack_core::pack::layout::{TokenIn, TokenOut};
use seqpack_core::pack::{
    materialize_flat, materialize_with, plan, source_weights, trained_tokens, IdDtype, Labels, LayoutOptions,
    LossWeighting, Plan, PlanOptions, Sequences,
};
use seqpack_core::schedule::{Balance, Schedule, ScheduleOptions, StepRow};
use seqpack_core::Error;
use std::sync::{Arc, Mutex};

/// A schedule over a store's lengths. Each process (`DataLoader` worker, rank) builds its own;
/// the plan is the same everywhere because it is a pure function of lengths and options.
#[pyclass(frozen, module = "seqpack._seqpack")]
pub struct NativeSchedule {
    inner: Schedule,
    /// The last epoch's order of rows, kept for the batches that follow.
    order: Mutex<Option<(u64, Arc<Vec<u32>>)>>,
    /// Per-sample loss weights over the whole plan, once asked for.
    weights: Mutex<Option<(LossWeighting, Arc<Vec<f32>>)>>,
}

impl NativeSchedule {
    fn order(&self, epoch: u64) -> Result<Arc<Vec<u32>>> {
        let mut cached = self.order.lock().map_err(|_| poisoned())?;
        if let Some((cached_epoch, order)) = cached.as_ref() {
            if *cached_epoch == epoch {
                return Ok(order.clone());
            }
        }
        let order = Arc::new(self.inner.epoch_order(epoch));
        *cached = Some((epoch, order.clone()));
        Ok(order)
    }
}

fn poisoned() -> Failure {
    Failure::Core(Error::InvalidOption { name: "schedule", message: "a previous call panicked".into() })
}

/// A store's arrays, borrowed for one call.
struct StoreArrays<'py> {
    tokens: PyReadonlyArray1<'py, u32>,
    offsets: PyReadonlyArray1<'py, i64>,
    trained: PyReadonlyArray1<'py, u8>,
    labels: Option<PyReadonlyArray1<'py, i32>>,
}

impl StoreArrays<'_> {
    fn sequences(&self) -> Result<Sequences<'_, u32>> {
        let tokens = self.tokens.as_slice().map_err(PyErr::from)?;
        let offsets = self.offsets.as_slice().map_err(PyErr::from)?;
        let labels = match &self.labels {
            Some(labels) => Labels::Given32(labels.as_slice().map_err(PyErr::from)?),
            None => Labels::Trained(self.trained.as_slice().map_err(PyErr::from)?),
        };
        // The store checked its offsets when it was opened: not again for every batch.
        Ok(Sequences { tokens, offsets, labels })
    }
}

#[pymethods]
impl NativeSchedule {
    #[new]
    fn new(py: Python<'_>, lengths: PyReadonlyArray1<'_, u32>, schedule_options: &Bound<'_, PyAny>) -> Result<Self> {
        let schedule_options: ScheduleOptions = options(schedule_options)?;
        let lengths = lengths.as_slice().map_err(PyErr::from)?;
        let inner = py.detach(|| Schedule::new(lengths, schedule_options))?;
        Ok(Self { inner, order: Mutex::new(None), weights: Mutex::new(None) })
    }

    #[getter]
    fn steps(&self) -> usize {
        self.inner.steps()
    }

    #[getter]
    fn rows(&self) -> usize {
        self.inner.rows()
    }

    #[getter]
    fn rows_per_step(&self) -> usize {
        self.inner.rows_per_step()
    }

    #[getter]
    fn dropped_rows_per_epoch(&self) -> usize {
        self.inner.dropped_rows_per_epoch()
    }

    #[getter]
    fn padding_rows_per_epoch(&self) -> usize {
        self.inner.padding_rows_per_epoch()
    }

    /// The plan's figures and its events (sequences cut or dropped by the overlong policy).
    fn report<'py>(&self, py: Python<'py>) -> Result<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        dict.set_item("stats", to_python(py, &self.inner.plan.stats())?)?;
        dict.set_item("events", to_python(py, &self.inner.plan.events)?)?;
        Ok(dict)
    }

    /// The rows `rank` gets in `step` of `epoch`, as plan row indices (-1: an empty row).
    fn rank_rows<'py>(&self, py: Python<'py>, epoch: u64, step: usize, rank: usize) -> Result<Bound<'py, PyAny>> {
        let order = self.order(epoch)?;
        let rows = self.inner.rank_rows(&order, step, rank)?;
        let rows: Vec<i64> = rows.into_iter().map(|r| r.map_or(-1, i64::from)).collect();
        Ok(rows.into_pyarray(py).into_any())
    }

    /// The sample of every piece of plan row `row`, in slot order.
    fn row_samples<'py>(&self, py: Python<'py>, row: usize) -> Result<Bound<'py, PyAny>> {
        if row >= self.inner.rows() {
            return Err(Failure::Core(Error::InvalidOption {
                name: "row",
                message: format!("the plan has {} rows, got {row}", self.inner.rows()),
            }));
        }
        let samples: Vec<i64> = self.inner.plan.row(row).iter().map(|p| i64::from(p.source_index)).collect();
        Ok(samples.into_pyarray(py).into_any())
    }

    /// (largest rank's cost, the same balanced) over the mean, for `epoch`.
    fn imbalance(&self, epoch: u64, balance: &str) -> Result<(f64, f64)> {
        let balance = match balance {
            "tokens" => Balance::Tokens,
            "attention" => Balance::Attention,
            other => {
                return Err(Failure::Core(Error::InvalidOption {
                    name: "balance",
                    message: format!("unknown cost '{other}'; expected 'tokens' or 'attention'"),
                }))
            }
        };
        Ok(self.inner.imbalance(&self.order(epoch)?, balance))
    }

    /// Materialise plan rows (-1: an empty row) from a store's arrays: `[B, L]` rows
    /// (`padding_free=False`) or the padding-free `[T]` stream.
    #[pyo3(signature = (rows, tokens, offsets, trained, labels, layout_options, padding_free))]
    #[allow(clippy::too_many_arguments, reason = "the store's arrays travel with every call")]
    fn materialize<'py>(
        &self,
        py: Python<'py>,
        rows: PyReadonlyArray1<'py, i64>,
        tokens: PyReadonlyArray1<'py, u32>,
        offsets: PyReadonlyArray1<'py, i64>,
        trained: PyReadonlyArray1<'py, u8>,
        labels: Option<PyReadonlyArray1<'py, i32>>,
        layout_options: &Bound<'py, PyAny>,
        padding_free: bool,
    ) -> Result<Bound<'py, PyDict>> {
        let layout: LayoutOptions = options(layout_options)?;
        let arrays = StoreArrays { tokens, offsets, trained, labels };
        let sequences = arrays.sequences()?;
        let rows = step_rows(rows.as_slice().map_err(PyErr::from)?, self.inner.rows())?;
        let plan = self.inner.batch_plan(&rows);
        let weights = match layout.loss_weights {
            None | Some(LossWeighting::Token) => None,
            Some(weighting) => {
                let mut cached = self.weights.lock().map_err(|_| poisoned())?;
                if cached.as_ref().is_none_or(|(w, _)| *w != weighting) {
                    let computed = py.detach(|| source_weights(&sequences, &self.inner.plan.pieces, weighting));
                    *cached = Some((weighting, Arc::new(computed)));
                }
                cached.as_ref().map(|(_, w)| w.clone())
            }
        };
        batch_dict(py, &sequences, &plan, &layout, weights.as_ref().map(|w| w.as_slice()), padding_free)
    }
}

/// Plan rows as a caller names them (-1: an empty row), checked against the plan's `count`.
fn step_rows(rows: &[i64], count: usize) -> Result<Vec<StepRow>> {
    rows.iter()
        .map(|&row| match row {
            -1 => Ok(None),
            row if (0..count as i64).contains(&row) => Ok(Some(row as u32)),
            row => Err(Failure::Core(Error::InvalidOption {
                name: "rows",
                message: format!("row {row} is outside the plan's 0..{count} (and not -1, an empty row)"),
            })),
        })
        .collect()
}

/// One micro-batch as a dict of arrays: `[B, L]` rows or the padding-free `[T]` stream.
fn batch_dict<'py, I: TokenIn>(
    py: Python<'py>,
    sequences: &Sequences<'_, I>,
    plan: &Plan,
    layout: &LayoutOptions,
    weights: Option<&[f32]>,
    padding_free: bool,
) -> Result<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    match (layout.dtype, padding_free) {
        (IdDtype::Int64, false) => rows_dict::<I, i64>(py, &dict, sequences, plan, layout, weights)?,
        (IdDtype::Int32, false) => rows_dict::<I, i32>(py, &dict, sequences, plan, layout, weights)?,
        (IdDtype::Int64, true) => flat_dict::<I, i64>(py, &dict, sequences, plan, layout, weights)?,
        (IdDtype::Int32, true) => flat_dict::<I, i32>(py, &dict, sequences, plan, layout, weights)?,
    }
    Ok(dict)
}

/// One window of a stream: its sequences (the caller's arrays, held, not copied) planned
/// once with the best fit of `pack`; micro-batches of its rows are materialised when asked
/// for, as a schedule's are from a store, so a window never holds all its rows at once.
#[pyclass(frozen, module = "seqpack._seqpack")]
pub struct NativeWindow {
    plan: Plan,
    tokens: Py<PyArray1<i64>>,
    offsets: Py<PyArray1<i64>>,
    labels: Option<Py<PyArray1<i64>>>,
    layout: LayoutOptions,
    /// Per-sample loss weights over the whole window (`loss_weights="sequence"`).
    weights: Option<Vec<f32>>,
}

/// A window's arrays, borrowed for one call.
struct WindowArrays<'py> {
    tokens: PyReadonlyArray1<'py, i64>,
    offsets: PyReadonlyArray1<'py, i64>,
    labels: Option<PyReadonlyArray1<'py, i64>>,
}

impl WindowArrays<'_> {
    /// The sequences; their offsets and label count checked when `checked` (the window's
    /// constructor checks them once: the arrays are seqpack's own, read-only, from then on).
    fn sequences(&self, checked: bool) -> Result<Sequences<'_, i64>> {
        let tokens = self.tokens.as_slice().map_err(PyErr::from)?;
        let offsets = self.offsets.as_slice().map_err(PyErr::from)?;
        let labels = match &self.labels {
            Some(labels) => Labels::Given(labels.as_slice().map_err(PyErr::from)?),
            None => Labels::Tokens,
        };
        if checked {
            return Ok(Sequences::new(tokens, offsets, labels)?);
        }
        Ok(Sequences { tokens, offsets, labels })
    }
}

impl NativeWindow {
    fn arrays<'py>(&self, py: Python<'py>) -> Result<WindowArrays<'py>> {
        Ok(WindowArrays {
            tokens: self.tokens.bind(py).try_readonly().map_err(PyErr::from)?,
            offsets: self.offsets.bind(py).try_readonly().map_err(PyErr::from)?,
            labels: self.labels.as_ref().map(|l| l.bind(py).try_readonly()).transpose().map_err(PyErr::from)?,
        })
    }
}

#[pymethods]
impl NativeWindow {
    /// Plan the window and check every token and label a row will hold (errors name the
    /// sequence, as `pack_flat`'s do), so no batch of it fails later.
    #[new]
    #[pyo3(signature = (tokens, offsets, labels, plan_options, layout_options))]
    fn new(
        py: Python<'_>,
        tokens: Bound<'_, PyArray1<i64>>,
        offsets: Bound<'_, PyArray1<i64>>,
        labels: Option<Bound<'_, PyArray1<i64>>>,
        plan_options: &Bound<'_, PyAny>,
        layout_options: &Bound<'_, PyAny>,
    ) -> Result<Self> {
        let plan_options: PlanOptions = options(plan_options)?;
        let layout: LayoutOptions = options(layout_options)?;
        let arrays = WindowArrays {
            tokens: tokens.try_readonly().map_err(PyErr::from)?,
            offsets: offsets.try_readonly().map_err(PyErr::from)?,
            labels: labels.as_ref().map(PyArrayMethods::try_readonly).transpose().map_err(PyErr::from)?,
        };
        let sequences = arrays.sequences(true)?;
        let (plan, weights) = py.detach(|| -> Result<_> {
            let plan = plan(&sequences.lengths()?, &plan_options)?;
            match layout.dtype {
                IdDtype::Int64 => sequences.validate::<i64>(&plan.pieces, layout.pad_id)?,
                IdDtype::Int32 => sequences.validate::<i32>(&plan.pieces, layout.pad_id)?,
            }
            let weights = match layout.loss_weights {
                None | Some(LossWeighting::Token) => None,
                Some(weighting) => Some(source_weights(&sequences, &plan.pieces, weighting)),
            };
            Ok((plan, weights))
        })?;
        drop(arrays);
        Ok(Self {
            plan,
            tokens: tokens.unbind(),
            offsets: offsets.unbind(),
            labels: labels.map(Bound::unbind),
            layout,
            weights,
        })
    }

    #[getter]
    fn rows(&self) -> usize {
        self.plan.num_rows()
    }

    /// The plan's figures and its events (sequences cut or dropped by the overlong policy).
    fn report<'py>(&self, py: Python<'py>) -> Result<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        dict.set_item("stats", to_python(py, &self.plan.stats())?)?;
        dict.set_item("events", to_python(py, &self.plan.events)?)?;
        Ok(dict)
    }

    /// Materialise rows of the window's plan, in this order (-1: an empty row).
    fn materialize<'py>(
        &self,
        py: Python<'py>,
        rows: PyReadonlyArray1<'py, i64>,
        padding_free: bool,
    ) -> Result<Bound<'py, PyDict>> {
        let rows = step_rows(rows.as_slice().map_err(PyErr::from)?, self.plan.num_rows())?;
        let plan = self.plan.subset(&rows);
        let arrays = self.arrays(py)?;
        batch_dict(py, &arrays.sequences(false)?, &plan, &self.layout, self.weights.as_deref(), padding_free)
    }
}

fn rows_dict<I: TokenIn, O: TokenOut + numpy::Element>(
    py: Python<'_>,
    dict: &Bound<'_, PyDict>,
    sequences: &Sequences<'_, I>,
    plan: &seqpack_core::pack::Plan,
    layout: &LayoutOptions,
    weights: Option<&[f32]>,
) -> Result<()> {
    let (packed, trained) = py.detach(|| {
        materialize_with::<I, O>(sequences, plan, layout, weights).map(|packed| {
            // The labels they hold that are not ignored (what `num_items_in_batch` counts).
            let trained = trained_tokens(sequences, &plan.pieces);
            (packed, trained)
        })
    })?;
    dict.set_item("trained_tokens", trained)?;
    let shape = [packed.rows, packed.max_length];
    dict.set_item("input_ids", packed.input_ids.into_pyarray(py).reshape(shape)?)?;
    dict.set_item("labels", packed.labels.into_pyarray(py).reshape(shape)?)?;
    dict.set_item("position_ids", packed.position_ids.into_pyarray(py).reshape(shape)?)?;
    dict.set_item("segment_ids", packed.segment_ids.into_pyarray(py).reshape(shape)?)?;
    if let Some(weights) = packed.loss_weights {
        dict.set_item("loss_weights", weights.into_pyarray(py).reshape(shape)?)?;
    }
    let (row_cu_seqlens, row_max_seqlen) = row_bounds(&packed.seq_lens, &packed.row_offsets, packed.max_length);
    dict.set_item("row_cu_seqlens", row_cu_seqlens.into_pyarray(py))?;
    dict.set_item("row_max_seqlen", row_max_seqlen)?;
    dict.set_item("cu_seqlens", packed.cu_seqlens.into_pyarray(py))?;
    dict.set_item("seq_lens", packed.seq_lens.into_pyarray(py))?;
    dict.set_item("source_index", packed.source_index.into_pyarray(py))?;
    dict.set_item("max_seqlen", packed.max_seqlen)?;
    Ok(())
}

/// FlashAttention-2's varlen bounds over `[rows, max_length]` rows flattened end to end:
/// every segment, and each row's padding run as a sequence of its own; and the longest.
fn row_bounds(seq_lens: &[i32], row_offsets: &[i64], max_length: usize) -> (Vec<i32>, usize) {
    let mut bounds = Vec::with_capacity(seq_lens.len() + row_offsets.len());
    bounds.push(0_i32);
    let (mut at, mut longest) = (0_usize, 0_usize);
    for row in row_offsets.windows(2) {
        let mut used = 0_usize;
        for &length in &seq_lens[row[0] as usize..row[1] as usize] {
            let length = length as usize;
            used += length;
            at += length;
            longest = longest.max(length);
            bounds.push(at as i32);
        }
        let padding = max_length - used;
        if padding > 0 {
            at += padding;
            longest = longest.max(padding);
            bounds.push(at as i32);
        }
    }
    (bounds, longest)
}

fn flat_dict<I: TokenIn, O: TokenOut + numpy::Element>(
    py: Python<'_>,
    dict: &Bound<'_, PyDict>,
    sequences: &Sequences<'_, I>,
    plan: &seqpack_core::pack::Plan,
    layout: &LayoutOptions,
    weights: Option<&[f32]>,
) -> Result<()> {
    let (flat, trained) = py.detach(|| {
        materialize_flat::<I, O>(sequences, plan, layout, weights).map(|flat| {
            // The labels they hold that are not ignored (what `num_items_in_batch` counts).
            let trained = trained_tokens(sequences, &plan.pieces);
            (flat, trained)
        })
    })?;
    dict.set_item("trained_tokens", trained)?;
    dict.set_item("input_ids", flat.input_ids.into_pyarray(py))?;
    dict.set_item("labels", flat.labels.into_pyarray(py))?;
    dict.set_item("position_ids", flat.position_ids.into_pyarray(py))?;
    if let Some(weights) = flat.loss_weights {
        dict.set_item("loss_weights", weights.into_pyarray(py))?;
    }
    dict.set_item("cu_seqlens", flat.cu_seqlens.into_pyarray(py))?;
    dict.set_item("max_seqlen", flat.max_seqlen)?;
    let source_index: Vec<i64> = plan.pieces.iter().map(|p| i64::from(p.source_index)).collect();
    dict.set_item("source_index", source_index.into_pyarray(py))?;
    Ok(())
}
