"""The packing API a new user meets: one message per bad option (from the core), errors that say
what was passed and what is expected, row selections, and a short repr."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import seqpack


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_length": 0}, "option max_length: must be between 1 and 16777216, got 0"),
        ({"max_length": -5}, "option max_length: must be between 1 and 16777216, got -5"),
        ({"max_length": 1 << 30}, "option max_length: must be between 1 and 16777216"),
        ({"strategy": "best"}, "option strategy: unknown strategy 'best'"),
        ({"overlong": "cut"}, "option overlong: unknown policy 'cut'"),
        (
            {"overlong": "truncate", "truncate_keep": "left"},
            "option truncate_keep: unknown side 'left'",
        ),
        (
            {"overlong": "truncate", "truncate_keep": "ends"},
            "option truncate_keep: 'ends' keeps two",
        ),
        ({"max_seqs_per_row": 0}, "option max_seqs_per_row: must be at least 1, got 0"),
        ({"pad_rows_to_multiple_of": 0}, "option pad_rows_to_multiple_of: must be at least 1"),
        ({"loss_weights": "mean"}, "option loss_weights: unknown weighting 'mean'"),
        ({"dtype": "int16"}, "option dtype: unknown dtype 'int16'"),
        ({"seed": -1}, "option seed: must be in [0, 2**64)"),
        ({"max_length": 4.0}, "option max_length: must be an integer, got 4.0"),
        ({"strategy": 3}, "option strategy: must be a string, got 3"),
        ({"keep_first_turn": True}, "option keep_first_turn: keep_first_turn are options for chat"),
        ({"template": "qwen3"}, "option template: template are options for chat records"),
    ],
)
def test_every_bad_option_names_itself(options, message):
    kwargs = {"max_length": 8, **options}
    with pytest.raises(seqpack.InvalidOptionError) as caught:
        seqpack.pack([[1, 2, 3], [4, 5]], **kwargs)
    assert str(caught.value).startswith(message), str(caught.value)


def test_plan_and_pack_share_the_option_checks():
    for bad in ({"strategy": "x"}, {"max_length": 0}, {"overlong": "nope"}):
        with pytest.raises(seqpack.InvalidOptionError) as from_plan:
            seqpack.plan([3, 2], **{"max_length": 8, **bad})  # type: ignore[arg-type]
        with pytest.raises(seqpack.InvalidOptionError) as from_pack:
            seqpack.pack([[1, 2, 3], [4, 5]], **{"max_length": 8, **bad})  # type: ignore[arg-type]
        assert str(from_plan.value) == str(from_pack.value)


@pytest.mark.parametrize(
    ("sequences", "message"),
    [
        (pd.DataFrame({"input_ids": [[1, 2], [3]]}), "got a pandas DataFrame; pass a column"),
        ([{"messages": []}], "got a list of dicts (chat records?); pass tokenizer="),
        (["hello world", "bye"], "got a list of strings; seqpack packs token ids"),
        ("data.jsonl", "got a str; to pack chat records from a file pass tokenizer="),
        (5, "expected token sequences (a list of token-id lists or 1-D integer arrays), got int"),
    ],
)
def test_wrong_containers_say_what_was_passed_and_what_is_expected(sequences, message):
    with pytest.raises(seqpack.SeqpackError) as caught:
        seqpack.pack(sequences, max_length=8)
    assert message in str(caught.value), str(caught.value)


def test_short_repr_on_big_batches():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 300, size=20_000)
    tokens = np.arange(int(lengths.sum()), dtype=np.int32) % 1000
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    batch = seqpack.pack(tokens, offsets=offsets, max_length=512)
    text = repr(batch)
    assert len(text) < 120 and "\n" not in text
    assert f"{batch.num_rows:,} rows x 512" in text and "20,000 sequences" in text
    plan = seqpack.plan(lengths, max_length=512)
    assert len(repr(plan)) < 120 and "\n" not in repr(plan)


def test_row_selections_match_the_row_arrays():
    sequences = [np.arange(n) + 1 for n in (5, 9, 3, 7, 2, 8, 6)]
    batch = seqpack.pack(sequences, max_length=12)
    for rows in (slice(1, 3), range(0, 3, 2), [2, 0], np.array([-1, 0])):
        index = np.arange(batch.num_rows)[rows]
        inputs = batch.to_torch(rows)
        np.testing.assert_array_equal(inputs["input_ids"].numpy(), batch.input_ids[index])
        np.testing.assert_array_equal(inputs["position_ids"].numpy(), batch.position_ids[index])
        trained = int((batch.labels[index] != -100).sum())
        assert inputs["num_items_in_batch"] == max(1, trained)
        flat = batch.padding_free(rows)
        real = batch.segment_ids[index] > 0
        np.testing.assert_array_equal(flat["input_ids"][0].numpy(), batch.input_ids[index][real])
        expected = [
            int(batch.seq_lens[s])
            for r in index
            for s in range(batch.row_offsets[r], batch.row_offsets[r + 1])
        ]
        assert np.diff(flat["cu_seq_lens_q"].numpy()).tolist() == expected
        assert flat["max_length_q"] == max(expected)
    with pytest.raises(seqpack.InvalidOptionError, match="outside"):
        batch.to_torch([batch.num_rows])
    with pytest.raises(seqpack.InvalidOptionError, match="rows"):
        batch.to_torch(np.array([[0]]))


def test_summary_covers_the_packing_stage():
    batch = seqpack.pack([[1] * 10, [2] * 3], max_length=8, overlong="truncate")
    text = batch.summary()
    assert text.startswith("packing:")
    assert "truncated         1 seqs, 2 tokens" in text
    assert "conversations" not in text
