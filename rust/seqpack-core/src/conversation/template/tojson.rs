//! JSON text exactly as Python's `json.dumps(value, ensure_ascii=False)` writes it (the
//! `tojson` of Hugging Face chat templates): `", "` and `": "` separators, keys in the order
//! given, non-ASCII text unescaped.

use serde::Serialize;
use serde_json::ser::Formatter;
use serde_json::Value;
use std::io;

struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }
}

/// `json.dumps(value, ensure_ascii=False)`.
pub fn dumps(value: &Value) -> String {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    // Serialising a `Value` into memory cannot fail, and serde_json writes UTF-8; were either
    // ever to fail, the text would be empty, and a template refused rather than mis-rendered.
    if value.serialize(&mut serializer).is_err() {
        return String::new();
    }
    String::from_utf8(out).unwrap_or_default()
}

/// The `tojson` filter of Hugging Face chat templates.
#[allow(clippy::needless_pass_by_value, reason = "minijinja hands filter arguments over by value")]
pub fn tojson_filter(
    value: minijinja::Value,
    kwargs: minijinja::value::Kwargs,
) -> std::result::Result<String, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    kwargs.assert_all_used()?;
    let json: Value = serde_json::to_value(&value)
        .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string()))?;
    match indent {
        None => Ok(dumps(&json)),
        Some(width) => {
            let indent = " ".repeat(width);
            let mut out = Vec::new();
            let formatter = serde_json::ser::PrettyFormatter::with_indent(indent.as_bytes());
            let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
            serde::Serialize::serialize(&json, &mut serializer)
                .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string()))?;
            Ok(String::from_utf8_lossy(&out).into_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_python_separators_and_order() {
        let value: Value = serde_json::from_str(r#"{"b": [1, 2, {"c": "ü\n"}], "a": null, "t": true}"#).unwrap();
        assert_eq!(dumps(&value), r#"{"b": [1, 2, {"c": "ü\n"}], "a": null, "t": true}"#);
        assert_eq!(dumps(&Value::Array(vec![])), "[]");
    }
}
