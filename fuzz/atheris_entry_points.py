"""Coverage-guided fuzzing (atheris, libFuzzer) of seqpack's Python entry points.

Every input must end in a result or a typed ``seqpack.SeqpackError`` (or the documented
``TypeError``/``ValueError`` of a wrong argument type) — never another exception, a crash or
a hang — and what comes back must hold the invariants users rely on.

  pack     random token sequences, labels and options → seqpack.pack: every input token is
           in a row or in the report (dropped/truncated), rows are max_length wide, labels
           are -100 or the token
  encode   random chat records (roles, contents with special-token text, tool calls, odd
           types) → seqpack.encode with the shipped tokenizer, on_error="skip": a report per
           record, and every kept sample within max_length
  jsonl    random bytes as a .jsonl file → seqpack.encode(path, on_error="skip")
  store    a valid token store with random bytes overwritten or files truncated →
           seqpack.store.open and reading every sample

  .venv/bin/pip install atheris==3.0.0
  .venv/bin/python fuzz/atheris_entry_points.py pack -max_total_time=120 fuzz/corpus/pack
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import atheris

with atheris.instrument_imports():
    import numpy as np

    import seqpack
    from seqpack.cli import synthetic

ALLOWED = (seqpack.SeqpackError,)
TOKENIZER = synthetic.TOKENIZER_PATH
SPECIAL = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>"]


def pack_target(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    count = fdp.ConsumeIntInRange(0, 12)
    sequences = [
        fdp.ConsumeIntListInRange(fdp.ConsumeIntInRange(0, 40), -3, 70_000) for _ in range(count)
    ]
    with_labels = fdp.ConsumeBool()
    labels = (
        [[t if fdp.ConsumeBool() else -100 for t in s] for s in sequences] if with_labels else None
    )
    options: dict[str, Any] = {
        "max_length": fdp.ConsumeIntInRange(0, 48),
        "strategy": fdp.PickValueInList(["bfd", "ffd", "sequential", "wrapped"]),
        "overlong": fdp.PickValueInList(["error", "drop", "truncate", "split"]),
        "max_seqs_per_row": fdp.PickValueInList([None, 0, 1, 3]),
        "pad_rows_to_multiple_of": fdp.ConsumeIntInRange(0, 3),
        "loss_weights": fdp.PickValueInList([None, "token", "sequence"]),
    }
    try:
        batch = seqpack.pack(sequences, labels=labels, **options)
    except ALLOWED:
        return
    stats = batch.stats
    lost = stats.dropped_tokens + stats.truncated_tokens
    assert stats.real_tokens + lost == sum(len(s) for s in sequences), (stats, sequences)
    assert batch.input_ids.shape[1] == options["max_length"]
    real = batch.segment_ids > 0
    assert int(real.sum()) == stats.real_tokens
    trained = batch.labels != -100
    assert np.array_equal(batch.labels[trained], batch.input_ids[trained]) or with_labels


def _text(fdp: atheris.FuzzedDataProvider) -> Any:
    kind = fdp.ConsumeIntInRange(0, 6)
    if kind == 0:
        return fdp.ConsumeIntInRange(-5, 5)
    if kind == 1:
        return None
    if kind == 2:
        return fdp.PickValueInList(SPECIAL) + fdp.ConsumeUnicodeNoSurrogates(8)
    return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 60))


def encode_target(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    records: list[Any] = []
    for _ in range(fdp.ConsumeIntInRange(1, 4)):
        messages: list[Any] = []
        for _ in range(fdp.ConsumeIntInRange(0, 6)):
            message: dict[str, Any] = {
                "role": fdp.PickValueInList(["system", "user", "assistant", "tool", "bot", 3]),
                "content": _text(fdp),
            }
            if fdp.ConsumeIntInRange(0, 7) == 0:
                message["tool_calls"] = [
                    {"type": "function", "function": {"name": _text(fdp), "arguments": _text(fdp)}}
                ]
            if fdp.ConsumeIntInRange(0, 9) == 0:
                message = {"from": "gpt", "value": _text(fdp)}
            messages.append(message)
        records.append({"messages": messages} if fdp.ConsumeIntInRange(0, 9) else messages)
    max_length = fdp.ConsumeIntInRange(1, 200)
    policy = fdp.PickValueInList(["keep", "escape", "error"])
    try:
        encoded = seqpack.encode(
            records,
            tokenizer=TOKENIZER,
            template="qwen3",
            max_length=max_length,
            on_error="skip",
            special_tokens_in_content=policy,
            keep_first_turn=fdp.ConsumeBool(),
        )
    except ALLOWED:
        return
    assert len(encoded.report.records) == len(records)
    lengths = np.diff(encoded.offsets)
    assert (lengths <= max_length).all() and (lengths > 0).all()
    assert len(encoded.labels) == len(encoded.tokens)


def jsonl_target(data: bytes) -> None:
    folder = Path(tempfile.mkdtemp(prefix="seqpack-fuzz-"))
    try:
        path = folder / "records.jsonl"
        path.write_bytes(data)
        try:
            encoded = seqpack.encode(
                path, tokenizer=TOKENIZER, template="qwen3", max_length=64, on_error="skip"
            )
        except ALLOWED:
            return
        assert len(encoded.labels) == len(encoded.tokens)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


_STORE: Path | None = None


def _store() -> Path:
    global _STORE
    if _STORE is None:
        folder = Path(tempfile.mkdtemp(prefix="seqpack-fuzz-store-"))
        seqpack.store.write(folder / "store", [[1, 2, 3], [4, 5], list(range(6, 40))])
        _STORE = folder / "store"
    return _STORE


def store_target(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    folder = Path(tempfile.mkdtemp(prefix="seqpack-fuzz-"))
    try:
        copy = folder / "store"
        shutil.copytree(_store(), copy)
        files = sorted(p for p in copy.iterdir() if p.is_file())
        for _ in range(fdp.ConsumeIntInRange(1, 3)):
            target = files[fdp.ConsumeIntInRange(0, len(files) - 1)]
            content = bytearray(target.read_bytes())
            if fdp.ConsumeBool() and content:
                content = content[: fdp.ConsumeIntInRange(0, len(content) - 1)]
            elif content:
                at = fdp.ConsumeIntInRange(0, len(content) - 1)
                patch = fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 8))
                content[at : at + len(patch)] = patch
            target.write_bytes(bytes(content))
        try:
            store = seqpack.store.open(copy)
            for i in range(len(store)):
                tokens, labels = store[i]
                assert len(tokens) == len(labels) == store.lengths[i]
        except ALLOWED:
            return
    finally:
        shutil.rmtree(folder, ignore_errors=True)


TARGETS = {
    "pack": pack_target,
    "encode": encode_target,
    "jsonl": jsonl_target,
    "store": store_target,
}


def main() -> None:
    name = sys.argv[1]
    os.environ.setdefault("SEQPACK_FUZZ", "1")
    atheris.Setup([sys.argv[0], *sys.argv[2:]], TARGETS[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
