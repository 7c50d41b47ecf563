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
        Ok(Self { inner, fast, fingerprint, special })
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
    Ok(conversation)
}
