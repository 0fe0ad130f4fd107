"""`POST /v1/responses` with the official openai client against the real server code (scripted engines from
test_server.py: the SmolLM2 template and tokenizer, Qwen2.5's template for Hermes tool calls, gpt-oss's recorded
reasoning). The real default model: test_server_real.py-style tests at the end, marked slow.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the server needs fastapi: pip install 'turnspec[serve]'")
openai = pytest.importorskip("openai", reason="these tests use the official client: pip install openai")

import turnspec  # noqa: E402
from turnspec.server import create_app  # noqa: E402

from helpers.paths import CORPUS, need  # noqa: E402
from test_server import (  # noqa: E402,F401  (fixtures)
    CONTROL, TOOL_OUTPUT, ScriptedEngine, assert_error, client, gpt_oss, harmony_tokenizer, raw_request, recorded_parts,
    recording, running, smol, smol_server, smol_spec, smol_tokenizer,
)

WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def last_user(prompt: str) -> str:
    return prompt.rsplit("<|im_start|>user\n", 1)[-1]


def unparsed(data: Any) -> Any:
    """A dumped response without the `parsed` fields the client's stream helper adds."""
    if isinstance(data, dict):
        return {k: unparsed(v) for k, v in data.items() if k != "parsed"}
    return [unparsed(v) for v in data] if isinstance(data, list) else data


# ------------------------------------------------------------------------------------------------ basics
def test_create_returns_a_message_with_output_text_and_usage(smol):
    url, engine = smol
    resp = client(url).responses.create(model="m", input="What is the capital of France?",
                                        instructions="Answer briefly.")
    assert resp.object == "response" and resp.id.startswith("resp_") and resp.status == "completed"
    assert resp.output_text == "The capital of France is Paris."
    [message] = resp.output
    assert message.type == "message" and message.role == "assistant" and message.status == "completed"
    assert message.content[0].type == "output_text"
    prompt = engine.generations[0]["prompt"]
    assert "<|im_start|>system\nAnswer briefly.<|im_end|>" in prompt
    assert last_user(prompt).startswith("What is the capital of France?<|im_end|>\n<|im_start|>assistant\n")
    assert resp.usage.input_tokens == len(engine.generations[0]["prompt_ids"])
    assert resp.usage.output_tokens == engine.generations[0]["planned"]
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens
    assert resp.instructions == "Answer briefly."


def test_options_reach_the_engine(smol):
    url, engine = smol
    client(url).responses.create(model="m", input="hi", temperature=0.3, top_p=0.5, max_output_tokens=7)
    gen = engine.generations[0]
    assert (gen["temperature"], gen["top_p"], gen["max_tokens"]) == (0.3, 0.5, 7)


def test_max_output_tokens_gives_an_incomplete_response(smol):
    url, _ = smol
    resp = client(url).responses.create(model="m", input="hi", max_output_tokens=3)
    assert resp.status == "incomplete" and resp.incomplete_details.reason == "max_output_tokens"
    assert resp.output[0].status == "incomplete" and resp.usage.output_tokens == 3


def test_input_items_become_the_conversation(smol):
    url, engine = smol
    client(url).responses.create(model="m", input=[
        {"role": "developer", "content": "Be terse."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "first"},
                                                        {"type": "input_text", "text": "question"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "An answer."}]},
        {"role": "user", "content": "second"}])
    prompt = engine.generations[0]["prompt"]
    assert "<|im_start|>system\nBe terse.<|im_end|>" in prompt  # SmolLM2's template has no developer role
    assert "<|im_start|>user\nfirst\nquestion<|im_end|>\n<|im_start|>assistant\nAn answer.<|im_end|>" in prompt
    assert last_user(prompt).startswith("second<|im_end|>")


def test_stream_events_rebuild_the_response(smol):
    url, _ = smol
    api = client(url)
    with api.responses.stream(model="m", input="What is the capital of France?") as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    for kind in ("response.output_item.added", "response.content_part.added", "response.output_text.delta",
                 "response.output_text.done", "response.content_part.done", "response.output_item.done"):
        assert kind in kinds, kind
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == final.output_text == "The capital of France is Paris."
    stored = api.responses.retrieve(final.id)
    assert unparsed(stored.model_dump()) == unparsed(final.model_dump())


def test_streamed_equals_whole_with_reasoning(gpt_oss, recording):
    url, _, _ = gpt_oss
    api = client(url)
    whole = api.responses.create(model="openai/gpt-oss-20b", input="What is a Chat Template?",
                                 reasoning={"effort": "high"})
    reasoning, content = recorded_parts(recording)
    assert [i.type for i in whole.output] == ["reasoning", "message"]
    assert whole.output[0].content[0].text == reasoning and whole.output_text == content
    assert not CONTROL.search(content)
    with api.responses.stream(model="openai/gpt-oss-20b", input="What is a Chat Template?") as stream:
        events = list(stream)
        streamed = stream.get_final_response()
    assert "".join(e.delta for e in events if e.type == "response.reasoning_text.delta") == reasoning
    assert [i.type for i in streamed.output] == ["reasoning", "message"]
    assert streamed.output[0].content[0].text == reasoning and streamed.output_text == content


def test_reasoning_effort_reaches_the_template(gpt_oss):
    url, engine, _ = gpt_oss
    client(url).responses.create(model="openai/gpt-oss-20b", input="hi", reasoning={"effort": "low"})
    assert "Reasoning: low" in engine.generations[0]["prompt"]


# ------------------------------------------------------------------------------------------------ tools
@pytest.fixture
def qwen_calls(smol_tokenizer):
    """Qwen2.5's template; the model calls get_weather until a tool result is in the prompt, then answers."""
    template = need(CORPUS / "templates" / "Qwen-Qwen2.5-7B-Instruct.jinja").read_text(encoding="utf-8")
    spec = turnspec.from_template(template, name="qwen-template", tokenizer=smol_tokenizer,
                                  special_tokens={"eos_token": "<|im_end|>"})

    def script(prompt: str) -> str:
        if "<tool_response>" in prompt.rsplit("<|im_start|>user", 1)[-1]:
            return "It is sunny in Paris.<|im_end|>"
        return TOOL_OUTPUT

    engine = ScriptedEngine(smol_tokenizer, script)
    with running(create_app(spec, engine)) as url:
        yield url, engine


def test_function_call_round_trip_with_function_call_output(qwen_calls):
    url, engine = qwen_calls
    api = client(url)
    first = api.responses.create(model="m", input="Weather in Paris?", tools=[WEATHER])
    assert [i.type for i in first.output] == ["message", "function_call"]
    assert first.output[0].content[0].text == "Let me check."
    call = first.output[1]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"} and call.call_id
    second = api.responses.create(model="m", tools=[WEATHER], input=[
        {"role": "user", "content": "Weather in Paris?"},
        *[item.model_dump(exclude_none=True) for item in first.output],
        {"type": "function_call_output", "call_id": call.call_id, "output": '{"sky": "sunny"}'}])
    assert second.output_text == "It is sunny in Paris."
    prompt = engine.generations[1]["prompt"]
    # the server kept the conversation's ids (server/sessions.py): the call is in the prompt as the model wrote it
    assert ('Let me check.<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
            in prompt)
    assert '<tool_response>\n{"sky": "sunny"}\n</tool_response>' in prompt


def test_previous_response_id_continues_the_conversation(qwen_calls):
    url, engine = qwen_calls
    api = client(url)
    first = api.responses.create(model="m", input="Weather in Paris?", tools=[WEATHER], instructions="Be kind.")
    call = first.output[1]
    second = api.responses.create(model="m", tools=[WEATHER], previous_response_id=first.id, input=[
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}])
    assert second.output_text == "It is sunny in Paris." and second.previous_response_id == first.id
    again = engine.generations[1]["prompt"]
    # the first turn (question, call) is in the prompt; instructions do not carry over (as OpenAI's API)
    assert "Weather in Paris?" in again and '"arguments": {"city": "Paris"}' in again and "Be kind." not in again
    third = api.responses.create(model="m", previous_response_id=second.id, input="Thanks!")
    assert "It is sunny in Paris.<|im_end|>" in engine.generations[2]["prompt"]
    assert last_user(engine.generations[2]["prompt"]).startswith("Thanks!")
    assert third.status == "completed"


def test_function_call_streamed(qwen_calls):
    url, _ = qwen_calls
    with client(url).responses.stream(model="m", input="Weather in Paris?", tools=[WEATHER]) as stream:
        events = list(stream)
        final = stream.get_final_response()
    args = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert len(args) == 1 and json.loads(args[0].arguments) == {"city": "Paris"}
    assert "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta") == args[0].arguments
    assert [i.type for i in final.output] == ["message", "function_call"]


def test_tool_choice_none_returns_the_call_as_text(qwen_calls):
    url, engine = qwen_calls
    resp = client(url).responses.create(model="m", input="Weather?", tools=[WEATHER], tool_choice="none")
    assert [i.type for i in resp.output] == ["message"]  # the model's call, as text (as Chat Completions does)
    assert resp.output_text == 'Let me check.{"name": "get_weather", "arguments": {"city": "Paris"}}'
    assert "get_weather" not in engine.generations[0]["prompt"]


def test_a_forced_function_must_be_one_of_the_tools(qwen_calls):
    url, _ = qwen_calls
    with pytest.raises(openai.BadRequestError) as err:
        client(url).responses.create(model="m", input="Weather?", tools=[WEATHER],
                                     tool_choice={"type": "function", "name": "nope"})
    assert "nope" in err.value.body["message"] and err.value.body["param"] == "tool_choice"


# ------------------------------------------------------------------------------------------------ store
def test_the_store_is_bounded_lru(smol_spec, smol_tokenizer):
    with smol_server(smol_spec, smol_tokenizer, responses_store_size=2) as (url, _):
        api = client(url)
        a, b = (api.responses.create(model="m", input=f"request {n}") for n in (1, 2))
        api.responses.retrieve(a.id)  # a is now the most recent: b goes first
        c = api.responses.create(model="m", input="request 3")
        assert api.responses.retrieve(a.id).id == a.id and api.responses.retrieve(c.id).id == c.id
        with pytest.raises(openai.NotFoundError) as err:
            api.responses.retrieve(b.id)
        assert "older than the last 2" in err.value.body["message"]


def test_store_false_is_not_kept_and_delete_forgets(smol):
    url, _ = smol
    api = client(url)
    unstored = api.responses.create(model="m", input="hi", store=False)
    with pytest.raises(openai.NotFoundError):
        api.responses.retrieve(unstored.id)
    with pytest.raises(openai.BadRequestError) as err:
        api.responses.create(model="m", input="again", previous_response_id=unstored.id)
    assert err.value.body["param"] == "previous_response_id"
    kept = api.responses.create(model="m", input="hi")
    api.responses.delete(kept.id)
    with pytest.raises(openai.NotFoundError):
        api.responses.retrieve(kept.id)


# ------------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("body, words, param", [
    (b"{not json", ["not valid JSON"], None),
    ([1, 2], ["JSON object"], None),
    ({"model": "m"}, ["input", "Field required"], "input"),
    ({"input": 5}, ["input"], "input"),
    ({"input": []}, ["at least one item"], "input"),
    ({"input": "hi", "max_output_tokens": 0}, ["max_output_tokens"], "max_output_tokens"),
    ({"input": "hi", "temperature": "hot"}, ["temperature"], "temperature"),
    ({"input": [{"type": "message", "role": "wizard", "content": "x"}]}, ["wizard"], "input[0].role"),
    ({"input": [{"type": "message", "role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
     ["input_image", "not supported"], "input[0].content[0].type"),
    ({"input": [{"type": "item_reference", "id": "x"}]}, ["item_reference"], "input[0].type"),
    ({"input": [{"type": "function_call_output", "output": "x"}]}, ["call_id"], "input[0].call_id"),
    ({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {"a": 1}}]},
     ["must be a string"], "input[0].arguments"),
    ({"input": "hi", "tools": [{"type": "web_search"}]}, ["web_search", "only 'function'"], "tools[0].type"),
    ({"input": "hi", "tools": [{"type": "function", "parameters": {}}]}, ["tools[0].name"], "tools[0].name"),
    ({"input": "hi", "tools": [WEATHER, WEATHER]}, ["tools[1].name", "declared twice"], "tools[1].name"),
    ({"input": "hi", "tool_choice": {"type": "allowed_tools"}}, ["tool_choice"], "tool_choice"),
    ({"input": "hi", "text": {"format": {"type": "xml"}}}, ["text.format.type"], "text.format.type"),
    ({"input": "hi", "text": {"format": {"type": "json_schema", "name": "x",
                                         "schema": {"type": "object", "properties": {"a": {"$ref": "#/nowhere"}}}}}},
     ["text.format"], None),
    ({"input": "hi", "background": True}, ["background"], "background"),
    ({"input": "hi", "previous_response_id": "resp_nope"}, ["resp_nope"], "previous_response_id"),
])
def test_bad_input_is_a_400_in_openais_shape(smol, body, words, param):
    url, _ = smol
    status, reply = raw_request(url, "POST", "/v1/responses", body)
    err = assert_error(status, reply, 400, *words, param=param if param is not None else "")
    assert "Traceback" not in err["message"] and "messages" not in err["message"]
    status, _ = raw_request(url, "POST", "/v1/responses", {"input": "request 9"})
    assert status == 200  # the server keeps serving


def test_unknown_model_and_unknown_id_are_404s(smol_spec, smol_tokenizer, smollm2_dir):
    from turnspec.server.models import ModelManager, ServedModel
    from turnspec.server.protocol import ServeDefaults

    engine = ScriptedEngine(smol_tokenizer, lambda prompt: "Hi.<|im_end|>")
    served = [ServedModel(name, smol_spec, "scripted", defaults=ServeDefaults(), context_length=4096)
              for name in ("a", "b")]
    models = ModelManager(served, loader=lambda m: engine)
    with running(create_app(models=models)) as url:
        status, reply = raw_request(url, "POST", "/v1/responses", {"model": "c", "input": "hi"})
        assert status == 404 and reply["error"]["code"] == "model_not_found"
        status, reply = raw_request(url, "GET", "/v1/responses/resp_unknown")
        assert status == 404 and "resp_unknown" in reply["error"]["message"]
        assert client(url).responses.create(model="a", input="hi").output_text == "Hi."


def test_an_engine_failure_streams_an_error_event_and_response_failed(smol):
    url, _ = smol
    with client(url).responses.stream(model="m", input="EXPLODE") as stream:
        events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[-2:] == ["error", "response.failed"]
    assert "exploded" in events[-2].message and events[-1].response.status == "failed"
    status, reply = raw_request(url, "POST", "/v1/responses", {"input": "EXPLODE"})
    assert status == 500 and "exploded" in reply["error"]["message"] and "Traceback" not in reply["error"]["message"]


def test_api_key_is_required_on_responses(smol_spec, smol_tokenizer):
    with smol_server(smol_spec, smol_tokenizer, api_key="k") as (url, _):
        status, reply = raw_request(url, "POST", "/v1/responses", {"input": "hi"})
        assert status == 401 and reply["error"]["code"] == "invalid_api_key"
        assert client(url, api_key="k").responses.create(model="m", input="hi").status == "completed"


# ------------------------------------------------------------------------------------------------ token ids, logprobs
def test_return_token_ids_gives_the_generated_and_prompt_ids(smol, smol_tokenizer):
    url, engine = smol
    api = client(url)
    reply = api.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}],
                                        extra_body={"return_token_ids": True})
    planned = smol_tokenizer.encode("The capital of France is Paris.<|im_end|>", add_special_tokens=False).ids
    gen = engine.generations[0]
    choice = reply.choices[0].model_dump()
    assert choice["token_ids"] == planned and reply.model_dump()["prompt_token_ids"] == gen["prompt_ids"]
    assert choice["logprobs"] is None  # ids were asked for, not logprobs
    stream = api.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=True,
                                         extra_body={"return_token_ids": True})
    chunks = [c.model_dump() for c in stream]
    streamed = [t for c in chunks for ch in c["choices"] for t in ch.get("token_ids") or []]
    assert streamed == planned and chunks[0]["prompt_token_ids"] == gen["prompt_ids"]
    text = api.completions.create(model="m", prompt="The capital", max_tokens=4,
                                  extra_body={"return_token_ids": True}).model_dump()
    assert text["choices"][0]["token_ids"] == planned[:4] and text["prompt_token_ids"]
    chunks = [c.model_dump() for c in api.completions.create(model="m", prompt="The capital", max_tokens=4, stream=True,
                                                              extra_body={"return_token_ids": True})]
    assert [t for c in chunks for ch in c["choices"] for t in ch.get("token_ids") or []] == planned[:4]
    assert chunks[0]["prompt_token_ids"] == text["prompt_token_ids"]


def test_logprobs_on_an_engine_without_them_is_a_400_naming_the_engine(smol):
    url, engine = smol
    api = client(url)
    for call in (lambda: api.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}],
                                                     logprobs=True, top_logprobs=2),
                 lambda: api.completions.create(model="m", prompt="hi", logprobs=1),
                 lambda: api.responses.create(model="m", input="hi", top_logprobs=2)):
        with pytest.raises(openai.BadRequestError) as err:
            call()
        assert "the scripted engine cannot return logprobs" in err.value.body["message"]
    assert not engine.generations
    status, reply = raw_request(url, "POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}],
                                                                      "top_logprobs": 3})
    assert_error(status, reply, 400, "needs logprobs: true", param="top_logprobs")


def test_output_items_sent_back_rebuild_one_assistant_turn():
    """reasoning + message + function_call items (what this server returns) are one assistant message again."""
    from turnspec.server.responses_input import input_messages

    call = {"type": "function_call", "call_id": "abc123XYZ", "name": "get_weather", "arguments": '{"city": "Paris"}'}
    messages = input_messages([
        {"role": "user", "content": "Weather?"},
        {"type": "reasoning", "id": "rs_1", "summary": [], "content": [{"type": "reasoning_text", "text": "Think."}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
        call,
        {"type": "function_call_output", "call_id": "abc123XYZ", "output": "sunny"},
        {"type": "reasoning", "id": "rs_2", "summary": [], "encrypted_content": "Sunny, say so."},
        {"type": "message", "role": "assistant", "content": "It is sunny."}])
    assert messages == [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "Checking.", "reasoning_content": "Think.", "tool_calls": [
            {"id": "abc123XYZ", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "abc123XYZ", "content": "sunny", "name": "get_weather"},
        {"role": "assistant", "content": "It is sunny.", "reasoning_content": "Sunny, say so."}]


def test_concurrent_responses_and_chat_requests_are_not_mixed_up(smol_spec, smol_tokenizer):
    """30 requests at once, streamed and whole, over Responses and Chat Completions: each gets its own answer."""
    import asyncio

    def expected(n: int) -> str:
        return f"Answer {n}: " + " ".join(f"w{n}x{k}" for k in range(8))

    async def one(api: Any, n: int) -> tuple[int, str]:
        text = f"This is request {n}."
        if n % 3 == 0:
            return n, (await api.responses.create(model="m", input=text)).output_text
        if n % 3 == 1:
            async with api.responses.stream(model="m", input=text) as stream:
                return n, (await stream.get_final_response()).output_text
        reply = await api.chat.completions.create(model="m", messages=[{"role": "user", "content": text}])
        return n, reply.choices[0].message.content

    async def all_of_them(url: str) -> list:
        async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60) as api:
            return await asyncio.gather(*(one(api, n) for n in range(30)))

    with smol_server(smol_spec, smol_tokenizer, delay=0.001) as (url, engine):
        results = asyncio.run(all_of_them(url))
    assert sorted(results) == [(n, expected(n)) for n in range(30)] and len(engine.generations) == 30


def test_a_responses_stream_client_that_hangs_up_cancels_its_generation(smol_spec, smol_tokenizer):
    import http.client
    import socket
    import time

    with smol_server(smol_spec, smol_tokenizer, delay=0.002) as (url, engine):
        host, port = url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request("POST", "/v1/responses", body=json.dumps({"input": "Tell me something long.", "stream": True}),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200
        lines = [resp.readline() for _ in range(18)]  # created, in_progress, item/part added, a few deltas
        assert lines[0] == b"event: response.created\n" and b"response.output_text.delta" in b"".join(lines)
        conn.sock.shutdown(socket.SHUT_RDWR)
        conn.close()
        deadline = time.monotonic() + 5
        while raw_request(url, "GET", "/health")[1]["cancelled"] != 1:
            assert time.monotonic() < deadline, "the generation was not cancelled"
            time.sleep(0.02)
        assert engine.generations[0]["planned"] > 3000 and engine.generations[0]["produced"] < 500
        assert client(url).responses.create(model="m", input="Hi").output_text == "The capital of France is Paris."
