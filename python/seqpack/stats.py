"""What a plan or a packed batch reports about itself: row and token counts, efficiency, and
one event per sequence that was not packed whole (dropped, truncated, split, wrapped)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, NamedTuple


class Event(NamedTuple):
    """One sequence that is not in the output whole and as one segment."""

    source_index: int
    """Position of the sequence in the input."""
    reason: str
    """``overlong_dropped``, ``overlong_truncated``, ``overlong_split`` or ``wrapped_across_rows``."""
    length: int
    """Tokens the sequence had."""
    tokens_removed: int
    """Tokens of it that are in no row (0 for split and wrapped)."""
    pieces: int
    """Segments it became (0 when dropped)."""


@dataclass(frozen=True)
class PackStats:
    """Figures for one plan. ``efficiency`` is real tokens / (rows * max_length)."""

    rows: int
    max_length: int
    packed_sequences: int
    real_tokens: int
    pad_tokens: int
    efficiency: float
    lower_bound_rows: int
    input_sequences: int
    input_tokens: int
    dropped_sequences: int
    dropped_tokens: int
    truncated_sequences: int
    truncated_tokens: int
    split_sequences: int
    padding_rows: int
    reasons: dict[str, int] = field(default_factory=dict)
    """How many sequences each event reason applies to."""

    @classmethod
    def from_native(cls, stats: dict[str, Any], events: list[Event]) -> PackStats:
        return cls(**stats, reasons=dict(Counter(e.reason for e in events)))

    def table(self) -> str:
        """The figures as an aligned two-column table."""
        lines = [
            ("rows", f"{self.rows:,}"),
            ("lower bound rows", f"{self.lower_bound_rows:,}"),
            ("max_length", f"{self.max_length:,}"),
            ("packed sequences", f"{self.packed_sequences:,}"),
            ("real tokens", f"{self.real_tokens:,}"),
            ("pad tokens", f"{self.pad_tokens:,}"),
            ("efficiency", f"{self.efficiency:.2%}"),
            ("input sequences", f"{self.input_sequences:,}"),
            ("input tokens", f"{self.input_tokens:,}"),
            ("dropped", f"{self.dropped_sequences:,} seqs, {self.dropped_tokens:,} tokens"),
            ("truncated", f"{self.truncated_sequences:,} seqs, {self.truncated_tokens:,} tokens"),
            ("split", f"{self.split_sequences:,} seqs"),
        ]
        width = max(len(k) for k, _ in lines)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in lines)


def events_from_native(raw: list[tuple[int, str, int, int, int]]) -> list[Event]:
    return [Event(*e) for e in raw]
