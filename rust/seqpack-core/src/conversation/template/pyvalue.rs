//! Values printed as Python prints them, and Python's `str.title()` / `str.capitalize()`.
//!
//! transformers renders templates with Jinja2, which writes `{{ value }}` as Python's
//! `str(value)`: floats as `repr` (`1e-05`, `1e+16`), dicts and lists with their items'
//! `repr` (`{'city': 'Oslo'}`), `True` / `None`. minijinja writes Rust's forms (`0.00001`,
//! `{"city": "Oslo"}`). The formatter and the `string` filter here write Python's; what has
//! no Python form seqpack can write (a macro, a loop object) is refused, not guessed.
//!
//! `join` joins its items' Python `str()`. An item of `dict.items()` is a [`PyTuple`]: a
//! sequence everywhere, written `('key', value)` as Python writes a tuple. Known limits,
//! stated rather than hidden: a tuple literal in a template prints as a list, as minijinja has
//! no tuples;
//! `~` concatenation writes numbers minijinja's way (not through the formatter), so a
//! template that uses `~` refuses a record holding a float whose two forms differ (see
//! `JinjaTemplate`).

use minijinja::value::{Enumerator, Object, ObjectRepr, Value, ValueKind};
use minijinja::{Error, ErrorKind, Output, State};
use std::sync::Arc;
use unicode_general_category::{get_general_category, GeneralCategory};

use super::tojson::python_float;
use std::fmt::Write;

fn unsupported(what: &str) -> Error {
    Error::new(ErrorKind::InvalidOperation, format!("cannot write {what} as Python prints it"))
}

/// The formatter of `{{ ... }}`: strings as they are, every other value as Python's `str()`.
///
/// # Errors
/// A value Python would print in a form seqpack does not write.
pub fn formatter(out: &mut Output, _state: &State, value: &Value) -> Result<(), Error> {
    let written = match value.as_str() {
        // Strings, nearly all of a chat template's output, without a copy.
        Some(text) => out.write_str(text),
        None => out.write_str(&python_str(value)?),
    };
    written.map_err(|e| Error::new(ErrorKind::WriteFailure, e.to_string()))
}

/// The `string` filter: Python's `str()`.
///
/// # Errors
/// As [`formatter`].
#[allow(clippy::needless_pass_by_value, reason = "minijinja hands filter arguments over by value")]
pub fn string_filter(value: Value) -> Result<Value, Error> {
    if value.as_str().is_some() {
        return Ok(value);
    }
    python_str(&value).map(Value::from)
}

/// Jinja2's `join`: `d.join(str(item) for item in value)`, items taken by `attribute` first
/// (a key, or a dotted path of keys and indices) when given.
///
/// # Errors
/// A value that is not iterable, an item without a Python form seqpack writes.
#[allow(clippy::needless_pass_by_value, reason = "minijinja hands filter arguments over by value")]
pub fn join_filter(value: Value, d: Option<Value>, kwargs: minijinja::value::Kwargs) -> Result<String, Error> {
    let attribute: Option<Value> = kwargs.get("attribute")?;
    kwargs.assert_all_used()?;
    let separator = match &d {
        None => String::new(),
        Some(d) => python_str(d)?,
    };
    let mut parts = Vec::new();
    for item in value.try_iter()? {
        let item = match &attribute {
            None => item,
            Some(path) => attribute_of(&item, path)?,
        };
        parts.push(python_str(&item)?);
    }
    Ok(parts.join(&separator))
}

/// Jinja2's attribute getter: an integer picks an index, a text a dotted path of keys (each
/// part an index when it is all digits).
fn attribute_of(item: &Value, path: &Value) -> Result<Value, Error> {
    if let Some(text) = path.as_str() {
        let mut current = item.clone();
        for part in text.split('.') {
            current = match part.parse::<i64>() {
                Ok(index) => current.get_item(&Value::from(index))?,
                Err(_) => current.get_attr(part)?,
            };
        }
        return Ok(current);
    }
    item.get_item(path)
}

/// Python's `str(value)`.
///
/// # Errors
/// A value without a Python form seqpack writes.
pub fn python_str(value: &Value) -> Result<String, Error> {
    match value.kind() {
        ValueKind::Undefined => Ok(String::new()),
        ValueKind::String => Ok(value.as_str().unwrap_or_default().to_string()),
        _ => python_repr(value),
    }
}

/// A Python tuple (what `dict.items()` gives): a sequence to index, iterate and unpack, as
/// minijinja's lists are, and `(a, b)` when written.
#[derive(Debug)]
pub struct PyTuple(pub Vec<Value>);

impl Object for PyTuple {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.0.get(key.as_usize()?).cloned()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Seq(self.0.len())
    }
}

/// Python's `repr(value)`.
fn python_repr(value: &Value) -> Result<String, Error> {
    if let Some(tuple) = value.downcast_object_ref::<PyTuple>() {
        let items: Result<Vec<String>, Error> = tuple.0.iter().map(python_repr).collect();
        let items = items?;
        return Ok(if items.len() == 1 { format!("({},)", items[0]) } else { format!("({})", items.join(", ")) });
    }
    match value.kind() {
        ValueKind::Undefined => Ok(String::new()),
        ValueKind::None => Ok("None".into()),
        ValueKind::Bool => Ok(if value.is_true() { "True" } else { "False" }.into()),
        ValueKind::Number if value.is_integer() => Ok(value.to_string()),
        ValueKind::Number => {
            let x = f64::try_from(value.clone()).map_err(|_| unsupported("this number"))?;
            if x.is_nan() {
                Ok("nan".into())
            } else if x.is_infinite() {
                Ok(if x > 0.0 { "inf" } else { "-inf" }.into())
            } else {
                Ok(python_float(x))
            }
        }
        ValueKind::String => Ok(repr_str(value.as_str().unwrap_or_default())),
        ValueKind::Seq => {
            let items: Result<Vec<String>, Error> = value.try_iter()?.map(|item| python_repr(&item)).collect();
            Ok(format!("[{}]", items?.join(", ")))
        }
        ValueKind::Map => {
            let mut items = Vec::new();
            for key in value.try_iter()? {
                let item = value.get_item(&key)?;
                items.push(format!("{}: {}", python_repr(&key)?, python_repr(&item)?));
            }
            Ok(format!("{{{}}}", items.join(", ")))
        }
        kind => Err(unsupported(&format!("a value of kind {kind}"))),
    }
}

/// Python's `str.isprintable()` for one character.
fn is_printable(c: char) -> bool {
    if c.is_ascii() {
        return (' '..='~').contains(&c);
    }
    !matches!(
        get_general_category(c),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::Surrogate
            | GeneralCategory::PrivateUse
            | GeneralCategory::Unassigned
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
            | GeneralCategory::SpaceSeparator
    )
}

/// Python's `repr(text)`: single quotes unless the text holds a `'` and no `"`; backslash,
/// the quote, `\t` `\n` `\r` escaped; other unprintable characters as `\xNN`, `\uNNNN` or
/// `\UNNNNNNNN`.
pub fn repr_str(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') { '"' } else { '\'' };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if is_printable(c) => out.push(c),
            // Writing into a String cannot fail.
            c if u32::from(c) <= 0xff => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if u32::from(c) <= 0xffff => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\U{:08x}", u32::from(c));
            }
        }
    }
    out.push(quote);
    out
}

/// Title case where it is not the upper case (`UnicodeData` titlecase mappings and
/// `SpecialCasing` titlecase entries), as Python's `str.title()` / `capitalize()` write it.
fn special_title(c: char) -> Option<&'static str> {
    Some(match c {
        'Ǆ' | 'ǅ' | 'ǆ' => "ǅ",
        'Ǉ' | 'ǈ' | 'ǉ' => "ǈ",
        'Ǌ' | 'ǋ' | 'ǌ' => "ǋ",
        'Ǳ' | 'ǲ' | 'ǳ' => "ǲ",
        'ß' => "Ss",
        'ﬀ' => "Ff",
        'ﬁ' => "Fi",
        'ﬂ' => "Fl",
        'ﬃ' => "Ffi",
        'ﬄ' => "Ffl",
        'ﬅ' | 'ﬆ' => "St",
        'և' => "Եւ",
        'ﬓ' => "Մն",
        'ﬔ' => "Մե",
        'ﬕ' => "Մի",
        'ﬖ' => "Վն",
        'ﬗ' => "Մխ",
        'ŉ' => "ʼN",
        'ǰ' => "J\u{30c}",
        'ẖ' => "H\u{331}",
        'ẗ' => "T\u{308}",
        'ẘ' => "W\u{30a}",
        'ẙ' => "Y\u{30a}",
        'ẚ' => "A\u{2be}",
        _ => return None,
    })
}

/// Whether `c`'s title case is one this module cannot write exactly (Greek letters with
/// iota subscript and accents, Georgian Mkhedruli, whose title case Python keeps as is).
fn title_unknown(c: char) -> bool {
    matches!(u32::from(c), 0x0390 | 0x03B0 | 0x1F50..=0x1F57 | 0x1F80..=0x1FFF | 0x10D0..=0x10FF)
}

/// Title case of one character, as Python writes it.
fn to_title(c: char, out: &mut String) -> Result<(), Error> {
    if let Some(title) = special_title(c) {
        out.push_str(title);
    } else if title_unknown(c) {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("the title case of {} is not one seqpack writes exactly as Python", repr_str(&c.to_string())),
        ));
    } else {
        out.extend(c.to_uppercase());
    }
    Ok(())
}

/// Python's "cased" (`Lu`, `Ll`, `Lt`, `Other_Lowercase`, `Other_Uppercase`).
fn is_cased(c: char) -> bool {
    matches!(
        get_general_category(c),
        GeneralCategory::UppercaseLetter | GeneralCategory::LowercaseLetter | GeneralCategory::TitlecaseLetter
    ) || matches!(
        u32::from(c),
        0xAA | 0xBA
            | 0x2B0..=0x2B8
            | 0x2C0..=0x2C1
            | 0x2E0..=0x2E4
            | 0x345
            | 0x37A
            | 0x10FC
            | 0x1D2C..=0x1D6A
            | 0x1D78
            | 0x1D9B..=0x1DBF
            | 0x2071
            | 0x207F
            | 0x2090..=0x209C
            | 0x2160..=0x217F
            | 0x24B6..=0x24E9
            | 0x2C7C..=0x2C7D
            | 0xA69C..=0xA69D
            | 0xA770
            | 0xA7F8..=0xA7F9
            | 0xAB5C..=0xAB5F
            | 0x1F130..=0x1F149
            | 0x1F150..=0x1F169
            | 0x1F170..=0x1F189
    )
}

/// Python's `str.capitalize()`: the first character in title case, the rest lower case.
///
/// # Errors
/// A first character whose title case this does not write exactly.
pub fn capitalize(text: &str) -> Result<String, Error> {
    let mut chars = text.chars();
    let Some(first) = chars.next() else { return Ok(String::new()) };
    let mut out = String::with_capacity(text.len());
    to_title(first, &mut out)?;
    // Lower-case the whole text (a final sigma looks at what precedes it) and drop what the
    // first character became.
    let lower = text.to_lowercase();
    let skip: usize = first.to_lowercase().map(char::len_utf8).sum();
    out.push_str(&lower[skip..]);
    Ok(out)
}

/// Python's `str.title()`: a character after a cased one in lower case, any other in title
/// case.
///
/// # Errors
/// A character whose title case this does not write exactly, or a capital sigma to lower
/// (Python's final-sigma rule looks past case-ignorable characters, which this does not).
pub fn title(text: &str) -> Result<String, Error> {
    let mut out = String::with_capacity(text.len());
    let mut previous_cased = false;
    for c in text.chars() {
        if previous_cased {
            if c == 'Σ' {
                return Err(Error::new(ErrorKind::InvalidOperation, "str.title() with a capital sigma inside a word"));
            }
            out.extend(c.to_lowercase());
        } else {
            to_title(c, &mut out)?;
        }
        previous_cased = is_cased(c);
    }
    Ok(out)
}

/// Jinja2's `title` filter (not `str.title()`): words split at runs of `-`, white space and
/// `({[<`, each with its first character upper-cased and the rest lower-cased.
///
/// # Errors
/// A capital sigma in a word (see [`title`]).
pub fn title_filter(text: &str) -> Result<String, Error> {
    let separator = |c: char| c == '-' || super::pystr::is_space(c) || "({[<".contains(c);
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let split = if rest.starts_with(separator) {
            rest.find(|c| !separator(c)).unwrap_or(rest.len())
        } else {
            rest.find(separator).unwrap_or(rest.len())
        };
        let (item, tail) = rest.split_at(split);
        let mut chars = item.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            let tail_text = chars.as_str();
            if tail_text.contains('Σ') {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "the title filter with a capital sigma inside a word",
                ));
            }
            out.push_str(&tail_text.to_lowercase());
        }
        rest = tail;
    }
    Ok(out)
}

fn category(c: char) -> GeneralCategory {
    get_general_category(c)
}

fn is_letter(c: char) -> bool {
    matches!(
        category(c),
        GeneralCategory::UppercaseLetter
            | GeneralCategory::LowercaseLetter
            | GeneralCategory::TitlecaseLetter
            | GeneralCategory::ModifierLetter
            | GeneralCategory::OtherLetter
    )
}

fn is_number(c: char) -> bool {
    matches!(category(c), GeneralCategory::DecimalNumber | GeneralCategory::LetterNumber | GeneralCategory::OtherNumber)
}

fn cannot_tell(method: &str, c: char) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("str.{method}() of {}: not a character seqpack answers exactly as Python", repr_str(&c.to_string())),
    )
}

/// Python's `Numeric_Type=Digit` for the `No` characters of the blocks templates could meet
/// (superscripts, subscripts, circled and dingbat digits); `None` elsewhere.
fn no_is_digit(c: char) -> Option<bool> {
    let code = u32::from(c);
    let digit = matches!(
        code,
        0xB2 | 0xB3
            | 0xB9
            | 0x2070..=0x209F
            | 0x2460..=0x2468
            | 0x2474..=0x247C
            | 0x2488..=0x2490
            | 0x24EA
            | 0x24F5..=0x24FD
            | 0x24FF
            | 0x2776..=0x277E
            | 0x2780..=0x2788
            | 0x278A..=0x2792
    );
    let known = matches!(code, 0xB2..=0xBE | 0x2070..=0x218F | 0x2460..=0x24FF | 0x2776..=0x2793);
    known.then_some(digit)
}

/// Han ideographs, some of which are numeric to Python (一, 十, 萬, ...).
fn is_han(c: char) -> bool {
    matches!(u32::from(c), 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x3134F)
}

/// Python's `str.isX()` predicates, on the Unicode general categories and case properties
/// they are defined by; a character whose answer the categories do not settle (an `No`
/// outside the known blocks for `isdigit`, a Han ideograph for `isnumeric`) is refused.
///
/// # Errors
/// Such a character.
pub fn predicate(method: &str, text: &str) -> Result<Option<bool>, Error> {
    let titlecase = |c: char| category(c) == GeneralCategory::TitlecaseLetter;
    let answer = match method {
        "isalpha" => !text.is_empty() && text.chars().all(is_letter),
        "isalnum" => !text.is_empty() && text.chars().all(|c| is_letter(c) || is_number(c)),
        "isdecimal" => !text.is_empty() && text.chars().all(|c| category(c) == GeneralCategory::DecimalNumber),
        "isdigit" => {
            let mut all = !text.is_empty();
            for c in text.chars() {
                all &= match category(c) {
                    GeneralCategory::DecimalNumber => true,
                    GeneralCategory::OtherNumber => no_is_digit(c).ok_or_else(|| cannot_tell(method, c))?,
                    _ => false,
                };
            }
            all
        }
        "isnumeric" => {
            let mut all = !text.is_empty();
            for c in text.chars() {
                if is_han(c) {
                    return Err(cannot_tell(method, c));
                }
                all &= is_number(c);
            }
            all
        }
        "islower" | "isupper" => {
            let lower = method == "islower";
            let wanted = |c: char| if lower { c.is_lowercase() } else { c.is_uppercase() };
            let other = |c: char| if lower { c.is_uppercase() } else { c.is_lowercase() };
            let mut cased = false;
            for c in text.chars() {
                if other(c) || titlecase(c) {
                    return Ok(Some(false));
                }
                cased |= wanted(c);
            }
            cased
        }
        "istitle" => {
            let (mut cased, mut previous_cased) = (false, false);
            for c in text.chars() {
                if c.is_uppercase() || titlecase(c) {
                    if previous_cased {
                        return Ok(Some(false));
                    }
                    (previous_cased, cased) = (true, true);
                } else if c.is_lowercase() {
                    if !previous_cased {
                        return Ok(Some(false));
                    }
                    (previous_cased, cased) = (true, true);
                } else {
                    previous_cased = false;
                }
            }
            cased
        }
        _ => return Ok(None),
    };
    Ok(Some(answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_forms() {
        assert_eq!(repr_str("a'b"), "\"a'b\"");
        assert_eq!(repr_str("a'b\""), "'a\\'b\"'");
        assert_eq!(repr_str("é\u{a0}\n\u{7f}\u{200b}数"), "'é\\xa0\\n\\x7f\\u200b数'");
        assert_eq!(capitalize("ǆemal ΑΣ").unwrap(), "ǅemal ας");
        assert_eq!(capitalize("ßa").unwrap(), "Ssa");
        assert_eq!(title("o'neil 3rd ǳx").unwrap(), "O'Neil 3Rd ǲx");
        assert_eq!(title_filter("o'neil 3rd-x (y").unwrap(), "O'neil 3rd-X (Y");
        assert!(title("ΑΣ").is_err());
        let ask = |method: &str, text: &str| predicate(method, text).unwrap().unwrap();
        assert!(ask("islower", "abc1 !") && !ask("islower", "") && !ask("islower", "aB"));
        assert!(ask("isupper", "HELLO WORLD") && !ask("isupper", "123"));
        assert!(ask("isdigit", "²3") && !ask("isdigit", "½") && !ask("isdigit", ""));
        assert!(ask("isalpha", "数据") && !ask("isalpha", "\u{93e}") && ask("isalnum", "a½"));
        assert!(ask("istitle", "Hello World") && !ask("istitle", "HEllo"));
        assert!(predicate("isnumeric", "三").is_err() && predicate("isdigit", "\u{10E60}").is_err());
    }
}
