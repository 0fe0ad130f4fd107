"""The Ollama API on the shared core: `/api/chat`, `/api/generate` (NDJSON streams, streaming by default as Ollama
does), `/api/tags`, `/api/show`, `/api/ps`, `/api/version`, and `GET /` ("Ollama is running", what Ollama's CLI
and apps probe). Enough for the official `ollama` client and apps such as Open WebUI (OLLAMA_HOST / base URL).

Requests become OpenAI chat bodies (ollama_request.py) and go through the same ChatCall, grammar, queue and
reader as /v1/chat/completions; the reader's events are folded with the same TurnAssembler, then written in
Ollama's shape: `thinking` for reasoning, tool-call arguments as objects, durations in nanoseconds. Errors are
`{"error": "..."}` with the HTTP status (a stream that fails midway ends with an `{"error": ...}` line, as Ollama's).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator, Iterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from . import completions as raw
from .core import SSEResponse, ServerCore, failure_body
from .models import ServedModel
from .ollama_request import chat_body, completion_body, generate_body
from .protocol import APIError
from .responses import TurnAssembler
from .worker import Finished, Job

log = logging.getLogger("turnspec.server")
NDJSON = "application/x-ndjson"
# The Ollama API level this server answers as: apps gate features (think, tool streaming) on /api/version.
OLLAMA_API_VERSION = "0.12.0"
NOTICE_HEADER = "X-Turnspec-Notice"
RENAMED = (("response_format.json_schema.schema", "format"), ("response_format", "format"),
           ("max_tokens", "options.num_predict"), ("temperature", "options.temperature"), ("top_p", "options.top_p"),
           ("stop:", "options.stop:"))


def register(app: FastAPI, core: ServerCore) -> None:
    core.error_shape("/api/", lambda status, body: {"error": body["error"]["message"]})

    @app.api_route("/", methods=["GET", "HEAD"], response_class=PlainTextResponse)
    async def running() -> str:
        return "Ollama is running"  # the text Ollama's clients look for; /health has the details

    @app.get("/api/version")
    async def version() -> dict[str, Any]:
        from .. import __version__

        return {"version": OLLAMA_API_VERSION, "turnspec": __version__}

    @app.get("/api/tags")
    async def tags(request: Request) -> dict[str, Any]:
        core.check_auth(request)
        return {"models": [model_entry(m) for m in core.models.models.values()]}

    @app.get("/api/ps")
    async def ps(request: Request) -> dict[str, Any]:
        core.check_auth(request)
        resident = core.models.resident
        if resident is None:
            return {"models": []}
        forever = (datetime.now(timezone.utc) + timedelta(days=365 * 100)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"models": [{**model_entry(resident), "expires_at": forever, "size_vram": 0,
                            "context_length": resident.context_length}]}

    @app.post("/api/show")
    async def show(request: Request) -> dict[str, Any]:
        core.check_auth(request)
        data = await core.read_json(request)
        name = data.get("model") or data.get("name") if isinstance(data, dict) else None
        if not isinstance(name, str) or not name:
            raise APIError(400, "model: required (the name /api/tags lists)", param="model")
        return show_body(pick(core, {"model": name}))

    @app.post("/api/chat")
    async def chat(request: Request) -> Any:
        started = time.perf_counter()
        core.check_auth(request)
        data = await core.read_json(request)
        served = pick(core, data)
        tr = chat_body(data, served.spec)
        if tr.body is None:
            return _noted(JSONResponse(_loaded(served, data, {"message": {"role": "assistant", "content": ""}})),
                          tr.notes)
        with ollama_names():
            call = core.chat_call(tr.body, served)
            job = await core.start_chat(served, call)
        fold = ChatFold(served.id, call.tools_enabled, "chat")
        if tr.stream:
            return _noted(_ndjson(_stream(job, fold, started), job), tr.notes)
        return _noted(await _whole(core, job, fold, request, started), tr.notes)

    @app.post("/api/generate")
    async def generate(request: Request) -> Any:
        started = time.perf_counter()
        core.check_auth(request)
        data = await core.read_json(request)
        served = pick(core, data)
        req, tr = generate_body(data, served.spec)
        if tr.body is None and not req.prompt and req.suffix is None:
            return _noted(JSONResponse(_loaded(served, data, {"response": ""})), tr.notes)
        if tr.body is None:  # raw prompt or fill-in-the-middle: no template
            job = await _start_raw(core, served, completion_body(req, served.context_length, tr.notes))
        else:
            with ollama_names():
                job = await core.start_chat(served, core.chat_call(tr.body, served))
        fold = ChatFold(served.id, False, "generate")
        if tr.stream:
            return _noted(_ndjson(_stream(job, fold, started), job), tr.notes)
        return _noted(await _whole(core, job, fold, request, started), tr.notes)


@contextmanager
def ollama_names() -> Iterator[None]:
    """Errors found in the translated body name Ollama's fields: `format`, `options.num_predict`..."""
    try:
        yield
    except APIError as exc:
        message = exc.message
        for openai_name, ollama_name in RENAMED:
            message = message.replace(openai_name, ollama_name)
        raise APIError(exc.status, message, param=exc.param, code=exc.code, type=exc.type) from None


def pick(core: ServerCore, data: Any) -> ServedModel:
    """The model a request names; Ollama clients may add the default tag (`name:latest`) to a served id."""
    name = data.get("model") if isinstance(data, dict) else None
    if isinstance(name, str) and name not in core.models.models and name.endswith(":latest"):
        bare = name.removesuffix(":latest")
        if bare in core.models.models:
            data = {**data, "model": bare}
    return core.pick(data)


async def _start_raw(core: ServerCore, served: ServedModel, body: dict[str, Any]) -> Job:
    """A raw / fill-in-the-middle generation, as /v1/completions runs it."""
    call = raw.parse_completion(body, generation_config=served.generation_config)
    prompt, options = await asyncio.to_thread(raw.encode_completion, served, call)
    job = Job(served, prompt, options, reader=raw.completion_reader(served.spec, prompt, call.stop),
              stop_ids=prompt.stop_ids)
    core.submit(job)
    return job


# --- the answer ---------------------------------------------------------------------------------------------
class ChatFold:
    """Reader events as Ollama's message pieces (chat) or response text (generate), over the OpenAI TurnAssembler
    so both APIs read a turn the same way (raw call text as content when tools are off or a call did not parse)."""

    def __init__(self, model_id: str, tools_enabled: bool, kind: str):
        self.model_id = model_id
        self.kind = kind
        self.asm = TurnAssembler(tools_enabled)

    def add(self, event: Any) -> dict[str, Any] | None:
        """The Ollama piece for one event (None when it adds nothing)."""
        delta = self.asm.add(event)
        return None if delta is None else self._piece(delta)

    def _piece(self, delta: dict[str, Any]) -> dict[str, Any]:
        content = delta.get("content") or ""
        thinking = delta.get("reasoning_content")
        calls = [ollama_call(c) for c in delta.get("tool_calls") or []]
        if self.kind == "generate":
            return {"response": content, **({"thinking": thinking} if thinking else {})}
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if thinking:
            message["thinking"] = thinking
        if calls:
            message["tool_calls"] = calls
        return {"message": message}

    def whole(self) -> dict[str, Any]:
        msg = self.asm.message()
        return self._piece({"content": msg["content"], "reasoning_content": msg["reasoning_content"],
                            "tool_calls": [{"index": k, **c} for k, c in enumerate(msg.get("tool_calls") or [])]})

    @property
    def done_reason(self) -> str:
        return "length" if self.asm.finish_reason == "length" else "stop"

    def line(self, piece: dict[str, Any], done: bool = False) -> dict[str, Any]:
        return {"model": self.model_id, "created_at": now(), **piece, "done": done}


def ollama_call(call: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI tool-call delta as Ollama's: arguments as an object, the reader's id kept (it comes back)."""
    fn = call["function"]
    return {"id": call["id"], "function": {"index": call.get("index", 0), "name": fn["name"],
                                           "arguments": json.loads(fn["arguments"])}}


def timings(result: Any, started: float) -> dict[str, int]:
    """Ollama's counts and durations (nanoseconds): prompt evaluation is the time to the first token."""
    first = result.time_to_first_token_s or 0.0
    return {"total_duration": _ns(time.perf_counter() - started), "load_duration": 0,
            "prompt_eval_count": result.prompt_tokens, "prompt_eval_duration": _ns(first),
            "eval_count": result.completion_tokens, "eval_duration": _ns(max(result.total_s - first, 0.0))}


async def _whole(core: ServerCore, job: Job, fold: ChatFold, request: Request, started: float) -> JSONResponse:
    item = await core.finish_whole(job, request, fold.add)
    if isinstance(item, JSONResponse):
        return item
    return JSONResponse({**fold.line(fold.whole(), done=True), "done_reason": fold.done_reason,
                         **timings(item.result, started)})


async def _stream(job: Job, fold: ChatFold, started: float) -> AsyncIterator[str]:
    """NDJSON: one line per piece of answer, thinking or tool call; the last line has done, done_reason and counts."""
    while not isinstance(item := await job.events.get(), Finished):
        piece = fold.add(item)
        if piece is not None:
            yield _json_line(fold.line(piece))
    if (failure := failure_body(item)) is not None:
        yield _json_line({"error": failure["error"]["message"]})
        return
    empty = {"response": ""} if fold.kind == "generate" else {"message": {"role": "assistant", "content": ""}}
    yield _json_line({**fold.line(empty, done=True), "done_reason": fold.done_reason,
                      **timings(item.result, started)})


def _ndjson(lines: AsyncIterator[str], job: Job) -> Any:

    response = SSEResponse(lines, on_close=job.cancel.set)  # a client that leaves cancels its generation
    response.media_type = NDJSON
    response.headers["content-type"] = NDJSON
    return response


def _noted(response: Any, notes: list[str]) -> Any:
    if notes:
        log.info("ollama request: %s", "; ".join(notes))
        response.headers[NOTICE_HEADER] = "; ".join(notes).encode("ascii", "replace").decode("ascii")
    return response


def _loaded(served: ServedModel, data: dict[str, Any], piece: dict[str, Any]) -> dict[str, Any]:
    """Ollama's answer to a request with nothing to generate: the model is (kept) loaded."""
    unload = data.get("keep_alive") in (0, "0", "0s")
    return {"model": served.id, "created_at": now(), **piece, "done": True,
            "done_reason": "unload" if unload else "load"}


# --- models -------------------------------------------------------------------------------------------------
def model_entry(model: ServedModel) -> dict[str, Any]:
    """One `/api/tags` entry. `digest` identifies the files and template served, not an Ollama blob."""
    path = _path(model)
    size = 0
    try:
        size = path.stat().st_size if path is not None and path.is_file() else (model.footprint or 0)
    except OSError:
        pass
    modified = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc) if path is not None and path.exists() \
        else datetime.now(timezone.utc)
    digest = hashlib.sha256(f"{path}\0{_template_sha(model)}".encode()).hexdigest()
    return {"name": model.id, "model": model.id, "modified_at": modified.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "size": size, "digest": digest, "details": details(model)}


def details(model: ServedModel) -> dict[str, Any]:
    path = _path(model)
    fmt = "gguf" if path is not None and path.suffix.lower() == ".gguf" else "safetensors"
    family = _architecture(model)
    return {"parent_model": "", "format": fmt, "family": family, "families": [family] if family else None,
            "parameter_size": "", "quantization_level": ""}


def show_body(model: ServedModel) -> dict[str, Any]:
    """`/api/show`: the chat template is the model's Jinja source (what turnspec renders), not a Go template."""
    arch = _architecture(model) or "unknown"
    caps = model.capabilities
    capabilities = ["completion"] + [name for key, name in (("tools", "tools"), ("reasoning", "thinking"),
                                                             ("fim", "insert")) if caps.get(key)]
    try:
        template = model.spec.template
    except Exception:  # several templates and no default: the spec says which in its own error
        template = ""
    stop_set = model.spec.stops
    stops = "\n".join(f"stop {json.dumps(s)}" for s in dict.fromkeys([*(s.token for s in stop_set.stops),
                                                                      *stop_set.strings]))
    entry = model_entry(model)
    return {"modified_at": entry["modified_at"], "template": template, "parameters": stops,
            "modelfile": f"# served by turnspec\nFROM {_path(model) or model.id}\n", "license": "",
            "details": details(model), "capabilities": capabilities,
            "model_info": {"general.architecture": arch, f"{arch}.context_length": model.context_length}}


def _path(model: ServedModel) -> Any:
    from pathlib import Path

    path = getattr(getattr(model.spec, "files", None), "path", None)
    return Path(path) if path else None


def _architecture(model: ServedModel) -> str:
    config = getattr(getattr(model.spec, "files", None), "config", None) or {}
    return str(config.get("model_type") or config.get("general.architecture") or "")


def _template_sha(model: ServedModel) -> str:
    try:
        return model.spec.template_sha256
    except Exception:
        return ""


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def _json_line(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False) + "\n"
