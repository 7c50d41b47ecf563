"""The on-disk token store: :func:`write` encodes a dataset of any size into a folder, chunk by
chunk (memory bounded by the chunk, not the dataset); :func:`open` maps it back without
reading it, for training processes to pack and load from.

>>> import seqpack, tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp()) / "store"
>>> store = seqpack.store.write(folder, [[5, 6, 7], [8, 9]])
>>> len(store), store.lengths.tolist(), store[1][0].tolist()
(2, [3, 2], [8, 9])
"""

from __future__ import annotations

import builtins
import glob
import itertools
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from seqpack import _normalise, _seqpack
from seqpack.chat import check_record_items, check_records_container, encode_options
from seqpack.errors import InvalidOptionError, InvalidStoreError
from seqpack.inputs import flatten
from seqpack.report import RecordReport, ReportSummary
from seqpack.tokenizer import load_template, load_tokenizer

CHUNK_SIZE = 16384
"""Records encoded (or sequences appended) per chunk: large enough to keep every core busy
between chunks (at 4,096 a 2-core machine wrote at 86% of in-memory encoding's speed, at
16,384 at 97%), small enough that memory stays flat (about 160 MB of samples in flight)."""

_FILES = {
    "tokens": ("tokens.u32", np.uint32),
    "offsets": ("offsets.i64", np.int64),
    "lengths": ("lengths.u32", np.uint32),
    "trained": ("trained.bits", np.uint8),
    "labels": ("labels.i32", np.int32),
    "sample_record": ("sample_record.i64", np.int64),
    "sample_window": ("sample_window.i32", np.int32),
}


def _map(path: Path, name: str) -> npt.NDArray[Any]:
    file, dtype = _FILES[name]
    if (path / file).stat().st_size == 0:  # numpy cannot map an empty file
        return np.zeros(0, dtype=dtype)
    return np.memmap(path / file, dtype=np.dtype(dtype).newbyteorder("<"), mode="r")


class TokenStore:
    """A store opened for reading: every array is memory-mapped, nothing is read up front
    beyond the manifest and a check of the offsets."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        manifest_file = self.path / "manifest.json"
        if not self.path.is_dir():
            raise InvalidStoreError(f"token store {self.path}: no such folder")
        if not manifest_file.is_file():
            raise InvalidStoreError(
                f"token store {self.path}: no manifest.json (an unfinished write leaves none)"
            )
        sizes = {p.name: p.stat().st_size for p in self.path.iterdir() if p.is_file()}
        try:
            manifest_text = manifest_file.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise InvalidStoreError(
                f"token store {self.path}: manifest.json is not UTF-8 (byte {error.start}); the "
                "store is corrupted"
            ) from None
        self.manifest: dict[str, Any] = _seqpack.store_check(str(self.path), manifest_text, sizes)
        self.tokens = _map(self.path, "tokens")
        self.offsets = _map(self.path, "offsets")
        self.lengths = _map(self.path, "lengths")
        """Tokens per sample (what planning reads)."""
        self.sample_record = _map(self.path, "sample_record")
        """The input record of every sample."""
        self.sample_window = _map(self.path, "sample_window")
        self._trained_bits = _map(self.path, "trained")
        self._labels = _map(self.path, "labels") if self.manifest["labels"] == "int32" else None
        _seqpack.store_check_offsets(
            str(self.path),
            np.asarray(self.offsets),
            np.asarray(self.lengths),
            self.manifest["tokens"],
        )

    def __len__(self) -> int:
        return int(self.manifest["samples"])

    def __repr__(self) -> str:
        m = self.manifest
        return (
            f"<TokenStore {self.path}: {m['samples']:,} samples, {m['tokens']:,} tokens from "
            f"{m['records']:,} records ({m['kind']})>"
        )

    @property
    def fingerprint(self) -> str:
        """blake3 of the data files: the same wherever the store is copied."""
        return str(self.manifest["fingerprint"])

    def trained(self, start: int, stop: int) -> npt.NDArray[np.bool_]:
        """Whether each token in ``start:stop`` (positions in the whole store) is trained."""
        first, last = start // 8, (stop + 7) // 8
        bits = np.unpackbits(np.asarray(self._trained_bits[first:last]), bitorder="little")
        return bits[start - first * 8 : stop - first * 8].astype(bool)

    def __getitem__(self, index: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Tokens and labels (-100 = not trained) of one sample."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample {index} is outside 0..{len(self) - 1}")
        index %= len(self)
        start, stop = int(self.offsets[index]), int(self.offsets[index + 1])
        tokens = np.asarray(self.tokens[start:stop], dtype=np.int64)
        if self._labels is not None:
            return tokens, np.asarray(self._labels[start:stop], dtype=np.int64)
        return tokens, np.where(self.trained(start, stop), tokens, -100)

    @property
    def report(self) -> StoreReport:
        """The per-record report written with the store (conversations)."""
        return StoreReport(self.path / "report.jsonl")


class StoreReport:
    """A store's per-record reports, read from ``report.jsonl`` when first asked for."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._records: list[RecordReport] | None = None

    @property
    def records(self) -> list[RecordReport]:
        if self._records is None:
            with builtins.open(self._path, encoding="utf-8") as lines:
                self._records = [RecordReport(**json.loads(line)) for line in lines if line.strip()]
        return self._records

    def __len__(self) -> int:
        return len(self.records)

    def summary(self) -> ReportSummary:
        """Totals over all records."""
        statuses: dict[str, int] = {}
        reasons: dict[str, int] = {}
        removed: dict[str, int] = {}
        totals = [0, 0, 0, 0]
        for r in self.records:
            statuses[r.status] = statuses.get(r.status, 0) + 1
            reasons[r.reason] = reasons.get(r.reason, 0) + 1
            for role, n in r.tokens_removed.items():
                removed[role] = removed.get(role, 0) + n
            for k, n in enumerate(
                (r.tokens_before, r.tokens_after, r.trained_before, r.trained_after)
            ):
                totals[k] += n
        return ReportSummary(len(self.records), statuses, reasons, removed, *totals)


def open(path: str | os.PathLike[str]) -> TokenStore:
    """Open a store written by :func:`write`, memory-mapped.

    Parameters
    ----------
    path
        The store's folder.

    Raises
    ------
    InvalidStoreError
        The folder is not a finished store, a file is missing or has the wrong size (a
        truncated copy), or its layout version is not one this seqpack reads.
    """
    return TokenStore(path)


@dataclass
class _Progress:
    callback: Callable[[int], None] | None
    records: int = 0

    def __call__(self, records: int) -> None:
        self.records = records
        if self.callback is not None:
            self.callback(records)


def write(
    path: str | os.PathLike[str],
    source: Any,
    *,
    tokenizer: Any = None,
    template: str | os.PathLike[str] | None = None,
    max_length: int | None = None,
    chunk_size: int = CHUNK_SIZE,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    **encode_kwargs: Any,
) -> TokenStore:
    """Encode ``source`` into a token store at ``path``, chunk by chunk.

    Parameters
    ----------
    path
        The store's folder; written under a staging name beside it and renamed at the end, so
        an interrupted write leaves nothing that opens.
    source
        With ``tokenizer=``: chat records, as a list or any iterable of dicts, ``.json`` /
        ``.jsonl`` / ``.parquet`` paths or globs (``.json``/``.jsonl`` are read and encoded in
        Rust), or a Hugging Face ``datasets.Dataset`` / ``IterableDataset``. Without: token
        sequences (lists, 1-D arrays, or dicts with ``input_ids`` and optional ``labels``), a
        ``.parquet`` file with an ``input_ids`` list column, or a dataset with one (Arrow
        columns are read without a Python-object round trip).
    tokenizer, template, max_length, **encode_kwargs
        As for :func:`seqpack.encode` (``max_length`` is required with a tokenizer).
    chunk_size
        Records per chunk; peak memory follows it, not the dataset size.
    overwrite
        Replace an existing store at ``path``.
    progress
        Called with the number of records written so far, after each chunk.

    Returns
    -------
    TokenStore
        The new store, opened.
    """
    chunk_size = _normalise.integer("chunk_size", chunk_size)
    if chunk_size < 1:
        raise InvalidOptionError(f"option chunk_size: must be at least 1, got {chunk_size}")
    target = Path(path)
    kind = "conversations" if tokenizer is not None else "tokens"
    if tokenizer is None and (encode_kwargs or template is not None or max_length is not None):
        names = sorted(
            [
                *encode_kwargs,
                *(
                    n
                    for n, v in (("template", template), ("max_length", max_length))
                    if v is not None
                ),
            ]
        )
        raise InvalidOptionError(
            f"option {names[0]}: {', '.join(names)} are options for chat records; pass tokenizer="
        )
    writer = _seqpack.NativeStoreWriter(str(target), kind, bool(overwrite))
    tracker = _Progress(progress)
    try:
        if tokenizer is not None:
            if max_length is None:
                raise InvalidOptionError(
                    "option max_length: required with tokenizer= (the sample budget)"
                )
            source_info = _write_conversations(
                writer, source, tokenizer, template, max_length, chunk_size, tracker, encode_kwargs
            )
        else:
            source_info = _write_tokens(writer, source, chunk_size, tracker)
        from seqpack import __version__

        source_info["seqpack"] = __version__
        writer.finish(json.dumps(source_info))
    except BaseException:
        writer.abort()
        raise
    return TokenStore(target)


def _paths(source: Any, option: str = "source") -> list[Path] | None:
    """Files named by ``source`` (a path, a glob, or a list of them), or None; errors name
    ``option``."""
    items = source if isinstance(source, (list, tuple)) else [source]
    if not items or not all(isinstance(i, (str, os.PathLike)) for i in items):
        return None
    paths: list[Path] = []
    for item in items:
        text = str(item)
        if any(c in text for c in "*?["):
            found = sorted(glob.glob(text))
            if not found:
                raise InvalidOptionError(f"option {option}: the glob {text!r} matches no file")
            paths += [Path(f) for f in found]
        else:
            paths.append(Path(text))
    for p in paths:
        if not p.is_file():
            raise _seqpack.InvalidFileError(f"{p}: no such file")
        if p.suffix not in (".json", ".jsonl", ".ndjson", ".parquet"):
            raise _seqpack.InvalidFileError(
                f"{p}: unknown input format {p.suffix!r} (expected .json, .jsonl, .parquet)"
            )
    return paths


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _is_dataset(source: Any) -> bool:
    return type(source).__module__.split(".")[0] == "datasets"


ENCODE_DEFAULTS: dict[str, Any] = {
    "overlong": "truncate",
    "truncate_keep": "head",
    "format": "auto",
    "mapping": None,
    "on_error": "raise",
    "keep_first_turn": False,
    "train_on_cut_turns": False,
    "train_on": ("assistant",),
    "min_trainable_tokens": 1,
    "special_tokens_in_content": "keep",
}
"""seqpack.encode's options (and defaults) as a store records them."""
LOADING_OPTIONS = {"end_of_turn", "fast_tokenizer"}
"""seqpack.encode's options that choose how the tokenizer and template are loaded."""


def conversation_options(max_length: int, encode_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The checked encode options of a store of chat records: unknown names refused,
    defaults filled in."""
    unknown = sorted(set(encode_kwargs) - set(ENCODE_DEFAULTS) - LOADING_OPTIONS)
    if unknown:
        raise InvalidOptionError(f"option {unknown[0]}: not an option of seqpack.encode")
    chosen = {k: encode_kwargs.get(k, v) for k, v in ENCODE_DEFAULTS.items()}
    return encode_options(max_length=max_length, **chosen)


def _write_conversations(
    writer: _seqpack.NativeStoreWriter,
    source: Any,
    tokenizer: Any,
    template: Any,
    max_length: int,
    chunk_size: int,
    progress: _Progress,
    encode_kwargs: dict[str, Any],
) -> dict[str, Any]:
    options = conversation_options(max_length, encode_kwargs)
    loaded = load_tokenizer(tokenizer, fast=encode_kwargs.get("fast_tokenizer"))
    native_template = load_template(template, loaded, encode_kwargs.get("end_of_turn"))
    info: dict[str, Any] = {
        "max_length": options["max_length"],
        "encode_options": options,
        "tokenizer": loaded.native.fingerprint,
        "template": native_template.fingerprint,
    }
    record = 0
    paths = _paths(source)
    if paths is not None:
        info["inputs"] = [str(p) for p in paths]
        for p in paths:
            if p.suffix == ".parquet":
                for batch in _parquet_batches(p, chunk_size):
                    records, _ = writer.encode_objects(
                        batch.to_pylist(), record, loaded.native, native_template, options
                    )
                    record += records
                    progress(record)
            else:
                records, _ = writer.encode_file(
                    str(p), record, chunk_size, loaded.native, native_template, options, progress
                )
                record += records
        return info
    if _is_dataset(source):
        rows: Iterable[Any] = _dataset_rows(source, chunk_size)
    else:
        check_records_container(source)
        rows = source
    for chunk in _chunks(rows, chunk_size):
        check_record_items(chunk)
        records, _ = writer.encode_objects(chunk, record, loaded.native, native_template, options)
        record += records
        progress(record)
    return info


def _dataset_rows(dataset: Any, chunk_size: int) -> Iterator[dict[str, Any]]:
    """Rows of a Hugging Face dataset as dicts, read a batch at a time."""
    for batch in dataset.iter(batch_size=chunk_size):
        names = list(batch)
        yield from (
            dict(zip(names, values, strict=True)) for values in zip(*batch.values(), strict=True)
        )


def _parquet_batches(path: Path, chunk_size: int) -> Iterator[Any]:
    import pyarrow.parquet as pq

    yield from pq.ParquetFile(path).iter_batches(batch_size=chunk_size)


def _write_tokens(
    writer: _seqpack.NativeStoreWriter, source: Any, chunk_size: int, progress: _Progress
) -> dict[str, Any]:
    info: dict[str, Any] = {}
    sample = 0

    def append_arrow(columns: Any) -> None:
        nonlocal sample
        tokens, offsets, labels = _arrow_tokens(columns)
        count = len(offsets) - 1
        records = np.arange(sample, sample + count, dtype=np.int64)
        writer.append_tokens(tokens, offsets, labels, records, np.zeros(count, np.int64))
        sample += count
        progress(sample)

    paths = _paths(source)
    if paths is not None:
        info["inputs"] = [str(p) for p in paths]
        for p in paths:
            if p.suffix != ".parquet":
                for chunk in _chunks(_jsonl_or_json(p), chunk_size):
                    sample = _append_python(writer, chunk, sample, progress)
                continue
            for batch in _parquet_batches(p, chunk_size):
                append_arrow(batch)
        return info
    if _is_dataset(source) and hasattr(source, "data"):  # an Arrow-backed datasets.Dataset
        table = source.data.table if hasattr(source.data, "table") else source.data
        for batch in table.to_batches(max_chunksize=chunk_size):
            append_arrow(batch)
        return info
    rows = _dataset_rows(source, chunk_size) if _is_dataset(source) else source
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Iterable):
        raise _seqpack.InvalidTokenError(
            f"expected token sequences or a .parquet/.jsonl path, got {type(source).__name__}"
        )
    for chunk in _chunks(rows, chunk_size):
        sample = _append_python(writer, chunk, sample, progress)
    return info


def _jsonl_or_json(path: Path) -> Iterator[Any]:
    with builtins.open(path, encoding="utf-8") as lines:
        if path.suffix == ".json":
            yield from json.load(lines)
            return
        for number, line in enumerate(lines, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise _seqpack.InvalidFileError(
                        f"{path}, line {number}: not valid JSON ({exc.msg})"
                    ) from None


def _append_python(
    writer: _seqpack.NativeStoreWriter, chunk: list[Any], first: int, progress: _Progress
) -> int:
    """Append token sequences given as Python objects (lists, arrays, or input_ids dicts)."""
    has_dicts = isinstance(chunk[0], Mapping)
    if has_dicts:
        for k, row in enumerate(chunk):
            if not isinstance(row, Mapping) or "input_ids" not in row:
                raise _seqpack.InvalidRecordError(
                    f"record {first + k}: field 'input_ids' is missing"
                )
        sequences = [row["input_ids"] for row in chunk]
        labels = [row["labels"] for row in chunk] if "labels" in chunk[0] else None
    else:
        sequences, labels = chunk, None
    try:
        flat = flatten(sequences, labels=labels)
    except _seqpack.SeqpackError as exc:
        local = getattr(exc, "index", None)
        if local is not None:
            raise type(exc)(
                str(exc).replace(f"sequence {local}", f"sequence {first + local}", 1)
            ) from None
        raise
    count = len(chunk)
    writer.append_tokens(
        flat.tokens,
        flat.offsets,
        flat.labels,
        np.arange(first, first + count, dtype=np.int64),
        np.zeros(count, np.int64),
    )
    progress(first + count)
    return first + count


def _tensor_lists(column: Any) -> Any:
    """A column of 1-D tensors as the list column it stands for. Ray Data turns list columns
    into tensor extension columns when a stage returns numpy batches: one of fixed shape
    (every row as long) stores each row's values as a list; a variable-shaped one stores them
    in the ``data`` field of a struct beside their ``shape``. Anything else is returned as it
    is, for the caller to refuse by its type."""
    import pyarrow as pa

    if not isinstance(column.type, pa.ExtensionType):
        return column
    storage = column.storage
    shape = getattr(column.type, "shape", None)
    if pa.types.is_struct(storage.type) and getattr(column.type, "ndim", None) == 1:
        if storage.type.get_field_index("data") >= 0 and not storage.null_count:
            return storage.field("data")
    elif shape is not None and len(shape) == 1:
        if pa.types.is_fixed_size_list(storage.type):
            return storage.cast(pa.list_(storage.type.value_type))
        if pa.types.is_list(storage.type) or pa.types.is_large_list(storage.type):
            return storage
    return column


def _arrow_tokens(
    batch: Any,
) -> tuple[npt.NDArray[Any], npt.NDArray[np.int64], npt.NDArray[np.int64] | None]:
    """``input_ids`` (and ``labels``) list columns of an Arrow batch as flat numpy arrays,
    viewing Arrow's buffers where their type allows."""
    import pyarrow as pa

    names = batch.schema.names if hasattr(batch, "schema") else batch.column_names
    if "input_ids" not in names:
        raise _seqpack.InvalidRecordError(
            f"field 'input_ids' is missing (columns: {', '.join(names)})"
        )

    def flat(name: str) -> tuple[npt.NDArray[Any], npt.NDArray[np.int64]]:
        column = batch.column(name)
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        column = _tensor_lists(column)
        if column.null_count:
            raise _seqpack.InvalidRecordError(f"field '{name}': {column.null_count} rows are null")
        if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)):
            raise _seqpack.InvalidRecordError(
                f"field '{name}' must be a list of integers, got {column.type}"
            )
        values = column.values
        if not pa.types.is_integer(values.type):
            raise _seqpack.InvalidRecordError(
                f"field '{name}' must hold integers, got {values.type}"
            )
        offsets = column.offsets.to_numpy().astype(np.int64)
        start, stop = int(offsets[0]), int(offsets[-1])
        array = values.slice(start, stop - start).to_numpy(zero_copy_only=False)
        if array.dtype not in (np.int32, np.int64):
            array = array.astype(np.int64)
        return np.ascontiguousarray(array), offsets - start

    tokens, offsets = flat("input_ids")
    labels = None
    if "labels" in names:
        label_values, label_offsets = flat("labels")
        if not np.array_equal(label_offsets, offsets):
            raise _seqpack.InvalidLabelsError("labels do not have one value per token in every row")
        labels = label_values.astype(np.int64, copy=False)
    return tokens, offsets, labels


class _Plan:
    """What every process needs to build the same batches: the store's path and the options.
    Plain data, so it pickles into worker processes; each process opens the store and plans
    once (a pure function of lengths and options: the same plan everywhere)."""

    def __init__(self, store: TokenStore, schedule: dict[str, Any], layout: dict[str, Any]) -> None:
        self.path = str(store.path)
        self.schedule_options = schedule
        self.layout_options = layout
        self._store: TokenStore | None = store
        self._native: _seqpack.NativeSchedule | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "schedule_options": self.schedule_options,
            "layout_options": self.layout_options,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._store = None
        self._native = None

    @property
    def store(self) -> TokenStore:
        if self._store is None:
            self._store = TokenStore(self.path)
        return self._store

    @property
    def native(self) -> _seqpack.NativeSchedule:
        if self._native is None:
            self._native = _seqpack.NativeSchedule(
                np.asarray(self.store.lengths), self.schedule_options
            )
        return self._native

    def materialize(self, rows: npt.NDArray[np.int64], padding_free: bool) -> dict[str, Any]:
        store = self.store
        labels = None if store._labels is None else np.asarray(store._labels)
        return self.native.materialize(
            rows, np.asarray(store.tokens), np.asarray(store.offsets),
            np.asarray(store._trained_bits), labels, self.layout_options, padding_free,
        )  # fmt: skip
