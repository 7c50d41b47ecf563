"""What a training step costs and what fits: the model behind ``seqpack bench``'s advice.

**Compute.** A training step (forward + backward) of a decoder with ``N`` parameters,
``layers`` layers and hidden size ``d`` costs, in FLOPs (Kaplan et al. 2020, "Scaling Laws
for Neural Language Models", table 1, with the causal half of attention skipped as
FlashAttention does)::

    6 · N · (tokens computed)            linear term: every position of every row, padding too
  + 6 · layers · d · Σ l²                attention term: each sequence attends to itself only

``tokens computed`` is rows × row width for packed rows and padded batches (a padding token
costs as much as a real one), the real tokens only for the padding-free format. ``Σ l²`` is
over the sequences a step holds: block-diagonal (packed) or unpadded (FlashAttention-2 with a
padding mask) attention never looks across sequences. Modelled seconds are FLOPs over
``tflops`` (sustained, not peak: an H100's bf16 dense peak is 989 TFLOP/s, and 40% of it is a
good run). Under ``seqpack bench --gpu`` the two constants are measured on the device instead
(seconds per token and per l² of a small real model, fitted from timed steps).

**Memory** (``--gpu-memory``), per GPU, for mixed-precision AdamW with the weights, gradients
and optimizer state sharded over ``world_size`` ranks (ZeRO-3 / FSDP)::

    16 B · N / world_size                bf16 weights and gradients, fp32 master weights, Adam m, v
  + tokens · (34 · d · layers + 8 · vocab) B
                                         activations without recomputation (Korthikanti et al.
                                         2022, "Reducing Activation Recomputation", with
                                         FlashAttention), fp32 logits and their gradient
  + 2 GiB                                CUDA context, allocator slack

and 10% of the card kept free. It is an estimate to start from; ``--gpu`` measures the real
thing for a small model, and a real run's peak memory is the final word.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from seqpack.errors import InvalidOptionError


@dataclass(frozen=True)
class ModelShape:
    """What the cost and memory models need of a model (from its public ``config.json``)."""

    name: str
    params: float
    layers: int
    hidden: int
    vocab: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


MODELS: dict[str, ModelShape] = {
    shape.name: shape
    for shape in (
        ModelShape("qwen3-0.6b", 0.6e9, 28, 1024, 151_936),
        ModelShape("qwen3-1.7b", 1.7e9, 28, 2048, 151_936),
        ModelShape("qwen3-4b", 4.0e9, 36, 2560, 151_936),
        ModelShape("llama3-8b", 8.0e9, 32, 4096, 128_256),
        ModelShape("qwen3-14b", 14.8e9, 40, 5120, 151_936),
        ModelShape("llama3-70b", 70.6e9, 80, 8192, 128_256),
    )
}
DEFAULT_MODEL = "llama3-8b"
DEFAULT_TFLOPS = 400.0

GIB = 2**30
STATE_BYTES_PER_PARAM = 16
ACTIVATION_BYTES_PER_LAYER_HIDDEN = 34
LOGIT_BYTES_PER_VOCAB = 8
OVERHEAD_BYTES = 2 * GIB
FREE_FRACTION = 0.10


def model(name: str) -> ModelShape:
    try:
        return MODELS[name.lower()]
    except KeyError:
        known = ", ".join(MODELS)
        raise InvalidOptionError(f"option model: unknown model {name!r}; known: {known}") from None


@dataclass(frozen=True)
class CostModel:
    """Seconds of a training step: ``per_token`` × tokens computed + ``per_square`` × Σ l²."""

    per_token: float
    per_square: float
    source: str
    """How the constants were obtained, said in the report."""

    @classmethod
    def from_flops(cls, shape: ModelShape, tflops: float) -> CostModel:
        if not tflops > 0:
            raise InvalidOptionError(f"option tflops: must be > 0, got {tflops}")
        rate = tflops * 1e12
        return cls(
            6 * shape.params / rate,
            6 * shape.layers * shape.hidden / rate,
            f"modelled: {shape.name} at {tflops:g} TFLOP/s sustained (6·N per token, "
            f"6·layers·d per l²)",
        )

    def seconds(self, tokens_computed: float, squares: float) -> float:
        return self.per_token * tokens_computed + self.per_square * squares

    def attention_share(self, tokens_computed: float, squares: float) -> float:
        total = self.seconds(tokens_computed, squares)
        return self.per_square * squares / total if total else 0.0


def tokens_for_memory(
    gpu_memory_gib: float, shape: ModelShape, world_size: int = 1
) -> tuple[int, dict[str, float]]:
    """The token budget of one micro-batch on a card of ``gpu_memory_gib``, by the estimate in
    this module's docstring, and the terms of the estimate (GiB)."""
    if not gpu_memory_gib > 0:
        raise InvalidOptionError(f"option gpu_memory: must be > 0 GiB, got {gpu_memory_gib}")
    if world_size < 1:
        raise InvalidOptionError(f"option world_size: must be >= 1, got {world_size}")
    usable = gpu_memory_gib * GIB * (1 - FREE_FRACTION)
    states = STATE_BYTES_PER_PARAM * shape.params / world_size
    per_token = (
        ACTIVATION_BYTES_PER_LAYER_HIDDEN * shape.hidden * shape.layers
        + LOGIT_BYTES_PER_VOCAB * shape.vocab
    )
    left = usable - states - OVERHEAD_BYTES
    terms = {
        "usable_gib": usable / GIB,
        "states_gib": states / GIB,
        "overhead_gib": OVERHEAD_BYTES / GIB,
        "per_token_mib": per_token / 2**20,
    }
    if left < per_token:
        raise InvalidOptionError(
            f"option gpu_memory: {shape.name} does not fit {gpu_memory_gib:g} GiB on "
            f"{world_size} GPU(s) by this estimate: weights, gradients and optimizer state "
            f"take {states / GIB:.1f} GiB of {usable / GIB:.1f} usable; add GPUs "
            "(--world-size) or use a smaller --model"
        )
    return math.floor(left / per_token), terms


def parse_fraction(text: str) -> float:
    """``"1%"`` or ``"0.01"`` → 0.01."""
    value = text.strip()
    try:
        number = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        raise InvalidOptionError(
            f"option max_truncated: expected a fraction like 0.01 or 1%, got {text!r}"
        ) from None
    if not 0 <= number <= 1:
        raise InvalidOptionError(f"option max_truncated: must be within 0..100%, got {text!r}")
    return number


__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_TFLOPS",
    "MODELS",
    "CostModel",
    "ModelShape",
    "model",
    "parse_fraction",
    "tokens_for_memory",
]
