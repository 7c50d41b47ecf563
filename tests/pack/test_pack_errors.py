"""Bad input raises a typed SeqpackError (a ValueError) naming the sequence; never a panic."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import seqpack
from seqpack import (
    EmptyInputError,
    EmptySequenceError,
    InvalidLabelsError,
    InvalidOffsetsError,
    InvalidOptionError,
    InvalidTokenError,
    OverlongSequenceError,
    SeqpackError,
)


def raises(cls, match, index=None):
    """pytest.raises that also checks the class hierarchy and the `index` attribute."""

    class Check:
        def __enter__(self):
            self.ctx = pytest.raises(cls, match=match)
            self.info = self.ctx.__enter__()
            return self.info

        def __exit__(self, *exc):
            suppressed = self.ctx.__exit__(*exc)
            assert isinstance(self.info.value, SeqpackError)
            assert isinstance(self.info.value, ValueError)
            if index is not None:
                assert self.info.value.index == index
            return suppressed

    return Check()


def test_empty_input():
    with raises(EmptyInputError, "input is empty"):
        seqpack.pack([], max_length=8)
    with raises(EmptyInputError, "input is empty"):
        seqpack.plan([], max_length=8)


def test_empty_sequence_is_named():
    with raises(EmptySequenceError, "sequence 2 is empty", index=2):
        seqpack.pack([[1], [2, 3], []], max_length=8)


def test_negative_token_is_named():
    with raises(InvalidTokenError, r"sequence 1, position 2: token id -5 is negative", index=1):
        seqpack.pack([[1, 2], [3, 4, -5]], max_length=8)


def test_non_integer_tokens_are_named():
    with raises(InvalidTokenError, r"sequence 1: tokens must be integers, got dtype float64", 1):
        seqpack.pack([[1, 2], [3.5, 4]], max_length=8)  # type: ignore[arg-type]  # deliberately not integers
    with raises(InvalidTokenError, "sequence 0: tokens must be integers, got dtype <U1", 0):
        seqpack.pack([["a", "b"]], max_length=8)
    with raises(InvalidTokenError, "sequence 0: tokens must be integers, got dtype bool", 0):
        seqpack.pack([np.array([True, False])], max_length=8)
    with raises(InvalidTokenError, "sequence 1: tokens must be 1-D", 1):
        seqpack.pack([[1], [[1, 2], [3, 4]]], max_length=8)  # type: ignore[arg-type]  # deliberately 2-D
    with raises(InvalidTokenError, "sequence 0: tokens must be integers, got dtype object", 0):
        seqpack.pack([[2**70]], max_length=8)
    with raises(InvalidTokenError, "expected token sequences"):
        seqpack.pack("hello", max_length=8)
    with raises(InvalidTokenError, "too large for the int32 output dtype", 0):
        seqpack.pack([[2**40]], max_length=8, dtype="int32")


def test_labels_of_the_wrong_length_are_named():
    with raises(InvalidLabelsError, "sequence 1: 2 labels for 3 tokens", index=1):
        seqpack.pack([[1, 2], [3, 4, 5]], labels=[[1, 2], [4, 5]], max_length=8)
    with raises(InvalidLabelsError, "one sequence per input sequence"):
        seqpack.pack([[1, 2], [3, 4, 5]], labels=[[1, 2]], max_length=8)
    with raises(InvalidLabelsError, r"sequence 1: label -3 at position 0", index=1):
        seqpack.pack([[1, 2], [3, 4, 5]], labels=[[1, 2], [-3, 4, 5]], max_length=8)


def test_overlong_is_named_with_its_length():
    with raises(OverlongSequenceError, "sequence 1 has 9 tokens, more than max_length=8", 1):
        seqpack.pack([[1], list(range(9))], max_length=8)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"max_length": 0}, "max_length"),
        ({"max_length": -3}, "max_length"),
        ({"max_length": 2.5}, "max_length: must be an integer"),
        ({"max_length": 8, "strategy": "best"}, "unknown strategy 'best'"),
        ({"max_length": 8, "overlong": "ignore"}, "overlong"),
        ({"max_length": 8, "overlong": "truncate", "truncate_keep": "middle"}, "truncate_keep"),
        ({"max_length": 8, "max_seqs_per_row": 0}, "max_seqs_per_row"),
        ({"max_length": 8, "pad_rows_to_multiple_of": 0}, "pad_rows_to_multiple_of"),
        ({"max_length": 8, "seed": -1}, "seed"),
        ({"max_length": 8, "dtype": "float32"}, "dtype"),
        ({"max_length": 8, "loss_weights": "row"}, "loss_weights"),
        ({"max_length": 8, "pad_id": -1}, "pad_id"),
        ({"max_length": 2**40}, "max_length"),
    ],
)
def test_bad_options(options, match):
    with raises(InvalidOptionError, match):
        seqpack.pack([[1, 2, 3]], **options)


def test_bad_offsets():
    tokens = np.arange(10)
    with raises(InvalidOffsetsError, "without offsets"):
        seqpack.pack(tokens, max_length=8)
    with raises(InvalidOffsetsError, "must end at the token count 10"):
        seqpack.pack(tokens, offsets=[0, 5, 9], max_length=8)
    with raises(InvalidOffsetsError, "sequence 1: offsets decrease"):
        seqpack.pack(tokens, offsets=[0, 6, 4, 10], max_length=8)
    with raises(InvalidOffsetsError, "must start at 0"):
        seqpack.pack(tokens, offsets=[1, 10], max_length=8)
    with raises(InvalidOffsetsError, "1-D integer array"):
        seqpack.pack(tokens, offsets=[0.0, 10.0], max_length=8)
    with raises(InvalidLabelsError, "labels hold 3 values but the tokens hold 10"):
        seqpack.pack(tokens, offsets=[0, 10], labels=[1, 2, 3], max_length=16)


def test_bad_lengths_for_plan():
    with raises(InvalidOptionError, "sequence 1 has a negative length"):
        seqpack.plan([3, -1], max_length=8)
    with raises(InvalidOptionError, "lengths"):
        seqpack.plan([3.0, 1.0], max_length=8)


junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=3),
    lambda children: st.lists(children, max_size=4),
    max_leaves=12,
)


@given(sequences=junk, max_length=st.integers(-2, 20))
def test_arbitrary_junk_raises_seqpack_error_or_packs(sequences, max_length):
    # Whatever comes in: a SeqpackError, or a valid batch. Never another exception or a crash.
    try:
        batch = seqpack.pack(sequences, max_length=max_length)
    except SeqpackError:
        return
    assert batch.stats.real_tokens == (batch.segment_ids > 0).sum()
