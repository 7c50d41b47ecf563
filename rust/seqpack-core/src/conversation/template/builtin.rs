//! The built-in templates, written out in Rust: `ChatML` as Qwen3 and Qwen2.5 write it,
//! Llama-3.0, Llama-3.1, DeepSeek-V3.1 and R1, Mistral, Gemma 2 and 3, Phi-3.5 and 4, GLM-4.6 and 4.7. Each records the span of every message as it writes.

use super::spans::{Rendered, Writer};
use super::tojson;
use crate::conversation::records::{Conversation, Message, Role, ToolCall};
use crate::error::{Error, Result};
use serde_json::Value;

const THINK_END: &str = "</think>";

const QWEN25_DEFAULT_SYSTEM: &str = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum ChatMl {
    Qwen3,
    Qwen25,
}

fn tools_block(tools: &[Value]) -> String {
    let mut out = String::from(
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n\
         You are provided with function signatures within <tools></tools> XML tags:\n<tools>",
    );
    for tool in tools {
        out.push('\n');
        out.push_str(&tojson::dumps(tool));
    }
    out.push_str(
        "\n</tools>\n\nFor each function call, return a json object with function name and \
         arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": \
         <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n",
    );
    out
}

fn is_tool_response(text: &str) -> bool {
    text.starts_with("<tool_response>") && text.ends_with("</tool_response>")
}

/// How Qwen3's and GLM-4's templates read an assistant message: (reasoning, visible
/// content). `reasoning_content` when given; else, when the content holds `</think>`, the
/// text between the last `<think>` and the first `</think>`, and what follows the last
/// `</think>`, each without the newlines next to the tags.
fn split_thinking(message: &Message) -> (&str, &str) {
    let content = message.content.as_str();
    if let Some(reasoning) = &message.reasoning {
        return (reasoning, content);
    }
    if let Some(at) = content.rfind(THINK_END) {
        let after = content[at + THINK_END.len()..].trim_start_matches('\n');
        let before = content[..content.find(THINK_END).unwrap_or(at)].trim_end_matches('\n');
        let reasoning = before.rsplit("<think>").next().unwrap_or("").trim_start_matches('\n');
        return (reasoning, after);
    }
    ("", content)
}

/// `ChatML` as Qwen writes it: the system block (with the tools, if any), then one block per
/// message.
pub(super) fn render_chatml(conversation: &Conversation, keep: &[usize], flavour: ChatMl) -> Rendered {
    let messages: Vec<(usize, &Message)> = keep.iter().map(|&i| (i, &conversation.messages[i])).collect();
    let mut out = Writer::default();
    chatml_system(&mut out, &messages, &conversation.tools, flavour);
    let last_query = last_user_query(&messages);
    for (position, &(index, message)) in messages.iter().enumerate() {
        match message.role {
            Role::System if position == 0 => {}
            Role::User | Role::System => chatml_plain(&mut out, index, message),
            Role::Assistant => {
                out.begin(Some(index));
                out.push("<|im_start|>assistant");
                match flavour {
                    ChatMl::Qwen3 => {
                        // Qwen3 shows reasoning only after the last real user query.
                        let show_thinking = position > last_query;
                        qwen3_assistant(&mut out, message, show_thinking, position + 1 == messages.len());
                    }
                    ChatMl::Qwen25 => qwen25_assistant(&mut out, message),
                }
                out.extend_content();
                out.push("<|im_end|>");
                out.mark_body_end();
                out.push("\n");
            }
            Role::Tool => {
                let previous_is_tool = position > 0 && messages[position - 1].1.role == Role::Tool;
                let next_is_tool = messages.get(position + 1).is_some_and(|(_, m)| m.role == Role::Tool);
                chatml_tool(&mut out, index, message, previous_is_tool, next_is_tool);
            }
        }
    }
    out.done()
}

/// The system block: the system prompt (Qwen2.5's default when there is none) and the tools.
fn chatml_system(out: &mut Writer, messages: &[(usize, &Message)], tools: &[Value], flavour: ChatMl) {
    let leading_system = messages.first().copied().filter(|(_, m)| m.role == Role::System);
    let system_text = leading_system.map(|(_, m)| m.content.as_str());
    let system_index = leading_system.map(|(i, _)| i);
    if !tools.is_empty() {
        out.begin(system_index);
        out.push("<|im_start|>system\n");
        out.mark_body_start();
        match (flavour, system_text) {
            (ChatMl::Qwen3, Some(text)) => {
                out.content(text);
                out.push("\n\n");
            }
            (ChatMl::Qwen3, None) => {}
            (ChatMl::Qwen25, text) => {
                out.content(text.unwrap_or(QWEN25_DEFAULT_SYSTEM));
                out.push("\n\n");
            }
        }
        let block = tools_block(tools);
        out.push(&block[..block.len() - 1]);
        out.mark_body_end();
        out.push("\n");
    } else if let Some((index, system)) = leading_system {
        chatml_plain(out, index, system);
    } else if flavour == ChatMl::Qwen25 {
        out.begin(None);
        out.push("<|im_start|>system\n");
        out.mark_body_start();
        out.content(QWEN25_DEFAULT_SYSTEM);
        out.push("<|im_end|>");
        out.mark_body_end();
        out.push("\n");
    }
}

/// Position of the last real user query (not a wrapped tool response); the last message's
/// position when there is none.
fn last_user_query(messages: &[(usize, &Message)]) -> usize {
    messages
        .iter()
        .rposition(|(_, m)| m.role == Role::User && !is_tool_response(&m.content))
        .unwrap_or(messages.len().saturating_sub(1))
}

/// `<|im_start|>role\ncontent<|im_end|>\n`.
fn chatml_plain(out: &mut Writer, index: usize, message: &Message) {
    out.begin(Some(index));
    out.push("<|im_start|>");
    out.push(message.role.name());
    out.push("\n");
    out.mark_body_start();
    out.content(&message.content);
    out.push("<|im_end|>");
    out.mark_body_end();
    out.push("\n");
}

/// A Qwen3 assistant body: `<think>` block after the last query, content, tool calls.
fn qwen3_assistant(out: &mut Writer, message: &Message, show_thinking: bool, is_last: bool) {
    out.push("\n");
    out.mark_body_start();
    let (reasoning, content) = split_thinking(message);
    if show_thinking && (is_last || !reasoning.is_empty()) {
        out.push("<think>\n");
        out.push(reasoning.trim_matches('\n'));
        out.push("\n</think>\n\n");
        out.content(content.trim_start_matches('\n'));
    } else {
        out.content(content);
    }
    for (call_index, call) in message.tool_calls.iter().enumerate() {
        if call_index > 0 || !content.is_empty() {
            out.push("\n");
        }
        out.push("<tool_call>\n{\"name\": \"");
        out.push(&call.name);
        out.push("\", \"arguments\": ");
        match &call.arguments {
            Value::String(text) => out.push(text),
            other => out.push(&tojson::dumps(other)),
        }
        out.push("}\n</tool_call>");
    }
}

/// A Qwen2.5 assistant body: content, then tool calls.
fn qwen25_assistant(out: &mut Writer, message: &Message) {
    if message.tool_calls.is_empty() {
        out.push("\n");
        out.mark_body_start();
        out.content(&message.content);
        return;
    }
    // The generation prompt is "<|im_start|>assistant\n": the model writes after that "\n",
    // which the template emits before the content or the first tool call.
    out.push("\n");
    out.mark_body_start();
    out.content(&message.content);
    for (call_index, call) in message.tool_calls.iter().enumerate() {
        if call_index > 0 || !message.content.is_empty() {
            out.push("\n");
        }
        out.push("<tool_call>\n{\"name\": \"");
        out.push(&call.name);
        out.push("\", \"arguments\": ");
        out.push(&tojson::dumps(&call.arguments));
        out.push("}\n</tool_call>");
    }
}

/// A tool result: consecutive results share one user block.
fn chatml_tool(out: &mut Writer, index: usize, message: &Message, previous_is_tool: bool, next_is_tool: bool) {
    out.begin(Some(index));
    if !previous_is_tool {
        out.push("<|im_start|>user");
    }
    out.push("\n<tool_response>\n");
    out.mark_body_start();
    out.content(&message.content);
    out.push("\n</tool_response>");
    if !next_is_tool {
        out.push("<|im_end|>");
    }
    out.mark_body_end();
    if !next_is_tool {
        out.push("\n");
    }
}

fn no_tools(conversation: &Conversation, keep: &[usize], template: &str) -> Result<()> {
    let has_calls = keep.iter().any(|&i| {
        let m = &conversation.messages[i];
        !m.tool_calls.is_empty() || m.role == Role::Tool
    });
    if !conversation.tools.is_empty() || has_calls {
        return Err(Error::Template {
            message: format!(
                "the built-in '{template}' template does not render tools or tool calls; \
                 pass the model's own Jinja chat_template"
            ),
        });
    }
    Ok(())
}

pub(super) fn render_llama3(conversation: &Conversation, keep: &[usize]) -> Result<Rendered> {
    no_tools(conversation, keep, "llama3")?;
    let mut out = Writer::default();
    out.begin(None);
    out.push("<|begin_of_text|>");
    for &index in keep {
        let message = &conversation.messages[index];
        out.begin(Some(index));
        out.push("<|start_header_id|>");
        out.push(message.role.name());
        out.push("<|end_header_id|>\n\n");
        out.mark_body_start();
        out.content(super::pystr::strip_space(&message.content));
        out.push("<|eot_id|>");
        out.mark_body_end();
    }
    Ok(out.done())
}

pub(super) fn render_mistral(conversation: &Conversation, keep: &[usize]) -> Result<Rendered> {
    no_tools(conversation, keep, "mistral")?;
    let mut out = Writer::default();
    out.begin(None);
    out.push("<s>");
    let mut system: Option<(usize, &str)> = None;
    let mut first_user = true;
    for &index in keep {
        let message = &conversation.messages[index];
        match message.role {
            Role::System if index == 0 => system = Some((index, message.content.as_str())),
            Role::System => {
                return Err(Error::Template {
                    message: format!(
                        "message {index}: the built-in 'mistral' template has no place for a \
                         system message after the first"
                    ),
                })
            }
            Role::User => {
                out.begin(Some(index));
                out.push("[INST] ");
                out.mark_body_start();
                if first_user {
                    if let Some((_, text)) = system {
                        // The system prompt rides in front of the first user message.
                        out.push(text);
                        out.push("\n\n");
                    }
                }
                out.content(&message.content);
                out.push(" [/INST]");
                out.mark_body_end();
                first_user = false;
            }
            Role::Assistant => {
                out.begin(Some(index));
                out.mark_body_start();
                out.content(&message.content);
                out.push("</s>");
                out.mark_body_end();
            }
            Role::Tool => unreachable!("rejected by no_tools"),
        }
    }
    Ok(out.done())
}

/// Mistral Nemo (official template; the v3 "tekken" layout): `<s>`, then `[INST]` + user +
/// `[/INST]` and the answer + `</s>`, without the spaces of v0.1/v0.2. The template writes a
/// system prompt only into a conversation that ends with a user message (where a generation
/// prompt follows), so in training data it would be lost: a record with one is refused, as
/// are tools (the template requires 9-character call ids that data seldom has).
pub(super) fn render_mistral_nemo(conversation: &Conversation, keep: &[usize]) -> Result<Rendered> {
    no_tools(conversation, keep, "mistral-nemo")?;
    let mut out = Writer::default();
    out.begin(None);
    out.push("<s>");
    for (position, &index) in keep.iter().enumerate() {
        let message = &conversation.messages[index];
        if message.role == Role::System {
            return Err(refuse(
                index,
                "the mistral-nemo template writes a system prompt only before a generation prompt, so a \
                 training conversation would lose it",
            ));
        }
        if (message.role == Role::User) != (position % 2 == 0) {
            return Err(refuse(
                index,
                "After the optional system message, conversation roles must alternate user/assistant/user/assistant/...",
            ));
        }
        out.begin(Some(index));
        if message.role == Role::User {
            out.push("[INST]");
            out.mark_body_start();
            out.content(&message.content);
            out.push("[/INST]");
        } else {
            out.mark_body_start();
            out.content(&message.content);
            out.push("</s>");
        }
        out.mark_body_end();
    }
    Ok(out.done())
}

/// What Llama-3.1's template writes before the tools, in the first user message.
const LLAMA31_TOOLS_PREAMBLE: &str = "Given the following functions, please respond with a JSON for a function call \
    with its proper arguments that best answers the given prompt.\n\n\
    Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its value}.\
    Do not use variables.\n\n";

/// Llama-3.1 Instruct as its official template writes it (the variables a caller can set
/// left at their defaults: no `builtin_tools`, `tools_in_user_message`, the fixed date
/// "26 Jul 2024", or today's for Llama-3.2): a system block that always carries the
/// knowledge-cutoff lines (and "Environment: ipython" with tools), the tools in the first user message, one tool call per
/// answer as `{"name": ..., "parameters": ...}`, tool results as `ipython` turns in JSON.
/// What the template would drop (an answer's text beside its tool call) or cannot render
/// (several calls in one answer) is refused, never lost.
pub(super) fn render_llama31(conversation: &Conversation, keep: &[usize], date: &str) -> Result<Rendered> {
    let messages: Vec<(usize, &Message)> = keep.iter().map(|&i| (i, &conversation.messages[i])).collect();
    let tools = &conversation.tools;
    let mut rest = &messages[..];
    let system = rest.first().copied().filter(|(_, m)| m.role == Role::System);
    if system.is_some() {
        rest = &rest[1..];
    }
    // The system block is the system message's, its own lines in the header; without a
    // system message it is the template's text.
    let mut out = Writer::default();
    out.begin(system.map(|(i, _)| i));
    out.push("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n");
    if !tools.is_empty() {
        out.push("Environment: ipython\n");
    }
    out.push("Cutting Knowledge Date: December 2023\nToday Date: ");
    out.push(date);
    out.push("\n\n");
    if let Some((_, message)) = system {
        out.mark_body_start();
        out.content(super::pystr::strip_space(&message.content));
        out.push("<|eot_id|>");
    } else {
        out.push("<|eot_id|>");
        out.extend_content();
    }
    out.mark_body_end();
    if !tools.is_empty() {
        let Some(&(index, first)) = rest.first() else {
            return Err(template_error(
                "Cannot put tools in the first user message when there's no first user message!",
            ));
        };
        if first.role != Role::User || !first.tool_calls.is_empty() {
            return Err(template_error(&format!(
                "message {index}: with tools, the llama3.1 template writes the first message after the system \
                 prompt as the user's (the tools go in it), and this one is the {}'s",
                first.role.name()
            )));
        }
        out.begin(Some(index));
        out.push("<|start_header_id|>user<|end_header_id|>\n\n");
        out.mark_body_start();
        out.push(LLAMA31_TOOLS_PREAMBLE);
        for tool in tools {
            out.push(&tojson::dumps_indented(tool, 4));
            out.push("\n\n");
        }
        out.content(super::pystr::strip_space(&first.content));
        out.push("<|eot_id|>");
        out.mark_body_end();
        rest = &rest[1..];
    }
    for &(index, message) in rest {
        out.begin(Some(index));
        match (message.role, message.tool_calls.as_slice()) {
            (Role::Tool, _) => {
                out.push("<|start_header_id|>ipython<|end_header_id|>\n\n");
                out.mark_body_start();
                // A string is iterable to Jinja: the template writes every result as JSON.
                out.content(&tojson::dumps(&Value::String(message.content.clone())));
            }
            (_, []) => {
                out.push("<|start_header_id|>");
                out.push(message.role.name());
                out.push("<|end_header_id|>\n\n");
                out.mark_body_start();
                out.content(super::pystr::strip_space(&message.content));
            }
            (_, [call]) => {
                if !message.content.trim().is_empty() {
                    return Err(template_error(&format!(
                        "message {index}: the llama3.1 template writes a tool call without the text beside it; \
                         the text would be lost"
                    )));
                }
                out.push("<|start_header_id|>assistant<|end_header_id|>\n\n");
                out.mark_body_start();
                out.push("{\"name\": \"");
                out.push(&call.name);
                out.push("\", \"parameters\": ");
                out.push(&tojson::dumps(&call.arguments));
                out.push("}");
                out.extend_content();
            }
            (_, _) => {
                return Err(template_error(&format!(
                    "message {index}: This model only supports single tool-calls at once!"
                )))
            }
        }
        out.push("<|eot_id|>");
        out.mark_body_end();
    }
    Ok(out.done())
}

const DEEPSEEK_BOS: &str = "<｜begin▁of▁sentence｜>";
const DEEPSEEK_EOS: &str = "<｜end▁of▁sentence｜>";

/// What the `DeepSeek` templates write alike: the BOS token before the first message, the
/// system prompt right after it, and `<｜User｜>` turns. Opens the message's span; `true` when
/// the message was one of those (the caller writes the others). A system message after the
/// first, which the templates move to the front, is refused.
fn deepseek_system_or_user(
    out: &mut Writer,
    position: usize,
    index: usize,
    message: &Message,
    template: &str,
) -> Result<bool> {
    out.begin(Some(index));
    if position == 0 {
        out.push(DEEPSEEK_BOS);
    }
    match message.role {
        Role::System if position == 0 => {}
        Role::System => {
            return Err(refuse(
                index,
                &format!(
                    "the {template} template moves a system message after the first to the front of the conversation"
                ),
            ))
        }
        Role::User => out.push("<｜User｜>"),
        Role::Assistant | Role::Tool => return Ok(false),
    }
    out.mark_body_start();
    out.content(&message.content);
    out.mark_body_end();
    Ok(true)
}

/// The rendered text, with the BOS token alone when no message was kept.
fn deepseek_done(mut out: Writer, keep: &[usize]) -> Rendered {
    if keep.is_empty() {
        out.begin(None);
        out.push(DEEPSEEK_BOS);
    }
    out.done()
}

/// DeepSeek-V3.1 as its official template writes it in non-thinking mode (the default): the
/// system prompt right after the BOS token, `<｜User｜>` turns, each answer to a user opened by
/// `<｜Assistant｜></think>` (the generation prompt; an answer after tool results has none),
/// an answer's text after its first `</think>` (what comes before is the template's to drop,
/// as transformers renders it), tool calls with their arguments as given (text), results in
/// `<｜tool▁output▁begin｜>…<｜tool▁output▁end｜>`. A system message after the first (which
/// the template moves to the front) and arguments that are not text (which the template
/// cannot join) are refused.
pub(super) fn render_deepseek_v31(conversation: &Conversation, keep: &[usize]) -> Result<Rendered> {
    let mut out = Writer::default();
    let mut after_user = false;
    let mut after_tool = false;
    for (position, &index) in keep.iter().enumerate() {
        let message = &conversation.messages[index];
        if deepseek_system_or_user(&mut out, position, index, message, "deepseek-v3.1")? {
            if message.role == Role::User {
                (after_user, after_tool) = (true, false);
            }
            continue;
        }
        match message.role {
            Role::System | Role::User => {} // written above
            Role::Tool => {
                out.push("<｜tool▁output▁begin｜>");
                out.mark_body_start();
                out.content(&message.content);
                out.mark_body_end();
                out.push("<｜tool▁output▁end｜>");
                (after_user, after_tool) = (false, true);
            }
            Role::Assistant => {
                if after_user {
                    out.push("<｜Assistant｜></think>");
                }
                out.mark_body_start();
                if message.tool_calls.is_empty() {
                    let content = match message.content.split_once("</think>") {
                        Some((_, answer)) if !after_tool => answer,
                        _ => &message.content,
                    };
                    out.content(content);
                } else {
                    out.content(&message.content);
                    out.push("<｜tool▁calls▁begin｜>");
                    for call in &message.tool_calls {
                        let Value::String(arguments) = &call.arguments else {
                            return Err(template_error(&format!(
                                "message {index}: the deepseek-v3.1 template joins tool-call arguments as text, \
                                 and these are JSON {}",
                                if call.arguments.is_object() { "an object" } else { "not text" }
                            )));
                        };
                        out.push("<｜tool▁call▁begin｜>");
                        out.push(&call.name);
                        out.push("<｜tool▁sep｜>");
                        out.push(arguments);
                        out.push("<｜tool▁call▁end｜>");
                    }
                    out.push("<｜tool▁calls▁end｜>");
                    out.extend_content();
                }
                out.push(DEEPSEEK_EOS);
                out.mark_body_end();
                (after_user, after_tool) = (false, false);
            }
        }
    }
    Ok(deepseek_done(out, keep))
}

/// `message {index}: ...` for a record a built-in refuses.
fn refuse(index: usize, why: &str) -> Error {
    template_error(&format!("message {index}: {why}"))
}

/// Gemma 2 (official template): `<bos>`, then `<start_of_turn>user|model\n` + the trimmed
/// content + `<end_of_turn>\n` per message. The template raises on a system message and on
/// roles that do not alternate user/assistant from a user; so does the built-in. It writes no
/// tool calls, so a record with them is refused (they would be lost).
pub(super) fn render_gemma2(conversation: &Conversation, keep: &[usize]) -> Result<Rendered> {
    no_tools(conversation, keep, "gemma2")?;
    let mut out = Writer::default();
    out.begin(None);
    out.push("<bos>");
    for (position, &index) in keep.iter().enumerate() {
        let message = &conversation.messages[index];
        if position == 0 && message.role == Role::System {
            return Err(refuse(
                index,
                "System role not supported (the gemma2 template raises on a leading system message)",
            ));
        }
        // The template's own test: users at even positions, anything else at odd ones.
        if (message.role == Role::User) != (position % 2 == 0) {
            return Err(refuse(index, "Conversation roles must alternate user/assistant/user/assistant/..."));
        }
        out.begin(Some(index));
        out.push("<start_of_turn>");
        out.push(if message.role == Role::Assistant { "model" } else { message.role.name() });
        out.push("\n");
        out.mark_body_start();
        out.content(super::pystr::strip_space(&message.content));
        out.push("<end_of_turn>");
        out.mark_body_end();
        out.push("\n");
    }
    Ok(out.done())
}

/// Gemma 3 (official template): Gemma 2's turns, with a leading system message's text (as
/// given) and a blank line written at the start of the first turn, which must be the user's.
/// The system prompt has a span of its own: the first turn's header and the prompt; the user
/// message's span follows it with no header. Tools are refused (the template writes none).
pub(super) fn render_gemma3(conversation: &Conversation, keep: &[usize]) -> Result<Rendered> {
    no_tools(conversation, keep, "gemma3")?;
    let mut out = Writer::default();
    out.begin(None);
    out.push("<bos>");
    let system = keep.first().copied().filter(|&i| conversation.messages[i].role == Role::System);
    let turns = &keep[usize::from(system.is_some())..];
    for (position, &index) in turns.iter().enumerate() {
        let message = &conversation.messages[index];
        // The template's own test: users at even positions, anything else at odd ones.
        if (message.role == Role::User) != (position % 2 == 0) {
            return Err(refuse(index, "Conversation roles must alternate user/assistant/user/assistant/..."));
        }
        let role = if message.role == Role::Assistant { "model" } else { message.role.name() };
        // The turn's header opens the system prompt's span where it carries the prompt.
        let prompt = system.filter(|_| position == 0);
        out.begin(prompt.or(Some(index)));
        out.push("<start_of_turn>");
        out.push(role);
        out.push("\n");
        if let Some(system_index) = prompt {
            out.mark_body_start();
            out.content(&conversation.messages[system_index].content);
            out.push("\n\n");
            out.mark_body_end();
            out.begin(Some(index));
        }
        out.mark_body_start();
        out.content(super::pystr::strip_space(&message.content));
        out.push("<end_of_turn>");
        out.mark_body_end();
        out.push("\n");
    }
    if let (Some(system_index), []) = (system, turns) {
        // A system message alone: the template writes nothing of it.
        out.begin(Some(system_index));
    }
    Ok(out.done())
}

/// Phi-4 (official template): `<|im_start|>role<|im_sep|>` + content + `<|im_end|>` per
/// system, user and assistant message, nothing between them. The template writes no tool
/// calls or results (it skips other roles), so a record with them is refused.
pub(super) fn render_phi4(conversation: &Conversation, keep: &[usize]) -> Result<Rendered> {
    no_tools(conversation, keep, "phi4")?;
    let mut out = Writer::default();
    for &index in keep {
        let message = &conversation.messages[index];
        out.begin(Some(index));
        out.push("<|im_start|>");
        out.push(message.role.name());
        out.push("<|im_sep|>");
        out.mark_body_start();
        out.content(&message.content);
        out.push("<|im_end|>");
        out.mark_body_end();
    }
    Ok(out.done())
}

/// Phi-3.5 (official template): `<|role|>\n` + content + `<|end|>\n` per message, a system
/// message only when it has text, and `<|endoftext|>` (the EOS token) after the last. The
/// template writes neither tool calls nor tool results, so a record with them is refused.
pub(super) fn render_phi35(conversation: &Conversation, keep: &[usize]) -> Result<Rendered> {
    no_tools(conversation, keep, "phi3.5")?;
    let mut out = Writer::default();
    for &index in keep {
        let message = &conversation.messages[index];
        out.begin(Some(index));
        if message.role == Role::System && message.content.is_empty() {
            continue;
        }
        out.push("<|");
        out.push(message.role.name());
        out.push("|>\n");
        out.mark_body_start();
        out.content(&message.content);
        out.push("<|end|>");
        out.mark_body_end();
        out.push("\n");
    }
    if keep.is_empty() {
        out.begin(None);
    }
    out.push("<|endoftext|>");
    Ok(out.done())
}

/// DeepSeek-R1 (the official template of the R1-Distill models, Qwen and Llama alike):
/// `<｜begin▁of▁sentence｜>`, the system prompt, then `<｜User｜>` + content and
/// `<｜Assistant｜>` + the answer after the content's last `</think>` +
/// `<｜end▁of▁sentence｜>` (the template drops the reasoning of every turn). The two official
/// templates write tool calls in ways that differ and are malformed, so tools are refused, as
/// is a system message after the first (the template moves it to the front).
pub(super) fn render_deepseek_r1(conversation: &Conversation, keep: &[usize]) -> Result<Rendered> {
    no_tools(conversation, keep, "deepseek-r1")?;
    let mut out = Writer::default();
    for (position, &index) in keep.iter().enumerate() {
        let message = &conversation.messages[index];
        if deepseek_system_or_user(&mut out, position, index, message, "deepseek-r1")? {
            continue;
        }
        match message.role {
            Role::System | Role::User => {} // written above
            Role::Tool => {
                return Err(refuse(index, "the built-in 'deepseek-r1' template does not render tool results"))
            }
            Role::Assistant => {
                out.push("<｜Assistant｜>");
                out.mark_body_start();
                let content = &message.content;
                out.content(content.rsplit_once(THINK_END).map_or(content.as_str(), |(_, answer)| answer));
                out.push(DEEPSEEK_EOS);
                out.mark_body_end();
            }
        }
    }
    Ok(deepseek_done(out, keep))
}

const GLM4_TOOLS_PREAMBLE: &str = "<|system|>\n# Tools\n\nYou may call one or more functions to assist with the \
     user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n";
const GLM46_TOOLS_FORMAT: &str = "</tools>\n\nFor each function call, output the function name and arguments within \
     the following XML format:\n<tool_call>{function-name}\n<arg_key>{arg-key-1}</arg_key>\n\
     <arg_value>{arg-value-1}</arg_value>\n<arg_key>{arg-key-2}</arg_key>\n<arg_value>{arg-value-2}</arg_value>\n\
     ...\n</tool_call>";
const GLM47_TOOLS_FORMAT: &str = "</tools>\n\nFor each function call, output the function name and arguments within \
     the following XML format:\n<tool_call>{function-name}<arg_key>{arg-key-1}</arg_key>\
     <arg_value>{arg-value-1}</arg_value><arg_key>{arg-key-2}</arg_key><arg_value>{arg-value-2}</arg_value>\
     ...</tool_call>";

/// The two GLM-4 layouts: 4.6's, with a newline after each tag, and 4.7's, without.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Glm {
    V46,
    V47,
}

impl Glm {
    fn name(self) -> &'static str {
        match self {
            Self::V46 => "glm4.6",
            Self::V47 => "glm4.7",
        }
    }

    /// A layout string: 4.6's, or 4.7's (the same without its newlines).
    fn pick(self, v46: &'static str, v47: &'static str) -> &'static str {
        match self {
            Self::V46 => v46,
            Self::V47 => v47,
        }
    }
}

/// Jinja's truth of a JSON value (`x or {}`).
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|x| x != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(map) => !map.is_empty(),
    }
}

/// GLM-4.6 and GLM-4.7 (official templates, their default modes): `[gMASK]<sop>`, the tools as a
/// `<|system|>` turn of their own, then per message `<|system|>` / `<|user|>` + the content;
/// `<|assistant|>` + the thinking block (4.6: `\n<think>reasoning</think>`, the reasoning
/// only after the last user message, else empty; 4.7: `<think>reasoning</think>` there, else
/// `</think>` alone) + the stripped content + each tool call as `<tool_call>name` with
/// `<arg_key>k</arg_key><arg_value>v</arg_value>` pairs + `</tool_call>`; tool results as
/// `<tool_response>...</tool_response>`, a run of them after one `<|observation|>`. 4.6 puts a
/// newline after each tag where 4.7 puts none. No token ends a turn (the model stops by writing
/// the next role's token), so an answer's body is what the template writes after
/// `<|assistant|>` up to the next message. Tool-call arguments must be a mapping, as the
/// templates raise otherwise (4.6 lets an empty value stand for none).
pub(super) fn render_glm(conversation: &Conversation, keep: &[usize], flavour: Glm) -> Result<Rendered> {
    let mut out = Writer::default();
    out.begin(None);
    out.push("[gMASK]<sop>");
    if !conversation.tools.is_empty() {
        out.push(GLM4_TOOLS_PREAMBLE);
        for tool in &conversation.tools {
            out.push(&tojson::dumps(tool));
            out.push("\n");
        }
        out.push(flavour.pick(GLM46_TOOLS_FORMAT, GLM47_TOOLS_FORMAT));
    }
    let newline = flavour.pick("\n", "");
    let last_user = keep.iter().rposition(|&i| conversation.messages[i].role == Role::User);
    for (position, &index) in keep.iter().enumerate() {
        let message = &conversation.messages[index];
        if message.role != Role::Assistant && !message.tool_calls.is_empty() {
            return Err(refuse(
                index,
                &format!(
                    "the {} template writes tool calls of assistant messages only; these would be lost",
                    flavour.name()
                ),
            ));
        }
        out.begin(Some(index));
        match message.role {
            Role::System | Role::User => {
                out.push(if message.role == Role::User { "<|user|>" } else { "<|system|>" });
                out.push(newline);
                out.mark_body_start();
                out.content(&message.content);
            }
            Role::Tool => {
                let previous = position.checked_sub(1).map(|p| conversation.messages[keep[p]].role);
                if previous != Some(Role::Tool) {
                    out.push("<|observation|>");
                }
                out.push(flavour.pick("\n<tool_response>\n", "<tool_response>"));
                out.mark_body_start();
                out.content(&message.content);
                out.push(flavour.pick("\n</tool_response>", "</tool_response>"));
            }
            Role::Assistant => {
                out.push("<|assistant|>");
                out.mark_body_start();
                let (reasoning, content) = split_thinking(message);
                // Shown when not empty before it is stripped: 4.7 then writes `<think></think>`.
                let shown = last_user.is_none_or(|user| position > user) && !reasoning.is_empty();
                match (flavour, shown) {
                    (_, true) => {
                        out.push(newline);
                        out.push("<think>");
                        out.push(super::pystr::strip_space(reasoning));
                        out.push("</think>");
                    }
                    (Glm::V46, false) => out.push("\n<think></think>"),
                    (Glm::V47, false) => out.push("</think>"),
                }
                let content = super::pystr::strip_space(content);
                if !content.is_empty() {
                    out.push(newline);
                }
                out.content(content);
                for call in &message.tool_calls {
                    glm_tool_call(&mut out, index, call, flavour)?;
                }
                out.extend_content();
            }
        }
        out.mark_body_end();
    }
    Ok(out.done())
}

/// One tool call as GLM-4 writes it: `<tool_call>name`, each argument's key and value (a
/// string as is, anything else as JSON), `</tool_call>`.
fn glm_tool_call(out: &mut Writer, index: usize, call: &ToolCall, flavour: Glm) -> Result<()> {
    let newline = flavour.pick("\n", "");
    out.push(newline);
    out.push("<tool_call>");
    out.push(&call.name);
    out.push(newline);
    match &call.arguments {
        Value::Object(arguments) => {
            for (key, value) in arguments {
                out.push("<arg_key>");
                out.push(key);
                out.push("</arg_key>");
                out.push(newline);
                out.push("<arg_value>");
                match value {
                    Value::String(text) => out.push(text),
                    other => out.push(&tojson::dumps(other)),
                }
                out.push("</arg_value>");
                out.push(newline);
            }
        }
        other if flavour == Glm::V46 && !truthy(other) => {}
        other => {
            let shown = match other {
                Value::String(text) => text.clone(),
                other => tojson::dumps(other),
            };
            return Err(refuse(
                index,
                &format!(
                    "Invalid tool call arguments passed: {shown} (the {} template takes a mapping)",
                    flavour.name()
                ),
            ));
        }
    }
    out.push("</tool_call>");
    Ok(())
}

fn template_error(message: &str) -> Error {
    Error::Template { message: message.to_string() }
}
