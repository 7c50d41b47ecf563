"""The streaming packer: resuming anywhere (twice, across windows and files) gives the batches
of an uninterrupted pass; every record is packed exactly once over ranks and DataLoader
workers; memory is set by the window; scan() counts exactly; bad records are named by their
place in the source; every batch is safe to splat into a real model."""

from __future__ import annotations

import itertools
import json
import resource
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import seqpack
from seqpack.cli import synthetic


def sequences_for(lengths: list[int]) -> list[np.ndarray]:
    """Sample i's tokens are 1000 * (i + 1) + k: every token names its sample and position."""
    return [np.arange(n, dtype=np.int64) + 1000 * (i + 1) for i, n in enumerate(lengths)]


def samples_in(batch: dict[str, Any]) -> list[int]:
    ids = batch["input_ids"]
    real = ids[0] if "segment_ids" not in batch else ids[batch["segment_ids"] > 0]
    return sorted({int(t) // 1000 - 1 for t in real.flatten().tolist()})


def tokens_in(batch: dict[str, Any]) -> list[int]:
    ids = batch["input_ids"]
    real = ids[0] if "segment_ids" not in batch else ids[batch["segment_ids"] > 0]
    return real.flatten().tolist()


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(
        torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k] for k in a
    )


LENGTHS = st.lists(st.integers(1, 40), min_size=1, max_size=90)


@settings(max_examples=30, deadline=None)
@given(
    lengths=LENGTHS,
    window=st.integers(1, 25),
    batch_rows=st.integers(1, 4),
    fmt=st.sampled_from(["rows", "padding_free"]),
    data=st.data(),
)
def test_resume_anywhere_twice_gives_the_batches_of_an_uninterrupted_pass(
    lengths, window, batch_rows, fmt, data
):
    options: dict[str, Any] = {
        "max_length": 40,
        "window": window,
        "batch_rows": batch_rows,
        "format": fmt,
    }
    sequences = sequences_for(lengths)
    reference = list(seqpack.stream(sequences, **options))
    # Stop twice at random batches (0, mid-window, a window boundary, the end), resume each
    # time in a new stream, as a new process would.
    stops = sorted(data.draw(st.lists(st.integers(0, len(reference)), min_size=2, max_size=2)))
    got: list[dict[str, Any]] = []
    state = None
    for stop in [*stops, len(reference)]:
        stream = seqpack.stream(sequences, **options)
        if state is not None:
            stream.load_state_dict(state)
        iterator = iter(stream)
        while len(got) < stop:
            got.append(next(iterator))
        state = stream.state_dict()
    assert len(got) == len(reference)
    assert all(same(a, b) for a, b in zip(got, reference, strict=True))
    # A state taken after the last batch (before the pass ended) resumes to nothing more.
    resumed = seqpack.stream(sequences, **options)
    resumed.load_state_dict(state)
    assert list(resumed) == []
    # Every token of every sample, once, in some batch.
    everything = sorted(t for b in reference for t in tokens_in(b))
    assert everything == sorted(int(t) for s in sequences for t in s)


def test_resume_across_files(tmp_path):
    lengths = [int(n) for n in np.random.default_rng(3).integers(1, 60, 150)]
    sequences = sequences_for(lengths)
    for part, chunk in enumerate(np.array_split(np.arange(len(sequences)), 3)):
        with (tmp_path / f"part-{part}.jsonl").open("w") as out:
            for i in chunk:
                out.write(json.dumps({"input_ids": sequences[i].tolist()}) + "\n")
    options: dict[str, Any] = {"max_length": 64, "window": 40, "batch_rows": 2}
    source = str(tmp_path / "part-*.jsonl")
    reference = list(seqpack.stream(source, **options))
    assert reference and all(
        same(a, b) for a, b in zip(reference, seqpack.stream(sequences, **options), strict=True)
    )
    for stop in (1, 17, 30, len(reference) - 1):  # windows straddle the files' ends
        stream = seqpack.stream(source, **options)
        head = [b for _, b in zip(range(stop), stream, strict=False)]
        resumed = seqpack.stream(source, **options)
        resumed.load_state_dict(stream.state_dict())
        tail = list(resumed)
        assert all(same(a, b) for a, b in zip(head + tail, reference, strict=True))


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_ranks_and_workers_pack_every_record_once(world_size):
    lengths = [int(n) for n in np.random.default_rng(world_size).integers(1, 50, 170)]
    sequences = sequences_for(lengths)
    seen: list[int] = []
    counts = []
    for rank in range(world_size):
        stream = seqpack.stream(
            sequences, max_length=64, window=11, batch_rows=2, world_size=world_size, rank=rank
        )
        loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=2)
        batches = list(loader)
        counts.append(len(batches))
        seen += [s for b in batches for s in samples_in(b)]
    assert sorted(seen) == list(range(len(sequences)))
    # scan() counts exactly what each rank yields under 2 workers...
    scanned = seqpack.stream.scan(
        sequences, max_length=64, window=11, batch_rows=2, world_size=world_size, num_workers=2
    )
    assert scanned.batches == counts
    # ... and steps= makes every rank yield the same number, padding with untrained rows.
    equal = []
    for rank in range(world_size):
        stream = seqpack.stream(
            sequences, max_length=64, window=11, batch_rows=2, world_size=world_size,
            rank=rank, steps=scanned.steps,
        )  # fmt: skip
        batches = list(torch.utils.data.DataLoader(stream, batch_size=None, num_workers=2))
        equal.append(len(batches))
        assert all(b["num_items_in_batch"] >= 1 for b in batches)
    assert set(equal) == {2 * scanned.steps}  # two workers, steps each


def test_a_stream_pickles_after_a_pass_with_padding_batches():
    # DataLoader workers started by spawn or forkserver get the stream pickled; a pass that
    # padded to steps= leaves nothing on it that does not pickle.
    import pickle

    sequences = sequences_for([5] * 9)
    stream = seqpack.stream(sequences, max_length=10, window=4, batch_rows=2, steps=6)
    first = list(stream)
    assert len(first) == 6
    again = pickle.loads(pickle.dumps(stream))
    assert all(same(a, b) for a, b in zip(first, again, strict=True))


def test_scan_counts_rows_tokens_and_refuses_too_few_steps():
    sequences = sequences_for([int(n) for n in np.random.default_rng(5).integers(1, 90, 300)])
    options: dict[str, Any] = {"max_length": 96, "window": 50, "batch_rows": 3}
    scanned = seqpack.stream.scan(sequences, **options)
    batches = list(seqpack.stream(sequences, **options))
    assert scanned.batches == [len(batches)]
    assert scanned.tokens == [sum(len(s) for s in sequences)]
    with pytest.raises(seqpack.InvalidOptionError, match="more than steps="):
        list(seqpack.stream(sequences, steps=scanned.steps - 1, **options))


def test_a_window_as_large_as_the_data_is_the_global_pack():
    records = synthetic.conversations(120)
    options: dict[str, Any] = {"tokenizer": synthetic.TOKENIZER_PATH, "template": "qwen3"}
    whole = seqpack.pack(seqpack.encode(records, max_length=512, **options), max_length=512)
    batches = list(seqpack.stream(records, max_length=512, window=1000, batch_rows=4, **options))
    rows = torch.cat([b["input_ids"] for b in batches])[: whole.num_rows]
    assert torch.equal(rows, torch.from_numpy(whole.input_ids))
    labels = torch.cat([b["labels"] for b in batches])[: whole.num_rows]
    assert torch.equal(labels, torch.from_numpy(whole.labels))


def test_memory_is_set_by_the_window_not_the_stream():
    pulled = 0

    def endless():
        nonlocal pulled
        rng = np.random.default_rng(0)
        for _ in range(300_000):
            pulled += 1
            yield rng.integers(1, 30_000, size=int(rng.integers(20, 80)))

    stream = seqpack.stream(endless(), max_length=512, window=2_000, batch_rows=8)
    iterator = iter(stream)
    next(iterator)
    assert pulled <= 2_000  # read a window at a time, not the stream
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tokens = sum(int(b["segment_ids"].count_nonzero()) for b in iterator)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert pulled == 300_000 and tokens > 14_000_000
    # 15M tokens as int64 rows would be ~400 MiB; a window's are ~2 MiB.
    assert grown_mib < 100, grown_mib


def test_bad_records_are_named_by_their_place_in_the_source():
    sequences: list[Any] = sequences_for([5] * 30)
    sequences[23] = np.array([1, -4, 2])
    with pytest.raises(seqpack.InvalidTokenError, match="sequence 23"):
        list(seqpack.stream(sequences, max_length=8, window=10))
    # Shards interleave: record 23 is the 8th record of rank 2 of 3.
    with pytest.raises(seqpack.InvalidTokenError, match="sequence 23"):
        list(seqpack.stream(sequences, max_length=8, window=4, world_size=3, rank=2))
    for bad, message in (
        ({"mask": "causal"}, "option mask: expected None"),
        ({"mask": "sdpa", "format": "padding_free"}, "padding-free format has no mask"),
        ({"window": 0}, "window: must be >= 1"),
        ({"format": "flat"}, "format"),
        ({"rank": 2, "world_size": 2}, "rank: must be in 0..1"),
        ({"template": "qwen3"}, "options for chat records"),
    ):
        with pytest.raises(seqpack.InvalidOptionError, match=message):
            seqpack.stream(sequences, max_length=8, **bad)
    stream = seqpack.stream(sequences[:20], max_length=8, window=4)
    other = seqpack.stream(sequences[:20], max_length=8, window=5)
    with pytest.raises(seqpack.InvalidOptionError, match="made for other options"):
        other.load_state_dict(stream.state_dict())


@pytest.mark.parametrize(
    ("fmt", "mask", "attention"),
    [("rows", None, "sdpa"), ("padding_free", None, "sdpa"), ("rows", "sdpa", "sdpa"),
     ("rows", "eager", "eager")],
)  # fmt: skip
def test_every_batch_is_safe_to_splat(fmt, mask, attention):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(  # type: ignore[call-arg]
        vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        attn_implementation=attention,
    )  # fmt: skip
    model = LlamaForCausalLM(config).eval().double()
    rng = np.random.default_rng(1)
    sequences = [rng.integers(1, 128, size=int(n)) for n in rng.integers(2, 20, 25)]
    stream = seqpack.stream(sequences, max_length=32, window=7, batch_rows=2, format=fmt, mask=mask)
    for batch in stream:
        assert ("attention_mask" in batch) == (mask is not None)
        if mask is not None:
            assert batch["attention_mask"].shape == (2, 1, 32, 32)
        with torch.no_grad():
            logits = model(**batch).logits
        ids = batch["input_ids"]
        if fmt == "rows":
            spans = [
                (r, np.flatnonzero(batch["segment_ids"][r].numpy() == s))
                for r in range(ids.shape[0])
                for s in set(batch["segment_ids"][r].tolist()) - {0}
            ]
        else:
            cu = batch["cu_seq_lens_q"].tolist()
            spans = [(0, np.arange(a, b)) for a, b in itertools.pairwise(cu)]
        for row, cells in spans:
            alone = model(input_ids=ids[row, cells].unsqueeze(0)).logits[0]
            # Eager attention takes its softmax in float32 whatever the model's dtype; a leak
            # between sequences moves logits by ~0.1.
            rtol, atol = (1e-9, 1e-9) if attention == "sdpa" else (1e-5, 1e-6)
            assert torch.allclose(logits[row, cells], alone, rtol=rtol, atol=atol)


def test_a_window_whose_records_all_fail_is_skipped_and_counted():
    # Under on_error="skip", a window can leave no sample: the stream goes on past it (the
    # records are counted by reason), and resuming inside or after it stays exact.
    from seqpack.cli import synthetic

    records: list[Any] = synthetic.conversations(24, seed=4)
    for k in range(4, 10):  # window 1 (records 4..7) and half of window 2: no messages
        records[k] = {"messages": []}
    options: dict[str, Any] = {
        "max_length": 256, "window": 4, "batch_rows": 2, "tokenizer": synthetic.TOKENIZER_PATH,
        "template": "qwen3", "on_error": "skip",
    }  # fmt: skip
    stream = seqpack.stream(records, **options)
    reference = list(stream)
    assert reference and stream.stats.reasons["invalid_record"] == 6
    packed = seqpack.pack(records, **{k: v for k, v in options.items() if k not in
                                      ("window", "batch_rows")})  # fmt: skip
    assert sorted(t for b in reference for t in tokens_in(b)) == sorted(
        int(t) for t in packed.input_ids[packed.segment_ids > 0]
    )
    for stop in range(len(reference) + 1):
        first = seqpack.stream(records, **options)
        head = [b for _, b in zip(range(stop), first, strict=False)]
        resumed = seqpack.stream(records, **options)
        resumed.load_state_dict(first.state_dict())
        got = head + list(resumed)
        assert len(got) == len(reference)
        assert all(same(a, b) for a, b in zip(got, reference, strict=True))
