"""One assistant turn on an engine: generation stopped by turnspec's stop set, output read by the streaming reader.
`run` (chat_session.py), the server and turnspec.Conversation share the turn machinery here.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator

from .reader.events import Content, Done, Event, Reasoning, ToolCall

if TYPE_CHECKING:
    from .spec import ModelSpec


@dataclass
class GenerationOptions:
    max_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop_strings: tuple[str, ...] = ()
    tools: list[Any] | None = None  # the tools the model may call: rendered into the prompt, and read back
    # forced structure: tool_choice "required" / {"type": "function", ...}, response_format (see turnspec.constrain)
    tool_choice: Any = None
    response_format: Any = None
    parallel_tool_calls: bool = False
    constraint: Any = None  # the plan for the current turn (set per turn from the three fields above)
    logprobs: int | None = None  # report each token's logprob and this many alternatives (engines with `logprobs`)
    token_ids: bool = False  # report each generated token id (the server's `return_token_ids`)
    call_deltas: bool = False  # the reader also streams each tool call's argument text (ToolCallDelta events)


@dataclass
class TurnResult:
    """One assistant turn, with the numbers a user wants to see (`--json`, verbose status line)."""

    content: str = ""
    reasoning: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    # messages to built-in tools the caller did not declare (gpt-oss's `to=python`): never tool calls
    builtin_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None
    stopped_by: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    time_to_first_token_s: float | None = None
    total_s: float = 0.0
    notices: list[str] = field(default_factory=list)
    completion_ids: list[int] = field(default_factory=list)  # the sampled ids, verbatim (sessions keep them)
    # prompt ids whose KV cache the engine reused from an earlier turn (None: the engine does not say)
    cached_tokens: int | None = None

    @property
    def tokens_per_s(self) -> float | None:
        """Decode speed: tokens after the first, over the time after the first (prompt processing excluded)."""
        if self.completion_tokens < 2 or self.time_to_first_token_s is None:
            return None
        decode = self.total_s - self.time_to_first_token_s
        return (self.completion_tokens - 1) / decode if decode > 0 else None

    def assistant_message(self) -> dict[str, Any]:
        """The turn as a history message: reasoning kept as `reasoning_content` (the template decides to drop it)."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.reasoning:
            message["reasoning_content"] = self.reasoning
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        return message

    def as_dict(self) -> dict[str, Any]:
        return {
            "content": self.content, "reasoning": self.reasoning, "tool_calls": self.tool_calls,
            **({"builtin_calls": self.builtin_calls} if self.builtin_calls else {}),
            "finish_reason": self.finish_reason, "stopped_by": self.stopped_by,
            "usage": {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                      "total_tokens": self.prompt_tokens + self.completion_tokens,
                      "cached_tokens": self.cached_tokens},
            "timings": {"time_to_first_token_s": self.time_to_first_token_s, "total_s": self.total_s,
                        "tokens_per_s": self.tokens_per_s},
            "notices": self.notices,
        }


def system_role_error(spec: ModelSpec) -> str | None:
    """The template's own message when it rejects a system role (Gemma-2: "System role not supported"), else None
    (the analysis's `system` fact)."""
    system = spec.analysis.system
    return (system.message or "the template raises on a system message") if system.mode == "unsupported" else None


class TurnFeed:
    """One assistant turn being read, token by token: the reader's events, the stop rules the reader applies,
    and the numbers in `result`. `stream_turn` pulls tokens from an engine through it; the server's batch
    scheduler pushes the tokens of many turns, one step at a time.

    `reader` and `stop_ids` replace the chat reader and the spec's halt ids (raw completions bring their own).
    """

    def __init__(self, spec: ModelSpec, enc: Any, options: GenerationOptions, result: TurnResult, *,
                 reader: Any = None, stop_ids: Any = None):
        self.options, self.result = options, result
        result.prompt_tokens = len(enc.ids)
        self.halt = frozenset(spec.stops.halt_ids if stop_ids is None else stop_ids)
        # The reader stops on the same ids the engine halts on, so an end-of-text token is reported as the stop.
        if reader is None:
            forced_call = options.constraint is not None and options.constraint.kind == "tool_call"
            # a forced call is read back whatever the template's syntax: the plan's notice says how, not the
            # reader's "not readable" warning
            reader = spec.reader(enc.text, tools=options.tools, extra_stop_strings=options.stop_strings,
                                 stop_ids=self.halt, **({"warnings": ()} if forced_call else {}),
                                 **({"call_deltas": True} if options.call_deltas else {}))
        self.reader = reader
        self.generated = 0
        self.started = time.perf_counter()
        if options.constraint is not None:
            result.notices.extend(n for n in options.constraint.notices if n not in result.notices)

    @property
    def done(self) -> bool:
        return self.reader.done

    def feed(self, token: int) -> list[Event]:
        if self.generated == 0:
            self.result.time_to_first_token_s = time.perf_counter() - self.started
        self.generated += 1
        self.result.completion_ids.append(int(token))
        return self.reader.feed_token(token)

    def finish(self, cancelled: bool = False) -> list[Event]:
        """Close the turn (after the reader stopped, or the engine did); fill `result`."""
        events: list[Event] = []
        if not self.reader.done:
            length = self.generated >= self.options.max_tokens and not cancelled
            events = self.reader.finish("length" if length else "stop")
        result = self.result
        result.total_s = time.perf_counter() - self.started
        result.completion_tokens = self.generated
        final = self.reader.result
        result.notices.extend(w for w in final.warnings if w not in result.notices)
        result.content, result.reasoning = final.content, final.reasoning
        result.finish_reason, result.stopped_by = final.finish_reason, final.stopped_by
        result.tool_calls = [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                             for c in final.tool_calls]
        result.builtin_calls = [{"recipient": b.recipient, "body": b.body, "arguments": b.arguments}
                                for b in final.builtin_calls]
        return events


def stream_turn(spec: ModelSpec, engine: Any, enc: Any, options: GenerationOptions, result: TurnResult,
                cancel: threading.Event | None = None, *, reader: Any = None,
                stop_ids: Any = None, on_sampled: Callable[[Any], Any] | None = None) -> Iterator[Event]:
    """Generate one assistant turn from an encoded prompt: the engine stops on the spec's halt ids, the reader
    stops on stop strings and next-turn headers (then the engine is closed mid-stream). Fills `result`.

    `reader` and `stop_ids` replace the chat reader and the spec's halt ids (raw completions bring their own).
    `on_sampled` gets each token's `engines.base.Sampled` (with logprobs when `options.logprobs` is set) before
    the reader reads it."""
    from .engines.base import Sampled

    turn = TurnFeed(spec, enc, options, result, reader=reader, stop_ids=stop_ids)
    extra: dict[str, Any] = {"constraint": options.constraint} if options.constraint is not None else {}
    with_logprobs = on_sampled is not None and options.logprobs is not None
    if with_logprobs:
        extra.update(logprobs=options.logprobs, on_logprobs=on_sampled)
    steps = engine.generate(enc.ids, max_tokens=options.max_tokens, temperature=options.temperature,
                            top_p=options.top_p, seed=options.seed, stop_ids=turn.halt, cancel=cancel, **extra)
    try:
        for token in steps:
            if on_sampled is not None and not with_logprobs:
                on_sampled(Sampled(token))
            yield from turn.feed(token)
            if turn.done:
                break
    finally:
        close = getattr(steps, "close", None)
        if close is not None:
            close()
    result.cached_tokens = getattr(engine, "last_reused", None)
    yield from turn.finish(cancelled=cancel is not None and cancel.is_set())


def constrained(spec: ModelSpec, backend: str | None, prompt_text: str, options: GenerationOptions) -> GenerationOptions:
    """`options` with the turn's constraint planned (forced call, JSON answer), checked against what the engine's
    `backend` ("gbnf", "llguidance", None) can enforce; unchanged when nothing is forced. Raises ConstraintError."""
    if options.tool_choice in (None, "auto", "none") and options.response_format is None:
        return options
    from dataclasses import replace

    from .constrain import check, plan

    constraint = plan(spec, prompt_text, tools=options.tools, tool_choice=options.tool_choice,
                      response_format=options.response_format, parallel_tool_calls=options.parallel_tool_calls)
    if constraint is not None:
        check(constraint, backend)
    return replace(options, constraint=constraint)


__all__ = ["GenerationOptions", "TurnFeed", "TurnResult", "stream_turn", "Content", "Reasoning", "ToolCall", "Done"]
