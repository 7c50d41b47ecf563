"""Files in and out for the command line: chat or token records from JSON, JSONL or Parquet;
packed batches to Parquet or ``.npy`` arrays, written under a temporary name and renamed,
so a failed run never leaves a half-written OUTPUT."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from seqpack.batch import PackedBatch
from seqpack.errors import InvalidFileError, InvalidOptionError

INPUT_SUFFIXES = (".json", ".jsonl", ".ndjson", ".parquet")


@dataclass(frozen=True)
class InputData:
    """What a file holds: chat records (as a path the native reader streams, or objects) or
    pre-tokenized sequences."""

    kind: str  # "chat" or "tokens"
    path: Path
    records: list[Any] | None = None
    sequences: list[list[int]] | None = None
    labels: list[list[int]] | None = None


def _peek_kind(path: Path) -> str:
    with open(path, encoding="utf-8", errors="replace") as handle:
        head = handle.read(1 << 16)
    keys = re.findall(r'"(input_ids|messages|conversations|instruction)"\s*:', head)
    return "tokens" if keys and keys[0] == "input_ids" else "chat"


def _token_records(records: list[Any], path: Path) -> InputData:
    sequences, labels = [], []
    for index, record in enumerate(records):
        if not isinstance(record, dict) or "input_ids" not in record:
            raise InvalidFileError(f"{path}: record {index}: field 'input_ids' is missing")
        if not isinstance(record["input_ids"], list):
            raise InvalidFileError(
                f"{path}: record {index}: field 'input_ids' must be a list of token ids"
            )
        sequences.append(record["input_ids"])
        labels.append(record.get("labels"))
    has_labels = [label is not None for label in labels]
    if any(has_labels) and not all(has_labels):
        missing = has_labels.index(False)
        raise InvalidFileError(
            f"{path}: record {missing}: field 'labels' is missing (others have it)"
        )
    all_labels = cast(list[list[int]], labels) if all(has_labels) else None
    return InputData("tokens", path, sequences=sequences, labels=all_labels)


def read_input(path: str | os.PathLike[str], *, kind: str = "auto") -> InputData:
    """Open an input file; ``kind`` is ``"auto"``, ``"chat"`` or ``"tokens"``."""
    path = Path(path)
    if not path.is_file():
        raise InvalidFileError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in INPUT_SUFFIXES:
        raise InvalidFileError(
            f"{path}: unknown input format '{suffix}' (expected {', '.join(INPUT_SUFFIXES)})"
        )
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:  # pragma: no cover - the cli extra installs it
            raise InvalidOptionError(
                "reading Parquet needs pyarrow: pip install 'seqpack[cli]'"
            ) from exc
        import pyarrow as pa

        try:
            records = pq.read_table(path).to_pylist()
        except (OSError, pa.ArrowException) as exc:
            raise InvalidFileError(f"{path}: not a readable Parquet file ({exc})") from None
        if kind == "tokens" or (kind == "auto" and records and "input_ids" in records[0]):
            return _token_records(records, path)
        return InputData("chat", path, records=records)
    if kind == "auto":
        kind = _peek_kind(path)
    if kind == "chat":
        return InputData("chat", path)
    loaded: Any = []
    try:
        if suffix == ".json":
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise InvalidFileError(
                    f"{path}, line {exc.lineno}: not valid JSON ({exc.msg})"
                ) from None
            if not isinstance(loaded, list):
                raise InvalidFileError(
                    f"{path}: expected a JSON array of records, got {type(loaded).__name__}"
                )
        else:
            with open(path, encoding="utf-8") as handle:
                for number, line in enumerate(handle, 1):
                    if line.strip():
                        try:
                            loaded.append(json.loads(line))
                        except json.JSONDecodeError as exc:
                            raise InvalidFileError(
                                f"{path}, line {number}: not valid JSON ({exc.msg})"
                            ) from None
    except UnicodeDecodeError as exc:
        raise InvalidFileError(
            f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    return _token_records(loaded, path)


def _atomic_target(output: Path) -> Path:
    """A private staging folder beside ``output`` (same file system, so renames are atomic)."""
    output = output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))


def write_parquet(batch: PackedBatch, output: Path) -> None:
    """Rows as ``list<int32>`` columns: input_ids, labels, position_ids, seq_lens."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows, width = batch.input_ids.shape
    int32 = np.iinfo(np.int32)
    for name in ("input_ids", "labels"):
        values = getattr(batch, name)
        if values.size and (int(values.max()) > int32.max or int(values.min()) < int32.min):
            raise InvalidOptionError(
                f"{name} hold values outside int32, which the Parquet output's list<int32> columns "
                "cannot store; write .npy arrays instead (a folder name as OUTPUT)"
            )
    # int64 list offsets (large_list): more than 2^31 values fit.
    offsets = pa.array(np.arange(0, rows * width + 1, width, dtype=np.int64))

    def column(array: np.ndarray) -> pa.Array:
        return pa.LargeListArray.from_arrays(offsets, pa.array(array.reshape(-1).astype(np.int32)))

    seq_offsets = batch.row_offsets
    seq_lens = pa.LargeListArray.from_arrays(
        pa.array(seq_offsets), pa.array(batch.seq_lens.astype(np.int32))
    )
    columns = {
        "input_ids": column(batch.input_ids),
        "labels": column(batch.labels),
        "position_ids": column(batch.position_ids),
        "seq_lens": seq_lens,
    }
    # Where every packed sequence came from: its input sample and, for chat input, record.
    sources = batch.source_index
    if batch.sample_record is not None:
        sources = batch.sample_record[sources]
    columns["source_index"] = pa.LargeListArray.from_arrays(
        pa.array(seq_offsets), pa.array(sources.astype(np.int64))
    )
    table = pa.table(columns)
    staging = _atomic_target(output)
    try:
        pq.write_table(table, staging / output.name)
        os.replace(staging / output.name, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


NPY_ARRAYS = (
    "input_ids",
    "labels",
    "position_ids",
    "segment_ids",
    "row_offsets",
    "cu_seqlens",
    "seq_lens",
    "source_index",
)


def write_npy(batch: PackedBatch, output: Path) -> None:
    """One ``.npy`` file per array in the folder ``output`` (new, or holding only these
    files: nothing else in it is ever touched)."""
    names = {f"{name}.npy" for name in NPY_ARRAYS} | {"sample_record.npy", "sample_window.npy"}
    if output.exists():
        if not output.is_dir():
            raise InvalidOptionError(f"{output}: exists and is not a folder (for .npy output)")
        foreign = sorted(p.name for p in output.iterdir() if p.name not in names)
        if foreign:
            raise InvalidOptionError(
                f"{output}: the folder holds other files ({', '.join(foreign[:3])}"
                f"{', ...' if len(foreign) > 3 else ''}); give a new or empty folder for .npy "
                "output"
            )
    arrays = {name: getattr(batch, name) for name in NPY_ARRAYS}
    if batch.sample_record is not None and batch.sample_window is not None:
        arrays["sample_record"] = batch.sample_record
        arrays["sample_window"] = batch.sample_window
    staging = _atomic_target(output.resolve())
    try:
        for name, array in arrays.items():
            np.save(staging / f"{name}.npy", array)
        output.mkdir(parents=True, exist_ok=True)
        for name in arrays:
            os.replace(staging / f"{name}.npy", output / f"{name}.npy")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_text(text: str, output: Path) -> None:
    staging = _atomic_target(output)
    try:
        (staging / output.name).write_text(text, encoding="utf-8")
        os.replace(staging / output.name, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_output(batch: PackedBatch, output: str | os.PathLike[str]) -> list[Path]:
    """Write a packed batch (``.parquet`` file or ``.npy`` folder) and, for chat input, the
    report as JSONL beside it. Returns the paths written."""
    output = Path(output)
    written = []
    if output.suffix.lower() == ".parquet":
        write_parquet(batch, output)
    elif output.suffix == "":
        write_npy(batch, output)
    else:
        raise InvalidOptionError(
            f"{output}: unknown output format '{output.suffix}' (expected .parquet, or a folder "
            "name without a suffix for .npy arrays)"
        )
    written.append(output)
    if batch.report is not None:
        report = output.with_name(output.name + ".report.jsonl")
        staging = _atomic_target(report)
        try:
            batch.report.write_jsonl(staging / report.name)
            os.replace(staging / report.name, report)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        written.append(report)
    return written
