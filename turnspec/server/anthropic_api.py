"""Anthropic's Messages API (`POST /v1/messages`, `POST /v1/messages/count_tokens`), so Claude Code and the
`anthropic` SDK can talk to a local model.

A Messages request is translated into an OpenAI Chat Completions body (anthropic_wire.py) and goes through the
same validation, template, grammar, queue and reader as /v1/chat/completions; the reader's events are folded
into Anthropic content blocks (thinking, text, tool_use) by one `BlockAssembler`, for whole responses and for the
event stream alike, so a reassembled stream equals the whole response.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import replace
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ..reader.events import STOP_STRING, BuiltinCall, Content, Done, Reasoning, ToolCall, ToolCallDelta, ToolCallError
from .anthropic_wire import anthropic_error, tool_use_id, translate
from .core import SSEResponse, ServerCore, failure_body
from .protocol import encode_prompt
from .worker import Finished, Job

PREFIX = "/v1/messages"
PING_EVERY_S = 10.0  # a stream that waits (a long prompt, a queue) still shows the client it is alive


class BlockAssembler:
    """Reader events as Anthropic content blocks, and the stream events that build them.

    `add` returns the stream events (name, data) one reader event makes; `content` is the whole response's
    blocks. With tools disabled, or for a call that did not parse, the call's raw text is text: nothing the
    model wrote is dropped.
    """

    def __init__(self, tools_enabled: bool, stop_sequences: tuple[str, ...]):
        self.tools_enabled = tools_enabled
        self.stop_sequences = stop_sequences
        self.content: list[dict[str, Any]] = []
        self.done: Done | None = None
        self._open: str | None = None  # the kind of the block being written ("text", "thinking", "tool_use")
        self._streamed: dict[str, int] = {}  # reader call id -> its tool_use block, while its input streams
        self._input: dict[int, list[str]] = {}  # tool_use block -> the input JSON streamed so far

    # --- the fold -----------------------------------------------------------------------------------------
    def add(self, event: Any) -> list[tuple[str, dict[str, Any]]]:
        if isinstance(event, Content):
            return self._text("text", event.text)
        if isinstance(event, Reasoning):
            return self._text("thinking", event.text)
        if isinstance(event, ToolCallDelta):
            return self._call_delta(event) if self.tools_enabled else []
        if isinstance(event, ToolCall):
            return self._call(event) if self.tools_enabled else self._text("text", event.raw)
        if isinstance(event, ToolCallError):
            return self._close_streamed() + self._text("text", event.raw)
        if isinstance(event, BuiltinCall):  # a tool the caller did not declare: its text, never a tool_use block
            return self._text("text", event.body)
        if isinstance(event, Done):
            self.done = event
        return []

    def _text(self, kind: str, text: str) -> list[tuple[str, dict[str, Any]]]:
        if not text:
            return []
        out: list[tuple[str, dict[str, Any]]] = []
        if self._open != kind:
            out += self._close()
            block = {"type": kind, kind: ""} if kind == "text" else {"type": kind, kind: "", "signature": ""}
            out += self._start(block)
        block = self.content[-1]
        block[kind] += text
        delta = {"type": "text_delta", "text": text} if kind == "text" else {"type": "thinking_delta", "thinking": text}
        out.append(("content_block_delta", {"type": "content_block_delta", "index": len(self.content) - 1,
                                            "delta": delta}))
        return out

    def _call_delta(self, event: ToolCallDelta) -> list[tuple[str, dict[str, Any]]]:
        out: list[tuple[str, dict[str, Any]]] = []
        index = self._streamed.get(event.id)
        if index is None:
            out += self._close()
            out += self._start({"type": "tool_use", "id": tool_use_id(event.id), "name": event.name, "input": {}})
            index = self._streamed[event.id] = len(self.content) - 1
            self._input[index] = []
        if event.arguments:
            self._input[index].append(event.arguments)
            out.append(("content_block_delta", {"type": "content_block_delta", "index": index,
                                                "delta": {"type": "input_json_delta",
                                                          "partial_json": event.arguments}}))
        return out

    def _call(self, event: ToolCall) -> list[tuple[str, dict[str, Any]]]:
        index = self._streamed.pop(event.id, None)
        if index is not None:  # its input streamed as it was written: the block holds the parsed input
            self.content[index]["input"] = event.arguments
            return self._close() if index == len(self.content) - 1 else []
        out = self._close()
        out += self._start({"type": "tool_use", "id": tool_use_id(event.id), "name": event.name, "input": {}})
        self.content[-1]["input"] = event.arguments
        out.append(("content_block_delta", {"type": "content_block_delta", "index": len(self.content) - 1,
                                            "delta": {"type": "input_json_delta",
                                                      "partial_json": json.dumps(event.arguments,
                                                                                 ensure_ascii=False)}}))
        return out + self._close()

    def _close_streamed(self) -> list[tuple[str, dict[str, Any]]]:
        """Calls whose input was streaming did not parse: their blocks keep the input they have (as Anthropic's
        own streams do when a call is cut short); the raw text follows as text."""
        for index in self._streamed.values():
            self.content[index]["input"] = _partial_input("".join(self._input[index]))
        self._streamed.clear()
        return self._close() if self._open == "tool_use" else []

    def _start(self, block: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        self.content.append(dict(block))
        self._open = block["type"]
        return [("content_block_start", {"type": "content_block_start", "index": len(self.content) - 1,
                                         "content_block": block})]

    def _close(self) -> list[tuple[str, dict[str, Any]]]:
        if self._open is None:
            return []
        self._open = None
        return [("content_block_stop", {"type": "content_block_stop", "index": len(self.content) - 1})]

    def finish(self) -> list[tuple[str, dict[str, Any]]]:
        """The events that close the last block (at the end of the turn)."""
        return self._close_streamed() + self._close()

    # --- the ending ---------------------------------------------------------------------------------------
    @property
    def stop_sequence(self) -> str | None:
        done = self.done
        if done is not None and done.stop_kind == STOP_STRING and done.stop in self.stop_sequences:
            return done.stop
        return None

    @property
    def stop_reason(self) -> str:
        reason = self.done.finish_reason if self.done is not None else "stop"
        if reason == "length":
            return "max_tokens"
        if any(block["type"] == "tool_use" for block in self.content):
            return "tool_use"
        return "stop_sequence" if self.stop_sequence is not None else "end_turn"


def _partial_input(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex[:24]}"


def message_body(mid: str, model: str, asm: BlockAssembler, input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {"id": mid, "type": "message", "role": "assistant", "content": asm.content, "model": model,
            "stop_reason": asm.stop_reason, "stop_sequence": asm.stop_sequence,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens}}


def sse_event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


# ------------------------------------------------------------------------------------------------ routes
def register(app: FastAPI, core: ServerCore) -> None:
    """The Messages routes, with errors under /v1/messages in Anthropic's shape."""

    core.error_shape(PREFIX, anthropic_error)

    @app.post(PREFIX)
    async def messages(request: Request) -> Any:
        core.check_auth(request)
        data = await core.read_json(request)
        served = core.pick(data)
        wire = translate(data, served, counting=False)
        call = core.chat_call(wire.body, served)
        job = await core.start_chat(served, call)
        asm = BlockAssembler(call.tools_enabled, call.stop)
        mid = new_message_id()
        if wire.stream:
            return SSEResponse(_stream(job, asm, mid, served.id), on_close=job.cancel.set)
        item = await core.finish_whole(job, request, asm.add)
        if isinstance(item, JSONResponse):
            return item
        asm.finish()
        return JSONResponse(message_body(mid, served.id, asm, item.result.prompt_tokens,
                                         item.result.completion_tokens))

    @app.post(f"{PREFIX}/count_tokens")
    async def count_tokens(request: Request) -> dict[str, int]:
        core.check_auth(request)
        data = await core.read_json(request)
        served = core.pick(data)
        call = core.chat_call(translate(data, served, counting=True).body, served)
        # the prompt messages.create would send: nothing is forced, and no room is kept for an answer
        call = replace(call, tool_choice=None, response_format=None, max_tokens=1)
        enc, _ = await asyncio.to_thread(encode_prompt, served.spec, call, 0, None, served.max_prompt_chars)
        return {"input_tokens": len(enc.ids)}


async def _stream(job: Job, asm: BlockAssembler, mid: str, model: str) -> AsyncIterator[str]:
    """Anthropic's event sequence: message_start, ping, the blocks (start / delta / stop), message_delta with the
    stop reason and usage, message_stop; an `error` event when generation fails."""
    start = {"id": mid, "type": "message", "role": "assistant", "content": [], "model": model, "stop_reason": None,
             "stop_sequence": None, "usage": {"input_tokens": len(job.enc.ids), "output_tokens": 0}}
    yield sse_event("message_start", {"type": "message_start", "message": start})
    yield sse_event("ping", {"type": "ping"})
    while True:
        try:
            item = await asyncio.wait_for(job.events.get(), PING_EVERY_S)
        except asyncio.TimeoutError:
            yield sse_event("ping", {"type": "ping"})
            continue
        if isinstance(item, Finished):
            break
        for name, data in asm.add(item):
            yield sse_event(name, data)
    failure = failure_body(item)
    if failure is not None:
        yield sse_event("error", anthropic_error(500 if item.error is not None else 503, failure))
        return
    for name, data in asm.finish():
        yield sse_event(name, data)
    yield sse_event("message_delta", {"type": "message_delta",
                                      "delta": {"stop_reason": asm.stop_reason, "stop_sequence": asm.stop_sequence},
                                      "usage": {"output_tokens": item.result.completion_tokens}})
    yield sse_event("message_stop", {"type": "message_stop"})
