"""The training loader: every sample trained exactly once per epoch on equal batch counts per
rank; the same bytes for any number of workers; the same rows per global step for any world
size; resuming anywhere gives exactly the batches an uninterrupted run gives; and every batch
is safe to splat into a real model."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections import Counter
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import seqpack
import seqpack.torch as sptorch


def make_store(
    tmp_path_factory: Any, lengths: list[int], name: str = "store"
) -> seqpack.store.TokenStore:
    """Sample i's tokens are 1000 * (i + 1) + k: every token names its sample and position."""
    sequences = [np.arange(n, dtype=np.int64) + 1000 * (i + 1) for i, n in enumerate(lengths)]
    folder = tmp_path_factory.mktemp("stores") / name
    return seqpack.store.write(folder, sequences, chunk_size=7)


def digest(batch: dict[str, Any]) -> str:
    """The batch's keys in order, each value's bytes, and each tensor's dtype and shape."""
    h = hashlib.sha256()
    for name, value in batch.items():
        h.update(name.encode())
        if isinstance(value, torch.Tensor):
            h.update(f"{value.dtype}{tuple(value.shape)}".encode())
            h.update(value.numpy().tobytes())
        else:
            h.update(repr(value).encode())
    return h.hexdigest()


def real_tokens(batch: dict[str, Any]) -> list[int]:
    ids = batch["input_ids"]
    if "segment_ids" not in batch:  # padding-free
        return [int(t) for t in ids[0]]
    return [int(t) for t in ids[batch["segment_ids"] > 0]]


LENGTHS = st.lists(st.integers(1, 48), min_size=1, max_size=70)


@settings(max_examples=40)
@given(
    lengths=LENGTHS,
    batch_rows=st.integers(1, 4),
    world_size=st.sampled_from([1, 2, 4]),
    remainder=st.sampled_from(["pad", "drop"]),
    balance=st.sampled_from([None, "tokens", "attention"]),
    padding_free=st.booleans(),
    epoch=st.integers(0, 3),
)
def test_every_sample_once_per_epoch_equal_batches_per_rank(
    tmp_path_factory, lengths, batch_rows, world_size, remainder, balance, padding_free, epoch
):
    store = make_store(tmp_path_factory, lengths)
    fmt: sptorch.Format = "padding_free" if padding_free else "rows"
    loaders = [
        sptorch.PackedLoader(
            store,
            max_length=48,
            batch_rows=batch_rows,
            world_size=world_size,
            rank=r,
            seed=5,
            remainder=remainder,
            balance=balance,
            format=fmt,
        )
        for r in range(world_size)
    ]
    for loader in loaders:
        loader.set_epoch(epoch)
    batches = [list(loader) for loader in loaders]
    assert len({len(b) for b in batches}) == 1 and len(batches[0]) == len(loaders[0])
    seen = Counter(t for rank in batches for batch in rank for t in real_tokens(batch) if t >= 1000)
    everything = Counter(1000 * (i + 1) + k for i, n in enumerate(lengths) for k in range(n))
    assert all(count == 1 for count in seen.values())
    if remainder == "pad":
        assert seen == everything
    else:
        assert set(seen) <= set(everything)
        missing_samples = {t // 1000 for t in everything - seen}
        dropped_rows = loaders[0].dropped_rows_per_epoch
        assert len(missing_samples) >= dropped_rows  # each dropped row holds >= 1 sample
        assert (dropped_rows == 0) == (seen == everything)
    for rank in batches:
        for batch in rank:
            assert batch["use_cache"] is False
            assert "attention_mask" not in batch
            trained = int((batch["labels"] != -100).sum())
            assert batch["num_items_in_batch"] == max(1, trained)


@settings(max_examples=25)
@given(lengths=LENGTHS, data=st.data())
def test_resume_anywhere_gives_the_batches_of_an_uninterrupted_run(tmp_path_factory, lengths, data):
    store = make_store(tmp_path_factory, lengths)
    options: dict[str, Any] = {
        "max_length": 48,
        "batch_rows": 2,
        "seed": 3,
        "loss_weights": "sequence",
    }
    full = sptorch.PackedLoader(store, **options)
    epochs = 3
    reference = [digest(b) for _ in range(epochs) for b in full]
    total = len(reference)
    # Stop twice at random points (0, mid-epoch, an epoch boundary, the end), resume each time.
    stops = sorted(data.draw(st.lists(st.integers(0, total), min_size=2, max_size=2)))
    got: list[str] = []
    loader = sptorch.PackedLoader(store, **options)
    consumed = 0
    for stop in [*stops, total]:
        iterator = iter(loader)
        while consumed < stop:
            try:
                batch = next(iterator)
            except StopIteration:
                iterator = iter(loader)
                continue
            got.append(digest(batch))
            consumed += 1
        state = loader.state_dict()
        loader = sptorch.PackedLoader(store, **options)  # a new process would start so
        loader.load_state_dict(state)
    assert got == reference


@pytest.mark.parametrize("fmt", ["rows", "padding_free"])
@pytest.mark.parametrize("weighting", ["token", "sequence"])
def test_loss_weights_weigh_exactly_the_trained_tokens(tmp_path_factory, fmt, weighting):
    # Regression: the rows format with loss_weights="token" gave all-zero weights, so the
    # documented weighted loss trained nothing.
    store = make_store(tmp_path_factory, [5, 9, 3, 7, 2, 11, 4])
    loader = sptorch.PackedLoader(
        store, max_length=16, batch_rows=2, format=fmt, loss_weights=weighting
    )
    per_sample: Counter[int] = Counter()
    for batch in loader:
        weights, labels = batch["loss_weights"], batch["labels"]
        assert torch.equal(weights != 0, labels != -100)
        if weighting == "token":
            assert set(weights[labels != -100].tolist()) <= {1.0}
        for token, weight in zip(
            labels[labels != -100].tolist(), weights[labels != -100].tolist(), strict=True
        ):
            per_sample[token // 1000 - 1] += weight
    if weighting == "sequence":  # every sample's trained tokens weigh 1 in all
        assert all(abs(total - 1.0) < 1e-5 for total in per_sample.values())
    assert sorted(per_sample) == [0, 1, 2, 3, 4, 5, 6]


def test_workers_do_not_change_the_batches(tmp_path_factory):
    store = make_store(tmp_path_factory, [(i * 7) % 45 + 1 for i in range(300)])
    for fmt in ("rows", "padding_free"):
        streams = []
        modes: list[tuple[int, sptorch.WorkerType]] = [
            (0, "thread"), (1, "thread"), (3, "thread"), (1, "process"), (3, "process"),
        ]  # fmt: skip
        for workers, kind in modes:
            loader = sptorch.PackedLoader(
                store, max_length=64, batch_rows=3, format=fmt, num_workers=workers,
                worker_type=kind, seed=1,
            )  # fmt: skip
            streams.append([digest(b) for b in loader])
            # Interrupting mid-epoch with workers running counts what was yielded, not prefetched.
            loader.set_epoch(0)
            iterator = iter(loader)
            for _ in range(5):
                next(iterator)
            assert loader.state_dict()["step"] == 5
        assert all(stream == streams[0] for stream in streams)


def test_worker_processes_hand_over_masks_and_weights_unchanged(tmp_path_factory):
    # Process workers move each batch's tensors in one shared buffer; every tensor comes back
    # with its dtype, shape and bytes, and the same object under cu_seq_lens_q and _k.
    store = make_store(tmp_path_factory, [(i * 11) % 29 + 1 for i in range(60)])
    choices: list[dict[str, Any]] = [
        {"mask": "sdpa", "loss_weights": "sequence"},
        {"mask": "eager"},
        {"format": "padding_free", "loss_weights": "token"},
    ]
    for options in choices:
        here = sptorch.PackedLoader(store, max_length=32, batch_rows=2, seed=3, **options)
        there = sptorch.PackedLoader(
            store, max_length=32, batch_rows=2, seed=3, num_workers=2, worker_type="process",
            **options,
        )  # fmt: skip
        pairs = list(zip(here, there, strict=True))
        assert len(pairs) == len(here) > 1
        for a, b in pairs:
            assert digest(a) == digest(b)
            assert b["cu_seq_lens_q"] is b["cu_seq_lens_k"]


def process_loader(store: Any, **options: Any) -> sptorch.PackedLoader:
    return sptorch.PackedLoader(
        store, max_length=32, batch_rows=2, seed=3, num_workers=2, worker_type="process", **options
    )


def test_worker_processes_hand_over_batches_too_big_for_their_slot(tmp_path_factory, monkeypatch):
    # A batch whose arrays do not fit the slot goes through the pipe whole: the same bytes.
    store = make_store(tmp_path_factory, [(i * 11) % 29 + 1 for i in range(60)])
    for fmt in ("rows", "padding_free"):
        here = [digest(b) for b in process_loader(store, format=fmt)]
        monkeypatch.setattr(sptorch, "_slot_bytes", lambda cells: 200)
        there = [digest(b) for b in process_loader(store, format=fmt)]
        monkeypatch.undo()
        assert there == here and len(here) > 1


def test_batches_of_worker_processes_stay_intact_while_the_loop_holds_them(
    tmp_path_factory, monkeypatch
):
    # Batches are views of the shared slots; a slot is written again only once every tensor of
    # its batch is gone. The loop here holds batches for a while, some to the end, one only
    # by a view of one tensor: each keeps the bytes it had when it came.
    store = make_store(tmp_path_factory, [(i * 13) % 31 + 1 for i in range(400)])
    in_slots = []
    views = sptorch._slot_views

    def counted(*args: Any) -> Any:
        in_slots.append(1)
        return views(*args)

    monkeypatch.setattr(sptorch, "_slot_views", counted)
    for fmt in ("rows", "padding_free"):
        in_slots.clear()
        expected = [digest(b) for b in process_loader(store, format=fmt)]
        assert len(in_slots) == len(expected) > 50  # dropped at once: every batch in a slot
        in_slots.clear()
        held: dict[int, tuple[dict[str, Any], str]] = {}
        kept_ids: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for k, batch in enumerate(process_loader(store, format=fmt)):
            assert digest(batch) == expected[k]
            if k % 40 == 0:
                held[k] = (batch, expected[k])  # to the end
            elif k % 3 == 0:
                held[k] = (batch, expected[k])
                for old in [j for j in held if j % 40 and j < k - 6]:
                    del held[old]  # released some steps later
            elif k % 40 == 1:
                ids = batch["input_ids"]
                kept_ids[k] = (ids[..., 1:], ids.clone())
            del batch
        for k, (batch, want) in held.items():
            assert digest(batch) == want, k
        for k, (view, copy) in kept_ids.items():
            assert torch.equal(view, copy[..., 1:]), k
        assert len(held) > 3 and kept_ids
        # Slots freed as batches went; the rest came through the pipe.
        assert len(in_slots) > len(expected) // 2, (len(in_slots), len(expected))


def test_without_fork_a_torch_dataloader_carries_the_batches(tmp_path_factory, monkeypatch):
    # Where the platform cannot fork, torch's DataLoader workers (its start method) carry them.
    store = make_store(tmp_path_factory, [(i * 11) % 29 + 1 for i in range(60)])
    here = [digest(b) for b in sptorch.PackedLoader(store, max_length=32, batch_rows=2, seed=3)]
    monkeypatch.setattr(sptorch, "_FORK", False)
    assert [digest(b) for b in process_loader(store)] == here


def test_an_error_in_a_worker_process_is_raised_in_the_loop_with_its_step(
    tmp_path_factory, monkeypatch
):
    store = make_store(tmp_path_factory, [(i * 11) % 29 + 1 for i in range(60)])
    real = sptorch._Steps.raw

    def failing(self: Any, step: int) -> dict[str, Any]:
        if step == 3:
            raise seqpack.InvalidStoreError("tokens.u32 changed under the loader")
        return real(self, step)

    monkeypatch.setattr(sptorch._Steps, "raw", failing)
    seen = []
    with pytest.raises(seqpack.InvalidStoreError, match="changed under") as raised:
        for batch in process_loader(store):
            seen.append(batch)
    assert len(seen) == 3  # steps 0, 1 and 2 came first, in order
    assert any("worker process 1, step 3" in note for note in raised.value.__notes__)


def test_a_worker_process_that_dies_is_a_typed_error_not_a_hang(tmp_path_factory, monkeypatch):
    store = make_store(tmp_path_factory, [(i * 11) % 29 + 1 for i in range(60)])
    real = sptorch._Steps.raw

    def dying(self: Any, step: int) -> dict[str, Any]:
        if step == 4:
            os._exit(9)  # as the kernel's OOM killer would end it, with no word to the loop
        return real(self, step)

    monkeypatch.setattr(sptorch._Steps, "raw", dying)
    with pytest.raises(seqpack.WorkerError, match=r"exit code 9 while preparing step 4"):
        for _ in process_loader(store):
            pass
    assert not [p for p in multiprocessing.active_children() if p.name.startswith("seqpack")]


def test_leaving_the_loop_early_stops_the_worker_processes(tmp_path_factory):
    store = make_store(tmp_path_factory, [(i * 11) % 29 + 1 for i in range(60)])
    iterator = iter(process_loader(store))
    next(iterator)
    assert len([p for p in multiprocessing.active_children() if p.name.startswith("seqpack")]) == 2
    iterator.close()
    assert not [p for p in multiprocessing.active_children() if p.name.startswith("seqpack")]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machines with no GPU")
def test_pin_memory_without_an_accelerator_warns_and_gives_the_same_batches(tmp_path_factory):
    store = make_store(tmp_path_factory, [(i * 11) % 29 + 1 for i in range(60)])
    here = [digest(b) for b in sptorch.PackedLoader(store, max_length=32, batch_rows=2, seed=3)]
    modes: list[tuple[int, sptorch.WorkerType]] = [(0, "thread"), (2, "thread"), (2, "process")]
    for workers, kind in modes:
        with pytest.warns(UserWarning, match="no accelerator is available"):
            loader = sptorch.PackedLoader(
                store, max_length=32, batch_rows=2, seed=3, pin_memory=True,
                num_workers=workers, worker_type=kind,
            )  # fmt: skip
        assert [digest(b) for b in loader] == here


def test_a_pinned_payload_with_lists_for_tuples_unpacks_the_same():
    # Older torch releases pin a worker's batch with every plain tuple made a list (the layout,
    # each shape); the batch that comes back is the same.
    cu = torch.tensor([0, 3, 5], dtype=torch.int32)
    batch = {"input_ids": torch.arange(10).view(2, 5), "cu_seq_lens_q": cu, "cu_seq_lens_k": cu,
             "m": 5, "w": torch.tensor(0.5), "use_cache": False}  # fmt: skip
    buffer, layout, rest = sptorch._one_buffer(batch)
    listed = [[key, dtype, list(shape), offset] for key, dtype, shape, offset in layout]
    for payload in ((buffer, layout, rest), [buffer, listed, rest]):
        back = sptorch._unpacked(payload)  # type: ignore[arg-type]
        assert digest(back) == digest(batch)
        assert back["cu_seq_lens_q"] is back["cu_seq_lens_k"]


def test_global_steps_hold_the_same_rows_for_any_world_size(tmp_path_factory):
    store = make_store(tmp_path_factory, [(i * 13) % 47 + 1 for i in range(200)])
    per_world: dict[int, list[list[int]]] = {}
    for world_size in (1, 2, 4):
        loaders = [
            sptorch.PackedLoader(
                store,
                max_length=48,
                batch_rows=4 // world_size,
                world_size=world_size,
                rank=r,
                seed=9,
                balance="tokens",
            )
            for r in range(world_size)
        ]
        steps = [list(loader) for loader in loaders]
        per_world[world_size] = [
            sorted(t for rank in steps for t in real_tokens(rank[s])) for s in range(len(steps[0]))
        ]
    assert per_world[1] == per_world[2] == per_world[4]


def test_states_for_other_stores_or_options_are_refused(tmp_path_factory):
    store = make_store(tmp_path_factory, [5, 6, 7, 8], "a")
    other = make_store(tmp_path_factory, [5, 6, 7, 9], "b")
    loader = sptorch.PackedLoader(store, max_length=16, batch_rows=1)
    state = loader.state_dict()
    for kwargs in ({"max_length": 32}, {"seed": 1}, {"batch_rows": 2}):
        with pytest.raises(seqpack.InvalidOptionError, match="another store or other options"):
            options: dict[str, Any] = {"max_length": 16, "batch_rows": 1, **kwargs}
            sptorch.PackedLoader(store, **options).load_state_dict(state)
    with pytest.raises(seqpack.InvalidOptionError, match="another store"):
        sptorch.PackedLoader(other, max_length=16, batch_rows=1).load_state_dict(state)
    # Another world size with the same global batch resumes fine.
    sptorch.PackedLoader(store, max_length=16, batch_rows=1, world_size=1).load_state_dict(state)
    with pytest.raises(seqpack.InvalidOptionError, match="missing"):
        loader.load_state_dict({"epoch": 0})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"batch_rows": None},
            "option batch_rows: give exactly one of batch_rows and batch_tokens",
        ),
        ({"batch_tokens": 8}, "option batch_rows: give exactly one"),
        (
            {"batch_rows": None, "batch_tokens": 8},
            "option batch_tokens: must be at least max_length (16)",
        ),
        ({"rank": 2, "world_size": 2}, "option rank: must be in 0..1, got 2"),
        ({"remainder": "keep"}, "option remainder: unknown policy 'keep'"),
        ({"balance": "flops"}, "option balance: unknown cost 'flops'"),
        ({"format": "flat"}, "option format: expected 'rows' or 'padding_free'"),
        (
            {"mask": "sdpa", "format": "padding_free"},
            "option mask: the padding-free format has no mask",
        ),
        ({"max_length": 4}, "sequence 1 has 5 tokens, more than max_length=4"),
        ({"worker_type": "fiber"}, "option worker_type: expected 'thread' or 'process'"),
        ({"num_workers": -1}, "option num_workers: must be >= 0, got -1"),
        ({"prefetch_factor": 0}, "option prefetch_factor: must be >= 1, got 0"),
    ],
)
def test_bad_options_name_themselves(tmp_path_factory, kwargs, message):
    store = make_store(tmp_path_factory, [3, 5, 2])
    options = {"max_length": 16, "batch_rows": 1, **kwargs}
    with pytest.raises(seqpack.SeqpackError) as caught:
        sptorch.PackedLoader(store, **options)
    assert message in str(caught.value), str(caught.value)


def test_packed_rows_with_a_plain_dataloader(tmp_path_factory):
    from torch.utils.data import DataLoader

    lengths = [(i * 11) % 30 + 1 for i in range(60)]
    store = make_store(tmp_path_factory, lengths)
    rows = sptorch.PackedRows(store, max_length=32)
    assert len(rows) == rows.stats.rows
    tokens: list[int] = []
    for collate in (sptorch.collate_rows, sptorch.collate_padding_free):
        tokens = []
        for batch in DataLoader(rows, batch_size=4, collate_fn=collate):
            assert batch["use_cache"] is False and "attention_mask" not in batch
            tokens += real_tokens(batch)
        assert sorted(tokens) == sorted(
            1000 * (i + 1) + k for i, n in enumerate(lengths) for k in range(n)
        )


def test_leaving_a_threaded_loop_early_stops_its_threads(tmp_path_factory):
    import threading

    store = make_store(tmp_path_factory, [(i * 5) % 31 + 1 for i in range(400)])
    loader = sptorch.PackedLoader(store, max_length=32, batch_rows=2, num_workers=3)
    iterator = iter(loader)
    first = [next(iterator) for _ in range(3)]
    iterator.close()  # what `break` does to the generator
    alive = [t for t in threading.enumerate() if t.name.startswith("seqpack-loader")]
    assert alive == []
    assert loader.state_dict()["step"] == 3
    assert len(first) == 3
