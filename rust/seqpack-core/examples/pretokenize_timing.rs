//! Time the pre-tokenizer split alone: the hand-written scanner the fast path uses (compiled
//! in here from `src/conversation/tokenize/pretokenize.rs`, unchanged) against the same split
//! on regex-automata, two ways: its `meta::Regex` (the approach of github/rust-gems'
//! bpe-openai) and its dense DFA stepped byte by byte here. Same texts, same run, rounds
//! interleaved with the order rotated; every round checks that all three split identically.
//!
//! `cargo run --release -p seqpack-core --example pretokenize_timing -- [FILE.json|FILE.jsonl ...]`
//!
//! Every non-empty string value in the files is one text (a chat message: the fast path splits
//! each stretch between added tokens on its own), plus synthetic texts. One thread.

#[path = "../src/conversation/tokenize/pretokenize.rs"]
mod pretokenize;

use pretokenize::{next_pretoken, LLAMA3_PATTERN, QWEN2_PATTERN};
use regex_automata::dfa::{dense, Automaton, StartKind};
use regex_automata::util::primitives::StateID;
use regex_automata::util::start;
use regex_automata::{meta, Anchored, Input};
use std::time::Instant;

const ROUNDS: usize = 21;

/// The split pattern as three patterns searched together, anchored, first match wins
/// (leftmost-first, the alternation's own preference order). `\s+(?!\S)` is the only part a
/// DFA cannot run; a backtracking engine matches it as the whole whitespace run when that
/// reaches the end of the text, else the run less its last character (when that leaves one).
/// So: every alternative before it plus `\s+\z`; then `\s+\s`, whose last character is a
/// look-ahead to give back; then `\s+`.
fn without_lookahead(pattern: &str) -> [String; 3] {
    let head = pattern.strip_suffix(r"|\s+(?!\S)|\s+").expect("the Qwen2 and Llama-3 patterns end so");
    [format!(r"{head}|\s+\z"), r"\s+\s".to_string(), r"\s+".to_string()]
}
const LOOKAHEAD_PATTERN: usize = 1;

/// Where a pre-token ends, given the end of the match and the pattern that matched.
fn pretoken_end(text: &str, match_end: usize, pattern: usize) -> usize {
    if pattern == LOOKAHEAD_PATTERN {
        match_end - text[..match_end].chars().next_back().map_or(0, char::len_utf8)
    } else {
        match_end
    }
}

struct MetaSplitter {
    regex: meta::Regex,
    cache: meta::Cache,
}

impl MetaSplitter {
    fn new(pattern: &str) -> Self {
        let regex = meta::Regex::new_many(&without_lookahead(pattern)).expect("the rewritten pattern compiles");
        let cache = regex.create_cache();
        Self { regex, cache }
    }

    fn split(&mut self, text: &str, mut each: impl FnMut(usize)) {
        let mut at = 0;
        while at < text.len() {
            let input = Input::new(text).range(at..).anchored(Anchored::Yes);
            let found = self.regex.search_with(&mut self.cache, &input).expect("every character starts a pre-token");
            at = pretoken_end(text, found.end(), found.pattern().as_usize());
            each(at);
        }
    }
}

/// The dense DFA stepped here: `meta::Regex` costs more per search than the bytes of a
/// typical pre-token (about five), so the loop is the DFA's own, without the search API.
struct DenseSplitter {
    dfa: dense::DFA<Vec<u32>>,
    start: StateID,
}

impl DenseSplitter {
    fn new(pattern: &str) -> Self {
        let dfa = dense::Builder::new()
            // Accelerated states only pay off in the search API's own loop; here they would
            // just be more special states to branch on.
            .configure(dense::Config::new().start_kind(StartKind::Anchored).accelerate(false))
            .build_many(&without_lookahead(pattern))
            .expect("the rewritten pattern compiles");
        // The pattern has no look-behind assertion, so one start state serves every position.
        let start = dfa.start_state(&start::Config::new().anchored(Anchored::Yes)).expect("an anchored start state");
        Self { dfa, start }
    }

    /// (pattern, length) of the leftmost-first match at the start of `bytes`: the last match
    /// state seen before the DFA dies. A DFA reports a match one byte late, so a match state
    /// entered on byte `i` means a match ending at `i`.
    fn match_at_start(&self, bytes: &[u8]) -> (usize, usize) {
        let dfa = &self.dfa;
        let mut state = self.start;
        let mut found = None;
        for (i, &byte) in bytes.iter().enumerate() {
            state = dfa.next_state(state, byte);
            if dfa.is_special_state(state) {
                if dfa.is_match_state(state) {
                    found = Some((state, i));
                } else if dfa.is_dead_state(state) {
                    let (state, end) = found.expect("every character starts a pre-token");
                    return (dfa.match_pattern(state, 0).as_usize(), end);
                }
            }
        }
        let eoi = dfa.next_eoi_state(state);
        let (state, end) = if dfa.is_match_state(eoi) { (eoi, bytes.len()) } else { found.expect("a match") };
        (dfa.match_pattern(state, 0).as_usize(), end)
    }

    fn split(&self, text: &str, mut each: impl FnMut(usize)) {
        let mut at = 0;
        while at < text.len() {
            let (pattern, length) = self.match_at_start(&text.as_bytes()[at..]);
            at = pretoken_end(text, at + length, pattern);
            each(at);
        }
    }
}

fn collect_strings(value: &serde_json::Value, texts: &mut Vec<String>) {
    match value {
        serde_json::Value::String(text) if !text.is_empty() => texts.push(text.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|item| collect_strings(item, texts)),
        serde_json::Value::Object(fields) => fields.values().for_each(|field| collect_strings(field, texts)),
        _ => {}
    }
}

fn read_texts(path: &str) -> Vec<String> {
    let content = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    let mut texts = Vec::new();
    // One JSON document, or else one per line (JSON lines).
    if let Ok(document) = serde_json::from_str(&content) {
        collect_strings(&document, &mut texts);
    } else {
        for line in content.lines().filter(|line| !line.trim().is_empty()) {
            collect_strings(&serde_json::from_str(line).expect("a JSON line"), &mut texts);
        }
    }
    texts
}

/// Deterministic texts of the kinds chat data mixes: prose, code, CJK, numbers and
/// whitespace-heavy layout (a xorshift generator, so every run times the same bytes).
fn synthetic_texts() -> Vec<String> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut below = move |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % bound as u64) as usize
    };
    let words = ["the", "model", "don't", "We'll", "tokenizer", "packing", "sequence", "I'm", "data", "Qwen"];
    let code = ["fn main() {\n", "    let x = 42;\n", "\treturn x * 2;\n", "}\n\n", "  # comment\r\n", "if (a && b) {"];
    let cjk = ["细胞理论", "是生物科学的", "一个理论，", "日本語の", "テキスト。", "한국어 문장"];
    let other = ["3.14159", " 2024-06-01", " $1,299.99", "  \n", "\n\n\n", "   ", "👍🏽", " مرحبا", "—", "…"];
    (0..4000)
        .map(|_| {
            let mut text = String::new();
            for _ in 0..20 + below(200) {
                match below(10) {
                    0..=4 => {
                        text.push(' ');
                        text.push_str(words[below(words.len())]);
                    }
                    5 => text.push_str(code[below(code.len())]),
                    6 | 7 => text.push_str(cjk[below(cjk.len())]),
                    _ => text.push_str(other[below(other.len())]),
                }
            }
            text
        })
        .collect()
}

/// Pre-token count and a checksum of their ends: what each splitter must agree on, and
/// what keeps the optimiser from dropping the work.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Splits {
    count: usize,
    checksum: u64,
}

impl Splits {
    fn add(&mut self, end: usize) {
        self.count += 1;
        self.checksum = self.checksum.wrapping_mul(31).wrapping_add(end as u64);
    }
}

fn min_and_median(mut times: Vec<f64>) -> (f64, f64) {
    times.sort_by(f64::total_cmp);
    (times[0], times[times.len() / 2])
}

fn report(corpus: &str, texts: &[String]) {
    let megabytes = texts.iter().map(String::len).sum::<usize>() as f64 / 1e6;
    for (pattern_name, pattern, max_digits) in [("qwen2", QWEN2_PATTERN, 1), ("llama3", LLAMA3_PATTERN, 3)] {
        let mut meta = MetaSplitter::new(pattern);
        let dense = DenseSplitter::new(pattern);
        let mut run = |which: usize| {
            let mut splits = Splits::default();
            for text in texts {
                match which {
                    0 => {
                        let mut at = 0;
                        while at < text.len() {
                            at += next_pretoken(&text[at..], max_digits);
                            splits.add(at);
                        }
                    }
                    1 => meta.split(text, |end| splits.add(end)),
                    _ => dense.split(text, |end| splits.add(end)),
                }
            }
            std::hint::black_box(splits)
        };
        let mut seconds = [Vec::new(), Vec::new(), Vec::new()];
        let mut ratios = [Vec::new(), Vec::new()];
        let mut agreed = Splits::default();
        for round in 0..ROUNDS {
            let mut outputs = [Splits::default(); 3];
            let mut round_seconds = [0.0; 3];
            // Rotate who goes first, so no splitter always runs on a warmer cache.
            for k in 0..3 {
                let which = (round + k) % 3;
                let start = Instant::now();
                outputs[which] = run(which);
                round_seconds[which] = start.elapsed().as_secs_f64();
            }
            assert!(outputs.iter().all(|&o| o == outputs[0]), "the splitters disagree on {corpus}: {outputs:?}");
            agreed = outputs[0];
            // Within one round all three see the same machine (this one is shared), so the
            // per-round ratio is steadier than a ratio of separate best times.
            ratios[0].push(round_seconds[1] / round_seconds[0]);
            ratios[1].push(round_seconds[2] / round_seconds[0]);
            for (all, one) in seconds.iter_mut().zip(round_seconds) {
                all.push(one);
            }
        }
        let [scanner, meta, dense] = seconds.map(min_and_median);
        let [meta_ratio, dense_ratio] = ratios.map(|r| min_and_median(r).1);
        println!(
            "{corpus:<24} {pattern_name:<6} {megabytes:>5.2} MB {:>7} pre-tokens | MB/s best (median): scanner \
             {:>4.0} ({:>4.0}), meta::Regex {:>4.0} ({:>4.0}), dense DFA {:>4.0} ({:>4.0}) | time / scanner's: \
             meta::Regex {meta_ratio:.2}, dense DFA {dense_ratio:.2}",
            agreed.count,
            megabytes / scanner.0,
            megabytes / scanner.1,
            megabytes / meta.0,
            megabytes / meta.1,
            megabytes / dense.0,
            megabytes / dense.1,
        );
    }
}

fn main() {
    let files: Vec<String> = std::env::args().skip(1).collect();
    println!(
        "{ROUNDS} interleaved rounds, one thread. MB/s of UTF-8 text split into pre-tokens, best and median round; \
         time / scanner's: the median over rounds of each splitter's time divided by the scanner's in that round"
    );
    let mut all = Vec::new();
    for file in &files {
        let texts = read_texts(file);
        let name = std::path::Path::new(file).file_stem().map_or(file.clone(), |s| s.to_string_lossy().into_owned());
        report(&name, &texts);
        all.extend(texts);
    }
    if files.len() > 1 {
        report("all files", &all);
    }
    report("synthetic", &synthetic_texts());
}
