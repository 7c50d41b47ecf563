"""A deterministic synthetic chat dataset and a small tokenizer, both shipped with the
package, so ``seqpack bench`` runs on a fresh machine with nothing downloaded.

The conversations mimic a chat SFT mix: most have a system prompt, one to several turns,
user messages around 20 words and answers around 50 (lognormal), 2% of user messages long
documents (around 600 words), and a tail of long
documents, so lengths span tens to thousands of tokens. The tokenizer is a byte-level BPE
(Qwen2's split pattern, 4,096 tokens) trained on text of the same generator; it is rebuilt
with ``python -m seqpack.cli.synthetic --build-tokenizer`` and stored in ``seqpack/data``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

TOKENIZER_PATH = Path(__file__).resolve().parents[1] / "data" / "tokenizer.json"
SYSTEM_PROMPTS = [
    "You are a helpful assistant.",
    "You are a careful assistant. Answer precisely and cite the steps you take.",
    "You are a customer support agent for an online store. Be polite and concise.",
    "You are a senior engineer reviewing code. Point out bugs first, then style.",
    "You are a tutor. Explain slowly, check understanding, and give one example.",
]
_ONSETS = [
    "b",
    "c",
    "d",
    "f",
    "g",
    "h",
    "k",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "t",
    "v",
    "w",
    "st",
    "tr",
    "pl",
    "ch",
    "sh",
    "th",
    "gr",
    "br",
    "",
]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "ou", "io"]
_CODAS = ["", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ng"]


def _vocabulary(rng: np.random.Generator, size: int = 3000) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        syllables = rng.integers(1, 4)
        words.add(
            "".join(
                _ONSETS[rng.integers(len(_ONSETS))]
                + _VOWELS[rng.integers(len(_VOWELS))]
                + _CODAS[rng.integers(len(_CODAS))]
                for _ in range(syllables)
            )
        )
    return sorted(words)


class _Text:
    """Zipf-distributed pseudo-English with punctuation, numbers and line breaks."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.words = _vocabulary(self.rng)
        ranks = np.arange(1, len(self.words) + 1)
        self.cumulative = np.cumsum(1 / ranks) / (1 / ranks).sum()

    def words_text(self, count: int) -> str:
        count = max(count, 1)
        picks = np.searchsorted(self.cumulative, self.rng.random(count))
        rolls = self.rng.random(count)
        numbers = self.rng.integers(0, 10_000, size=count)
        out = []
        capital = True
        for index, roll, number in zip(
            picks.tolist(), rolls.tolist(), numbers.tolist(), strict=True
        ):
            word = self.words[min(index, len(self.words) - 1)]
            if capital:
                word = word.capitalize()
            capital = False
            if roll < 0.06:
                word += "."
                capital = True
            elif roll < 0.09:
                word += ","
            elif roll < 0.10:
                word = str(number)
            elif roll < 0.105:
                word += ".\n"
                capital = True
            out.append(word)
        return " ".join(out).replace("\n ", "\n")

    def length(self, median: float, sigma: float, cap: int) -> int:
        return int(min(cap, max(1, self.rng.lognormal(np.log(median), sigma))))


def conversations(count: int = 5000, *, seed: int = 0) -> list[dict[str, Any]]:
    """``count`` OpenAI-style chat records, the same for the same seed.

    >>> records = conversations(3)
    >>> [m["role"] for m in records[0]["messages"]][:3]
    ['system', 'user', 'assistant']
    >>> conversations(3) == records
    True
    """
    text = _Text(seed)
    rng = text.rng
    out = []
    for _ in range(count):
        messages = []
        if rng.random() < 0.7:
            messages.append(
                {"role": "system", "content": SYSTEM_PROMPTS[rng.integers(len(SYSTEM_PROMPTS))]}
            )
        turns = int(min(12, rng.geometric(0.55)))
        for _turn in range(turns):
            long_document = rng.random() < 0.02
            user_words = text.length(
                600 if long_document else 20, 0.7 if long_document else 0.9, 4000
            )
            messages.append({"role": "user", "content": text.words_text(user_words)})
            messages.append(
                {"role": "assistant", "content": text.words_text(text.length(50, 0.9, 1500))}
            )
        out.append({"messages": messages})
    return out


# The Qwen2 pre-tokenizer split, which the Rust byte-level BPE fast path reproduces exactly.
QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def build_tokenizer(path: Path = TOKENIZER_PATH) -> None:
    """Train the shipped byte-level BPE on text from the generator (a maintainer's step)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=4096,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = [m["content"] for c in conversations(3000, seed=1) for m in c["messages"]]
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(path))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--build-tokenizer", action="store_true")
    if parser.parse_args().build_tokenizer:
        build_tokenizer()
        print(f"wrote {TOKENIZER_PATH}")
