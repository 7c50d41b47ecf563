//! The byte-level BPE pre-tokenizer split, as a scanner: the Qwen2 and Llama-3 patterns
//! (which differ only in how many digits make one pre-token), matched alternative by
//! alternative as a backtracking regex engine would.
//!
//! A scanner rather than a regex engine because it is faster. regex-automata cuts the same
//! pre-tokens once the look-ahead in `\s+(?!\S)` is rewritten as a one-character pseudo
//! look-ahead (`examples/pretokenize_timing.rs` runs it two ways and checks every cut agrees).
//! On the chat demo data (5.0 MB, 913k pre-tokens, Qwen2 pattern, one thread; the run is in
//! `benches/results/pretokenize.txt`) the scanner split 245 MB/s in its best round (155
//! median). regex-automata's `meta::Regex`, searched anchored once per pre-token as
//! github/rust-gems' bpe-openai does, split 91 (66): 2.4x the scanner's time, round for round,
//! as its cost per search outweighs a pre-token of five bytes. Its dense DFA stepped by hand
//! split 179 (147): 1.06x the scanner's time round for round (1.3x in the machine's faster
//! periods), though ahead of it on mostly-Chinese and on the synthetic mixed text (0.91x to
//! 0.94x). That one is close; switching to it would trade the class logic below for a
//! DFA-stepping loop and 1.4 to 1.6 MB of tables per pattern.
//!
//! Unicode data, and whose: the `tokenizers` library (0.23, `onig` feature) runs the split
//! regex on Oniguruma 6.9.10 (`onig_sys` 69.9.3), whose property and case-folding tables are
//! Unicode 16.0. Here `\p{L}` and `\p{N}` come from unicode-general-category 1.1, also
//! Unicode 16.0. `\s` is Rust's `char::is_whitespace`, the `White_Space` property from the
//! compiling toolchain's tables (`char::UNICODE_VERSION` is 17.0 with rustc 1.95): the set
//! Oniguruma's docs give for its `\s` (U+0009..U+000D, U+0085, categories Zs, Zl, Zp). `(?i)`
//! in the contractions reaches beyond ASCII only through 'ſ' (U+017F, which folds to 's'). The
//! regex-automata alternative (regex-syntax 0.8.12) uses Unicode 16.0 too. What proves these
//! agree is `tests/tokenizer.rs`: it cuts every assigned code point but the private-use ones,
//! and the unassigned ones of planes 0 to 3 (where new characters are assigned), in several
//! contexts with this scanner and with the library's own regex, for both patterns, and finds
//! no difference. A dependency update that moves one table ahead of the other shows there.

use unicode_general_category::get_general_category;
use unicode_general_category::GeneralCategory::{
    DecimalNumber, LetterNumber, LowercaseLetter, ModifierLetter, OtherLetter, OtherNumber, TitlecaseLetter,
    UppercaseLetter,
};

/// The Qwen2 pre-tokenizer pattern (Qwen2, Qwen2.5, Qwen3): single digits.
pub const QWEN2_PATTERN: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// The Llama-3 pattern: digits in runs of up to three.
pub const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Letter,
    Number,
    Newline,
    Space,
    Other,
}

fn class(c: char) -> Class {
    if c.is_ascii() {
        return match c {
            'a'..='z' | 'A'..='Z' => Class::Letter,
            '0'..='9' => Class::Number,
            '\r' | '\n' => Class::Newline,
            ' ' | '\t' | '\x0b' | '\x0c' => Class::Space,
            _ => Class::Other,
        };
    }
    if c.is_whitespace() {
        return Class::Space;
    }
    match get_general_category(c) {
        UppercaseLetter | LowercaseLetter | TitlecaseLetter | ModifierLetter | OtherLetter => Class::Letter,
        DecimalNumber | LetterNumber | OtherNumber => Class::Number,
        _ => Class::Other,
    }
}

fn is_space(class: Class) -> bool {
    matches!(class, Class::Space | Class::Newline)
}

/// Length in bytes of the next pre-token of `s` (non-empty), following the split pattern's
/// alternatives in order, as a backtracking regex engine would.
pub fn next_pretoken(s: &str, max_digits: usize) -> usize {
    let mut chars = s.char_indices().peekable();
    let (_, first) = *chars.peek().expect("non-empty");
    let first_class = class(first);
    let byte_after = |n: usize| s.char_indices().nth(n).map_or(s.len(), |(i, _)| i);

    // 1. (?i:'s|'t|'re|'ve|'m|'ll|'d)
    if first == '\'' {
        let rest: Vec<char> = s[1..].chars().take(2).collect();
        let lower: Vec<char> = rest.iter().map(|c| fold(*c)).collect();
        match lower.as_slice() {
            ['s' | 't' | 'm' | 'd', ..] => return 1 + rest[0].len_utf8(),
            ['r' | 'v', 'e', ..] | ['l', 'l', ..] => return 1 + rest[0].len_utf8() + rest[1].len_utf8(),
            _ => {}
        }
    }
    // 2. [^\r\n\p{L}\p{N}]?\p{L}+
    let letters_from = |start: usize| -> usize {
        s[start..].char_indices().find(|&(_, c)| class(c) != Class::Letter).map_or(s.len(), |(i, _)| start + i)
    };
    if first_class == Class::Letter {
        return letters_from(0);
    }
    if matches!(first_class, Class::Space | Class::Other) {
        let second = first.len_utf8();
        if s[second..].chars().next().is_some_and(|c| class(c) == Class::Letter) {
            return letters_from(second);
        }
    }
    // 3. \p{N} or \p{N}{1,3}
    if first_class == Class::Number {
        let count = s.chars().take(max_digits).take_while(|&c| class(c) == Class::Number).count();
        return byte_after(count);
    }
    // 4. ` ?[^\s\p{L}\p{N}]+[\r\n]*`
    let others_from = |start: usize| -> Option<usize> {
        let end =
            s[start..].char_indices().find(|&(_, c)| class(c) != Class::Other).map_or(s.len(), |(i, _)| start + i);
        (end > start).then(|| {
            let newlines = s[end..].bytes().take_while(|&b| b == b'\r' || b == b'\n').count();
            end + newlines
        })
    };
    if first == ' ' {
        if let Some(end) = others_from(1) {
            return end;
        }
    } else if first_class == Class::Other {
        if let Some(end) = others_from(0) {
            return end;
        }
    }
    // 5-7. Whitespace runs.
    let run_end = s.char_indices().find(|&(_, c)| !is_space(class(c))).map_or(s.len(), |(i, _)| i);
    let run = &s[..run_end];
    // 5. \s*[\r\n]+ : up to and including the last newline of the run.
    if let Some(last_newline) = run.rfind(['\r', '\n']) {
        return last_newline + 1;
    }
    // 6. \s+(?!\S) : the run, or all but its last char when a non-space follows.
    if run_end == s.len() {
        return run_end;
    }
    let last_char = run.chars().next_back().map_or(0, char::len_utf8);
    if run_end - last_char > 0 {
        return run_end - last_char;
    }
    // 7. \s+
    run_end.max(first.len_utf8())
}

/// Simple case folding for the contraction alternatives.
fn fold(c: char) -> char {
    match c {
        'ſ' => 's',
        _ => c.to_ascii_lowercase(),
    }
}
