"""The exceptions seqpack raises.

Every one is a :class:`SeqpackError`, itself a :class:`ValueError`, so ``except ValueError``
still works. Errors about one sequence or record name it in the message and carry its
position in the input as ``error.index``.
"""

from seqpack._seqpack import (
    EmptyInputError,
    EmptySequenceError,
    InvalidFileError,
    InvalidLabelsError,
    InvalidOffsetsError,
    InvalidOptionError,
    InvalidRecordError,
    InvalidStoreError,
    InvalidTokenError,
    OverlongSequenceError,
    SeqpackError,
    TemplateError,
    TokenizerError,
    TooManyTokensError,
)


class TooLargeError(SeqpackError):
    """A whole-batch view (a 4-D mask, one padding-free row) would not fit in memory or in a
    model; ask for a row range instead."""


__all__ = [
    "EmptyInputError",
    "EmptySequenceError",
    "InvalidFileError",
    "InvalidLabelsError",
    "InvalidOffsetsError",
    "InvalidOptionError",
    "InvalidRecordError",
    "InvalidStoreError",
    "InvalidTokenError",
    "OverlongSequenceError",
    "SeqpackError",
    "TemplateError",
    "TokenizerError",
    "TooLargeError",
    "TooManyTokensError",
]
