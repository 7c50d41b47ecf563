//! Rendering a conversation to text with the byte span of every message, so labels can be
//! placed exactly. Built-in templates (ChatML as Qwen3 and Qwen2.5 write it, Llama-3,
//! Mistral) are written out in Rust; any Hugging Face Jinja `chat_template` is rendered by
//! minijinja in a sandbox (no file system, no Python objects, bounded work).

use crate::chat::{Conversation, Message, Role};
use crate::error::{Error, Result};
use crate::pyjson;
use serde_json::Value;

/// Byte ranges of one message in the rendered text.
///
/// `start..body_start` is the role header, `body_start..body_end` what the speaker produces
/// (for an assistant: everything it must learn to generate, end-of-turn token included),
/// `body_end..end` separators. `content_start..content_end` is the message's own content
/// (inside the body), the part a token-level cut may shorten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageSpan {
    /// Index in the conversation's messages; `None` for text the template adds on its own
    /// (a default system prompt, a tools block without a system message, a BOS token).
    pub message: Option<usize>,
    pub start: usize,
    pub body_start: usize,
    pub content_start: usize,
    pub content_end: usize,
    pub body_end: usize,
    pub end: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    /// Spans in text order, covering the text without gaps.
    pub spans: Vec<MessageSpan>,
}

/// Appends text while recording spans.
#[derive(Default)]
struct Writer {
    text: String,
    spans: Vec<MessageSpan>,
    open: Option<MessageSpan>,
}

impl Writer {
    fn begin(&mut self, message: Option<usize>) {
        self.finish();
        let at = self.text.len();
        self.open = Some(MessageSpan {
            message,
            start: at,
            body_start: at,
            content_start: at,
            content_end: at,
            body_end: at,
            end: at,
        });
    }
    fn push(&mut self, text: &str) {
        self.text.push_str(text);
    }
    fn mark_body_start(&mut self) {
        let at = self.text.len();
        if let Some(span) = self.open.as_mut() {
            span.body_start = at;
            span.content_start = at;
            span.content_end = at;
        }
    }
    fn content(&mut self, text: &str) {
        let start = self.text.len();
        self.text.push_str(text);
        if let Some(span) = self.open.as_mut() {
            span.content_start = start;
            span.content_end = self.text.len();
        }
    }
    /// Extend the content span over what was written since it began (tool calls).
    fn extend_content(&mut self) {
        let at = self.text.len();
        if let Some(span) = self.open.as_mut() {
            span.content_end = at;
        }
    }
    fn mark_body_end(&mut self) {
        let at = self.text.len();
        if let Some(span) = self.open.as_mut() {
            span.body_end = at;
        }
    }
    fn finish(&mut self) {
        if let Some(mut span) = self.open.take() {
            span.end = self.text.len();
            if span.body_end < span.body_start {
                span.body_end = span.end;
            }
            self.spans.push(span);
        }
    }
    fn done(mut self) -> Rendered {
        self.finish();
        Rendered { text: self.text, spans: self.spans }
    }
}

/// The chat templates seqpack renders.
#[derive(Debug, Clone)]
pub enum Template {
    /// ChatML as Qwen3 writes it: no default system prompt, `<think>` blocks for the turns
    /// after the last user query, `<tool_call>` / `<tool_response>` tags.
    Qwen3,
    /// ChatML as Qwen2.5 writes it: a default system prompt, no `<think>` handling.
    Qwen25,
    /// Llama-3 (Instruct): `<|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>`.
    Llama3,
    /// Mistral Instruct (v0.1/v0.2 layout): `<s>[INST] user [/INST]assistant</s>`, the
    /// system prompt prefixed to the first user message.
    Mistral,
    /// A Hugging Face Jinja chat template.
    Jinja(Box<JinjaTemplate>),
}

const QWEN25_DEFAULT_SYSTEM: &str = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

impl Template {
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "qwen3" | "chatml" => Ok(Self::Qwen3),
            "qwen2.5" | "qwen25" => Ok(Self::Qwen25),
            "llama3" => Ok(Self::Llama3),
            "mistral" => Ok(Self::Mistral),
            other => Err(Error::InvalidOption {
                name: "template",
                message: format!(
                    "unknown template '{other}'; expected 'qwen3' (alias 'chatml'), 'qwen2.5', \
                     'llama3', 'mistral', or a Jinja chat_template string"
                ),
            }),
        }
    }

    /// Render the given messages (a subset of the conversation, in order) with its tools.
    pub fn render(&self, conversation: &Conversation, keep: &[usize]) -> Result<Rendered> {
        match self {
            Self::Qwen3 => Ok(render_chatml(conversation, keep, ChatMl::Qwen3)),
            Self::Qwen25 => Ok(render_chatml(conversation, keep, ChatMl::Qwen25)),
            Self::Llama3 => render_llama3(conversation, keep),
            Self::Mistral => render_mistral(conversation, keep),
            Self::Jinja(template) => template.render(conversation, keep),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ChatMl {
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
        out.push_str(&pyjson::dumps(tool));
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

/// Qwen3's reading of an assistant message: (reasoning, visible content).
fn split_thinking(message: &Message) -> (String, String) {
    if let Some(reasoning) = &message.reasoning {
        return (reasoning.clone(), message.content.clone());
    }
    let content = &message.content;
    if let Some(at) = content.rfind("</think>") {
        let after = content[at + "</think>".len()..].trim_start_matches('\n').to_string();
        let before = content[..content.find("</think>").unwrap_or(at)].trim_end_matches('\n');
        let reasoning = before.rsplit("<think>").next().unwrap_or("").trim_start_matches('\n');
        return (reasoning.to_string(), after);
    }
    (String::new(), content.clone())
}

fn render_chatml(conversation: &Conversation, keep: &[usize], flavour: ChatMl) -> Rendered {
    let messages: Vec<(usize, &Message)> = keep.iter().map(|&i| (i, &conversation.messages[i])).collect();
    let tools = &conversation.tools;
    let mut out = Writer::default();

    let leading_system = messages.first().filter(|(_, m)| m.role == Role::System);
    let system_text = leading_system.map(|(_, m)| m.content.as_str());
    let system_index = leading_system.map(|(i, _)| *i);
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
    } else if let Some(text) = system_text {
        out.begin(system_index);
        out.push("<|im_start|>system\n");
        out.mark_body_start();
        out.content(text);
        out.push("<|im_end|>");
        out.mark_body_end();
        out.push("\n");
    } else if flavour == ChatMl::Qwen25 {
        out.begin(None);
        out.push("<|im_start|>system\n");
        out.mark_body_start();
        out.content(QWEN25_DEFAULT_SYSTEM);
        out.push("<|im_end|>");
        out.mark_body_end();
        out.push("\n");
    }

    // Qwen3: the index of the last real user query (not a wrapped tool response).
    let mut last_query = messages.len().saturating_sub(1);
    for (position, (_, message)) in messages.iter().enumerate().rev() {
        if message.role == Role::User && !is_tool_response(&message.content) {
            last_query = position;
            break;
        }
    }

    let count = messages.len();
    for (position, &(index, message)) in messages.iter().enumerate() {
        let is_last = position + 1 == count;
        match message.role {
            Role::System if position == 0 => {}
            Role::User | Role::System => {
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
            Role::Assistant => {
                out.begin(Some(index));
                out.push("<|im_start|>assistant");
                match flavour {
                    ChatMl::Qwen3 => {
                        out.push("\n");
                        out.mark_body_start();
                        let (reasoning, content) = split_thinking(message);
                        if position > last_query && (is_last || !reasoning.is_empty()) {
                            out.push("<think>\n");
                            out.push(reasoning.trim_matches('\n'));
                            out.push("\n</think>\n\n");
                            out.content(content.trim_start_matches('\n'));
                        } else {
                            out.content(&content);
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
                                other => out.push(&pyjson::dumps(other)),
                            }
                            out.push("}\n</tool_call>");
                        }
                    }
                    ChatMl::Qwen25 => {
                        if message.tool_calls.is_empty() {
                            out.push("\n");
                            out.mark_body_start();
                            out.content(&message.content);
                        } else {
                            out.mark_body_start();
                            if !message.content.is_empty() {
                                out.push("\n");
                                out.content(&message.content);
                            }
                            for call in &message.tool_calls {
                                out.push("\n<tool_call>\n{\"name\": \"");
                                out.push(&call.name);
                                out.push("\", \"arguments\": ");
                                out.push(&pyjson::dumps(&call.arguments));
                                out.push("}\n</tool_call>");
                            }
                        }
                    }
                }
                out.extend_content();
                out.push("<|im_end|>");
                out.mark_body_end();
                out.push("\n");
            }
            Role::Tool => {
                out.begin(Some(index));
                let previous_is_tool = position > 0 && messages[position - 1].1.role == Role::Tool;
                if !previous_is_tool {
                    out.push("<|im_start|>user");
                }
                out.push("\n<tool_response>\n");
                out.mark_body_start();
                out.content(&message.content);
                out.push("\n</tool_response>");
                let next_is_tool = !is_last && messages[position + 1].1.role == Role::Tool;
                if !next_is_tool {
                    out.push("<|im_end|>");
                }
                out.mark_body_end();
                if !next_is_tool {
                    out.push("\n");
                }
            }
        }
    }
    out.done()
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

fn render_llama3(conversation: &Conversation, keep: &[usize]) -> Result<Rendered> {
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
        out.content(message.content.trim());
        out.push("<|eot_id|>");
        out.mark_body_end();
    }
    Ok(out.done())
}

fn render_mistral(conversation: &Conversation, keep: &[usize]) -> Result<Rendered> {
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

/// A Hugging Face `chat_template`, compiled once.
#[derive(Debug, Clone)]
pub struct JinjaTemplate {
    source: String,
    /// The text that ends a turn (`<|im_end|>`, `<|eot_id|>`, `</s>`): an assistant's trained
    /// span runs from its content to the end of this marker.
    end_of_turn: String,
    bos_token: String,
    eos_token: String,
}

/// Work limit for one render: far above any real chat template, low enough to stop a
/// template that loops forever.
const JINJA_FUEL: u64 = 50_000_000;

impl JinjaTemplate {
    pub fn new(source: &str, end_of_turn: &str, bos_token: &str, eos_token: &str) -> Result<Self> {
        let template = Self {
            source: source.to_string(),
            end_of_turn: end_of_turn.to_string(),
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        };
        // Compile once now so a syntax error surfaces at construction.
        template.environment()?;
        Ok(template)
    }

    fn environment(&self) -> Result<minijinja::Environment<'static>> {
        let mut env = minijinja::Environment::new();
        env.set_fuel(Some(JINJA_FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", tojson_filter);
        env.add_function("raise_exception", raise_exception);
        env.add_template_owned("chat", self.source.clone())
            .map_err(|e| Error::Template { message: format!("the chat template does not compile: {e:#}") })?;
        Ok(env)
    }

    fn render_text(
        &self,
        env: &minijinja::Environment<'static>,
        conversation: &Conversation,
        keep: &[usize],
        contents: Option<&[String]>,
        add_generation_prompt: bool,
    ) -> Result<String> {
        let messages: Vec<Value> = keep
            .iter()
            .enumerate()
            .map(|(k, &i)| {
                let message = &conversation.messages[i];
                message_json_with(message, contents.map_or(message.content.as_str(), |c| c[k].as_str()))
            })
            .collect();
        let tools = if conversation.tools.is_empty() {
            Value::Null
        } else {
            Value::Array(conversation.tools.clone())
        };
        let context = minijinja::context! {
            messages => minijinja::Value::from_serialize(&messages),
            tools => minijinja::Value::from_serialize(&tools),
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.clone(),
            eos_token => self.eos_token.clone(),
        };
        env.get_template("chat")
            .and_then(|template| template.render(context))
            .map_err(|e| Error::Template { message: format!("the chat template raised: {e:#}") })
    }

    /// Render and locate every message exactly. A second render, with each non-empty content
    /// replaced by a unique marker, gives the template's own text between contents (which
    /// must be the same in the real render, or the template depends on content in ways
    /// labels cannot follow); an assistant body starts after the template's generation prompt
    /// (the header it opens a turn with); a message's segment ends after the end-of-turn
    /// marker that follows its content.
    pub fn render(&self, conversation: &Conversation, keep: &[usize]) -> Result<Rendered> {
        let env = self.environment()?;
        let text = self.render_text(&env, conversation, keep, None, false)?;
        let content_of = |k: usize| conversation.messages[keep[k]].content.as_str();
        // Empty contents stay empty (templates test them, e.g. before a tool call).
        let markers: Vec<String> = (0..keep.len())
            .map(|k| if content_of(k).is_empty() { String::new() } else { format!("\u{E000}{k}\u{E001}") })
            .collect();
        let marked = self.render_text(&env, conversation, keep, Some(&markers), false)?;
        let unplaceable = |index: usize, why: &str| Error::Template {
            message: format!(
                "message {index} ({}): {why}, so its tokens cannot be located exactly; use a \
                 built-in template",
                conversation.messages[index].role.name()
            ),
        };
        let placed: Vec<usize> = (0..keep.len()).filter(|&k| !markers[k].is_empty()).collect();

        // The template's own text around each non-empty content.
        let mut literals: Vec<&str> = Vec::with_capacity(placed.len() + 1);
        let mut at = 0;
        for &k in &placed {
            let found: Vec<usize> = marked.match_indices(markers[k].as_str()).map(|(i, _)| i).collect();
            match found.as_slice() {
                [position] if *position >= at => {
                    literals.push(&marked[at..*position]);
                    at = position + markers[k].len();
                }
                _ => return Err(unplaceable(keep[k], "the template does not render its content exactly once, in order")),
            }
        }
        literals.push(&marked[at..]);

        // Walk the real text: literal, content, literal, content, ...
        let mut content_at: Vec<Option<(usize, usize)>> = vec![None; keep.len()];
        let mut position = 0;
        for (j, &k) in placed.iter().enumerate() {
            let index = keep[k];
            if !text[position..].starts_with(literals[j]) {
                return Err(unplaceable(index, "the template's text around it changes with the content"));
            }
            position += literals[j].len();
            let content = content_of(k);
            let next = literals[j + 1];
            let exact = text[position..].starts_with(content) && text[position + content.len()..].starts_with(next);
            let end = if exact {
                position + content.len()
            } else if j + 1 == placed.len() {
                text.len()
                    .checked_sub(next.len())
                    .filter(|&e| e >= position && text.ends_with(next))
                    .ok_or_else(|| unplaceable(index, "the template's text after it changes with the content"))?
            } else if next.is_empty() {
                return Err(unplaceable(index, "the template rewrites its content"));
            } else {
                // The template transforms the content (e.g. trims it): it ends where the
                // template's own text resumes.
                text[position..]
                    .find(next)
                    .map(|at| position + at)
                    .ok_or_else(|| unplaceable(index, "the template's text after it changes with the content"))?
            };
            content_at[k] = Some((position, end));
            position = end;
        }
        if !text[position..].starts_with(literals[placed.len()]) {
            let last = keep.last().copied().unwrap_or(0);
            return Err(unplaceable(last, "the template's text at the end changes with the content"));
        }

        let eot = self.end_of_turn.as_str();
        let find_eot = |from: usize, to: usize| -> Option<usize> {
            (!eot.is_empty()).then(|| text[from..to].find(eot).map(|at| from + at + eot.len())).flatten()
        };
        // Where the next non-empty content starts (the limit for searching this one's end).
        let next_content = |k: usize| -> usize {
            (k + 1..keep.len()).find_map(|j| content_at[j].map(|c| c.0)).unwrap_or(text.len())
        };
        let mut spans = Vec::with_capacity(keep.len() + 1);
        // Text before the first message's header (BOS, a tools block) is the template's own.
        let preamble = content_at[0].filter(|_| !eot.is_empty()).and_then(|(first, _)| {
            text[..first].rfind(eot).map(|at| {
                let after = at + eot.len();
                after + (text[after..first].len() - text[after..first].trim_start().len())
            })
        });
        let mut segment_start = 0;
        if let Some(cut) = preamble.filter(|&c| c > 0) {
            spans.push(MessageSpan { message: None, start: 0, body_start: 0, content_start: 0, content_end: cut, body_end: cut, end: cut });
            segment_start = cut;
        }
        for (k, &index) in keep.iter().enumerate() {
            let limit = next_content(k);
            let is_assistant = conversation.messages[index].role == Role::Assistant;
            let prompt_end = if is_assistant {
                // The template's generation prompt (what add_generation_prompt appends to the
                // conversation so far) is this turn's header: the model writes after it.
                let before = self.render_text(&env, conversation, &keep[..k], None, false)?;
                let prompted = self.render_text(&env, conversation, &keep[..k], None, true)?;
                match prompted.strip_prefix(before.as_str()) {
                    // No generation prompt: the turn's header is whatever precedes its content.
                    Some("") => None,
                    Some(header) if text[segment_start..].starts_with(header) && segment_start + header.len() <= limit => {
                        Some(segment_start + header.len())
                    }
                    _ => return Err(unplaceable(index, "the template's generation prompt does not open this turn")),
                }
            } else {
                None
            };
            let (content_start, content_end) = match content_at[k] {
                Some(span) => span,
                None => {
                    // Empty content: right after the generation prompt for an assistant; just
                    // before the next end-of-turn marker otherwise.
                    let at = prompt_end.unwrap_or_else(|| {
                        find_eot(segment_start, limit).map_or(segment_start, |end| end - eot.len())
                    });
                    (at, at)
                }
            };
            let body_start = prompt_end.unwrap_or(content_start);
            if body_start > content_start {
                return Err(unplaceable(index, "the template's generation prompt runs past the content"));
            }
            let body_end = find_eot(content_end, limit).unwrap_or(content_end);
            let end = if k + 1 == keep.len() {
                text.len()
            } else {
                let rest = &text[body_end..limit];
                body_end + (rest.len() - rest.trim_start().len())
            };
            spans.push(MessageSpan { message: Some(index), start: segment_start, body_start, content_start, content_end, body_end, end });
            segment_start = end;
        }
        Ok(Rendered { text, spans })
    }
}

fn message_json(message: &Message) -> Value {
    message_json_with(message, &message.content)
}

/// The message as a template sees it, with `content` as given.
fn message_json_with(message: &Message, content: &str) -> Value {
    let mut object = serde_json::Map::new();
    object.insert("role".into(), Value::String(message.role.name().into()));
    object.insert("content".into(), Value::String(content.to_string()));
    if let Some(reasoning) = &message.reasoning {
        object.insert("reasoning_content".into(), Value::String(reasoning.clone()));
    }
    if !message.tool_calls.is_empty() {
        let calls = message
            .tool_calls
            .iter()
            .map(|call| {
                serde_json::json!({
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                })
            })
            .collect();
        object.insert("tool_calls".into(), Value::Array(calls));
    }
    Value::Object(object)
}

/// The conversation as OpenAI-style messages (what `apply_chat_template` takes).
pub fn openai_messages(conversation: &Conversation) -> Vec<Value> {
    conversation.messages.iter().map(message_json).collect()
}

fn tojson_filter(value: minijinja::Value, kwargs: minijinja::value::Kwargs) -> std::result::Result<String, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    kwargs.assert_all_used()?;
    let json: Value = serde_json::to_value(&value)
        .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string()))?;
    match indent {
        None => Ok(pyjson::dumps(&json)),
        Some(width) => {
            let indent = " ".repeat(width);
            let mut out = Vec::new();
            let formatter = serde_json::ser::PrettyFormatter::with_indent(indent.as_bytes());
            let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
            serde::Serialize::serialize(&json, &mut serializer)
                .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string()))?;
            Ok(String::from_utf8_lossy(&out).into_owned())
        }
    }
}

fn raise_exception(message: String) -> std::result::Result<String, minijinja::Error> {
    Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, message))
}
