"""A forced tool call as a grammar tree, written the way the template writes calls (its `CallSyntax`).

Every shape the template analysis learns is covered: JSON call objects (name and arguments at their key paths,
or the name as the only key; one object per call or one list of them), tagged calls (`open NAME between ARGS
close`, arguments as one JSON object or as tagged parameters) and pythonic lists (`[name(key=value)]`).
Literals are the template's exact text. Arguments are JSON for the tool's parameter schema, so the library's own
JSON-schema compiler enforces it; tagged string parameters are free text up to the template's closer.

Two deliberate departures, both read back by the reader: arguments the template writes as a JSON *string*
(`args_as_string`) are generated as an object (a schema cannot be enforced inside an escaped string); a call id
(`ID` hole) is optional, as it is for the reader. A template without a readable call syntax gets the generic
form `{"name": ..., "arguments": {...}}`, which the reader accepts as a loose call naming a declared tool.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..analysis.syntax import ANY, ID, INDEX, NAME, CallSyntax, Pattern, literal_text, with_key
from .grammar import Alt, Chars, Json, Lit, Node, Opt, Rule, Seq, Through, alt, members, seq
from .schema import ConstraintError

MAX_PARALLEL_CALLS = 8
_ID_CHARS = Chars("A-Za-z0-9_-", 1, 24)
GENERIC_SYNTAX = CallSyntax("json")  # {"name": ..., "arguments": {...}}
# A name written as template text (not inside a JSON string) must not hold what would end or break it there.
TEXT_NAME = re.compile(r"[A-Za-z0-9_.:-]+")


@dataclass(frozen=True)
class Tool:
    """A declared function: its name and its parameters' JSON schema (always an object schema)."""

    name: str
    parameters: dict[str, Any]


def pattern(parts: Pattern, name: str) -> Node:
    """A CallSyntax pattern with the holes filled: the name, an optional id, a small index, a short free run."""
    out: list[Node | str] = []
    i = 0
    while i < len(parts):
        part = parts[i]
        if part == NAME:
            out.append(name)
        elif part == INDEX:
            out.append(Chars("0-9", 1, 3))
        elif part == ANY:
            out.append(Chars("A-Za-z0-9_-", 0, 24))
        elif part == ID:
            out.append(Opt(_ID_CHARS))
        elif i + 1 < len(parts) and parts[i + 1] == ID:
            out.append(Opt(seq(part, _ID_CHARS)))  # "[CALL_ID]" + id: written together or not at all
            i += 1
        else:
            out.append(part)
        i += 1
    return seq(*out)


def _leading_literal(parts: Pattern) -> str:
    lead = []
    for part in parts:
        if part in (NAME, ID, INDEX, ANY):
            break
        lead.append(part)
    return "".join(lead)


def strip_lead(node: Node, written: str) -> Node:
    """`node` without the text `written` at its start (what the prompt already wrote of it)."""
    if not written:
        return node
    if isinstance(node, Lit):
        return Lit(node.text[len(written):]) if node.text.startswith(written) else node
    if isinstance(node, Seq):
        first, rest = node.items[0], node.items[1:]
        if isinstance(first, Lit) and written.startswith(first.text) and len(written) > len(first.text):
            return strip_lead(seq(*rest), written[len(first.text):])
        return seq(strip_lead(first, written), *rest)
    if isinstance(node, Alt):
        return alt(*(strip_lead(i, written) for i in node.items))
    if isinstance(node, Rule):
        return Rule(f"{node.name}_after_prompt", strip_lead(node.body, written))
    return node


def already_written(prompt_tail: str, lead: str) -> str:
    """The longest end of the prompt that is a start of `lead` (functionary's prompt ends with the call opener)."""
    for k in range(min(len(prompt_tail), len(lead)), 0, -1):
        if prompt_tail.endswith(lead[:k]):
            return lead[:k]
    return ""


class CallGrammar:
    """Builds the grammar of one turn's forced calls for one syntax and the request's tools."""

    def __init__(self, syntax: CallSyntax | None, tools: list[Tool]):
        if not tools:
            raise ConstraintError("tool_choice forces a call, but the request declares no tools", param="tools")
        self.syntax = syntax or GENERIC_SYNTAX
        self.generic = syntax is None
        self.tools = tools
        if self._name_as_text():
            for tool in tools:
                if not TEXT_NAME.fullmatch(tool.name):
                    raise ConstraintError(f"tools: the name {tool.name!r} cannot be written in this template's call "
                                          "syntax (it writes names as plain text); use letters, digits and _ . : -",
                                          param="tools")

    def _name_as_text(self) -> bool:
        """True when the template writes a call's name as text rather than as a JSON string (escaped there)."""
        s = self.syntax
        if s.shape != "json":
            return True
        patterns = (s.call_open, s.call_close, s.between)
        return any(NAME in p for p in patterns)

    def section_lead(self) -> str:
        """The literal text every forced turn starts with (section opener and the first call's opener)."""
        s = self.syntax
        if s.shape == "json" and s.list_wrapped:
            return s.section_open + _leading_literal(s.call_open) + "["
        return s.section_open + _leading_literal(s.call_open)

    def turn(self, *, max_calls: int = 1) -> Node:
        """The calls of a turn: the section, one call (or up to `max_calls`), the section's close (`strip_lead`
        takes off what the prompt already wrote of it)."""
        s = self.syntax
        if s.list_wrapped and s.shape == "json":
            schemas = [self._call_schema(t) for t in self.tools]
            items = schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
            calls = Json.of({"type": "array", "items": items, "minItems": 1, "maxItems": max_calls},
                            compact=self.generic)
            return seq(s.section_open, pattern(s.call_open, ""), calls, pattern(s.call_close, ""), s.section_close)
        one = Rule("call", alt(*(self._call(t) for t in self.tools)))
        if s.list_wrapped:
            calls_node: Node = seq(one, *(Opt(seq(", ", one)) for _ in range(max_calls - 1)))
            body = seq(s.section_open, pattern(s.call_open, ""), "[", calls_node, "]", pattern(s.call_close, ""),
                       s.section_close)
        else:
            body = seq(s.section_open, one, *(Opt(seq(s.separator, one)) for _ in range(max_calls - 1)),
                       s.section_close)
        return body

    # -- one call of one tool --
    def _call(self, tool: Tool) -> Node:
        s = self.syntax
        call_open = s.call_open
        if s.shape == "json":
            body = Rule(f"call_{tool.name}", Json.of(self._call_schema(tool), compact=self.generic))
            return seq(pattern(call_open, tool.name), body, pattern(s.call_close, tool.name))
        if s.shape == "pythonic":
            return seq(pattern(call_open, tool.name), tool.name, pattern(s.between, tool.name), "(",
                       self._pythonic_args(tool), ")", pattern(s.call_close, tool.name))
        head = seq(pattern(call_open + (NAME,), tool.name), pattern(s.between, tool.name))
        args = self._params(tool) if s.args == "params" and s.params is not None else _args_rule(tool)
        return seq(head, args, pattern(s.call_close, tool.name))

    def _call_schema(self, tool: Tool) -> dict[str, Any]:
        """One call object as a JSON schema: the name (a constant) and the arguments at the template's key paths,
        nothing else; the JSON compiler then writes it, whitespace included, as it writes any JSON."""
        s = self.syntax
        if s.name_is_key:
            return _object({tool.name: tool.parameters})
        return _merge(_at(s.json_name, {"const": tool.name}), _at(s.json_args, tool.parameters))

    def _pythonic_args(self, tool: Tool) -> Node:
        props, required = _properties(tool)
        items = [seq(f"{key}=", Json.of(schema)) for key, schema in props]
        return members(items, required, ", ")

    def _params(self, tool: Tool) -> Node:
        p = self.syntax.params
        assert p is not None
        props, required = _properties(tool)
        items = []
        for key, schema in props:
            closer = literal_text(with_key(p.value_suffix, key))  # `</{key}>` closes with the key itself
            head = seq(pattern(p.key_prefix, tool.name), key, pattern(p.key_suffix, tool.name))
            items.append(seq(head, _param_value(tool.name, key, schema, closer, p.string_quote)))
        return seq(p.open, members(items, required, p.separator), p.close)


def _args_rule(tool: Tool) -> Node:
    return Rule(f"args_{tool.name}", Json.of(tool.parameters))


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def _at(path: tuple[str, ...], schema: dict[str, Any]) -> dict[str, Any]:
    for key in reversed(path):
        schema = _object({key: schema})
    return schema


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two `_at` objects as one (`{"function": {"name"...}}` and `{"function": {"arguments"...}}` share a key)."""
    props = dict(a["properties"])
    for key, sub in b["properties"].items():
        props[key] = _merge(props[key], sub) if key in props and "properties" in props[key] else sub
    return _object(props)


def _properties(tool: Tool) -> tuple[list[tuple[str, dict[str, Any]]], list[bool]]:
    """The parameters in schema order, required ones first (as llama.cpp's converter orders object members)."""
    params = tool.parameters
    props = params.get("properties") or {}
    required = set(params.get("required") or ())
    ordered = [(k, v if isinstance(v, dict) else {}) for k, v in props.items() if k in required]
    ordered += [(k, v if isinstance(v, dict) else {}) for k, v in props.items() if k not in required]
    return ordered, [k in required for k, _ in ordered]


def _param_value(tool: str, key: str, schema: dict[str, Any], closer: str, quote: str) -> Node:
    """A tagged parameter's value and its closer: text for strings (a choice for enums), JSON otherwise."""
    if not closer.strip():
        raise ConstraintError(f"{tool}.{key}: this template's tagged parameters have no closing text, so a value "
                              "cannot be constrained", param="tools")
    if "enum" in schema or "const" in schema:
        values = schema.get("enum", [schema.get("const")])
        if all(isinstance(v, str) for v in values):
            return seq(alt(*(quote + v + quote for v in values)), closer)
    kind = schema.get("type")
    if kind == "string" or kind is None and not any(k in schema for k in ("properties", "items", "anyOf", "oneOf")):
        for keyword in ("pattern", "format", "minLength", "maxLength"):
            if keyword in schema:
                raise ConstraintError(f"tools: {tool}.{key} uses '{keyword}', which cannot be enforced on a "
                                      "tagged text parameter in this template's call syntax", param="tools")
        if quote:
            return seq(quote, Through(quote), closer)
        return Through(closer)
    return seq(Json.of(schema), closer)
