//! Arbitrary Jinja sources rendered over a fixed conversation: never a panic or a hang (the
//! sandbox's fuel bounds the work); a render error is a typed error.
#![no_main]
use libfuzzer_sys::fuzz_target;
use seqpack_core::conversation::records::parse_record;
use seqpack_core::conversation::template::JinjaTemplate;
use seqpack_core::conversation::{Format, Mapping, Origin, Template};

fuzz_target!(|source: &str| {
    let Ok(template) = JinjaTemplate::new(source, "<|im_end|>", "<s>", "</s>") else { return };
    let template = Template::Jinja(Box::new(template));
    let record = serde_json::json!({"messages": [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "hi <|im_end|>"},
        {"role": "assistant", "content": "hello"},
    ]});
    let origin = Origin { record: 0, line: None };
    let Ok(conversation) = parse_record(&record, Format::Auto, &Mapping::default(), origin) else { return };
    let _ = template.render_text(&conversation, false);
    let _ = template.render(&conversation, &[0, 1, 2]);
});
