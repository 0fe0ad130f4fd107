"""Pythonic calls that are not quite Python: what models write in `[name(key=value)]` that `ast` refuses.

Models write a line break or a NUL as is inside a quoted string (`command='cat > f.py << EOF\\nimport csv'` with a
real line break), quote inside a string with the same quote unescaped (`command='sed -n '360,450p' f.py'`), write
numbers with leading zeros (`month=07`) and sets (`tags={'a', 'b'}`). `call_parse.pythonic_calls` tries `ast` first
(exact Python) and only when that fails reads the text here: a string ends at a quote followed by `,`, `)`, `]`, `}`
or `:`, and when the rest does not parse that way, at the next such quote (bounded backtracking). Sets become lists
(JSON has no set), `07` is 7, JSON's true/false/null are accepted. Anything else still fails.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

_NAME = re.compile(r"[A-Za-z_][\w.\-]*")
_KEY = re.compile(r"[A-Za-z_]\w*")
_NUMBER = re.compile(r"[-+]?(?:\d[\d_]*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_WORDS = {"True": True, "False": False, "None": None, "true": True, "false": False, "null": None}
_ESCAPE = re.compile(r"\\(?:x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{1,3}|\n|.)", re.S)
_SIMPLE = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "a": "\a", "b": "\b", "f": "\f",
           "v": "\v", "\n": ""}
_MAX_STEPS = 20_000  # backtracking budget: a pathological run of quotes fails instead of taking exponential time
_MAX_LEN = 65_536


class NotCalls(ValueError):
    """The text is not a list of calls, even read leniently."""


def lenient_calls(src: str) -> list[tuple[str, dict[str, Any], str]]:
    """(name, arguments, raw) for each call of `[f(a=1), g()]` or `f(a=1)`; raises NotCalls."""
    if len(src) > _MAX_LEN:
        raise NotCalls("too long to read leniently")
    reader = _Reader(src)
    try:
        for calls in reader.top():
            return calls
    except (_Budget, RecursionError):
        pass
    raise NotCalls("not a list of calls")


class _Budget(Exception):
    pass


class _Reader:
    def __init__(self, src: str):
        self.src = src
        self.steps = 0

    def _tick(self) -> None:
        self.steps += 1
        if self.steps > _MAX_STEPS:
            raise _Budget

    def _ws(self, pos: int) -> int:
        while pos < len(self.src) and self.src[pos].isspace():
            pos += 1
        return pos

    def top(self) -> Iterator[list[tuple[str, dict[str, Any], str]]]:
        pos = self._ws(0)
        if self.src.startswith("[", pos):
            alternatives: Iterator[tuple[Any, int]] = self._seq(pos + 1, "]", self._call)
        else:
            alternatives = ((([c], p) for c, p in self._call(pos)))
        for calls, end in alternatives:
            if self._ws(end) == len(self.src):
                yield calls

    def _seq(self, pos: int, close: str, item: Any, first: bool = True) -> Iterator[tuple[list[Any], int]]:
        """Items separated by commas up to `close` (a trailing comma allowed): (items, position after close)."""
        self._tick()
        pos = self._ws(pos)
        if first and self.src.startswith(close, pos):
            yield [], pos + 1
            return
        for value, p in item(pos):
            p = self._ws(p)
            if self.src.startswith(close, p):
                yield [value], p + 1
            elif self.src.startswith(",", p):
                q = self._ws(p + 1)
                if self.src.startswith(close, q):
                    yield [value], q + 1
                for rest, r in self._seq(q, close, item, first=False):
                    yield [value, *rest], r

    def _call(self, pos: int) -> Iterator[tuple[tuple[str, dict[str, Any], str], int]]:
        m = _NAME.match(self.src, pos)
        if m is None:
            return
        paren = self._ws(m.end())
        if not self.src.startswith("(", paren):
            return
        for pairs, end in self._seq(paren + 1, ")", self._keyword):
            yield (m.group(), dict(pairs), self.src[pos:end]), end

    def _keyword(self, pos: int) -> Iterator[tuple[tuple[str, Any], int]]:
        m = _KEY.match(self.src, pos)
        if m is None:
            return
        eq = self._ws(m.end())
        if not self.src.startswith("=", eq) or self.src.startswith("==", eq):
            return
        for value, end in self._value(self._ws(eq + 1)):
            yield (m.group(), value), end

    def _value(self, pos: int) -> Iterator[tuple[Any, int]]:
        self._tick()
        src = self.src
        ch = src[pos:pos + 1]
        if ch in ("'", '"'):
            yield from self._string(pos)
        elif ch == "[":
            yield from self._seq(pos + 1, "]", self._value)
        elif ch == "(":
            yield from self._seq(pos + 1, ")", self._value)
        elif ch == "{":
            found = False
            for entries, end in self._seq(pos + 1, "}", self._entry):
                found = True
                yield dict(entries), end
            if not found:  # a set: JSON has none, so a list in the order written
                yield from self._seq(pos + 1, "}", self._value)
        else:
            m = _NUMBER.match(src, pos)
            if m is not None:
                text = m.group().replace("_", "")
                try:
                    yield (float(text) if any(c in text for c in ".eE") else int(text, 10)), m.end()
                except ValueError:
                    return
                return
            m = _KEY.match(src, pos)
            if m is not None and m.group() in _WORDS:
                yield _WORDS[m.group()], m.end()

    def _entry(self, pos: int) -> Iterator[tuple[tuple[Any, Any], int]]:
        for key, p in self._value(pos):
            p = self._ws(p)
            if not self.src.startswith(":", p) or isinstance(key, (list, dict)):
                continue
            for value, end in self._value(self._ws(p + 1)):
                yield (key, value), end

    def _string(self, pos: int) -> Iterator[tuple[str, int]]:
        """The string at `pos`, ending at each quote that structure may follow, earliest first."""
        src = self.src
        quote = src[pos] * 3 if src.startswith(src[pos] * 3, pos) else src[pos]
        start = k = pos + len(quote)
        while k < len(src):
            self._tick()
            if src[k] == "\\":
                k += 2
                continue
            if src.startswith(quote, k):
                after = self._ws(k + len(quote))
                if after >= len(src) or src[after] in ",)]}:":
                    yield _unescape(src[start:k]), k + len(quote)
            k += 1


def _unescape(body: str) -> str:
    """Python's escapes (`\\n`, `\\'`, `\\x41`, `\\u00e9`); an unknown one (`\\,`) stays as written."""
    def one(m: re.Match[str]) -> str:
        s = m.group()[1:]
        if s in _SIMPLE:
            return _SIMPLE[s]
        if s[0] in "xuU":
            return chr(int(s[1:], 16))
        if s[0] in "01234567":
            return chr(int(s, 8))
        return m.group()
    return _ESCAPE.sub(one, body) if "\\" in body else body
