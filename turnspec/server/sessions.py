"""Kept sessions: a chat request that continues an earlier conversation reuses that conversation's exact ids.

A client resends the whole conversation every turn: the earlier request's messages, the answer it got, new
messages. Re-rendering that through the template changes earlier tokens on templates that rewrite history (Qwen3
drops past reasoning, arguments come back re-serialized), and every changed token is prefilled again. So after
each answer the server keeps its `turnspec.session.Session` (prompt ids + the sampled ids, verbatim) under a hash
of the canonical JSON of the request's messages and the answer as the server returned it. A later request whose
messages start with exactly that is extended from the kept ids (`Session.extend`): only the new messages are new
tokens, and the engine's KV prefix covers the rest (`usage.prompt_tokens_details.cached_tokens`).

Where that cannot be proven right (no kept session matches, the answer ended on a stop string or was cut, the
session refuses the extension), the request is rendered whole, as without sessions. Kept sessions are bounded:
least recently used first out (`turnspec serve --max-sessions`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from ..encoding import Encoding
from ..session import message_calls
from .jobs import Finished, Job

log = logging.getLogger("turnspec.server")
DEFAULT_MAX_SESSIONS = 128


@dataclass
class SessionStats:
    """Counters for /health and tests."""

    kept: int = 0  # sessions stored after an answer
    continued: int = 0  # requests extended from a kept session
    rendered: int = 0  # requests rendered whole (nothing kept matched, or the extension was refused)
    refused: int = 0  # a kept session matched but could not be extended (then rendered whole)
    evicted: int = 0


class SessionStore:
    """An LRU of kept sessions, shared by every API (the hook is `ServerCore.start_chat`). Thread-safe."""

    def __init__(self, capacity: int = DEFAULT_MAX_SESSIONS):
        if capacity < 0:
            raise ValueError("the number of kept sessions must be >= 0")
        self.capacity = capacity
        self.stats = SessionStats()
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def encode(self, model_id: str, spec: Any, call: Any) -> tuple[Encoding, Any]:
        """The prompt of `call` and the session it belongs to (None: sessions off or unusable for this model).
        Raises what `spec.encode` raises for a bad conversation (TemplateError, TurnspecError)."""
        from ..session import SessionError

        if self.capacity == 0:
            return _whole(spec, call), None
        chain = _chain(model_id, call)
        msgs = call.messages
        for p in range(len(msgs) - 1, 0, -1):  # the longest kept conversation first
            if msgs[p - 1].get("role") != "assistant":
                continue
            held = self._get(chain[p])
            if held is None:
                continue
            session = held.fork()
            try:
                ids = session.extend(msgs[p:])
            except SessionError as exc:
                log.info("kept session not continued (%s): rendering the conversation whole", exc.reason)
                with self._lock:
                    self.stats.refused += 1
                break
            with self._lock:
                self.stats.continued += 1
            return _encoding(ids, session), session
        with self._lock:
            self.stats.rendered += 1
        try:
            session = spec.session(call.tools, **call.template_kwargs)
            ids = session.prompt_ids(msgs)
        except SessionError:  # the template cannot frame turns, or the conversation ends with an assistant turn
            return _whole(spec, call), None
        return _encoding(ids, session), session

    def keep(self, model_id: str, call: Any, session: Any, result: Any) -> bool:
        """Keep `session` after its answer (`result`, a TurnResult) when the sampled ids are the whole answer the
        client got: the turn ended on a stop token, or at max tokens. True when kept."""
        from ..session import SessionError, _same

        if self.capacity == 0 or session is None or not result.completion_ids:
            return False
        halt = set(session.spec.stops.halt_ids)
        closed = result.completion_ids[-1] in halt
        if not closed and result.finish_reason != "length":
            return False  # a stop string or a reader stop: the ids hold text the answer does not
        answer = _answer(result)
        try:
            read = session.add_completion(result.completion_ids, "stop" if closed else "length")
        except SessionError:
            return False
        if not _same(read, answer):
            return False  # the session reads the ids otherwise than the answer: a continuation could not be proven
        key = _chain(model_id, call, answer)[-1]
        with self._lock:
            self._items[key] = session
            self._items.move_to_end(key)
            self.stats.kept += 1
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
                self.stats.evicted += 1
        return True

    def _get(self, key: str) -> Any:
        with self._lock:
            session = self._items.get(key)
            if session is not None:
                self._items.move_to_end(key)
            return session


class SessionJob(Job):
    """A chat job whose session is kept when its generation has finished (on the worker thread)."""

    def __init__(self, model: Any, enc: Any, options: Any, *, store: SessionStore, call: Any, session: Any):
        super().__init__(model, enc, options)
        self._store, self._call, self._session = store, call, session

    def emit(self, item: Any) -> None:
        if isinstance(item, Finished) and item.error is None and not item.skipped and not self.cancel.is_set():
            try:
                self._store.keep(self.model.id, self._call, self._session, item.result)
            except Exception:  # keeping is an optimisation: never fail the answer for it
                log.exception("could not keep the session")
        super().emit(item)


def _whole(spec: Any, call: Any) -> Encoding:
    return spec.encode(call.messages, add_generation_prompt=True, assistant_mask=False, tools=call.tools,
                       **call.template_kwargs)


def _encoding(ids: list[int], session: Any) -> Encoding:
    return Encoding(ids=ids, text=session.prompt_text, generation_start=len(ids))


def _answer(result: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": result.content, "tool_calls": result.tool_calls}


def _chain(model_id: str, call: Any, *extra: dict[str, Any]) -> list[str]:
    """Hashes of every prefix of the conversation (`chain[p]`: its first p messages), under what else shapes
    the prompt: the model, the tools and the template variables."""
    h = _digest(json.dumps([model_id, call.tools, call.template_kwargs], sort_keys=True, default=str))
    out = [h]
    for m in [*call.messages, *extra]:
        h = _digest(h + _digest(json.dumps(_canonical(m), sort_keys=True, ensure_ascii=False, default=str)))
        out.append(h)
    return out


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _canonical(m: dict[str, Any]) -> Any:
    """A message as a client sends it back: an assistant turn by its text and calls (name and arguments as an
    object; the call ids and the reasoning, which clients often leave out, do not count), others whole."""
    if m.get("role") != "assistant":
        return m
    calls = [list(c) for c in message_calls(m)]
    content = m.get("content")
    text = content if isinstance(content, str) else "" if content is None else json.dumps(content, default=str)
    return {"role": "assistant", "content": text.strip(), "tool_calls": calls}


__all__ = ["DEFAULT_MAX_SESSIONS", "SessionJob", "SessionStats", "SessionStore"]
