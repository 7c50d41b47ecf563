"""Invariants of pack() a user relies on, over random inputs and options."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import seqpack
from conftest import rebuild_sources, segments_of

lengths_st = st.lists(st.integers(1, 300), min_size=1, max_size=60)
options_st = st.fixed_dictionaries(
    {
        "max_length": st.integers(1, 256),
        "strategy": st.sampled_from(seqpack.STRATEGIES),
        "max_seqs_per_row": st.none() | st.integers(1, 6),
        "overlong": st.sampled_from(["drop", "truncate", "split"]),
        "truncate_keep": st.sampled_from(["head", "tail"]),
        "pad_rows_to_multiple_of": st.integers(1, 4),
        "seed": st.none() | st.integers(0, 2**64 - 1),
    }
)


def make_sequences(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 50_000, size=n, dtype=np.int64) for n in lengths]


@given(lengths=lengths_st, options=options_st, data=st.data())
def test_every_token_once_in_order_or_reported(lengths, options, data):
    sequences = make_sequences(lengths)
    with_labels = data.draw(st.booleans())
    labels = None
    if with_labels:
        labels = [np.where(s % 3 == 0, -100, s) for s in sequences]
    batch = seqpack.pack(sequences, labels=labels, loss_weights="token", **options)
    L = options["max_length"]
    stats = batch.stats

    # Shape, row capacity, lower bound.
    assert batch.input_ids.shape == (stats.rows, L)
    assert stats.rows >= stats.lower_bound_rows
    assert stats.rows % options["pad_rows_to_multiple_of"] == 0
    assert (batch.segment_ids > 0).sum() == stats.real_tokens
    assert stats.real_tokens + stats.pad_tokens == stats.rows * L

    # Every input token is in the output, once and in order, or reported.
    rebuilt = rebuild_sources(batch, len(sequences))
    removed = {e.source_index: e for e in batch.events}
    for i, seq in enumerate(sequences):
        start, tokens = rebuilt[i]
        event = removed.get(i)
        if event is None or event.reason in ("overlong_split", "wrapped_across_rows"):
            np.testing.assert_array_equal(tokens, seq)
        elif event.reason == "overlong_dropped":
            assert tokens.size == 0 and event.tokens_removed == seq.size
        else:
            assert event.reason == "overlong_truncated"
            assert tokens.size == L and event.tokens_removed == seq.size - L
            np.testing.assert_array_equal(tokens, seq[start : start + L])
            assert start == (0 if options["truncate_keep"] == "head" else seq.size - L)
    assert stats.real_tokens + stats.dropped_tokens + stats.truncated_tokens == sum(lengths)

    # Row arrays and per-segment metadata agree with each other.
    segments = list(segments_of(batch))
    assert len(segments) == len(batch.seq_lens) == stats.packed_sequences
    assert batch.cu_seqlens[0] == 0
    np.testing.assert_array_equal(np.diff(batch.cu_seqlens), batch.seq_lens)
    assert batch.max_seqlen == (max(batch.seq_lens) if len(batch.seq_lens) else 0)
    assert batch.loss_weights is not None
    for k, (row, column, length, source, _chunk, start) in enumerate(segments):
        assert batch.seq_lens[k] == length
        span = slice(column, column + length)
        np.testing.assert_array_equal(batch.position_ids[row, span], np.arange(length))
        assert batch.labels[row, column] == -100
        expected = (labels[source] if labels is not None else sequences[source])[
            start + 1 : start + length
        ]
        np.testing.assert_array_equal(batch.labels[row, column + 1 : column + length], expected)
        np.testing.assert_array_equal(
            batch.loss_weights[row, span], (batch.labels[row, span] != -100).astype(np.float32)
        )
    if options["max_seqs_per_row"] is not None:
        assert batch.segment_ids.max(initial=0) <= options["max_seqs_per_row"]
    pad = batch.segment_ids == 0
    assert (batch.labels[pad] == -100).all() and (batch.input_ids[pad] == 0).all()
    assert (batch.segment_ids[pad] == 0).all()


@given(lengths=lengths_st, options=options_st)
def test_same_input_same_bytes(lengths, options):
    sequences = make_sequences(lengths, seed=1)
    a = seqpack.pack(sequences, **options)
    b = seqpack.pack(sequences, **options)
    for name in (
        "input_ids",
        "labels",
        "position_ids",
        "segment_ids",
        "cu_seqlens",
        "source_index",
    ):
        assert getattr(a, name).tobytes() == getattr(b, name).tobytes()


@given(lengths=lengths_st, options=options_st)
def test_plan_matches_pack(lengths, options):
    planned = seqpack.plan(lengths, **options)
    batch = seqpack.pack(make_sequences(lengths), **options)
    assert planned.num_rows == batch.num_rows
    np.testing.assert_array_equal(planned.seq_lens, batch.seq_lens)
    # One name per concept: the plan's per-piece arrays are the batch's per-segment arrays.
    for name in ("source_index", "chunk_index", "source_start", "row_offsets"):
        np.testing.assert_array_equal(getattr(planned, name), getattr(batch, name), err_msg=name)
    assert planned.stats == batch.stats
    rows = [row for row, *_ in segments_of(batch)]
    np.testing.assert_array_equal(planned.row, rows)


@given(lengths=st.lists(st.integers(1, 200), min_size=1, max_size=80), seed=st.integers(0, 1000))
def test_sequence_weights_reproduce_the_unpacked_sequence_mean(lengths, seed):
    # Each sequence's trained tokens sum to 1, whatever rows its pieces landed in.
    batch = seqpack.pack(
        make_sequences(lengths), max_length=64, overlong="split", loss_weights="sequence", seed=seed
    )
    totals = np.zeros(len(lengths))
    assert batch.loss_weights is not None
    for row, column, length, source, _chunk, _start in segments_of(batch):
        totals[source] += batch.loss_weights[row, column : column + length].sum()
    trained = np.array([n - int(np.ceil(n / 64)) for n in lengths])
    np.testing.assert_allclose(totals[trained > 0], 1.0, rtol=1e-5)
    assert (totals[trained == 0] == 0).all()


def test_flat_input_with_offsets_matches_list_input():
    sequences = make_sequences([5, 9, 1, 30, 7])
    flat = np.concatenate(sequences).astype(np.int32)
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in sequences])])
    a = seqpack.pack(flat, offsets=offsets, max_length=32)
    b = seqpack.pack(sequences, max_length=32)
    np.testing.assert_array_equal(a.input_ids, b.input_ids)
    assert a.input_ids.dtype == np.int64
    c = seqpack.pack(flat, offsets=offsets, max_length=32, dtype="int32")
    assert c.input_ids.dtype == np.int32
    np.testing.assert_array_equal(c.input_ids, b.input_ids)


def test_python_lists_and_numpy_arrays_agree():
    lists = [[1, 2, 3], [4], [5, 6]]
    a = seqpack.pack(lists, max_length=4)
    b = seqpack.pack([np.array(x, dtype=np.uint16) for x in lists], max_length=4)
    np.testing.assert_array_equal(a.input_ids, b.input_ids)


def test_best_fit_uses_the_fewest_rows_on_a_known_case():
    lengths = [6, 5, 7, 4, 5, 3]
    assert seqpack.plan(lengths, max_length=10).num_rows == 3
    assert seqpack.plan(lengths, max_length=10, strategy="sequential").num_rows == 5


def test_seed_shuffles_rows_reproducibly():
    lengths = list(range(1, 200))
    a = seqpack.plan(lengths, max_length=256, seed=7)
    b = seqpack.plan(lengths, max_length=256, seed=7)
    c = seqpack.plan(lengths, max_length=256)
    np.testing.assert_array_equal(a.source_index, b.source_index)
    assert a.num_rows == c.num_rows
    assert not np.array_equal(a.source_index, c.source_index)
    assert sorted(map(tuple, a.rows())) == sorted(map(tuple, c.rows()))


def test_pad_rows_to_multiple_adds_empty_rows_at_the_end():
    batch = seqpack.pack([[1, 2, 3]] * 5, max_length=4, pad_rows_to_multiple_of=8)
    assert batch.num_rows == 8 and batch.stats.padding_rows == 3
    assert (batch.segment_ids[5:] == 0).all() and (batch.labels[5:] == -100).all()


@pytest.mark.parametrize("strategy", seqpack.STRATEGIES)
def test_every_strategy_packs(strategy):
    batch = seqpack.pack(make_sequences([3, 8, 2, 5, 6]), max_length=8, strategy=strategy)
    assert batch.stats.real_tokens == 24
