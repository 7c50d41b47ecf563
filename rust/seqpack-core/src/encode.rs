//! Conversations to training samples: render, tokenize, truncate turn-aware to the budget,
//! label, and report everything that was cut. One conversation at a time, in parallel; the
//! outcome of each depends on that conversation alone, so results do not depend on the
//! thread count.

use crate::chat::{Conversation, Role};
use crate::error::{Error, Result};
use crate::layout::IGNORE_INDEX;
use crate::template::{Rendered, Template};
use crate::tokenize::{tokenize, TokenizedConversation, Tokenizer};
use crate::truncate::{keep_latest, turns, windows, Turn};
use rayon::prelude::*;

/// Which end of an over-long single turn survives a token-level cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutKeep {
    Head,
    Tail,
    /// Keep both ends; the middle is removed.
    Middle,
}

impl CutKeep {
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "head" => Ok(Self::Head),
            "tail" => Ok(Self::Tail),
            "middle" => Ok(Self::Middle),
            other => Err(Error::InvalidOption {
                name: "cut_keep",
                message: format!("unknown side '{other}'; expected 'head', 'tail' or 'middle'"),
            }),
        }
    }
}

/// What gets labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Train {
    /// The bodies of messages with these roles (default: assistant).
    Roles(Vec<Role>),
    /// Every token.
    All,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeOptions {
    pub max_length: usize,
    /// Keep the first turn (the one that sets the task) when truncating, if it fits.
    pub keep_first_turn: bool,
    /// Emit windows (each with the system prompt) instead of dropping old turns.
    pub split: bool,
    pub cut_keep: CutKeep,
    /// Keep labels on an assistant turn that was cut at token level.
    pub train_on_cut_turns: bool,
    pub train: Train,
    pub min_trainable_tokens: usize,
}

impl EncodeOptions {
    pub fn new(max_length: usize) -> Self {
        Self {
            max_length,
            keep_first_turn: false,
            split: false,
            cut_keep: CutKeep::Head,
            train_on_cut_turns: false,
            train: Train::Roles(vec![Role::Assistant]),
            min_trainable_tokens: 1,
        }
    }
}

/// One training sample: tokens and their labels (`IGNORE_INDEX` = not trained).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub record: usize,
    /// Window number within its record (0 unless split).
    pub window: usize,
    pub tokens: Vec<u32>,
    pub labels: Vec<i64>,
}

/// What happened to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Kept,
    Truncated,
    Split,
    Dropped,
    Skipped,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Self::Kept => "kept",
            Self::Truncated => "truncated",
            Self::Split => "split",
            Self::Dropped => "dropped",
            Self::Skipped => "skipped",
        }
    }
}

/// Everything a user needs to know about one record's fate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordReport {
    pub record: usize,
    pub line: Option<usize>,
    pub status: Status,
    /// Stable reason code: `fits`, `trailing_messages_dropped`, `turns_dropped`, `turn_cut`,
    /// `split_into_windows`, `untrainable_windows_dropped`, `system_prompt_too_long`,
    /// `no_trainable_tokens`, or for a skipped record `invalid_record`, `template_error`,
    /// `tokenizer_error`.
    pub reason: String,
    /// Error text for a skipped record.
    pub message: Option<String>,
    pub dropped_messages: Vec<usize>,
    /// Messages shortened at token level.
    pub cut_messages: Vec<usize>,
    /// Tokens removed, per role: system, user, assistant, tool; then the template's own text
    /// (what re-rendering a shorter conversation adds or drops, e.g. Qwen3's empty `<think>`
    /// block or a system prompt repeated in every window; negative when it adds). The five
    /// always sum to `tokens_before - tokens_after`.
    pub tokens_removed: [i64; 5],
    pub system_kept: Option<bool>,
    pub first_user_kept: Option<bool>,
    pub tokens_before: usize,
    pub tokens_after: usize,
    pub trained_before: usize,
    pub trained_after: usize,
    pub windows: usize,
    /// Tokens of the whole rendered conversation per role (system, user, assistant, tool) and
    /// the template's own text, before any cut.
    pub role_tokens: [usize; 5],
    /// Turns (a user message and what follows it) in the conversation.
    pub turns: usize,
    /// Tokens that straddled a message boundary (labels follow each token's first byte).
    pub boundary_merges: usize,
}

impl RecordReport {
    fn new(record: usize, line: Option<usize>) -> Self {
        Self {
            record,
            line,
            status: Status::Kept,
            reason: "fits".into(),
            message: None,
            dropped_messages: Vec::new(),
            cut_messages: Vec::new(),
            tokens_removed: [0; 5],
            system_kept: None,
            first_user_kept: None,
            tokens_before: 0,
            tokens_after: 0,
            trained_before: 0,
            trained_after: 0,
            windows: 0,
            role_tokens: [0; 5],
            turns: 0,
            boundary_merges: 0,
        }
    }

    pub fn skipped(record: usize, line: Option<usize>, error: &Error) -> Self {
        let mut report = Self::new(record, line);
        let message = error.to_string();
        report.status = Status::Skipped;
        let error = match error {
            Error::InRecord { source, .. } => source.as_ref(),
            other => other,
        };
        report.reason = match error {
            Error::InvalidRecord { .. } => "invalid_record",
            Error::InvalidFile { .. } => "invalid_json",
            Error::Template { .. } => "template_error",
            Error::Tokenizer { .. } => "tokenizer_error",
            _ => "error",
        }
        .into();
        report.message = Some(message);
        report
    }
}

fn role_slot(role: Role) -> usize {
    match role {
        Role::System => 0,
        Role::User => 1,
        Role::Assistant => 2,
        Role::Tool => 3,
    }
}

/// A rendered, tokenized selection of messages.
struct Encoded {
    rendered: Rendered,
    tokens: TokenizedConversation,
}

impl Encoded {
    fn new(template: &Template, tokenizer: &Tokenizer, conversation: &Conversation, keep: &[usize]) -> Result<Self> {
        let rendered = template.render(conversation, keep)?;
        let tokens = tokenize(tokenizer, &rendered)?;
        Ok(Self { rendered, tokens })
    }

    fn len(&self) -> usize {
        self.tokens.ids.len()
    }

    /// Tokens of every message (indexed by message; 0 for messages not rendered), in one
    /// pass over the spans.
    fn tokens_per_message(&self, messages: usize) -> Vec<usize> {
        let mut counts = vec![0; messages];
        for (span, range) in self.rendered.spans.iter().zip(&self.tokens.ranges) {
            if let Some(m) = span.message {
                counts[m] += range.len();
            }
        }
        counts
    }

    /// Tokens not tied to a droppable message: the template's own text and the system prompt.
    fn pinned_tokens(&self, conversation: &Conversation) -> usize {
        self.rendered
            .spans
            .iter()
            .zip(&self.tokens.ranges)
            .filter(|(span, _)| match span.message {
                None => true,
                Some(m) => m == 0 && conversation.messages[m].role == Role::System,
            })
            .map(|(_, range)| range.len())
            .sum()
    }

    /// Per-token trained flags under `train`.
    fn trained(&self, conversation: &Conversation, train: &Train) -> Vec<bool> {
        let mut flags = vec![false; self.len()];
        match train {
            Train::All => flags.fill(true),
            Train::Roles(roles) => {
                for span in &self.rendered.spans {
                    let Some(message) = span.message else { continue };
                    if roles.contains(&conversation.messages[message].role) {
                        for flag in &mut flags[self.tokens.tokens_in(span.body_start, span.body_end)] {
                            *flag = true;
                        }
                    }
                }
            }
        }
        flags
    }
}

/// Encode one conversation into zero or more samples.
pub fn encode_conversation(
    conversation: &Conversation,
    record: usize,
    line: Option<usize>,
    template: &Template,
    tokenizer: &Tokenizer,
    options: &EncodeOptions,
) -> Result<(Vec<Sample>, RecordReport)> {
    let mut report = RecordReport::new(record, line);
    let messages = &conversation.messages;
    let in_record = |e: Error| e.for_record(record, line);
    let has_system = messages.first().map(|m| m.role) == Some(Role::System);
    let first_user = messages.iter().position(|m| m.role == Role::User);

    // The kept conversation ends with an assistant turn: later messages train nothing.
    let last_assistant = messages
        .iter()
        .rposition(|m| m.role == Role::Assistant)
        .expect("chat::validate guarantees an assistant turn");
    let all: Vec<usize> = (0..=last_assistant).collect();
    let full = Encoded::new(template, tokenizer, conversation, &all).map_err(in_record)?;
    // Trailing messages were never rendered above; a render of everything counts them.
    let everything = if last_assistant + 1 < messages.len() {
        let whole: Vec<usize> = (0..messages.len()).collect();
        Some(Encoded::new(template, tokenizer, conversation, &whole).map_err(in_record)?)
    } else {
        None
    };
    let reference = everything.as_ref().unwrap_or(&full);
    report.tokens_before = reference.len();
    for (span, range) in reference.rendered.spans.iter().zip(&reference.tokens.ranges) {
        let slot = span.message.map(|m| role_slot(messages[m].role)).unwrap_or(4);
        report.role_tokens[slot] += range.len();
    }
    report.turns = turns(conversation, &all, |_| 0).len();
    let full_trained = full.trained(conversation, &options.train);
    report.trained_before = full_trained.iter().filter(|&&t| t).count();
    report.boundary_merges = full.tokens.boundary_merges;

    let budget = options.max_length;
    // Each sample with the messages it holds, and the tokens cut from kept messages.
    let mut samples: Vec<(Sample, Vec<usize>)> = Vec::new();
    let mut cut_tokens: Vec<(usize, usize)> = Vec::new();
    let mut too_long = false;
    if full.len() <= budget {
        samples.push((sample_from(&full, &full_trained, record, 0), all.clone()));
    } else if full.pinned_tokens(conversation) >= budget {
        too_long = true;
    } else {
        let pinned = full.pinned_tokens(conversation);
        let per_message = full.tokens_per_message(messages.len());
        let turns = turns(conversation, &all, |m| per_message[m]);
        let system: Vec<usize> = if has_system { vec![0] } else { Vec::new() };
        let groups: Vec<Vec<usize>> = if options.split {
            windows(&turns, budget - pinned)
        } else {
            vec![keep_latest(&turns, budget - pinned, options.keep_first_turn)]
        };
        let mut window = 0;
        let mut queue: std::collections::VecDeque<Vec<usize>> = groups.into();
        while let Some(mut group) = queue.pop_front() {
            loop {
                let keep = selection(&system, &turns, &group);
                let encoded = Encoded::new(template, tokenizer, conversation, &keep).map_err(in_record)?;
                if encoded.len() <= budget {
                    let trained = encoded.trained(conversation, &options.train);
                    samples.push((sample_from(&encoded, &trained, record, window), keep));
                    break;
                }
                if group.len() > 1 {
                    // The template renders a subset longer than its parts (context-dependent
                    // text): give up one more turn; in split mode it opens the next window.
                    let moved = group.remove(if options.split { group.len() - 1 } else { 0 });
                    if options.split {
                        queue.push_front(vec![moved]);
                    }
                    continue;
                }
                match cut_to_fit(&encoded, conversation, options, record, window) {
                    Some((sample, cuts)) => {
                        cut_tokens.extend(cuts);
                        samples.push((sample, keep));
                    }
                    // Only the system prompt and the template's own text are left, and they
                    // do not fit: nothing of this window can be kept whole.
                    None => too_long = true,
                }
                break;
            }
            window += 1;
        }
    }

    // Supervision guarantee: a sample with too few trained tokens is dropped, never emitted.
    let produced = samples.len();
    let minimum = options.min_trainable_tokens.max(1);
    samples.retain(|(s, _)| s.labels.iter().filter(|&&l| l != IGNORE_INDEX).count() >= minimum);
    let untrainable = produced - samples.len();

    let mut kept_messages: Vec<usize> = samples.iter().flat_map(|(_, m)| m.iter().copied()).collect();
    kept_messages.sort_unstable();
    kept_messages.dedup();
    report.dropped_messages = (0..messages.len()).filter(|m| kept_messages.binary_search(m).is_err()).collect();
    cut_tokens.retain(|(m, _)| kept_messages.binary_search(m).is_ok());
    report.cut_messages = cut_tokens.iter().map(|(m, _)| *m).collect();
    report.cut_messages.sort_unstable();
    report.cut_messages.dedup();
    let reference_per_message = reference.tokens_per_message(messages.len());
    for &m in &report.dropped_messages {
        report.tokens_removed[role_slot(messages[m].role)] += reference_per_message[m] as i64;
    }
    for &(m, tokens) in &cut_tokens {
        report.tokens_removed[role_slot(messages[m].role)] += tokens as i64;
    }
    report.windows = samples.len();
    report.tokens_after = samples.iter().map(|(s, _)| s.tokens.len()).sum();
    report.trained_after = samples.iter().map(|(s, _)| s.labels.iter().filter(|&&l| l != IGNORE_INDEX).count()).sum();
    report.system_kept = has_system.then(|| kept_messages.first() == Some(&0));
    report.first_user_kept = first_user.map(|u| kept_messages.binary_search(&u).is_ok());
    let trailing_only = report.dropped_messages.iter().all(|&m| m > last_assistant);
    let (status, reason) = if samples.is_empty() {
        let reason = if too_long { "system_prompt_too_long" } else { "no_trainable_tokens" };
        (Status::Dropped, reason)
    } else if options.split && samples.len() > 1 {
        (Status::Split, if untrainable > 0 { "untrainable_windows_dropped" } else { "split_into_windows" })
    } else if untrainable > 0 {
        (Status::Truncated, "untrainable_windows_dropped")
    } else if !report.cut_messages.is_empty() {
        (Status::Truncated, "turn_cut")
    } else if !trailing_only {
        (Status::Truncated, "turns_dropped")
    } else if !report.dropped_messages.is_empty() {
        (Status::Kept, "trailing_messages_dropped")
    } else {
        (Status::Kept, "fits")
    };
    report.status = status;
    report.reason = reason.to_string();
    balance_template(&mut report);
    Ok((samples.into_iter().map(|(s, _)| s).collect(), report))
}

/// The template bucket: whatever the role buckets do not explain.
fn balance_template(report: &mut RecordReport) {
    let by_roles: i64 = report.tokens_removed[..4].iter().sum();
    report.tokens_removed[4] = report.tokens_before as i64 - report.tokens_after as i64 - by_roles;
}

/// Messages of the given turns, after the system prompt.
fn selection(system: &[usize], turns: &[Turn], group: &[usize]) -> Vec<usize> {
    let mut keep = system.to_vec();
    for &turn in group {
        keep.extend(&turns[turn].messages);
    }
    keep
}

fn sample_from(encoded: &Encoded, trained: &[bool], record: usize, window: usize) -> Sample {
    let labels = encoded
        .tokens
        .ids
        .iter()
        .zip(trained)
        .map(|(&id, &t)| if t { id as i64 } else { IGNORE_INDEX })
        .collect();
    Sample { record, window, tokens: encoded.tokens.ids.clone(), labels }
}

/// Cut tokens out of messages until the sample fits: a user or tool content that can absorb
/// the whole excess alone, else the longest messages first (an assistant turn's reasoning and
/// content, never its end-of-turn token; its labels are cleared unless allowed). Returns the sample and the tokens cut per message, or
/// `None` when even cutting every candidate would not make it fit.
fn cut_to_fit(
    encoded: &Encoded,
    conversation: &Conversation,
    options: &EncodeOptions,
    record: usize,
    window: usize,
) -> Option<(Sample, Vec<(usize, usize)>)> {
    let mut excess = encoded.len() - options.max_length;
    let mut trained = encoded.trained(conversation, &options.train);
    let mut remove = vec![false; encoded.len()];
    let mut candidates: Vec<(usize, std::ops::Range<usize>)> = encoded
        .rendered
        .spans
        .iter()
        .filter_map(|span| {
            let m = span.message?;
            let role = conversation.messages[m].role;
            if m == 0 && role == Role::System {
                return None;
            }
            let from = if role == Role::Assistant { span.body_start } else { span.content_start };
            Some((m, encoded.tokens.tokens_in(from, span.content_end)))
        })
        .collect();
    let cuttable: usize = candidates.iter().map(|(_, r)| r.len()).sum();
    if cuttable < excess {
        return None;
    }
    // A user or tool message long enough to absorb the whole excess is cut alone, so the
    // answers stay whole and trained; otherwise the longest messages are cut first.
    candidates.sort_by_key(|(_, range)| std::cmp::Reverse(range.len()));
    let absorbs = candidates
        .iter()
        .position(|(m, range)| conversation.messages[*m].role != Role::Assistant && range.len() >= excess);
    if let Some(position) = absorbs {
        let chosen = candidates.remove(position);
        candidates.insert(0, chosen);
    }
    let mut cuts = Vec::new();
    for (message, range) in candidates {
        if excess == 0 {
            break;
        }
        let take = excess.min(range.len());
        if take == 0 {
            continue;
        }
        let kept = range.len() - take;
        let removed = match options.cut_keep {
            CutKeep::Head => range.start + kept..range.end,
            CutKeep::Tail => range.start..range.start + take,
            CutKeep::Middle => {
                let head = kept.div_ceil(2);
                range.start + head..range.start + head + take
            }
        };
        for flag in &mut remove[removed] {
            *flag = true;
        }
        if conversation.messages[message].role == Role::Assistant && !options.train_on_cut_turns {
            let span = encoded.rendered.spans.iter().find(|s| s.message == Some(message)).expect("candidate span");
            for flag in &mut trained[encoded.tokens.tokens_in(span.body_start, span.body_end)] {
                *flag = false;
            }
        }
        excess -= take;
        cuts.push((message, take));
    }
    let mut tokens = Vec::with_capacity(options.max_length);
    let mut labels = Vec::with_capacity(options.max_length);
    for (index, &id) in encoded.tokens.ids.iter().enumerate() {
        if !remove[index] {
            tokens.push(id);
            labels.push(if trained[index] { id as i64 } else { IGNORE_INDEX });
        }
    }
    Some((Sample { record, window, tokens, labels }, cuts))
}

/// How to treat a record that cannot be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    Raise,
    Skip,
}

/// A record to encode: parsed, or the error parsing it raised.
pub struct Parsed {
    pub record: usize,
    pub line: Option<usize>,
    pub conversation: Result<Conversation>,
}

/// Encode many conversations in parallel. With `OnError::Raise` the error of the lowest
/// record index is returned, whatever the thread count.
pub fn encode_all(
    records: &[Parsed],
    template: &Template,
    tokenizer: &Tokenizer,
    options: &EncodeOptions,
    on_error: OnError,
) -> Result<(Vec<Sample>, Vec<RecordReport>)> {
    let outcomes: Vec<Result<(Vec<Sample>, RecordReport)>> = records
        .par_iter()
        .map(|parsed| match &parsed.conversation {
            Ok(conversation) => encode_conversation(conversation, parsed.record, parsed.line, template, tokenizer, options),
            Err(error) => Err(error.clone()),
        })
        .collect();
    let mut samples = Vec::new();
    let mut reports = Vec::with_capacity(records.len());
    for (parsed, outcome) in records.iter().zip(outcomes) {
        match outcome {
            Ok((mut produced, report)) => {
                samples.append(&mut produced);
                reports.push(report);
            }
            Err(error) if on_error == OnError::Skip => reports.push(RecordReport::skipped(parsed.record, parsed.line, &error)),
            Err(error) => return Err(error),
        }
    }
    Ok((samples, reports))
}
