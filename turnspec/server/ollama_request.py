"""Ollama's request bodies (`/api/chat`, `/api/generate`) translated into an OpenAI Chat Completions body, so the
same validation, grammars (format → response_format), reasoning switches and reader serve Ollama clients.

What has no counterpart here is said, not guessed: options the engines do not take (`num_ctx`, `top_k`,
penalties...) and a `think` the template has no switch for come back as notes (the `X-Turnspec-Notice` header and
the server log). No FastAPI here (pydantic only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Union

from pydantic import Field, ValidationError

from .protocol import OpenModel, bad, validation_error
from .switches import EFFORT_SWITCH, ON_OFF_SWITCHES, template_switches

# the levels Ollama's `think` takes besides true/false (a template's reasoning_effort)
THINK_LEVELS = ("low", "medium", "high")
# Ollama's options that turnspec applies; any other option Ollama knows is accepted and ignored with a note.
APPLIED_OPTIONS = ("temperature", "top_p", "seed", "num_predict", "stop")


class OllamaOptions(OpenModel):
    temperature: Optional[float] = Field(None, ge=0, le=2)
    top_p: Optional[float] = Field(None, gt=0, le=1)
    top_k: Optional[int] = None
    seed: Optional[int] = None
    num_predict: Optional[int] = None
    num_ctx: Optional[int] = None
    stop: Union[str, list[str], None] = None


class OllamaFunction(OpenModel):
    name: str
    arguments: Union[dict[str, Any], str] = Field(default_factory=dict)


class OllamaToolCall(OpenModel):
    id: Optional[str] = None
    function: OllamaFunction


class OllamaMessage(OpenModel):
    role: str
    content: Optional[str] = None
    thinking: Optional[str] = None
    images: Optional[list[Any]] = None
    tool_calls: Optional[list[OllamaToolCall]] = None
    tool_name: Optional[str] = None
    tool_call_id: Optional[str] = None


class _Generation(OpenModel):
    model: Optional[str] = None
    format: Union[str, dict[str, Any], None] = None
    options: Optional[OllamaOptions] = None
    stream: bool = True  # Ollama streams unless told not to
    think: Union[bool, str, None] = None
    keep_alive: Union[str, float, None] = None
    logprobs: Optional[bool] = None
    top_logprobs: Optional[int] = None


class OllamaChatRequest(_Generation):
    messages: list[OllamaMessage] = Field(default_factory=list)
    tools: Optional[list[dict[str, Any]]] = None


class OllamaGenerateRequest(_Generation):
    prompt: Optional[str] = None
    suffix: Optional[str] = None
    system: Optional[str] = None
    template: Optional[str] = None
    context: Optional[list[int]] = None
    raw: bool = False
    images: Optional[list[Any]] = None


@dataclass
class Translated:
    """An Ollama request as an OpenAI body (or None: a load-only request), whether to stream, and the notes."""

    body: dict[str, Any] | None
    stream: bool
    notes: list[str] = field(default_factory=list)


def validate(model: type[_Generation], data: Any) -> Any:
    if not isinstance(data, dict):
        raise bad("the request body must be a JSON object", code="invalid_json")
    try:
        req = model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc.errors(include_url=False)) from None
    if req.logprobs or req.top_logprobs:
        raise bad("logprobs: not supported by turnspec serve", param="logprobs", code="unsupported_value")
    return req


def chat_body(data: Any, spec: Any) -> Translated:
    """`/api/chat` → an OpenAI chat body; no messages is Ollama's "load the model" request (body None)."""
    req = validate(OllamaChatRequest, data)
    notes: list[str] = []
    if not req.messages:
        return Translated(None, req.stream, notes)
    body: dict[str, Any] = {"model": req.model, "messages": _messages(req.messages), "stream": False}
    if req.tools:
        body["tools"] = req.tools
    _common(req, body, spec, notes, tools=req.tools)
    return Translated(body, req.stream, notes)


def generate_body(data: Any, spec: Any) -> tuple[Any, Translated]:
    """`/api/generate` → (the validated request, an OpenAI chat body for a templated prompt). A raw prompt or a
    suffix (fill-in-the-middle) goes to the completions path instead: the body is then None and the caller uses
    `completion_body`. An empty prompt is Ollama's "load the model" request."""
    req = validate(OllamaGenerateRequest, data)
    notes: list[str] = []
    if req.images:
        raise bad("images: turnspec serve does not take images", param="images", code="unsupported_value")
    if req.template is not None:
        raise bad("template: turnspec renders the model's own chat template and takes no other; send the prompt "
                  "with raw=true to format it yourself", param="template", code="unsupported_value")
    if req.context:
        raise bad("context: token contexts of earlier answers are not supported; send the conversation to "
                  "/api/chat as messages", param="context", code="unsupported_value")
    if not req.prompt and req.suffix is None:
        return req, Translated(None, req.stream, notes)
    if req.raw or req.suffix is not None:
        if req.format:
            raise bad("format: not supported with raw=true or a suffix (only templated prompts are constrained)",
                      param="format", code="unsupported_value")
        return req, Translated(None, req.stream, notes)
    messages = ([{"role": "system", "content": req.system}] if req.system else []) + \
        [{"role": "user", "content": req.prompt}]
    body: dict[str, Any] = {"model": req.model, "messages": messages, "stream": False}
    _common(req, body, spec, notes, tools=None)
    return req, Translated(body, req.stream, notes)


def completion_body(req: OllamaGenerateRequest, context_length: int, notes: list[str]) -> dict[str, Any]:
    """A raw or fill-in-the-middle `/api/generate` as an OpenAI completions body (no template: Ollama's raw)."""
    body: dict[str, Any] = {"model": req.model, "prompt": req.prompt or "", "stream": False}
    if req.suffix is not None:
        body["suffix"] = req.suffix
    if req.system:
        notes.append("system: ignored with raw=true or a suffix (no template to put it in)")
    if req.think is not None:
        notes.append("think: ignored with raw=true or a suffix (no template to switch)")
    _options(req.options, body, notes)
    # Ollama generates until the context is full unless num_predict says otherwise (the OpenAI default is 16).
    body.setdefault("max_tokens", context_length or 2048)
    return body


def _common(req: _Generation, body: dict[str, Any], spec: Any, notes: list[str], tools: Any) -> None:
    _options(req.options, body, notes)
    if req.format:
        body["response_format"] = _response_format(req.format)
    kwargs = think_kwargs(spec, req.think, notes, tools)
    if kwargs:
        body["chat_template_kwargs"] = kwargs
    if req.keep_alive is not None and req.keep_alive in (0, "0", "0s", 0.0):
        notes.append("keep_alive: 0 does not unload the model here (the server keeps one model resident)")


def _options(options: OllamaOptions | None, body: dict[str, Any], notes: list[str]) -> None:
    if options is None:
        return
    for name in ("temperature", "top_p", "seed"):
        if (value := getattr(options, name)) is not None:
            body[name] = value
    if options.stop:
        body["stop"] = options.stop
    if options.num_predict is not None and options.num_predict > 0:  # -1: until the context is full, -2: fill it
        body["max_tokens"] = options.num_predict
    if options.num_ctx is not None:
        notes.append("options.num_ctx: ignored (the context is set when the server starts: --n-ctx)")
    given = options.model_dump(exclude_none=True)
    ignored = sorted(k for k in given if k not in APPLIED_OPTIONS and k != "num_ctx")
    if ignored:
        notes.append(f"options ignored (the engines do not take them): {', '.join(ignored)}")


def _response_format(fmt: Any) -> dict[str, Any]:
    """Ollama's format: "json" (any JSON object) or a JSON schema; the same grammar as OpenAI's response_format."""
    if isinstance(fmt, dict):
        return {"type": "json_schema", "json_schema": {"name": "format", "schema": fmt}}
    if fmt == "json":
        return {"type": "json_object"}
    raise bad(f"format: {fmt!r} is not \"json\" or a JSON schema object", param="format")


def think_kwargs(spec: Any, think: Any, notes: list[str], tools: Any = None) -> dict[str, Any]:
    """`think` as the template's own reasoning switch: an on/off variable it reads (enable_thinking...), or
    reasoning_effort for a level. A template without the switch asked for is left as it is, with a note."""
    if think is None:
        return {}
    if isinstance(think, str) and think not in THINK_LEVELS:
        raise bad(f"think: {think!r} is not true, false or one of {', '.join(THINK_LEVELS)}", param="think")
    switches = template_switches(spec, tools)
    on_off = next((name for name in ON_OFF_SWITCHES if name in switches), None)
    if isinstance(think, bool):
        if on_off is not None:
            return {on_off: think}
        if EFFORT_SWITCH in switches:
            notes.append(f"think={str(think).lower()}: the template sets only a reasoning effort "
                         f"({EFFORT_SWITCH}), it has no switch to turn reasoning {'on' if think else 'off'}; "
                         "send think as low, medium or high")
        else:
            notes.append(f"think={str(think).lower()}: ignored, the template reads no reasoning switch")
        return {}
    if EFFORT_SWITCH in switches:
        return {EFFORT_SWITCH: think}
    if on_off is not None:
        notes.append(f"think={think!r}: the template has no effort level, only {on_off}; reasoning switched on")
        return {on_off: True}
    notes.append(f"think={think!r}: ignored, the template reads no reasoning switch")
    return {}


def _messages(messages: list[OllamaMessage]) -> list[dict[str, Any]]:
    """Ollama messages as OpenAI ones: thinking → reasoning_content, tool calls get ids (the ones sent back, else
    made up by position), a tool result answers the call of its tool_name (else the next unanswered call)."""
    out: list[dict[str, Any]] = []
    pending: list[tuple[str, str]] = []  # (id, name) of the last assistant turn's calls not answered yet
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if m.images:
            raise bad(f"{where}.images: turnspec serve does not take images", param=f"{where}.images",
                      code="unsupported_value")
        msg: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.thinking:
            msg["reasoning_content"] = m.thinking
        if m.tool_calls:
            calls = []
            for j, call in enumerate(m.tool_calls):
                call_id = call.id or f"call{i:03d}{j:02d}"[:9]
                calls.append({"id": call_id, "type": "function",
                              "function": {"name": call.function.name, "arguments": call.function.arguments}})
            msg["tool_calls"] = calls
            pending = [(c["id"], c["function"]["name"]) for c in calls]
        if m.role == "tool":
            msg["tool_call_id"] = m.tool_call_id or _answered(pending, m.tool_name, i)
            if m.tool_name:
                msg["name"] = m.tool_name
        out.append(msg)
    return out


def _answered(pending: list[tuple[str, str]], tool_name: str | None, i: int) -> str:
    for k, (call_id, name) in enumerate(pending):
        if tool_name is None or name == tool_name:
            return pending.pop(k)[0]
    if pending:
        return pending.pop(0)[0]
    return f"call{i:03d}00"
