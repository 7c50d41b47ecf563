"""What seqpack accepts as token input, and how it becomes one flat array plus offsets.

Three shapes come in: a list of token lists, a list of 1-D arrays, or a flat array with
offsets (the zero-copy path). All leave as a contiguous int32/int64 token array, int64
offsets and optional int64 labels. Anything that is not integer token data is refused here,
naming the sequence, before the native code sees it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from seqpack.errors import (
    InvalidLabelsError,
    InvalidOffsetsError,
    InvalidTokenError,
    SeqpackError,
)

TokenArray = npt.NDArray[np.int32] | npt.NDArray[np.int64]
TokenInput = Sequence[Sequence[int]] | Sequence[npt.ArrayLike] | npt.ArrayLike

_INT64_MAX = np.iinfo(np.int64).max


@dataclass(frozen=True)
class FlatTokens:
    """Sequences laid end to end: sequence ``i`` is ``tokens[offsets[i]:offsets[i + 1]]``."""

    tokens: TokenArray
    offsets: npt.NDArray[np.int64]
    labels: npt.NDArray[np.int64] | None


def _error(cls: type[SeqpackError], message: str, index: int | None) -> SeqpackError:
    """An exception that names its sequence in the message and in ``.index``."""
    exc = cls(f"sequence {index}: {message}" if index is not None else message)
    exc.index = index
    return exc


def _as_integer_array(values: Any, *, what: str, index: int | None) -> npt.NDArray[Any]:
    cls = InvalidLabelsError if what == "labels" else InvalidTokenError
    try:
        array = np.asarray(values)
    except (OverflowError, ValueError, TypeError) as exc:
        raise _error(cls, f"{what} are not a 1-D list of integers ({exc})", index) from None
    if array.size == 0 and array.ndim == 1:
        return np.zeros(0, dtype=np.int64)
    if array.ndim != 1:
        raise _error(cls, f"{what} must be 1-D, got shape {array.shape}", index)
    if array.dtype.kind not in "iu":
        raise _error(cls, f"{what} must be integers, got dtype {array.dtype}", index)
    if array.dtype == np.uint64 and int(array.max()) > _INT64_MAX:
        raise _error(cls, f"{what} hold a value above the int64 range", index)
    return array


def _normalise_tokens(array: npt.NDArray[Any]) -> TokenArray:
    """int32 and int64 pass through untouched; other integer widths widen to int64."""
    if array.dtype in (np.int32, np.int64):
        return np.ascontiguousarray(array)
    return array.astype(np.int64)


_EXPECTED = "expected token sequences (a list of token-id lists or 1-D integer arrays)"


def _refuse_other_containers(sequences: Any) -> None:
    """Say what was passed and what is expected, before anything is read as tokens."""
    kind = type(sequences).__name__
    module = type(sequences).__module__.split(".")[0]
    if module in ("pandas", "datasets", "pyarrow", "polars"):
        raise InvalidTokenError(
            f"{_EXPECTED}, got a {module} {kind}; pass a column of token ids "
            "(e.g. df['input_ids'].tolist()), or chat records with tokenizer="
        )
    if isinstance(sequences, (str, bytes, os.PathLike)):
        raise InvalidTokenError(
            f"{_EXPECTED}, got a {kind}; to pack chat records from a file pass tokenizer="
        )
    if not isinstance(sequences, (Sequence, np.ndarray)):
        raise InvalidTokenError(f"{_EXPECTED}, got {kind}")
    first = sequences[0] if len(sequences) else None
    if isinstance(first, Mapping):
        raise InvalidTokenError(
            f"{_EXPECTED}, got a list of dicts (chat records?); pass tokenizer= to encode "
            "them, or seqpack.encode(records, ...) first"
        )
    if isinstance(first, (str, bytes)):
        raise InvalidTokenError(
            f"{_EXPECTED}, got a list of strings; seqpack packs token ids: pass chat records "
            "with tokenizer=, or tokenize the text first"
        )


def flatten(
    sequences: TokenInput,
    *,
    labels: Any = None,
    offsets: npt.ArrayLike | None = None,
) -> FlatTokens:
    """Bring any accepted input to :class:`FlatTokens`."""
    if offsets is not None:
        tokens = _as_integer_array(sequences, what="tokens", index=None)
        raw_offsets = np.asarray(offsets)
        if raw_offsets.ndim != 1 or raw_offsets.dtype.kind not in "iu":
            raise InvalidOffsetsError(
                f"offsets must be a 1-D integer array, got dtype {raw_offsets.dtype} "
                f"and shape {raw_offsets.shape}"
            )
        flat_labels = None
        if labels is not None:
            flat_labels = _as_integer_array(labels, what="labels", index=None).astype(
                np.int64, copy=False
            )
            if flat_labels.shape != tokens.shape:
                raise InvalidLabelsError(
                    f"labels hold {flat_labels.size} values but the tokens hold {tokens.size}"
                )
        return FlatTokens(
            _normalise_tokens(tokens),
            np.ascontiguousarray(raw_offsets, dtype=np.int64),
            None if flat_labels is None else np.ascontiguousarray(flat_labels),
        )

    if isinstance(sequences, np.ndarray) and sequences.ndim == 1 and sequences.dtype != object:
        raise InvalidOffsetsError(
            "got one flat token array without offsets; pass offsets=[0, end_0, end_1, ...] "
            "or a list of sequences"
        )
    _refuse_other_containers(sequences)
    listed: Sequence[Any] = sequences  # type: ignore[assignment]  # checked just above
    arrays = [_as_integer_array(seq, what="tokens", index=i) for i, seq in enumerate(listed)]
    lengths = np.fromiter((a.size for a in arrays), dtype=np.int64, count=len(arrays))
    flat_offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    np.cumsum(lengths, out=flat_offsets[1:])
    all_int32 = bool(arrays) and all(a.dtype == np.int32 for a in arrays)
    dtype = np.int32 if all_int32 else np.int64
    tokens = np.concatenate(arrays).astype(dtype, copy=False) if arrays else np.zeros(0, dtype)

    flat_labels = None
    if labels is not None:
        if not isinstance(labels, (Sequence, np.ndarray)) or isinstance(labels, (str, bytes)):
            raise InvalidLabelsError(
                f"labels must be a list with one label sequence per input sequence, got "
                f"{type(labels).__name__}"
            )
        if len(labels) != len(arrays):
            raise InvalidLabelsError(
                f"labels must hold one sequence per input sequence ({len(arrays)}), "
                f"got {len(labels) if not isinstance(labels, (str, bytes)) else 'a string'}"
            )
        label_arrays = []
        for i, (given, seq) in enumerate(zip(labels, arrays, strict=True)):
            array = _as_integer_array(given, what="labels", index=i)
            if array.size != seq.size:
                raise _error(InvalidLabelsError, f"{array.size} labels for {seq.size} tokens", i)
            label_arrays.append(array.astype(np.int64, copy=False))
        flat_labels = np.concatenate(label_arrays) if label_arrays else np.zeros(0, np.int64)
    return FlatTokens(tokens, flat_offsets, flat_labels)
