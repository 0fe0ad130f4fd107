"""A small grammar tree that both backends compile: llama.cpp's GBNF (gbnf.py) and llguidance's Lark (lark.py).

What a forced tool call or a JSON answer must look like is decided once, here, in terms the two libraries share:
literal text (split into control tokens and plain text by the backend), JSON values for a schema (each library's
own JSON-schema compiler), sequences, alternatives, repetition, character classes, and "free text through a
closing literal" (a tagged parameter's value). Nothing engine-specific lives in this module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Union


@dataclass(frozen=True)
class Lit:
    """Exact text; control tokens inside it are written as single tokens by the backends."""

    text: str


@dataclass(frozen=True)
class Json:
    """One JSON value valid for `schema` (kept as canonical JSON text so nodes stay hashable).

    `compact`: at most one space between tokens, never a newline (the generic call form, which no template shows
    the model: free whitespace there let a small model pad a call with blank lines)."""

    schema_text: str
    compact: bool = False

    @classmethod
    def of(cls, schema: dict[str, Any], *, compact: bool = False) -> "Json":
        # key order kept: it is the order properties are written
        return cls(json.dumps(schema, ensure_ascii=False), compact)

    @property
    def schema(self) -> dict[str, Any]:
        return json.loads(self.schema_text)


@dataclass(frozen=True)
class Chars:
    """`min`..`max` characters of a class written regex-style without brackets (`0-9`, `A-Za-z0-9_-`)."""

    cls: str
    min: int = 1
    max: int = 1


@dataclass(frozen=True)
class Through:
    """Any text up to and including the first occurrence of `stop` (a tagged parameter's value and its closer)."""

    stop: str


@dataclass(frozen=True)
class Seq:
    items: tuple["Node", ...]


@dataclass(frozen=True)
class Alt:
    items: tuple["Node", ...]


@dataclass(frozen=True)
class Opt:
    item: "Node"


@dataclass(frozen=True)
class Rule:
    """A named part, compiled once however often it is referenced (a tool's arguments, one call)."""

    name: str
    body: "Node"


Node = Union[Lit, Json, Chars, Through, Seq, Alt, Opt, Rule]


def seq(*items: "Node | str | None") -> Node:
    """A sequence; strings are literals, None and empty literals are dropped, a single item stands alone."""
    out: list[Node] = []
    for item in items:
        if item is None or item == "" or item == Lit(""):
            continue
        node = Lit(item) if isinstance(item, str) else item
        if isinstance(node, Seq):
            out.extend(node.items)
        elif isinstance(node, Lit) and out and isinstance(out[-1], Lit):
            out[-1] = Lit(out[-1].text + node.text)
        else:
            out.append(node)
    if len(out) == 1:
        return out[0]
    return Seq(tuple(out))


def alt(*items: "Node | str") -> Node:
    nodes = tuple(dict.fromkeys(Lit(i) if isinstance(i, str) else i for i in items))
    return nodes[0] if len(nodes) == 1 else Alt(nodes)


def split_tokens(text: str, tokens: Mapping[str, int]) -> list[str | int]:
    """`text` as plain pieces and token ids: the longest control-token spelling wins at each position."""
    if not tokens or not text:
        return [text] if text else []
    by_first: dict[str, list[str]] = {}
    for tok in sorted(tokens, key=len, reverse=True):
        if tok:
            by_first.setdefault(tok[0], []).append(tok)
    out: list[str | int] = []
    plain: list[str] = []
    i = 0
    while i < len(text):
        for tok in by_first.get(text[i], ()):
            if text.startswith(tok, i):
                if plain:
                    out.append("".join(plain))
                    plain = []
                out.append(tokens[tok])
                i += len(tok)
                break
        else:
            plain.append(text[i])
            i += 1
    if plain:
        out.append("".join(plain))
    return out


def members(items: list[Node], required: list[bool], separator: str) -> Node:
    """Items in order, the required ones always, the others optional, joined by `separator` (JSON-object style).

    Written so that a separator only ever stands between two present items.
    """
    if not items:
        return Lit("")
    if any(required):
        first = required.index(True)
        head: list[Node | str] = []
        for i, (item, req) in enumerate(zip(items, required)):
            if i < first:
                continue
            part = item if i == first else seq(separator, item)
            head.append(part if req or i == first else Opt(part))
        lead = items[:first]
        if not lead:
            return seq(*head)
        # optional items before the first required one: each followed by the separator
        return seq(*(Opt(seq(item, separator)) for item in lead), *head)

    def tail(k: int) -> Node:
        rest = [Opt(seq(separator, item)) for item in items[k + 1:]]
        return seq(items[k], *rest)

    return Opt(alt(*(tail(k) for k in range(len(items)))))


class TreeCompiler:
    """The walk both backends share: sequences, alternatives, options and named rules; a backend writes the leaves
    (text, control tokens, character classes, JSON, text-through-a-closer) and names rules its own way."""

    def __init__(self, tokens: "dict[str, int] | None" = None):
        self.tokens = dict(tokens or {})
        self.rules: dict[str, str] = {}
        self._named: dict[str, str] = {}

    def expr(self, node: Node) -> str:
        if isinstance(node, Lit):
            parts = split_tokens(node.text, self.tokens)
            return " ".join(f"<[{p}]>" if isinstance(p, int) else self.text(p) for p in parts) or '""'
        if isinstance(node, Seq):
            return " ".join(self._group(i) for i in node.items) or '""'
        if isinstance(node, Alt):
            return " | ".join(self.expr(i) for i in node.items)
        if isinstance(node, Opt):
            return f"({self.expr(node.item)})?"
        if isinstance(node, Chars):
            return self.chars(node)
        if isinstance(node, Json):
            return self.json(node)
        if isinstance(node, Through):
            return self.through(node.stop)
        if isinstance(node, Rule):
            if node.name not in self._named:
                name = self.rule_name(node.name)
                while name in self.rules:
                    name += "x"
                self._named[node.name] = name
                self.rules[name] = ""  # reserved before the body, which may name further rules
                self.rules[name] = self.expr(node.body)
            return self._named[node.name]
        raise TypeError(f"not a grammar node: {node!r}")

    def _group(self, node: Node) -> str:
        text = self.expr(node)
        return f"({text})" if isinstance(node, Alt) else text

    # -- what a backend writes --
    def text(self, text: str) -> str:
        raise NotImplementedError

    def chars(self, node: Chars) -> str:
        raise NotImplementedError

    def json(self, node: Json) -> str:
        raise NotImplementedError

    def through(self, stop: str) -> str:
        raise NotImplementedError

    def rule_name(self, name: str) -> str:
        raise NotImplementedError
