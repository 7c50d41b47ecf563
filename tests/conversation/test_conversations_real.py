"""The conversation path against real consumers and real data: every file of the shared
chat data, Qwen3's official tokenizer and chat template, transformers' apply_chat_template
and the tokenizers Python package."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tokenizers
from transformers import PreTrainedTokenizerFast

import seqpack
from conftest import chat_files, load_records, require_chat_data
from seqpack import _seqpack

FILES = [p.name for p in chat_files()] or ["(no shared chat data)"]


@pytest.fixture(scope="module")
def hf_tokenizer(qwen_dir):
    config = json.loads((qwen_dir / "tokenizer_config.json").read_text())
    tok = PreTrainedTokenizerFast(tokenizer_file=str(qwen_dir / "tokenizer.json"))
    tok.chat_template = config["chat_template"]
    return tok


@pytest.fixture(scope="module")
def py_tokenizer(qwen_dir):
    return tokenizers.Tokenizer.from_file(str(qwen_dir / "tokenizer.json"))


def parseable(records):
    """(index, record, messages, tools) for records seqpack can read as conversations."""
    out = []
    for i, record in enumerate(records):
        try:
            messages, tools = _seqpack.NativeTemplate.normalise(record)
        except seqpack.SeqpackError:
            continue
        out.append((i, record, messages, tools))
    return out


@pytest.mark.parametrize("name", FILES)
def test_builtin_qwen3_matches_apply_chat_template(name, hf_tokenizer):
    files = {p.name: p for p in require_chat_data()}
    template = _seqpack.NativeTemplate.builtin("qwen3")
    records = parseable(load_records(files[name]))
    assert records
    for i, record, messages, tools in records:
        ours, _spans = template.render(record)
        theirs = hf_tokenizer.apply_chat_template(messages, tools=tools or None, tokenize=False)
        assert ours == theirs, f"{name} record {i}"


@pytest.mark.parametrize("name", FILES)
def test_jinja_qwen3_template_renders_like_the_builtin(name, qwen_dir):
    files = {p.name: p for p in require_chat_data()}
    config = json.loads((qwen_dir / "tokenizer_config.json").read_text())
    jinja = _seqpack.NativeTemplate.jinja(config["chat_template"], "<|im_end|>", "", "<|im_end|>")
    builtin = _seqpack.NativeTemplate.builtin("qwen3")
    # Every record: the text, and the spans of every message (which place the labels),
    # reasoning blocks in the last answers included. (The preamble's span, which trains
    # nothing, is drawn differently.)
    for i, record, _m, _t in parseable(load_records(files[name])):
        text, spans = jinja.render(record)
        builtin_text, builtin_spans = builtin.render(record)
        assert text == builtin_text, f"{name} record {i}"
        messages = [s for s in spans if s[0] is not None]
        assert messages == [s for s in builtin_spans if s[0] is not None], f"{name} record {i}"


@pytest.mark.parametrize("name", FILES)
def test_tokens_and_labels_on_real_data(name, qwen_dir, py_tokenizer):
    files = {p.name: p for p in require_chat_data()}
    path = files[name]
    records = load_records(path)
    template = _seqpack.NativeTemplate.builtin("qwen3")
    encoded = seqpack.encode(
        path, tokenizer=qwen_dir, template="qwen3", max_length=1 << 20, on_error="skip"
    )
    im_end = py_tokenizer.token_to_id("<|im_end|>")
    by_record = {int(r): k for k, r in enumerate(encoded.sample_record)}
    checked = 0
    for report in encoded.report.records:
        if report.status == "skipped":
            assert report.message and f"record {report.record}" in report.message
            continue
        assert report.status == "kept" and report.windows == 1
        record = records[report.record]
        tokens, labels = encoded.sample(by_record[report.record])
        text, spans = template.render(record)
        kept_text = text
        if report.dropped_messages:  # trailing user/tool messages after the last answer
            messages, tools = _seqpack.NativeTemplate.normalise(record)
            kept = [m for k, m in enumerate(messages) if k not in report.dropped_messages]
            kept_text, spans = template.render({"messages": kept, "tools": tools}, format="openai")
        # Token for token identical to the tokenizers package on the rendered text ...
        whole = py_tokenizer.encode(kept_text, add_special_tokens=False)
        assert tokens.tolist() == whole.ids, f"{name} record {report.record}"
        # ... and to the concatenation of per-message tokenizations (no cross-boundary merge).
        pieces = []
        for _message, start, _body_start, _body_end, end in spans:
            pieces += py_tokenizer.encode(kept_text[start:end], add_special_tokens=False).ids

        # Per-message tokens concatenate to the whole unless a token straddles a message
        # boundary; any straddle (also header/body, e.g. content that starts with a newline
        # merging with the header's) is counted in the report.
        def straddles(bounds, offsets=whole.offsets):
            return sum(any(s < b < e for s, e in offsets) for b in set(bounds))

        at_messages = straddles([sp[1] for sp in spans])
        assert (pieces == whole.ids) == (at_messages == 0), report
        assert report.boundary_merges == straddles([b for sp in spans for b in sp[1:4]])
        # Labels: exactly the tokens inside assistant bodies (content + <|im_end|>), token ids.
        messages, _tools = _seqpack.NativeTemplate.normalise(record)
        expected = np.full(len(whole.ids), -100)
        for message, _start, body_start, body_end, _end in spans:
            if message is not None and messages[message]["role"] == "assistant":
                inside = [
                    k for k, (s, _e) in enumerate(whole.offsets) if body_start <= s < body_end
                ]
                expected[inside] = np.array(whole.ids)[inside]
        np.testing.assert_array_equal(labels, expected)
        trained = labels != -100
        assert trained.sum() == report.trained_after == report.trained_before > 0
        # Every assistant turn ends with a trained <|im_end|>; no role header is trained.
        n_assistant = sum(m["role"] == "assistant" for m in messages if m is not None)
        assert (labels == im_end).sum() == n_assistant - sum(
            messages[k]["role"] == "assistant" for k in report.dropped_messages
        )
        header = py_tokenizer.token_to_id("<|im_start|>")
        assert not (trained & (tokens == header)).any()
        checked += 1
    assert checked > 0


@pytest.mark.parametrize("max_length", [256, 1024])
@pytest.mark.parametrize("name", FILES)
def test_truncated_real_data_keeps_its_promises(name, max_length, qwen_dir, py_tokenizer):
    files = {p.name: p for p in require_chat_data()}
    records = load_records(files[name])
    encoded = seqpack.encode(
        files[name], tokenizer=qwen_dir, template="qwen3", max_length=max_length, on_error="skip"
    )
    if len(encoded) == 0:
        # Every record was dropped (e.g. system prompt + tools longer than the budget):
        # packing says so, with the reasons, rather than returning an empty batch.
        assert all(r.status in ("dropped", "skipped") for r in encoded.report.records)
        with pytest.raises(seqpack.EmptyInputError, match=r"none of the .* records left a sample"):
            seqpack.pack(
                files[name],
                tokenizer=qwen_dir,
                template="qwen3",
                max_length=max_length,
                on_error="skip",
            )
        return
    batch = seqpack.pack(
        files[name], tokenizer=qwen_dir, template="qwen3", max_length=max_length, on_error="skip"
    )
    system_ids = {}
    for k in range(len(encoded)):
        record = int(encoded.sample_record[k])
        tokens, labels = encoded.sample(k)
        report = encoded.report.records[record]
        assert len(tokens) <= max_length  # budget respected
        assert (labels != -100).sum() >= 1  # never emitted without supervision
        assert ((labels == -100) | (labels == tokens)).all()
        messages, _ = _seqpack.NativeTemplate.normalise(records[record])
        if messages[0]["role"] == "system":
            assert report.system_kept is True
            # The sample starts with the system prompt exactly as rendered alone.
            if record not in system_ids:
                system_ids[record] = py_tokenizer.encode(
                    f"<|im_start|>system\n{messages[0]['content']}<|im_end|>\n",
                    add_special_tokens=False,
                ).ids
            if not records[record].get("tools"):
                assert tokens[: len(system_ids[record])].tolist() == system_ids[record]
        if report.status == "truncated" and not report.cut_messages:
            # Whole turns were dropped: the sample is the render of the kept messages.
            kept = [m for i, m in enumerate(messages) if i not in report.dropped_messages]
            text, _ = _seqpack.NativeTemplate.builtin("qwen3").render(
                {"messages": kept, "tools": records[record].get("tools")}, format="openai"
            )
            assert tokens.tolist() == py_tokenizer.encode(text, add_special_tokens=False).ids
            assert kept[-1]["role"] == "assistant"
            assert kept[0]["role"] in ("system", "user")
            if kept[0]["role"] == "system" and len(kept) > 1:
                assert kept[1]["role"] == "user"
    # Report consistent with the output.
    reports = encoded.report.records
    assert len(reports) == len(records)
    assert sum(r.windows for r in reports) == len(encoded)
    assert sum(r.tokens_after for r in reports) == len(encoded.tokens)
    assert sum(r.trained_after for r in reports) == int((encoded.labels != -100).sum())
    for r in reports:
        if r.status in ("kept", "truncated", "split"):
            assert r.trained_after > 0
        if r.status != "skipped":
            assert r.tokens_after == r.tokens_before - sum(r.tokens_removed.values())
    # Packing carries the same samples.
    assert batch.stats.real_tokens == len(encoded.tokens)
    assert batch.report is not None and batch.report.counts() == encoded.report.counts()
    assert (batch.labels != -100).sum() == int((encoded.labels != -100).sum()) - int(
        (encoded.labels[encoded.offsets[:-1]] != -100).sum()
    )


def test_split_trains_every_assistant_turn_once(qwen_dir):
    files = {p.name: p for p in require_chat_data()}
    path = files["glaive_toolcall_en_demo.json"]
    whole = seqpack.encode(path, tokenizer=qwen_dir, template="qwen3", max_length=1 << 20)
    split = seqpack.encode(
        path, tokenizer=qwen_dir, template="qwen3", max_length=400, overlong="split"
    )
    assert split.report.counts().get("split", 0) > 0
    im_end = 151645
    for report, _full_report in zip(split.report.records, whole.report.records, strict=True):
        if report.status == "dropped":
            continue
        samples = [k for k in range(len(split)) if split.sample_record[k] == report.record]
        assert all(len(split.sample(k)[0]) <= 400 for k in samples)
        if not report.cut_messages and report.reason != "untrainable_windows_dropped":
            trained_ends = sum(int((split.sample(k)[1] == im_end).sum()) for k in samples)
            k_full = int(np.flatnonzero(whole.sample_record == report.record)[0])
            assert trained_ends == int((whole.sample(k_full)[1] == im_end).sum())


@pytest.mark.parametrize("name", FILES)
def test_model_jinja_template_labels_equal_builtin(name, qwen_dir):
    # The tokenizer's own chat_template (Qwen3's official Jinja, rendered by minijinja) must
    # give the same tokens and the same labels as the built-in renderer: bodies start where
    # the template's generation prompt ends (so Qwen3's <think> block is trained), and tool
    # calls with empty content are placed exactly.
    files = {p.name: p for p in require_chat_data()}
    path = files[name]
    builtin = seqpack.encode(
        path, tokenizer=qwen_dir, template="qwen3", max_length=1 << 20, on_error="skip"
    )
    jinja = seqpack.encode(
        path, tokenizer=qwen_dir, template=None, max_length=1 << 20, on_error="skip"
    )
    assert [r.status for r in jinja.report.records] == [r.status for r in builtin.report.records]
    np.testing.assert_array_equal(jinja.tokens, builtin.tokens)
    np.testing.assert_array_equal(jinja.labels, builtin.labels)
