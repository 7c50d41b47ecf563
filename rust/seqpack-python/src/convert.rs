//! Values across the boundary through serde: options in (a dict read into the core's option
//! types, which check themselves), records in, reports and figures out. No hand-built dicts.

use crate::errors::{Failure, Result};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Read a dict of options into one of the core's option types.
pub fn options<T: DeserializeOwned>(dict: &Bound<'_, PyAny>) -> Result<T> {
    pythonize::depythonize(dict).map_err(|e| Failure::Option(e.to_string()))
}

/// Any serialisable core value as Python objects (dicts, lists, strings, numbers).
pub fn to_python<'py, T: Serialize + ?Sized>(py: Python<'py>, value: &T) -> Result<Bound<'py, PyAny>> {
    pythonize::pythonize(py, value).map_err(|e| Failure::Python(PyRuntimeError::new_err(e.to_string())))
}
