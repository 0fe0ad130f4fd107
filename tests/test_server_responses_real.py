"""`/v1/responses` and logprobs against the real SmolLM2-135M-Instruct GGUF (llama.cpp), through the official
openai client. Prompts carry "You are a helpful assistant." as instructions (see test_server_real.py).
"""

from __future__ import annotations

import json
import math

import pytest

pytestmark = pytest.mark.slow
pytest.importorskip("llama_cpp", reason="the llamacpp engine needs llama-cpp-python: pip install 'turnspec[llamacpp]'")
pytest.importorskip("fastapi", reason="the server needs fastapi: pip install 'turnspec[serve]'")
openai = pytest.importorskip("openai", reason="these tests use the official client: pip install openai")
jsonschema = pytest.importorskip("jsonschema", reason="answers are validated with jsonschema: pip install jsonschema")


from helpers.servers import real_model_server  # noqa: E402
from test_server import client, user  # noqa: E402

SYSTEM = "You are a helpful assistant."
CAPITAL = {"type": "object", "properties": {
    "country": {"type": "string", "maxLength": 40}, "capital": {"type": "string", "maxLength": 40},
    "population_millions": {"type": "integer"}, "coastal": {"type": "boolean"}},
    "required": ["country", "capital", "population_millions", "coastal"], "additionalProperties": False}


@pytest.fixture(scope="module", params=[1, 2], ids=["one-at-a-time", "batched"])
def real(request, smollm2_gguf):
    """The default model, decoding one sequence at a time and in the batch scheduler (both report logprobs)."""
    with real_model_server(smollm2_gguf, parallel=request.param) as served:
        yield served


def test_responses_create_and_stream_agree(real):
    url, _, _ = real
    api = client(url, timeout=120)
    whole = api.responses.create(model="m", instructions=SYSTEM, input="What is the capital of France?",
                                 temperature=0)
    assert whole.status == "completed" and "Paris" in whole.output_text and "<|im_end|>" not in whole.output_text
    with api.responses.stream(model="m", instructions=SYSTEM, input="What is the capital of France?",
                              temperature=0) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert len(deltas) > 3 and "".join(deltas) == final.output_text == whole.output_text
    # the same counts; only the cached prompt tokens differ (the second request finds the first one's prompt in the KV
    # cache, and says so)
    counts = [u.model_dump(exclude={"input_tokens_details"}) for u in (final.usage, whole.usage)]
    assert counts[0] == counts[1]
    assert final.usage.input_tokens_details.cached_tokens <= final.usage.input_tokens


def test_previous_response_id_continues_the_conversation(real):
    url, spec, _ = real
    api = client(url, timeout=120)
    first = api.responses.create(model="m", instructions=SYSTEM, input="What is the capital of France?",
                                 temperature=0, max_output_tokens=40)
    second = api.responses.create(model="m", instructions=SYSTEM, previous_response_id=first.id,
                                  input="And of Germany?", temperature=0, max_output_tokens=40)
    # the second prompt is the first conversation, its answer, then the new question
    enc = spec.encode([*user("What is the capital of France?", SYSTEM),
                       {"role": "assistant", "content": first.output_text},
                       {"role": "user", "content": "And of Germany?"}], add_generation_prompt=True,
                      assistant_mask=False)
    assert second.usage.input_tokens == len(enc.ids) and second.output_text


@pytest.mark.parametrize("seed", range(10))
def test_text_format_json_schema_validates(real, seed):
    url, _, _ = real
    resp = client(url, timeout=120).responses.create(
        model="m", instructions=SYSTEM, input="Describe France as JSON.", temperature=1.0, max_output_tokens=160,
        extra_body={"seed": seed},
        text={"format": {"type": "json_schema", "name": "country", "schema": CAPITAL, "strict": True}})
    assert resp.status == "completed", resp
    jsonschema.validate(json.loads(resp.output_text), CAPITAL)


def test_chat_logprobs_are_the_models_distribution(real):
    """Greedy: each sampled token is its top alternative; logprobs are log-probabilities (<= 0, sum of p <= 1)."""
    url, _, engine = real
    # each request evaluates its whole prompt: logits after a cached prefix differ in the last digits (the quantized
    # kernels sum in another order for one token than for a batch), and this compares two runs exactly
    engine.reset()
    reply = client(url, timeout=120).chat.completions.create(
        model="m", messages=user("What is the capital of France?", SYSTEM), temperature=0, logprobs=True,
        top_logprobs=5, extra_body={"return_token_ids": True})
    choice = reply.choices[0]
    entries = choice.logprobs.content
    assert len(entries) == reply.usage.completion_tokens == len(choice.model_dump()["token_ids"])
    for entry in entries:
        assert len(entry.top_logprobs) == 5 and entry.logprob <= 0
        tops = [t.logprob for t in entry.top_logprobs]
        assert tops == sorted(tops, reverse=True) and sum(math.exp(t) for t in tops) <= 1 + 1e-6
        assert entry.top_logprobs[0].token == entry.token and entry.top_logprobs[0].logprob == entry.logprob
        assert bytes(entry.bytes).decode("utf-8", errors="replace") == entry.token
    text = "".join(e.token for e in entries)
    assert choice.message.content in text and text.endswith("<|im_end|>")  # every generated token, the stop too
    engine.reset()
    stream = client(url, timeout=120).chat.completions.create(
        model="m", messages=user("What is the capital of France?", SYSTEM), temperature=0, logprobs=True,
        top_logprobs=5, stream=True)
    streamed = [e for chunk in stream for c in chunk.choices if c.logprobs for e in c.logprobs.content]
    assert [e.model_dump() for e in streamed] == [e.model_dump() for e in entries]


def test_completions_and_responses_logprobs(real):
    url, _, _ = real
    api = client(url, timeout=120)
    text = api.completions.create(model="m", prompt="The capital of France is", max_tokens=5, temperature=0,
                                  logprobs=2)
    lp = text.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 5
    assert all(x <= 0 for x in lp.token_logprobs) and all(len(t) == 2 for t in lp.top_logprobs)
    assert lp.text_offset[0] == 0 and "".join(lp.tokens) == text.choices[0].text
    resp = api.responses.create(model="m", instructions=SYSTEM, input="What is the capital of France?",
                                temperature=0, top_logprobs=3, include=["message.output_text.logprobs"])
    part = resp.output[0].content[0]
    assert part.logprobs and all(len(e.top_logprobs) == 3 and e.logprob <= 0 for e in part.logprobs)
    assert part.text in "".join(e.token for e in part.logprobs)
