"""Reasoning whose markers no rendering shows (issue 21, class 1): the template drops reasoning from history and the
generation prompt does not open it, yet its own text tells the markers. Learned from that evidence, recorded with
its source in the analysis, and read, so reasoning never reaches the user as the answer.

Templates are the official ones in ../shared; outputs are written the way those models write them (SmolLM3 and
Kimi-K2-Thinking start with `<think>`, Granite 3.3 follows its system prompt's `<think></think>` instruction).
"""

from __future__ import annotations

import pytest

from helpers.corpus_models import corpus_spec
from helpers.reading import read_every_way

HIDDEN = {
    # template: (open, close, where the analysis found them)
    "HuggingFaceTB-SmolLM3-3B.jinja": ("<think>", "</think>", "generation prompt with enable_thinking=False"),
    "Kimi-K2-Thinking.jinja": ("<think>", "</think>", "an empty block the template writes before the answer"),
    "ibm-granite-granite-3.3-2B-Instruct.jinja": ("<think>", "</think>", "the prompt's instructions under thinking=True"),
}


@pytest.mark.parametrize("name", sorted(HIDDEN))
def test_markers_are_learned_with_their_source(name):
    r = corpus_spec(name).analysis.reasoning
    assert (r.kind, r.open, r.close, r.source) == ("tags", *HIDDEN[name])
    assert r.reason is None and not r.prompt_opens


@pytest.mark.parametrize("name", sorted(HIDDEN))
def test_reasoning_does_not_leak_into_the_answer(name):
    spec = corpus_spec(name)
    prompt = spec.render([{"role": "user", "content": "Is 17 prime?"}], add_generation_prompt=True)
    output = "<think>\n17 has no divisor between 2 and 4.\n</think>\nYes, 17 is prime."
    result = spec.reader(prompt).read_all(output)
    assert result.reasoning == "17 has no divisor between 2 and 4."
    assert result.content == "Yes, 17 is prime."


def test_an_answer_without_reasoning_stays_the_answer():
    spec = corpus_spec("HuggingFaceTB-SmolLM3-3B.jinja")
    prompt = spec.render([{"role": "user", "content": "Hi"}], add_generation_prompt=True, enable_thinking=False)
    result = spec.reader(prompt).read_all("Hello! How can I help?")
    assert (result.content, result.reasoning) == ("Hello! How can I help?", "")


def test_gemma4_markers_come_from_its_generation_prompt():
    from pathlib import Path

    import turnspec
    from helpers.paths import need

    path = need(Path(__file__).parent / "data" / "llamacpp_templates" / "google-gemma-4-31B-it.jinja")
    spec = turnspec.from_template(path.read_text(encoding="utf-8"))
    r = spec.analysis.reasoning
    assert (r.open, r.close, r.label) == ("<|channel>", "<channel|>", "thought")
    prompt = spec.render([{"role": "user", "content": "Hi"}], add_generation_prompt=True, enable_thinking=True)
    result = spec.reader(prompt).read_all("<|channel>thought\nThe user greets me.<channel|>Hello!")
    assert (result.reasoning, result.content) == ("The user greets me.", "Hello!")


def test_markers_from_the_split_that_cuts_reasoning_out_of_history():
    """LFM2.5 writes no reasoning markers anywhere but `content.split("</think>")`: the opener is its partner."""
    from pathlib import Path

    import turnspec
    from helpers.paths import need

    path = need(Path(__file__).parent / "data" / "llamacpp_templates" / "LFM2.5-Instruct.jinja")
    spec = turnspec.from_template(path.read_text(encoding="utf-8"))
    r = spec.analysis.reasoning
    assert (r.open, r.close, r.source) == ("<think>", "</think>", "the template cuts reasoning out of history at "
                                           "'</think>'")
    result = spec.reader(spec.render([{"role": "user", "content": "Hi"}], add_generation_prompt=True)).read_all(
        "<think>A greeting.</think>Hello!")
    assert (result.reasoning, result.content) == ("A greeting.", "Hello!")


def test_onboarding_says_where_the_markers_came_from():
    from turnspec.onboard.report import reasoning_summary

    spec = corpus_spec("Kimi-K2-Thinking.jinja")
    r = spec.analysis.reasoning
    line = reasoning_summary({"format": r.kind, "open": r.open, "close": r.close, "found_in": r.source,
                              "prompt_opens_reasoning": r.prompt_opens})
    assert "<think>…</think>" in line and "an empty block the template writes before the answer" in line


# -- reasoning in a shape the template reads other than `reasoning_content` ---------------------------------------

def _read_both(spec, output: str, prompt: str, tools=None):
    """The whole output, and the same output fed in 1-character chunks: both must agree."""
    return read_every_way(lambda: spec.reader(prompt, tools=tools), output, chunk=1, same=lambda r: r)


def test_apertus_markers_come_from_its_thoughts_blocks():
    """Apertus renders reasoning only from `{"blocks": [{"type": "thoughts", …}]}` content: the block type its
    template compares with tells the probe, and the rendering shows `<|inner_prefix|>…<|inner_suffix|>`."""
    spec = corpus_spec("Apertus-8B-Instruct.jinja")
    r = spec.analysis.reasoning
    assert (r.kind, r.open, r.close, r.history) == ("tags", "<|inner_prefix|>", "<|inner_suffix|>", "kept")
    assert r.source == "rendering of a 'thoughts' content block (a block type the template reads)"
    prompt = spec.render([{"role": "user", "content": "Is 17 prime?"}], add_generation_prompt=True,
                         enable_thinking=True)
    assert "Deliberation: enabled" in prompt
    result = _read_both(spec, "<|inner_prefix|>17 has no divisor up to 4.<|inner_suffix|>Yes, 17 is prime."
                              "<|assistant_end|>", prompt)
    assert (result.reasoning, result.content) == ("17 has no divisor up to 4.", "Yes, 17 is prime.")
    assert result.stopped_by == "<|assistant_end|>"


def test_apertus_reasoning_then_a_call():
    spec = corpus_spec("Apertus-8B-Instruct.jinja")
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather.", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    prompt = spec.render([{"role": "user", "content": "Weather in Bern?"}], tools=[t["function"] for t in tools],
                         add_generation_prompt=True, enable_thinking=True)  # it wants bare function schemas
    output = ('<|inner_prefix|>I need the weather tool.<|inner_suffix|><|tools_prefix|>[{"get_weather": '
              '{"city": "Bern"}}]<|tools_suffix|>')
    whole = _read_both(spec, output, prompt, tools)
    assert whole.reasoning == "I need the weather tool." and whole.content == ""
    assert [(c.name, c.arguments) for c in whole.tool_calls] == [("get_weather", {"city": "Bern"})]


SOLAR = "upstage-Solar-Open-100B.jinja"


def _solar():
    from pathlib import Path

    import turnspec
    from helpers.paths import need

    path = need(Path(__file__).parent / "data" / "llamacpp_templates" / SOLAR)
    return turnspec.from_template(path.read_text(encoding="utf-8"))


def test_solar_open_markers_come_from_its_reasoning_field():
    """Solar Open reads `message.reasoning` (not `reasoning_content`) and writes it as a message of its own:
    `<|begin|>assistant<|think|>…<|end|>` before `<|begin|>assistant<|content|>…<|end|>`. Its reasoning closes with
    the turn end and the next header."""
    spec = _solar()
    r = spec.analysis.reasoning
    assert (r.kind, r.open, r.close, r.prompt_opens) == ("tags", "<|think|>", "<|end|><|begin|>assistant", False)
    assert r.source.startswith("rendering of the message's `reasoning` field")
    assert spec.analysis.content.open == "<|content|>" and spec.analysis.turn_ends == ("<|end|>",)
    prompt = spec.render([{"role": "user", "content": "Is 17 prime?"}], add_generation_prompt=True)
    result = _read_both(spec, "<|think|>17 has no divisor up to 4.<|end|><|begin|>assistant<|content|>Yes, 17 is "
                              "prime.<|end|>", prompt)
    assert (result.reasoning, result.content) == ("17 has no divisor up to 4.", "Yes, 17 is prime.")
    assert (result.stopped_by, result.warnings) == ("<|end|>", [])


def test_solar_open_turn_end_ends_an_answer_without_reasoning():
    spec = _solar()
    prompt = spec.render([{"role": "user", "content": "Hi"}], add_generation_prompt=True, reasoning_effort="low")
    assert prompt.endswith("<|think|><|end|><|begin|>assistant")  # the prompt wrote the empty reasoning message
    result = _read_both(spec, "<|content|>Hello!<|end|><|begin|>user<|content|>more", prompt)
    assert (result.reasoning, result.content, result.stopped_by) == ("", "Hello!", "<|end|>")


def test_solar_open_reasoning_then_calls():
    spec = _solar()
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather.", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    prompt = spec.render([{"role": "user", "content": "Weather in Seoul?"}], tools=tools, add_generation_prompt=True)
    output = ('<|think|>I should call the tool.<|end|><|begin|>assistant<|tool_calls|><|tool_call:begin|>a1b2c3d4e5'
              '<|tool_call:name|>get_weather<|tool_call:args|>{"city": "Seoul"}<|tool_call:end|><|calls|>')
    result = _read_both(spec, output, prompt, tools)
    assert result.reasoning == "I should call the tool." and result.content == ""
    assert [(c.name, c.arguments) for c in result.tool_calls] == [("get_weather", {"city": "Seoul"})]


def test_solar_open_end_token_does_not_halt_generation():
    """`<|end|>` ends Solar's reasoning message as well as its turn: an engine must not halt on it (the reader
    decides), and the stop set says why."""
    spec = _solar()
    from turnspec.formats import format_of

    assert format_of(spec.analysis).message_end == "<|end|>"
    stops = spec.stops
    assert "<|end|>" not in stops.tokens and stops.message_end == "<|end|>"
    assert any("also writes it to start the reasoning's close" in w for w in stops.warnings)


def test_solar_open_token_by_token_with_its_control_tokens():
    """Token ids (SmolLM2's BPE with Solar's control tokens added as special tokens): `<|end|>` is no halting id,
    the reader stops on it after the answer, and goes on through it when the next header follows."""
    from helpers.paths import SMOLLM2_DIR
    from helpers.roundtrip import spec_for

    template = _solar().template
    spec = spec_for(template, {"bos_token": "<s>", "eos_token": "</s>"}, need_file(SMOLLM2_DIR / "tokenizer.json"))
    end_id = spec.token_id("<|end|>")
    assert end_id is not None and end_id not in spec.stops.halt_ids
    prompt = spec.render([{"role": "user", "content": "Is 17 prime?"}], add_generation_prompt=True)
    output = "<|think|>No divisor up to 4.<|end|><|begin|>assistant<|content|>Yes.<|end|><|begin|>user<|content|>"
    reader = spec.reader(prompt)
    ids = spec.vocab.encode(output)
    for i, tid in enumerate(ids):
        reader.feed_token(tid)
        if reader.done:
            break
    # it read on after `<|end|>` only as long as the text could still be the close (`<|end|><|begin|>`, then `user`)
    assert ids[i - 2:i + 1] == spec.vocab.encode("<|end|><|begin|>user") and i < len(ids) - 1
    result = reader.result
    assert (result.reasoning, result.content, result.stopped_by) == ("No divisor up to 4.", "Yes.", "<|end|>")


def need_file(path):
    from helpers.paths import need

    return need(path)
