"""The FastAPI app: /v1/chat/completions (whole and SSE), /v1/models, /health, with OpenAI-style errors.

Request handling stays on the event loop except the two blocking parts: rendering + tokenizing the prompt
(`asyncio.to_thread`) and generation (the worker thread, see worker.py).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any, AsyncIterator, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..chat import system_role_error
from ..errors import TurnspecError
from .protocol import (APIError, ChatCall, ServeDefaults, bad, encode_prompt, error_body, merge_system, parse_request,
                       validation_error)
from .responses import TurnAssembler, chunk_body, completion_body, new_completion_id, sse, usage
from .worker import Finished, GenerationWorker, Job, QueueFull

log = logging.getLogger("turnspec.server")
DISCONNECT_POLL_S = 0.2


class _SSEResponse(StreamingResponse):
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


def create_app(spec: Any, engine: Any, model_id: str | None = None, api_key: str | None = None, *,
               defaults: ServeDefaults | None = None, max_queue: int = 256) -> FastAPI:
    """An OpenAI-compatible app serving `spec` on `engine` under the name `model_id` (default: the spec's name).

    `api_key`: when set, /v1 routes need `Authorization: Bearer <api_key>` (/health stays open for probes).
    """
    model_id = model_id or spec.name
    defaults = defaults or ServeDefaults()
    context_length = int(getattr(engine, "context_length", 0) or 0)
    generation_config = dict(getattr(getattr(spec, "files", None), "generation_config", None) or {})
    # Built once here, not raced for by the first concurrent requests.
    spec.require_vocab()
    _ = spec.stops
    try:
        developer_role = "developer" in spec.template
    except TurnspecError:
        developer_role = False
    merge = defaults.system_mode == "merge" and system_role_error(spec) is not None
    worker = GenerationWorker(spec, engine, max_queue=max_queue)
    worker.start()
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(worker.stop)

    app = FastAPI(title="turnspec", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.worker = worker
    app.state.model_id = model_id

    def check_auth(request: Request) -> None:
        if api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise APIError(401, "missing API key: send the header 'Authorization: Bearer YOUR_KEY'",
                           code="invalid_api_key")
        if not hmac.compare_digest(token.strip().encode(), api_key.encode()):
            raise APIError(401, "incorrect API key provided", code="invalid_api_key")

    # --- errors: always the OpenAI body, never a traceback -------------------------------------------------
    @app.exception_handler(APIError)
    async def _api_error(_request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        err = validation_error(list(exc.errors()))
        return JSONResponse(err.body(), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = {404: f"unknown URL {request.method} {request.url.path}",
                   405: f"method {request.method} not allowed on {request.url.path}"}.get(exc.status_code, str(exc.detail))
        return JSONResponse(error_body(message, code={404: "unknown_url", 405: "method_not_allowed"}.get(exc.status_code)),
                            status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _internal(_request: Request, exc: Exception) -> JSONResponse:
        # Starlette re-raises after this response is sent, so the traceback still reaches the server log.
        return JSONResponse(_server_error(exc, "internal server error", "internal_error"), status_code=500)

    # --- routes ---------------------------------------------------------------------------------------------
    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": model_id, "engine": getattr(engine, "name", None),
                "queued": worker.queued, **asdict(worker.stats)}

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        check_auth(request)
        return {"object": "list", "data": [_model_card(model_id, created)]}

    @app.get("/v1/models/{name:path}")
    async def model(name: str, request: Request) -> dict[str, Any]:
        check_auth(request)
        if name != model_id:
            raise APIError(404, f"the model {name!r} does not exist; this server serves {model_id!r}",
                           param="model", code="model_not_found")
        return _model_card(model_id, created)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        check_auth(request)
        raw = await request.body()
        try:
            data = json.loads(raw)
        except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8
            raise bad(f"the request body is not valid JSON ({exc})", code="invalid_json") from None
        call = parse_request(data, defaults=defaults, generation_config=generation_config,
                             developer_role=developer_role)
        if merge:
            call.messages = merge_system(call.messages)
        enc, options = await asyncio.to_thread(encode_prompt, spec, call, context_length)
        job = Job(enc, options)
        try:
            worker.submit(job)
        except QueueFull as exc:
            raise APIError(503, f"the server is busy ({exc}); retry later", type="server_error",
                           code="queue_full") from None
        cid = new_completion_id()
        if call.stream:
            return _SSEResponse(_stream(job, call, cid, model_id), on_close=job.cancel.set)
        return await _whole(job, call, cid, model_id, request)

    return app


def _model_card(model_id: str, created: int) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": "turnspec"}


def _server_error(exc: BaseException, what: str = "generation failed", code: str = "generation_failed") -> dict[str, Any]:
    """A 500 body: the error's one-line message, never its traceback (that goes to the server log)."""
    detail = str(exc) if isinstance(exc, TurnspecError) else f"{type(exc).__name__}: {exc}"
    return error_body(f"{what}: {detail}", type="server_error", code=code)


async def _watch_disconnect(request: Request, job: Job) -> None:
    """Non-streaming requests have no failed write to notice a client that left: poll, and cancel its job."""
    while not job.cancel.is_set():
        await asyncio.sleep(DISCONNECT_POLL_S)
        if await request.is_disconnected():
            job.cancel.set()


async def _whole(job: Job, call: ChatCall, cid: str, model_id: str, request: Request) -> JSONResponse:
    asm = TurnAssembler(call.tools_enabled)
    watch = asyncio.create_task(_watch_disconnect(request, job))
    item: Any = None
    try:
        while not isinstance(item := await job.events.get(), Finished):
            asm.add(item)
    finally:
        watch.cancel()
        if not isinstance(item, Finished):  # this handler was cancelled (server shutdown)
            job.cancel.set()
    if item.error is not None:
        log.error("generation failed", exc_info=item.error)
        return JSONResponse(_server_error(item.error), status_code=500)
    if item.skipped:
        return JSONResponse(error_body("the request was cancelled before it started", type="server_error",
                                       code="cancelled"), status_code=503)
    result = item.result
    return JSONResponse(completion_body(cid, model_id, asm, usage(result.prompt_tokens, result.completion_tokens)))


async def _stream(job: Job, call: ChatCall, cid: str, model_id: str) -> AsyncIterator[str]:
    """SSE: a role chunk, then one chunk per content / reasoning / tool-call event, the finish chunk, usage, [DONE]."""
    created = int(time.time())
    with_usage = call.include_usage
    asm = TurnAssembler(call.tools_enabled)
    yield sse(chunk_body(cid, created, model_id, {"role": "assistant", "content": ""}, with_usage=with_usage))
    while not isinstance(item := await job.events.get(), Finished):
        delta = asm.add(item)
        if delta is not None:
            yield sse(chunk_body(cid, created, model_id, delta, with_usage=with_usage))
    if item.error is not None or item.skipped:
        if item.error is not None:
            log.error("generation failed", exc_info=item.error)
        body = _server_error(item.error) if item.error is not None else error_body(
            "the request was cancelled before it started", type="server_error", code="cancelled")
        yield sse(body)
        yield sse("[DONE]")
        return
    yield sse(chunk_body(cid, created, model_id, {}, asm.finish_reason, with_usage=with_usage))
    if with_usage:
        last = chunk_body(cid, created, model_id, None)
        last["usage"] = usage(item.result.prompt_tokens, item.result.completion_tokens)
        yield sse(last)
    yield sse("[DONE]")
