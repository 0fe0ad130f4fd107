"""Channel formats, learned by rendering: Harmony (gpt-oss, with its real o200k_harmony tokenizer from ../shared)
and muse_glimmer (tests/data/llamacpp_templates, a synthetic-free template from llama.cpp's tests) are two instances
of one syntax, read by one parser; the format interface answers for them what `if harmony` used to.

Tool-call outputs are written the way gpt-oss writes them (OpenAI's Harmony guide: the recipient in the role header
`<|start|>assistant to=functions.NAME<|channel|>commentary json<|message|>`, or after the channel)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

import turnspec
from turnspec.analysis.syntax import ChannelSyntax
from turnspec.constrain import plan
from turnspec.formats import HARMONY, ChannelFormat, TemplateFormat, format_of
from turnspec.reader import Reasoning, StreamReader, reader_for

from helpers.paths import SHARED, need
from helpers.corpus_models import corpus_spec, special_tokens_for

MUSE = Path(__file__).parent / "data" / "llamacpp_templates" / "muse-glimmer.jinja"
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather.", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "description": "Time.", "parameters": {
    "type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}}}


@pytest.fixture(scope="module")
def gpt_oss() -> turnspec.ModelSpec:
    return turnspec.load(need(SHARED / "models" / "gpt-oss-tokenizer"))


@pytest.fixture(scope="module")
def muse() -> turnspec.ModelSpec:
    return turnspec.from_template(MUSE.read_text(encoding="utf-8"), name="muse-glimmer",
                                  special_tokens=special_tokens_for(MUSE))


def calls(result) -> list[tuple[str, dict]]:
    return [(c.name, c.arguments) for c in result.tool_calls]


def split(result) -> tuple:
    return result.reasoning, result.content, calls(result), [e.message for e in result.errors]


def streamed_in_chunks(spec, prompt: str, output: str, seed: int, tools=None):
    reader = reader_for(spec, prompt, declared_tools=tools)
    rnd, i = random.Random(seed), 0
    while i < len(output) and not reader.done:
        n = rnd.randint(1, 7)
        reader.feed_text(output[i:i + n])
        i += n
    reader.finish()
    return reader.result


def token_by_token(spec, prompt: str, output: str, end: str, tools=None):
    reader = reader_for(spec, prompt, declared_tools=tools)
    events = []
    for tid in spec.vocab.encode(output) + [spec.token_id(end)]:
        events += reader.feed_token(tid)
    return reader.result, events


# --- Harmony: learned, and equal to the one written in turnspec.formats --------------------------------------
def test_the_gpt_oss_template_teaches_harmony(gpt_oss):
    learned = gpt_oss.analysis.channels
    assert isinstance(format_of(gpt_oss.analysis), ChannelFormat)
    assert learned.header(learned.reasoning) == "<|channel|>analysis" and learned.header(learned.content) == "<|channel|>final"
    assert (learned.start, learned.role, learned.message, learned.message_end) == ("<|start|>", "assistant", "<|message|>", "<|end|>")
    assert (learned.recipient, learned.call_prefix, learned.call_header) == ("to=", "functions.", "<|channel|>commentary json")
    assert set(learned.turn_ends) == {"<|return|>", "<|call|>"} and learned.body_calls is None
    assert learned == ChannelSyntax(**{**HARMONY.__dict__, "header_tokens": ()})  # the template never writes <|constrain|>


RECIPIENT_IN_HEADER_AFTER_ANALYSIS = (
    "<|channel|>analysis<|message|>The user wants the weather in Paris.<|end|>"
    '<|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{"city": "Paris", "days": 3}')
PARALLEL = (
    "<|channel|>analysis<|message|>Two lookups.<|end|>"
    '<|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{"city": "Paris"}<|end|>'
    '<|start|>assistant<|channel|>commentary to=functions.get_time <|constrain|>json<|message|>{"tz": "Europe/Paris"}')


@pytest.mark.parametrize("output, expected", [
    (RECIPIENT_IN_HEADER_AFTER_ANALYSIS, ("The user wants the weather in Paris.", "",
                                          [("get_weather", {"city": "Paris", "days": 3})], [])),
    (PARALLEL, ("Two lookups.", "", [("get_weather", {"city": "Paris"}), ("get_time", {"tz": "Europe/Paris"})], [])),
    ('<|start|>assistant to=functions.get_time<|channel|>commentary json<|message|>{"tz": "UTC"}',
     ("", "", [("get_time", {"tz": "UTC"})], [])),
], ids=["recipient in the role header after analysis", "parallel calls", "recipient in the role header first"])
def test_harmony_calls_token_by_token_streamed_and_whole(gpt_oss, output, expected):
    prompt = "<|start|>user<|message|>Weather and time in Paris?<|end|><|start|>assistant"
    tools = [WEATHER, TIME]
    by_token, events = token_by_token(gpt_oss, prompt, output, "<|call|>", tools)
    assert split(by_token) == expected
    assert (by_token.finish_reason, by_token.stopped_by) == ("tool_calls", "<|call|>")
    whole = reader_for(gpt_oss, prompt, declared_tools=tools).read_all(output + "<|call|>")
    assert split(whole) == expected
    for seed in range(5):
        assert split(streamed_in_chunks(gpt_oss, prompt, output + "<|call|>", seed, tools)) == expected
    if expected[0]:
        assert any(isinstance(e, Reasoning) for e in events)


def test_harmony_control_text_of_the_recording_never_reaches_the_user(gpt_oss):
    """The recorded gpt-oss output (a runner that did not parse Harmony), read through the learned format."""
    recording = need(SHARED / "recordings" / "gpt-oss-20b-chat-raw-output.txt").read_text(encoding="utf-8")
    res = reader_for(gpt_oss, "<|start|>assistant").read_all(recording + "<|return|>")
    assert res.reasoning.startswith("We need to explain") and res.content.startswith("## 1. What is a **Chat Template**?")
    assert not any(t in res.content + res.reasoning for t in gpt_oss.analysis.channels.tokens)


# --- muse_glimmer: the same syntax with recipients for reasoning and answer, and XML calls in the body --------
def test_muse_glimmer_is_a_channel_format(muse):
    c = muse.analysis.channels
    assert (c.recipient, c.reasoning, c.content, c.channel) == ("to=", "self", "user", "")
    assert (c.message_end, c.turn_ends) == ("<|eom|>", ("<|eot|>",))
    assert c.body_calls is not None and c.body_calls.describe().startswith('<atem:function_calls>\n<atem:invoke name="{name}">')
    assert muse.analysis.reasoning.kind == "channels"
    assert "<|eom|>" not in muse.stops.tokens and "<|eot|>" in muse.stops.tokens  # a message end is not a stop


ATEM = ('<atem:function_calls>\n<atem:invoke name="get_weather">\n<atem:parameter name="city">Paris, France'
        '</atem:parameter>\n<atem:parameter name="days">3</atem:parameter>\n</atem:invoke>\n</atem:function_calls>')


@pytest.mark.parametrize("output, expected", [
    (" to=self<|message|>Check the weather.<|eom|><|start|>assistant to=user<|message|>Sunny.<|eot|>",
     ("Check the weather.", "Sunny.", [], [])),
    (f" to=self<|message|>I need a tool.<|eom|><|start|>assistant to=get_weather<|message|>{ATEM}<|eot|>",
     ("I need a tool.", "", [("get_weather", {"city": "Paris, France", "days": 3})], [])),
    (f" to=user<|message|>You call it like this:\n{ATEM}<|eot|>", ("", f"You call it like this:\n{ATEM}", [], [])),
], ids=["reasoning then answer", "reasoning then a call", "call syntax quoted in the answer"])
def test_muse_glimmer_reads_streamed_and_whole(muse, output, expected):
    prompt = muse.render([{"role": "user", "content": "Weather in Paris?"}], add_generation_prompt=True, tools=[WEATHER])
    assert prompt.endswith("<|start|>assistant")
    whole = reader_for(muse, prompt, declared_tools=[WEATHER]).read_all(output)
    assert split(whole) == expected and whole.stopped_by == "<|eot|>"
    for seed in range(5):
        assert split(streamed_in_chunks(muse, prompt, output, seed, [WEATHER])) == expected


# --- the interface: what used to be `if harmony` ------------------------------------------------------------
def test_the_format_interface_for_channels_and_templates(gpt_oss, muse):
    harmony, glimmer = format_of(gpt_oss.analysis), format_of(muse.analysis)
    assert harmony.reasoning_phase("") == ("<|channel|>analysis<|message|>", "<|end|>", "<|start|>assistant")
    assert glimmer.reasoning_phase("") == (" to=self<|message|>", "<|eom|>", "<|start|>assistant")
    assert harmony.answer_lead() == ("<|channel|>final<|message|>", "")
    assert glimmer.answer_lead() == (" to=user<|message|>", "")
    assert harmony.call_syntaxes[0].describe() == gpt_oss.analysis.tools.calls[0].describe()
    qwen = corpus_spec("Qwen-Qwen3-0.6B.jinja")
    fmt = format_of(qwen.analysis)
    assert isinstance(fmt, TemplateFormat) and fmt.message_end == "" and fmt.reasoning_phase("")[:2] == ("<think>", "</think>")
    assert StreamReader(reasoning="harmony").config.channels == HARMONY


def test_a_forced_call_on_gpt_oss_lets_the_analysis_message_run_free(gpt_oss):
    prompt = "<|start|>user<|message|>Weather?<|end|><|start|>assistant"
    c = plan(gpt_oss, prompt, tools=[WEATHER], tool_choice="required")
    assert (c.reasoning_open, c.reasoning_close, c.starts_free) == ("<|channel|>analysis<|message|>", "<|end|>", False)


def test_a_forced_call_on_muse_glimmer_is_a_message_to_the_tool(smollm2_dir):
    """The grammar writes the call the way the template renders it (the name in the header and in the body), and
    llguidance accepts that rendering token by token; the reader reads it back."""
    pytest.importorskip("llguidance", reason="the grammar check uses llguidance: pip install llguidance")
    from helpers.grammar_check import lark_matcher
    from helpers.roundtrip import spec_for

    spec = spec_for(MUSE.read_text(encoding="utf-8"), special_tokens_for(MUSE), need(smollm2_dir / "tokenizer.json"))
    conversation = [{"role": "user", "content": "Weather in Paris?"}]
    prompt = spec.render(conversation, add_generation_prompt=True, tools=[WEATHER])
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}}
    full = spec.render([*conversation, {"role": "assistant", "content": "", "tool_calls": [call]}], tools=[WEATHER])
    output = full[len(prompt):]
    assert output.startswith(" to=get_weather<|message|><atem:function_calls>")
    c = plan(spec, prompt, tools=[WEATHER], tool_choice="required")
    assert c.notices == () and (c.reasoning_open, c.reasoning_close) == (" to=self<|message|>", "<|eom|>")
    text = output[:output.rindex("<|eot|>")]
    tok, matcher = lark_matcher(spec, c.start)
    ids = spec.vocab.tokenizer.encode(text, add_special_tokens=False).ids
    assert matcher.try_consume_tokens(ids) == len(ids) and matcher.is_accepting()
    assert calls(reader_for(spec, prompt, declared_tools=[WEATHER]).read_all(output)) == [
        ("get_weather", {"city": "Paris", "days": 3})]
