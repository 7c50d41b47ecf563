"""seqpack: turn-aware truncation and best-fit packing of LLM fine-tuning data.

Data flows one way: chat records → :func:`encode` (labelled samples and a report per record)
→ :func:`pack` (rows of ``max_length`` with the metadata that keeps samples apart) →
:class:`PackedBatch` views for a model. For datasets of any size, :func:`store.write` keeps
the encoded samples on disk and :func:`store.open` maps them back. Token sequences go
straight to :func:`pack`; :func:`plan` decides rows from lengths alone.

>>> import seqpack
>>> seqpack.pack([[1, 2, 3], [4, 5]], max_length=8).stats.efficiency
0.625
"""

import os
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from seqpack import _seqpack, store
from seqpack.batch import PackedBatch, flex_block_mask, sdpa_mask
from seqpack.chat import EncodedConversations, encode
from seqpack.errors import (
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
    TooLargeError,
    TooManyTokensError,
    WorkerError,
)
from seqpack.pack import STRATEGIES, Plan, pack, plan
from seqpack.report import ConversationReport, RecordReport, ReportSummary
from seqpack.stats import Event, PackStats

# A forked child (a torch DataLoader worker, a multiprocessing pool) has none of rayon's
# threads: the Rust side then builds pools of the child's own instead of waiting on them.
os.register_at_fork(after_in_child=_seqpack.after_fork)


def __getattr__(name: str) -> Any:
    # seqpack.stream builds torch IterableDatasets: torch is imported when it is first used.
    if name == "stream":
        from seqpack.streaming import stream

        return stream
    raise AttributeError(f"module 'seqpack' has no attribute {name!r}")


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
    "InvalidStoreError",
    "InvalidTokenError",
    "OverlongSequenceError",
    "PackStats",
    "PackedBatch",
    "Plan",
    "RecordReport",
    "ReportSummary",
    "SeqpackError",
    "TemplateError",
    "TokenizerError",
    "TooLargeError",
    "TooManyTokensError",
    "WorkerError",
    "__version__",
    "encode",
    "flex_block_mask",
    "pack",
    "plan",
    "sdpa_mask",
    "store",
    "stream",
]
