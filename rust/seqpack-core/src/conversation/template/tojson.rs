//! JSON text exactly as Python's `json.dumps(value, ensure_ascii=False)` writes it (the
//! `tojson` of Hugging Face chat templates): `", "` and `": "` separators, keys in the order
//! given, non-ASCII text unescaped.

use serde_json::Value;
use std::fmt::Write;

/// `json.dumps(value, ensure_ascii=False)`.
pub fn dumps(value: &Value) -> String {
    dumps_with(value, None)
}

/// `json.dumps(value, ensure_ascii=False, indent=indent)`: one item per line, `","` after
/// each but the last.
pub fn dumps_indented(value: &Value, indent: usize) -> String {
    dumps_with(value, Some(" ".repeat(indent)))
}

/// `json.dumps` with its default separators for the given indent (`", "` without one, `","`
/// with one).
fn dumps_with(value: &Value, indent: Option<String>) -> String {
    let item_separator = if indent.is_some() { "," } else { ", " };
    let layout = Layout {
        indent,
        item_separator: item_separator.into(),
        key_separator: ": ".into(),
        sort_keys: false,
        ensure_ascii: false,
    };
    let mut out = String::new();
    write_value(&mut out, value, &layout, 0);
    out
}

/// Python's `repr(float)`, which `json.dumps` writes: the shortest digits that read back as
/// the same number, in positional notation when the decimal exponent is in -4..16 (`0.0001`,
/// `1e-05`, `1e+16`, `100.0`), always with a `.0` or an exponent.
pub fn python_float(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    // Rust's `{:e}` gives the shortest digit count that reads back; Python then takes, of
    // the decimals with that many digits that read back, the one nearest the exact value,
    // ties to even (562949953421312.25 -> '.2' where the shortest search may give '.3'):
    // exact rounding to that many digits (`{:.N$e}`), unless that one does not read back
    // (next to a power of two, where the gap below is half the gap above).
    let shortest = format!("{:e}", x.abs());
    let digit_count = shortest.split('e').next().unwrap_or("").chars().filter(char::is_ascii_digit).count();
    let nearest = format!("{:.*e}", digit_count.saturating_sub(1), x.abs());
    let reads_back = nearest.parse::<f64>().is_ok_and(|back| back.to_bits() == x.abs().to_bits());
    let scientific = if reads_back { nearest } else { shortest };
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if x.is_sign_negative() { "-" } else { "" };
    // The decimal point sits after `point` digits.
    let point = exponent + 1;
    let body = if !(-3..=16).contains(&point) {
        let rest = &digits[1..];
        let fraction = if rest.is_empty() { String::new() } else { format!(".{rest}") };
        let exponent_sign = if exponent < 0 { '-' } else { '+' };
        format!("{}{fraction}e{exponent_sign}{:02}", &digits[..1], exponent.abs())
    } else if point <= 0 {
        format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
    } else {
        let point = point as usize; // 1..=16
        if point >= digits.len() {
            format!("{digits}{}.0", "0".repeat(point - digits.len()))
        } else {
            format!("{}.{}", &digits[..point], &digits[point..])
        }
    };
    format!("{sign}{body}")
}

/// How `json.dumps` lays text out.
struct Layout {
    indent: Option<String>,
    item_separator: String,
    key_separator: String,
    sort_keys: bool,
    ensure_ascii: bool,
}

fn write_string(out: &mut String, text: &str, ensure_ascii: bool) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ensure_ascii && !c.is_ascii()) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    // Writing into a String cannot fail.
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_value(out: &mut String, value: &Value, layout: &Layout, level: usize) {
    let newline = |out: &mut String, level: usize| {
        if let Some(indent) = &layout.indent {
            out.push('\n');
            out.push_str(&indent.repeat(level));
        }
    };
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => out.push_str(&i.to_string()),
            (None, Some(u), _) => out.push_str(&u.to_string()),
            (None, None, Some(f)) => out.push_str(&python_float(f)),
            (None, None, None) => out.push_str(&n.to_string()),
        },
        Value::String(text) => write_string(out, text, layout.ensure_ascii),
        Value::Array(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (k, item) in items.iter().enumerate() {
                if k > 0 {
                    out.push_str(&layout.item_separator);
                }
                newline(out, level + 1);
                write_value(out, item, layout, level + 1);
            }
            newline(out, level);
            out.push(']');
        }
        Value::Object(map) => {
            if map.is_empty() {
                out.push_str("{}");
                return;
            }
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            if layout.sort_keys {
                entries.sort_by(|a, b| a.0.chars().cmp(b.0.chars()));
            }
            out.push('{');
            for (k, (key, item)) in entries.into_iter().enumerate() {
                if k > 0 {
                    out.push_str(&layout.item_separator);
                }
                newline(out, level + 1);
                write_string(out, key, layout.ensure_ascii);
                out.push_str(&layout.key_separator);
                write_value(out, item, layout, level + 1);
            }
            newline(out, level);
            out.push('}');
        }
    }
}

/// The `tojson` filter as transformers defines it: `json.dumps(x, ensure_ascii=False,
/// indent=None, separators=None, sort_keys=False)`, each keyword accepted.
#[allow(clippy::needless_pass_by_value, reason = "minijinja hands filter arguments over by value")]
pub fn tojson_filter(
    value: minijinja::Value,
    kwargs: minijinja::value::Kwargs,
) -> std::result::Result<String, minijinja::Error> {
    let invalid = |message: String| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, message);
    let indent: Option<minijinja::Value> = kwargs.get("indent")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => match (v.as_str(), i64::try_from(v.clone())) {
            (Some(text), _) => Some(text.to_string()),
            (None, Ok(width)) => Some(" ".repeat(usize::try_from(width).unwrap_or(0))),
            _ => return Err(invalid(format!("tojson: indent must be an int or a string, got {v}"))),
        },
    };
    let (item_separator, key_separator) = match separators.as_deref() {
        None => (if indent.is_some() { "," } else { ", " }.to_string(), ": ".to_string()),
        Some([item, key]) => (item.clone(), key.clone()),
        Some(other) => return Err(invalid(format!("tojson: separators must be two strings, got {}", other.len()))),
    };
    let layout = Layout {
        indent,
        item_separator,
        key_separator,
        sort_keys: sort_keys.unwrap_or(false),
        ensure_ascii: ensure_ascii.unwrap_or(false),
    };
    let json: Value = serde_json::to_value(&value).map_err(|e| invalid(e.to_string()))?;
    let mut out = String::new();
    write_value(&mut out, &json, &layout, 0);
    Ok(out)
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

    #[test]
    fn floats_as_python_writes_them() {
        for (x, python) in [
            (1e-5, "1e-05"),
            (1e-7, "1e-07"),
            (0.0001, "0.0001"),
            (1.5e-7, "1.5e-07"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123.0, "123.0"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (1.234_567_890_123_456_8e17, "1.2345678901234568e+17"),
            (12345.678, "12345.678"),
            (562_949_953_421_312.2, "562949953421312.2"),
            (5.960_464_477_539_063e-8, "5.960464477539063e-08"),
        ] {
            assert_eq!(python_float(x), python, "{x}");
        }
    }
}
