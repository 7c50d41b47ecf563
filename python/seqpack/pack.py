"""The packing half: :func:`plan` decides rows from lengths alone, :func:`pack` plans and
writes the arrays, for token sequences or the samples :func:`seqpack.encode` made.

Python normalises argument types here; the core checks every option's name and range, once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypedDict, cast

import numpy as np
import numpy.typing as npt

from seqpack import _normalise, _seqpack
from seqpack.batch import PackedBatch
from seqpack.chat import EncodedConversations, Records, encode
from seqpack.errors import EmptyInputError, InvalidOptionError
from seqpack.inputs import TokenInput, flatten
from seqpack.stats import Event, PackStats, events_from_native

if TYPE_CHECKING:
    from typing_extensions import Unpack

StrategyName = Literal["bfd", "ffd", "sequential", "wrapped"]
OverlongPolicy = Literal["error", "drop", "truncate", "split"]
TruncateKeep = Literal["head", "tail", "ends"]
LossWeighting = Literal["token", "sequence"]

STRATEGIES: tuple[StrategyName, ...] = ("bfd", "ffd", "sequential", "wrapped")


class EncodeKwargs(TypedDict, total=False):
    """Options :func:`pack` forwards to :func:`seqpack.encode` when given ``tokenizer=``."""

    keep_first_turn: bool
    train_on: str | Sequence[str]
    train_on_cut_turns: bool
    min_trainable_tokens: int
    format: Literal["auto", "openai", "sharegpt", "alpaca"]
    mapping: Mapping[str, Any] | None
    on_error: Literal["raise", "skip"]
    end_of_turn: str | None
    fast_tokenizer: bool | None
    special_tokens_in_content: Literal["keep", "escape", "error"]
    overflow: str | None
    cut_keep: str | None


@dataclass(frozen=True, eq=False)
class Plan:
    """Which piece of which sequence goes into which row, in row-major order.

    A piece is a whole sequence unless ``overlong`` split or truncated it (or the ``wrapped``
    strategy cut it). Row ``r`` holds pieces ``row_offsets[r]:row_offsets[r + 1]``. The
    per-piece arrays have the names and meaning of :class:`~seqpack.PackedBatch`'s
    per-segment arrays.
    """

    source_index: npt.NDArray[np.int64]
    """Input sequence of every piece."""
    chunk_index: npt.NDArray[np.int64]
    """Chunk of its sequence (0 unless split or wrapped)."""
    source_start: npt.NDArray[np.int64]
    """Offset of the piece's first token in its sequence."""
    seq_lens: npt.NDArray[np.int64]
    """Tokens in every piece."""
    row: npt.NDArray[np.int64]
    """Row of every piece."""
    row_offsets: npt.NDArray[np.int64]
    stats: PackStats
    events: list[Event]

    def __repr__(self) -> str:
        return (
            f"<Plan {self.num_rows:,} rows of {self.stats.max_length:,}, {len(self.seq_lens):,} "
            f"pieces, efficiency {self.stats.efficiency:.2%}>"
        )

    @property
    def num_rows(self) -> int:
        return len(self.row_offsets) - 1

    @property
    def slot(self) -> npt.NDArray[np.int64]:
        """Position of every piece inside its row (0 = first)."""
        return np.arange(len(self.row), dtype=np.int64) - self.row_offsets[self.row]

    def rows(self) -> list[npt.NDArray[np.int64]]:
        """The input sequences of each row, in slot order (what a length-grouped sampler
        needs)."""
        return [
            self.source_index[self.row_offsets[r] : self.row_offsets[r + 1]]
            for r in range(self.num_rows)
        ]


def _plan_options(
    *,
    max_length: Any,
    strategy: Any,
    max_seqs_per_row: Any,
    overlong: Any,
    truncate_keep: Any,
    pad_rows_to_multiple_of: Any,
    seed: Any,
) -> dict[str, Any]:
    return {
        "max_length": _normalise.integer("max_length", max_length),
        "strategy": _normalise.text("strategy", strategy),
        "max_seqs_per_row": _normalise.optional_integer("max_seqs_per_row", max_seqs_per_row),
        "overlong": _normalise.text("overlong", overlong),
        "truncate_keep": _normalise.text("truncate_keep", truncate_keep),
        "pad_rows_to_multiple_of": _normalise.integer(
            "pad_rows_to_multiple_of", pad_rows_to_multiple_of
        ),
        "seed": _normalise.seed(seed),
    }


def plan(
    lengths: Sequence[int] | npt.ArrayLike,
    *,
    max_length: int,
    strategy: StrategyName = "bfd",
    max_seqs_per_row: int | None = None,
    overlong: OverlongPolicy = "error",
    truncate_keep: TruncateKeep = "head",
    pad_rows_to_multiple_of: int = 1,
    seed: int | None = None,
) -> Plan:
    """Assign sequences of the given lengths to rows of ``max_length`` tokens, without
    touching tokens (what a sampler needs).

    >>> import seqpack
    >>> p = seqpack.plan([6, 5, 7, 4, 5, 3], max_length=10)
    >>> p.num_rows, [r.tolist() for r in p.rows()]
    (3, [[2, 5], [0, 3], [1, 4]])

    Parameters
    ----------
    lengths
        Tokens per sequence (a list or a 1-D integer array).
    max_length, strategy, max_seqs_per_row, overlong, truncate_keep, pad_rows_to_multiple_of, seed
        As for :func:`pack`.

    Returns
    -------
    Plan
        Every piece's sequence, chunk, start, length and row, the row boundaries, the figures
        (``stats``) and an event per sequence not packed whole.
    """
    try:
        array = np.asarray(lengths)
    except (OverflowError, ValueError, TypeError) as exc:
        raise InvalidOptionError(f"option lengths: not a 1-D list of integers ({exc})") from None
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise InvalidOptionError(
            f"option lengths: must be a 1-D list of integers, got dtype {array.dtype} "
            f"and shape {array.shape}"
        )
    if array.size and array.dtype.kind == "u" and int(array.max()) > np.iinfo(np.int64).max:
        raise InvalidOptionError("option lengths: a length is above the int64 range")
    raw = _seqpack.plan_lengths(
        np.ascontiguousarray(array, dtype=np.int64),
        _plan_options(
            max_length=max_length,
            strategy=strategy,
            max_seqs_per_row=max_seqs_per_row,
            overlong=overlong,
            truncate_keep=truncate_keep,
            pad_rows_to_multiple_of=pad_rows_to_multiple_of,
            seed=seed,
        ),
    )
    events = events_from_native(raw.pop("events"))
    stats = PackStats.from_native(raw.pop("stats"), events)
    return Plan(**raw, stats=stats, events=events)


def pack(
    sequences: TokenInput | EncodedConversations | Records,
    *,
    max_length: int,
    labels: Any = None,
    offsets: npt.ArrayLike | None = None,
    strategy: StrategyName = "bfd",
    max_seqs_per_row: int | None = None,
    overlong: OverlongPolicy | None = None,
    truncate_keep: TruncateKeep | None = None,
    pad_rows_to_multiple_of: int = 1,
    seed: int | None = None,
    pad_id: int = 0,
    dtype: Literal["int64", "int32"] = "int64",
    loss_weights: LossWeighting | None = None,
    tokenizer: Any = None,
    template: str | os.PathLike[str] | None = None,
    **encode_options: Unpack[EncodeKwargs],
) -> PackedBatch:
    """Pack sequences into rows of exactly ``max_length`` tokens, best fit over the whole
    input, with the metadata that keeps them independent.

    >>> import seqpack
    >>> batch = seqpack.pack([[5, 6, 7], [8, 9], [4]], max_length=4)
    >>> batch.input_ids.tolist()
    [[5, 6, 7, 4], [8, 9, 0, 0]]
    >>> batch.position_ids.tolist(), batch.segment_ids.tolist()
    ([[0, 1, 2, 0], [0, 1, 0, 1]], [[1, 1, 1, 2], [1, 1, 0, 0]])
    >>> batch.labels.tolist()
    [[-100, 6, 7, -100], [-100, 9, -100, -100]]

    Parameters
    ----------
    sequences
        Token sequences: a list of token lists, a list of 1-D integer arrays, or one flat
        integer array with ``offsets`` (the zero-copy path). Or the samples
        :func:`seqpack.encode` made (an :class:`~seqpack.EncodedConversations`). Or, with
        ``tokenizer=``, chat records, as sugar for ``pack(encode(records, ...), ...)``.
    max_length
        Tokens per row.
    labels
        Per-token labels shaped like ``sequences`` (-100 = not trained); default: every token
        is its own label. Either way the first token of every packed sequence gets -100,
        since nothing in its own sequence predicts it.
    offsets
        With a flat token array: ``offsets[i]:offsets[i + 1]`` is sequence ``i``.
    strategy
        ``"bfd"`` best-fit decreasing over the whole input (default), ``"ffd"`` first-fit
        decreasing, ``"sequential"`` next-fit in input order, ``"wrapped"`` concatenate and
        cut every ``max_length`` tokens.
    max_seqs_per_row
        At most this many sequences in one row (``None``: no limit).
    overlong
        A sequence longer than ``max_length``: ``"error"`` (the default for token input),
        ``"drop"``, ``"truncate"`` to ``max_length`` tokens (keeping ``truncate_keep``), or
        ``"split"`` into chunks, each its own segment. Whatever is not packed is counted in
        ``stats`` and listed in ``events``. With ``tokenizer=`` this is the conversation
        policy of :func:`seqpack.encode` (default ``"truncate"``, turn-aware).
    truncate_keep
        The end ``"truncate"`` keeps: ``"head"`` (default) or ``"tail"`` (``"ends"`` only
        for conversations).
    pad_rows_to_multiple_of
        Append all-padding rows until the row count is a multiple of this (e.g. the world
        size); they carry no trained token.
    seed
        Shuffle the order of rows reproducibly (``None``: planning order, longest first).
    pad_id
        Token id written on padding.
    dtype
        ``input_ids`` as ``"int64"`` (default, what embedding layers index with) or
        ``"int32"``.
    loss_weights
        ``"token"`` or ``"sequence"``: per-token weights so a packed weighted loss equals the
        unpacked token-mean or mean-of-sequence-means loss (see the README on losses).
    tokenizer, template
        For chat records: as for :func:`seqpack.encode`.
    **encode_options
        Other options of :func:`seqpack.encode` (``keep_first_turn``, ``train_on``,
        ``format``, ``mapping``, ``on_error``, ...), with ``tokenizer=`` only.

    Returns
    -------
    PackedBatch
        ``[rows, max_length]`` arrays, per-segment metadata, ``stats``, ``events``, and for
        conversations the per-record ``report``.
    """
    layout = {
        "pad_id": _normalise.integer("pad_id", pad_id),
        "loss_weights": _normalise.optional_text("loss_weights", loss_weights),
        "dtype": _normalise.text("dtype", dtype),
    }
    plan_options = {
        "max_length": max_length,
        "strategy": strategy,
        "max_seqs_per_row": max_seqs_per_row,
        "pad_rows_to_multiple_of": pad_rows_to_multiple_of,
        "seed": seed,
    }
    if tokenizer is not None:
        if labels is not None or offsets is not None:
            raise InvalidOptionError(
                "labels= and offsets= are for token input; with tokenizer= the labels come from "
                "the chat template (see train_on=)"
            )
        if isinstance(sequences, EncodedConversations):
            raise InvalidOptionError(
                "got encoded conversations and tokenizer=; they are encoded already"
            )
        sequences = encode(
            cast(Records, sequences),
            tokenizer=tokenizer,
            template=template,
            max_length=_normalise.integer("max_length", max_length),
            overlong=overlong or "truncate",
            truncate_keep=truncate_keep or "head",
            **encode_options,
        )
        # Every sample now fits: the packing stage never meets an overlong sequence.
        overlong, truncate_keep = "error", "head"
    elif encode_options or template is not None:
        names = sorted([*encode_options, *(["template"] if template is not None else [])])
        raise InvalidOptionError(
            f"option {names[0]}: {', '.join(names)} are options for chat records; pass "
            "tokenizer= with the records, or call seqpack.encode() first"
        )
    options = _plan_options(
        overlong=overlong or "error", truncate_keep=truncate_keep or "head", **plan_options
    )
    if isinstance(sequences, EncodedConversations):
        return _pack_encoded(sequences, options, layout)
    flat = flatten(cast(TokenInput, sequences), labels=labels, offsets=offsets)
    raw = _seqpack.pack_flat(flat.tokens, flat.offsets, flat.labels, options, layout)
    return _batch(raw)


def _pack_encoded(
    encoded: EncodedConversations, options: dict[str, Any], layout: dict[str, Any]
) -> PackedBatch:
    if len(encoded) == 0:
        summary = encoded.report.summary()
        reasons = ", ".join(f"{k}: {v}" for k, v in summary.reasons.items())
        raise EmptyInputError(
            f"none of the {summary.records} records left a sample to pack ({reasons}); see "
            "the report of seqpack.encode() for each record"
        )
    raw = _seqpack.pack_flat(encoded.tokens, encoded.offsets, encoded.labels, options, layout)
    return _batch(
        raw,
        sample_record=encoded.sample_record,
        sample_window=encoded.sample_window,
        report=encoded.report,
    )


def _batch(raw: dict[str, Any], **conversation: Any) -> PackedBatch:
    events = events_from_native(raw.pop("events"))
    stats = PackStats.from_native(raw.pop("stats"), events)
    return PackedBatch(**raw, stats=stats, events=events, **conversation)
