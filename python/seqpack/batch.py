"""The packed output and its views for each attention backend.

A :class:`PackedBatch` holds ``[rows, max_length]`` arrays allocated in Rust and handed to
numpy without a copy, plus per-segment metadata. Its helpers turn a range of rows into what a
model takes: ``model(**batch.to_torch(rows))`` for padded rows, ``padding_free(rows)`` for a
``[1, T]`` FlashAttention-2 style batch, or an explicit SDPA / FlexAttention mask. Every dict
meant for ``model(**...)`` keeps packed sequences apart on its own (see :meth:`to_torch`).
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import numpy.typing as npt

from seqpack.errors import InvalidOptionError, TooLargeError
from seqpack.stats import Event, PackStats

if TYPE_CHECKING:
    import torch
    from torch.nn.attention.flex_attention import BlockMask

    from seqpack.report import ConversationReport

Rows = Union[slice, range, "npt.ArrayLike", None]
"""A selection of rows: a slice or range (zero-copy views), or any integer indices."""

MAX_MASK_BYTES = 1 << 31
"""The largest ``[rows, 1, L, L]`` boolean mask built at once (2 GiB): a bigger one is a
whole-dataset call that should have been a minibatch."""

MAX_PADDING_FREE_TOKENS = 1 << 20
"""The largest ``[1, T]`` padding-free batch built by default (1M tokens): beyond that no
single forward pass fits a GPU; pass ``rows=`` (or a larger ``max_tokens``)."""

IGNORE_INDEX = -100


def rows_varlen(
    position_ids: npt.NDArray[Any], segment_ids: npt.NDArray[Any] | None = None
) -> dict[str, Any]:
    """FlashAttention-2's varlen keywords for ``[B, L]`` rows: ``cu_seq_lens_q/k`` over the rows
    flattened end to end (a sequence starts wherever the segment id changes, or without
    ``segment_ids`` at every position 0, and at every row start, so each row's padding run is
    a sequence of its own) and ``max_length_q/k``.

    Without them, transformers' FlashAttention-2 path finds packed sequences from
    ``position_ids`` only when the batch has one row; with two or more rows it runs plain
    causal attention over each whole row and packed sequences see each other. Eager, SDPA and
    FlexAttention ignore these keywords.

    >>> rows_varlen(np.array([[0, 1, 2, 0, 1], [0, 1, 0, 1, 2]]))["cu_seq_lens_q"].tolist()
    [0, 3, 5, 7, 10]
    """
    import torch

    if segment_ids is not None:
        segments = np.asarray(segment_ids)
        starts = np.ones(segments.shape, dtype=bool)
        np.not_equal(segments[:, 1:], segments[:, :-1], out=starts[:, 1:])
    else:
        starts = np.asarray(position_ids) == 0
        if starts.size:
            starts[:, 0] = True
    cu = np.empty(int(np.count_nonzero(starts)) + 1, dtype=np.int32)
    cu[:-1] = np.flatnonzero(starts)
    cu[-1] = starts.size
    longest = int(np.diff(cu).max()) if len(cu) > 1 else 0
    tensor = torch.from_numpy(cu)
    return {
        "cu_seq_lens_q": tensor,
        "cu_seq_lens_k": tensor,
        "max_length_q": longest,
        "max_length_k": longest,
    }


@dataclass(frozen=True, eq=False)
class PackedBatch:
    """Packed rows and the metadata that keeps their sequences independent.

    Row arrays are ``[rows, max_length]``; per-segment arrays have one entry per packed
    sequence (segment), in row-major order, with the names and meaning of :class:`Plan`'s
    per-piece arrays.
    """

    input_ids: npt.NDArray[np.int64] | npt.NDArray[np.int32]
    """Token ids; ``pad_id`` after the last segment of a row."""
    labels: npt.NDArray[np.int64]
    """-100 on padding and on the first token of every segment; otherwise the token id or the
    label given for it."""
    position_ids: npt.NDArray[np.int64]
    """0, 1, 2, ... restarting at every segment (and for the padding run)."""
    segment_ids: npt.NDArray[np.int32]
    """1..k for the k segments of a row, 0 on padding (``segment_ids > 0`` is the padding
    mask)."""
    loss_weights: npt.NDArray[np.float32] | None
    """Per-token loss weights when requested (0 where the label is -100)."""
    row_offsets: npt.NDArray[np.int64]
    """``[rows + 1]``: row ``r`` holds segments ``row_offsets[r]:row_offsets[r + 1]``."""
    cu_seqlens: npt.NDArray[np.int32]
    """``[S + 1]`` segment boundaries in the padding-free token stream."""
    seq_lens: npt.NDArray[np.int32]
    """``[S]`` length of every segment."""
    source_index: npt.NDArray[np.int64]
    """``[S]``: the input sequence (for conversations: the sample) of every segment."""
    chunk_index: npt.NDArray[np.int64]
    """``[S]``: which chunk of its sequence (0 unless split or wrapped)."""
    source_start: npt.NDArray[np.int64]
    """``[S]``: offset of each segment's first token inside its input sequence."""
    max_seqlen: int
    """Length of the longest segment."""
    stats: PackStats
    """The packing stage's figures (for conversations, :meth:`summary` adds the encoding
    stage's)."""
    events: list[Event]
    sample_record: npt.NDArray[np.int64] | None = None
    """Conversations: the input record of every sample (``sample_record[source_index]`` is
    the record of every segment)."""
    sample_window: npt.NDArray[np.int64] | None = None
    """Conversations: the window of its record each sample is."""
    report: ConversationReport | None = None
    """Conversations: one report per input record."""

    @property
    def num_rows(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def max_length(self) -> int:
        return int(self.input_ids.shape[1])

    def __len__(self) -> int:
        return self.num_rows

    def __repr__(self) -> str:
        what = f"{len(self.seq_lens):,} sequences"
        if self.report is not None:
            what += f" from {len(self.report):,} records"
        return (
            f"<PackedBatch {self.num_rows:,} rows x {self.max_length:,}, {what}, "
            f"efficiency {self.stats.efficiency:.2%}>"
        )

    def summary(self) -> str:
        """Both stages in one table: for conversations what encoding kept and cut (records
        per status, tokens cut by role), then what packing did (rows, efficiency, and any
        sequence it dropped, truncated or split).

        >>> import seqpack
        >>> print(seqpack.pack([[1, 2, 3], [4, 5]], max_length=4).summary())
        ... # doctest: +NORMALIZE_WHITESPACE
        packing:
          rows              2 (lower bound 2)
          max_length        4
          packed sequences  2 of 2
          real tokens       5 of 5
          pad tokens        3
          efficiency        62.50%
          dropped           0 seqs, 0 tokens
          truncated         0 seqs, 0 tokens
          split             0 seqs
          padding rows      0
        """
        sections = []
        if self.report is not None:
            sections.append(("conversations (encode):", self.report.summary().rows_of_text()))
        sections.append(("packing:", self.stats.rows_of_text()))
        width = max(len(label) for _, lines in sections for label, _ in lines)
        return "\n".join(
            title + "".join(f"\n  {label:<{width}}  {value}" for label, value in lines)
            for title, lines in sections
        )

    # --- row ranges -----------------------------------------------------------------------

    def _row_index(self, rows: Rows) -> slice | npt.NDArray[np.int64]:
        if rows is None:
            return slice(0, self.num_rows)
        if isinstance(rows, range):
            rows = slice(rows.start, rows.stop, rows.step)
        if isinstance(rows, slice):
            start, stop, step = rows.indices(self.num_rows)
            if step == 1:
                return slice(start, max(start, stop))
            return np.arange(start, stop, step, dtype=np.int64)
        index = np.asarray(rows)
        if index.ndim != 1 or (index.size and index.dtype.kind not in "iu"):
            raise InvalidOptionError(
                f"option rows: expected a slice, a range or 1-D integer row indices, got "
                f"dtype {index.dtype} and shape {index.shape}"
            )
        index = index.astype(np.int64)
        if index.size and (index.min() < -self.num_rows or index.max() >= self.num_rows):
            raise InvalidOptionError(f"option rows: an index is outside 0..{self.num_rows - 1}")
        return np.where(index < 0, index + self.num_rows, index)

    def _segments(self, index: slice | npt.NDArray[np.int64]) -> npt.NDArray[np.int64] | slice:
        """The segments of the selected rows, in row order."""
        if isinstance(index, slice):
            return slice(int(self.row_offsets[index.start]), int(self.row_offsets[index.stop]))
        starts, stops = self.row_offsets[index], self.row_offsets[index + 1]
        counts = stops - starts
        # Segment k of the output is row r's (k - first output segment of r)-th segment.
        first_of_row = np.cumsum(counts) - counts
        return np.repeat(starts - first_of_row, counts) + np.arange(
            int(counts.sum()), dtype=np.int64
        )

    def _trained_targets(self, labels: npt.NDArray[np.int64]) -> int:
        return int(np.count_nonzero(labels != IGNORE_INDEX))

    # --- views for models -----------------------------------------------------------------

    def to_torch(
        self,
        rows: Rows = None,
        *,
        device: str | torch.device | None = None,
        pin_memory: bool = False,
    ) -> dict[str, Any]:
        """The selected rows as keyword arguments for a Hugging Face causal LM: safe to pass
        as ``model(**batch.to_torch(rows))``. Zero-copy on the CPU for a slice of rows.

        The dict holds ``input_ids``, ``labels``, ``position_ids`` (restarting at every
        sequence), ``cu_seq_lens_q/k`` and ``max_length_q/k`` (see :func:`rows_varlen`),
        ``use_cache=False``, ``num_items_in_batch`` and ``loss_weights`` when requested. It
        has no 2-D ``attention_mask``: to a Hugging Face model that means "padding mask" and
        lets packed sequences attend to each other. Without one, eager and SDPA find the
        sequences from the restarting ``position_ids`` (transformers >= 4.54), which they only
        do without a KV cache: hence ``use_cache=False``; FlashAttention-2 takes them from
        ``cu_seq_lens_q/k`` (from ``position_ids`` it would find them in one row only).
        ``num_items_in_batch`` is the number of trained tokens (at least 1), so the model's
        loss is their mean, and 0, not NaN, on rows with none (the padding rows
        ``pad_rows_to_multiple_of`` adds). For another consumer use the
        arrays (``segment_ids``, ``cu_seqlens``) or :meth:`sdpa_mask`.

        >>> import seqpack
        >>> batch = seqpack.pack([[5, 6, 7], [8, 9]], max_length=8)
        >>> inputs = batch.to_torch()
        >>> inputs["input_ids"].shape, inputs["position_ids"].tolist(), inputs["use_cache"]
        (torch.Size([1, 8]), [[0, 1, 2, 0, 1, 0, 1, 2]], False)

        Parameters
        ----------
        rows
            A slice or range of rows (default: all), or integer row indices.
        device
            Move the tensors there (default: stay on the CPU, sharing memory with numpy).
        pin_memory
            Pin the tensors first (for asynchronous copies to a GPU).
        """
        import torch

        _warn_if_transformers_cannot_find_sequences()
        index = self._row_index(rows)
        labels = self.labels[index]
        arrays: dict[str, Any] = {
            "input_ids": self.input_ids[index],
            "labels": labels,
            "position_ids": self.position_ids[index],
        }
        if self.loss_weights is not None:
            arrays["loss_weights"] = self.loss_weights[index]
        out: dict[str, Any] = {}
        for name, array in arrays.items():
            tensor = torch.from_numpy(np.ascontiguousarray(array))
            if pin_memory:
                tensor = tensor.pin_memory()
            if device is not None:
                tensor = tensor.to(device, non_blocking=pin_memory)
            out[name] = tensor
        varlen = rows_varlen(arrays["position_ids"], self.segment_ids[index])
        if device is not None:
            varlen = {
                k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in varlen.items()
            }
        out.update(varlen)
        out["use_cache"] = False
        out["num_items_in_batch"] = max(1, self._trained_targets(labels))
        return out

    def padding_free(
        self,
        rows: Rows = None,
        *,
        device: str | torch.device | None = None,
        max_tokens: int = MAX_PADDING_FREE_TOKENS,
    ) -> dict[str, Any]:
        """The real tokens of the selected rows as one ``[1, T]`` row, with the arguments
        Hugging Face models take for it: ``position_ids`` restarting at every sequence,
        ``cu_seq_lens_q/k`` and ``max_length_q/k`` (FlashAttention-2 varlen, as
        ``DataCollatorWithFlattening`` builds them), ``use_cache=False`` (so eager and SDPA
        find the sequences from ``position_ids``, see :meth:`to_torch`) and
        ``num_items_in_batch``. Safe as ``model(**batch.padding_free(rows))``. Rows with no
        real token (the padding rows ``pad_rows_to_multiple_of`` adds) give one untrained
        padding token, so the step still runs, with a loss of 0.

        >>> import seqpack
        >>> flat = seqpack.pack([[5, 6, 7], [8, 9]], max_length=8).padding_free()
        >>> flat["input_ids"].tolist(), flat["cu_seq_lens_q"].tolist()
        ([[5, 6, 7, 8, 9]], [0, 3, 5])

        Parameters
        ----------
        rows
            A slice or range of rows (default: all), or integer row indices.
        device
            Move the tensors there.
        max_tokens
            Refuse (:class:`~seqpack.TooLargeError`) to build more tokens than this at once.
        """
        import torch

        _warn_if_transformers_cannot_find_sequences()
        index = self._row_index(rows)
        segments = self._segments(index)
        seq_lens = self.seq_lens[segments].astype(np.int64)
        total = int(seq_lens.sum())
        if total > max_tokens:
            raise TooLargeError(
                f"padding_free() of {self.num_rows if rows is None else 'the selected'} rows is "
                f"one row of {total:,} tokens, more than max_tokens={max_tokens:,}; pass rows= "
                "(a minibatch, e.g. rows=slice(0, 8)) or a larger max_tokens"
            )
        real = self.segment_ids[index] > 0
        if total == 0:
            if not real.shape[0]:
                raise InvalidOptionError("padding_free(): rows= selects no row")
            # Only padding rows (pad_rows_to_multiple_of adds them so every rank gets a step):
            # one padding token, untrained, so the step still runs and its loss is 0.
            real = np.zeros_like(real)
            real[0, 0] = True
            seq_lens = np.ones(1, dtype=np.int64)
        cu = np.zeros(len(seq_lens) + 1, dtype=np.int32)
        np.cumsum(seq_lens, out=cu[1:])
        labels = self.labels[index][real]
        longest = int(seq_lens.max()) if len(seq_lens) else 0
        cu_tensor = torch.from_numpy(cu)
        out: dict[str, Any] = {
            "input_ids": torch.from_numpy(self.input_ids[index][real]).unsqueeze(0),
            "labels": torch.from_numpy(labels).unsqueeze(0),
            "position_ids": torch.from_numpy(self.position_ids[index][real]).unsqueeze(0),
            "cu_seq_lens_q": cu_tensor,
            "cu_seq_lens_k": cu_tensor,
            "max_length_q": longest,
            "max_length_k": longest,
        }
        if self.loss_weights is not None:
            out["loss_weights"] = torch.from_numpy(self.loss_weights[index][real]).unsqueeze(0)
        if device is not None:
            out = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in out.items()}
        out["use_cache"] = False
        out["num_items_in_batch"] = max(1, self._trained_targets(labels))
        return out

    def sdpa_mask(
        self, rows: Rows = None, *, device: str | torch.device | None = None
    ) -> torch.Tensor:
        """The ``[rows, 1, L, L]`` boolean block-causal mask (True = may attend) of the
        selected rows; see :func:`seqpack.sdpa_mask`. Refuses
        (:class:`~seqpack.TooLargeError`) a mask over 2 GiB: pass ``rows=`` a minibatch.

        Parameters
        ----------
        rows
            A slice or range of rows (default: all), or integer row indices.
        device
            Where to build the mask.
        """
        index = self._row_index(rows)
        count = (index.stop - index.start) if isinstance(index, slice) else len(index)
        _check_mask_size("sdpa_mask", count, self.max_length)
        return sdpa_mask(self.segment_ids[index], device=device)

    def flex_block_mask(
        self, rows: Rows = None, *, device: str | torch.device | None = None
    ) -> BlockMask:
        """A FlexAttention ``BlockMask`` for the selected rows; see
        :func:`seqpack.flex_block_mask`. The same size limit as :meth:`sdpa_mask`.

        Parameters
        ----------
        rows
            A slice or range of rows (default: all), or integer row indices.
        device
            Where to build the mask.
        """
        index = self._row_index(rows)
        count = (index.stop - index.start) if isinstance(index, slice) else len(index)
        _check_mask_size("flex_block_mask", count, self.max_length)
        return flex_block_mask(self.segment_ids[index], device=device)


_OLD_TRANSFORMERS_WARNED = False


def _warn_if_transformers_cannot_find_sequences() -> None:
    """The model inputs rely on transformers finding packed sequences from ``position_ids``
    (added in 4.54); an older transformers would let them attend to each other, so say so."""
    global _OLD_TRANSFORMERS_WARNED
    module = sys.modules.get("transformers")
    if module is None or _OLD_TRANSFORMERS_WARNED:
        return
    parts = str(getattr(module, "__version__", "0")).split(".")[:2]
    version = tuple(int(p) if p.isdigit() else 0 for p in parts)
    if version < (4, 54):
        _OLD_TRANSFORMERS_WARNED = True
        warnings.warn(
            f"transformers {module.__version__} does not find packed sequences from "
            "position_ids (that needs >= 4.54): give it sdpa_mask(rows) as attention_mask "
            "(SDPA) or padding_free(rows) with FlashAttention-2, or upgrade",
            UserWarning,
            stacklevel=3,
        )


def _check_mask_size(name: str, rows: int, length: int) -> None:
    size = rows * length * length
    if size > MAX_MASK_BYTES:
        raise TooLargeError(
            f"{name}() over {rows:,} rows of {length:,} tokens would take {size / 2**30:,.1f} GiB; "
            "pass rows= a minibatch (e.g. rows=slice(0, 8))"
        )


def _segments_2d(segment_ids: Any, device: str | torch.device | None) -> torch.Tensor:
    """``[B, L]`` segment ids as a tensor on ``device`` (tensors are taken as they are, so
    ids already on a GPU stay there)."""
    import torch

    if isinstance(segment_ids, torch.Tensor):
        segments = segment_ids.to(device) if device is not None else segment_ids
    else:
        segments = torch.as_tensor(np.asarray(segment_ids), device=device)
    if segments.dim() != 2:
        raise InvalidOptionError(
            f"segment_ids must be 2-D [rows, max_length], got shape {tuple(segments.shape)}"
        )
    return segments


def sdpa_mask(segment_ids: Any, device: str | torch.device | None = None) -> torch.Tensor:
    """A ``[B, 1, L, L]`` boolean mask for ``torch.nn.functional.scaled_dot_product_attention``
    from ``[B, L]`` segment ids: a token attends to earlier tokens of its own segment. Padding
    (segment 0) attends only to itself, so no row of the mask is all False (which would make
    SDPA return NaN). Boolean masks are for SDPA only: a Hugging Face model in eager mode adds
    its 4-D mask to the scores, so give it :meth:`PackedBatch.to_torch`'s inputs instead.

    >>> import seqpack
    >>> seqpack.sdpa_mask([[1, 1, 2, 0]])[0, 0].int().tolist()
    [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]

    Parameters
    ----------
    segment_ids
        ``[B, L]`` segment ids (``PackedBatch.segment_ids`` or a slice of it), an array or a
        tensor.
    device
        Where to build the mask (default: where the ids are).
    """
    segments = _segments_2d(segment_ids, device)
    import torch

    length = segments.shape[-1]
    same = segments.unsqueeze(-1) == segments.unsqueeze(-2)
    real = (segments > 0).unsqueeze(-1)
    causal = torch.ones(length, length, dtype=torch.bool, device=segments.device).tril()
    diagonal = torch.eye(length, dtype=torch.bool, device=segments.device)
    return ((same & real & causal) | diagonal).unsqueeze(1)


def flex_block_mask(segment_ids: Any, device: str | torch.device | None = None) -> BlockMask:
    """A FlexAttention ``BlockMask`` with the same rule as :func:`sdpa_mask`, built from
    ``[B, L]`` segment ids; fully masked blocks between segments are skipped by the kernel.

    Its ``.to(device)`` moves the segment ids its ``mask_mod`` reads along with the block
    tensors (a plain ``BlockMask.to`` leaves a closure's tensors behind, and the compiled
    kernel then fails on the GPU), so a mask built on the CPU by a loader can be moved with
    the rest of the batch.

    >>> import seqpack
    >>> seqpack.flex_block_mask([[1, 1, 2, 0]]).shape
    (1, 1, 4, 4)

    Parameters
    ----------
    segment_ids
        ``[B, L]`` segment ids, an array or a tensor.
    device
        Where to build the mask (default: where the ids are).
    """
    from torch.nn.attention.flex_attention import create_block_mask

    segments = _segments_2d(segment_ids, device)
    batch, length = segments.shape
    if batch == 0 or length == 0:
        raise InvalidOptionError("flex_block_mask: segment_ids has no rows or no columns")
    mask = create_block_mask(
        _same_segment_causal(segments), B=batch, H=None, Q_LEN=length, KV_LEN=length,
        device=segments.device,
    )  # fmt: skip
    return _segment_block_mask(mask, segments)


def _same_segment_causal(segments: torch.Tensor) -> Any:
    """FlexAttention's ``mask_mod`` for :func:`sdpa_mask`'s rule over ``segments``."""

    def same_segment_causal(
        b: torch.Tensor, h: torch.Tensor, q: torch.Tensor, kv: torch.Tensor
    ) -> torch.Tensor:
        own = (segments[b, q] == segments[b, kv]) & (segments[b, q] > 0) & (q >= kv)
        return own | (q == kv)

    return same_segment_causal


_SEGMENT_BLOCK_MASK: type | None = None


def _segment_block_mask(mask: BlockMask, segments: torch.Tensor) -> BlockMask:
    """``mask`` as a ``BlockMask`` whose ``.to(device)`` also moves ``segments``."""
    global _SEGMENT_BLOCK_MASK
    if _SEGMENT_BLOCK_MASK is None:
        from torch.nn.attention.flex_attention import BlockMask

        class SegmentBlockMask(BlockMask):
            """A segment-id ``BlockMask`` (see :func:`flex_block_mask`)."""

            segment_ids: torch.Tensor

            def to(self, device: torch.device | str) -> BlockMask:
                moved = super().to(device)
                segments = self.segment_ids.to(device)
                moved.mask_mod = _same_segment_causal(segments)
                return _segment_block_mask(moved, segments)

        _SEGMENT_BLOCK_MASK = SegmentBlockMask
    mask.__class__ = _SEGMENT_BLOCK_MASK
    mask.segment_ids = segments  # type: ignore[attr-defined]
    return mask
