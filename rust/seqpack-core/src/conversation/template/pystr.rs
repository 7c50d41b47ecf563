//! Python's `str` semantics for what chat templates call on strings. transformers renders
//! templates with Jinja2 on Python strings; minijinja's own methods and filters follow Rust's
//! (`trim` strips Unicode `White_Space`, `find` counts bytes), which differ on inputs real data
//! holds: U+001C..U+001F are whitespace to Python and not to Rust, indices are code points to
//! Python. Each function here is Python's, checked against `CPython` in the test suite.

use minijinja::value::{from_args, Value};
use minijinja::{Error, ErrorKind, State};

/// `str.isspace()` for one character: bidirectional class WS, B or S, or category Zs
/// (`CPython`'s `_PyUnicode_IsWhitespace`).
pub fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t'..='\r'
            | '\u{1c}'..='\u{20}'
            | '\u{85}'
            | '\u{a0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200a}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202f}'
            | '\u{205f}'
            | '\u{3000}'
    )
}

/// `str.splitlines()` line boundaries (besides `\r\n`, which counts as one).
fn is_line_break(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{b}' | '\u{c}' | '\u{1c}' | '\u{1d}' | '\u{1e}' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

#[derive(Clone, Copy)]
enum Side {
    Both,
    Start,
    End,
}

/// `str.strip(chars)`, `lstrip`, `rstrip`: Python whitespace when `chars` is `None`.
fn strip<'a>(s: &'a str, chars: Option<&str>, side: Side) -> &'a str {
    let remove = |c: char| chars.map_or_else(|| is_space(c), |set| set.contains(c));
    match side {
        Side::Both => s.trim_matches(remove),
        Side::Start => s.trim_start_matches(remove),
        Side::End => s.trim_end_matches(remove),
    }
}

/// Python's `str.strip()` with no argument.
pub fn strip_space(s: &str) -> &str {
    strip(s, None, Side::Both)
}

/// `str.split(sep, maxsplit)`.
fn split(s: &str, sep: Option<&str>, maxsplit: Option<i64>) -> Result<Vec<String>, Error> {
    let limit = maxsplit.filter(|&n| n >= 0).map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    match sep {
        Some("") => Err(Error::new(ErrorKind::InvalidOperation, "empty separator")),
        Some(sep) => Ok(match limit {
            Some(n) => s.splitn(n.saturating_add(1), sep).map(str::to_string).collect(),
            None => s.split(sep).map(str::to_string).collect(),
        }),
        None => {
            // Runs of whitespace separate; none at the ends; after `maxsplit` splits the rest
            // is one item with its leading whitespace removed (and trailing kept).
            let mut out = Vec::new();
            let mut rest = strip(s, None, Side::Start);
            while !rest.is_empty() {
                if limit.is_some_and(|n| out.len() == n) {
                    out.push(rest.to_string());
                    break;
                }
                let end = rest.find(is_space).unwrap_or(rest.len());
                out.push(rest[..end].to_string());
                rest = strip(&rest[end..], None, Side::Start);
            }
            Ok(out)
        }
    }
}

/// `str.splitlines(keepends)`.
fn splitlines(s: &str, keepends: bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if !is_line_break(c) {
            continue;
        }
        let mut end = at + c.len_utf8();
        if c == '\r' && chars.peek().is_some_and(|&(_, next)| next == '\n') {
            chars.next();
            end += 1;
        }
        out.push(s[start..if keepends { end } else { at }].to_string());
        start = end;
    }
    if start < s.len() {
        out.push(s[start..].to_string());
    }
    out
}

/// `str.find(sub)` / `str.rfind(sub)`: a code-point index, or -1.
fn find(s: &str, sub: &str, last: bool) -> i64 {
    let found = if last { s.rfind(sub) } else { s.find(sub) };
    found.map_or(-1, |byte| i64::try_from(s[..byte].chars().count()).unwrap_or(i64::MAX))
}

/// The Jinja `trim` filter: `str.strip(chars)`.
#[allow(clippy::needless_pass_by_value, reason = "minijinja hands filter arguments over by value")]
pub fn trim_filter(value: String, chars: Option<String>) -> String {
    strip(&value, chars.as_deref(), Side::Both).to_string()
}

/// String methods with Python's semantics, then minijinja-contrib's Python compatibility for
/// the others (dict `items()`, `get()`, list methods, ...).
///
/// # Errors
/// A method the string or value does not have, or wrong arguments.
pub fn unknown_method_callback(state: &State, value: &Value, method: &str, args: &[Value]) -> Result<Value, Error> {
    if let Some(s) = value.as_str() {
        match method {
            "strip" | "lstrip" | "rstrip" => {
                let (chars,): (Option<&str>,) = from_args(args)?;
                let side = match method {
                    "strip" => Side::Both,
                    "lstrip" => Side::Start,
                    _ => Side::End,
                };
                return Ok(Value::from(strip(s, chars, side)));
            }
            "split" => {
                let (sep, maxsplit): (Option<&str>, Option<i64>) = from_args(args)?;
                return Ok(Value::from(split(s, sep, maxsplit)?));
            }
            "splitlines" => {
                let (keepends,): (Option<bool>,) = from_args(args)?;
                return Ok(Value::from(splitlines(s, keepends.unwrap_or(false))));
            }
            "find" | "rfind" => {
                let (sub,): (&str,) = from_args(args)?;
                return Ok(Value::from(find(s, sub, method == "rfind")));
            }
            "isspace" => {
                let () = from_args(args)?;
                return Ok(Value::from(!s.is_empty() && s.chars().all(is_space)));
            }
            _ => {}
        }
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_semantics() {
        assert_eq!(strip_space("\u{1f} hi\u{1c}\u{85}"), "hi");
        assert_eq!(split("  a \u{1e}b  c ", None, None).unwrap(), ["a", "b", "c"]);
        assert_eq!(split("  a b  c ", None, Some(1)).unwrap(), ["a", "b  c "]);
        assert_eq!(split("a,b,,c", Some(","), Some(2)).unwrap(), ["a", "b", ",c"]);
        assert!(split("", None, None).unwrap().is_empty());
        assert_eq!(splitlines("a\r\nb\u{2028}c\r", false), ["a", "b", "c"]);
        assert_eq!(splitlines("a\r\nb\n", true), ["a\r\n", "b\n"]);
        assert_eq!(find("ééx", "x", false), 2);
        assert_eq!(find("abc", "z", true), -1);
    }
}
