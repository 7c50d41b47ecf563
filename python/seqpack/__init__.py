"""seqpack: turn-aware truncation and best-fit packing of LLM fine-tuning data.

>>> import seqpack
>>> seqpack.pack([[1, 2, 3], [4, 5]], max_length=8).stats.efficiency
0.625
"""

from importlib.metadata import PackageNotFoundError, version

from seqpack.batch import PackedBatch, flex_block_mask, sdpa_mask
from seqpack.chat import ConversationReport, EncodedConversations, RecordReport, encode
from seqpack.errors import (
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
from seqpack.pack import STRATEGIES, Plan, pack, plan
from seqpack.stats import Event, PackStats

try:
    __version__ = version("seqpack")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"

__all__ = [
    "STRATEGIES",
    "ConversationReport",
    "EmptyInputError",
    "EmptySequenceError",
    "EncodedConversations",
    "Event",
    "InvalidFileError",
    "InvalidLabelsError",
    "InvalidOffsetsError",
    "InvalidOptionError",
    "InvalidRecordError",
    "InvalidTokenError",
    "OverlongSequenceError",
    "PackStats",
    "PackedBatch",
    "Plan",
    "RecordReport",
    "SeqpackError",
    "TemplateError",
    "TokenizerError",
    "TooManyTokensError",
    "__version__",
    "encode",
    "flex_block_mask",
    "pack",
    "plan",
    "sdpa_mask",
]
