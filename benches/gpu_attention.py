"""Every PackedLoader batch, splatted into a random-weight Llama on a GPU, gives each sequence
the logits it gets alone: eager, SDPA, FlexAttention and FlashAttention-2, in bfloat16.

The CPU tests (``tests/consumers``) prove this for eager and SDPA in float64. This program
checks what only a GPU runs: the padding-free format through transformers' own
FlashAttention-2 code path (``_flash_attention_forward`` → ``flash_attn_varlen_func`` with the
batch's ``cu_seq_lens_q/k``) and FlexAttention compiled by Triton with the batch's BlockMask.

The FlashAttention-2 kernel: the ``flash-attn`` package ships no wheels on PyPI (only sources
that take hours to build), so the kernel is PyTorch's own copy of the FlashAttention-2 sources
(``torch.ops.aten._flash_attention_forward``), put under the names transformers imports from
``flash_attn`` by a small shim written to a temporary folder. Everything around the kernel
(unpadding, cu_seqlens from the batch, the varlen call) is transformers' code, unchanged.

How a configuration is judged, per sequence: ``truth`` is the sequence alone in float32
(SDPA); ``alone`` is the sequence alone with the configuration's attention and dtype;
``packed`` is the sequence inside the loader's batch. Packing is exact when packed is as
close to the truth as alone is (bfloat16 rounding differs between batch shapes, so equality
is not expected): ``err(packed) <= 2 * err(alone) + atol``. A leak control runs the same
batch with ``input_ids`` alone (one long causal row): its error must be far larger, or the
check could not have failed. The loss of every batch must be finite and match the float32
token mean of the sequences alone.

Usage::

    python benches/gpu_attention.py --device cuda --out gpu_attention.json
    python benches/gpu_attention.py --device cpu --configs sdpa-rows,flash-padding_free  # plumbing

On the CPU the shim's kernel is a per-sequence SDPA loop (to test the plumbing only).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import textwrap
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch

import seqpack
import seqpack.torch as sptorch

VOCAB = 1024

# (name, attn_implementation, format, mask)
CONFIGS: list[tuple[str, str, sptorch.Format, sptorch.Mask | None]] = [
    ("eager-rows", "eager", "rows", "eager"),
    ("sdpa-rows", "sdpa", "rows", "sdpa"),
    ("sdpa-rows-nomask", "sdpa", "rows", None),
    ("flex-rows", "flex_attention", "rows", "flex"),
    ("sdpa-padding_free", "sdpa", "padding_free", None),
    ("flash-rows-nomask", "flash_attention_2", "rows", None),
    ("flash-padding_free", "flash_attention_2", "padding_free", None),
]

SHIM = '''
"""flash_attn's entry points on PyTorch's copy of the FlashAttention-2 kernel."""
import torch

__version__ = "2.8.3"


def _kernel(q, k, v, cu_q, cu_k, max_q, max_k, dropout_p, scale, causal):
    if q.device.type == "cuda":
        out = torch.ops.aten._flash_attention_forward(
            q, k, v, cu_q.to(torch.int32), cu_k.to(torch.int32), int(max_q), int(max_k),
            float(dropout_p), bool(causal), False, scale=scale,
        )
        return out[0]
    # CPU: each sequence alone through SDPA (plumbing tests only).
    import torch.nn.functional as F
    outs = []
    bounds = cu_q.tolist()
    for s, e in zip(bounds[:-1], bounds[1:]):
        qs, ks, vs = (x[s:e].transpose(0, 1) for x in (q, k, v))
        outs.append(F.scaled_dot_product_attention(
            qs, ks, vs, is_causal=causal, scale=scale, enable_gqa=True
        ).transpose(0, 1))
    return torch.cat(outs)


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                           dropout_p=0.0, softmax_scale=None, causal=False, deterministic=False):
    return _kernel(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                   dropout_p, softmax_scale, causal)


def flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False,
                    deterministic=False):
    b, s = q.shape[:2]
    cu_q = torch.arange(0, (b + 1) * s, s, device=q.device, dtype=torch.int32)
    sk = k.shape[1]
    cu_k = torch.arange(0, (b + 1) * sk, sk, device=q.device, dtype=torch.int32)
    out = _kernel(q.reshape(b * s, *q.shape[2:]), k.reshape(b * sk, *k.shape[2:]),
                  v.reshape(b * sk, *v.shape[2:]), cu_q, cu_k, s, sk, dropout_p,
                  softmax_scale, causal)
    return out.reshape(b, s, *out.shape[1:])


flash_attn_with_kvcache = None
'''

BERT_PADDING = """
from transformers.modeling_flash_attention_utils import _pad_input as pad_input
from transformers.modeling_flash_attention_utils import _unpad_input as unpad_input
"""


def install_flash_shim() -> str:
    """Write the ``flash_attn`` shim (with its distribution metadata, which transformers
    checks) to a temporary folder and put it first on ``sys.path``."""
    root = Path(tempfile.mkdtemp(prefix="flash_shim_"))
    package = root / "flash_attn"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent(SHIM))
    (package / "bert_padding.py").write_text(BERT_PADDING)
    info = root / "flash_attn-2.8.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: flash-attn\nVersion: 2.8.3\n")
    (info / "top_level.txt").write_text("flash_attn\n")
    (info / "RECORD").write_text("flash_attn/__init__.py,,\nflash_attn/bert_padding.py,,\n")
    sys.path.insert(0, str(root))
    return str(root)


def model_for(attention: str, dtype: torch.dtype, device: torch.device) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cpu_flash = attention == "flash_attention_2" and device.type == "cpu"
    config = LlamaConfig(  # type: ignore[call-arg]
        vocab_size=VOCAB,
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=4,
        max_position_embeddings=4096,
        initializer_range=0.1,
        attn_implementation="sdpa" if cpu_flash else attention,
    )
    model = LlamaForCausalLM(config).to(device=device, dtype=dtype).eval()  # type: ignore[call-arg]
    if cpu_flash:  # transformers refuses FlashAttention on the CPU: plumbing runs only
        model.config._attn_implementation = attention
    return model


def spans_of(batch: dict[str, Any]) -> list[tuple[int, int, int]]:
    """(row, start, end) of every sequence in a batch."""
    if "segment_ids" not in batch:  # padding-free
        bounds = batch["cu_seq_lens_q"].tolist()
        return [(0, bounds[k], bounds[k + 1]) for k in range(len(bounds) - 1)]
    segments = batch["segment_ids"].cpu()
    spans = []
    for row in range(segments.shape[0]):
        for seg in segments[row].unique().tolist():
            if seg > 0:
                cols = (segments[row] == seg).nonzero().flatten()
                spans.append((row, int(cols[0]), int(cols[-1]) + 1))
    return spans


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    moved = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            moved[key] = value.to(device)
        elif hasattr(value, "to") and not isinstance(value, (int, float, bool)):
            moved[key] = value.to(device)  # a FlexAttention BlockMask
        else:
            moved[key] = value
    return moved


def token_mean_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, int]:
    loss = torch.nn.functional.cross_entropy(
        logits[:-1].float(), labels[1:], ignore_index=-100, reduction="sum"
    )
    return float(loss), int((labels[1:] != -100).sum())


def check(
    name: str,
    attention: str,
    fmt: sptorch.Format,
    mask: sptorch.Mask | None,
    store: Any,
    sequences: list[np.ndarray],
    labels: list[np.ndarray],
    truth: dict[int, torch.Tensor],
    device: torch.device,
    dtype: torch.dtype,
) -> dict[str, Any]:
    model = model_for(attention, dtype, device)
    loader = sptorch.PackedLoader(
        store, max_length=1024, batch_rows=2, format=fmt, mask=mask, remainder="pad", seed=3
    )
    by_tokens = {tuple(s.tolist()): i for i, s in enumerate(sequences)}
    errors = {"packed": 0.0, "alone": 0.0, "packed_vs_alone": 0.0, "leak": 0.0}
    seen: list[int] = []
    loss_gaps: list[float] = []
    start = time.perf_counter()
    with torch.no_grad():
        alone = {
            i: model(input_ids=torch.as_tensor(s, device=device)[None]).logits[0].float()
            for i, s in enumerate(sequences)
        }
        for i in alone:
            errors["alone"] = max(errors["alone"], float((alone[i] - truth[i]).abs().max()))
        for raw in loader:
            batch = to_device(raw, device)
            out = model(**batch)
            if not torch.isfinite(out.loss):
                raise AssertionError(f"{name}: loss {out.loss} is not finite")
            leak = model(input_ids=batch["input_ids"]).logits.float()
            logits = out.logits.float()
            total, count = 0.0, 0
            for row, s, e in spans_of(batch):
                tokens = tuple(batch["input_ids"][row, s:e].tolist())
                i = by_tokens[tokens]
                seen.append(i)
                got = logits[row, s:e]
                errors["packed"] = max(errors["packed"], float((got - truth[i]).abs().max()))
                errors["packed_vs_alone"] = max(
                    errors["packed_vs_alone"], float((got - alone[i]).abs().max())
                )
                if s > 0:  # a sequence after another in the same row: what a leak corrupts
                    errors["leak"] = max(
                        errors["leak"], float((leak[row, s:e] - truth[i]).abs().max())
                    )
                loss, n = token_mean_loss(truth[i], torch.as_tensor(labels[i], device=device))
                total, count = total + loss, count + n
            if count:
                loss_gaps.append(abs(float(out.loss) - total / count))
    seconds = time.perf_counter() - start
    atol = 1e-4 if dtype == torch.float32 else 2e-2
    exact = errors["packed"] <= 2 * errors["alone"] + atol
    controlled = errors["leak"] > 4 * max(errors["packed"], atol)
    every_once = sorted(seen) == list(range(len(sequences)))
    loss_ok = max(loss_gaps, default=0.0) <= (1e-4 if dtype == torch.float32 else 2e-2)
    return {
        "config": name,
        "attention": attention,
        "format": fmt,
        "mask": mask,
        "dtype": str(dtype).removeprefix("torch."),
        "batches": len(loader),
        "sequences_checked": len(seen),
        **{f"max_abs_err_{k}": v for k, v in errors.items()},
        "max_loss_gap": max(loss_gaps, default=0.0),
        "passed": bool(exact and controlled and every_once and loss_ok),
        "exact": bool(exact),
        "leak_control_differs": bool(controlled),
        "every_sequence_once": bool(every_once),
        "loss_matches": bool(loss_ok),
        "seconds": round(seconds, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--configs", default=None, help="comma-separated names (default: all)")
    parser.add_argument("--dtypes", default="bfloat16", help="comma-separated: bfloat16,float32")
    parser.add_argument("--sequences", type=int, default=40)
    args = parser.parse_args()

    device = torch.device(args.device)
    shim = install_flash_shim()
    import transformers

    if device.type == "cpu":  # transformers offers FlashAttention only with CUDA: plumbing only
        import transformers.modeling_flash_attention_utils as fa_utils

        setattr(fa_utils, "is_flash_attn_2_available", lambda *args, **kwargs: True)  # noqa: B010

    rng = np.random.default_rng(0)
    short = args.sequences // 2
    lengths = np.concatenate(
        [rng.integers(1, 64, short), rng.integers(64, 700, args.sequences - short)]
    )
    sequences = [rng.integers(0, VOCAB, int(n)) for n in lengths]
    labels = [np.where(rng.random(len(s)) < 0.3, -100, s) for s in sequences]
    folder = Path(tempfile.mkdtemp(prefix="gpu_attention_")) / "store"
    # The store keeps labels as given: sequences with their trained-token labels.
    store = seqpack.store.write(folder, [{"input_ids": s, "labels": lab} for s, lab in
                                         zip(sequences, labels, strict=True)])  # fmt: skip

    reference = model_for("sdpa", torch.float32, device)
    with torch.no_grad():
        truth = {
            i: reference(input_ids=torch.as_tensor(s, device=device)[None]).logits[0].float()
            for i, s in enumerate(sequences)
        }
    del reference

    wanted = set(args.configs.split(",")) if args.configs else None
    results: list[dict[str, Any]] = []
    environment = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "seqpack": getattr(seqpack, "__version__", "?"),
        "flash_attn": f"shim over torch.ops.aten._flash_attention_forward ({shim})",
        "sequences": len(sequences),
        "tokens": int(lengths.sum()),
    }
    print(json.dumps(environment), flush=True)
    for dtype_name in args.dtypes.split(","):
        dtype = getattr(torch, dtype_name)
        for name, attention, fmt, mask in CONFIGS:
            if wanted is not None and name not in wanted:
                continue
            if attention == "flash_attention_2" and dtype == torch.float32:
                continue  # FlashAttention runs in 16-bit only
            try:
                result = check(
                    name, attention, fmt, mask, store, sequences, labels, truth, device, dtype
                )
            except Exception as error:
                result = {
                    "config": name,
                    "dtype": dtype_name,
                    "passed": False,
                    "error": f"{type(error).__name__}: {error}",
                    "traceback": traceback.format_exc()[-3000:],
                }
            print(json.dumps(result), flush=True)
            results.append(result)
    if args.out:
        Path(args.out).write_text(json.dumps({"environment": environment, "results": results},
                                             indent=2))  # fmt: skip
    failed = [r["config"] for r in results if not r["passed"]]
    print("FAILED: " + ", ".join(failed) if failed else "all passed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
