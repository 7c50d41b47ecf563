"""Concurrent calls from several threads give the same bytes as a single call."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import seqpack


def test_concurrent_packs_are_identical():
    rng = np.random.default_rng(3)
    lengths = rng.integers(1, 900, size=3000)
    tokens = rng.integers(0, 150_000, size=int(lengths.sum()), dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])

    def run(seed):
        batch = seqpack.pack(tokens, offsets=offsets, max_length=1024, seed=seed, loss_weights="sequence")
        return batch.input_ids.tobytes() + batch.labels.tobytes() + batch.loss_weights.tobytes()

    expected = {seed: run(seed) for seed in range(4)}
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(run, [i % 4 for i in range(32)]))
    for i, result in enumerate(results):
        assert result == expected[i % 4]


def test_threads_raising_errors_do_not_disturb_others():
    good = [[1, 2, 3]] * 50

    def run(i):
        if i % 2:
            try:
                seqpack.pack([[1], [-1]], max_length=4)
            except seqpack.InvalidTokenError as exc:
                return exc.index
        return seqpack.pack(good, max_length=8).num_rows

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(run, range(60)))
    assert results == [25 if i % 2 == 0 else 1 for i in range(60)]
