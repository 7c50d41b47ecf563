"""What the conversation stage reports: one :class:`RecordReport` per input record (kept,
truncated, split, dropped or skipped, why, and which tokens went), and their totals. The
fields are those of the core's ``RecordReport`` and ``ReportSummary``, read through serde:
adding a field means adding it there and in the dataclass here."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

from seqpack import _seqpack


@dataclass(frozen=True)
class RecordReport:
    """What happened to one input record."""

    record: int
    """Index of the record in the input."""
    line: int | None
    """Line in the input file, when read from one."""
    status: str
    """``kept``, ``truncated``, ``split``, ``dropped`` or ``skipped``."""
    reason: str
    """``fits``, ``trailing_messages_dropped``, ``turns_dropped``, ``turn_cut``,
    ``split_into_windows``, ``untrainable_windows_dropped`` (some samples had fewer than
    ``min_trainable_tokens`` labels), ``windows_too_long_dropped`` (split windows whose own
    template text does not fit), ``overlong_dropped`` (``overlong="drop"``),
    ``system_prompt_too_long``, ``no_trainable_tokens``; for skipped records
    ``invalid_record``, ``invalid_json``, ``template_error``, ``tokenizer_error`` or
    ``special_token_in_content`` (``special_tokens_in_content="error"``)."""
    message: str | None
    """The error, for a skipped record."""
    dropped_messages: list[int]
    """Indices of messages not in any sample."""
    cut_messages: list[int]
    """Messages shortened at token level."""
    tokens_removed: dict[str, int]
    """Tokens removed per role (system, user, assistant, tool) and by the template's own
    text ('template': what re-rendering a shorter conversation adds or drops; negative when it
    adds). They sum to ``tokens_before - tokens_after``."""
    system_kept: bool | None
    """Whether the system prompt survived (None: there was none)."""
    first_user_kept: bool | None
    tokens_before: int
    tokens_after: int
    trained_before: int
    """Trained (labelled) tokens of the whole rendered conversation."""
    trained_after: int
    windows: int
    """Samples this record became (0 if dropped, more than 1 if split)."""
    role_tokens: dict[str, int]
    """Tokens of the whole rendered conversation per role and the template's own text."""
    turns: int
    """Turns in the conversation (a user message and what follows it)."""
    boundary_merges: int
    """Tokens that straddled a message boundary (labels follow each token's first byte)."""
    special_token_messages: list[int] = field(default_factory=list)
    """Messages whose content holds a special token's text (``<|im_end|>``, ``<|eot_id|>``,
    ...), which the tokenizer reads as that token, as transformers does: in an assistant's
    answer it is trained as a real turn marker (under the default ``"keep"``; ``"escape"``
    reads it as ordinary text). See ``special_tokens_in_content``."""


@dataclass(frozen=True)
class ReportSummary:
    """Totals over all records of a conversation report."""

    records: int
    statuses: dict[str, int]
    """Records per status (statuses with none left out)."""
    reasons: dict[str, int]
    """Records per reason (reasons with none left out)."""
    tokens_removed: dict[str, int]
    """Tokens removed per role and by the template's own text, over all records."""
    tokens_before: int
    tokens_after: int
    trained_before: int
    trained_after: int

    @classmethod
    def from_native(cls, raw: dict[str, object]) -> ReportSummary:
        fields = dict(raw)
        fields["statuses"] = dict(raw["statuses"])  # type: ignore[call-overload]
        fields["reasons"] = dict(raw["reasons"])  # type: ignore[call-overload]
        return cls(**fields)  # type: ignore[arg-type]

    def rows_of_text(self) -> list[tuple[str, str]]:
        """The totals as (label, value) pairs."""
        statuses = ", ".join(f"{k} {v:,}" for k, v in self.statuses.items())
        reasons = ", ".join(f"{k} {v:,}" for k, v in self.reasons.items())
        removed = ", ".join(f"{k} {v:,}" for k, v in self.tokens_removed.items() if v)
        share = 1 - self.tokens_after / self.tokens_before if self.tokens_before else 0.0
        return [
            ("records", f"{self.records:,}: {statuses or 'none'}"),
            ("reasons", reasons or "none"),
            ("tokens", f"{self.tokens_after:,} of {self.tokens_before:,} kept ({share:.2%} cut)"),
            ("trained tokens", f"{self.trained_after:,} of {self.trained_before:,} kept"),
            ("tokens cut by role", removed or "none"),
        ]

    def text(self) -> str:
        """One line: records per status and tokens removed per role."""
        statuses = ", ".join(f"{k} {v}" for k, v in self.statuses.items())
        removed = ", ".join(f"{k} {v}" for k, v in self.tokens_removed.items() if v)
        return f"{self.records} records: {statuses}; tokens removed: {removed or 'none'}"


class ConversationReport:
    """Per-record reports plus totals; writable as JSONL.

    The reports stay in Rust until ``records`` is first read (building Python objects for
    every record costs more than encoding them), so packing stays fast when no one looks.
    """

    def __init__(self, native: _seqpack.NativeReports) -> None:
        self._native = native
        self._records: list[RecordReport] | None = None
        self._summary: ReportSummary | None = None

    def __repr__(self) -> str:
        return f"<ConversationReport {self.summary().text()}>"

    @property
    def records(self) -> list[RecordReport]:
        """One :class:`RecordReport` per input record, in input order."""
        if self._records is None:
            self._records = [RecordReport(**r) for r in self._native.records()]
        return self._records

    def __len__(self) -> int:
        return len(self._native)

    def summary(self) -> ReportSummary:
        """Totals over all records."""
        if self._summary is None:
            self._summary = ReportSummary.from_native(self._native.summary())
        return self._summary

    def counts(self) -> dict[str, int]:
        """Records per status."""
        return dict(self.summary().statuses)

    def reasons(self) -> dict[str, int]:
        """Records per reason."""
        return dict(self.summary().reasons)

    def tokens_removed(self) -> dict[str, int]:
        """Tokens removed per role, and by the template's own text, over all records."""
        return dict(self.summary().tokens_removed)

    def write_jsonl(self, path: str | os.PathLike[str]) -> None:
        """One JSON object per record (the fields of :class:`RecordReport`).

        Parameters
        ----------
        path
            The file to write (replaced if it exists).
        """
        with open(path, "w", encoding="utf-8") as out:
            out.writelines(json.dumps(asdict(r), ensure_ascii=False) + "\n" for r in self.records)
