"""The public entry points: :func:`plan` decides rows from lengths alone, :func:`pack`
plans and writes the arrays. Options are checked here and in the core; every bad value is a
:class:`~seqpack.SeqpackError` that names what is wrong."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np
import numpy.typing as npt

from seqpack import _seqpack
from seqpack.batch import PackedBatch
from seqpack.chat import Records, conversation_args, make_report, records_source
from seqpack.errors import InvalidOptionError
from seqpack.inputs import TokenInput, flatten
from seqpack.stats import Event, PackStats, events_from_native
from seqpack.tokenizer import load_template, load_tokenizer

StrategyName = Literal["bfd", "ffd", "sequential", "wrapped"]
OverlongPolicy = Literal["error", "drop", "truncate", "split"]
TruncateKeep = Literal["head", "tail"]
LossWeighting = Literal["token", "sequence"]

STRATEGIES: tuple[StrategyName, ...] = ("bfd", "ffd", "sequential", "wrapped")


@dataclass(frozen=True, eq=False)
class Plan:
    """Which piece of which sequence goes into which row, in row-major order.

    A piece is a whole sequence unless ``overlong`` split or truncated it (or the ``wrapped``
    strategy cut it). Row ``r`` holds pieces ``row_offsets[r]:row_offsets[r + 1]``.
    """

    source_index: npt.NDArray[np.int64]
    """Input sequence of every piece."""
    chunk_index: npt.NDArray[np.int64]
    """Chunk of its sequence (0 unless split or wrapped)."""
    start: npt.NDArray[np.int64]
    """Offset of the piece's first token in its sequence."""
    length: npt.NDArray[np.int64]
    row: npt.NDArray[np.int64]
    """Row of every piece."""
    row_offsets: npt.NDArray[np.int64]
    stats: PackStats
    events: list[Event]

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


def _check_int(name: str, value: Any, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidOptionError(f"option {name}: must be an integer, got {value!r}")


def _plan_kwargs(
    max_length: int,
    strategy: str,
    max_seqs_per_row: int | None,
    overlong: str,
    truncate_keep: str,
    pad_rows_to_multiple_of: int,
    seed: int | None,
) -> dict[str, Any]:
    _check_int("max_length", max_length)
    _check_int("max_seqs_per_row", max_seqs_per_row, optional=True)
    _check_int("pad_rows_to_multiple_of", pad_rows_to_multiple_of)
    _check_int("seed", seed, optional=True)
    if seed is not None and not 0 <= seed < 2**64:
        raise InvalidOptionError(f"option seed: must be in [0, 2**64), got {seed}")
    for name, value in (("strategy", strategy), ("overlong", overlong), ("truncate_keep", truncate_keep)):
        if not isinstance(value, str):
            raise InvalidOptionError(f"option {name}: must be a string, got {value!r}")
    return {
        "max_length": int(max_length),
        "strategy": strategy,
        "max_seqs_per_row": None if max_seqs_per_row is None else int(max_seqs_per_row),
        "overlong": overlong,
        "truncate_keep": truncate_keep,
        "pad_rows_to_multiple_of": int(pad_rows_to_multiple_of),
        "seed": None if seed is None else int(seed),
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
    touching tokens. Same options as :func:`pack`.

    >>> import seqpack
    >>> p = seqpack.plan([6, 5, 7, 4, 5, 3], max_length=10)
    >>> p.num_rows, [r.tolist() for r in p.rows()]
    (3, [[2, 5], [0, 3], [1, 4]])
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
        **_plan_kwargs(
            max_length, strategy, max_seqs_per_row, overlong, truncate_keep,
            pad_rows_to_multiple_of, seed,
        ),
    )
    events = events_from_native(raw.pop("events"))
    stats = PackStats.from_native(raw.pop("stats"), events)
    return Plan(**raw, stats=stats, events=events)


def pack(
    sequences: TokenInput | Records,
    *,
    max_length: int,
    tokenizer: Any = None,
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
    labels: Any = None,
    offsets: npt.ArrayLike | None = None,
    strategy: StrategyName = "bfd",
    max_seqs_per_row: int | None = None,
    overlong: OverlongPolicy = "error",
    truncate_keep: TruncateKeep = "head",
    pad_rows_to_multiple_of: int = 1,
    seed: int | None = None,
    pad_id: int = 0,
    dtype: Literal["int64", "int32"] = "int64",
    loss_weights: LossWeighting | None = None,
) -> PackedBatch:
    """Pack token sequences into rows of exactly ``max_length`` tokens.

    ``sequences`` is a list of token lists, a list of 1-D integer arrays, or one flat
    integer array with ``offsets`` (``offsets[i]:offsets[i + 1]`` is sequence ``i``; the
    zero-copy path). ``labels``, if given, has the same shape (-100 = not trained) and
    rides along; otherwise every token is its own label. Either way the first token of every
    packed sequence gets -100, since nothing in its own sequence predicts it.

    ``strategy``: ``"bfd"`` best-fit decreasing over the whole input (default), ``"ffd"``
    first-fit decreasing, ``"sequential"`` next-fit in input order, ``"wrapped"``
    concatenate and cut every ``max_length`` tokens. ``overlong`` decides what happens to a
    sequence longer than ``max_length``: ``"error"`` (default), ``"drop"``, ``"truncate"``
    (keeping ``truncate_keep``: ``"head"`` or ``"tail"``), or ``"split"`` into chunks, each
    its own segment; whatever is not packed is counted in ``stats`` and listed in
    ``events``. ``seed`` shuffles the order of rows reproducibly. ``loss_weights``
    (``"token"`` or ``"sequence"``) adds per-token weights so a packed weighted loss equals
    the unpacked token-mean or sequence-mean loss.

    >>> import seqpack
    >>> batch = seqpack.pack([[5, 6, 7], [8, 9], [4]], max_length=4)
    >>> batch.input_ids.tolist()
    [[5, 6, 7, 4], [8, 9, 0, 0]]
    >>> batch.position_ids.tolist(), batch.segment_ids.tolist()
    ([[0, 1, 2, 0], [0, 1, 0, 1]], [[1, 1, 1, 2], [1, 1, 0, 0]])
    >>> batch.labels.tolist()
    [[-100, 6, 7, -100], [-100, 9, -100, -100]]

    **Conversations.** With ``tokenizer=`` (a ``tokenizer.json`` path or folder, a
    ``tokenizers.Tokenizer``, or a transformers fast tokenizer), ``sequences`` are chat
    records instead: a list of OpenAI-messages / ShareGPT / Alpaca dicts, or a ``.json`` /
    ``.jsonl`` path (``format`` picks the layout, ``mapping`` renames fields and roles). Each
    is rendered with ``template`` (``"qwen3"``, ``"qwen2.5"``, ``"llama3"``, ``"mistral"``,
    a Jinja ``chat_template``, or ``None`` for the tokenizer's own), tokenized in Rust, and
    cut to ``max_length`` turn by turn: the system prompt and tools always stay (and the first
    turn with ``keep_first_turn``), whole turns go oldest first, a turn still too long alone
    is cut at token level on the ``cut_keep`` side (an assistant turn cut so is not trained
    unless ``train_on_cut_turns``); ``overflow="split"`` emits windows instead, so every
    assistant turn is trained once. Labels cover ``train_on`` roles' bodies (assistant:
    content and end-of-turn token, not the role header) or ``"all"``. A sample with fewer than
    ``min_trainable_tokens`` trained tokens is dropped, not emitted. Bad records raise a
    :class:`~seqpack.SeqpackError` naming the record (and line), or with ``on_error="skip"``
    are counted in ``batch.report``, which has one :class:`~seqpack.RecordReport` per record.
    """
    if dtype not in ("int64", "int32"):
        raise InvalidOptionError(f"option dtype: expected 'int64' or 'int32', got {dtype!r}")
    if loss_weights is not None and loss_weights not in ("token", "sequence"):
        raise InvalidOptionError(
            f"option loss_weights: expected 'token', 'sequence' or None, got {loss_weights!r}"
        )
    _check_int("pad_id", pad_id)
    if tokenizer is not None:
        if labels is not None or offsets is not None:
            raise InvalidOptionError(
                "labels= and offsets= are for token input; with tokenizer= the labels come from "
                "the chat template (see train_on=)"
            )
        return _pack_conversations(
            sequences, tokenizer=tokenizer, template=template, mapping=mapping,
            args=conversation_args(
                format=format, max_length=max_length, keep_first_turn=keep_first_turn,
                overflow=overflow, cut_keep=cut_keep, train_on_cut_turns=train_on_cut_turns,
                train_on=train_on, min_trainable_tokens=min_trainable_tokens, on_error=on_error,
            ),
            strategy=strategy, max_seqs_per_row=max_seqs_per_row,
            pad_rows_to_multiple_of=pad_rows_to_multiple_of, seed=seed, pad_id=pad_id,
            dtype=dtype, loss_weights=loss_weights,
        )
    if isinstance(sequences, (str, os.PathLike)) and (
        str(sequences).endswith((".json", ".jsonl")) or os.path.isfile(sequences)
    ):
        raise InvalidOptionError(
            "got a path without tokenizer=; pass tokenizer= to pack chat records from a file"
        )
    flat = flatten(cast(TokenInput, sequences), labels=labels, offsets=offsets)
    raw = _seqpack.pack_flat(
        flat.tokens,
        flat.offsets,
        flat.labels,
        **_plan_kwargs(
            max_length, strategy, max_seqs_per_row, overlong, truncate_keep,
            pad_rows_to_multiple_of, seed,
        ),
        pad_id=int(pad_id),
        output_dtype=dtype,
        loss_weights=loss_weights,
    )
    events = events_from_native(raw.pop("events"))
    stats = PackStats.from_native(raw.pop("stats"), events)
    return PackedBatch(**raw, stats=stats, events=events)


def _pack_conversations(
    records: Any, *, tokenizer: Any, template: Any, mapping: Mapping[str, Any] | None,
    args: dict[str, Any], strategy: str, max_seqs_per_row: int | None,
    pad_rows_to_multiple_of: int, seed: int | None, pad_id: int, dtype: str,
    loss_weights: str | None,
) -> PackedBatch:
    loaded = load_tokenizer(tokenizer)
    native_template = load_template(template, loaded)
    objects, path = records_source(records)
    plan_kwargs = _plan_kwargs(
        args["max_length"], strategy, max_seqs_per_row, "error", "head",
        pad_rows_to_multiple_of, seed,
    )
    raw = _seqpack.pack_records(
        objects, path, loaded.native, native_template, dict(mapping) if mapping else None, args,
        strategy=plan_kwargs["strategy"], max_seqs_per_row=plan_kwargs["max_seqs_per_row"],
        pad_rows_to_multiple_of=plan_kwargs["pad_rows_to_multiple_of"],
        seed=plan_kwargs["seed"], pad_id=int(pad_id), output_dtype=dtype,
        loss_weights=loss_weights,
    )
    report = make_report(raw.pop("reports"))
    events = events_from_native(raw.pop("events"))
    stats = PackStats.from_native(raw.pop("stats"), events)
    return PackedBatch(**raw, stats=stats, events=events, report=report)
