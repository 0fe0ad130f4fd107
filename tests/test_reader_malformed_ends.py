"""What a user sees for two malformed outputs (issue 21, class 5), the same for every reasoning syntax:

- a closing reasoning marker with no block open (reasoning never opened): the marker is never shown, the text
  before it stays the answer it was streamed as (a streaming reader cannot take back what it showed), and the
  result carries a warning saying so;
- a finished output that ends inside a marker (`answer</thi`, `<|tool_c` cut by a length limit): that start of
  markup is never shown, with a warning; prose that merely ends in `<` or `</` stays as written.

Read whole and in 2-character chunks: both give the same. Templates are official ones (../shared and llama.cpp's).
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

import turnspec

from helpers.paths import need
from helpers.corpus_models import corpus_spec

LLAMACPP = Path(__file__).parent / "data" / "llamacpp_templates"
SYNTAXES = {  # template: (open, close)
    "GLM-4.6.jinja": ("<think>", "</think>"),
    "mistralai-Ministral-3-14B-Reasoning-2512.jinja": ("[THINK]", "[/THINK]"),
    "ByteDance-Seed-OSS.jinja": ("<seed:think>", "</seed:think>"),
    "google-gemma-4-31B-it.jinja": ("<|channel>", "<channel|>"),
}


@functools.lru_cache(maxsize=None)
def spec_for(name: str):
    if (LLAMACPP / name).exists() and not name.startswith(("GLM", "mistralai", "ByteDance")):
        return turnspec.from_template(need(LLAMACPP / name).read_text(encoding="utf-8"))
    return corpus_spec(name)


def read(spec, output: str):
    prompt = spec.render([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    whole = spec.reader(prompt).read_all(output)
    chunked = spec.reader(prompt)
    for i in range(0, len(output), 2):
        chunked.feed_text(output[i:i + 2])
    chunked.finish()
    assert (chunked.result.content, chunked.result.reasoning, chunked.result.warnings) == \
        (whole.content, whole.reasoning, whole.warnings)
    return whole


@pytest.mark.parametrize("name", sorted(SYNTAXES))
def test_a_stray_closing_marker_is_dropped_and_said(name):
    spec = spec_for(name)
    assert (spec.analysis.reasoning.open, spec.analysis.reasoning.close) == SYNTAXES[name]
    close = SYNTAXES[name][1]
    result = read(spec, f"Let me see.{close}The answer is 4.")
    assert result.content == "Let me see.The answer is 4." and result.reasoning == ""
    assert close not in result.content
    assert any("closing reasoning marker" in w for w in result.warnings)


@pytest.mark.parametrize("name", sorted(SYNTAXES))
def test_an_output_that_ends_inside_a_marker_does_not_show_it(name):
    spec = spec_for(name)
    open_, close = SYNTAXES[name]
    result = read(spec, f"{open_}Two plus two.{close}The answer is 4.{close[:-1]}")
    assert (result.reasoning, result.content) == ("Two plus two.", "The answer is 4.")
    assert result.warnings == [f"the output ended inside a marker ({close[:-1]!r}): not shown"]
    result = read(spec, f"The answer is 4.{open_[:3]}")
    assert result.content == "The answer is 4."


@pytest.mark.parametrize("prose", ["x < y and a <", "the tag is </"])
def test_prose_ending_in_a_bracket_stays(prose):
    result = read(corpus_spec("GLM-4.6.jinja"), prose)
    assert result.content == prose and result.warnings == []


# -- Hypothesis: prose with marker-like text is never reasoning or calls; streamed == whole ----------------------
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

PROSE_TEMPLATES = [*sorted(SYNTAXES), "Kimi-K2-Thinking.jinja", "HuggingFaceTB-SmolLM3-3B.jinja"]


def _fragments(open_: str, close: str) -> list[str]:
    """Pieces of the markers (never a whole one, the test checks) mixed with prose."""
    cuts = [open_[:k] for k in range(1, len(open_))] + [close[:k] for k in range(1, len(close))]
    cuts += [open_[k:] for k in range(1, len(open_))] + [close[k:] for k in range(1, len(close))]
    return cuts + ["think", "the ", "answer", " ", "\n", "<", ">", "/", "|", "[", "]", "x", "é", "tool_call"]


@pytest.mark.parametrize("name", PROSE_TEMPLATES)
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_prose_with_marker_like_text_is_never_reasoning(name, data):
    spec = spec_for(name)
    r = spec.analysis.reasoning
    assert r.kind == "tags" and not r.prompt_opens
    pieces = data.draw(st.lists(st.sampled_from(_fragments(r.open, r.close)), min_size=1, max_size=30))
    text = "".join(pieces)
    markers = {r.open, r.close, *spec.analysis.control_tokens}
    assume(not any(m in text for m in markers if m.strip()))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=6)))
    prompt = spec.render([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    whole = spec.reader(prompt).read_all(text)
    streamed = spec.reader(prompt)
    for a, b in zip([0, *cuts], [*cuts, len(text)]):
        streamed.feed_text(text[a:b])
    streamed.finish()
    assert streamed.result == whole
    assert whole.reasoning == "" and not whole.tool_calls and not whole.errors
    if whole.warnings:  # the prose ended in the start of a marker, which is not shown
        assert text.strip().startswith(whole.content.strip())
    else:
        assert whole.content.strip() == text.strip()
