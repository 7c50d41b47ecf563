"""The packed output and its views for each attention backend.

A :class:`PackedBatch` holds ``[rows, max_length]`` arrays allocated in Rust and handed to
numpy without a copy, plus per-segment boundaries. Its helpers turn it into what a model
takes: plain torch tensors, a padding-free ``[1, T]`` batch for FlashAttention-2, a 4-D
block-causal boolean mask for SDPA, or a FlexAttention ``BlockMask``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from seqpack.errors import InvalidOptionError
from seqpack.stats import Event, PackStats

if TYPE_CHECKING:
    import torch
    from torch.nn.attention.flex_attention import BlockMask

    from seqpack.chat import ConversationReport

ROW_ARRAYS = ("input_ids", "labels", "position_ids", "segment_ids", "attention_mask")


@dataclass(frozen=True, eq=False)
class PackedBatch:
    """Packed rows and the metadata that keeps their sequences independent.

    Row arrays are ``[rows, max_length]``; per-segment arrays have one entry per packed
    sequence (segment), in row-major order.
    """

    input_ids: npt.NDArray[np.int64] | npt.NDArray[np.int32]
    """Token ids; ``pad_id`` after the last segment of a row."""
    labels: npt.NDArray[np.int64]
    """-100 on padding and on the first token of every segment; otherwise the token id or the
    label given for it."""
    position_ids: npt.NDArray[np.int64]
    """0, 1, 2, ... restarting at every segment (and for the padding run)."""
    segment_ids: npt.NDArray[np.int32]
    """1..k for the k segments of a row, 0 on padding."""
    attention_mask: npt.NDArray[np.int64]
    """1 on real tokens, 0 on padding."""
    loss_weights: npt.NDArray[np.float32] | None
    """Per-token loss weights when requested (0 where the label is -100)."""
    cu_seqlens: npt.NDArray[np.int32]
    """``[S + 1]`` segment boundaries in the padding-free token stream."""
    seq_lens: npt.NDArray[np.int32]
    """``[S]`` length of every segment."""
    source_index: npt.NDArray[np.int64]
    """``[S, 2]``: (input sequence, chunk of it) each segment came from."""
    source_start: npt.NDArray[np.int64]
    """``[S]``: offset of each segment's first token inside its input sequence."""
    max_seqlen: int
    """Length of the longest segment."""
    stats: PackStats
    events: list[Event]
    sample_record: npt.NDArray[np.int64] | None = None
    """Conversation path: the input record of every packed sample (``source_index[:, 0]``
    indexes samples; this maps a sample to its record)."""
    sample_window: npt.NDArray[np.int64] | None = None
    """Conversation path: the window of its record each sample is."""
    report: ConversationReport | None = None
    """Conversation path: one report per input record."""

    @property
    def num_rows(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def max_length(self) -> int:
        return int(self.input_ids.shape[1])

    def to_torch(
        self, device: str | torch.device | None = None, pin_memory: bool = False
    ) -> dict[str, torch.Tensor]:
        """All arrays as torch tensors; zero-copy on the CPU unless ``pin_memory``.

        >>> import seqpack
        >>> batch = seqpack.pack([[5, 6, 7], [8, 9]], max_length=8)
        >>> batch.to_torch()["input_ids"].shape
        torch.Size([1, 8])
        """
        import torch

        names = [*ROW_ARRAYS, "cu_seqlens", "seq_lens", "source_index", "source_start"]
        if self.loss_weights is not None:
            names.append("loss_weights")
        out: dict[str, torch.Tensor] = {}
        for name in names:
            tensor = torch.from_numpy(getattr(self, name))
            if pin_memory:
                tensor = tensor.pin_memory()
            if device is not None:
                tensor = tensor.to(device, non_blocking=pin_memory)
            out[name] = tensor
        return out

    def padding_free(self, device: str | torch.device | None = None) -> dict[str, Any]:
        """One ``[1, T]`` row of all real tokens with the FlashAttention-2 varlen arguments
        Hugging Face models take (``cu_seq_lens_q/k``, ``max_length_q/k``), as
        ``DataCollatorWithFlattening`` builds them.

        >>> import seqpack
        >>> flat = seqpack.pack([[5, 6, 7], [8, 9]], max_length=8).padding_free()
        >>> flat["input_ids"].tolist(), flat["cu_seq_lens_q"].tolist()
        ([[5, 6, 7, 8, 9]], [0, 3, 5])
        """
        import torch

        real = self.attention_mask.astype(bool)
        cu = torch.from_numpy(self.cu_seqlens)
        out: dict[str, Any] = {
            "input_ids": torch.from_numpy(self.input_ids[real]).unsqueeze(0),
            "labels": torch.from_numpy(self.labels[real]).unsqueeze(0),
            "position_ids": torch.from_numpy(self.position_ids[real]).unsqueeze(0),
            "cu_seq_lens_q": cu,
            "cu_seq_lens_k": cu,
            "max_length_q": self.max_seqlen,
            "max_length_k": self.max_seqlen,
        }
        if self.loss_weights is not None:
            out["loss_weights"] = torch.from_numpy(self.loss_weights[real]).unsqueeze(0)
        if device is not None:
            out = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in out.items()}
        return out

    def sdpa_mask(self, device: str | torch.device | None = None) -> torch.Tensor:
        """The ``[rows, 1, L, L]`` boolean block-causal mask (True = may attend) for all rows;
        see :func:`seqpack.sdpa_mask` to build it per minibatch."""
        return sdpa_mask(self.segment_ids, device=device)

    def flex_block_mask(self, device: str | torch.device | None = None) -> BlockMask:
        """A FlexAttention ``BlockMask`` for all rows; see :func:`seqpack.flex_block_mask`."""
        return flex_block_mask(self.segment_ids, device=device)


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
    SDPA return NaN).

    >>> import seqpack
    >>> seqpack.sdpa_mask([[1, 1, 2, 0]])[0, 0].int().tolist()
    [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
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

    >>> import seqpack
    >>> seqpack.flex_block_mask([[1, 1, 2, 0]]).shape
    (1, 1, 4, 4)
    """
    from torch.nn.attention.flex_attention import create_block_mask

    segments = _segments_2d(segment_ids, device)
    batch, length = segments.shape
    if batch == 0 or length == 0:
        raise InvalidOptionError("flex_block_mask: segment_ids has no rows or no columns")

    def same_segment_causal(
        b: torch.Tensor, h: torch.Tensor, q: torch.Tensor, kv: torch.Tensor
    ) -> torch.Tensor:
        own = (segments[b, q] == segments[b, kv]) & (segments[b, q] > 0) & (q >= kv)
        return own | (q == kv)

    return create_block_mask(
        same_segment_causal, B=batch, H=None, Q_LEN=length, KV_LEN=length, device=segments.device
    )
