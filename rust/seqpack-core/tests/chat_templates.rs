//! Records → conversations → rendered text with spans, without a tokenizer.

use seqpack_core::conversation::records::{parse_record, Format, Mapping, Origin, Role};
use seqpack_core::conversation::template::Template;
use serde_json::json;

#[allow(clippy::needless_pass_by_value, reason = "json! literals read best passed straight in")]
fn parse(value: serde_json::Value) -> seqpack_core::conversation::records::Conversation {
    parse_record(&value, Format::Auto, &Mapping::default(), Origin { record: 0, line: None }).unwrap()
}

fn render(
    template: &Template,
    value: serde_json::Value,
) -> (String, Vec<seqpack_core::conversation::template::MessageSpan>) {
    let conversation = parse(value);
    let all: Vec<usize> = (0..conversation.messages.len()).collect();
    let rendered = template.render(&conversation, &all).unwrap();
    (rendered.text, rendered.spans)
}

#[test]
fn formats_normalise_to_the_same_conversation() {
    let openai = parse(json!({"messages": [
        {"role": "system", "content": "S"}, {"role": "user", "content": "U"}, {"role": "assistant", "content": "A"}]}));
    let sharegpt = parse(json!({"system": "S", "conversations": [
        {"from": "human", "value": "U"}, {"from": "gpt", "value": "A"}]}));
    let alpaca = parse(json!({"system": "S", "instruction": "U", "input": "", "output": "A"}));
    assert_eq!(openai, sharegpt);
    assert_eq!(openai, alpaca);
    let with_input = parse(json!({"instruction": "U", "input": "more", "output": "A", "history": [["u0", "a0"]]}));
    let roles: Vec<Role> = with_input.messages.iter().map(|m| m.role).collect();
    assert_eq!(roles, [Role::User, Role::Assistant, Role::User, Role::Assistant]);
    assert_eq!(with_input.messages[2].content, "U\nmore");
}

#[test]
fn sharegpt_function_calls_and_observations() {
    let conversation = parse(json!({"tools": "[{\"name\": \"f\"}]", "conversations": [
        {"from": "human", "value": "U"},
        {"from": "function_call", "value": "{\"name\": \"f\", \"arguments\": {\"x\": 1}}"},
        {"from": "observation", "value": "R"},
        {"from": "gpt", "value": "A"}]}));
    assert_eq!(conversation.tools, vec![json!({"name": "f"})]);
    assert_eq!(conversation.messages[1].role, Role::Assistant);
    assert_eq!(conversation.messages[1].tool_calls[0].name, "f");
    assert_eq!(conversation.messages[2].role, Role::Tool);
}

#[test]
fn chatml_spans_cover_header_body_and_separator() {
    let (text, spans) = render(
        &Template::Qwen25,
        json!({"messages": [
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}),
    );
    assert_eq!(
        text,
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n\
         <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nYo<|im_end|>\n"
    );
    assert_eq!(spans[0].message, None); // Qwen2.5's default system prompt is the template's own
    let answer = spans[2];
    assert_eq!(&text[answer.start..answer.body_start], "<|im_start|>assistant\n");
    assert_eq!(&text[answer.body_start..answer.body_end], "Yo<|im_end|>");
    assert_eq!(&text[answer.body_end..answer.end], "\n");
    assert_eq!(&text[answer.content_start..answer.content_end], "Yo");
    // Spans tile the text.
    for pair in spans.windows(2) {
        assert_eq!(pair[0].end, pair[1].start);
    }
    assert_eq!(spans.last().unwrap().end, text.len());
}

#[test]
fn qwen3_thinks_only_after_the_last_query() {
    let (text, _) = render(
        &Template::Qwen3,
        json!({"messages": [
        {"role": "user", "content": "1"}, {"role": "assistant", "content": "<think>r1</think>a1"},
        {"role": "user", "content": "2"}, {"role": "assistant", "content": "a2"}]}),
    );
    assert_eq!(
        text,
        "<|im_start|>user\n1<|im_end|>\n<|im_start|>assistant\na1<|im_end|>\n\
         <|im_start|>user\n2<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\na2<|im_end|>\n"
    );
}

#[test]
fn llama3_and_mistral() {
    let record = json!({"messages": [
        {"role": "system", "content": "S"}, {"role": "user", "content": " U "}, {"role": "assistant", "content": "A"}]});
    let (text, spans) = render(&Template::Llama3, record.clone());
    assert_eq!(
        text,
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>\
         <|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\nA<|eot_id|>"
    );
    let answer = spans.last().unwrap();
    assert_eq!(&text[answer.body_start..answer.body_end], "A<|eot_id|>");
    let (text, spans) = render(&Template::Mistral, record);
    assert_eq!(text, "<s>[INST] S\n\n U  [/INST]A</s>");
    let answer = spans.last().unwrap();
    assert_eq!(&text[answer.body_start..answer.body_end], "A</s>");
}

#[test]
fn builtins_without_tool_support_say_so() {
    let conversation = parse(json!({"messages": [
        {"role": "user", "content": "U"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {}}}]},
        {"role": "tool", "content": "R"}, {"role": "assistant", "content": "A"}]}));
    let error = Template::Llama3.render(&conversation, &[0, 1, 2, 3]).unwrap_err();
    assert!(error.to_string().contains("does not render tools"), "{error}");
}

#[test]
fn glm46_writes_thinking_tool_calls_and_observations() {
    let record = json!({"tools": [{"name": "f"}], "messages": [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "U"},
        {"role": "assistant", "content": "<think>\nold\n</think>\n\n A ", "tool_calls": [
            {"function": {"name": "f", "arguments": {"x": 1, "s": "two"}}}]},
        {"role": "tool", "content": "R1"}, {"role": "tool", "content": "R2"},
        {"role": "user", "content": "V"}, {"role": "assistant", "content": "<think>why</think>B"}]});
    let (text, spans) = render(&Template::Glm46, record);
    let tools = "<|system|>\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n\
                 You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{\"name\": \"f\"}\n\
                 </tools>\n\nFor each function call, output the function name and arguments within the following XML \
                 format:\n<tool_call>{function-name}\n<arg_key>{arg-key-1}</arg_key>\n<arg_value>{arg-value-1}</arg_value>\n\
                 <arg_key>{arg-key-2}</arg_key>\n<arg_value>{arg-value-2}</arg_value>\n...\n</tool_call>";
    // The first answer comes before the last user message: its reasoning is not written.
    let first = "\n<think></think>\nA\n<tool_call>f\n<arg_key>x</arg_key>\n<arg_value>1</arg_value>\n\
                 <arg_key>s</arg_key>\n<arg_value>two</arg_value>\n</tool_call>";
    assert_eq!(
        text,
        format!(
            "[gMASK]<sop>{tools}<|system|>\nS<|user|>\nU<|assistant|>{first}<|observation|>\n<tool_response>\nR1\n\
             </tool_response>\n<tool_response>\nR2\n</tool_response><|user|>\nV<|assistant|>\n<think>why</think>\nB"
        )
    );
    for pair in spans.windows(2) {
        assert_eq!(pair[0].end, pair[1].start);
    }
    assert_eq!(spans.last().unwrap().end, text.len());
    let answer = spans.iter().find(|s| s.message == Some(2)).unwrap();
    assert_eq!(&text[answer.start..answer.body_start], "<|assistant|>");
    assert_eq!(&text[answer.body_start..answer.body_end], first);
    let last = spans.last().unwrap();
    assert_eq!(&text[last.body_start..last.body_end], "\n<think>why</think>\nB");
    assert_eq!(&text[last.content_start..last.content_end], "B");
    // Arguments as JSON text: the official template raises, so does the built-in.
    let conversation = parse(json!({"messages": [{"role": "user", "content": "U"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": "{\"x\": 1}"}}]}]}));
    let error = Template::Glm46.render(&conversation, &[0, 1]).unwrap_err();
    assert!(error.to_string().contains("Invalid tool call arguments passed"), "{error}");
}

#[test]
fn gemma3_writes_the_system_prompt_into_the_first_turn() {
    let record = json!({"messages": [
        {"role": "system", "content": " S "}, {"role": "user", "content": " U "},
        {"role": "assistant", "content": " A "}, {"role": "user", "content": "V"}, {"role": "assistant", "content": "B"}]});
    let (text, spans) = render(&Template::Gemma3, record);
    assert_eq!(
        text,
        "<bos><start_of_turn>user\n S \n\nU<end_of_turn>\n<start_of_turn>model\nA<end_of_turn>\n\
         <start_of_turn>user\nV<end_of_turn>\n<start_of_turn>model\nB<end_of_turn>\n"
    );
    let system = spans.iter().find(|s| s.message == Some(0)).unwrap();
    assert_eq!(&text[system.start..system.body_end], "<start_of_turn>user\n S \n\n");
    let user = spans.iter().find(|s| s.message == Some(1)).unwrap();
    assert_eq!((user.start, &text[user.body_start..user.body_end]), (system.end, "U<end_of_turn>"));
    let answer = spans.iter().find(|s| s.message == Some(2)).unwrap();
    assert_eq!(&text[answer.start..answer.body_start], "<start_of_turn>model\n");
    assert_eq!(&text[answer.body_start..answer.body_end], "A<end_of_turn>");
    for pair in spans.windows(2) {
        assert_eq!(pair[0].end, pair[1].start);
    }
    assert_eq!(spans.last().unwrap().end, text.len());
    // The first turn after the system prompt must be the user's, as the template raises.
    let conversation =
        parse(json!({"messages": [{"role": "system", "content": "S"}, {"role": "assistant", "content": "A"}]}));
    let error = Template::Gemma3.render(&conversation, &[0, 1]).unwrap_err();
    assert!(error.to_string().contains("must alternate"), "{error}");
}

#[test]
fn phi4_turns() {
    let (text, spans) = render(
        &Template::Phi4,
        json!({"messages": [
        {"role": "system", "content": "S"}, {"role": "user", "content": "U"}, {"role": "assistant", "content": "A"}]}),
    );
    assert_eq!(
        text,
        "<|im_start|>system<|im_sep|>S<|im_end|><|im_start|>user<|im_sep|>U<|im_end|>\
         <|im_start|>assistant<|im_sep|>A<|im_end|>"
    );
    let answer = spans.last().unwrap();
    assert_eq!(&text[answer.start..answer.body_start], "<|im_start|>assistant<|im_sep|>");
    assert_eq!(&text[answer.body_start..answer.body_end], "A<|im_end|>");
}

#[test]
fn glm47_is_glm46_without_its_newlines() {
    let record = json!({"messages": [
        {"role": "user", "content": "U"},
        {"role": "assistant", "content": "<think>old</think> A", "tool_calls": [
            {"function": {"name": "f", "arguments": {"x": 1}}}]},
        {"role": "tool", "content": "R"}, {"role": "user", "content": "V"},
        {"role": "assistant", "content": "B", "reasoning_content": " why "}]});
    let (text, spans) = render(&Template::Glm47, record);
    assert_eq!(
        text,
        "[gMASK]<sop><|user|>U<|assistant|></think>A<tool_call>f<arg_key>x</arg_key><arg_value>1</arg_value>\
         </tool_call><|observation|><tool_response>R</tool_response><|user|>V<|assistant|><think>why</think>B"
    );
    let last = spans.last().unwrap();
    assert_eq!(&text[last.start..last.body_start], "<|assistant|>");
    assert_eq!(&text[last.body_start..last.body_end], "<think>why</think>B");
    // Arguments that are not a mapping: the template raises (4.7 has no `or {}`).
    let conversation = parse(json!({"messages": [{"role": "user", "content": "U"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": null}}]}]}));
    assert!(Template::Glm47.render(&conversation, &[0, 1]).is_err());
    assert!(Template::Glm46.render(&conversation, &[0, 1]).is_ok());
}
