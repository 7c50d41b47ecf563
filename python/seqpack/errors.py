"""The exceptions seqpack raises.

Every one is a :class:`SeqpackError`, itself a :class:`ValueError`, so ``except ValueError``
still works. Errors about one sequence name it in the message and carry its position in the
input as ``error.index``.
"""

from seqpack._seqpack import (
    EmptyInputError,
    EmptySequenceError,
    InvalidFileError,
    InvalidLabelsError,
    InvalidOffsetsError,
    InvalidOptionError,
    InvalidRecordError,
    InvalidTokenError,
    OverlongSequenceError,
    SeqpackError,
    TemplateError,
    TokenizerError,
    TooManyTokensError,
)

__all__ = [
    "EmptyInputError",
    "EmptySequenceError",
    "InvalidFileError",
    "InvalidLabelsError",
    "InvalidOffsetsError",
    "InvalidOptionError",
    "InvalidRecordError",
    "InvalidTokenError",
    "OverlongSequenceError",
    "SeqpackError",
    "TemplateError",
    "TokenizerError",
    "TooManyTokensError",
]
