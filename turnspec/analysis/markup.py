"""Which parts of a rendered conversation are template structure (control tokens, tags) and which are text.

With a vocabulary, control tokens are its special tokens and the added tokens the template writes. A bare template
(the corpus) has no vocabulary, so the template's own literals are scanned for token-shaped strings as well:
`<|…|>`, `<｜…｜>`, `<|turn>`/`<turn|>`, `[UPPER]`/`[/UPPER]` and XML-like tags (`<think>`, `</tool_call>`,
`<seed:tool_call>`). Renderings are split on both, known tokens first.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

#: Token-shaped strings. `<function=x>` is deliberately not one: it carries a value.
TOKEN_SHAPE = re.compile(
    r"<\|[^<>|\s]+\|>"  # <|im_end|>, <|"|>
    r"|<｜[^<>｜]+｜>"  # <｜tool▁sep｜> (full-width bars)
    r"|<\|[^<>|\s]+>|<[^<>|\s/]+\|>"  # Gemma 4: <|turn>, <turn|>
    r"|\[/?[A-Z][A-Z_]*\]"  # [INST], [/INST], [TOOL_CALLS]
    r"|</?(?:｜\w+｜)?[A-Za-z_][\w:.\-]*>"  # <think>, </tool_call>, <seed:think>, <SPECIAL_12>, <｜DSML｜invoke>
)
_SNAP_WINDOW = 96  # past the longest token shape; known tokens add their own longest length

#: Openers of markup that carries a value: `<function=`, `<parameter name="`, `[TOOL_CALLS`.
_TAG_OPENER = re.compile(r"<[|｜/]?[A-Za-z_]|\[[A-Z/]")


def shaped_tokens(literals: Iterable[str]) -> set[str]:
    """Token-shaped strings found in the template's literal text."""
    found: set[str] = set()
    for text in literals:
        found.update(TOKEN_SHAPE.findall(text))
    return found


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    text: str


class Markup:
    """Finds control tokens in text: the given ones (longest first), then token shapes where none overlaps."""

    def __init__(self, tokens: Iterable[str]):
        self.tokens = frozenset(t for t in tokens if t and not t.isspace())

    @cached_property
    def _known(self) -> re.Pattern[str] | None:
        from ..reader.markers import trie_regex

        return trie_regex(self.tokens)

    @cached_property
    def _window(self) -> int:
        return _SNAP_WINDOW + max((len(t) for t in self.tokens), default=0)

    def spans(self, text: str) -> list[Span]:
        """Every control token in `text`, in order, without overlaps."""
        out: list[Span] = []
        starts: list[int] = []  # known tokens, in order and without overlaps
        ends: list[int] = []
        if self._known is not None:
            for m in self._known.finditer(text):
                if m.end() > m.start():
                    out.append(Span(m.start(), m.end(), m.group()))
                    starts.append(m.start())
                    ends.append(m.end())
        for m in TOKEN_SHAPE.finditer(text):
            k = bisect.bisect_left(starts, m.end())  # the known tokens that start before this shape ends
            if not k or ends[k - 1] <= m.start():
                out.append(Span(m.start(), m.end(), m.group()))
        out.sort(key=lambda s: s.start)
        return out

    def first(self, text: str, start: int = 0) -> Span | None:
        """The first control token at or after `start`."""
        for span in self.spans(text):
            if span.start >= start:
                return span
        return None

    def snap(self, text: str, pos: int) -> int:
        """`pos`, moved back to the start of a token it falls inside (a cut never splits a token). Only the text
        around `pos` is scanned: a token that holds `pos` is shorter than the window."""
        lo = max(0, pos - self._window)
        for span in self.spans(text[lo:pos + self._window]):
            if span.start < pos - lo < span.end:
                return lo + span.start
            if span.start >= pos - lo:
                break
        return pos

    def is_markup(self, literal: str) -> bool:
        """True when `literal` holds a control token or a tag-like opener: structure a model would not write in prose."""
        return bool(self.spans(literal)) or bool(_TAG_OPENER.search(literal))

    def leading(self, text: str) -> str:
        """The run of tokens (and whitespace between them) `text` starts with, stripped; '' if it starts with text."""
        pos, end = 0, 0
        for span in self.spans(text):
            if text[pos:span.start].strip():
                break
            pos = end = span.end
        return text[:end].strip()

    def trailing(self, text: str) -> str:
        """The run of tokens (and whitespace between them) `text` ends with, stripped."""
        spans = self.spans(text)
        end = len(text.rstrip())
        start = end
        for span in reversed(spans):
            if text[span.end:start].strip():
                break
            start = span.start
        return text[start:end].strip()
