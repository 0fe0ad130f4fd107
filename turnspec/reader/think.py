"""`<think>…</think>` reasoning (Qwen3, QwQ, DeepSeek-R1 and its distills, Granite 3.3).

The reasoning block is recognised only at the start of the output (leading whitespace allowed), or is
already open when the generation prompt ended inside `<think>` (DeepSeek-R1-Distill writes
`<｜Assistant｜><think>\\n`). Qwen3 with enable_thinking=False puts a closed, empty block in the prompt,
so its output is content from the first character. Newlines around the reasoning and the blank line
after `</think>` are dropped, as Qwen3's own template does when it re-renders a turn (`strip('\\n')`);
think tags themselves never reach the visible text.
"""

from __future__ import annotations

from typing import Protocol

from .events import Emitter
from .markers import Mark


class ContentParser(Protocol):
    markers: tuple[str, ...]

    def text(self, t: str) -> None: ...
    def mark(self, m: Mark) -> None: ...
    def skip_leading_ws(self) -> None: ...
    def close(self) -> None: ...


_START, _REASONING, _CONTENT = 0, 1, 2


class ThinkSplitter:
    """Routes text to reasoning until `</think>`, then to the content parser (which handles tool calls)."""

    def __init__(
        self,
        emit: Emitter,
        content: ContentParser,
        *,
        starts_in_reasoning: bool = False,
        tags: tuple[str, str] = ("<think>", "</think>"),
    ):
        self._emit = emit
        self._content = content
        self.open_tag, self.close_tag = tags
        self.markers = (self.open_tag, self.close_tag, *content.markers)
        self._state = _REASONING if starts_in_reasoning else _START
        self._reasoning_started = False  # leading whitespace of the reasoning is dropped
        self._ws = ""  # trailing whitespace of the reasoning, held until we know it is not the end

    def text(self, t: str) -> None:
        state = self._state
        if state == _CONTENT:
            self._content.text(t)
        elif state == _REASONING:
            self._reason(t)
        else:
            s = t.lstrip()
            if s:  # the model answers without thinking
                self._state = _CONTENT
                self._content.text(s)

    def mark(self, m: Mark) -> None:
        s, state = m.text, self._state
        if s == self.open_tag:
            if state == _START:
                self._state = _REASONING
            return  # a nested or late <think> is dropped
        if s == self.close_tag:
            if state != _CONTENT:
                self._ws = ""
                self._state = _CONTENT
                self._content.skip_leading_ws()
            return  # a stray </think> in the answer is dropped
        if state == _REASONING:
            self._reason(s)  # e.g. a model musing about "<tool_call>" while thinking: it is reasoning text
        else:
            self._state = _CONTENT
            self._content.mark(m)

    def close(self) -> None:
        self._content.close()

    def _reason(self, t: str) -> None:
        if not self._reasoning_started:
            t = t.lstrip()
            if not t:
                return
            self._reasoning_started = True
        body = t.rstrip()
        if body:
            self._emit.reasoning(self._ws + body if self._ws else body)
            self._ws = t[len(body):]
        else:
            self._ws += t
