"""Reads one assistant turn in the syntax a template analysis found: reasoning, the answer, tool calls.

    START ──reasoning open──► REASONING ──close──► START (an interleaved block may follow)
      │  ──content open / text──► CONTENT ──call trigger──► CALLS ──call or section close──► AFTER
      │  ──call trigger──► CALLS
      └─ text that may start a call with no trigger (Llama 3's bare JSON, functionary's `name\\n{…}`) ──► HOLD
    REASONING ──call──► MUSING: held until the block closes (it was reasoning) or the output ends (it was a call)

Marks (the syntax's tokens) come from the marker scanner, so they are found across any chunking. Calls are
buffered from their trigger and parsed when a closing mark arrives or the turn ends; a call is emitted whole.
What the generation prompt already wrote after the assistant header (`<think>\\n`, `>>>`) is read first, silently,
so the output is read from the state the prompt left.
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping, Sequence

from ..analysis.syntax import CallSyntax, literal_text, with_key
from .call_parse import CallParser, ParsedCall, ToolParseError, bracket_end
from .call_stream import CallStream
from .content import ContentText, LenientCalls, PlainContent
from .events import Emitter
from .markers import Mark
from .habits import CODE_AFTER, SAME_TRIGGER_FORMS

_START, _REASONING, _CONTENT, _CALLS, _HOLD, _AFTER, _MUSING = range(7)
#: A trigger that is markup, not prose: a tag or token (`<tool_call>`, `[TOOL_CALLS]`, `]<]minimax[>[<tool_call>`).
_TOKEN_START = re.compile(r"[<\[]|[>\])}][<\[]")
_LOOKS_LIKE_CALL = re.compile(r'^\s*[\[{]\s*(?:\{\s*)?"(?:name|type|function|tool_name)"')


def _joined(pieces: list[Any]) -> str:
    return "".join(p.text if isinstance(p, Mark) else p for p in pieces)


def _tokens(literal: str, markup: Any) -> list[str]:
    return [s.text for s in markup.spans(literal)] if markup is not None else []


class TurnParser:
    """The format parser behind `StreamReader` for every syntax except channel formats (reader/channels.py)."""

    def __init__(self, emit: Emitter, *, reasoning_tags: tuple[str, str] | None = None,
                 content_markers: tuple[str, str] = ("", ""), content_prefix: str = "",
                 calls: Sequence[CallSyntax] = (), schemas: Mapping[str, Mapping[str, Any]] | None = None,
                 lenient: bool = True, starts_in_reasoning: bool = False, markup: Any = None,
                 reasoning_label: str = "", call_deltas: bool = False):
        self._emit = emit
        self._call_deltas = call_deltas  # stream each call's argument text as it is written (call_stream.py)
        self._stream: CallStream | None = None
        self._open, self._close = reasoning_tags or ("", "")
        self._label = reasoning_label
        self._lead = ""  # the start of a reasoning block, held while it may still be the label
        self._label_pending = bool(self._label)
        self._resume_content = False  # the open block interrupted the answer
        self._in_reasoning = False  # the calls being read started inside a reasoning block
        self._c_open, self._c_close = content_markers
        self._prefix = content_prefix
        self._calls = tuple(calls)
        self._schemas = dict(schemas or {})
        self._by_trigger: dict[str, list[CallSyntax]] = {}
        for syntax in self._calls:
            for trigger in syntax.triggers:
                self._by_trigger.setdefault(trigger, []).append(syntax)
        self._anchored = [s for s in self._calls if s.start_anchored]
        # another template's syntax behind one of this template's triggers, read for declared tools only
        self._also: dict[str, list[CallSyntax]] = {t: [s for s in SAME_TRIGGER_FORMS if t in s.triggers
                                                       and s not in syntaxes]
                                                   for t, syntaxes in self._by_trigger.items()} if lenient else {}
        self._enders = self._ender_marks(markup)
        markers = [m for m in (self._open, self._close, self._c_open, self._c_close) if m]
        markers += list(self._by_trigger) + sorted(self._enders)
        markers += [t for s in self._calls for lit in self._literals(s) for t in _tokens(lit, markup)]
        self.markers: tuple[str, ...] = tuple(dict.fromkeys(markers))
        self._out: Any = ContentText(emit) if self._calls or (lenient and self._schemas) else PlainContent(emit)
        self._content: Any = (LenientCalls(emit, self._out, self._schemas, native=frozenset(self._by_trigger))
                              if lenient and self._schemas else self._out)
        # START decides how the output begins; with nothing to decide, the output is content from its first byte.
        needs_start = bool(self._open or self._prefix or self._anchored)
        self._state = _REASONING if starts_in_reasoning and self._open else _START if needs_start else _CONTENT
        self._start: list[str] = []  # START/HOLD: text not decided yet
        self._primed = 0  # characters of the start buffer that the prompt wrote (never content)
        self._buf: list[str] = []  # CALLS: the section so far
        self._trigger = ""
        self._reasoning_started = False
        self._ws = ""  # trailing whitespace of the reasoning, held until we know it is not the end
        # MUSING: the calls, their section, its end, and what the parser dropped from them (said if they count)
        self._musing: tuple[list[ParsedCall], list[Any], int, list[str]] | None = None
        self._after_musing: list[Any] = []  # MUSING: what followed the calls

    # -- priming --
    def end_priming(self) -> None:
        self._primed = len(_joined(self._start))

    # -- input --
    def text(self, t: str) -> None:
        state = self._state
        if state == _CONTENT:
            self._content.text(t)
        elif state == _REASONING:
            self._reason(t)
        elif state == _CALLS:
            self._buf.append(t)
            if self._stream is not None:
                self._stream.feed(t)
        elif state == _HOLD:
            self._start.append(t)
            if self._stream is not None:
                self._stream.feed(t)
            self._hold_check(final=False)
        elif state == _AFTER:  # text after calls (reader/content.py drops it)
            self._state = _CONTENT
            self._content.text(t)
        elif state == _MUSING:
            self._after_musing.append(t)
        else:
            self._start.append(t)
            self._decide_start(final=False)

    def mark(self, m: Mark) -> None:
        s, state = m.text, self._state
        if state == _MUSING:
            if s != self._close:
                self._after_musing.append(m)
                return
            self._musing_was_reasoning()
            state = self._state
        if state == _REASONING:
            if s != self._open:  # a repeated opener still comes before the label
                if self._lead:
                    self._settle_label(final=True)
                self._label_pending = False
            if s == self._close and self._resume_content:
                self._ws, self._resume_content = "", False
                self._state = _CONTENT
            elif s == self._close:
                self._ws = ""
                self._state = _START
                self._start, self._primed = [], 0
                self._out.skip_leading_ws()
            elif s == self._c_open:
                self._ws = ""
                self._state = _CONTENT
                self._out.skip_leading_ws()
            elif s in self._by_trigger:  # a call ends the block even unclosed, if it parses; else it was musing
                self._in_reasoning = True
                self._to_calls(m)
            elif s != self._open:  # a nested opener is dropped
                self._reason(s)  # a model musing about "<tool_call>" while thinking: it is reasoning text
            return
        if state == _CALLS and self._in_reasoning and s == self._close:
            self._buf.append(m)  # the block closes before any call completed: it was all reasoning
            self._back_to_reasoning()
            return
        if state == _CALLS:
            if s == self._trigger and s[:1] in "<[" and not _joined(self._buf[1:]).strip():
                return  # a token trigger written twice (`[TOOL_CALLS][TOOL_CALLS][…]`); prose is never dropped
            self._buf.append(m)
            if self._stream is not None:
                self._stream.feed(s)
            if s in self._enders:
                self._finish_calls(final=False)
            return
        if state in (_START, _HOLD, _AFTER):
            if state == _HOLD and s not in self._by_trigger:
                self._start.append(m)
                if self._stream is not None:
                    self._stream.feed(s)
                return
            self._flush_start()
        if s == self._open and state in (_START, _AFTER):  # reasoning opens a turn (or follows its calls)
            self._open_reasoning()
        elif s == self._open and state == _CONTENT:  # a block inside the answer: reasoning, then the answer again
            self._open_reasoning()
            self._resume_content = True
        elif s in self._by_trigger:
            self._to_calls(m)
        elif s == self._c_open:
            self._state = _CONTENT
        elif s in (self._close, self._c_close) or s in self._enders:
            if s == self._close:  # no block is open: the marker is dropped, what came before stays the answer
                self._emit.note(f"a closing reasoning marker {s!r} with no block open was dropped; any text "
                                "before it was read as the answer")
            if self._state != _CONTENT:
                self._state = _AFTER
        else:
            self._state = _CONTENT  # another token of the syntax outside a call: never shown

    def close(self) -> None:
        if self._state == _MUSING:
            self._musing_was_call()
        state = self._state
        if state == _REASONING and self._lead:
            self._settle_label(final=True)
        if state in (_START, _HOLD, _AFTER):
            if state == _HOLD:
                self._hold_check(final=True)
            self._flush_start(final=True)
        for _ in range(10_000):  # calls parsed at the end may hand back text holding further calls
            if self._state != _CALLS:
                break
            self._finish_calls(final=True)
        if hasattr(self._content, "close") and self._content is not self._out:
            self._content.close()
        self._out.close()

    def skip_leading_ws(self) -> None:
        self._out.skip_leading_ws()

    # -- START: reasoning, a content prefix, or a call with no trigger --
    def _decide_start(self, final: bool) -> None:
        buf = _joined(self._start)
        lead = buf[self._primed:] if self._primed else buf
        s = buf.lstrip()
        if not s:
            if final:
                self._start = []
            return
        if self._prefix:
            p = self._prefix.lstrip()
            if s.startswith(p):
                rest = s[len(p):]
                self._start, self._primed = [], 0
                self._state = _CONTENT
                if rest.strip():
                    self._content.text(rest)
                return
            if p.startswith(s) and not final:
                return
        if self._anchored and self._may_start_call(s):
            self._state = _HOLD
            if self._call_deltas and not self._emit.muted:  # a call with no trigger streams once its head is sure
                self._stream = CallStream(self._anchored, self._emit)
                self._stream.feed(buf)
            self._hold_check(final)
            return
        self._start, self._primed = [], 0
        self._state = _CONTENT
        if lead.strip():
            self._content.text(lead.lstrip())

    def _may_start_call(self, s: str) -> bool:
        for syntax in self._anchored:
            lit = literal_text(syntax.call_open).strip() or syntax.section_open.strip()
            if syntax.shape == "json" or syntax.list_wrapped:
                if s[0] in "{[" or (lit and (s.startswith(lit) or lit.startswith(s))):
                    return True
            elif lit:
                if s.startswith(lit) or lit.startswith(s):
                    return True
            elif s[0].isalpha() or s[0] == "_":
                return True
        return False

    def _hold_check(self, final: bool) -> None:
        """HOLD: parse once the held text can be judged (its JSON closed and no other call follows, or the turn
        ended)."""
        pieces = self._start
        buf = _joined(pieces)
        text = buf.lstrip()
        lead = len(buf) - len(text)
        if not final:
            if text[:1] in "{[":
                if not _json_run_settled(text):
                    return
            elif len(text) < 4096:
                if not any(self._anchored_prefix_fails(s, text) for s in self._anchored):
                    return
        answer = self._json_answer(text)
        for syntax in () if answer else self._anchored:
            try:
                calls, end = CallParser(syntax, self._schemas, at_end=final).parse_prefix(text)
            except ToolParseError:
                continue
            if calls:
                self._start, self._primed, self._stream = [], 0, None
                self._emit_calls(calls)
                self._state = _AFTER
                self._replay(pieces, lead + end)
                return
        if final and not answer and _LOOKS_LIKE_CALL.match(text) and any(s.shape == "json" for s in self._anchored):
            self._start, self._primed, self._stream = [], 0, None
            self._emit.error(text, "a JSON tool call that does not parse")
            self._state = _AFTER
            return
        if final or text[:1] in "{[" or any(self._anchored_prefix_fails(s, text) for s in self._anchored):
            self._stream = None
            self._emit.announced.clear()
            self._state = _START
            self._flush_start(final=final)

    def _json_answer(self, text: str) -> bool:
        """A JSON object opening the turn with no arguments key that names no declared tool (`{"name": "Alice"}`):
        with no trigger to say it is a call, it is the answer (a user asked for JSON), never a call named Alice."""
        if text[:1] not in "{[":
            return False
        try:
            value, _ = json.JSONDecoder().raw_decode(text)
        except ValueError:
            return False
        arg_keys = {"arguments", "parameters", "args"} | {s.json_args[0] for s in self._anchored
                                                           if s.shape == "json" and s.json_args}
        for item in value if isinstance(value, list) else [value]:
            if not isinstance(item, dict) or "function" in item or set(item) & arg_keys:
                continue
            if len(item) == 1 and isinstance(next(iter(item.values())), dict):
                continue  # `{"get_weather": {…}}`: the name as the only key, judged by the parser
            name = item.get("name", item.get("tool_name"))
            if not (isinstance(name, str) and name in self._schemas):
                return True
        return False

    def _anchored_prefix_fails(self, syntax: CallSyntax, text: str) -> bool:
        """A name-first call (functionary `name\\n{…}`): give up once the text cannot be `name` + `between`."""
        lit = literal_text(syntax.call_open).strip() or syntax.section_open.strip()
        if lit and lit.startswith(text):
            return False  # still reading the opener (firefunction's `functools`)
        body = text[len(lit):].lstrip() if lit and text.startswith(lit) else text
        if syntax.shape == "json" or syntax.list_wrapped:
            return body[:1] not in "{[" if body else False
        m = re.match(r"[A-Za-z_][\w.\-/]*", body)
        if m is None:
            return bool(body)
        rest = body[m.end():]
        between = literal_text(syntax.between)
        if not rest:
            return len(body) > 64
        return not (rest.startswith(between) or between.startswith(rest) or rest.lstrip().startswith(between.strip()))

    def _flush_start(self, final: bool = False) -> None:
        """Release undecided start text as content (what the prompt wrote is never content)."""
        if not self._start:
            return
        buf = _joined(self._start)
        lead = buf[self._primed:]
        self._start, self._primed = [], 0
        if self._prefix and buf.lstrip().startswith(self._prefix.lstrip()):
            lead = buf.lstrip()[len(self._prefix.lstrip()):]
        if lead.strip():
            self._state = _CONTENT
            self._content.text(lead.lstrip())

    # -- CALLS --
    def _to_calls(self, trigger: Mark) -> None:
        if self._content is not self._out:
            self._content.close()  # whitespace before the trigger stays pending: prose if no call follows
        self._state = _CALLS
        self._trigger = trigger.text
        self._buf = [trigger]
        self._stream = None
        if self._call_deltas and not self._in_reasoning:  # a call begun while thinking may yet be musing
            self._stream = CallStream(self._by_trigger.get(trigger.text, ()), self._emit)
            self._stream.feed(trigger.text)

    def _replay(self, pieces: list[Any], offset: int) -> None:
        """Feed what follows `offset` in `pieces` (text and marks) through the parser again."""
        pos = 0
        for piece in pieces:
            text = piece.text if isinstance(piece, Mark) else piece
            end = pos + len(text)
            if end > offset:
                if isinstance(piece, Mark) and pos >= offset:
                    self.mark(piece)
                else:
                    self.text(text[max(0, offset - pos):])
            pos = end

    def _finish_calls(self, final: bool) -> None:
        pieces = self._buf
        text = _joined(pieces)
        syntaxes = self._by_trigger.get(self._trigger, [])
        also = self._also.get(self._trigger, []) if self._schemas else []
        error: ToolParseError | None = None
        for syntax in [*syntaxes, *also]:
            parser = CallParser(syntax, self._schemas, at_end=final)
            try:
                calls, end = parser.parse_prefix(text)
            except ToolParseError as exc:
                error = error or exc
                continue
            if syntax in also and not all(c.name in self._schemas for c in calls):
                continue
            if calls and self._in_reasoning and not final:  # the block may yet go on: then it was musing
                self._stream, self._buf = None, []
                self._musing, self._after_musing = (calls, pieces, end, parser.notes), []
                self._state = _MUSING
                return
            for note in parser.notes if calls else ():  # (a call that stays reasoning leaves no note)
                self._emit.note(note)
            if calls:
                self._stream = None
                self._emit_calls(calls)
                self._buf = []
                self._state = _AFTER
                self._replay(pieces, end)
                return
        last = pieces[-1] if pieces else None
        ended = isinstance(last, Mark) and last.text in self._enders
        if not final and not ended:
            return
        self._stream = None
        if self._in_reasoning:
            self._back_to_reasoning()
            return
        self._buf = []
        body = text[len(self._trigger):].strip()
        code = CODE_AFTER.get(self._trigger)
        if code is not None and body and not body.startswith(("{", "[")):
            self._emit_calls([ParsedCall(code.tool, {code.argument: body}, body, None)])
        elif self._trigger.strip() and (_TOKEN_START.match(self._trigger) or self._trigger in self._enders):
            raw = text[len(self._trigger):]
            for ender in self._enders:
                raw = raw[: -len(ender)] if raw.endswith(ender) else raw
            self._out.drop_pending()
            self._emit.error(raw.strip(), f"{self._trigger}: {error or 'no tool call follows it'}")
        else:  # a plain-text trigger (Command-R+ `Action:`) that did not lead to calls: it was prose
            self._state = _CONTENT
            self._content.text(text)
        self._state = _AFTER

    def _open_reasoning(self) -> None:
        self._state = _REASONING
        self._reasoning_started = False
        self._label_pending = bool(self._label)

    def _back_to_reasoning(self) -> None:
        """A trigger inside reasoning that led to no call: the trigger and what followed are read as reasoning."""
        pieces, self._buf = self._buf, []
        self._in_reasoning = False
        self._state = _REASONING
        self._reason(pieces[0].text if isinstance(pieces[0], Mark) else pieces[0])
        self._replay(pieces[1:], 0)

    def _musing_was_reasoning(self) -> None:
        """A call written inside a reasoning block that then closed: the model was thinking about it."""
        assert self._musing is not None
        pieces = self._musing[1] + self._after_musing
        self._musing, self._after_musing, self._in_reasoning = None, [], False
        self._state = _REASONING
        self._reason(_joined(pieces))

    def _musing_was_call(self) -> None:
        """The output ended inside the reasoning block after a call: the call ended the block."""
        assert self._musing is not None
        calls, pieces, end, notes = self._musing
        rest = self._after_musing
        self._musing, self._after_musing = None, []
        for note in notes:
            self._emit.note(note)
        self._emit_calls(calls)
        self._state = _AFTER
        self._replay(pieces, end)
        self._replay(rest, 0)

    def _emit_calls(self, calls: list[ParsedCall]) -> None:
        self._in_reasoning, self._ws = False, ""
        self._out.drop_pending()
        for c in calls:
            self._emit.tool_call(c.name, c.arguments, c.raw, c.call_id)
        self._emit.announced.clear()  # announced calls the parser did not find end unfinished
        self._out.after_call()

    # -- reasoning --
    def _reason(self, t: str) -> None:
        if not self._reasoning_started:
            t = t.lstrip()
            if not t:
                return
            if self._label_pending:
                self._lead += t
                self._settle_label(final=False)
                return
            self._reasoning_started = True
        body = t.rstrip()
        if body:
            self._emit.reasoning(self._ws + body if self._ws else body)
            self._ws = t[len(body):]
        else:
            self._ws += t

    def _settle_label(self, final: bool) -> None:
        """Drop the block's label (`thought` then whitespace) once the held start shows it is, or is not, there."""
        lead, label = self._lead, self._label
        if label.startswith(lead) and lead != label and not final:
            return  # still undecided
        if lead == label or (lead.startswith(label) and lead[len(label)].isspace()):
            lead = lead[len(label):]
        self._lead, self._label_pending = "", False
        self._reason(lead)

    # -- syntax literals --
    @staticmethod
    def _literals(syntax: CallSyntax) -> list[str]:
        lits = [syntax.section_open, syntax.section_close, literal_text(syntax.call_open),
                literal_text(syntax.call_close), literal_text(syntax.between)]
        if syntax.params is not None:
            p = syntax.params
            lits += [literal_text(p.key_prefix), literal_text(p.key_suffix), literal_text(p.value_suffix),
                     p.string_quote]
            if p.list_item:  # a nested list's `<item>` and `</item>`: structure, even where a vocabulary marks them
                lits += [literal_text((*p.key_prefix, p.list_item, *p.key_suffix)),
                         literal_text(with_key(p.value_suffix, p.list_item))]
        return [lit for lit in lits if lit.strip()]

    def _ender_marks(self, markup: Any) -> set[str]:
        """Marks after which the buffered calls can be parsed: the last token of a call's or a section's close."""
        out: set[str] = set()
        for syntax in self._calls:
            opener = syntax.section_open.strip()
            first = _tokens(opener, markup)[:1]
            lead = opener[:opener.find(first[0])] if first and not opener.startswith(first[0]) else ""
            for lit in (literal_text(syntax.call_close), syntax.section_close):
                toks = _tokens(lit, markup) if markup is not None else []
                stripped = lit.strip()
                if toks:
                    out.add(toks[-1])
                    if lead.strip() and stripped == lead + toks[-1]:
                        out.add(stripped)  # the run the template writes before its tokens (`]<]minimax[>[</invoke>`)
                elif len(stripped) >= 3 and not stripped.isalnum() and not any(ch.isspace() for ch in stripped):
                    out.add(stripped)  # a plain-text closer such as a code fence, never a lone ">"
        return out


def _json_run_settled(text: str) -> bool:
    """Whether held JSON can be judged: its values are complete and something other than another value follows."""
    pos = 0
    while True:
        end = bracket_end(text, pos)
        if end is None:
            return False
        rest = text[end:].lstrip().lstrip(",;").lstrip()
        if not rest:
            return False  # another call may still follow
        if rest[0] not in "{[":
            return True
        pos = len(text) - len(rest)
