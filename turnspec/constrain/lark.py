"""Compile a grammar tree (grammar.py) to llguidance's Lark dialect.

JSON values are `%json {schema}` (llguidance's own JSON-schema compiler, which names what it cannot do);
control tokens are token references (`<[id]>`: llguidance never matches special tokens as text); "text through a
closer" is one terminal, `/(?s:.*)CLOSER/ & ~/(?s:.*CLOSER.+)/`, so it ends at the first closer.
"""

from __future__ import annotations

import json
import re
from typing import Mapping

from .grammar import Chars, Json, Lit, Node, TreeCompiler, split_tokens


# JSON whitespace: one space, or a newline or two and an indent (as gbnf.py), never an endless run.
JSON_OPTIONS = {"whitespace_pattern": "(?: ?|\\n{1,2}[ \\t]{0,20})"}
COMPACT_OPTIONS = {"whitespace_pattern": " ?"}  # `Json.compact`: at most one space, as gbnf.py


def _regex_class(cls: str) -> str:
    return cls.replace("/", "\\/").replace("\n", "\\n")


class LarkCompiler(TreeCompiler):
    def compile(self, root: Node) -> str:
        body = self.expr(root)
        lines = [f"start: {body}"] + [f"{name}: {rule}" for name, rule in self.rules.items()]
        return "\n".join(lines) + "\n"

    def text(self, text: str) -> str:
        return json.dumps(text, ensure_ascii=False)

    def chars(self, node: Chars) -> str:
        reps = "" if (node.min, node.max) == (1, 1) else f"{{{node.min},{node.max}}}"
        return f"/[{_regex_class(node.cls)}]{reps}/"

    def json(self, node: Json) -> str:
        name = f"json{len(self.rules) + 1}"
        schema = {**node.schema, "x-guidance": COMPACT_OPTIONS if node.compact else JSON_OPTIONS}
        self.rules[name] = f"%json {json.dumps(schema, ensure_ascii=False)}"
        return name

    def rule_name(self, name: str) -> str:
        return "r_" + re.sub(r"[^a-z0-9_]", "_", name.lower())

    def through(self, stop: str) -> str:
        key = f"through:{stop}"
        if key in self._named:
            return self._named[key]
        parts = split_tokens(stop, self.tokens)
        n = sum(k.startswith("through:") for k in self._named) + 1
        first_token = next((k for k, part in enumerate(parts) if isinstance(part, int)), None)
        if first_token is not None:
            # the closer holds a control token (`\n</parameter>` where `</parameter>` is one): text, which never
            # holds one, through the closer's text before it, then the rest of the closer
            head = "".join(parts[:first_token])
            self.rules[f"TEXT{n}"] = f"/(?s:.*){_escaped(head)}/"
            out = f"TEXT{n} {self.expr(Lit(stop[len(head):]))}"
        else:
            closer = _escaped(stop)
            self.rules[f"THROUGH{n}"] = f"/(?s:.*){closer}/ & ~/(?s:.*{closer}.+)/"
            out = f"THROUGH{n}"
        self._named[key] = out
        return out


def _escaped(text: str) -> str:
    """`text` as a literal inside a regex lexeme."""
    return "".join(c if c.isalnum() else f"\\x{{{ord(c):X}}}" for c in text)


def to_lark(root: Node, *, tokens: Mapping[str, int] | None = None) -> str:
    """Lark text for `root`; `tokens` maps control-token text to ids (written as `<[id]>`)."""
    return LarkCompiler(tokens).compile(root)
