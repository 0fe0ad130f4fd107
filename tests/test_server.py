"""`turnspec serve` with scripted engines: the OpenAI client on loopback against the real server code.

A `ScriptedEngine` plays back fixed output token by token through the engines' own stop rules (so cancel,
max_tokens and stop ids behave as in llama.cpp) and records every generation. Models:
- gpt-oss: the corpus template with a stand-in vocabulary (the SmolLM2 tokenizer plus the Harmony control tokens
  as special tokens; o200k_harmony is not available offline), replaying the recorded gpt-oss-20b output;
- Qwen2.5's template (Hermes tool calls) and Gemma-2's (rejects system) over the SmolLM2 tokenizer;
- the SmolLM2 folder itself (template + tokenizer; no weights needed here).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import socket
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import pytest

pytest.importorskip("fastapi", reason="the server needs fastapi: pip install 'turnspec[serve]'")
uvicorn = pytest.importorskip("uvicorn", reason="the server needs uvicorn: pip install 'turnspec[serve]'")
openai = pytest.importorskip("openai", reason="these tests use the official client: pip install openai")

import turnspec  # noqa: E402
from turnspec.engines.base import EngineBase, stop_rules  # noqa: E402
from turnspec.formats import HARMONY  # noqa: E402
from turnspec.server import create_app  # noqa: E402
from turnspec.server.protocol import ServeDefaults  # noqa: E402

from helpers.paths import CORPUS, RECORDINGS, need  # noqa: E402
from helpers.servers import running  # noqa: E402  (the other server tests import it from here too)

CONTROL = re.compile(r"<\|(im_start|im_end|endoftext|start|end|message|channel|return|call|constrain)\|>")
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
TOOL_OUTPUT = 'Let me check.<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>'


# ------------------------------------------------------------------------------------------------ harness
class ScriptedEngine(EngineBase):
    """Plays `script(prompt_text)` (text, or ids) back one token per step through `stop_rules`, like a real engine.

    Records each generation (prompt, options, tokens produced) and the most generations ever running at once.
    """

    name = "scripted"

    def __init__(self, tokenizer: Any, script: Callable[[str], Any], *, context_length: int = 4096,
                 delay: float = 0.0):
        self.tokenizer = tokenizer
        self.script = script
        self.context_length = context_length
        self.delay = delay
        self.generations: list[dict[str, Any]] = []
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def generate(self, prompt_ids, *, max_tokens, temperature=0.0, top_p=1.0, seed=None, stop_ids=(), cancel=None):
        prompt = self.tokenizer.decode(list(prompt_ids), skip_special_tokens=False)
        out = self.script(prompt)
        ids = out if isinstance(out, list) else self.tokenizer.encode(out, add_special_tokens=False).ids
        rec = {"prompt": prompt, "prompt_ids": list(prompt_ids), "planned": len(ids), "produced": 0,
               "max_tokens": max_tokens, "temperature": temperature, "top_p": top_p, "seed": seed}
        self.generations.append(rec)

        def steps() -> Iterator[int]:
            with self._lock:
                self.active += 1
                self.max_active = max(self.max_active, self.active)
            try:
                for tid in ids:
                    if self.delay:
                        time.sleep(self.delay)
                    if "EXPLODE" in prompt:
                        raise RuntimeError("the scripted engine exploded")
                    rec["produced"] += 1
                    yield tid
            finally:
                with self._lock:
                    self.active -= 1

        return stop_rules(steps(), max_tokens=self.budget(list(prompt_ids), max_tokens), stop_ids=stop_ids,
                          cancel=cancel, current=self.claim())


def client(url: str, **kw: Any) -> Any:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=kw.pop("api_key", "unused"), max_retries=0,
                         timeout=kw.pop("timeout", 30), **kw)


def raw_request(url: str, method: str, path: str, body: Any = None, headers: dict | None = None,
                timeout: float = 30) -> tuple[int, Any]:
    """A plain HTTP request (bytes or JSON body): for inputs the official client would refuse to send."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
    resp = conn.getresponse()
    payload = resp.read()
    conn.close()
    try:
        return resp.status, json.loads(payload)
    except ValueError:
        return resp.status, payload.decode()


def user(text: str, system: str | None = "You are a helpful assistant.") -> list[dict[str, Any]]:
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]


def extra(obj: Any, name: str) -> Any:
    """A field the OpenAI SDK does not declare (reasoning_content), kept by its pydantic models as an extra."""
    return getattr(obj, name, None) if hasattr(obj, name) else (obj.model_extra or {}).get(name)


# ------------------------------------------------------------------------------------------------ models
@pytest.fixture(scope="module")
def smol_tokenizer(smollm2_dir):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(smollm2_dir / "tokenizer.json"))


@pytest.fixture(scope="module")
def harmony_tokenizer(smollm2_dir):
    from tokenizers import AddedToken, Tokenizer

    tok = Tokenizer.from_file(str(smollm2_dir / "tokenizer.json"))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in HARMONY.tokens])
    return tok


@pytest.fixture(scope="module")
def recording() -> str:
    return need(RECORDINGS / "gpt-oss-20b-chat-raw-output.txt").read_bytes().decode("utf-8")


def recorded_parts(recording: str) -> tuple[str, str]:
    first = recording.index("<|message|>") + len("<|message|>")
    return recording[first : recording.index("<|end|>")], recording.split("<|channel|>final<|message|>", 1)[1]


@pytest.fixture
def gpt_oss(harmony_tokenizer, recording):
    template = need(CORPUS / "templates" / "openai-gpt-oss-120b.jinja").read_text(encoding="utf-8")
    spec = turnspec.from_template(template, name="openai/gpt-oss-20b", tokenizer=harmony_tokenizer,
                                  special_tokens={"eos_token": "<|return|>"})
    engine = ScriptedEngine(harmony_tokenizer, lambda prompt: recording + "<|return|>")
    with running(create_app(spec, engine)) as url:
        yield url, engine, spec


@pytest.fixture
def qwen(smol_tokenizer):
    template = need(CORPUS / "templates" / "Qwen-Qwen2.5-7B-Instruct.jinja").read_text(encoding="utf-8")
    spec = turnspec.from_template(template, name="qwen-template", tokenizer=smol_tokenizer,
                                  special_tokens={"eos_token": "<|im_end|>"})
    engine = ScriptedEngine(smol_tokenizer, lambda prompt: TOOL_OUTPUT)
    with running(create_app(spec, engine)) as url:
        yield url, engine


def answer_for(prompt: str) -> str:
    """SmolLM2-shaped scripted answers: 'Answer N: ...' for 'request N', a long text for 'long', else Paris."""
    asked = prompt.rsplit("<|im_start|>user\n", 1)[-1]
    if m := re.search(r"request (\d+)", asked):
        n = int(m.group(1))
        return f"Answer {n}: " + " ".join(f"w{n}x{k}" for k in range(8)) + "<|im_end|>"
    if "long" in asked:
        return "word " * 3000 + "<|im_end|>"
    return "The capital of France is Paris.<|im_end|>"


@pytest.fixture(scope="module")
def smol_spec(smollm2_dir):
    return turnspec.load(smollm2_dir)


@contextmanager
def smol_server(spec, tokenizer, **app_kw) -> Iterator[tuple[str, ScriptedEngine]]:
    engine = ScriptedEngine(tokenizer, answer_for, delay=app_kw.pop("delay", 0.0),
                            context_length=app_kw.pop("context_length", 4096))
    with running(create_app(spec, engine, **app_kw)) as url:
        yield url, engine


@pytest.fixture
def smol(smol_spec, smol_tokenizer):
    with smol_server(smol_spec, smol_tokenizer) as served:
        yield served


# ------------------------------------------------------------------------------------------------ gpt-oss replay
def test_replay_reasoning_and_content_are_split(gpt_oss, recording):
    url, engine, spec = gpt_oss
    reply = client(url).chat.completions.create(model="openai/gpt-oss-20b", messages=user("What is a Chat Template?"))
    reasoning, content = recorded_parts(recording)
    msg = reply.choices[0].message
    assert msg.content == content and extra(msg, "reasoning_content") == reasoning
    assert msg.content.startswith("## 1. What is a **Chat Template**?")
    assert not CONTROL.search(msg.content) and not CONTROL.search(reasoning)
    assert "`<|assistant|>`" in msg.content  # quoted tokens of other models are text, kept verbatim
    assert reply.choices[0].finish_reason == "stop" and not msg.tool_calls
    enc = spec.encode(user("What is a Chat Template?"), add_generation_prompt=True, assistant_mask=False)
    assert reply.usage.prompt_tokens == len(enc.ids) == len(engine.generations[0]["prompt_ids"])
    assert reply.usage.completion_tokens == engine.generations[0]["planned"]  # every id, <|return|> included
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert reply.model == "openai/gpt-oss-20b" and reply.id.startswith("chatcmpl-")


def test_replay_streamed_equals_whole(gpt_oss, recording):
    url, _, _ = gpt_oss
    api = client(url)
    whole = api.chat.completions.create(model="m", messages=user("What is a Chat Template?"))
    stream = api.chat.completions.create(model="m", messages=user("What is a Chat Template?"), stream=True,
                                         stream_options={"include_usage": True})
    kinds, content, reasoning, finish, usage = [], [], [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if extra(choice.delta, "reasoning_content"):
                reasoning.append(extra(choice.delta, "reasoning_content"))
                kinds.append("r")
            if choice.delta.content:
                content.append(choice.delta.content)
                kinds.append("c")
            finish = choice.finish_reason or finish
    assert "".join(content) == whole.choices[0].message.content
    assert "".join(reasoning) == extra(whole.choices[0].message, "reasoning_content") == recorded_parts(recording)[0]
    assert kinds.count("r") > 10 and kinds.count("c") > 10  # streamed as it came, not dumped at the end
    assert "".join(kinds).rstrip("c") == "r" * kinds.count("r")  # all reasoning first, then the answer
    assert finish == "stop" and usage is not None and usage.model_dump() == whole.usage.model_dump()


def test_reasoning_effort_and_template_kwargs_reach_the_template(gpt_oss):
    url, engine, _ = gpt_oss
    api = client(url)
    api.chat.completions.create(model="m", messages=user("Hi"), reasoning_effort="high", max_tokens=2)
    assert "Reasoning: high" in engine.generations[-1]["prompt"]
    api.chat.completions.create(model="m", messages=user("Hi"), max_tokens=2,
                                extra_body={"chat_template_kwargs": {"reasoning_effort": "low"}})
    assert "Reasoning: low" in engine.generations[-1]["prompt"]


def test_developer_role_is_kept_when_the_template_knows_it(gpt_oss):
    url, engine, _ = gpt_oss
    messages = [{"role": "developer", "content": "Answer in haiku."}, {"role": "user", "content": "Hi"}]
    client(url).chat.completions.create(model="m", messages=messages, max_tokens=2)
    assert "<|start|>developer<|message|># Instructions\n\nAnswer in haiku." in engine.generations[-1]["prompt"]


# ------------------------------------------------------------------------------------------------ tool calls
def test_tool_call(qwen):
    url, engine = qwen
    reply = client(url).chat.completions.create(model="m", messages=user("Weather in Paris?"), tools=[WEATHER_TOOL])
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check."
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather"
    assert isinstance(call.function.arguments, str) and json.loads(call.function.arguments) == {"city": "Paris"}
    assert len(call.id) == 9 and call.id.isalnum()
    assert '"name": "get_weather"' in engine.generations[-1]["prompt"]  # the tools were rendered


def test_tool_call_streamed(qwen):
    """Arguments stream as the model writes them, as OpenAI's do: a first chunk with the id, the name and empty
    arguments, then pieces of argument text; joined, they are the whole response's arguments."""
    url, _ = qwen
    api = client(url)
    whole = api.chat.completions.create(model="m", messages=user("Weather in Paris?"), tools=[WEATHER_TOOL])
    stream = api.chat.completions.create(model="m", messages=user("Weather in Paris?"), tools=[WEATHER_TOOL],
                                         stream=True)
    calls, content, finish = [], [], None
    for chunk in stream:
        delta = chunk.choices[0].delta
        content.append(delta.content or "")
        calls += delta.tool_calls or []
        finish = chunk.choices[0].finish_reason or finish
    assert "".join(content) == "Let me check." and finish == "tool_calls"
    first, *rest = calls
    assert first.index == 0 and first.function.name == "get_weather" and len(first.id) == 9
    assert first.function.arguments == "" and first.type == "function"
    assert len(rest) > 3 and all(c.index == 0 and c.id is None and c.function.name is None for c in rest)
    arguments = "".join(c.function.arguments for c in rest)
    assert arguments == whole.choices[0].message.tool_calls[0].function.arguments == '{"city": "Paris"}'


def test_tool_choice_none_renders_no_tools_and_returns_the_call_as_text(qwen):
    url, engine = qwen
    reply = client(url).chat.completions.create(model="m", messages=user("Weather in Paris?"), tools=[WEATHER_TOOL],
                                                tool_choice="none")
    assert "get_weather" not in engine.generations[-1]["prompt"]
    choice = reply.choices[0]
    assert choice.finish_reason == "stop" and not choice.message.tool_calls
    assert choice.message.content == 'Let me check.{"name": "get_weather", "arguments": {"city": "Paris"}}'


# a call as OpenAI returns it (arguments a JSON string, content null) and its result, sent back by a client
CALL_AND_RESULT = [
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "abc123XYZ", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "tool_call_id": "abc123XYZ", "content": "18 C, sunny"},
]


def test_tool_results_go_back_into_the_prompt_with_object_arguments(qwen):
    url, engine = qwen
    messages = user("Weather in Paris?") + CALL_AND_RESULT
    client(url).chat.completions.create(model="m", messages=messages, tools=[WEATHER_TOOL])
    prompt = engine.generations[-1]["prompt"]
    assert '{"name": "get_weather", "arguments": {"city": "Paris"}}' in prompt  # an object, not a quoted string
    assert "<tool_response>\n18 C, sunny\n</tool_response>" in prompt


def test_a_tool_call_message_sent_back_with_null_content_renders(smol):
    """What OpenAI returns for a call (`content: null`) and its client resends: SmolLM2's template concatenates
    content as a string, so null used to surface as a 400 ('dict object' has no attribute 'content')."""
    url, engine = smol
    messages = user("Weather in Paris?") + CALL_AND_RESULT
    client(url).chat.completions.create(model="m", messages=messages, tools=[WEATHER_TOOL])
    prompt = engine.generations[-1]["prompt"]
    assert "<|im_start|>assistant\n<|im_end|>\n<|im_start|>tool\n18 C, sunny<|im_end|>" in prompt


# ------------------------------------------------------------------------------------------------ request fields
def test_options_reach_the_engine(smol):
    url, engine = smol
    api = client(url)
    api.chat.completions.create(model="m", messages=user("Hi"), temperature=0.7, top_p=0.9, seed=42, max_tokens=50)
    rec = engine.generations[-1]
    assert (rec["temperature"], rec["top_p"], rec["seed"], rec["max_tokens"]) == (0.7, 0.9, 42, 50)
    api.chat.completions.create(model="m", messages=user("Hi"), max_tokens=50, max_completion_tokens=30)
    assert engine.generations[-1]["max_tokens"] == 30
    api.chat.completions.create(model="m", messages=user("Hi"))  # OpenAI's defaults; budget = rest of the context
    rec = engine.generations[-1]
    assert (rec["temperature"], rec["top_p"]) == (1.0, 1.0)
    assert rec["max_tokens"] == engine.context_length - len(rec["prompt_ids"])


def test_max_tokens_gives_length(smol):
    url, _ = smol
    reply = client(url).chat.completions.create(model="m", messages=user("long"), max_tokens=5)
    assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 5
    assert reply.choices[0].message.content == "word word word word word"


@pytest.mark.parametrize("stop", ["capital", ["zzz", " of France"]])
def test_stop_strings(smol, stop):
    url, _ = smol
    reply = client(url).chat.completions.create(model="m", messages=user("Hi"), stop=stop)
    expected = "The " if stop == "capital" else "The capital"
    assert reply.choices[0].message.content == expected and reply.choices[0].finish_reason == "stop"


def test_content_parts_and_developer_as_system(smol):
    url, engine = smol
    messages = [{"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
                {"role": "user", "content": [{"type": "text", "text": "What is"}, {"type": "text", "text": "the capital?"}]}]
    client(url).chat.completions.create(model="m", messages=messages)
    prompt = engine.generations[-1]["prompt"]
    # SmolLM2's template has no developer role: the message is sent as the system turn
    assert prompt == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is\nthe capital?<|im_end|>\n"
                      "<|im_start|>assistant\n")


def test_models_and_health(smol, smol_spec):
    url, _ = smol
    api = client(url)
    assert [m.id for m in api.models.list()] == [smol_spec.name]
    assert api.models.retrieve(smol_spec.name).id == smol_spec.name
    status, body = raw_request(url, "GET", "/health")
    assert status == 200 and body["status"] == "ok" and body["model"] == smol_spec.name


def test_model_id_is_configurable(smol_spec, smol_tokenizer):
    with smol_server(smol_spec, smol_tokenizer, model_id="local/smol") as (url, _):
        api = client(url)
        assert [m.id for m in api.models.list()] == ["local/smol"]
        assert api.models.retrieve("local/smol").id == "local/smol"
        assert api.chat.completions.create(model="anything", messages=user("Hi")).model == "local/smol"


# ------------------------------------------------------------------------------------------------ errors
def assert_error(status: int, body: Any, expect_status: int, *words: str, param: str | None = "") -> dict:
    assert status == expect_status, body
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    err = body["error"]
    assert err["type"] == ("invalid_request_error" if expect_status < 500 else "server_error")
    for word in words:
        assert word in err["message"], err
    if param != "":
        assert err["param"] == param, err
    assert "Traceback" not in err["message"]
    return err


BAD_REQUESTS = [
    (b'{"messages": [', ("not valid JSON",), None),
    (b"\xff\xfe", ("not valid JSON",), None),
    ([1, 2], ("JSON object",), None),
    ({"model": "m"}, ("messages", "required"), "messages"),
    ({"messages": []}, ("at least one message",), "messages"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, ("unknown role 'wizard'",), "messages[0].role"),
    ({"messages": [{"content": "hi"}]}, ("role", "required"), "messages[0].role"),
    ({"messages": [{"role": "user", "content": 5}]}, ("valid string",), "messages[0].content"),
    ({"messages": [{"role": "user"}]}, ("needs content",), "messages[0].content"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     ("'image_url' is not supported",), "messages[0].content[0].type"),
    ({"messages": [{"role": "tool", "content": "x"}]}, ("tool_call_id",), "messages[0].tool_call_id"),
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}, ("temperature", "number"), "temperature"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, ("max_tokens",), "max_tokens"),
    ({"messages": [{"role": "user", "content": "hi"}], "stop": ""}, ("stop",), "stop"),
    ({"messages": [{"role": "user", "content": "hi"}], "n": 2}, ("n=1",), "n"),
    ({"messages": [{"role": "user", "content": "hi"}], "tool_choice": "required"}, ("tool_choice", "tools"),
     "tool_choice"),
    ({"messages": [{"role": "user", "content": "hi"}], "tools": [WEATHER_TOOL],
      "tool_choice": {"type": "function", "function": {"name": "get_time"}}}, ("get_time", "not in 'tools'"),
     "tool_choice"),
    ({"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "yaml"}}, ("'yaml'",),
     "response_format.type"),
    ({"messages": [{"role": "user", "content": "hi"}], "chat_template_kwargs": {"add_generation_prompt": False}},
     ("reserved",), "chat_template_kwargs.add_generation_prompt"),
    ({"messages": [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "x", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]},
     ("not valid JSON",), "messages[0].tool_calls[0].function.arguments"),
]


@pytest.mark.parametrize("body,words,param", BAD_REQUESTS, ids=[str(i) for i in range(len(BAD_REQUESTS))])
def test_bad_input_is_a_400_naming_the_problem(smol, body, words, param):
    url, engine = smol
    status, reply = raw_request(url, "POST", "/v1/chat/completions", body)
    assert_error(status, reply, 400, *words, param=param)
    assert engine.generations == []


def test_the_official_client_raises_bad_request(smol):
    url, _ = smol
    with pytest.raises(openai.BadRequestError) as info:
        client(url).chat.completions.create(model="m", messages=[{"role": "wizard", "content": "x"}])
    assert info.value.status_code == 400 and "unknown role 'wizard'" in info.value.message


def test_template_rejection_is_a_400_with_the_templates_message(smol_tokenizer):
    template = need(CORPUS / "templates" / "google-gemma-2-2b-it.jinja").read_text(encoding="utf-8")
    spec = turnspec.from_template(template, name="google/gemma-2-2b-it", tokenizer=smol_tokenizer,
                                  special_tokens={"bos_token": "<bos>", "eos_token": "<eos>"})
    engine = ScriptedEngine(smol_tokenizer, lambda prompt: "Hi<eos>")
    with running(create_app(spec, engine)) as url:
        status, body = raw_request(url, "POST", "/v1/chat/completions", {"messages": user("Hi")})
        err = assert_error(status, body, 400, "System role not supported", "google/gemma-2-2b-it", param="messages")
        assert err["code"] == "template_error"
        status, body = raw_request(url, "POST", "/v1/chat/completions", {"messages": user("Hi", system=None)})
        assert status == 200
    # --system-mode merge: the system text goes into the first user turn instead
    engine = ScriptedEngine(smol_tokenizer, lambda prompt: "Hi<eos>")
    with running(create_app(spec, engine, defaults=ServeDefaults(system_mode="merge"))) as url:
        status, body = raw_request(url, "POST", "/v1/chat/completions", {"messages": user("Hi", system="Be kind.")})
        assert status == 200, body
        assert "<start_of_turn>user\nBe kind.\n\nHi<end_of_turn>" in engine.generations[-1]["prompt"]


def test_prompt_longer_than_the_context_is_a_400(smol_spec, smol_tokenizer):
    with smol_server(smol_spec, smol_tokenizer, context_length=64) as (url, engine):
        status, body = raw_request(url, "POST", "/v1/chat/completions", {"messages": user("x " * 100)})
        err = assert_error(status, body, 400, "context holds 64", param="messages")
        assert err["code"] == "context_length_exceeded"
        reply = client(url).chat.completions.create(model="m", messages=user("long"), max_tokens=1000)
        assert reply.choices[0].finish_reason == "length"  # max_tokens cut to what the context still holds
        assert reply.usage.prompt_tokens + reply.usage.completion_tokens == 64


def test_unknown_urls_and_methods(smol):
    url, _ = smol
    assert_error(*raw_request(url, "GET", "/v1/nothing"), 404, "/v1/nothing")
    assert_error(*raw_request(url, "GET", "/v1/chat/completions"), 405, "GET")
    assert_error(*raw_request(url, "GET", "/v1/models/other"), 404, "'other'", param="model")


def test_fastapi_validation_errors_become_openai_400s(smol_spec, smol_tokenizer):
    """FastAPI answers typed-parameter failures with a 422 of its own; the app turns them into the OpenAI shape."""
    app = create_app(smol_spec, ScriptedEngine(smol_tokenizer, answer_for))

    @app.get("/v1/probe")
    async def probe(n: int) -> dict:
        return {"n": n}

    with running(app) as url:
        assert_error(*raw_request(url, "GET", "/v1/probe?n=many"), 400, "query.n", "integer", param="query.n")


def test_an_internal_error_is_a_500_without_traceback(smol, monkeypatch):
    import turnspec.server.core as server_core

    def broken(*args, **kwargs):
        raise KeyError("oops")

    url, _ = smol
    monkeypatch.setattr(server_core, "parse_request", broken)
    status, body = raw_request(url, "POST", "/v1/chat/completions", {"messages": user("Hi")})
    err = assert_error(status, body, 500, "internal server error: KeyError: 'oops'")
    assert err["code"] == "internal_error"


def test_engine_failure_is_a_500_without_traceback_and_the_server_goes_on(smol):
    url, engine = smol
    status, body = raw_request(url, "POST", "/v1/chat/completions", {"messages": user("EXPLODE")})
    assert_error(status, body, 500, "the scripted engine exploded")
    stream = client(url).chat.completions.create(model="m", messages=user("EXPLODE"), stream=True)
    with pytest.raises(openai.APIError, match="exploded"):
        list(stream)
    assert client(url).chat.completions.create(model="m", messages=user("Hi")).choices[0].message.content \
        == "The capital of France is Paris."


def test_api_key(smol_spec, smol_tokenizer):
    with smol_server(smol_spec, smol_tokenizer, api_key="s3cret") as (url, _):
        assert client(url, api_key="s3cret").models.list().data[0].id == smol_spec.name
        with pytest.raises(openai.AuthenticationError) as info:
            client(url, api_key="wrong").chat.completions.create(model="m", messages=user("Hi"))
        assert info.value.status_code == 401 and info.value.body["code"] == "invalid_api_key"
        assert_error(*raw_request(url, "GET", "/v1/models"), 401, "Authorization: Bearer")
        assert_error(*raw_request(url, "POST", "/v1/chat/completions", {"messages": user("Hi")},
                                  headers={"Authorization": "Basic s3cret"}), 401)
        assert raw_request(url, "GET", "/health")[0] == 200  # probes need no key


# ------------------------------------------------------------------------------------------------ concurrency
def test_fifty_concurrent_streams_are_queued_without_mixing(smol_spec, smol_tokenizer):
    async def one(api, n: int) -> tuple[int, str, str | None]:
        stream = await api.chat.completions.create(model="m", messages=user(f"This is request {n}."), stream=True)
        parts, finish = [], None
        async for chunk in stream:
            for choice in chunk.choices:
                parts.append(choice.delta.content or "")
                finish = choice.finish_reason or finish
        return n, "".join(parts), finish

    async def all_of_them(url: str) -> list:
        async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60) as api:
            return await asyncio.gather(*(one(api, n) for n in range(50)))

    with smol_server(smol_spec, smol_tokenizer, delay=0.001) as (url, engine):
        t0 = time.monotonic()
        results = asyncio.run(all_of_them(url))
        wall = time.monotonic() - t0
        _, health = raw_request(url, "GET", "/health")
    for n, content, finish in results:
        assert content == f"Answer {n}: " + " ".join(f"w{n}x{k}" for k in range(8)) and finish == "stop"
    assert engine.max_active == 1 and len(engine.generations) == 50  # one at a time, every request ran
    assert health["completed"] == 50 and health["queued"] == 0 and not health["busy"]
    assert wall < 30, f"50 streams took {wall:.1f}s"


def open_stream(url: str, messages: list, **fields: Any) -> tuple[http.client.HTTPConnection, Any]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("POST", "/v1/chat/completions", body=json.dumps({"messages": messages, "stream": True, **fields}),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200
    return conn, resp


def hang_up(conn: http.client.HTTPConnection) -> None:
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_client_that_hangs_up_cancels_its_generation(smol_spec, smol_tokenizer):
    with smol_server(smol_spec, smol_tokenizer, delay=0.002) as (url, engine):
        conn, resp = open_stream(url, user("Tell me something long."))
        for _ in range(5):  # role chunk + a few words
            assert resp.readline().startswith(b"data: ")
            resp.readline()
        hang_up(conn)
        wait_for(lambda: raw_request(url, "GET", "/health")[1]["cancelled"] == 1)
        long_run = engine.generations[0]
        assert long_run["planned"] > 3000 and long_run["produced"] < 500  # stopped early (3000 steps = 6 s)
        t0 = time.monotonic()
        reply = client(url).chat.completions.create(model="m", messages=user("Hi"))
        assert reply.choices[0].message.content == "The capital of France is Paris."
        assert time.monotonic() - t0 < 2
        stopped_at = long_run["produced"]
        time.sleep(0.1)
        assert long_run["produced"] == stopped_at  # and it stays stopped


def test_a_client_that_leaves_while_queued_is_skipped(smol_spec, smol_tokenizer):
    with smol_server(smol_spec, smol_tokenizer, delay=0.002) as (url, engine):
        conn, resp = open_stream(url, user("Tell me something long."))  # occupies the engine for ~6 s
        wait_for(lambda: len(engine.generations) == 1)
        with pytest.raises(TimeoutError):  # a non-streaming request that gives up while waiting
            raw_request(url, "POST", "/v1/chat/completions", {"messages": user("Hi")}, timeout=0.5)
        time.sleep(2 * 0.2 + 0.2)  # the server notices within its disconnect poll
        hang_up(conn)
        wait_for(lambda: raw_request(url, "GET", "/health")[1]["skipped"] == 1)
        _, health = raw_request(url, "GET", "/health")
        assert health["cancelled"] == 1 and health["started"] == 1 and len(engine.generations) == 1


def test_a_slow_reader_does_not_hold_up_the_others(smol_spec, smol_tokenizer):
    with smol_server(smol_spec, smol_tokenizer, delay=0.001) as (url, engine):
        conn, resp = open_stream(url, user("This is request 7."))  # read nothing for now
        t0 = time.monotonic()
        reply = client(url).chat.completions.create(model="m", messages=user("Hi"))
        assert reply.choices[0].message.content == "The capital of France is Paris." and time.monotonic() - t0 < 2
        body = resp.read().decode()  # the slow reader still gets its whole, unmixed answer
        conn.close()
    deltas = [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: {")]
    text = "".join(d["choices"][0]["delta"].get("content") or "" for d in deltas if d["choices"])
    assert text == "Answer 7: " + " ".join(f"w7x{k}" for k in range(8)) and body.rstrip().endswith("data: [DONE]")


# ------------------------------------------------------------------------------------------------ CLI
def test_importing_turnspec_and_its_cli_does_not_load_the_server():
    import subprocess
    import sys

    code = ("import sys, turnspec, turnspec.cli; "
            "print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette', 'turnspec.server.app') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_serve_without_fastapi_is_one_line_naming_the_extra(monkeypatch):
    from typer.testing import CliRunner

    from turnspec.cli import app

    monkeypatch.setitem(__import__("sys").modules, "fastapi", None)
    result = CliRunner().invoke(app, ["serve", "--port", "0", "--json"])
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("turnspec: error: turnspec serve needs fastapi: pip install 'turnspec[serve]'")
    assert json.loads(result.stdout)["error"]["code"] == "error"


def test_a_busy_port_is_one_line():
    from turnspec.cli.serve_cmd import _listen
    from turnspec.errors import TurnspecError

    first = _listen("127.0.0.1", 0)
    try:
        with pytest.raises(TurnspecError, match=r"cannot listen on 127\.0\.0\.1:\d+ \(.*\)"):
            _listen("127.0.0.1", first.getsockname()[1])
    finally:
        first.close()
