"""`turnspec run`'s chat: history kept as exact ids across turns (turnspec.conversation, the default), or
re-rendered through the model's template every turn. Above both chat.py (one turn on an engine) and
conversation.py (the exact-ids history), which it joins.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable, Iterator

from .chat import GenerationOptions, TurnResult, constrained, stream_turn, system_role_error
from .conversation import Conversation
from .errors import TurnspecError
from .reader.events import Event
from .session import SessionError

if TYPE_CHECKING:
    from .spec import ModelSpec


class ChatSession:
    """Multi-turn chat with one model on one engine. Not thread-safe: one turn at a time."""

    def __init__(self, spec: ModelSpec, engine: Any, *, system: str | None = None, system_mode: str = "merge",
                 options: GenerationOptions | None = None, template_kwargs: dict[str, Any] | None = None,
                 history: str = "exact"):
        if system_mode not in ("merge", "error"):
            raise TurnspecError(f"--system-mode {system_mode!r}: choose merge or error")
        if history not in ("exact", "rerender"):
            raise TurnspecError(f"history {history!r}: choose exact or rerender")
        # "exact": the ids of earlier turns are kept as sampled and only new tokens are evaluated each turn;
        # "rerender": the template renders the whole history every turn (turns it rewrites are evaluated again)
        self.history_mode = history
        self._conv: Any = None  # the Conversation holding the exact ids ("exact")
        self.spec = spec
        self.engine = engine
        self.options = options or GenerationOptions()
        self.template_kwargs = dict(template_kwargs or {})
        self.history: list[dict[str, Any]] = []
        self.system = system
        self.system_merged = False
        self.notices: list[str] = []
        if system is not None:
            error = system_role_error(spec)
            if error is not None:
                if system_mode == "error":
                    raise TurnspecError(f"{spec.name}'s template rejects a system message ({error}); "
                                        "use --system-mode merge to put it into the first user turn")
                self.system_merged = True
                self.notices.append(f"{spec.name}'s template rejects a system role ({error}): "
                                    "the system text is merged into the first user turn")
        self.last: TurnResult | None = None
        # Called with each turn's Encoding before generation (`turnspec run --show-prompt`).
        self.on_prompt: Callable[[Any], None] | None = None

    # --- prompt building --------------------------------------------------------------------------------------
    def conversation(self, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The messages the template sees: the system prompt first, or merged into the first user turn."""
        if self.system is None:
            return list(history)
        if not self.system_merged:
            return [{"role": "system", "content": self.system}, *history]
        out = [dict(m) for m in history]
        for m in out:
            if m.get("role") == "user":
                m["content"] = f"{self.system}\n\n{m.get('content') or ''}"
                break
        return out

    def encode_prompt(self, history: list[dict[str, Any]]) -> tuple[Any, list[str]]:
        """Encode, dropping the oldest turns (never the system prompt) until prompt + max_tokens fit the context."""
        notices: list[str] = []
        history = list(history)
        limit = getattr(self.engine, "context_length", 0) or 0
        while True:
            enc = self.spec.encode(self.conversation(history), add_generation_prompt=True, assistant_mask=False,
                                   tools=self.options.tools, **self.template_kwargs)
            if not limit or len(enc.ids) + self.options.max_tokens <= limit or len(history) <= 1:
                break
            cut = next((k for k in range(1, len(history)) if history[k].get("role") == "user"), len(history) - 1)
            dropped, history = history[:cut], history[cut:]
            notices.append(f"context full ({len(enc.ids)} + {self.options.max_tokens} > {limit} tokens): "
                           f"dropped the oldest {len(dropped)} message(s)")
        if notices:
            self.history[:] = history
        return enc, notices

    # --- one turn ---------------------------------------------------------------------------------------------
    def stream(self, user_text: str, cancel: threading.Event | None = None) -> Iterator[Event]:
        """Send a user message; yield the reader's events as tokens arrive. `self.last` holds the TurnResult after."""
        self.history.append({"role": "user", "content": user_text})
        try:
            enc, notices = self._exact_prompt() if self.history_mode == "exact" else self.encode_prompt(self.history)
            if self.on_prompt is not None:
                self.on_prompt(enc)
            result = TurnResult(notices=notices)
            options = constrained(self.spec, getattr(self.engine, "constrain_backend", None), enc.text, self.options)
            yield from stream_turn(self.spec, self.engine, enc, options, result, cancel=cancel)
        except BaseException:
            self.history.pop()
            if self._conv is not None:
                self._conv.abandon()
            raise
        if self.history_mode == "exact":
            self._conv.complete(result)
        self.history.append(result.assistant_message())
        self.last = result

    def _exact_prompt(self) -> tuple[Any, list[str]]:
        """The next prompt from the kept ids: the earlier ids verbatim + the new user turn. The first turn, and a
        turn that no longer fits the context (oldest turns dropped), start a new Conversation from the history."""

        notices: list[str] = []
        limit = getattr(self.engine, "context_length", 0) or 0
        fits = lambda e: not limit or len(e.ids) + self.options.max_tokens <= limit  # noqa: E731
        if self._conv is not None:
            try:
                enc = self._conv.prompt([self.history[-1]])
            except SessionError as exc:
                notices.append(f"the exact history cannot be continued ({exc.reason}: {exc}); this turn "
                               "re-renders the conversation through the template")
                enc = self._conv.prompt([self.history[-1]], rerender=True)
            if fits(enc):
                return enc, notices
            self._conv.abandon()
        self._conv = Conversation(self.spec, self.engine, tools=self.options.tools, **self.template_kwargs)
        enc = self._conv.prompt(self.conversation(self.history))
        if not fits(enc):
            self._conv.abandon()
            _, dropped = self.encode_prompt(self.history)  # drops the oldest turns until the prompt fits
            notices += dropped
            self._conv = Conversation(self.spec, self.engine, tools=self.options.tools, **self.template_kwargs)
            enc = self._conv.prompt(self.conversation(self.history))
        return enc, notices

    def ask(self, user_text: str) -> TurnResult:
        """Non-streaming: one whole turn."""
        for _ in self.stream(user_text):
            pass
        assert self.last is not None
        return self.last


__all__ = ["ChatSession"]
