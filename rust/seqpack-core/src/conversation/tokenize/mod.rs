//! Tokenizing rendered conversations with a Hugging Face `tokenizer.json`, and mapping the
//! byte span of every message onto token indices. The whole conversation is tokenized once;
//! a token that straddles a message boundary is detected and reported, never silently moved.

mod fastbpe;
mod pretokenize;

use crate::conversation::template::Rendered;
use crate::error::{Error, Result};
use fastbpe::FastBpe;

pub use fastbpe::TokensWithOffsets;

/// A loaded tokenizer (the same Rust library the `tokenizers` Python package wraps).
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// The exact fast path for byte-level BPE, when this tokenizer is one it reproduces.
    fast: Option<std::sync::Arc<FastBpe>>,
    /// blake3 of the `tokenizer.json` text: what a token store records it was made with.
    fingerprint: String,
    /// The texts of the special added tokens, to find them inside message contents.
    special: Option<std::sync::Arc<(aho_corasick::AhoCorasick, Vec<String>)>>,
    /// A copy that reads special tokens' text as ordinary text, made on first use.
    as_text: std::sync::Arc<std::sync::OnceLock<tokenizers::Tokenizer>>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.inner.get_vocab_size(true))
            .field("fast", &self.fast.is_some())
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Load from the JSON text of a `tokenizer.json`. With `fast`, the exact byte-level BPE
    /// fast path is used when the tokenizer is one it reproduces; without, every text goes
    /// through the `tokenizers` library.
    pub fn from_json(json: &str, fast: bool) -> Result<Self> {
        let mut inner: tokenizers::Tokenizer =
            json.parse().map_err(|e| Error::Tokenizer { message: format!("cannot load tokenizer.json: {e}") })?;
        // Chat samples are cut by seqpack, turn-aware; a tokenizer-level cut or pad would
        // shift labels.
        inner.with_truncation(None).map_err(|e| Error::Tokenizer { message: e.to_string() })?;
        inner.with_padding(None);
        let fast = fast
            .then(|| serde_json::from_str::<serde_json::Value>(json).ok())
            .flatten()
            .and_then(|config| FastBpe::from_json(&config, &|text| inner.token_to_id(text)))
            .map(std::sync::Arc::new);
        let fingerprint = blake3::hash(json.as_bytes()).to_hex().to_string();
        let special: Vec<String> = inner
            .get_added_tokens_decoder()
            .values()
            .filter(|token| token.special && !token.content.is_empty())
            .map(|token| token.content.clone())
            .collect();
        let special = if special.is_empty() {
            None
        } else {
            let automaton = aho_corasick::AhoCorasick::new(&special)
                .map_err(|e| Error::Tokenizer { message: format!("special tokens: {e}") })?;
            Some(std::sync::Arc::new((automaton, special)))
        };
        Ok(Self { inner, fast, fingerprint, special, as_text: std::sync::Arc::default() })
    }

    /// blake3 of the `tokenizer.json` text this tokenizer was loaded from.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Whether the byte-level BPE fast path is in use.
    pub fn is_fast(&self) -> bool {
        self.fast.is_some()
    }

    /// The first special token whose text `text` holds, if any.
    pub fn special_token_in(&self, text: &str) -> Option<String> {
        let (automaton, tokens) = self.special.as_deref()?;
        automaton.find(text).map(|found| tokens[found.pattern().as_usize()].clone())
    }

    /// The same as [`Tokenizer::encode`], always through the `tokenizers` library.
    pub fn encode_reference(&self, text: &str) -> Result<TokensWithOffsets> {
        let encoding = self.inner.encode(text, false).map_err(|e| Error::Tokenizer { message: e.to_string() })?;
        Ok((encoding.get_ids().to_vec(), encoding.get_offsets().to_vec()))
    }

    /// Token ids and byte offsets of `text` with special tokens' text read as ordinary text,
    /// as the `tokenizers` library does with `encode_special_tokens` (transformers'
    /// `split_special_tokens=True`); non-special added tokens are still matched.
    pub fn encode_as_text(&self, text: &str) -> Result<TokensWithOffsets> {
        let splitting = self.as_text.get_or_init(|| {
            let mut copy = self.inner.clone();
            copy.set_encode_special_tokens(true);
            copy
        });
        let encoding = splitting.encode(text, false).map_err(|e| Error::Tokenizer { message: e.to_string() })?;
        Ok((encoding.get_ids().to_vec(), encoding.get_offsets().to_vec()))
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Token ids and byte offsets of `text`, without adding special tokens (a chat template
    /// writes its own).
    pub fn encode(&self, text: &str) -> Result<TokensWithOffsets> {
        if let Some(fast) = &self.fast {
            if let Some(encoded) = fast.encode(text) {
                return Ok(encoded);
            }
        }
        self.encode_reference(text)
    }
}

impl Tokenizer {
    /// The ids of many texts, encoded in parallel on `threads` threads (0: rayon's global
    /// pool), flattened in order, with each text's end in the flat ids. What the tokenizer
    /// benchmark times against other tokenizers; the ids are [`Tokenizer::encode`]'s.
    ///
    /// # Errors
    /// The first text the tokenizer fails on; a thread pool that cannot start.
    pub fn encode_batch(&self, texts: &[String], threads: usize) -> Result<(Vec<u32>, Vec<u64>)> {
        use rayon::prelude::*;
        let run = || -> Result<Vec<Vec<u32>>> {
            texts.par_iter().map(|text| self.encode(text).map(|(ids, _)| ids)).collect()
        };
        let encoded = if threads == 0 { crate::threads::install(run)? } else { pool(threads)?.install(run)? };
        let mut ends = Vec::with_capacity(encoded.len());
        let mut ids = Vec::with_capacity(encoded.iter().map(Vec::len).sum());
        for text in encoded {
            ids.extend(text);
            ends.push(ids.len() as u64);
        }
        Ok((ids, ends))
    }
}

/// A rayon pool of `threads` threads, built once per count and kept: the fast path's word
/// caches live per thread, so a fresh pool per call would time cold caches.
/// Pools of an older [`crate::threads::generation`] (built before a fork) have no threads here.
fn pool(threads: usize) -> Result<std::sync::Arc<rayon::ThreadPool>> {
    type Pools = Vec<(usize, usize, std::sync::Arc<rayon::ThreadPool>)>;
    static POOLS: std::sync::Mutex<Pools> = std::sync::Mutex::new(Vec::new());
    let generation = crate::threads::generation();
    let mut pools = POOLS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, _, pool)) = pools.iter().find(|(g, n, _)| (*g, *n) == (generation, threads)) {
        return Ok(pool.clone());
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::Tokenizer { message: format!("thread pool: {e}") })?;
    let pool = std::sync::Arc::new(pool);
    pools.push((generation, threads, pool.clone()));
    Ok(pool)
}

/// A rendered conversation as tokens, with each span's token range.
#[derive(Debug, Clone)]
pub struct TokenizedConversation {
    pub ids: Vec<u32>,
    pub offsets: Vec<(usize, usize)>,
    /// `ranges[k]` = token indices whose first byte lies in span k.
    pub ranges: Vec<std::ops::Range<usize>>,
    /// Tokens that straddle a message, header or body boundary.
    pub boundary_merges: usize,
}

impl TokenizedConversation {
    /// Token indices whose first byte lies in `start..end`.
    pub fn tokens_in(&self, start: usize, end: usize) -> std::ops::Range<usize> {
        let first = self.offsets.partition_point(|&(s, _)| s < start);
        let last = self.offsets.partition_point(|&(s, _)| s < end);
        first..last.max(first)
    }
}

pub fn tokenize(tokenizer: &Tokenizer, rendered: &Rendered) -> Result<TokenizedConversation> {
    let (ids, offsets) = tokenizer.encode(&rendered.text)?;
    Ok(with_spans(ids, offsets, rendered))
}

/// [`tokenize`], with the content of every message `escaped` names read as ordinary text
/// (`special_tokens_in_content="escape"`): each such content is tokenized by itself with
/// [`Tokenizer::encode_as_text`], the text around it as usual.
pub fn tokenize_escaping(
    tokenizer: &Tokenizer,
    rendered: &Rendered,
    escaped: &[usize],
) -> Result<TokenizedConversation> {
    let ranges: Vec<(usize, usize)> = rendered
        .spans
        .iter()
        .filter(|span| span.message.is_some_and(|m| escaped.contains(&m)) && span.content_end > span.content_start)
        .map(|span| (span.content_start, span.content_end))
        .collect();
    if ranges.is_empty() {
        return tokenize(tokenizer, rendered);
    }
    let text = &rendered.text;
    let (mut ids, mut offsets) = (Vec::new(), Vec::new());
    let mut append = |(more, spans): TokensWithOffsets, shift: usize| {
        ids.extend(more);
        offsets.extend(spans.into_iter().map(|(s, e)| (s + shift, e + shift)));
    };
    let mut at = 0;
    for (start, end) in ranges {
        if start > at {
            append(tokenizer.encode(&text[at..start])?, at);
        }
        append(tokenizer.encode_as_text(&text[start..end])?, start);
        at = end;
    }
    if at < text.len() {
        append(tokenizer.encode(&text[at..])?, at);
    }
    Ok(with_spans(ids, offsets, rendered))
}

/// The token ranges of every span, and the tokens that straddle a boundary.
fn with_spans(ids: Vec<u32>, offsets: Vec<(usize, usize)>, rendered: &Rendered) -> TokenizedConversation {
    let mut conversation = TokenizedConversation { ids, offsets, ranges: Vec::new(), boundary_merges: 0 };
    let mut boundaries: Vec<usize> = Vec::with_capacity(rendered.spans.len() * 3);
    for span in &rendered.spans {
        conversation.ranges.push(conversation.tokens_in(span.start, span.end));
        boundaries.extend([span.start, span.body_start, span.body_end]);
    }
    boundaries.sort_unstable();
    boundaries.dedup();
    // A boundary b is straddled when some token starts before b and ends after it.
    conversation.boundary_merges = boundaries
        .iter()
        .filter(|&&b| {
            let at = conversation.offsets.partition_point(|&(s, _)| s < b);
            at > 0 && conversation.offsets[at - 1].1 > b
        })
        .count();
    conversation
}
