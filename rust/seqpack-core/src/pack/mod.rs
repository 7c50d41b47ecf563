//! Packing: sequence lengths → [`plan::plan`] (which piece goes in which row, decided from
//! lengths alone) → [`layout::materialize`] (the arrays a trainer consumes).

pub mod capacity;
pub mod layout;
pub mod options;
pub mod plan;

pub use crate::options::{Keep, Overlong};
pub use layout::{
    materialize, materialize_flat, materialize_with, source_weights, trained_tokens, FlatBatch, Labels, Packed,
    Sequences,
};
pub use options::{IdDtype, LayoutOptions, LossWeighting, PlanOptions, Strategy};
pub use plan::{lengths_from, plan, Event, EventReason, Piece, Plan, PlanColumns, Stats};
