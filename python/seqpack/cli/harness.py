"""The throughput harness behind ``seqpack bench``: sweep ``max_length`` × strategy ×
``max_seqs_per_row`` over a dataset and measure, for each, what packing wastes (padding),
what truncation costs (tokens cut, samples dropped), how long planning and materialising
take, and the attention cost of block masks against dense rows; side by side with padding
every sample to ``max_length`` and padding to the longest sample of each batch. Returns the
table as data and recommends a configuration, saying why.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from seqpack.batch import sdpa_mask
from seqpack.chat import encode
from seqpack.errors import SeqpackError
from seqpack.pack import StrategyName, pack, plan


@dataclass(frozen=True)
class BenchRow:
    """One configuration's figures. ``method`` is ``packed``, ``pad_to_max_length`` or
    ``pad_to_longest`` (per batch of ``batch_size``)."""

    max_length: int
    method: str
    strategy: str | None
    max_seqs_per_row: int | None
    rows: int
    samples: int
    efficiency: float
    """Real tokens / (rows × row width)."""
    pad_fraction: float
    truncated_fraction: float
    """Tokens cut to fit ``max_length``: of the tokens that samples keep with no length limit,
    the fraction lost at this ``max_length`` (dropped samples included)."""
    dropped_samples: int
    """Conversations dropped at this ``max_length`` that fit with no limit."""
    plan_seconds: float | None
    materialize_seconds: float | None
    attention_cost: float
    """Attention work (l² per packed sequence with block masks; width² per padded row with
    dense masks), relative to the same data with no length limit, each conversation
    attending only to itself (Σ l² over whole conversations): the same scale for every row
    of the table, so configurations and lengths compare directly."""
    attention_vs_dense: float | None
    """For packed rows: block-mask work / the same rows with dense masks."""


@dataclass
class BenchResult:
    """The sweep's table, the recommendation and the data behind the plots."""

    source: str
    rows: list[BenchRow]
    recommended: BenchRow
    reason: str
    lengths: list[int]
    """Token length of every whole conversation (before any cut)."""
    role_lengths: dict[str, list[int]] = field(default_factory=dict)
    turns: list[int] = field(default_factory=list)
    gpu: dict[str, Any] | None = None

    def to_json(self) -> str:
        data = {
            "source": self.source,
            "recommended": asdict(self.recommended),
            "reason": self.reason,
            "rows": [asdict(r) for r in self.rows],
            "gpu": self.gpu,
        }
        return json.dumps(data, indent=2)

    def table_rows(self) -> list[list[str]]:
        def seconds(value: float | None) -> str:
            if value is None:
                return "-"
            return f"{value * 1000:.1f} ms" if value < 0.01 else f"{value * 1000:,.0f} ms"

        out = []
        for r in self.rows:
            name = (
                r.method
                if r.method != "packed"
                else f"{r.strategy}" + (f" ≤{r.max_seqs_per_row}/row" if r.max_seqs_per_row else "")
            )
            out.append(
                [
                    str(r.max_length),
                    name,
                    f"{r.rows:,}",
                    f"{r.efficiency:.1%}",
                    f"{r.pad_fraction:.1%}",
                    f"{r.truncated_fraction:.2%}",
                    f"{r.dropped_samples:,}",
                    seconds(r.plan_seconds),
                    seconds(r.materialize_seconds),
                    f"{r.attention_cost:.3f}",
                    "-" if r.attention_vs_dense is None else f"{r.attention_vs_dense:.3f}",
                ]
            )
        return out

    HEADERS: ClassVar[tuple[str, ...]] = (
        "max_length",
        "method",
        "rows",
        "efficiency",
        "pad",
        "truncated",
        "dropped",
        "plan",
        "materialize",
        "attention",
        "attn vs dense",
    )

    def to_markdown(self) -> str:
        rec = self.recommended
        limit = f", max_seqs_per_row={rec.max_seqs_per_row}" if rec.max_seqs_per_row else ""
        recommended = (
            f"**Recommended:** max_length={rec.max_length}, strategy={rec.strategy}"
            f"{limit}. {self.reason}"
        )
        lines = [
            f"# seqpack bench: {self.source}",
            "",
            recommended,
            "",
            "| " + " | ".join(self.HEADERS) + " |",
            "|" + "---|" * len(self.HEADERS),
        ]
        lines += ["| " + " | ".join(row) + " |" for row in self.table_rows()]
        legend = (
            "attention: work relative to each whole conversation attending only to itself "
            "(lower is better; the same scale for every row); attn vs dense: block masks vs "
            "dense masks on the same packed rows."
        )
        lines += ["", legend]
        if self.gpu:
            lines += ["", "## GPU", "", "```", json.dumps(self.gpu, indent=2), "```"]
        return "\n".join(lines) + "\n"

    def plots(self, folder: Path) -> list[Path]:
        """PNG plots: length histogram with the chosen max_length; efficiency and truncation
        against max_length."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        folder.mkdir(parents=True, exist_ok=True)
        written = []
        fig, ax = plt.subplots(figsize=(7, 4))
        lengths = np.asarray(self.lengths)
        bins = np.logspace(np.log10(max(lengths.min(), 1)), np.log10(lengths.max() + 1), 50)
        ax.hist(lengths, bins=bins.tolist(), color="#4c72b0", label="conversations")
        ax.set_xscale("log")
        ax.axvline(
            self.recommended.max_length,
            color="#c44e52",
            linestyle="--",
            label=f"max_length = {self.recommended.max_length}",
        )
        over = float((lengths > self.recommended.max_length).mean())
        ax.set_title(
            f"Tokens per conversation ({len(lengths):,}; {over:.1%} longer than max_length)"
        )
        ax.set_xlabel("tokens (log scale)")
        ax.set_ylabel("conversations")
        ax.legend()
        fig.tight_layout()
        path = folder / "lengths.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

        fig, ax = plt.subplots(figsize=(7, 5))
        for method, strategy, style in (
            ("packed", self.recommended.strategy, "-o"),
            ("pad_to_longest", None, "--s"),
            ("pad_to_max_length", None, ":^"),
        ):
            points = sorted(
                (r.max_length, r.efficiency)
                for r in self.rows
                if r.method == method
                and (strategy is None or r.strategy == strategy)
                and r.max_seqs_per_row
                == (self.recommended.max_seqs_per_row if method == "packed" else r.max_seqs_per_row)
            )
            if points:
                label = f"{strategy} packing" if method == "packed" else method.replace("_", " ")
                ax.plot(*zip(*points, strict=True), style, label=f"efficiency: {label}")
        truncated = sorted(
            {(r.max_length, r.truncated_fraction) for r in self.rows if r.method == "packed"}
        )
        ax.plot(*zip(*truncated, strict=True), "-x", color="#c44e52", label="tokens truncated")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("max_length")
        ax.set_ylabel("fraction")
        ax.set_ylim(0, 1.02)
        ax.set_title("Efficiency and truncation against max_length")
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
        fig.tight_layout()
        path = folder / "efficiency.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
        return written


def _padding_rows(
    max_length: int,
    lengths: np.ndarray,
    total: int,
    truncated: float,
    dropped: int,
    batch_size: int,
    reference: float,
) -> list[BenchRow]:
    samples = len(lengths)
    rows = [
        BenchRow(
            max_length,
            "pad_to_max_length",
            None,
            None,
            samples,
            samples,
            float(lengths.sum() / (samples * max_length)) if samples else 0.0,
            float(1 - lengths.sum() / (samples * max_length)) if samples else 0.0,
            truncated,
            dropped,
            None,
            None,
            samples * float(max_length) ** 2 / reference,
            None,
        )
    ]
    widths = [int(lengths[i : i + batch_size].max()) for i in range(0, samples, batch_size)]
    counts = [len(lengths[i : i + batch_size]) for i in range(0, samples, batch_size)]
    capacity = sum(w * c for w, c in zip(widths, counts, strict=True))
    attention = sum(c * w * w for w, c in zip(widths, counts, strict=True))
    rows.append(
        BenchRow(
            max_length,
            "pad_to_longest",
            None,
            None,
            samples,
            samples,
            float(lengths.sum() / capacity) if capacity else 0.0,
            float(1 - lengths.sum() / capacity) if capacity else 0.0,
            truncated,
            dropped,
            None,
            None,
            attention / reference,
            None,
        )
    )
    return rows


def _recommend(rows: list[BenchRow]) -> tuple[BenchRow, str]:
    packed = [r for r in rows if r.method == "packed"]
    # Waste = padding plus truncated tokens; ties go to less attention work, then shorter rows.
    best = min(
        packed,
        key=lambda r: (
            round(r.pad_fraction + r.truncated_fraction, 4),
            r.dropped_samples,
            r.attention_cost,
            r.max_length,
        ),
    )
    same_length = [r for r in rows if r.max_length == best.max_length]
    pad_max = next(r for r in same_length if r.method == "pad_to_max_length")
    pad_longest = next(r for r in same_length if r.method == "pad_to_longest")
    longer = [r for r in packed if r.max_length > best.max_length and r.strategy == best.strategy]
    shorter = [r for r in packed if r.max_length < best.max_length and r.strategy == best.strategy]
    dropped = f"{best.dropped_samples} sample{'s' if best.dropped_samples != 1 else ''} dropped"
    reason = (
        f"It wastes {best.pad_fraction:.1%} on padding and cuts {best.truncated_fraction:.2%} "
        f"of tokens ({dropped}), against {pad_max.pad_fraction:.1%} "
        f"padding when every sample is padded to {best.max_length} and "
        f"{pad_longest.pad_fraction:.1%} when padding to the longest of each batch."
    )
    if shorter:
        s = max(shorter, key=lambda r: r.max_length)
        reason += (
            f" A shorter max_length={s.max_length} would cut {s.truncated_fraction:.2%} of tokens."
        )
    if longer:
        g = min(longer, key=lambda r: r.max_length)
        reason += (
            f" A longer max_length={g.max_length} cuts {g.truncated_fraction:.2%} and pads "
            f"{g.pad_fraction:.1%}, with {g.attention_cost / best.attention_cost:.2f}x the "
            "attention work."
        )
    return best, reason


def run(
    records: Any,
    *,
    tokenizer: Any,
    template: str | None = "qwen3",
    max_lengths: Sequence[int] = (1024, 2048, 4096, 8192),
    strategies: Sequence[StrategyName] = ("bfd", "ffd", "sequential"),
    max_seqs_per_row: Sequence[int | None] = (None,),
    batch_size: int = 8,
    on_error: Literal["raise", "skip"] = "skip",
    progress: Callable[[str], None] | None = None,
    **encode_options: Any,
) -> BenchResult:
    """Sweep the configurations over chat ``records`` (objects or a file path) and return the
    table as data.

    >>> from seqpack.cli import harness, synthetic
    >>> result = harness.run(synthetic.conversations(200), tokenizer=synthetic.TOKENIZER_PATH,
    ...                      max_lengths=(512, 2048), strategies=("bfd",))
    >>> [(r.max_length, r.method) for r in result.rows][:3]
    [(512, 'packed'), (512, 'pad_to_max_length'), (512, 'pad_to_longest')]
    >>> result.recommended.method
    'packed'
    """
    note = progress or (lambda _message: None)
    rows: list[BenchRow] = []
    # With no length limit: what every conversation keeps (trailing messages after the last
    # answer go whatever the limit), the reference for what a max_length cuts.
    note("encoding with no length limit")
    unlimited = encode(
        records,
        tokenizer=tokenizer,
        template=template,
        max_length=1 << 24,
        on_error=on_error,
        **encode_options,
    )
    kept_reports = [r for r in unlimited.report.records if r.status != "skipped"]
    whole_lengths = [r.tokens_after for r in kept_reports if r.tokens_after]
    role_lengths = {
        role: [r.role_tokens[role] for r in kept_reports if r.role_tokens[role]]
        for role in ("system", "user", "assistant", "tool")
    }
    turns = [r.turns for r in kept_reports]
    reference_tokens = sum(r.tokens_after for r in kept_reports)
    attention_reference = max(attention_cost(np.diff(unlimited.offsets)), 1.0)
    reference_dropped = sum(r.status == "dropped" for r in kept_reports)
    for max_length in max_lengths:
        note(f"max_length={max_length}: encoding")
        encoded = encode(
            records,
            tokenizer=tokenizer,
            template=template,
            max_length=max_length,
            on_error=on_error,
            **encode_options,
        )
        reports = [r for r in encoded.report.records if r.status != "skipped"]
        total = reference_tokens
        kept = sum(r.tokens_after for r in reports)
        truncated = max(reference_tokens - kept, 0) / reference_tokens if reference_tokens else 0.0
        dropped = sum(r.status == "dropped" for r in reports) - reference_dropped
        lengths = np.diff(encoded.offsets)
        if len(lengths) == 0:
            continue
        reference = attention_reference
        for strategy in strategies:
            for limit in max_seqs_per_row:
                note(f"max_length={max_length}: {strategy}" + (f", ≤{limit}/row" if limit else ""))
                start = time.perf_counter()
                planned = plan(
                    lengths, max_length=max_length, strategy=strategy, max_seqs_per_row=limit
                )
                plan_seconds = time.perf_counter() - start
                start = time.perf_counter()
                batch = pack(
                    encoded, max_length=max_length, strategy=strategy, max_seqs_per_row=limit
                )
                pack_seconds = time.perf_counter() - start
                block = attention_cost(batch.seq_lens)
                rows.append(
                    BenchRow(
                        max_length,
                        "packed",
                        strategy,
                        limit,
                        planned.num_rows,
                        len(lengths),
                        planned.stats.efficiency,
                        1 - planned.stats.efficiency,
                        truncated,
                        dropped,
                        plan_seconds,
                        max(pack_seconds - plan_seconds, 0.0),
                        block / reference,
                        block / (planned.num_rows * max_length * max_length),
                    )
                )
                del batch
        rows += _padding_rows(max_length, lengths, total, truncated, dropped, batch_size, reference)
    if not rows:
        raise SeqpackError(
            "no max_length left any sample (every record was dropped or skipped); try longer "
            "--max-lengths"
        )
    recommended, reason = _recommend(rows)
    source = (
        str(records)
        if isinstance(records, (str, os.PathLike))
        else f"{len(whole_lengths):,} records"
    )
    return BenchResult(source, rows, recommended, reason, whole_lengths, role_lengths, turns)


def gpu_benchmark(
    encoded_tokens: np.ndarray,
    offsets: np.ndarray,
    labels: np.ndarray,
    max_length: int,
    *,
    steps: int = 5,
    batch_rows: int = 4,
    device: str | None = None,
    model_size: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Time forward+backward steps of a small random-weight Llama on packed rows (4-D block
    mask, restarting positions) against batches padded to ``max_length``: trained tokens per
    second and peak memory of each. Runs on CUDA; without it, says so and skips (``device``
    lets tests run the same code on the CPU)."""
    import torch

    if device is None:
        if not torch.cuda.is_available():
            return {"skipped": "CUDA is not available on this machine"}
        device = "cuda"
    from transformers import LlamaConfig, LlamaForCausalLM

    target = torch.device(device)
    cuda = target.type == "cuda"
    torch.manual_seed(0)
    size: dict[str, Any] = {
        "hidden_size": 512,
        "intermediate_size": 1408,
        "num_hidden_layers": 4,
        "num_attention_heads": 8,
        "num_key_value_heads": 8,
        **(model_size or {}),
    }
    config = LlamaConfig(
        vocab_size=int(encoded_tokens.max()) + 1,
        max_position_embeddings=max_length,
        attn_implementation="sdpa",
        **size,
    )  # type: ignore[call-arg]  # kwargs passthrough
    dtype = torch.bfloat16 if cuda else torch.float32
    model = LlamaForCausalLM(config).to(device=target, dtype=dtype)  # type: ignore[call-arg]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    batch = pack(encoded_tokens, offsets=offsets, labels=labels, max_length=max_length)
    lengths = np.diff(offsets)

    def packed(step: int) -> dict[str, torch.Tensor] | None:
        rows = slice(step * batch_rows, (step + 1) * batch_rows)
        if rows.start >= batch.num_rows:
            return None
        inputs = {
            k: torch.from_numpy(getattr(batch, k)[rows]).to(target)
            for k in ("input_ids", "labels", "position_ids")
        }
        inputs["attention_mask"] = sdpa_mask(batch.segment_ids[rows], device=target)
        return inputs

    def padded(step: int) -> dict[str, torch.Tensor] | None:
        first = step * batch_rows
        if first >= len(lengths):
            return None
        count = min(batch_rows, len(lengths) - first)
        ids = np.zeros((count, max_length), np.int64)
        lab = np.full_like(ids, -100)
        att = np.zeros_like(ids)
        for j in range(count):
            s, e = offsets[first + j], offsets[first + j + 1]
            ids[j, : e - s] = encoded_tokens[s:e]
            lab[j, : e - s] = labels[s:e]
            att[j, : e - s] = 1
        return {
            k: torch.from_numpy(v).to(target)
            for k, v in (("input_ids", ids), ("labels", lab), ("attention_mask", att))
        }

    def timed(
        make: Callable[[int], dict[str, torch.Tensor] | None], available: int
    ) -> dict[str, float | None]:
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        tokens, start = 0, time.perf_counter()
        for step in range(steps + 1):
            # Batches are reused in turn when there are fewer than steps + 1 of them, so both
            # sides always time `steps` steps after one warm-up step.
            inputs = make(step % available)
            if inputs is None:
                break
            if step == 1:  # the first step warms up kernels
                if cuda:
                    torch.cuda.synchronize()
                tokens, start = 0, time.perf_counter()
            model(**inputs).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            tokens += int((inputs["labels"] != -100).sum())
        if cuda:
            torch.cuda.synchronize()
        seconds = max(time.perf_counter() - start, 1e-9)
        return {
            "trained_tokens_per_s": tokens / seconds,
            "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        }

    name = torch.cuda.get_device_name(target) if cuda else str(target)
    packed_batches = max(1, -(-batch.num_rows // batch_rows))
    padded_batches = max(1, -(-len(lengths) // batch_rows))
    result: dict[str, Any] = {
        "device": name,
        "max_length": max_length,
        "packed": timed(packed, packed_batches),
        "padded_to_max_length": timed(padded, padded_batches),
    }
    padded_rate = result["padded_to_max_length"]["trained_tokens_per_s"]
    result["speedup"] = (
        result["packed"]["trained_tokens_per_s"] / padded_rate if padded_rate else None
    )
    return result


def attention_cost(seq_lens: np.ndarray) -> float:
    """Σ l² over packed sequences: the work of block-diagonal causal attention (up to a
    constant)."""
    return float((np.asarray(seq_lens, dtype=np.float64) ** 2).sum())


__all__ = ["BenchResult", "BenchRow", "attention_cost", "gpu_benchmark", "run"]
