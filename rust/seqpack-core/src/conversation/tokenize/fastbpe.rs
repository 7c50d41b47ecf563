//! A fast path for byte-level BPE tokenizers (Qwen2/2.5/3, Llama-3, GPT-2 style), producing
//! exactly the ids and byte offsets of the `tokenizers` library, several times faster: the
//! pre-tokenizer regex is a hand-written scanner, merges run on bytes, and pre-token results
//! are cached per thread.
//!
//! It accepts a `tokenizer.json` only when every part is one it reproduces exactly (NFC or no
//! normalizer, the Qwen2 or Llama-3 split pattern, byte-level, plain BPE, added tokens matched
//! on raw text); otherwise [`FastBpe::from_json`] returns `None` and the `tokenizers` library
//! does the work. A text that is not already NFC also goes to the library (normalising would
//! move offsets). `tests/tokenizer.rs` compares both on generated text and on every assigned
//! letter, number, mark, punctuation and separator code point, with the shipped tokenizer and
//! with Qwen3's.
//!
//! Unicode versions of the NFC check: `unicode_normalization::is_nfc` (0.1.26) follows Unicode
//! 18.0, while the library's NFC normalizer (unicode-normalization-alignments 0.1.12) follows
//! Unicode 9.0. The newer check is the safe side: a text it calls NFC is left unchanged by the
//! older normalizer, because Unicode's stability policy fixes the decompositions, combining
//! classes and compositions of characters already assigned in 9.0, and a character assigned
//! later is unknown to the older tables (no decomposition, class 0, no composition), so it can
//! only block changes there, never cause one. The code-point sweep (every combining mark in
//! several contexts) and the generated text (mark sequences included) confirm it. The
//! pre-tokenizer's tables are in `pretokenize.rs`.

use aho_corasick::{AhoCorasick, MatchKind};
use rustc_hash::FxHashMap;
use serde_json::Value;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use super::pretokenize::{next_pretoken, LLAMA3_PATTERN, QWEN2_PATTERN};

/// Token ids and the byte range of each in the text.
pub type TokensWithOffsets = (Vec<u32>, Vec<(usize, usize)>);

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
const CACHE_LIMIT: usize = 200_000;
/// Word caches kept per thread, one per tokenizer.
const CACHED_TOKENIZERS: usize = 4;

/// Pre-token bytes → flattened (id, byte length) pairs.
type WordCache = FxHashMap<Box<[u8]>, Box<[u32]>>;

thread_local! {
    /// One word cache per tokenizer (by id), per thread: no locks on the hot path.
    static CACHE: RefCell<FxHashMap<u64, WordCache>> = RefCell::new(FxHashMap::default());
}

#[derive(Debug)]
pub struct FastBpe {
    id: u64,
    byte_ids: [u32; 256],
    /// (left, right) → (rank, merged id).
    merges: FxHashMap<(u32, u32), (u32, u32)>,
    /// With `ignore_merges`, a pre-token that is itself a token is emitted whole.
    whole_words: Option<FxHashMap<Box<[u8]>, u32>>,
    added: Option<(AhoCorasick, Vec<u32>)>,
    max_digits: usize,
}

/// GPT-2's byte ↔ printable-character table, inverted: char → byte.
fn unicode_to_byte() -> FxHashMap<char, u8> {
    let mut printable: Vec<u32> = (u32::from(b'!')..=u32::from(b'~')).collect();
    printable.extend(0xA1..=0xAC);
    printable.extend(0xAE..=0xFF);
    let mut map = FxHashMap::default();
    let mut extra = 0;
    for byte in 0..=255u32 {
        let ch = if printable.contains(&byte) {
            byte
        } else {
            extra += 1;
            255 + extra
        };
        map.insert(char::from_u32(ch).expect("valid code point"), byte as u8);
    }
    map
}

fn token_bytes(token: &str, table: &FxHashMap<char, u8>) -> Option<Vec<u8>> {
    token.chars().map(|c| table.get(&c).copied()).collect()
}

impl FastBpe {
    /// Build from a parsed `tokenizer.json`, or `None` if any part is outside what this fast
    /// path reproduces exactly. `added_id` is the id the `tokenizers` library gives an added
    /// token's text: not always the file's, since an added token whose text the vocabulary
    /// already holds takes the vocabulary's id (and later added tokens are renumbered).
    pub fn from_json(config: &Value, added_id: &dyn Fn(&str) -> Option<u32>) -> Option<Self> {
        match config.get("normalizer") {
            None | Some(Value::Null) => {}
            Some(n) if n.get("type")? == "NFC" => {}
            _ => return None,
        }
        let pre = config.get("pre_tokenizer")?;
        if pre.get("type")? != "Sequence" {
            return None;
        }
        let steps = pre.get("pretokenizers")?.as_array()?;
        let [split, byte_level] = steps.as_slice() else { return None };
        if split.get("type")? != "Split"
            || split.get("behavior")? != "Isolated"
            || split.get("invert")? != false
            || byte_level.get("type")? != "ByteLevel"
            || byte_level.get("use_regex")? != false
            || byte_level.get("add_prefix_space")? != false
        {
            return None;
        }
        // A ByteLevel post-processor that trims offsets changes them; anything else there
        // only adds special tokens, which encoding without them never does.
        if let Some(post) = config.get("post_processor").filter(|p| !p.is_null()) {
            if post.get("type").and_then(Value::as_str) == Some("ByteLevel")
                && post.get("trim_offsets").and_then(Value::as_bool).unwrap_or(true)
            {
                return None;
            }
        }
        let max_digits = match split.get("pattern")?.get("Regex")?.as_str()? {
            QWEN2_PATTERN => 1,
            LLAMA3_PATTERN => 3,
            _ => return None,
        };
        let model = config.get("model")?;
        let empty_or_null = |key: &str| match model.get(key) {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.is_empty(),
            _ => false,
        };
        if model.get("type")? != "BPE"
            || !matches!(model.get("dropout"), None | Some(Value::Null))
            || !empty_or_null("continuing_subword_prefix")
            || !empty_or_null("end_of_word_suffix")
            || model.get("byte_fallback").and_then(Value::as_bool).unwrap_or(false)
        {
            return None;
        }
        let ignore_merges = model.get("ignore_merges").and_then(Value::as_bool).unwrap_or(false);
        let table = unicode_to_byte();
        let mut by_bytes: FxHashMap<Box<[u8]>, u32> = FxHashMap::default();
        for (token, id) in model.get("vocab")?.as_object()? {
            let bytes = token_bytes(token, &table)?;
            by_bytes.insert(bytes.into_boxed_slice(), u32::try_from(id.as_u64()?).ok()?);
        }
        let mut byte_ids = [0u32; 256];
        for (byte, slot) in byte_ids.iter_mut().enumerate() {
            *slot = *by_bytes.get(&[byte as u8][..])?;
        }
        let mut merges = FxHashMap::default();
        for (rank, merge) in model.get("merges")?.as_array()?.iter().enumerate() {
            let (left, right) = match merge {
                Value::String(pair) => pair.split_once(' ')?,
                Value::Array(pair) if pair.len() == 2 => (pair[0].as_str()?, pair[1].as_str()?),
                _ => return None,
            };
            let left_bytes = token_bytes(left, &table)?;
            let right_bytes = token_bytes(right, &table)?;
            let mut both = left_bytes.clone();
            both.extend_from_slice(&right_bytes);
            let ids = (*by_bytes.get(&left_bytes[..])?, *by_bytes.get(&right_bytes[..])?);
            let merged_id = *by_bytes.get(&both[..])?;
            // A repeated pair takes its last rank, as `tokenizers` (which collects into a map).
            merges.insert(ids, (rank as u32, merged_id));
        }
        let mut patterns = Vec::new();
        let mut ids = Vec::new();
        for token in config.get("added_tokens")?.as_array()? {
            let flag = |key: &str| token.get(key).and_then(Value::as_bool).unwrap_or(false);
            if flag("normalized") || flag("lstrip") || flag("rstrip") || flag("single_word") {
                return None;
            }
            let content = token.get("content")?.as_str()?;
            if content.is_empty() {
                continue; // `tokenizers` never matches an empty added token
            }
            patterns.push(content.to_string());
            ids.push(added_id(content)?);
        }
        let added = if patterns.is_empty() {
            None
        } else {
            let automaton = AhoCorasick::builder().match_kind(MatchKind::LeftmostLongest).build(&patterns).ok()?;
            Some((automaton, ids))
        };
        Some(Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            byte_ids,
            merges,
            whole_words: ignore_merges.then_some(by_bytes),
            added,
            max_digits,
        })
    }

    /// Ids and byte offsets, or `None` when the text must go to the full library (not NFC).
    pub fn encode(&self, text: &str) -> Option<TokensWithOffsets> {
        if !unicode_normalization::is_nfc(text) {
            return None;
        }
        let mut ids = Vec::with_capacity(text.len() / 3);
        let mut offsets = Vec::with_capacity(text.len() / 3);
        let mut at = 0;
        if let Some((automaton, added_ids)) = &self.added {
            for found in automaton.find_iter(text) {
                self.encode_plain(text, at, found.start(), &mut ids, &mut offsets);
                ids.push(added_ids[found.pattern().as_usize()]);
                offsets.push((found.start(), found.end()));
                at = found.end();
            }
        }
        self.encode_plain(text, at, text.len(), &mut ids, &mut offsets);
        Some((ids, offsets))
    }

    fn encode_plain(
        &self,
        text: &str,
        start: usize,
        end: usize,
        ids: &mut Vec<u32>,
        offsets: &mut Vec<(usize, usize)>,
    ) {
        let piece = &text[start..end];
        let mut position = 0;
        while position < piece.len() {
            let length = next_pretoken(&piece[position..], self.max_digits);
            let word = &piece[position..position + length];
            let base = start + position;
            self.encode_word(word, base, ids, offsets);
            position += length;
        }
    }

    fn encode_word(&self, text: &str, base: usize, ids: &mut Vec<u32>, offsets: &mut Vec<(usize, usize)>) {
        let word = text.as_bytes();
        if let Some(whole) = &self.whole_words {
            if let Some(&id) = whole.get(word) {
                ids.push(id);
                offsets.push((base, base + word.len()));
                return;
            }
        }
        let emit = |pieces: &[u32], ids: &mut Vec<u32>, offsets: &mut Vec<(usize, usize)>| {
            // Pieces are (id, byte length) pairs flattened: even = id, odd = length. A token
            // holding part of a multi-byte character reports the whole character's bytes, as
            // `tokenizers` does.
            let mut at = 0;
            for pair in pieces.chunks_exact(2) {
                let end = at + pair[1] as usize;
                let mut start = at;
                while !text.is_char_boundary(start) {
                    start -= 1;
                }
                let mut stop = end;
                while !text.is_char_boundary(stop) {
                    stop += 1;
                }
                ids.push(pair[0]);
                offsets.push((base + start, base + stop));
                at = end;
            }
        };
        CACHE.with(|cache| {
            let mut cache = cache.borrow_mut();
            if !cache.contains_key(&self.id) && cache.len() >= CACHED_TOKENIZERS {
                // Tokenizers come and go (one per loaded file); keep the memory bounded.
                cache.clear();
            }
            let words = cache.entry(self.id).or_default();
            if let Some(pieces) = words.get(word) {
                emit(pieces, ids, offsets);
                return;
            }
            let pieces = self.merge(word);
            emit(&pieces, ids, offsets);
            if words.len() >= CACHE_LIMIT {
                words.clear();
            }
            words.insert(Box::from(word), pieces);
        });
    }

    /// Apply merges, lowest rank first, leftmost on ties (the order `tokenizers` uses).
    /// Short words scan for the best pair; long ones use a heap, O(n log n).
    fn merge(&self, word: &[u8]) -> Box<[u32]> {
        if word.len() > 48 {
            return self.merge_long(word);
        }
        let mut symbols: Vec<(u32, u32)> = word.iter().map(|&b| (self.byte_ids[b as usize], 1)).collect();
        loop {
            let mut best: Option<(u32, usize, u32)> = None;
            for index in 0..symbols.len().saturating_sub(1) {
                if let Some(&(rank, merged)) = self.merges.get(&(symbols[index].0, symbols[index + 1].0)) {
                    if best.is_none_or(|(r, _, _)| rank < r) {
                        best = Some((rank, index, merged));
                    }
                }
            }
            let Some((_, index, merged)) = best else { break };
            symbols[index] = (merged, symbols[index].1 + symbols[index + 1].1);
            symbols.remove(index + 1);
        }
        symbols.iter().flat_map(|&(id, len)| [id, len]).collect()
    }

    /// The heap formulation `tokenizers` itself uses: pop the (rank, position) minimum, skip
    /// it if its pair no longer exists, merge, push the pairs formed with the neighbours.
    fn merge_long(&self, word: &[u8]) -> Box<[u32]> {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        let n = word.len();
        let mut id: Vec<u32> = word.iter().map(|&b| self.byte_ids[b as usize]).collect();
        let mut len: Vec<u32> = vec![1; n];
        let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
        let mut next: Vec<usize> = (1..=n).collect();
        let mut alive = vec![true; n];
        let mut heap: BinaryHeap<Reverse<(u32, usize, u32)>> = BinaryHeap::new();
        for i in 0..n - 1 {
            if let Some(&(rank, merged)) = self.merges.get(&(id[i], id[i + 1])) {
                heap.push(Reverse((rank, i, merged)));
            }
        }
        while let Some(Reverse((_, at, merged))) = heap.pop() {
            if !alive[at] || next[at] >= n {
                continue;
            }
            let right = next[at];
            if self.merges.get(&(id[at], id[right])).map(|&(_, m)| m) != Some(merged) {
                continue;
            }
            id[at] = merged;
            len[at] += len[right];
            alive[right] = false;
            next[at] = next[right];
            if next[at] < n {
                prev[next[at]] = at;
            }
            if prev[at] < n {
                let p = prev[at];
                if let Some(&(rank, m)) = self.merges.get(&(id[p], id[at])) {
                    heap.push(Reverse((rank, p, m)));
                }
            }
            if next[at] < n {
                if let Some(&(rank, m)) = self.merges.get(&(id[at], id[next[at]])) {
                    heap.push(Reverse((rank, at, m)));
                }
            }
        }
        (0..n).filter(|&i| alive[i]).flat_map(|i| [id[i], len[i]]).collect()
    }
}
