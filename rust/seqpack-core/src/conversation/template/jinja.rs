//! Hugging Face Jinja chat templates, rendered by minijinja in a sandbox (no file system, no
//! Python objects, bounded work), with every message located in the output exactly or the
//! record refused.

use super::spans::{MessageSpan, Rendered};
use super::{pystr, pyvalue, tojson};
use crate::conversation::records::{Conversation, Message, Role};
use crate::error::{Error, Result};
use serde_json::Value;
use std::fmt::Write;

/// A Hugging Face `chat_template`, compiled once: the environment holds the parsed template
/// and every render reuses it.
#[derive(Debug, Clone)]
pub struct JinjaTemplate {
    env: minijinja::Environment<'static>,
    /// blake3 of the template source and its special tokens.
    fingerprint: String,
    /// The text that ends a turn (`<|im_end|>`, `<|eot_id|>`, `</s>`): an assistant's trained
    /// span runs from its content to the end of this marker.
    end_of_turn: String,
    bos_token: String,
    eos_token: String,
    /// Whether the source has Hugging Face `{% generation %}` blocks (what
    /// `return_assistant_tokens_mask` trains): each one becomes an assistant body.
    has_generation: bool,
    /// Whether the source concatenates with `~`, which writes numbers minijinja's way.
    concatenates: bool,
}

/// Byte ranges of a rendered text.
type Regions = Vec<(usize, usize)>;

/// Written where a `{% generation %}` block opens and closes, then taken out of the text.
const GENERATION_OPEN: char = '\u{E002}';
const GENERATION_CLOSE: char = '\u{E003}';

/// The source with each `{% generation %}` / `{% endgeneration %}` tag (which minijinja does
/// not know) turned into a block that writes a private-use mark, keeping the tag's
/// whitespace control: `{%- ` strips before it, ` -%}` after, and as a block tag it trims the
/// newline after it and the indentation before it, as transformers' environment does.
///
/// Tags are found as Jinja's lexer finds them: not inside a `{# comment #}`, a `{{ ... }}`
/// expression or a string literal, nor inside a `{% raw %}` block (all of which Jinja2 writes
/// or skips as text).
fn generation_marks(source: &str) -> (String, bool) {
    let mut out = String::with_capacity(source.len());
    let mut copied = 0;
    let mut found = false;
    for block in blocks(source).iter().filter(|b| b.tag) {
        let Some(close) = block.close else { break };
        let mark = match block.inner() {
            "generation" => GENERATION_OPEN,
            "endgeneration" => GENERATION_CLOSE,
            _ => continue,
        };
        found = true;
        out.push_str(&source[copied..block.open]);
        let left = if block.code.starts_with('-') { "-" } else { "" };
        let right = if block.code.ends_with('-') { "-" } else { "" };
        // Writing into a String cannot fail.
        let _ = write!(out, "{{%{left} if true %}}{{{{ '{mark}' }}}}{{% endif {right}%}}");
        copied = close;
    }
    out.push_str(&source[copied..]);
    (out, found)
}

/// A `{{ ... }}` expression or `{% ... %}` tag of a source.
struct Block<'a> {
    /// Where its opener starts.
    open: usize,
    /// Where its closer ends (`None`: it is never closed).
    close: Option<usize>,
    /// What lies between opener and closer.
    code: &'a str,
    tag: bool,
}

impl Block<'_> {
    /// The code without whitespace control and spaces (`generation`, `raw`, ...).
    fn inner(&self) -> &str {
        self.code.trim_start_matches(['-', '+']).trim_end_matches(['-', '+']).trim()
    }
}

/// The expressions and tags of `source` as Jinja's lexer finds them: not inside a
/// `{# comment #}`, a string literal or a `{% raw %}` block; up to the first one not closed.
fn blocks(source: &str) -> Vec<Block<'_>> {
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(offset) = source[at..].find('{') {
        let open = at + offset;
        let rest = &source[open..];
        if let Some(comment) = rest.strip_prefix("{#") {
            at = comment.find("#}").map_or(source.len(), |end| open + 2 + end + 2);
        } else if rest.starts_with("{{") || rest.starts_with("{%") {
            let tag = rest.starts_with("{%");
            // The closer is searched after the opener: in `{%}` the `%` is the opener's (found
            // by the jinja fuzz target: it sliced backwards and panicked).
            let close = skip_to_closer(source, open + 2, if tag { "%}" } else { "}}" });
            let code = &source[open + 2..close.map_or(source.len(), |c| c - 2)];
            found.push(Block { open, close, code, tag });
            let Some(close) = close else { break };
            let raw = tag && found.last().is_some_and(|b| b.inner() == "raw");
            at = if raw { end_of_raw(source, close) } else { close };
        } else {
            at = open + 1;
        }
    }
    found
}

/// Where the string literal whose opening `quote` ends just before `from` closes (after its
/// closing quote; backslash escapes skipped), or the end of `text`.
fn string_end(text: &str, from: usize, quote: char) -> usize {
    let mut escaped = false;
    for (offset, c) in text[from..].char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            c if c == quote => return from + offset + c.len_utf8(),
            _ => {}
        }
    }
    text.len()
}

/// The characters of `code` outside its string literals (each literal a space).
fn outside_strings(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut at = 0;
    while let Some((offset, c)) = code[at..].char_indices().next() {
        at += offset + c.len_utf8();
        if c == '\'' || c == '"' {
            at = string_end(code, at, c);
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether the template uses `~`, and the first float literal of its code that minijinja
/// and Python write differently (minijinja's form, Python's): `~` would write it
/// minijinja's way.
fn concatenation(source: &str) -> (bool, Option<(String, String)>) {
    let code: Vec<String> = blocks(source).iter().map(|b| outside_strings(b.code)).collect();
    if !code.iter().any(|c| c.contains('~')) {
        return (false, None);
    }
    for block in &code {
        let bytes = block.as_bytes();
        let mut k = 0;
        while k < bytes.len() {
            let starts_number = bytes[k].is_ascii_digit()
                && (k == 0 || !(bytes[k - 1].is_ascii_alphanumeric() || bytes[k - 1] == b'_' || bytes[k - 1] == b'.'));
            if !starts_number {
                k += 1;
                continue;
            }
            let start = k;
            while k < bytes.len() && (bytes[k].is_ascii_alphanumeric() || matches!(bytes[k], b'_' | b'.')) {
                // An exponent's sign belongs to the number.
                if matches!(bytes[k], b'e' | b'E') && matches!(bytes.get(k + 1), Some(b'+' | b'-')) {
                    k += 1;
                }
                k += 1;
            }
            let literal = block[start..k].replace('_', "");
            if literal.contains(['.', 'e', 'E']) {
                if let Ok(x) = literal.parse::<f64>() {
                    if let Some(apart) = written_apart(x) {
                        return (true, Some(apart));
                    }
                }
            }
        }
    }
    (true, None)
}

/// minijinja's and Python's forms of `x`, when they differ.
fn written_apart(x: f64) -> Option<(String, String)> {
    let mine = minijinja::Value::from(x).to_string();
    let python = pyvalue::python_str(&minijinja::Value::from(x)).unwrap_or_default();
    (mine != python).then_some((mine, python))
}

/// The first float in `data` that minijinja and Python write differently: (minijinja's
/// form, Python's).
fn first_float_written_apart(data: &impl serde::Serialize) -> Option<(String, String)> {
    fn walk(value: &Value) -> Option<(String, String)> {
        match value {
            Value::Number(n) if n.is_f64() => written_apart(n.as_f64()?),
            Value::Array(items) => items.iter().find_map(walk),
            Value::Object(map) => map.values().find_map(walk),
            _ => None,
        }
    }
    walk(&serde_json::to_value(data).ok()?)
}

/// Where `closer` ends an expression or tag that starts at `from`, string literals (which may
/// hold it) skipped; `None` if it never does.
fn skip_to_closer(source: &str, from: usize, closer: &str) -> Option<usize> {
    let mut at = from;
    while let Some(c) = source[at..].chars().next() {
        if c == '\'' || c == '"' {
            at = string_end(source, at + 1, c);
        } else if source[at..].starts_with(closer) {
            return Some(at + closer.len());
        } else {
            at += c.len_utf8();
        }
    }
    None
}

/// The end of the `{% endraw %}` tag that closes a raw block whose content starts at `from`
/// (the end of the source if none does).
fn end_of_raw(source: &str, from: usize) -> usize {
    let mut at = from;
    while let Some(offset) = source[at..].find("{%") {
        let open = at + offset;
        let Some(close) = source[open + 2..].find("%}").map(|end| open + 2 + end + 2) else { break };
        let inner = source[open + 2..close - 2].trim_start_matches(['-', '+']).trim_end_matches(['-', '+']).trim();
        if inner == "endraw" {
            return close;
        }
        at = open + 2;
    }
    source.len()
}

/// The text without generation marks, and the regions they enclosed (byte ranges of the
/// text without them).
fn generation_regions(marked: &str) -> std::result::Result<(String, Regions), &'static str> {
    let mut text = String::with_capacity(marked.len());
    let mut regions = Vec::new();
    let mut open: Option<usize> = None;
    for c in marked.chars() {
        match c {
            GENERATION_OPEN if open.is_none() => open = Some(text.len()),
            GENERATION_CLOSE => match open.take() {
                Some(start) => regions.push((start, text.len())),
                None => return Err("an endgeneration without a generation"),
            },
            GENERATION_OPEN => return Err("a generation block inside another"),
            c => text.push(c),
        }
    }
    if open.is_some() {
        return Err("a generation block that is never closed");
    }
    Ok((text, regions))
}

/// Where a reasoning block ends inside a content (`<think>...</think>answer`).
const THINK_END: &str = "</think>";

/// Work limit for one render: far above any real chat template, low enough to stop a
/// template that loops forever.
const JINJA_FUEL: u64 = 50_000_000;

/// Where each kept message's content lies in the rendered text (`None`: empty content).
type ContentPositions = Vec<Option<(usize, usize)>>;

impl JinjaTemplate {
    /// Compile `source`; a syntax error surfaces here, not at the first record.
    pub fn new(source: &str, end_of_turn: &str, bos_token: &str, eos_token: &str) -> Result<Self> {
        let (compiled, has_generation) = generation_marks(source);
        let (concatenates, literal) = concatenation(source);
        if let Some((mine, python)) = literal {
            return Err(Error::Template {
                message: format!(
                    "the template concatenates with `~` and holds the number {python}, which `~` would \
                     write as {mine} where Python writes {python}; seqpack refuses it rather than render \
                     it differently"
                ),
            });
        }
        let mut env = minijinja::Environment::new();
        env.set_fuel(Some(JINJA_FUEL));
        // As transformers compiles every chat template: a block tag eats the newline after it
        // and the spaces before it on its line.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        // Python's string semantics, not Rust's, for what templates call on strings.
        env.set_unknown_method_callback(pystr::unknown_method_callback);
        env.add_filter("trim", pystr::trim_filter);
        // Values printed as Python prints them (floats as repr, dicts and lists with their
        // items' repr), and Jinja2's own capitalize / title filters.
        env.set_formatter(pyvalue::formatter);
        env.add_filter("string", pyvalue::string_filter);
        env.add_filter("capitalize", |text: &str| pyvalue::capitalize(text));
        env.add_filter("title", |text: &str| pyvalue::title_filter(text));
        env.add_filter("tojson", tojson::tojson_filter);
        // Jinja2's join: each item as Python's str() writes it.
        env.add_filter("join", pyvalue::join_filter);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", pystr::strftime_now);
        env.add_template_owned("chat", compiled)
            .map_err(|e| Error::Template { message: format!("the chat template does not compile: {e:#}") })?;
        let mut hasher = blake3::Hasher::new();
        for part in [source, end_of_turn, bos_token, eos_token] {
            hasher.update(&(part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
        Ok(Self {
            env,
            fingerprint: hasher.finalize().to_hex().to_string(),
            end_of_turn: end_of_turn.to_string(),
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
            has_generation,
            concatenates,
        })
    }

    /// blake3 of the source and the end-of-turn, BOS and EOS texts.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    fn render_text(
        &self,
        conversation: &Conversation,
        keep: &[usize],
        contents: Option<&[String]>,
        add_generation_prompt: bool,
    ) -> Result<String> {
        Ok(self.render_regions(conversation, keep, contents, add_generation_prompt)?.0)
    }

    /// The rendered text and its generation regions (none without `{% generation %}`).
    fn render_regions(
        &self,
        conversation: &Conversation,
        keep: &[usize],
        contents: Option<&[String]>,
        add_generation_prompt: bool,
    ) -> Result<(String, Regions)> {
        let messages: Vec<Value> = keep
            .iter()
            .enumerate()
            .map(|(k, &i)| {
                let message = &conversation.messages[i];
                message_json_with(message, contents.map_or(message.content.as_str(), |c| c[k].as_str()))
            })
            .collect();
        let tools = if conversation.tools.is_empty() { Value::Null } else { Value::Array(conversation.tools.clone()) };
        if self.has_generation {
            // The marks of generation blocks are taken out of the text after rendering: the
            // same characters in the data would vanish with them.
            let data = serde_json::to_string(&(&messages, &tools)).unwrap_or_default();
            if data.contains([GENERATION_OPEN, GENERATION_CLOSE]) {
                return Err(Error::Template {
                    message: "the record holds U+E002 or U+E003, private-use characters seqpack writes to \
                              mark the template's generation blocks; refused rather than lost"
                        .into(),
                });
            }
        }
        if self.concatenates {
            // `~` writes numbers minijinja's way, not through the formatter: a float whose two
            // forms differ (Python: 1e-05, minijinja: 0.00001) would change the text silently.
            if let Some((mine, python)) = first_float_written_apart(&(&messages, &tools)) {
                return Err(Error::Template {
                    message: format!(
                        "the template concatenates with `~`, which would write the record's number {python} \
                         as {mine} where Python writes {python}; refused rather than rendered differently"
                    ),
                });
            }
        }
        let context = minijinja::context! {
            messages => minijinja::Value::from_serialize(&messages),
            tools => minijinja::Value::from_serialize(&tools),
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.clone(),
            eos_token => self.eos_token.clone(),
        };
        let text = self
            .env
            .get_template("chat")
            .and_then(|template| template.render(context))
            .map_err(|e| Error::Template { message: format!("the chat template raised: {e:#}") })?;
        if !self.has_generation {
            return Ok((text, Vec::new()));
        }
        generation_regions(&text).map_err(|why| Error::Template { message: format!("the chat template has {why}") })
    }

    /// The text alone, every message kept, as transformers' `apply_chat_template(...,
    /// tokenize=False)` renders it.
    ///
    /// # Errors
    /// What the template raises.
    pub fn render_plain(&self, conversation: &Conversation, add_generation_prompt: bool) -> Result<String> {
        let all: Vec<usize> = (0..conversation.messages.len()).collect();
        self.render_text(conversation, &all, None, add_generation_prompt)
    }

    /// Render and locate every message exactly. A second render, with each non-empty content
    /// replaced by a unique marker, gives the template's own text between contents (which
    /// must be the same in the real render, or the template depends on content in ways
    /// labels cannot follow); an assistant body starts after the template's generation prompt
    /// (the header it opens a turn with); a message's segment ends after the end-of-turn
    /// marker that follows its content.
    ///
    /// A content with a reasoning block (`...</think>answer`) that a template takes apart
    /// (Qwen3 shows the reasoning of the last turns in its own `<think>` block and only the
    /// answer elsewhere) is located a second way when the first fails: the marker replaces
    /// the answer alone, so the template renders the reasoning as it does in the real text,
    /// and the same exact checks apply.
    pub fn render(&self, conversation: &Conversation, keep: &[usize]) -> Result<Rendered> {
        let (text, regions) = self.render_regions(conversation, keep, None, false)?;
        let has_reasoning = || keep.iter().any(|&i| conversation.messages[i].content.contains(THINK_END));
        let mut spans = match self.locate(&text, conversation, keep, false) {
            Err(first) if has_reasoning() => self.locate(&text, conversation, keep, true).map_err(|_| first)?,
            other => other?,
        };
        if self.has_generation {
            apply_generation_regions(&mut spans, &regions, conversation)?;
        }
        Ok(Rendered { text, spans })
    }

    /// Locate every kept message in `text`, with markers for whole contents or, with
    /// `answers_only`, for what follows a content's last `</think>`.
    fn locate(
        &self,
        text: &str,
        conversation: &Conversation,
        keep: &[usize],
        answers_only: bool,
    ) -> Result<Vec<MessageSpan>> {
        // Empty contents stay empty (templates test them, e.g. before a tool call).
        let markers: Vec<String> = keep
            .iter()
            .enumerate()
            .map(|(k, &i)| {
                if conversation.messages[i].content.is_empty() {
                    String::new()
                } else {
                    format!("\u{E000}{k}\u{E001}")
                }
            })
            .collect();
        let substitutes: Vec<String> = keep
            .iter()
            .zip(&markers)
            .map(|(&i, marker)| {
                let content = &conversation.messages[i].content;
                match content.rfind(THINK_END).filter(|_| answers_only && !marker.is_empty()) {
                    Some(at) => format!("{}{marker}", &content[..at + THINK_END.len()]),
                    None => marker.clone(),
                }
            })
            .collect();
        let marked = self.render_text(conversation, keep, Some(&substitutes), false)?;
        let (marked, markers) = self.probe_empty_contents(conversation, keep, marked, markers, &substitutes);
        let literals = template_literals(&marked, &markers, conversation, keep)?;
        let contents = content_positions(text, &literals, &markers, conversation, keep)?;
        self.message_spans(text, &contents, conversation, keep)
    }

    /// Empty contents are left empty in the marked render (templates test them), so where
    /// they lie is not known. A third render gives them markers too: when the template then
    /// writes exactly the same text apart from those markers, it does not look at them, and
    /// the markers stand where the empty contents are. Otherwise the marked render stays as
    /// it was.
    fn probe_empty_contents(
        &self,
        conversation: &Conversation,
        keep: &[usize],
        marked: String,
        markers: Vec<String>,
        substitutes: &[String],
    ) -> (String, Vec<String>) {
        let empty: Vec<usize> = (0..keep.len()).filter(|&k| markers[k].is_empty()).collect();
        if empty.is_empty() {
            return (marked, markers);
        }
        let mut probe_markers = markers.clone();
        let mut probe_substitutes = substitutes.to_vec();
        for &k in &empty {
            probe_markers[k] = format!("\u{E000}{k}\u{E001}");
            probe_substitutes[k].clone_from(&probe_markers[k]);
        }
        let Ok(probe) = self.render_text(conversation, keep, Some(&probe_substitutes), false) else {
            return (marked, markers);
        };
        let mut stripped = probe.clone();
        for &k in &empty {
            stripped = stripped.replacen(probe_markers[k].as_str(), "", 1);
        }
        if stripped == marked {
            (probe, probe_markers)
        } else {
            (marked, markers)
        }
    }

    /// The spans of every kept message (and of the template's preamble, if any), given where
    /// their contents lie.
    fn message_spans(
        &self,
        text: &str,
        contents: &ContentPositions,
        conversation: &Conversation,
        keep: &[usize],
    ) -> Result<Vec<MessageSpan>> {
        let eot = self.end_of_turn.as_str();
        let find_eot = |from: usize, to: usize| -> Option<usize> {
            (!eot.is_empty()).then(|| text[from..to].find(eot).map(|at| from + at + eot.len())).flatten()
        };
        // Where the next non-empty content starts (the limit for searching this one's end).
        let next_content =
            |k: usize| -> usize { (k + 1..keep.len()).find_map(|j| contents[j].map(|c| c.0)).unwrap_or(text.len()) };
        let mut spans = Vec::with_capacity(keep.len() + 1);
        let mut segment_start = 0;
        if let Some(cut) = self.preamble_end(text, contents) {
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
            let prompt_end = if conversation.messages[index].role == Role::Assistant {
                self.generation_prompt_end(text, conversation, keep, k, segment_start..limit, contents[k].map(|c| c.0))?
            } else {
                None
            };
            let (content_start, content_end) = contents[k].unwrap_or_else(|| {
                // Empty content: right after the generation prompt for an assistant; just
                // before the next end-of-turn marker otherwise.
                let at = prompt_end
                    .unwrap_or_else(|| find_eot(segment_start, limit).map_or(segment_start, |end| end - eot.len()));
                (at, at)
            });
            let body_start = prompt_end.unwrap_or(content_start);
            if body_start > content_start {
                return Err(unplaceable(conversation, index, "the template's generation prompt runs past the content"));
            }
            let eot_end = find_eot(content_end, limit);
            let message = &conversation.messages[index];
            if message.role == Role::Assistant && !message.tool_calls.is_empty() && eot_end.is_none() {
                // Its calls are written after its content: without an end-of-turn marker after
                // them, where the answer ends (and so what is trained) is not known.
                return Err(unplaceable(
                    conversation,
                    index,
                    "no end-of-turn marker follows its tool calls to end the answer",
                ));
            }
            let body_end = eot_end.unwrap_or(content_end);
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
        Ok(spans)
    }

    /// Text before the first message's header (a BOS token, a tools block) is the template's
    /// own: it ends after the last end-of-turn marker before the first content.
    fn preamble_end(&self, text: &str, contents: &ContentPositions) -> Option<usize> {
        let eot = self.end_of_turn.as_str();
        let (first, _) = contents.first().copied().flatten().filter(|_| !eot.is_empty())?;
        let at = text[..first].rfind(eot)?;
        let after = at + eot.len();
        let cut = after + (text[after..first].len() - text[after..first].trim_start().len());
        (cut > 0).then_some(cut)
    }

    /// Where the header of assistant message `keep[k]` ends: the template's generation prompt
    /// (what `add_generation_prompt` appends to the conversation so far) opens the turn, and
    /// the model writes after it. `None` when the template has no generation prompt (the
    /// header is then whatever precedes the content).
    ///
    /// Some generation prompts end with text that history turns do not repeat (DeepSeek-R1's
    /// `<｜Assistant｜><think>\n`, whose history turns hold `<｜Assistant｜>` and the answer):
    /// then the part of the prompt that opens the turn is its header, when the content
    /// (located exactly, so not empty) starts right after it. Anything else is refused.
    fn generation_prompt_end(
        &self,
        text: &str,
        conversation: &Conversation,
        keep: &[usize],
        k: usize,
        turn: std::ops::Range<usize>,
        content_start: Option<usize>,
    ) -> Result<Option<usize>> {
        let segment_start = turn.start;
        let before = self.render_text(conversation, &keep[..k], None, false)?;
        let prompted = self.render_text(conversation, &keep[..k], None, true)?;
        // A template may close the conversation with text that the generation prompt
        // replaces (Phi-3's final EOS token): then the prompt is what follows the text so far
        // up to this turn, when the prompted render repeats that text.
        let header = prompted.strip_prefix(before.as_str()).or_else(|| prompted.strip_prefix(&text[..segment_start]));
        let turn = &text[turn];
        match header {
            Some("") => Ok(None),
            Some(header) if turn.starts_with(header) => Ok(Some(segment_start + header.len())),
            Some(header) => {
                // Only a content located exactly vouches for a partial prompt: without one, a
                // shared prefix may be another tag's (DeepSeek's `<｜` opens every tag). The
                // turn up to the content must be a prefix of the prompt (the content itself
                // may go on as the prompt does: `<|channel>` and a content that opens with `<`).
                match content_start {
                    Some(start) if start > segment_start && header.starts_with(&text[segment_start..start]) => {
                        Ok(Some(start))
                    }
                    _ => Err(unplaceable(
                        conversation,
                        keep[k],
                        "the template's generation prompt does not open this turn",
                    )),
                }
            }
            None => Err(unplaceable(conversation, keep[k], "the template's generation prompt does not open this turn")),
        }
    }
}

/// With `{% generation %}` blocks, what the template marks is what is trained, as
/// transformers' `return_assistant_tokens_mask`: the k-th block is the k-th assistant's body,
/// and must lie within that assistant's segment.
fn apply_generation_regions(
    spans: &mut [MessageSpan],
    regions: &[(usize, usize)],
    conversation: &Conversation,
) -> Result<()> {
    let assistants: Vec<usize> = spans
        .iter()
        .enumerate()
        .filter(|(_, span)| span.message.is_some_and(|m| conversation.messages[m].role == Role::Assistant))
        .map(|(at, _)| at)
        .collect();
    if assistants.len() != regions.len() {
        let message = format!(
            "the chat template marks {} generation blocks for {} assistant messages, so what it \
             trains cannot be matched to them",
            regions.len(),
            assistants.len()
        );
        return Err(Error::Template { message });
    }
    for (&at, &(start, end)) in assistants.iter().zip(regions) {
        let span = &mut spans[at];
        if start < span.start || end > span.end {
            let index = span.message.unwrap_or_default();
            return Err(unplaceable(conversation, index, "its generation block lies outside its turn"));
        }
        span.body_start = start;
        span.body_end = end;
    }
    Ok(())
}

/// The error for a message whose tokens cannot be located exactly.
fn unplaceable(conversation: &Conversation, index: usize, why: &str) -> Error {
    Error::Template {
        message: format!(
            "message {index} ({}): {why}, so its tokens cannot be located exactly; use a built-in template",
            conversation.messages[index].role.name()
        ),
    }
}

/// The template's own text around each non-empty content, from the render with markers: the
/// text before the first marker, between markers, and after the last.
fn template_literals<'a>(
    marked: &'a str,
    markers: &[String],
    conversation: &Conversation,
    keep: &[usize],
) -> Result<Vec<&'a str>> {
    let mut literals = Vec::with_capacity(keep.len() + 1);
    let mut at = 0;
    for (k, marker) in markers.iter().enumerate().filter(|(_, m)| !m.is_empty()) {
        let found: Vec<usize> = marked.match_indices(marker.as_str()).map(|(i, _)| i).collect();
        match found.as_slice() {
            [position] if *position >= at => {
                literals.push(&marked[at..*position]);
                at = position + marker.len();
            }
            _ => {
                return Err(unplaceable(
                    conversation,
                    keep[k],
                    "the template does not render its content exactly once, in order",
                ))
            }
        }
    }
    literals.push(&marked[at..]);
    Ok(literals)
}

/// Walk the real text — literal, content, literal, content, ... — and find where each
/// non-empty content lies. The literals must match exactly; a content the template
/// transforms (e.g. trims) ends where the template's own text resumes.
fn content_positions(
    text: &str,
    literals: &[&str],
    markers: &[String],
    conversation: &Conversation,
    keep: &[usize],
) -> Result<ContentPositions> {
    let placed: Vec<usize> = (0..keep.len()).filter(|&k| !markers[k].is_empty()).collect();
    let mut positions: ContentPositions = vec![None; keep.len()];
    let mut position = 0;
    for (j, &k) in placed.iter().enumerate() {
        let index = keep[k];
        let changes = |why: &str| unplaceable(conversation, index, why);
        if !text[position..].starts_with(literals[j]) {
            return Err(changes("the template's text around it changes with the content"));
        }
        position += literals[j].len();
        let content = conversation.messages[index].content.as_str();
        let next = literals[j + 1];
        let exact = text[position..].starts_with(content) && text[position + content.len()..].starts_with(next);
        let end = if exact {
            position + content.len()
        } else if j + 1 == placed.len() {
            text.len()
                .checked_sub(next.len())
                .filter(|&e| e >= position && text.ends_with(next))
                .ok_or_else(|| changes("the template's text after it changes with the content"))?
        } else if next.is_empty() {
            return Err(changes("the template rewrites its content"));
        } else {
            text[position..]
                .find(next)
                .map(|at| position + at)
                .ok_or_else(|| changes("the template's text after it changes with the content"))?
        };
        // A template may show part of a content (trimmed, or the answer after a reasoning
        // block), never text of its own inside it: that text would be labelled as the
        // speaker's.
        if !content.contains(&text[position..end]) {
            return Err(changes("the template's text around it changes with the content"));
        }
        positions[k] = Some((position, end));
        position = end;
    }
    // The text after the last content is the template's trailing literal, all of it.
    if text[position..] != *literals[placed.len()] {
        let last = keep.last().copied().unwrap_or(0);
        return Err(unplaceable(conversation, last, "the template's text at the end changes with the content"));
    }
    Ok(positions)
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
