"""Fetch official chat templates of more model families for the tests, from PyPI.

llama.cpp keeps copies of the Hugging Face chat templates of the models it supports
(models/templates/*.jinja, each the model repository's own `chat_template`), and the
llama-cpp-python source distribution on PyPI vendors llama.cpp. This script downloads that
one pinned file (checked against its sha256), keeps the templates the tests use and nothing
else, and writes them to .venv/seqpack-templates/ (rebuilt with the environment). The
download is cached in ~/.cache/seqpack/, so a second set-up reads no network.

    python .ci/fetch_templates.py [destination]
"""

from __future__ import annotations

import hashlib
import os
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

SDIST = "llama_cpp_python-0.3.36.tar.gz"
URL = (
    "https://files.pythonhosted.org/packages/ec/e9/"
    "e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/" + SDIST
)
SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
FOLDER = "llama_cpp_python-0.3.36/vendor/llama.cpp/models/templates/"
TEMPLATES = (
    "google-gemma-2-2b-it.jinja",
    "google-gemma-4-31B-it.jinja",
    "microsoft-Phi-3.5-mini-instruct.jinja",
    "mistralai-Mistral-Nemo-Instruct-2407.jinja",
    "Mistral-Small-3.2-24B-Instruct-2506.jinja",
    "mistralai-Ministral-3-14B-Reasoning-2512.jinja",
    "deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja",
    "GLM-4.6.jinja",
    "GLM-4.7-Flash.jinja",
    "meta-llama-Llama-3.2-3B-Instruct.jinja",
    "meta-llama-Llama-3.3-70B-Instruct.jinja",
    "Qwen3.5-4B.jinja",
)


def sdist() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "seqpack"
    path = cache / SDIST
    if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == SHA256:
        return path
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=cache, delete=False) as part:
        with urllib.request.urlopen(URL, timeout=120) as response:
            while chunk := response.read(1 << 20):
                part.write(chunk)
    digest = hashlib.sha256(Path(part.name).read_bytes()).hexdigest()
    if digest != SHA256:
        Path(part.name).unlink()
        raise SystemExit(f"{URL}: sha256 {digest}, expected {SHA256}")
    Path(part.name).replace(path)
    return path


def main() -> None:
    destination = Path(sys.argv[1] if len(sys.argv) > 1 else ".venv/seqpack-templates")
    if all((destination / name).is_file() for name in TEMPLATES):
        return
    wanted = {FOLDER + name: name for name in TEMPLATES}
    destination.mkdir(parents=True, exist_ok=True)
    with tarfile.open(sdist(), "r:gz") as archive:
        for member in archive:
            if member.name in wanted and member.isfile():
                source = archive.extractfile(member)
                assert source is not None
                (destination / wanted.pop(member.name)).write_bytes(source.read())
    if wanted:
        raise SystemExit(f"{SDIST} lacks {sorted(wanted.values())}")


if __name__ == "__main__":
    main()
