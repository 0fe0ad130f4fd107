"""Find stop strings, turn headers, format markers and control tokens in streamed text.

One scanner for all of them, so each chunk is searched once. It splits text into plain text and
`Mark`s, with the same result whatever the chunking: it holds back only a tail that could still be the
start of a marker (or could still grow into a longer one), and at one position the longest marker wins,
the leftmost position first. The search is one compiled regex built as a trie of the markers, so a
vocabulary with hundreds of `<|reserved_special_token_N|>` costs no more than a handful.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Union

# kinds, in priority order when one string has several roles
STOP_TOKEN = "stop_token"  # the text of a stop token id (matters for text streams)
STOP_STRING = "stop_string"
TURN_HEADER = "turn_header"  # self-conversation guard
FORMAT = "format"  # structure the format parser consumes: <think>, <|channel|>, <tool_call>, ...
CONTROL = "control"  # any other special token: never shown
_PRIORITY = {STOP_TOKEN: 0, STOP_STRING: 1, TURN_HEADER: 2, FORMAT: 3, CONTROL: 4}


class Mark:
    """A marker found in the text. One instance per marker string, so parsers may compare with `is`."""

    __slots__ = ("text", "kind")

    def __init__(self, text: str, kind: str):
        self.text = text
        self.kind = kind

    def __repr__(self) -> str:
        return f"Mark({self.text!r}, {self.kind})"


Piece = Union[str, Mark]


def build_marks(groups: Iterable[tuple[str, Iterable[str]]]) -> dict[str, Mark]:
    """Marks from (kind, strings) groups; a string in several groups keeps the highest-priority kind."""
    kinds: dict[str, str] = {}
    for kind, strings in groups:
        for s in strings:
            if s and (s not in kinds or _PRIORITY[kind] < _PRIORITY[kinds[s]]):
                kinds[s] = kind
    return {s: Mark(s, k) for s, k in kinds.items()}


def trie_regex(words: Iterable[str]) -> re.Pattern[str] | None:
    """A regex matching any of `words`, longest first at a position (None for no words)."""
    trie: dict = {}
    for w in words:
        node = trie
        for ch in w:
            node = node.setdefault(ch, {})
        node[""] = True
    if not trie:
        return None

    def build(node: dict) -> str:
        alts = [re.escape(ch) + build(child) for ch, child in sorted((k, v) for k, v in node.items() if k)]
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        return "(?:" + body + ")?" if "" in node else body

    return re.compile(build(trie))


class MarkerScanner:
    """Streaming split of text into `str` and `Mark` pieces; chunking never changes the result."""

    __slots__ = ("_marks", "_regex", "_prefixes", "_first", "_maxlen", "_buf")

    def __init__(self, marks: Mapping[str, Mark]):
        self._marks = dict(marks)
        self._regex = trie_regex(self._marks)
        self._prefixes = {m[:i] for m in self._marks for i in range(1, len(m))}  # proper prefixes
        self._first = {m[0] for m in self._marks}
        self._maxlen = max((len(m) for m in self._marks), default=0)
        self._buf = ""

    @property
    def pending(self) -> str:
        """The held-back tail: text that may still be the start of a marker."""
        return self._buf

    def feed(self, text: str, final: bool = False) -> list[Piece]:
        """Scan `text` (after what was held back); with `final`, release everything."""
        buf = self._buf + text if self._buf else text
        self._buf = ""
        if self._regex is None:
            return [buf] if buf else []
        n = len(buf)
        # positions where a marker may still be completing (or growing), earliest first
        partial: list[int] = []
        if not final:
            first, prefixes = self._first, self._prefixes
            for q in range(max(0, n - self._maxlen + 1), n):
                if buf[q] in first and buf[q:] in prefixes:
                    partial.append(q)
        out: list[Piece] = []
        pos = 0
        search, marks = self._regex.search, self._marks
        while True:
            hold = next((q for q in partial if q >= pos), n)
            m = search(buf, pos)
            if m is None or m.start() >= hold:
                break
            if m.start() > pos:
                out.append(buf[pos:m.start()])
            out.append(marks[m.group()])
            pos = m.end()
        if hold > pos:
            out.append(buf[pos:hold])
        self._buf = buf[hold:] if hold < n else ""
        return out

    def drop_partial_marker(self) -> str:
        """At the end of a finished output, the held tail when it can only be the start of markup the model never
        finished (`answer</thi`, `<|tool_c` cut by a length limit): removed and returned, never shown. Only tails
        of three characters or more that start with a bracket or symbol and hold a letter, of the syntax's own
        markers (a caller's stop string is not markup); prose ending in a word, a space, `<` or `</` stays."""
        tail = self._buf
        if len(tail) < 3 or tail not in self._prefixes or tail in self._marks or tail[0].isalnum() or tail[0].isspace() or \
                not any(ch.isalpha() for ch in tail):
            return ""
        if not any(m.kind != STOP_STRING and s.startswith(tail) for s, m in self._marks.items()):
            return ""
        self._buf = ""
        return tail

