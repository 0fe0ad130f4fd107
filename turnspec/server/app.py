"""The FastAPI app: /v1/chat/completions and /v1/completions (whole and SSE), /v1/models, /health, with
OpenAI-style errors, over one or several models (models.py: which one is resident).

Request handling stays on the event loop except the blocking parts: rendering + tokenizing the prompt
(`asyncio.to_thread`) and loading weights and generating (the worker thread, see worker.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any, AsyncIterator, Callable, Iterable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..reader.events import Done
from . import anthropic_api, metrics, ollama_api, responses_api
from . import completions as raw
from .core import SSEResponse, ServerCore, failure_body, server_error
from .guard import RequestGuard, default_max_body_bytes
from .logprobs import SampledLog, check_engine
from .models import ModelManager, ServedModel
from .protocol import APIError, ChatCall, ServeDefaults, error_body, validation_error
from .responses import TurnAssembler, chunk_body, completion_body, new_completion_id, sse, usage
from .sessions import DEFAULT_MAX_SESSIONS, SessionStore
from .worker import Finished, GenerationWorker, Job

# Other APIs on the same core: each is `register(app, core)` (see core.py). Add yours here.
PROTOCOLS: list[Callable[[FastAPI, ServerCore], None]] = [anthropic_api.register, responses_api.register,
                                                          ollama_api.register, metrics.register]

log = logging.getLogger("turnspec.server")


def create_app(spec: Any = None, engine: Any = None, model_id: str | None = None, api_key: str | None = None, *,
               models: ModelManager | None = None, defaults: ServeDefaults | None = None,
               max_queue: int = 256, max_body_bytes: int | None = None, allow_hosts: Iterable[str] = (),
               allow_origins: Iterable[str] = (), responses_store_size: int = 256,
               max_sessions: int = DEFAULT_MAX_SESSIONS) -> FastAPI:
    """An OpenAI-compatible app: `spec` on an already loaded `engine` under the name `model_id` (default: the
    spec's name), or the `models` of a ModelManager (several models, loaded on demand, one resident at a time).

    `api_key`: when set, /v1 routes need `Authorization: Bearer <api_key>` (/health stays open for probes).
    `max_body_bytes` (default: `guard.default_max_body_bytes` of the largest context), `allow_hosts` (Host names
    besides localhost and IP addresses) and `allow_origins` (web pages that may call it): see guard.py.
    `responses_store_size`: how many /v1/responses the server keeps for previous_response_id (0: none).
    `max_sessions`: conversations kept as exact ids so a continuing request prefills only its new tokens (LRU;
    0: off), see sessions.py.
    """
    if models is None:
        if spec is None or engine is None:
            raise TypeError("create_app needs spec and engine, or models")
        served = ServedModel(model_id or spec.name, spec, getattr(engine, "name", None),
                             defaults=defaults or ServeDefaults(),
                             context_length=int(getattr(engine, "context_length", 0) or 0))
        models = ModelManager.preloaded(served, engine)
    worker = GenerationWorker(models, max_queue=max_queue)
    worker.start()
    core = ServerCore(models, worker, api_key, int(time.time()), SessionStore(max_sessions))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(worker.stop)

    app = FastAPI(title="turnspec", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    origins = [o for o in allow_origins if o]
    if origins:  # answers CORS preflights and adds the CORS headers for the allowed origins (the guard refuses others)
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=["*"] if "*" in origins else origins,
                           allow_methods=["GET", "POST", "OPTIONS"], allow_headers=["*"], max_age=600)
    context = max((m.context_length for m in models.models.values()), default=0)
    app.add_middleware(RequestGuard, max_body_bytes=max_body_bytes or default_max_body_bytes(context),
                       allow_hosts=list(allow_hosts), allow_origins=origins)
    app.state.worker = worker
    app.state.models = models
    app.state.core = core
    app.state.responses_store_size = responses_store_size
    app.state.model_id = next(iter(models.models))

    def cards() -> list[dict[str, Any]]:
        return [m.card(core.created, m is models.resident) for m in models.models.values()]

    # --- errors: always the API's error body, never a traceback --------------------------------------------
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return core.error_response(request, exc.status, exc.body())

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        err = validation_error(list(exc.errors()))
        return core.error_response(request, 400, err.body())

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = {404: f"unknown URL {request.method} {request.url.path}",
                   405: f"method {request.method} not allowed on {request.url.path}"}.get(exc.status_code, str(exc.detail))
        body = error_body(message, code={404: "unknown_url", 405: "method_not_allowed"}.get(exc.status_code))
        return core.error_response(request, exc.status_code, body)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        # Starlette re-raises after this response is sent, so the traceback still reaches the server log.
        return core.error_response(request, 500, server_error(exc, "internal server error", "internal_error"))

    # --- routes ---------------------------------------------------------------------------------------------
    @app.get("/health")
    async def health() -> dict[str, Any]:
        resident = models.resident
        return {"status": "ok", "model": resident.id if resident is not None else None,
                "engine": getattr(models.engine, "name", None), "models": list(models.models),
                "swaps": models.swaps, "last_swap_s": models.last_swap_s, "queued": worker.queued,
                **asdict(worker.stats), "batch": _batch_stats(models.engine),
                "sessions": {"held": len(core.sessions), **asdict(core.sessions.stats)}}

    @app.get("/v1/models")
    async def list_models(request: Request) -> dict[str, Any]:
        core.check_auth(request)
        return {"object": "list", "data": cards()}

    @app.get("/v1/models/{name:path}")
    async def model(name: str, request: Request) -> dict[str, Any]:
        core.check_auth(request)
        for card in cards():
            if card["id"] == name:
                return card
        raise APIError(404, f"the model {name!r} does not exist; this server serves: {', '.join(models.models)}",
                       param="model", code="model_not_found")

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        core.check_auth(request)
        data = await core.read_json(request)
        served = core.pick(data)
        call = core.chat_call(data, served)
        job = await core.start_chat(served, call)
        cid = new_completion_id()
        if call.stream:
            return SSEResponse(_stream(job, call, cid, served.id), on_close=job.cancel.set)
        return await _whole(core, job, call, cid, served.id, request)

    @app.post("/v1/completions")
    async def text_completions(request: Request) -> Any:
        core.check_auth(request)
        data = await core.read_json(request)
        served = core.pick(data)
        call = raw.parse_completion(data, generation_config=served.generation_config)
        if call.logprobs is not None:
            check_engine(served, models, "logprobs")
        prompt, options = await asyncio.to_thread(raw.encode_completion, served, call)
        reader = raw.completion_reader(served.spec, prompt, call.stop)
        job = Job(served, prompt, options, reader=reader, stop_ids=prompt.stop_ids)
        core.submit(job)
        cid = raw.new_completion_id()
        if call.stream:
            return SSEResponse(_stream_text(job, call, cid, served.id), on_close=job.cancel.set)
        return await _whole_text(core, job, call, cid, served.id, request)

    for register in PROTOCOLS:
        register(app, core)
    return app


def _batch_stats(engine: Any) -> dict[str, Any] | None:
    """The batched engine's counters (slots, sequences started and released), None for other engines."""
    batcher = getattr(engine, "_batcher", None) if getattr(engine, "parallel", 1) > 1 else None
    if batcher is None:
        return None
    return {"slots": len(batcher.slots), "busy_slots": len(batcher.slots) - batcher.free_slots,
            **asdict(batcher.stats)}


def _failed(item: Finished) -> list[str] | None:
    """The closing SSE events of a stream whose job failed or was skipped; None when it succeeded."""
    body = failure_body(item)
    return None if body is None else [sse(body), sse("[DONE]")]


async def _whole(core: ServerCore, job: Job, call: ChatCall, cid: str, model_id: str,
                 request: Request) -> JSONResponse:
    asm = TurnAssembler(call.tools_enabled, stream_arguments=True)
    log = SampledLog(job.model.spec, call.logprobs, call.token_ids)
    item = await core.finish_whole(job, request, lambda event: log.add(event) or asm.add(event))
    if isinstance(item, JSONResponse):
        return item
    result = item.result
    body = completion_body(cid, model_id, asm, usage(result.prompt_tokens, result.completion_tokens,
                                                     result.cached_tokens))
    if log.wanted:
        log.chat_choice(body["choices"][0], log.take())
    if call.token_ids:
        body["prompt_token_ids"] = [int(t) for t in job.enc.ids]
    return JSONResponse(body)


async def _stream(job: Job, call: ChatCall, cid: str, model_id: str) -> AsyncIterator[str]:
    """SSE: a role chunk, then one chunk per content / reasoning / tool-call event, the finish chunk, usage, [DONE]."""
    created = int(time.time())
    with_usage = call.include_usage
    asm = TurnAssembler(call.tools_enabled, stream_arguments=True)
    log = SampledLog(job.model.spec, call.logprobs, call.token_ids)
    first = chunk_body(cid, created, model_id, {"role": "assistant", "content": ""}, with_usage=with_usage)
    if call.token_ids:
        first["prompt_token_ids"] = [int(t) for t in job.enc.ids]
    yield sse(first)
    while not isinstance(item := await job.events.get(), Finished):
        if log.add(item):
            continue
        delta = asm.add(item)
        if delta is not None:
            chunk = chunk_body(cid, created, model_id, delta, with_usage=with_usage)
            if log.wanted:  # the tokens read since the last chunk
                log.chat_choice(chunk["choices"][0], log.take())
            yield sse(chunk)
    if (tail := _failed(item)) is not None:
        for event in tail:
            yield event
        return
    last_chunk = chunk_body(cid, created, model_id, {}, asm.finish_reason, with_usage=with_usage)
    if log.wanted:
        log.chat_choice(last_chunk["choices"][0], log.take())
    yield sse(last_chunk)
    if with_usage:
        last = chunk_body(cid, created, model_id, None)
        last["usage"] = usage(item.result.prompt_tokens, item.result.completion_tokens, item.result.cached_tokens)
        yield sse(last)
    yield sse("[DONE]")


class _TextFold:
    """Reader events of a raw completion as text and a finish reason."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.done_reason: str | None = None

    def add(self, event: Any) -> str:
        if isinstance(event, Done):
            self.done_reason = event.finish_reason
            return ""
        text = getattr(event, "text", None) or getattr(event, "raw", None) or ""
        self.parts.append(text)
        return text


async def _whole_text(core: ServerCore, job: Job, call: Any, cid: str, model_id: str,
                      request: Request) -> JSONResponse:
    fold = _TextFold()
    log = SampledLog(job.model.spec, call.logprobs, call.token_ids)
    item = await core.finish_whole(job, request, lambda event: log.add(event) or fold.add(event))
    if isinstance(item, JSONResponse):
        return item
    use = usage(item.result.prompt_tokens, item.result.completion_tokens)
    body = raw.text_completion(cid, model_id, "".join(fold.parts), raw.finish_reason(fold.done_reason), use)
    if log.wanted:
        log.completion_choice(body["choices"][0], log.take())
    if call.token_ids:
        body["prompt_token_ids"] = [int(t) for t in job.enc.ids]
    return JSONResponse(body)


async def _stream_text(job: Job, call: Any, cid: str, model_id: str) -> AsyncIterator[str]:
    """SSE: one text chunk per piece of text, a last chunk with the finish reason, usage if asked, [DONE]."""
    created = int(time.time())
    fold = _TextFold()
    log = SampledLog(job.model.spec, call.logprobs, call.token_ids)
    while not isinstance(item := await job.events.get(), Finished):
        if log.add(item):
            continue
        if text := fold.add(item):
            chunk = raw.text_completion(cid, model_id, text, None, None, created)
            if log.wanted:
                log.completion_choice(chunk["choices"][0], log.take())
            if call.token_ids and sum(map(bool, fold.parts)) == 1:  # the first text chunk carries the prompt's ids
                chunk["prompt_token_ids"] = [int(t) for t in job.enc.ids]
            yield sse(chunk)
    if (tail := _failed(item)) is not None:
        for event in tail:
            yield event
        return
    last_chunk = raw.text_completion(cid, model_id, "", raw.finish_reason(fold.done_reason), None, created)
    if log.wanted:
        log.completion_choice(last_chunk["choices"][0], log.take())
    yield sse(last_chunk)
    if call.include_usage:
        yield sse(raw.usage_chunk(cid, model_id, usage(item.result.prompt_tokens, item.result.completion_tokens),
                                  created))
    yield sse("[DONE]")
