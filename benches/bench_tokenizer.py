"""Tokenizer benchmark: seqpack's fast path against quicktok-v1 and the tokenizers library,
and the thread scaling of seqpack's whole conversation encode.

Texts are the shared chat data with the Qwen3 tokenizer, in two sets:
  plain   every message content that holds no added token's text (ordinary text: all three
          tokenizers read it the same way; quicktok's encode_batch without specials)
  chat    every conversation rendered by the built-in qwen3 template, special tokens and all
          (quicktok's encode_batch(with_special=True))
Before any timing, the ids of all three tokenizers are checked identical on every text.
Each thread count runs in its own process (RAYON_NUM_THREADS / RAYON_RS_NUM_THREADS set),
so each library's pool has exactly that many threads. Figures are the best of --repeat runs
after a warm-up (the verification), so every word cache is warm for every tokenizer.

`encode` is seqpack.encode(...) end to end from a .jsonl file (read, parse, render,
tokenize, truncate, label, flatten) of the shared conversations repeated --copies times.

    .venv/bin/python benches/bench_tokenizer.py [--threads 1 2] [--repeat 7] [--rounds 3]
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
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_chat import load_conversations, qwen_dir, table


def best(run, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def merge_best(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """Per figure, the faster of two runs."""
    if old is None:
        return new
    for name in ("plain", "chat"):
        for key, rate in new[name]["tokens_per_second"].items():
            old[name]["tokens_per_second"][key] = max(old[name]["tokens_per_second"][key], rate)
    rate = new["encode"]["tokens_per_second"]
    old["encode"]["tokens_per_second"] = max(old["encode"]["tokens_per_second"], rate)
    return old


def spin(_: int) -> int:
    total = 0
    for i in range(5_000_000):
        total += i * i
    return total


def machine(processes: int) -> float:
    """Seconds for `processes` processes to each run the same pure-CPU loop: on a machine
    whose cores are all its own, the same for any count up to the cores."""
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(processes) as pool:
        pool.map(spin, range(processes))  # start-up, not timed
        start = time.perf_counter()
        pool.map(spin, range(processes))
        return time.perf_counter() - start


def child(threads: int, repeat: int, copies: int) -> dict[str, Any]:
    import quicktok
    import tokenizers

    import seqpack
    import seqpack.tokenizer
    from seqpack import _seqpack

    base = load_conversations()
    directory = qwen_dir()
    config = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))
    added = [token["content"] for token in config["added_tokens"]]
    template = _seqpack.NativeTemplate.builtin("qwen3")
    chat = [template.render(c, format="openai")[0] for c in base]
    plain = [
        m["content"]
        for c in base
        for m in c["messages"]
        if isinstance(m.get("content"), str)
        and m["content"]
        and not any(token in m["content"] for token in added)
    ]
    ours = seqpack.tokenizer.load_tokenizer(directory).native
    assert ours.is_fast, "the fast path does not apply to this tokenizer.json"
    quick = quicktok.get_encoding("qwen3")
    library = tokenizers.Tokenizer.from_file(str(directory / "tokenizer.json"))

    result: dict[str, Any] = {"threads": threads}
    for name, texts, special in (("plain", plain, False), ("chat", chat, True)):
        ids, _ = ours.encode_batch(texts, threads=threads)
        quick_ids, _ = quick.encode_batch(texts, threads, special)
        library_ids = np.concatenate(
            [np.asarray(e.ids, dtype=np.uint32) for e in library.encode_batch_fast(texts, False)]
        )
        if not (np.array_equal(ids, quick_ids) and np.array_equal(ids, library_ids)):
            raise SystemExit(f"{name}: the tokenizers disagree; nothing timed")
        count = len(ids)
        timings = {
            "seqpack": best(lambda t=texts: ours.encode_batch(t, threads=threads), repeat),
            "quicktok-v1": best(
                lambda t=texts, s=special: quick.encode_batch(t, threads, s), repeat
            ),
            "tokenizers": best(lambda t=texts: library.encode_batch_fast(t, False), repeat),
        }
        result[name] = {
            "texts": len(texts),
            "tokens": count,
            "mb": sum(len(t.encode("utf-8")) for t in texts) / 1e6,
            "tokens_per_second": {k: count / v for k, v in timings.items()},
        }

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "conversations.jsonl"
        with open(path, "w", encoding="utf-8") as out:
            out.writelines(json.dumps(c, ensure_ascii=False) + "\n" for c in base * copies)
        encoded = seqpack.encode(path, tokenizer=directory, template="qwen3", max_length=4096)
        seconds = best(
            lambda: seqpack.encode(path, tokenizer=directory, template="qwen3", max_length=4096),
            max(3, repeat // 2),
        )
        tokens = int(encoded.offsets[-1])
    result["encode"] = {
        "conversations": len(base) * copies,
        "tokens": tokens,
        "tokens_per_second": tokens / seconds,
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--copies", type=int, default=8, help="conversations file = data x N")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.repeat, args.copies)))
        return

    # Rounds interleave the thread counts, and every figure is the best over the rounds: this
    # machine's speed drifts by tens of percent over minutes.
    best_runs: dict[int, dict[str, Any]] = {}
    control: dict[int, float] = {}
    for _ in range(args.rounds):
        for threads in args.threads:
            env = dict(
                os.environ, RAYON_NUM_THREADS=str(threads), RAYON_RS_NUM_THREADS=str(threads)
            )
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    str(threads),
                    "--repeat",
                    str(args.repeat),
                    "--copies",
                    str(args.copies),
                ],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            run = json.loads(out.strip().splitlines()[-1])
            best_runs[threads] = merge_best(best_runs.get(threads), run)
            control[threads] = min(control.get(threads, float("inf")), machine(threads))
    runs = [best_runs[threads] for threads in args.threads]

    first = runs[0]
    print(
        f"seqpack tokenizer benchmark — {os.cpu_count()} cores; Qwen3 tokenizer.json; ids of "
        f"seqpack, quicktok-v1 and tokenizers identical on every text before timing; best of "
        f"{args.repeat}, warm caches\n"
        f"plain: {first['plain']['texts']:,} message contents, {first['plain']['tokens']:,} "
        f"tokens, {first['plain']['mb']:.1f} MB; chat: {first['chat']['texts']:,} rendered "
        f"conversations, {first['chat']['tokens']:,} tokens, {first['chat']['mb']:.1f} MB\n"
    )
    rows = []
    for name in ("plain", "chat"):
        for tokenizer in ("seqpack", "quicktok-v1", "tokenizers"):
            rates = [run[name]["tokens_per_second"][tokenizer] for run in runs]
            ours = [run[name]["tokens_per_second"]["seqpack"] for run in runs]
            rows.append(
                [name, tokenizer]
                + [f"{rate / 1e6:.2f} M" for rate in rates]
                + [f"{rates[-1] / rates[0]:.2f}x" if len(rates) > 1 else "-"]
                + ["-" if tokenizer == "seqpack" else f"{ours[-1] / rates[-1]:.2f}x"]
            )
    rates = [run["encode"]["tokens_per_second"] for run in runs]
    rows.append(
        ["encode", "seqpack (whole)"]
        + [f"{rate / 1e6:.2f} M" for rate in rates]
        + [f"{rates[-1] / rates[0]:.2f}x" if len(rates) > 1 else "-", "-"]
    )
    threads = [f"{run['threads']} thread{'s' if run['threads'] > 1 else ''}" for run in runs]
    print(
        table(
            ["texts", "tokenizer", *threads, f"{threads[-1]} / {threads[0]}", "seqpack is"],
            rows,
        )
    )
    encode = first["encode"]
    low, high = args.threads[0], args.threads[-1]
    print(
        f"\nThis machine's own scaling (control): {high} processes each running a pure-CPU "
        f"loop do {high / low * control[low] / control[high]:.2f}x the work of {low} in the "
        f"same time."
    )
    print(
        f"\nencode: seqpack.encode from a .jsonl of {encode['conversations']:,} conversations "
        f"({encode['tokens']:,} tokens), tokens/s end to end."
    )


if __name__ == "__main__":
    main()
