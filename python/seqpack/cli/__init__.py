"""The ``seqpack`` command line: ``bench`` (which max_length and strategy waste least),
``stats`` (what the data looks like, and what a max_length would cut), ``pack`` (pack a
file to Parquet or .npy), ``store`` (encode a dataset of any size into a token store), and
``demo``.

Errors print one line naming the file, line and field, and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import numpy as np

from seqpack.cli.budget import DEFAULT_MODEL, DEFAULT_TFLOPS, MODELS
from seqpack.cli.budget import parse_fraction as _parse_fraction
from seqpack.errors import SeqpackError


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def parse_fraction(text: str) -> float:
    try:
        return _parse_fraction(text)
    except SeqpackError as error:
        message = str(error).removeprefix("option max_truncated: ")
        raise argparse.ArgumentTypeError(message) from None


def _limit_list(text: str) -> list[int | None]:
    out: list[int | None] = []
    for value in text.split(","):
        value = value.strip().lower()
        if value in ("none", "0", ""):
            out.append(None)
        elif value.isdigit():
            out.append(int(value))
        else:
            raise argparse.ArgumentTypeError(f"expected integers or 'none', got {text!r}")
    return out


def _add_chat_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tokenizer", help="tokenizer.json or a folder with one (needed for chat input)"
    )
    parser.add_argument(
        "--template",
        default=None,
        help="the chat template: the tokenizer's own (default; from its "
        "tokenizer_config.json or chat_template.jinja), qwen3, qwen2.5, "
        "llama3, llama3.1, llama3.2, llama3.3, deepseek-v3.1, deepseek-r1, mistral, "
        "mistral-nemo, gemma2, gemma3, phi3.5, phi4, glm4.6, glm4.7, "
        "a tokenizer_config.json or a .jinja file",
    )
    parser.add_argument(
        "--format", default="auto", choices=["auto", "openai", "sharegpt", "alpaca"]
    )
    parser.add_argument(
        "--input-kind",
        default="auto",
        choices=["auto", "chat", "tokens"],
        help="chat records, or pre-tokenized records with input_ids (and labels)",
    )
    parser.add_argument("--on-error", default="raise", choices=["raise", "skip"])
    parser.add_argument("--keep-first-turn", action="store_true")
    parser.add_argument(
        "--overlong",
        default=None,
        choices=["error", "drop", "truncate", "split"],
        help="input longer than max_length (default: truncate conversations "
        "turn-aware; error for pre-tokenized sequences)",
    )
    parser.add_argument(
        "--truncate-keep",
        default="head",
        choices=["head", "tail", "ends"],
        help="what a token-level cut keeps (default: %(default)s)",
    )
    # The old names, for one release.
    parser.add_argument(
        "--overflow", default=None, choices=["truncate", "split"], help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--cut-keep", default=None, choices=["head", "tail", "middle"], help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--train-on",
        default="assistant",
        help="comma-separated roles whose turns get labels, or 'all'",
    )
    parser.add_argument("--train-on-cut-turns", action="store_true")
    parser.add_argument("--min-trainable-tokens", type=int, default=1)
    parser.add_argument(
        "--special-tokens-in-content",
        choices=["keep", "error"],
        default="keep",
        help="special-token text inside a message: tokenize it as the token (as transformers "
        "does; reported) or refuse the record",
    )


@contextmanager
def _progress(total: int | None = None) -> Iterator[Callable[[str], None]]:
    """A live progress bar (rich) on stderr: each call names the step now running; with a
    known ``total`` of steps the bar fills as they finish."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = [SpinnerColumn(), TextColumn("{task.description}")]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn()]
    with Progress(
        *columns, TimeElapsedColumn(), transient=True, console=_console(stderr=True)
    ) as progress:
        task = progress.add_task("starting", total=total)
        started = 0

        def note(message: str) -> None:
            nonlocal started
            progress.update(task, description=message, completed=max(started, 0))
            started += 1

        yield note


def _console(stderr: bool = False) -> Any:
    import shutil

    from rich.console import Console

    # Piped output (a log, a CI job) gets a wide fixed width so tables are never squeezed.
    interactive = (sys.stderr if stderr else sys.stdout).isatty()
    width = None if interactive else max(shutil.get_terminal_size((160, 24)).columns, 160)
    return Console(stderr=stderr, highlight=False, width=width)


def _print_table(title: str, headers: list[str], rows: list[list[str]]) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for header in headers:
        table.add_column(header, justify="right")
    for row in rows:
        table.add_row(*row)
    _console().print(table)


def _template(args: argparse.Namespace) -> str | None:
    """``None`` (the tokenizer's own template) unless one was named; 'auto' is the old
    spelling of the default."""
    return None if args.template in (None, "auto") else str(args.template)


def _overlong(args: argparse.Namespace) -> tuple[str | None, str]:
    """--overlong and --truncate-keep, taking the deprecated --overflow / --cut-keep."""
    overlong, keep = args.overlong, args.truncate_keep
    if args.overflow is not None:
        print("seqpack: --overflow is deprecated; use --overlong", file=sys.stderr)
        overlong = overlong or args.overflow
    if args.cut_keep is not None:
        print("seqpack: --cut-keep is deprecated; use --truncate-keep", file=sys.stderr)
        keep = "ends" if args.cut_keep == "middle" else args.cut_keep
    return overlong, keep


def _need_tokenizer(args: argparse.Namespace) -> Any:
    if not args.tokenizer:
        raise SeqpackError(
            "--tokenizer is required for chat input (a tokenizer.json or a folder holding one)"
        )
    return args.tokenizer


def _chat_options(args: argparse.Namespace) -> dict[str, Any]:
    train_on: str | list[str] = (
        "all"
        if args.train_on == "all"
        else [role.strip() for role in args.train_on.split(",") if role.strip()]
    )
    overlong, keep = _overlong(args)
    return {
        "format": args.format,
        "keep_first_turn": args.keep_first_turn,
        "overlong": overlong or "truncate",
        "truncate_keep": keep,
        "train_on": train_on,
        "train_on_cut_turns": args.train_on_cut_turns,
        "min_trainable_tokens": args.min_trainable_tokens,
        "special_tokens_in_content": args.special_tokens_in_content,
    }


def command_pack(args: argparse.Namespace) -> int:
    from seqpack.chat import encode
    from seqpack.cli.io import read_input, write_output
    from seqpack.pack import OverlongPolicy, TruncateKeep, pack

    with _progress(total=3) as note:
        note(f"reading {args.input}")
        data = read_input(args.input, kind=args.input_kind)
        note("encoding and packing")
        start = time.perf_counter()
        common = {
            "max_length": args.max_length,
            "strategy": args.strategy,
            "max_seqs_per_row": args.max_seqs_per_row,
            "pad_rows_to_multiple_of": args.pad_rows_to_multiple_of,
            "seed": args.seed,
            "pad_id": args.pad_id,
        }
        if data.kind == "tokens":
            assert data.sequences is not None
            overlong, keep = _overlong(args)
            batch = pack(
                data.sequences,
                labels=data.labels,
                overlong=cast(OverlongPolicy, overlong or "error"),
                truncate_keep=cast(TruncateKeep, keep),
                **common,
            )
        else:
            source = data.records if data.records is not None else data.path
            encoded = encode(
                source,
                tokenizer=_need_tokenizer(args),
                template=_template(args),
                max_length=args.max_length,
                on_error=args.on_error,
                **_chat_options(args),
            )
            batch = pack(encoded, **common)
        seconds = time.perf_counter() - start
        note(f"writing {args.output}")
        written = write_output(batch, args.output)
    console = _console()
    console.print(f"packed in {seconds:.2f} s\n{batch.summary()}")
    for path in written:
        console.print(f"wrote {path}")
    return 0


def _percentiles(values: list[int] | np.ndarray) -> list[str]:
    array = np.asarray(values)
    if array.size == 0:
        return ["0"] + ["-"] * 6
    p = np.percentile(array, [10, 50, 90, 99])
    return [
        f"{array.size:,}",
        f"{array.mean():,.0f}",
        *(f"{v:,.0f}" for v in p),
        f"{array.max():,}",
    ]


def command_stats(args: argparse.Namespace) -> int:
    from seqpack.chat import encode
    from seqpack.cli.io import read_input

    with _progress(total=2) as note:
        note(f"reading {args.input}")
        data = read_input(args.input, kind=args.input_kind)
        if data.kind == "tokens":
            lengths = np.array([len(s) for s in data.sequences or []])
            over = lengths > args.max_length
            _print_table(
                f"{args.input}: tokens per sequence",
                ["sequences", "mean", "p10", "p50", "p90", "p99", "max"],
                [_percentiles(lengths)],
            )
            _console().print(
                f"at max_length={args.max_length}: {int(over.sum()):,} sequences longer "
                f"({int((lengths[over] - args.max_length).sum()):,} tokens beyond it)"
            )
            return 0
        note("encoding")
        source = data.records if data.records is not None else data.path
        encoded = encode(
            source,
            tokenizer=_need_tokenizer(args),
            template=_template(args),
            max_length=args.max_length,
            on_error=args.on_error,
            **_chat_options(args),
        )
    reports = [r for r in encoded.report.records if r.status != "skipped"]
    rows = [["all", *_percentiles([r.tokens_before for r in reports])]]
    for role in ("system", "user", "assistant", "tool"):
        rows.append(
            [role, *_percentiles([r.role_tokens[role] for r in reports if r.role_tokens[role]])]
        )
    rows.append(["turns", *_percentiles([r.turns for r in reports])])
    _print_table(
        f"{args.input}: tokens per conversation (and per role, where present)",
        ["", "count", "mean", "p10", "p50", "p90", "p99", "max"],
        rows,
    )
    lengths = np.array([r.tokens_before for r in reports])
    edges = [0] + [2**k for k in range(5, 16)] + [int(lengths.max(initial=0)) + 1]
    counts = np.histogram(lengths, bins=sorted(set(edges)))[0]
    bar_rows = []
    for low, high, count in zip(
        sorted(set(edges))[:-1], sorted(set(edges))[1:], counts, strict=True
    ):
        if count:
            bar = "█" * max(1, int(40 * count / counts.max()))
            bar_rows.append([f"{low:,}–{high - 1:,}", f"{count:,}", bar])
    _print_table("histogram of tokens per conversation", ["tokens", "conversations", ""], bar_rows)
    report = encoded.report
    removed = report.tokens_removed()
    _console().print(
        f"at max_length={args.max_length}: {report.summary().text()}\n"
        f"reasons: {', '.join(f'{k} {v}' for k, v in sorted(report.reasons().items()))}\n"
        f"tokens removed by role: {', '.join(f'{k} {v:,}' for k, v in removed.items() if v)}"
    )
    return 0


def command_bench(args: argparse.Namespace) -> int:
    from seqpack.cli import harness, synthetic
    from seqpack.cli.io import read_input, write_text

    out = Path(args.out)
    device, why_not = _gpu_device(args) if args.gpu else (None, None)
    model_size = harness.TINY_MODEL if args.gpu_model == "tiny" else harness.SMALL_MODEL
    budget_options: dict[str, Any] = {
        "tokens_per_step": args.tokens_per_step,
        "gpu_memory": args.gpu_memory,
        "model_name": args.model,
        "world_size": args.world_size,
        "max_truncated": args.max_truncated,
        "tflops": args.tflops,
        "batch_rows": args.batch_size,
    }
    budget = harness.make_budget(**budget_options)  # checks the options before any work
    steps = 1 + len(args.max_lengths) * (1 + len(args.strategies) * len(args.max_seqs_per_row))
    steps += 4 + int(args.gpu)  # reading, loader figures, writing, plotting (and the GPU run)
    with _progress(total=steps) as note:
        if device is not None:
            note(f"{device}: measuring the cost model's constants")
            cost = harness.measure_costs(
                device=device, model_size=model_size, tokens=args.gpu_tokens
            )
            budget = harness.make_budget(**budget_options, cost=cost)
        if args.input is None:
            note("generating the built-in synthetic conversation set")
            records: Any = synthetic.conversations(args.conversations)
            tokenizer: Any = args.tokenizer or synthetic.TOKENIZER_PATH
            # The shipped tokenizer carries no chat template; the set is ChatML.
            template = _template(args) or (None if args.tokenizer else "qwen3")
            source = (
                f"built-in synthetic set ({args.conversations:,} conversations, "
                "seqpack's small byte-level BPE tokenizer)"
            )
        else:
            data = read_input(args.input, kind=args.input_kind)
            if data.kind == "tokens":
                raise SeqpackError(
                    f"{args.input}: bench needs chat records (it measures truncation per turn)"
                )
            records = data.records if data.records is not None else data.path
            tokenizer = _need_tokenizer(args)
            template = _template(args)
            source = str(args.input)
        result = harness.run(
            records,
            tokenizer=tokenizer,
            template=template,
            max_lengths=args.max_lengths,
            strategies=args.strategies,
            max_seqs_per_row=args.max_seqs_per_row,
            batch_size=args.batch_size,
            on_error="skip",
            progress=note,
            format=args.format,
            keep_first_turn=args.keep_first_turn,
            overlong=_overlong(args)[0] or "truncate",
            truncate_keep=_overlong(args)[1],
            budget=budget,
        )
        result.source = source
        if args.gpu:
            note(f"{device or 'GPU'}: sweeping the micro-batch token budget, packed vs padded")
            result.gpu = (
                {"skipped": why_not}
                if device is None
                else _gpu(records, tokenizer, template, result, device, model_size)
            )
        note(f"writing the report to {out}")
        out.mkdir(parents=True, exist_ok=True)
        write_text(result.to_markdown(), out / "report.md")
        write_text(result.to_json(), out / "report.json")
        note("plotting")
        plots = result.plots(out)
    console = _console()
    print_bench(result, console)
    if args.gpu:
        gpu = result.gpu or {}
        if "skipped" in gpu:
            console.print(f"GPU: {gpu['skipped']}; the advice uses the modelled constants")
        else:
            console.print(f"\n[bold]{gpu['device']}[/bold] ({gpu['cost_model']})")
            for line in harness.sweep_table(gpu["sweep"]):
                console.print(line)
    console.print(
        f"wrote {out / 'report.md'}, {out / 'report.json'}, " + ", ".join(str(p) for p in plots)
    )
    return 0


def print_bench(result: Any, console: Any) -> None:
    """The bench table, the recommendation and the loader's figures, readable at any console
    width from 80 columns (short headers with units, no vertical rules)."""
    from rich import box
    from rich.table import Table

    from seqpack.cli import harness

    table = Table(
        title=f"seqpack bench: {result.source}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 1),
        collapse_padding=True,
    )
    for header in harness.BenchResult.HEADERS:
        table.add_column(header, justify="left" if header == "method" else "right", no_wrap=True)
    for row in result.table_rows():
        table.add_row(*row)
    console.print(table)
    console.print(result.legend(), soft_wrap=False)
    rec = result.recommended
    console.print(
        f"\n[bold]Recommended:[/bold] max_length={rec.max_length}, strategy={rec.strategy}"
        + (f", max_seqs_per_row={rec.max_seqs_per_row}" if rec.max_seqs_per_row else "")
        + f"\n{result.reason}"
    )
    lines = result.loader_lines()
    if lines:
        console.print("\n[bold]Loader[/bold] (PackedLoader with this setting):")
        for line in lines:
            console.print(f"  {line}")


def _gpu_device(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """The device --gpu runs on, or why there is none."""
    if args.gpu_device != "cuda":
        return args.gpu_device, None
    try:
        import torch
    except ImportError:
        return None, "torch is not installed"
    if not torch.cuda.is_available():
        return None, "CUDA is not available on this machine; the GPU sweep was not run"
    return "cuda", None


def _gpu(
    records: Any,
    tokenizer: Any,
    template: str | None,
    result: Any,
    device: str,
    model_size: dict[str, int],
) -> dict[str, Any]:
    from seqpack.chat import encode
    from seqpack.cli.harness import gpu_sweep

    max_length = result.recommended.max_length
    encoded = encode(
        records, tokenizer=tokenizer, template=template, max_length=max_length, on_error="skip"
    )
    sweep = gpu_sweep(
        encoded.tokens, encoded.offsets, encoded.labels, max_length,
        device=device, model_size=model_size,
        budgets=[max_length * 2**k for k in range(8 if device == "cuda" else 2)],
    )  # fmt: skip
    import torch

    name = torch.cuda.get_device_name() if device == "cuda" else device
    return {"device": name, "cost_model": result.budget["cost_model"], "sweep": sweep}


def command_store(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from seqpack import store

    options: dict[str, Any] = {}
    if args.tokenizer:
        options = {
            "tokenizer": args.tokenizer,
            "template": _template(args),
            "max_length": args.max_length,
            "on_error": args.on_error,
            **_chat_options(args),
        }
    start = time.perf_counter()
    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn()]
    with Progress(*columns, transient=True, console=_console(stderr=True)) as bar:
        task = bar.add_task("encoding", total=None)

        def progress(records: int) -> None:
            bar.update(task, description=f"{records:,} records written")

        written = store.write(
            args.output, args.inputs if len(args.inputs) > 1 else args.inputs[0],
            chunk_size=args.chunk_size, overwrite=args.overwrite, progress=progress, **options,
        )  # fmt: skip
    seconds = time.perf_counter() - start
    m = written.manifest
    console = _console()
    console.print(
        f"wrote {written.path}: {m['samples']:,} samples, {m['tokens']:,} tokens "
        f"({m['trained_tokens']:,} trained) from {m['records']:,} records in {seconds:.1f} s"
    )
    if m["kind"] == "conversations":
        console.print(written.report.summary().text())
    return 0


def command_demo(args: argparse.Namespace) -> int:
    from seqpack.cli.demo import run

    print(run(sequences=args.sequences, max_length=args.max_length, seed=args.seed))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seqpack", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    bench = commands.add_parser(
        "bench", help="sweep max_length × strategy × row limit and recommend one"
    )
    bench.add_argument(
        "input",
        nargs="?",
        help="chat records (.json/.jsonl/.parquet); default: a built-in synthetic set",
    )
    _add_chat_options(bench)
    bench.add_argument("--max-lengths", type=_int_list, default=[1024, 2048, 4096, 8192])
    bench.add_argument(
        "--strategies",
        type=lambda t: [s.strip() for s in t.split(",") if s.strip()],
        default=["bfd", "ffd", "sequential"],
    )
    bench.add_argument("--max-seqs-per-row", type=_limit_list, default=[None])
    bench.add_argument(
        "--batch-size",
        type=_positive,
        default=8,
        help="samples per batch of the pad-to-longest baseline; rows per micro-batch when no "
        "token budget is given",
    )
    budget = bench.add_argument_group(
        "budget", "what the recommendation must fit (see seqpack.cli.budget for the estimates)"
    )
    fits = budget.add_mutually_exclusive_group()
    fits.add_argument(
        "--tokens-per-step",
        type=_positive,
        default=None,
        help="token budget of one micro-batch per GPU (rows × max_length must fit)",
    )
    fits.add_argument(
        "--gpu-memory",
        type=_positive_float,
        default=None,
        help="GiB per GPU, turned into a token budget for --model by a documented estimate",
    )
    budget.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        choices=sorted(MODELS),
        help="model shape for the cost model and the memory estimate",
    )
    budget.add_argument("--world-size", type=_positive, default=1, help="data-parallel GPUs")
    budget.add_argument(
        "--max-truncated",
        type=parse_fraction,
        default=0.01,
        help="most tokens the recommendation may cut, e.g. 1%% or 0.01",
    )
    budget.add_argument(
        "--tflops",
        type=_positive_float,
        default=DEFAULT_TFLOPS,
        help="sustained TFLOP/s per GPU for the modelled throughput",
    )
    bench.add_argument("--conversations", type=int, default=5000, help="size of the built-in set")
    bench.add_argument(
        "--out", default="seqpack-bench", help="folder for report.md, report.json and plots"
    )
    bench.add_argument(
        "--gpu",
        action="store_true",
        help="on CUDA: measure the cost model's constants and sweep the micro-batch token "
        "budget, packed vs padded, with a small random-weight Llama",
    )
    bench.add_argument("--gpu-device", default="cuda", help=argparse.SUPPRESS)  # tests: cpu
    bench.add_argument(
        "--gpu-model", default="small", choices=["small", "tiny"], help=argparse.SUPPRESS
    )
    bench.add_argument("--gpu-tokens", type=_positive, default=8192, help=argparse.SUPPRESS)
    bench.set_defaults(run=command_bench)

    stats = commands.add_parser(
        "stats", help="token lengths per role and what max_length would cut"
    )
    stats.add_argument("input")
    _add_chat_options(stats)
    stats.add_argument(
        "--max-length",
        type=_positive,
        default=4096,
        help="tokens per sample (default: %(default)s)",
    )
    stats.set_defaults(run=command_stats)

    pack = commands.add_parser(
        "pack", help="pack a file to Parquet (.parquet) or .npy arrays (a folder)"
    )
    pack.add_argument("input")
    pack.add_argument("-o", "--output", required=True)
    _add_chat_options(pack)
    pack.add_argument(
        "--max-length", type=_positive, default=4096, help="tokens per row (default: %(default)s)"
    )
    pack.add_argument("--strategy", default="bfd", choices=["bfd", "ffd", "sequential", "wrapped"])
    pack.add_argument("--max-seqs-per-row", type=int, default=None)
    pack.add_argument("--pad-rows-to-multiple-of", type=int, default=1)
    pack.add_argument("--seed", type=int, default=None, help="shuffle rows reproducibly")
    pack.add_argument("--pad-id", type=int, default=0)
    pack.set_defaults(run=command_pack)

    store = commands.add_parser(
        "store", help="encode records (or token sequences) into a token store, in chunks"
    )
    store.add_argument("inputs", nargs="+", help=".json/.jsonl/.parquet files or globs")
    store.add_argument("-o", "--output", required=True, help="the store's folder (must be new)")
    _add_chat_options(store)
    store.add_argument(
        "--max-length", type=_positive, default=4096,
        help="tokens per sample, for chat records (default: %(default)s)",
    )  # fmt: skip
    store.add_argument(
        "--chunk-size", type=_positive, default=16384,
        help="records per chunk; memory follows it (default: %(default)s)",
    )  # fmt: skip
    store.add_argument("--overwrite", action="store_true", help="replace an existing store")
    store.set_defaults(run=command_store)

    demo = commands.add_parser("demo", help="pack a synthetic token set with every strategy")
    demo.add_argument("--sequences", type=int, default=100_000)
    demo.add_argument("--max-length", type=int, default=4096)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=command_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except (SeqpackError, OSError, ValueError, TypeError, KeyError) as exc:
        # SeqpackError (a ValueError) is the expected kind; the others are a last line of
        # defence so a user never gets a traceback for bad input.
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"seqpack {args.command}: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
