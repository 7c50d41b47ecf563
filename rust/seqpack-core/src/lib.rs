//! seqpack-core: turn-aware truncation and packing of LLM fine-tuning data, in plain Rust.
//! Nothing here knows about Python.
//!
//! Data flows one way, in two halves:
//!
//! - [`conversation`]: chat records → [`conversation::records`] (normalised conversations) →
//!   [`conversation::template`] (text with message spans) → [`conversation::tokenize`] →
//!   [`conversation::truncate`] (which turns fit) → [`conversation::encode`] (labelled
//!   samples, a [`conversation::report`] per record) → [`conversation::flatten`].
//! - [`pack`]: flat tokens and offsets → lengths → [`pack::plan`] (which piece goes in which
//!   row) → [`pack::layout`] (the arrays).
//!
//! The conversation half ends where the packing half starts: flat tokens, labels, offsets.
//! Between them, [`store`] keeps encoded samples on disk for training at any dataset size;
//! after them, [`schedule`] cuts a whole-dataset plan into equal per-rank micro-batches, epoch
//! by epoch.
//!
//! ```
//! use seqpack_core::pack::{materialize, plan, Labels, LayoutOptions, PlanOptions, Sequences};
//!
//! let tokens: Vec<i64> = vec![5, 6, 7, 8, 9, 4];
//! let offsets = [0, 3, 5, 6];
//! let sequences = Sequences::new(&tokens, &offsets, Labels::Tokens).unwrap();
//! let plan = plan(&sequences.lengths().unwrap(), &PlanOptions::new(4)).unwrap();
//! assert_eq!(plan.num_rows(), 2);
//! let packed = materialize::<i64, i64>(&sequences, &plan, &LayoutOptions::default()).unwrap();
//! assert_eq!(packed.input_ids, [5, 6, 7, 4, 8, 9, 0, 0]);
//! assert_eq!(packed.position_ids, [0, 1, 2, 0, 0, 1, 0, 1]);
//! ```

pub mod conversation;
pub mod error;
pub mod labels;
pub mod options;
pub mod pack;
pub mod schedule;
pub mod store;
pub mod threads;

pub use error::{Error, Result};
pub use labels::IGNORE_INDEX;
