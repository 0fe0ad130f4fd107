"""What every API the server speaks shares: auth, the body, picking the model, the generation queue and the end
of a job. Each protocol module (the OpenAI routes in app.py, and the others) registers its routes on the app with
a `register(app, core)` function and translates its own request into the same ChatCall, so one reader, one
grammar and one queue serve every client.

An APIError raised under a path a protocol claimed with `core.error_shape(prefix, shaper)` is answered in that
protocol's error body (Anthropic's `{"type": "error", ...}`, Ollama's `{"error": "..."}`); elsewhere in OpenAI's.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from dataclasses import replace
from typing import Any, AsyncIterator, Callable

from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse

from ..errors import TurnspecError
from .models import ModelManager, ServedModel
from .protocol import APIError, ChatCall, decode_body, encode_prompt, error_body, merge_system, parse_request
from .jobs import Finished, Job
from .sessions import SessionJob, SessionStore
from .worker import GenerationWorker, QueueFull

log = logging.getLogger("turnspec.server")
DISCONNECT_POLL_S = 0.2
CANCELLED = "the request was cancelled before it started"

ErrorShaper = Callable[[int, dict[str, Any]], dict[str, Any]]  # (status, OpenAI error body) -> this API's body


class ServerCore:
    """The shared machinery behind every route; `app.state.core`."""

    def __init__(self, models: ModelManager, worker: GenerationWorker, api_key: str | None, created: int,
                 sessions: SessionStore | None = None):
        self.models = models
        self.sessions = sessions if sessions is not None else SessionStore()
        self.worker = worker
        self.api_key = api_key
        self.created = created
        self._shapes: list[tuple[str, ErrorShaper]] = []

    # --- errors ---------------------------------------------------------------------------------------------
    def error_shape(self, prefix: str, shaper: ErrorShaper) -> None:
        """Answer errors under `prefix` (a URL path prefix) in another API's shape."""
        self._shapes.append((prefix, shaper))
        self._shapes.sort(key=lambda item: -len(item[0]))

    def error_response(self, request: Request | None, status: int, body: dict[str, Any]) -> JSONResponse:
        """`body` (OpenAI's error shape) reshaped for the API that `request`'s path belongs to."""
        path = request.url.path if request is not None else ""
        return JSONResponse(self.shape(path, status, body), status_code=status)

    def shape(self, path: str, status: int, body: dict[str, Any]) -> dict[str, Any]:
        """`body` (OpenAI's error shape) as the API that `path` belongs to answers errors (the guard uses it too)."""
        for prefix, shaper in self._shapes:
            if path.startswith(prefix):
                return shaper(status, body)
        return body

    # --- the request ----------------------------------------------------------------------------------------
    def check_auth(self, request: Request) -> None:
        """`Authorization: Bearer KEY` or Anthropic's `x-api-key: KEY`, when the server has a key."""
        if self.api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        token = token or request.headers.get("x-api-key", "").strip()
        if not token:
            raise APIError(401, "missing API key: send the header 'Authorization: Bearer YOUR_KEY'",
                           code="invalid_api_key")
        if not hmac.compare_digest(token.encode(), self.api_key.encode()):
            raise APIError(401, "incorrect API key provided", code="invalid_api_key")

    async def read_json(self, request: Request) -> Any:
        return decode_body(await request.body())  # at most max_body_bytes: RequestGuard read it

    def pick(self, data: Any) -> ServedModel:
        served = self.models.find(data.get("model") if isinstance(data, dict) else None)
        self.models.check_fits(served)
        return served

    def submit(self, job: Job) -> None:
        try:
            self.worker.submit(job)
        except QueueFull as exc:
            raise APIError(503, f"the server is busy ({exc}); retry later", type="server_error",
                           code="queue_full") from None

    def chat_call(self, data: Any, served: ServedModel) -> ChatCall:
        """An OpenAI Chat Completions body as a ChatCall (the other APIs translate theirs into that body)."""
        call = parse_request(data, defaults=served.defaults, generation_config=served.generation_config,
                             developer_role=served.developer_role)
        if served.merge_system:
            call.messages = merge_system(call.messages)
        if call.logprobs is not None:
            from .logprobs import check_engine

            check_engine(served, self.models, "logprobs")
        return call

    async def start_chat(self, served: ServedModel, call: ChatCall) -> Job:
        """Render and tokenize the call off the event loop, and queue its generation. A call that continues a kept
        conversation is extended from its exact ids (sessions.py), and its session is kept after the answer."""
        kept: list[Any] = []

        def encode(spec: Any, c: ChatCall) -> Any:
            enc, session = self.sessions.encode(served.id, spec, c)
            kept.append(session)
            return enc

        enc, options = await asyncio.to_thread(encode_prompt, served.spec, call, served.context_length,
                                               served.constrain_backend, served.max_prompt_chars, encode)
        options = replace(options, call_deltas=True)  # every API streams call arguments as written
        session = kept[0] if kept else None
        job = (SessionJob(served, enc, options, store=self.sessions, call=call, session=session)
               if session is not None else Job(served, enc, options))
        self.submit(job)
        return job

    # --- the end of a job -----------------------------------------------------------------------------------
    async def finish_whole(self, job: Job, request: Request, on_event: Callable[[Any], Any]) -> Finished | JSONResponse:
        """Wait for a non-streamed job, folding its events with `on_event`; the Finished item, or the error reply."""
        watch = asyncio.create_task(_watch_disconnect(request, job))
        item: Any = None
        try:
            while not isinstance(item := await job.events.get(), Finished):
                on_event(item)
        finally:
            watch.cancel()
            if not isinstance(item, Finished):  # this handler was cancelled (server shutdown)
                job.cancel.set()
        if (failure := failure_body(item)) is not None:
            return self.error_response(request, 500 if item.error is not None else 503, failure)
        return item


def failure_body(item: Finished) -> dict[str, Any] | None:
    """The OpenAI error body of a job that failed or was skipped (logged); None when it succeeded."""
    if item.error is None and not item.skipped:
        return None
    if item.error is not None:
        log.error("generation failed", exc_info=item.error)
        return server_error(item.error)
    return error_body(CANCELLED, type="server_error", code="cancelled")


def server_error(exc: BaseException, what: str = "generation failed", code: str = "generation_failed") -> dict[str, Any]:
    """A 500 body: the error's one-line message, never its traceback (that goes to the server log)."""
    detail = str(exc) if isinstance(exc, TurnspecError) else f"{type(exc).__name__}: {exc}"
    return error_body(f"{what}: {detail}", type="server_error", code=code)


async def _watch_disconnect(request: Request, job: Job) -> None:
    """Non-streaming requests have no failed write to notice a client that left: poll, and cancel its job."""
    while not job.cancel.is_set():
        await asyncio.sleep(DISCONNECT_POLL_S)
        if await request.is_disconnected():
            job.cancel.set()


class SSEResponse(StreamingResponse):
    """A streaming response that runs `on_close` however it ends: a client that leaves cancels its generation."""

    def __init__(self, content: AsyncIterator[str], on_close: Callable[[], None]):
        super().__init__(content, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._on_close = on_close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        except asyncio.CancelledError:  # the server is shutting down with this stream still open: end it quietly
            log.info("stream closed by server shutdown")
        finally:
            self._on_close()
