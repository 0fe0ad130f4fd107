"""`turnspec serve` against the real SmolLM2-135M-Instruct GGUF (llama.cpp, greedy), through the official client.

As in test_run.py, prompts carry the system message "You are a helpful assistant." (with the template's default
system prompt the Q4_1 model answers in French).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

pytestmark = pytest.mark.slow
pytest.importorskip("llama_cpp", reason="the llamacpp engine needs llama-cpp-python: pip install 'turnspec[llamacpp]'")
pytest.importorskip("fastapi", reason="the server needs fastapi: pip install 'turnspec[serve]'")
openai = pytest.importorskip("openai", reason="these tests use the official client: pip install openai")

from helpers.servers import real_model_server  # noqa: E402
from test_server import client, hang_up, open_stream, raw_request, user, wait_for  # noqa: E402

CONTROL = re.compile(r"<\|im_start\|>|<\|im_end\|>|<\|endoftext\|>|<repo_name>|<file_sep>")
FRANCE = user("What is the capital of France?")


@pytest.fixture(scope="module")
def real(smollm2_gguf):
    with real_model_server(smollm2_gguf) as (url, spec, _engine):
        yield url, spec


@pytest.fixture(scope="module")
def whole(real):
    url, _ = real
    return client(url).chat.completions.create(model="m", messages=FRANCE, temperature=0)


def test_completion(whole, real):
    _, spec = real
    choice = whole.choices[0]
    assert "Paris" in choice.message.content and not CONTROL.search(choice.message.content)
    assert choice.finish_reason == "stop" and choice.message.role == "assistant" and not choice.message.tool_calls
    assert whole.model == spec.name


def test_streamed_reassembles_to_the_whole_answer(whole, real):
    url, _ = real
    stream = client(url).chat.completions.create(model="m", messages=FRANCE, temperature=0, stream=True,
                                                 stream_options={"include_usage": True})
    parts, finish, usage, chunks = [], None, None, 0
    for chunk in stream:
        chunks += 1
        usage = chunk.usage or usage
        for choice in chunk.choices:
            parts.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert "".join(parts) == whole.choices[0].message.content
    assert finish == whole.choices[0].finish_reason == "stop"
    assert usage.model_dump(exclude={"prompt_tokens_details"}) == whole.usage.model_dump(exclude={"prompt_tokens_details"})
    # the same prompt again: the KV cache holds all of it (one id is evaluated again for the first logits)
    assert usage.prompt_tokens_details.cached_tokens == usage.prompt_tokens - 1
    assert chunks > 5  # token by token, not one blob


def test_usage_counts(whole, real):
    """prompt_tokens is the encoded prompt; completion_tokens every generated id (the <|im_end|> included), as
    `turnspec run` counts them for the same greedy turn."""
    _, spec = real
    enc = spec.encode(FRANCE, add_generation_prompt=True, assistant_mask=False)
    assert whole.usage.prompt_tokens == len(enc.ids)
    answer = whole.choices[0].message.content
    assert whole.usage.completion_tokens == len(spec.vocab.encode(answer)) + 1
    run = subprocess.run([sys.executable, "-m", "turnspec.cli", "run", "-p", "What is the capital of France?",
                          "--system", "You are a helpful assistant.", "--json"],
                         capture_output=True, text=True, timeout=180)
    by_run = json.loads(run.stdout)["data"]
    assert by_run["content"] == answer
    counts = ("prompt_tokens", "completion_tokens", "total_tokens")
    assert {k: by_run["usage"][k] for k in counts} == whole.usage.model_dump(include=set(counts))


def test_models_lists_the_model(real):
    url, spec = real
    assert [m.id for m in client(url).models.list()] == [spec.name] == ["HuggingFaceTB/SmolLM2-135M-Instruct.Q4_1"]


def test_max_tokens_and_stop(real):
    url, _ = real
    api = client(url)
    short = api.chat.completions.create(model="m", messages=user("Tell me a long story."), temperature=0, max_tokens=5)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 5
    cut = api.chat.completions.create(model="m", messages=FRANCE, temperature=0, stop=" Paris")
    assert cut.choices[0].message.content == "The capital of France is" and cut.choices[0].finish_reason == "stop"


def test_seeded_sampling_is_reproducible(real):
    url, _ = real
    api = client(url)
    ask = lambda: api.chat.completions.create(model="m", messages=user("Name a color."), temperature=1.0, seed=7,
                                              max_tokens=12).choices[0].message.content
    assert ask() == ask()


def test_fifty_concurrent_streams_on_the_real_model(whole, real):
    url, _ = real
    expected = whole.choices[0].message.content

    async def one(api) -> str:
        stream = await api.chat.completions.create(model="m", messages=FRANCE, temperature=0, stream=True)
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    async def all_of_them() -> list[str]:
        async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120) as api:
            return await asyncio.gather(*(one(api) for _ in range(50)))

    t0 = time.monotonic()
    answers = asyncio.run(all_of_them())
    wall = time.monotonic() - t0
    assert answers == [expected] * 50
    assert wall < 120, f"50 streams took {wall:.1f}s"
    print(f"\n50 concurrent streamed requests on SmolLM2: {wall:.2f}s")


def test_disconnect_frees_the_engine(real):
    url, _ = real
    before = raw_request(url, "GET", "/health")[1]
    conn, resp = open_stream(url, user("Write a very long story about a dragon."), temperature=0, max_tokens=1000)
    for _ in range(4):
        assert resp.readline().startswith(b"data: ")
        resp.readline()
    hang_up(conn)
    wait_for(lambda: raw_request(url, "GET", "/health")[1]["cancelled"] == before["cancelled"] + 1, timeout=10)
    after = raw_request(url, "GET", "/health")[1]
    assert after["tokens"] - before["tokens"] < 300  # stopped long before max_tokens=1000
    t0 = time.monotonic()
    reply = client(url).chat.completions.create(model="m", messages=FRANCE, temperature=0)
    assert "Paris" in reply.choices[0].message.content and time.monotonic() - t0 < 5


def test_turnspec_serve_command_end_to_end(smollm2_gguf):
    """The real CLI in a subprocess: --port 0, an API key from the environment, then Ctrl-C."""
    env = {**os.environ, "TURNSPEC_API_KEY": "k-123", "NO_COLOR": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "turnspec.cli", "serve", "--port", "0", "--log-level", "warning"],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stderr.readline()
        m = re.search(r"serving (\S+) \(llamacpp, context \d+\) on (http://127\.0\.0\.1:\d+)/v1", line)
        assert m, line
        url = m.group(2)
        wait_for(lambda: _health(url), timeout=30)
        reply = client(url, api_key="k-123").chat.completions.create(model=m.group(1), messages=FRANCE, temperature=0)
        assert "Paris" in reply.choices[0].message.content
        with pytest.raises(openai.AuthenticationError):
            client(url, api_key="nope").models.list()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(15)
        finally:
            if proc.poll() is None:
                proc.kill()
        err = proc.stderr.read()
    assert rc in (0, 130) and "Traceback" not in err, err


def _health(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False
