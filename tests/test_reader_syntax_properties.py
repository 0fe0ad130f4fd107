"""Properties of the reader on every syntax the template analysis learns from ../shared/corpus.

Outputs are random: made of each template's own markers (from its analysis), call pieces and prose characters.
Whatever the output, reading it in random chunks gives the same result as reading it whole, arguments are
always JSON objects, and the syntax's own tokens never show in the answer. Prose made of `{`, `[`, `<`, quotes
and words never becomes a call, with tools declared or not.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from turnspec.analysis import markup_for
from turnspec.analysis.syntax import HOLES
from turnspec.reader import config_for, StreamReader
from turnspec.reader.events import collect

from helpers.paths import CORPUS
from helpers.corpus_models import corpus_spec

TEMPLATES = sorted(p.name for p in (CORPUS / "templates").glob("*.jinja"))
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {
    "city": {"type": "string"}, "days": {"type": "integer"}}}}}
PIECES = ["get_weather", "city", "days", "Paris", "3", '"', ":", ",", "{", "}", "[", "]", "(", ")", "=", "<", ">",
          '{"city": "Paris"}', '{"name": "get_weather", "arguments": {"city": "Paris"}}', "get_weather(city='Paris')",
          "a", " b", "\n", "\n\n", "é", "👋", "```", "```json\n"]
_cache: dict[str, tuple] = {}


def reader_parts(name: str):
    """(config, the syntax's literals as fragments, its markup tokens) for a corpus template."""
    if name not in _cache:
        spec = corpus_spec(name)
        a = spec.analysis
        literals: list[str] = [a.reasoning.open, a.reasoning.close, a.content.open, a.content.close]
        for c in a.tools.calls:
            literals += [c.section_open, c.section_close, *c.call_open, *c.call_close, *c.between, c.separator]
            if c.params is not None:
                literals += [*c.params.key_prefix, *c.params.key_suffix, *c.params.value_suffix, c.params.separator]
        literals = [x for x in dict.fromkeys(literals) if x and x not in HOLES]
        markup = markup_for(spec)
        tokens = {s.text for lit in literals for s in markup.spans(lit)}
        config = config_for(spec, "", declared_tools=[WEATHER])
        _cache[name] = (config, literals, tokens)
    return _cache[name]


def read_in_chunks(config, text: str, cuts: list[int]):
    r = StreamReader(config)
    events = []
    bounds = [0, *sorted({c % (len(text) + 1) for c in cuts}), len(text)]
    for a, b in zip(bounds, bounds[1:]):
        events += r.feed_text(text[a:b])
    events += r.finish()
    return r.result, events


@pytest.mark.parametrize("name", TEMPLATES)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_streamed_equals_whole_on_every_learned_syntax(name, data):
    config, literals, tokens = reader_parts(name)
    fragments = data.draw(st.lists(st.sampled_from(literals + PIECES), max_size=25))
    cuts = data.draw(st.lists(st.integers(0, 500), max_size=10))
    text = "".join(fragments)
    whole = StreamReader(config).read_all(text)
    streamed, events = read_in_chunks(config, text, cuts)
    assert streamed == whole == collect(events)
    for call in whole.tool_calls:
        assert isinstance(call.arguments, dict) and call.name
    syntax_tokens = {t for t in tokens if not t.isalnum()}
    assert not any(t in whole.content for t in syntax_tokens), (text, whole.content)


PROSE = st.lists(st.sampled_from(["Use", " the", " weather", " tool", " get", "_", "weather", "{", "}", "[", "]",
                                  "<", ">", "(", ")", ":", ",", ".", " ", "\n", "x", "1", "é", "=", "/", "|"]),
                 min_size=1, max_size=40)


@pytest.mark.parametrize("name", TEMPLATES)
@settings(max_examples=60, deadline=None)
@given(words=PROSE, cuts=st.lists(st.integers(0, 200), max_size=8))
def test_prose_with_brackets_never_becomes_a_call(name, words, cuts):
    config, _, _ = reader_parts(name)
    text = "".join(words)
    if any(c.start_anchored and c.shape == "tagged" for c in config.call_syntaxes):
        pytest.skip("in this syntax (functionary's `name\\n{…}` after >>>) any name-first line at the turn start is a call")
    result, _ = read_in_chunks(config, text, cuts)
    assert not result.tool_calls and not result.errors
    assert result.content.strip() == text.strip()


def test_an_opener_written_twice_is_not_a_call_named_after_it():
    """Functionary v3.2 opens a call with `>>>name\\n`; `>>>>>>{…}` names no function (a name holds a letter, digit
    or underscore), so whole and streamed both leave it as text, never a call named `>>>`. Found by the property
    above (cut after 4 characters, the streamed read already gave the text)."""
    config, _, _ = reader_parts("meetkai-functionary-medium-v3.2.jinja")
    text = '>>>>>>{"city": "Paris"}'
    whole = StreamReader(config).read_all(text)
    streamed, _ = read_in_chunks(config, text, [4])
    assert whole == streamed and whole.tool_calls == [] and whole.content == text
