"""The training loader side by side with the alternatives, on the same token data.

Sequences have SFT-like lognormal lengths (median 350, 8..4096 tokens); each measurement runs
in its own process:

  first batch     a fresh PackedLoader on a 1M-sequence store: open, plan, first batch
  resume          load_state_dict at step 100,000 of that loader, then its next batch
  plan            planning 10M lengths at L=4096 (time and peak memory per sequence), against
                  seqpacker's best fit on the same lengths
  throughput      tokens/s delivered to the loop by PackedLoader (rows and padding-free, 0 and
                  2 workers), against a numpy copy of the same batch bytes, torchtune's
                  PackedDataset + padded_collate_packed, and TRL's pack_dataset + transformers'
                  DataCollatorWithFlattening (their setup, the packing itself, timed apart);
                  seqpack and the numpy copy over one whole epoch, the others over their first
                  400 batches (their per-batch cost is Python's and steady from the start)

  .venv/bin/python benches/bench_loader.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import numpy as np

L = 4096
BATCH_ROWS = 8


def lengths_for(count: int, seed: int = 1234) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(mean=np.log(350), sigma=1.0, size=count), 8, L).astype(np.int64)


def sequences_for(count: int) -> tuple[np.ndarray, np.ndarray]:
    lengths = lengths_for(count)
    offsets = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    tokens = np.random.default_rng(99).integers(0, 32000, size=int(offsets[-1]), dtype=np.int32)
    return tokens, offsets


def peak_rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def build_store(folder: Path, count: int) -> Path:
    import seqpack

    path = folder / f"store-{count}"
    if not (path / "manifest.json").exists():
        tokens, offsets = sequences_for(count)
        step = 100_000

        def chunks() -> Any:
            for start in range(0, count, step):
                stop = min(start + step, count)
                for i in range(start, stop):
                    yield tokens[offsets[i] : offsets[i + 1]]

        seqpack.store.write(path, chunks(), chunk_size=65536, overwrite=True)
    return path


def batch_tokens(batch: dict[str, Any]) -> int:
    if "cu_seq_lens_q" in batch:
        return int(batch["cu_seq_lens_q"][-1])
    if "segment_ids" in batch:
        return int(np.count_nonzero(batch["segment_ids"].numpy()))
    return int(batch["input_ids"].numel())


BATCHES = 400


def drain(loader: Any, setup: float, real: Any = None, batches: int = 0) -> dict[str, Any]:
    """Up to ``batches`` (default BATCHES) batches of ``loader``: the first one's latency, then
    the steady rate of the rest (tokens are real tokens, padding excluded).

    Only the time the loop waits in ``next()`` is counted: the benchmark's own count of each
    batch's real tokens is not the loader's cost (with torch's ``(x > 0).sum()`` it took 377 us a
    batch, more than seqpack's whole batch). Loaders with workers keep preparing batches during
    that count; it is the cheapest one numpy has (``count_nonzero``, ~25 us), the same for all."""
    count_tokens = real or batch_tokens
    start = time.perf_counter()
    iterator = iter(loader)
    next(iterator)
    first = time.perf_counter() - start
    tokens = 0
    seconds = 0.0
    for _ in range((batches or BATCHES) - 1):
        start = time.perf_counter()
        batch = next(iterator, None)
        seconds += time.perf_counter() - start
        if batch is None:
            break
        tokens += count_tokens(batch)
    return {"setup": setup, "first": first, "seconds": seconds, "tokens": tokens}


CHUNK = 100


def paired(store_path: Path, extra: str) -> dict[str, Any]:
    """The loader and a numpy copy of the same batch bytes, side by side in one process.

    The machine's speed drifts by up to 2x between minutes, so two rates measured in separate
    processes a minute apart say little about their ratio. Here epoch 0 is read once (it maps
    the store's pages, as a numpy copy's source is already in memory, and keeps each batch's
    arrays as that source), then epoch 0 again, batch for batch the same bytes, in chunks of
    CHUNK batches that alternate with copying the same chunk: both see the same machine.
    Workers keep preparing up to ``num_workers * 2`` batches while a copy chunk runs, which
    flatters the loader by at most that many batches in CHUNK (4%)."""
    import seqpack.torch as sptorch

    fmt, workers, worker_type = extra.split(":")
    loader = sptorch.PackedLoader(
        store_path, max_length=L, batch_rows=BATCH_ROWS, format=cast(Any, fmt),
        num_workers=int(workers), worker_type=cast(Any, worker_type),
    )  # fmt: skip
    kept = list(loader)
    arrays = [[v.numpy() for v in b.values() if hasattr(v, "numpy")] for b in kept]
    tokens = [batch_tokens(b) for b in kept]
    del kept
    loader.set_epoch(0)
    iterator = iter(loader)
    next(iterator)  # the first batch (worker start-up) is the first-batch column's
    ours = copy = 0.0
    for start in range(1, len(arrays), CHUNK):
        stop = min(start + CHUNK, len(arrays))
        begin = time.perf_counter()
        for _ in range(start, stop):
            batch = next(iterator)
        ours += time.perf_counter() - begin
        del batch
        begin = time.perf_counter()
        for batch_arrays in arrays[start:stop]:
            copies = [np.array(a, copy=True) for a in batch_arrays]
            del copies
        copy += time.perf_counter() - begin
    return {"tokens": sum(tokens[1:]), "ours": ours, "copy": copy, "batches": len(arrays) - 1}


def work(kind: str, folder: str, count: int, extra: str) -> dict[str, Any]:
    import seqpack.torch as sptorch

    store_path = Path(folder) / f"store-{count}"
    if kind == "first_batch":
        start = time.perf_counter()
        loader = sptorch.PackedLoader(store_path, max_length=L, batch_rows=BATCH_ROWS)
        next(iter(loader))
        return {"seconds": time.perf_counter() - start, "steps": len(loader)}
    if kind == "resume":
        loader = sptorch.PackedLoader(store_path, max_length=L, batch_rows=1)
        # Step 100,000, or the last step of a smaller store's epoch.
        state = {**loader.state_dict(), "step": min(int(extra), len(loader) - 1)}
        start = time.perf_counter()
        loader.load_state_dict(state)
        next(iter(loader))
        return {"seconds": time.perf_counter() - start, "steps": len(loader)}
    if kind == "plan":
        lengths = lengths_for(count).astype(np.uint32)
        if extra == "seqpack":
            plan_options = {
                "max_length": L,
                "strategy": "bfd",
                "max_seqs_per_row": None,
                "overlong": "error",
                "truncate_keep": "head",
                "pad_rows_to_multiple_of": 1,
                "seed": None,
            }
            options = {
                "plan": plan_options,
                "batch_rows": 8,
                "batch_tokens": None,
                "world_size": 1,
                "seed": 0,
                "remainder": "pad",
                "balance": None,
            }
            from seqpack import _seqpack

            before = rss()
            start = time.perf_counter()
            schedule = _seqpack.NativeSchedule(lengths, options)
            seconds = time.perf_counter() - start
            # What every further epoch pays: its seeded order of the plan's rows.
            start = time.perf_counter()
            schedule.rank_rows(1, 0, 0)
            epoch = time.perf_counter() - start
            return {
                "epoch": epoch,
                "seconds": seconds,
                "rows": schedule.rows,
                "peak": peak_rss() - before,
                "count": count,
            }
        import seqpacker

        as_int64 = lengths.astype(np.int64)
        packer = seqpacker.Packer(L, "bfd")
        before = rss()
        start = time.perf_counter()
        _items, split_points = packer.pack_flat(as_int64)
        seconds = time.perf_counter() - start
        return {
            "seconds": seconds,
            "rows": len(split_points) + 1,
            "peak": peak_rss() - before,
            "count": count,
        }
    if kind == "seqpack":
        fmt, workers, worker_type = extra.split(":")
        start = time.perf_counter()
        loader = sptorch.PackedLoader(
            store_path,
            max_length=L,
            batch_rows=BATCH_ROWS,
            format=cast(Any, fmt),
            num_workers=int(workers),
            worker_type=cast(Any, worker_type),
        )
        setup = time.perf_counter() - start
        # A whole epoch: its first few hundred batches map the store's pages into the process
        # (page faults a long run pays once per page, not per batch), so fewer would not be
        # the rate a training run sees.
        return drain(loader, setup, batches=len(loader))
    if kind == "numpy-copy":
        loader = sptorch.PackedLoader(store_path, max_length=L, batch_rows=BATCH_ROWS, format=extra)  # type: ignore[arg-type]
        kept = list(loader)  # the same whole epoch
        arrays = [[v.numpy() for v in b.values() if hasattr(v, "numpy")] for b in kept]
        tokens = sum(batch_tokens(b) for b in kept[1:])
        # What a loop that copies each batch and lets it go pays: copy, use, free.
        copied = 0
        start = time.perf_counter()
        for batch_arrays in arrays[1:]:
            copies = [np.array(a, copy=True) for a in batch_arrays]
            copied += sum(c.nbytes for c in copies)
            del copies
        seconds = time.perf_counter() - start
        return {"setup": 0.0, "first": 0.0, "seconds": seconds, "tokens": tokens, "bytes": copied}
    if kind == "paired":
        return paired(store_path, extra)
    loader_workers = int(extra or 0)
    if kind == "torchtune":
        import torch
        from torchtune.data import padded_collate_packed
        from torchtune.datasets import PackedDataset

        tokens_all, offsets = sequences_for(count)
        rows_in = [
            {
                "tokens": tokens_all[offsets[i] : offsets[i + 1]].tolist(),
                "labels": tokens_all[offsets[i] : offsets[i + 1]].tolist(),
            }
            for i in range(count)
        ]
        start = time.perf_counter()
        packed = PackedDataset(rows_in, max_seq_len=L, split_across_pack=False)
        torch_loader = torch.utils.data.DataLoader(
            packed,
            batch_size=BATCH_ROWS,
            collate_fn=padded_collate_packed,
            num_workers=loader_workers,
        )
        setup = time.perf_counter() - start
        return drain(torch_loader, setup, real=lambda b: int(np.count_nonzero(b["tokens"].numpy())))
    if kind == "trl":
        import datasets
        import pyarrow as pa
        import torch
        from datasets.table import InMemoryTable
        from transformers import DataCollatorWithFlattening
        from trl import pack_dataset

        datasets.disable_progress_bars()
        tokens_all, offsets = sequences_for(count)
        column = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(tokens_all))
        dataset = datasets.Dataset(InMemoryTable(pa.table({"input_ids": column})))
        start = time.perf_counter()
        packed = pack_dataset(
            dataset, seq_length=L, strategy="bfd", map_kwargs={"batch_size": len(dataset)}
        )
        collator = DataCollatorWithFlattening(return_flash_attn_kwargs=True)
        torch_loader = torch.utils.data.DataLoader(
            packed.with_format("python"), batch_size=BATCH_ROWS, collate_fn=collator,
            num_workers=loader_workers,
        )  # fmt: skip
        setup = time.perf_counter() - start
        return drain(torch_loader, setup)
    raise ValueError(kind)


def run(kind: str, folder: Path, count: int, extra: str = "") -> dict[str, Any] | None:
    done = subprocess.run(
        [sys.executable, __file__, "--worker", kind, str(folder), str(count), extra],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        why = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode
        print(f"[{kind} {extra} failed: {why}]")
        return None
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def table(titles: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [titles, *rows]) for i in range(len(titles))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join(
        [line(titles), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)]
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        print(
            json.dumps(
                work(
                    sys.argv[2],
                    sys.argv[3],
                    int(sys.argv[4]),
                    sys.argv[5] if len(sys.argv) > 5 else "",
                )
            )
        )
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--folder", default=None)
    parser.add_argument("--sequences", type=int, default=1_000_000, help="the large store")
    parser.add_argument(
        "--compare", type=int, default=100_000, help="sequences for the throughput table"
    )
    parser.add_argument("--plan", type=int, default=10_000_000)
    args = parser.parse_args()
    folder = Path(args.folder or tempfile.mkdtemp(prefix="seqpack-bench-loader-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(
        f"seqpack loader benchmark — {os.cpu_count()} cores; lognormal lengths (median 350), "
        f"L={L}, {BATCH_ROWS} rows per batch\n"
    )
    build_store(folder, args.sequences)
    build_store(folder, args.compare)

    first = run("first_batch", folder, args.sequences)
    resume = run("resume", folder, args.sequences, "100000")
    if first:
        print(
            f"time to the first batch on a {args.sequences:,}-sequence store (open + plan + "
            f"batch): {first['seconds'] * 1000:,.0f} ms"
        )
    if resume:
        step = min(100_000, resume["steps"] - 1)
        print(
            f"resume at step {step:,} of {resume['steps']:,} (load_state_dict + next batch): "
            f"{resume['seconds'] * 1000:,.1f} ms"
        )
    plans = [
        ("seqpack schedule (bfd)", run("plan", folder, args.plan, "seqpack")),
        ("seqpacker bfd", run("plan", folder, args.plan, "seqpacker")),
    ]
    print(f"\nPlan {args.plan:,} lengths at L={L}:\n")
    plan_rows = [
        [
            name,
            f"{r['seconds'] * 1000:,.0f} ms",
            f"{r['rows']:,}",
            f"{r['peak'] / 2**20:,.0f} MiB",
            f"{r['peak'] / r['count']:.1f} B",
        ]
        for name, r in plans
        if r
    ]
    print(table(["method", "time", "rows", "peak memory", "per sequence"], plan_rows))
    if plans[0][1]:
        print(
            f"\nThe plan is made once; each further epoch only reorders its rows: "
            f"{plans[0][1]['epoch'] * 1000:,.0f} ms for epoch 1."
        )

    rows = []
    ours: dict[str, float] = {}

    def add(name: str, r: dict[str, Any] | None) -> float:
        if not r:
            return 0.0
        rate = r["tokens"] / r["seconds"]
        rows.append(
            [name, f"{r['setup']:.2f} s", f"{r['first'] * 1000:,.1f} ms", f"{rate / 1e6:,.2f} M"]
        )
        return rate

    configs: dict[str, str] = {}
    for fmt in ("rows", "padding_free"):
        for workers, worker_type in ((0, "thread"), (2, "thread"), (2, "process")):
            kind = {"thread": " (threads)", "process": " (processes)"}[worker_type]
            label = f"seqpack {fmt}, {workers} workers" + (kind if workers else "")
            configs[label] = f"{fmt}:{workers}:{worker_type}"
            ours[label] = add(label, run("seqpack", folder, args.compare, configs[label]))
    copies = {
        fmt: add(f"numpy copy, same batches ({fmt})", run("numpy-copy", folder, args.compare, fmt))
        for fmt in ("rows", "padding_free")
    }
    side_by_side = {
        label: run("paired", folder, args.compare, extra) for label, extra in configs.items()
    }
    theirs: dict[str, float] = {}
    for kind, name in (
        ("torchtune", "torchtune PackedDataset + padded_collate_packed"),
        ("trl", "TRL pack_dataset + DataCollatorWithFlattening"),
    ):
        for workers in (0, 2):
            label = f"{name}, {workers} workers"
            theirs[label] = add(label, run(kind, folder, args.compare, str(workers)))
    print(
        f"\nTokens delivered to the loop, {args.compare:,} sequences, batches of {BATCH_ROWS} "
        "rows (seqpack and the numpy copy: one whole epoch; torchtune and TRL: the first "
        f"{BATCHES}): setup (packing, loader), the first batch, then the steady rate of the rest "
        "in real tokens per second:\n"
    )
    print(table(["loader", "setup", "first batch", "tokens/s"], rows))
    print()
    for label, rate in ours.items():
        fmt = "padding_free" if "padding_free" in label else "rows"
        used = label.split(", ")[1].split(" ")[0]
        rivals = [r for name, r in theirs.items() if name.endswith(f", {used} workers") and r]
        versus = ", ".join(f"{rate / r:,.1f}x" for r in rivals)
        share = f"{rate / copies[fmt]:.0%}" if copies.get(fmt) else "-"
        print(
            f"{label}: {share} of the numpy copy's separate run; "
            f"vs torchtune, TRL at {used} workers: {versus}"
        )
    print(
        f"\nThe loader against a numpy copy of the same batch bytes, side by side in one process "
        f"(epoch 0 read once, then again in chunks of {CHUNK} batches alternating with copying "
        "the same chunk, so both see the same machine):\n"
    )
    paired_rows = [
        [
            label,
            f"{r['tokens'] / r['ours'] / 1e6:,.2f} M",
            f"{r['tokens'] / r['copy'] / 1e6:,.2f} M",
            f"{r['ours'] / r['batches'] * 1e6:,.0f} us",
            f"{r['copy'] / r['batches'] * 1e6:,.0f} us",
            f"{r['copy'] / r['ours']:.0%}",
        ]
        for label, r in side_by_side.items()
        if r
    ]
    titles = ["loader", "tokens/s", "numpy copy", "per batch", "copy per batch", "share"]
    print(table(titles, paired_rows))


if __name__ == "__main__":
    main()
