"""What the reader yields: typed events for streaming callers and one `Result` for everyone else.

Events are small frozen dataclasses so a chat UI, a server (SSE deltas) and the library API can all
dispatch on the type alone. `Result` is what the events add up to.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Union

STOP = "stop"
LENGTH = "length"
TOOL_CALLS = "tool_calls"

# stop kinds: why the turn ended, beyond the finish reason
STOP_TOKEN = "token"  # a stop token id, or its text in a text stream
STOP_STRING = "string"  # a caller's/spec's stop string
TURN_HEADER = "turn_header"  # the self-conversation guard: the model began the next turn itself


@dataclass(frozen=True, slots=True)
class Reasoning:
    """A piece of the model's reasoning (Harmony analysis channel, or `<think>` text)."""

    text: str


@dataclass(frozen=True, slots=True)
class Content:
    """A piece of the answer the user should see."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One complete tool call. `arguments` is always a JSON object (dict); `raw` is the model's text.

    `id` is generated (9 alphanumeric characters, which Mistral's template also accepts) unless the model
    wrote one; it is excluded from equality so streamed and whole reads compare equal.
    """

    name: str
    arguments: dict[str, Any]
    raw: str = ""
    id: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a tool call's arguments as the model writes them, before the call is complete (only from readers
    built with `call_deltas=True`). The first one of a call names it; the arguments of all of a call's deltas,
    joined, are the JSON text the model wrote, which parses to the `ToolCall` that follows with the same `id`.
    If the call then fails to parse, a `ToolCallError` follows instead."""

    id: str
    name: str
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class ToolCallError:
    """A tool call that could not be parsed: the raw text and why, instead of an exception mid-stream."""

    raw: str
    message: str


@dataclass(frozen=True, slots=True)
class BuiltinCall:
    """A message the model addressed to a tool outside the template's namespace of declared functions (gpt-oss's
    `to=python`, `to=browser.search`, `to=container.exec`, where the template renders the caller's tools as
    `functions.*`): a built-in tool the model was trained with, which the caller did not declare and which is
    therefore never a `ToolCall`. `body` is the message as written; `arguments` its JSON object, or None."""

    recipient: str
    body: str
    arguments: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Done:
    """The turn ended. `stop` is the stop token / stop string / turn header that fired (None otherwise)."""

    finish_reason: str
    stop: str | None = None
    stop_kind: str | None = None

    @property
    def self_conversation(self) -> bool:
        """True when the model started writing the next turn's header itself."""
        return self.stop_kind == TURN_HEADER


Event = Union[Reasoning, Content, ToolCall, ToolCallDelta, ToolCallError, BuiltinCall, Done]


@dataclass(slots=True)
class Result:
    """The whole turn, for callers that do not stream."""

    content: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    errors: list[ToolCallError] = field(default_factory=list)
    builtin_calls: list[BuiltinCall] = field(default_factory=list)
    finish_reason: str | None = None
    stopped_by: str | None = None
    stop_kind: str | None = None
    warnings: list[str] = field(default_factory=list, compare=False)  # about the reading, not what was read

    @property
    def self_conversation(self) -> bool:
        return self.stop_kind == TURN_HEADER


def collect(events: list[Event]) -> Result:
    """Fold a list of events into a `Result` (what a non-streaming caller would have got)."""
    content: list[str] = []
    reasoning: list[str] = []
    result = Result()
    for ev in events:
        if isinstance(ev, Content):
            content.append(ev.text)
        elif isinstance(ev, Reasoning):
            reasoning.append(ev.text)
        elif isinstance(ev, ToolCall):
            result.tool_calls.append(ev)
        elif isinstance(ev, ToolCallError):
            result.errors.append(ev)
        elif isinstance(ev, BuiltinCall):
            result.builtin_calls.append(ev)
        elif isinstance(ev, Done):
            result.finish_reason, result.stopped_by, result.stop_kind = ev.finish_reason, ev.stop, ev.stop_kind
    result.content = "".join(content)
    result.reasoning = "".join(reasoning)
    return result


def _new_call_id() -> str:
    return uuid.uuid4().hex[:9]


class Emitter:
    """Where parsers put what they found: the events of the current feed call, and the running totals.

    Shared by the think / tool / Harmony parsers so they need not know about each other or the reader.
    """

    __slots__ = ("events", "content_parts", "reasoning_parts", "tool_calls", "errors", "new_id", "muted", "announced",
                 "notes", "builtin_calls", "declared")

    def __init__(self, new_id: Callable[[], str] | None = None):
        self.events: list[Event] = []
        self.content_parts: list[str] = []
        self.reasoning_parts: list[str] = []
        self.tool_calls: list[ToolCall] = []
        self.errors: list[ToolCallError] = []
        self.new_id = new_id or _new_call_id
        self.muted = False  # while the prompt's own tail is read: nothing it holds is the model's output
        self.announced: list[str] = []  # ids of the calls whose arguments streamed (call_stream.py), in order
        self.notes: list[str] = []  # what the reader dropped or decided about malformed output (Result.warnings)
        self.builtin_calls: list[BuiltinCall] = []
        self.declared: frozenset[str] | None = None  # the request's tool names, when it told them

    def note(self, text: str) -> None:
        if not self.muted and text not in self.notes:
            self.notes.append(text)

    def content(self, text: str) -> None:
        if text and not self.muted:
            self.events.append(Content(text))
            self.content_parts.append(text)

    def reasoning(self, text: str) -> None:
        if text and not self.muted:
            self.events.append(Reasoning(text))
            self.reasoning_parts.append(text)

    def call_delta(self, call_id: str, name: str, arguments: str) -> None:
        """A call being written: announced with its name (the first delta), then its argument text."""
        if self.muted:
            return
        if name:
            self.announced.append(call_id)
        self.events.append(ToolCallDelta(call_id, name, arguments))

    def tool_call(self, name: str, arguments: dict[str, Any], raw: str, call_id: str | None = None) -> None:
        if self.muted:
            return
        # a call whose arguments streamed keeps the id its deltas carried (the client has it already)
        call = ToolCall(name, arguments, raw, self.announced.pop(0) if self.announced else call_id or self.new_id())
        if self.declared is not None and name not in self.declared:  # read all the same: the syntax says it is a call
            self.note(f"the model called {name!r}, a tool the request did not declare")
        self.events.append(call)
        self.tool_calls.append(call)

    def builtin_call(self, recipient: str, body: str, arguments: dict[str, Any] | None) -> None:
        if self.muted:
            return
        call = BuiltinCall(recipient, body, arguments)
        self.events.append(call)
        self.builtin_calls.append(call)

    def error(self, raw: str, message: str) -> None:
        self.announced.clear()
        if self.muted:
            return
        err = ToolCallError(raw, message)
        self.events.append(err)
        self.errors.append(err)
