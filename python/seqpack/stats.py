"""What the packing stage reports about itself: row and token counts, efficiency, and one
event per sequence that was not packed whole (dropped, truncated, split, wrapped). The fields
are those of the core's ``Stats`` and ``Event``, read through serde."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, NamedTuple


class Event(NamedTuple):
    """One sequence that is not in the output whole and as one segment."""

    source_index: int
    """Position of the sequence in the input."""
    reason: str
    """``overlong_dropped``, ``overlong_truncated``, ``overlong_split`` or
    ``wrapped_across_rows``."""
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
    """The fewest rows any packing could use: ceil(real tokens / max_length)."""
    input_sequences: int
    input_tokens: int
    dropped_sequences: int
    dropped_tokens: int
    truncated_sequences: int
    truncated_tokens: int
    split_sequences: int
    padding_rows: int
    """All-padding rows added by ``pad_rows_to_multiple_of``."""
    reasons: dict[str, int] = field(default_factory=dict)
    """How many sequences each event reason applies to."""

    @classmethod
    def from_native(cls, stats: dict[str, Any], events: list[Event]) -> PackStats:
        return cls(**stats, reasons=dict(Counter(e.reason for e in events)))

    def rows_of_text(self) -> list[tuple[str, str]]:
        """The figures as (label, value) pairs."""
        return [
            ("rows", f"{self.rows:,} (lower bound {self.lower_bound_rows:,})"),
            ("max_length", f"{self.max_length:,}"),
            ("packed sequences", f"{self.packed_sequences:,} of {self.input_sequences:,}"),
            ("real tokens", f"{self.real_tokens:,} of {self.input_tokens:,}"),
            ("pad tokens", f"{self.pad_tokens:,}"),
            ("efficiency", f"{self.efficiency:.2%}"),
            ("dropped", f"{self.dropped_sequences:,} seqs, {self.dropped_tokens:,} tokens"),
            ("truncated", f"{self.truncated_sequences:,} seqs, {self.truncated_tokens:,} tokens"),
            ("split", f"{self.split_sequences:,} seqs"),
            ("padding rows", f"{self.padding_rows:,}"),
        ]

    def table(self) -> str:
        """The packing stage's figures as an aligned two-column table (for conversations,
        :meth:`seqpack.PackedBatch.summary` adds what encoding cut before packing).

        >>> import seqpack
        >>> print(seqpack.pack([[1, 2, 3], [4, 5]], max_length=4).stats.table())
        ... # doctest: +NORMALIZE_WHITESPACE
        rows              2 (lower bound 2)
        max_length        4
        packed sequences  2 of 2
        real tokens       5 of 5
        pad tokens        3
        efficiency        62.50%
        dropped           0 seqs, 0 tokens
        truncated         0 seqs, 0 tokens
        split             0 seqs
        padding rows      0
        """
        return aligned(self.rows_of_text())


def aligned(lines: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in lines)


def events_from_native(raw: list[dict[str, Any]]) -> list[Event]:
    return [Event(**e) for e in raw]
