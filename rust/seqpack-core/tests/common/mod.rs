//! Helpers shared by the conversation tests: the shipped tokenizer, message builders, and the
//! official chat templates of the shared data folder.

#![allow(dead_code, reason = "each test crate uses its own part of these helpers")]

use seqpack_core::conversation::records::{Conversation, Message, Role, ToolCall};
use seqpack_core::conversation::tokenize::Tokenizer;
use serde_json::Value;
use std::sync::OnceLock;

/// The small byte-level BPE tokenizer the Python package ships (`ChatML` special tokens).
pub fn tokenizer() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../python/seqpack/data/tokenizer.json");
        let json = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        Tokenizer::from_json(&json, true).expect("the shipped tokenizer loads")
    })
}

/// An official chat template from the shared data folder. In CI (`CI` set) a missing file
/// fails the test; elsewhere the test is skipped with a note.
pub fn shared_template(file: &str) -> Option<String> {
    let path = format!("{}{file}", concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/templates/"));
    match std::fs::read_to_string(&path) {
        Ok(source) => Some(source),
        Err(error) if std::env::var_os("CI").is_some() => {
            panic!("{path}: {error}; the shared chat templates must exist in CI")
        }
        Err(error) => {
            eprintln!("note: skipping, {path} cannot be read ({error})");
            None
        }
    }
}

pub fn system(text: &str) -> Message {
    Message::new(Role::System, text)
}

pub fn user(text: &str) -> Message {
    Message::new(Role::User, text)
}

pub fn assistant(text: &str) -> Message {
    Message::new(Role::Assistant, text)
}

pub fn tool(text: &str) -> Message {
    Message::new(Role::Tool, text)
}

/// An assistant message with reasoning (`reasoning_content`).
pub fn thinking(reasoning: &str, text: &str) -> Message {
    Message { reasoning: Some(reasoning.to_string()), ..assistant(text) }
}

/// An assistant message calling `name` with `arguments`, with `text` before the call.
pub fn calling(text: &str, name: &str, arguments: Value) -> Message {
    Message { tool_calls: vec![ToolCall { name: name.to_string(), arguments }], ..assistant(text) }
}

pub fn conversation(messages: Vec<Message>) -> Conversation {
    Conversation { messages, tools: Vec::new() }
}

/// `count` words of filler, distinct per `seed`, so long messages are easy to write.
pub fn words(seed: usize, count: usize) -> String {
    const WORDS: [&str; 16] = [
        "river", "stone", "light", "green", "paper", "music", "table", "cloud", "north", "apple", "quiet", "train",
        "window", "garden", "silver", "market",
    ];
    (0..count).map(|i| WORDS[(seed * 7 + i * 3 + i / 5) % WORDS.len()]).collect::<Vec<_>>().join(" ")
}
