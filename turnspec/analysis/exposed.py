"""Which request values a template copies into its markup (a role or tool name inside a turn header).

turnspec tokenizes message content so that control strings in it stay text (turnspec.content_text), but a value
the template writes into a header still sits where the model reads structure: Harmony writes a tool call's name
into `<|start|>assistant to=functions.{name}<|channel|>`, ChatML writes the role after `<|im_start|>`. Plain text
there (a name like `x to=functions.other`) is read as header by the model; no control token is needed for that.
This module finds such places by rendering sentinel values, so the onboarding report can say what is exposed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import TurnspecError

if TYPE_CHECKING:
    from ..speclike import SpecLike

_FIELDS = {"tsxrole": "a message's role", "tsxname": "a message's name", "tsxtool": "a tool name",
           "tsxcallid": "a tool call id"}
_TOOL = {"type": "function", "function": {"name": "tsxtool", "description": "tsx_desc",
                                          "parameters": {"type": "object", "properties": {"a": {"type": "string"}}}}}


def _probes() -> list[tuple[list[dict[str, Any]], Any]]:
    call = {"id": "tsxcallid", "type": "function", "function": {"name": "tsxtool", "arguments": {"a": "tsx_arg"}}}
    return [
        ([{"role": "user", "content": "tsx_u1"}, {"role": "tsxrole", "content": "tsx_r"}], None),
        ([{"role": "user", "name": "tsxname", "content": "tsx_u2"}], None),
        ([{"role": "user", "content": "tsx_u3"}, {"role": "assistant", "content": "", "tool_calls": [call]},
          {"role": "tool", "tool_call_id": "tsxcallid", "name": "tsxtool", "content": "tsx_res"}], [_TOOL]),
    ]


def content_in_markup(spec: SpecLike) -> list[str]:
    """One line per request field the template writes on a control token's line (a header), with where:
    `a tool name: <|start|>assistant to=functions.{tool name}<|channel|>`. Empty when none is. Learned with the
    analysis (`TemplateAnalysis.exposed`)."""
    return list(spec.analysis.exposed)


def learn_exposed(prober: Any, markup: Any) -> tuple[str, ...]:
    """`content_in_markup`, rendered through the analysis's Prober."""
    found: dict[str, list[str]] = {}
    for messages, tools in _probes():
        try:
            text = prober.render(messages, tools=tools, add_generation_prompt=True)
        except TurnspecError:
            continue
        spans = markup.spans(text)
        for sentinel, field in _FIELDS.items():
            at = text.find(sentinel)
            while at >= 0:
                context = _header_context(text, at, len(sentinel), spans)
                if context is not None:
                    shown = context.replace(sentinel, "{" + field.split(" ", 1)[1].removeprefix("message's ") + "}")
                    found.setdefault(field, [])
                    if shown not in found[field]:
                        found[field].append(shown)
                at = text.find(sentinel, at + 1)
    return tuple(f"{field}: {' ; '.join(contexts[:3])}" for field, contexts in found.items())


def _header_context(text: str, at: int, length: int, spans: list[Any]) -> str | None:
    """The header line around `text[at:at+length]`: from the control token before it on the same line to the next
    control token or line break; None when no control token precedes it on its line (it is in a body)."""
    before = [s for s in spans if s.end <= at]
    if not before or "\n" in text[before[-1].end:at]:
        return None
    start = max(before[-1].start, at - 48)
    after = [s for s in spans if s.start >= at + length]
    line_end = text.find("\n", at + length)
    stop = min([e for e in (after[0].end if after else -1, line_end, at + length + 48) if e >= 0])
    return ("…" if start > before[-1].start else "") + text[start:stop] + ("…" if stop == at + length + 48 else "")
