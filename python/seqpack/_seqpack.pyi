"""Stubs for the private native module. Use the ``seqpack`` package instead."""

from typing import Any

import numpy as np
import numpy.typing as npt

class SeqpackError(ValueError):
    index: int | None

class InvalidOptionError(SeqpackError): ...
class EmptyInputError(SeqpackError): ...
class EmptySequenceError(SeqpackError): ...
class OverlongSequenceError(SeqpackError): ...
class InvalidTokenError(SeqpackError): ...
class InvalidLabelsError(SeqpackError): ...
class InvalidOffsetsError(SeqpackError): ...
class TooManyTokensError(SeqpackError): ...

def plan_lengths(
    lengths: npt.NDArray[np.int64],
    *,
    max_length: int,
    strategy: str,
    max_seqs_per_row: int | None,
    overlong: str,
    truncate_keep: str,
    pad_rows_to_multiple_of: int,
    seed: int | None,
) -> dict[str, Any]: ...
def pack_flat(
    tokens: npt.NDArray[np.int32] | npt.NDArray[np.int64],
    offsets: npt.NDArray[np.int64],
    labels: npt.NDArray[np.int64] | None,
    *,
    max_length: int,
    strategy: str,
    max_seqs_per_row: int | None,
    overlong: str,
    truncate_keep: str,
    pad_rows_to_multiple_of: int,
    seed: int | None,
    pad_id: int,
    output_dtype: str,
    loss_weights: str | None,
) -> dict[str, Any]: ...
