//! Arbitrary bytes as a .jsonl file of chat records (after a first byte that picks one of
//! the built-in templates), read and encoded with that template and the project's small
//! tokenizer: never a panic; errors are typed; every kept sample fits; every render's spans
//! tile its text, each message's body inside its span and its content inside its body.
#![no_main]
use libfuzzer_sys::fuzz_target;
use seqpack_core::conversation::records::{parse_record, Conversation, Format, Mapping};
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

const BUILTINS: [&str; 18] = [
    "qwen3",
    "qwen2.5",
    "llama3.0",
    "llama3.1",
    "llama3.2",
    "deepseek-v3.1",
    "deepseek-r1",
    "mistral",
    "mistral-nemo",
    "gemma2",
    "gemma3",
    "phi3.5",
    "phi4",
    "glm4.6",
    "glm4.7",
    "chatml",
    "llama3",
    "llama3.3",
];

fn check_spans(template: &Template, conversation: &Conversation) {
    let all: Vec<usize> = (0..conversation.messages.len()).collect();
    let Ok(rendered) = template.render(conversation, &all) else { return };
    let mut at = 0;
    for span in &rendered.spans {
        assert_eq!(span.start, at, "spans tile the text");
        assert!(span.start <= span.body_start && span.body_start <= span.body_end && span.body_end <= span.end);
        assert!(span.body_start <= span.content_start && span.content_end <= span.body_end);
        assert!(span.content_start <= span.content_end);
        at = span.end;
    }
    assert_eq!(at, rendered.text.len(), "spans cover the text");
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, data)) = data.split_first() else { return };
    let template = Template::from_name(BUILTINS[usize::from(pick) % BUILTINS.len()]).expect("a built-in");
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
    for record in &records {
        let Ok(value) = &record.value else { continue };
        if let Ok(conversation) = parse_record(value, Format::Auto, &Mapping::default(), record.origin) {
            check_spans(&template, &conversation);
        }
    }
    let count = records.len();
    let mut options = EncodeOptions::new(64);
    options.on_error = OnError::Skip;
    if let Ok(encoded) = encode_records(records, &template, tokenizer(), &options) {
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
