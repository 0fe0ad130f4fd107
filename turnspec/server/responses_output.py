"""The OpenAI Responses output: reader events folded into output items (reasoning, message, function_call) and
the stream events that build them. The same fold serves the whole response and the stream, so a client that
reassembles the stream gets exactly the response `GET /v1/responses/{id}` returns.

Items follow the order the model wrote: a change of kind (reasoning → text → call) closes the open item and opens
the next. With tools disabled (`tool_choice: "none"`), or for a call that did not parse, the model's raw call text
is message text, as in Chat Completions: nothing the model wrote is dropped.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from typing import Any

from ..reader.events import BuiltinCall, Content, Done, Reasoning, ToolCall, ToolCallError

Event = dict[str, Any]


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


class OutputFold:
    """Reader events → Responses output items, and the stream events for each step (without sequence numbers)."""

    def __init__(self, tools_enabled: bool, *, reasoning_echo: bool = False, sampled: Any = None):
        self.tools_enabled = tools_enabled
        self.sampled = sampled  # a logprobs.SampledLog when logprobs were asked for: output_text's logprobs
        self.reasoning_echo = reasoning_echo  # also put the reasoning text in `encrypted_content` (include asked)
        self.items: list[dict[str, Any]] = []
        self.open: dict[str, Any] | None = None
        self.done_reason: str | None = None

    # --- events in ---------------------------------------------------------------------------------------------
    def add(self, event: Any) -> list[Event]:
        if self.sampled is not None and self.sampled.add(event):
            return []  # a token's logprobs: they go with the text it becomes
        if isinstance(event, Content):
            return self._text(event.text)
        if isinstance(event, Reasoning):
            return self._reasoning(event.text)
        if isinstance(event, ToolCall):
            return self._call(event) if self.tools_enabled else self._text(event.raw)
        if isinstance(event, ToolCallError):
            return self._text(event.raw)
        if isinstance(event, BuiltinCall):  # a tool the caller did not declare: its text, never a function_call
            return self._text(event.body)
        if isinstance(event, Done):
            self.done_reason = event.finish_reason
            return self.close()
        return []

    def close(self) -> list[Event]:
        """Finish the open item (at the end of the turn, or when the next item begins)."""
        item, self.open = self.open, None
        if item is None:
            return []
        index = self.items.index(item)
        status = "incomplete" if self.done_reason == "length" else "completed"
        events: list[Event] = []
        if item["type"] == "message":
            part = item["content"][0]
            events.append(_ev("response.output_text.done", item, index, content_index=0, text=part["text"],
                              logprobs=copy.deepcopy(part["logprobs"])))
            events.append(_ev("response.content_part.done", item, index, content_index=0, part=copy.deepcopy(part)))
        elif item["type"] == "reasoning":
            part = item["content"][0]
            if self.reasoning_echo:
                item["encrypted_content"] = part["text"]
            events.append(_ev("response.reasoning_text.done", item, index, content_index=0, text=part["text"]))
            events.append(_ev("response.content_part.done", item, index, content_index=0, part=copy.deepcopy(part)))
        item["status"] = status
        events.append({"type": "response.output_item.done", "output_index": index, "item": copy.deepcopy(item)})
        return events

    # --- the three kinds of item -------------------------------------------------------------------------------
    def _text(self, text: str) -> list[Event]:
        if not text:
            return []
        events = self._ensure("message")
        item = self.open
        assert item is not None
        part = item["content"][0]
        part["text"] += text
        logprobs = self._logprobs()
        part["logprobs"].extend(logprobs)
        events.append(_ev("response.output_text.delta", item, self.items.index(item), content_index=0, delta=text,
                          logprobs=logprobs))
        return events

    def _reasoning(self, text: str) -> list[Event]:
        if not text:
            return []
        self._logprobs()  # reasoning tokens' logprobs have no place in the output: dropped
        events = self._ensure("reasoning")
        item = self.open
        assert item is not None
        item["content"][0]["text"] += text
        events.append(_ev("response.reasoning_text.delta", item, self.items.index(item), content_index=0, delta=text))
        return events

    def _call(self, call: ToolCall) -> list[Event]:
        self._logprobs()  # as for reasoning: only output_text has logprobs
        events = self.close()
        # call_id is the reader's 9-character id: sent back, it is what id-checking templates (Mistral) accept
        item = {"id": new_id("fc"), "type": "function_call", "call_id": call.id, "name": call.name, "arguments": "",
                "status": "in_progress"}
        index = len(self.items)
        self.items.append(item)
        events.append({"type": "response.output_item.added", "output_index": index, "item": copy.deepcopy(item)})
        arguments = json.dumps(call.arguments, ensure_ascii=False)
        item["arguments"] = arguments
        events.append(_ev("response.function_call_arguments.delta", item, index, delta=arguments))
        events.append(_ev("response.function_call_arguments.done", item, index, arguments=arguments))
        item["status"] = "completed"
        events.append({"type": "response.output_item.done", "output_index": index, "item": copy.deepcopy(item)})
        return events

    def _logprobs(self) -> list[dict[str, Any]]:
        """The logprobs of the tokens read since the last text (chat's entry shape, as Responses has it)."""
        if self.sampled is None or self.sampled.text is None:
            return []
        from .logprobs import chat_entries

        return chat_entries(self.sampled.take(), self.sampled.text)

    def _ensure(self, kind: str) -> list[Event]:
        """Open an item of `kind` unless one is open: the item and its (empty) content part are announced."""
        if self.open is not None and self.open["type"] == kind:
            return []
        events = self.close()
        if kind == "message":
            item: dict[str, Any] = {"id": new_id("msg"), "type": "message", "role": "assistant",
                                    "status": "in_progress", "content": []}
            part: dict[str, Any] = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        else:
            item = {"id": new_id("rs"), "type": "reasoning", "summary": [], "content": [], "status": "in_progress"}
            part = {"type": "reasoning_text", "text": ""}
        index = len(self.items)
        self.items.append(item)
        self.open = item
        events.append({"type": "response.output_item.added", "output_index": index, "item": copy.deepcopy(item)})
        item["content"].append(part)
        events.append(_ev("response.content_part.added", item, index, content_index=0, part=copy.deepcopy(part)))
        return events

    # --- the turn as a whole -----------------------------------------------------------------------------------
    @property
    def incomplete(self) -> bool:
        return self.done_reason == "length"

    def assistant_message(self) -> dict[str, Any]:
        """The turn as a Chat Completions message, for the stored conversation `previous_response_id` continues."""
        text = "".join(i["content"][0]["text"] for i in self.items if i["type"] == "message")
        reasoning = "".join(i["content"][0]["text"] for i in self.items if i["type"] == "reasoning")
        calls = [{"id": i["call_id"], "type": "function", "function": {"name": i["name"], "arguments": i["arguments"]}}
                 for i in self.items if i["type"] == "function_call"]
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if reasoning:
            message["reasoning_content"] = reasoning
        if calls:
            message["tool_calls"] = calls
        return message


def _ev(kind: str, item: dict[str, Any], index: int, **fields: Any) -> Event:
    return {"type": kind, "item_id": item["id"], "output_index": index, **fields}


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> dict[str, Any]:
    # reasoning_tokens: the reader splits text, not tokens, so the count is not known (0, as for models without)
    return {"input_tokens": prompt_tokens, "input_tokens_details": {"cached_tokens": cached_tokens},
            "output_tokens": completion_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt_tokens + completion_tokens}


def response_object(rid: str, model: str, created: int, req: Any, *, status: str,
                    output: list[dict[str, Any]] | None = None, use: dict[str, Any] | None = None,
                    error: dict[str, Any] | None = None) -> dict[str, Any]:
    """A `response` object (openai's types/responses/response.py), echoing the request's settings."""
    tools = [{"type": "function", "name": t.get("name"), "description": t.get("description"),
              "parameters": t.get("parameters"), "strict": t.get("strict")} for t in (req.tools or [])]
    fmt = (req.text.format if req.text and req.text.format else None) or {"type": "text"}
    return {
        "id": rid, "object": "response", "created_at": created, "model": model, "status": status,
        "completed_at": int(time.time()) if status == "completed" else None,
        "error": error, "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": req.instructions, "metadata": req.metadata or {},
        "output": copy.deepcopy(output or []),
        "parallel_tool_calls": bool(req.parallel_tool_calls), "temperature": req.temperature, "top_p": req.top_p,
        "tool_choice": req.tool_choice or "auto", "tools": tools,
        "max_output_tokens": req.max_output_tokens, "previous_response_id": req.previous_response_id,
        "reasoning": {"effort": req.reasoning.effort, "summary": req.reasoning.summary} if req.reasoning else None,
        "store": req.store, "text": {"format": fmt}, "top_logprobs": req.top_logprobs, "truncation": "disabled",
        "usage": use, "user": req.user,
    }
