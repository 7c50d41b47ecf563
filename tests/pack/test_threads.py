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
        batch = seqpack.pack(
            tokens, offsets=offsets, max_length=1024, seed=seed, loss_weights="sequence"
        )
        return batch.input_ids.tobytes() + batch.labels.tobytes() + batch.loss_weights.tobytes()  # type: ignore[union-attr]

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


HASH_SCRIPT = """
import hashlib, sys
import numpy as np
import seqpack
rng = np.random.default_rng(11)
lengths = rng.integers(1, 700, size=4000)
tokens = rng.integers(0, 150_000, size=int(lengths.sum()), dtype=np.int64)
offsets = np.concatenate([[0], np.cumsum(lengths)])
digest = hashlib.sha256()
for strategy in seqpack.STRATEGIES:
    batch = seqpack.pack(tokens, offsets=offsets, max_length=1024, strategy=strategy, seed=5,
                         loss_weights="sequence", overlong="split")
    names = ("input_ids", "labels", "position_ids", "segment_ids", "cu_seqlens", "loss_weights")
    for name in names:
        digest.update(getattr(batch, name).tobytes())
records = [{"messages": [{"role": "system", "content": "S" * (i % 7)},
                         {"role": "user", "content": "question %d " % i + "x " * (i % 50)},
                         {"role": "assistant", "content": "answer %d " % i + "y " * (i % 90)}]}
           for i in range(300)]
batch = seqpack.pack(records, tokenizer=sys.argv[1], template="qwen3", max_length=256, seed=3)
digest.update(batch.input_ids.tobytes() + batch.labels.tobytes())
print(digest.hexdigest())
"""


def test_same_bytes_whatever_the_thread_count(qwen_dir):
    # Rayon's pool size comes from RAYON_NUM_THREADS when the process starts.
    import os
    import subprocess
    import sys

    digests = set()
    for threads in ("1", "2", "5"):
        env = {**os.environ, "RAYON_NUM_THREADS": threads}
        done = subprocess.run(
            [sys.executable, "-c", HASH_SCRIPT, str(qwen_dir)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        )
        digests.add(done.stdout.strip())
    assert len(digests) == 1
