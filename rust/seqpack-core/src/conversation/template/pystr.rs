//! Python's `str` semantics for what chat templates call on strings. transformers renders
//! templates with Jinja2 on Python strings; minijinja's own methods and filters follow Rust's
//! (`trim` strips Unicode `White_Space`, `find` counts bytes), which differ on inputs real data
//! holds: U+001C..U+001F are whitespace to Python and not to Rust, indices are code points to
//! Python. Each function here is Python's, checked against `CPython` in the test suite.

use minijinja::value::{from_args, Value, ValueKind};
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
            "capitalize" | "title" => {
                let () = from_args(args)?;
                let changed =
                    if method == "title" { super::pyvalue::title(s)? } else { super::pyvalue::capitalize(s)? };
                return Ok(Value::from(changed));
            }
            "isalpha" | "isalnum" | "isdecimal" | "isdigit" | "isnumeric" | "islower" | "isupper" | "istitle" => {
                let () = from_args(args)?;
                if let Some(answer) = super::pyvalue::predicate(method, s)? {
                    return Ok(Value::from(answer));
                }
            }
            "isspace" => {
                let () = from_args(args)?;
                return Ok(Value::from(!s.is_empty() && s.chars().all(is_space)));
            }
            _ => {}
        }
    }
    if method == "items" && value.kind() == ValueKind::Map {
        if let Some(map) = value.as_object() {
            // pycompat's, with Python's tuples for its pairs (it makes two-item lists).
            let () = from_args(args)?;
            return Ok(Value::make_object_iterable(map.clone(), |map| match map.try_iter_pairs() {
                Some(pairs) => {
                    Box::new(pairs.map(|(key, item)| Value::from_object(super::pyvalue::PyTuple(vec![key, item]))))
                }
                None => Box::new(std::iter::empty()),
            }));
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

/// transformers' `strftime_now(format)`: the current date and time as Python's
/// `datetime.now().strftime(format)` writes it (Llama-3.2+ templates put today's date in the
/// system block), in local time as Python reads it (`TZ`, else `/etc/localtime`); a
/// directive outside the common set raises, so the record is refused rather than rendered
/// differently.
///
/// # Errors
/// A directive this does not write.
#[allow(clippy::needless_pass_by_value, reason = "minijinja hands function arguments over by value")]
pub fn strftime_now(format: String) -> Result<String, Error> {
    let now = chrono::Local::now();
    strftime(&format, now.timestamp() + i64::from(now.offset().local_minus_utc()))
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

/// (year, month 1..=12, day 1..=31) of a day counted from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, usize, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, usize::try_from(month).unwrap_or(1), day)
}

/// `time.strftime(format)` for a wall-clock time in seconds since the epoch (local time
/// counted as if it were UTC), for the directives chat templates use.
fn strftime(format: &str, seconds: i64) -> Result<String, Error> {
    use std::fmt::Write;
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (of_day / 3600, of_day % 3600 / 60, of_day % 60);
    let weekday = usize::try_from((days + 3).rem_euclid(7)).unwrap_or(0); // 1970-01-01 was a Thursday
    let year_start = {
        let mut d = days;
        while civil_from_days(d - 1).0 == year {
            d -= 1;
        }
        d
    };
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        // Writing into a String cannot fail.
        let _ = match chars.next() {
            Some('d') => write!(out, "{day:02}"),
            Some('m') => write!(out, "{month:02}"),
            Some('Y') => write!(out, "{year}"),
            Some('y') => write!(out, "{:02}", year.rem_euclid(100)),
            Some('b') => write!(out, "{}", &MONTHS[month - 1][..3]),
            Some('B') => write!(out, "{}", MONTHS[month - 1]),
            Some('a') => write!(out, "{}", &WEEKDAYS[weekday][..3]),
            Some('A') => write!(out, "{}", WEEKDAYS[weekday]),
            Some('H') => write!(out, "{hour:02}"),
            Some('M') => write!(out, "{minute:02}"),
            Some('S') => write!(out, "{second:02}"),
            Some('j') => write!(out, "{:03}", days - year_start + 1),
            Some('%') => write!(out, "%"),
            other => {
                let directive = other.map_or_else(|| "%".to_string(), |c| format!("%{c}"));
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("strftime_now: the directive '{directive}' is not supported"),
                ));
            }
        };
    }
    Ok(out)
}

#[cfg(test)]
mod date_tests {
    use super::*;

    #[test]
    fn dates_as_python_writes_them() {
        // 2024-07-26 17:05:09 UTC was a Friday, day 208 of a leap year.
        let at = 1_722_013_509;
        assert_eq!(strftime("%d %b %Y", at).unwrap(), "26 Jul 2024");
        assert_eq!(strftime("%A %B %d, %y %H:%M:%S %j %%", at).unwrap(), "Friday July 26, 24 17:05:09 208 %");
        assert_eq!(strftime("%d %b %Y", 0).unwrap(), "01 Jan 1970");
        assert_eq!(strftime("%Y-%m-%d %a", 951_782_400).unwrap(), "2000-02-29 Tue");
        assert!(strftime("%Z", at).is_err());
    }
}
