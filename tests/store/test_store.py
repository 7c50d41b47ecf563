"""The token store: what is written chunk by chunk reads back equal to what ``encode`` (or the
token input) gives in memory, from every kind of source; what is truncated, changed or
unfinished does not open; bad input names its record by its index in the whole dataset."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import seqpack
from conftest import load_records, require_chat_data


def assert_same_samples(
    store: seqpack.store.TokenStore, encoded: seqpack.EncodedConversations
) -> None:
    assert len(store) == len(encoded)
    np.testing.assert_array_equal(store.tokens, encoded.tokens.astype(np.uint32))
    np.testing.assert_array_equal(store.offsets, encoded.offsets)
    np.testing.assert_array_equal(store.lengths, np.diff(encoded.offsets))
    np.testing.assert_array_equal(store.sample_record, encoded.sample_record)
    np.testing.assert_array_equal(store.sample_window, encoded.sample_window)
    for i in range(len(encoded)):
        tokens, labels = store[i]
        expected_tokens, expected_labels = encoded.sample(i)
        np.testing.assert_array_equal(tokens, expected_tokens)
        np.testing.assert_array_equal(labels, expected_labels)


@settings(max_examples=60)
@given(
    lengths=st.lists(st.integers(1, 40), min_size=1, max_size=60),
    chunk_size=st.integers(1, 25),
    with_labels=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_token_sequences_read_back_exactly(
    tmp_path_factory, lengths, chunk_size, with_labels, seed
):
    rng = np.random.default_rng(seed)
    sequences = [rng.integers(0, 50_000, size=n) for n in lengths]
    labels = [
        np.where(rng.random(n) < 0.4, -100, s) for s, n in zip(sequences, lengths, strict=True)
    ]
    source: list[Any] = (
        [
            {"input_ids": s.tolist(), "labels": lab.tolist()}
            for s, lab in zip(sequences, labels, strict=True)
        ]
        if with_labels
        else sequences
    )
    path = tmp_path_factory.mktemp("store") / "s"
    store = seqpack.store.write(path, source, chunk_size=chunk_size)
    assert len(store) == len(lengths)
    assert store.manifest["tokens"] == sum(lengths) and store.manifest["records"] == len(lengths)
    assert store.manifest["labels"] == "trained_mask"
    np.testing.assert_array_equal(store.lengths, lengths)
    for i, seq in enumerate(sequences):
        tokens, got = store[i]
        np.testing.assert_array_equal(tokens, seq)
        np.testing.assert_array_equal(got, labels[i] if with_labels else seq)
    # The content fingerprint depends on the data, not on how it was chunked.
    again = seqpack.store.write(path.with_name("t"), source, chunk_size=max(1, chunk_size // 2))
    assert again.fingerprint == store.fingerprint


def test_labels_other_than_the_token_are_kept_whole(tmp_path):
    source = [
        {"input_ids": [1, 2, 3], "labels": [-100, 7, 3]},
        {"input_ids": [4, 5], "labels": [4, 5]},
    ]
    store = seqpack.store.write(tmp_path / "s", source, chunk_size=1)
    assert store.manifest["labels"] == "int32"
    assert store[0][1].tolist() == [-100, 7, 3] and store[1][1].tolist() == [4, 5]


def test_conversations_equal_encode_in_memory_from_every_source(tmp_path, qwen_dir):
    files = {p.name: p for p in require_chat_data()}
    path = files["glaive_toolcall_en_demo.json"]
    options: dict[str, Any] = {
        "tokenizer": qwen_dir,
        "template": "qwen3",
        "max_length": 1024,
        "on_error": "skip",
    }
    encoded = seqpack.encode(path, **options)
    records = load_records(path)
    seen: list[int] = []
    # A .json file read and encoded in Rust, 7 records at a time.
    from_file = seqpack.store.write(
        tmp_path / "file", path, chunk_size=7, progress=seen.append, **options
    )
    assert_same_samples(from_file, encoded)
    assert seen[-1] == len(records) and seen == sorted(seen) and len(seen) == -(-len(records) // 7)
    assert from_file.report.records == encoded.report.records
    assert from_file.report.summary() == encoded.report.summary()
    assert from_file.manifest["records"] == len(records)
    # Python objects, a generator, Parquet and a .jsonl copy: the same samples.
    jsonl = tmp_path / "records.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))
    table = (
        pa.table({"messages": [r.get("messages") for r in records]})
        if "messages" in records[0]
        else None
    )
    sources: list[Any] = [records, (r for r in records), jsonl]
    if table is None:
        parquet = tmp_path / "records.parquet"
        pq.write_table(pa.Table.from_pylist(records), parquet)
        sources.append(parquet)
    for k, source in enumerate(sources):
        store = seqpack.store.write(tmp_path / f"s{k}", source, chunk_size=50, **options)
        assert_same_samples(store, encoded)
        assert store.fingerprint == from_file.fingerprint
    assert from_file.manifest["source"]["template"] == "builtin:qwen3"
    assert len(from_file.manifest["source"]["tokenizer"]) == 64


def test_arrow_token_columns_and_hugging_face_datasets(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = [
        {"input_ids": list(range(n, 2 * n + 1)), "labels": [-100, *range(n + 1, 2 * n + 1)]}
        for n in range(1, 30)
    ]
    table = pa.Table.from_pylist(
        rows,
        schema=pa.schema([("input_ids", pa.list_(pa.int32())), ("labels", pa.list_(pa.int64()))]),
    )
    parquet = tmp_path / "tokens.parquet"
    pq.write_table(table, parquet, row_group_size=7)
    reference = seqpack.store.write(tmp_path / "ref", rows, chunk_size=4)
    for k, source in enumerate(
        [parquet, datasets.Dataset(table), datasets.Dataset.from_list(rows).to_iterable_dataset()]
    ):
        store = seqpack.store.write(tmp_path / f"s{k}", source, chunk_size=5)
        assert store.fingerprint == reference.fingerprint, type(source)


def test_truncated_changed_or_unfinished_stores_raise_typed_errors(tmp_path):
    store = seqpack.store.write(tmp_path / "s", [[1, 2, 3], [4, 5]])
    copy = tmp_path / "copy"
    shutil.copytree(store.path, copy)
    seqpack.store.open(copy)
    tokens = copy / "tokens.u32"
    tokens.write_bytes(tokens.read_bytes()[:-4])
    with pytest.raises(seqpack.InvalidStoreError, match=r"tokens.u32 holds 16 bytes.*truncated"):
        seqpack.store.open(copy)
    shutil.rmtree(copy)
    shutil.copytree(store.path, copy)
    lengths = copy / "lengths.u32"
    lengths.write_bytes(np.array([2, 3], dtype="<u4").tobytes())
    with pytest.raises(
        seqpack.InvalidStoreError, match=r"sample 0: offsets.i64 and lengths.u32 disagree"
    ):
        seqpack.store.open(copy)
    manifest = json.loads((store.path / "manifest.json").read_text())
    manifest["version"] = 99
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(seqpack.InvalidStoreError, match="layout version 99"):
        seqpack.store.open(copy)
    # Found by the atheris campaign (fuzz/atheris_entry_points.py store): a manifest with a
    # byte that is not UTF-8 raised UnicodeDecodeError.
    broken = bytearray(json.dumps(manifest).encode())
    broken[40] = 0xC9
    (copy / "manifest.json").write_bytes(bytes(broken))
    with pytest.raises(seqpack.InvalidStoreError, match=r"manifest.json is not UTF-8 \(byte 40\)"):
        seqpack.store.open(copy)
    (copy / "manifest.json").unlink()
    with pytest.raises(seqpack.InvalidStoreError, match=r"no manifest.json"):
        seqpack.store.open(copy)
    with pytest.raises(seqpack.InvalidStoreError, match="no such folder"):
        seqpack.store.open(tmp_path / "nothing")

    # A write stopped midway (here by its progress callback) leaves nothing behind.
    def stop(records: int) -> None:
        if records >= 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        seqpack.store.write(tmp_path / "stopped", [[1, 2]] * 10, chunk_size=2, progress=stop)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy", "s"]
    # An existing store is kept unless overwrite=True.
    with pytest.raises(OSError, match="already exists"):
        seqpack.store.write(store.path, [[9]])
    assert len(seqpack.store.write(store.path, [[9]], overwrite=True)) == 1


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_corruption_is_a_typed_error_or_a_consistent_store(tmp_path_factory, data):
    """What the fuzz campaign's store target checks, as a property: overwrite or cut any file
    of a store; opening and reading it either raises InvalidStoreError or gives samples whose
    tokens and labels have the lengths the store says."""
    folder = tmp_path_factory.mktemp("corrupt")
    store = seqpack.store.write(folder / "s", [[1, 2, 3], [4, 5], list(range(6, 40))])
    files = sorted(p for p in store.path.iterdir() if p.is_file())
    target = data.draw(st.sampled_from(files))
    content = bytearray(target.read_bytes())
    if data.draw(st.booleans()):
        content = content[: data.draw(st.integers(0, max(len(content) - 1, 0)))]
    elif content:
        at = data.draw(st.integers(0, len(content) - 1))
        patch = data.draw(st.binary(min_size=1, max_size=8))
        content[at : at + len(patch)] = patch
    target.write_bytes(bytes(content))
    try:
        opened = seqpack.store.open(store.path)
        for i in range(len(opened)):
            tokens, labels = opened[i]
            assert len(tokens) == len(labels) == opened.lengths[i]
    except seqpack.InvalidStoreError:
        pass


def test_bad_input_names_the_record_in_the_whole_dataset(tmp_path, qwen_dir):
    sequences: list[Any] = [[1, 2]] * 7 + [[1, -5]]
    with pytest.raises(seqpack.InvalidTokenError, match="sequence 7"):
        seqpack.store.write(tmp_path / "a", sequences, chunk_size=3)
    with pytest.raises(seqpack.InvalidTokenError, match="uint32"):
        seqpack.store.write(tmp_path / "b", [[1], [2**33]], chunk_size=1)
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    bad = {"messages": [{"role": "bot", "content": "hi"}]}
    records = [good] * 5 + [bad]
    with pytest.raises(seqpack.InvalidRecordError, match="record 5") as caught:
        seqpack.store.write(
            tmp_path / "c",
            records,
            tokenizer=qwen_dir,
            template="qwen3",
            max_length=64,
            chunk_size=2,
        )
    assert caught.value.index == 5
    skipped = seqpack.store.write(
        tmp_path / "d",
        records,
        tokenizer=qwen_dir,
        template="qwen3",
        max_length=64,
        chunk_size=2,
        on_error="skip",
    )
    assert [r.status for r in skipped.report.records] == ["kept"] * 5 + ["skipped"]
    with pytest.raises(seqpack.InvalidOptionError, match="max_length: required"):
        seqpack.store.write(tmp_path / "e", records, tokenizer=qwen_dir)
    with pytest.raises(seqpack.InvalidOptionError, match=r"keep_first_turn.*pass tokenizer="):
        seqpack.store.write(tmp_path / "f", [[1]], keep_first_turn=True)
    with pytest.raises(seqpack.InvalidOptionError, match="got a pandas DataFrame"):
        import pandas as pd

        seqpack.store.write(
            tmp_path / "g", pd.DataFrame({"x": [1]}), tokenizer=qwen_dir, max_length=8
        )
    assert not [p for p in Path(tmp_path).iterdir() if p.name != "d"]


def test_a_bad_record_in_one_of_several_files_names_the_file_and_line(tmp_path, qwen_dir):
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text(json.dumps(good) + "\n")
    second.write_text(json.dumps(good) + "\n\n" + json.dumps({"messages": 5}) + "\n")
    options: dict[str, Any] = {"tokenizer": qwen_dir, "template": "qwen3", "max_length": 64}
    # Record 2 of the whole dataset in the store, record 1 of the file alone; line 3 of b.
    cases = [
        (lambda: seqpack.store.write(tmp_path / "s", str(tmp_path / "*.jsonl"), **options), 2),
        (lambda: seqpack.encode(second, **options), 1),
    ]
    for run, index in cases:
        with pytest.raises(seqpack.InvalidRecordError) as caught:
            run()
        message = str(caught.value)
        assert message.startswith(f"{second}: record {index} (line 3): field 'messages'"), message
        assert caught.value.index == index
