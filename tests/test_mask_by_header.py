"""The structural mask (the k-th assistant header starts the k-th turn) must equal the aligned mask.

`universal_spans` skips rendering each turn's prompt for plain conversations on templates whose probes show the two
methods agree (`mask_by_header`). Here random plain conversations — one-letter messages, words of the templates'
own default system prompts, leading and trailing whitespace, long exchanges — are encoded both ways on every
real template in ../shared that qualifies; both must be exact and the same.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import turnspec
from turnspec.encoding import _spans, mask_by_header, plain_conversation, spans_by_header

from helpers.paths import SMOLLM2_DIR
from helpers.corpus_models import special_tokens_for, template_files, template_id

TEMPLATES = {template_id(p): p for p in template_files()}
_SPECS: dict[str, turnspec.ModelSpec] = {}


def spec_for(name: str) -> turnspec.ModelSpec:
    if name not in _SPECS:
        path = TEMPLATES[name]
        _SPECS[name] = turnspec.load(path.parent) if path.name == "chat_template.jinja" else \
            turnspec.from_template(path.read_text(), name=name, special_tokens=special_tokens_for(path))
    return _SPECS[name]


QUALIFIED = [n for n in sorted(TEMPLATES) if mask_by_header(spec_for(n))]
WORDS = ["a", "b", "I", "x", "You", "are", "a helpful", "assistant", "SmolLM", "user", "\n", " ", "ok", "Paris",
         "model", "system", "the"]
text = st.lists(st.sampled_from(WORDS), min_size=1, max_size=6).map(" ".join).filter(lambda t: t.strip())


@st.composite
def conversations(draw):
    messages = [{"role": "system", "content": draw(text)}] if draw(st.booleans()) else []
    for _ in range(draw(st.integers(1, 4))):
        messages += [{"role": "user", "content": draw(text)}, {"role": "assistant", "content": draw(text)}]
    if draw(st.booleans()):
        messages.append({"role": "user", "content": draw(text)})
    return messages


def test_many_real_templates_qualify():
    assert len(QUALIFIED) >= 15, QUALIFIED
    assert "smollm2-135m-instruct" in QUALIFIED or not SMOLLM2_DIR.exists()


@pytest.mark.parametrize("name", QUALIFIED)
@settings(max_examples=25, deadline=None)
@given(messages=conversations())
def test_structure_equals_alignment(name, messages):
    spec = spec_for(name)
    try:
        text = spec.render(messages)
    except turnspec.TemplateError:
        return  # a shape this template refuses (alternation, system role)
    assert plain_conversation(messages, spec.markup)
    slow, exact, notes = _spans(spec, messages, text, {}, mask_prompt_supplied=True)
    fast = spans_by_header(spec, messages, text, mask_prompt_supplied=True)
    assert exact, notes  # short texts inside other messages (a user's "a" in the answer) do not confuse alignment
    assert fast == slow, (name, messages)


def test_markup_in_a_message_takes_the_aligned_path():
    spec = spec_for(QUALIFIED[0])
    assert not plain_conversation([{"role": "user", "content": "a <think> b"}], spec.markup)
    assert not plain_conversation([{"role": "user", "content": " "}], spec.markup)
    assert not plain_conversation([{"role": "tool", "content": "x"}], spec.markup)
    assert plain_conversation([{"role": "user", "content": "a [link](x) <b"}], spec.markup)
