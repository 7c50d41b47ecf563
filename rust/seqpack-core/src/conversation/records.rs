//! Chat records in: `OpenAI` messages, `ShareGPT` and Alpaca, normalised to one [`Conversation`].
//! Everything about a record's shape is decided here; templates never see raw JSON.

use crate::error::{Error, Result};
use serde_json::Value;

/// Who speaks a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

impl Role {
    pub const NAMES: &'static str = "system, user, assistant, tool";

    pub fn name(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
            Self::Tool => "tool",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "system" => Some(Self::System),
            "user" => Some(Self::User),
            "assistant" => Some(Self::Assistant),
            "tool" => Some(Self::Tool),
            _ => None,
        }
    }
}

/// One function call an assistant message makes.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub name: String,
    /// A JSON object (rendered with `tojson`) or a string (rendered as is).
    pub arguments: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    pub content: String,
    /// Chain-of-thought text, for templates that render it (Qwen3's `<think>`).
    pub reasoning: Option<String>,
    pub tool_calls: Vec<ToolCall>,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self { role, content: content.into(), reasoning: None, tool_calls: Vec::new() }
    }
}

/// A normalised conversation: an optional leading system message, then the turns.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Conversation {
    pub messages: Vec<Message>,
    /// Tool (function) definitions, as JSON values in the order given.
    pub tools: Vec<Value>,
}

/// Which record layout to expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Decide per record: `messages` → `OpenAI`, `conversations` → `ShareGPT`, `instruction` →
    /// Alpaca (after applying the field mapping).
    Auto,
    OpenAi,
    ShareGpt,
    Alpaca,
}

impl std::str::FromStr for Format {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "auto" => Ok(Self::Auto),
            "openai" => Ok(Self::OpenAi),
            "sharegpt" => Ok(Self::ShareGpt),
            "alpaca" => Ok(Self::Alpaca),
            other => Err(Error::InvalidOption {
                name: "format",
                message: format!("unknown format '{other}'; expected 'auto', 'openai', 'sharegpt' or 'alpaca'"),
            }),
        }
    }
}

/// Field and role spellings. Defaults cover `OpenAI`, `ShareGPT` (LLaMA-Factory's spelling) and
/// Alpaca; a user with other names overrides single entries (`{"messages": "chat", "roles":
/// {"bot": "assistant"}}`).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(try_from = "serde_json::Map<String, Value>")]
pub struct Mapping {
    pub messages: String,
    pub conversations: String,
    pub role: String,
    pub content: String,
    pub sharegpt_role: String,
    pub sharegpt_content: String,
    pub system: String,
    pub tools: String,
    pub instruction: String,
    pub input: String,
    pub output: String,
    pub history: String,
    /// Extra role spellings → roles (`function_call` and `observation` are handled apart:
    /// they become an assistant tool call and a tool result).
    pub roles: Vec<(String, RoleAlias)>,
}

/// What a role spelling stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleAlias {
    Role(Role),
    /// `ShareGPT` `function_call`: an assistant message whose value is `{"name", "arguments"}`.
    FunctionCall,
    /// `ShareGPT` `observation`: a tool result.
    Observation,
}

impl Default for Mapping {
    fn default() -> Self {
        let alias = |name: &str, role: RoleAlias| (name.to_string(), role);
        Self {
            messages: "messages".into(),
            conversations: "conversations".into(),
            role: "role".into(),
            content: "content".into(),
            sharegpt_role: "from".into(),
            sharegpt_content: "value".into(),
            system: "system".into(),
            tools: "tools".into(),
            instruction: "instruction".into(),
            input: "input".into(),
            output: "output".into(),
            history: "history".into(),
            roles: vec![
                alias("system", RoleAlias::Role(Role::System)),
                alias("user", RoleAlias::Role(Role::User)),
                alias("human", RoleAlias::Role(Role::User)),
                alias("assistant", RoleAlias::Role(Role::Assistant)),
                alias("gpt", RoleAlias::Role(Role::Assistant)),
                alias("tool", RoleAlias::Role(Role::Tool)),
                alias("function_call", RoleAlias::FunctionCall),
                alias("observation", RoleAlias::Observation),
            ],
        }
    }
}

impl TryFrom<serde_json::Map<String, Value>> for Mapping {
    type Error = Error;

    /// Overrides of the default spellings: field names, and `roles` mapping spellings to
    /// roles.
    fn try_from(overrides: serde_json::Map<String, Value>) -> Result<Self> {
        let bad = |message: String| Error::InvalidOption { name: "mapping", message };
        let mut mapping = Self::default();
        for (key, value) in &overrides {
            if key == "roles" {
                let Value::Object(roles) = value else {
                    return Err(bad(format!("'roles' must map spellings to roles, got {}", describe(value))));
                };
                for (spelling, role) in roles {
                    let Value::String(role) = role else {
                        return Err(bad(format!("the role for '{spelling}' must be a string, got {}", describe(role))));
                    };
                    let alias = match role.as_str() {
                        "function_call" => RoleAlias::FunctionCall,
                        "observation" => RoleAlias::Observation,
                        other => RoleAlias::Role(Role::from_name(other).ok_or_else(|| {
                            bad(format!(
                                "role '{other}' for '{spelling}' is not one of {}, function_call, observation",
                                Role::NAMES
                            ))
                        })?),
                    };
                    mapping.roles.push((spelling.clone(), alias));
                }
                continue;
            }
            let Value::String(field) = value else {
                return Err(bad(format!("'{key}' must name a field (a string), got {}", describe(value))));
            };
            let slot = match key.as_str() {
                "messages" => &mut mapping.messages,
                "conversations" => &mut mapping.conversations,
                "role" => &mut mapping.role,
                "content" => &mut mapping.content,
                "from" => &mut mapping.sharegpt_role,
                "value" => &mut mapping.sharegpt_content,
                "system" => &mut mapping.system,
                "tools" => &mut mapping.tools,
                "instruction" => &mut mapping.instruction,
                "input" => &mut mapping.input,
                "output" => &mut mapping.output,
                "history" => &mut mapping.history,
                other => {
                    return Err(bad(format!(
                        "unknown key '{other}'; expected messages, conversations, role, content, from, \
                         value, system, tools, instruction, input, output, history or roles"
                    )))
                }
            };
            slot.clone_from(field);
        }
        Ok(mapping)
    }
}

/// Where a record came from, for error messages: its index and, for files, its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub record: usize,
    pub line: Option<usize>,
}

impl Origin {
    pub fn error(self, field: impl Into<String>, message: impl Into<String>) -> Error {
        Error::InvalidRecord { record: self.record, line: self.line, field: field.into(), message: message.into() }
    }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Parse one record into a conversation.
pub fn parse_record(record: &Value, format: Format, mapping: &Mapping, origin: Origin) -> Result<Conversation> {
    let Value::Object(object) = record else {
        return Err(origin.error("", format!("a record must be a JSON object, got {}", describe(record))));
    };
    let format = match format {
        Format::Auto if object.contains_key(&mapping.messages) => Format::OpenAi,
        Format::Auto if object.contains_key(&mapping.conversations) => Format::ShareGpt,
        Format::Auto if object.contains_key(&mapping.instruction) => Format::Alpaca,
        Format::Auto => {
            return Err(origin.error(
                "",
                format!(
                    "cannot tell the format: no '{}', '{}' or '{}' field",
                    mapping.messages, mapping.conversations, mapping.instruction
                ),
            ))
        }
        other => other,
    };
    let mut conversation = match format {
        Format::OpenAi => parse_messages(object, &mapping.messages, &mapping.role, &mapping.content, mapping, origin)?,
        Format::ShareGpt => parse_messages(
            object,
            &mapping.conversations,
            &mapping.sharegpt_role,
            &mapping.sharegpt_content,
            mapping,
            origin,
        )?,
        Format::Alpaca => parse_alpaca(object, mapping, origin)?,
        Format::Auto => unreachable!("resolved above"),
    };
    // A separate system field (ShareGPT, Alpaca) goes first unless the messages have one.
    if let Some(system) = object.get(&mapping.system) {
        match system {
            Value::String(text) if !text.is_empty() => {
                if conversation.messages.first().map(|m| m.role) != Some(Role::System) {
                    conversation.messages.insert(0, Message::new(Role::System, text.clone()));
                }
            }
            Value::String(_) | Value::Null => {}
            other => {
                return Err(origin.error(mapping.system.clone(), format!("must be a string, got {}", describe(other))))
            }
        }
    }
    conversation.tools = parse_tools(object.get(&mapping.tools), &mapping.tools, origin)?;
    let list_key = match format {
        Format::ShareGpt => mapping.conversations.as_str(),
        Format::Alpaca => mapping.output.as_str(),
        _ => mapping.messages.as_str(),
    };
    validate(&conversation, list_key, origin)?;
    Ok(conversation)
}

fn parse_tools(value: Option<&Value>, field: &str, origin: Origin) -> Result<Vec<Value>> {
    let parsed;
    let value = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        // ShareGPT files often carry tools as a JSON string.
        Some(Value::String(text)) if text.trim().is_empty() => return Ok(Vec::new()),
        Some(Value::String(text)) => {
            parsed = serde_json::from_str::<Value>(text)
                .map_err(|e| origin.error(field, format!("is a string but not valid JSON ({e})")))?;
            &parsed
        }
        Some(other) => other,
    };
    match value {
        Value::Array(tools) => Ok(tools.clone()),
        other => Err(origin.error(field, format!("must be a list of tool definitions, got {}", describe(other)))),
    }
}

fn role_of(name: &str, mapping: &Mapping) -> Option<RoleAlias> {
    mapping.roles.iter().rev().find(|(alias, _)| alias == name).map(|(_, role)| *role)
}

fn parse_messages(
    object: &serde_json::Map<String, Value>,
    list_key: &str,
    role_key: &str,
    content_key: &str,
    mapping: &Mapping,
    origin: Origin,
) -> Result<Conversation> {
    let list = match object.get(list_key) {
        Some(Value::Array(list)) => list,
        Some(other) => {
            return Err(origin.error(list_key, format!("must be a list of messages, got {}", describe(other))))
        }
        None => return Err(origin.error(list_key, "is missing")),
    };
    let mut messages = Vec::with_capacity(list.len());
    for (index, raw) in list.iter().enumerate() {
        let field = |name: &str| format!("{list_key}[{index}].{name}");
        let Value::Object(message) = raw else {
            return Err(
                origin.error(format!("{list_key}[{index}]"), format!("must be an object, got {}", describe(raw)))
            );
        };
        let role_name = match message.get(role_key) {
            Some(Value::String(name)) => name.as_str(),
            Some(other) => {
                return Err(origin.error(field(role_key), format!("must be a string, got {}", describe(other))))
            }
            None => return Err(origin.error(field(role_key), "is missing")),
        };
        let Some(alias) = role_of(role_name, mapping) else {
            let known: Vec<&str> = mapping.roles.iter().map(|(a, _)| a.as_str()).collect();
            return Err(origin.error(field(role_key), format!("role '{role_name}' is not one of {}", known.join(", "))));
        };
        let content_field = field(content_key);
        let mut parsed = match alias {
            RoleAlias::Role(role) => {
                let mut parsed = Message::new(role, String::new());
                read_content(message.get(content_key), &content_field, &mut parsed, origin)?;
                parsed
            }
            RoleAlias::FunctionCall => {
                let mut parsed = Message::new(Role::Assistant, String::new());
                let text = match message.get(content_key) {
                    Some(Value::String(text)) => text,
                    Some(other) => {
                        return Err(origin.error(content_field, format!("must be a string, got {}", describe(other))))
                    }
                    None => return Err(origin.error(content_field, "is missing")),
                };
                parsed.tool_calls = parse_tool_call_text(text, &content_field, origin)?;
                parsed
            }
            RoleAlias::Observation => {
                let mut parsed = Message::new(Role::Tool, String::new());
                read_content(message.get(content_key), &content_field, &mut parsed, origin)?;
                parsed
            }
        };
        if let Some(calls) = message.get("tool_calls") {
            parsed.tool_calls.extend(parse_tool_calls(calls, &field("tool_calls"), origin)?);
        }
        for key in ["reasoning_content", "reasoning"] {
            match message.get(key) {
                Some(Value::String(text)) => parsed.reasoning = Some(text.clone()),
                Some(Value::Null) | None => {}
                Some(other) => {
                    return Err(origin.error(field(key), format!("must be a string, got {}", describe(other))))
                }
            }
        }
        messages.push(parsed);
    }
    Ok(Conversation { messages, tools: Vec::new() })
}

/// Content is a string, null (only with tool calls), or a list of typed parts:
/// `text`, `reasoning`, `tool_call` (with `text` or `value` holding the payload).
fn read_content(value: Option<&Value>, field: &str, message: &mut Message, origin: Origin) -> Result<()> {
    match value {
        Some(Value::String(text)) => message.content.clone_from(text),
        Some(Value::Null) | None => {}
        Some(Value::Array(parts)) => {
            for (index, part) in parts.iter().enumerate() {
                let part_field = format!("{field}[{index}]");
                let Value::Object(part) = part else {
                    return Err(origin.error(part_field, format!("must be an object, got {}", describe(part))));
                };
                let kind = match part.get("type") {
                    Some(Value::String(kind)) => kind.as_str(),
                    _ => "text",
                };
                let payload = match part.get("text").or_else(|| part.get("value")) {
                    Some(Value::String(text)) => text,
                    Some(other) => {
                        return Err(origin.error(part_field, format!("text must be a string, got {}", describe(other))))
                    }
                    None => return Err(origin.error(part_field, "has no 'text' or 'value'")),
                };
                match kind {
                    "text" => message.content.push_str(payload),
                    "reasoning" | "thinking" => message.reasoning.get_or_insert_with(String::new).push_str(payload),
                    "tool_call" => message.tool_calls.extend(parse_tool_call_text(payload, &part_field, origin)?),
                    other => {
                        return Err(origin.error(
                            part_field,
                            format!("content part type '{other}' is not supported (text, reasoning, tool_call)"),
                        ))
                    }
                }
            }
        }
        Some(other) => {
            return Err(origin.error(field, format!("must be a string or a list of parts, got {}", describe(other))))
        }
    }
    Ok(())
}

/// A tool call written as JSON text: `{"name": ..., "arguments": ...}` or a list of them.
fn parse_tool_call_text(text: &str, field: &str, origin: Origin) -> Result<Vec<ToolCall>> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| origin.error(field, format!("tool call is not valid JSON ({e})")))?;
    match &value {
        Value::Array(_) => parse_tool_calls(&value, field, origin),
        _ => Ok(vec![parse_one_call(&value, field, origin)?]),
    }
}

fn parse_tool_calls(value: &Value, field: &str, origin: Origin) -> Result<Vec<ToolCall>> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(calls) => calls
            .iter()
            .enumerate()
            .map(|(index, call)| parse_one_call(call, &format!("{field}[{index}]"), origin))
            .collect(),
        other => Err(origin.error(field, format!("must be a list of tool calls, got {}", describe(other)))),
    }
}

/// `{"name", "arguments"}`, or `OpenAI`'s `{"type": "function", "function": {...}}`.
fn parse_one_call(value: &Value, field: &str, origin: Origin) -> Result<ToolCall> {
    let call = value.get("function").unwrap_or(value);
    let name = match call.get("name") {
        Some(Value::String(name)) => name.clone(),
        _ => return Err(origin.error(field, "tool call has no string 'name'")),
    };
    let arguments = call.get("arguments").cloned().unwrap_or_else(|| Value::Object(serde_json::Map::default()));
    Ok(ToolCall { name, arguments })
}

fn parse_alpaca(object: &serde_json::Map<String, Value>, mapping: &Mapping, origin: Origin) -> Result<Conversation> {
    let text = |key: &str, required: bool| -> Result<String> {
        match object.get(key) {
            Some(Value::String(text)) => Ok(text.clone()),
            Some(Value::Null) | None if !required => Ok(String::new()),
            None | Some(Value::Null) => Err(origin.error(key, "is missing")),
            Some(other) => Err(origin.error(key, format!("must be a string, got {}", describe(other)))),
        }
    };
    let mut messages = Vec::new();
    match object.get(&mapping.history) {
        None | Some(Value::Null) => {}
        Some(Value::Array(pairs)) => {
            for (index, pair) in pairs.iter().enumerate() {
                let field = format!("{}[{index}]", mapping.history);
                match pair.as_array().map(std::vec::Vec::as_slice) {
                    Some([Value::String(user), Value::String(assistant)]) => {
                        messages.push(Message::new(Role::User, user.clone()));
                        messages.push(Message::new(Role::Assistant, assistant.clone()));
                    }
                    _ => return Err(origin.error(field, "must be a [user, assistant] pair of strings")),
                }
            }
        }
        Some(other) => {
            return Err(
                origin.error(mapping.history.clone(), format!("must be a list of pairs, got {}", describe(other)))
            )
        }
    }
    let instruction = text(&mapping.instruction, true)?;
    let input = text(&mapping.input, false)?;
    let prompt = if input.is_empty() { instruction } else { format!("{instruction}\n{input}") };
    messages.push(Message::new(Role::User, prompt));
    messages.push(Message::new(Role::Assistant, text(&mapping.output, true)?));
    Ok(Conversation { messages, tools: Vec::new() })
}

/// Structural rules every conversation must meet before it is rendered.
fn validate(conversation: &Conversation, list_key: &str, origin: Origin) -> Result<()> {
    if conversation.messages.is_empty() {
        return Err(origin.error(list_key, "the conversation is empty"));
    }
    if !conversation.messages.iter().any(|m| m.role == Role::Assistant) {
        return Err(origin.error(list_key, "no assistant turn: nothing to train on"));
    }
    Ok(())
}

/// One record read from a file: where it came from and its JSON, or why it could not be read.
pub struct RawRecord {
    pub origin: Origin,
    pub value: Result<Value>,
}
