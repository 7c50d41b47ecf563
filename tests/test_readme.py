"""The README's training example runs as it is written."""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_training_example_runs(tmp_path, monkeypatch, capsys):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Training at any dataset size") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    source = code.group(1).replace(
        '"python/seqpack/data/tokenizer.json"',
        repr(str(ROOT / "python/seqpack/data/tokenizer.json")),
    )
    monkeypatch.chdir(tmp_path)
    exec(compile(source, "README.md", "exec"), {"__name__": "readme"})
    printed = capsys.readouterr().out
    assert "resumes at step 3 of" in printed
    assert os.path.isdir(tmp_path / "readme-store")
