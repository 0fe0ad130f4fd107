"""The OpenAI response side: reader events folded into a chat.completion, or into chat.completion.chunk deltas."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from ..reader.events import BuiltinCall, Content, Done, Reasoning, ToolCall, ToolCallDelta, ToolCallError


class TurnAssembler:
    """Turns reader events into OpenAI deltas and the final message; the same fold serves stream and non-stream,
    so a reassembled stream always equals the whole response.

    With tools disabled (`tool_choice: "none"`), for a tool call that did not parse, or for a call to a built-in tool
    the caller did not declare (gpt-oss's `to=python`), the model's raw call text is returned as content: nothing
    the model wrote is dropped silently, and no undeclared function reaches `tool_calls`.
    """

    def __init__(self, tools_enabled: bool, stream_arguments: bool = False):
        self.tools_enabled = tools_enabled
        # ToolCallDelta events become argument deltas (Chat Completions); else a call arrives whole (Ollama's API)
        self.stream_arguments = stream_arguments
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.tool_calls: list[dict[str, Any]] = []
        self.done_reason: str | None = None
        self._streaming: dict[str, int] = {}  # reader call id -> its index in tool_calls, while its arguments stream

    def add(self, event: Any) -> dict[str, Any] | None:
        """The delta for one event (None when it adds nothing visible)."""
        if isinstance(event, Content):
            return self._content(event.text)
        if isinstance(event, Reasoning):
            if not event.text:
                return None
            self.reasoning.append(event.text)
            return {"reasoning_content": event.text}
        if isinstance(event, ToolCallDelta):
            return self._call_delta(event) if self.tools_enabled and self.stream_arguments else None
        if isinstance(event, ToolCall):
            if not self.tools_enabled:
                return self._content(event.raw)
            if self._streaming.pop(event.id, None) is not None:
                return None  # its arguments streamed already: they are the model's JSON text of these arguments
            # The reader's 9-character id, unprefixed: Mistral's template refuses any other shape when it comes back.
            call = {"id": event.id, "type": "function",
                    "function": {"name": event.name, "arguments": json.dumps(event.arguments, ensure_ascii=False)}}
            self.tool_calls.append(call)
            return {"tool_calls": [{"index": len(self.tool_calls) - 1, **call}]}
        if isinstance(event, ToolCallError):
            self._streaming.clear()  # a call cut short keeps the arguments it streamed (as OpenAI's streams do)
            return self._content(event.raw)
        if isinstance(event, BuiltinCall):  # a tool the caller did not declare: no tool call to hand back
            return self._content(event.body)
        if isinstance(event, Done):
            self.done_reason = event.finish_reason
        return None

    def _call_delta(self, event: ToolCallDelta) -> dict[str, Any] | None:
        """OpenAI's streamed call: the first chunk has the id, the name and empty arguments, then argument text."""
        index = self._streaming.get(event.id)
        if index is None:
            call = {"id": event.id, "type": "function", "function": {"name": event.name, "arguments": ""}}
            self.tool_calls.append(call)
            index = self._streaming[event.id] = len(self.tool_calls) - 1
            return {"tool_calls": [{"index": index, **call, "function": dict(call["function"])}]}
        if not event.arguments:
            return None
        self.tool_calls[index]["function"]["arguments"] += event.arguments
        return {"tool_calls": [{"index": index, "function": {"arguments": event.arguments}}]}

    def _content(self, text: str) -> dict[str, Any] | None:
        if not text:
            return None
        self.content.append(text)
        return {"content": text}

    @property
    def finish_reason(self) -> str:
        if self.tool_calls and self.done_reason != "length":
            return "tool_calls"
        reason = self.done_reason or "stop"
        return "stop" if reason == "tool_calls" else reason

    def message(self) -> dict[str, Any]:
        content = "".join(self.content)
        msg: dict[str, Any] = {"role": "assistant", "content": content if content or not self.tool_calls else None,
                               "reasoning_content": "".join(self.reasoning) or None}
        if self.tool_calls:
            msg["tool_calls"] = self.tool_calls
        return msg


def new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int | None = None) -> dict[str, Any]:
    """OpenAI's usage; `prompt_tokens_details.cached_tokens` (prompt ids the engine did not evaluate again, kept
    from an earlier turn) when the engine says."""
    out: dict[str, Any] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                           "total_tokens": prompt_tokens + completion_tokens}
    if cached_tokens is not None:
        out["prompt_tokens_details"] = {"cached_tokens": cached_tokens}
    return out


def completion_body(cid: str, model: str, asm: TurnAssembler, use: dict[str, int]) -> dict[str, Any]:
    return {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": asm.message(), "finish_reason": asm.finish_reason, "logprobs": None}],
            "usage": use, "system_fingerprint": None}


def chunk_body(cid: str, created: int, model: str, delta: dict[str, Any] | None, finish_reason: str | None = None,
               *, with_usage: bool = False) -> dict[str, Any]:
    """One `chat.completion.chunk`; `delta=None` is the usage-only chunk sent last with include_usage."""
    body: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                            "system_fingerprint": None,
                            "choices": [] if delta is None else
                            [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]}
    if with_usage:
        body["usage"] = None
    return body


def sse(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"
