"""`seqpack bench`'s advice: within the token budget and the truncation limit, the setting
that trains the most tokens per modelled second; the loader's figures for it; a table that
reads at 80 columns; the --gpu code path (on the CPU, with a tiny model)."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from rich.console import Console

from seqpack.cli import budget as costs
from seqpack.cli import harness, print_bench, synthetic
from seqpack.errors import InvalidOptionError

LENGTHS = (512, 1024, 2048, 4096)


def run(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "seqpack", *map(str, args)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def records():
    return synthetic.conversations(300)


def sweep(records, **budget):
    return harness.run(
        records,
        tokenizer=synthetic.TOKENIZER_PATH,
        max_lengths=LENGTHS,
        strategies=("bfd", "sequential"),
        max_seqs_per_row=(None, 4),
        budget=harness.make_budget(**budget),
    )


@pytest.mark.parametrize(
    ("tokens", "limit", "world"), [(2048, 0.01, 1), (4096, 0.5, 2), (16384, 0.3, 4), (None, 0.1, 1)]
)
def test_the_recommendation_is_the_fastest_within_budget_and_limit(records, tokens, limit, world):
    result = sweep(records, tokens_per_step=tokens, max_truncated=limit, world_size=world)
    rec = result.recommended
    packed = [r for r in result.rows if r.method == "packed"]
    fitting = [r for r in packed if tokens is None or r.max_length <= tokens]
    assert all(r.fits == (r in fitting) for r in packed)
    assert rec.method == "packed" and rec.fits
    within = [r for r in fitting if r.truncated_fraction <= limit]
    if within:
        assert rec in within
        assert rec.trained_per_second == max(r.trained_per_second for r in within)
        assert f"within the {limit:.2%} limit" in result.reason
    else:  # nothing meets the limit: the least truncation, said so
        assert rec.truncated_fraction == min(r.truncated_fraction for r in fitting)
        assert "no candidate cuts at most" in result.reason
    # Modelled throughput: trained tokens over the cost model's seconds, per row.
    cost = harness.make_budget().cost
    for row in result.rows:
        seconds = cost.seconds(row.tokens_computed, row.squares)
        assert math.isclose(row.trained_per_second, row.trained_tokens / seconds, rel_tol=1e-9)
        assert row.trained_tokens > 0 and 0 <= row.trained_cut_fraction < 1
    # Every longer candidate that does not fit is named as given up.
    for length in LENGTHS:
        if tokens is not None and length > tokens:
            assert f"max_length={length} does not fit the budget" in result.reason
    # Padding burns compute on pad tokens: packing is never slower at the same max_length.
    for length in LENGTHS:
        same = {
            r.method: r
            for r in result.rows
            if r.max_length == length and r.strategy != "sequential"
        }
        assert same["packed"].trained_per_second > same["pad_to_max_length"].trained_per_second


def test_the_loader_figures_are_what_packed_loader_does(records, tmp_path):
    import seqpack
    import seqpack.torch as sptorch

    result = sweep(records, tokens_per_step=8192, max_truncated=0.3, world_size=2)
    rec, figures = result.recommended, result.loader
    assert figures["rows_per_step"] == 8192 // rec.max_length == rec.rows_per_step
    encoded = seqpack.encode(
        records, tokenizer=synthetic.TOKENIZER_PATH, template="qwen3", max_length=rec.max_length
    )
    store = seqpack.store.write(
        tmp_path / "store", records, tokenizer=synthetic.TOKENIZER_PATH, template="qwen3",
        max_length=rec.max_length,
    )  # fmt: skip
    assert np.array_equal(store.lengths, np.diff(encoded.offsets))
    for rank in (0, 1):
        loader = sptorch.PackedLoader(
            store, max_length=rec.max_length, batch_rows=figures["rows_per_step"],
            world_size=2, rank=rank, strategy=rec.strategy,
            max_seqs_per_row=rec.max_seqs_per_row,
        )  # fmt: skip
        assert len(loader) == figures["steps"] == rec.steps
        assert loader.imbalance("tokens") == pytest.approx(figures["imbalance"]["tokens"])
        assert loader.imbalance("attention") == pytest.approx(figures["imbalance"]["attention"])
    total = int(np.diff(encoded.offsets).sum())
    assert figures["tokens_per_step"] == pytest.approx(total / (2 * figures["steps"]))
    assert figures["capacity_per_step"] == figures["rows_per_step"] * rec.max_length
    slots = figures["steps"] * 2 * figures["rows_per_step"]
    assert figures["padding_rows"] == slots - rec.rows


def test_the_table_reads_at_80_columns(records):
    result = sweep(records, tokens_per_step=4096, max_truncated=0.5, world_size=2)
    console = Console(width=80, file=io.StringIO(), record=True)
    print_bench(result, console)
    text = console.export_text()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in text  # nothing cut short, headers and method names included
    for header in harness.BenchResult.HEADERS:
        assert header in text
    rows = [line for line in lines if line.strip()[:4].strip().isdigit()]
    assert len(rows) == len(result.rows)
    for name in ("pad to L", "pad longest", "sequential ≤4", "→ "):
        assert name in text
    assert "steps per epoch" in text and "balance='attention'" in text


def test_gpu_memory_becomes_a_token_budget():
    shape = costs.model("llama3-8b")
    one, terms = costs.tokens_for_memory(80, shape, world_size=8)
    two, _ = costs.tokens_for_memory(80, shape, world_size=16)
    assert two > one > 0  # sharding the states leaves more memory for tokens
    used = terms["states_gib"] + terms["overhead_gib"] + one * terms["per_token_mib"] / 1024
    assert used <= terms["usable_gib"] < used + terms["per_token_mib"] / 1024
    with pytest.raises(InvalidOptionError, match="does not fit 24 GiB on 1 GPU"):
        costs.tokens_for_memory(24, shape)
    budget = harness.make_budget(gpu_memory=80, world_size=8)
    assert budget.memory is not None
    assert budget.tokens_per_step == one and budget.memory["tokens_per_step"] == one
    with pytest.raises(InvalidOptionError, match="either a token budget or a GPU memory"):
        harness.make_budget(gpu_memory=80, tokens_per_step=4096)
    assert costs.parse_fraction("1%") == costs.parse_fraction("0.01") == 0.01
    with pytest.raises(InvalidOptionError, match="max_truncated"):
        costs.parse_fraction("lots")


def test_cli_budget_path(tmp_path):
    done = run(
        "bench", "--conversations", 300, "--max-lengths", "512,1024,2048,4096",
        "--strategies", "bfd", "--tokens-per-step", 2048, "--world-size", 2,
        "--max-truncated", "40%", "--out", tmp_path / "out",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    rec = report["recommended"]
    assert rec["max_length"] <= 2048 and rec["truncated_fraction"] <= 0.40
    assert report["budget"]["tokens_per_step"] == 2048 and report["budget"]["world_size"] == 2
    assert report["loader"]["steps"] == rec["steps"]
    text = " ".join(done.stdout.split())
    assert "Within 2,048 tokens per micro-batch" in text
    assert "max_length=4096 does not fit the budget" in text
    assert "too long" in text and "Loader" in text
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "## Loader, recommended setting" in markdown and "rank imbalance" in markdown
    for bad, message in (
        (("--tokens-per-step", "100", "--max-lengths", "512"), "no max_length fits 100 tokens"),
        (("--gpu-memory", "8", "--model", "llama3-70b"), "does not fit 8 GiB"),
        (("--max-truncated", "150%"), "must be within 0..100%"),
    ):
        done = run("bench", "--conversations", 50, "--out", tmp_path / "bad", *bad)
        assert done.returncode == 2 and message in done.stderr, (bad, done.stderr)
        assert "Traceback" not in done.stderr


def test_measured_costs_and_the_gpu_sweep_run_on_the_cpu(tmp_path):
    # The --gpu path needs CUDA; the same code on the CPU with a tiny model proves it end to end.
    cost = harness.measure_costs(
        device="cpu", model_size=harness.TINY_MODEL, tokens=512, lengths=(32, 64, 128), steps=1
    )
    assert cost.per_token > 0 and cost.per_square >= 0 and "measured on cpu" in cost.source
    done = run(
        "bench", "--conversations", 60, "--max-lengths", "128,256", "--strategies", "bfd",
        "--tokens-per-step", 512, "--max-truncated", "100%", "--gpu", "--gpu-device", "cpu",
        "--gpu-model", "tiny", "--gpu-tokens", 256, "--out", tmp_path / "out",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["budget"]["cost_model"].startswith("measured on cpu")
    sweep = report["gpu"]["sweep"]
    assert [b["rows"] for b in sweep["budgets"]] == [1, 2]
    assert all(b["packed"]["trained_tokens_per_s"] > 0 for b in sweep["budgets"])
    assert sweep["largest_fitting"] == 2 * report["recommended"]["max_length"]
    assert "micro-batch token budget" in done.stdout


def test_the_readme_shows_what_the_command_prints(tmp_path):
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    command = "$ seqpack bench --tokens-per-step 16384\n"
    shown = readme[readme.index(command) + len(command) :].split("```")[0]
    done = run("bench", "--tokens-per-step", 16384, "--out", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    printed = " ".join(done.stdout.split())
    table = [line for line in shown.splitlines() if line.strip()[:4].strip().isdigit()]
    assert len(table) == 20
    for line in table:
        assert " ".join(line.split()) in printed, line
    recommendation = shown[shown.index("Within") : shown.index("Loader")]
    assert " ".join(recommendation.split()) in printed
