"""Packing a stream: best fit over a bounded window of records, rows emitted window after
window, resumable exactly, as a torch ``IterableDataset``.

For data that arrives as a stream (a generator, many large files, a Hugging Face
``IterableDataset``) and gets no lengths pass first. The source is read in windows of
``window`` records (per shard); each window is encoded (chat records with ``tokenizer=``) and
packed by itself with the same best fit as :func:`seqpack.pack`, and its rows are cut into
micro-batches of ``batch_rows`` rows, one stream of rows across windows. Memory is set by the
window, not by the stream. A window's rows are a pure function of its records and the
options, so the state is two numbers: the window being emitted and how many of its rows went
out. Resuming re-reads the records before that window (reading, not encoding) and replays the
window: nothing is lost, nothing repeats.

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
import torch
from torch.utils.data import IterableDataset, get_worker_info

from seqpack import _normalise
from seqpack.batch import rows_varlen
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

    def _pack(self, records: list[Any], first: int) -> Any:
        from seqpack import pack

        try:
            if self.tokenizer is not None:
                encoded = self._encode(records)
                for name, count in encoded.report.reasons().items():
                    self.stats.reasons[name] = self.stats.reasons.get(name, 0) + count
                return pack(encoded, **self.pack_options)
            sequences, labels = _token_records(records)
            return pack(sequences, labels=labels, **self.pack_options)
        except SeqpackError as error:
            raise type(error)(_global_record(str(error), first, self._shards)) from None

    def _batches(self, shard: int, shards: int) -> Iterator[dict[str, Any]]:
        pending: list[tuple[Any, int]] = []
        skip_rows = self._rows_done
        for index, records, first in self._windows(shard, shards):
            packed = self._pack(records, first)
            self.stats.windows += 1
            self.stats.records += len(records)
            self.stats.tokens += int(packed.stats.real_tokens)
            for row in range(skip_rows, packed.num_rows):
                pending.append((packed, row))
                if len(pending) == self.batch_rows:
                    batch = self._build(pending)
                    pending = []
                    self._window_index, self._rows_done = index, row + 1
                    yield batch
            skip_rows = 0
        while pending or (self.steps is not None and self._batches_done < self.steps):
            batch = self._build(pending)
            pending = []
            yield batch
        self._restart()

    def _restart(self) -> None:
        """A finished pass: the next iteration starts the stream again."""
        self._window_index = self._rows_done = self._batches_done = 0

    def _build(self, items: list[tuple[Any, int]]) -> dict[str, Any]:
        """One micro-batch from (packed window, row) pairs, padded with empty rows to
        ``batch_rows``."""
        if self.steps is not None and self._batches_done >= self.steps:
            raise InvalidOptionError(
                f"option steps: this rank has more than steps={self.steps} batches; pass the "
                "count scan() gives (the largest over ranks), so no row is left out"
            )
        self._batches_done += 1
        pad = self.batch_rows - len(items)
        self.stats.padding_rows += pad
        self.stats.rows += len(items)
        width = self.max_length
        pad_id = self.pack_options["pad_id"]
        weighted = self.pack_options["loss_weights"] is not None

        first_packed, first_row = items[0] if items else (None, 0)
        contiguous = not pad and all(
            p is first_packed and r == first_row + k for k, (p, r) in enumerate(items)
        )

        def rows_of(name: str, fill: float, dtype: Any) -> npt.NDArray[Any]:
            if contiguous:  # the common case: a slice of one window's rows, no copy
                return np.asarray(getattr(first_packed, name)[first_row : first_row + len(items)])
            parts = [getattr(p, name)[r] for p, r in items]
            if pad:
                if name == "position_ids":
                    parts += [np.arange(width, dtype=dtype)] * pad
                else:
                    parts += [np.full(width, fill, dtype=dtype)] * pad
            return np.stack(parts) if parts else np.zeros((0, width), dtype)

        if self.format == "rows":
            arrays = {
                "input_ids": rows_of("input_ids", pad_id, np.int64),
                "labels": rows_of("labels", -100, np.int64),
                "position_ids": rows_of("position_ids", 0, np.int64),
                "segment_ids": rows_of("segment_ids", 0, np.int32),
            }
            if weighted:
                arrays["loss_weights"] = rows_of("loss_weights", 0.0, np.float32)
            out: dict[str, Any] = {k: torch.from_numpy(v) for k, v in arrays.items()}
            out.update(rows_varlen(arrays["position_ids"], arrays["segment_ids"]))
        else:
            lengths: list[int] = []
            pieces: dict[str, list[npt.NDArray[Any]]] = {
                "input_ids": [], "labels": [], "position_ids": [], "loss_weights": []
            }  # fmt: skip
            for packed, row in items:
                segments = slice(packed.row_offsets[row], packed.row_offsets[row + 1])
                row_lengths = packed.seq_lens[segments].astype(np.int64)
                used = int(row_lengths.sum())
                lengths += row_lengths.tolist()
                for name in ("input_ids", "labels", "position_ids"):
                    pieces[name].append(getattr(packed, name)[row, :used])
                if weighted:
                    pieces["loss_weights"].append(packed.loss_weights[row, :used])
            if not lengths:  # only padding: one untrained token, so the step still runs
                lengths = [1]
                pieces["input_ids"] = [np.array([pad_id], np.int64)]
                pieces["labels"] = [np.array([-100], np.int64)]
                pieces["position_ids"] = [np.zeros(1, np.int64)]
                pieces["loss_weights"] = [np.zeros(1, np.float32)] if weighted else []
            cu = np.zeros(len(lengths) + 1, dtype=np.int32)
            np.cumsum(lengths, out=cu[1:])
            names = ["input_ids", "labels", "position_ids"] + (["loss_weights"] if weighted else [])
            out = {
                name: torch.from_numpy(np.concatenate(pieces[name])).unsqueeze(0) for name in names
            }
            cu_tensor = torch.from_numpy(cu)
            longest = max(lengths)
            out.update(
                cu_seq_lens_q=cu_tensor,
                cu_seq_lens_k=cu_tensor,
                max_length_q=longest,
                max_length_k=longest,
            )
        out["use_cache"] = False
        out["num_items_in_batch"] = max(1, int(np.count_nonzero(out["labels"].numpy() != -100)))
        return out


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
