"""The OpenAI Responses API: `POST /v1/responses` (whole and streamed), `GET` and `DELETE /v1/responses/{id}`,
for clients that speak only it (Codex CLI). A request is translated into a Chat Completions body
(responses_input.py), generated on the shared core, and folded into output items (responses_output.py).

`previous_response_id` continues a stored response: the server keeps the last `store_size` responses with
`store: true` (the default) in memory, least recently used first out; a restart forgets them. Errors are in
OpenAI's shape (the server's default).
"""

from __future__ import annotations

import itertools
import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from .core import SSEResponse, ServerCore, failure_body
from .logprobs import SampledLog
from .protocol import APIError
from .responses_input import INCLUDE_REASONING, ResponsesRequest, chat_body, parse_responses, renamed
from .responses_output import OutputFold, new_id, response_object, usage
from .worker import Finished, Job

DEFAULT_STORE_SIZE = 256


@dataclass
class Stored:
    body: dict[str, Any]  # the response object, as GET returns it
    conversation: list[dict[str, Any]]  # chat messages through this response's output (instructions excluded)


class ResponseStore:
    """The last `size` stored responses (LRU); only the event loop's thread touches it."""

    def __init__(self, size: int = DEFAULT_STORE_SIZE):
        self.size = size
        self._items: OrderedDict[str, Stored] = OrderedDict()

    def put(self, rid: str, stored: Stored) -> None:
        if self.size <= 0:
            return
        self._items[rid] = stored
        self._items.move_to_end(rid)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def get(self, rid: str) -> Stored | None:
        stored = self._items.get(rid)
        if stored is not None:
            self._items.move_to_end(rid)
        return stored

    def delete(self, rid: str) -> bool:
        return self._items.pop(rid, None) is not None

    def __len__(self) -> int:
        return len(self._items)


def register(app: FastAPI, core: ServerCore) -> None:

    store = ResponseStore(getattr(app.state, "responses_store_size", DEFAULT_STORE_SIZE))
    app.state.responses = store

    @app.post("/v1/responses")
    async def create(request: Request) -> Any:
        core.check_auth(request)
        data = await core.read_json(request)
        served = core.pick(data)
        req = parse_responses(data)
        history: list[dict[str, Any]] = []
        if req.previous_response_id is not None:
            previous = store.get(req.previous_response_id)
            if previous is None:
                raise APIError(400, _not_found(req.previous_response_id, store), param="previous_response_id",
                               code="previous_response_not_found")
            history = previous.conversation
        body, conversation = chat_body(req, history)
        try:
            call = core.chat_call(body, served)
            job = await core.start_chat(served, call)
        except APIError as exc:
            raise renamed(exc) from None
        sampled = SampledLog(served.spec, call.logprobs, False) if call.logprobs is not None else None
        run = _Run(new_id("resp"), served.id, int(time.time()), req, conversation, store,
                   OutputFold(call.tools_enabled, reasoning_echo=INCLUDE_REASONING in (req.include or ()),
                              sampled=sampled))
        if req.stream:
            return SSEResponse(run.stream(job), on_close=job.cancel.set)
        item = await core.finish_whole(job, request, run.fold.add)
        if isinstance(item, JSONResponse):
            return item
        return JSONResponse(run.finish(item))

    @app.get("/v1/responses/{rid}")
    async def retrieve(rid: str, request: Request) -> Any:
        core.check_auth(request)
        stored = store.get(rid)
        if stored is None:
            raise APIError(404, _not_found(rid, store), param="response_id", code="response_not_found")
        return stored.body

    @app.delete("/v1/responses/{rid}")
    async def delete(rid: str, request: Request) -> Any:
        core.check_auth(request)
        if not store.delete(rid):
            raise APIError(404, _not_found(rid, store), param="response_id", code="response_not_found")
        return {"id": rid, "object": "response", "deleted": True}


def _not_found(rid: str, store: ResponseStore) -> str:
    why = ("this server stores no responses (started with a store size of 0)" if store.size <= 0 else
           f"it was not stored (store: false), or is older than the last {store.size} this server keeps, or the "
           "server restarted")
    return f"no response with id {rid!r}: {why}"


class _Run:
    """One response being generated: its fold, its stream's sequence numbers, and storing it at the end."""

    def __init__(self, rid: str, model: str, created: int, req: ResponsesRequest,
                 conversation: list[dict[str, Any]], store: ResponseStore, fold: OutputFold):
        self.rid, self.model, self.created, self.req = rid, model, created, req
        self.conversation, self.store, self.fold = conversation, store, fold
        self._seq = itertools.count()

    def body(self, status: str, **kw: Any) -> dict[str, Any]:
        return response_object(self.rid, self.model, self.created, self.req, status=status, **kw)

    def finish(self, item: Finished) -> dict[str, Any]:
        """The final response object (stored when the request asked)."""
        self.fold.close()
        result = item.result
        use = usage(result.prompt_tokens, result.completion_tokens, int(getattr(result, "cached_tokens", 0) or 0))
        body = self.body("incomplete" if self.fold.incomplete else "completed", output=self.fold.items, use=use)
        if self.req.store:
            self.store.put(self.rid, Stored(body, [*self.conversation, self.fold.assistant_message()]))
        return body

    def event(self, data: dict[str, Any]) -> str:
        data["sequence_number"] = next(self._seq)
        return f"event: {data['type']}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"

    async def stream(self, job: Job) -> AsyncIterator[str]:
        """response.created, response.in_progress, the items' events, then response.completed (or .incomplete);
        a failed generation ends with an `error` event and response.failed."""
        yield self.event({"type": "response.created", "response": self.body("in_progress")})
        yield self.event({"type": "response.in_progress", "response": self.body("in_progress")})
        while not isinstance(item := await job.events.get(), Finished):
            for data in self.fold.add(item):
                yield self.event(data)
        failure = failure_body(item)
        if failure is not None:
            error = failure["error"]
            yield self.event({"type": "error", "code": error["code"], "message": error["message"], "param": None})
            yield self.event({"type": "response.failed", "response": self.body(
                "failed", output=self.fold.items, error={"code": "server_error", "message": error["message"]})})
            return
        for data in self.fold.close():
            yield self.event(data)
        body = self.finish(item)
        kind = "response.incomplete" if body["status"] == "incomplete" else "response.completed"
        yield self.event({"type": kind, "response": body})
