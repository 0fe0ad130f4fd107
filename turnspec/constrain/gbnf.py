"""Compile a grammar tree (grammar.py) to llama.cpp's GBNF.

JSON values come from llama-cpp-python's own JSON-schema converter (`llama_cpp.llama_grammar.SchemaConverter`,
the port of llama.cpp's json-schema-to-grammar); one converter serves every JSON part of a grammar, so its
primitive rules (string, number, space...) are shared. Control tokens in literals are written as token
references (`<[id]>`), so a call opener is one token, never its text spelled out piece by piece.
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping

from .grammar import Chars, Json, Lit, Node, TreeCompiler

_PREFIX = "ts"
# JSON whitespace as llama.cpp's current json-schema-to-grammar writes it (the port in llama-cpp-python predates
# it and allows one space only): a template that pretty-prints calls can be followed, and runs stay bounded.
JSON_SPACE = '| " " | "\\n"{1,2} [ \\t]{0,20}'
# A JSON string character as llama.cpp's current converter writes it: the port's `[^"\\]` lets a raw newline or
# other control character into a string, which is not JSON (a model at temperature 1 does write them).
JSON_CHAR = r'[^"\\\x7F\x00-\x1F] | [\\] (["\\/bfnrt] | "u" [0-9a-fA-F]{4})'
# Compact JSON (`Json.compact`, the generic call form): at most one space between tokens.
COMPACT_SPACE = '" "?'


def _literal(text: str) -> str:
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20:
            out.append(f"\\x{ord(ch):02X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _class_char(ch: str) -> str:
    if ch in "]\\^-":
        return "\\" + ch
    if ch == "\n":
        return "\\n"
    if ch == "\r":
        return "\\r"
    if ch == "\t":
        return "\\t"
    return ch


class GbnfCompiler(TreeCompiler):
    """One grammar's rules. `tokens`: control-token text -> id (written as `<[id]>`; empty: everything as text)."""

    def __init__(self, tokens: Mapping[str, int] | None = None):
        from llama_cpp.llama_grammar import SchemaConverter

        class Converter(SchemaConverter):  # type: ignore[misc, valid-type]
            def _format_literal(self, literal: str) -> str:
                # the port escapes quotes but not backslashes: a const or enum value (a tool's name) holding `"`
                # or `\\` wrote a literal llama.cpp could not parse
                return _literal(literal)

            def _generate_constant_rule(self, value: Any) -> str:
                # a const or enum value as the model would write it (the port writes "ü" as "\\u00fc")
                return self._format_literal(json.dumps(value, ensure_ascii=False))

        super().__init__(dict(tokens or {}))
        self.converter: Any = Converter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
        self.converter._rules["space"] = JSON_SPACE
        self._json = 0
        self._through: dict[str, str] = {}

    def compile(self, root: Node, tail: str = "") -> str:
        """The whole grammar text, `root ::= <root> <tail>` first."""
        body = self.expr(root)
        self.rules = {"root": f"{body} {tail}".strip(), **self.rules}
        if "char" in self.converter._rules:
            self.converter._rules["char"] = JSON_CHAR
        converted = self.converter.format_grammar()
        mine = "\n".join(f"{name} ::= {rule}" for name, rule in self.rules.items())
        return f"{mine}\n{converted}\n"

    def text(self, text: str) -> str:
        return _literal(text)

    def chars(self, node: Chars) -> str:
        reps = "" if (node.min, node.max) == (1, 1) else f"{{{node.min},{node.max}}}"
        return f"[{node.cls}]{reps}"

    def json(self, node: Json) -> str:
        if node.compact:  # one space rule serves the grammar: compact JSON is never mixed with free JSON in a turn
            self.converter._rules["space"] = COMPACT_SPACE
        self._json += 1
        name = f"{_PREFIX}-json{self._json}"
        schema = self.converter.resolve_refs(node.schema, name)
        return self.converter.visit(schema, name)

    def rule_name(self, name: str) -> str:
        return f"{_PREFIX}-" + re.sub(r"[^A-Za-z0-9-]+", "-", name)

    def through(self, stop: str) -> str:
        """Text without `stop` in it, then `stop`: each unit is a run of `stop`'s first characters broken by
        a character that continues neither it nor a new one (so the closer can never be inside the value)."""
        if stop in self._through:
            return self._through[stop]
        name = f"{_PREFIX}-through{len(self._through) + 1}"
        first = stop[0]
        units = [f"[^{_class_char(first)}]"]
        for k in range(1, len(stop)):
            excluded = {stop[k], first}
            units.append(f"{_literal(stop[:k])} [^{''.join(_class_char(c) for c in sorted(excluded))}]")
        self.rules[name] = f"({' | '.join(units)})* {self.expr(Lit(stop))}"
        self._through[stop] = name
        return name


def to_gbnf(root: Node, *, tokens: Mapping[str, int] | None = None, tail: str = "") -> str:
    """GBNF text for `root` (control tokens written as token references when `tokens` maps them)."""
    return GbnfCompiler(tokens).compile(root, tail)
