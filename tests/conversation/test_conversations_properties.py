"""Properties of the conversation path over generated conversations and budgets, with the
real Qwen3 tokenizer: budgets hold, labels sit only on assistant turns (whole turns, end
token included, header excluded), the system prompt survives, split windows train every
assistant turn once, and the report adds up."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import seqpack

IM_START, IM_END, NEWLINE = 151644, 151645, 198
ROLE_TOKENS = {"system": 8948, "user": 872, "assistant": 77091}

words = st.sampled_from(
    ["hello", "world", "数据", "packing", "tokens", "the", "a", "42", "?", "!", "x" * 7]
)
text = st.lists(words, min_size=1, max_size=40).map(" ".join)


@st.composite
def conversations(draw):
    messages = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": draw(text)})
    for _ in range(draw(st.integers(1, 6))):
        messages.append({"role": "user", "content": draw(text)})
        if draw(st.integers(0, 4)) == 0:
            messages.append(
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {
                            "type": "function",
                            "function": {"name": "lookup", "arguments": {"q": draw(text)}},
                        }
                    ],
                }
            )
            messages.append({"role": "tool", "content": draw(text)})
        messages.append({"role": "assistant", "content": draw(text)})
    if draw(st.integers(0, 5)) == 0:
        messages.append({"role": "user", "content": draw(text)})  # trailing, untrainable
    return {"messages": messages}


def assistant_regions(tokens):
    """(start, end) token ranges of assistant bodies found structurally in a ChatML sample:
    after `<|im_start|>assistant\\n`, up to and including `<|im_end|>`."""
    regions = []
    k = 0
    while k < len(tokens):
        if (
            tokens[k] == IM_START
            and k + 2 < len(tokens)
            and tokens[k + 1] == ROLE_TOKENS["assistant"]
        ):
            start = k + 3  # header: <|im_start|> assistant \n
            end = start
            while end < len(tokens) and tokens[end] != IM_END:
                end += 1
            regions.append((start, min(end + 1, len(tokens))))
            k = end
        k += 1
    return regions


options = st.fixed_dictionaries(
    {
        "max_length": st.integers(24, 400),
        "keep_first_turn": st.booleans(),
        "overlong": st.sampled_from(["truncate", "split"]),
        "truncate_keep": st.sampled_from(["head", "tail", "ends"]),
        "train_on_cut_turns": st.booleans(),
    }
)


@settings(max_examples=80)
@given(records=st.lists(conversations(), min_size=1, max_size=6), opts=options)
def test_generated_conversations_keep_every_promise(records, opts, qwen_dir):
    encoded = seqpack.encode(records, tokenizer=qwen_dir, template="qwen3", **opts)
    reports = encoded.report.records
    assert [r.record for r in reports] == list(range(len(records)))
    for report in reports:
        record = records[report.record]
        messages = record["messages"]
        samples = [k for k in range(len(encoded)) if encoded.sample_record[k] == report.record]
        assert len(samples) == report.windows
        lengths = [len(encoded.sample(k)[0]) for k in samples]
        assert sum(lengths) == report.tokens_after
        assert report.tokens_after == report.tokens_before - sum(report.tokens_removed.values())
        if report.status == "dropped":
            assert report.reason in ("system_prompt_too_long", "no_trainable_tokens")
            assert not samples
            continue
        assert report.status in ("kept", "truncated", "split")
        assert report.status != "split" or opts["overlong"] == "split"
        trained_total = 0
        for k in samples:
            tokens, labels = encoded.sample(k)
            assert len(tokens) <= opts["max_length"]
            trained = labels != -100
            trained_total += int(trained.sum())
            assert trained.any()
            assert (labels[trained] == tokens[trained]).all()
            # Labels only inside assistant bodies, and each body all-or-nothing.
            regions = assistant_regions(tokens.tolist())
            inside = np.zeros(len(tokens), bool)
            for start, end in regions:
                inside[start:end] = True
                body = trained[start:end]
                if not (report.cut_messages and not opts["train_on_cut_turns"]):
                    assert body.all(), (start, end)
                else:
                    assert body.all() or not body.any()
            assert not (trained & ~inside).any()
            # The system prompt opens every sample that had one.
            if messages[0]["role"] == "system":
                assert tokens[:2].tolist() == [IM_START, ROLE_TOKENS["system"]]
                assert report.system_kept is True
            # After the system prompt comes a user turn.
            firsts = [j for j in range(len(tokens) - 1) if tokens[j] == IM_START]
            non_system = [j for j in firsts if tokens[j + 1] != ROLE_TOKENS["system"]]
            if non_system and not report.cut_messages:
                assert tokens[non_system[0] + 1] == ROLE_TOKENS["user"]
            # The sample ends with an assistant turn's end token (and its newline).
            assert tokens[-2:].tolist() == [IM_END, NEWLINE] or report.cut_messages
        assert trained_total == report.trained_after
        if (
            opts["overlong"] == "split"
            and not report.cut_messages
            and report.reason != "untrainable_windows_dropped"
        ):
            # Every assistant turn that precedes the last answer is trained exactly once.
            ends = sum(int((encoded.sample(k)[1] == IM_END).sum()) for k in samples)
            last_answer = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
            assert ends == sum(m["role"] == "assistant" for m in messages[: last_answer + 1])


@settings(max_examples=40)
@given(records=st.lists(conversations(), min_size=1, max_size=5), max_length=st.integers(24, 300))
def test_pack_equals_encode_then_pack(records, max_length, qwen_dir):
    try:
        batch = seqpack.pack(records, tokenizer=qwen_dir, template="qwen3", max_length=max_length)
    except seqpack.EmptyInputError:
        encoded = seqpack.encode(
            records, tokenizer=qwen_dir, template="qwen3", max_length=max_length
        )
        assert len(encoded) == 0
        return
    encoded = seqpack.encode(records, tokenizer=qwen_dir, template="qwen3", max_length=max_length)
    samples = [encoded.sample(k) for k in range(len(encoded))]
    direct = seqpack.pack(
        [s[0] for s in samples], labels=[s[1] for s in samples], max_length=max_length
    )
    np.testing.assert_array_equal(batch.input_ids, direct.input_ids)
    np.testing.assert_array_equal(batch.labels, direct.labels)
    np.testing.assert_array_equal(batch.sample_record, encoded.sample_record)


@pytest.mark.parametrize("keep_first_turn", [False, True])
def test_truncation_drops_oldest_middle_turns(qwen_dir, keep_first_turn):
    messages = [{"role": "system", "content": "Be brief."}]
    for turn in range(8):
        messages += [
            {"role": "user", "content": f"question {turn} " + "pad " * 20},
            {"role": "assistant", "content": f"answer {turn} " + "pad " * 20},
        ]
    encoded = seqpack.encode(
        [{"messages": messages}],
        tokenizer=qwen_dir,
        template="qwen3",
        max_length=200,
        keep_first_turn=keep_first_turn,
    )
    report = encoded.report.records[0]
    assert report.status == "truncated" and report.reason == "turns_dropped"
    kept = sorted(set(range(len(messages))) - set(report.dropped_messages))
    assert kept[0] == 0 and kept[-1] == len(messages) - 1  # system and the last answer
    assert report.first_user_kept is keep_first_turn
    if keep_first_turn:
        assert kept[1:3] == [1, 2]
    # What is kept after the pinned part is a contiguous run of the latest turns.
    tail = kept[3:] if keep_first_turn else kept[1:]
    assert tail == list(range(tail[0], len(messages))) and messages[tail[0]]["role"] == "user"
    assert report.tokens_removed["user"] > 0 and report.tokens_removed["assistant"] > 0


def test_single_long_turn_is_cut_and_answer_kept(qwen_dir):
    record = {
        "messages": [
            {"role": "system", "content": "Summarise."},
            {"role": "user", "content": "long document " * 300},
            {"role": "assistant", "content": "A short summary."},
        ]
    }
    for truncate_keep in ("head", "tail", "ends"):
        encoded = seqpack.encode(
            [record],
            tokenizer=qwen_dir,
            template="qwen3",
            max_length=128,
            truncate_keep=truncate_keep,
        )
        report = encoded.report.records[0]
        assert report.reason == "turn_cut" and report.cut_messages == [1]
        tokens, _labels = encoded.sample(0)
        assert len(tokens) == 128
        assert report.trained_after == report.trained_before  # the answer is intact
        assert report.tokens_removed["user"] == report.tokens_before - 128


def test_cut_assistant_turn_is_not_trained_unless_allowed(qwen_dir):
    record = {
        "messages": [
            {"role": "user", "content": "Write a lot."},
            {"role": "assistant", "content": "word " * 400},
        ]
    }
    encoded = seqpack.encode([record], tokenizer=qwen_dir, template="qwen3", max_length=64)
    assert encoded.report.records[0].status == "dropped"
    assert encoded.report.records[0].reason == "no_trainable_tokens"
    assert len(encoded) == 0
    allowed = seqpack.encode(
        [record], tokenizer=qwen_dir, template="qwen3", max_length=64, train_on_cut_turns=True
    )
    assert allowed.report.records[0].status == "truncated"
    assert (allowed.sample(0)[1] != -100).sum() > 0


def test_train_on_all_and_other_roles(qwen_dir):
    record = {
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    }
    every = seqpack.encode(
        [record], tokenizer=qwen_dir, template="qwen3", max_length=64, train_on="all"
    )
    tokens, labels = every.sample(0)
    assert (labels == tokens).all()
    users = seqpack.encode(
        [record], tokenizer=qwen_dir, template="qwen3", max_length=64, train_on=["user"]
    )
    tokens, labels = users.sample(0)
    assert 0 < (labels != -100).sum() < len(tokens)
    assert IM_END in labels.tolist()


def test_jinja_spans_are_exact_for_tricky_contents(qwen_dir):
    # Contents that also occur inside the template's own text or inside other messages, and an
    # assistant tool call with empty content: the Jinja path must label exactly what the
    # built-in path labels.
    records: list[dict[str, Any]] = [
        {"messages": [{"role": "user", "content": "e"}, {"role": "assistant", "content": "e"}]},
        {
            "messages": [
                {"role": "user", "content": "weather in Paris?"},
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {
                            "type": "function",
                            "function": {"name": "weather", "arguments": {"city": "Paris"}},
                        }
                    ],
                },
                {"role": "tool", "content": "Paris"},
                {"role": "assistant", "content": "It is sunny in Paris."},
            ]
        },
        {
            "messages": [
                {"role": "user", "content": "2+2?"},
                {"role": "assistant", "content": "4", "reasoning_content": "two plus two is four"},
            ]
        },
    ]
    builtin = seqpack.encode(records, tokenizer=qwen_dir, template="qwen3", max_length=512)
    jinja = seqpack.encode(records, tokenizer=qwen_dir, template=None, max_length=512)
    np.testing.assert_array_equal(jinja.tokens, builtin.tokens)
    np.testing.assert_array_equal(jinja.labels, builtin.labels)
    # The tool call and its <|im_end|> are trained; the user's <|im_end|> is not.
    tokens, labels = builtin.sample(1)
    ends = [k for k, t in enumerate(tokens) if t == IM_END]
    assert [bool(labels[k] != -100) for k in ends] == [False, True, False, True]


def test_windows_dropped_for_no_labels_are_reported(qwen_dir):
    record = {
        "messages": [
            {"role": "system", "content": "S"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello there"},
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "word " * 200},
        ]
    }
    encoded = seqpack.encode(
        [record], tokenizer=qwen_dir, template="qwen3", max_length=60, overlong="split"
    )
    report = encoded.report.records[0]
    assert report.windows == len(encoded) == 1
    assert report.reason == "untrainable_windows_dropped"
    assert report.dropped_messages == [3, 4]
    assert report.tokens_removed["assistant"] > 0 and report.tokens_removed["user"] > 0
    assert report.tokens_after == report.tokens_before - sum(report.tokens_removed.values())


def test_long_reasoning_is_cut_as_part_of_its_turn(qwen_dir):
    record = {
        "messages": [
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4", "reasoning_content": "think " * 100},
        ]
    }
    encoded = seqpack.encode(
        [record], tokenizer=qwen_dir, template="qwen3", max_length=40, train_on_cut_turns=True
    )
    report = encoded.report.records[0]
    tokens, _labels = encoded.sample(0)
    assert len(tokens) == 40 and report.cut_messages == [1]
    assert tokens[-2:].tolist() == [IM_END, NEWLINE]  # the end-of-turn token survives
    assert report.tokens_removed["assistant"] == report.tokens_before - 40
    assert report.tokens_removed["template"] == 0


def test_system_prompt_that_cannot_fit_drops_the_record(qwen_dir):
    record = {
        "messages": [
            {"role": "system", "content": "rule " * 100},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "ok"},
        ]
    }
    for template in ("qwen3", "mistral"):
        encoded = seqpack.encode([record], tokenizer=qwen_dir, template=template, max_length=50)
        report = encoded.report.records[0]
        assert (report.status, report.reason) == ("dropped", "system_prompt_too_long"), template
        assert len(encoded) == 0


@settings(max_examples=40)
@given(records=st.lists(conversations(), min_size=1, max_size=6), opts=options)
@pytest.mark.parametrize(
    "template",
    ["gemma2", "gemma3", "phi3.5", "phi4", "deepseek-r1", "mistral-nemo", "glm4.6", "glm4.7"],
)
def test_newer_builtins_keep_the_accounting_promises(template, records, opts, qwen_dir):
    """The Gemma 2 and 3, Phi-3.5 and 4, DeepSeek-R1, Mistral Nemo and GLM-4.6 and 4.7
    built-ins under truncation and splitting: every record reported once (refused ones skipped
    with the template's reason), every token kept or counted as removed, no sample longer than
    max_length or without trained tokens."""
    encoded = seqpack.encode(
        records, tokenizer=qwen_dir, template=template, on_error="skip", **opts
    )
    reports = encoded.report.records
    assert [r.record for r in reports] == list(range(len(records)))
    for report in reports:
        samples = [k for k in range(len(encoded)) if encoded.sample_record[k] == report.record]
        if report.status == "skipped":
            assert not samples and report.reason == "template_error", report
            assert report.message and f"record {report.record}" in report.message
            continue
        assert len(samples) == report.windows
        assert sum(len(encoded.sample(k)[0]) for k in samples) == report.tokens_after
        assert report.tokens_after == report.tokens_before - sum(report.tokens_removed.values())
        trained_total = 0
        for k in samples:
            tokens, labels = encoded.sample(k)
            trained = labels != -100
            assert len(tokens) <= opts["max_length"] and trained.any()
            assert (labels[trained] == tokens[trained]).all()
            trained_total += int(trained.sum())
        assert trained_total == report.trained_after
