"""Tool-call arguments as they are written: the JSON text of each call's arguments, handed out piece by piece
while the call section is still being generated (OpenAI streams `function.arguments`, Anthropic `input_json_delta`).

Only where the template's syntax writes the arguments as JSON text right after the name: JSON call objects with
the name key before the arguments key (Hermes, Mistral Nemo, Llama 3's `{"name", "parameters"}` that starts the
turn with no trigger), and tagged calls `name` + `between` + `{…}` (Mistral v11, DeepSeek, Kimi, functionary).
Channel formats' function calls (Harmony's message body is the JSON) stream in reader/channels.py.

The call parser still reads the whole section when it ends and emits the `ToolCall`; the pieces streamed for a
call are exactly the model's argument text, so they join into JSON that parses to that call's arguments. Anything
this does not recognise with certainty (keys in another order, arguments given as a string, tagged parameters,
pythonic calls) is simply not streamed: that call's arguments arrive whole with its `ToolCall`.
"""

from __future__ import annotations

import json
import re
from typing import Sequence

from ..analysis.syntax import NAME, CallSyntax
from .call_parse import pattern_regex
from .events import Emitter

_STRING = r'"(?P<name>(?:[^"\\]|\\.)*)"'
MAX_HEAD_GAP = 4096  # a call head not found this far into the section: the section is not one this reads


def head_pattern(syntax: CallSyntax) -> re.Pattern[str] | None:
    """A regex for the text before a call's arguments (its name in group `name`), ending where the arguments'
    `{` starts; None when this syntax's arguments are not JSON text that follows the name."""
    if syntax.shape == "json" and not syntax.name_is_key and not syntax.args_as_string:
        name, args = syntax.json_name, syntax.json_args
        if not name or len(name) != len(args) or name[:-1] != args[:-1] or name[-1] == args[-1]:
            return None  # only sibling keys in one object
        outer = "".join(r"\{\s*" + re.escape(json.dumps(key)) + r"\s*:\s*" for key in name[:-1])
        source = (outer + r"\{\s*" + re.escape(json.dumps(name[-1])) + r"\s*:\s*" + _STRING + r"\s*,\s*"
                  + re.escape(json.dumps(args[-1])) + r"\s*:\s*(?=\{)")
        return re.compile(source, re.S)
    if syntax.shape == "tagged" and syntax.args == "json":
        return re.compile(pattern_regex(tuple(syntax.call_open) + (NAME,)) + pattern_regex(syntax.between)
                          + r"\s*(?=\{)", re.S)
    return None


class CallStream:
    """Follows one call section as it grows (`feed`), announcing each call (a delta with its name) and then its
    argument text (deltas) through the emitter. The ids it announces are the ids the section's ToolCalls get."""

    def __init__(self, syntaxes: Sequence[CallSyntax], emit: Emitter):
        heads = [p for p in (head_pattern(s) for s in syntaxes[:1]) if p is not None]
        self._head = heads[0] if heads else None
        # objects the head opens before the arguments (the call object, `{"function": {…`): closed after them
        self._outer = len(syntaxes[0].json_name) if syntaxes and syntaxes[0].shape == "json" else 0
        self._closing = False  # the arguments ended: reading to the end of the call object
        self._emit = emit
        self._text = ""
        self._pos = 0  # where the next call's head is looked for
        self._id = ""  # the call whose arguments are being written ("" between calls)
        self._sent = 0  # how far its argument text has been handed out
        self._depth = 0
        self._in_string = False
        self._escaped = False
        self._scanned = 0

    def feed(self, piece: str) -> None:
        if self._head is None or not piece:
            return
        self._text += piece
        while self._head is not None and (self._id or self._closing or self._find_head()):
            if not (self._close_call() if self._closing else self._scan()):
                return

    def _find_head(self) -> bool:
        m = self._head.search(self._text, self._pos) if self._head is not None else None
        if m is None:
            if len(self._text) - self._pos > MAX_HEAD_GAP:
                self._head = None
            return False
        gap = self._text[self._pos:m.start()]
        if "{" in gap or '"' in gap:  # something came first that this did not follow: stop streaming the section
            self._head = None
            return False
        try:
            name = json.loads(f'"{m.group("name")}"')
        except ValueError:
            name = m.group("name")
        self._id = m.groupdict().get("id") or self._emit.new_id()
        self._emit.call_delta(self._id, name, "")
        self._sent = self._scanned = m.end()
        self._depth, self._in_string, self._escaped = 0, False, False
        return True

    def _scan(self) -> bool:
        """Hand out the argument text written so far; True when the arguments closed (look for the next call)."""
        end = self._walk()
        upto = end if end is not None else len(self._text)
        if upto > self._sent:
            self._emit.call_delta(self._id, "", self._text[self._sent:upto])
            self._sent = upto
        if end is None:
            return False
        self._id, self._pos = "", end
        self._closing, self._depth = self._outer > 0, self._outer
        return True

    def _close_call(self) -> bool:
        """Skip the rest of the call object (a model-written `"id"` after the arguments); True once it closed."""
        end = self._walk()
        if end is None:
            return False
        self._closing, self._pos = False, end
        return True

    def _walk(self) -> int | None:
        """Read on from where the last feed stopped until the brackets open at the start close again: where they
        closed, or None (the text so far read, the state kept for the next piece)."""
        text, i = self._text, self._scanned
        depth, in_string, escaped = self._depth, self._in_string, self._escaped
        end = None
        while i < len(text):
            ch = text[i]
            i += 1
            if in_string:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == '"':
                    in_string = False
            elif ch == '"':
                in_string = True
            elif ch in "{[":
                depth += 1
            elif ch in "}]":
                depth -= 1
                if depth == 0:
                    end = i
                    break
        self._depth, self._in_string, self._escaped, self._scanned = depth, in_string, escaped, i
        return end
