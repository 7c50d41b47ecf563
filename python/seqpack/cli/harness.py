"""The throughput harness behind ``seqpack bench``: sweep ``max_length`` × strategy ×
``max_seqs_per_row`` over a dataset and measure, for each, what packing wastes (padding),
what truncation costs (tokens cut, samples dropped) and the modelled training throughput in
trained tokens per second (:mod:`seqpack.cli.budget`), side by side with padding every sample
to ``max_length`` and padding to the longest sample of each batch. Within a token budget per
micro-batch (``tokens_per_step``) and a truncation limit, it recommends the configuration
that trains the most tokens per second, says what it gave up and why, and gives the loader's
figures for it (steps per epoch, tokens per step, rank imbalance, padding rows).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from seqpack import _seqpack
from seqpack.batch import sdpa_mask
from seqpack.chat import encode
from seqpack.cli.budget import DEFAULT_MODEL, DEFAULT_TFLOPS, CostModel, ModelShape, model
from seqpack.errors import InvalidOptionError, SeqpackError
from seqpack.pack import StrategyName, pack, plan

METHOD_NAMES = {"pad_to_max_length": "pad to L", "pad_to_longest": "pad longest"}


@dataclass(frozen=True)
class BenchRow:
    """One configuration's figures. ``method`` is ``packed``, ``pad_to_max_length`` or
    ``pad_to_longest`` (per batch of ``batch_size`` samples)."""

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
    attending only to itself (Σ l² over whole conversations)."""
    attention_vs_dense: float | None
    """For packed rows: block-mask work / the same rows with dense masks."""
    trained_tokens: int = 0
    """Tokens with a label the loss counts (labels shifted as the model does), kept at this
    ``max_length``."""
    trained_cut_fraction: float = 0.0
    """Of the trained tokens kept with no length limit, the fraction this ``max_length`` loses."""
    tokens_computed: int = 0
    """Positions the model computes in an epoch: rows × row width (padding costs as much as a
    real token)."""
    squares: float = 0.0
    """Σ l² over the sequences: the attention term of the cost model."""
    modelled_seconds: float = 0.0
    """An epoch's compute by the cost model."""
    trained_per_second: float = 0.0
    """Trained tokens per modelled second: what the recommendation maximises."""
    rows_per_step: int | None = None
    """Rows (or samples) per micro-batch under the token budget; None without one."""
    steps: int | None = None
    """Optimizer steps per epoch over ``world_size`` ranks (the last one padded)."""
    fits: bool = True
    """Whether one row of this width fits the token budget."""


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
    budget: dict[str, Any] = field(default_factory=dict)
    """The budget and the cost model the advice was made under."""
    loader: dict[str, Any] = field(default_factory=dict)
    """The loader's figures for the recommended setting."""

    def to_json(self) -> str:
        data = {
            "source": self.source,
            "recommended": asdict(self.recommended),
            "reason": self.reason,
            "budget": self.budget,
            "loader": self.loader,
            "rows": [asdict(r) for r in self.rows],
            "gpu": self.gpu,
        }
        return json.dumps(data, indent=2)

    HEADERS: ClassVar[tuple[str, ...]] = (
        "L",
        "method",
        "rows",
        "eff %",
        "cut %",
        "drop",
        "steps",
        "train tok/s",
        "× rec",
    )
    """Short, with units, so the table stays readable at 80 columns."""

    def table_rows(self) -> list[list[str]]:
        best = self.recommended.trained_per_second
        out = []
        for r in self.rows:
            name = (
                METHOD_NAMES.get(r.method, r.method)
                if r.method != "packed"
                else f"{r.strategy}" + (f" ≤{r.max_seqs_per_row}" if r.max_seqs_per_row else "")
            )
            if r == self.recommended:
                name = "→ " + name
            out.append(
                [
                    str(r.max_length),
                    name,
                    f"{r.rows:,}",
                    f"{r.efficiency * 100:.1f}",
                    f"{r.truncated_fraction * 100:.2f}",
                    f"{r.dropped_samples:,}",
                    "-" if r.steps is None else f"{r.steps:,}",
                    _rate(r.trained_per_second) if r.fits else "too long",
                    f"{r.trained_per_second / best:.2f}" if r.fits and best else "-",
                ]
            )
        return out

    def legend(self) -> str:
        cost = self.budget.get("cost_model", "")
        return (
            "L: max_length. eff %: real tokens / row capacity. cut %: tokens truncated, of "
            "those kept with no limit. drop: samples dropped (a count). steps: optimizer steps "
            "per epoch under the budget. train tok/s: trained tokens per second of modelled "
            f"compute ({cost}). × rec: that rate against the recommendation (→), which is the "
            "fastest setting within the budget and the truncation limit."
        )

    def loader_lines(self) -> list[str]:
        figures = self.loader
        if not figures:
            return []
        lines = [
            f"steps per epoch: {figures['steps']:,} ({figures['rows_per_step']} "
            f"row{'s' if figures['rows_per_step'] != 1 else ''} of "
            f"{figures['max_length']} per rank per step, {figures['world_size']} "
            f"rank{'s' if figures['world_size'] > 1 else ''})",
            f"tokens per step per rank: {figures['tokens_per_step']:,.0f} real of "
            f"{figures['capacity_per_step']:,} (budget {figures['budget']})",
            f"padding rows added per epoch by remainder='pad': {figures['padding_rows']:,}",
        ]
        if figures["world_size"] > 1:
            for cost in ("tokens", "attention"):
                plain, balanced = figures["imbalance"][cost]
                lines.append(
                    f"rank imbalance in {'tokens' if cost == 'tokens' else 'Σ len²'}: "
                    f"largest rank {plain:.3f}× the mean, {balanced:.3f}× with "
                    f"balance={cost!r}"
                )
        else:
            lines.append("rank imbalance: one rank (set --world-size to see it across GPUs)")
        return lines

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
        lines += ["", self.legend()]
        if self.loader:
            lines += ["", "## Loader, recommended setting", ""]
            lines += [f"- {line}" for line in self.loader_lines()]
        timing = [r for r in self.rows if r.plan_seconds is not None]
        if timing:
            lines += [
                "",
                "## Time to plan and materialise (all rows, this machine)",
                "",
                "| L | method | plan ms | materialise ms |",
                "|---|---|---|---|",
            ]
            for r in timing:
                name = f"{r.strategy}" + (f" ≤{r.max_seqs_per_row}" if r.max_seqs_per_row else "")
                plan_ms = (r.plan_seconds or 0) * 1e3
                write_ms = (r.materialize_seconds or 0) * 1e3
                lines.append(f"| {r.max_length} | {name} | {plan_ms:.1f} | {write_ms:.1f} |")
        if self.gpu:
            lines += ["", "## GPU", ""]
            if "sweep" in self.gpu:
                lines += [f"cost model: {self.gpu.get('cost_model', '')}", ""]
                lines += sweep_table(self.gpu["sweep"])
            else:
                lines += ["```", json.dumps(self.gpu, indent=2), "```"]
        return "\n".join(lines) + "\n"

    def plots(self, folder: Path) -> list[Path]:
        """PNG plots: the length histogram with every candidate max_length marked; efficiency,
        tokens cut and modelled throughput against max_length, one quantity per panel."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        folder.mkdir(parents=True, exist_ok=True)
        written = []
        fig, ax = plt.subplots(figsize=(8, 4.5))
        lengths = np.asarray(self.lengths)
        bins = np.logspace(np.log10(max(lengths.min(), 1)), np.log10(lengths.max() + 1), 50)
        ax.hist(lengths, bins=bins.tolist(), color="#4c72b0", label="conversations")
        ax.set_xscale("log")
        candidates = sorted({r.max_length for r in self.rows})
        for length in candidates:
            chosen = length == self.recommended.max_length
            over = _count(int((lengths > length).sum()), len(lengths))
            ax.axvline(
                length,
                color="#c44e52" if chosen else "#888888",
                linestyle="--" if chosen else ":",
                label=f"L={length}{' (recommended)' if chosen else ''}: {over} longer",
            )
        ax.set_title(f"Tokens per conversation ({len(lengths):,} conversations)")
        ax.set_xlabel("tokens (log scale)")
        ax.set_ylabel("conversations")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = folder / "lengths.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

        fig, axes = plt.subplots(3, 1, figsize=(7, 9), sharex=True)
        series: list[tuple[str, str, Callable[[BenchRow], bool]]] = [
            (
                f"{self.recommended.strategy} packing",
                "-o",
                lambda r: (
                    r.method == "packed"
                    and r.strategy == self.recommended.strategy
                    and r.max_seqs_per_row == self.recommended.max_seqs_per_row
                ),
            ),
            ("pad to longest", "--s", lambda r: r.method == "pad_to_longest"),
            ("pad to max_length", ":^", lambda r: r.method == "pad_to_max_length"),
        ]
        panels: list[tuple[Any, str, Callable[[BenchRow], float]]] = [
            (axes[0], "efficiency (%)", lambda r: r.efficiency * 100),
            (axes[2], "trained tokens/s (modelled)", lambda r: r.trained_per_second),
        ]
        for ax, label, value in panels:
            for name, style, picks in series:
                points = sorted((r.max_length, value(r)) for r in self.rows if picks(r))
                if points:
                    ax.plot(*zip(*points, strict=True), style, label=name)
            ax.set_ylabel(label)
            ax.legend(fontsize=8)
        cut = sorted({(r.max_length, r.truncated_fraction * 100) for r in self.rows})
        axes[1].plot(*zip(*cut, strict=True), "-x", color="#c44e52", label="tokens cut")
        axes[1].set_ylabel("tokens truncated (%)")
        limit = self.budget.get("max_truncated")
        if limit is not None:
            axes[1].axhline(limit * 100, color="#888888", linestyle=":", label="limit")
        axes[1].legend(fontsize=8)
        budget = self.budget.get("tokens_per_step")
        for ax in axes:
            ax.axvline(self.recommended.max_length, color="#c44e52", linestyle="--", lw=0.8)
            if budget and budget < max(candidates):
                ax.axvspan(budget, max(candidates) * 1.5, color="#dddddd", zorder=0)
        axes[2].set_xscale("log", base=2)
        axes[2].set_xticks(candidates, [str(c) for c in candidates])
        axes[2].set_xlabel("max_length (grey: over the token budget)")
        axes[0].set_title("Against max_length; dashed: the recommendation")
        fig.tight_layout()
        path = folder / "efficiency.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
        return written


def _rate(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:,.2f} M"
    if value >= 1e3:
        return f"{value / 1e3:,.1f} k"
    return f"{value:,.0f}"


def _count(count: int, total: int) -> str:
    """``1 (0.03%)``: a count with its share, never a share rounded to 0.0% alone."""
    share = count / total if total else 0.0
    return f"{count:,} ({share:.2%})" if count else "none"


def _padding_rows(
    max_length: int,
    lengths: np.ndarray,
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
            tokens_computed=samples * max_length,
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
            tokens_computed=capacity,
        )
    )
    return rows


@dataclass(frozen=True)
class Budget:
    """What the advice must respect: the token budget of one micro-batch per GPU (None: no
    limit), the ranks, the truncation limit, and the cost model."""

    tokens_per_step: int | None
    world_size: int
    max_truncated: float
    cost: CostModel
    batch_rows: int
    """Rows (samples) per micro-batch when no token budget is given."""
    shape: ModelShape | None = None
    memory: dict[str, Any] | None = None

    def rows_per_step(self, width: int) -> int:
        """Rows of ``width`` one micro-batch holds (0: not even one fits)."""
        return self.batch_rows if self.tokens_per_step is None else self.tokens_per_step // width

    def describe(self) -> dict[str, Any]:
        return {
            "tokens_per_step": self.tokens_per_step,
            "world_size": self.world_size,
            "max_truncated": self.max_truncated,
            "batch_rows_without_budget": self.batch_rows,
            "cost_model": self.cost.source,
            "seconds_per_token": self.cost.per_token,
            "seconds_per_square": self.cost.per_square,
            "model": None if self.shape is None else self.shape.as_dict(),
            "memory_estimate": self.memory,
        }


def _costed(
    row: BenchRow, trained: int, trained_cut: float, squares: float, budget: Budget
) -> BenchRow:
    seconds = budget.cost.seconds(row.tokens_computed, squares)
    per_step = budget.rows_per_step(row.max_length)
    if row.method == "pad_to_longest":
        # Batches of batch_size samples, each as wide as its longest: within a token budget
        # the widest batch (max_length) must fit.
        per_step = budget.batch_rows if per_step else 0
    fits = per_step >= 1
    steps = math.ceil(row.rows / (per_step * budget.world_size)) if fits else None
    return BenchRow(
        **{
            **asdict(row),
            "trained_tokens": trained,
            "trained_cut_fraction": trained_cut,
            "squares": squares,
            "modelled_seconds": seconds,
            "trained_per_second": trained / seconds if seconds else 0.0,
            "rows_per_step": per_step if budget.tokens_per_step is not None else budget.batch_rows,
            "steps": steps,
            "fits": fits,
        }
    )


def _trained(labels: np.ndarray, offsets: np.ndarray) -> int:
    """Labels the loss counts: not -100, and not a sequence's first token (no token before
    it predicts it)."""
    counted = labels != -100
    starts = offsets[:-1][offsets[:-1] < offsets[1:]]
    return int(counted.sum() - counted[starts].sum())


def _recommend(rows: list[BenchRow], budget: Budget) -> tuple[BenchRow, str]:
    packed = [r for r in rows if r.method == "packed"]
    fitting = [r for r in packed if r.fits]
    if not fitting:
        shortest = min(r.max_length for r in packed)
        raise SeqpackError(
            f"no max_length fits {budget.tokens_per_step:,} tokens per step (the shortest "
            f"candidate is {shortest}); raise --tokens-per-step or add shorter --max-lengths"
        )
    within = [r for r in fitting if r.truncated_fraction <= budget.max_truncated + 1e-12]
    pool = within or [min(fitting, key=lambda r: (r.truncated_fraction, -r.trained_per_second))]
    best = max(pool, key=lambda r: (r.trained_per_second, -r.max_length))
    same_length = [r for r in rows if r.max_length == best.max_length]
    pad_max = next(r for r in same_length if r.method == "pad_to_max_length")
    pad_longest = next(r for r in same_length if r.method == "pad_to_longest")
    attention = budget.cost.attention_share(best.tokens_computed, best.squares)
    if budget.tokens_per_step is not None:
        where = (
            f"Within {budget.tokens_per_step:,} tokens per micro-batch "
            f"({best.rows_per_step} row{'s' if best.rows_per_step != 1 else ''} of "
            f"{best.max_length} per step"
            + (f" on each of {budget.world_size} GPUs" if budget.world_size > 1 else "")
            + "), "
        )
    else:
        where = "With no token budget given (--tokens-per-step or --gpu-memory), "
    reason = (
        f"{where}max_length={best.max_length} with {best.strategy} packing trains the most "
        f"tokens per second of modelled compute ({_rate(best.trained_per_second)}/s; "
        f"attention is {attention:.0%} of it): it packs rows {best.efficiency:.1%} full and "
        f"cuts {best.truncated_fraction:.2%} of tokens"
        + (
            f" ({_count(best.dropped_samples, best.samples + best.dropped_samples)} samples "
            "dropped)"
            if best.dropped_samples
            else ""
        )
        + f", within the {budget.max_truncated:.2%} limit."
        if within
        else f"{where}no candidate cuts at most {budget.max_truncated:.2%} of tokens; "
        f"max_length={best.max_length} cuts least ({best.truncated_fraction:.2%})."
    )
    gave_up = []
    for other in sorted(
        (
            r
            for r in packed
            if r.strategy == best.strategy
            and r.max_seqs_per_row == best.max_seqs_per_row
            and r.max_length != best.max_length
        ),
        key=lambda r: r.max_length,
    ):
        if not other.fits:
            gave_up.append(
                f"max_length={other.max_length} does not fit the budget (one row is "
                f"{other.max_length:,} tokens)"
            )
        elif other.truncated_fraction > budget.max_truncated + 1e-12:
            gave_up.append(
                f"max_length={other.max_length} would cut {other.truncated_fraction:.2%} of "
                "tokens, over the limit"
            )
        else:
            change = other.trained_per_second / best.trained_per_second - 1
            gave_up.append(
                f"max_length={other.max_length} would train {abs(change):.1%} "
                f"{'more' if change > 0 else 'fewer'} tokens per second"
                + (
                    f" but cut {other.truncated_fraction:.2%}"
                    if other.truncated_fraction > best.truncated_fraction
                    else ""
                )
            )
    if gave_up:
        reason += " Against the others: " + "; ".join(gave_up) + "."
    reason += (
        f" Padding every sample to {best.max_length} would train "
        f"{best.trained_per_second / pad_max.trained_per_second:.1f}× slower "
        f"({pad_max.efficiency:.1%} full), padding to the longest of each batch "
        f"{best.trained_per_second / pad_longest.trained_per_second:.1f}× slower."
    )
    return best, reason


def _loader_figures(lengths: np.ndarray, best: BenchRow, budget: Budget) -> dict[str, Any]:
    """What PackedLoader would do with the recommended setting over these lengths."""
    per_step = best.rows_per_step or 1
    plan_options = {
        "max_length": best.max_length,
        "strategy": best.strategy,
        "max_seqs_per_row": best.max_seqs_per_row,
        "overlong": "error",
        "truncate_keep": "head",
        "pad_rows_to_multiple_of": 1,
        "seed": None,
    }
    options = {
        "plan": plan_options,
        "batch_rows": per_step,
        "batch_tokens": None,
        "world_size": budget.world_size,
        "seed": 0,
        "remainder": "pad",
        "balance": None,
    }
    schedule = _seqpack.NativeSchedule(np.asarray(lengths, dtype=np.uint32), options)
    steps = int(schedule.steps)
    imbalance = {
        cost: tuple(float(x) for x in schedule.imbalance(0, cost))
        for cost in ("tokens", "attention")
    }
    return {
        "max_length": best.max_length,
        "strategy": best.strategy,
        "world_size": budget.world_size,
        "rows_per_step": per_step,
        "budget": "none"
        if budget.tokens_per_step is None
        else f"{budget.tokens_per_step:,} tokens",
        "steps": steps,
        "tokens_per_step": float(np.sum(lengths)) / max(steps * budget.world_size, 1),
        "capacity_per_step": per_step * best.max_length,
        "padding_rows": int(schedule.padding_rows_per_epoch),
        "imbalance": imbalance,
    }


def make_budget(
    *,
    tokens_per_step: int | None = None,
    gpu_memory: float | None = None,
    model_name: str = DEFAULT_MODEL,
    world_size: int = 1,
    max_truncated: float = 0.01,
    tflops: float = DEFAULT_TFLOPS,
    batch_rows: int = 8,
    cost: CostModel | None = None,
) -> Budget:
    """A :class:`Budget` from the command line's options (``gpu_memory`` in GiB turns into a
    token budget by :func:`seqpack.cli.budget.tokens_for_memory`)."""
    from seqpack.cli.budget import tokens_for_memory

    if world_size < 1:
        raise InvalidOptionError(f"option world_size: must be >= 1, got {world_size}")
    if tokens_per_step is not None and tokens_per_step < 1:
        raise InvalidOptionError(f"option tokens_per_step: must be >= 1, got {tokens_per_step}")
    if tokens_per_step is not None and gpu_memory is not None:
        raise InvalidOptionError(
            "option gpu_memory: give either a token budget or a GPU memory size, not both"
        )
    shape = model(model_name)
    memory = None
    if gpu_memory is not None:
        tokens_per_step, terms = tokens_for_memory(gpu_memory, shape, world_size)
        memory = {"gpu_memory_gib": gpu_memory, **terms, "tokens_per_step": tokens_per_step}
    return Budget(
        tokens_per_step=tokens_per_step,
        world_size=world_size,
        max_truncated=max_truncated,
        cost=cost or CostModel.from_flops(shape, tflops),
        batch_rows=batch_rows,
        shape=shape,
        memory=memory,
    )


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
    budget: Budget | None = None,
    **encode_options: Any,
) -> BenchResult:
    """Sweep the configurations over chat ``records`` (objects or a file path) and return the
    table as data, with the recommendation made under ``budget`` (default: no token budget,
    at most 1% of tokens cut, an 8B model's cost model).

    >>> from seqpack.cli import harness, synthetic
    >>> result = harness.run(synthetic.conversations(200), tokenizer=synthetic.TOKENIZER_PATH,
    ...                      max_lengths=(512, 2048), strategies=("bfd",),
    ...                      budget=harness.make_budget(tokens_per_step=4096))
    >>> [(r.max_length, r.method) for r in result.rows][:3]
    [(512, 'packed'), (512, 'pad_to_max_length'), (512, 'pad_to_longest')]
    >>> result.recommended.method, result.recommended.max_length <= 4096
    ('packed', True)
    """
    note = progress or (lambda _message: None)
    budget = budget or make_budget(batch_rows=batch_size)
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
    reference_trained = _trained(unlimited.labels, unlimited.offsets)
    attention_reference = max(attention_cost(np.diff(unlimited.offsets)), 1.0)
    reference_dropped = sum(r.status == "dropped" for r in kept_reports)
    best_lengths: dict[int, np.ndarray] = {}
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
        kept = sum(r.tokens_after for r in reports)
        truncated = max(reference_tokens - kept, 0) / reference_tokens if reference_tokens else 0.0
        dropped = sum(r.status == "dropped" for r in reports) - reference_dropped
        lengths = np.diff(encoded.offsets)
        if len(lengths) == 0:
            continue
        best_lengths[max_length] = lengths
        trained = _trained(encoded.labels, encoded.offsets)
        trained_cut = 1 - trained / reference_trained if reference_trained else 0.0
        squares = attention_cost(lengths)
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
                row = BenchRow(
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
                    tokens_computed=planned.num_rows * max_length,
                )
                rows.append(_costed(row, trained, trained_cut, squares, budget))
                del batch
        for row in _padding_rows(max_length, lengths, truncated, dropped, batch_size, reference):
            rows.append(_costed(row, trained, trained_cut, squares, budget))
    if not rows:
        raise SeqpackError(
            "no max_length left any sample (every record was dropped or skipped); try longer "
            "--max-lengths"
        )
    recommended, reason = _recommend(rows, budget)
    note("loader figures for the recommended setting")
    loader = _loader_figures(best_lengths[recommended.max_length], recommended, budget)
    source = (
        str(records)
        if isinstance(records, (str, os.PathLike))
        else f"{len(whole_lengths):,} records"
    )
    return BenchResult(
        source,
        rows,
        recommended,
        reason,
        whole_lengths,
        role_lengths,
        turns,
        budget=budget.describe(),
        loader=loader,
    )


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
    target = torch.device(device)
    cuda = target.type == "cuda"
    model, optimizer = _small_model(int(encoded_tokens.max()) + 1, max_length, target, model_size)
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


SMALL_MODEL: dict[str, int] = {
    "hidden_size": 512,
    "intermediate_size": 1408,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 8,
}
"""The model ``--gpu`` times: a small Llama from ``transformers`` with random weights."""
TINY_MODEL: dict[str, int] = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
}
"""The same code path on the CPU in tests."""


def _small_model(
    vocab: int, max_length: int, target: Any, model_size: dict[str, int] | None
) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    size: dict[str, Any] = {**SMALL_MODEL, **(model_size or {})}
    config = LlamaConfig(
        vocab_size=vocab,
        max_position_embeddings=max_length,
        attn_implementation="sdpa",
        **size,
    )  # type: ignore[call-arg]  # kwargs passthrough
    dtype = torch.bfloat16 if target.type == "cuda" else torch.float32
    model = LlamaForCausalLM(config).to(device=target, dtype=dtype)  # type: ignore[call-arg]
    return model, torch.optim.AdamW(model.parameters(), lr=1e-5)


def _is_out_of_memory(error: BaseException) -> bool:
    return "out of memory" in str(error).lower()


def measure_costs(
    *,
    device: str = "cuda",
    model_size: dict[str, int] | None = None,
    tokens: int = 8192,
    lengths: Sequence[int] = (256, 512, 1024, 2048),
    steps: int = 3,
    vocab: int = 32_000,
) -> CostModel:
    """The cost model's two constants, measured: forward+backward+optimizer steps of the small
    model on batches of ``tokens`` tokens made of sequences of one length ``l`` each (one per
    row, no padding), for several ``l``. A step of such a batch costs ``a·tokens + b·tokens·l``,
    so the seconds per token fall on a line in ``l``: its intercept is ``a`` (per token
    computed), its slope ``b`` (per l²)."""
    import torch

    target = torch.device(device)
    cuda = target.type == "cuda"
    model, optimizer = _small_model(vocab, max(lengths), target, model_size)
    generator = torch.Generator().manual_seed(0)
    per_token = []
    for length in lengths:
        rows = max(1, tokens // length)
        ids = torch.randint(0, vocab, (rows, length), generator=generator).to(target)
        seconds = []
        for step in range(steps + 1):
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            model(input_ids=ids, labels=ids).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if cuda:
                torch.cuda.synchronize()
            if step:  # the first step warms up kernels
                seconds.append(time.perf_counter() - start)
        per_token.append(float(np.median(seconds)) / (rows * length))
    slope, intercept = np.polyfit(np.asarray(lengths, dtype=np.float64), per_token, 1)
    size = {**SMALL_MODEL, **(model_size or {})}
    name = torch.cuda.get_device_name(target) if cuda else str(target)
    return CostModel(
        max(float(intercept), 1e-15),
        max(float(slope), 0.0),
        f"measured on {name}: Llama {size['num_hidden_layers']} layers × "
        f"{size['hidden_size']} hidden, random weights, SDPA",
    )


def gpu_sweep(
    encoded_tokens: np.ndarray,
    offsets: np.ndarray,
    labels: np.ndarray,
    max_length: int,
    *,
    budgets: Sequence[int] | None = None,
    device: str = "cuda",
    model_size: dict[str, int] | None = None,
    steps: int = 3,
) -> dict[str, Any]:
    """Sweep the micro-batch token budget on the device: for each budget (``max_length`` ×
    1, 2, 4, … rows until a step runs out of memory), trained tokens/s and peak memory of
    packed rows against samples padded to ``max_length``; the largest budget that fits and
    the fastest."""
    budgets = list(budgets or [max_length * 2**k for k in range(8)])
    table: list[dict[str, Any]] = []
    for budget in budgets:
        rows = budget // max_length
        if rows < 1:
            continue
        try:
            result = gpu_benchmark(
                encoded_tokens, offsets, labels, max_length, steps=steps, batch_rows=rows,
                device=device, model_size=model_size,
            )  # fmt: skip
        except (RuntimeError, MemoryError) as error:
            if not _is_out_of_memory(error):
                raise
            table.append({"tokens_per_step": budget, "rows": rows, "out_of_memory": True})
            break
        finally:
            _free_device_memory(device)
        table.append({"tokens_per_step": budget, "rows": rows, "out_of_memory": False, **result})
    fitting = [r for r in table if not r["out_of_memory"]]
    fastest = max(fitting, key=lambda r: r["packed"]["trained_tokens_per_s"], default=None)
    return {
        "max_length": max_length,
        "budgets": table,
        "largest_fitting": max((r["tokens_per_step"] for r in fitting), default=None),
        "fastest": None if fastest is None else fastest["tokens_per_step"],
    }


def _free_device_memory(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


def sweep_table(sweep: dict[str, Any]) -> list[str]:
    """The sweep as markdown lines."""
    lines = [
        f"micro-batch token budget at max_length={sweep['max_length']}:",
        "",
        "| tokens/step | rows | packed tok/s | packed GiB | padded tok/s | padded GiB | speedup |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in sweep["budgets"]:
        if row["out_of_memory"]:
            lines.append(f"| {row['tokens_per_step']:,} | {row['rows']} | out of memory | | | | |")
            continue
        packed, padded = row["packed"], row["padded_to_max_length"]

        def gib(value: float | None) -> str:
            return "-" if value is None else f"{value:.2f}"

        lines.append(
            f"| {row['tokens_per_step']:,} | {row['rows']} | "
            f"{packed['trained_tokens_per_s']:,.0f} | {gib(packed['peak_memory_gib'])} | "
            f"{padded['trained_tokens_per_s']:,.0f} | {gib(padded['peak_memory_gib'])} | "
            f"{row['speedup']:.2f}x |"
        )
    lines += [
        "",
        f"largest budget that fits: {sweep['largest_fitting']}; fastest: {sweep['fastest']}",
    ]
    return lines


def attention_cost(seq_lens: np.ndarray) -> float:
    """Σ l² over packed sequences: the work of block-diagonal causal attention (up to a
    constant)."""
    return float((np.asarray(seq_lens, dtype=np.float64) ** 2).sum())


__all__ = [
    "BenchResult",
    "BenchRow",
    "Budget",
    "attention_cost",
    "gpu_benchmark",
    "make_budget",
    "run",
]
