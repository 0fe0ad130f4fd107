"""`turnspec parse MODEL FILE`: a saved raw output read with the model's template, printed as JSON.

The gpt-oss recording in ../shared is what a runner that did not parse Harmony showed its user: analysis channel,
`<|end|><|start|>assistant<|channel|>final<|message|>`, then the answer. Read with the gpt-oss folder (real
o200k_harmony tokenizer and template), it splits into reasoning and content with no control text left.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from turnspec.cli import app

from helpers.paths import SHARED, need

RECORDING = SHARED / "recordings" / "gpt-oss-20b-chat-raw-output.txt"
GPT_OSS = SHARED / "models" / "gpt-oss-tokenizer"


def parse(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["parse", *args])
    return result.exit_code, result.stdout, result.stderr


def test_the_gpt_oss_recording_splits_into_reasoning_and_answer():
    code, out, _ = parse(str(need(GPT_OSS)), str(need(RECORDING)))
    assert code == 0
    split = json.loads(out)
    raw = RECORDING.read_text(encoding="utf-8")
    assert split["reasoning"].startswith("We need to explain what a Chat Template is")
    assert split["content"].startswith("## 1. What is a **Chat Template**?")
    for token in ("<|channel|>", "<|message|>", "<|end|>", "<|start|>"):
        assert token in raw and token not in split["content"] + split["reasoning"]
    assert split["tool_calls"] == [] and split["finish"]["reason"] == "stop"


def test_json_envelope(tmp_path):
    output = tmp_path / "out.txt"
    output.write_text("<|channel|>analysis<|message|>Think.<|end|><|start|>assistant<|channel|>final<|message|>Hi!",
                      encoding="utf-8")
    code, out, _ = parse(str(need(GPT_OSS)), str(output), "--json")
    envelope = json.loads(out)
    assert code == 0 and envelope["command"] == "parse" and envelope["ok"]
    assert (envelope["data"]["reasoning"], envelope["data"]["content"]) == ("Think.", "Hi!")


def test_tools_and_prompt_files(tmp_path):
    qwen3 = need(SHARED / "models" / "qwen3-tokenizer")
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}}]))
    output = tmp_path / "out.txt"
    output.write_text('<think>\nweather needed\n</think>\n\n<tool_call>\n{"name": "get_weather", "arguments": '
                      '{"city": "Paris", "days": 3}}\n</tool_call>', encoding="utf-8")
    code, out, _ = parse(str(qwen3), str(output), "--tools", str(tools))
    split = json.loads(out)
    assert code == 0 and split["reasoning"] == "weather needed"
    assert [(c["name"], c["arguments"]) for c in split["tool_calls"]] == [("get_weather", {"city": "Paris", "days": 3})]
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n", encoding="utf-8")
    output.write_text("still thinking</think>Hello!", encoding="utf-8")
    split = json.loads(parse(str(qwen3), str(output), "--prompt", str(prompt))[1])
    assert (split["reasoning"], split["content"]) == ("still thinking", "Hello!")


@pytest.mark.parametrize("problem", ["missing output", "bad tools"])
def test_bad_input_is_one_line(tmp_path, problem):
    output = tmp_path / "out.txt"
    output.write_text("hi", encoding="utf-8")
    tools = tmp_path / "tools.json"
    tools.write_text("{not json")
    args = [str(need(GPT_OSS)), str(tmp_path / "nope.txt")] if problem == "missing output" else \
        [str(need(GPT_OSS)), str(output), "--tools", str(tools)]
    code, out, err = parse(*args)
    assert code != 0 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("turnspec: error: ") and "Traceback" not in err


def test_a_builtin_tool_message_is_listed_apart_from_tool_calls(tmp_path):
    """gpt-oss's `to=container.exec` is no declared function: `builtin_calls`, not `tool_calls`, with a warning."""
    output = tmp_path / "out.txt"
    output.write_text('<|channel|>analysis<|message|>List files.<|end|><|start|>assistant to=container.exec'
                      '<|channel|>commentary json<|message|>{"cmd": ["ls"]}<|call|>', encoding="utf-8")
    code, out, _ = parse(str(need(GPT_OSS)), str(output))
    split = json.loads(out)
    assert code == 0 and split["tool_calls"] == [] and split["reasoning"] == "List files."
    assert split["builtin_calls"] == [{"recipient": "container.exec", "body": '{"cmd": ["ls"]}',
                                       "arguments": {"cmd": ["ls"]}}]
    assert any("built-in tool" in w for w in split["warnings"])
