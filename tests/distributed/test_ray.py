"""Ray Data: the store written by actors and the rows packed by Ray tasks are byte-identical
to the single-process ones for any number of actors, blocks or batch sizes; a failing record
is named by the same index and raised as the same typed error. The module starts and stops
its own local Ray instance (``num_cpus=2``)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import seqpack
from seqpack.cli import synthetic

ray = pytest.importorskip("ray", reason="the seqpack[ray] extra (Ray Data) is not installed")
import seqpack.ray as spray  # noqa: E402  # after the skip: it needs Ray

OPTIONS: dict[str, Any] = {
    "tokenizer": str(synthetic.TOKENIZER_PATH),
    "template": "qwen3",
    "max_length": 160,
}


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
        ignore_reinit_error=True,
    )  # fmt: skip
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    yield
    ray.shutdown()


def records(count=240):
    """Synthetic chat records, some too long (truncated or dropped) and a few with no
    assistant turn (skipped under on_error="skip")."""
    out = synthetic.conversations(count, seed=3)
    for k in range(5, count, 37):
        out[k] = copy.deepcopy(out[k])
        out[k]["messages"] = [m for m in out[k]["messages"] if m["role"] != "assistant"]
    return out


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize(
    ("concurrency", "blocks", "batch_size"), [(1, 1, 1024), (2, 7, 33), (2, 3, 1)]
)
def test_the_store_is_byte_identical_to_the_single_process_one(
    tmp_path, concurrency, blocks, batch_size
):
    data = records()
    single = seqpack.store.write(tmp_path / "single", data, on_error="skip", **OPTIONS)
    statuses = single.report.summary().statuses
    assert single.manifest["records"] == len(data) > statuses.get("kept", 0)
    assert statuses.get("skipped", 0) > 0  # some records leave only a report
    ds = ray.data.from_items(data, override_num_blocks=blocks)
    distributed = spray.write_store(
        ds, tmp_path / "ray", concurrency=concurrency, batch_size=batch_size,
        num_cpus=0.5, on_error="skip", **OPTIONS,
    )  # fmt: skip
    assert files_of(distributed.path) == files_of(single.path)


def test_encode_keeps_every_record_as_a_sample_or_a_report(tmp_path):
    data = records(120)
    encoded = spray.encode(ray.data.from_items(data, override_num_blocks=4), on_error="skip",
                           concurrency=2, num_cpus=0.5, batch_size=16, **OPTIONS)  # fmt: skip
    rows = sorted(encoded.take_all(), key=lambda r: (r["record"], r["window"]))
    reference = seqpack.encode(data, on_error="skip", **OPTIONS)
    samples = [r for r in rows if len(r["input_ids"])]
    assert len(samples) == len(reference)
    for k, row in enumerate(samples):
        tokens, labels = reference.sample(k)
        assert row["record"] == reference.sample_record[k]
        np.testing.assert_array_equal(row["input_ids"], tokens)
        np.testing.assert_array_equal(row["labels"], labels)
    reports = [r["report"] for r in rows if r["report"] is not None]
    assert len(reports) == len(data)  # every record, with or without a sample, is reported
    empty = {r["record"] for r in rows if not len(r["input_ids"])}
    assert empty == {
        r.record for r in reference.report.records if r.status in ("skipped", "dropped")
    }


def test_token_sequences_too(tmp_path):
    rng = np.random.default_rng(0)
    sequences = [rng.integers(0, 1000, rng.integers(1, 50)).tolist() for _ in range(300)]
    single = seqpack.store.write(tmp_path / "single", sequences)
    ds = ray.data.from_items([{"input_ids": s} for s in sequences], override_num_blocks=5)
    distributed = spray.write_store(ds, tmp_path / "ray")
    assert files_of(distributed.path) == files_of(single.path)
    # Through a stage with numpy batches, whose list columns come back as Ray's tensor
    # columns: variable-shaped, and of fixed shape where a block's rows are as long (before:
    # "field 'input_ids' must be a list of integers, got ArrowVariableShapedTensorType").
    equal = [s[:1] for s in sequences[:100]] + sequences[100:]
    single = seqpack.store.write(tmp_path / "single-equal", equal)
    ds = ray.data.from_items([{"input_ids": s} for s in equal], override_num_blocks=5)
    numpy_stage = ds.map_batches(lambda batch: batch, batch_format="numpy")
    distributed = spray.write_store(numpy_stage, tmp_path / "ray-equal")
    assert files_of(distributed.path) == files_of(single.path)


def late_first_block(data: list[Any]) -> type:
    """A user's own map stage whose first block finishes last (it waits on the first record);
    a class defined in a function, so Ray pickles it by value for its workers."""
    first = json.dumps(data[0], sort_keys=True)

    class Late:
        def __call__(self, batch: Any) -> Any:
            import time

            rows = [json.dumps({k: v for k, v in r.items() if v is not None}, sort_keys=True)
                    for r in batch.to_pylist()]  # fmt: skip
            if first in rows:
                time.sleep(1.0)
            return batch

    return Late


@pytest.mark.parametrize("kind", ["tokens", "conversations"])
def test_the_order_holds_when_batches_finish_out_of_order(tmp_path, kind):
    """A Dataset runs with the DataContext it was created with: turning the current
    context's preserve_order on inside write_store did not reach it, and a store written
    from a stage whose batches finish out of order came out in another order, silently
    (seen first as a rare failure of the byte-identity test above). The store is the
    single-process one, and the caller's Dataset keeps its own order setting."""
    rng = np.random.default_rng(1)
    if kind == "tokens":
        data: list[Any] = [
            {"input_ids": rng.integers(0, 1000, rng.integers(1, 30)).tolist()} for _ in range(80)
        ]
        single = seqpack.store.write(tmp_path / "single", [d["input_ids"] for d in data])
        options: dict[str, Any] = {}
    else:
        data = records(80)
        options = {**OPTIONS, "on_error": "skip", "batch_size": 1, "concurrency": 2,
                   "num_cpus": 0.5}  # fmt: skip
        single = seqpack.store.write(tmp_path / "single", data, on_error="skip", **OPTIONS)

    ds = ray.data.from_items(data, override_num_blocks=4)
    assert not ds.context.execution_options.preserve_order
    jittered = ds.map_batches(
        late_first_block(data), batch_size=1, concurrency=2, num_cpus=0.5, batch_format="pyarrow"
    )
    distributed = spray.write_store(jittered, tmp_path / "ray", **options)
    assert files_of(distributed.path) == files_of(single.path)
    assert not jittered.context.execution_options.preserve_order


def test_encode_numbers_records_by_position_when_batches_finish_out_of_order():
    """encode numbers records by zipping the Dataset with a row index, which pairs rows by
    position only in a Dataset that keeps its order (Ray warns as much): each record's
    samples are the single-process encode's, under a stage whose first block finishes last."""
    data = records(60)
    expected = seqpack.encode(data, on_error="skip", **OPTIONS)
    ds = ray.data.from_items(data, override_num_blocks=4).map_batches(
        late_first_block(data), batch_size=1, concurrency=2, num_cpus=0.5, batch_format="pyarrow"
    )
    rows = spray.encode(ds, on_error="skip", concurrency=2, num_cpus=0.5, **OPTIONS).take_all()
    got: dict[int, list[list[int]]] = {}
    for row in rows:
        if len(row["input_ids"]):
            got.setdefault(int(row["record"]), []).append(list(row["input_ids"]))
    want: dict[int, list[list[int]]] = {}
    for k in range(len(expected)):
        want.setdefault(int(expected.sample_record[k]), []).append(expected.sample(k)[0].tolist())
    assert got == want


def test_packed_rows_are_byte_identical_to_pack(tmp_path):
    data = records()
    expected = seqpack.pack(data, on_error="skip", strategy="bfd", **OPTIONS)
    ds = ray.data.from_items(data, override_num_blocks=3)
    # From the Dataset itself: written to a store by actors, then packed by Ray tasks.
    packed = spray.pack(
        ds, store=tmp_path / "store", rows_per_task=7, on_error="skip", concurrency=2,
        num_cpus=0.5, **OPTIONS,
    )  # fmt: skip
    rows = sorted(packed.take_all(), key=lambda r: r["row"])
    assert [r["row"] for r in rows] == list(range(expected.num_rows))
    for name in ("input_ids", "labels", "position_ids", "segment_ids"):
        got = np.stack([r[name] for r in rows])
        np.testing.assert_array_equal(got, getattr(expected, name), err_msg=name)
        assert got.dtype == getattr(expected, name).dtype


def test_a_failing_record_is_named_and_raised_as_in_one_process(tmp_path):
    data = records(60)
    with pytest.raises(seqpack.InvalidRecordError) as single:
        seqpack.store.write(tmp_path / "single", data, **OPTIONS)
    ds = ray.data.from_items(data, override_num_blocks=4)
    with pytest.raises(seqpack.InvalidRecordError) as distributed:
        spray.write_store(
            ds, tmp_path / "ray", concurrency=2, num_cpus=0.5, batch_size=8, **OPTIONS
        )
    assert str(distributed.value) == str(single.value)
    assert "record 5" in str(distributed.value)
    assert not (tmp_path / "ray").exists()  # nothing that looks like a store


def write_jsonl(folder: Path, data: list[Any], parts: int) -> None:
    """``data`` in ``parts`` .jsonl files, with blank lines, CRLF and a byte order mark."""
    folder.mkdir()
    size = -(-len(data) // parts)
    for k in range(parts):
        lines = [json.dumps(r, ensure_ascii=False) for r in data[k * size : (k + 1) * size]]
        text = "\n\n".join(lines[:3]) + "\r\n" + "\n".join(lines[3:]) + "\n  \n"
        (folder / f"part-{k}.jsonl").write_bytes(b"\xef\xbb\xbf" * (k == 1) + text.encode())


def test_jsonl_files_give_the_same_store_and_name_a_failing_record_by_file_and_line(tmp_path):
    # read_jsonl streams each file in blocks of whole lines (never a whole file in memory).
    data = records(90)
    write_jsonl(tmp_path / "in", data, parts=3)
    pattern = str(tmp_path / "in" / "*.jsonl")
    single = seqpack.store.write(tmp_path / "single", pattern, on_error="skip", **OPTIONS)
    # Files read 97 bytes at a time: most records are longer than that, many blocks a file.
    distributed = spray.write_store(
        spray.read_jsonl(pattern, block_bytes=97), tmp_path / "ray", concurrency=2,
        num_cpus=0.5, batch_size=7, on_error="skip", **OPTIONS,
    )  # fmt: skip
    # The same tokens, labels and reports (with their lines); the manifests differ only in
    # the single-process one listing its input files.
    ours, theirs = files_of(distributed.path), files_of(single.path)
    manifests = [json.loads(f.pop("manifest.json")) for f in (ours, theirs)]
    assert ours == theirs
    assert manifests[1]["source"].pop("inputs") and manifests[0] == manifests[1]
    # Without skipping: the first failing record (record 5, in part-0) raises, named by its
    # file and line, exactly as store.write names it.
    with pytest.raises(seqpack.InvalidRecordError) as expected:
        seqpack.store.write(tmp_path / "single2", pattern, **OPTIONS)
    with pytest.raises(seqpack.InvalidRecordError) as got:
        spray.write_store(spray.read_jsonl(pattern), tmp_path / "ray2", concurrency=2,
                          num_cpus=0.5, batch_size=4, **OPTIONS)  # fmt: skip
    assert str(got.value) == str(expected.value)
    assert str(got.value).startswith(f"{tmp_path / 'in' / 'part-0.jsonl'}: record 5 (line "), (
        got.value
    )
    # A line that is not JSON in the second file of records that are otherwise good.
    write_jsonl(tmp_path / "good", synthetic.conversations(30, seed=4), parts=3)
    bad = tmp_path / "good" / "part-1.jsonl"
    bad.write_bytes(bad.read_bytes() + b"{oops\n")
    pattern = str(tmp_path / "good" / "*.jsonl")
    with pytest.raises(seqpack.InvalidRecordError) as expected:
        seqpack.store.write(tmp_path / "single3", pattern, **OPTIONS)
    with pytest.raises(seqpack.InvalidRecordError) as got:
        spray.write_store(spray.read_jsonl(pattern), tmp_path / "ray3", num_cpus=0.5, **OPTIONS)
    assert str(got.value) == str(expected.value)
    assert str(got.value).startswith(f"{bad}: record 20 (line 14): not valid JSON"), got.value


def test_bad_options_fail_in_the_driver_naming_themselves(tmp_path):
    ds = ray.data.from_items(records(10))
    with pytest.raises(seqpack.InvalidOptionError, match="option max_length"):
        spray.write_store(ds, tmp_path / "a", tokenizer=OPTIONS["tokenizer"])
    with pytest.raises(seqpack.InvalidOptionError, match="option colour"):
        spray.encode(ds, colour=1, **OPTIONS)
    with pytest.raises(seqpack.InvalidOptionError, match="option rows_per_task"):
        spray.pack(seqpack.store.write(tmp_path / "s", [[1, 2]]), max_length=4, rows_per_task=0)
    with pytest.raises(seqpack.InvalidOptionError, match="option block_bytes"):
        spray.read_jsonl(str(tmp_path / "a.txt"), block_bytes=0)
    with pytest.raises(seqpack.InvalidOptionError, match=r"option paths: the glob .* matches no"):
        spray.read_jsonl(str(tmp_path / "none" / "*.jsonl"))
    (tmp_path / "a.txt").write_text("{}\n")
    with pytest.raises(seqpack.InvalidFileError, match="unknown input format"):
        spray.read_jsonl(str(tmp_path / "a.txt"))


def test_a_jsonl_file_is_read_in_blocks_of_whole_lines(tmp_path):
    # Every record, with its line, as the whole-file finder gives them, for any block size;
    # no block holds more than block_bytes plus one line (a line is never cut).
    text = b"\xef\xbb\xbf" + b'{"a": 1}\r\n\n  \n' + b'{"b": "' + b"x" * 40 + b'"}\n\xff{\n{"c": 3}'
    path = tmp_path / "f.jsonl"
    path.write_bytes(text)
    starts, ends, lines = seqpack._seqpack.jsonl_lines(text)
    whole = [(text[a:b], n) for a, b, n in zip(starts, ends, lines, strict=True)]
    longest = max(len(line) for line in text.split(b"\n")) + 1
    for block in (1, 2, 5, 11, 12, 13, 40, 1000):
        got: list[tuple[bytes, int]] = []
        for table in spray._jsonl_blocks(str(path), "named.jsonl", block):
            raw = table.column(spray.LINE_TEXT).to_pylist()
            assert sum(len(r) for r in raw) <= block + longest
            assert set(table.column(spray.LINE_FILE).to_pylist()) == {"named.jsonl"}
            got += zip(raw, table.column(spray.LINE_NUMBER).to_pylist(), strict=True)
        assert got == whole, block
