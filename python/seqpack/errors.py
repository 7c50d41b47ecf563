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


class WorkerError(SeqpackError, RuntimeError):
    """A loader's worker process ended (killed, out of memory) before it handed over the batch
    it was preparing; the message names it, its exit code and the step."""


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
    "WorkerError",
]
