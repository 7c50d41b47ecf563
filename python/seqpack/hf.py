"""Hugging Face ``Trainer`` and TRL ``SFTTrainer``: a dataset of packed rows and a collator,
which their own samplers, distributed sharding (accelerate) and checkpoint resume handle as
any other dataset.

The recipe::

    from transformers import Trainer, TrainingArguments
    import seqpack.hf

    store = seqpack.store.open("store/")            # or seqpack.store.write(...)
    train = seqpack.hf.packed_dataset(store, max_length=4096, pad_rows_to_multiple_of=8)
    trainer = Trainer(
        model=model,
        args=TrainingArguments(per_device_train_batch_size=2, ...),
        train_dataset=train,
        data_collator=seqpack.hf.collator(),       # padding-free batches
    )
    trainer.train()                                  # resume_from_checkpoint=... works as usual

Each item is one packed row; the collator turns ``per_device_train_batch_size`` rows into one
padding-free batch (``format="rows"`` for ``[B, L]``). Batches keep packed sequences apart on
their own (see :mod:`seqpack.torch`); the Trainer's ``num_items_in_batch`` replaces the
collator's, so gradient accumulation averages over the whole step. ``pad_rows_to_multiple_of``
(``world size × per-device batch``) adds empty rows so accelerate's even batches repeat no real
row. For every sample exactly once per epoch with equal steps per rank and O(1) resume, use
:class:`seqpack.torch.PackedLoader` in your own loop.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any, Literal

from seqpack.errors import InvalidOptionError
from seqpack.store import TokenStore
from seqpack.torch import CollatePaddingFree, CollateRows, PackedRows


def packed_dataset(
    store: TokenStore | str | os.PathLike[str],
    *,
    max_length: int,
    pad_rows_to_multiple_of: int = 1,
    **plan_options: Any,
) -> PackedRows:
    """The packed rows of ``store`` as a dataset for ``Trainer(train_dataset=...)``.

    Parameters
    ----------
    store
        A token store or its path.
    max_length
        Tokens per row.
    pad_rows_to_multiple_of
        Empty rows added at the end so the row count divides by this (world size ×
        per-device batch size).
    **plan_options
        ``strategy``, ``overlong``, ``truncate_keep``, ``max_seqs_per_row``, ``loss_weights``,
        ``pad_id``, ``dtype``, as for :class:`seqpack.torch.PackedRows`.
    """
    return PackedRows(
        store,
        max_length=max_length,
        pad_rows_to_multiple_of=pad_rows_to_multiple_of,
        trim_padding=True,
        **plan_options,
    )


def collator(
    format: Literal["padding_free", "rows"] = "padding_free", *, pad_id: int = 0
) -> Callable[[list[Any]], dict[str, Any]]:
    """The ``data_collator`` for :func:`packed_dataset`: rows into one padding-free batch
    (``[1, T]`` with ``cu_seq_lens_q/k``), or ``[B, L]`` rows.

    Parameters
    ----------
    format
        ``"padding_free"`` (default) or ``"rows"``.
    pad_id
        Token id of the padding the collator writes.
    """
    if format == "padding_free":
        return CollatePaddingFree(pad_id)
    if format == "rows":
        return CollateRows(pad_id)
    raise InvalidOptionError(f"option format: expected 'padding_free' or 'rows', got {format!r}")


def to_hf_dataset(
    store: TokenStore | str | os.PathLike[str], *, max_length: int, **plan_options: Any
) -> Any:
    """The packed rows as an Arrow ``datasets.Dataset`` (written to the datasets cache a row
    at a time, so memory stays flat): ``input_ids``, ``labels``, ``position_ids`` and
    ``segment_ids`` per row.

    Parameters
    ----------
    store, max_length, **plan_options
        As for :func:`packed_dataset`.
    """
    import datasets

    rows = PackedRows(store, max_length=max_length, **plan_options)

    def generate() -> Iterator[dict[str, Any]]:
        for index in range(len(rows)):
            yield {name: tensor.numpy() for name, tensor in rows[index].items()}

    return datasets.Dataset.from_generator(generate)
