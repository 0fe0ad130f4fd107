"""An Anthropic Messages request as the OpenAI Chat Completions body the server already validates, and errors in
Anthropic's shape. No FastAPI here: testable without a server (anthropic_api.py: routes and the response side).

What maps where: `system` -> a system message; text blocks -> content; `tool_use` blocks -> the assistant's
`tool_calls` (their `input` objects as arguments); `tool_result` blocks -> tool messages; `thinking` blocks ->
the assistant's `reasoning_content` (what reasoning templates render); `tool_choice` any / tool -> "required" / a
named function (forced by the template-syntax grammar); `thinking` -> the template's own reasoning switch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

from pydantic import Field, ValidationError

from .protocol import OpenModel, bad, validation_error
from .switches import ON_OFF_SWITCHES, template_switches

TOOL_USE_PREFIX = "toolu_"
# HTTP status -> Anthropic's error type (https://docs.anthropic.com/en/api/errors)
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 405: "invalid_request_error", 413: "request_too_large",
               415: "invalid_request_error", 429: "rate_limit_error", 503: "overloaded_error"}
# Template variables that turn reasoning on or off (analysis/probes.py tries the same names), and their values.


def anthropic_error(status: int, body: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI error body (`{"error": {"message", ...}}`) in Anthropic's shape."""
    err = body.get("error") if isinstance(body.get("error"), dict) else {}
    message = str(err.get("message") or "error")
    return {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message}}


def tool_use_id(call_id: str) -> str:
    """The reader's call id as Anthropic's `toolu_...` (the reader's own id is what goes back into the template)."""
    return call_id if call_id.startswith(TOOL_USE_PREFIX) else TOOL_USE_PREFIX + call_id


def template_call_id(tool_use: str) -> str:
    """A `toolu_...` id back as the id the template rendered (Mistral's templates accept only their own shape)."""
    return tool_use[len(TOOL_USE_PREFIX):] if tool_use.startswith(TOOL_USE_PREFIX) and len(tool_use) > 6 else tool_use


# --- request shape (types only; meaning is checked below) -----------------------------------------------------
class Block(OpenModel):
    type: str
    text: Optional[str] = None


class MessageIn(OpenModel):
    role: str
    content: Union[str, list[Block]]


class ToolIn(OpenModel):
    name: str
    description: Optional[str] = None
    input_schema: Optional[dict[str, Any]] = None
    type: Optional[str] = None


class ToolChoice(OpenModel):
    type: str
    name: Optional[str] = None
    disable_parallel_tool_use: Optional[bool] = None


class Thinking(OpenModel):
    type: str
    budget_tokens: Optional[int] = Field(None, ge=0)


class MessagesRequest(OpenModel):
    model: str
    messages: list[MessageIn]
    max_tokens: int = Field(..., ge=1)
    system: Union[str, list[Block], None] = None
    tools: Optional[list[ToolIn]] = None
    tool_choice: Optional[ToolChoice] = None
    stop_sequences: Optional[list[str]] = None
    temperature: Optional[float] = Field(None, ge=0, le=1)
    top_p: Optional[float] = Field(None, gt=0, le=1)
    top_k: Optional[int] = Field(None, ge=1)
    stream: bool = False
    thinking: Optional[Thinking] = None
    metadata: Optional[dict[str, Any]] = None
    seed: Optional[int] = None  # not Anthropic's: turnspec's (as for Chat Completions), for reproducible sampling


class CountRequest(MessagesRequest):
    max_tokens: Optional[int] = Field(None, ge=1)  # type: ignore[assignment]


@dataclass
class Wire:
    body: dict[str, Any]  # the OpenAI Chat Completions body
    stream: bool


def translate(data: Any, served: Any, *, counting: bool) -> Wire:
    """Validate a Messages body (400s name the field as Anthropic's API does) and translate it."""
    if not isinstance(data, dict):
        raise bad("the request body must be a JSON object", code="invalid_json")
    try:
        req = (CountRequest if counting else MessagesRequest).model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc.errors(include_url=False)) from None
    if not req.messages:
        raise bad("messages: must contain at least one message", param="messages")
    messages: list[dict[str, Any]] = []
    system = _system(req.system)
    if system is not None:
        messages.append({"role": "system", "content": system})
    for i, m in enumerate(req.messages):
        messages += _message(m, i, served)
    body: dict[str, Any] = {"model": served.id, "messages": messages}
    if req.max_tokens is not None:
        body["max_tokens"] = req.max_tokens
    if req.tools:
        body["tools"] = [_tool(t, i) for i, t in enumerate(req.tools)]
    if req.tool_choice is not None:
        choice, parallel = _tool_choice(req.tool_choice)
        body["tool_choice"] = choice
        body["parallel_tool_calls"] = parallel
    elif req.tools:
        body["parallel_tool_calls"] = True  # Anthropic's default
    if req.stop_sequences:
        if any(not s for s in req.stop_sequences):
            raise bad("stop_sequences: stop sequences must not be empty", param="stop_sequences")
        body["stop"] = list(req.stop_sequences)
    for key in ("temperature", "top_p", "seed"):
        if getattr(req, key) is not None:
            body[key] = getattr(req, key)
    if req.top_k == 1:  # the one top_k the engines can honour: always the likeliest token
        body["temperature"] = 0.0
    if req.thinking is not None:
        switch = thinking_switch(req.thinking, served.spec)
        if switch:
            body["chat_template_kwargs"] = switch
    return Wire(body, req.stream and not counting)


def _system(system: Any) -> str | None:
    if system is None or isinstance(system, str):
        return system
    texts = []
    for j, block in enumerate(system):
        if block.type != "text" or block.text is None:
            raise bad(f"system[{j}]: block type {block.type!r} is not supported (text only)", param=f"system[{j}].type")
        texts.append(block.text)
    return "\n".join(texts)


def _message(m: MessageIn, i: int, served: Any) -> list[dict[str, Any]]:
    """One Anthropic message as OpenAI messages: a user turn's tool results become tool messages before its text."""
    where = f"messages[{i}]"
    if m.role not in ("user", "assistant"):
        raise bad(f"{where}.role: {m.role!r} is not 'user' or 'assistant' (the system prompt goes in 'system')",
                  param=f"{where}.role")
    if isinstance(m.content, str):
        return [{"role": m.role, "content": m.content}]
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for j, block in enumerate(m.content):
        at = f"{where}.content[{j}]"
        kind = block.type
        extra = block.model_extra or {}
        if kind == "text":
            if block.text is None:
                raise bad(f"{at}.text: a text block needs text", param=f"{at}.text")
            texts.append(block.text)
        elif kind in ("image", "document"):
            raise bad(f"{at}: {kind} blocks need a model that reads them; {served.id} reads text only",
                      param=f"{at}.type")
        elif kind == "tool_use" and m.role == "assistant":
            calls.append(_tool_use(extra, at))
        elif kind == "tool_result" and m.role == "user":
            results.append(_tool_result(extra, at, served))
        elif kind == "thinking" and m.role == "assistant":
            thought = extra.get("thinking")
            if not isinstance(thought, str):
                raise bad(f"{at}.thinking: a thinking block needs its text", param=f"{at}.thinking")
            reasoning.append(thought)
        elif kind == "redacted_thinking" and m.role == "assistant":
            continue  # encrypted by Anthropic: nothing a local template can render
        else:
            raise bad(f"{at}.type: {kind!r} blocks are not supported in a {m.role} message", param=f"{at}.type")
    if m.role == "user":
        out = [{"role": "tool", **r} for r in results]
        if texts or not results:
            out.append({"role": "user", "content": "\n".join(texts)})
        return out
    msg: dict[str, Any] = {"role": "assistant", "content": "\n".join(texts)}
    if reasoning:
        msg["reasoning_content"] = "\n".join(reasoning)
    if calls:
        msg["tool_calls"] = calls
    return [msg]


def _tool_use(block: dict[str, Any], at: str) -> dict[str, Any]:
    call_id, name, args = block.get("id"), block.get("name"), block.get("input", {})
    if not isinstance(call_id, str) or not call_id:
        raise bad(f"{at}.id: a tool_use block needs its id", param=f"{at}.id")
    if not isinstance(name, str) or not name:
        raise bad(f"{at}.name: a tool_use block needs the tool's name", param=f"{at}.name")
    if not isinstance(args, dict):
        raise bad(f"{at}.input: must be an object", param=f"{at}.input")
    return {"id": template_call_id(call_id), "type": "function", "function": {"name": name, "arguments": args}}


def _tool_result(block: dict[str, Any], at: str, served: Any) -> dict[str, Any]:
    call_id, content = block.get("tool_use_id"), block.get("content", "")
    if not isinstance(call_id, str) or not call_id:
        raise bad(f"{at}.tool_use_id: a tool_result block needs the id of the tool_use it answers",
                  param=f"{at}.tool_use_id")
    if isinstance(content, list):
        texts = []
        for k, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind != "text" or not isinstance(part.get("text"), str):
                what = f"{kind} blocks need a model that reads them; {served.id} reads text only" \
                    if kind in ("image", "document") else "must be a text block"
                raise bad(f"{at}.content[{k}]: {what}", param=f"{at}.content[{k}].type")
            texts.append(part["text"])
        content = "\n".join(texts)
    elif not isinstance(content, str):
        raise bad(f"{at}.content: must be a string or a list of text blocks", param=f"{at}.content")
    return {"tool_call_id": template_call_id(call_id), "content": content}


def _tool(tool: ToolIn, i: int) -> dict[str, Any]:
    if tool.type not in (None, "custom"):
        raise bad(f"tools[{i}].type: {tool.type!r} is one of Anthropic's own server tools; a local model has only "
                  "the tools you define (name, description, input_schema)", param=f"tools[{i}].type")
    fn: dict[str, Any] = {"name": tool.name, "parameters": tool.input_schema or {"type": "object", "properties": {}}}
    if tool.description is not None:
        fn["description"] = tool.description
    return {"type": "function", "function": fn}


def _tool_choice(choice: ToolChoice) -> tuple[Any, bool]:
    parallel = not choice.disable_parallel_tool_use
    if choice.type in ("auto", "none"):
        return choice.type, parallel
    if choice.type == "any":
        return "required", parallel
    if choice.type == "tool":
        if not choice.name:
            raise bad("tool_choice.name: a tool_choice of type 'tool' names the tool", param="tool_choice.name")
        return {"type": "function", "function": {"name": choice.name}}, parallel
    raise bad(f"tool_choice.type: {choice.type!r} is not 'auto', 'any', 'tool' or 'none'", param="tool_choice.type")


# --- thinking ------------------------------------------------------------------------------------------------
def thinking_switch(thinking: Thinking, spec: Any) -> dict[str, Any]:
    """`thinking` as the template variables that switch its reasoning (none when it reads no switch: then the
    model reasons, or not, as its template does by default)."""
    if thinking.type not in ("enabled", "disabled", "adaptive"):
        raise bad(f"thinking.type: {thinking.type!r} is not 'enabled' or 'disabled'", param="thinking.type")
    on = thinking.type != "disabled"
    out: dict[str, Any] = {}
    for name in template_switches(spec):
        if name in ON_OFF_SWITCHES:
            out[name] = on
        elif name == "thinking_budget":
            out[name] = (thinking.budget_tokens or 1024) if on else 0
    return out
