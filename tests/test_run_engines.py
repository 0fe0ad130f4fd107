"""`turnspec run` end to end on the MLX (CPU) and transformers engines: the llama.cpp proofs, repeated.

The model is the same SmolLM2-135M-Instruct, as an HF folder dequantized once from the shipped GGUF (conftest's
`smollm2_hf`); turnspec reads its template and tokenizer from that folder. Greedy decoding throughout.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from test_run import CONTROL, SYSTEM, turnspec_cmd

pytestmark = pytest.mark.slow

MODULES = {"mlx": "mlx_lm", "transformers": "torch"}


@pytest.fixture(scope="module", params=["mlx", "transformers"])
def engine_name(request) -> str:
    if importlib.util.find_spec(MODULES[request.param]) is None:
        pytest.skip(f"the {request.param} engine is not installed: pip install -e '.[{request.param}]'")
    return request.param


def test_capital_answer_stops_on_im_end_with_the_system_prompt_replaced(engine_name, smollm2_hf):
    proc = turnspec_cmd("run", str(smollm2_hf), "--engine", engine_name, "-p", "What is the capital of France?",
                        "--system", SYSTEM, "--json", "--show-prompt", "--max-tokens", "40", timeout=600)
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)["data"]
    assert "Paris" in answer["content"] and not CONTROL.search(answer["content"])
    assert answer["finish_reason"] == "stop" and answer["stopped_by"] == "<|im_end|>"
    assert proc.stderr.startswith(f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n")
    assert "SmolLM" not in proc.stderr


def test_max_tokens_gives_length(engine_name, smollm2_hf):
    proc = turnspec_cmd("run", str(smollm2_hf), "--engine", engine_name, "-p", "Tell me a long story.",
                        "--max-tokens", "5", "--json", timeout=600)
    answer = json.loads(proc.stdout)["data"]
    assert answer["finish_reason"] == "length" and answer["usage"]["completion_tokens"] == 5


def test_three_turns_keep_context(engine_name, smollm2_hf):
    import turnspec
    from turnspec.chat import GenerationOptions
    from turnspec.chat_session import ChatSession
    from turnspec.engines import load_engine

    spec = turnspec.load(smollm2_hf)
    engine = load_engine(engine_name, smollm2_hf)
    try:
        options = GenerationOptions(max_tokens=40)
        chat = ChatSession(spec, engine, system=SYSTEM, options=options)
        turns = [chat.ask("Hi, I am Bob."), chat.ask("Tell me a fun fact."), chat.ask("What is my name?")]
        fresh = ChatSession(spec, engine, system=SYSTEM, options=options).ask("What is my name?")
    finally:
        engine.close()
    assert "Bob" in turns[2].content, turns[2].content
    assert "Bob" not in fresh.content, fresh.content
    assert all(not CONTROL.search(t.content) for t in turns)
