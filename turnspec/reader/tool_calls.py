"""Tool calls in the answer text: Hermes/Qwen `<tool_call>`, Llama-3.x JSON and `<|python_tag|>`, Mistral `[TOOL_CALLS]`.

Each parser receives the answer (content) as text pieces and the format's marks, and emits `Content`,
`ToolCall` or `ToolCallError` through an `Emitter`. Arguments always come out as a dict; anything that
does not parse becomes a `ToolCallError` with the raw text (never an exception mid-stream).
Harmony tool calls live in `harmony.py`: there the recipient is in the message header.

Whitespace: text that only separates tool calls (the newline between `</tool_call>` and the next
`<tool_call>`, the blank line before one) is not content; any other content is kept verbatim.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from .events import Emitter
from .markers import Mark

_DECODER = json.JSONDecoder()


class ToolParseError(ValueError):
    """Raised inside the parsers; always turned into a `ToolCallError` event."""


def call_from_object(obj: Any) -> tuple[str, dict[str, Any], str | None]:
    """(name, arguments, id) from one decoded call object in any of the usual shapes.

    Accepts `{"name", "arguments"}` (Hermes, Mistral), `{"name", "parameters"}` (Llama 3.x),
    `{"type": "function", "function": {...}}` (OpenAI style), and arguments given as a JSON string.
    """
    if not isinstance(obj, dict):
        raise ToolParseError(f"a tool call must be a JSON object, got {type(obj).__name__}")
    fn = obj.get("function")
    if isinstance(fn, dict) and "name" in fn:
        obj = {**fn, "id": obj.get("id")}
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        raise ToolParseError('the tool call has no "name"')
    args = obj.get("arguments", obj.get("parameters", {}))
    if args is None:
        args = {}
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError as exc:
            raise ToolParseError(f"the arguments of {name!r} are a string that is not JSON: {exc}") from None
    if not isinstance(args, dict):
        raise ToolParseError(f"the arguments of {name!r} are not a JSON object")
    call_id = obj.get("id")
    return name, args, call_id if isinstance(call_id, str) and call_id else None


def decode_json_values(text: str) -> list[Any]:
    """All JSON values in `text`, separated by whitespace, ',' or ';' (how models list several calls)."""
    values: list[Any] = []
    i, n = 0, len(text)
    while True:
        while i < n and (text[i].isspace() or text[i] in ",;"):
            i += 1
        if i >= n:
            return values
        try:
            value, i = _DECODER.raw_decode(text, i)
        except json.JSONDecodeError as exc:
            raise ToolParseError(f"invalid JSON: {exc.msg} at character {exc.pos}") from None
        values.append(value)


def parse_json_calls(text: str) -> list[tuple[str, dict[str, Any], str | None]]:
    """Calls from JSON text: one object, several objects, or a list of objects."""
    values = decode_json_values(text)
    if not values:
        raise ToolParseError("the tool call is empty")
    flat: list[Any] = []
    for v in values:
        flat.extend(v if isinstance(v, list) else [v])
    return [call_from_object(v) for v in flat]


def emit_calls(emit: Emitter, raw: str, calls: list[tuple[str, dict[str, Any], str | None]]) -> None:
    for name, args, call_id in calls:
        emit.tool_call(name, args, raw, call_id)


class ContentText:
    """Content with the whitespace rule above: holds a trailing whitespace run until it is known not to
    precede a tool call, and can drop the whitespace that follows one."""

    __slots__ = ("_emit", "_pending_ws", "_skip_ws")

    def __init__(self, emit: Emitter):
        self._emit = emit
        self._pending_ws = ""
        self._skip_ws = False

    def text(self, t: str) -> None:
        if self._skip_ws:
            t = t.lstrip()
            if not t:
                return
            self._skip_ws = False
        body = t.rstrip()
        if body:
            self._emit.content(self._pending_ws + body if self._pending_ws else body)
            self._pending_ws = t[len(body):]
        else:
            self._pending_ws += t

    def drop_pending(self) -> None:
        """A tool call follows: the whitespace before it was separation, not content."""
        self._pending_ws = ""

    def skip_leading_ws(self) -> None:
        """Drop whitespace until the next visible character (after a tool call or `</think>`)."""
        self._pending_ws = ""
        self._skip_ws = True

    def close(self) -> None:
        if self._pending_ws:
            self._emit.content(self._pending_ws)
            self._pending_ws = ""


class PlainContent:
    """No tool-call format: every piece is content (text is passed through unchanged)."""

    markers: tuple[str, ...] = ()

    def __init__(self, emit: Emitter):
        self._emit = emit
        self._skip_ws = False

    def text(self, t: str) -> None:
        if self._skip_ws:
            t = t.lstrip()
            if not t:
                return
            self._skip_ws = False
        self._emit.content(t)

    def mark(self, m: Mark) -> None:
        self.text(m.text)

    def skip_leading_ws(self) -> None:
        self._skip_ws = True

    def close(self) -> None:
        pass


class HermesToolParser:
    """`<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, any number per turn (Hermes, Qwen2.5, Qwen3).

    A call is emitted as soon as its `</tool_call>` arrives; an unterminated one is parsed at the end.
    """

    OPEN, CLOSE = "<tool_call>", "</tool_call>"
    markers = (OPEN, CLOSE)

    def __init__(self, emit: Emitter):
        self._emit = emit
        self._out = ContentText(emit)
        self._buf: list[str] | None = None

    def text(self, t: str) -> None:
        if self._buf is not None:
            self._buf.append(t)
        else:
            self._out.text(t)

    def mark(self, m: Mark) -> None:
        if m.text == self.OPEN:
            if self._buf is not None:
                self._finish(terminated=False)
            self._out.drop_pending()
            self._buf = []
        elif m.text == self.CLOSE:
            if self._buf is not None:
                self._finish(terminated=True)
                self._out.skip_leading_ws()
            # a stray </tool_call> outside a call is format noise: dropped
        else:
            self.text(m.text)

    def skip_leading_ws(self) -> None:
        self._out.skip_leading_ws()

    def close(self) -> None:
        if self._buf is not None:
            self._finish(terminated=False)
        self._out.close()

    def _finish(self, terminated: bool) -> None:
        raw = "".join(self._buf or ()).strip()
        self._buf = None
        try:
            calls = parse_json_calls(raw)
        except ToolParseError as exc:
            where = "" if terminated else " (no closing </tool_call>)"
            self._emit.error(raw, f"<tool_call>{where}: {exc}")
            return
        emit_calls(self._emit, raw, calls)


_LOOKS_LIKE_CALL = re.compile(r'^\s*[\[{]\s*(?:\{\s*)?"(?:name|type|function)"')
_BUILTIN_CALL = re.compile(r"^\s*([A-Za-z_][\w.]*)\.call\((.*)\)\s*$", re.S)


def parse_python_tag(body: str) -> list[tuple[str, dict[str, Any], str | None]]:
    """What follows Llama's `<|python_tag|>`: JSON call(s), a built-in `name.call(k="v")`, or code for `python`."""
    stripped = body.strip()
    if stripped[:1] in ("{", "["):
        return parse_json_calls(stripped)
    m = _BUILTIN_CALL.match(stripped)
    if m:
        try:
            node = ast.parse(f"f({m.group(2)})", mode="eval").body
            assert isinstance(node, ast.Call) and not node.args
            args = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}
        except (SyntaxError, ValueError, AssertionError):
            raise ToolParseError(f"cannot read the arguments of built-in call {m.group(1)}") from None
        return [(m.group(1), args, None)]
    if not stripped:
        raise ToolParseError("<|python_tag|> is followed by nothing")
    return [("python", {"code": stripped}, None)]


class Llama3ToolParser:
    """Llama 3.x: a turn whose text is JSON `{"name": ..., "parameters": {...}}` (one or several), or
    anything after `<|python_tag|>` (JSON, a built-in `brave_search.call(query="...")`, or Python code).

    A turn that begins with `{` or `[` is held until the turn ends, because only then is it known whether
    it is a call or a JSON answer; JSON that is not a call is released as content.
    """

    PYTHON_TAG = "<|python_tag|>"
    markers = (PYTHON_TAG,)

    def __init__(self, emit: Emitter):
        self._emit = emit
        self._out = ContentText(emit)
        self._lead = ""  # leading whitespace before the first visible character
        self._state = "start"  # start | content | json | python
        self._buf: list[str] = []

    def text(self, t: str) -> None:
        state = self._state
        if state == "content":
            self._out.text(t)
        elif state == "start":
            lead = self._lead + t
            s = lead.lstrip()
            if not s:
                self._lead = lead
            elif s[0] in "{[":
                self._state, self._buf, self._lead = "json", [s], ""
            else:
                self._state, self._lead = "content", ""
                self._out.text(lead)
        else:
            self._buf.append(t)

    def mark(self, m: Mark) -> None:
        if m.text != self.PYTHON_TAG:
            self.text(m.text)
            return
        self._end_segment()
        self._out.drop_pending()
        self._state, self._buf, self._lead = "python", [], ""

    def skip_leading_ws(self) -> None:
        self._out.skip_leading_ws()

    def close(self) -> None:
        if self._state == "start" and self._lead:
            self._out.text(self._lead)
        self._end_segment()
        self._out.close()

    def _end_segment(self) -> None:
        state, raw = self._state, "".join(self._buf)
        self._buf = []
        if state == "json":
            self._state = "content"
            try:
                calls = parse_json_calls(raw)
            except ToolParseError as exc:
                if _LOOKS_LIKE_CALL.match(raw):
                    self._emit.error(raw, f"Llama-3 JSON tool call: {exc}")
                else:
                    self._out.text(raw)
                return
            emit_calls(self._emit, raw.strip(), calls)
        elif state == "python":
            self._state = "content"
            try:
                calls = parse_python_tag(raw)
            except ToolParseError as exc:
                self._emit.error(raw, f"<|python_tag|>: {exc}")
                return
            emit_calls(self._emit, raw.strip(), calls)
            self._out.skip_leading_ws()


class MistralToolParser:
    """Mistral: `[TOOL_CALLS][{"name": ..., "arguments": {...}, "id": "..."}]` (Nemo and older), and the
    newer `[TOOL_CALLS]name[ARGS]{...}` form. Everything after `[TOOL_CALLS]` is the calls; they are
    parsed when the turn ends (or when the next `[TOOL_CALLS]` starts another)."""

    TOOL_CALLS, ARGS = "[TOOL_CALLS]", "[ARGS]"
    markers = (TOOL_CALLS, ARGS)

    def __init__(self, emit: Emitter):
        self._emit = emit
        self._out = ContentText(emit)
        self._buf: list[str] | None = None
        self._args_at: int | None = None  # index in _buf where [ARGS] was

    def text(self, t: str) -> None:
        if self._buf is not None:
            self._buf.append(t)
        else:
            self._out.text(t)

    def mark(self, m: Mark) -> None:
        if m.text == self.TOOL_CALLS:
            self._end_segment()
            self._out.drop_pending()
            self._buf, self._args_at = [], None
        elif m.text == self.ARGS and self._buf is not None and self._args_at is None:
            self._args_at = len(self._buf)
        else:
            self.text(m.text)

    def skip_leading_ws(self) -> None:
        self._out.skip_leading_ws()

    def close(self) -> None:
        self._end_segment()
        self._out.close()

    def _end_segment(self) -> None:
        if self._buf is None:
            return
        buf, args_at = self._buf, self._args_at
        self._buf, self._args_at = None, None
        if args_at is not None:
            name, args_text = "".join(buf[:args_at]).strip(), "".join(buf[args_at:]).strip()
            raw = f"{name}{self.ARGS}{args_text}"
            try:
                calls = [call_from_object({"name": name, "arguments": _one_json_value(args_text)})]
            except ToolParseError as exc:
                self._emit.error(raw, f"[TOOL_CALLS]: {exc}")
                return
        else:
            raw = "".join(buf).strip()
            try:
                calls = parse_json_calls(raw)
            except ToolParseError as exc:
                self._emit.error(raw, f"[TOOL_CALLS]: {exc}")
                return
        emit_calls(self._emit, raw, calls)
        self._out.skip_leading_ws()


def _one_json_value(text: str) -> Any:
    values = decode_json_values(text)
    if len(values) != 1:
        raise ToolParseError(f"expected one JSON object after [ARGS], found {len(values)} values")
    return values[0]


TOOL_PARSERS = {
    "none": PlainContent,
    "hermes": HermesToolParser,
    "llama3": Llama3ToolParser,
    "mistral": MistralToolParser,
}
