"""Channel formats (`ChannelSyntax`: Harmony, muse_glimmer): messages with a header, several per turn.

    <|start|>assistant<|channel|>analysis<|message|>…<|end|>
    <|start|>assistant<|channel|>final<|message|>…<|return|>
    <|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{…}<|call|>
    <|start|>assistant to=self<|message|>…<|eom|><|start|>assistant to=user<|message|>…<|eot|>

The header (everything between the message start and the message token) is never shown. A header on the
reasoning channel (or to the reasoning recipient) → reasoning; a recipient that is a function (neither the
reasoning nor the answer's recipient, nor the role itself) → one tool call made of the message body, read as JSON
arguments or in the format's body call syntax. Where the template renders the caller's tools under a namespace
(`call_prefix`, Harmony's `functions.`), a recipient outside it (`python`, `browser.search`, `container.exec`) is a
built-in tool the caller did not declare: a `BuiltinCall` event with the body as written, never a `ToolCall`.
Anything else (the answer's channel, a preamble) → content. The
message end ends a message, not the turn; the turn ends are stop tokens. A model that skips the message end and
writes a channel token directly still gets a new message. Reasoning and content are the bodies byte for byte.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from ..analysis.syntax import ChannelSyntax
from .call_parse import CallParser, ToolParseError
from .events import Emitter
from .markers import Mark
from .turn_parser import TurnParser

_HEADER, _REASONING, _CONTENT, _TOOL = 0, 1, 2, 3
_JSON_WORD = re.compile(r"\bjson\b")


class ChannelParser:
    """Streams reasoning and content messages; emits each tool-call message when it ends."""

    def __init__(self, emit: Emitter, syntax: ChannelSyntax, prefix: str = "",
                 schemas: Mapping[str, Mapping[str, Any]] | None = None, markup: Any = None,
                 call_deltas: bool = False):
        self._emit = emit
        self._s = syntax
        self._call_deltas = call_deltas  # stream a function call's JSON body as it is written
        self._call_id = ""  # the call whose body is streaming
        structure = (syntax.start, syntax.message_end, syntax.message, syntax.channel, *syntax.header_tokens)
        # the body call syntax's tokens (`<atem:function_calls>`) are text of the message they are in, never hidden
        body_tokens = [span.text for lit in (TurnParser._literals(syntax.body_calls) if syntax.body_calls else ())
                       for span in (markup.spans(lit) if markup is not None else ())]
        self.markers = tuple(dict.fromkeys(t for t in (*structure, *body_tokens) if t))
        self._recipient_re = re.compile(re.escape(syntax.recipient) + r"([^\s<]+)") if syntax.recipient else None
        self._channel_re = re.compile(re.escape(syntax.channel) + r"\s*([^\s<]+)") if syntax.channel else None
        self._body_parser = CallParser(syntax.body_calls, schemas) if syntax.body_calls is not None else None
        self._state = _HEADER
        self._header: list[str] = []
        self._body: list[str] = []
        self._recipient = ""
        self._json = False
        self._saw_message = False
        self._fallback: list[str] = []  # header text after priming, in case the model never writes a message
        self._after_end = False  # the header being read follows a message end, not a message start
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
            if t and self._call_deltas and self._body_parser is None:
                self._stream_call(t)
        else:
            self._header.append(t)
            if not self._saw_message:
                self._fallback.append(t)

    def mark(self, m: Mark) -> None:
        s, syntax = m.text, self._s
        if s == syntax.message:
            if self._state == _HEADER:
                self._open("".join(self._header))
            return  # a stray message token inside a body is dropped
        if s == syntax.message_end and self._state == _HEADER:  # no message is open: never shown, said
            self._emit.note(f"a message end {s!r} with no message open was dropped; any text after it is read as "
                            "the answer")
        if s == syntax.start or s == syntax.message_end:
            self._close_message()
            self._header = []
            self._after_end = s == syntax.message_end
        elif s == syntax.channel:
            self._close_message()
            self._header.append(s)
        elif s in syntax.header_tokens:  # `<|constrain|>`: part of a header, dropped from a body
            if self._state == _HEADER:
                self._header.append(s)
        else:  # a token of the body call syntax: text wherever it is
            self.text(s)

    def close(self) -> None:
        self._close_message()
        stray = "".join(t for t in self._header if isinstance(t, str) and t not in self.markers)
        if self._after_end and self._saw_message and stray.strip():
            # text after a message end with no new header: not a header, so the answer the model went on writing
            self._emit.content(stray)
            self._emit.note(f"text after the message end {self._s.message_end!r} with no new message header was "
                            "read as the answer")
        if not self._saw_message and self._fallback:
            # no message structure at all: better to show the text than to lose it
            self._emit.content("".join(self._fallback))
            self._fallback = []

    # -- internals --

    def _prime(self, prefix: str) -> None:
        """Start where the generation prompt left off (inside `<|start|>assistant`, or after it opened
        `<|channel|>final<|message|>`), without emitting anything."""
        start, message = self._s.start, self._s.message
        tail = prefix[prefix.rfind(start) + len(start):] if start in prefix else prefix
        if message in tail:
            self._open(tail[: tail.index(message)])
        else:
            self._header = [tail]

    def _open(self, header: str) -> None:
        s = self._s
        self._saw_message = True
        self._header = []
        m = self._recipient_re.search(header) if self._recipient_re else None
        self._recipient = m.group(1) if m else ""
        self._json = bool(_JSON_WORD.search(header))
        channels = self._channel_re.findall(header) if self._channel_re else []
        channel = channels[-1] if channels else ""  # the last one counts (`commentary to=assistant<|channel|>analysis`)
        if self._recipient and self._recipient not in (s.role, s.reasoning, s.content):
            self._state, self._body = _TOOL, []
        elif s.reasoning in (channel, self._recipient):
            self._state = _REASONING
        else:  # the answer, a preamble, or a message without a channel
            self._state = _CONTENT

    def _stream_call(self, t: str) -> None:
        """A JSON call body to a function recipient, as it is written (announced with its first text, never
        while the prompt's header is read)."""
        prefix = self._s.call_prefix
        if not prefix or not self._recipient.startswith(prefix):
            return
        if not self._call_id:
            self._call_id = self._emit.new_id()
            self._emit.call_delta(self._call_id, self._recipient[len(prefix):], "")
        self._emit.call_delta(self._call_id, "", t)

    def _emit_builtin(self, recipient: str, raw: str) -> None:
        """A message to a recipient outside the declared functions' namespace: a built-in tool, never a ToolCall."""
        try:
            args = json.loads(raw) if raw.strip() else None
        except json.JSONDecodeError:
            args = None
        self._emit.builtin_call(recipient, raw, args if isinstance(args, dict) else None)
        self._emit.note(f"the model addressed {recipient!r}, a built-in tool outside the template's namespace of "
                        f"declared functions ({self._s.call_prefix}*): read as a built-in call, not a tool call")

    def _close_message(self) -> None:
        if self._state == _TOOL:
            self._emit_tool_call("".join(self._body))
            self._body, self._call_id = [], ""
        self._state = _HEADER

    def _emit_tool_call(self, raw: str) -> None:
        recipient, prefix = self._recipient, self._s.call_prefix
        if prefix and not recipient.startswith(prefix):
            self._emit_builtin(recipient, raw)
            return
        name = recipient[len(prefix):] if prefix and recipient.startswith(prefix) else recipient
        if not name:
            self._emit.error(raw, f"tool call to={recipient}: no function name")
            return
        if self._body_parser is not None:
            try:
                calls, end = self._body_parser.parse_prefix(raw)
            except ToolParseError as exc:
                self._emit.error(raw, f"tool call to={recipient}: {exc}")
                return
            if not calls:
                self._emit.error(raw, f"tool call to={recipient}: no call in the message")
            for c in calls:
                self._emit.tool_call(c.name, c.arguments, c.raw, c.call_id)
            return
        body = raw.strip()
        try:
            args = json.loads(body) if body else {}
        except json.JSONDecodeError as exc:
            if prefix or self._json:
                self._emit.error(raw, f"tool call to={recipient}: invalid JSON: {exc.msg} at character {exc.pos}")
                return
            args = {"input": raw}  # a format without a functions namespace: free text to the recipient
        if not isinstance(args, dict):
            self._emit.error(raw, f"tool call to={recipient}: the arguments are not a JSON object")
            return
        self._emit.tool_call(name, args, raw)
