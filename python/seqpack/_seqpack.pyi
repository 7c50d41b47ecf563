"""Stubs for the private native module. Use the ``seqpack`` package instead."""

from typing import Any, TypeAlias

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
class InvalidRecordError(SeqpackError): ...
class InvalidFileError(SeqpackError): ...
class TemplateError(SeqpackError): ...
class TokenizerError(SeqpackError): ...

Span: TypeAlias = tuple[int | None, int, int, int, int]

class NativeTokenizer:
    def __init__(self, json: str) -> None: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def is_fast(self) -> bool: ...
    def token_to_id(self, token: str) -> int | None: ...
    def encode(self, text: str) -> tuple[list[int], list[tuple[int, int]]]: ...
    def encode_reference(self, text: str) -> tuple[list[int], list[tuple[int, int]]]: ...

class NativeTemplate:
    @staticmethod
    def builtin(name: str) -> NativeTemplate: ...
    @staticmethod
    def jinja(source: str, end_of_turn: str, bos_token: str, eos_token: str) -> NativeTemplate: ...
    def render(
        self, record: Any, *, format: str = "auto", mapping: dict[str, Any] | None = None
    ) -> tuple[str, list[Span]]: ...
    @staticmethod
    def normalise(
        record: Any, *, format: str = "auto", mapping: dict[str, Any] | None = None
    ) -> tuple[list[dict[str, Any]], list[Any]]: ...

class NativeReports:
    def __len__(self) -> int: ...
    def records(self) -> list[dict[str, Any]]: ...
    def counts(self) -> dict[str, int]: ...
    def reasons(self) -> dict[str, int]: ...
    def tokens_removed(self) -> list[tuple[str, int]]: ...

def encode_records(
    records: list[Any] | None,
    path: str | None,
    tokenizer: NativeTokenizer,
    template: NativeTemplate,
    mapping: dict[str, Any] | None,
    args: dict[str, Any],
) -> dict[str, Any]: ...
def pack_records(
    records: list[Any] | None,
    path: str | None,
    tokenizer: NativeTokenizer,
    template: NativeTemplate,
    mapping: dict[str, Any] | None,
    args: dict[str, Any],
    *,
    strategy: str,
    max_seqs_per_row: int | None,
    pad_rows_to_multiple_of: int,
    seed: int | None,
    pad_id: int,
    output_dtype: str,
    loss_weights: str | None,
) -> dict[str, Any]: ...

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
