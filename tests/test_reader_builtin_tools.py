"""Built-in tools in a channel format (issue 21): gpt-oss writes `to=container.exec`, `to=python` and
`to=browser.search` for the tools it was trained with, next to `to=functions.NAME` for the caller's own. The gpt-oss
template renders declared tools under the `functions` namespace, so the analysis learns `functions.` as the call
prefix; a recipient outside it is a built-in the caller never declared: a `BuiltinCall` (recipient, body as written),
never a `ToolCall`, with a warning, and never a `tool_calls` entry of the server APIs.

Outputs are written the way gpt-oss writes them (OpenAI's Harmony guide), read with the real o200k_harmony tokenizer
(../shared/models/gpt-oss-tokenizer) whole, in text chunks and token by token, and checked against openai-harmony's
own parser where it is installed.
"""

from __future__ import annotations

import gzip
import importlib.resources

import pytest

import turnspec
from helpers.paths import SHARED, need
from helpers.reading import everything, read_every_way
from turnspec.reader import BuiltinCall, Content, ToolCall

WEATHER = [{"type": "function", "function": {"name": "get_weather", "description": "Weather.", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]

EXEC = ('<|channel|>analysis<|message|>List the files first.<|end|>'
        '<|start|>assistant to=container.exec<|channel|>commentary json<|message|>{"cmd": ["ls", "-la"]}<|call|>')
PYTHON = ('<|channel|>analysis<|message|>Compute it.<|end|>'
          '<|start|>assistant<|channel|>analysis to=python code<|message|>print(2 ** 10)<|call|>')
BROWSER = ('<|channel|>analysis<|message|>Search the web.<|end|>'
           '<|start|>assistant<|channel|>analysis to=browser.search code<|message|>{"query": "Bern weather", '
           '"topn": 3}<|call|>')
DECLARED = ('<|channel|>analysis<|message|>Use the weather tool.<|end|>'
            '<|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{"city": "Bern"}<|call|>')

BUILTINS = {  # output: (recipient, body, arguments)
    EXEC: ("container.exec", '{"cmd": ["ls", "-la"]}', {"cmd": ["ls", "-la"]}),
    PYTHON: ("python", "print(2 ** 10)", None),
    BROWSER: ("browser.search", '{"query": "Bern weather", "topn": 3}', {"query": "Bern weather", "topn": 3}),
}


@pytest.fixture(scope="module")
def gpt_oss() -> turnspec.ModelSpec:
    return turnspec.load(need(SHARED / "models" / "gpt-oss-tokenizer"))


def _prompt(spec) -> str:
    return spec.render([{"role": "user", "content": "Go."}], tools=WEATHER, add_generation_prompt=True)


def _three_ways(spec, output: str):
    """Whole text, 3-character chunks, and the real token ids: the same Result."""
    prompt = _prompt(spec)
    return read_every_way(lambda: spec.reader(prompt, tools=WEATHER), output, token_ids=spec.vocab.encode(output),
                          same=everything)


def test_the_template_names_the_namespace_of_declared_functions(gpt_oss):
    channels = gpt_oss.analysis.channels
    assert channels.call_prefix == "functions."
    assert "namespace functions {" in _prompt(gpt_oss)  # where the template writes the caller's tools


@pytest.mark.parametrize("output", list(BUILTINS), ids=["container.exec", "python", "browser.search"])
def test_a_builtin_tool_is_not_a_call_to_a_declared_function(gpt_oss, output):
    recipient, body, arguments = BUILTINS[output]
    result = _three_ways(gpt_oss, output)
    assert result.tool_calls == [] and result.errors == [] and result.content == ""
    assert result.builtin_calls == [BuiltinCall(recipient, body, arguments)]
    assert result.reasoning and result.finish_reason == "stop" and result.stopped_by == "<|call|>"
    assert any(f"addressed {recipient!r}, a built-in tool" in w for w in result.warnings)


def test_a_declared_function_is_still_a_tool_call(gpt_oss):
    result = _three_ways(gpt_oss, DECLARED)
    assert [(c.name, c.arguments) for c in result.tool_calls] == [("get_weather", {"city": "Bern"})]
    assert result.builtin_calls == [] and result.finish_reason == "tool_calls"
    assert not any("built-in" in w for w in result.warnings)


def test_the_split_agrees_with_openai_harmony(gpt_oss, tmp_path, monkeypatch):
    """openai-harmony keeps every recipient as written; turnspec routes `functions.*` to tool calls, the rest to
    built-in calls, with the same bodies."""
    harmony = pytest.importorskip("openai_harmony", reason="pip install openai-harmony")
    pytest.importorskip("bpe_openai", reason="openai-harmony needs o200k_base offline: pip install bpe-openai")
    ranks = importlib.resources.files("bpe_openai") / "data" / "o200k_base.tiktoken.gz"
    (tmp_path / "o200k_base.tiktoken").write_bytes(gzip.decompress(ranks.read_bytes()))
    monkeypatch.setenv("TIKTOKEN_ENCODINGS_BASE", str(tmp_path))
    enc = harmony.load_harmony_encoding(harmony.HarmonyEncodingName.HARMONY_GPT_OSS)
    for output in (*BUILTINS, DECLARED):
        messages = enc.parse_messages_from_completion_tokens(enc.encode(output, allowed_special="all"),
                                                              harmony.Role.ASSISTANT)
        addressed = [(m.recipient, m.content[0].text) for m in messages if m.recipient]
        result = _three_ways(gpt_oss, output)
        ours = [(b.recipient, b.body) for b in result.builtin_calls]
        ours += [("functions." + c.name, c.raw) for c in result.tool_calls]
        assert ours == addressed


def test_servers_never_hand_back_a_builtin_as_a_tool_call(gpt_oss):
    """Chat Completions: the built-in's text is content (nothing the model wrote is dropped), `tool_calls` holds
    only declared functions, and the finish reason is not `tool_calls`."""
    from turnspec.server.responses import TurnAssembler

    reader = gpt_oss.reader(_prompt(gpt_oss), tools=WEATHER)
    events = reader.feed_text(EXEC) + reader.finish()
    assert any(isinstance(e, BuiltinCall) for e in events) and not any(isinstance(e, ToolCall) for e in events)
    turn = TurnAssembler(tools_enabled=True)
    deltas = [d for d in (turn.add(e) for e in events) if d]
    assert deltas == [{"reasoning_content": "List the files first."}, {"content": '{"cmd": ["ls", "-la"]}'}]
    message = turn.message()
    assert "tool_calls" not in message and turn.finish_reason == "stop"
    assert not any(isinstance(e, Content) for e in events)  # the reader itself never calls it content


def test_responses_and_anthropic_apis_never_hand_back_a_builtin_as_a_call(gpt_oss):
    """The Responses API gets a message item with the built-in's text (no function_call item), Anthropic's Messages
    API a text block (no tool_use block): the same choice as Chat Completions."""
    from turnspec.server.anthropic_api import BlockAssembler
    from turnspec.server.responses_output import OutputFold

    reader = gpt_oss.reader(_prompt(gpt_oss), tools=WEATHER)
    events = reader.feed_text(PYTHON) + reader.finish()
    fold = OutputFold(tools_enabled=True)
    for e in events:
        fold.add(e)
    assert [i["type"] for i in fold.items] == ["reasoning", "message"]
    assert fold.items[-1]["content"][0]["text"] == "print(2 ** 10)"
    blocks = BlockAssembler(tools_enabled=True, stop_sequences=())
    for e in events:
        blocks.add(e)
    blocks.finish()
    assert [b["type"] for b in blocks.content] == ["thinking", "text"]
    assert blocks.content[-1]["text"] == "print(2 ** 10)"


def test_a_chat_turn_lists_the_builtin_apart(gpt_oss):
    """`turnspec run --json` and the library's TurnResult: `builtin_calls` beside `tool_calls`, the warning in the
    notices, no history tool call for a function nobody declared."""
    from types import SimpleNamespace

    from turnspec.chat import GenerationOptions, TurnFeed, TurnResult

    prompt = _prompt(gpt_oss)
    enc = SimpleNamespace(ids=gpt_oss.vocab.encode(prompt), text=prompt)
    result = TurnResult()
    turn = TurnFeed(gpt_oss, enc, GenerationOptions(tools=WEATHER), result)
    for tid in gpt_oss.vocab.encode(EXEC):
        turn.feed(tid)
        if turn.done:
            break
    turn.finish()
    assert result.tool_calls == [] and "tool_calls" not in result.assistant_message()
    assert result.as_dict()["builtin_calls"] == [{"recipient": "container.exec", "body": '{"cmd": ["ls", "-la"]}',
                                                  "arguments": {"cmd": ["ls", "-la"]}}]
    assert any("built-in tool" in n for n in result.notices)
