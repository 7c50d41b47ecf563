"""The command line as a user runs it: a subprocess, on real files, checking output files,
messages and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

import seqpack
from conftest import require_chat_data


def run(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "seqpack", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
        check=False,
    )


def test_pack_to_parquet_matches_pack(tmp_path, qwen_dir):
    files = {p.name: p for p in require_chat_data()}
    source = files["glaive_toolcall_en_demo.json"]
    out = tmp_path / "packed.parquet"
    done = run(
        "pack",
        source,
        "-o",
        out,
        "--tokenizer",
        qwen_dir,
        "--max-length",
        1024,
        "--on-error",
        "skip",
    )
    assert done.returncode == 0, done.stderr
    # One summary covering both stages: what encoding cut, then what packing did.
    assert "conversations (encode):" in done.stdout and "packing:" in done.stdout
    assert "max_length          1,024" in done.stdout and "wrote" in done.stdout
    table = pq.read_table(out)
    assert table.schema.field("input_ids").type.value_type.bit_width == 32
    # The command line renders with the tokenizer's own template, as the API does.
    batch = seqpack.pack(source, tokenizer=qwen_dir, max_length=1024, on_error="skip")
    for name in ("input_ids", "labels", "position_ids"):
        column = np.array(table.column(name).to_pylist())
        np.testing.assert_array_equal(column, getattr(batch, name))
    seq_lens = table.column("seq_lens").to_pylist()
    assert [n for row in seq_lens for n in row] == batch.seq_lens.tolist()
    report = [
        json.loads(line)
        for line in (tmp_path / "packed.parquet.report.jsonl").read_text().splitlines()
    ]
    assert len(report) == 300 and {r["status"] for r in report} <= {
        "kept",
        "truncated",
        "dropped",
        "skipped",
    }
    assert [r["record"] for r in report] == list(range(300))


def test_pack_pre_tokenized_jsonl_to_npy(tmp_path):
    source = tmp_path / "tokens.jsonl"
    rows = [{"input_ids": list(range(1, n + 1))} for n in (5, 9, 3, 12, 7)]
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "arrays"
    done = run("pack", source, "-o", out, "--max-length", 16)
    assert done.returncode == 0, done.stderr
    expected = seqpack.pack([r["input_ids"] for r in rows], max_length=16)
    np.testing.assert_array_equal(np.load(out / "input_ids.npy"), expected.input_ids)
    np.testing.assert_array_equal(np.load(out / "cu_seqlens.npy"), expected.cu_seqlens)


def test_stats_on_real_file(qwen_dir):
    files = {p.name: p for p in require_chat_data()}
    done = run(
        "stats",
        files["reason_tool_use_demo_50.jsonl"],
        "--tokenizer",
        qwen_dir,
        "--max-length",
        2048,
    )
    assert done.returncode == 0, done.stderr
    for word in (
        "assistant",
        "system",
        "tool",
        "turns",
        "histogram",
        "at max_length=2048",
        "reasons",
    ):
        assert word in done.stdout, word


def test_bench_on_real_file_writes_report_and_plots(tmp_path, qwen_dir):
    files = {p.name: p for p in require_chat_data()}
    done = run(
        "bench",
        files["glaive_toolcall_en_demo.json"],
        "--tokenizer",
        qwen_dir,
        "--max-lengths",
        "512,1024,2048",
        "--strategies",
        "bfd,sequential",
        "--max-seqs-per-row",
        "none,4",
        "--out",
        tmp_path / "out",
    )
    assert done.returncode == 0, done.stderr
    assert "Recommended:" in done.stdout and "pad longest" in done.stdout
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    methods = {
        (r["max_length"], r["method"], r["strategy"], r["max_seqs_per_row"]) for r in report["rows"]
    }
    assert (1024, "packed", "bfd", 4) in methods and (
        2048,
        "pad_to_max_length",
        None,
        None,
    ) in methods
    assert len(report["rows"]) == 3 * (2 * 2 + 2)
    packed = [r for r in report["rows"] if r["method"] == "packed"]
    assert all(0 < r["efficiency"] <= 1 and r["rows"] > 0 for r in packed)
    # Padding to max_length is never more efficient than best-fit packing at the same length.
    for length in (512, 1024, 2048):
        pad = next(
            r
            for r in report["rows"]
            if r["max_length"] == length and r["method"] == "pad_to_max_length"
        )
        bfd = next(
            r
            for r in packed
            if r["max_length"] == length
            and r["strategy"] == "bfd"
            and r["max_seqs_per_row"] is None
        )
        assert (
            bfd["efficiency"] > pad["efficiency"] and bfd["attention_cost"] < pad["attention_cost"]
        )
    for plot in ("lengths.png", "efficiency.png"):
        data = (tmp_path / "out" / plot).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert "Recommended" in (tmp_path / "out" / "report.md").read_text()


def test_bench_default_runs_without_data(tmp_path):
    done = run(
        "bench",
        "--conversations",
        300,
        "--max-lengths",
        "1024,4096",
        "--out",
        tmp_path / "out",
        "--gpu",
    )
    assert done.returncode == 0, done.stderr
    assert "synthetic" in done.stdout and "Recommended:" in done.stdout
    assert "GPU:" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("pack", "missing.jsonl", "-o", "x.parquet"), "missing.jsonl: no such file"),
        (("pack", "data.csv", "-o", "x.parquet"), "unknown input format '.csv'"),
        (
            ("pack", "bad.jsonl", "-o", "x.parquet", "--tokenizer", "TOK"),
            "record 1 (line 2): not valid JSON",
        ),
        (
            ("pack", "good.jsonl", "-o", "x.txt", "--tokenizer", "TOK"),
            "unknown output format '.txt'",
        ),
        (("pack", "good.jsonl", "-o", "x.parquet"), "--tokenizer is required"),
        (
            ("pack", "good.jsonl", "-o", "x.parquet", "--tokenizer", "TOK", "--max-length", "0"),
            "--max-length: expected a positive integer",
        ),
        (("stats", "tokens_bad.jsonl"), "record 1: field 'input_ids' is missing"),
        (
            ("bench", "good.jsonl", "--tokenizer", "TOK", "--max-lengths", "0"),
            "expected positive integers",
        ),
    ],
)
def test_bad_input_gives_one_line_and_non_zero_exit(tmp_path, qwen_dir, args, message):
    good = {
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    }
    (tmp_path / "good.jsonl").write_text(json.dumps(good) + "\n")
    (tmp_path / "bad.jsonl").write_text(json.dumps(good) + "\n{broken\n")
    (tmp_path / "data.csv").write_text("a,b\n")
    (tmp_path / "tokens_bad.jsonl").write_text('{"input_ids": [1, 2]}\n{"ids": [3]}\n')
    args = [str(qwen_dir) if a == "TOK" else a for a in args]
    done = run(*args, cwd=tmp_path)
    assert done.returncode != 0
    assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "x.parquet").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".x.")]  # no temporary left


def test_parquet_chat_and_token_input(tmp_path, qwen_dir):
    import pyarrow as pa

    files = {p.name: p for p in require_chat_data()}
    records = json.loads(files["alpaca_en_demo.json"].read_text())[:100]
    chat = tmp_path / "chat.parquet"
    pq.write_table(pa.Table.from_pylist(records), chat)
    done = run(
        "pack", chat, "-o", tmp_path / "out.parquet", "--tokenizer", qwen_dir, "--max-length", 512
    )
    assert done.returncode == 0, done.stderr
    expected = seqpack.pack(records, tokenizer=qwen_dir, template="qwen3", max_length=512)
    got = np.array(pq.read_table(tmp_path / "out.parquet").column("input_ids").to_pylist())
    np.testing.assert_array_equal(got, expected.input_ids)

    tokens = tmp_path / "tokens.parquet"
    pq.write_table(pa.Table.from_pylist([{"input_ids": [1, 2, 3]}, {"input_ids": [4, 5]}]), tokens)
    done = run("pack", tokens, "-o", tmp_path / "arrays", "--max-length", 8)
    assert done.returncode == 0, done.stderr
    assert np.load(tmp_path / "arrays" / "input_ids.npy").tolist() == [[1, 2, 3, 4, 5, 0, 0, 0]]


def test_gpu_benchmark_code_runs_on_the_cpu():
    # The --gpu timing runs on CUDA only; the same code on the CPU with a tiny model proves
    # it works end to end here (CUDA is not available to the test suite).
    from seqpack.cli import harness

    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 60, size=24)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    tokens = rng.integers(0, 100, size=int(offsets[-1]))
    result = harness.gpu_benchmark(
        tokens,
        offsets,
        tokens.copy(),
        64,
        steps=2,
        batch_rows=4,
        device="cpu",
        model_size={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
        },
    )
    assert result["device"] == "cpu"
    assert (
        result["packed"]["trained_tokens_per_s"] > 0
        and result["padded_to_max_length"]["trained_tokens_per_s"] > 0
    )
    assert result["speedup"] > 0


def test_npy_output_never_touches_other_files(tmp_path):
    source = tmp_path / "tokens.jsonl"
    source.write_text('{"input_ids": [1, 2, 3]}\n')
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "keep.txt").write_text("precious")
    done = run("pack", source, "-o", folder, "--max-length", 8)
    assert done.returncode == 2 and "holds other files (keep.txt)" in done.stderr
    assert (folder / "keep.txt").read_text() == "precious"
    done = run("pack", source, "-o", ".", "--max-length", 8, cwd=tmp_path)
    assert done.returncode == 2 and source.exists()
    # A folder seqpack wrote before is updated in place.
    assert run("pack", source, "-o", tmp_path / "arrays", "--max-length", 8).returncode == 0
    assert (
        run(
            "pack", source, "-o", tmp_path / "arrays", "--max-length", 4, "--overlong", "split"
        ).returncode
        == 0
    )
    assert np.load(tmp_path / "arrays" / "input_ids.npy").shape == (1, 4)


def test_parquet_refuses_ids_that_do_not_fit_int32(tmp_path):
    source = tmp_path / "tokens.jsonl"
    source.write_text('{"input_ids": [1, 99999999999, 3]}\n')
    done = run("pack", source, "-o", tmp_path / "out.parquet", "--max-length", 8)
    assert done.returncode == 2 and "outside int32" in done.stderr
    assert not (tmp_path / "out.parquet").exists()


def test_odd_inputs_give_one_line(tmp_path):
    (tmp_path / "scalar.json").write_text("5")
    (tmp_path / "latin1.jsonl").write_bytes(b'{"input_ids": [1]}\n\xff\xfe\n')
    (tmp_path / "bad_ids.jsonl").write_text('{"input_ids": 5}\n')
    for args, message in (
        (("stats", "scalar.json", "--input-kind", "tokens"), "expected a JSON array"),
        (("stats", "latin1.jsonl", "--input-kind", "tokens"), "not UTF-8"),
        (("stats", "bad_ids.jsonl"), "must be a list of token ids"),
        (("bench", "--batch-size", "0"), "expected a positive integer"),
    ):
        done = run(*args, cwd=tmp_path)
        assert done.returncode == 2, args
        assert message in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr


def test_help_shows_defaults_and_template_follows_the_tokenizer(tmp_path, qwen_dir):
    done = run("pack", "--help")
    assert "tokens per row (default: 4096)" in " ".join(done.stdout.split())
    assert "the tokenizer's own (default" in " ".join(done.stdout.split())
    # A tokenizer folder whose template is not Qwen's: the command line must use it, not qwen3.
    folder = tmp_path / "tok"
    folder.mkdir()
    (folder / "tokenizer.json").write_text((qwen_dir / "tokenizer.json").read_text())
    template = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|im_end|>{% endfor %}"
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"chat_template": template, "eos_token": "<|im_end|>"})
    )
    good = {
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    }
    (tmp_path / "good.jsonl").write_text(json.dumps(good) + "\n")
    done = run(
        "pack", "good.jsonl", "-o", "out", "--tokenizer", folder, "--max-length", 64, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    ids = np.load(tmp_path / "out" / "input_ids.npy")
    expected = seqpack.encode([good], tokenizer=folder, max_length=64).tokens
    assert ids[0][: len(expected)].tolist() == expected.tolist()
    qwen3 = seqpack.encode([good], tokenizer=folder, template="qwen3", max_length=64).tokens
    assert qwen3.tolist() != expected.tolist()


def test_store_command_writes_what_the_api_writes(tmp_path, qwen_dir):
    files = {p.name: p for p in require_chat_data()}
    source = files["alpaca_en_demo.json"]
    done = run(
        "store", source, "-o", tmp_path / "store", "--tokenizer", qwen_dir, "--max-length", 512,
        "--chunk-size", 100,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout and "records:" in done.stdout
    api = seqpack.store.write(tmp_path / "api", source, tokenizer=qwen_dir, max_length=512)
    assert seqpack.store.open(tmp_path / "store").fingerprint == api.fingerprint
    again = run("store", source, "-o", tmp_path / "store", "--tokenizer", qwen_dir)
    assert (
        again.returncode == 2 and "--overwrite" in again.stderr and "Traceback" not in again.stderr
    )
