//! Jinja chat templates: every message located exactly in the rendered text, or the template
//! refused; and the official Qwen3, Qwen2.5 and Llama-3 templates against the built-in ones.

mod common;

use common::{assistant, calling, conversation, shared_template, system, thinking, tool, user};
use seqpack_core::conversation::records::{Conversation, Message, Role, ToolCall};
use seqpack_core::conversation::template::{JinjaTemplate, MessageSpan, Rendered, Template};
use seqpack_core::Error;
use serde_json::json;

fn jinja(source: &str, end_of_turn: &str, bos_token: &str, eos_token: &str) -> Template {
    Template::Jinja(Box::new(JinjaTemplate::new(source, end_of_turn, bos_token, eos_token).expect("compiles")))
}

fn everything(conv: &Conversation) -> Vec<usize> {
    (0..conv.messages.len()).collect()
}

fn span_of(rendered: &Rendered, message: usize) -> MessageSpan {
    *rendered.spans.iter().find(|s| s.message == Some(message)).unwrap_or_else(|| panic!("no span for {message}"))
}

/// Spans in text order, covering the text without gaps, each one's parts in order.
fn assert_tiles(rendered: &Rendered) {
    let mut at = 0;
    for span in &rendered.spans {
        assert_eq!(span.start, at, "a gap or an overlap before {span:?}");
        let parts = [span.start, span.body_start, span.content_start, span.content_end, span.body_end, span.end];
        assert!(parts.windows(2).all(|p| p[0] <= p[1]), "parts out of order: {span:?}");
        at = span.end;
    }
    assert_eq!(at, rendered.text.len(), "the spans stop before the end of the text");
}

/// The template's refusal: `Error::Template`, never a guess.
fn assert_refused(result: Result<Rendered, Error>, why: &str) {
    match result {
        Err(Error::Template { message }) => assert!(message.contains(why), "{message}"),
        Err(other) => panic!("expected a template error, got {other}"),
        Ok(rendered) => panic!("expected a refusal, got {:?}", rendered.text),
    }
}

// ---------------------------------------------------------------------------------------------
// Small inline templates.

/// A `ChatML`-like template with a BOS token and `</s>` ending every turn.
const TAGGED: &str = "{{ bos_token }}{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}</s>\n{% endfor %}\
                      {% if add_generation_prompt %}<|assistant|>\n{% endif %}";

#[test]
fn inline_spans_tile_the_text_and_find_every_content() {
    let conv = conversation(vec![
        system("Be kind."),
        user("Grüße! 1 < 2 & \"quotes\""),
        assistant("Hello ✓ — done."),
        user("Again?"),
        assistant(""),
        user("Last."),
        assistant("Bye.\n"),
    ]);
    let template = jinja(TAGGED, "</s>", "<s>", "</s>");
    let rendered = template.render(&conv, &everything(&conv)).unwrap();
    assert_tiles(&rendered);

    // The text and every span, written out by hand.
    let mut text = String::from("<s>");
    let mut expected = Vec::new();
    for (index, message) in conv.messages.iter().enumerate() {
        let start = if index == 0 { 0 } else { text.len() };
        text.push_str("<|");
        text.push_str(message.role.name());
        text.push_str("|>\n");
        let content_start = text.len();
        text.push_str(&message.content);
        let content_end = text.len();
        text.push_str("</s>");
        let body_end = text.len();
        text.push('\n');
        let span = MessageSpan {
            message: Some(index),
            start,
            body_start: content_start,
            content_start,
            content_end,
            body_end,
            end: text.len(),
        };
        expected.push(span);
    }
    assert_eq!(rendered.text, text);
    assert_eq!(rendered.spans, expected);
    for (index, message) in conv.messages.iter().enumerate() {
        let span = span_of(&rendered, index);
        assert_eq!(&text[span.content_start..span.content_end], message.content);
    }

    // A subset is located the same way, the BOS token in the first kept message's header.
    let rendered = template.render(&conv, &[0, 5, 6]).unwrap();
    assert_tiles(&rendered);
    assert_eq!(rendered.text, "<s><|system|>\nBe kind.</s>\n<|user|>\nLast.</s>\n<|assistant|>\nBye.\n</s>\n");
    let answer = span_of(&rendered, 6);
    assert_eq!(&rendered.text[answer.start..answer.body_start], "<|assistant|>\n");
    assert_eq!(&rendered.text[answer.body_start..answer.body_end], "Bye.\n</s>");
    assert_eq!(&rendered.text[span_of(&rendered, 0).start..span_of(&rendered, 0).body_start], "<s><|system|>\n");
}

/// Assistant turns open with a header longer than the user's and end with the EOS token.
const HASHES: &str = "{% for m in messages %}{% if m.role == 'user' %}### User:\n{{ m.content }}\n\n\
                      {% else %}### Assistant:\n{{ m.content }}{{ eos_token }}\n\n{% endif %}{% endfor %}\
                      {% if add_generation_prompt %}### Assistant:\n{% endif %}";

#[test]
fn an_assistant_body_starts_after_the_generation_prompt() {
    let conv = conversation(vec![user("Hi"), assistant("Hello"), user("More?"), assistant("Yes\n\nmore.")]);
    let rendered = jinja(HASHES, "<|end|>", "", "<|end|>").render(&conv, &everything(&conv)).unwrap();
    assert_tiles(&rendered);
    let text = &rendered.text;
    assert_eq!(
        text,
        "### User:\nHi\n\n### Assistant:\nHello<|end|>\n\n### User:\nMore?\n\n### Assistant:\nYes\n\nmore.<|end|>\n\n"
    );
    for (index, body) in [(1, "Hello<|end|>"), (3, "Yes\n\nmore.<|end|>")] {
        let span = span_of(&rendered, index);
        assert_eq!(&text[span.start..span.body_start], "### Assistant:\n", "message {index}");
        assert_eq!(&text[span.body_start..span.body_end], body, "message {index}");
        assert_eq!(&text[span.content_start..span.content_end], conv.messages[index].content);
        assert_eq!(&text[span.body_end..span.end], "\n\n");
    }
    // A user message has no end-of-turn marker here: its body is its content.
    for (index, content) in [(0, "Hi"), (2, "More?")] {
        let span = span_of(&rendered, index);
        assert_eq!(&text[span.start..span.body_start], "### User:\n");
        assert_eq!(&text[span.body_start..span.body_end], content);
        assert_eq!(&text[span.body_end..span.end], "\n\n");
    }
}

#[test]
fn an_empty_answer_lies_right_after_the_generation_prompt() {
    // The user message has no end-of-turn marker of its own, so the answer's would have been
    // taken for it: refused before. The empty content is now located by a marker (the
    // template writes the same text around a marker as around nothing).
    let conv = conversation(vec![user("Hi"), assistant("")]);
    let rendered = jinja(HASHES, "<|end|>", "", "<|end|>").render(&conv, &[0, 1]).unwrap();
    assert_tiles(&rendered);
    assert_eq!(rendered.text, "### User:\nHi\n\n### Assistant:\n<|end|>\n\n");
    let answer = span_of(&rendered, 1);
    assert_eq!(&rendered.text[answer.start..answer.body_start], "### Assistant:\n");
    assert_eq!((answer.content_start, answer.content_end), (answer.body_start, answer.body_start));
    assert_eq!(&rendered.text[answer.body_start..answer.body_end], "<|end|>");
    assert_eq!(&rendered.text[span_of(&rendered, 0).body_start..span_of(&rendered, 0).body_end], "Hi");
}

#[test]
fn a_generation_prompt_that_does_not_open_the_turn_is_refused() {
    let source =
        HASHES.replace("{% if add_generation_prompt %}### Assistant:\n", "{% if add_generation_prompt %}ASSISTANT: ");
    let conv = conversation(vec![user("Hi"), assistant("Hello")]);
    assert_refused(jinja(&source, "<|end|>", "", "<|end|>").render(&conv, &[0, 1]), "generation prompt");
}

#[test]
fn a_content_rendered_twice_or_out_of_order_is_refused() {
    let conv = conversation(vec![user("Hi"), assistant("Hello")]);
    let twice = "{% for m in messages %}<{{ m.role }}>{{ m.content }}|{{ m.content }}</s>{% endfor %}";
    assert_refused(jinja(twice, "</s>", "", "</s>").render(&conv, &[0, 1]), "exactly once");
    let reversed = "{% for m in messages|reverse %}<{{ m.role }}>{{ m.content }}</s>{% endfor %}";
    assert_refused(jinja(reversed, "</s>", "", "</s>").render(&conv, &[0, 1]), "exactly once");
    // Only the user's content twice: still refused, naming that message.
    let user_twice = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% if m.role == 'user' %} ({{ m.content }})\
                      {% endif %}</s>{% endfor %}";
    assert_refused(jinja(user_twice, "</s>", "", "</s>").render(&conv, &[0, 1]), "message 0 (user)");
}

#[test]
fn a_transformed_content_is_located_or_refused_never_guessed() {
    let conv = conversation(vec![user("  padded question  "), assistant("Answer")]);
    // Trimmed: the template's own text resumes right after, so the content is found.
    let trimmed = "{% for m in messages %}<{{ m.role }}>{{ m.content | trim }}</s>{% endfor %}";
    let rendered = jinja(trimmed, "</s>", "", "</s>").render(&conv, &[0, 1]).unwrap();
    assert_tiles(&rendered);
    assert_eq!(rendered.text, "<user>padded question</s><assistant>Answer</s>");
    let question = span_of(&rendered, 0);
    assert_eq!(&rendered.text[question.content_start..question.content_end], "padded question");

    // Reversed or measured: the content is nowhere in the text.
    for filter in ["reverse", "length", "upper | reverse"] {
        let source =
            format!("{{% for m in messages %}}<{{{{ m.role }}}}>{{{{ m.content | {filter} }}}}</s>{{% endfor %}}");
        assert_refused(jinja(&source, "</s>", "", "</s>").render(&conv, &[0, 1]), "");
    }
    // Rewritten with nothing of the template's own between two contents: where one ends and
    // the next begins cannot be told.
    let glued = "{% for m in messages %}{{ m.content | upper }}{% endfor %}";
    assert_refused(jinja(glued, "</s>", "", "</s>").render(&conv, &[0, 1]), "rewrites its content");
}

#[test]
fn text_around_a_message_that_depends_on_its_content_is_refused() {
    let conv = conversation(vec![user("This is urgent"), assistant("On it")]);
    let calm = conversation(vec![user("Hi"), assistant("Ok")]);
    let sources = [
        // In the message's header.
        "{% for m in messages %}{% if 'urgent' in m.content %}[!] {% endif %}<{{ m.role }}>{{ m.content }}</s>{% endfor %}",
        // Between one message and the next.
        "{% for m in messages %}<{{ m.role }}>{{ m.content }}</s>{% if 'urgent' in m.content %}\n\n{% endif %}{% endfor %}",
        // After the last message.
        "{% for m in messages %}<{{ m.role }}>{{ m.content }}</s>{% endfor %}\
         {% if messages[-1].content | length > 3 %}(long){% else %}(short){% endif %}",
    ];
    for source in sources {
        let template = jinja(source, "</s>", "", "</s>");
        assert_refused(template.render(&conv, &[0, 1]), "changes with the content");
        // With content that does not trigger it, the same template is fine.
        let rendered = template.render(&calm, &[0, 1]).unwrap();
        assert!(rendered.text.starts_with("<user>Hi</s><assistant>Ok</s>"), "{}", rendered.text);
        assert_tiles(&rendered);
    }
}

#[test]
fn text_appended_after_the_last_message_that_depends_on_it_is_refused() {
    let conv = conversation(vec![user("This is urgent"), assistant("On it")]);
    let trailer = "{% for m in messages %}<{{ m.role }}>{{ m.content }}</s>{% endfor %}\
                   {% if messages[-1].content | length > 3 %}(long){% endif %}";
    // Rendered "…<assistant>On it</s>(long)" while the marker render ends at "</s>".
    assert_refused(jinja(trailer, "</s>", "", "</s>").render(&conv, &[0, 1]), "changes with the content");
}

#[test]
fn text_next_to_a_content_that_depends_on_it_is_refused() {
    let conv = conversation(vec![user("This is urgent"), assistant("On it")]);
    let flagged = "{% for m in messages %}<{{ m.role }}>{% if 'urgent' in m.content %}[!] {% endif %}\
                   {{ m.content }}</s>{% endfor %}";
    // Rendered "<user>[!] This is urgent</s>…": "[!] " is the template's, not the user's.
    assert_refused(jinja(flagged, "</s>", "", "</s>").render(&conv, &[0, 1]), "changes with the content");
}

// ---------------------------------------------------------------------------------------------
// Official templates against the built-in ones.

fn weather_tools() -> Vec<serde_json::Value> {
    vec![json!({"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})]
}

fn with_tools(messages: Vec<Message>) -> Conversation {
    Conversation { messages, tools: weather_tools() }
}

/// Conversations every `ChatML` template renders: with and without a system prompt,
/// multi-turn, tool calls and their results, reasoning in earlier and later turns.
fn chatml_conversations() -> Vec<Conversation> {
    vec![
        conversation(vec![system("You are terse."), user("Hi"), assistant("Hello.")]),
        conversation(vec![
            user("First?"),
            assistant("One."),
            user("Second?"),
            assistant("Two.\nWith a second line."),
            user("Third?"),
            assistant("Three."),
        ]),
        // Reasoning in an earlier turn: neither template shows it.
        conversation(vec![
            system("Think first."),
            user("2+2?"),
            thinking("Two and two.", "4"),
            user("3+3?"),
            assistant("<think>\nthree and three\n</think>\n\n6 is earlier than the last query"),
            user("And 4+4?"),
            assistant("8"),
        ]),
        // A tool call without content, its result, then an answer that reasons.
        with_tools(vec![
            user("Weather in Paris?"),
            calling("", "get_weather", json!({"city": "Paris"})),
            tool("{\"sky\": \"sunny\", \"c\": 21}"),
            thinking("Sunny, so say so.", "It is sunny, 21 C."),
        ]),
        // A system prompt with tools, a call after some content, string arguments, and a
        // second round of tools after the last user query with reasoning in between.
        with_tools(vec![
            system("You check the weather."),
            user("Oslo, then Rome?"),
            calling("Checking Oslo.", "get_weather", json!({"city": "Oslo"})),
            tool("cloudy"),
            Message {
                reasoning: Some("Now Rome.".into()),
                ..calling("", "get_weather", json!("{\"city\": \"Rome\"}"))
            },
            tool("rain"),
            assistant("Oslo is cloudy; Rome has rain."),
        ]),
    ]
}

/// Both renders give the same text, and every message the same segment, body and (unless it
/// calls tools, whose calls the built-ins count as content) content; the template's own text
/// spans the same ranges.
fn assert_same_spans(conv: &Conversation, keep: &[usize], builtin: &Rendered, official: &Rendered) {
    assert_eq!(official.text, builtin.text, "keep {keep:?}");
    assert_tiles(builtin);
    assert_tiles(official);
    for &index in keep {
        let (b, o) = (span_of(builtin, index), span_of(official, index));
        assert_eq!(
            (o.start, o.body_start, o.body_end, o.end),
            (b.start, b.body_start, b.body_end, b.end),
            "message {index}"
        );
        if conv.messages[index].tool_calls.is_empty() {
            assert_eq!((o.content_start, o.content_end), (b.content_start, b.content_end), "message {index}");
        }
    }
    let own = |r: &Rendered| -> Vec<(usize, usize)> {
        r.spans.iter().filter(|s| s.message.is_none()).map(|s| (s.start, s.end)).collect()
    };
    assert_eq!(own(official), own(builtin), "keep {keep:?}");
}

/// Whole conversations, and the selections truncation renders: the system prompt with the
/// last turn, and the last two messages.
fn selections(conv: &Conversation) -> Vec<Vec<usize>> {
    let n = conv.messages.len();
    let last_user = conv.messages.iter().rposition(|m| m.role == Role::User).unwrap();
    let has_system = conv.messages[0].role == Role::System;
    let mut last_turn: Vec<usize> = if has_system { vec![0] } else { Vec::new() };
    last_turn.extend(last_user..n);
    vec![everything(conv), last_turn]
}

fn compare_chatml(file: &str, builtin: &Template, conversations: &[Conversation]) {
    let Some(source) = shared_template(file) else { return };
    let official = jinja(&source, "<|im_end|>", "", "<|im_end|>");
    for conv in conversations {
        for keep in selections(conv) {
            let b = builtin.render(conv, &keep).unwrap();
            let o = official.render(conv, &keep).unwrap_or_else(|e| panic!("{file} refuses {keep:?}: {e}"));
            assert_same_spans(conv, &keep, &b, &o);
        }
    }
}

#[test]
fn official_qwen3_matches_the_builtin() {
    compare_chatml("qwen3.jinja", &Template::Qwen3, &chatml_conversations());
}

#[test]
fn official_qwen25_matches_the_builtin_without_tool_calls() {
    let conversations: Vec<Conversation> = chatml_conversations()
        .into_iter()
        .filter(|c| c.messages.iter().all(|m| m.tool_calls.is_empty()))
        .chain([with_tools(vec![system("With tools but no call."), user("Hi"), assistant("Hello.")])])
        .collect();
    assert_eq!(conversations.len(), 4);
    compare_chatml("qwen2.5.jinja", &Template::Qwen25, &conversations);
}

#[test]
fn official_qwen25_renders_tool_calls_as_the_builtin_does() {
    // Same text; the bodies of the tool-calling answers are compared in the test below.
    let Some(source) = shared_template("qwen2.5.jinja") else { return };
    let official = jinja(&source, "<|im_end|>", "", "<|im_end|>");
    for conv in chatml_conversations() {
        let keep = everything(&conv);
        let text = official.render(&conv, &keep).unwrap().text;
        assert_eq!(text, Template::Qwen25.render(&conv, &keep).unwrap().text);
    }
}

#[test]
fn official_qwen25_tool_calling_bodies_match_the_builtin() {
    // The generation prompt is "<|im_start|>assistant\n": the model never writes that "\n", so
    // it is header, not body, as for every other answer of the built-in itself.
    let conv = &chatml_conversations()[3];
    let rendered = Template::Qwen25.render(conv, &everything(conv)).unwrap();
    let call = span_of(&rendered, 1);
    assert_eq!(&rendered.text[call.start..call.body_start], "<|im_start|>assistant\n");
    compare_chatml("qwen2.5.jinja", &Template::Qwen25, &chatml_conversations());
}

#[test]
fn official_qwen3_parallel_tool_results_differ_from_the_builtin_only_in_the_first_results_body() {
    let Some(source) = shared_template("qwen3.jinja") else { return };
    let conv = with_tools(vec![
        user("Weather in Oslo and Rome?"),
        Message {
            tool_calls: vec![
                ToolCall { name: "get_weather".into(), arguments: json!({"city": "Oslo"}) },
                ToolCall { name: "get_weather".into(), arguments: json!({"city": "Rome"}) },
            ],
            ..assistant("")
        },
        tool("cloudy"),
        tool("rain"),
        assistant("Oslo is cloudy, Rome rainy."),
    ]);
    let keep = everything(&conv);
    let builtin = Template::Qwen3.render(&conv, &keep).unwrap();
    let official = jinja(&source, "<|im_end|>", "", "<|im_end|>").render(&conv, &keep).unwrap();
    assert_eq!(builtin.text, official.text);
    let body = |rendered: &Rendered, index: usize| {
        let span = span_of(rendered, index);
        rendered.text[span.body_start..span.body_end].to_string()
    };
    // What default labels train (the answers) agrees.
    for index in [1, 4] {
        assert_eq!(body(&builtin, index), body(&official, index));
    }
    // Known difference (the Jinja exactness work still open): the first of two consecutive tool
    // results has no end-of-turn marker after it, so the span finder ends its body at its
    // content, while the built-in runs it through its </tool_response>. Only train_on=["tool"]
    // sees it.
    assert_eq!(body(&builtin, 2), "cloudy\n</tool_response>");
    assert_eq!(body(&official, 2), "cloudy");
    assert_eq!(body(&builtin, 3), body(&official, 3));
}

#[test]
fn official_qwen3_locates_inline_reasoning_in_the_last_answer_as_the_builtin() {
    // The template splits <think>…</think> out of the content it renders (in its own block in
    // the last turns, dropped before them): located by a marker for the answer alone, with
    // the same text and spans as the built-in.
    let Some(source) = shared_template("qwen3.jinja") else { return };
    let official = jinja(&source, "<|im_end|>", "", "<|im_end|>");
    let conversations = vec![
        conversation(vec![user("2+2?"), assistant("<think>\nadd\n</think>\n\n4")]),
        conversation(vec![
            system("Be brief."),
            user("2+2?"),
            assistant("<think>\nadd\n</think>\n\n4"),
            user("3+3?"),
            assistant("<think>\nadd again\n</think>\n\n6"),
        ]),
        conversation(vec![user("Hi"), assistant("<think></think>Hello</think>there")]),
    ];
    for conv in &conversations {
        let all: Vec<usize> = (0..conv.messages.len()).collect();
        let builtin = Template::Qwen3.render(conv, &all).unwrap();
        let rendered = official.render(conv, &all).unwrap();
        assert_eq!(rendered.text, builtin.text);
        assert_eq!(rendered.spans, builtin.spans);
    }
    let first = Template::Qwen3.render(&conversations[0], &[0, 1]).unwrap();
    assert!(first.text.ends_with("<|im_start|>assistant\n<think>\nadd\n</think>\n\n4<|im_end|>\n"));
}

#[test]
fn official_llama3_renders_the_builtin_text() {
    let Some(source) = shared_template("llama3.jinja") else { return };
    let official = jinja(&source, "<|eot_id|>", "<|begin_of_text|>", "<|eot_id|>");
    let conversations = vec![
        conversation(vec![system("You are terse."), user("  Hi  "), assistant("Hello.\n")]),
        conversation(vec![user("First?"), assistant("One."), user("Second?"), assistant(" Two. ")]),
        conversation(vec![system("S"), user("Q1"), assistant("A1"), user("Q2"), assistant("A2")]),
    ];
    for conv in &conversations {
        for keep in selections(conv) {
            let b = Template::Llama3.render(conv, &keep).unwrap();
            let o = official.render(conv, &keep).unwrap();
            assert_eq!(o.text, b.text, "keep {keep:?}");
            assert!(o.text.starts_with("<|begin_of_text|><|start_header_id|>"));
            assert_tiles(&b);
            assert_tiles(&o);
            for &index in &keep {
                let (bs, os) = (span_of(&b, index), span_of(&o, index));
                assert_eq!(
                    (os.body_start, os.content_start, os.content_end, os.body_end),
                    (bs.body_start, bs.content_start, bs.content_end, bs.body_end)
                );
                assert_eq!(&o.text[os.content_start..os.content_end], conv.messages[index].content.trim());
                assert_eq!(os.end, bs.end);
            }
            // Known divergence, asserted as it is: the built-in gives the BOS token a span of its
            // own (the template's text); the Jinja spans put it in the first message's header.
            // Both label nothing there.
            assert_eq!((b.spans[0].message, b.spans[0].start, b.spans[0].end), (None, 0, "<|begin_of_text|>".len()));
            assert_eq!((o.spans[0].message, o.spans[0].start), (Some(keep[0]), 0));
            assert!(o.spans.iter().all(|s| s.message.is_some()));
        }
    }
}

#[test]
fn a_generation_prompt_with_a_tail_history_turns_lack_opens_them_with_its_head() {
    // DeepSeek-R1's layout: the generation prompt ends with "<think>\n", which history turns
    // do not repeat; the turn's header is the part of the prompt they do have, and the answer
    // starts right after it.
    let source = "{% for m in messages %}{% if m.role == 'user' %}<|U|>{{ m.content }}\
                  {% else %}<|A|>{{ m.content }}<|end|>{% endif %}{% endfor %}\
                  {% if add_generation_prompt %}<|A|><think>\n{% endif %}";
    let conv = conversation(vec![user("Hi"), assistant("Hello"), user("More"), assistant("Bye")]);
    let rendered = jinja(source, "<|end|>", "", "<|end|>").render(&conv, &[0, 1, 2, 3]).unwrap();
    assert_tiles(&rendered);
    for (message, answer) in [(1, "Hello<|end|>"), (3, "Bye<|end|>")] {
        let span = span_of(&rendered, message);
        assert_eq!(&rendered.text[span.start..span.body_start], "<|A|>");
        assert_eq!(&rendered.text[span.body_start..span.body_end], answer);
    }
    // A history turn that parts from the prompt before its content starts is still refused.
    let parted = source.replace("<|A|>{{ m.content }}", "<|A|>x{{ m.content }}");
    assert_refused(jinja(&parted, "<|end|>", "", "<|end|>").render(&conv, &[0, 1, 2, 3]), "generation prompt");
}

#[test]
fn a_content_that_goes_on_as_the_prompt_does_starts_where_the_turns_agree() {
    // Gemma-4's layout: the prompt ends with "<|channel>...", history turns do not repeat it,
    // and an answer opening with '<' shares one more character with the prompt: the header
    // still ends where the content starts (before: refused).
    let source = "{% for m in messages %}{% if m.role == 'user' %}<|U|>{{ m.content }}\
                  {% else %}<|A|>{{ m.content }}<|end|>{% endif %}{% endfor %}\
                  {% if add_generation_prompt %}<|A|><|channel>{% endif %}";
    let conv = conversation(vec![user("Hi"), assistant("<html>"), user("More"), assistant("<|x")]);
    let rendered = jinja(source, "<|end|>", "", "<|end|>").render(&conv, &[0, 1, 2, 3]).unwrap();
    assert_tiles(&rendered);
    for (message, answer) in [(1, "<html><|end|>"), (3, "<|x<|end|>")] {
        let span = span_of(&rendered, message);
        assert_eq!(&rendered.text[span.start..span.body_start], "<|A|>");
        assert_eq!(&rendered.text[span.body_start..span.body_end], answer);
    }
}

#[test]
fn a_final_eos_the_generation_prompt_replaces_does_not_hide_the_prompt() {
    // Phi-3's layout: the conversation ends with the EOS token, which the generation prompt
    // replaces, so the prompted render does not extend the plain one (before: refused).
    let source = "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}<|end|>\n{% endfor %}\
                  {% if add_generation_prompt %}<|assistant|>\n{% else %}{{ eos_token }}{% endif %}";
    let conv = conversation(vec![user("Hi"), assistant("Hello"), user("More"), assistant("Bye")]);
    let rendered = jinja(source, "<|end|>", "", "</s>").render(&conv, &[0, 1, 2, 3]).unwrap();
    assert_tiles(&rendered);
    assert!(rendered.text.ends_with("<|end|>\n</s>"));
    for (message, answer) in [(1, "Hello<|end|>"), (3, "Bye<|end|>")] {
        let span = span_of(&rendered, message);
        assert_eq!(&rendered.text[span.start..span.body_start], "<|assistant|>\n");
        assert_eq!(&rendered.text[span.body_start..span.body_end], answer);
    }
}

#[test]
fn tool_calls_written_after_the_content_need_an_end_of_turn_marker() {
    // GLM-4's layout: no marker ends a turn, and the calls follow the content; the body would
    // have stopped at the (empty) content and the calls trained nothing (before: located).
    let source = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\
                  {% for c in m.tool_calls or [] %}<tool_call>{{ c.function.name }}</tool_call>{% endfor %}\
                  {% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";
    let conv =
        conversation(vec![user("Weather?"), calling("", "get_weather", json!({})), tool("sunny"), assistant("Sunny.")]);
    assert_refused(
        jinja(source, "", "", "</s>").render(&conv, &[0, 1, 2, 3]),
        "no end-of-turn marker follows its tool calls",
    );
    let ended = source.replace("</tool_call>{% endfor %}", "</tool_call>{% endfor %}<|end|>");
    let rendered = jinja(&ended, "<|end|>", "", "</s>").render(&conv, &[0, 1, 2, 3]).unwrap();
    let span = span_of(&rendered, 1);
    assert_eq!(&rendered.text[span.body_start..span.body_end], "<tool_call>get_weather</tool_call><|end|>");
}

#[test]
fn sources_the_fuzzer_found_are_errors_not_panics() {
    // `{%}`: the scanner for `{% generation %}` tags took the opener's `%` for a closer and
    // sliced backwards (jinja fuzz target). Each must compile to a template or a typed error.
    for source in ["{%}", "{%}%}", "{%-}", "{%%}", "{% generation %}{%}", "x{%"] {
        let _ = JinjaTemplate::new(source, "<|im_end|>", "<s>", "</s>");
    }
}

/// Whole conversations, the last turn alone and, with a system prompt, the system prompt
/// with the last turn.
fn tail_selections(conv: &Conversation) -> Vec<Vec<usize>> {
    let n = conv.messages.len();
    let last_user = conv.messages.iter().rposition(|m| m.role == Role::User).unwrap();
    let mut selections = vec![everything(conv), (last_user..n).collect()];
    if conv.messages[0].role == Role::System {
        selections.push([0].into_iter().chain(last_user..n).collect());
    }
    selections
}

/// The kept messages as a conversation of their own (what the official template renders).
fn kept(conv: &Conversation, keep: &[usize]) -> Conversation {
    Conversation { messages: keep.iter().map(|&i| conv.messages[i].clone()).collect(), tools: conv.tools.clone() }
}

/// Conversations the Llama-3.1 template renders: with and without a system prompt and tools,
/// multi-turn, one tool call per answer (object and string arguments), results with quotes
/// and non-ASCII text, padded contents the template trims.
fn llama31_conversations() -> Vec<Conversation> {
    vec![
        conversation(vec![system("  You are terse.\n"), user("  Hi  "), assistant("Hello.\n")]),
        conversation(vec![user("First?"), assistant("One."), user("Second?"), assistant(" Two. ")]),
        with_tools(vec![
            user("Weather in Paris?"),
            calling("", "get_weather", json!({"city": "Paris", "unit": 1e-5})),
            tool("{\"sky\": \"sunny\", \"c\": 21} — \"ok\"\n"),
            assistant("It is sunny, 21 C."),
        ]),
        with_tools(vec![
            system("You check the weather."),
            user("Oslo?"),
            calling("", "get_weather", json!("{\"city\": \"Oslo\"}")),
            tool("cloudy"),
            assistant("Cloudy."),
            user("Rome?"),
            calling("  ", "get_weather", json!({"city": "Rome"})),
            tool("rain"),
            assistant("Rain."),
        ]),
    ]
}

#[test]
fn official_llama31_matches_the_builtin() {
    // The same text as the official template always; the same spans wherever the Jinja path
    // locates them. It refuses tool results, which the template writes as JSON (escaped, so
    // not found as they are), and tool calls whose (blank) text the template drops; the
    // built-in writes both exactly.
    let Some(source) = shared_template("llama3.1.jinja") else { return };
    let official = jinja(&source, "<|eot_id|>", "<|begin_of_text|>", "<|eot_id|>");
    let mut located = 0;
    for conv in llama31_conversations() {
        for keep in tail_selections(&conv) {
            let b = Template::Llama31.render(&conv, &keep).unwrap();
            assert_tiles(&b);
            assert_eq!(official.render_text(&kept(&conv, &keep), false).unwrap(), b.text, "keep {keep:?}");
            match official.render(&conv, &keep) {
                Ok(o) => {
                    assert_eq!(o.text, b.text);
                    assert_eq!(o.spans, b.spans, "keep {keep:?}");
                    located += 1;
                }
                Err(e) => {
                    let tool_part =
                        |i: &usize| conv.messages[*i].role == Role::Tool || !conv.messages[*i].tool_calls.is_empty();
                    assert!(keep.iter().any(tool_part), "{e}");
                    assert!(e.to_string().contains("cannot be located exactly"), "{e}");
                }
            }
            for &index in &keep {
                let span = span_of(&b, index);
                let body = &b.text[span.body_start..span.body_end];
                let message = &conv.messages[index];
                let expected = match (message.role, message.tool_calls.first()) {
                    (Role::Tool, _) => format!("{}<|eot_id|>", serde_json::to_string(&message.content).unwrap()),
                    (_, Some(call)) => format!(
                        "{{\"name\": \"{}\", \"parameters\": {}}}<|eot_id|>",
                        call.name,
                        seqpack_core::conversation::template::tojson::dumps(&call.arguments)
                    ),
                    _ if Some(&index) == keep.iter().find(|&&i| conv.messages[i].role != Role::System)
                        && !conv.tools.is_empty() =>
                    {
                        assert!(body.starts_with("Given the following functions"), "{body}");
                        assert!(body.ends_with(&format!("\n\n{}<|eot_id|>", message.content.trim())), "{body}");
                        continue;
                    }
                    _ => format!("{}<|eot_id|>", message.content.trim()),
                };
                assert_eq!(body, expected, "message {index}");
            }
        }
    }
    assert!(located >= 4, "{located}");
}

#[test]
fn llama31_refuses_what_its_template_would_lose_or_cannot_write() {
    let call = |content: &str| calling(content, "get_weather", json!({"city": "Oslo"}));
    let cases = [
        (with_tools(vec![user("Oslo?"), call("Let me check.")]), "the text would be lost"),
        (
            with_tools(vec![
                user("Oslo?"),
                Message { tool_calls: [call("").tool_calls, call("").tool_calls].concat(), ..assistant("") },
            ]),
            "single tool-calls",
        ),
        (with_tools(vec![system("S")]), "no first user message"),
        (with_tools(vec![assistant("Hi"), user("Oslo?")]), "the first message after the system prompt"),
    ];
    for (conv, why) in cases {
        assert_refused(Template::Llama31.render(&conv, &everything(&conv)), why);
    }
}

/// Conversations DeepSeek-V3.1's template renders: with and without a system prompt,
/// multi-turn, reasoning inline in answers, tool calls (arguments as text, one and two per
/// answer, with and without text beside them), results, answers after results.
fn deepseek_conversations() -> Vec<Conversation> {
    let call = |content: &str, city: &str| calling(content, "get_weather", json!(format!("{{\"city\": \"{city}\"}}")));
    vec![
        conversation(vec![system("You are terse."), user("Hi"), assistant("Hello.")]),
        conversation(vec![
            user("2+2?"),
            assistant("<think>two and two</think>4"),
            user("3+3?"),
            assistant("Thinking aloud</think>6</think>!"),
        ]),
        with_tools(vec![
            system("You check the weather."),
            user("Oslo and Rome?"),
            Message {
                tool_calls: [call("", "Oslo").tool_calls, call("", "Rome").tool_calls].concat(),
                ..assistant("")
            },
            tool("cloudy"),
            tool("rain"),
            assistant("Oslo</think> is cloudy; Rome has rain."),
            user("Paris?"),
            call("Checking.", "Paris"),
            tool("sunny"),
            assistant("Sunny."),
        ]),
    ]
}

#[test]
fn official_deepseek_v31_matches_the_builtin() {
    let Some(source) = shared_template("deepseek-v3.1.jinja") else { return };
    let (bos, eos) = ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>");
    let official = jinja(&source, eos, bos, eos);
    let mut located = 0;
    for conv in deepseek_conversations() {
        for keep in tail_selections(&conv) {
            let b = Template::DeepSeekV31.render(&conv, &keep).unwrap();
            assert_tiles(&b);
            assert_eq!(official.render_text(&kept(&conv, &keep), false).unwrap(), b.text, "keep {keep:?}");
            match official.render(&conv, &keep) {
                Ok(o) => {
                    assert_eq!(o.text, b.text);
                    assert_tiles(&o);
                    // What labels follow agrees: every body, and every content but a tool
                    // call's (the built-in counts its calls as content). Where a tool result's
                    // closing tag goes (its own segment in the built-in, the next message's
                    // header in the Jinja spans) trains nothing either way.
                    for &index in &keep {
                        let (os, bs) = (span_of(&o, index), span_of(&b, index));
                        assert_eq!((os.body_start, os.body_end), (bs.body_start, bs.body_end), "message {index}");
                        if conv.messages[index].tool_calls.is_empty() {
                            assert_eq!((os.content_start, os.content_end), (bs.content_start, bs.content_end));
                        }
                    }
                    located += 1;
                }
                Err(e) => panic!("official refuses {keep:?}: {e}"),
            }
        }
    }
    assert!(located >= 6, "{located}");
}

#[test]
fn an_empty_answer_the_template_tests_after_a_user_turn_without_a_marker_is_refused() {
    // DeepSeek's layout (users have no end-of-turn marker), with a template that writes
    // something else for an empty answer, so the empty content cannot be located by a
    // marker. The user's body used to run over the whole answer (untrained) and the answer
    // took the "<｜" that opens the next tag as its header: mislabelled, silently. Refused.
    let source = "{% for m in messages %}{% if m.role == 'user' %}<｜User｜>{{ m.content }}\
                  {% else %}<｜Assistant｜>{% if m.content %}{{ m.content }}{% else %}[call]{% endif %}<｜end｜>\
                  {% endif %}{% endfor %}{% if add_generation_prompt %}<｜Assistant｜>{% endif %}";
    let conv = conversation(vec![user("Hi"), assistant(""), user("More"), assistant("Bye")]);
    assert_refused(jinja(source, "<｜end｜>", "", "<｜end｜>").render(&conv, &[0, 1, 2, 3]), "generation prompt");
}

#[test]
fn deepseek_v31_refuses_what_its_template_moves_or_cannot_join() {
    let cases = [
        (conversation(vec![user("Hi"), system("Late."), assistant("Hello.")]), "moves a system message"),
        (
            with_tools(vec![user("Oslo?"), calling("", "get_weather", json!({"city": "Oslo"}))]),
            "arguments as text, and these are JSON an object",
        ),
    ];
    for (conv, why) in cases {
        assert_refused(Template::DeepSeekV31.render(&conv, &everything(&conv)), why);
    }
}

#[test]
fn generation_marks_in_the_data_are_refused_not_dropped() {
    // seqpack marks `{% generation %}` blocks with U+E002 / U+E003 and takes them out after
    // rendering: the same characters in a content used to vanish with them, silently.
    let source = "{% for m in messages %}<|{{ m.role }}|>{% if m.role == 'assistant' %}{% generation %}\
                  {{ m.content }}</s>{% endgeneration %}{% else %}{{ m.content }}</s>{% endif %}{% endfor %}\
                  {% if add_generation_prompt %}<|assistant|>{% endif %}";
    let template = jinja(source, "</s>", "", "</s>");
    let clean = conversation(vec![user("Hi"), assistant("Hello")]);
    let rendered = template.render(&clean, &[0, 1]).unwrap();
    assert_eq!(&rendered.text[span_of(&rendered, 1).body_start..span_of(&rendered, 1).body_end], "Hello</s>");
    for odd in ["a\u{E002}b", "\u{E003}"] {
        for conv in [
            conversation(vec![user(odd), assistant("Hello")]),
            conversation(vec![user("Hi"), assistant(odd)]),
            with_tools(vec![user("Hi"), calling("", odd, json!({}))]),
        ] {
            assert_refused(template.render(&conv, &everything(&conv)), "U+E002 or U+E003");
        }
    }
}
