//! Arbitrary bytes as a .jsonl file of chat records, read and encoded with the Qwen3 layout
//! and the project's small tokenizer: never a panic; errors are typed; every kept sample fits.
#![no_main]
use libfuzzer_sys::fuzz_target;
use seqpack_core::conversation::{encode_records, read_records, EncodeOptions, OnError, Template, Tokenizer};
use std::io::Write;
use std::sync::OnceLock;

fn tokenizer() -> &'static Tokenizer {
    static LOADED: OnceLock<Tokenizer> = OnceLock::new();
    LOADED.get_or_init(|| {
        let json = include_str!("../../python/seqpack/data/tokenizer.json");
        Tokenizer::from_json(json, true).expect("the shipped tokenizer")
    })
}

fuzz_target!(|data: &[u8]| {
    let mut file = tempfile();
    file.1.write_all(data).expect("writable temp file");
    drop(file.1);
    let Ok(records) = read_records(&file.0) else {
        let _ = std::fs::remove_file(&file.0);
        return;
    };
    let _ = std::fs::remove_file(&file.0);
    if records.is_empty() {
        return;
    }
    let count = records.len();
    let mut options = EncodeOptions::new(64);
    options.on_error = OnError::Skip;
    if let Ok(encoded) = encode_records(records, &Template::Qwen3, tokenizer(), &options) {
        assert_eq!(encoded.reports.len(), count);
        for pair in encoded.flat.offsets.windows(2) {
            assert!(pair[1] - pair[0] <= 64 && pair[1] > pair[0]);
        }
    }
});

fn tempfile() -> (std::path::PathBuf, std::fs::File) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "seqpack-fuzz-{}-{}.jsonl",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let file = std::fs::File::create(&path).expect("a temp file");
    (path, file)
}
