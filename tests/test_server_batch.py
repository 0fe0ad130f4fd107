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




def test_a_batched_sequence_never_sees_another_ones_content(smollm2_gguf):
    """In the shared cache, a sequence's greedy tokens do not depend on what the sequence beside it says: A next to
    a cat story and A next to a dog story are the same 40 tokens. They start as A alone does; later they may part
    from it, because a batch's floating-point sums depend on its shape (as in llama-server and vLLM)."""
    from turnspec.engines.llamacpp import LlamaCppEngine

    spec = turnspec.load(smollm2_gguf)

    def ids(topic: str) -> list[int]:
        return spec.encode(user(f"Write a long story about {topic}."), add_generation_prompt=True,
                           assistant_mask=False).ids

    def decode(prompts: list[list[int]], parallel: int) -> list[list[int]]:
        engine = LlamaCppEngine(smollm2_gguf, parallel=parallel)
        batcher = engine.batcher
        seqs = [batcher.start(p, temperature=0.0, top_p=1.0, seed=None) for p in prompts]
        out: dict[int, list[int]] = {id(s): [] for s in seqs}
        while batcher.active:
            assert len(batcher.active) == len(prompts) or any(len(v) == 40 for v in out.values())
            for seq, token in batcher.step():
                out[id(seq)].append(token)
                if len(out[id(seq)]) == 40:
                    batcher.release(seq)
        engine.close()
        return [out[id(s)] for s in seqs]

    dragon = ids("a dragon")
    alone = decode([dragon], 1)[0]
    with_cat = decode([dragon, ids("a cat")], 2)
    with_dog = decode([dragon, ids("a dog")], 2)
    assert with_cat[0] == with_dog[0]
    assert with_cat[1] != with_dog[1]  # the neighbours did write different stories
    assert with_cat[0][:8] == alone[:8]


def test_sequences_at_full_context_share_the_cache_without_overflow(smollm2_gguf):
    """4 sequences each filling its whole context, round after round with slots reused: the shared cache
    (parallel x context cells) always has room, whatever the slots keep from earlier requests."""
    from turnspec.engines.llamacpp import LlamaCppEngine

    spec = turnspec.load(smollm2_gguf)
    engine = LlamaCppEngine(smollm2_gguf, parallel=4, n_ctx=96)
    batcher = engine.batcher
    try:
        for round_ in range(3):
            prompts = [spec.encode(user(f"Tell me about {topic} #{round_}" + " please" * (4 * i)),
                                   add_generation_prompt=True, assistant_mask=False).ids
                       for i, topic in enumerate(("rivers", "bread", "the moon", "bees"))]
            seqs = [batcher.start(p, temperature=0.8, top_p=0.95, seed=round_) for p in prompts]
            room = {id(s): engine.context_length - len(p) for s, p in zip(seqs, prompts)}
            while batcher.active:
                for seq, _ in batcher.step():
                    room[id(seq)] -= 1
                    if room[id(seq)] == 0:
                        batcher.release(seq)
            assert all(v == 0 for v in room.values())
    finally:
        engine.close()
