"""Reasoning whose markers no rendering shows (issue 21, class 1): the template drops reasoning from history and the
generation prompt does not open it, yet its own text tells the markers. Learned from that evidence, recorded with
its source in the analysis, and read, so reasoning never reaches the user as the answer.

Templates are the official ones in ../shared; outputs are written the way those models write them (SmolLM3 and
Kimi-K2-Thinking start with `<think>`, Granite 3.3 follows its system prompt's `<think></think>` instruction).
"""

from __future__ import annotations

import pytest

from helpers.corpus_models import corpus_spec

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
