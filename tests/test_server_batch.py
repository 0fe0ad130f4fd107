"""Continuous batching on the real SmolLM2 GGUF: `turnspec serve` with the llama.cpp engine decoding 4 requests in
one batch, through the official client. Concurrent requests each get their own answer (greedy, as when they run
alone), a client that hangs up frees its slot at once, and 50 concurrent streams all complete.
"""

from __future__ import annotations

import threading

import pytest

pytestmark = pytest.mark.slow
pytest.importorskip("llama_cpp", reason="the llamacpp engine needs llama-cpp-python: pip install 'turnspec[llamacpp]'")
pytest.importorskip("fastapi", reason="the server needs fastapi: pip install 'turnspec[serve]'")
pytest.importorskip("openai", reason="these tests use the official client: pip install openai")

import turnspec  # noqa: E402
from turnspec.server import create_app  # noqa: E402

from test_server import client, hang_up, open_stream, raw_request, running, user, wait_for  # noqa: E402

PARALLEL = 4
# countries whose capital the 4-bit 135M model names under greedy decoding (checked one at a time)
CAPITALS = {"France": "Paris", "Germany": "Berlin", "Japan": "Tokyo", "the United Kingdom": "London",
            "Russia": "Moscow", "China": "Beijing", "Egypt": "Cairo", "Greece": "Athens"}


@pytest.fixture(scope="module")
def batched(smollm2_gguf):
    from turnspec.engines import load_engine

    spec = turnspec.load(smollm2_gguf)
    engine = load_engine("llamacpp", smollm2_gguf, parallel=PARALLEL)
    try:
        with running(create_app(spec, engine)) as url:
            yield url, engine
    finally:
        engine.close()


def health(url: str) -> dict:
    return raw_request(url, "GET", "/health")[1]


def ask(url: str, country: str, out: dict, **kw) -> None:
    reply = client(url, timeout=120).chat.completions.create(
        model="m", messages=user(f"What is the capital of {country}?"), temperature=0, max_tokens=40, **kw)
    out[country] = reply.choices[0].message.content


def test_concurrent_greedy_requests_each_get_their_own_answer(batched):
    url, engine = batched
    alone: dict[str, str] = {}
    for country in list(CAPITALS)[:2]:  # the reference: one request at a time
        ask(url, country, alone)
    together: dict[str, str] = {}
    threads = [threading.Thread(target=ask, args=(url, c, together)) for c in CAPITALS]
    before = engine.batcher.stats.max_active
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert set(together) == set(CAPITALS)
    for country, capital in CAPITALS.items():
        assert capital in together[country], (country, together[country])
        others = [c for k, c in CAPITALS.items() if k != country]
        assert not any(o in together[country] for o in others), (country, together[country])
    for country, answer in alone.items():
        assert together[country] == answer  # batching does not change a greedy answer
    assert engine.batcher.stats.max_active == PARALLEL >= before  # they really ran together
    status = health(url)
    assert status["parallel"] == PARALLEL and status["active"] == 0 and status["batch"]["busy_slots"] == 0


def test_a_client_that_hangs_up_frees_its_slot(batched):
    url, engine = batched
    before = health(url)
    conn, resp = open_stream(url, user("Write a very long story about a dragon."), max_tokens=1000, temperature=0)
    for _ in range(6):  # role chunk + a few tokens
        assert resp.readline().startswith(b"data: ")
        resp.readline()
    assert health(url)["batch"]["busy_slots"] == 1
    hang_up(conn)
    wait_for(lambda: health(url)["cancelled"] == before["cancelled"] + 1, timeout=30)
    after = health(url)
    assert after["batch"]["busy_slots"] == 0 and after["active"] == 0
    assert after["batch"]["released"] == after["batch"]["started"] == before["batch"]["started"] + 1
    assert after["tokens"] - before["tokens"] < 1000  # stopped early, not run to max_tokens


def test_fifty_concurrent_streams_all_complete(batched):
    url, _ = batched
    results: list[tuple[str, str | None]] = []
    lock = threading.Lock()

    def stream(i: int) -> None:
        parts, finish = [], None
        chunks = client(url, timeout=300).chat.completions.create(
            model="m", messages=user(f"Count from {i} to {i + 3}."), max_tokens=24, temperature=0.7, seed=i,
            stream=True)
        for chunk in chunks:
            for choice in chunk.choices:
                parts.append(choice.delta.content or "")
                finish = choice.finish_reason or finish
        with lock:
            results.append(("".join(parts), finish))

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert len(results) == 50
    assert all(finish in ("stop", "length") for _, finish in results), results
    assert all(text.strip() for text, _ in results)
    status = health(url)
    assert status["active"] == 0 and status["batch"]["busy_slots"] == 0 and status["failed"] == 0
