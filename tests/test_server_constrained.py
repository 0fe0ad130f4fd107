"""Forced tool calls and JSON answers on the real SmolLM2 model, through the official client.

SmolLM2's own template has no tool-call syntax, so a forced call is written in the generic form
`{"name": ..., "arguments": {...}}` (the reader takes it as a call naming a declared tool). The same weights with a
ChatML template that has Hermes `<tool_call>` syntax (Qwen2.5's, from ../shared) show the grammar writing the
template's own syntax, on llama.cpp (GBNF) and on transformers (llguidance). Arguments and answers are validated
with jsonschema; sampling runs at temperature 1 over 10 seeds.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow
pytest.importorskip("llama_cpp", reason="the llamacpp engine needs llama-cpp-python: pip install 'turnspec[llamacpp]'")
pytest.importorskip("fastapi", reason="the server needs fastapi: pip install 'turnspec[serve]'")
openai = pytest.importorskip("openai", reason="these tests use the official client: pip install openai")
jsonschema = pytest.importorskip("jsonschema", reason="answers are validated with jsonschema: pip install jsonschema")

import turnspec  # noqa: E402
from turnspec.server import create_app  # noqa: E402

from helpers.paths import REPO, SHARED, need  # noqa: E402
from test_server import client, running, user  # noqa: E402

WEATHER = {"type": "object", "properties": {
    "city": {"type": "string", "maxLength": 40}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"]}
TIME = {"type": "object", "properties": {"timezone": {"type": "string", "maxLength": 40}}, "required": ["timezone"]}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city.",
                                           "parameters": WEATHER}},
         {"type": "function", "function": {"name": "get_time", "description": "The time in a timezone.",
                                           "parameters": TIME}}]
CAPITAL = {"type": "object", "properties": {
    "country": {"type": "string", "maxLength": 40}, "capital": {"type": "string", "maxLength": 40},
    "population_millions": {"type": "integer"}, "coastal": {"type": "boolean"}},
    "required": ["country", "capital", "population_millions", "coastal"]}
SEEDS = range(10)
QWEN_TEMPLATE = SHARED / "corpus" / "templates" / "Qwen-Qwen2.5-7B-Instruct.jinja"


@pytest.fixture(scope="module")
def smol_server(smollm2_gguf):
    from turnspec.engines import load_engine

    spec = turnspec.load(smollm2_gguf)
    engine = load_engine("llamacpp", smollm2_gguf, parallel=4)
    try:
        with running(create_app(spec, engine)) as url:
            yield url
    finally:
        engine.close()


@pytest.fixture(scope="module")
def hermes_server(smollm2_gguf):
    """SmolLM2's weights with a ChatML template that writes Hermes `<tool_call>` calls."""
    from turnspec.engines import load_engine

    spec = turnspec.load(smollm2_gguf, template=need(QWEN_TEMPLATE))
    assert spec.analysis.tools.calls[0].triggers == ("<tool_call>",)
    engine = load_engine("llamacpp", smollm2_gguf)
    try:
        with running(create_app(spec, engine)) as url:
            yield url
    finally:
        engine.close()


def forced(url: str, choice, seed: int, **kw):
    return client(url, timeout=120).chat.completions.create(
        model="m", messages=user("What is the weather like in Paris right now?"), tools=TOOLS, tool_choice=choice,
        temperature=1.0, seed=seed, max_tokens=160, **kw)


def assert_valid_calls(reply, names=("get_weather", "get_time")):
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    calls = choice.message.tool_calls
    assert calls, choice.message
    for call in calls:
        assert call.function.name in names
        schema = WEATHER if call.function.name == "get_weather" else TIME
        jsonschema.validate(json.loads(call.function.arguments), schema)
    return calls


@pytest.mark.parametrize("seed", SEEDS)
def test_tool_choice_required_returns_a_valid_call(smol_server, seed):
    assert_valid_calls(forced(smol_server, "required", seed))


@pytest.mark.parametrize("seed", SEEDS)
def test_a_named_tool_choice_calls_that_function(smol_server, seed):
    calls = assert_valid_calls(forced(smol_server, {"type": "function", "function": {"name": "get_time"}}, seed),
                               names=("get_time",))
    assert len(calls) == 1


@pytest.mark.parametrize("seed", SEEDS)
def test_response_format_json_schema_gives_valid_content(smol_server, seed):
    reply = client(smol_server, timeout=120).chat.completions.create(
        model="m", messages=user("Describe France as JSON."), temperature=1.0, seed=seed, max_tokens=160,
        response_format={"type": "json_schema", "json_schema": {"name": "country", "schema": CAPITAL, "strict": True}})
    choice = reply.choices[0]
    assert choice.finish_reason == "stop", choice
    jsonschema.validate(json.loads(choice.message.content), CAPITAL)


def test_response_format_json_object(smol_server):
    reply = client(smol_server).chat.completions.create(
        model="m", messages=user("Describe Paris as a JSON object with its name and country."), temperature=0,
        max_tokens=200, response_format={"type": "json_object"})
    assert reply.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(reply.choices[0].message.content), dict)


def test_a_streamed_forced_call_arrives_as_tool_call_deltas(smol_server):
    stream = client(smol_server).chat.completions.create(
        model="m", messages=user("Weather in Paris?"), tools=TOOLS, tool_choice="required", temperature=0,
        max_tokens=160, stream=True)
    calls, finish = [], None
    for chunk in stream:
        for choice in chunk.choices:
            calls.extend(choice.delta.tool_calls or [])
            finish = choice.finish_reason or finish
    assert finish == "tool_calls" and calls and calls[0].function.name in ("get_weather", "get_time")


@pytest.mark.parametrize("schema,feature", [
    ({"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}}, "minimum"),
    ({"type": "object", "properties": {"a": {"type": "string"}}, "dependentRequired": {"a": ["b"]}},
     "dependentRequired"),
])
def test_an_unsupported_schema_keyword_is_a_400_naming_it(smol_server, schema, feature):
    with pytest.raises(openai.BadRequestError) as err:
        client(smol_server).chat.completions.create(
            model="m", messages=user("Hi"),
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    body = err.value.body
    assert feature in body["message"] and body["param"] == "response_format" and "Traceback" not in body["message"]
    tools = [{"type": "function", "function": {"name": "f", "parameters": schema}}]
    with pytest.raises(openai.BadRequestError, match=feature):
        client(smol_server).chat.completions.create(model="m", messages=user("Hi"), tools=tools,
                                                    tool_choice="required")


@pytest.mark.parametrize("seed", range(3))
def test_the_templates_own_syntax_is_generated_and_read(hermes_server, seed):
    reply = forced(hermes_server, "required", seed)
    assert_valid_calls(reply)
    assert not reply.choices[0].message.content  # the <tool_call> block was read as a call, not left as text


@pytest.mark.parametrize("engine_name", ["transformers", "mlx"])
def test_engines_that_sample_themselves_constrain_with_llguidance(smollm2_hf, engine_name):
    """The same constraints on the float weights through transformers and MLX: llguidance masks, Hermes syntax."""
    pytest.importorskip("llguidance", reason="these engines constrain with llguidance: pip install llguidance")
    if engine_name == "mlx":
        pytest.importorskip("mlx_lm", reason="the mlx engine needs mlx-lm: pip install 'turnspec[mlx]'")
    from turnspec.chat import GenerationOptions
    from turnspec.chat_session import ChatSession
    from turnspec.engines import load_engine

    spec = turnspec.load(smollm2_hf, template=need(QWEN_TEMPLATE))
    engine = load_engine(engine_name, smollm2_hf)
    try:
        for seed in range(3):
            options = GenerationOptions(max_tokens=120, temperature=1.0, seed=seed, tools=TOOLS,
                                        tool_choice="required")
            result = ChatSession(spec, engine, options=options).ask("What is the weather in Paris?")
            assert result.finish_reason == "tool_calls" and result.tool_calls, result
            call = result.tool_calls[0]["function"]
            jsonschema.validate(call["arguments"], WEATHER if call["name"] == "get_weather" else TIME)
        options = GenerationOptions(max_tokens=120, temperature=1.0, seed=0, response_format={
            "type": "json_schema", "json_schema": {"name": "c", "schema": CAPITAL}})
        result = ChatSession(spec, engine, options=options).ask("Describe France as JSON.")
        jsonschema.validate(json.loads(result.content), CAPITAL)
    finally:
        engine.close()


def test_run_json_schema_file(smollm2_gguf, tmp_path):
    schema = tmp_path / "capital.json"
    schema.write_text(json.dumps(CAPITAL), encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "turnspec.cli", "run", str(smollm2_gguf), "-p", "Describe France.",
                          "--json-schema", str(schema), "--json", "--max-tokens", "160"],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    envelope = json.loads(out.stdout.strip().splitlines()[-1])
    jsonschema.validate(json.loads(envelope["data"]["content"]), CAPITAL)


def test_run_tool_choice_names_a_function(smollm2_gguf, tmp_path):
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps(TOOLS), encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "turnspec.cli", "run", str(smollm2_gguf), "-p", "Weather in Paris?",
                          "--tools", str(tools), "--tool-choice", "get_weather", "--json", "--max-tokens", "160"],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout.strip().splitlines()[-1])["data"]
    assert data["finish_reason"] == "tool_calls" and data["tool_calls"][0]["function"]["name"] == "get_weather"
    jsonschema.validate(data["tool_calls"][0]["function"]["arguments"], WEATHER)
    notices = json.loads(out.stdout.strip().splitlines()[-1])["notices"]
    assert any("no tool-call syntax" in n and "read back as a call" in n for n in notices), notices
    assert not any("not readable" in n for n in notices), notices  # the reader's warning contradicted the call


# ------------------------------------------------------------------ issue 23's adversarial probes (schemas, names)
def _deep_schema(levels):
    schema = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


LIMIT_PROBES = [
    ({"type": "object", "properties": {"s": {"type": "string", "maxLength": 50000}}}, "'maxLength' of 50000"),
    ({"type": "string", "maxLength": 10**9}, "'maxLength' of 1000000000"),
    ({"type": "string", "maxLength": 5000}, "'maxLength' of 5000"),
    ({"type": "array", "items": {"type": "integer"}, "maxItems": 100000}, "'maxItems' of 100000"),
    ({"type": "object", "properties": {"a": {"$ref": "#/$defs/nope"}}}, "points nowhere"),
    ({"type": "object", "properties": {"k": {"type": "array", "items": {"$ref": "#"}}}}, "recursive '$ref'"),
    ({"type": "object", "properties": {"s": {"type": "string", "pattern": "[a-z]+"}}}, "'pattern'"),
    (_deep_schema(40), "nested more than 64 levels deep"),  # deeper bodies: tests/test_server_limits.py
]


def _still_serving(url):
    reply = client(url).chat.completions.create(model="m", messages=user("Hi"), max_tokens=4, temperature=0)
    assert reply.choices[0].message.content is not None


@pytest.mark.parametrize("schema,words", LIMIT_PROBES, ids=lambda v: None if isinstance(v, str) else "")
def test_a_schema_over_the_limits_is_a_400_and_the_server_keeps_serving(smol_server, schema, words):
    """The probe that killed serve (maxLength 50000: a stack overflow in llama.cpp's grammar parser), and its kin:
    400s naming the keyword, in response_format and in a forced call's parameters; the next request is served."""
    with pytest.raises(openai.BadRequestError) as err:
        client(smol_server).chat.completions.create(
            model="m", messages=user("Hi"), max_tokens=8,
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    body = err.value.body
    assert words in body["message"] and body["param"] == "response_format", body
    assert body["message"].startswith("response_format.json_schema.schema")
    if schema.get("type") == "object":
        tools = [{"type": "function", "function": {"name": "f", "parameters": schema}}]
        with pytest.raises(openai.BadRequestError) as err:
            client(smol_server).chat.completions.create(model="m", messages=user("Hi"), tools=tools,
                                                        tool_choice="required", max_tokens=8)
        assert words in err.value.body["message"] and err.value.body["param"].startswith("tools")
        assert err.value.body["message"].startswith("tools[0].function.parameters")
    _still_serving(smol_server)


@pytest.mark.parametrize("names,param,words", [
    (["get_weather", "get_weather"], "tools[1].function.name", "declared twice"),
    (["", "get_weather"], "tools[0].function.name", "non-empty name"),
])
def test_duplicate_and_empty_tool_names_are_400s(smol_server, names, param, words):
    tools = [{"type": "function", "function": {"name": n, "parameters": WEATHER}} for n in names]
    for choice in ("auto", "required"):
        with pytest.raises(openai.BadRequestError) as err:
            client(smol_server).chat.completions.create(model="m", messages=user("Hi"), tools=tools,
                                                        tool_choice=choice, max_tokens=8)
        assert err.value.body["param"] == param and words in err.value.body["message"]
    _still_serving(smol_server)


@pytest.mark.parametrize("name", ['get "weather"', "get\\weather", "get\nweather"])
def test_a_tool_name_with_quotes_or_newlines_is_escaped_in_the_grammar(smol_server, name):
    """These names gave 500 "grammar" errors: a forced call now names the tool exactly, as JSON escapes it."""
    tools = [{"type": "function", "function": {"name": name, "parameters": WEATHER}}]
    reply = client(smol_server, timeout=120).chat.completions.create(
        model="m", messages=user("What is the weather like in Paris right now?"), tools=tools,
        tool_choice="required", temperature=0, max_tokens=80)
    call = reply.choices[0].message.tool_calls[0]
    assert call.function.name == name
    jsonschema.validate(json.loads(call.function.arguments), WEATHER)


def test_the_generic_forced_call_is_short_and_valid(smollm2_gguf):
    """SmolLM2's template has no call syntax: the generic `{"name": ..., "arguments": {...}}` form had free JSON
    whitespace, and the model padded a call with blank lines (78 tokens, `{\\n  "name"\\n\\n:\\n\\n...`). Compact
    now: the raw output holds no newline and no run of spaces, and stays near the canonical call's length (the
    model, never shown the form, still spells some keys in pieces: 33-59 tokens against 25 for the canonical
    text, measured over seeds)."""
    from turnspec.chat import GenerationOptions, constrained
    from turnspec.engines import load_engine

    spec = turnspec.load(smollm2_gguf)
    engine = load_engine("llamacpp", smollm2_gguf)
    enc = spec.encode(user("What is the weather like in Paris right now?"), add_generation_prompt=True, tools=TOOLS)
    try:
        for seed in range(5):
            options = constrained(spec, "gbnf", enc.text, GenerationOptions(
                max_tokens=160, temperature=1.0, seed=seed, tools=TOOLS,
                tool_choice={"type": "function", "function": {"name": "get_weather"}}))
            ids = list(engine.generate(enc.ids, max_tokens=160, temperature=1.0, top_p=1.0, seed=seed,
                                       stop_ids=spec.stops.halt_ids, constraint=options.constraint))
            text = spec.vocab.tokenizer.decode(ids)
            assert "\n" not in text and "  " not in text, text
            assert len(ids) <= 64, (len(ids), text)
            result = spec.reader(enc.text, tools=TOOLS).read_all(text)
            assert [c.name for c in result.tool_calls] == ["get_weather"], text
            jsonschema.validate(result.tool_calls[0].arguments, WEATHER)
    finally:
        engine.close()


def test_run_json_schema_over_the_limits_is_one_line_and_exit_1(smollm2_gguf, tmp_path):
    """`turnspec run --json-schema` with the probe's schema died with rc 139 (a segfault in llama.cpp)."""
    schema = tmp_path / "big.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"s": {"type": "string", "maxLength": 50000}}}),
                      encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "turnspec.cli", "run", str(smollm2_gguf), "-p", "Hi",
                          "--json-schema", str(schema), "--max-tokens", "8"],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 1, (out.returncode, out.stderr[-800:])
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "'maxLength' of 50000" in lines[0] and "Traceback" not in out.stderr, out.stderr
