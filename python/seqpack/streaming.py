"""Packing a stream: best fit over a bounded window of records, rows emitted window after
window, resumable exactly, as a torch ``IterableDataset``.

For data that arrives as a stream (a generator, many large files, a Hugging Face
``IterableDataset``) and gets no lengths pass first. The source is read in windows of
``window`` records (per shard); each window is encoded (chat records with ``tokenizer=``) and
planned by itself with the same best fit as :func:`seqpack.pack`, and its rows are cut into
micro-batches of ``batch_rows`` rows, one stream of rows across windows. Each micro-batch is
materialised in Rust when it is asked for, as :class:`seqpack.torch.PackedLoader` builds its
batches from a store, in the same format: a window holds its tokens, never all its rows.
Memory is set by the window, not by the stream. A window's rows are a pure function of its
records and the options, so the state is two numbers: the window being emitted and how many
of its rows went out. Resuming re-reads the records before that window (reading, not
encoding) and replays the window: nothing is lost, nothing repeats.

**Sharding.** Record ``i`` of the source belongs to shard ``i % (world_size × workers)``;
rank ``r``'s DataLoader worker ``w`` reads shard ``r × workers + w``. Every record is in
exactly one shard. Ranks may get different numbers of batches; :func:`scan` counts them
(lengths only) and ``steps=`` then makes every rank yield exactly that many (the short ones
add batches of padding rows that train nothing).

>>> import seqpack
>>> stream = seqpack.stream([[1, 2, 3], [4, 5], [6, 7, 8, 9], [10]], max_length=5,
...                         window=2, batch_rows=1)
>>> [b["input_ids"].tolist() for b in stream]
[[[1, 2, 3, 4, 5]], [[6, 7, 8, 9, 10]]]
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from torch.utils.data import IterableDataset, get_worker_info

from seqpack import _normalise
from seqpack.errors import InvalidOptionError, SeqpackError

STATE_VERSION = 1


def _records(source: Any) -> Iterator[Any]:
    """Every record of ``source`` in order: a path, a glob or a list of them (.json, .jsonl,
    .parquet), a Hugging Face dataset, or any iterable of records or token sequences."""
    from seqpack.store import _dataset_rows, _jsonl_or_json, _parquet_batches, _paths

    paths = _paths(source)
    if paths is not None:
        for path in paths:
            if path.suffix == ".parquet":
                for batch in _parquet_batches(path, 4096):
                    yield from batch.to_pylist()
            else:
                yield from _jsonl_or_json(path)
        return
    if type(source).__module__.split(".")[0] == "datasets":
        yield from _dataset_rows(source, 4096)
        return
    if isinstance(source, (str, bytes, Mapping)) or not isinstance(source, Iterable):
        raise InvalidOptionError(
            "option source: expected chat records or token sequences (an iterable), a "
            f".json/.jsonl/.parquet path or a datasets.Dataset, got {type(source).__name__}"
        )
    yield from source


@dataclass
class StreamStats:
    """What a pass has done so far (this shard): windows packed, their records and real
    tokens, rows emitted, rows of padding added; the records the encoder dropped or truncated."""

    windows: int = 0
    records: int = 0
    rows: int = 0
    tokens: int = 0
    padding_rows: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    """Records the encoder dropped or truncated (for chat records), by reason."""


class PackedStream(IterableDataset[dict[str, Any]]):
    """Micro-batches of packed rows from a stream; see the module docstring. Iterate it (it
    is a torch ``IterableDataset``), or hand it to a ``DataLoader(stream, batch_size=None)``.

    Parameters
    ----------
    source
        Chat records (with ``tokenizer=``) or token sequences (lists, arrays, or dicts with
        ``input_ids`` and optional ``labels``), as an iterable, files or a dataset.
    max_length
        Tokens per row.
    window
        Records per window (per shard): the memory bound and the packing horizon.
    batch_rows
        Rows per micro-batch.
    format
        ``"rows"``: ``[batch_rows, max_length]`` tensors (plus ``segment_ids``), or
        ``"padding_free"``: the real tokens as ``[1, T]`` with ``cu_seq_lens_q/k``; both safe
        as ``model(**batch)``, as :class:`seqpack.torch.PackedLoader` gives them.
    mask
        For ``format="rows"``, as for :class:`seqpack.torch.PackedLoader`: ``None``, or an
        explicit ``"sdpa"`` / ``"eager"`` 4-D block-causal mask or a ``"flex"`` ``BlockMask``.
    world_size, rank
        Data-parallel sharding of the records.
    steps
        Yield exactly this many batches (from :func:`scan`, the largest count over ranks):
        batches of padding rows after the data. A rank with more batches than ``steps``
        raises rather than leave rows out.
    tokenizer, template, **encode_options
        As for :func:`seqpack.encode`; without ``tokenizer`` the records are token sequences.
    strategy, max_seqs_per_row, overlong, truncate_keep, loss_weights, pad_id
        As for :func:`seqpack.pack`.
    """

    def __init__(
        self,
        source: Any,
        *,
        max_length: int,
        window: int = 10_000,
        batch_rows: int = 8,
        format: Literal["rows", "padding_free"] = "rows",
        mask: Literal["sdpa", "eager", "flex"] | None = None,
        world_size: int = 1,
        rank: int = 0,
        steps: int | None = None,
        tokenizer: Any = None,
        template: str | os.PathLike[str] | None = None,
        strategy: Literal["bfd", "ffd", "sequential", "wrapped"] = "bfd",
        max_seqs_per_row: int | None = None,
        overlong: Literal["error", "drop", "truncate", "split"] | None = None,
        truncate_keep: Literal["head", "tail"] | None = None,
        loss_weights: Literal["token", "sequence"] | None = None,
        pad_id: int = 0,
        **encode_options: Any,
    ) -> None:
        self.source = source
        self.max_length = _normalise.integer("max_length", max_length)
        self.window = _positive("window", window)
        self.batch_rows = _positive("batch_rows", batch_rows)
        if format not in ("rows", "padding_free"):
            raise InvalidOptionError(
                f"option format: expected 'rows' or 'padding_free', got {format!r}"
            )
        self.format = format
        from seqpack.torch import _check_mask

        _check_mask(mask, format)
        self.mask = mask
        self.world_size = _positive("world_size", world_size)
        self.rank = _normalise.integer("rank", rank)
        if not 0 <= self.rank < self.world_size:
            raise InvalidOptionError(
                f"option rank: must be in 0..{self.world_size - 1}, got {rank}"
            )
        self.steps = None if steps is None else _positive("steps", steps)
        self.tokenizer = tokenizer
        if tokenizer is None and (template is not None or encode_options):
            names = sorted({*encode_options, *(["template"] if template is not None else [])})
            raise InvalidOptionError(
                f"option {names[0]}: {', '.join(names)} are options for chat records; pass "
                "tokenizer= too, or leave them out for token sequences"
            )
        self.template = template
        self.encode_options = encode_options
        self.pack_options: dict[str, Any] = {
            "max_length": self.max_length,
            "strategy": strategy,
            "max_seqs_per_row": max_seqs_per_row,
            "overlong": overlong,
            "truncate_keep": truncate_keep,
            "loss_weights": loss_weights,
            "pad_id": _normalise.integer("pad_id", pad_id),
        }
        self._window_index = 0
        self._rows_done = 0
        self._batches_done = 0
        self._shards = self.world_size
        self.stats = StreamStats()
        identity = {
            "max_length": self.max_length,
            "window": self.window,
            "batch_rows": self.batch_rows,
            "pack": {k: v for k, v in self.pack_options.items() if k != "pad_id"},
            "tokenizer": None if tokenizer is None else str(tokenizer),
            "template": None if template is None else str(template),
            "encode": {k: repr(v) for k, v in sorted(encode_options.items())},
        }
        self.fingerprint = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
        """What a saved state must match: the options that decide the rows (not the source)."""

    # -- the torch IterableDataset protocol ------------------------------------------------

    def __iter__(self) -> Iterator[dict[str, Any]]:
        shard, shards = self._shard()
        if shards != self._shards and (self._window_index or self._rows_done):
            raise InvalidOptionError(
                f"option state: made with {self._shards} shards, this run has {shards} "
                "(world_size × DataLoader workers must stay the same to resume a stream)"
            )
        self._shards = shards
        return self._batches(shard, shards)

    def __len__(self) -> int:
        if self.steps is None:
            raise TypeError("a stream has no length until scanned: pass steps= (see scan())")
        return self.steps

    def state_dict(self) -> dict[str, Any]:
        """Where this shard stands: the window being emitted and its rows already out (a
        state is taken between batches). Under torch DataLoader workers, torchdata's
        ``StatefulDataLoader`` keeps one per worker."""
        return {
            "version": STATE_VERSION,
            "window": self._window_index,
            "rows": self._rows_done,
            "batches": self._batches_done,
            "shards": self._shards,
            "fingerprint": self.fingerprint,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume where ``state`` stood: the next batch is the one an uninterrupted pass would
        have yielded next."""
        missing = {"version", "window", "rows", "batches", "shards", "fingerprint"} - set(state)
        if missing:
            raise InvalidOptionError(
                f"option state: not a stream state (missing {', '.join(sorted(missing))})"
            )
        if state["version"] != STATE_VERSION:
            raise InvalidOptionError(
                f"option state: version {state['version']}, this seqpack reads {STATE_VERSION}"
            )
        if state["fingerprint"] != self.fingerprint:
            raise InvalidOptionError(
                "option state: made for other options (max_length, window, batch_rows, packing "
                "or encoding options differ); resume with the options of the run that saved it"
            )
        self._window_index = int(state["window"])
        self._rows_done = int(state["rows"])
        self._batches_done = int(state["batches"])
        self._shards = int(state["shards"])

    # -- internals ---------------------------------------------------------------------------

    def _shard(self) -> tuple[int, int]:
        info = get_worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        return self.rank * workers + worker, self.world_size * workers

    def _windows(self, shard: int, shards: int) -> Iterator[tuple[int, list[Any], int]]:
        """(window index, its records, global index of its first record) from the resumed
        window on; earlier windows are read past, not encoded."""
        mine = (
            (index, record)
            for index, record in enumerate(_records(self.source))
            if index % shards == shard
        )
        skip = self._window_index * self.window
        for _ in itertools.islice(mine, skip):
            pass
        index = self._window_index
        while chunk := list(itertools.islice(mine, self.window)):
            yield index, [record for _, record in chunk], chunk[0][0]
            index += 1

    def _encode(self, records: list[Any]) -> Any:
        """A window's chat records encoded with this stream's options."""
        from seqpack.chat import encode

        return encode(
            records,
            tokenizer=self.tokenizer,
            template=self.template,
            max_length=self.max_length,
            **self.encode_options,
        )

    def _pack(self, records: list[Any], first: int) -> _Window | None:
        """A window's records planned (encoded first, for chat records); None when the
        encoder left no sample (each record's reason is in the counts)."""
        from seqpack import _seqpack
        from seqpack.inputs import flatten

        options = self.pack_options
        overlong, keep = options["overlong"] or "error", options["truncate_keep"] or "head"
        try:
            if self.tokenizer is not None:
                encoded = self._encode(records)
                for name, count in encoded.report.reasons().items():
                    self.stats.reasons[name] = self.stats.reasons.get(name, 0) + count
                if len(encoded) == 0:
                    return None
                tokens, offsets, labels = encoded.tokens, encoded.offsets, encoded.labels
                overlong, keep = "error", "head"  # the encoder made every sample fit
            else:
                sequences, given = _token_records(records)
                flat = flatten(sequences, labels=given)
                tokens, offsets, labels = flat.tokens, flat.offsets, flat.labels
            native = _seqpack.NativeWindow(
                _held(tokens), _held(offsets), None if labels is None else _held(labels),
                *self._window_options(overlong, keep),
            )  # fmt: skip
        except SeqpackError as error:
            raise type(error)(_global_record(str(error), first, self._shards)) from None
        return _Window(native, int(native.report()["stats"]["real_tokens"]))

    def _window_options(self, overlong: str, keep: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """A window's plan and layout options, as :func:`seqpack.pack` makes them."""
        from seqpack.pack import _plan_options

        options = self.pack_options
        plan = _plan_options(
            max_length=self.max_length, strategy=options["strategy"],
            max_seqs_per_row=options["max_seqs_per_row"], overlong=overlong, truncate_keep=keep,
            pad_rows_to_multiple_of=1, seed=None,
        )  # fmt: skip
        layout = {"pad_id": options["pad_id"], "loss_weights": options["loss_weights"],
                  "dtype": "int64"}  # fmt: skip
        return plan, layout

    def _batches(self, shard: int, shards: int) -> Iterator[dict[str, Any]]:
        pending: list[tuple[_Window, int]] = []
        skip_rows = self._rows_done
        # The state after the stream's last rows went out: its last window, all rows done.
        last = (self._window_index, self._rows_done)
        for index, records, first in self._windows(shard, shards):
            window = self._pack(records, first)
            self.stats.windows += 1
            self.stats.records += len(records)
            rows = 0 if window is None else window.native.rows
            if window is not None:
                self.stats.tokens += window.tokens
            for row in range(skip_rows, rows):
                assert window is not None
                pending.append((window, row))
                if len(pending) == self.batch_rows:
                    batch = self._build(pending)
                    pending = []
                    self._window_index, self._rows_done = index, row + 1
                    yield batch
            skip_rows = 0
            last = (index, rows)
            window = None  # only rows still pending keep it: not held while the next is made
        while pending or (self.steps is not None and self._batches_done < self.steps):
            batch = self._build(pending)
            pending = []
            self._window_index, self._rows_done = last
            yield batch
        self._restart()

    def _restart(self) -> None:
        """A finished pass: the next iteration starts the stream again."""
        self._window_index = self._rows_done = self._batches_done = 0

    def _build(self, items: list[tuple[_Window, int]]) -> dict[str, Any]:
        """One micro-batch from (window, row) pairs, padded with empty rows to
        ``batch_rows``: each window's rows materialised in Rust, as the loader's are."""
        from seqpack import _seqpack
        from seqpack.torch import _model_inputs

        if self.steps is not None and self._batches_done >= self.steps:
            raise InvalidOptionError(
                f"option steps: this rank has more than steps={self.steps} batches; pass the "
                "count scan() gives (the largest over ranks), so no row is left out"
            )
        self._batches_done += 1
        pad = self.batch_rows - len(items)
        self.stats.padding_rows += pad
        self.stats.rows += len(items)
        groups: list[tuple[Any, list[int]]] = []
        for window, row in items:
            if groups and groups[-1][0] is window.native:
                groups[-1][1].append(row)
            else:
                groups.append((window.native, [row]))
        if pad:
            if not groups:  # only padding: any window gives it; a one-token one, unused
                # Made here, not kept: a stream pickles (DataLoader workers), a window not.
                padding = _seqpack.NativeWindow(
                    np.zeros(1, np.int64), np.array([0, 1], np.int64), None,
                    *self._window_options("error", "head"),
                )  # fmt: skip
                groups.append((padding, []))
            groups[-1][1].extend([-1] * pad)
        padding_free = self.format == "padding_free"
        raws = [native.materialize(np.array(rows, np.int64), padding_free)
                for native, rows in groups]  # fmt: skip
        return _model_inputs(_joined(raws, padding_free), padding_free, self.mask)


def _held(values: Any) -> npt.NDArray[np.int64]:
    """An int64 array a window holds (not copied when it is one already), made read-only:
    the window reads it for every batch and checked it once."""
    array = np.asarray(values, dtype=np.int64)
    array.flags.writeable = False
    return array


@dataclass(frozen=True)
class _Window:
    native: Any
    """The window's ``NativeWindow``: its plan, materialising rows on request."""
    tokens: int
    """Real tokens in its rows."""


def _joined(raws: list[dict[str, Any]], padding_free: bool) -> dict[str, Any]:
    """Micro-batch arrays of consecutive parts (rows of two windows) as one micro-batch."""
    if len(raws) == 1:
        return raws[0]
    names = ["input_ids", "labels", "position_ids", "loss_weights"]
    bounds, longest = ("cu_seqlens", "max_seqlen") if padding_free else (
        "row_cu_seqlens", "row_max_seqlen")  # fmt: skip
    if not padding_free:
        names.append("segment_ids")
    joined: dict[str, Any] = {
        name: np.concatenate([raw[name] for raw in raws]) for name in names if name in raws[0]
    }
    shift = 0
    pieces = [raws[0][bounds][:1]]
    for raw in raws:
        pieces.append(raw[bounds][1:] + shift)
        shift += int(raw[bounds][-1])
    joined[bounds] = np.concatenate(pieces).astype(np.int32)
    joined[longest] = max(int(raw[longest]) for raw in raws)
    joined["trained_tokens"] = sum(int(raw["trained_tokens"]) for raw in raws)
    return joined


def _positive(name: str, value: Any) -> int:
    number = _normalise.integer(name, value)
    if number < 1:
        raise InvalidOptionError(f"option {name}: must be >= 1, got {value!r}")
    return number


def _token_records(records: list[Any]) -> tuple[list[Any], list[Any] | None]:
    """Token sequences and their labels (if given) from lists, arrays or ``input_ids`` dicts."""
    if records and isinstance(records[0], Mapping):
        for k, row in enumerate(records):
            if not isinstance(row, Mapping) or "input_ids" not in row:
                raise InvalidOptionError(f"record {k}: field 'input_ids' is missing")
        labels = [row["labels"] for row in records] if "labels" in records[0] else None
        return [row["input_ids"] for row in records], labels
    return records, None


def _global_record(message: str, first: int, shards: int) -> str:
    """An error about window record ``k`` names the source's record (shards interleave)."""
    import re

    def rename(match: re.Match[str]) -> str:
        return f"{match.group(1)} {first + int(match.group(2)) * shards}"

    return re.sub(r"\b(record|sequence) (\d+)", rename, message, count=1)


@dataclass(frozen=True)
class Scan:
    """What a pass yields, per rank, computed from lengths (no rows are built)."""

    rows: list[int]
    batches: list[int]
    """Per rank, over its DataLoader workers."""
    tokens: list[int]
    max_length: int
    shard_batches: list[int] = field(default_factory=list)
    """Per shard (rank × workers + worker): what each iterator yields."""

    @property
    def steps(self) -> int:
        """Pass it as ``steps=``: every shard's iterator (each DataLoader worker, or the rank
        itself without workers) then yields exactly this many batches, so every rank yields
        ``workers × steps``."""
        return max(self.shard_batches, default=0)

    @property
    def efficiency(self) -> float:
        capacity = sum(self.rows) * self.max_length
        return sum(self.tokens) / capacity if capacity else 0.0


def scan(source: Any, *, world_size: int = 1, num_workers: int = 0, **options: Any) -> Scan:
    """Count what :class:`PackedStream` with ``options`` yields on every rank: rows, batches
    and tokens, exactly (the same windows and plans, lengths only), for a correct
    learning-rate schedule and ``steps=``. ``num_workers``: the DataLoader workers per rank
    the stream will run under (sharding depends on it)."""
    from seqpack import plan

    probe = PackedStream(source, world_size=world_size, **options)
    workers = max(1, num_workers)
    shards = world_size * workers
    rows = [0] * world_size
    batches = [0] * world_size
    tokens = [0] * world_size
    shard_batches: list[int] = []
    plan_options = {
        k: v
        for k, v in probe.pack_options.items()
        if k not in ("loss_weights", "pad_id") and v is not None
    }
    for rank in range(world_size):
        for worker in range(workers):
            shard = rank * workers + worker
            shard_rows = 0
            for _, records, first in probe._windows(shard, shards):
                try:
                    if probe.tokenizer is not None:
                        lengths = np.diff(probe._encode(records).offsets)
                    else:
                        sequences, _ = _token_records(records)
                        lengths = np.array([len(s) for s in sequences], dtype=np.int64)
                    planned = plan(lengths, **plan_options)
                except SeqpackError as error:
                    raise type(error)(_global_record(str(error), first, shards)) from None
                shard_rows += planned.num_rows
                tokens[rank] += int(planned.stats.real_tokens)
            rows[rank] += shard_rows
            shard_batches.append(-(-shard_rows // probe.batch_rows))
            batches[rank] += shard_batches[-1]
    return Scan(rows, batches, tokens, probe.max_length, shard_batches)


class _Stream:
    """``seqpack.stream(source, ...)`` builds a :class:`PackedStream`;
    ``seqpack.stream.scan(source, ...)`` counts what it yields."""

    def __call__(self, source: Any, **options: Any) -> PackedStream:
        return PackedStream(source, **options)

    def scan(self, source: Any, **options: Any) -> Scan:
        return scan(source, **options)


stream = _Stream()


__all__ = ["PackedStream", "Scan", "StreamStats", "scan", "stream"]
