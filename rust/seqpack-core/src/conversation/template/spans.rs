//! Where each message lies in a rendered text: the spans every template (built-in or Jinja)
//! produces and labels are placed by.

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

/// A span in characters (not bytes): (message, start, `body_start`, `body_end`, end).
pub type CharSpan = (Option<usize>, usize, usize, usize, usize);

impl Rendered {
    /// The spans with character offsets, as Python strings index.
    pub fn char_spans(&self) -> Vec<CharSpan> {
        // One pass over the text: byte offset of every char boundary → char index.
        let mut chars_before = vec![0usize; self.text.len() + 1];
        let mut count = 0;
        for (byte, _) in self.text.char_indices() {
            chars_before[byte] = count;
            count += 1;
        }
        chars_before[self.text.len()] = count;
        let at = |byte: usize| chars_before[byte];
        self.spans.iter().map(|s| (s.message, at(s.start), at(s.body_start), at(s.body_end), at(s.end))).collect()
    }
}

/// Appends text while recording spans.
#[derive(Default)]
pub(super) struct Writer {
    text: String,
    spans: Vec<MessageSpan>,
    open: Option<MessageSpan>,
}

impl Writer {
    pub(super) fn begin(&mut self, message: Option<usize>) {
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
    pub(super) fn push(&mut self, text: &str) {
        self.text.push_str(text);
    }
    pub(super) fn mark_body_start(&mut self) {
        let at = self.text.len();
        if let Some(span) = self.open.as_mut() {
            span.body_start = at;
            span.content_start = at;
            span.content_end = at;
        }
    }
    pub(super) fn content(&mut self, text: &str) {
        let start = self.text.len();
        self.text.push_str(text);
        if let Some(span) = self.open.as_mut() {
            span.content_start = start;
            span.content_end = self.text.len();
        }
    }
    /// Extend the content span over what was written since it began (tool calls).
    pub(super) fn extend_content(&mut self) {
        let at = self.text.len();
        if let Some(span) = self.open.as_mut() {
            span.content_end = at;
        }
    }
    pub(super) fn mark_body_end(&mut self) {
        let at = self.text.len();
        if let Some(span) = self.open.as_mut() {
            span.body_end = at;
        }
    }
    pub(super) fn finish(&mut self) {
        if let Some(mut span) = self.open.take() {
            span.end = self.text.len();
            if span.body_end < span.body_start {
                span.body_end = span.end;
            }
            self.spans.push(span);
        }
    }
    pub(super) fn done(mut self) -> Rendered {
        self.finish();
        Rendered { text: self.text, spans: self.spans }
    }
}
