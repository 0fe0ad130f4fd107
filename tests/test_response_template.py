"""`spec.response_template()`: the analysis exported as a transformers `response_template`, proven with
transformers' own parser. For every template in ../shared (and llama.cpp's test templates in data/) whose analysis
reads reasoning or calls, each assistant
message the round trip renders (an answer, an answer with reasoning, one call, two calls) is parsed back by
`transformers.utils.chat_parsing.parse_response(output, template, prefix=prompt, tools=tools)` and must equal the
message. Templates the format cannot express raise a one-line TurnspecError and are listed with the reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import turnspec

from helpers.corpus_models import special_tokens_for, template_files, template_id
from helpers.roundtrip import CASES, CONVERSATION, _render, expected, tools_for

pytest.importorskip("transformers.utils.chat_parsing", reason="transformers >= 5.13 has parse_response")

#: Templates whose syntax a response_template cannot express, and the feature that prevents it.
NOT_EXPRESSIBLE = {
    "Apertus-8B-Instruct": "the call's name is a JSON key",
    "meetkai-functionary-medium-v3.2": "answers start with the plain text",
    "openai-gpt-oss-120b": "a channel format .Harmony and its kin. writes each channel as its own message",
    "MiniMax-M1": "answers start with the plain text",
    "muse-glimmer": "a channel format .Harmony and its kin. writes each channel as its own message",
}

LLAMACPP = sorted((Path(__file__).parent / "data" / "llamacpp_templates").glob("*.jinja"))
FILES = template_files() + LLAMACPP


def _spec(path):
    return turnspec.from_template(path.read_text(encoding="utf-8"), special_tokens=special_tokens_for(path))


def _reads_something(spec) -> bool:
    a = spec.analysis
    return a.reasoning.kind != "none" or bool(a.tools.calls)


def _prefix_and_output(spec, prompt: str, output: str) -> tuple[str, str]:
    """Where the round trip cut the assistant header in two (Command-R+ writes an instruction turn into its
    generation prompt only), the real generation prompt is the prefix and the turn after the header the output."""
    header = spec.analysis.assistant_header
    joined = prompt + output
    at = joined.find(header, max(0, len(prompt) - len(header) + 1)) if header.strip() else -1
    if 0 <= at < len(prompt) < at + len(header):
        real = spec.render(CONVERSATION, add_generation_prompt=True, tools=tools_for(spec))
        return real, joined[at + len(header):]
    return prompt, output


@pytest.mark.parametrize("path", FILES, ids=[template_id(p) + (" (llama.cpp)" if p in LLAMACPP else "")
                                             for p in FILES])
def test_transformers_parses_back_every_rendered_message(path):
    from transformers.utils.chat_parsing import parse_response

    spec = _spec(path)
    if not _reads_something(spec):
        pytest.skip("the analysis reads neither reasoning nor calls")
    name = template_id(path)
    if name in NOT_EXPRESSIBLE:
        with pytest.raises(turnspec.TurnspecError, match=NOT_EXPRESSIBLE[name]):
            spec.response_template()
        return
    template = spec.response_template()
    checked = 0
    for case in CASES:
        rendered = _render(spec, case)
        if isinstance(rendered, str):
            continue  # the template does not render this case (the round trip reports why)
        if expected(case)[2] and not spec.analysis.tools.calls:
            continue  # calls turnspec itself does not read (the analysis says why): nothing to export
        prefix, output = _prefix_and_output(spec, *rendered)
        message = parse_response(output, template, prefix=prefix, tools=tools_for(spec))
        content, reasoning, calls = expected(case)
        assert message.get("content", "").strip() == content, case
        assert message.get("reasoning_content", "").strip() == reasoning, case
        assert [(c["function"]["name"], c["function"]["arguments"]) for c in message.get("tool_calls", [])] \
            == calls, case
        checked += 1
    if not checked:
        pytest.skip("the template renders none of the round trip's messages (the round trip reports why)")


def test_the_export_is_plain_json_data():
    import json

    spec = _spec(next(p for p in FILES if p.stem == "Qwen3-Coder"))
    template = spec.response_template()
    assert json.loads(json.dumps(template)) == template
    assert template["start_anchor"] == "<|im_start|>assistant\n"
    assert template["fields"]["tool_calls"]["content"] == "xml-inline"


def test_a_template_with_nothing_to_read_still_exports_its_answer():
    spec = _spec(next(p for p in FILES if p.stem == "google-gemma-2-2b-it"))
    from transformers.utils.chat_parsing import parse_response

    prompt = spec.render([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    message = parse_response("Hello!<end_of_turn>\n", spec.response_template(), prefix=prompt)
    assert message == {"role": "assistant", "content": "Hello!"}
