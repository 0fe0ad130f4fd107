"""The Ollama API and /metrics of `turnspec serve`, through the official `ollama` client, against the scripted
engines of test_server.py (real templates and tokenizer, scripted output) and, marked slow, the real default model."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the server needs fastapi: pip install 'turnspec[serve]'")
ollama = pytest.importorskip("ollama", reason="these tests use the official client: pip install ollama")
openai = pytest.importorskip("openai", reason="the mixed-protocol test uses the official client: pip install openai")

import turnspec  # noqa: E402
from turnspec.server import create_app  # noqa: E402
from turnspec.server.models import ModelManager, ServedModel  # noqa: E402

from helpers.paths import CORPUS, need  # noqa: E402
from helpers.servers import real_model_server  # noqa: E402
from test_server import (TOOL_OUTPUT, WEATHER_TOOL, ScriptedEngine, answer_for, client, raw_request,  # noqa: E402,F401
                         qwen, recorded_parts, recording, harmony_tokenizer, running, smol_server, smol_spec,
                         smol_tokenizer)

FRANCE = [{"role": "system", "content": "You are a helpful assistant."},
          {"role": "user", "content": "What is the capital of France?"}]


def api(url: str, **kw: Any) -> Any:
    return ollama.Client(host=url, **{"timeout": 30, **kw})


def answer(n: int) -> str:
    return f"Answer {n}: " + " ".join(f"w{n}x{k}" for k in range(8))


def ndjson(url: str, path: str, body: dict[str, Any]) -> tuple[int, str, list[dict[str, Any]]]:
    """A streamed request as raw lines: (status, content type, every JSON line)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    lines = [json.loads(line) for line in resp.read().decode().splitlines() if line.strip()]
    conn.close()
    return resp.status, resp.getheader("content-type"), lines


@pytest.fixture
def smol(smol_spec, smol_tokenizer):
    with smol_server(smol_spec, smol_tokenizer) as served:
        yield served


# ------------------------------------------------------------------------------------------------ chat
def test_chat(smol, smol_spec):
    url, engine = smol
    reply = api(url).chat(model="smol", messages=FRANCE, stream=False)
    assert reply.message.role == "assistant" and reply.message.content == "The capital of France is Paris."
    assert reply.done and reply.done_reason == "stop" and reply.model == smol_spec.name
    assert not reply.message.tool_calls and not reply.message.thinking
    enc = smol_spec.encode(FRANCE, add_generation_prompt=True, assistant_mask=False)
    assert reply.prompt_eval_count == len(enc.ids) == len(engine.generations[0]["prompt_ids"])
    assert reply.eval_count == engine.generations[0]["planned"]  # every id, <|im_end|> included
    assert reply.total_duration >= reply.eval_duration > 0 and reply.prompt_eval_duration > 0
    assert reply.created_at.endswith("Z")


def test_chat_streams_by_default_and_equals_the_whole_answer(smol):
    url, _ = smol
    messages = [{"role": "user", "content": "This is request 7."}]
    parts = list(api(url).chat(model="smol", messages=messages, stream=True))
    assert len(parts) > 5 and all(not p.done for p in parts[:-1]) and parts[-1].done
    assert "".join(p.message.content for p in parts) == answer(7)
    assert parts[-1].done_reason == "stop" and parts[-1].eval_count > 0 and parts[-1].message.content == ""
    # no "stream" field at all: Ollama streams, as NDJSON
    status, ctype, lines = ndjson(url, "/api/chat", {"model": "smol", "messages": messages})
    assert status == 200 and ctype.startswith("application/x-ndjson")
    assert "".join(line["message"]["content"] for line in lines) == answer(7) and lines[-1]["done"] is True


def test_options_reach_the_engine_and_unused_ones_are_noted(smol):
    url, engine = smol
    body = {"model": "smol", "messages": FRANCE, "stream": False, "keep_alive": "5m",
            "options": {"temperature": 0.3, "top_p": 0.5, "seed": 7, "num_predict": 3, "num_ctx": 8192, "top_k": 20,
                        "stop": ["Paris"]}}
    import httpx

    resp = httpx.post(f"{url}/api/chat", json=body, timeout=30)
    reply = resp.json()
    gen = engine.generations[-1]
    assert (gen["temperature"], gen["top_p"], gen["seed"], gen["max_tokens"]) == (0.3, 0.5, 7, 3)
    assert reply["eval_count"] == 3 and reply["done_reason"] == "length"
    assert "num_ctx" in resp.headers["x-turnspec-notice"] and "top_k" in resp.headers["x-turnspec-notice"]
    reply = api(url).chat(model="smol", messages=FRANCE, options={"stop": ["Paris"]}, stream=False)
    assert reply.message.content == "The capital of France is " and reply.done_reason == "stop"


def test_an_empty_chat_loads_the_model_without_generating(smol):
    url, engine = smol
    reply = api(url).chat(model="smol", messages=[], stream=False)
    assert reply.done and reply.done_reason == "load" and engine.generations == []


# ------------------------------------------------------------------------------------------------ tools
def test_tools(qwen):
    url, engine = qwen
    reply = api(url).chat(model="qwen", messages=[{"role": "user", "content": "Weather in Paris?"}],
                          tools=[WEATHER_TOOL], stream=False)
    assert '"name": "get_weather"' in engine.generations[-1]["prompt"]  # the tools were rendered
    assert reply.message.content == "Let me check." and reply.done_reason == "stop"
    [call] = reply.message.tool_calls
    assert call.function.name == "get_weather" and call.function.arguments == {"city": "Paris"}  # an object


def test_tools_streamed(qwen):
    url, _ = qwen
    parts = list(api(url).chat(model="qwen", messages=[{"role": "user", "content": "Weather in Paris?"}],
                               tools=[WEATHER_TOOL], stream=True))
    calls = [c for p in parts for c in p.message.tool_calls or []]
    assert "".join(p.message.content for p in parts) == "Let me check."
    assert [(c.function.name, c.function.arguments) for c in calls] == [("get_weather", {"city": "Paris"})]


def test_a_tool_round_trip_renders_the_call_and_its_result(qwen):
    url, engine = qwen
    client_ = api(url)
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    first = client_.chat(model="qwen", messages=messages, tools=[WEATHER_TOOL], stream=False)
    messages += [first.message, {"role": "tool", "tool_name": "get_weather", "content": "18 C, sunny"}]
    client_.chat(model="qwen", messages=messages, tools=[WEATHER_TOOL], stream=False)
    prompt = engine.generations[-1]["prompt"]
    # the server kept the conversation's ids (server/sessions.py): the call is in the prompt as the model wrote it
    assert '<|im_start|>assistant\nLet me check.<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n' \
           '</tool_call><|im_end|>' in prompt
    assert "<tool_response>\n18 C, sunny\n</tool_response>" in prompt


def test_call_ids_pair_each_call_with_its_result(smol_tokenizer):
    """Mistral's template writes a call's id and its result's call_id (9 characters or it raises): an id sent back
    is kept, and calls sent back without one (the ollama client drops it) get one their results share."""
    template = need(CORPUS / "templates" / "mistralai-Mistral-Nemo-Instruct-2407.jinja").read_text(encoding="utf-8")
    spec = turnspec.from_template(template, name="nemo-template", tokenizer=smol_tokenizer,
                                  special_tokens={"bos_token": "<s>", "eos_token": "</s>"})
    engine = ScriptedEngine(smol_tokenizer, lambda prompt: "It is sunny.</s>")
    with running(create_app(spec, engine)) as url:
        for sent_id, expect in (("abc123XYZ", "abc123XYZ"), (None, "call00100")):
            call = {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
            messages = [{"role": "user", "content": "Weather in Paris?"},
                        {"role": "assistant", "content": "", "tool_calls": [{**call, "id": sent_id} if sent_id else call]},
                        {"role": "tool", "tool_name": "get_weather", "content": "18 C"}]
            status, body = raw_request(url, "POST", "/api/chat", {"model": "m", "messages": messages,
                                                                  "tools": [WEATHER_TOOL], "stream": False})
            assert status == 200 and body["message"]["content"] == "It is sunny.", body
            prompt = engine.generations[-1]["prompt"]
            assert f'"arguments": {{"city": "Paris"}}, "id": "{expect}"}}' in prompt
            assert f'{{"content": 18 C, "call_id": "{expect}"}}[/TOOL_RESULTS]' in prompt  # the template's own quoting


# ------------------------------------------------------------------------------------------------ thinking
@pytest.fixture
def gpt_oss(harmony_tokenizer, recording):
    template = need(CORPUS / "templates" / "openai-gpt-oss-120b.jinja").read_text(encoding="utf-8")
    spec = turnspec.from_template(template, name="openai/gpt-oss-20b", tokenizer=harmony_tokenizer,
                                  special_tokens={"eos_token": "<|return|>"})
    engine = ScriptedEngine(harmony_tokenizer, lambda prompt: recording + "<|return|>")
    with running(create_app(spec, engine)) as url:
        yield url, engine


def test_thinking_comes_back_apart_and_think_levels_set_the_effort(gpt_oss, recording):
    url, engine = gpt_oss
    reply = api(url).chat(model="gpt-oss", messages=[{"role": "user", "content": "What is a Chat Template?"}],
                          think="high", stream=False)
    reasoning, content = recorded_parts(recording)
    assert reply.message.thinking == reasoning and reply.message.content == content
    assert "Reasoning: high" in engine.generations[-1]["prompt"]
    parts = list(api(url).chat(model="gpt-oss", messages=[{"role": "user", "content": "Hi"}], stream=True))
    assert "".join(p.message.thinking or "" for p in parts) == reasoning
    assert "".join(p.message.content for p in parts) == content


def test_think_off_without_an_off_switch_is_a_note_not_a_guess(gpt_oss):
    import httpx

    url, engine = gpt_oss
    resp = httpx.post(f"{url}/api/chat", json={"model": "m", "messages": [{"role": "user", "content": "Hi"}],
                                               "think": False, "stream": False, "options": {"num_predict": 2}})
    assert resp.status_code == 200
    assert "reasoning_effort" in resp.headers["x-turnspec-notice"]
    assert "Reasoning: medium" in engine.generations[-1]["prompt"]  # the template's default, untouched


def test_think_false_switches_qwen3s_reasoning_off(smol_tokenizer):
    template = need(CORPUS / "templates" / "Qwen-Qwen3-0.6B.jinja").read_text(encoding="utf-8")
    spec = turnspec.from_template(template, name="qwen3-template", tokenizer=smol_tokenizer,
                                  special_tokens={"eos_token": "<|im_end|>"})
    engine = ScriptedEngine(smol_tokenizer, lambda prompt: "<think>\nHmm.\n</think>\n\nHello.<|im_end|>")
    with running(create_app(spec, engine)) as url:
        off = api(url).chat(model="q", messages=[{"role": "user", "content": "Hi"}], think=False, stream=False)
        assert engine.generations[-1]["prompt"].endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
        on = api(url).chat(model="q", messages=[{"role": "user", "content": "Hi"}], think=True, stream=False)
        assert engine.generations[-1]["prompt"].endswith("<|im_start|>assistant\n")
    assert on.message.thinking == "Hmm." or on.message.thinking.strip() == "Hmm."
    assert on.message.content.strip() == "Hello."
    assert off.message.content  # what the model wrote is still returned


# ------------------------------------------------------------------------------------------------ format
class ConstrainedEngine(ScriptedEngine):
    """A scripted engine that says it enforces grammars (as llama.cpp does) and records each turn's constraint."""

    constrain_backend = "gbnf"

    def __init__(self, *args: Any, **kw: Any):
        super().__init__(*args, **kw)
        self.constraints: list[Any] = []

    def generate(self, prompt_ids, *, constraint=None, **kw):
        self.constraints.append(constraint)
        return super().generate(prompt_ids, **kw)


CITY = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def test_format_becomes_the_json_grammar(smol_spec, smol_tokenizer):
    engine = ConstrainedEngine(smol_tokenizer, lambda prompt: '{"city": "Paris"}<|im_end|>')
    with running(create_app(smol_spec, engine)) as url:
        reply = api(url).chat(model="m", messages=FRANCE, format=CITY, stream=False)
        assert json.loads(reply.message.content) == {"city": "Paris"}
        schema = engine.constraints[-1].schemas[0][1]
        assert engine.constraints[-1].kind == "json" and {k: schema[k] for k in CITY} == CITY
        api(url).generate(model="m", prompt="Where?", format="json", stream=False)
        assert engine.constraints[-1].kind == "json" and engine.constraints[-1].schemas[0][1]["type"] == "object"
        assert "properties" not in engine.constraints[-1].schemas[0][1]  # any object
        api(url).chat(model="m", messages=FRANCE, stream=False)
        assert engine.constraints[-1] is None  # no format, no grammar
        status, body = raw_request(url, "POST", "/api/chat", {"model": "m", "messages": FRANCE, "stream": False,
                                                              "format": {"$ref": "#/nowhere"}})
        assert_ollama_error(status, body, 400, "format")
        assert "response_format" not in body["error"]  # Ollama's name for the field


# ------------------------------------------------------------------------------------------------ generate
def test_generate(smol):
    url, engine = smol
    reply = api(url).generate(model="smol", prompt="This is request 4.", system="Be brief.", stream=False)
    assert reply.response == answer(4) and reply.done and reply.done_reason == "stop"
    assert "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nThis is request 4.<|im_end|>" in \
        engine.generations[-1]["prompt"]
    parts = list(api(url).generate(model="smol", prompt="This is request 5.", stream=True))
    assert "".join(p.response for p in parts) == answer(5) and parts[-1].done and parts[-1].eval_count > 0


def test_generate_raw_sends_the_prompt_as_it_is(smol):
    url, engine = smol
    prompt = "<|im_start|>user\nThis is request 6.<|im_end|>\n<|im_start|>assistant\n"
    reply = api(url).generate(model="smol", prompt=prompt, raw=True, stream=False)
    assert engine.generations[-1]["prompt"] == prompt  # no template around it
    assert reply.response == answer(6)


# ------------------------------------------------------------------------------------------------ models
def test_list_show_ps_version(smol, smol_spec):
    url, _ = smol
    client_ = api(url)
    [entry] = client_.list().models
    assert entry.model == smol_spec.name and len(entry.digest) == 64 and entry.details.format == "safetensors"
    shown = client_.show(smol_spec.name)
    assert shown.template == smol_spec.template and "completion" in shown.capabilities
    assert 'stop "<|im_end|>"' in shown.parameters
    assert any(k.endswith(".context_length") and v == 4096 for k, v in shown.modelinfo.items())
    [loaded] = client_.ps().models
    assert loaded.model == smol_spec.name and loaded.context_length == 4096
    status, version = raw_request(url, "GET", "/api/version")
    assert status == 200 and version["version"].count(".") == 2
    assert raw_request(url, "GET", "/") == (200, "Ollama is running")
    assert raw_request(url, "HEAD", "/")[0] == 200  # the ollama CLI's heartbeat


# ------------------------------------------------------------------------------------------------ errors
def assert_ollama_error(status: int, body: Any, expect: int, *words: str) -> None:
    assert status == expect, body
    assert isinstance(body, dict) and set(body) == {"error"} and isinstance(body["error"], str), body
    assert "Traceback" not in body["error"]
    for word in words:
        assert word in body["error"], body


OLLAMA_BAD = [
    ("/api/chat", b'{"model": "m", "messages": [', ("not valid JSON",)),
    ("/api/chat", [1, 2], ("JSON object",)),
    ("/api/chat", {"model": "m", "messages": "hi"}, ("messages", "list")),
    ("/api/chat", {"model": "m", "messages": [{"role": "user", "content": 5}]}, ("messages[0].content",)),
    ("/api/chat", {"model": "m", "messages": [{"role": "wizard", "content": "hi"}]}, ("unknown role 'wizard'",)),
    ("/api/chat", {"model": "m", "messages": [{"role": "user", "content": "hi", "images": ["aGk="]}]},
     ("images",)),
    ("/api/chat", {"model": "m", "messages": [{"role": "user", "content": "hi"}], "options": {"temperature": "hot"}},
     ("options.temperature",)),
    ("/api/chat", {"model": "m", "messages": [{"role": "user", "content": "hi"}], "options": "fast"},
     ("options",)),
    ("/api/chat", {"model": "m", "messages": [{"role": "user", "content": "hi"}], "think": "very"}, ("think",)),
    ("/api/chat", {"model": "m", "messages": [{"role": "user", "content": "hi"}], "format": "yaml"}, ("format",)),
    ("/api/chat", {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": "sometimes"},
     ("stream",)),
    ("/api/chat", {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "web"}]},
     ("tools[0]",)),
    ("/api/generate", {"model": "m", "prompt": 5}, ("prompt",)),
    ("/api/generate", {"model": "m", "prompt": "hi", "template": "{{ .Prompt }}"}, ("template",)),
    ("/api/generate", {"model": "m", "prompt": "hi", "context": [1, 2, 3]}, ("context",)),
    ("/api/show", {}, ("model",)),
]


@pytest.mark.parametrize("path,body,words", OLLAMA_BAD, ids=[str(i) for i in range(len(OLLAMA_BAD))])
def test_bad_input_is_an_ollama_400(smol, path, body, words):
    url, engine = smol
    assert_ollama_error(*raw_request(url, "POST", path, body), 400, *words)
    assert engine.generations == []


def test_the_request_guard_answers_in_ollamas_shape(smol_spec, smol_tokenizer):
    with smol_server(smol_spec, smol_tokenizer, max_body_bytes=2000) as (url, engine):
        big = {"model": "m", "messages": [{"role": "user", "content": "x" * 5000}]}
        assert_ollama_error(*raw_request(url, "POST", "/api/chat", big), 413, "larger than this server accepts")
        assert_ollama_error(*raw_request(url, "POST", "/api/chat", b"{}", headers={"Content-Type": "text/plain"}),
                            415, "application/json")
        status, body = raw_request(url, "POST", "/v1/chat/completions", big)
        assert status == 413 and isinstance(body["error"], dict)  # OpenAI's routes keep OpenAI's shape
        assert api(url).chat(model="m", messages=FRANCE, stream=False).done and len(engine.generations) == 1


def test_errors_keep_ollamas_shape_and_the_server_keeps_serving(smol):
    url, _ = smol
    assert_ollama_error(*raw_request(url, "GET", "/api/nope"), 404, "/api/nope")
    assert_ollama_error(*raw_request(url, "GET", "/api/chat"), 405)
    with pytest.raises(ollama.ResponseError) as info:
        api(url).chat(model="smol", messages=[{"role": "wizard", "content": "x"}])
    assert info.value.status_code == 400 and "unknown role 'wizard'" in info.value.error
    # the OpenAI routes keep OpenAI's shape
    status, body = raw_request(url, "POST", "/v1/chat/completions", {"messages": "hi"})
    assert status == 400 and isinstance(body["error"], dict)
    assert api(url).chat(model="smol", messages=FRANCE, stream=False).message.content.endswith("Paris.")


def test_an_engine_failure_ends_a_stream_with_an_error_line(smol):
    url, _ = smol
    messages = [{"role": "user", "content": "EXPLODE"}]
    status, _, lines = ndjson(url, "/api/chat", {"model": "m", "messages": messages})
    assert status == 200 and "exploded" in lines[-1]["error"] and "Traceback" not in lines[-1]["error"]
    with pytest.raises(ollama.ResponseError):
        list(api(url).chat(model="smol", messages=messages, stream=True))
    assert_ollama_error(*raw_request(url, "POST", "/api/chat", {"model": "m", "messages": messages,
                                                                "stream": False}), 500, "exploded")
    assert api(url).chat(model="smol", messages=FRANCE, stream=False).done


@pytest.fixture
def two_models(smol_spec, smol_tokenizer):
    """Two scripted models: a name is then needed, and a wrong one is a 404."""
    engines: list[ScriptedEngine] = []

    def load(model: ServedModel) -> ScriptedEngine:
        engines.append(ScriptedEngine(smol_tokenizer, lambda prompt, who=model.id: f"I am {who}.<|im_end|>"))
        return engines[-1]

    manager = ModelManager([ServedModel("alpha", smol_spec, context_length=4096),
                            ServedModel("beta", smol_spec, context_length=4096)], loader=load)
    with running(create_app(models=manager)) as url:
        yield url, manager


def test_unknown_model_is_a_404_and_names_pick_the_model(two_models):
    url, manager = two_models
    client_ = api(url)
    with pytest.raises(ollama.ResponseError) as info:
        client_.chat(model="gamma", messages=FRANCE)
    assert info.value.status_code == 404 and "alpha, beta" in info.value.error
    assert_ollama_error(*raw_request(url, "POST", "/api/show", {"model": "gamma"}), 404, "gamma")
    assert_ollama_error(*raw_request(url, "POST", "/api/generate", {"prompt": "hi"}), 400, "model")
    assert client_.chat(model="beta:latest", messages=FRANCE, stream=False).message.content == "I am beta."
    assert client_.chat(model="alpha", messages=FRANCE, stream=False).message.content == "I am alpha."
    assert [m.model for m in client_.list().models] == ["alpha", "beta"]
    assert [m.model for m in client_.ps().models] == ["alpha"] and manager.swaps == 2


def test_api_key(smol_spec, smol_tokenizer):
    with smol_server(smol_spec, smol_tokenizer, api_key="s3cret") as (url, _):
        with pytest.raises(ollama.ResponseError) as info:
            api(url).chat(model="m", messages=FRANCE)
        assert info.value.status_code == 401
        assert_ollama_error(*raw_request(url, "GET", "/api/tags"), 401, "API key")
        keyed = api(url, headers={"Authorization": "Bearer s3cret"})
        assert keyed.chat(model="m", messages=FRANCE, stream=False).done
        assert raw_request(url, "GET", "/api/version")[0] == 200  # a probe, like /health
        assert raw_request(url, "GET", "/metrics")[0] == 200


# ------------------------------------------------------------------------------------------------ load
def test_concurrent_openai_and_ollama_chats_are_not_mixed_up(smol_spec, smol_tokenizer):
    """8 requests at once, half OpenAI and half Ollama, streamed and whole: each gets its own answer."""

    async def ollama_one(url: str, n: int, stream: bool) -> tuple[int, str]:
        client_ = ollama.AsyncClient(host=url, timeout=60)
        messages = [{"role": "user", "content": f"This is request {n}."}]
        if not stream:
            return n, (await client_.chat(model="m", messages=messages, stream=False)).message.content
        return n, "".join([p.message.content async for p in await client_.chat(model="m", messages=messages,
                                                                                 stream=True)])

    async def openai_one(oa: Any, n: int, stream: bool) -> tuple[int, str]:
        messages = [{"role": "user", "content": f"This is request {n}."}]
        if not stream:
            return n, (await oa.chat.completions.create(model="m", messages=messages)).choices[0].message.content
        chunks = await oa.chat.completions.create(model="m", messages=messages, stream=True)
        return n, "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])

    async def all_of_them(url: str) -> list[tuple[int, str]]:
        async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60) as oa:
            jobs = [ollama_one(url, n, n % 4 == 0) if n % 2 == 0 else openai_one(oa, n, n % 4 == 1) for n in range(8)]
            return await asyncio.gather(*jobs)

    with smol_server(smol_spec, smol_tokenizer, delay=0.002) as (url, engine):
        results = asyncio.run(all_of_them(url))
    assert sorted(results) == [(n, answer(n)) for n in range(8)]
    assert len(engine.generations) == 8 and engine.max_active == 1


# ------------------------------------------------------------------------------------------------ metrics
def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """/metrics parsed by Prometheus' own parser: {(sample name, sorted labels): value}."""
    parser = pytest.importorskip("prometheus_client.parser", reason="the format check uses prometheus_client")
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("GET", "/metrics")
    resp = conn.getresponse()
    text = resp.read().decode()
    assert resp.status == 200 and resp.getheader("content-type").startswith("text/plain; version=0.0.4")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in parser.text_string_to_metric_families(text) for s in family.samples}


def test_metrics_parse_and_count(smol, smol_spec):
    url, engine = smol
    before = scrape(url)
    model = (("model", smol_spec.name),)
    assert before[("turnspec_generated_tokens_total", model)] == 0 and before[("turnspec_queue_depth", ())] == 0
    reply = api(url).chat(model="m", messages=FRANCE, stream=False)
    client(url).chat.completions.create(model="m", messages=FRANCE)
    raw_request(url, "POST", "/api/chat", {"messages": "hi"})
    raw_request(url, "GET", "/no/such/path")
    after = scrape(url)

    def req(endpoint: str, method: str, status: int) -> float:
        return after.get(("turnspec_requests_total", (("endpoint", endpoint), ("method", method),
                                                      ("status", str(status)))), 0)

    assert req("/api/chat", "POST", 200) == 1 and req("/api/chat", "POST", 400) == 1
    assert req("/v1/chat/completions", "POST", 200) == 1 and req("unmatched", "GET", 404) == 1
    assert req("/metrics", "GET", 200) == 1  # the first scrape
    assert after[("turnspec_generated_tokens_total", model)] == reply.eval_count + engine.generations[1]["planned"]
    assert after[("turnspec_prompt_tokens_total", model)] == 2 * reply.prompt_eval_count
    assert after[("turnspec_cached_prompt_tokens_total", model)] == 0
    assert after[("turnspec_time_to_first_token_seconds_count", ())] == 2
    assert after[("turnspec_time_to_first_token_seconds_bucket", (("le", "+Inf"),))] == 2
    assert after[("turnspec_decode_seconds_count", ())] == 2
    assert after[("turnspec_generations_total", (("outcome", "completed"),))] == 2
    assert after[("turnspec_model_loaded", model)] == 1 and after[("turnspec_model_swaps_total", ())] == 0
    assert after[("turnspec_active_generations", ())] == 0 and after[("turnspec_slots", ())] == 1


def test_metrics_count_model_swaps(two_models):
    url, _ = two_models
    api(url).chat(model="alpha", messages=FRANCE, stream=False)
    api(url).chat(model="beta", messages=FRANCE, stream=False)
    after = scrape(url)
    assert after[("turnspec_model_swaps_total", ())] == 2
    assert after[("turnspec_model_loaded", (("model", "beta"),))] == 1
    assert after[("turnspec_model_loaded", (("model", "alpha"),))] == 0


def test_queue_depth_is_seen_while_requests_wait(smol_spec, smol_tokenizer):
    with smol_server(smol_spec, smol_tokenizer, delay=0.02) as (url, _):
        threads = [threading.Thread(target=api(url).chat, kwargs={"model": "m", "messages": [
            {"role": "user", "content": "This is request 1."}], "stream": False}) for _ in range(3)]
        for t in threads:
            t.start()
        seen = []
        for _ in range(100):
            now = scrape(url)
            seen.append((now[("turnspec_queue_depth", ())], now[("turnspec_active_generations", ())]))
            if seen[-1][0] >= 1 and seen[-1][1] == 1:
                break
        for t in threads:
            t.join(30)
    assert any(queued >= 1 and active == 1 for queued, active in seen), seen


# ------------------------------------------------------------------------------------------------ the real model
@pytest.fixture(scope="module")
def real(smollm2_gguf):
    with real_model_server(smollm2_gguf) as (url, spec, _engine):
        yield url, spec


@pytest.mark.slow
def test_real_chat_stream_and_generate(real):
    url, spec = real
    client_ = api(url, timeout=120)
    whole = client_.chat(model=spec.name, messages=FRANCE, options={"temperature": 0}, stream=False)
    assert "Paris" in whole.message.content and "<|im_end|>" not in whole.message.content
    assert whole.done_reason == "stop" and whole.eval_count > 0
    assert whole.prompt_eval_count == len(spec.encode(FRANCE, add_generation_prompt=True, assistant_mask=False).ids)
    parts = list(client_.chat(model=spec.name, messages=FRANCE, options={"temperature": 0}, stream=True))
    assert "".join(p.message.content for p in parts) == whole.message.content  # greedy: the same answer
    assert parts[-1].eval_count == whole.eval_count
    generated = client_.generate(model=spec.name, prompt="What is the capital of France?",
                                 system="You are a helpful assistant.", options={"temperature": 0}, stream=False)
    assert generated.response == whole.message.content  # the same prompt through the template
    short = client_.generate(model=spec.name, prompt="Count to fifty:", options={"num_predict": 5, "temperature": 0},
                             stream=False)  # greedy: a sampled answer may end within 5 tokens
    assert short.eval_count == 5 and short.done_reason == "length"


@pytest.mark.slow
def test_real_format_schema_is_obeyed(real):
    jsonschema = pytest.importorskip("jsonschema")
    url, spec = real
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
              "required": ["city", "country"]}
    for seed in range(3):
        reply = api(url, timeout=120).chat(model=spec.name, messages=FRANCE, format=schema, stream=False,
                                           options={"seed": seed, "temperature": 0.7, "num_predict": 60})
        jsonschema.validate(json.loads(reply.message.content), schema)


@pytest.mark.slow
def test_real_list_show_and_tools(real):
    url, spec = real
    client_ = api(url, timeout=120)
    [entry] = client_.list().models
    assert entry.model == spec.name and entry.details.format == "gguf" and entry.size > 50_000_000
    shown = client_.show(spec.name)
    assert shown.template == spec.template and shown.modelinfo["general.architecture"] == "llama"
    reply = client_.chat(model=spec.name, messages=FRANCE, tools=[WEATHER_TOOL], stream=False,
                         options={"temperature": 0, "num_predict": 60})
    assert reply.done  # SmolLM2's template renders no tools: whatever it writes comes back, no error
