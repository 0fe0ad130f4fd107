"""Compile a grammar tree (grammar.py) to llguidance's Lark dialect.

JSON values are `%json {schema}` (llguidance's own JSON-schema compiler, which names what it cannot do);
control tokens are token references (`<[id]>`: llguidance never matches special tokens as text); "text through a
closer" is one terminal, `/(?s:.*)CLOSER/ & ~/(?s:.*CLOSER.+)/`, so it ends at the first closer.
"""

from __future__ import annotations

import json
import re
from typing import Mapping

from .gbnf import split_tokens
from .grammar import Alt, Chars, Json, Lit, Node, Opt, Rule, Seq, Through


# JSON whitespace: one space, or a newline or two and an indent (as gbnf.py), never an endless run.
JSON_OPTIONS = {"whitespace_pattern": "(?: ?|\\n{1,2}[ \\t]{0,20})"}


def _regex_class(cls: str) -> str:
    return cls.replace("/", "\\/").replace("\n", "\\n")


class LarkCompiler:
    def __init__(self, tokens: Mapping[str, int] | None = None):
        self.tokens = dict(tokens or {})
        self.rules: dict[str, str] = {}
        self._named: dict[str, str] = {}
        self._through: dict[str, str] = {}

    def compile(self, root: Node) -> str:
        body = self.expr(root)
        lines = [f"start: {body}"] + [f"{name}: {rule}" for name, rule in self.rules.items()]
        return "\n".join(lines) + "\n"

    def expr(self, node: Node) -> str:
        if isinstance(node, Lit):
            parts = split_tokens(node.text, self.tokens)
            if not parts:
                return '""'
            return " ".join(f"<[{p}]>" if isinstance(p, int) else json.dumps(p, ensure_ascii=False) for p in parts)
        if isinstance(node, Seq):
            return " ".join(self._group(i) for i in node.items) or '""'
        if isinstance(node, Alt):
            return " | ".join(self.expr(i) for i in node.items)
        if isinstance(node, Opt):
            return f"({self.expr(node.item)})?"
        if isinstance(node, Chars):
            reps = "" if (node.min, node.max) == (1, 1) else f"{{{node.min},{node.max}}}"
            return f"/[{_regex_class(node.cls)}]{reps}/"
        if isinstance(node, Json):
            name = f"json{len(self.rules) + 1}"
            schema = {**node.schema, "x-guidance": JSON_OPTIONS}
            self.rules[name] = f"%json {json.dumps(schema, ensure_ascii=False)}"
            return name
        if isinstance(node, Through):
            return self._through_terminal(node.stop)
        if isinstance(node, Rule):
            if node.name not in self._named:
                name = "r_" + re.sub(r"[^a-z0-9_]", "_", node.name.lower())
                while name in self.rules:
                    name += "_"
                self._named[node.name] = name
                self.rules[name] = self.expr(node.body)
            return self._named[node.name]
        raise TypeError(f"not a grammar node: {node!r}")

    def _group(self, node: Node) -> str:
        text = self.expr(node)
        return f"({text})" if isinstance(node, Alt) else text

    def _through_terminal(self, stop: str) -> str:
        if stop in self._through:
            return self._through[stop]
        parts = split_tokens(stop, self.tokens)
        if parts and isinstance(parts[0], int):
            # the closer is a control token: text (which never holds one) then the token
            name = f"TEXT{len(self._through) + 1}"
            self.rules[name] = "/(?s:.*)/"
            self._through[stop] = f"{name} {self.expr(Lit(stop))}"
            return self._through[stop]
        name = f"THROUGH{len(self._through) + 1}"
        closer = "".join(c if c.isalnum() else f"\\x{{{ord(c):X}}}" for c in stop)
        self.rules[name] = f"/(?s:.*){closer}/ & ~/(?s:.*{closer}.+)/"
        self._through[stop] = name
        return name


def to_lark(root: Node, *, tokens: Mapping[str, int] | None = None) -> str:
    """Lark text for `root`; `tokens` maps control-token text to ids (written as `<[id]>`)."""
    return LarkCompiler(tokens).compile(root)
