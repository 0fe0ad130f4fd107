"""Export a template analysis as a transformers `response_template` (transformers >= 5.13, `parse_response`).

A user of plain transformers (or vLLM, which reads the same format) then gets what turnspec learned from rendering:

    tokenizer.response_template = spec.response_template()
    message = tokenizer.parse_response(output, prefix=prompt, tools=tools)

The format is a flat list of regions of one message (an opening and closing delimiter, a content parser, a
transform), so only what fits it is exported; anything else raises a `TurnspecError` naming the feature, never an
approximate template: Harmony's channels (one message per channel), calls whose name is a JSON key, arguments
written as a JSON string, a name with text glued after it inside a pythonic call, an answer prefix.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import TurnspecError
from .syntax import ANY, ID, INDEX, KEY, NAME, CallSyntax, Pattern, TemplateAnalysis, literal_text

_CALL = {"type": "function", "function": {"name": "{name}", "arguments": "{arguments}"}}


def response_template(analysis: TemplateAnalysis) -> dict[str, Any]:
    """The `response_template` dict for `analysis`; raises TurnspecError when the syntax has no equivalent."""
    if analysis.error:
        raise TurnspecError(f"no response_template: the template could not be analyzed ({analysis.error})")
    if analysis.channels is not None:
        raise TurnspecError("no response_template: a channel format (Harmony and its kin) writes each channel as its "
                            "own message, which a response_template (regions of one message) cannot express")
    if analysis.content_prefix:
        raise TurnspecError(f"no response_template: answers start with the plain text {analysis.content_prefix!r}, "
                            "which the format cannot tell from content")
    ends = [e for e in (*analysis.turn_ends, *analysis.end_strings) if e.strip()]
    fields: dict[str, Any] = {}
    r = analysis.reasoning
    if r.kind == "tags":
        label = rf"(?:{re.escape(r.label)}(?=\s))?" if r.label else ""
        fields["reasoning_content"] = {"open_pattern": re.escape(r.open) + label, "close": r.close}
    c = analysis.content
    if c.open and (c.close or ends):  # the answer's own markers (a template may end it with the turn only)
        fields["content"] = {"open": c.open, "close": c.close or ends, "repeats": True, "join": ""}
    else:
        fields["content"] = {"repeats": True, "join": ""}
        if r.kind == "tags":  # a stray closing tag is dropped, never shown
            fields["content"]["close"] = r.close
    if analysis.tools.calls:
        fields["tool_calls"] = _calls(analysis.tools.calls[0], ends)
    others = [g for g in analysis.guards if g.strip()]  # another role's header ends the message too
    if ends or others:  # what follows is not the message (a template may write the next header after it)
        fields["end_of_turn"] = {"open": list(dict.fromkeys(ends + others)), "transform": ""}
    anchor: dict[str, Any] = ({"start_anchor": analysis.assistant_header} if analysis.assistant_header.strip()
                              else {"start_anchor_pattern": r"\Z"})  # no header: the output starts the message
    return {"version": 1, "defaults": {"role": "assistant"}, **anchor, "fields": fields}


def _calls(s: CallSyntax, ends: list[str]) -> dict[str, Any]:
    """The `tool_calls` field for one call syntax."""
    section = ""  # a section opener before the first call: required when the call has no opener of its own
    if s.section_open.strip():
        section = _lenient(s.section_open) if not _literal(s.call_open).strip() else rf"(?:{_lenient(s.section_open)})?"
    section_end = rf"(?:{_lenient(s.section_close)})?" if s.section_close.strip() else ""
    stop = "|".join([*(re.escape(t) for t in s.triggers), *(re.escape(e) for e in ends)])
    until_next = f"(?={stop})" if stop else ""  # a call with no closer runs until the next call or the turn end
    if s.shape == "json":
        if s.name_is_key:
            raise TurnspecError("no response_template: the call's name is a JSON key ({\"name\": {arguments}}), "
                                "which a transform cannot read")
        if s.args_as_string:
            raise TurnspecError("no response_template: the arguments are written as a JSON string, which a "
                                "transform cannot decode")
        name = "{content." + ".".join(s.json_name) + "}"
        args = "{content." + ".".join(s.json_args) + "}"
        if not all(re.fullmatch(r"\w+", k) for k in (*s.json_name, *s.json_args)):
            raise TurnspecError("no response_template: the call's keys are not plain words")
        opener = section + _pattern(s.call_open) if s.call_open or section else ""
        if not opener.strip():
            if s.triggers:
                opener = "|".join(re.escape(t) for t in s.triggers)
            else:  # Llama 3: a bare JSON object that starts the turn
                opener = r"(?=\{\s*\"" + re.escape(s.json_name[0]) + '")'
        closer = (_pattern(s.call_close) + section_end if _literal(s.call_close).strip() else
                  _lenient(s.section_close) if s.section_close.strip() else until_next)
        field: dict[str, Any] = {"open_pattern": opener, "content": "json"}
        if closer:
            field["close_pattern"] = closer
        if s.list_wrapped:
            item = {"type": "function", "function": {"name": "{" + s.json_name[-1] + "}",
                                                     "arguments": "{" + s.json_args[-1] + "}"}}
            if len(s.json_name) > 1 or len(s.json_args) > 1:
                raise TurnspecError("no response_template: list items with nested name paths")
            return {**field, "transform": item, "transform_each": True}
        return {**field, "repeats": True,
                "transform": {"type": "function", "function": {"name": name, "arguments": args}}}
    if s.shape == "pythonic":
        if _literal(s.between).strip():
            raise TurnspecError(f"no response_template: the template writes {_literal(s.between)!r} after a "
                                "pythonic call's name, which the python-call-list parser does not allow")
        field = {"open_pattern": section + (_pattern(s.call_open) or r"(?=\[)"), "content": "python-call-list",
                 "transform": _CALL, "transform_each": True}
        if not s.list_wrapped:
            raise TurnspecError("no response_template: pythonic calls without the surrounding list")
        closer = (_pattern(s.call_close) + section_end if _literal(s.call_close).strip() else
                  _lenient(s.section_close) if s.section_close.strip() else until_next)
        return {**field, "close_pattern": closer} if closer else field
    # tagged: the name in the opener, the arguments as JSON or tagged parameters
    opener = section + _pattern(s.call_open + (NAME,) + s.between, named=True)
    closer = (_pattern(s.call_close) + section_end if _literal(s.call_close).strip() else until_next)
    field = {"open_pattern": opener, "repeats": True, "transform": {
        "type": "function", "function": {"name": "{name}", "arguments": "{content}"}}}
    if closer:
        field["close_pattern"] = closer
    p = s.params
    if s.args != "params" or p is None:
        return {**field, "content": "json"}
    if p.string_quote and p.open.strip() == "{":  # Gemma 4: {key:<|"|>text<|"|>,n:3}
        return {**field, "content": "json", "content_args": {
            "unquoted_keys": True, "string_delims": [[p.string_quote, p.string_quote]]}}
    if p.open.strip() or p.string_quote:
        raise TurnspecError("no response_template: tagged parameters inside a bracketed notation")
    tag = (_pattern(p.key_prefix) + r"(?P<key>.+?)" + _pattern(p.key_suffix) + r"(?P<value>.*?)"
           + _pattern(p.value_suffix))
    return {**field, "content": "xml-inline", "content_args": {"tag_pattern": tag}}


def _literal(pattern: Pattern) -> str:
    return literal_text(pattern)


def _lenient(literal: str) -> str:
    """A literal where the template's whitespace may be any whitespace (models drop newlines)."""
    parts = [re.escape(p) for p in re.split(r"\s+", literal) if p]
    return r"\s*" + r"\s*".join(parts) + r"\s*" if parts else ""


def _pattern(pattern: Pattern, named: bool = False) -> str:
    """Regex for a pattern's literals and holes; with `named`, the name is captured as `name`."""
    out: list[str] = []
    parts = list(pattern)
    i = 0
    while i < len(parts):
        part = parts[i]
        if part == NAME:
            out.append(r"(?P<name>[^\s<>\[\]{}()\"':,=]+)" if named else r"[^\s<>]+")
        elif part == INDEX:
            out.append(r"\d+")
        elif part == ANY:
            out.append(r"[^\n<>]*?")
        elif part == ID:
            out.append(r"[\w\-]+")
        elif part == KEY:  # the closing names the key it closes (`</{key}>`)
            out.append(r"(?P=key)")
        elif i + 1 < len(parts) and parts[i + 1] == ID:  # ids are optional: models rarely write them
            out.append(rf"(?:{_lenient(part) or re.escape(part)}[\w\-]+)?")
            i += 1
        else:
            out.append(_lenient(part))
        i += 1
    return "".join(out)
