"""torchdata's ``StatefulDataLoader`` drives seqpack's datasets as they say: a stream keeps one
state per DataLoader worker and resumes each exactly; ``PackedRows`` resumes through the
loader's own sampler state. Interrupt after k batches (k from 0 to the end), save the
loader's state, build a new loader, load it: the rest are byte for byte the batches an
uninterrupted loader yields."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest
import torch
from torchdata.stateful_dataloader import StatefulDataLoader

import seqpack
import seqpack.torch as sptorch


def sequences_for(lengths: list[int]) -> list[np.ndarray]:
    return [np.arange(n, dtype=np.int64) + 1000 * (i + 1) for i, n in enumerate(lengths)]


def digest(batch: Any) -> bytes:
    """Keys in order, tensors with dtype, shape and bytes (rows from PackedRows come batched
    by the loader's default collate)."""
    parts: list[bytes] = []
    for name, value in batch.items():
        parts.append(name.encode())
        if isinstance(value, torch.Tensor):
            parts += [f"{value.dtype}{tuple(value.shape)}".encode(), value.numpy().tobytes()]
        else:
            parts.append(repr(value).encode())
    return b"|".join(parts)


LENGTHS = [(i * 17) % 37 + 1 for i in range(130)]


def stream_loader(workers: int, fmt: str) -> StatefulDataLoader:
    stream = seqpack.stream(
        sequences_for(LENGTHS), max_length=48, window=11, batch_rows=2, format=fmt
    )
    return StatefulDataLoader(stream, batch_size=None, num_workers=workers)


@pytest.mark.parametrize(("workers", "fmt"), [(0, "rows"), (2, "padding_free"), (3, "rows")])
def test_a_stream_resumes_exactly_under_stateful_dataloader(workers, fmt):
    whole = [digest(b) for b in stream_loader(workers, fmt)]
    assert len(whole) > 10
    # Every record packed once, whichever worker read it.
    for k in sorted({0, 1, 4, len(whole) // 2, len(whole) - 1, len(whole)}):
        first = stream_loader(workers, fmt)
        iterator = iter(first)
        seen = [digest(next(iterator)) for _ in range(k)]
        state = pickle.loads(pickle.dumps(first.state_dict()))  # as a checkpoint stores it
        del iterator, first
        second = stream_loader(workers, fmt)
        second.load_state_dict(state)
        rest = [digest(b) for b in second]
        assert seen + rest == whole, f"interrupted after {k} of {len(whole)}"


def test_a_stream_resumes_twice_under_stateful_dataloader():
    whole = [digest(b) for b in stream_loader(2, "rows")]
    state = None
    got: list[bytes] = []
    for stop in (3, 9):
        loader = stream_loader(2, "rows")
        if state is not None:
            loader.load_state_dict(state)
        iterator = iter(loader)
        while len(got) < stop:
            got.append(digest(next(iterator)))
        state = loader.state_dict()
        del iterator
    loader = stream_loader(2, "rows")
    assert state is not None
    loader.load_state_dict(state)
    got += [digest(b) for b in loader]
    assert got == whole


def test_packed_rows_resume_through_the_loaders_sampler(tmp_path):
    store = seqpack.store.write(tmp_path / "store", sequences_for(LENGTHS))
    rows = sptorch.PackedRows(store, max_length=48)

    def loader() -> StatefulDataLoader:
        generator = torch.Generator().manual_seed(5)
        return StatefulDataLoader(
            rows, batch_size=3, shuffle=True, generator=generator, num_workers=2,
            collate_fn=sptorch.collate_rows,
        )  # fmt: skip

    whole = [digest(b) for b in loader()]
    for k in (0, 2, len(whole) - 1):
        first = loader()
        iterator = iter(first)
        seen = [digest(next(iterator)) for _ in range(k)]
        state = first.state_dict()
        del iterator
        second = loader()
        second.load_state_dict(state)
        assert seen + [digest(b) for b in second] == whole
