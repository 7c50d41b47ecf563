"""Streaming packing: efficiency and throughput by window size, against the global plan over
the whole data and TRL's windowed best fit on the same stream.

  efficiency   1M SFT-like lengths (lognormal, median 350, L=4096): seqpack.stream.scan with
               windows of 1k, 10k and 100k sequences against seqpack.plan over all of them
               (target: >= 99% of the global plan's efficiency at a 10k window); and on the
               first 100k, TRL's pack_dataset(strategy="bfd") with map batches of the same
               sizes (its best fit runs per map batch: a window)
  throughput   200k sequences through seqpack.stream (rows and padding-free, 8 rows of 4096
               per batch): real tokens per second delivered to the loop, by window

torchtune's IterablePackedDataset (a first-fit buffer) is not in the torchtune release this
project installs (0.6), so it is not measured here.

  .venv/bin/python benches/bench_stream.py
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
from bench_loader import table  # the same markdown table as the loader benchmark

L = 4096


def lengths_for(count: int, seed: int = 1234) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(mean=np.log(350), sigma=1.0, size=count), 8, L).astype(np.int64)


def sequences_for(lengths: np.ndarray) -> list[np.ndarray]:
    """Views of one random token array, one per length."""
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    tokens = np.random.default_rng(99).integers(1, 32000, size=int(offsets[-1]), dtype=np.int32)
    return [tokens[offsets[i] : offsets[i + 1]] for i in range(len(lengths))]


def trl_efficiency(lengths: np.ndarray, window: int) -> tuple[float, float]:
    import datasets
    import pyarrow as pa
    from datasets.table import InMemoryTable
    from trl import pack_dataset

    datasets.disable_progress_bars()
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    tokens = np.ones(int(offsets[-1]), dtype=np.int32)
    column = pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(tokens))
    dataset = datasets.Dataset(InMemoryTable(pa.table({"input_ids": column})))
    start = time.perf_counter()
    packed = pack_dataset(dataset, seq_length=L, strategy="bfd", map_kwargs={"batch_size": window})
    seconds = time.perf_counter() - start
    return float(lengths.sum()) / (len(packed) * L), seconds


def main() -> None:
    import seqpack
    import seqpack.streaming

    parser = argparse.ArgumentParser()
    parser.add_argument("--sequences", type=int, default=1_000_000)
    parser.add_argument("--throughput", type=int, default=200_000)
    parser.add_argument("--windows", default="1000,10000,100000")
    parser.add_argument("--no-trl", action="store_true")
    parser.add_argument("--trl-sequences", type=int, default=100_000)
    args = parser.parse_args()
    windows = [int(w) for w in args.windows.split(",")]

    lengths = lengths_for(args.sequences)
    print(
        f"seqpack streaming benchmark — {args.sequences:,} SFT-like lengths (lognormal, median "
        f"350), L={L}\n"
    )
    start = time.perf_counter()
    whole = seqpack.plan(lengths, max_length=L)
    global_seconds = time.perf_counter() - start
    base = whole.stats.efficiency
    rows = [
        ["global plan (seqpack.plan)", "all", f"{base:.4%}", "100.00%", f"{global_seconds:.2f} s"]
    ]
    # scan() needs only the lengths: token "records" that are ranges of the right length.
    records: list[Any] = [range(int(n)) for n in lengths]
    for window in windows:
        start = time.perf_counter()
        scanned = seqpack.stream.scan(records, max_length=L, window=window, batch_rows=8)
        seconds = time.perf_counter() - start
        rows.append(
            [
                "seqpack.stream (bfd per window)",
                f"{window:,}",
                f"{scanned.efficiency:.4%}",
                f"{scanned.efficiency / base:.2%}",
                f"{seconds:.2f} s",
            ]
        )
    if not args.no_trl:
        # TRL's datasets.map over a million rows takes minutes and gigabytes: the first
        # --trl-sequences lengths, against seqpack on the same subset.
        subset = lengths[: args.trl_sequences]
        sub_base = seqpack.plan(subset, max_length=L).stats.efficiency
        sub_records: list[Any] = [range(int(n)) for n in subset]
        for window in windows:
            ours = seqpack.stream.scan(sub_records, max_length=L, window=window, batch_rows=8)
            rows.append(
                [
                    f"seqpack.stream, first {len(subset):,}",
                    f"{window:,}",
                    f"{ours.efficiency:.4%}",
                    f"{ours.efficiency / sub_base:.2%}",
                    "-",
                ]
            )
            try:
                efficiency, seconds = trl_efficiency(subset, window)
            except ImportError as error:
                rows.append(["TRL pack_dataset bfd", f"{window:,}", f"[{error}]", "-", "-"])
                continue
            rows.append(
                [
                    f"TRL pack_dataset bfd, first {len(subset):,}",
                    f"{window:,}",
                    f"{efficiency:.4%}",
                    f"{efficiency / sub_base:.2%}",
                    f"{seconds:.2f} s",
                ]
            )
    print("Efficiency (real tokens / row capacity) by window:\n")
    print(table(["packer", "window", "efficiency", "of global", "time"], rows))

    sequences = sequences_for(lengths[: args.throughput])
    total = int(lengths[: args.throughput].sum())
    print(
        f"\nThroughput, {args.throughput:,} sequences ({total:,} tokens) through seqpack.stream, "
        "8 rows per batch, real tokens per second delivered to the loop (encoding not "
        "included: token sequences in):\n"
    )
    rows = []
    for window in windows:
        for fmt in ("rows", "padding_free"):
            stream = seqpack.stream(
                sequences, max_length=L, window=window, batch_rows=8, format=fmt
            )
            start = time.perf_counter()
            batches = sum(1 for _ in stream)
            seconds = time.perf_counter() - start
            rows.append(
                [
                    f"{window:,}",
                    fmt,
                    f"{batches:,}",
                    f"{seconds:.2f} s",
                    f"{total / seconds / 1e6:.1f} M",
                ]
            )
    print(table(["window", "format", "batches", "time", "tokens/s"], rows))


if __name__ == "__main__":
    main()
