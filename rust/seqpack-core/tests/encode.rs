//! Conversations → labelled samples and reports (`encode_conversation`, `encode_records`), with
//! the built-in Qwen3 (`ChatML`) template and the shipped tokenizer.
//!
//! Every expectation is derived on a second path: the selection a rule should keep is rendered
//! and tokenized here as one text, and labels follow from its message spans (a token is trained
//! when its first byte lies in the body of a trained message), never from the encoder's output.

mod common;

use common::{assistant, calling, conversation, system, thinking, tokenizer, tool, user, words};
use proptest::prelude::*;
use seqpack_core::conversation::encode::{encode_conversation, EncodeOptions, OnError, Sample, Train};
use seqpack_core::conversation::pipeline::encode_records;
use seqpack_core::conversation::records::{Conversation, Message, Origin, RawRecord, Role};
use seqpack_core::conversation::report::{Reason, RecordReport, Status};
use seqpack_core::conversation::template::{MessageSpan, Rendered, Template};
use seqpack_core::options::{Keep, Overlong};
use seqpack_core::{Error, IGNORE_INDEX};
use serde_json::json;
use std::ops::Range;

// ---------------------------------------------------------------------------------------------
// The second path.

/// A selection of messages rendered with `template` and tokenized as one text.
struct Reference {
    rendered: Rendered,
    ids: Vec<u32>,
    offsets: Vec<(usize, usize)>,
}

impl Reference {
    fn with(template: &Template, conversation: &Conversation, keep: &[usize]) -> Self {
        let rendered = template.render(conversation, keep).expect("renders");
        let (ids, offsets) = tokenizer().encode(&rendered.text).expect("tokenizes");
        Self { rendered, ids, offsets }
    }

    fn new(conversation: &Conversation, keep: &[usize]) -> Self {
        Self::with(&Template::Qwen3, conversation, keep)
    }

    /// The whole conversation, trailing messages included.
    fn all(conversation: &Conversation) -> Self {
        Self::new(conversation, &(0..conversation.messages.len()).collect::<Vec<_>>())
    }

    fn len(&self) -> usize {
        self.ids.len()
    }

    /// Tokens whose first byte lies in `start..end`.
    fn tokens_in(&self, start: usize, end: usize) -> Range<usize> {
        let first = self.offsets.iter().position(|&(s, _)| s >= start).unwrap_or(self.offsets.len());
        let last = self.offsets.iter().position(|&(s, _)| s >= end).unwrap_or(self.offsets.len());
        first..last.max(first)
    }

    fn span(&self, message: usize) -> MessageSpan {
        *self.rendered.spans.iter().find(|s| s.message == Some(message)).expect("the message is rendered")
    }

    /// Tokens of a message's whole segment (header, body, separator).
    fn message_tokens(&self, message: usize) -> usize {
        let span = self.span(message);
        self.tokens_in(span.start, span.end).len()
    }

    /// Tokens of a message's body (for an assistant: what it generates, end-of-turn included).
    fn body(&self, message: usize) -> Range<usize> {
        let span = self.span(message);
        self.tokens_in(span.body_start, span.body_end)
    }

    /// The part a token-level cut may shorten: an assistant's reasoning and content (never its
    /// end-of-turn token), another message's content.
    fn cuttable(&self, conversation: &Conversation, message: usize) -> Range<usize> {
        let span = self.span(message);
        let from =
            if conversation.messages[message].role == Role::Assistant { span.body_start } else { span.content_start };
        self.tokens_in(from, span.content_end)
    }

    fn labels(&self, conversation: &Conversation, train: &Train) -> Vec<i64> {
        let mut labels = vec![IGNORE_INDEX; self.len()];
        for span in &self.rendered.spans {
            let trained = match (train, span.message) {
                (Train::All, _) => true,
                (Train::Roles(roles), Some(m)) => roles.contains(&conversation.messages[m].role),
                (Train::Roles(_), None) => false,
            };
            if trained {
                let range = if train == &Train::All { span.start..span.end } else { span.body_start..span.body_end };
                for index in self.tokens_in(range.start, range.end) {
                    labels[index] = i64::from(self.ids[index]);
                }
            }
        }
        labels
    }

    /// Tokens and labels with the token indices in `removed` left out.
    fn without(&self, labels: &[i64], removed: &Range<usize>) -> (Vec<u32>, Vec<i64>) {
        (0..self.len()).filter(|i| !removed.contains(i)).map(|i| (self.ids[i], labels[i])).unzip()
    }
}

fn assistants() -> Train {
    Train::Roles(vec![Role::Assistant])
}

fn id(token: &str) -> u32 {
    tokenizer().token_to_id(token).expect("a special token of the shipped tokenizer")
}

fn run(conversation: &Conversation, options: &EncodeOptions) -> (Vec<Sample>, RecordReport) {
    encode_conversation(conversation, 0, None, &Template::Qwen3, tokenizer(), options).expect("encodes")
}

fn truncating(max_length: usize, keep: Keep) -> EncodeOptions {
    let mut options = EncodeOptions::new(max_length);
    options.overlong = Overlong::Truncate(keep);
    options.cut_keep = keep;
    options
}

fn with_overlong(max_length: usize, overlong: Overlong) -> EncodeOptions {
    let mut options = EncodeOptions::new(max_length);
    options.overlong = overlong;
    options
}

fn trained(labels: &[i64]) -> usize {
    labels.iter().filter(|&&l| l != IGNORE_INDEX).count()
}

/// Maximal runs of trained positions.
fn trained_runs(labels: &[i64]) -> Vec<Range<usize>> {
    let mut runs: Vec<Range<usize>> = Vec::new();
    for (index, &label) in labels.iter().enumerate() {
        if label == IGNORE_INDEX {
            continue;
        }
        match runs.last_mut() {
            Some(run) if run.end == index => run.end += 1,
            _ => runs.push(index..index + 1),
        }
    }
    runs
}

/// Tokens removed per role as the report counts them: whole segments of the dropped messages
/// in the render of the whole conversation.
fn removed_of(conversation: &Conversation, full: &Reference, dropped: &[usize], role: Role) -> i64 {
    dropped.iter().filter(|&&m| conversation.messages[m].role == role).map(|&m| full.message_tokens(m) as i64).sum()
}

fn assert_balanced(report: &RecordReport) {
    let removed: i64 = report.tokens_removed.values().iter().sum();
    assert_eq!(removed, report.tokens_before as i64 - report.tokens_after as i64, "{report:?}");
}

/// A four-turn conversation with a system prompt and turns of distinct lengths.
fn four_turns() -> Conversation {
    conversation(vec![
        system("You answer in one short paragraph."),
        user(&format!("First question: {}?", words(1, 10))),
        assistant(&words(2, 24)),
        user(&format!("Second question: {}?", words(3, 6))),
        assistant(&words(4, 16)),
        user(&format!("Third question: {}?", words(5, 12))),
        assistant(&words(6, 20)),
        user(&format!("Fourth question: {}?", words(7, 8))),
        assistant(&words(8, 18)),
    ])
}

// ---------------------------------------------------------------------------------------------
// Selection: which messages a truncated sample keeps.

#[test]
fn the_system_prompt_stays_and_the_oldest_turns_go_first() {
    let conv = four_turns();
    let full = Reference::all(&conv);
    let last_one = Reference::new(&conv, &[0, 7, 8]);
    let last_two = Reference::new(&conv, &[0, 5, 6, 7, 8]);
    let last_three = Reference::new(&conv, &[0, 3, 4, 5, 6, 7, 8]);
    // ChatML is additive: leaving whole turns out leaves exactly their segments out of the text.
    let gap = full.span(1).start..full.span(4).end;
    assert_eq!(
        last_two.rendered.text,
        format!("{}{}", &full.rendered.text[..gap.start], &full.rendered.text[gap.end..])
    );

    let cases = [
        (full.len() - 1, &last_three, vec![1, 2]),
        (last_three.len(), &last_three, vec![1, 2]),
        (last_three.len() - 1, &last_two, vec![1, 2, 3, 4]),
        (last_two.len(), &last_two, vec![1, 2, 3, 4]),
        (last_two.len() - 1, &last_one, vec![1, 2, 3, 4, 5, 6]),
    ];
    for (max_length, expected, dropped) in cases {
        let (samples, report) = run(&conv, &EncodeOptions::new(max_length));
        assert_eq!(samples.len(), 1, "max_length {max_length}");
        assert_eq!(samples[0].tokens, expected.ids, "max_length {max_length}");
        assert_eq!(samples[0].labels, expected.labels(&conv, &assistants()));
        assert_eq!((samples[0].record, samples[0].window), (0, 0));
        assert_eq!(report.dropped_messages, dropped, "max_length {max_length}");
        assert!(report.cut_messages.is_empty());
        assert_eq!((report.status, report.reason), (Status::Truncated, Reason::TurnsDropped));
        assert_eq!((report.system_kept, report.first_user_kept), (Some(true), Some(false)));
        assert_eq!((report.tokens_before, report.tokens_after), (full.len(), expected.len()));
        assert_eq!(report.tokens_removed.user, removed_of(&conv, &full, &dropped, Role::User));
        assert_eq!(report.tokens_removed.assistant, removed_of(&conv, &full, &dropped, Role::Assistant));
        assert_eq!(
            (report.tokens_removed.system, report.tokens_removed.tool, report.tokens_removed.template),
            (0, 0, 0)
        );
        assert_eq!(report.trained_before, trained(&full.labels(&conv, &assistants())));
        assert_eq!(report.trained_after, trained(&samples[0].labels));
        assert_eq!((report.turns, report.windows), (4, 1));
        assert_balanced(&report);
    }
}

#[test]
fn a_user_message_travels_with_its_answer_and_tool_calls_with_their_results() {
    let conv = conversation(vec![
        user("What is the weather in Paris today?"),
        calling("", "get_weather", json!({"city": "Paris"})),
        tool(&format!("sunny, 21 C, {}", words(1, 8))),
        assistant(&format!("It is sunny: {}", words(2, 10))),
        user("And tomorrow?"),
        assistant(&words(3, 12)),
    ]);
    let full = Reference::all(&conv);
    let last_turn = Reference::new(&conv, &[4, 5]);
    // Room for the tool result and its answer next to the last turn, but not for the whole turn.
    let partial = Reference::new(&conv, &[2, 3, 4, 5]).len();
    assert!(last_turn.len() < partial && partial < full.len());
    for max_length in [partial, full.len() - 1] {
        let (samples, report) = run(&conv, &EncodeOptions::new(max_length));
        assert_eq!(report.dropped_messages, [0, 1, 2, 3]);
        assert_eq!(samples[0].tokens, last_turn.ids);
        assert_eq!(report.tokens_removed.tool, removed_of(&conv, &full, &[2], Role::Tool));
        assert_eq!((report.status, report.reason), (Status::Truncated, Reason::TurnsDropped));
        assert_eq!((report.system_kept, report.first_user_kept, report.turns), (None, Some(false), 2));
        assert_balanced(&report);
    }
    // Everything fits: the tool turn is kept whole, the tool-calling answer trained too.
    let (samples, report) = run(&conv, &EncodeOptions::new(full.len()));
    assert_eq!((report.status, report.reason), (Status::Kept, Reason::Fits));
    assert_eq!(samples[0].tokens, full.ids);
    let labels = full.labels(&conv, &assistants());
    assert_eq!(samples[0].labels, labels);
    assert_eq!(trained_runs(&labels), [full.body(1), full.body(3), full.body(5)]);
}

#[test]
fn keep_first_turn_keeps_the_task_when_it_fits() {
    let conv = conversation(vec![
        system("Follow the task."),
        user("Task: answer with colours only."),
        assistant("Understood."),
        user(&words(1, 30)),
        assistant(&words(2, 30)),
        user(&words(3, 30)),
        assistant(&words(4, 30)),
        user("Last one: the sky?"),
        assistant("Blue."),
    ]);
    let first_and_last = Reference::new(&conv, &[0, 1, 2, 7, 8]);
    let last = Reference::new(&conv, &[0, 7, 8]);
    // The third turn is longer than the first: with the first turn's room it still does not fit.
    assert!(Reference::new(&conv, &[0, 5, 6, 7, 8]).len() > first_and_last.len());

    let mut options = EncodeOptions::new(first_and_last.len());
    let (samples, report) = run(&conv, &options);
    assert_eq!(
        (samples[0].tokens.clone(), report.dropped_messages.clone()),
        (last.ids.clone(), vec![1, 2, 3, 4, 5, 6])
    );
    assert_eq!(report.first_user_kept, Some(false));

    options.keep_first_turn = true;
    let (samples, report) = run(&conv, &options);
    assert_eq!(samples[0].tokens, first_and_last.ids);
    assert_eq!(samples[0].labels, first_and_last.labels(&conv, &assistants()));
    assert_eq!(report.dropped_messages, [3, 4, 5, 6]);
    assert_eq!((report.first_user_kept, report.system_kept), (Some(true), Some(true)));
    assert_eq!((report.status, report.reason), (Status::Truncated, Reason::TurnsDropped));

    // One token less and the first turn no longer fits next to the last: it goes like any other.
    options.max_length = first_and_last.len() - 1;
    let (samples, report) = run(&conv, &options);
    assert_eq!(samples[0].tokens, last.ids);
    assert_eq!(report.first_user_kept, Some(false));

    // With room to spare, the latest turns fill what the first turn leaves.
    let first_and_two = Reference::new(&conv, &[0, 1, 2, 5, 6, 7, 8]);
    options.max_length = first_and_two.len();
    let (samples, report) = run(&conv, &options);
    assert_eq!(samples[0].tokens, first_and_two.ids);
    assert_eq!(report.dropped_messages, [3, 4]);
}

#[test]
fn trailing_messages_after_the_last_answer_are_dropped() {
    let conv = conversation(vec![
        user("Name a colour."),
        assistant("Green."),
        user("And one more thing?"),
        tool("a result nobody answers"),
    ]);
    let full = Reference::all(&conv);
    let kept = Reference::new(&conv, &[0, 1]);
    let (samples, report) = run(&conv, &EncodeOptions::new(1000));
    assert_eq!(samples.len(), 1);
    assert_eq!(samples[0].tokens, kept.ids);
    assert_eq!(samples[0].labels, kept.labels(&conv, &assistants()));
    assert_eq!((report.status, report.reason), (Status::Kept, Reason::TrailingMessagesDropped));
    assert_eq!(report.dropped_messages, [2, 3]);
    assert!(report.cut_messages.is_empty());
    assert_eq!((report.tokens_before, report.tokens_after), (full.len(), kept.len()));
    assert_eq!(report.tokens_removed.user, removed_of(&conv, &full, &[2], Role::User));
    assert_eq!(report.tokens_removed.tool, removed_of(&conv, &full, &[3], Role::Tool));
    // Qwen3 writes an empty <think> block into the answer that becomes the last one: the
    // template adds those tokens, so its bucket is negative by exactly their count.
    let think = tokenizer().encode("<think>\n\n</think>\n\n").unwrap().0.len() as i64;
    assert_eq!(report.tokens_removed.template, -think);
    assert_eq!(report.trained_before, trained(&Reference::new(&conv, &[0, 1]).labels(&conv, &assistants())));
    assert_balanced(&report);
    // The trailing messages count in the whole conversation's role tokens.
    assert_eq!(report.role_tokens.user, full.message_tokens(0) + full.message_tokens(2));
    assert_eq!(report.role_tokens.tool, full.message_tokens(3));
    assert_eq!(report.role_tokens.values().iter().sum::<usize>(), full.len());
}

// ---------------------------------------------------------------------------------------------
// Token-level cuts of a turn too long alone.

#[test]
fn a_turn_too_long_alone_is_cut_on_the_chosen_side() {
    let conv = conversation(vec![system("Be brief."), user("Tell me a story."), assistant(&words(3, 60))]);
    let full = Reference::all(&conv);
    let answer = full.cuttable(&conv, 2);
    // An odd number of the answer's tokens survives, so how Ends shares them out shows.
    let excess = if (answer.len() - 17) % 2 == 1 { 17 } else { 18 };
    let max_length = full.len() - excess;
    assert!(full.cuttable(&conv, 1).len() < excess, "the question cannot take the cut");
    let kept = answer.len() - excess;
    let head = kept.div_ceil(2);
    let cases = [
        (Keep::Head, answer.start + kept..answer.end),
        (Keep::Tail, answer.start..answer.start + excess),
        // Both ends: the middle goes; of an odd count kept, the extra token is the head's.
        (Keep::Ends, answer.start + head..answer.start + head + excess),
    ];
    let labels = full.labels(&conv, &assistants());
    let end_of_turn = id("<|im_end|>");
    for (keep, removed) in cases {
        let mut options = truncating(max_length, keep);
        options.train_on_cut_turns = true;
        let (samples, report) = run(&conv, &options);
        let (tokens, expected_labels) = full.without(&labels, &removed);
        assert_eq!(samples[0].tokens, tokens, "{keep:?}");
        assert_eq!(samples[0].labels, expected_labels, "{keep:?}");
        assert_eq!(samples[0].tokens.len(), max_length);
        // The answer's end-of-turn token survives every cut, trained.
        let at = samples[0].tokens.len() - 2;
        assert_eq!((samples[0].tokens[at], samples[0].labels[at]), (end_of_turn, i64::from(end_of_turn)));
        assert_eq!((report.status, report.reason), (Status::Truncated, Reason::TurnCut));
        assert_eq!((report.cut_messages.clone(), report.dropped_messages.clone()), (vec![2], vec![]));
        assert_eq!(report.tokens_removed.assistant, excess as i64);
        assert_eq!(report.tokens_removed.template, 0);
        assert_eq!(report.trained_after, report.trained_before - excess);
        assert_balanced(&report);
    }
}

#[test]
fn a_cut_answer_loses_its_labels_unless_allowed() {
    // Alone in the sample, a cut answer leaves nothing to train: the record is dropped.
    let conv = conversation(vec![user("Tell me a story."), assistant(&words(3, 60))]);
    let full = Reference::all(&conv);
    let (samples, report) = run(&conv, &EncodeOptions::new(full.len() - 10));
    assert!(samples.is_empty());
    assert_eq!((report.status, report.reason), (Status::Dropped, Reason::NoTrainableTokens));
    assert_eq!((report.dropped_messages.clone(), report.tokens_after, report.windows), (vec![0, 1], 0, 0));
    assert_eq!(report.trained_after, 0);
    assert_balanced(&report);

    // Next to another answer of the same turn, the cut one is shown but not trained.
    let conv = conversation(vec![
        user("Oslo?"),
        calling("Let me check the weather.", "get_weather", json!({"city": "Oslo"})),
        tool("cloudy"),
        assistant(&words(5, 60)),
    ]);
    let full = Reference::all(&conv);
    let excess = 10;
    assert!(full.cuttable(&conv, 0).len() < excess && full.cuttable(&conv, 2).len() < excess);
    assert!(full.cuttable(&conv, 3).len() > full.cuttable(&conv, 1).len());
    let answer = full.cuttable(&conv, 3);
    let removed = answer.end - excess..answer.end;
    for train_on_cut_turns in [false, true] {
        let mut options = EncodeOptions::new(full.len() - excess);
        options.train_on_cut_turns = train_on_cut_turns;
        let (samples, report) = run(&conv, &options);
        let mut labels = full.labels(&conv, &assistants());
        if !train_on_cut_turns {
            for index in full.body(3) {
                labels[index] = IGNORE_INDEX;
            }
        }
        let (tokens, labels) = full.without(&labels, &removed);
        assert_eq!(samples[0].tokens, tokens);
        assert_eq!(samples[0].labels, labels, "train_on_cut_turns={train_on_cut_turns}");
        let expected_trained =
            if train_on_cut_turns { full.body(1).len() + full.body(3).len() - excess } else { full.body(1).len() };
        assert_eq!(report.trained_after, expected_trained);
        assert_eq!(
            (report.status, report.reason, report.cut_messages.clone()),
            (Status::Truncated, Reason::TurnCut, vec![3])
        );
        assert_balanced(&report);
    }
}

#[test]
fn a_long_user_or_tool_message_absorbs_the_excess_so_answers_stay_trained() {
    let excess = 12;
    // The question is shorter than the answer, but long enough to take the whole cut.
    let conv = conversation(vec![system("Be brief."), user(&words(1, 30)), assistant(&words(2, 50))]);
    let full = Reference::all(&conv);
    let question = full.cuttable(&conv, 1);
    assert!(excess <= question.len() && question.len() < full.cuttable(&conv, 2).len());
    for (keep, removed) in
        [(Keep::Head, question.end - excess..question.end), (Keep::Tail, question.start..question.start + excess)]
    {
        let (samples, report) = run(&conv, &truncating(full.len() - excess, keep));
        let (tokens, labels) = full.without(&full.labels(&conv, &assistants()), &removed);
        assert_eq!((samples[0].tokens.clone(), samples[0].labels.clone()), (tokens, labels), "{keep:?}");
        assert_eq!(report.cut_messages, [1]);
        assert_eq!(report.tokens_removed.user, excess as i64);
        assert_eq!(report.trained_after, report.trained_before);
        assert_eq!((report.status, report.reason), (Status::Truncated, Reason::TurnCut));
        assert_balanced(&report);
    }

    // A tool result does the same.
    let conv = conversation(vec![
        user("Look it up."),
        calling("", "search", json!({"query": "rivers"})),
        tool(&words(4, 40)),
        assistant(&words(5, 50)),
    ]);
    let full = Reference::all(&conv);
    let result = full.cuttable(&conv, 2);
    let (samples, report) = run(&conv, &EncodeOptions::new(full.len() - excess));
    let (tokens, labels) = full.without(&full.labels(&conv, &assistants()), &(result.end - excess..result.end));
    assert_eq!((samples[0].tokens.clone(), samples[0].labels.clone()), (tokens, labels));
    assert_eq!((report.cut_messages.clone(), report.tokens_removed.tool), (vec![2], excess as i64));

    // When no question or result can take the whole excess, the longest message is cut first.
    let conv = conversation(vec![system("Be brief."), user(&words(1, 30)), assistant(&words(2, 50))]);
    let full = Reference::all(&conv);
    let excess = full.cuttable(&conv, 1).len() + 5;
    let answer = full.cuttable(&conv, 2);
    assert!(answer.len() > excess);
    let mut options = EncodeOptions::new(full.len() - excess);
    options.train_on_cut_turns = true;
    let (samples, report) = run(&conv, &options);
    let (tokens, labels) = full.without(&full.labels(&conv, &assistants()), &(answer.end - excess..answer.end));
    assert_eq!((samples[0].tokens.clone(), samples[0].labels.clone()), (tokens, labels));
    assert_eq!((report.cut_messages.clone(), report.tokens_removed.assistant), (vec![2], excess as i64));
}

// ---------------------------------------------------------------------------------------------
// Labels.

/// A conversation with every kind of message: system, tool call, tool result, reasoning.
fn everything() -> Conversation {
    conversation(vec![
        system("You are a careful assistant."),
        user("What is the weather in Rome?"),
        calling("Checking.", "get_weather", json!({"city": "Rome", "unit": "C"})),
        tool("rain, 14 C"),
        thinking("It rains, so an umbrella.", "Take an umbrella: rain and 14 C."),
        user("Thanks! Anything else?"),
        thinking("Nothing more to add.", "No, enjoy Rome."),
    ])
}

#[test]
fn default_labels_are_exactly_the_assistant_bodies() {
    let conv = everything();
    let full = Reference::all(&conv);
    let (samples, report) = run(&conv, &EncodeOptions::new(4096));
    assert_eq!(report.boundary_merges, 0);
    assert_eq!(samples[0].tokens, full.ids);
    let labels = &samples[0].labels;
    assert_eq!(*labels, full.labels(&conv, &assistants()));
    // Read back as text, each run of trained tokens is one assistant body: no role header,
    // the end-of-turn token included.
    let text = &full.rendered.text;
    let runs: Vec<&str> =
        trained_runs(labels).into_iter().map(|r| &text[full.offsets[r.start].0..full.offsets[r.end - 1].1]).collect();
    let bodies: Vec<&str> = [2, 4, 6]
        .into_iter()
        .map(|m| {
            let span = full.span(m);
            &text[span.body_start..span.body_end]
        })
        .collect();
    assert_eq!(runs, bodies);
    assert!(bodies.iter().all(|b| b.ends_with("<|im_end|>") && !b.contains("<|im_start|>")));
    assert!(bodies[0].starts_with("Checking.\n<tool_call>"), "{}", bodies[0]);
    assert!(bodies[2].starts_with("<think>\nNothing more to add.\n</think>"), "{}", bodies[2]);
    for run in trained_runs(labels) {
        assert_eq!(full.ids[run.end - 1], id("<|im_end|>"));
        assert_ne!(full.ids[run.start], id("<|im_start|>"));
    }
    assert_eq!(report.trained_before, trained(labels));
    assert_eq!(report.trained_after, trained(labels));
}

#[test]
fn train_all_and_train_roles() {
    let conv = everything();
    let full = Reference::all(&conv);
    let mut options = EncodeOptions::new(4096);
    options.train = Train::All;
    let (samples, report) = run(&conv, &options);
    let every: Vec<i64> = full.ids.iter().map(|&t| i64::from(t)).collect();
    assert_eq!(samples[0].labels, every);
    assert_eq!((report.trained_before, report.trained_after), (full.len(), full.len()));

    options.train = Train::Roles(vec![Role::User]);
    let (samples, _) = run(&conv, &options);
    let runs = trained_runs(&samples[0].labels);
    assert_eq!(runs, [full.body(1), full.body(5)]);
    assert_eq!(samples[0].labels, full.labels(&conv, &options.train));
    // A tool result is rendered inside a "user" ChatML turn but is not a user message.
    assert!(full.body(3).all(|i| samples[0].labels[i] == IGNORE_INDEX));

    options.train = Train::Roles(vec![Role::Tool, Role::System]);
    let (samples, _) = run(&conv, &options);
    assert_eq!(trained_runs(&samples[0].labels), [full.body(0), full.body(3)]);
}

// ---------------------------------------------------------------------------------------------
// Overlong policies, windows, the supervision guarantee.

#[test]
fn overlong_error_names_the_record_and_drop_reports_it() {
    let conv = four_turns();
    let full = Reference::all(&conv);
    for overlong in [Overlong::Error, Overlong::Drop] {
        // What fits is kept whatever the policy.
        let options = with_overlong(full.len(), overlong);
        let (samples, report) =
            encode_conversation(&conv, 7, Some(12), &Template::Qwen3, tokenizer(), &options).unwrap();
        assert_eq!((samples.len(), report.status, report.reason), (1, Status::Kept, Reason::Fits));
        assert_eq!((report.record, report.line, samples[0].record), (7, Some(12), 7));
    }
    let options = with_overlong(full.len() - 1, Overlong::Error);
    let error = encode_conversation(&conv, 7, Some(12), &Template::Qwen3, tokenizer(), &options).unwrap_err();
    assert_eq!(
        error,
        Error::OverlongRecord { record: 7, line: Some(12), length: full.len(), max_length: full.len() - 1 }
    );
    assert!(error.to_string().starts_with("record 7 (line 12): "), "{error}");

    let (samples, report) = run(&conv, &with_overlong(full.len() - 1, Overlong::Drop));
    assert!(samples.is_empty());
    assert_eq!((report.status, report.reason), (Status::Dropped, Reason::OverlongDropped));
    assert_eq!(report.dropped_messages, (0..9).collect::<Vec<_>>());
    assert_eq!(
        (report.tokens_before, report.tokens_after, report.windows, report.trained_after),
        (full.len(), 0, 0, 0)
    );
    assert_eq!(report.system_kept, Some(false));
    assert_balanced(&report);
}

#[test]
fn overlong_length_is_that_of_what_would_be_trained() {
    // Trailing messages never count against the budget: they are dropped anyway.
    let conv = conversation(vec![user("Hi."), assistant("Hello."), user(&words(1, 40))]);
    let trained_part = Reference::new(&conv, &[0, 1]);
    let options = with_overlong(trained_part.len(), Overlong::Error);
    let (_, report) = run(&conv, &options);
    assert_eq!((report.status, report.reason), (Status::Kept, Reason::TrailingMessagesDropped));
    let options = with_overlong(trained_part.len() - 1, Overlong::Error);
    let error = encode_conversation(&conv, 0, None, &Template::Qwen3, tokenizer(), &options).unwrap_err();
    assert!(matches!(error, Error::OverlongRecord { length, .. } if length == trained_part.len()), "{error}");
}

/// A system prompt and `n` turns; turn `i` is messages `1 + 2i` and `2 + 2i`.
fn turns_of(answers: &[&str]) -> Conversation {
    let mut messages = vec![system("You are a patient tutor.")];
    for (i, answer) in answers.iter().enumerate() {
        messages.push(user(&format!("Question {i}: {}?", words(i, 8 + 3 * (i % 3)))));
        messages.push(assistant(answer));
    }
    conversation(messages)
}

/// The system prompt and turns `turns` of a [`turns_of`] conversation.
fn window(turns: Range<usize>) -> Vec<usize> {
    std::iter::once(0).chain(turns.flat_map(|t| [1 + 2 * t, 2 + 2 * t])).collect()
}

/// Split a six-turn conversation with `template` into windows of at most `max_length` tokens
/// and check them: each is the system prompt and the next run of whole turns, rendered alone,
/// with that render's labels; together they hold every turn once, in order, so every answer is
/// trained exactly once. Returns the turns of each window.
fn check_split(template: &Template, max_length: usize) -> Vec<Range<usize>> {
    let answers: Vec<String> = (0..6).map(|i| words(10 + i, 12 + 5 * (i % 3))).collect();
    let conv = turns_of(&answers.iter().map(String::as_str).collect::<Vec<_>>());
    let options = with_overlong(max_length, Overlong::Split);
    let (samples, report) = encode_conversation(&conv, 0, None, template, tokenizer(), &options).unwrap();
    assert_eq!((report.status, report.reason), (Status::Split, Reason::SplitIntoWindows));
    assert_eq!(report.windows, samples.len());
    assert!(report.dropped_messages.is_empty() && report.cut_messages.is_empty());
    let system_block = tokenizer().encode("<|im_start|>system\nYou are a patient tutor.<|im_end|>\n").unwrap().0;
    let render = |turns: Range<usize>| Reference::with(template, &conv, &window(turns));

    let mut windows = Vec::new();
    let mut next = 0;
    for (w, sample) in samples.iter().enumerate() {
        assert_eq!((sample.window, sample.record), (w, 0));
        assert!(sample.tokens.len() <= max_length);
        assert!(sample.tokens.starts_with(&system_block), "window {w} lacks the system prompt");
        let end = (next + 1..=6)
            .find(|&end| render(next..end).ids == sample.tokens)
            .unwrap_or_else(|| panic!("window {w} is not a run of whole turns from turn {next}"));
        assert_eq!(sample.labels, render(next..end).labels(&conv, &assistants()));
        windows.push(next..end);
        next = end;
    }
    assert_eq!(next, 6, "every turn is in a window");
    assert_eq!(report.trained_after, samples.iter().map(|s| trained(&s.labels)).sum::<usize>());
    // The system prompt repeated in every window is the template's doing: its bucket is negative.
    assert_eq!(report.tokens_removed.system, 0);
    assert!(report.tokens_removed.template < 0);
    assert_eq!(report.tokens_before, Reference::with(template, &conv, &(0..13).collect::<Vec<_>>()).len());
    assert_balanced(&report);
    windows
}

#[test]
fn split_windows_train_every_answer_once_and_carry_the_system_prompt() {
    // Qwen2.5 renders every subset as exactly the sum of its parts, so windows are greedy: each
    // holds turns while the next one still fits.
    let conv = turns_of(
        &(0..6)
            .map(|i| words(10 + i, 12 + 5 * (i % 3)))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let render = |turns: Range<usize>| Reference::with(&Template::Qwen25, &conv, &window(turns)).len();
    for max_length in [render(0..2), render(0..2) + 4, render(0..3), render(2..3)] {
        let windows = check_split(&Template::Qwen25, max_length);
        assert!(windows.len() >= 2);
        for turns in &windows {
            if turns.end < 6 {
                assert!(render(turns.start..turns.end + 1) > max_length, "{turns:?} could hold one more turn");
            }
        }
    }
    // Qwen3 writes an empty <think> block into each window's last answer, which the full
    // render (where only the conversation's last answer has one) does not count; windows still
    // partition the turns and fit.
    let max_length = Reference::new(&conv, &window(0..2)).len() + 4;
    assert!(check_split(&Template::Qwen3, max_length).len() >= 3);
}

#[test]
fn untrainable_windows_are_dropped_with_their_reason() {
    let long = words(20, 25);
    let conv = turns_of(&[&long, "Ok.", &long]);
    // One turn per window.
    let budget = (0..3).map(|t| Reference::new(&conv, &window(t..t + 1)).len()).max().unwrap();
    assert!((0..2).all(|t| Reference::new(&conv, &window(t..t + 2)).len() > budget));
    let trained_in = |t: usize| trained(&Reference::new(&conv, &window(t..t + 1)).labels(&conv, &assistants()));
    assert!(trained_in(1) < trained_in(0) && trained_in(1) < trained_in(2));

    let mut options = with_overlong(budget, Overlong::Split);
    options.min_trainable_tokens = trained_in(1) + 1;
    let full = Reference::all(&conv);
    let (samples, report) = run(&conv, &options);
    assert_eq!(samples.iter().map(|s| s.window).collect::<Vec<_>>(), [0, 2]);
    assert_eq!(samples[1].tokens, Reference::new(&conv, &window(2..3)).ids);
    assert_eq!((report.status, report.reason), (Status::Split, Reason::UntrainableWindowsDropped));
    assert_eq!((report.windows, report.dropped_messages.clone()), (2, vec![3, 4]));
    assert_eq!(report.tokens_removed.user, removed_of(&conv, &full, &[3], Role::User));
    assert_eq!(report.tokens_removed.assistant, removed_of(&conv, &full, &[4], Role::Assistant));
    assert_balanced(&report);

    // Of two windows one is left: the record is truncated, for the same reason.
    let conv = turns_of(&[&long, "Ok."]);
    let (samples, report) = run(&conv, &options);
    assert_eq!(samples.len(), 1);
    assert_eq!((report.status, report.reason), (Status::Truncated, Reason::UntrainableWindowsDropped));
    assert_eq!(report.dropped_messages, [3, 4]);

    // No window has enough: nothing is left.
    options.min_trainable_tokens = 10_000;
    for overlong in [Overlong::Split, Overlong::Truncate(Keep::Head)] {
        options.overlong = overlong;
        let (samples, report) = run(&conv, &options);
        assert!(samples.is_empty());
        assert_eq!((report.status, report.reason), (Status::Dropped, Reason::NoTrainableTokens));
        assert_eq!((report.tokens_after, report.windows, report.dropped_messages.len()), (0, 0, 5));
        assert_balanced(&report);
    }
    // Even a record that fits.
    options.max_length = 4096;
    let (samples, report) = run(&conv, &options);
    assert!(samples.is_empty());
    assert_eq!((report.status, report.reason), (Status::Dropped, Reason::NoTrainableTokens));
}

#[test]
fn a_split_record_that_loses_a_window_does_not_say_it_split_cleanly() {
    // The middle turn's own template text (six tool calls and results: headers and
    // <tool_response> wrappers, which no cut can shorten) does not fit next to the system
    // prompt, so its window cannot be kept; the other two windows are.
    let mut messages = vec![system("S."), user(&words(1, 20)), assistant(&words(2, 20)), user("Go.")];
    for i in 0..6 {
        messages.push(calling("", "f", json!({})));
        messages.push(tool(&format!("r{i}")));
    }
    messages.push(assistant("Done."));
    messages.push(user(&words(3, 20)));
    messages.push(assistant(&words(4, 20)));
    let conv = conversation(messages);
    let max_length = Reference::new(&conv, &[0, 1, 2]).len();
    let (samples, report) = run(&conv, &with_overlong(max_length, Overlong::Split));
    assert_eq!(samples.len(), 2);
    assert_eq!(report.dropped_messages, (3..17).collect::<Vec<_>>());
    // Seven answers are never trained: that is not "every answer trained once", and the
    // report says which windows went and why.
    assert_eq!((report.status, report.reason), (Status::Split, Reason::WindowsTooLongDropped), "{report:?}");
    assert_balanced(&report);
}

#[test]
fn a_system_prompt_longer_than_the_budget_drops_the_record() {
    let conv = conversation(vec![system(&words(1, 80)), user("Hi."), assistant("Hello.")]);
    let full = Reference::all(&conv);
    let system_tokens = full.message_tokens(0);
    for overlong in [Overlong::Truncate(Keep::Head), Overlong::Truncate(Keep::Tail), Overlong::Split] {
        for max_length in [system_tokens - 1, system_tokens] {
            let (samples, report) = run(&conv, &with_overlong(max_length, overlong));
            assert!(samples.is_empty());
            assert_eq!((report.status, report.reason), (Status::Dropped, Reason::SystemPromptTooLong), "{overlong:?}");
            assert_eq!(report.system_kept, Some(false));
            assert_eq!(report.tokens_removed.system, system_tokens as i64);
            assert_eq!(report.dropped_messages, [0, 1, 2]);
            assert_balanced(&report);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reports over many generated conversations.

#[derive(Debug, Clone)]
struct TurnSpec {
    question: String,
    tool: Option<(String, String)>,
    answer: String,
    reasoning: Option<String>,
}

fn text(max_words: usize) -> impl Strategy<Value = String> {
    (0usize..50, 0..=max_words).prop_map(|(seed, count)| words(seed, count))
}

fn turn_spec() -> impl Strategy<Value = TurnSpec> {
    (text(30), prop::option::weighted(0.3, (text(2), text(25))), text(40), prop::option::weighted(0.3, text(10)))
        .prop_map(|(question, tool, answer, reasoning)| TurnSpec { question, tool, answer, reasoning })
}

fn generated() -> impl Strategy<Value = Conversation> {
    (prop::option::of(text(30)), prop::collection::vec(turn_spec(), 1..5), prop::option::weighted(0.2, text(10)))
        .prop_map(|(system_prompt, turns, trailing)| {
            let mut messages: Vec<Message> = system_prompt.iter().map(|s| system(&format!("System: {s}"))).collect();
            for turn in turns {
                messages.push(user(&turn.question));
                if let Some((query, result)) = &turn.tool {
                    messages.push(calling("", "search", json!({ "query": query })));
                    messages.push(tool(result));
                }
                let answer = match &turn.reasoning {
                    Some(reasoning) => thinking(reasoning, &turn.answer),
                    None => assistant(&turn.answer),
                };
                messages.push(answer);
            }
            if let Some(trailing) = trailing {
                messages.push(user(&trailing));
            }
            conversation(messages)
        })
}

fn encode_options() -> impl Strategy<Value = (EncodeOptions, u32)> {
    let overlong = prop_oneof![
        Just(Overlong::Truncate(Keep::Head)),
        Just(Overlong::Truncate(Keep::Tail)),
        Just(Overlong::Truncate(Keep::Ends)),
        Just(Overlong::Split),
        Just(Overlong::Drop),
        Just(Overlong::Error),
    ];
    let train = prop_oneof![
        4 => Just(Train::Roles(vec![Role::Assistant])),
        1 => Just(Train::All),
        1 => Just(Train::Roles(vec![Role::User, Role::Tool])),
    ];
    let minimum = prop_oneof![4 => Just(1usize), 1 => 2usize..40];
    (overlong, any::<bool>(), any::<bool>(), train, minimum, 5u32..=120).prop_map(
        |(overlong, keep_first_turn, train_on_cut_turns, train, min_trainable_tokens, percent)| {
            let mut options = EncodeOptions::new(1);
            options.overlong = overlong;
            options.cut_keep = match overlong {
                Overlong::Truncate(keep) => keep,
                _ => Keep::Head,
            };
            options.keep_first_turn = keep_first_turn;
            options.train_on_cut_turns = train_on_cut_turns;
            options.train = train;
            options.min_trainable_tokens = min_trainable_tokens;
            (options, percent)
        },
    )
}

/// Status and reason agree with what the report and samples say happened.
fn check_status(report: &RecordReport, samples: &[Sample], fits: bool, last_answer: usize) {
    let kept_whole = samples.len() == 1 && report.cut_messages.is_empty();
    match report.reason {
        Reason::Fits => {
            assert_eq!(report.status, Status::Kept);
            assert!(fits && kept_whole && report.dropped_messages.is_empty());
            assert_eq!(report.tokens_after, report.tokens_before);
        }
        Reason::TrailingMessagesDropped => {
            assert_eq!(report.status, Status::Kept);
            assert!(fits && kept_whole);
            assert!(!report.dropped_messages.is_empty() && report.dropped_messages.iter().all(|&m| m > last_answer));
        }
        Reason::TurnsDropped => {
            assert_eq!(report.status, Status::Truncated);
            assert!(!fits && kept_whole && report.dropped_messages.iter().any(|&m| m <= last_answer));
        }
        Reason::TurnCut => {
            assert_eq!(report.status, Status::Truncated);
            assert!(!fits && samples.len() == 1 && !report.cut_messages.is_empty());
        }
        Reason::SplitIntoWindows => assert!(report.status == Status::Split && samples.len() > 1),
        Reason::UntrainableWindowsDropped => {
            assert!(matches!(report.status, Status::Split | Status::Truncated) && !samples.is_empty());
            assert_eq!(report.status == Status::Split, samples.len() > 1);
        }
        Reason::OverlongDropped | Reason::SystemPromptTooLong => {
            assert!(report.status == Status::Dropped && !fits && samples.is_empty());
        }
        Reason::NoTrainableTokens => assert!(report.status == Status::Dropped && samples.is_empty()),
        other => panic!("a record that encodes has no {other:?}"),
    }
    if report.status == Status::Dropped {
        assert_eq!((report.tokens_after, report.trained_after), (0, 0));
    }
}

/// The turns of a generated conversation up to its last answer (message ranges): a user
/// message and what follows it up to the next one.
fn turn_ranges(conv: &Conversation, last_answer: usize) -> Vec<Range<usize>> {
    let first = usize::from(conv.messages[0].role == Role::System);
    let mut turns: Vec<Range<usize>> = Vec::new();
    for m in first..=last_answer {
        match turns.last_mut() {
            Some(turn) if conv.messages[m].role != Role::User => turn.end = m + 1,
            _ => turns.push(m..m + 1),
        }
    }
    turns
}

/// The system prompt (if any) and the turns `turns`.
fn with_turns(conv: &Conversation, turns: &[Range<usize>]) -> Vec<usize> {
    let system_prompt = (conv.messages[0].role == Role::System).then_some(0);
    system_prompt.into_iter().chain(turns.iter().flat_map(Clone::clone)).collect()
}

/// A truncated sample without cuts is exactly the render of what it kept: the system prompt,
/// the first turn when asked for, then the latest turns, all whole; a user turn first and an
/// answer last.
fn check_whole_turns(
    conv: &Conversation,
    options: &EncodeOptions,
    report: &RecordReport,
    sample: &Sample,
    turns: &[Range<usize>],
) {
    let kept: Vec<usize> = (0..conv.messages.len()).filter(|m| !report.dropped_messages.contains(m)).collect();
    let reference = Reference::new(conv, &kept);
    assert_eq!(sample.tokens, reference.ids);
    assert_eq!(sample.labels, reference.labels(conv, &options.train));
    let kept_turns: Vec<usize> = (0..turns.len()).filter(|&t| turns[t].clone().all(|m| kept.contains(&m))).collect();
    let chosen: Vec<Range<usize>> = kept_turns.iter().map(|&t| turns[t].clone()).collect();
    assert_eq!(kept, with_turns(conv, &chosen), "only whole turns are kept");
    assert_eq!(kept_turns.last(), Some(&(turns.len() - 1)), "the last turn is kept");
    let latest = if options.keep_first_turn && kept_turns[0] == 0 { &kept_turns[1..] } else { &kept_turns[..] };
    assert!(latest.windows(2).all(|p| p[1] == p[0] + 1), "the oldest turns go first: {kept_turns:?}");
    let roles: Vec<Role> = kept.iter().map(|&m| conv.messages[m].role).filter(|&r| r != Role::System).collect();
    assert_eq!((roles.first(), roles.last()), (Some(&Role::User), Some(&Role::Assistant)));
}

/// Split samples without cuts: each is the system prompt and a run of whole turns rendered
/// alone, runs in order; with no window dropped they cover every turn.
fn check_windows(
    conv: &Conversation,
    options: &EncodeOptions,
    report: &RecordReport,
    samples: &[Sample],
    turns: &[Range<usize>],
) {
    let mut next = 0;
    let mut covered = Vec::new();
    for sample in samples {
        let (start, end) = (next..turns.len())
            .flat_map(|start| (start + 1..=turns.len()).map(move |end| (start, end)))
            .find(|&(start, end)| Reference::new(conv, &with_turns(conv, &turns[start..end])).ids == sample.tokens)
            .unwrap_or_else(|| panic!("window {} is not a run of whole turns after turn {next}", sample.window));
        let reference = Reference::new(conv, &with_turns(conv, &turns[start..end]));
        assert_eq!(sample.labels, reference.labels(conv, &options.train));
        covered.extend(start..end);
        next = end;
    }
    if report.reason == Reason::SplitIntoWindows || report.reason == Reason::Fits {
        assert_eq!(covered, (0..turns.len()).collect::<Vec<_>>(), "every turn is in a window");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5e9_9ac4), ..ProptestConfig::default() })]

    #[test]
    fn reports_add_up(conv in generated(), (mut options, percent) in encode_options()) {
        let messages = conv.messages.len();
        let last_answer = conv.messages.iter().rposition(|m| m.role == Role::Assistant).unwrap();
        let trained_part = Reference::new(&conv, &(0..=last_answer).collect::<Vec<_>>());
        let full = Reference::all(&conv);
        options.max_length = (trained_part.len() * percent as usize / 100).max(1);
        let fits = trained_part.len() <= options.max_length;
        let outcome = encode_conversation(&conv, 3, Some(9), &Template::Qwen3, tokenizer(), &options);
        if options.overlong == Overlong::Error && !fits {
            let expected =
                Error::OverlongRecord { record: 3, line: Some(9), length: trained_part.len(), max_length: options.max_length };
            prop_assert_eq!(outcome.unwrap_err(), expected);
            return Ok(());
        }
        let (samples, report) = outcome.unwrap();

        // Token accounting.
        let removed: i64 = report.tokens_removed.values().iter().sum();
        prop_assert_eq!(removed, report.tokens_before as i64 - report.tokens_after as i64);
        prop_assert_eq!(report.tokens_before, full.len());
        prop_assert_eq!(report.role_tokens.values().iter().sum::<usize>(), full.len());
        prop_assert_eq!(report.tokens_after, samples.iter().map(|s| s.tokens.len()).sum::<usize>());
        prop_assert_eq!(report.trained_before, trained(&trained_part.labels(&conv, &options.train)));
        prop_assert_eq!(report.trained_after, samples.iter().map(|s| trained(&s.labels)).sum::<usize>());
        prop_assert_eq!(report.windows, samples.len());
        prop_assert_eq!((report.record, report.line), (3, Some(9)));

        // Samples: within the budget, labels on their own tokens, enough of them.
        for sample in &samples {
            prop_assert_eq!(sample.record, 3);
            prop_assert!(!sample.tokens.is_empty() && sample.tokens.len() <= options.max_length);
            prop_assert_eq!(sample.labels.len(), sample.tokens.len());
            for (&token, &label) in sample.tokens.iter().zip(&sample.labels) {
                prop_assert!(label == IGNORE_INDEX || label == i64::from(token));
            }
            prop_assert!(trained(&sample.labels) >= options.min_trainable_tokens);
        }
        prop_assert!(samples.windows(2).all(|pair| pair[0].window < pair[1].window));

        // Messages: dropped and cut are sorted, disjoint, in range.
        prop_assert!(report.dropped_messages.windows(2).all(|p| p[0] < p[1]));
        prop_assert!(report.cut_messages.windows(2).all(|p| p[0] < p[1]));
        prop_assert!(report.dropped_messages.iter().chain(&report.cut_messages).all(|&m| m < messages));
        prop_assert!(report.cut_messages.iter().all(|m| !report.dropped_messages.contains(m)));
        prop_assert!((last_answer + 1..messages).all(|m| report.dropped_messages.contains(&m)));
        let has_system = conv.messages[0].role == Role::System;
        prop_assert_eq!(report.system_kept, has_system.then_some(!samples.is_empty()));
        check_status(&report, &samples, fits, last_answer);

        let turns = turn_ranges(&conv, last_answer);
        if report.cut_messages.is_empty() && !samples.is_empty() {
            if options.overlong == Overlong::Split {
                check_windows(&conv, &options, &report, &samples, &turns);
            } else {
                check_whole_turns(&conv, &options, &report, &samples[0], &turns);
            }
        }
        // A cut sample is cut to exactly the budget.
        if report.reason == Reason::TurnCut {
            prop_assert_eq!(samples[0].tokens.len(), options.max_length);
        }
        // Every window starts with the system prompt.
        if has_system {
            let block = format!("<|im_start|>system\n{}<|im_end|>\n", conv.messages[0].content);
            let block = tokenizer().encode(&block).unwrap().0;
            prop_assert!(samples.iter().all(|s| s.tokens.starts_with(&block)));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The pipeline: records in, flat arrays and reports out.

fn record(index: usize, value: Result<serde_json::Value, Error>) -> RawRecord {
    RawRecord { origin: Origin { record: index, line: Some(index + 1) }, value }
}

fn good(index: usize) -> serde_json::Value {
    json!({"messages": [
        {"role": "system", "content": "Count."},
        {"role": "user", "content": format!("Say {index}. {}", words(index, index % 7))},
        {"role": "assistant", "content": format!("{index}. {}", words(index + 1, 3 + index % 5))},
    ]})
}

fn not_json(index: usize) -> Result<serde_json::Value, Error> {
    Err(Origin { record: index, line: Some(index + 1) }.error("", "not valid JSON: EOF"))
}

#[test]
fn skip_counts_bad_records_and_the_flat_arrays_agree_with_the_samples() {
    let no_answer = json!({"messages": [{"role": "user", "content": "Hello?"}]});
    let records = vec![
        record(0, Ok(good(0))),
        record(1, not_json(1)),
        record(2, Ok(good(2))),
        record(3, Ok(no_answer)),
        record(4, Ok(good(4))),
    ];
    let mut options = EncodeOptions::new(4096);
    options.on_error = OnError::Skip;
    let encoded = encode_records(records, &Template::Qwen3, tokenizer(), &options).unwrap();
    let reports = &encoded.reports;
    assert_eq!(reports.iter().map(|r| r.record).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
    for (index, report) in reports.iter().enumerate() {
        assert_eq!(report.line, Some(index + 1));
        if index % 2 == 1 {
            assert_eq!((report.status, report.reason), (Status::Skipped, Reason::InvalidRecord));
            let message = report.message.as_deref().unwrap();
            assert!(message.starts_with(&format!("record {index} (line {})", index + 1)), "{message}");
            assert_eq!((report.windows, report.tokens_before, report.tokens_after), (0, 0, 0));
        } else {
            assert_eq!((report.status, report.reason, report.message.as_deref()), (Status::Kept, Reason::Fits, None));
        }
    }
    assert!(reports[3].message.as_deref().unwrap().contains("no assistant turn"));

    // The second path: each good record encoded alone, one after the other.
    let mut samples = Vec::new();
    for index in [0, 2, 4] {
        let conv = seqpack_core::conversation::records::parse_record(
            &good(index),
            options.format,
            &options.mapping,
            Origin { record: index, line: Some(index + 1) },
        )
        .unwrap();
        let (mut produced, report) =
            encode_conversation(&conv, index, Some(index + 1), &Template::Qwen3, tokenizer(), &options).unwrap();
        assert_eq!(report, reports[index]);
        samples.append(&mut produced);
    }
    let flat = &encoded.flat;
    assert_eq!(flat.offsets.len(), samples.len() + 1);
    assert_eq!(flat.offsets[0], 0);
    for (i, sample) in samples.iter().enumerate() {
        let range = flat.offsets[i] as usize..flat.offsets[i + 1] as usize;
        let tokens: Vec<u32> = flat.tokens[range.clone()].iter().map(|&t| u32::try_from(t).unwrap()).collect();
        assert_eq!(tokens, sample.tokens);
        assert_eq!(flat.labels[range], sample.labels[..]);
        assert_eq!((flat.sample_record[i], flat.sample_window[i]), (sample.record as i64, sample.window as i64));
    }
    assert_eq!(flat.sample_record, [0, 2, 4]);
    assert_eq!(flat.tokens.len(), reports.iter().map(|r| r.tokens_after).sum::<usize>());
}

#[test]
fn raise_returns_the_error_of_the_lowest_record() {
    let no_answer = json!({"messages": [{"role": "user", "content": "Hello?"}]});
    let build = || -> Vec<RawRecord> {
        (0..64)
            .map(|i| match i {
                5 => record(i, Ok(no_answer.clone())),
                9 | 40 => record(i, not_json(i)),
                _ => record(i, Ok(good(i))),
            })
            .collect()
    };
    let options = EncodeOptions::new(4096);
    for _ in 0..4 {
        let error = encode_records(build(), &Template::Qwen3, tokenizer(), &options).unwrap_err();
        assert!(matches!(&error, Error::InvalidRecord { record: 5, line: Some(6), .. }), "{error}");
    }
    let mut skipping = options.clone();
    skipping.on_error = OnError::Skip;
    let encoded = encode_records(build(), &Template::Qwen3, tokenizer(), &skipping).unwrap();
    let skipped: Vec<usize> =
        encoded.reports.iter().filter(|r| r.status == Status::Skipped).map(|r| r.record).collect();
    assert_eq!(skipped, [5, 9, 40]);
    assert_eq!(encoded.flat.sample_record.len(), 61);
}

#[test]
fn skip_covers_template_errors_but_not_the_overlong_policy() {
    // The built-in Llama-3 template refuses tool calls: a template error in that record.
    let with_call = json!({"messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {}}}]},
        {"role": "tool", "content": "sunny"},
        {"role": "assistant", "content": "Sunny."},
    ]});
    let records = || vec![record(0, Ok(good(0))), record(1, Ok(with_call.clone())), record(2, Ok(good(2)))];
    let mut options = EncodeOptions::new(4096);
    let error = encode_records(records(), &Template::Llama3, tokenizer(), &options).unwrap_err();
    assert!(
        matches!(&error, Error::InRecord { record: 1, line: Some(2), source } if matches!(**source, Error::Template { .. })),
        "{error}"
    );
    options.on_error = OnError::Skip;
    let encoded = encode_records(records(), &Template::Llama3, tokenizer(), &options).unwrap();
    let outcomes: Vec<(Status, Reason)> = encoded.reports.iter().map(|r| (r.status, r.reason)).collect();
    assert_eq!(
        outcomes,
        [(Status::Kept, Reason::Fits), (Status::Skipped, Reason::TemplateError), (Status::Kept, Reason::Fits)]
    );
    assert_eq!(encoded.flat.sample_record, [0, 2]);

    // A record over the budget under overlong=error is the caller's policy, never skipped.
    options.overlong = Overlong::Error;
    options.max_length = 20;
    let error = encode_records(records(), &Template::Qwen3, tokenizer(), &options).unwrap_err();
    assert!(matches!(error, Error::OverlongRecord { record: 0, line: Some(1), max_length: 20, .. }), "{error}");

    assert_eq!(encode_records(Vec::new(), &Template::Qwen3, tokenizer(), &options).unwrap_err(), Error::EmptyInput);
}
