//! Rendering a conversation to text with the byte span of every message, so labels can be
//! placed exactly. Built-in templates (`ChatML` as Qwen3 and Qwen2.5 write it, Llama-3.0,
//! Llama-3.1 with tools, DeepSeek-V3.1, DeepSeek-R1, Mistral, Mistral Nemo, Gemma 2 and 3,
//! Phi-3.5 and 4, GLM-4.6 and 4.7) are written out in Rust; any Hugging Face Jinja `chat_template` is rendered by minijinja in a sandbox
//! (no file system, no Python objects, bounded work).

mod builtin;
mod jinja;
pub mod pystr;
pub mod pyvalue;
mod spans;
pub mod tojson;

pub use jinja::{openai_messages, JinjaTemplate};
pub use spans::{CharSpan, MessageSpan, Rendered};

use crate::conversation::records::Conversation;
use crate::error::{Error, Result};

/// The chat templates seqpack renders.
#[derive(Debug, Clone)]
pub enum Template {
    /// `ChatML` as Qwen3 writes it: no default system prompt, `<think>` blocks for the turns
    /// after the last user query, `<tool_call>` / `<tool_response>` tags.
    Qwen3,
    /// `ChatML` as Qwen2.5 writes it: a default system prompt, no `<think>` handling.
    Qwen25,
    /// Llama-3.0 (Instruct): `<|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>`,
    /// without the "Cutting Knowledge Date" system block that Llama-3.1+ templates add.
    Llama3,
    /// Llama-3.1 Instruct (official template, defaults): the "Cutting Knowledge Date"
    /// system block, tools in the first user message, one JSON tool call per answer,
    /// `ipython` tool results.
    Llama31,
    /// Llama-3.2 Instruct (official template, defaults): Llama-3.1's layout with today's date
    /// (as transformers' `strftime_now` writes it, in local time) where 3.1 has a fixed one;
    /// the date is read when the template is loaded.
    Llama32 { date: String },
    /// DeepSeek-V3.1 (official template, non-thinking mode): `<｜User｜>` / `<｜Assistant｜>`
    /// turns, tool calls and results in the model's own tags.
    DeepSeekV31,
    /// Mistral Instruct (v0.1/v0.2 layout): `<s>[INST] user [/INST]assistant</s>`, the
    /// system prompt prefixed to the first user message (the official v0.2 template raises on
    /// a system message instead).
    Mistral,
    /// Mistral Nemo (official template, the v3 "tekken" layout): `<s>[INST]user[/INST]answer</s>`;
    /// no system prompt (the template drops it from training conversations), no tools.
    MistralNemo,
    /// Gemma 2 (official template): `<start_of_turn>user|model`, trimmed contents, no system
    /// role.
    Gemma2,
    /// Gemma 3 (official template): Gemma 2's turns, a system prompt written at the start of
    /// the first user turn.
    Gemma3,
    /// Phi-3.5 (official template): `<|role|>\n...<|end|>\n`, EOS after the last message.
    Phi35,
    /// Phi-4 (official template): `<|im_start|>role<|im_sep|>...<|im_end|>`.
    Phi4,
    /// GLM-4.6 (official template, default mode): `[gMASK]<sop>`, `<|user|>` /
    /// `<|assistant|>` turns with an empty or kept `<think>` block, tool calls as
    /// `<tool_call>name` with `<arg_key>` / `<arg_value>` pairs, results after `<|observation|>`.
    Glm46,
    /// GLM-4.7 (official template, default mode): GLM-4.6's layout without the newlines after
    /// its tags, and `</think>` alone where 4.6 writes an empty `<think></think>`.
    Glm47,
    /// DeepSeek-R1 (the R1-Distill models' official template): `<｜User｜>` /
    /// `<｜Assistant｜>` turns, each answer without its reasoning, no tools.
    DeepSeekR1,
    /// A Hugging Face Jinja chat template.
    Jinja(Box<JinjaTemplate>),
}

impl Template {
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "qwen3" | "chatml" => Ok(Self::Qwen3),
            "qwen2.5" | "qwen25" => Ok(Self::Qwen25),
            "llama3.0" | "llama3" => Ok(Self::Llama3),
            // Llama-3.3's official template is Llama-3.1's, character for character.
            "llama3.1" | "llama3.3" => Ok(Self::Llama31),
            "llama3.2" => {
                let date = pystr::strftime_now("%d %b %Y".into())
                    .map_err(|error| Error::Template { message: error.to_string() })?;
                Ok(Self::Llama32 { date })
            }
            "deepseek-v3.1" => Ok(Self::DeepSeekV31),
            "mistral" => Ok(Self::Mistral),
            "mistral-nemo" => Ok(Self::MistralNemo),
            "gemma2" => Ok(Self::Gemma2),
            "gemma3" => Ok(Self::Gemma3),
            "phi3.5" => Ok(Self::Phi35),
            "phi4" => Ok(Self::Phi4),
            "deepseek-r1" => Ok(Self::DeepSeekR1),
            "glm4.6" => Ok(Self::Glm46),
            "glm4.7" => Ok(Self::Glm47),
            other => Err(Error::InvalidOption {
                name: "template",
                message: format!(
                    "unknown template '{other}'; expected 'qwen3' (alias 'chatml'), 'qwen2.5', \
                     'llama3.0' (alias 'llama3'), 'llama3.1' (alias 'llama3.3'), 'llama3.2', \
                     'deepseek-v3.1', 'deepseek-r1', 'mistral', 'mistral-nemo', 'gemma2', 'gemma3', \
                     'phi3.5', 'phi4', 'glm4.6', 'glm4.7', or a Jinja chat_template string"
                ),
            }),
        }
    }

    /// What identifies this template in a store's manifest: the built-in's name, or
    /// `jinja:` and the blake3 of a Jinja template with its special tokens.
    pub fn fingerprint(&self) -> String {
        match self {
            Self::Qwen3 => "builtin:qwen3".into(),
            Self::Qwen25 => "builtin:qwen2.5".into(),
            Self::Llama3 => "builtin:llama3".into(),
            Self::Llama31 => "builtin:llama3.1".into(),
            Self::Llama32 { date } => format!("builtin:llama3.2:{date}"),
            Self::DeepSeekV31 => "builtin:deepseek-v3.1".into(),
            Self::Mistral => "builtin:mistral".into(),
            Self::MistralNemo => "builtin:mistral-nemo".into(),
            Self::Gemma2 => "builtin:gemma2".into(),
            Self::Gemma3 => "builtin:gemma3".into(),
            Self::Phi35 => "builtin:phi3.5".into(),
            Self::Phi4 => "builtin:phi4".into(),
            Self::DeepSeekR1 => "builtin:deepseek-r1".into(),
            Self::Glm46 => "builtin:glm4.6".into(),
            Self::Glm47 => "builtin:glm4.7".into(),
            Self::Jinja(template) => format!("jinja:{}", template.fingerprint()),
        }
    }

    /// The text of the whole conversation, without locating messages (what a user compares
    /// with `apply_chat_template(..., tokenize=False)`).
    ///
    /// # Errors
    /// What the template raises; a generation prompt asked of a built-in (they render
    /// training conversations only).
    pub fn render_text(&self, conversation: &Conversation, add_generation_prompt: bool) -> Result<String> {
        match self {
            Self::Jinja(template) => template.render_plain(conversation, add_generation_prompt),
            _ if add_generation_prompt => Err(Error::InvalidOption {
                name: "add_generation_prompt",
                message: "the built-in templates render training conversations only; use the model's Jinja template"
                    .into(),
            }),
            builtin => {
                let all: Vec<usize> = (0..conversation.messages.len()).collect();
                Ok(builtin.render(conversation, &all)?.text)
            }
        }
    }

    /// Render the given messages (a subset of the conversation, in order) with its tools.
    pub fn render(&self, conversation: &Conversation, keep: &[usize]) -> Result<Rendered> {
        match self {
            Self::Qwen3 => Ok(builtin::render_chatml(conversation, keep, builtin::ChatMl::Qwen3)),
            Self::Qwen25 => Ok(builtin::render_chatml(conversation, keep, builtin::ChatMl::Qwen25)),
            Self::Llama3 => builtin::render_llama3(conversation, keep),
            Self::Llama31 => builtin::render_llama31(conversation, keep, "26 Jul 2024"),
            Self::Llama32 { date } => builtin::render_llama31(conversation, keep, date),
            Self::DeepSeekV31 => builtin::render_deepseek_v31(conversation, keep),
            Self::Mistral => builtin::render_mistral(conversation, keep),
            Self::MistralNemo => builtin::render_mistral_nemo(conversation, keep),
            Self::Gemma2 => builtin::render_gemma2(conversation, keep),
            Self::Gemma3 => builtin::render_gemma3(conversation, keep),
            Self::Phi35 => builtin::render_phi35(conversation, keep),
            Self::Phi4 => builtin::render_phi4(conversation, keep),
            Self::DeepSeekR1 => builtin::render_deepseek_r1(conversation, keep),
            Self::Glm46 => builtin::render_glm(conversation, keep, builtin::Glm::V46),
            Self::Glm47 => builtin::render_glm(conversation, keep, builtin::Glm::V47),
            Self::Jinja(template) => template.render(conversation, keep),
        }
    }
}
