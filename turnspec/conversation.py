"""Run a conversation (with tools) on an engine, token in, token out: the public API for agent loops and RL rollouts.

    conv = turnspec.Conversation(spec, engine, tools=TOOLS)   # engine: a loaded engine, a name, or None (the
                                                              # spec's weights in the engine its kind calls for)
    turn = conv.send([{"role": "user", "content": "Weather in Paris?"}])
    turn.message        # the assistant message read from the sampled ids: content, reasoning_content, tool_calls
    turn.ids            # the sampled ids, verbatim
    turn = conv.send([{"role": "tool", "tool_call_id": ..., "content": "18 C"}])   # only the new messages
    conv.training_sample()                                                          # one sample per conversation

It is a `turnspec.session.Session` driven by an engine: the first `send` renders the messages, every later one
appends what the template writes after the assistant turn and the new messages to the exact ids kept so far, so
earlier tokens never change (no re-rendered reasoning or arguments) and an engine with a KV cache (llama.cpp, MLX)
evaluates only the new tokens. `history="rerender"` renders the whole conversation through the template each turn
instead (what the template would show the model; earlier tokens may change, see `spec.prefix_report()`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

from .errors import TurnspecError

HISTORIES = ("exact", "rerender")


def open_engine(spec: Any, engine: str | None = None, **options: Any) -> Any:
    """Load `spec`'s weights (`spec.files.path`) into the engine named (llamacpp, mlx, transformers; default: the
    one its kind calls for). `options` go to the engine (`n_ctx`, `n_threads`, ...). Close it when done."""
    from .engines import load_engine

    return load_engine(engine, spec.files.path, **options)


@dataclass
class Turn:
    """One assistant turn: the parsed message, the ids it was sampled as, and the prompt it continued."""

    message: dict[str, Any]  # role, content, reasoning_content, tool_calls (read from `ids` by token id)
    ids: list[int]  # the sampled ids, verbatim (the stop token included when one was sampled)
    prompt_ids: list[int]  # the whole prompt of this turn
    new_prompt_tokens: int  # prompt ids this turn added to the conversation (the rest were kept from before)
    finish_reason: str | None = None  # "stop", "tool_calls", "length"
    cached_tokens: int | None = None  # prompt ids the engine's KV cache already held (None: the engine does not say)
    notices: list[str] = field(default_factory=list)
    result: Any = None  # the chat.TurnResult: timings, stop, usage


class Conversation:
    """One conversation on one engine, kept as exact ids (see the module doc). Not thread-safe: one turn at a time."""

    def __init__(self, spec: Any, engine: Any = None, *, tools: Sequence[dict | Callable] | None = None,
                 history: str = "exact", specials_in_content: str = "text", **template_kwargs: Any):
        if history not in HISTORIES:
            raise TurnspecError(f"history={history!r}: choose 'exact' (kept ids) or 'rerender' (the template's "
                                "rendering every turn)")
        self.spec = spec
        self._owns_engine = engine is None or isinstance(engine, str)
        if self._owns_engine:  # the spec's own weights, in the engine named (default: by the model's kind)
            engine = open_engine(spec, engine)
        self.engine = engine
        self.tools = list(tools) if tools else None
        self.history = history
        self.session = spec.session(self.tools, specials_in_content=specials_in_content, **template_kwargs)
        self.turns: list[Turn] = []
        self._before: Any = None  # the session before the pending prompt (restored if its generation fails)
        self._added = 0

    def close(self) -> None:
        """Free the engine when this conversation loaded it (an engine passed in stays open)."""
        if self._owns_engine:
            self.engine.close()

    def __enter__(self) -> "Conversation":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- state ---------------------------------------------------------------------------------------------
    @property
    def ids(self) -> list[int]:
        """Every id of the conversation so far (prompts, sampled ids, the template's text between them)."""
        return self.session.ids

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The conversation, assistant turns as read from their sampled ids."""
        return self.session.messages

    @property
    def last(self) -> Turn | None:
        return self.turns[-1] if self.turns else None

    def training_sample(self, messages: Any = None) -> Any:
        """One training sample for the whole conversation (`Session.training_sample`): loss on the sampled ids."""
        return self.session.training_sample(messages)

    # --- one turn ------------------------------------------------------------------------------------------
    def send(self, messages: Sequence[Mapping[str, Any]], **generation: Any) -> Turn:
        """Add `messages` (the first call: the conversation so far; later: the new messages, or the whole
        conversation again) and generate the assistant's answer. Keyword options as `stream`."""
        for _ in self.stream(messages, **generation):
            pass
        assert self.last is not None
        return self.last

    def stream(self, messages: Sequence[Mapping[str, Any]], *, max_tokens: int = 512, temperature: float = 0.0,
               top_p: float = 1.0, seed: int | None = None, stop: Sequence[str] = (), tool_choice: Any = None,
               response_format: Any = None, parallel_tool_calls: bool = False,
               cancel: threading.Event | None = None) -> Iterator[Any]:
        """Like `send`, yielding the reader's events (Content, Reasoning, ToolCall, ToolCallError, Done) as
        tokens arrive; the Turn is `self.last` after. `tool_choice` / `response_format` force a call or a JSON
        answer by grammar, as the server does. A generation that fails changes nothing kept."""
        from .chat import GenerationOptions, TurnResult, constrained, stream_turn

        enc = self.prompt(messages)
        room = (getattr(self.engine, "context_length", 0) or 0) - len(enc.ids)
        options = GenerationOptions(max_tokens=min(max_tokens, room) if room > 0 else max_tokens,
                                    temperature=temperature, top_p=top_p, seed=seed, stop_strings=tuple(stop),
                                    tools=self.tools, tool_choice=tool_choice, response_format=response_format,
                                    parallel_tool_calls=parallel_tool_calls)
        result = TurnResult()
        try:
            options = constrained(self.spec, getattr(self.engine, "constrain_backend", None), enc.text, options)
            yield from stream_turn(self.spec, self.engine, enc, options, result, cancel=cancel)
        except BaseException:
            self.abandon()
            raise
        self.complete(result)

    # --- the steps, for callers that run the engine themselves (turnspec run, a batch of rollouts) ------------
    def prompt(self, messages: Sequence[Mapping[str, Any]], *, rerender: bool | None = None) -> Any:
        """The next prompt as an `Encoding` (ids, text): the first call renders `messages`; later ones extend the
        kept ids with the new messages (`history="rerender"` or `rerender=True`: render the whole conversation).
        Raises SessionError (nothing changed) where an exact extension cannot be proven; follow with `complete`."""
        from .encoding import Encoding

        if self.session.state == "prompted":
            raise TurnspecError("the last prompt has no completion yet: call complete(result) or abandon() first")
        self._before = self.session.fork()
        try:
            if self.session.state == "new":
                ids = self.session.prompt_ids(messages)
            else:
                again = self.history == "rerender" if rerender is None else rerender
                ids = self.session.extend(messages, rerender=again)
        except BaseException:
            self._before = None
            raise
        from .engines.base import common_prefix

        self._added = len(ids) - common_prefix(self._before.ids, ids)
        return Encoding(ids=ids, text=self.session.prompt_text, generation_start=len(ids))

    def complete(self, result: Any, finish_reason: str | None = None) -> Turn:
        """Keep the sampled ids of the pending prompt (a chat.TurnResult, or a list of ids) and read them."""
        ids = list(getattr(result, "completion_ids", result))
        prompt = self.session.ids
        reason = finish_reason or getattr(result, "finish_reason", None)
        message = self.session.add_completion(ids, "length" if reason == "length" else "stop")
        turn = Turn(message, ids, prompt, self._added, reason, getattr(result, "cached_tokens", None),
                    list(getattr(result, "notices", []) or []), result if hasattr(result, "completion_ids") else None)
        self._before = None
        self.turns.append(turn)
        return turn

    def abandon(self) -> None:
        """Forget the pending prompt (its generation failed or was not run): the conversation is as before it."""
        if self._before is not None:
            self.session, self._before = self._before, None
