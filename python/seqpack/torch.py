"""Training loaders over a token store: :class:`PackedLoader` hands each rank its micro-batches
of packed rows, epoch after epoch, materialised per batch in Rust from the memory-mapped store
(ahead, in worker threads or processes, when ``num_workers > 0``), never the whole dataset; it
resumes from any step in O(1). :class:`PackedRows` is the same rows as a map-style dataset for
code that brings its own ``DataLoader``.

Every batch is safe to pass as ``model(**batch)`` to a Hugging Face causal LM: there is no 2-D
``attention_mask`` (which a model reads as a padding mask and which would let packed sequences
attend to each other); ``position_ids`` restart at every sequence and ``use_cache=False``, so
eager and SDPA find the sequences (transformers >= 4.54), ``cu_seq_lens_q/k`` give them to
FlashAttention-2 (in ``[B, L]`` rows too), or ``mask=`` adds an explicit 4-D block-causal mask or
a FlexAttention ``BlockMask``. ``num_items_in_batch`` makes the model's loss the mean
over the batch's trained tokens, and 0, not NaN, for a batch of padding rows.

>>> import seqpack, seqpack.torch, tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp()) / "store"
>>> store = seqpack.store.write(folder, [[1, 2, 3], [4, 5], [6, 7, 8, 9], [10]])
>>> loader = seqpack.torch.PackedLoader(store, max_length=5, batch_rows=1)
>>> len(loader), [b["input_ids"].shape[1] for b in loader]
(2, [5, 5])
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import mmap
import multiprocessing
import os
import pickle
import signal
import traceback
import warnings
import weakref
from collections import deque
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from seqpack import _normalise
from seqpack.batch import (
    _warn_if_transformers_cannot_find_sequences,
    flex_block_mask,
    rows_varlen,
    sdpa_mask,
)
from seqpack.errors import InvalidOptionError, WorkerError
from seqpack.stats import Event, PackStats, events_from_native
from seqpack.store import TokenStore, _Plan

Format = Literal["rows", "padding_free"]
Mask = Literal["sdpa", "eager", "flex"]
WorkerType = Literal["thread", "process"]

STATE_VERSION = 1

# Worker processes are forked (the shared slots and the plan come along); where the platform
# cannot fork, a torch DataLoader's workers carry the batches instead.
_FORK = "fork" in multiprocessing.get_all_start_methods()


def _open(store: TokenStore | str | os.PathLike[str]) -> TokenStore:
    return store if isinstance(store, TokenStore) else TokenStore(store)


def _check_mask(mask: Any, format: str) -> None:
    """``mask=`` of a loader or stream: a known kind, and only for ``[B, L]`` rows."""
    if mask not in (None, "sdpa", "eager", "flex"):
        raise InvalidOptionError(
            f"option mask: expected None, 'sdpa', 'eager' or 'flex', got {mask!r}"
        )
    if mask is not None and format == "padding_free":
        raise InvalidOptionError(
            "option mask: the padding-free format has no mask (cu_seq_lens keep sequences apart)"
        )


def _model_inputs(raw: dict[str, Any], padding_free: bool, mask: Mask | None) -> dict[str, Any]:
    """Torch tensors a Hugging Face causal LM takes as ``model(**batch)``."""
    names = ("input_ids", "labels", "position_ids", "segment_ids", "loss_weights")
    if padding_free:
        # [1, T]: numpy's reshape costs a sixth of torch's unsqueeze, per batch.
        batch: dict[str, Any] = {
            name: torch.from_numpy(raw[name].reshape(1, -1)) for name in names if name in raw
        }
        cu = torch.from_numpy(raw["cu_seqlens"])
        batch.update(
            cu_seq_lens_q=cu,
            cu_seq_lens_k=cu,
            max_length_q=raw["max_seqlen"],
            max_length_k=raw["max_seqlen"],
        )
    else:
        batch = {name: torch.from_numpy(raw[name]) for name in names if name in raw}
        segments = batch["segment_ids"]
        if mask == "sdpa":
            batch["attention_mask"] = sdpa_mask(segments)
        elif mask == "eager":
            allowed = sdpa_mask(segments)
            additive = torch.zeros(allowed.shape, dtype=torch.float32)
            batch["attention_mask"] = additive.masked_fill_(
                ~allowed, torch.finfo(torch.float32).min
            )
        elif mask == "flex":
            batch["attention_mask"] = flex_block_mask(segments)
        bounds = torch.from_numpy(raw["row_cu_seqlens"])  # rows_varlen's, computed in Rust
        batch.update(
            cu_seq_lens_q=bounds,
            cu_seq_lens_k=bounds,
            max_length_q=raw["row_max_seqlen"],
            max_length_k=raw["row_max_seqlen"],
        )
    batch["use_cache"] = False
    trained = (
        int(raw["trained_tokens"])
        if "trained_tokens" in raw
        else int(np.count_nonzero(raw["labels"] != -100))
    )
    batch["num_items_in_batch"] = max(1, trained)
    return batch


class _Steps:
    """Map-style dataset of one rank's micro-batches of one epoch, by step: what a torch
    ``DataLoader`` spreads over its workers, in order."""

    def __init__(
        self, plan: _Plan, epoch: int, rank: int, padding_free: bool, mask: Mask | None
    ) -> None:
        self.plan, self.epoch, self.rank = plan, epoch, rank
        self.padding_free, self.mask = padding_free, mask

    def __len__(self) -> int:
        return int(self.plan.native.steps)

    def __getitem__(self, step: int) -> dict[str, Any]:
        return _model_inputs(self.raw(step), self.padding_free, self.mask)

    def raw(self, step: int) -> dict[str, Any]:
        """The step's arrays as the Rust side makes them (numpy, before torch)."""
        rows = self.plan.native.rank_rows(self.epoch, step, self.rank)
        return self.plan.materialize(rows, self.padding_free)


def _first(batch: Any) -> Any:
    return batch


_Layout = tuple[tuple[str, str, tuple[int, ...], int], ...]


class _OneBuffer:
    """A worker process's batches with all their tensors in one buffer: a torch
    ``DataLoader`` moves each tensor of a batch through its own shared-memory segment, whose
    set-up (not the bytes) is most of a batch's cost (measured on 2 cores: a bare
    ``DataLoader`` with 2 workers moved a batch of four tensors, 1 MB in all, in 2.9 ms, one
    buffer of the same bytes in 1.2 ms). The buffer is made in shared memory, so the
    ``DataLoader`` does not copy it there again. :func:`_unpacked` gives back the same batch,
    its tensors views of that buffer (which is pinned whole under ``pin_memory``)."""

    def __init__(self, steps: _Steps) -> None:
        self.steps = steps

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, step: int) -> tuple[torch.Tensor, _Layout, dict[str, Any]]:
        return _one_buffer(self.steps[step])


def _one_buffer(batch: dict[str, Any]) -> tuple[torch.Tensor, _Layout, dict[str, Any]]:
    """The tensors of ``batch`` copied into one byte buffer (each at an 8-byte aligned offset;
    a tensor that appears under two keys is stored once), where each key's value is (offset
    -1: in the returned dict of the other values), in the batch's order."""
    offsets: dict[int, int] = {}  # id(tensor) -> its offset in the buffer
    tensors: list[torch.Tensor] = []
    layout: list[tuple[str, str, tuple[int, ...], int]] = []
    rest: dict[str, Any] = {}
    size = 0
    for key, value in batch.items():
        if not isinstance(value, torch.Tensor):
            layout.append((key, "", (), -1))
            rest[key] = value
            continue
        if id(value) not in offsets:
            offsets[id(value)] = size
            tensors.append(value)
            size += -(-value.numel() * value.element_size() // 8) * 8
        dtype = str(value.dtype).removeprefix("torch.")
        layout.append((key, dtype, tuple(value.shape), offsets[id(value)]))
    # Made in shared memory: the DataLoader then sends it as it is, without copying it there.
    storage: torch.UntypedStorage = torch.UntypedStorage._new_shared(size)  # type: ignore[no-untyped-call]
    buffer = torch.empty(0, dtype=torch.uint8).set_(storage, 0, (size,), (1,))
    for value in tensors:
        _view(buffer, value.dtype, value.shape, offsets[id(value)]).copy_(value)
    return buffer, tuple(layout), rest


def _view(buffer: torch.Tensor, dtype: torch.dtype, shape: Any, offset: int) -> torch.Tensor:
    nbytes = math.prod(shape) * dtype.itemsize
    return buffer.narrow(0, offset, nbytes).view(dtype).view(shape)


def _unpacked(payload: tuple[torch.Tensor, _Layout, dict[str, Any]]) -> dict[str, Any]:
    """The batch :func:`_one_buffer` packed, in its keys' order, tensors as views."""
    buffer, layout, rest = payload
    batch: dict[str, Any] = {}
    views: dict[tuple[str, tuple[int, ...], int], torch.Tensor] = {}
    for key, dtype, listed, offset in layout:
        if offset < 0:
            batch[key] = rest[key]
            continue
        # Older torch releases pin a plain tuple as a list (the layout, each shape).
        shape = tuple(listed)
        if (dtype, shape, offset) not in views:  # one tensor under two keys stays one
            views[dtype, shape, offset] = _view(buffer, getattr(torch, dtype), shape, offset)
        batch[key] = views[dtype, shape, offset]
    return batch


class PackedLoader:
    """This rank's micro-batches of packed rows from a token store, epoch after epoch.

    The whole dataset is planned once (best fit, as :func:`seqpack.pack`); each epoch shuffles
    the rows with ``seed`` (a new order every epoch) and cuts them into global steps of
    ``batch_rows × world_size`` rows. Every rank gets exactly ``len(loader)`` batches per epoch;
    the last step is padded with empty rows that train nothing (``remainder="pad"``) or left out
    (``"drop"``, counted in :attr:`dropped_rows_per_epoch`). The batches are the same for any
    ``num_workers``, thread count or machine; the rows of a global step do not depend on
    ``world_size``, so a run can resume on another number of GPUs with the same global batch.

    Parameters
    ----------
    store
        A :class:`~seqpack.store.TokenStore` or its path.
    max_length
        Tokens per row.
    batch_rows
        Rows per micro-batch per rank.
    batch_tokens
        Instead of ``batch_rows``: the token budget of a micro-batch (``batch_tokens //
        max_length`` rows; for the padding-free format).
    world_size, rank
        Data-parallel ranks and this one.
    seed
        Seeds the per-epoch shuffle of rows.
    format
        ``"rows"``: ``[B, L]`` ``input_ids``, ``labels``, ``position_ids``, ``segment_ids``;
        ``"padding_free"``: one ``[1, T]`` row of real tokens with ``cu_seq_lens_q/k`` and
        ``max_length_q/k`` (Hugging Face's FlashAttention-2 / packed-sequence arguments).
    num_workers
        Batches materialised ahead, in parallel; 0: each one when it is asked for.
    worker_type
        ``"thread"`` (the default): threads of this process; the Rust materialisation runs
        without the GIL and the batch is handed over without a copy. ``"process"``: processes
        forked from this one when iteration starts (where the platform cannot fork, a torch
        ``DataLoader``'s workers); each writes its batches into slots of one shared mapping,
        and the tensors this process yields are views of the slot (no copy on this side, no
        new shared segment, no per-tensor pickling); a slot is reused once every tensor of its
        batch is gone, and a loop that keeps many batches gets the others through the pipe.
        For loops whose own Python work holds the GIL; on a machine with few cores threads
        deliver more. A worker that dies raises
        :class:`~seqpack.errors.WorkerError` naming it and the step; an error in a worker is
        raised here as it was raised there.
    pin_memory
        Pin batches for asynchronous copies to a GPU.
    remainder
        ``"pad"`` or ``"drop"`` the incomplete last step of an epoch.
    balance
        ``"tokens"`` or ``"attention"``: within each step, give ranks rows so the largest
        rank's cost is smallest (see :meth:`imbalance`).
    mask
        For ``format="rows"``: ``None`` (restarting ``position_ids`` and ``use_cache=False``
        let eager and SDPA find the sequences, ``cu_seq_lens_q/k`` FlashAttention-2),
        ``"sdpa"`` (a 4-D boolean block-causal mask, for SDPA), ``"eager"`` (a 4-D additive
        float32 mask, for eager attention) or ``"flex"`` (a FlexAttention ``BlockMask``; move
        it with the batch: its ``.to(device)`` moves what it reads). A FlashAttention-2 model
        reads any ``attention_mask`` as a 2-D padding mask and fails on these: leave ``None``.
    strategy, overlong, truncate_keep, max_seqs_per_row
        How the plan is made, as for :func:`seqpack.pack`.
    loss_weights, pad_id, dtype
        As for :func:`seqpack.pack` (``loss_weights="sequence"`` weighs each sample by its
        trained tokens over the whole plan).
    prefetch_factor
        Batches each worker prepares ahead (``num_workers > 0``; default 2).
    """

    def __init__(
        self,
        store: TokenStore | str | os.PathLike[str],
        *,
        max_length: int,
        batch_rows: int | None = None,
        batch_tokens: int | None = None,
        world_size: int = 1,
        rank: int = 0,
        seed: int = 0,
        format: Format = "rows",
        num_workers: int = 0,
        worker_type: WorkerType = "thread",
        pin_memory: bool = False,
        remainder: Literal["pad", "drop"] = "pad",
        balance: Literal["tokens", "attention"] | None = None,
        mask: Mask | None = None,
        strategy: Literal["bfd", "ffd", "sequential", "wrapped"] = "bfd",
        overlong: Literal["error", "drop", "truncate", "split"] = "error",
        truncate_keep: Literal["head", "tail"] = "head",
        max_seqs_per_row: int | None = None,
        loss_weights: Literal["token", "sequence"] | None = None,
        pad_id: int = 0,
        dtype: Literal["int64", "int32"] = "int64",
        prefetch_factor: int | None = None,
    ) -> None:
        self.store = _open(store)
        if format not in ("rows", "padding_free"):
            raise InvalidOptionError(
                f"option format: expected 'rows' or 'padding_free', got {format!r}"
            )
        _check_mask(mask, format)
        if worker_type not in ("thread", "process"):
            raise InvalidOptionError(
                f"option worker_type: expected 'thread' or 'process', got {worker_type!r}"
            )
        plan_options = {
            "max_length": _normalise.integer("max_length", max_length),
            "strategy": _normalise.text("strategy", strategy),
            "max_seqs_per_row": _normalise.optional_integer("max_seqs_per_row", max_seqs_per_row),
            "overlong": _normalise.text("overlong", overlong),
            "truncate_keep": _normalise.text("truncate_keep", truncate_keep),
            "pad_rows_to_multiple_of": 1,
            "seed": None,
        }
        schedule: dict[str, Any] = {
            "plan": plan_options,
            "batch_rows": _normalise.optional_integer("batch_rows", batch_rows),
            "batch_tokens": _normalise.optional_integer("batch_tokens", batch_tokens),
            "world_size": _normalise.integer("world_size", world_size),
            "seed": _normalise.seed(seed) or 0,
            "remainder": _normalise.text("remainder", remainder),
            "balance": _normalise.optional_text("balance", balance),
        }
        layout = {
            "pad_id": _normalise.integer("pad_id", pad_id),
            "loss_weights": _normalise.optional_text("loss_weights", loss_weights),
            "dtype": _normalise.text("dtype", dtype),
        }
        self._plan = _Plan(self.store, schedule, layout)
        native = self._plan.native  # plans now: every option and the store are checked here
        self.rank = _normalise.integer("rank", rank)
        if not 0 <= self.rank < schedule["world_size"]:
            raise InvalidOptionError(
                f"option rank: must be in 0..{schedule['world_size'] - 1}, got {rank}"
            )
        self.format: Format = format
        self.mask: Mask | None = mask
        self.num_workers = _normalise.integer("num_workers", num_workers)
        if self.num_workers < 0:
            raise InvalidOptionError(f"option num_workers: must be >= 0, got {num_workers}")
        self.worker_type: WorkerType = worker_type
        self.pin_memory = _normalise.flag("pin_memory", pin_memory)
        if self.pin_memory and not torch.cuda.is_available():
            # As torch's DataLoader does: pinning needs an accelerator, and the batches are the
            # same without it.
            warnings.warn(
                "pin_memory=True, but no accelerator is available: batches are not pinned",
                stacklevel=2,
            )
            self.pin_memory = False
        self.prefetch_factor = (
            None
            if prefetch_factor is None
            else _normalise.integer("prefetch_factor", prefetch_factor)
        )
        if self.prefetch_factor is not None and self.prefetch_factor < 1:
            raise InvalidOptionError(f"option prefetch_factor: must be >= 1, got {prefetch_factor}")
        report = native.report()
        self.events: list[Event] = events_from_native(report["events"])
        self.stats = PackStats.from_native(report["stats"], self.events)
        """The plan's figures: rows, efficiency, sequences cut or dropped by ``overlong``."""
        self._epoch = 0
        self._step = 0
        identity = {
            "store": self.store.fingerprint,
            "plan": plan_options,
            "rows_per_step": int(native.rows_per_step),
            "seed": schedule["seed"],
            "remainder": schedule["remainder"],
        }
        self.fingerprint = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
        """What a saved state must match: the store's data, the plan options, the global batch
        and the seed (not the world size, rank, workers or format)."""

    def __len__(self) -> int:
        """Micro-batches per epoch, on every rank."""
        return int(self._plan.native.steps)

    def __repr__(self) -> str:
        return (
            f"<PackedLoader rank {self.rank} of {self._plan.schedule_options['world_size']}: "
            f"{len(self):,} batches per epoch of {self.store.path}, epoch {self._epoch}, "
            f"step {self._step}>"
        )

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def dropped_rows_per_epoch(self) -> int:
        """Rows of the plan left out of each epoch by ``remainder="drop"``."""
        return int(self._plan.native.dropped_rows_per_epoch)

    @property
    def padding_rows_per_epoch(self) -> int:
        """Empty rows added to each epoch by ``remainder="pad"``."""
        return int(self._plan.native.padding_rows_per_epoch)

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its first step (iterating to the end of an epoch moves to the
        next one by itself)."""
        self._epoch = _normalise.integer("epoch", epoch)
        self._step = 0

    def imbalance(
        self, balance: Literal["tokens", "attention"] = "attention"
    ) -> tuple[float, float]:
        """How uneven this epoch is across ranks: Σ over steps of the largest rank's cost over
        Σ of the mean rank cost (1.0 is perfectly even), without and with balancing."""
        plain, balanced = self._plan.native.imbalance(self._epoch, balance)
        return float(plain), float(balanced)

    def state_dict(self) -> dict[str, Any]:
        """Where this loader stands: the epoch and the batches of it already yielded, with the
        fingerprint of the store and options they count on."""
        return {
            "version": STATE_VERSION,
            "epoch": self._epoch,
            "step": self._step,
            "fingerprint": self.fingerprint,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume where ``state`` stood: the next batch is the one an uninterrupted run would
        have yielded next. O(1): nothing is re-read or replayed."""
        missing = {"version", "epoch", "step", "fingerprint"} - set(state)
        if missing:
            raise InvalidOptionError(
                f"option state: not a PackedLoader state (missing {', '.join(sorted(missing))})"
            )
        if state["version"] != STATE_VERSION:
            raise InvalidOptionError(
                f"option state: version {state['version']} is not {STATE_VERSION}"
            )
        if state["fingerprint"] != self.fingerprint:
            raise InvalidOptionError(
                "option state: it was saved for another store or other options (store data, "
                "max_length, strategy, overlong, global batch rows, seed or remainder differ)"
            )
        step = _normalise.integer("step", state["step"])
        if not 0 <= step <= len(self):
            raise InvalidOptionError(f"option state: step {step} is outside 0..{len(self)}")
        self._epoch = _normalise.integer("epoch", state["epoch"])
        self._step = step

    def __iter__(self) -> Generator[dict[str, Any], None, None]:
        _warn_if_transformers_cannot_find_sequences()
        if self._step >= len(self):  # a finished epoch: the next one
            self._epoch += 1
            self._step = 0
        steps = _Steps(self._plan, self._epoch, self.rank, self.format == "padding_free", self.mask)
        indices = range(self._step, len(self))
        source: Iterable[dict[str, Any]]
        if self.num_workers == 0:
            source = (steps[i] for i in indices)
            if self.pin_memory:
                source = (_pin(batch) for batch in source)
        elif self.worker_type == "thread":
            ahead = self.num_workers * (self.prefetch_factor or 2)
            source = _in_threads(steps, indices, self.num_workers, ahead, self.pin_memory)
        elif _FORK:
            options = self._plan.schedule_options
            rows = int(self._plan.native.rows_per_step) // int(options["world_size"])
            source = _in_processes(
                steps, indices, self.num_workers, self.prefetch_factor or 2, self.pin_memory,
                rows * int(options["plan"]["max_length"]),
            )  # fmt: skip
        else:
            loader: torch.utils.data.DataLoader[Any] = torch.utils.data.DataLoader(
                _OneBuffer(steps), batch_size=None, sampler=indices, num_workers=self.num_workers,  # type: ignore[arg-type]
                pin_memory=self.pin_memory, collate_fn=_first, prefetch_factor=self.prefetch_factor,
                persistent_workers=False,
            )  # fmt: skip
            source = (_unpacked(payload) for payload in loader)
        for batch in source:
            self._step += 1
            yield batch
        if self._step >= len(self):
            self._epoch += 1
            self._step = 0


def _in_threads(
    steps: _Steps, indices: range, workers: int, ahead: int, pin: bool
) -> Iterator[dict[str, Any]]:
    """The batches of ``indices``, in order, materialised up to ``ahead`` at a time by
    ``workers`` threads. Leaving the loop early cancels what was not started."""

    def build(step: int) -> dict[str, Any]:
        batch = steps[step]
        return _pin(batch) if pin else batch

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="seqpack-loader")
    pending: deque[Future[dict[str, Any]]] = deque()
    remaining = iter(indices)
    try:
        pending.extend(pool.submit(build, step) for step in itertools.islice(remaining, ahead))
        while pending:
            batch = pending.popleft().result()
            pending.extend(pool.submit(build, step) for step in itertools.islice(remaining, 1))
            yield batch
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True)


# Each array of a batch in a slot starts on a cache line of its own.
_ALIGN = 64


def _slot_bytes(cells: int) -> int:
    """The most bytes one micro-batch of ``cells`` cells (rows x max_length, or padding-free
    tokens) writes: per cell at most 32 bytes of per-token arrays (ids, labels, positions,
    segments, weights) and 20 of per-segment ones (a segment is at least one cell), plus the
    alignment of each array. A batch that would not fit still goes through, by the pipe."""
    return 52 * max(cells, 1) + 64 + 16 * _ALIGN


def _serve(conn: Any, shared: mmap.mmap, steps: _Steps) -> None:
    """A worker process: materialise each step the loop's process asks for into the slot it
    names, and answer with where each array lies; the arrays' bytes never go through the pipe.
    Stops when asked (None) or when the loop's process is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the loop's to handle
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        step, offset, size = task
        try:
            raw = steps.raw(step)
            layout: list[tuple[str, str, tuple[int, ...], int]] = []
            at = offset
            for key, value in raw.items():
                if not isinstance(value, np.ndarray):
                    layout.append((key, "", (), -1))
                    continue
                if at + value.nbytes > offset + size:
                    conn.send(("inline", raw))
                    break
                cells = np.frombuffer(shared, dtype=value.dtype, count=value.size, offset=at)
                cells[:] = value.reshape(-1)
                layout.append((key, value.dtype.str, value.shape, at - offset))
                at += -(-value.nbytes // _ALIGN) * _ALIGN
            else:
                rest = {
                    key: value for key, value in raw.items() if not isinstance(value, np.ndarray)
                }
                conn.send(("slot", layout, rest, at - offset))
        except Exception as error:  # handed to the loop's process, which raises it
            try:
                pickle.dumps(error)
            except Exception:
                error = RuntimeError(repr(error))
            conn.send(("error", error, traceback.format_exc()))


def _in_processes(
    steps: _Steps, indices: range, workers: int, ahead: int, pin: bool, cells: int
) -> Iterator[dict[str, Any]]:
    """The batches of ``indices``, in order, materialised up to ``ahead`` per worker at a time
    by ``workers`` processes forked from this one. Step k goes to worker k % workers, so the
    order is fixed. Each step is written into a free slot of one anonymous shared mapping,
    made before the fork, and the batch's tensors are views of that slot: no copy on this
    side. A slot is free again once every tensor of its batch is gone (a finalizer on the
    buffer they all hold); the mapping has room for twice the steps in flight and four
    batches the loop still holds, and a step that finds no free slot (a loop that keeps many
    batches) comes through the pipe instead."""
    context = multiprocessing.get_context("fork")
    slot = _slot_bytes(cells)
    in_flight = workers * ahead
    slots = 2 * in_flight + 4
    shared = mmap.mmap(-1, slots * slot)  # MAP_SHARED | MAP_ANONYMOUS
    free: deque[int] = deque(range(slots))  # appended to by finalizers, from any thread
    placed: dict[int, int] = {}  # step position -> its slot, or -1 (through the pipe)
    conns: list[Any] = []
    processes: list[Any] = []
    try:
        for w in range(workers):
            ours, theirs = context.Pipe()
            process = context.Process(
                target=_serve, args=(theirs, shared, steps), name=f"seqpack-loader-{w}",
                daemon=True,
            )  # fmt: skip
            process.start()
            theirs.close()
            conns.append(ours)
            processes.append(process)

        def send(k: int) -> None:
            index = free.popleft() if free else -1
            placed[k] = index
            # A worker given no room (size 0) sends the batch through the pipe.
            conns[k % workers].send((indices[k], max(index, 0) * slot, slot if index >= 0 else 0))

        for k in range(min(len(indices), in_flight)):
            send(k)
        for k in range(len(indices)):
            w = k % workers
            message = _receive(conns[w], processes[w], indices[k])
            index = placed.pop(k)
            if message[0] == "error":
                _, error, where = message
                error.add_note(f"in loader worker process {w}, step {indices[k]}:\n{where}")
                raise error
            if message[0] == "inline":
                raw = message[1]
                if index >= 0:
                    free.append(index)  # (the batch did not fit)
            else:
                _, layout, rest, used = message
                raw = _slot_views(shared, index, slot, used, layout, rest, free)
            if k + in_flight < len(indices):
                send(k + in_flight)
            batch = _model_inputs(raw, steps.padding_free, steps.mask)
            del raw
            yield _pin(batch) if pin else batch
    finally:
        for conn in conns:
            try:
                conn.send(None)
            except OSError:
                pass
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
                process.join()
        for conn in conns:
            conn.close()
        try:
            shared.close()
        except BufferError:
            pass  # batches the loop still holds view it; it closes when they are gone


def _slot_views(
    shared: mmap.mmap,
    index: int,
    slot: int,
    used: int,
    layout: list[tuple[str, str, tuple[int, ...], int]],
    rest: dict[str, Any],
    free: deque[int],
) -> dict[str, Any]:
    """A batch's arrays as views of its slot, all holding one buffer whose finalizer frees the
    slot when the last of them (or of the tensors made from them) is gone."""
    if used == 0:  # (no array has a byte: nothing to view)
        free.append(index)
        return {
            key: rest[key] if at < 0 else np.zeros(shape, dtype=np.dtype(dtype))
            for key, dtype, shape, at in layout
        }
    owner = np.frombuffer(shared, dtype=np.uint8, count=used, offset=index * slot)
    weakref.finalize(owner, free.append, index).atexit = False
    # torch's buffer keeps `owner` until its storage goes; the numpy views keep the tensor.
    whole = torch.frombuffer(owner, dtype=torch.uint8).numpy()
    del owner
    return {
        key: rest[key]
        if at < 0
        else whole[at : at + math.prod(shape) * np.dtype(dtype).itemsize].view(dtype).reshape(shape)
        for key, dtype, shape, at in layout
    }


def _receive(conn: Any, process: Any, step: int) -> Any:
    """The worker's answer for ``step``; a typed error if it ended without one."""
    while not conn.poll(1.0):
        if not process.is_alive():
            break
    else:
        try:
            return conn.recv()
        except (EOFError, OSError):
            pass
    process.join(timeout=1)
    raise WorkerError(
        f"loader worker process {process.name} (pid {process.pid}) ended with exit code "
        f"{process.exitcode} while preparing step {step}"
    )


def _pin(batch: dict[str, Any]) -> dict[str, Any]:
    return {k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


class PackedRows(Dataset[dict[str, torch.Tensor]]):
    """The packed rows of a store as a map-style dataset (row ``i`` of the plan), for code that
    brings its own sampler and ``DataLoader``; collate them with :func:`collate_rows` (or
    :func:`collate_padding_free`), which add what makes a batch safe for ``model(**batch)``.

    Parameters
    ----------
    store, max_length, strategy, overlong, truncate_keep, max_seqs_per_row
        As for :class:`PackedLoader`.
    loss_weights, pad_id, dtype
        As for :class:`PackedLoader`.
    pad_rows_to_multiple_of
        Add empty rows (no token, no loss) at the end until the number of rows is a multiple of
        this (e.g. ``world_size × batch rows``), so a distributed sampler that evens out ranks
        repeats no real row.
    trim_padding
        Give each row's real tokens only (no padding, no ``segment_ids``): what a trainer
        that drops keys its model does not name (Hugging Face's) still collates right.
    """

    def __init__(
        self,
        store: TokenStore | str | os.PathLike[str],
        *,
        max_length: int,
        strategy: Literal["bfd", "ffd", "sequential", "wrapped"] = "bfd",
        overlong: Literal["error", "drop", "truncate", "split"] = "error",
        truncate_keep: Literal["head", "tail"] = "head",
        max_seqs_per_row: int | None = None,
        loss_weights: Literal["token", "sequence"] | None = None,
        pad_id: int = 0,
        dtype: Literal["int64", "int32"] = "int64",
        pad_rows_to_multiple_of: int = 1,
        trim_padding: bool = False,
    ) -> None:
        self.trim_padding = _normalise.flag("trim_padding", trim_padding)
        multiple = _normalise.integer("pad_rows_to_multiple_of", pad_rows_to_multiple_of)
        if multiple < 1:
            raise InvalidOptionError(
                f"option pad_rows_to_multiple_of: must be at least 1, got {multiple}"
            )
        loader = PackedLoader(
            store, max_length=max_length, batch_rows=1, strategy=strategy, overlong=overlong,
            truncate_keep=truncate_keep, max_seqs_per_row=max_seqs_per_row,
            loss_weights=loss_weights, pad_id=pad_id, dtype=dtype,
        )  # fmt: skip
        self._plan = loader._plan
        self.stats = loader.stats
        self.events = loader.events
        self.rows = int(self._plan.native.rows)
        """Rows of the plan (the rows past them are empty padding rows)."""
        self._length = -(-self.rows // multiple) * multiple

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"row {index} is outside 0..{len(self) - 1}")
        row = index % len(self)
        raw = self._plan.materialize(
            np.array([row if row < self.rows else -1], dtype=np.int64), False
        )
        names = ["input_ids", "labels", "position_ids", "loss_weights"]
        if not self.trim_padding:
            return {
                name: torch.from_numpy(raw[name][0])
                for name in [*names, "segment_ids"]
                if name in raw
            }
        real = int(np.count_nonzero(raw["segment_ids"][0]))  # real tokens lead every row
        return {name: torch.from_numpy(raw[name][0, :real].copy()) for name in names if name in raw}


class CollateRows:
    """Stack rows of :class:`PackedRows` into a ``[B, L]`` batch safe for ``model(**batch)``.
    Rows without padding (``trim_padding=True``, or a trainer that dropped ``segment_ids``)
    are padded to the longest with ``pad_id``, label -100 and positions from 0.

    Parameters
    ----------
    pad_id
        Token id written on the padding this collator adds.
    """

    def __init__(self, pad_id: int = 0) -> None:
        self.pad_id = _normalise.integer("pad_id", pad_id)

    def __call__(self, rows: list[dict[str, torch.Tensor]]) -> dict[str, Any]:
        width = max(len(row["input_ids"]) for row in rows)
        fill = {"input_ids": self.pad_id, "labels": -100, "segment_ids": 0, "loss_weights": 0}
        batch: dict[str, Any] = {}
        for name in rows[0]:
            padded = []
            for row in rows:
                value = row[name]
                extra = width - len(value)
                if name == "position_ids":
                    tail = torch.arange(extra, dtype=value.dtype)
                else:
                    tail = torch.full((extra,), fill.get(name, 0), dtype=value.dtype)
                padded.append(torch.cat([value, tail]))
            batch[name] = torch.stack(padded)
        segments = batch["segment_ids"].numpy() if "segment_ids" in batch else None
        batch.update(rows_varlen(batch["position_ids"].numpy(), segments))
        batch["use_cache"] = False
        batch["num_items_in_batch"] = max(1, int((batch["labels"] != -100).sum()))
        return batch


class CollatePaddingFree:
    """Rows of :class:`PackedRows` as one padding-free ``[1, T]`` batch (real tokens only,
    with ``cu_seq_lens_q/k`` and ``max_length_q/k``), safe for ``model(**batch)``. Works on
    rows with ``segment_ids`` (their padding is dropped) or trimmed rows.

    Parameters
    ----------
    pad_id
        Token id of the one untrained token a batch of only padding rows becomes.
    """

    def __init__(self, pad_id: int = 0) -> None:
        self.pad_id = _normalise.integer("pad_id", pad_id)

    def __call__(self, rows: list[dict[str, torch.Tensor]]) -> dict[str, Any]:
        names = [name for name in rows[0] if name != "segment_ids"]
        if "segment_ids" in rows[0]:
            keep = torch.cat([row["segment_ids"] > 0 for row in rows])
        else:
            keep = torch.ones(sum(len(row["input_ids"]) for row in rows), dtype=torch.bool)
        flat = {name: torch.cat([row[name] for row in rows])[keep] for name in names}
        if not len(flat["input_ids"]):  # only padding rows: one untrained token, so the step runs
            flat = {name: torch.zeros(1, dtype=flat[name].dtype) for name in names}
            flat["input_ids"] += self.pad_id
            flat["labels"] -= 100
        starts = torch.nonzero(flat["position_ids"] == 0).flatten()
        lengths = torch.diff(torch.cat([starts, torch.tensor([len(flat["position_ids"])])]))
        cu = torch.cat(
            [torch.zeros(1, dtype=torch.int32), torch.cumsum(lengths, 0).to(torch.int32)]
        )
        longest = int(lengths.max())
        batch: dict[str, Any] = {name: value.unsqueeze(0) for name, value in flat.items()}
        batch.update(cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=longest, max_length_k=longest)
        batch["use_cache"] = False
        batch["num_items_in_batch"] = max(1, int((batch["labels"] != -100).sum()))
        return batch


collate_rows = CollateRows()
"""A :class:`CollateRows` with ``pad_id=0``."""
collate_padding_free = CollatePaddingFree()
"""A :class:`CollatePaddingFree` with ``pad_id=0``."""
