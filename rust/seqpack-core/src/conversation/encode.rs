//! Conversations to training samples: render, tokenize, truncate turn-aware to the budget,
//! label, and report everything that was cut. One conversation at a time, in parallel; the
//! outcome of each depends on that conversation alone, so results do not depend on the
//! thread count.

use crate::conversation::records::{Conversation, Format, Mapping, Role};
use crate::conversation::report::{Reason, RecordReport, Status};
use crate::conversation::template::{Rendered, Template};
use crate::conversation::tokenize::{tokenize_escaping, TokenizedConversation, Tokenizer};
use crate::conversation::truncate::{keep_latest, turns, windows, Turn};
use crate::error::{Error, Result};
use crate::labels::IGNORE_INDEX;
use crate::options::{at_least, bounded, invalid, Keep, Overlong, MAX_MAX_LENGTH};
use rayon::prelude::*;
use serde::Deserialize;

/// What gets labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Train {
    /// The bodies of messages with these roles (default: assistant).
    Roles(Vec<Role>),
    /// Every token.
    All,
}

/// How to treat a record that cannot be read, rendered or tokenized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Stop with the error of the lowest record index.
    Raise,
    /// Count it in the report as skipped, with the reason, and go on.
    Skip,
}

impl std::str::FromStr for OnError {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "raise" => Ok(Self::Raise),
            "skip" => Ok(Self::Skip),
            other => Err(invalid("on_error", format!("unknown policy '{other}'; expected 'raise' or 'skip'"))),
        }
    }
}

/// Everything the conversation half needs besides the records, template and tokenizer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawEncodeOptions")]
pub struct EncodeOptions {
    pub max_length: usize,
    /// What to do with a conversation longer than `max_length`: `Truncate` (whole old turns
    /// first, then a token-level cut of a turn still too long alone), `Split` into windows of
    /// whole turns, `Drop` it (reported), or raise an `Error`.
    pub overlong: Overlong,
    /// The side a token-level cut of one turn keeps (for `Truncate` and `Split`).
    pub cut_keep: Keep,
    /// Keep the first turn (the one that sets the task) when truncating, if it fits.
    pub keep_first_turn: bool,
    /// Keep labels on an assistant turn that was cut at token level.
    pub train_on_cut_turns: bool,
    pub train: Train,
    pub min_trainable_tokens: usize,
    pub format: Format,
    pub mapping: Mapping,
    pub on_error: OnError,
    /// A message whose content holds a special token's text: `Keep` it (the tokenizer reads
    /// it as that token, as transformers does; the record's report lists the message),
    /// refuse the record (`Error`), or `Escape` it (the content is tokenized by itself as
    /// ordinary text, as `split_special_tokens` does; the report still lists the message).
    pub special_tokens_in_content: SpecialTokens,
}

/// What to do with special-token text inside a message's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecialTokens {
    Keep,
    Error,
    /// Read the content's special-token text as ordinary text.
    Escape,
}

impl EncodeOptions {
    pub fn new(max_length: usize) -> Self {
        Self {
            max_length,
            overlong: Overlong::Truncate(Keep::Head),
            cut_keep: Keep::Head,
            keep_first_turn: false,
            train_on_cut_turns: false,
            train: Train::Roles(vec![Role::Assistant]),
            min_trainable_tokens: 1,
            format: Format::Auto,
            mapping: Mapping::default(),
            on_error: OnError::Raise,
            special_tokens_in_content: SpecialTokens::Keep,
        }
    }

    fn split(&self) -> bool {
        self.overlong == Overlong::Split
    }
}

/// Conversation options as a caller writes them: integers, names, role names.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEncodeOptions {
    max_length: i64,
    overlong: String,
    truncate_keep: String,
    keep_first_turn: bool,
    train_on_cut_turns: bool,
    /// `["all"]` or role names.
    train_on: Vec<String>,
    min_trainable_tokens: i64,
    format: String,
    mapping: Option<Mapping>,
    on_error: String,
    #[serde(default)]
    special_tokens_in_content: Option<String>,
}

impl TryFrom<RawEncodeOptions> for EncodeOptions {
    type Error = Error;

    fn try_from(raw: RawEncodeOptions) -> Result<Self> {
        let train = if raw.train_on.iter().any(|r| r == "all") {
            if raw.train_on.len() > 1 {
                return Err(invalid("train_on", "'all' cannot be combined with role names"));
            }
            Train::All
        } else if raw.train_on.is_empty() {
            return Err(invalid("train_on", "names no role; expected 'all' or role names"));
        } else {
            let roles = raw.train_on.iter().map(|name| {
                Role::from_name(name)
                    .ok_or_else(|| invalid("train_on", format!("role '{name}' is not one of {}", Role::NAMES)))
            });
            Train::Roles(roles.collect::<Result<_>>()?)
        };
        Ok(Self {
            max_length: bounded("max_length", raw.max_length, 1, MAX_MAX_LENGTH)?,
            overlong: Overlong::parse(&raw.overlong, &raw.truncate_keep)?,
            cut_keep: raw.truncate_keep.parse()?,
            keep_first_turn: raw.keep_first_turn,
            train_on_cut_turns: raw.train_on_cut_turns,
            train,
            min_trainable_tokens: at_least("min_trainable_tokens", raw.min_trainable_tokens, 1)?,
            format: raw.format.parse()?,
            mapping: raw.mapping.unwrap_or_default(),
            on_error: raw.on_error.parse()?,
            special_tokens_in_content: match raw.special_tokens_in_content.as_deref() {
                None | Some("keep") => SpecialTokens::Keep,
                Some("error") => SpecialTokens::Error,
                Some("escape") => SpecialTokens::Escape,
                Some(other) => {
                    return Err(invalid(
                        "special_tokens_in_content",
                        format!("unknown policy '{other}'; expected 'keep', 'escape' or 'error'"),
                    ))
                }
            },
        })
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

/// A rendered, tokenized selection of messages.
struct Encoded {
    rendered: Rendered,
    tokens: TokenizedConversation,
}

impl Encoded {
    fn new(
        template: &Template,
        tokenizer: &Tokenizer,
        conversation: &Conversation,
        keep: &[usize],
        escaped: &[usize],
    ) -> Result<Self> {
        let rendered = template.render(conversation, keep)?;
        let tokens = tokenize_escaping(tokenizer, &rendered, escaped)?;
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

/// Encode one conversation into zero or more samples, in three steps: measure the whole
/// conversation, fit it to `max_length` (select whole turns, then cut a turn still too long
/// alone), and label and report what was kept.
pub fn encode_conversation(
    conversation: &Conversation,
    record: usize,
    line: Option<usize>,
    template: &Template,
    tokenizer: &Tokenizer,
    options: &EncodeOptions,
) -> Result<(Vec<Sample>, RecordReport)> {
    let flagged = special_token_messages(conversation, tokenizer);
    if let (Some(&(message, ref token)), SpecialTokens::Error) = (flagged.first(), options.special_tokens_in_content) {
        return Err(Error::SpecialTokenInContent {
            record,
            line,
            message,
            role: conversation.messages[message].role.name(),
            token: token.clone(),
        });
    }
    let escaped = match options.special_tokens_in_content {
        SpecialTokens::Escape => flagged.iter().map(|&(message, _)| message).collect(),
        SpecialTokens::Keep | SpecialTokens::Error => Vec::new(),
    };
    let job = Job { conversation, record, line, template, tokenizer, options, escaped: &escaped };
    let whole = job.measure()?;
    let fitted = job.fit(&whole)?;
    let (samples, mut report) = job.finish(&whole, fitted);
    report.special_token_messages = flagged.into_iter().map(|(message, _)| message).collect();
    Ok((samples, report))
}

/// The messages whose content holds a special token's text, each with the first such token.
fn special_token_messages(conversation: &Conversation, tokenizer: &Tokenizer) -> Vec<(usize, String)> {
    conversation
        .messages
        .iter()
        .enumerate()
        .filter_map(|(index, message)| tokenizer.special_token_in(&message.content).map(|token| (index, token)))
        .collect()
}

/// One conversation and everything it is encoded with.
struct Job<'a> {
    conversation: &'a Conversation,
    record: usize,
    line: Option<usize>,
    template: &'a Template,
    tokenizer: &'a Tokenizer,
    options: &'a EncodeOptions,
    /// Messages whose content is read as ordinary text (`special_tokens_in_content="escape"`).
    escaped: &'a [usize],
}

/// The conversation rendered whole, before anything is cut.
struct Whole {
    /// Up to and including the last assistant turn (later messages train nothing).
    full: Encoded,
    /// The messages of `full`.
    all: Vec<usize>,
    /// Every message, trailing ones included, when there are trailing ones.
    everything: Option<Encoded>,
    last_assistant: usize,
}

impl Whole {
    /// What "before" means in the report: every message of the record.
    fn reference(&self) -> &Encoded {
        self.everything.as_ref().unwrap_or(&self.full)
    }
}

/// The samples that fit, each with the messages it holds, and the tokens cut from kept
/// messages; `nothing_fits` says why when a window (or the record) could not be kept, and
/// `lost_windows` counts the windows that could not.
#[derive(Default)]
struct Fitted {
    samples: Vec<(Sample, Vec<usize>)>,
    cut_tokens: Vec<(usize, usize)>,
    nothing_fits: Option<Reason>,
    lost_windows: usize,
}

impl Job<'_> {
    fn encode(&self, keep: &[usize]) -> Result<Encoded> {
        Encoded::new(self.template, self.tokenizer, self.conversation, keep, self.escaped)
            .map_err(|e| e.for_record(self.record, self.line))
    }

    fn measure(&self) -> Result<Whole> {
        let messages = &self.conversation.messages;
        let Some(last_assistant) = messages.iter().rposition(|m| m.role == Role::Assistant) else {
            // records::validate refuses such a record; say so rather than panic if one gets here.
            return Err(Error::InvalidRecord {
                record: self.record,
                line: self.line,
                field: String::new(),
                message: "no assistant turn: nothing to train on".into(),
            });
        };
        let all: Vec<usize> = (0..=last_assistant).collect();
        let full = self.encode(&all)?;
        // Trailing messages were never rendered above; a render of everything counts them.
        let everything = if last_assistant + 1 < messages.len() {
            Some(self.encode(&(0..messages.len()).collect::<Vec<_>>())?)
        } else {
            None
        };
        Ok(Whole { full, all, everything, last_assistant })
    }

    /// Apply the overlong policy: the whole conversation if it fits; otherwise an error, a
    /// drop, windows of whole turns (split) or the latest turns that fit (truncate).
    fn fit(&self, whole: &Whole) -> Result<Fitted> {
        let budget = self.options.max_length;
        let full = &whole.full;
        if full.len() <= budget {
            let trained = full.trained(self.conversation, &self.options.train);
            let sample = sample_from(full, &trained, self.record, 0);
            return Ok(Fitted { samples: vec![(sample, whole.all.clone())], ..Fitted::default() });
        }
        match self.options.overlong {
            Overlong::Error => {
                return Err(Error::OverlongRecord {
                    record: self.record,
                    line: self.line,
                    length: full.len(),
                    max_length: budget,
                })
            }
            Overlong::Drop => return Ok(Fitted { nothing_fits: Some(Reason::OverlongDropped), ..Fitted::default() }),
            Overlong::Truncate(_) | Overlong::Split => {}
        }
        let pinned = full.pinned_tokens(self.conversation);
        if pinned >= budget {
            return Ok(Fitted { nothing_fits: Some(Reason::SystemPromptTooLong), ..Fitted::default() });
        }
        let per_message = full.tokens_per_message(self.conversation.messages.len());
        let turns = turns(self.conversation, &whole.all, |m| per_message[m]);
        let groups: Vec<Vec<usize>> = if self.options.split() {
            windows(&turns, budget - pinned)
        } else {
            vec![keep_latest(&turns, budget - pinned, self.options.keep_first_turn)]
        };
        self.fit_groups(&turns, groups)
    }

    /// Encode each group of turns (after the system prompt); a group the template renders
    /// longer than its parts gives up a turn (in split mode it opens the next window); a single
    /// turn still too long is cut at token level.
    fn fit_groups(&self, turns: &[Turn], groups: Vec<Vec<usize>>) -> Result<Fitted> {
        let has_system = self.conversation.messages.first().map(|m| m.role) == Some(Role::System);
        let system: Vec<usize> = if has_system { vec![0] } else { Vec::new() };
        let mut fitted = Fitted::default();
        let mut window = 0;
        let mut queue: std::collections::VecDeque<Vec<usize>> = groups.into();
        while let Some(mut group) = queue.pop_front() {
            loop {
                let keep = selection(&system, turns, &group);
                let encoded = self.encode(&keep)?;
                if encoded.len() <= self.options.max_length {
                    let trained = encoded.trained(self.conversation, &self.options.train);
                    fitted.samples.push((sample_from(&encoded, &trained, self.record, window), keep));
                    break;
                }
                if group.len() > 1 {
                    let moved = group.remove(if self.options.split() { group.len() - 1 } else { 0 });
                    if self.options.split() {
                        queue.push_front(vec![moved]);
                    }
                    continue;
                }
                if let Some((sample, cuts)) = cut_to_fit(&encoded, self.conversation, self.options, self.record, window)
                {
                    fitted.cut_tokens.extend(cuts);
                    fitted.samples.push((sample, keep));
                } else {
                    // Only the system prompt and the template's own text are left, and they
                    // do not fit: nothing of this window can be kept whole.
                    fitted.nothing_fits = Some(Reason::SystemPromptTooLong);
                    fitted.lost_windows += 1;
                }
                break;
            }
            window += 1;
        }
        Ok(fitted)
    }

    /// Drop samples with too few trained tokens (never emitted all -100), then fill the
    /// report: what was kept, dropped and cut, per role, and why.
    fn finish(&self, whole: &Whole, fitted: Fitted) -> (Vec<Sample>, RecordReport) {
        let messages = &self.conversation.messages;
        let Fitted { mut samples, mut cut_tokens, nothing_fits, lost_windows } = fitted;
        let produced = samples.len();
        let minimum = self.options.min_trainable_tokens.max(1);
        samples.retain(|(s, _)| trained_count(s) >= minimum);
        let untrainable = produced - samples.len();

        let mut report = RecordReport::new(self.record, self.line);
        let reference = whole.reference();
        report.tokens_before = reference.len();
        for (span, range) in reference.rendered.spans.iter().zip(&reference.tokens.ranges) {
            *report.role_tokens.get_mut(span.message.map(|m| messages[m].role)) += range.len();
        }
        report.turns = turns(self.conversation, &whole.all, |_| 0).len();
        report.trained_before =
            whole.full.trained(self.conversation, &self.options.train).iter().filter(|&&t| t).count();
        report.boundary_merges = whole.full.tokens.boundary_merges;

        let mut kept_messages: Vec<usize> = samples.iter().flat_map(|(_, m)| m.iter().copied()).collect();
        kept_messages.sort_unstable();
        kept_messages.dedup();
        let kept = |m: &usize| kept_messages.binary_search(m).is_ok();
        report.dropped_messages = (0..messages.len()).filter(|m| !kept(m)).collect();
        cut_tokens.retain(|(m, _)| kept(m));
        report.cut_messages = cut_tokens.iter().map(|(m, _)| *m).collect();
        report.cut_messages.sort_unstable();
        report.cut_messages.dedup();
        let reference_per_message = reference.tokens_per_message(messages.len());
        for &m in &report.dropped_messages {
            *report.tokens_removed.get_mut(Some(messages[m].role)) += reference_per_message[m] as i64;
        }
        for &(m, tokens) in &cut_tokens {
            *report.tokens_removed.get_mut(Some(messages[m].role)) += tokens as i64;
        }
        report.windows = samples.len();
        report.tokens_after = samples.iter().map(|(s, _)| s.tokens.len()).sum();
        report.trained_after = samples.iter().map(|(s, _)| trained_count(s)).sum();
        let has_system = messages.first().map(|m| m.role) == Some(Role::System);
        report.system_kept = has_system.then(|| kept_messages.first() == Some(&0));
        report.first_user_kept = messages.iter().position(|m| m.role == Role::User).map(|u| kept(&u));
        let trailing_only = report.dropped_messages.iter().all(|&m| m > whole.last_assistant);
        (report.status, report.reason) = if samples.is_empty() {
            (Status::Dropped, nothing_fits.unwrap_or(Reason::NoTrainableTokens))
        } else if self.options.split() && samples.len() > 1 {
            let reason = if lost_windows > 0 {
                Reason::WindowsTooLongDropped
            } else if untrainable > 0 {
                Reason::UntrainableWindowsDropped
            } else {
                Reason::SplitIntoWindows
            };
            (Status::Split, reason)
        } else if lost_windows > 0 {
            (Status::Truncated, Reason::WindowsTooLongDropped)
        } else if untrainable > 0 {
            (Status::Truncated, Reason::UntrainableWindowsDropped)
        } else if !report.cut_messages.is_empty() {
            (Status::Truncated, Reason::TurnCut)
        } else if !trailing_only {
            (Status::Truncated, Reason::TurnsDropped)
        } else if !report.dropped_messages.is_empty() {
            (Status::Kept, Reason::TrailingMessagesDropped)
        } else {
            (Status::Kept, Reason::Fits)
        };
        balance_template(&mut report);
        (samples.into_iter().map(|(s, _)| s).collect(), report)
    }
}

/// Labelled tokens of a sample.
fn trained_count(sample: &Sample) -> usize {
    sample.labels.iter().filter(|&&l| l != IGNORE_INDEX).count()
}

/// The template bucket: whatever the role buckets do not explain.
fn balance_template(report: &mut RecordReport) {
    let removed = &mut report.tokens_removed;
    let by_roles = removed.system + removed.user + removed.assistant + removed.tool;
    removed.template = report.tokens_before as i64 - report.tokens_after as i64 - by_roles;
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
    let labels =
        encoded.tokens.ids.iter().zip(trained).map(|(&id, &t)| if t { i64::from(id) } else { IGNORE_INDEX }).collect();
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
            Keep::Head => range.start + kept..range.end,
            Keep::Tail => range.start..range.start + take,
            Keep::Ends => {
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
            labels.push(if trained[index] { i64::from(id) } else { IGNORE_INDEX });
        }
    }
    Some((Sample { record, window, tokens, labels }, cuts))
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
) -> Result<(Vec<Sample>, Vec<RecordReport>)> {
    let outcomes: Vec<Result<(Vec<Sample>, RecordReport)>> = crate::threads::install(|| {
        records
            .par_iter()
            .map(|parsed| match &parsed.conversation {
                Ok(conversation) => {
                    encode_conversation(conversation, parsed.record, parsed.line, template, tokenizer, options)
                }
                Err(error) => Err(error.clone()),
            })
            .collect()
    });
    let mut samples = Vec::new();
    let mut reports = Vec::with_capacity(records.len());
    for (parsed, outcome) in records.iter().zip(outcomes) {
        match outcome {
            Ok((mut produced, report)) => {
                samples.append(&mut produced);
                reports.push(report);
            }
            Err(error) if options.on_error == OnError::Skip && error.is_record_input() => {
                reports.push(RecordReport::skipped(parsed.record, parsed.line, &error));
            }
            Err(error) => return Err(error),
        }
    }
    Ok((samples, reports))
}
