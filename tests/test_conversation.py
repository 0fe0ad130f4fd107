"""turnspec.Conversation and `turnspec run`'s exact history on the real default model (SmolLM2 GGUF, llama.cpp,
greedy): every turn's prompt is the earlier prompt + the sampled ids verbatim + the new messages, and the engine
evaluates only those new tokens (its KV cache holds the rest)."""

from __future__ import annotations

import json
import re
import threading

import pytest

pytestmark = pytest.mark.slow
pytest.importorskip("llama_cpp", reason="the llamacpp engine needs llama-cpp-python: pip install 'turnspec[llamacpp]'")

import turnspec  # noqa: E402
from turnspec.chat import GenerationOptions  # noqa: E402
from turnspec.chat_session import ChatSession  # noqa: E402

from helpers.paths import CORPUS, need  # noqa: E402

SYSTEM = "You are a helpful assistant."
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}


@pytest.fixture(scope="module")
def smol(smollm2_gguf):
    from turnspec.engines import load_engine

    spec = turnspec.load(smollm2_gguf)
    engine = load_engine("llamacpp", smollm2_gguf)
    yield spec, engine
    engine.close()


@pytest.fixture(scope="module")
def qwen3(smol):
    """The Qwen3 template (it drops past reasoning and renders tool calls as Hermes) over SmolLM2's vocabulary,
    which has the same ChatML tokens."""
    spec, _ = smol
    template = need(CORPUS / "templates" / "Qwen-Qwen3-0.6B.jinja").read_text(encoding="utf-8")
    return turnspec.from_template(template, name="qwen3-on-smollm2", tokenizer=spec.vocab.tokenizer,
                                  special_tokens={"eos_token": "<|im_end|>"})


def test_each_turn_keeps_earlier_ids_and_evaluates_only_new_ones(smol):
    spec, engine = smol
    conv = turnspec.Conversation(spec, engine)
    turns = [conv.send([{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Hi, I am Bob."}],
                       max_tokens=40)]
    for text in ("Tell me a fun fact.", "What is my name?"):
        before = conv.ids
        turns.append(conv.send([{"role": "user", "content": text}], max_tokens=40))
        turn = turns[-1]
        assert turn.prompt_ids[:len(before)] == before  # every earlier id verbatim
        assert turn.new_prompt_tokens == len(turn.prompt_ids) - len(before)
        # the engine evaluated the new ids only (and the last sampled id, which it never evaluates)
        assert turn.cached_tokens == len(before) - 1
    assert "Bob" in turns[-1].message["content"]
    sample = conv.training_sample()
    assert [t for t in sample.labels if t != -100] == [t for turn in turns for t in turn.ids]
    assert sample.input_ids == conv.ids


def test_a_tool_call_and_its_result_on_a_template_that_drops_reasoning(smol, qwen3):
    _, engine = smol
    conv = turnspec.Conversation(qwen3, engine, tools=[WEATHER])
    call = conv.send([{"role": "user", "content": "What is the weather in Paris?"}], tool_choice="required",
                     max_tokens=60)
    [tc] = call.message["tool_calls"]
    assert tc["function"]["name"] == "get_weather" and isinstance(tc["function"]["arguments"], dict)
    assert call.finish_reason == "tool_calls"
    before = conv.ids
    answer = conv.send([{"role": "tool", "tool_call_id": tc["id"], "content": json.dumps({"temp_c": 18})}],
                       max_tokens=30)
    assert answer.prompt_ids[:len(before)] == before
    assert qwen3.vocab.decode(answer.prompt_ids[len(before):]) == (
        "<|im_end|>\n<|im_start|>user\n<tool_response>\n{\"temp_c\": 18}\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n")[len("<|im_end|>") if before[-1] == qwen3.vocab.token_to_id("<|im_end|>") else 0:]
    assert answer.cached_tokens == len(before) - 1
    assert conv.messages[1]["tool_calls"][0]["function"]["name"] == "get_weather"


def test_a_failed_generation_changes_nothing_kept(smol):
    spec, engine = smol
    conv = turnspec.Conversation(spec, engine)
    conv.send([{"role": "user", "content": "Hi"}], max_tokens=8)
    kept = conv.ids
    with pytest.raises(Exception):
        conv.send([{"role": "user", "content": "Again"}], max_tokens=8, response_format={"type": "nonsense"})
    assert conv.ids == kept and conv.session.state == "completed"
    assert conv.send([{"role": "user", "content": "Again"}], max_tokens=8).prompt_ids[:len(kept)] == kept


def test_run_keeps_the_exact_history_by_default_and_rerender_is_a_choice(smol):
    spec, engine = smol
    options = GenerationOptions(max_tokens=32)
    exact = ChatSession(spec, engine, system=SYSTEM, options=GenerationOptions(max_tokens=32))
    prompts: list[list[int]] = []
    exact.on_prompt = lambda enc: prompts.append(list(enc.ids))
    exact.ask("Hi, I am Bob.")
    first_ids = list(exact._conv.ids)
    second = exact.ask("What is my name?")
    assert prompts[1][:len(first_ids)] == first_ids
    assert second.cached_tokens == len(first_ids) - 1
    again = ChatSession(spec, engine, system=SYSTEM, options=options, history="rerender")
    again.ask("Hi, I am Bob.")
    assert again._conv is None  # the template renders the history every turn
    with pytest.raises(turnspec.TurnspecError, match="exact or rerender"):
        ChatSession(spec, engine, history="sometimes")


def test_an_interrupted_turn_is_kept_as_sampled_and_closed_as_prompt_context(smol):
    spec, engine = smol
    conv = turnspec.Conversation(spec, engine)
    cancel = threading.Event()
    for event in conv.stream([{"role": "user", "content": "Tell me a long story."}], max_tokens=200, cancel=cancel):
        cancel.set()  # the first event: stop before the next token
    cut = conv.last
    assert 0 < len(cut.ids) < 10
    after = conv.send([{"role": "user", "content": "Shorter please."}], max_tokens=8)
    closed = after.prompt_ids[len(cut.prompt_ids) + len(cut.ids):]
    assert spec.vocab.decode(closed).startswith("<|im_end|>\n<|im_start|>user\nShorter please.")
    sample = conv.training_sample()
    end = len(cut.prompt_ids) + len(cut.ids)
    assert sample.labels[end] == -100  # the close was added as context, not trained on


def test_run_cli_rerender_flag_and_the_cached_count_in_the_status_line(smollm2_gguf):
    import os
    import subprocess
    import sys

    for flag in ([], ["--rerender"]):
        proc = subprocess.run([sys.executable, "-m", "turnspec.cli", "run", "-p", "Hi", "--max-tokens", "3", "-v",
                               *flag], capture_output=True, text=True, timeout=180, env={**os.environ, "NO_COLOR": "1"})
        assert proc.returncode == 0, proc.stderr
        assert re.search(r"prompt \d+ \(0 cached\)", proc.stderr), proc.stderr  # one turn: nothing to reuse
