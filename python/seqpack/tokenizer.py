"""Which tokenizer and chat template a conversation is rendered and tokenized with.

A tokenizer comes in as a path (a ``tokenizer.json``, or a folder holding one and perhaps a
``tokenizer_config.json``), a ``tokenizers.Tokenizer``, or a transformers fast tokenizer.
All become one native handle that tokenizes in Rust without the GIL; loads are cached so
repeated calls do not re-read an 11 MB file. A template is a built-in name, a Jinja
``chat_template`` string, a ``tokenizer_config.json`` path, or ``None`` for the tokenizer's
own template.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqpack import _seqpack
from seqpack.errors import InvalidOptionError, TokenizerError

BUILTIN_TEMPLATES = ("qwen3", "chatml", "qwen2.5", "llama3", "mistral")


@dataclass(frozen=True, eq=False)
class ChatTokenizer:
    """A loaded tokenizer plus what its config says about chat templates."""

    native: _seqpack.NativeTokenizer
    chat_template: str | None = None
    bos_token: str = ""
    eos_token: str = ""

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, no special tokens added (as ``tokenizers`` gives them)."""
        ids, _offsets = self.native.encode(text)
        return list(ids)


_cache: dict[Any, ChatTokenizer] = {}
_cache_lock = threading.Lock()


def _token_text(value: Any) -> str:
    if isinstance(value, dict):  # {"content": "<|im_end|>", ...} in some configs
        return str(value.get("content", ""))
    return "" if value is None else str(value)


def _from_folder(folder: Path) -> ChatTokenizer:
    file = folder / "tokenizer.json"
    if not file.is_file():
        raise TokenizerError(f"tokenizer: {folder} holds no tokenizer.json")
    config_file = folder / "tokenizer_config.json"
    config: dict[str, Any] = {}
    if config_file.is_file():
        config = json.loads(config_file.read_text(encoding="utf-8"))
    template = config.get("chat_template")
    if isinstance(template, list):  # named templates: take "default"
        template = next((t["template"] for t in template if t.get("name") == "default"), None)
    return ChatTokenizer(
        _seqpack.NativeTokenizer(file.read_text(encoding="utf-8")),
        template,
        _token_text(config.get("bos_token")),
        _token_text(config.get("eos_token")),
    )


def load_tokenizer(tokenizer: Any) -> ChatTokenizer:
    """Resolve any accepted tokenizer to a :class:`ChatTokenizer` (cached)."""
    if isinstance(tokenizer, ChatTokenizer):
        return tokenizer
    if isinstance(tokenizer, (str, os.PathLike)):
        path = Path(tokenizer)
        key: Any = ("path", str(path.resolve()), path.stat().st_mtime_ns if path.exists() else 0)
        with _cache_lock:
            if key in _cache:
                return _cache[key]
        if path.is_dir():
            loaded = _from_folder(path)
        elif path.is_file():
            loaded = _from_folder(path.parent) if path.name == "tokenizer.json" else ChatTokenizer(
                _seqpack.NativeTokenizer(path.read_text(encoding="utf-8"))
            )
        else:
            raise TokenizerError(f"tokenizer: {path} does not exist")
    elif hasattr(tokenizer, "backend_tokenizer"):  # transformers fast tokenizer
        key = ("transformers", id(tokenizer))
        with _cache_lock:
            if key in _cache:
                return _cache[key]
        loaded = ChatTokenizer(
            _seqpack.NativeTokenizer(tokenizer.backend_tokenizer.to_str()),
            getattr(tokenizer, "chat_template", None),
            _token_text(getattr(tokenizer, "bos_token", None)),
            _token_text(getattr(tokenizer, "eos_token", None)),
        )
    elif hasattr(tokenizer, "to_str") and hasattr(tokenizer, "encode_batch"):  # tokenizers
        key = ("tokenizers", id(tokenizer))
        with _cache_lock:
            if key in _cache:
                return _cache[key]
        loaded = ChatTokenizer(_seqpack.NativeTokenizer(tokenizer.to_str()))
    else:
        raise InvalidOptionError(
            "option tokenizer: expected a tokenizer.json path, a folder, a tokenizers.Tokenizer "
            f"or a transformers fast tokenizer, got {type(tokenizer).__name__}"
        )
    with _cache_lock:
        _cache[key] = loaded
    return loaded


def load_template(template: str | os.PathLike[str] | None, tokenizer: ChatTokenizer,
                  end_of_turn: str | None = None) -> _seqpack.NativeTemplate:
    """Resolve a template choice to a native template."""
    if template is None:
        if tokenizer.chat_template is None:
            raise InvalidOptionError(
                "option template: the tokenizer carries no chat_template; pass template= one "
                f"of {', '.join(BUILTIN_TEMPLATES)}, a Jinja string or a tokenizer_config.json"
            )
        source, bos, eos = tokenizer.chat_template, tokenizer.bos_token, tokenizer.eos_token
    elif isinstance(template, str) and template in BUILTIN_TEMPLATES:
        return _seqpack.NativeTemplate.builtin(template)
    elif isinstance(template, str) and ("{%" in template or "{{" in template):
        source, bos, eos = template, tokenizer.bos_token, tokenizer.eos_token
    elif isinstance(template, (str, os.PathLike)) and Path(template).is_file():
        config = json.loads(Path(template).read_text(encoding="utf-8"))
        source = config.get("chat_template")
        if not isinstance(source, str):
            raise InvalidOptionError(f"option template: {template} has no chat_template string")
        bos, eos = _token_text(config.get("bos_token")), _token_text(config.get("eos_token"))
    else:
        raise InvalidOptionError(
            f"option template: unknown template {template!r}; expected one of "
            f"{', '.join(BUILTIN_TEMPLATES)}, a Jinja string, or a tokenizer_config.json path"
        )
    return _seqpack.NativeTemplate.jinja(source, end_of_turn or eos, bos, eos)
