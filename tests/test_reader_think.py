"""`<think>` reasoning: Qwen3 (thinking on/off), DeepSeek-R1-Distill (prompt already opened <think>).

Outputs below are synthetic (written for the test in each model's documented shape); the prompts are
rendered from the real templates in ../shared/corpus, and outputs are fed as real SmolLM2 byte-level
token ids one at a time (`<think>` is not a SmolLM2 token, so the tags arrive split across tokens).
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from turnspec.reader import Content, Reasoning, StreamReader, ToolCall, prompt_tail

from helpers.paths import CORPUS, need
from helpers.corpus_models import corpus_spec


@pytest.fixture(scope="module")
def tok(smollm2_dir):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(smollm2_dir / "tokenizer.json"))


def render(template_file: str, messages: list[dict], **kw) -> tuple[str, str]:
    """(template source, prompt) rendered with plain jinja2, as transformers does."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    source = need(CORPUS / "templates" / template_file).read_text()

    def raise_exception(msg):
        raise ValueError(msg)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    prompt = env.from_string(source).render(messages=messages, add_generation_prompt=True, **kw)
    return source, prompt


USER = [{"role": "user", "content": "What is 2+2?"}]


def read_by_token(tok, config_kw: dict, output: str) -> tuple[StreamReader, list]:
    r = StreamReader(tokenizer=tok, **config_kw)
    events = []
    for tid in tok.encode(output, add_special_tokens=False).ids:
        events += r.feed_token(tid)
    events += r.finish()
    return r, events


def test_qwen3_thinking_output_is_split(tok):
    source, prompt = render("Qwen-Qwen3-0.6B.jinja", USER)
    analysis = corpus_spec("Qwen-Qwen3-0.6B.jinja").analysis
    assert (analysis.reasoning.open, analysis.reasoning.close) == ("<think>", "</think>")
    assert analysis.tools.calls[0].triggers == ("<tool_call>",)
    assert not analysis.reasoning.prompt_opens and prompt_tail(prompt, analysis) == ""
    output = "<think>\nThe user asks 2+2. That is 4.\n</think>\n\nThe answer is **4**."  # synthetic
    r, events = read_by_token(tok, dict(reasoning="think", call_format="hermes"), output)
    assert r.result.reasoning == "The user asks 2+2. That is 4."
    assert r.result.content == "The answer is **4**."
    # streamed: several reasoning deltas, all before the first content delta
    kinds = [type(e) for e in events if isinstance(e, (Reasoning, Content))]
    assert kinds.count(Reasoning) > 3 and kinds.index(Content) > max(i for i, k in enumerate(kinds) if k is Reasoning)


def test_deepseek_r1_distill_output_starts_inside_reasoning(tok):
    source, prompt = render("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", USER, bos_token="<｜begin▁of▁sentence｜>")
    assert prompt.endswith("<｜Assistant｜><think>\n")
    analysis = corpus_spec("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja").analysis
    assert analysis.reasoning.kind == "tags" and analysis.reasoning.prompt_opens
    assert prompt_tail(prompt, analysis) == "<think>\n"
    output = "Okay, 2+2 is 4.\n</think>\n\nThe answer is 4."  # synthetic: no opening tag, the prompt has it
    r, _ = read_by_token(tok, dict(reasoning="think", prompt_tail="<think>\n"), output)
    assert (r.result.reasoning, r.result.content) == ("Okay, 2+2 is 4.", "The answer is 4.")


def test_qwen3_enable_thinking_false_output_is_content(tok):
    _, prompt = render("Qwen-Qwen3-0.6B.jinja", USER, enable_thinking=False)
    assert prompt.endswith("<think>\n\n</think>\n\n")
    tail = prompt_tail(prompt, corpus_spec("Qwen-Qwen3-0.6B.jinja").analysis)
    assert tail == "<think>\n\n</think>\n\n"
    r, _ = read_by_token(tok, dict(reasoning="think", call_format="hermes", prompt_tail=tail), "The answer is 4.")
    assert (r.result.reasoning, r.result.content) == ("", "The answer is 4.")


def test_an_unclosed_think_in_an_earlier_user_message_does_not_open_reasoning():
    _, prompt = render("Qwen-Qwen3-0.6B.jinja", [{"role": "user", "content": "What does <think> do?"}])
    assert prompt_tail(prompt, corpus_spec("Qwen-Qwen3-0.6B.jinja").analysis) == ""


def test_reasoning_only_until_the_end():
    r = StreamReader(reasoning="think", starts_in_reasoning=True)
    res = r.read_all("still thinking about it\n", reason="length")
    assert (res.reasoning, res.content, res.finish_reason) == ("still thinking about it", "", "length")


def test_think_tags_never_reach_the_answer():
    """A stray close is dropped; a block opened inside the answer is reasoning, and the answer resumes after it."""
    res = StreamReader(reasoning="think").read_all("<think>a</think>b</think>c<think>d")
    assert (res.reasoning, res.content) == ("ad", "bc")
    res = StreamReader(reasoning="think").read_all("Before\n<think>mid</think>\nafter")
    assert (res.reasoning, res.content) == ("mid", "Before\n\nafter")


def test_block_label_is_dropped_only_when_it_is_the_label():
    """Gemma 4 writes `<|channel>thought\n…<channel|>`: the label is not reasoning; a word that merely starts like
    it is, and a label split across chunks is still found."""
    tags = ("<|channel>", "<channel|>")

    def read(text: str, chunks: int = 0):
        r = StreamReader(reasoning="tags", reasoning_tags=tags, reasoning_label="thought")
        if not chunks:
            return r.read_all(text)
        for piece in (text[i:i + chunks] for i in range(0, len(text), chunks)):
            r.feed_text(piece)
        r.finish()
        return r.result

    assert read("<|channel>thought\nI'm\nthinking<channel|>Hi").reasoning == "I'm\nthinking"
    assert read("<|channel>thought\nI'm\nthinking<channel|>Hi", chunks=3).reasoning == "I'm\nthinking"
    assert read("<|channel>thousand reasons<channel|>Done").reasoning == "thousand reasons"
    assert read("<|channel>thoughtful<channel|>x").reasoning == "thoughtful"
    res = read("<|channel>thought\n<channel|>Answer")
    assert (res.reasoning, res.content) == ("", "Answer")


def test_think_then_hermes_tool_call(tok):
    output = (  # synthetic Qwen3 tool-calling turn
        '<think>\nI need the weather tool.\n</think>\n\n<tool_call>\n{"name": "get_weather", '
        '"arguments": {"city": "Paris"}}\n</tool_call>'
    )
    r, events = read_by_token(tok, dict(reasoning="think", call_format="hermes", stop_ids=frozenset({2})), output + "<|im_end|>")
    assert r.result.reasoning == "I need the weather tool."
    assert r.result.content == ""
    assert r.result.tool_calls == [ToolCall("get_weather", {"city": "Paris"}, '{"name": "get_weather", "arguments": {"city": "Paris"}}')]
    assert r.result.finish_reason == "tool_calls"


def test_tool_call_text_inside_reasoning_stays_reasoning():
    res = StreamReader(reasoning="think", call_format="hermes").read_all("<think>maybe <tool_call> here</think>ok")
    assert res.reasoning == "maybe <tool_call> here" and res.content == "ok" and not res.tool_calls


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32), st.booleans())
def test_random_chunkings_give_the_same_split(seed, opened):
    rnd = random.Random(seed)
    output = "<think>\nStep 1: 👋 héllo\n\nStep 2.\n</think>\n\nFinal: 日本語 answer.\n"  # synthetic
    if opened:
        output = output[len("<think>") :]
    whole = StreamReader(reasoning="think", starts_in_reasoning=opened).read_all(output)
    assert whole.reasoning == "Step 1: 👋 héllo\n\nStep 2."
    assert whole.content == "Final: 日本語 answer.\n"
    r = StreamReader(reasoning="think", starts_in_reasoning=opened)
    i = 0
    while i < len(output):
        n = rnd.randint(1, 9)
        r.feed_text(output[i : i + n])
        i += n
    r.finish()
    assert r.result == whole
