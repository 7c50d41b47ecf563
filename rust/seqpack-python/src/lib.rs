//! The private native module `seqpack._seqpack`: converts Python inputs, runs the core with
//! the interpreter detached, and hands the arrays back to numpy without copying them.
//! Argument normalisation and documentation live in the Python package; option names and
//! ranges live in the core.

#![allow(clippy::needless_pass_by_value, reason = "#[pyfunction] arguments are extracted by value")]

mod conversation;
mod convert;
mod errors;
mod pack;
mod schedule;
mod store;

use pyo3::prelude::*;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[pymodule(gil_used = false)]
fn _seqpack(module: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(module)?;
    module.add_function(wrap_pyfunction!(pack::plan_lengths, module)?)?;
    module.add_function(wrap_pyfunction!(pack::pack_flat, module)?)?;
    module.add_function(wrap_pyfunction!(conversation::encode_records, module)?)?;
    module.add_function(wrap_pyfunction!(conversation::jsonl_lines, module)?)?;
    module.add_class::<conversation::NativeTokenizer>()?;
    module.add_class::<conversation::NativeTemplate>()?;
    module.add_class::<conversation::NativeReports>()?;
    module.add_class::<store::NativeStoreWriter>()?;
    module.add_class::<schedule::NativeSchedule>()?;
    module.add_class::<schedule::NativeWindow>()?;
    module.add_function(wrap_pyfunction!(store::store_check, module)?)?;
    module.add_function(wrap_pyfunction!(store::store_check_offsets, module)?)?;
    module.add_function(wrap_pyfunction!(after_fork, module)?)?;
    Ok(())
}

/// Call in a child process right after `fork` (the package registers it with
/// `os.register_at_fork`): the threads of rayon's pools did not come along, so parallel work
/// runs on a pool of the child's own from then on, not on one that would never answer.
#[pyfunction]
fn after_fork() {
    seqpack_core::threads::forked();
}
