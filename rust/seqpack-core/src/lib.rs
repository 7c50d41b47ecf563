//! seqpack-core: packing and truncation for LLM fine-tuning data, in plain Rust.
//!
//! Data flows one way: sequence lengths → [`plan::plan`] (which piece goes in which row) →
//! [`layout::materialize`] (the arrays). Chat records come before that: [`chat`] (records →
//! conversations) → [`template`] (text with message spans) → [`tokenize`] → [`truncate`]
//! (which turns fit) → [`encode`] (samples with labels and a report). Nothing here knows
//! about Python.

pub mod capacity;
pub mod chat;
pub mod encode;
pub mod error;
pub mod fastbpe;
pub mod layout;
pub mod options;
pub mod plan;
pub mod pyjson;
pub mod template;
pub mod tokenize;
pub mod truncate;

pub use error::{Error, Result};
pub use layout::{materialize, LayoutOptions, LossWeighting, Packed, Sequences, IGNORE_INDEX};
pub use options::{Keep, Overlong, PlanOptions, Strategy};
pub use plan::{plan, Event, EventKind, Piece, Plan, Stats};
