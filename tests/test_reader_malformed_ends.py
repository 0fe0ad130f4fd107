"""What a user sees for two malformed outputs (issue 21, class 5), the same for every reasoning syntax:

- a closing reasoning marker with no block open (reasoning never opened): the marker is never shown, the text
  before it stays the answer it was streamed as (a streaming reader cannot take back what it showed), and the
  result carries a warning saying so;
- a finished output that ends inside a marker (`answer</thi`, `<|tool_c` cut by a length limit): that start of
  markup is never shown, with a warning; prose that merely ends in `<` or `</` stays as written.

Read whole and in 2-character chunks: both give the same. Templates are official ones (../shared and llama.cpp's);
`test_malformed_ends_read_alike_on_every_template` checks both rules on every real template whose analysis reads
reasoning tags, a channel format (a message end with no message open; text after a message end with no new header
is the answer) or call triggers, on the turn ends, the reasoning close and each call trigger cut short.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

import turnspec

from helpers.paths import need
from helpers.corpus_models import corpus_spec
from helpers.reading import everything, read_every_way

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


# -- every syntax of every real template: the same two rules -----------------------------------------------------

def _every_template():
    from helpers.corpus_models import template_files

    try:
        files = template_files()
    except OSError:
        files = []
    return [*files, *sorted(LLAMACPP.glob("*.jinja"))]


def _spec_of(path: Path):
    from helpers.corpus_models import special_tokens_for

    return turnspec.from_template(need(path).read_text(encoding="utf-8"), name=path.stem,
                                  special_tokens=special_tokens_for(path))


def _symbolic_partial(marker: str) -> str:
    """The marker cut before its last character, when the rule applies to it (a start of markup: three characters
    or more, starting with a bracket or symbol, with a letter in it); else ''."""
    cut = marker[:-1]
    return cut if len(cut) >= 3 and not cut[0].isalnum() and not cut[0].isspace() and any(
        c.isalpha() for c in cut) else ""


def _read_on(spec, prompt: str, output: str):
    return read_every_way(lambda: spec.reader(prompt), output, chunk=2, same=everything)


@pytest.mark.slow
@pytest.mark.parametrize("path", _every_template(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_malformed_ends_read_alike_on_every_template(path):
    """Whatever the syntax (reasoning tags, a channel format, call triggers): a closing marker with nothing open is
    never shown and the text around it stays the answer, with a warning; an output that ends inside a marker never
    shows that start of markup, with a warning. Templates the analysis cannot read are skipped, named."""
    spec = _spec_of(path)
    a = spec.analysis
    if a.error:
        pytest.skip(f"the analysis of {path.name} failed: {a.error}")
    extra = {k: "" for k in a.requires if k != "tools"}
    if "tools" in a.requires:  # tool_use templates render nothing without tools: the analysis probed with these
        from turnspec.analysis.probes import TOOLS

        extra["tools"] = TOOLS
    prompt = spec.render([{"role": "user", "content": "Hi"}], add_generation_prompt=True, **extra)
    r, checked = a.reasoning, 0
    answer = "The answer is 4."
    if r.kind == "tags" and not r.prompt_opens:
        result = _read_on(spec, prompt, f"Let me see.{r.close}{answer}")
        assert (result.content, result.reasoning) == ("Let me see." + answer, "")
        assert any("closing reasoning marker" in w for w in result.warnings), result.warnings
        checked += 1
    lead = (f"Two plus two.{r.close}" if r.prompt_opens else f"{r.open}Two plus two.{r.close}") \
        if r.kind == "tags" else ""
    if a.channels is not None:
        ch = a.channels
        result = _read_on(spec, prompt, f"Let me see.{ch.message_end}{answer}")
        assert (result.content, result.reasoning) == ("Let me see." + answer, "")
        assert any(ch.message_end in w for w in result.warnings), result.warnings
        lead = f"{ch.header(ch.reasoning)}{ch.message}Two plus two.{ch.message_end}{ch.head}{ch.header(ch.content)}" \
               f"{ch.message}"
        checked += 1
    ends = [m for m in (r.close if r.kind == "tags" else "", *a.turn_ends) if m]
    ends += [t for c in a.tools.calls for t in c.triggers]
    for marker in dict.fromkeys(ends):
        cut = _symbolic_partial(marker)
        if not cut or cut in answer:
            continue
        result = _read_on(spec, prompt, f"{lead}{answer}{cut}")
        assert result.content == answer and not result.tool_calls, (marker, result)
        assert result.reasoning == ("Two plus two." if lead else "")
        assert result.warnings == [f"the output ended inside a marker ({cut!r}): not shown"], (marker, result.warnings)
        checked += 1
    if not checked:
        pytest.skip(f"{path.name}: no reasoning markers, channel format or call trigger to cut")


# -- Hypothesis: prose with marker-like text is never reasoning or calls; streamed == whole ----------------------
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

PROSE_TEMPLATES = [*sorted(SYNTAXES), "Kimi-K2-Thinking.jinja", "HuggingFaceTB-SmolLM3-3B.jinja", "Apertus-8B-Instruct.jinja",
                   "upstage-Solar-Open-100B.jinja"]


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
