"""Which tokenizer and chat template a conversation is rendered and tokenized with.

A tokenizer comes in as a path (a ``tokenizer.json``, or a folder holding one and perhaps a
``tokenizer_config.json``), a ``tokenizers.Tokenizer``, or a transformers fast tokenizer.
All become one native handle that tokenizes in Rust without the GIL; loads are cached so
repeated calls do not re-read an 11 MB file. A template is a built-in name, a Jinja
``chat_template`` string, a ``tokenizer_config.json`` path, or ``None`` for the tokenizer's
own template.

The exact byte-level BPE fast path (Qwen2/2.5/3, Llama-3 style ``tokenizer.json``) is used
where it applies; ``fast=False`` or the environment variable ``SEQPACK_FAST_TOKENIZER=0``
sends every text through the ``tokenizers`` library instead.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqpack import _seqpack
from seqpack.errors import InvalidOptionError, TokenizerError

BUILTIN_TEMPLATES = (
    "qwen3",
    "chatml",
    "qwen2.5",
    "llama3.0",
    "llama3",
    "llama3.1",
    "llama3.2",
    "llama3.3",
    "deepseek-v3.1",
    "deepseek-r1",
    "mistral",
    "mistral-nemo",
    "gemma2",
    "gemma3",
    "phi3.5",
    "phi4",
    "glm4.6",
    "glm4.7",
)


@dataclass(frozen=True, eq=False)
class ChatTokenizer:
    """A loaded tokenizer plus what its config says about chat templates."""

    native: _seqpack.NativeTokenizer
    chat_template: str | None = None
    bos_token: str = ""
    eos_token: str = ""


_CACHE_SIZE = 8
# (key, the object or file stamps it was made from, the loaded tokenizer), newest last.
_cache: list[tuple[Any, Any, ChatTokenizer]] = []
_cache_lock = threading.Lock()


def _token_text(value: Any) -> str:
    if isinstance(value, dict):  # {"content": "<|im_end|>", ...} in some configs
        return str(value.get("content", ""))
    return "" if value is None else str(value)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TokenizerError(f"tokenizer: {path} is not UTF-8 text ({exc.reason})") from None


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise TokenizerError(
            f"tokenizer: {path}, line {exc.lineno}: not valid JSON ({exc.msg})"
        ) from None
    if not isinstance(config, dict):
        raise TokenizerError(f"tokenizer: {path} is not a JSON object")
    return config


def _template_from_config(config: dict[str, Any], path: Path) -> str | None:
    template = config.get("chat_template")
    if isinstance(template, list):  # named templates: take "default"
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    if template is not None and not isinstance(template, str):
        raise TokenizerError(f"tokenizer: {path}: chat_template is not a string")
    return template


def fast_default(fast: bool | None) -> bool:
    """``fast`` as given, else what ``SEQPACK_FAST_TOKENIZER`` says (default: on)."""
    if fast is not None:
        return bool(fast)
    return os.environ.get("SEQPACK_FAST_TOKENIZER", "1").strip().lower() not in (
        "0",
        "false",
        "no",
        "off",
    )


def _native(json_text: str, fast: bool) -> _seqpack.NativeTokenizer:
    return _seqpack.NativeTokenizer(json_text, fast=fast)


def _from_folder(folder: Path, fast: bool) -> ChatTokenizer:
    file = folder / "tokenizer.json"
    if not file.is_file():
        raise TokenizerError(f"tokenizer: {folder} holds no tokenizer.json")
    config_file = folder / "tokenizer_config.json"
    config = _read_config(config_file) if config_file.is_file() else {}
    template = _template_from_config(config, config_file)
    # Newer Hugging Face folders keep the template in its own file.
    jinja_file = folder / "chat_template.jinja"
    if template is None and jinja_file.is_file():
        template = _read_text(jinja_file)
    return ChatTokenizer(
        _native(_read_text(file), fast),
        template,
        _token_text(config.get("bos_token")),
        _token_text(config.get("eos_token")),
    )


def _stamps(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """What identifies a folder's tokenizer files as they are now."""
    out = []
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        file = folder / name
        if file.is_file():
            stat = file.stat()
            out.append((name, stat.st_mtime_ns, stat.st_size))
    return tuple(out)


def _cached(key: Any, source: Any, load: Callable[[], ChatTokenizer]) -> ChatTokenizer:
    """A small cache: an object is found only if it is the very object cached (the entry
    keeps it alive, so its id is never reused), a path only if its files are unchanged."""

    def same(cached: Any) -> bool:
        return bool(cached == source) if isinstance(source, tuple) else cached is source

    with _cache_lock:
        for cached_key, cached_source, loaded in _cache:
            if cached_key == key and same(cached_source):
                return loaded
    loaded = load()
    with _cache_lock:
        _cache.append((key, source, loaded))
        del _cache[:-_CACHE_SIZE]
    return loaded


def load_tokenizer(tokenizer: Any, *, fast: bool | None = None) -> ChatTokenizer:
    """Resolve any accepted tokenizer to a :class:`ChatTokenizer` (cached)."""
    if isinstance(tokenizer, ChatTokenizer):
        return tokenizer
    use_fast = fast_default(fast)
    if isinstance(tokenizer, (str, os.PathLike)):
        path = Path(tokenizer)
        if not path.exists():
            raise TokenizerError(f"tokenizer: {path} does not exist")
        folder = path if path.is_dir() else path.parent
        if path.is_dir() or path.name == "tokenizer.json":
            return _cached(
                ("folder", str(folder.resolve()), use_fast),
                _stamps(folder),
                lambda: _from_folder(folder, use_fast),
            )
        stat = path.stat()
        return _cached(
            ("file", str(path.resolve()), use_fast),
            (stat.st_mtime_ns, stat.st_size),
            lambda: ChatTokenizer(_native(_read_text(path), use_fast)),
        )
    if hasattr(tokenizer, "backend_tokenizer"):  # transformers fast tokenizer

        def load_transformers() -> ChatTokenizer:
            return ChatTokenizer(
                _native(tokenizer.backend_tokenizer.to_str(), use_fast),
                getattr(tokenizer, "chat_template", None),
                _token_text(getattr(tokenizer, "bos_token", None)),
                _token_text(getattr(tokenizer, "eos_token", None)),
            )

        loaded = _cached(("transformers", id(tokenizer), use_fast), tokenizer, load_transformers)
        # The template and special tokens are read fresh: users change them on the object.
        return ChatTokenizer(
            loaded.native,
            getattr(tokenizer, "chat_template", None),
            _token_text(getattr(tokenizer, "bos_token", None)),
            _token_text(getattr(tokenizer, "eos_token", None)),
        )
    if hasattr(tokenizer, "to_str") and hasattr(tokenizer, "encode_batch"):  # tokenizers
        return _cached(
            ("tokenizers", id(tokenizer), use_fast),
            tokenizer,
            lambda: ChatTokenizer(_native(tokenizer.to_str(), use_fast)),
        )
    raise InvalidOptionError(
        "option tokenizer: expected a tokenizer.json path, a folder, a tokenizers.Tokenizer "
        f"or a transformers fast tokenizer, got {type(tokenizer).__name__}"
    )


def load_template(
    template: str | os.PathLike[str] | None,
    tokenizer: ChatTokenizer,
    end_of_turn: str | None = None,
) -> _seqpack.NativeTemplate:
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
        path = Path(template)
        if path.suffix == ".jinja":  # a bare template file
            source, bos, eos = _read_text(path), tokenizer.bos_token, tokenizer.eos_token
        else:
            config = _read_config(path)
            found = _template_from_config(config, path)
            if found is None:
                raise InvalidOptionError(f"option template: {path} has no chat_template string")
            source = found
            bos, eos = _token_text(config.get("bos_token")), _token_text(config.get("eos_token"))
    else:
        raise InvalidOptionError(
            f"option template: unknown template {template!r}; expected one of "
            f"{', '.join(BUILTIN_TEMPLATES)}, a Jinja string, a tokenizer_config.json or a "
            ".jinja file"
        )
    return _seqpack.NativeTemplate.jinja(source, end_of_turn or eos, bos, eos)
