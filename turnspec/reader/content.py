"""The answer text: whitespace around tool calls, and the loose call forms small models write in it.

Whitespace: text that only separates tool calls (the newline between two calls, the blank line before one) is not
content; any other content is kept verbatim.

Text after a tool call is dropped, for every syntax (with a note in `Result.warnings`): a message is its answer
followed by its calls, templates render it in that order and end the turn with the calls, so text the model writes
after them has no place in the message (rendered back it would move before the calls). It is typically the model
running on past its turn, often inventing the tool's result ("It is 30 degrees."): shown as the answer before the
tool ran, that misleads. Calls written after it are still read, except a loose call that only repeats the calls just
read (a model echoing its call body after the call's end): it is read once, with a warning.

Lenient calls (only when the request declared tools, and only for a declared tool's name): a JSON call object in
the answer (bare or in a ```json fence), `<function=name>{…}</function>`, a pythonic `[name(key=value)]`, or a
`<tool_call>{…}</tool_call>` on a template that writes calls another way. Text is held back only while it can still
become such a call; anything else passes through unchanged, so prose with `{`, `[` or `<` stays prose.
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping

from .call_parse import ParsedCall, ToolParseError, bracket_end, call_from_object, pythonic_calls
from .events import Emitter
from .habits import LOOSE_FORMS

_DECODER = json.JSONDecoder()
#: Keys a JSON call object may start with.
_CALL_KEYS = ("name", "function", "tool_name", "type", "tool", "id")
_CANDIDATE = re.compile(r"[{\[`<]")
_OPENERS = tuple(form.opener for form in LOOSE_FORMS)
_MAX_HOLD = 65536


TEXT_AFTER_CALLS = ("text written after the tool calls was dropped: the template ends an assistant turn with its "
                    "calls, so what follows them is not part of the message")


ECHOED_CALL = ("a loose call written after the tool calls repeats the calls just read (the model echoing its call "
               "body after the call's end): read once")


def _repeats(calls: list[ParsedCall], read: list[Any]) -> bool:
    """Whether `calls` are, name and arguments, the last calls already read."""
    last = read[-len(calls):] if calls and len(read) >= len(calls) else None
    return last is not None and all((c.name, c.arguments) == (r.name, r.arguments) for c, r in zip(calls, last))


class ContentText:
    """Content with the whitespace rule: holds a trailing whitespace run until it is known not to precede a tool
    call; after a call, nothing is content any more (see the module doc)."""

    __slots__ = ("_emit", "_pending_ws", "_skip_ws", "_called")

    def __init__(self, emit: Emitter):
        self._emit = emit
        self._pending_ws = ""
        self._skip_ws = False
        self._called = False  # a tool call was read: the answer is over

    def text(self, t: str) -> None:
        if self._called:
            if t.strip():
                self._emit.note(TEXT_AFTER_CALLS)
            return
        if self._skip_ws:
            t = t.lstrip()  # nothing to separate from yet
            if not t:
                return
            self._skip_ws = False
        body = t.rstrip()
        if body:
            self._emit.content(self._pending_ws + body if self._pending_ws else body)
            self._pending_ws = t[len(body):]
        else:
            self._pending_ws += t

    @property
    def called(self) -> bool:
        return self._called

    def drop_pending(self) -> None:
        """A tool call follows: the whitespace before it was separation, not content."""
        self._pending_ws = ""

    def after_call(self) -> None:
        """A tool call ended: the answer is over."""
        self._pending_ws = ""
        self._called = True

    def skip_leading_ws(self) -> None:
        """Drop whitespace until the next visible character (after a reasoning block)."""
        self._pending_ws = ""
        self._skip_ws = True

    def close(self) -> None:
        if self._pending_ws and not self._called:
            self._emit.content(self._pending_ws)
        self._pending_ws = ""


class PlainContent:
    """Content with no tool calls to watch for: passed through unchanged, as it arrives."""

    __slots__ = ("_emit", "_skip_ws")

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

    def drop_pending(self) -> None:
        pass

    def after_call(self) -> None:
        self._skip_ws = True

    def skip_leading_ws(self) -> None:
        self._skip_ws = True

    def close(self) -> None:
        pass


class LenientCalls:
    """Content filter that turns loose call forms naming a declared tool into calls (see the module doc)."""

    def __init__(self, emit: Emitter, out: ContentText, schemas: Mapping[str, Mapping[str, Any]],
                 native: frozenset[str] = frozenset()):
        self._emit = emit
        self._out = out
        self._names = frozenset(schemas)
        self._held = ""
        # a form whose opener the template's own syntax starts with is the template's, not a loose call
        self._openers = tuple(o for o in _OPENERS if o not in native)

    def text(self, t: str) -> None:
        if self._held:
            self._held += t
            self._decide(final=False)
            return
        while t:
            m = _CANDIDATE.search(t)
            if m is None:
                self._out.text(t)
                return
            if m.start():
                self._out.text(t[:m.start()])
            self._held = t[m.start():]
            t = ""
            self._decide(final=False)

    def close(self) -> None:
        while self._held:
            self._decide(final=True)
            if self._held:
                self._release(len(self._held))

    # -- deciding what the held text is --
    def _decide(self, final: bool) -> None:
        while self._held:
            verdict = self._judge(self._held, final)
            if verdict is None:  # still undecided
                if len(self._held) > _MAX_HOLD:
                    self._release(1)
                    continue
                return
            if isinstance(verdict, int):  # not a call: release up to the next candidate
                self._release(verdict)
                continue
            calls, end = verdict
            self._out.drop_pending()
            if self._out.called and _repeats(calls, self._emit.tool_calls):
                self._emit.note(ECHOED_CALL)
            else:
                for c in calls:
                    self._emit.tool_call(c.name, c.arguments, c.raw, c.call_id)
            self._out.after_call()
            rest = self._held[end:]
            self._held = ""
            if rest:
                self.text(rest)
            return

    def _release(self, n: int) -> None:
        """Pass the first held character (and what follows up to the next candidate) through as content; the rest,
        which starts with a candidate, stays held for the caller's loop (never a recursion: an answer may hold
        thousands of `<`)."""
        held = self._held
        m = _CANDIDATE.search(held, 1)
        cut = m.start() if m else len(held)
        self._out.text(held[:cut])
        self._held = held[cut:]

    def _judge(self, h: str, final: bool) -> tuple[list[ParsedCall], int] | int | None:
        """(calls, end) when `h` starts with a call; 1 when it cannot; None while undecided."""
        c = h[0]
        if c == "{":
            return self._json_at(h, 0, final)
        if c == "[":
            return self._list(h, final)
        if c == "`":
            return self._fence(h, final)
        if c == "<":
            return self._tag(h, final)
        return 1

    def _json_at(self, h: str, start: int, final: bool, end_extra: str = "") -> Any:
        """A JSON call object (or list of them) at `start` naming a declared tool."""
        head = h[start:start + 64]
        m = re.match(r'\{\s*"([^"\\]*)"?', head)
        if m is None:
            stripped = head[1:].lstrip()
            return None if not stripped and not final else 1
        key_closed = head[m.end() - 1] == '"' and m.end() > m.start(1)
        key = m.group(1)
        if not key_closed and not final:
            return None if any(k.startswith(key) for k in (*_CALL_KEYS, *self._names)) else 1
        if key not in _CALL_KEYS and key not in self._names:
            return 1
        value, end = _complete_json(h, start, final)
        if end is None or end == 1:
            return end
        try:
            name, args, call_id = call_from_object(value, None, self._names)
        except ToolParseError:
            return 1
        if name not in self._names:
            return 1
        if end_extra:
            tail = h[end:]
            stripped = tail.lstrip()
            if not stripped.startswith(end_extra):
                return None if (not stripped or end_extra.startswith(stripped)) and not final else 1
            end += len(tail) - len(stripped) + len(end_extra)
        return [ParsedCall(name, args, h[start:end].strip(), call_id)], end

    def _list(self, h: str, final: bool) -> Any:
        body = h[1:].lstrip()
        if not body:
            return None if not final else 1
        if body[0] == "{":  # a JSON list of call objects
            value, end = _complete_json(h, 0, final)
            if end is None or end == 1:
                return end
            if not isinstance(value, list) or not value:
                return 1
            calls = []
            for item in value:
                try:
                    name, args, call_id = call_from_object(item, None, self._names)
                except ToolParseError:
                    return 1
                if name not in self._names:
                    return 1
                calls.append(ParsedCall(name, args, json.dumps(item, ensure_ascii=False), call_id))
            return calls, end
        m = re.match(r"[A-Za-z_][\w.]*", body)
        if m is None:
            return 1
        word = m.group()
        if m.end() == len(body) and not final:
            return None if any(n.startswith(word) for n in self._names) else 1
        if word not in self._names or not body[m.end():].lstrip().startswith("("):
            return None if body[m.end():].strip() == "" and not final else 1
        end = bracket_end(h, 0)
        if end is None:
            return 1 if final else None
        try:
            calls = pythonic_calls(h[:end])
        except ToolParseError:
            return 1
        return (calls, end) if all(c.name in self._names for c in calls) else 1

    def _fence(self, h: str, final: bool) -> Any:
        m = re.match(r"```(?:json|JSON|tool_call|tool_code)?[ \t]*\n", h)
        if m is None:
            return None if not final and re.fullmatch(r"`{1,3}[A-Za-z_]*[ \t]*", h) else 1
        rest = h[m.end():].lstrip()
        if not rest:
            return None if not final else 1
        start = len(h) - len(rest)
        if rest[0] == "{":
            return self._json_at(h, start, final, end_extra="```")
        return 1

    def _tag(self, h: str, final: bool) -> Any:
        for opener in self._openers[:2]:
            if opener.startswith(h) and len(h) < len(opener):
                return None if not final else 1
        if h.startswith("<function="):
            m = re.match(r"<function=([\w.\-]+)>", h)
            if m is None:
                return None if not final and re.fullmatch(r"<function=[\w.\-]*", h) else 1
            if m.group(1) not in self._names:
                return 1
            pos = m.end()
            while pos < len(h) and h[pos].isspace():
                pos += 1
            if pos >= len(h):
                return None if not final else 1
            value, end = _complete_json(h, pos, final)
            if end is None or end == 1:
                return end
            if not isinstance(value, dict):
                return 1
            tail = h[end:]
            stripped = tail.lstrip()
            if not stripped.startswith("</function>"):
                return None if not final and "</function>".startswith(stripped) else 1
            end += len(tail) - len(stripped) + len("</function>")
            return [ParsedCall(m.group(1), value, h[:end])], end
        if h.startswith("<tool_call>") and "<tool_call>" in self._openers:
            close = h.find("</tool_call>")
            if close < 0:
                return None if not final else 1
            return self._json_at(h, len("<tool_call>") + len(h[11:]) - len(h[11:].lstrip()), final,
                                 end_extra="</tool_call>")
        return 1


def _complete_json(h: str, start: int, final: bool) -> tuple[Any, int | None]:
    """(value, end) of the JSON value at `start`; (None, None) while it may still complete; (None, 1) if it cannot."""
    end = bracket_end(h, start)
    if end is None:
        return None, (1 if final else None)
    try:
        return json.loads(h[start:end]), end
    except ValueError:
        return None, 1
