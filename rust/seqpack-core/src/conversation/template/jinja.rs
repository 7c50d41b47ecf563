//! Hugging Face Jinja chat templates, rendered by minijinja in a sandbox (no file system, no
//! Python objects, bounded work), with every message located in the output exactly or the
//! record refused.

use super::spans::{MessageSpan, Rendered};
use super::tojson;
use crate::conversation::records::{Conversation, Message, Role};
use crate::error::{Error, Result};
use serde_json::Value;

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
        env.add_filter("tojson", tojson::tojson_filter);
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
        let tools = if conversation.tools.is_empty() { Value::Null } else { Value::Array(conversation.tools.clone()) };
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
    #[allow(clippy::too_many_lines, reason = "split next")]
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
                _ => {
                    return Err(unplaceable(keep[k], "the template does not render its content exactly once, in order"))
                }
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
        let next_content =
            |k: usize| -> usize { (k + 1..keep.len()).find_map(|j| content_at[j].map(|c| c.0)).unwrap_or(text.len()) };
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
            spans.push(MessageSpan {
                message: None,
                start: 0,
                body_start: 0,
                content_start: 0,
                content_end: cut,
                body_end: cut,
                end: cut,
            });
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
                    Some(header)
                        if text[segment_start..].starts_with(header) && segment_start + header.len() <= limit =>
                    {
                        Some(segment_start + header.len())
                    }
                    _ => return Err(unplaceable(index, "the template's generation prompt does not open this turn")),
                }
            } else {
                None
            };
            let (content_start, content_end) = if let Some(span) = content_at[k] {
                span
            } else {
                // Empty content: right after the generation prompt for an assistant; just
                // before the next end-of-turn marker otherwise.
                let at = prompt_end
                    .unwrap_or_else(|| find_eot(segment_start, limit).map_or(segment_start, |end| end - eot.len()));
                (at, at)
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
            spans.push(MessageSpan {
                message: Some(index),
                start: segment_start,
                body_start,
                content_start,
                content_end,
                body_end,
                end,
            });
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

fn raise_exception(message: String) -> std::result::Result<String, minijinja::Error> {
    Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, message))
}
