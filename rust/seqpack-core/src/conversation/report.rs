//! What happened to each record: kept, truncated, split, dropped or skipped, why, and how
//! many tokens of which role went. The one definition of the per-record report; the bindings
//! serialise it as it is (serde), and Python reads it into a dataclass with the same fields.

use crate::conversation::records::Role;
use crate::error::Error;
use serde::Serialize;

/// What happened to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Kept,
    Truncated,
    Split,
    Dropped,
    Skipped,
}

impl Status {
    pub const ALL: [Status; 5] = [Self::Kept, Self::Truncated, Self::Split, Self::Dropped, Self::Skipped];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kept => "kept",
            Self::Truncated => "truncated",
            Self::Split => "split",
            Self::Dropped => "dropped",
            Self::Skipped => "skipped",
        }
    }
}

/// Why a record has its status. Stable codes, written to reports as `as_str()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Kept whole.
    Fits,
    /// Kept; only messages after the last assistant turn (which train nothing) were left out.
    TrailingMessagesDropped,
    /// Whole old turns were dropped to fit `max_length`.
    TurnsDropped,
    /// A turn still too long alone was cut at token level.
    TurnCut,
    /// Split into windows (`overlong="split"`).
    SplitIntoWindows,
    /// Some samples had fewer than `min_trainable_tokens` labels and were dropped.
    UntrainableWindowsDropped,
    /// Some windows (`overlong="split"`) could not be kept: their own template text (headers,
    /// tool-call wrappers) with the system prompt exceeds `max_length`, and no cut shortens it.
    WindowsTooLongDropped,
    /// Longer than `max_length` with `overlong="drop"`.
    OverlongDropped,
    /// The system prompt and the template's own text alone exceed `max_length`.
    SystemPromptTooLong,
    /// No sample had `min_trainable_tokens` trained tokens.
    NoTrainableTokens,
    /// Skipped: the record is not a conversation seqpack can read.
    InvalidRecord,
    /// Skipped: the record's text is not valid JSON.
    InvalidJson,
    /// Skipped: the chat template raised or its output could not be located exactly.
    TemplateError,
    /// Skipped: the tokenizer failed on the rendered text.
    TokenizerError,
    /// Skipped: a message's content holds a special token's text
    /// (`special_tokens_in_content="error"`).
    SpecialTokenInContent,
}

impl Reason {
    pub const ALL: [Reason; 15] = [
        Self::Fits,
        Self::TrailingMessagesDropped,
        Self::TurnsDropped,
        Self::TurnCut,
        Self::SplitIntoWindows,
        Self::UntrainableWindowsDropped,
        Self::WindowsTooLongDropped,
        Self::OverlongDropped,
        Self::SystemPromptTooLong,
        Self::NoTrainableTokens,
        Self::InvalidRecord,
        Self::InvalidJson,
        Self::TemplateError,
        Self::TokenizerError,
        Self::SpecialTokenInContent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fits => "fits",
            Self::TrailingMessagesDropped => "trailing_messages_dropped",
            Self::TurnsDropped => "turns_dropped",
            Self::TurnCut => "turn_cut",
            Self::SplitIntoWindows => "split_into_windows",
            Self::UntrainableWindowsDropped => "untrainable_windows_dropped",
            Self::WindowsTooLongDropped => "windows_too_long_dropped",
            Self::OverlongDropped => "overlong_dropped",
            Self::SystemPromptTooLong => "system_prompt_too_long",
            Self::NoTrainableTokens => "no_trainable_tokens",
            Self::InvalidRecord => "invalid_record",
            Self::InvalidJson => "invalid_json",
            Self::TemplateError => "template_error",
            Self::TokenizerError => "tokenizer_error",
            Self::SpecialTokenInContent => "special_token_in_content",
        }
    }
}

/// One count per role, plus the template's own text (headers, separators, default prompts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RoleCounts<T> {
    pub system: T,
    pub user: T,
    pub assistant: T,
    pub tool: T,
    pub template: T,
}

impl<T: Copy + std::ops::AddAssign + Default> RoleCounts<T> {
    /// The count of a role; `None` is the template's own text.
    pub fn get_mut(&mut self, role: Option<Role>) -> &mut T {
        match role {
            Some(Role::System) => &mut self.system,
            Some(Role::User) => &mut self.user,
            Some(Role::Assistant) => &mut self.assistant,
            Some(Role::Tool) => &mut self.tool,
            None => &mut self.template,
        }
    }

    /// The five counts in a fixed order: system, user, assistant, tool, template.
    pub fn values(&self) -> [T; 5] {
        [self.system, self.user, self.assistant, self.tool, self.template]
    }

    /// Add another record's counts to these.
    pub fn add(&mut self, other: &Self) {
        self.system += other.system;
        self.user += other.user;
        self.assistant += other.assistant;
        self.tool += other.tool;
        self.template += other.template;
    }
}

/// Everything a user needs to know about one record's fate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordReport {
    /// Index of the record in the input.
    pub record: usize,
    /// Line in the input file, when read from one.
    pub line: Option<usize>,
    pub status: Status,
    pub reason: Reason,
    /// Error text for a skipped record.
    pub message: Option<String>,
    /// Messages not in any sample.
    pub dropped_messages: Vec<usize>,
    /// Messages shortened at token level.
    pub cut_messages: Vec<usize>,
    /// Tokens removed, per role, and by the template's own text (what re-rendering a shorter
    /// conversation adds or drops, e.g. Qwen3's empty `<think>` block or a system prompt
    /// repeated in every window; negative when it adds). They always sum to
    /// `tokens_before - tokens_after`.
    pub tokens_removed: RoleCounts<i64>,
    /// Whether the system prompt survived (`None`: there was none).
    pub system_kept: Option<bool>,
    pub first_user_kept: Option<bool>,
    pub tokens_before: usize,
    pub tokens_after: usize,
    /// Trained (labelled) tokens of the whole rendered conversation.
    pub trained_before: usize,
    pub trained_after: usize,
    /// Samples this record became (0 if dropped, more than 1 if split).
    pub windows: usize,
    /// Tokens of the whole rendered conversation per role and the template's own text.
    pub role_tokens: RoleCounts<usize>,
    /// Turns (a user message and what follows it) in the conversation.
    pub turns: usize,
    /// Tokens that straddled a message boundary (labels follow each token's first byte).
    pub boundary_merges: usize,
    /// Messages whose content holds a special token's text, which the tokenizer reads as
    /// that token (as transformers does): a turn marker typed into an assistant's answer is
    /// trained as one.
    pub special_token_messages: Vec<usize>,
}

impl RecordReport {
    pub fn new(record: usize, line: Option<usize>) -> Self {
        Self {
            record,
            line,
            status: Status::Kept,
            reason: Reason::Fits,
            message: None,
            dropped_messages: Vec::new(),
            cut_messages: Vec::new(),
            tokens_removed: RoleCounts::default(),
            system_kept: None,
            first_user_kept: None,
            tokens_before: 0,
            tokens_after: 0,
            trained_before: 0,
            trained_after: 0,
            windows: 0,
            role_tokens: RoleCounts::default(),
            turns: 0,
            boundary_merges: 0,
            special_token_messages: Vec::new(),
        }
    }

    /// The report of a record skipped for `error` (`on_error="skip"`).
    pub fn skipped(record: usize, line: Option<usize>, error: &Error) -> Self {
        let mut report = Self::new(record, line);
        report.status = Status::Skipped;
        report.message = Some(error.to_string());
        let cause = match error {
            Error::InRecord { source, .. } => source.as_ref(),
            other => other,
        };
        report.reason = match cause {
            Error::InvalidFile { .. } => Reason::InvalidJson,
            Error::Template { .. } => Reason::TemplateError,
            Error::Tokenizer { .. } => Reason::TokenizerError,
            Error::SpecialTokenInContent { message, .. } => {
                report.special_token_messages = vec![*message];
                Reason::SpecialTokenInContent
            }
            _ => Reason::InvalidRecord,
        };
        report
    }
}

/// Totals over many records: how many per status and per reason, and tokens removed per role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReportSummary {
    pub records: usize,
    /// Records per status, in [`Status::ALL`] order, statuses with none left out.
    pub statuses: Vec<(Status, usize)>,
    /// Records per reason, in [`Reason::ALL`] order, reasons with none left out.
    pub reasons: Vec<(Reason, usize)>,
    pub tokens_removed: RoleCounts<i64>,
    pub tokens_before: u64,
    pub tokens_after: u64,
    pub trained_before: u64,
    pub trained_after: u64,
}

impl ReportSummary {
    pub fn of(reports: &[RecordReport]) -> Self {
        let mut statuses = [0usize; Status::ALL.len()];
        let mut reasons = [0usize; Reason::ALL.len()];
        let mut summary = Self { records: reports.len(), ..Self::default() };
        for report in reports {
            statuses[Status::ALL.iter().position(|&s| s == report.status).unwrap_or(0)] += 1;
            reasons[Reason::ALL.iter().position(|&r| r == report.reason).unwrap_or(0)] += 1;
            summary.tokens_removed.add(&report.tokens_removed);
            summary.tokens_before += report.tokens_before as u64;
            summary.tokens_after += report.tokens_after as u64;
            summary.trained_before += report.trained_before as u64;
            summary.trained_after += report.trained_after as u64;
        }
        summary.statuses = Status::ALL.iter().copied().zip(statuses).filter(|&(_, n)| n > 0).collect();
        summary.reasons = Reason::ALL.iter().copied().zip(reasons).filter(|&(_, n)| n > 0).collect();
        summary
    }

    /// "16 dropped: `system_prompt_too_long` 9, `no_trainable_tokens` 7"-style text of the
    /// reasons, for error messages.
    pub fn reasons_text(&self) -> String {
        self.reasons.iter().map(|(r, n)| format!("{}: {n}", r.as_str())).collect::<Vec<_>>().join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_their_serde_names() {
        for status in Status::ALL {
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        for reason in Reason::ALL {
            assert_eq!(serde_json::to_value(reason).unwrap(), reason.as_str());
        }
    }

    #[test]
    fn summary_counts_and_sums() {
        let mut a = RecordReport::new(0, None);
        a.tokens_before = 10;
        a.tokens_after = 7;
        *a.tokens_removed.get_mut(Some(Role::User)) = 3;
        let mut b = RecordReport::new(1, Some(2));
        b.status = Status::Dropped;
        b.reason = Reason::SystemPromptTooLong;
        b.tokens_before = 5;
        *b.tokens_removed.get_mut(None) = 5;
        let summary = ReportSummary::of(&[a, b]);
        assert_eq!(summary.records, 2);
        assert_eq!(summary.statuses, vec![(Status::Kept, 1), (Status::Dropped, 1)]);
        assert_eq!(summary.tokens_removed.values(), [0, 3, 0, 0, 5]);
        assert_eq!(summary.tokens_before - summary.tokens_after, 8);
        assert_eq!(summary.reasons_text(), "fits: 1, system_prompt_too_long: 1");
    }
}
