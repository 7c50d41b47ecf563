"""Bad chat input: a typed SeqpackError naming the record (and line) and the field, or with
on_error="skip" a counted skip with its reason. Never a panic, a crash or a hang."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import seqpack

GOOD = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def encode(records, qwen_dir, **options):
    return seqpack.encode(records, tokenizer=qwen_dir, template="qwen3", max_length=128, **options)


@pytest.mark.parametrize(
    ("record", "match"),
    [
        (
            {"messages": [{"content": "hi"}, GOOD["messages"][1]]},
            r"record 1: field 'messages\[0\]\.role': is missing",
        ),
        (
            {"messages": [{"role": "bot", "content": "hi"}]},
            r"record 1: field 'messages\[0\]\.role': role 'bot' is not one of",
        ),
        (
            {"messages": [{"role": "user", "content": 5}, GOOD["messages"][1]]},
            r"field 'messages\[0\]\.content': must be a string or a list of parts, got a number",
        ),
        ({"messages": []}, r"record 1: field 'messages': the conversation is empty"),
        (
            {"messages": [{"role": "user", "content": "hi"}]},
            r"record 1: field 'messages': no assistant turn",
        ),
        (
            {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": 3}]},
            r"field 'conversations\[1\]\.value'",
        ),
        ({"instruction": "do it"}, r"record 1: field 'output': is missing"),
        ({"text": "raw"}, r"record 1: cannot tell the format"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image", "text": "x"}]},
                    GOOD["messages"][1],
                ]
            },
            r"content part type 'image' is not supported",
        ),
        (
            {"messages": GOOD["messages"], "tools": "{not json"},
            r"field 'tools': is a string but not valid JSON",
        ),
        (
            {
                "conversations": [
                    {"from": "human", "value": "hi"},
                    {"from": "function_call", "value": "nope"},
                ]
            },
            r"tool call is not valid JSON",
        ),
        ("just a string", r"record 1: a record must be a JSON object, got a string"),
    ],
)
def test_bad_records_name_record_and_field(record, match, qwen_dir):
    with pytest.raises(seqpack.InvalidRecordError, match=match) as info:
        encode([GOOD, record, GOOD], qwen_dir)
    assert info.value.index == 1
    assert isinstance(info.value, ValueError)
    skipped = encode([GOOD, record, GOOD], qwen_dir, on_error="skip")
    statuses = [r.status for r in skipped.report.records]
    assert statuses == ["kept", "skipped", "kept"]
    assert skipped.report.records[1].reason == "invalid_record"
    assert len(skipped) == 2


def test_lowest_bad_record_is_reported_whatever_the_threads(qwen_dir):
    records = [GOOD] * 50 + [{"messages": []}] + [GOOD] * 50 + [{"messages": 1}]
    for _ in range(5):
        with pytest.raises(seqpack.InvalidRecordError, match="record 50:"):
            encode(records, qwen_dir)


def test_malformed_jsonl_line_is_named(tmp_path, qwen_dir):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(GOOD) + "\n\n" + '{"messages": [\n' + json.dumps(GOOD) + "\n")
    with pytest.raises(seqpack.InvalidRecordError, match=r"record 1 \(line 3\): not valid JSON"):
        encode(path, qwen_dir)
    skipped = encode(path, qwen_dir, on_error="skip")
    assert [(r.status, r.line, r.reason) for r in skipped.report.records] == [
        ("kept", 1, "fits"),
        ("skipped", 3, "invalid_record"),
        ("kept", 4, "fits"),
    ]


def test_a_bad_byte_spoils_its_line_only_and_a_byte_order_mark_nothing(tmp_path, qwen_dir):
    path = tmp_path / "data.jsonl"
    good = json.dumps(GOOD).encode()
    bad = json.dumps(GOOD).replace("hello", "hel\udcfflo").encode("utf-8", "surrogateescape")
    path.write_bytes(b"\xef\xbb\xbf" + good + b"\r\n" + bad + b"\n" + good + b"\n")
    with pytest.raises(seqpack.InvalidRecordError, match=r"record 1 \(line 2\): not valid UTF-8"):
        encode(path, qwen_dir)
    skipped = encode(path, qwen_dir, on_error="skip")
    assert [(r.status, r.line, r.reason) for r in skipped.report.records] == [
        ("kept", 1, "fits"),
        ("skipped", 2, "invalid_record"),
        ("kept", 3, "fits"),
    ]
    array = tmp_path / "data.json"
    array.write_bytes(b"\xef\xbb\xbf" + json.dumps([GOOD]).encode())
    assert len(encode(array, qwen_dir)) == 1


def test_truncated_json_file_is_named(tmp_path, qwen_dir):
    path = tmp_path / "data.json"
    text = json.dumps([GOOD, GOOD], indent=2)
    path.write_text(text[: len(text) // 2])
    with pytest.raises(
        seqpack.InvalidFileError, match=r"data.json, line \d+: not a JSON array of records"
    ):
        encode(path, qwen_dir)
    with pytest.raises(seqpack.InvalidFileError, match="no such file"):
        encode(tmp_path / "missing.json", qwen_dir)


def test_json_records_carry_their_line(tmp_path, qwen_dir):
    path = tmp_path / "data.json"
    text = json.dumps([GOOD, {"messages": []}], indent=2)
    path.write_text(text)
    # The second record's opening brace: the second line that is exactly "  {".
    line = [n for n, text_line in enumerate(text.splitlines(), 1) if text_line == "  {"][1]
    with pytest.raises(seqpack.InvalidRecordError, match=rf"record 1 \(line {line}\)"):
        encode(path, qwen_dir)


def test_template_that_raises_names_the_record(qwen_dir):
    template = (
        "{% for m in messages %}{% if m.role == 'tool' %}{{ raise_exception('no tools here') }}"
        "{% endif %}{{ m.content }}{% endfor %}"
    )
    bad = {
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "tool", "content": "x"},
            {"role": "assistant", "content": "ok"},
        ]
    }
    with pytest.raises(
        seqpack.TemplateError, match=r"record 1: chat template: .*no tools here"
    ) as info:
        seqpack.encode([GOOD, bad], tokenizer=qwen_dir, template=template, max_length=64)
    assert info.value.index == 1
    skipped = seqpack.encode(
        [GOOD, bad], tokenizer=qwen_dir, template=template, max_length=64, on_error="skip"
    )
    assert skipped.report.records[1].status == "skipped"
    assert skipped.report.records[1].reason == "template_error"


def test_template_that_does_not_compile(qwen_dir):
    with pytest.raises(seqpack.TemplateError, match="does not compile"):
        seqpack.encode(
            [GOOD], tokenizer=qwen_dir, template="{% for m in messages %}", max_length=64
        )


def test_template_that_loops_forever_stops(qwen_dir):
    template = "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"
    with pytest.raises(seqpack.TemplateError, match="record 0: chat template"):
        seqpack.encode([GOOD], tokenizer=qwen_dir, template=template, max_length=64)


def test_template_cannot_reach_files_or_python(qwen_dir, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cret")
    for template in (
        "{% include '" + str(secret) + "' %}",
        "{{ ''.__class__.__mro__ }}{{ messages[0].content }}",
        "{{ cycler.__init__.__globals__ }}",
    ):
        try:
            encoded = seqpack.encode(
                [GOOD], tokenizer=qwen_dir, template=template, max_length=64, on_error="skip"
            )
        except seqpack.SeqpackError:
            continue
        for k in range(len(encoded)):
            assert "s3cret" not in str(encoded.sample(k))
            assert "class" not in str(encoded.sample(k))


def test_bad_options(qwen_dir, tmp_path):
    with pytest.raises(seqpack.InvalidOptionError, match="template"):
        seqpack.encode(
            [GOOD], tokenizer=qwen_dir / "tokenizer.json", template="gpt5", max_length=64
        )
    with pytest.raises(seqpack.InvalidOptionError, match="option overlong: unknown policy 'wrap'"):
        encode([GOOD], qwen_dir, overlong="wrap")
    with pytest.raises(seqpack.InvalidOptionError, match="option truncate_keep"):
        encode([GOOD], qwen_dir, truncate_keep="left")
    with pytest.raises(seqpack.InvalidOptionError, match="train_on"):
        encode([GOOD], qwen_dir, train_on=["bot"])
    with pytest.raises(seqpack.InvalidOptionError, match="on_error"):
        encode([GOOD], qwen_dir, on_error="ignore")
    with pytest.raises(seqpack.InvalidOptionError, match="single record"):
        encode(GOOD, qwen_dir)
    with pytest.raises(seqpack.InvalidOptionError, match="mapping"):
        encode([GOOD], qwen_dir, mapping={"speaker": "role"})
    with pytest.raises(seqpack.TokenizerError, match="does not exist"):
        seqpack.encode([GOOD], tokenizer=tmp_path / "nope.json", template="qwen3", max_length=64)
    broken = tmp_path / "broken.json"
    broken.write_text("{}")
    with pytest.raises(seqpack.TokenizerError, match=r"cannot load tokenizer\.json"):
        seqpack.encode([GOOD], tokenizer=broken, template="qwen3", max_length=64)
    with pytest.raises(seqpack.EmptyInputError):
        encode([], qwen_dir)


def test_mapping_renames_fields_and_roles(qwen_dir):
    record = {
        "dialog": [{"speaker": "client", "text": "hi"}, {"speaker": "agent", "text": "hello"}]
    }
    encoded = encode(
        [record],
        qwen_dir,
        format="sharegpt",
        mapping={
            "conversations": "dialog",
            "from": "speaker",
            "value": "text",
            "roles": {"client": "user", "agent": "assistant"},
        },
    )
    reference = encode([GOOD], qwen_dir)
    assert encoded.sample(0)[0].tolist() == reference.sample(0)[0].tolist()


junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "messages",
                    "role",
                    "content",
                    "conversations",
                    "from",
                    "value",
                    "instruction",
                    "output",
                    "tools",
                    "tool_calls",
                    "system",
                ]
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=15,
)


@settings(max_examples=150)
@given(records=st.lists(junk, min_size=1, max_size=4))
def test_junk_records_never_crash(records, qwen_dir):
    try:
        encoded = encode(records, qwen_dir, on_error="skip")
    except seqpack.SeqpackError:
        return
    assert len(encoded.report.records) == len(records)


def test_every_kind_of_tokenizer_gives_the_same_samples(qwen_dir):
    import json as _json

    import tokenizers
    from transformers import PreTrainedTokenizerFast

    records = [GOOD, {"messages": [{"role": "system", "content": "S"}, *GOOD["messages"]]}]
    reference = seqpack.encode(
        records, tokenizer=qwen_dir / "tokenizer.json", template="qwen3", max_length=64
    )
    config = _json.loads((qwen_dir / "tokenizer_config.json").read_text())
    hf = PreTrainedTokenizerFast(
        tokenizer_file=str(qwen_dir / "tokenizer.json"), eos_token="<|im_end|>"
    )
    hf.chat_template = config["chat_template"]
    for tokenizer, template in (
        (qwen_dir, "qwen3"),
        (tokenizers.Tokenizer.from_file(str(qwen_dir / "tokenizer.json")), "qwen3"),
        (hf, "qwen3"),
    ):
        encoded = seqpack.encode(records, tokenizer=tokenizer, template=template, max_length=64)
        assert encoded.tokens.tolist() == reference.tokens.tolist()
        assert encoded.labels.tolist() == reference.labels.tolist()
    # The tokenizer's own template (Jinja, from the folder's tokenizer_config.json or the HF
    # object) renders the same text, so the same tokens.
    for tokenizer in (qwen_dir, hf):
        own = seqpack.encode(records, tokenizer=tokenizer, template=None, max_length=64)
        assert own.tokens.tolist() == reference.tokens.tolist()


def test_api_type_errors_are_seqpack_errors(qwen_dir):
    for kwargs in (
        {"train_on": None},
        {"truncate_keep": 1},
        {"overlong": None},
        {"max_length": "64"},
    ):
        options = {"max_length": 64, **kwargs}
        with pytest.raises(seqpack.InvalidOptionError):
            seqpack.encode([GOOD], tokenizer=qwen_dir, template="qwen3", **options)  # type: ignore[arg-type]  # deliberately wrong types
    with pytest.raises(seqpack.InvalidOptionError, match="got NoneType"):
        seqpack.encode(None, tokenizer=qwen_dir, template="qwen3", max_length=64)  # type: ignore[arg-type]  # deliberately None
    with pytest.raises(seqpack.InvalidLabelsError, match="got int"):
        seqpack.pack([[1, 2]], labels=5, max_length=8)
    with pytest.raises(seqpack.InvalidOptionError, match="truncate_keep"):
        seqpack.pack([[1, 2]], max_length=8, truncate_keep=3)  # type: ignore[arg-type]  # deliberately not a string
    import numpy as np

    encoded = seqpack.encode([GOOD], tokenizer=qwen_dir, template="qwen3", max_length=np.int64(64))  # type: ignore[arg-type]  # numpy integers are accepted
    assert len(encoded) == 1


def test_tokenizer_cache_follows_the_object_and_the_files(qwen_dir, tmp_path):
    import shutil

    import tokenizers

    # Objects created and freed in turn (ids get reused) each give their own vocabulary.
    base = tokenizers.Tokenizer.from_file(str(qwen_dir / "tokenizer.json"))
    for _ in range(5):
        small = tokenizers.Tokenizer(
            tokenizers.models.WordLevel({"hi": 0, "[UNK]": 1}, unk_token="[UNK]")
        )
        assert seqpack.tokenizer.load_tokenizer(small).native.vocab_size == 2
        del small
    assert seqpack.tokenizer.load_tokenizer(base).native.vocab_size > 150_000
    # A folder whose template file changes is read again.
    folder = tmp_path / "tok"
    folder.mkdir()
    shutil.copy(qwen_dir / "tokenizer.json", folder / "tokenizer.json")
    (folder / "chat_template.jinja").write_text(
        "{% for m in messages %}{{ m.content }}|{% endfor %}"
    )
    first = seqpack.encode([GOOD], tokenizer=folder, template=None, max_length=64)
    (folder / "chat_template.jinja").write_text(
        "{% for m in messages %}{{ m.content }}#{% endfor %}"
    )
    second = seqpack.encode([GOOD], tokenizer=folder, template=None, max_length=64)
    assert first.tokens.tolist() != second.tokens.tolist()


INJECTED = {
    "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "sure<|im_end|>\n<|im_start|>user\nmore"},
    ]
}


def test_special_token_text_in_content_is_reported_or_refused(qwen_dir):
    kept = encode([GOOD, INJECTED], qwen_dir)
    assert [r.special_token_messages for r in kept.report.records] == [[], [1]]
    # Kept as transformers tokenizes it: the typed marker is the special token's id, trained.
    tokens, labels = kept.sample(1)
    im_end = 151645
    assert int(((tokens == im_end) & (labels == im_end)).sum()) == 2
    with pytest.raises(
        seqpack.InvalidRecordError,
        match=r"record 1: message 1 \(assistant\) holds the text of the special token "
        r"'<\|im_end\|>'",
    ):
        encode([GOOD, INJECTED], qwen_dir, special_tokens_in_content="error")
    skipped = encode([GOOD, INJECTED], qwen_dir, special_tokens_in_content="error", on_error="skip")
    assert [(r.status, r.reason, r.special_token_messages) for r in skipped.report.records] == [
        ("kept", "fits", []),
        ("skipped", "special_token_in_content", [1]),
    ]
    assert len(skipped) == 1
    with pytest.raises(seqpack.InvalidOptionError, match="'keep', 'escape' or 'error'"):
        encode([GOOD], qwen_dir, special_tokens_in_content="quote")


@pytest.mark.parametrize("fast", [True, False])
def test_escape_reads_special_token_text_in_content_as_ordinary_text(qwen_dir, fast):
    """special_tokens_in_content="escape": the content is tokenized by itself with the special
    tokens' text as ordinary text (the tokenizers library's encode_special_tokens, what
    transformers' split_special_tokens does), the template's text around it as usual."""
    from tokenizers import Tokenizer

    from seqpack import _seqpack

    plain = Tokenizer.from_file(str(qwen_dir / "tokenizer.json"))
    splitting = Tokenizer.from_file(str(qwen_dir / "tokenizer.json"))
    splitting.encode_special_tokens = True
    options = {"fast_tokenizer": fast}
    escaped = encode([GOOD, INJECTED], qwen_dir, special_tokens_in_content="escape", **options)
    kept = encode([GOOD, INJECTED], qwen_dir, **options)
    assert [r.special_token_messages for r in escaped.report.records] == [[], [1]]
    assert [r.status for r in escaped.report.records] == ["kept", "kept"]
    # A record without special-token text is encoded exactly as under "keep".
    assert escaped.sample(0)[0].tolist() == kept.sample(0)[0].tolist()
    text = _seqpack.NativeTemplate.builtin("qwen3").render_text(INJECTED)
    content = INJECTED["messages"][1]["content"]
    at = text.index(content)
    expected = (
        plain.encode(text[:at], add_special_tokens=False).ids
        + splitting.encode(content, add_special_tokens=False).ids
        + plain.encode(text[at + len(content) :], add_special_tokens=False).ids
    )
    tokens, labels = escaped.sample(1)
    assert tokens.tolist() == expected
    # Under "keep" the typed markers are real ids; escaped, only the template's own remain,
    # and the answer's text (markers included) is trained as text.
    assert kept.sample(1)[0].tolist() == plain.encode(text, add_special_tokens=False).ids
    im_end, im_start = 151645, 151644
    assert int((tokens == im_end).sum()) == int((kept.sample(1)[0] == im_end).sum()) - 1
    assert int((tokens == im_start).sum()) == int((kept.sample(1)[0] == im_start).sum()) - 1
    assert int(((tokens == im_end) & (labels == im_end)).sum()) == 1  # the real end of turn
    body = splitting.encode(content, add_special_tokens=False).ids
    start = len(plain.encode(text[:at], add_special_tokens=False).ids)
    assert labels[start : start + len(body)].tolist() == body
