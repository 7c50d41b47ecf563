"""Packing benchmark: seqpack against TRL, seqpacker, numpy padding and the memory floor.

Prints one table per workload. Every figure comes from this run on this machine; each
measurement runs in a fresh subprocess so its peak memory is its own.

Workloads (fixed seeds):
  lognormal  SFT-like lengths: lognormal, median 350, sigma 1, clipped to 8..8192
  uniform    lengths uniform in 1..L
Planning uses 1M sequences; materialisation 200k (the full output for 1M would not fit in
memory here). Overlong sequences are truncated to L for every method (TRL's bfd truncates,
seqpacker refuses them), so all methods pack the same tokens.

    .venv/bin/python benches/bench_pack.py            # all workloads
    .venv/bin/python benches/bench_pack.py --quick    # 10x smaller, for a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np

PLAN_SEQUENCES = 1_000_000
PACK_SEQUENCES = 200_000
VOCAB = 151_643
MEMORY_BUDGET = (os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) // 2


def lengths_for(workload: str, count: int, max_length: int) -> np.ndarray:
    rng = np.random.default_rng(1234)
    if workload == "lognormal":
        raw = rng.lognormal(mean=np.log(350), sigma=1.0, size=count)
        lengths = np.clip(raw, 8, 8192).astype(np.int64)
    else:
        lengths = rng.integers(1, max_length + 1, size=count, dtype=np.int64)
    return lengths


def tokens_for(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    tokens = np.random.default_rng(99).integers(0, VOCAB, size=int(offsets[-1]), dtype=np.int32)
    return tokens, offsets


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak() -> None:
    # Writing 5 to clear_refs resets VmHWM (peak RSS) to the current RSS (Linux >= 4.0).
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def measure(fn):
    """Run fn once; return (seconds, extra peak bytes over the RSS before it, result)."""
    before = rss_bytes()
    reset_peak()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    return seconds, max(peak_bytes() - before, 0), result


# --- workers: each runs in its own process and prints one JSON line ---------------------


def work_plan(method: str, workload: str, max_length: int, count: int) -> dict[str, Any]:
    lengths = np.minimum(lengths_for(workload, count, max_length), max_length)
    if method.startswith("seqpacker-"):
        import seqpacker

        packer = seqpacker.Packer(max_length, method.split("-")[1])
        seconds, peak, (_items, split_points) = measure(lambda: packer.pack_flat(lengths))
        rows = len(split_points) + 1
    elif method.startswith("seqpack-"):
        import seqpack

        strategy = method.split("-")[1]
        seconds, peak, plan = measure(
            lambda: seqpack.plan(lengths, max_length=max_length, strategy=strategy)  # type: ignore[arg-type]
        )
        rows = plan.num_rows
    elif method == "trl-bfd":
        import datasets
        import pyarrow as pa
        from datasets.table import InMemoryTable
        from trl import pack_dataset

        datasets.disable_progress_bars()
        # Planning needs lengths only, so the values are int8 zeros (a quarter of the memory
        # of real int32 ids, which would not fit for 1M uniform sequences; it also makes
        # TRL's own copy of the values cheaper, in its favour). int64 offsets: > 2^31 values.
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        values = pa.array(np.zeros(int(offsets[-1]), dtype=np.int8))
        column = pa.LargeListArray.from_arrays(pa.array(offsets), values)
        dataset = datasets.Dataset(InMemoryTable(pa.table({"input_ids": column})))
        seconds, peak, packed = measure(
            lambda: pack_dataset(
                dataset,
                seq_length=max_length,
                strategy="bfd",
                map_kwargs={"batch_size": len(dataset)},
            )
        )
        rows = len(packed)
    else:
        raise ValueError(method)
    real = int(lengths.sum())
    return {"seconds": seconds, "peak": peak, "rows": rows, "real": real}


def work_pack(method: str, workload: str, max_length: int, count: int) -> dict[str, Any]:
    lengths = lengths_for(workload, count, max_length)
    tokens, offsets = tokens_for(lengths)
    kept = np.minimum(lengths, max_length)
    real = int(kept.sum())
    if method == "seqpack":
        import seqpack

        seconds, peak, batch = measure(
            lambda: seqpack.pack(
                tokens, offsets=offsets, max_length=max_length, overlong="truncate"
            )
        )
        arrays = [
            batch.input_ids,
            batch.labels,
            batch.position_ids,
            batch.segment_ids,
            batch.row_offsets,
            batch.cu_seqlens,
            batch.seq_lens,
            batch.source_index,
            batch.chunk_index,
            batch.source_start,
        ]
        out_bytes = sum(a.nbytes for a in arrays)
        return {
            "seconds": seconds,
            "peak": peak,
            "rows": batch.num_rows,
            "real": real,
            "bytes": out_bytes,
        }
    if method == "numpy-copy":
        # The floor: copy the same number of bytes into freshly allocated arrays. The source
        # is a 256 MiB block copied over and over (a full-size source would not fit beside
        # the target for the largest outputs); reading it is cheap, writing new pages is not.
        out_bytes = int(sys.argv[-1])
        block = np.ones(32 << 20, dtype=np.int64)

        def copy():
            target = np.empty(out_bytes // 8, dtype=np.int64)
            for start in range(0, target.size, block.size):
                chunk = target[start : start + block.size]
                np.copyto(chunk, block[: chunk.size])
            return target

        seconds, peak, _ = measure(copy)
        return {"seconds": seconds, "peak": peak, "rows": 0, "real": real, "bytes": out_bytes}
    if method == "numpy-pad":
        # The usual fix: every sequence padded (and truncated) to max_length: input_ids,
        # labels and attention_mask. The full output for 200k rows does not fit in memory
        # here, so it is built in chunks of CHUNK rows, each dropped after it is made; the
        # time is the sum, the peak that of one chunk.
        chunk = int(sys.argv[-1])

        def pad_rows(first: int, last: int) -> int:
            lengths = kept[first:last]
            rows = len(lengths)
            input_ids = np.zeros((rows, max_length), dtype=np.int64)
            attention_mask = np.arange(max_length)[None, :] < lengths[:, None]
            count = int(lengths.sum())
            starts = np.repeat(offsets[first:last], lengths)
            within = np.arange(count) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            input_ids[attention_mask] = tokens[starts + within]
            labels = np.where(attention_mask, input_ids, -100)
            mask = attention_mask.astype(np.int64)
            return input_ids.nbytes + labels.nbytes + mask.nbytes

        def pad():
            return sum(
                pad_rows(first, min(first + chunk, len(kept)))
                for first in range(0, len(kept), chunk)
            )

        seconds, peak, out_bytes = measure(pad)
        return {
            "seconds": seconds,
            "peak": peak,
            "rows": len(kept),
            "real": real,
            "bytes": out_bytes,
        }
    if method == "trl-bfd":
        import datasets
        import pyarrow as pa
        from datasets.table import InMemoryTable
        from trl import pack_dataset

        datasets.disable_progress_bars()
        column = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(tokens))
        dataset = datasets.Dataset(InMemoryTable(pa.table({"input_ids": column})))
        seconds, peak, packed = measure(
            lambda: pack_dataset(
                dataset,
                seq_length=max_length,
                strategy="bfd",
                map_kwargs={"batch_size": len(dataset)},
            )
        )
        return {
            "seconds": seconds,
            "peak": peak,
            "rows": len(packed),
            "real": real,
            "bytes": int(packed.data.nbytes),
        }
    raise ValueError(method)


# --- driver -------------------------------------------------------------------------------


def run_worker(
    kind: str, method: str, workload: str, max_length: int, count: int, extra: str = ""
) -> dict[str, Any] | None:
    command = [
        sys.executable,
        __file__,
        "--worker",
        kind,
        method,
        workload,
        str(max_length),
        str(count),
    ]
    if extra:
        command.append(extra)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(f"  [{method} failed: {done.stderr.strip().splitlines()[-1:]}]", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(titles: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [titles, *rows]) for i in range(len(titles))]

    def line(r):
        return "| " + " | ".join(f"{c:>{w}}" for c, w in zip(r, widths, strict=True)) + " |"

    return "\n".join(
        [line(titles), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="10x fewer sequences")
    parser.add_argument("--no-trl", action="store_true")
    parser.add_argument(
        "--workloads",
        default="lognormal:4096,lognormal:8192,uniform:4096",
        help="comma-separated workload:max_length pairs",
    )
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    plan_count, pack_count = PLAN_SEQUENCES // scale, PACK_SEQUENCES // scale
    workloads = [(w.split(":")[0], int(w.split(":")[1])) for w in args.workloads.split(",")]
    print(
        f"seqpack packing benchmark — {os.cpu_count()} cores; plan {plan_count:,} "
        f"sequences, materialise {pack_count:,}\n"
    )

    for workload, max_length in workloads:
        print(f"## {workload} lengths, L = {max_length}\n")
        lengths = np.minimum(lengths_for(workload, plan_count, max_length), max_length)
        lower = int(np.ceil(lengths.sum() / max_length))
        plan_methods = [
            "seqpack-bfd",
            "seqpack-ffd",
            "seqpacker-bfd",
            "seqpacker-obfd",
            "seqpacker-obfdp",
        ]
        if not args.no_trl:
            plan_methods.append("trl-bfd")
        results = {m: run_worker("plan", m, workload, max_length, plan_count) for m in plan_methods}
        ours = results["seqpack-bfd"]
        if ours is None:
            raise SystemExit("seqpack-bfd failed; see its error above")
        rows = []
        for method, r in results.items():
            if r is None:
                rows.append([method, "failed", "", "", "", "", ""])
                continue
            rows.append(
                [
                    method + r.get("note", ""),
                    f"{r['seconds'] * 1000:,.0f} ms",
                    f"{r['seconds'] / ours['seconds']:.1f}x",
                    f"{r['rows']:,}",
                    f"+{r['rows'] - lower:,}",
                    f"{r['real'] / (r['rows'] * max_length):.3%}",
                    f"{r['peak'] / 2**20:,.0f} MiB",
                ]
            )
        print(f"Plan {plan_count:,} sequences (lower bound {lower:,} rows):\n")
        print(
            table(
                [
                    "method",
                    "time",
                    "vs seqpack-bfd",
                    "rows",
                    "rows - bound",
                    "efficiency",
                    "peak mem",
                ],
                rows,
            )
        )
        print()

        pack = {"seqpack": run_worker("pack", "seqpack", workload, max_length, pack_count)}
        out_bytes = pack["seqpack"]["bytes"] if pack["seqpack"] else 0
        pack["numpy-copy"] = run_worker(
            "pack", "numpy-copy", workload, max_length, pack_count, str(out_bytes)
        )
        # Padding needs rows * L * 3 arrays * 8 bytes: built in chunks that fit a quarter of
        # the machine's memory (the peak column is then one chunk's).
        chunk = max(1, min(pack_count, MEMORY_BUDGET // 2 // (max_length * 3 * 8)))
        pack["numpy-pad"] = run_worker(
            "pack", "numpy-pad", workload, max_length, pack_count, str(chunk)
        )
        if pack["numpy-pad"] and chunk < pack_count:
            pack["numpy-pad"]["note"] = f" (in chunks of {chunk:,})"
        if not args.no_trl:
            pack["trl-bfd"] = run_worker("pack", "trl-bfd", workload, max_length, pack_count)
        rows = []
        for method, r in pack.items():
            if r is None:
                rows.append([method, "failed", "", "", "", "", "", ""])
                continue
            if "skipped" in r:
                rows.append([method, "not run", r["skipped"], "", "", "", "", ""])
                continue
            bandwidth = r["bytes"] / r["seconds"] / 2**30
            rows.append(
                [
                    method + r.get("note", ""),
                    f"{r['seconds'] * 1000:,.0f} ms",
                    f"{r['bytes'] / 2**20:,.0f} MiB",
                    f"{bandwidth:.2f} GiB/s",
                    f"{r['rows']:,}" if r["rows"] else "-",
                    f"{r['real'] / (r['rows'] * max_length):.3%}" if r["rows"] else "-",
                    f"{r['peak'] / 2**20:,.0f} MiB",
                    f"{r['peak'] / r['bytes']:.2f}x",
                ]
            )
        print(f"Materialise {pack_count:,} sequences (seqpack: all outputs):\n")
        print(
            table(
                [
                    "method",
                    "time",
                    "output",
                    "bandwidth",
                    "rows",
                    "efficiency",
                    "peak mem",
                    "peak / output",
                ],
                rows,
            )
        )
        if pack["seqpack"] and pack["numpy-copy"]:
            ratio = pack["numpy-copy"]["seconds"] / pack["seqpack"]["seconds"]
            print(f"\nseqpack materialises at {ratio:.0%} of the numpy-copy bandwidth.")
        print()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        kind, method, workload, max_length, count = sys.argv[2:7]
        work = work_plan if kind == "plan" else work_pack
        print(json.dumps(work(method, workload, int(max_length), int(count))))
    else:
        main()
