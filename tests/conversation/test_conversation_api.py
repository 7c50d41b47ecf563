"""The conversation API after the one-way split: ``pack(records, tokenizer=...)`` is exactly
``pack(encode(records, ...))``, the old option names still work with a warning, the
"too long" vocabulary is the token path's, and wrong input says what it is."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest

import seqpack
from seqpack.tokenizer import load_tokenizer


def conversation(i: int, long: bool = False) -> dict[str, Any]:
    filler = " ".join(f"word{k}" for k in range(300 if long else 3))
    return {
        "messages": [
            {"role": "system", "content": f"System {i}."},
            {"role": "user", "content": f"Question {i}? {filler}"},
            {"role": "assistant", "content": f"Answer {i}."},
            {"role": "user", "content": f"Follow-up {i}?"},
            {"role": "assistant", "content": f"Second answer {i}."},
        ]
    }


RECORDS = [conversation(i, long=i % 3 == 0) for i in range(12)]
ARRAYS = ("input_ids", "labels", "position_ids", "segment_ids", "row_offsets", "cu_seqlens")


def same_batches(a: seqpack.PackedBatch, b: seqpack.PackedBatch) -> None:
    for name in (*ARRAYS, "source_index", "sample_record", "sample_window"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.report is not None and b.report is not None
    assert a.report.records == b.report.records


def test_pack_with_tokenizer_is_pack_of_encode(qwen_dir):
    sugar = seqpack.pack(
        RECORDS, tokenizer=qwen_dir, template="qwen3", max_length=256, seed=3,
        keep_first_turn=True, train_on=["assistant"], on_error="skip",
    )  # fmt: skip
    encoded = seqpack.encode(
        RECORDS, tokenizer=qwen_dir, template="qwen3", max_length=256,
        keep_first_turn=True, train_on=["assistant"], on_error="skip",
    )  # fmt: skip
    same_batches(sugar, seqpack.pack(encoded, max_length=256, seed=3))
    # The packing stage saw only samples that fit.
    assert sugar.stats.dropped_sequences == sugar.stats.truncated_sequences == 0
    assert sugar.stats.input_sequences == len(encoded)


def test_old_option_names_warn_and_mean_the_same(qwen_dir):
    new = seqpack.encode(
        RECORDS, tokenizer=qwen_dir, template="qwen3", max_length=128,
        overlong="split", truncate_keep="ends",
    )  # fmt: skip
    with pytest.warns(DeprecationWarning, match="overflow= is deprecated"):
        with pytest.warns(DeprecationWarning, match="cut_keep= is deprecated"):
            old = seqpack.encode(
                RECORDS, tokenizer=qwen_dir, template="qwen3", max_length=128,
                overflow="split", cut_keep="middle",
            )  # fmt: skip
    np.testing.assert_array_equal(old.tokens, new.tokens)
    np.testing.assert_array_equal(old.labels, new.labels)
    with pytest.raises(seqpack.InvalidOptionError, match="given both overlong='drop'"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            seqpack.encode(
                RECORDS, tokenizer=qwen_dir, template="qwen3", max_length=128,
                overlong="drop", overflow="split",
            )  # fmt: skip
    # The new names raise no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        seqpack.pack(
            RECORDS, tokenizer=qwen_dir, template="qwen3", max_length=128, overlong="split"
        )


def test_overlong_error_and_drop_for_conversations(qwen_dir):
    lengths = [
        len(seqpack.encode([r], tokenizer=qwen_dir, template="qwen3", max_length=1 << 20).tokens)
        for r in RECORDS
    ]
    limit = 200
    first_long = next(i for i, n in enumerate(lengths) if n > limit)
    with pytest.raises(seqpack.OverlongSequenceError) as caught:
        seqpack.encode(
            RECORDS, tokenizer=qwen_dir, template="qwen3", max_length=limit, overlong="error"
        )
    assert caught.value.index == first_long
    assert (
        f"record {first_long}: {lengths[first_long]} tokens, more than max_length={limit}"
        in str(caught.value)
    )
    # on_error="skip" is for bad records, not for a policy the caller chose.
    with pytest.raises(seqpack.OverlongSequenceError):
        seqpack.encode(
            RECORDS, tokenizer=qwen_dir, template="qwen3", max_length=limit,
            overlong="error", on_error="skip",
        )  # fmt: skip
    dropped = seqpack.encode(
        RECORDS, tokenizer=qwen_dir, template="qwen3", max_length=limit, overlong="drop"
    )
    for record, report in enumerate(dropped.report.records):
        if lengths[record] > limit:
            assert (report.status, report.reason, report.windows) == (
                "dropped",
                "overlong_dropped",
                0,
            )
            assert sum(report.tokens_removed.values()) == report.tokens_before == lengths[record]
        else:
            assert report.status == "kept" and report.tokens_after == lengths[record]
    assert len(dropped.tokens) == sum(n for n in lengths if n <= limit)


def test_summary_covers_both_stages(qwen_dir):
    batch = seqpack.pack(RECORDS, tokenizer=qwen_dir, template="qwen3", max_length=200)
    assert batch.report is not None
    summary = batch.report.summary()
    text = batch.summary()
    assert text.index("conversations (encode):") < text.index("packing:")
    assert f"{summary.records}: " in text and "truncated" in text
    assert f"{summary.tokens_after:,} of {summary.tokens_before:,} kept" in text
    assert summary.tokens_after == batch.stats.real_tokens
    assert summary.statuses == batch.report.counts() and sum(summary.statuses.values()) == 12


@pytest.mark.parametrize(
    ("records", "message"),
    [
        (
            pd.DataFrame({"messages": [conversation(0)["messages"]]}),
            "got a pandas DataFrame; pass df.to_dict('records')",
        ),
        (["a.jsonl", "b.jsonl"], "got a list whose first item is str 'a.jsonl'"),
        ([[1, 2, 3]], "got a list of lists (token sequences?)"),
        (conversation(0), "got a single record (a dict); wrap it in a list"),
    ],
)
def test_wrong_containers_with_a_tokenizer(qwen_dir, records, message):
    with pytest.raises(seqpack.InvalidOptionError) as caught:
        seqpack.encode(records, tokenizer=qwen_dir, template="qwen3", max_length=64)
    assert message in str(caught.value), str(caught.value)


def test_chat_records_without_a_tokenizer_say_so():
    with pytest.raises(seqpack.InvalidTokenError, match="chat records\\?\\); pass tokenizer="):
        seqpack.pack(RECORDS, max_length=64)


def test_packing_nothing_names_the_reasons(qwen_dir):
    encoded = seqpack.encode(
        RECORDS[:3], tokenizer=qwen_dir, template="qwen3", max_length=8, overlong="drop"
    )
    assert len(encoded) == 0
    with pytest.raises(
        seqpack.EmptyInputError, match="none of the 3 records left a sample to pack"
    ):
        seqpack.pack(encoded, max_length=8)


def test_fast_tokenizer_switch(qwen_dir, monkeypatch):
    fast = seqpack.encode(RECORDS, tokenizer=qwen_dir, template="qwen3", max_length=256)
    slow = seqpack.encode(
        RECORDS, tokenizer=qwen_dir, template="qwen3", max_length=256, fast_tokenizer=False
    )
    np.testing.assert_array_equal(fast.tokens, slow.tokens)
    assert load_tokenizer(qwen_dir).native.is_fast
    assert not load_tokenizer(qwen_dir, fast=False).native.is_fast
    monkeypatch.setenv("SEQPACK_FAST_TOKENIZER", "0")
    assert not load_tokenizer(qwen_dir).native.is_fast
    assert load_tokenizer(qwen_dir, fast=True).native.is_fast
