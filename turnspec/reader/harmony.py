"""Harmony (gpt-oss): messages with a header and a channel, several per turn.

    <|start|>assistant<|channel|>analysis<|message|>…<|end|>
    <|start|>assistant<|channel|>final<|message|>…<|return|>
    <|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{…}<|call|>

The header (everything between `<|start|>` and `<|message|>`) is never shown. `analysis` → reasoning,
`final` → content, a header with a recipient (`to=functions.NAME`, or a built-in like `to=python`) →
one tool call made of the message body; `commentary` without a recipient (a preamble meant for the
user) → content. `<|end|>` ends a message, not the turn; `<|return|>` and `<|call|>` end the turn
(the reader treats them as stop tokens). A model that skips `<|end|><|start|>assistant` and writes
`<|channel|>` directly still gets a new message. The reasoning and content are the message bodies
byte for byte: nothing is stripped.
"""

from __future__ import annotations

import json
import re

from .events import Emitter
from .markers import Mark

START, END, MESSAGE, CHANNEL = "<|start|>", "<|end|>", "<|message|>", "<|channel|>"
CONSTRAIN, RETURN, CALL = "<|constrain|>", "<|return|>", "<|call|>"
#: Structure the parser consumes.
MARKERS = (START, END, MESSAGE, CHANNEL, CONSTRAIN)
#: Tokens that end the assistant's turn (stop tokens of gpt-oss).
TURN_END = (RETURN, CALL)
#: Every Harmony control token: none of them may appear in visible text.
CONTROL_TOKENS = MARKERS + TURN_END

_CHANNEL_RE = re.compile(r"<\|channel\|>\s*([^\s<]+)")
_RECIPIENT_RE = re.compile(r"\bto=([^\s<]+)")
_CONSTRAIN_RE = re.compile(r"<\|constrain\|>\s*([^\s<]+)")

_HEADER, _REASONING, _CONTENT, _TOOL = 0, 1, 2, 3


class HarmonyParser:
    """Streams analysis as reasoning and final as content; emits each tool-call message when it ends."""

    markers = MARKERS

    def __init__(self, emit: Emitter, prefix: str = "", call_deltas: bool = False):
        self._emit = emit
        self._call_deltas = call_deltas  # stream a function call's JSON body as it is written
        self._call_id = ""  # the call whose body is streaming
        self._state = _HEADER
        self._header: list[str] = []
        self._body: list[str] = []
        self._recipient = ""
        self._constrain = ""
        self._saw_message = False
        self._fallback: list[str] = []  # header text after priming, in case the model never speaks Harmony
        if prefix:
            self._prime(prefix)

    def text(self, t: str) -> None:
        state = self._state
        if state == _CONTENT:
            self._emit.content(t)
        elif state == _REASONING:
            self._emit.reasoning(t)
        elif state == _TOOL:
            self._body.append(t)
            if self._call_deltas and self._recipient.startswith("functions.") and t:
                if not self._call_id:  # announced with its first text, never while the prompt's header is read
                    self._call_id = self._emit.new_id()
                    self._emit.call_delta(self._call_id, self._recipient[len("functions."):], "")
                self._emit.call_delta(self._call_id, "", t)
        else:
            self._header.append(t)
            if not self._saw_message:
                self._fallback.append(t)

    def mark(self, m: Mark) -> None:
        s = m.text
        if s == MESSAGE:
            if self._state == _HEADER:
                self._open("".join(self._header))
            return  # a stray <|message|> inside a body is dropped
        if s == START or s == END:
            self._close_message()
            self._header = []
        elif s == CHANNEL:
            self._close_message()
            self._header.append(CHANNEL)
        elif s == CONSTRAIN and self._state == _HEADER:
            self._header.append(CONSTRAIN)

    def close(self) -> None:
        self._close_message()
        if not self._saw_message and self._fallback:
            # no Harmony structure at all: better to show the text than to lose it
            self._emit.content("".join(self._fallback))
            self._fallback = []

    # -- internals --

    def _prime(self, prefix: str) -> None:
        """Start where the generation prompt left off (e.g. inside `<|start|>assistant`, or after it
        opened `<|channel|>final<|message|>`), without emitting anything."""
        tail = prefix[prefix.rfind(START) + len(START):] if START in prefix else prefix
        if MESSAGE in tail:
            header = tail[: tail.index(MESSAGE)]
            self._open(header)
            self._saw_message = True
        else:
            self._header = [tail]

    def _open(self, header: str) -> None:
        self._saw_message = True
        self._header = []
        m = _RECIPIENT_RE.search(header)
        self._recipient = m.group(1) if m else ""
        c = _CONSTRAIN_RE.search(header)
        self._constrain = c.group(1) if c else ""
        channels = _CHANNEL_RE.findall(header)  # the last one counts (`commentary to=assistant<|channel|>analysis`)
        channel = channels[-1] if channels else ""
        if self._recipient and self._recipient != "assistant":
            self._state, self._body = _TOOL, []
        elif channel == "analysis":
            self._state = _REASONING
        else:  # final, a commentary preamble, or a message without a channel
            self._state = _CONTENT

    def _close_message(self) -> None:
        if self._state == _TOOL:
            self._emit_tool_call("".join(self._body))
            self._body, self._call_id = [], ""
        self._state = _HEADER

    def _emit_tool_call(self, raw: str) -> None:
        recipient = self._recipient
        name = recipient[len("functions."):] if recipient.startswith("functions.") else recipient
        body = raw.strip()
        if not name:
            self._emit.error(raw, f"Harmony tool call to={recipient}: no function name")
            return
        try:
            args = json.loads(body) if body else {}
        except json.JSONDecodeError as exc:
            if recipient.startswith("functions.") or self._constrain == "json":
                self._emit.error(raw, f"Harmony tool call to={recipient}: invalid JSON: {exc.msg} at character {exc.pos}")
                return
            args = {"code": raw} if name == "python" else {"input": raw}  # built-in tools take free text
        if not isinstance(args, dict):
            self._emit.error(raw, f"Harmony tool call to={recipient}: the arguments are not a JSON object")
            return
        self._emit.tool_call(name, args, raw)


def harmony_prefix(prompt_text: str) -> str:
    """The Harmony message the prompt leaves open (`<|start|>assistant`, or `…<|channel|>final<|message|>`)."""
    i = prompt_text.rfind(START)
    if i < 0:
        return ""
    tail = prompt_text[i:]
    if any(t in tail for t in (END, *TURN_END)):
        return ""
    return tail
