"""Tool calls of each family, read whole, streamed as random text chunks, and streamed as real SmolLM2
byte-level token ids one at a time (so every marker and JSON string arrives split at real token
boundaries). All model outputs here are synthetic, written in each family's documented shape."""

from __future__ import annotations

import random

import pytest

from turnspec.reader import Content, StreamReader, ToolCall, ToolCallError
from turnspec.reader.call_parse import ToolParseError, call_from_object, pythonic_calls


@pytest.fixture(scope="module")
def tok(smollm2_dir):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(smollm2_dir / "tokenizer.json"))


def three_ways(tok, output: str, **config):
    """Result read whole, in random text chunks, and token by token; asserts they agree; returns it and the
    token-by-token events."""
    whole = StreamReader(**config).read_all(output)
    rnd = random.Random(len(output))
    r = StreamReader(**config)
    i = 0
    while i < len(output):
        n = rnd.randint(1, 7)
        r.feed_text(output[i : i + n])
        i += n
    r.finish()
    assert r.result == whole
    r = StreamReader(tokenizer=tok, **config)
    events = []
    for tid in tok.encode(output, add_special_tokens=False).ids:
        events += r.feed_token(tid)
    events += r.finish()
    assert r.result == whole
    return whole, events


def names_args(res):
    return [(c.name, c.arguments) for c in res.tool_calls]


# --- Hermes / Qwen ----------------------------------------------------------------------------------

HERMES_TWO = (
    "Let me look both up.\n\n"
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "°C"}}\n</tool_call>\n'
    '<tool_call>\n{"name": "get_time", "arguments": {"tz": "Europe/Paris"}}\n</tool_call>'
)


def test_hermes_several_calls_streamed(tok):
    res, events = three_ways(tok, HERMES_TWO, call_format="hermes")
    assert res.content == "Let me look both up."
    assert names_args(res) == [("get_weather", {"city": "Paris", "unit": "°C"}), ("get_time", {"tz": "Europe/Paris"})]
    assert res.tool_calls[0].raw == '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "°C"}}'
    assert res.finish_reason == "tool_calls"
    # each call is emitted when its </tool_call> arrives, not at the end
    first_call = next(i for i, e in enumerate(events) if isinstance(e, ToolCall))
    assert first_call < len(events) - 2


def test_hermes_malformed_json_is_an_error_event(tok):
    out = '<tool_call>\n{"name": "f", "arguments": {"x": 1,}}\n</tool_call>\n<tool_call>{"name": "g", "arguments": {}}</tool_call>'
    res, events = three_ways(tok, out, call_format="hermes")
    assert names_args(res) == [("g", {})]
    [err] = res.errors
    assert err.raw == '{"name": "f", "arguments": {"x": 1,}}' and "invalid JSON" in err.message
    assert any(isinstance(e, ToolCallError) for e in events)


def test_hermes_string_arguments_and_unterminated_call(tok):
    out = 'ok <tool_call>{"name": "f", "arguments": "{\\"a\\": [1, 2]}"}'
    res, _ = three_ways(tok, out, call_format="hermes")
    assert names_args(res) == [("f", {"a": [1, 2]})] and res.content == "ok"


def test_hermes_text_without_calls_is_verbatim(tok):
    out = "Plain answer.\n\nWith  spacing.\n"
    res, _ = three_ways(tok, out, call_format="hermes")
    assert res.content == out and res.finish_reason == "stop"


# --- Llama 3.x --------------------------------------------------------------------------------------


def test_llama3_json_call(tok):
    out = '{"name": "get_weather", "parameters": {"city": "Paris"}}'
    res, _ = three_ways(tok, out, call_format="llama3")
    assert names_args(res) == [("get_weather", {"city": "Paris"})] and res.content == ""
    assert res.finish_reason == "tool_calls"


def test_llama3_several_calls_and_the_type_function_shape(tok):
    out = '{"type": "function", "name": "a", "parameters": {}}; {"name": "b", "parameters": {"x": "y"}}'
    res, _ = three_ways(tok, out, call_format="llama3")
    assert names_args(res) == [("a", {}), ("b", {"x": "y"})]


def test_llama3_python_tag_builtin_and_json(tok):
    res, _ = three_ways(tok, 'Searching.<|python_tag|>brave_search.call(query="weather in Paris")', call_format="llama3")
    assert res.content == "Searching." and names_args(res) == [("brave_search", {"query": "weather in Paris"})]
    res, _ = three_ways(tok, '<|python_tag|>{"name": "f", "parameters": {"n": 3}}', call_format="llama3")
    assert names_args(res) == [("f", {"n": 3})]
    res, _ = three_ways(tok, "<|python_tag|>import math\nprint(math.pi)", call_format="llama3")
    assert names_args(res) == [("python", {"code": "import math\nprint(math.pi)"})]


def test_llama3_json_answer_that_is_not_a_call_stays_content(tok):
    out = '{"capital": "Paris"}'
    res, _ = three_ways(tok, out, call_format="llama3")
    assert res.content == out and not res.tool_calls and not res.errors


def test_llama3_malformed_call(tok):
    out = '{"name": "f", "parameters": {"x": '
    res, _ = three_ways(tok, out, call_format="llama3")
    assert not res.tool_calls and res.errors[0].raw == out and res.content == ""


def test_llama3_real_special_token_with_stop_ids(tok):
    # <|eom_id|> after a call: the turn ends with finish_reason tool_calls
    r = StreamReader(call_format="llama3", stop_token_texts=("<|eot_id|>", "<|eom_id|>"))
    res = r.read_all('<|python_tag|>brave_search.call(query="x")<|eom_id|>')
    assert (res.finish_reason, res.stopped_by, names_args(res)) == ("tool_calls", "<|eom_id|>", [("brave_search", {"query": "x"})])


# --- Mistral ----------------------------------------------------------------------------------------


def test_mistral_array_keeps_the_models_ids(tok):
    out = '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "a1b2c3d4e"}, {"name": "f", "arguments": {}}]'
    res, _ = three_ways(tok, out, call_format="mistral")
    assert names_args(res) == [("get_weather", {"city": "Paris"}), ("f", {})]
    assert res.tool_calls[0].id == "a1b2c3d4e" and len(res.tool_calls[1].id) == 9
    assert res.content == ""


def test_mistral_newer_args_form(tok):
    out = 'Checking.[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]get_time[ARGS]{}'
    res, _ = three_ways(tok, out, call_format="mistral")
    assert res.content == "Checking." and names_args(res) == [("get_weather", {"city": "Paris"}), ("get_time", {})]


def test_mistral_malformed(tok):
    res, _ = three_ways(tok, '[TOOL_CALLS][{"name": "f", "arguments": {]', call_format="mistral")
    assert not res.tool_calls and res.errors[0].raw == '[{"name": "f", "arguments": {]'


# --- Harmony (text: no Harmony tokenizer offline) ---------------------------------------------------


def test_harmony_two_calls_in_one_turn_by_chunks():
    out = (
        '<|channel|>commentary to=functions.a <|constrain|>json<|message|>{"x": 1}<|end|>'
        '<|start|>assistant<|channel|>commentary to=functions.b <|constrain|>json<|message|>{"y": [2]}<|call|>'
    )
    whole = StreamReader(reasoning="harmony").read_all(out)
    assert names_args(whole) == [("a", {"x": 1}), ("b", {"y": [2]})]
    for size in (1, 2, 5):
        r = StreamReader(reasoning="harmony")
        for i in range(0, len(out), size):
            r.feed_text(out[i : i + size])
        assert r.result == whole and r.done


# --- shared parsing rules ---------------------------------------------------------------------------


def test_call_shapes_and_their_errors():
    assert call_from_object({"type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}, "id": "x"}) == ("f", {"a": 1}, "x")
    assert call_from_object({"name": "f", "arguments": None}) == ("f", {}, None)
    for bad, msg in [([1], "JSON object"), ({"arguments": {}}, "name"), ({"name": "f", "arguments": [1]}, "not a JSON object"), ({"name": "f", "arguments": "{"}, "not JSON")]:
        with pytest.raises(ToolParseError, match=msg):
            call_from_object(bad)
    with pytest.raises(ToolParseError):
        pythonic_calls("brave_search.call(query=undefined_name)", ".call")


def test_content_events_around_calls_are_only_visible_text():
    r = StreamReader(call_format="hermes")
    events = r.feed_text('Hi.\n<tool_call>{"name": "f", "arguments": {}}</tool_call>\n') + r.finish()
    assert [e for e in events if isinstance(e, Content)] == [Content("Hi.")]
