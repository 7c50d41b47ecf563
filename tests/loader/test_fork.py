"""Forked processes after parallel work: rayon's threads do not survive a fork, so a child
that ran parallel work on the pool its parent had started waited forever. Each case runs in a
subprocess with a time limit, so a hang fails the test instead of stopping the suite."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# The parent packs enough rows (>= 64) for the rows to be written in parallel: rayon's global
# pool starts in it.
PARENT = """
import os, sys
import numpy as np
import seqpack
sequences = [np.arange(1, 9 + i % 7) for i in range(2000)]
first = seqpack.pack(sequences, max_length=16)
assert first.input_ids.shape[0] >= 64
"""


def run(script: str) -> subprocess.CompletedProcess[str]:
    code = textwrap.dedent(PARENT) + textwrap.dedent(script)
    try:
        return subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the forked child's parallel work hung (rayon's threads did not survive)")


def test_a_forked_child_packs_and_encodes_in_parallel_after_its_parent_did():
    done = run(
        """
        pid = os.fork()
        if pid == 0:
            again = seqpack.pack(sequences, max_length=16)
            same = np.array_equal(again.input_ids, first.input_ids)
            # A grandchild, forked from a child whose own pool had started.
            inner = os.fork()
            if inner == 0:
                third = seqpack.pack(sequences, max_length=16)
                os._exit(0 if np.array_equal(third.labels, first.labels) else 3)
            _, status = os.waitpid(inner, 0)
            os._exit(0 if same and status == 0 else 3)
        _, status = os.waitpid(pid, 0)
        print("child status", status)
        """
    )
    assert done.returncode == 0, done.stderr
    assert "child status 0" in done.stdout


def test_loader_worker_processes_start_after_parallel_work_in_the_loop_process(tmp_path):
    # batch_rows >= 64: each worker writes its rows in parallel too.
    done = run(
        f"""
        import seqpack.torch as sptorch
        store = seqpack.store.write({str(tmp_path / "store")!r}, sequences)
        here = [b["input_ids"] for b in sptorch.PackedLoader(store, max_length=16, batch_rows=70)]
        there = sptorch.PackedLoader(
            store, max_length=16, batch_rows=70, num_workers=2, worker_type="process"
        )
        assert all(a.equal(b["input_ids"]) for a, b in zip(here, there, strict=True))
        print("batches", len(here))
        """
    )
    assert done.returncode == 0, done.stderr
    assert "batches" in done.stdout
