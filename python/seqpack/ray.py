"""Ray Data scale-out: encode chat records on a pool of actors, write a token store, and
materialise packed rows in parallel, with the same bytes as the single-process functions.

Install the extra: ``pip install seqpack[ray]``. Every function takes a ``ray.data.Dataset``
and runs wherever Ray runs: ``ray.init()`` on one machine, ``ray.init(address="auto")`` (or
``"ray://host:10001"``) on a cluster.

- :func:`encode`: ``map_batches`` with a callable class (the Rust tokenizer and template are
  built once per actor, in ``__init__``: Rust objects do not pickle), Arrow batches in and
  out; one row per sample.
- :func:`write_store`: encode (or take token sequences), then append the results to a token
  store from the driver, in input order: the store is byte-identical to
  :func:`seqpack.store.write` on the same records, whatever the number of actors or blocks.
- :func:`read_jsonl`: ``.jsonl`` files as raw lines with their file and line number, parsed
  by :func:`encode` / :func:`write_store` in Rust as the single-process reader parses them,
  so a failing record is named by file and line.
- :func:`pack`: the global plan over the store's lengths (8 bytes per sample), rows
  materialised by Ray tasks in row ranges; a Dataset with one item per packed row, in plan
  order, byte-identical to :func:`seqpack.pack`'s rows.

Records are numbered in the dataset's order, so a failing record is named by the same index
as in the single-process path, and its error is raised in the driver as the same typed
exception: :func:`write_store`'s driver numbers them as it appends the encoded batches in
order; :func:`encode`, whose output is a Dataset, numbers them first (a column added to its
blocks in order, after running the dataset once).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from seqpack import _normalise, _seqpack
from seqpack.errors import InvalidOptionError, SeqpackError
from seqpack.store import LOADING_OPTIONS, TokenStore, _arrow_tokens, conversation_options
from seqpack.tokenizer import load_template, load_tokenizer

if TYPE_CHECKING:
    import pyarrow as pa
    import ray.data

RECORD = "__seqpack_record"
"""The column that numbers input records in the dataset's order (dropped before encoding)."""
LINE_TEXT, LINE_FILE, LINE_NUMBER = "__seqpack_text", "__seqpack_file", "__seqpack_line"
"""The columns of :func:`read_jsonl`: a record's raw line, its file, its line number."""


def _ray() -> Any:
    try:
        import ray
    except ImportError:  # pragma: no cover - the extra is installed in CI
        raise ImportError("seqpack.ray needs Ray Data: pip install 'seqpack[ray]'") from None
    return ray


class _Encoder:
    """One Ray actor's encoder: tokenizer and template loaded once, Arrow batches in and out."""

    def __init__(
        self,
        tokenizer: Any,
        template: Any,
        options: dict[str, Any],
        extra: dict[str, Any],
        errors_as_rows: bool = False,
    ) -> None:
        self.tokenizer = load_tokenizer(tokenizer, fast=extra.get("fast_tokenizer"))
        self.template = load_template(template, self.tokenizer, extra.get("end_of_turn"))
        self.options = options
        # For write_store: a failing record comes back as a row that names its error, so the
        # driver raises the first one in record order, as the same type (Ray's wrappers of a
        # raised error keep its text, not the error).
        self.errors_as_rows = errors_as_rows

    def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow as pa

        if RECORD in batch.column_names:
            numbers = batch.column(RECORD).to_numpy()
            batch = batch.drop_columns([RECORD])
        else:  # write_store: numbered in its batch here, in the dataset by the driver
            numbers = np.arange(len(batch), dtype=np.int64)
        lines: list[int] | None = None
        files: list[str] = []
        if LINE_TEXT in batch.column_names:
            # Raw .jsonl lines (read_jsonl): parsed in Rust as the file reader parses them.
            records: list[Any] = batch.column(LINE_TEXT).to_pylist()
            lines = batch.column(LINE_NUMBER).to_pylist()
            files = batch.column(LINE_FILE).to_pylist()
        else:
            # Arrow cannot tell a missing field from a null one: a null top-level field is
            # missing.
            records = [{k: v for k, v in row.items() if v is not None} for row in batch.to_pylist()]
        pieces = []
        start = 0
        # Runs of consecutive record numbers (a batch is one, unless blocks were reordered).
        breaks = np.flatnonzero(np.diff(numbers) != 1) + 1
        for stop in [*breaks.tolist(), len(records)]:
            first = int(numbers[start])
            try:
                encoded = _seqpack.encode_records(
                    records[start:stop], None, self.tokenizer.native, self.template,
                    self.options, first_record=first,
                    lines=None if lines is None else lines[start:stop],
                )  # fmt: skip
            except SeqpackError as error:
                if self.errors_as_rows:  # the driver numbers it, and names its file
                    return _error_row(error, first, files, start - first)
                raise (_in_file(error, files, start - first) if files else error) from None
            pieces.append(_sample_rows(encoded, int(numbers[start]), stop - start))
            start = stop
        return pa.concat_tables(pieces) if len(pieces) > 1 else pieces[0]


def _in_file(error: SeqpackError, files: list[str], shift: int) -> SeqpackError:
    """The error of a record read by :func:`read_jsonl`, naming its file first, as the
    single-process path does (``<file>: record N (line L): ...``)."""
    index = getattr(error, "index", None)
    if index is None or not 0 <= index + shift < len(files):
        return error
    named = type(error)(f"{files[index + shift]}: {error}")
    with contextlib.suppress(AttributeError):
        named.index = index
    return named


BLOCK_BYTES = 16 << 20
"""How much of a ``.jsonl`` file :func:`read_jsonl` reads at a time (one block each)."""


def read_jsonl(
    paths: Any, *, block_bytes: int = BLOCK_BYTES, **read_options: Any
) -> ray.data.Dataset:
    """Read ``.jsonl`` files (a path, a glob, a list of them, or URIs Ray reads through
    pyarrow filesystems such as ``s3://bucket/*.jsonl``) into a Dataset of their records'
    raw lines, with each one's file and line number. :func:`encode` and :func:`write_store`
    parse the lines in Rust exactly as :func:`seqpack.store.write` reads the same files, so
    a store is byte-identical to it and a failing record is named by its file and line
    (``data/b.jsonl: record 7 (line 3): ...``), its report giving the line. Blank lines hold
    no record; a line that is not UTF-8 or not JSON is that record's error (skipped and
    reported under ``on_error="skip"``).

    Each file is one read task that streams it ``block_bytes`` at a time (whole lines, one
    block each), so no file is ever held in memory whole. Files keep their order, and lines
    theirs. ``read_options`` go to ``ray.data.read_datasource`` (``concurrency=``,
    ``num_cpus=``, ...).
    """
    from seqpack.store import _paths

    block_bytes = _normalise.integer("block_bytes", block_bytes)
    if block_bytes < 1:
        raise InvalidOptionError(f"option block_bytes: must be at least 1, got {block_bytes}")
    # (where a task opens it, how records name it, its size if known)
    files: list[tuple[str, str, int | None]] = []
    for item in paths if isinstance(paths, (list, tuple)) else [paths]:
        if "://" in str(item):  # a URI: pyarrow resolves it where the task runs
            files.append((str(item), str(item), None))
            continue
        for found in _paths(item, "paths") or []:
            if found.suffix not in (".jsonl", ".ndjson"):
                raise InvalidOptionError(f"option paths: {found} is not a .jsonl file")
            # Named as given (as store.write names it), opened by its absolute path (a
            # task's process may run in another directory).
            files.append((str(found.resolve()), str(found), found.stat().st_size))
    ray = _ray()
    return ray.data.read_datasource(_jsonl_source(files, block_bytes), **read_options)  # type: ignore[no-any-return]


def _jsonl_source(files: list[tuple[str, str, int | None]], block_bytes: int) -> Any:
    """A Ray ``Datasource`` with one read task per file (see :func:`_jsonl_blocks`)."""
    from functools import partial

    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    class JsonlLines(Datasource):
        def get_name(self) -> str:
            return "SeqpackJsonl"

        def estimate_inmemory_data_size(self) -> int | None:
            sizes = [size for _, _, size in files]
            return None if None in sizes else sum(size or 0 for size in sizes)

        def get_read_tasks(  # type: ignore[override]  # Ray's keywords vary by version
            self, parallelism: int, **_: Any
        ) -> list[Any]:
            tasks = []
            for opened, named, size in files:
                metadata = BlockMetadata(
                    num_rows=None, size_bytes=size, exec_stats=None, input_files=(opened,)
                )
                tasks.append(ReadTask(partial(_jsonl_blocks, opened, named, block_bytes), metadata))
            return tasks

    return JsonlLines()  # type: ignore[no-untyped-call]


def _jsonl_blocks(path: str, name: str, block_bytes: int) -> Iterator[pa.Table]:
    """The records of one ``.jsonl`` file, ``block_bytes`` of whole lines at a time (a line
    longer than that is read whole), one row each: raw line, the file's ``name``, line
    number."""
    import pyarrow as pa
    import pyarrow.fs as pafs

    if "://" in path:
        filesystem, inner = pafs.FileSystem.from_uri(path)
    else:
        filesystem, inner = pafs.LocalFileSystem(), path
    lines_before, file_start = 0, True
    partial_line = bytearray()
    with filesystem.open_input_stream(inner) as stream:
        while True:
            chunk = stream.read(block_bytes)
            cut = chunk.rfind(b"\n") + 1
            if chunk and not cut:  # no line ends here: keep reading the line
                partial_line += chunk
                continue
            data = bytes(partial_line) + chunk[:cut] if chunk else bytes(partial_line)
            partial_line = bytearray(chunk[cut:]) if chunk else bytearray()
            if data:
                starts, ends, lines = _seqpack.jsonl_lines(data, lines_before, file_start)
                lines_before += data.count(b"\n")
                file_start = False
                if len(lines):
                    texts = [data[a:b] for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]
                    yield pa.table(
                        {
                            LINE_TEXT: pa.array(texts, pa.binary()),
                            LINE_FILE: pa.array([name] * len(lines), pa.string()),
                            LINE_NUMBER: pa.array(lines, pa.int64()),
                        }
                    )
            if not chunk:
                return


def _error_row(error: SeqpackError, first: int, files: list[str], shift: int) -> pa.Table:
    """The one row a batch with a failing record gives (write_store): its error as JSON
    (type, message, the record's number in the batch, its file when read_jsonl read it), so
    the driver raises it as the same type, numbered in the dataset."""
    import pyarrow as pa

    index = getattr(error, "index", None)
    local = first if index is None else int(index)
    # Only an error about one record names its file (as _in_file does).
    named = index is not None and files and 0 <= local + shift < len(files)
    file = files[local + shift] if named else None
    text = json.dumps({"type": type(error).__name__, "message": str(error), "record": local,
                       "file": file})  # fmt: skip
    return pa.table(
        {
            "input_ids": pa.array([[]], pa.list_(pa.int32())),
            "labels": pa.array([[]], pa.list_(pa.int32())),
            "record": pa.array([local], pa.int64()),
            "window": pa.array([0], pa.int32()),
            "report": pa.array([None], pa.string()),
            "error": pa.array([text], pa.string()),
        }
    )


def _raise_error_row(text: str, record: int) -> None:
    """Raise the error of an error row (:func:`_error_row`), its record ``record`` in the
    dataset: the message names that number, after the file (as store.write's do)."""
    found = json.loads(text)
    kind = getattr(_seqpack, found["type"], None)
    if not (isinstance(kind, type) and issubclass(kind, SeqpackError)):
        kind = SeqpackError
    message = found["message"]
    local = f"record {found['record']}"
    if message.startswith(local):  # every record error starts so
        message = f"record {record}{message[len(local) :]}"
    if found["file"] is not None:
        message = f"{found['file']}: {message}"
    error = kind(message)
    with contextlib.suppress(AttributeError):
        error.index = record
    raise error


def _sample_rows(encoded: dict[str, Any], first: int, count: int) -> pa.Table:
    """One row per sample, and one empty row for each record that gave none; each record's
    report on its first row."""
    import pyarrow as pa

    offsets = encoded["offsets"]
    sample_record = encoded["sample_record"]
    per_record = np.bincount(sample_record - first, minlength=count)
    rows_per_record = np.maximum(per_record, 1)
    total = int(rows_per_record.sum())
    first_row = np.zeros(count, np.int64)
    np.cumsum(rows_per_record[:-1], out=first_row[1:])
    is_sample = np.repeat(per_record > 0, rows_per_record)
    lengths = np.zeros(total, np.int64)
    lengths[is_sample] = np.diff(offsets)
    windows = np.zeros(total, np.int32)
    windows[is_sample] = encoded["sample_window"]
    row_offsets = np.zeros(total + 1, np.int32)
    np.cumsum(lengths, out=row_offsets[1:])
    tokens = encoded["tokens"]
    if len(tokens) and int(tokens.max()) >= 2**31:
        raise InvalidOptionError("seqpack.ray: token ids must fit int32")
    lines = encoded["reports"].to_jsonl().decode().splitlines()
    reports: list[str | None] = [None] * total
    for k, row in enumerate(first_row.tolist()):
        reports[row] = lines[k]
    return pa.table(
        {
            "input_ids": pa.ListArray.from_arrays(row_offsets, tokens.astype(np.int32)),
            "labels": pa.ListArray.from_arrays(row_offsets, encoded["labels"].astype(np.int32)),
            "record": np.repeat(np.arange(first, first + count, dtype=np.int64), rows_per_record),
            "window": windows,
            "report": pa.array(reports, pa.string()),
            "error": pa.nulls(total, pa.string()),
        }
    )


def _numbered(ds: ray.data.Dataset) -> ray.data.Dataset:
    """``ds`` with a column numbering its rows in order: its blocks, in order, each numbered
    from the rows of the blocks before it by a Ray task. (``Dataset.zip`` with a
    ``ray.data.range`` did this until Ray deprecated it; it too ran the whole dataset first.)"""
    ray = _ray()
    if RECORD in ds.schema().names:
        raise InvalidOptionError(f"option ds: the column {RECORD!r} is seqpack's own")
    blocks = _ordered(ds).to_arrow_refs()
    rows, numbered = ray.remote(_block_rows), ray.remote(_block_numbered)
    counts = ray.get([rows.remote(block) for block in blocks])
    starts = itertools.accumulate([0, *counts[:-1]])
    refs = [numbered.remote(block, start) for block, start in zip(blocks, starts, strict=True)]
    return ray.data.from_arrow_refs(refs)  # type: ignore[no-any-return]  # ray: imported here


def _block_rows(table: pa.Table) -> int:
    return int(table.num_rows)


def _block_numbered(table: pa.Table, start: int) -> pa.Table:
    import pyarrow as pa

    return table.append_column(RECORD, pa.array(range(start, start + table.num_rows), pa.int64()))


def encode(
    ds: ray.data.Dataset,
    *,
    tokenizer: Any,
    max_length: int,
    template: str | os.PathLike[str] | None = None,
    concurrency: int | tuple[int, int] = 1,
    batch_size: int = 1024,
    num_cpus: float = 1,
    **options: Any,
) -> ray.data.Dataset:
    """Encode a Dataset of chat records on ``concurrency`` actors: one output row per sample
    (``input_ids`` and ``labels`` as ``list<int32>``, ``record`` (the record's index in
    ``ds``), ``window`` (its window, under ``overlong="split"``) and ``report`` (the record's
    report as a JSON line, on its first row; null on the others) and ``error`` (always null
    here: a failing record raises, unless ``on_error="skip"``)). A record that gave no
    sample (skipped or dropped, with its reason in the report) keeps one row with empty
    ``input_ids``, so nothing disappears without a report; drop those rows with
    ``.filter(lambda r: len(r["input_ids"]) > 0)`` if you only want samples.

    Options are :func:`seqpack.encode`'s, checked in the driver before anything runs. The
    tokenizer (a path, or a ``tokenizers.Tokenizer``, which pickles) and the template are
    loaded once per actor. Records are numbered by their position in ``ds``; the output rows
    come in the order the actors finish them unless the Dataset's context keeps the order
    (``DataContext.get_current().execution_options.preserve_order = True`` set before
    ``ds`` is created: a Dataset keeps the context it was created with). Each actor reserves
    ``num_cpus`` and runs that many Rust threads (rounded up; at least one): with as many
    actors as the cluster has CPUs, give each less than one (``num_cpus=0.5``), or Ray Data
    cannot schedule the reads that feed them and waits.
    """
    _ray()
    chosen = conversation_options(max_length, options)
    extra = {k: options[k] for k in LOADING_OPTIONS if k in options}
    # Load once here too: a bad tokenizer or template fails now, naming itself.
    loaded = load_tokenizer(tokenizer, fast=extra.get("fast_tokenizer"))
    load_template(template, loaded, extra.get("end_of_turn"))
    return _encode(ds, tokenizer, template, chosen, extra, concurrency, batch_size, num_cpus,
                   errors_as_rows=False)  # fmt: skip


def _encode(
    ds: ray.data.Dataset,
    tokenizer: Any,
    template: Any,
    chosen: dict[str, Any],
    extra: dict[str, Any],
    concurrency: int | tuple[int, int],
    batch_size: int,
    num_cpus: float,
    *,
    errors_as_rows: bool,
) -> ray.data.Dataset:
    """:func:`encode` with options already checked (and the tokenizer already loaded once)."""
    batch_size = _normalise.integer("batch_size", batch_size)
    if batch_size < 1:
        raise InvalidOptionError(f"option batch_size: must be at least 1, got {batch_size}")
    # write_store's driver numbers the records as it appends them (errors come back as
    # rows): no pass over the dataset to number them first.
    known = ds.schema(fetch_if_missing=False)  # not worth reading a block for
    if errors_as_rows and known is not None and RECORD in known.names:
        raise InvalidOptionError(f"option ds: the column {RECORD!r} is seqpack's own")
    return (ds if errors_as_rows else _numbered(ds)).map_batches(
        _Encoder,
        fn_constructor_kwargs={
            "tokenizer": tokenizer, "template": template, "options": chosen, "extra": extra,
            "errors_as_rows": errors_as_rows,
        },
        batch_format="pyarrow", batch_size=batch_size, concurrency=concurrency,
        num_cpus=num_cpus, zero_copy_batch=True,
        # An actor's Rust threads: as many as the CPUs it reserved (at least one), not every
        # core of its node, which each actor would otherwise start.
        runtime_env={"env_vars": {"RAYON_NUM_THREADS": str(max(1, math.ceil(num_cpus)))}},
    )  # fmt: skip


def _ordered(ds: ray.data.Dataset) -> ray.data.Dataset:
    """``ds``, run with its rows in their order. A Dataset runs with the DataContext it was
    created with (a copy of the current one at the time, shared by the Datasets derived from
    it), so turning the current context's ``preserve_order`` on later does not reach it, and
    the rows come in whatever order the actors finish them. The copy returned has a context of
    its own with the order kept; the caller's Dataset and context are left as they were."""
    ray = _ray()
    ordered = ray.data.Dataset.copy(ds, _deep_copy=True)
    ordered.context.execution_options.preserve_order = True
    return ordered  # type: ignore[no-any-return]  # ray is imported at run time here


def _unwrapped(error: BaseException) -> BaseException:
    """The innermost seqpack error inside Ray's wrappers (task, actor and user-code errors,
    some of which also subclass the error they wrap), or ``error`` itself."""
    found: BaseException = error
    current: BaseException | None = error
    for _ in range(32):  # a chain, never a cycle; bounded anyway
        if current is None:
            break
        if isinstance(current, SeqpackError) and type(current).__module__.startswith("seqpack"):
            found = current
        current = getattr(current, "cause", None) or current.__cause__
    return found


def write_store(
    ds: ray.data.Dataset,
    path: str | os.PathLike[str],
    *,
    tokenizer: Any = None,
    max_length: int | None = None,
    template: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    concurrency: int | tuple[int, int] = 1,
    batch_size: int = 1024,
    num_cpus: float = 1,
    **options: Any,
) -> TokenStore:
    """Write a token store from a Dataset: chat records encoded on ``concurrency`` actors
    (with ``tokenizer=``; options as :func:`seqpack.store.write`), or token sequences (an
    ``input_ids`` list column and optional ``labels``). The driver appends the encoded
    batches in the dataset's order, so the store is byte-identical to
    :func:`seqpack.store.write` on the same records for any number of actors or blocks. The
    path must be writable by the driver; the store's readers need it on storage they see.
    """
    _ray()
    target = Path(path)
    kind = "conversations" if tokenizer is not None else "tokens"
    info: dict[str, Any] = {}
    if tokenizer is None:
        if options or template is not None or max_length is not None:
            raise InvalidOptionError(
                "option tokenizer: encode options were given without tokenizer= "
                "(a Dataset of token sequences needs none)"
            )
        source = ds
    else:
        if max_length is None:
            raise InvalidOptionError("option max_length: required with tokenizer=")
        chosen = conversation_options(max_length, options)
        extra = {k: options[k] for k in LOADING_OPTIONS if k in options}
        loaded = load_tokenizer(tokenizer, fast=extra.get("fast_tokenizer"))
        native_template = load_template(template, loaded, extra.get("end_of_turn"))
        info = {
            "max_length": chosen["max_length"],
            "encode_options": chosen,
            "tokenizer": loaded.native.fingerprint,
            "template": native_template.fingerprint,
        }
        source = _encode(ds, tokenizer, template, chosen, extra, concurrency, batch_size,
                         num_cpus, errors_as_rows=True)  # fmt: skip
    writer = _seqpack.NativeStoreWriter(str(target), kind, bool(overwrite))
    try:
        if tokenizer is None:
            _append_tokens(writer, _ordered(source))
        else:
            _append_encoded(writer, _ordered(source))
        from seqpack import __version__

        info["seqpack"] = __version__
        writer.finish(json.dumps(info))
    except BaseException as error:
        writer.abort()
        cause = _unwrapped(error)
        if cause is not error:
            raise cause.with_traceback(None) from None
        raise
    return TokenStore(target)


def _append_encoded(writer: _seqpack.NativeStoreWriter, encoded: ray.data.Dataset) -> None:
    """Append encoded rows in order, numbering records in the dataset as they come: every
    record has exactly one row with its report (its first), so record numbers are the count
    of reports so far. The actors numbered them within their batch only (no pass over the
    dataset to count it first); reports and errors are renumbered here."""
    import pyarrow.compute as pc

    base = 0  # records before this batch
    batches: Iterable[Any] = encoded.iter_batches(batch_format="pyarrow", batch_size=None)
    for batch in batches:
        report_column = batch.column("report")
        has_report = pc.is_valid(report_column).to_numpy(zero_copy_only=False)
        numbers = base + np.cumsum(has_report, dtype=np.int64) - 1  # each row's record
        errors = batch.column("error")
        if errors.null_count < len(errors):
            first = next(k for k, e in enumerate(errors.to_pylist()) if e is not None)
            # The failing batch gave only this row: its records follow those before it.
            before = base + int(has_report[:first].sum())
            local = int(batch.column("record")[first].as_py())
            _raise_error_row(errors[first].as_py(), before + local)
        ids = batch.column("input_ids").combine_chunks()
        labels = batch.column("labels").combine_chunks()
        lengths = pc.list_value_length(ids).to_numpy(zero_copy_only=False)
        keep = lengths > 0
        offsets = np.zeros(int(keep.sum()) + 1, np.int64)
        np.cumsum(lengths[keep], out=offsets[1:])
        reports = [r for r in report_column.to_pylist() if r is not None]
        writer.append_encoded(
            ids.flatten().to_numpy(),  # int32, as the encoders write them: no conversion
            offsets,
            labels.flatten().to_numpy(),
            numbers[keep],
            batch.column("window").to_numpy()[keep].astype(np.int64),
            "".join(_renumbered(line, base + k) + "\n" for k, line in enumerate(reports)).encode(),
            len(reports),
        )
        base += len(reports)


def _renumbered(report: str, record: int) -> str:
    """A record's report line as record ``record``: its ``record`` field (the first key, as
    the encoder writes it) and the number its message starts with (a skipped record's
    error, ``record N: ...``)."""
    head = '{"record":'
    if not report.startswith(head):
        raise SeqpackError(f"seqpack.ray: a report line does not start with {head!r}")
    comma = report.index(",", len(head))
    local = report[len(head) : comma]
    rest = report[comma:]
    said = f'"message":"record {local}'
    at = rest.find(said)  # the first "message" is the key: the fields before it are fixed
    if at >= 0 and rest[at + len(said) : at + len(said) + 1] in (":", " "):
        rest = f'{rest[:at]}"message":"record {record}{rest[at + len(said) :]}'
    return f"{head}{record}{rest}"


def _append_tokens(writer: _seqpack.NativeStoreWriter, ds: ray.data.Dataset) -> None:
    sample = 0
    batches: Iterable[Any] = ds.iter_batches(batch_format="pyarrow", batch_size=None)
    for batch in batches:
        tokens, offsets, labels = _arrow_tokens(batch)
        count = len(offsets) - 1
        records = np.arange(sample, sample + count, dtype=np.int64)
        writer.append_tokens(tokens, offsets, labels, records, np.zeros(count, np.int64))
        sample += count


def pack(
    source: ray.data.Dataset | TokenStore | str | os.PathLike[str],
    *,
    max_length: int,
    store: str | os.PathLike[str] | None = None,
    rows_per_task: int = 256,
    strategy: str = "bfd",
    overlong: str = "error",
    truncate_keep: str = "head",
    max_seqs_per_row: int | None = None,
    loss_weights: str | None = None,
    pad_id: int = 0,
    dtype: str = "int64",
    **write_options: Any,
) -> ray.data.Dataset:
    """Packed rows as a Dataset, one item per row in plan order (a ``row`` column numbers
    them): ``input_ids``, ``labels``, ``position_ids``, ``segment_ids`` (and ``loss_weights``)
    as lists of ``max_length``, byte-identical to :func:`seqpack.pack`'s rows on the same
    input. ``source`` is a token store (or its path) or a Dataset, first written to
    ``store`` (a temporary folder by default) by :func:`write_store` with
    ``write_options`` (``tokenizer=`` and encode options for chat records). The plan is
    computed from the store's lengths; Ray tasks materialise ``rows_per_task`` rows each
    from the memory-mapped store, so on a cluster the store must be on storage every node
    sees. ``.write_parquet()``, ``.iter_torch_batches()`` and ``.streaming_split()`` are
    Ray's own; keep the order by setting ``DataContext.get_current().execution_options.
    preserve_order = True`` before calling this (the Dataset keeps the context it is created
    with), or sort by ``row``.
    """
    ray = _ray()
    from seqpack.torch import PackedRows

    if isinstance(source, TokenStore):
        opened = source
    elif isinstance(source, (str, os.PathLike)):
        opened = TokenStore(source)
    else:
        folder = Path(store) if store is not None else Path(tempfile.mkdtemp()) / "store"
        if write_options.get("tokenizer") is not None:
            write_options.setdefault("max_length", max_length)  # the sample budget, as pack's
        opened = write_store(source, folder, **write_options)
    rows_per_task = _normalise.integer("rows_per_task", rows_per_task)
    if rows_per_task < 1:
        raise InvalidOptionError(f"option rows_per_task: must be at least 1, got {rows_per_task}")
    layout = {
        "max_length": max_length, "strategy": strategy, "overlong": overlong,
        "truncate_keep": truncate_keep, "max_seqs_per_row": max_seqs_per_row,
        "loss_weights": loss_weights, "pad_id": pad_id, "dtype": dtype,
    }  # fmt: skip
    rows = PackedRows(opened, **layout)  # type: ignore[arg-type]  # checked by PackedRows
    tasks = -(-rows.rows // rows_per_task)
    plan = rows._plan  # path and options only: it pickles, and opens the store where it runs
    context = {"plan": plan, "every": rows_per_task}
    blocks = max(1, min(tasks, 200))
    packed = ray.data.range(tasks, override_num_blocks=blocks).map_batches(
        _row_range, fn_kwargs={"context": context, "rows": rows.rows}, batch_format="numpy",
        batch_size=1,
    )  # fmt: skip
    return packed  # type: ignore[no-any-return]  # ray is imported at run time here


_PLANS: dict[str, Any] = {}


def _row_range(batch: dict[str, np.ndarray], context: dict[str, Any], rows: int) -> dict[str, Any]:
    """Materialise the plan rows of one task id from the memory-mapped store (without
    importing torch: a Ray worker process pays for what it imports)."""
    plan = context["plan"]
    key = json.dumps([plan.path, plan.schedule_options, plan.layout_options], sort_keys=True)
    if key not in _PLANS:  # plan once per worker process, not once per task
        _PLANS.clear()
        _PLANS[key] = plan
    plan = _PLANS[key]
    first = int(batch["id"][0]) * context["every"]
    index = np.arange(first, min(first + context["every"], rows), dtype=np.int64)
    raw = plan.materialize(index, False)
    out: dict[str, Any] = {"row": index}
    for name in ("input_ids", "labels", "position_ids", "segment_ids", "loss_weights"):
        if name in raw:
            out[name] = raw[name]
    return out
