"""The README's examples run as they are written (from the repository root, here from a
temporary folder with the shipped tokenizer's path made absolute)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_example(heading: str, folder: Path, monkeypatch, capsys) -> str:
    """Run the first Python block under ``heading`` in ``folder``; what it printed."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index(heading) :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    source = code.group(1).replace(
        '"python/seqpack/data/tokenizer.json"',
        repr(str(ROOT / "python/seqpack/data/tokenizer.json")),
    )
    monkeypatch.chdir(folder)
    exec(compile(source, "README.md", "exec"), {"__name__": "readme"})
    return str(capsys.readouterr().out)


def test_the_training_example_runs(tmp_path, monkeypatch, capsys):
    printed = run_example("## Training at any dataset size", tmp_path, monkeypatch, capsys)
    assert "resumes at step 3 of" in printed
    assert os.path.isdir(tmp_path / "readme-store")


def test_the_stream_example_runs(tmp_path, monkeypatch, capsys):
    printed = run_example("### Streams", tmp_path, monkeypatch, capsys)
    found = re.search(r"resumed after (\d+) of (\d+) batches; (\d+) to go", printed)
    assert found is not None, printed
    done, steps, rest = map(int, found.groups())
    assert done == 10 and done + rest == steps


def test_the_ray_example_runs(tmp_path, monkeypatch, capsys):
    pytest.importorskip("ray", reason="the seqpack[ray] extra is not installed")
    printed = run_example("### Ray Data", tmp_path, monkeypatch, capsys)
    found = re.search(r"-> (\d+) rows; (\d+) steps", printed)
    assert found is not None, printed
    rows, steps = map(int, found.groups())
    assert rows > 0 and steps == -(-rows // 8)
    assert any((tmp_path / "readme-packed").glob("*.parquet"))
