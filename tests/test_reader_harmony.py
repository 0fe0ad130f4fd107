"""Harmony (gpt-oss): replay of the real recording (text chunks, and token by token with the real o200k_harmony
tokenizer in ../shared/models/gpt-oss-tokenizer), plus synthetic tool-call turns in the shape of OpenAI's guide.

The recording is raw text from a real gpt-oss-20b run that did not parse Harmony."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import turnspec
from turnspec.formats import HARMONY
from turnspec.reader import Done, Reasoning, StreamReader, ToolCall, ToolCallError, channel_prefix, reader_for

CONTROL_TOKENS = HARMONY.tokens
#: What rendering the gpt-oss template teaches: Harmony as written in turnspec.formats, without `<|constrain|>`
#: (the template never writes it; a model may, and the real vocabulary marks it special).
HARMONY_LEARNED = dataclasses.replace(HARMONY, header_tokens=())

from helpers.paths import CORPUS, RECORDINGS, SHARED, need

FINAL_START = "## 1. What is a **Chat Template**?"


@pytest.fixture(scope="module")
def recording() -> str:
    return need(RECORDINGS / "gpt-oss-20b-chat-raw-output.txt").read_bytes().decode("utf-8")


@pytest.fixture(scope="module")
def gpt_oss() -> "turnspec.ModelSpec":
    """The real gpt-oss folder without weights: o200k_harmony tokenizer, chat template, generation config."""
    return turnspec.load(need(SHARED / "models" / "gpt-oss-tokenizer"))


@pytest.fixture(scope="module")
def gpt_oss_template() -> str:
    return need(CORPUS / "templates" / "openai-gpt-oss-120b.jinja").read_text()


def feed_in_chunks(reader: StreamReader, text: str, rnd) -> list:
    events, i = [], 0
    while i < len(text):
        n = rnd.randint(1, 40)
        events += reader.feed_text(text[i : i + n])
        i += n
    return events + reader.finish()


def expected_parts(recording: str) -> tuple[str, str]:
    first = recording.index("<|message|>") + len("<|message|>")
    reasoning = recording[first : recording.index("<|end|>")]
    content = recording.split("<|channel|>final<|message|>", 1)[1]
    return reasoning, content


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32))
def test_recording_replay_in_random_chunks(recording, gpt_oss, seed):
    prompt = "<|start|>user<|message|>What is a Chat Template…?<|end|><|start|>assistant"
    reader = reader_for(gpt_oss, prompt)
    events = feed_in_chunks(reader, recording, random.Random(seed))
    res = reader.result
    reasoning, content = expected_parts(recording)
    assert res.content == content
    assert res.content.startswith(FINAL_START)
    assert res.reasoning == reasoning
    assert res.reasoning.startswith("We need to explain what a Chat Template is")
    for text in (res.content, res.reasoning):
        assert not any(tok in text for tok in CONTROL_TOKENS)
    # strings the answer merely quotes are not gpt-oss tokens: kept verbatim
    assert "`<|assistant|>`" in res.content and "<|end_of_text|>" in res.content
    assert events[-1] == Done("stop") and res.tool_calls == [] and res.errors == []
    assert sum(isinstance(e, Reasoning) for e in events) > 10  # reasoning streamed, not dumped at the end


def test_recording_whole_equals_streamed(recording):
    whole = StreamReader(reasoning="harmony").read_all(recording)
    reasoning, content = expected_parts(recording)
    assert (whole.reasoning, whole.content) == (reasoning, content)


def test_harmony_is_found_by_rendering_the_template(gpt_oss):
    analysis = gpt_oss.analysis
    assert analysis.channels == HARMONY_LEARNED and analysis.reasoning.source == "rendering"
    assert set(analysis.turn_ends) == {"<|return|>", "<|call|>"}  # <|end|> ends a message, not the turn
    assert analysis.tools.calls[0].describe().startswith(" to=functions.{name}<|channel|>commentary json<|message|>")


def test_prompt_that_opened_the_final_channel(gpt_oss):
    # this template's generation prompt is `<|start|>assistant<|channel|>final<|message|>`
    prompt = gpt_oss.render([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    assert channel_prefix(prompt, HARMONY) == "<|start|>assistant<|channel|>final<|message|>"
    reader = reader_for(gpt_oss, prompt)
    res = reader.read_all("Hello there!<|return|>ignored")
    assert (res.content, res.reasoning, res.stopped_by, res.finish_reason) == ("Hello there!", "", "<|return|>", "stop")


TOOL_TURN = (  # synthetic, in the shape of OpenAI's Harmony guide
    "<|channel|>analysis<|message|>Need to use function get_weather.<|end|>"
    "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json"
    '<|message|>{"location": "San Francisco", "unit": "celsius"}<|call|>'
)


@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_tool_call(chunk):
    r = StreamReader(reasoning="harmony", channel_prefix="<|start|>assistant")
    events = []
    for i in range(0, len(TOOL_TURN), chunk):
        events += r.feed_text(TOOL_TURN[i : i + chunk])
    assert r.done
    res = r.result
    assert res.reasoning == "Need to use function get_weather."
    assert res.content == ""
    call = ToolCall("get_weather", {"location": "San Francisco", "unit": "celsius"}, '{"location": "San Francisco", "unit": "celsius"}')
    assert res.tool_calls == [call] and len(res.tool_calls[0].id) == 9 and res.tool_calls[0].id.isalnum()
    assert (res.finish_reason, res.stopped_by) == ("tool_calls", "<|call|>")
    assert isinstance(events[-2], ToolCall) and events[-1] == Done("tool_calls", "<|call|>", "token")


def test_recipient_before_the_channel_and_a_builtin_tool():
    out = (
        '<|start|>assistant to=functions.lookup<|channel|>commentary json<|message|>{"q": 1}<|end|>'
        "<|start|>assistant<|channel|>analysis to=python<|message|>print(1+1)<|call|>"
    )
    res = StreamReader(reasoning="harmony").read_all(out)
    assert [(c.name, c.arguments) for c in res.tool_calls] == [("lookup", {"q": 1})]  # `python` is no declared function
    assert [(b.recipient, b.body, b.arguments) for b in res.builtin_calls] == [("python", "print(1+1)", None)]
    assert res.finish_reason == "tool_calls"


def test_malformed_tool_arguments_are_an_error_event_not_a_crash():
    out = '<|channel|>commentary to=functions.f <|constrain|>json<|message|>{"a": 1,<|call|>'
    r = StreamReader(reasoning="harmony")
    events = r.feed_text(out)
    errors = [e for e in events if isinstance(e, ToolCallError)]
    assert len(errors) == 1 and errors[0].raw == '{"a": 1,' and "invalid JSON" in errors[0].message
    assert r.result.tool_calls == [] and r.result.finish_reason == "stop"


def test_commentary_preamble_is_content_and_missing_end_still_switches():
    out = (
        "<|channel|>analysis<|message|>think"
        "<|channel|>commentary<|message|>Let me check. "  # no <|end|><|start|>assistant: still a new message
        "<|end|><|start|>assistant<|channel|>final<|message|>Done.<|return|>"
    )
    res = StreamReader(reasoning="harmony").read_all(out)
    assert (res.reasoning, res.content) == ("think", "Let me check. Done.")


def test_a_header_with_two_channels_takes_the_last():
    """gpt-oss sometimes restarts a header (`commentary to=assistant<|channel|>analysis`), as llama.cpp's tests
    record: the message is on the last channel named."""
    out = ("<|channel|>commentary to=assistant<|channel|>analysis<|message|>I'm\nthinking<|end|>"
           "<|start|>assistant<|channel|>final<|message|>Hello<|return|>")
    res = StreamReader(reasoning="harmony").read_all(out)
    assert (res.reasoning, res.content, res.tool_calls) == ("I'm\nthinking", "Hello", [])


def test_stray_control_tokens_inside_a_body_are_removed():
    out = "<|channel|>final<|message|>a<|constrain|>b<|message|>c<|return|>"
    assert StreamReader(reasoning="harmony").read_all(out).content == "abc"


def test_output_without_harmony_structure_is_not_lost():
    res = StreamReader(reasoning="harmony", channel_prefix="<|start|>assistant").read_all("plain answer")
    assert res.content == "plain answer"


def test_the_model_writing_a_user_turn_is_stopped(gpt_oss):
    reader = reader_for(gpt_oss, "<|start|>assistant")
    res = reader.read_all("<|channel|>final<|message|>Hi!<|end|><|start|>user<|message|>thanks")
    assert res.content == "Hi!" and res.self_conversation and res.stopped_by == "<|start|>user"


def test_recording_replay_token_by_token_with_the_real_tokenizer(recording, gpt_oss):
    vocab = gpt_oss.vocab
    token_ids = vocab.encode(recording)
    assert len(token_ids) == 2710  # the real o200k_harmony ids of the recording
    assert gpt_oss.token_id("<|end|>") == 200007 and 200007 not in gpt_oss.stops.token_ids
    prompt = "<|start|>user<|message|>What is a Chat Template…?<|end|><|start|>assistant"
    reader = reader_for(gpt_oss, prompt)
    events = []
    for tid in token_ids + [gpt_oss.token_id("<|return|>")]:
        events += reader.feed_token(tid)
    res = reader.result
    reasoning, content = expected_parts(recording)
    assert (res.reasoning, res.content) == (reasoning, content)
    assert (res.finish_reason, res.stopped_by) == ("stop", "<|return|>")
    assert sum(isinstance(e, Reasoning) for e in events) > 100  # streamed token by token


def test_tool_call_token_by_token_with_the_real_tokenizer(gpt_oss):
    vocab = gpt_oss.vocab
    call = gpt_oss.token_id("<|call|>")
    reader = reader_for(gpt_oss, "<|start|>assistant")
    for tid in vocab.encode(TOOL_TURN[: -len("<|call|>")]) + [call]:
        reader.feed_token(tid)
    res = reader.result
    assert [(c.name, c.arguments) for c in res.tool_calls] == [("get_weather", {"location": "San Francisco", "unit": "celsius"})]
    assert res.finish_reason == "tool_calls" and res.stopped_by == "<|call|>"
