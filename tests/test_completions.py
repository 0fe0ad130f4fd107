"""`POST /v1/completions` through the official `openai` client: the real SmolLM2 GGUF on llama.cpp (greedy) for raw
prompts, token-id prompts, stops and budgets; fill-in-the-middle with the real StarCoder vocabulary from
../shared/corpus over a scripted engine (the layout of the prompt is what is checked there).
"""

from __future__ import annotations

import re

import pytest

pytest.importorskip("fastapi", reason="the server needs fastapi: pip install 'turnspec[serve]'")
openai = pytest.importorskip("openai", reason="these tests use the official client: pip install openai")

import turnspec  # noqa: E402
from turnspec.server import create_app  # noqa: E402

from helpers.paths import CORPUS, SMOLLM2_DIR, need  # noqa: E402
from helpers.servers import real_model_server  # noqa: E402
from test_server import ScriptedEngine, client, raw_request, running, user  # noqa: E402

CONTROL = re.compile(r"<\|im_start\|>|<\|im_end\|>|<\|endoftext\|>")
FRANCE = user("What is the capital of France?")


@pytest.fixture(scope="module")
def real(smollm2_gguf):
    with real_model_server(smollm2_gguf) as (url, spec, _engine):
        yield client(url), spec, url


@pytest.mark.slow
def test_a_raw_prompt_is_continued_and_stops_on_the_spec_s_stop_token(real):
    api, spec, _ = real
    prompt = spec.render(FRANCE, add_generation_prompt=True)
    reply = api.completions.create(model="m", prompt=prompt, max_tokens=40, temperature=0)
    chat = api.chat.completions.create(model="m", messages=FRANCE, temperature=0, max_tokens=40)
    choice = reply.choices[0]
    assert choice.text == chat.choices[0].message.content == "The capital of France is Paris."
    assert choice.finish_reason == "stop" and not CONTROL.search(choice.text)
    assert reply.object == "text_completion" and reply.model == spec.name
    enc = spec.encode(FRANCE, add_generation_prompt=True, assistant_mask=False)
    assert reply.usage.prompt_tokens == len(enc.ids) and reply.usage.completion_tokens == chat.usage.completion_tokens


@pytest.mark.slow
def test_streamed_reassembles_to_the_whole_answer(real):
    api, spec, _ = real
    prompt = spec.render(FRANCE, add_generation_prompt=True)
    whole = api.completions.create(model="m", prompt=prompt, max_tokens=40, temperature=0)
    parts, finish, usage, chunks = [], None, None, 0
    for chunk in api.completions.create(model="m", prompt=prompt, max_tokens=40, temperature=0, stream=True,
                                        stream_options={"include_usage": True}):
        chunks += 1
        usage = chunk.usage or usage
        for choice in chunk.choices:
            parts.append(choice.text)
            finish = choice.finish_reason or finish
    assert "".join(parts) == whole.choices[0].text and finish == "stop" and chunks > 5
    assert usage.model_dump() == whole.usage.model_dump()


@pytest.mark.slow
def test_token_ids_request_stops_and_budgets(real):
    api, spec, _ = real
    enc = spec.encode(FRANCE, add_generation_prompt=True, assistant_mask=False)
    by_ids = api.completions.create(model="m", prompt=enc.ids, max_tokens=40, temperature=0)
    assert by_ids.choices[0].text == "The capital of France is Paris."
    cut = api.completions.create(model="m", prompt=enc.text, temperature=0, max_tokens=40, stop=[" Paris", "zzz"])
    assert cut.choices[0].text == "The capital of France is" and cut.choices[0].finish_reason == "stop"
    short = api.completions.create(model="m", prompt="Once upon a time", temperature=0, max_tokens=5)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 5
    default = api.completions.create(model="m", prompt="Once upon a time", temperature=0)
    assert default.usage.completion_tokens == 16  # the OpenAI API's default max_tokens


@pytest.mark.slow
def test_bad_completion_requests_are_400s(real):
    api, spec, url = real
    with pytest.raises(openai.BadRequestError, match="no fill-in-the-middle tokens"):
        api.completions.create(model="m", prompt="def add(a, b):", suffix="\n")
    for body, words in (({"prompt": ["a", "b"]}, "one prompt per request"),
                        ({"prompt": "a", "n": 2}, "n: only 1"),
                        ({"prompt": [0, 10**9]}, "outside the vocabulary"),
                        ({"prompt": "a", "echo": True}, "echo"),
                        ({"prompt": "a", "stop": [""]}, "must not be empty"),
                        ({}, "prompt")):
        status, reply = raw_request(url, "POST", "/v1/completions", body)
        assert status == 400 and words in reply["error"]["message"], reply


# ------------------------------------------------------------------------------------------------- FIM
@pytest.fixture(scope="module")
def starcoder_vocab():
    from turnspec.gguf_tokenizer import tokenizer_from_gguf
    from turnspec.sources.gguf import read_gguf_metadata

    return tokenizer_from_gguf(read_gguf_metadata(need(CORPUS / "vocab" / "ggml-vocab-starcoder.gguf")))


@pytest.fixture
def starcoder_spec(starcoder_vocab):
    """A chat template over the StarCoder vocabulary (its FIM tokens are what matters here)."""
    template = need(SMOLLM2_DIR / "chat_template.jinja").read_text(encoding="utf-8")
    return turnspec.from_template(template, name="code/starcoder-vocab", tokenizer=starcoder_vocab,
                                  special_tokens={"eos_token": "<|endoftext|>"})


def test_fill_in_the_middle_uses_the_vocabulary_s_fim_tokens(starcoder_spec, starcoder_vocab):
    spec = starcoder_spec
    engine = ScriptedEngine(starcoder_vocab, lambda prompt: "    return a + b\n<file_sep>print('next file')")
    with running(create_app(spec, engine)) as url:
        api = client(url)
        (card,) = api.models.list().data
        assert card.model_extra["capabilities"]["fim"] is True and card.owned_by == "code"
        reply = api.completions.create(model="m", prompt="def add(a, b):\n", suffix="\nprint(add(1, 2))\n",
                                       max_tokens=50)
    vocab = spec.vocab
    ids = engine.generations[0]["prompt_ids"]
    assert ids == ([vocab.token_to_id("<fim_prefix>")] + vocab.encode("def add(a, b):\n") +
                   [vocab.token_to_id("<fim_suffix>")] + vocab.encode("\nprint(add(1, 2))\n") +
                   [vocab.token_to_id("<fim_middle>")])
    assert reply.choices[0].text == "    return a + b\n" and reply.choices[0].finish_reason == "stop"


def test_fim_tokens_spelled_in_the_prompt_stay_text(starcoder_spec, starcoder_vocab):
    """The layout is built from ids: a prefix that contains '<fim_suffix>' as text cannot move the hole."""
    spec = starcoder_spec
    engine = ScriptedEngine(starcoder_vocab, lambda prompt: "x<|endoftext|>")
    with running(create_app(spec, engine)) as url:
        client(url).completions.create(model="m", prompt="a = '<fim_suffix>'", suffix="b", max_tokens=5)
    ids = engine.generations[0]["prompt_ids"]
    assert ids.count(spec.vocab.token_to_id("<fim_suffix>")) == 1
