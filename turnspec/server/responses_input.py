"""The OpenAI Responses request (`POST /v1/responses`) as a Chat Completions body, so one validation, one
grammar planner (tool_choice, response_format) and one reader serve both APIs.

Input items become chat messages: a message's text parts its content; a `reasoning` item, the `reasoning_content`
of the assistant turn it precedes (rendered back as the template renders past reasoning); `function_call` items,
that turn's `tool_calls` (the call_id is the id the reader gave the call, so a template that checks ids accepts
it); `function_call_output`, a tool message. Every problem is a 400 naming the Responses field.
"""

from __future__ import annotations

from typing import Any, Optional, Union

from pydantic import Field, ValidationError

from .protocol import APIError, OpenModel, bad, validation_error

TEXT_PARTS = ("input_text", "output_text", "text")
INCLUDE_REASONING = "reasoning.encrypted_content"
INCLUDE_LOGPROBS = "message.output_text.logprobs"


class ReasoningConfig(OpenModel):
    effort: Optional[str] = None
    summary: Optional[str] = None


class TextConfig(OpenModel):
    format: Optional[dict[str, Any]] = None


class ResponsesRequest(OpenModel):
    """The fields turnspec reads; unknown fields are accepted and ignored, as for Chat Completions."""

    model: Optional[str] = None
    input: Union[str, list[dict[str, Any]]]
    instructions: Optional[str] = None
    tools: Optional[list[dict[str, Any]]] = None
    tool_choice: Union[str, dict[str, Any], None] = None
    parallel_tool_calls: Optional[bool] = None
    text: Optional[TextConfig] = None
    reasoning: Optional[ReasoningConfig] = None
    max_output_tokens: Optional[int] = Field(None, ge=1)
    temperature: Optional[float] = Field(None, ge=0, le=2)
    top_p: Optional[float] = Field(None, gt=0, le=1)
    top_logprobs: Optional[int] = Field(None, ge=0, le=20)
    include: Optional[list[str]] = None
    previous_response_id: Optional[str] = None
    store: bool = True
    stream: bool = False
    background: Optional[bool] = None
    conversation: Any = None
    metadata: Optional[dict[str, str]] = None
    user: Optional[str] = None
    seed: Optional[int] = None


def parse_responses(data: Any) -> ResponsesRequest:
    if not isinstance(data, dict):
        raise bad("the request body must be a JSON object", code="invalid_json")
    try:
        req = ResponsesRequest.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc.errors(include_url=False)) from None
    if req.background:
        raise bad("background: not supported by turnspec serve (responses run while the request is open)",
                  param="background", code="unsupported_value")
    if req.conversation is not None:
        raise bad("conversation: not supported by turnspec serve; continue with previous_response_id",
                  param="conversation", code="unsupported_value")
    if isinstance(req.input, list) and not req.input:
        raise bad("input: must contain at least one item", param="input", code="empty_array")
    return req


def chat_body(req: ResponsesRequest, history: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The Chat Completions body for `req` after the `history` of its previous response, and the conversation to
    store (history + this input, without `instructions`: they do not carry over to the next response)."""
    new = input_messages(req.input)
    conversation = [*history, *new]
    messages = ([{"role": "system", "content": req.instructions}] if req.instructions else []) + conversation
    body: dict[str, Any] = {"messages": messages}
    if req.model is not None:
        body["model"] = req.model
    if req.tools is not None:
        body["tools"] = [_tool(t, i) for i, t in enumerate(req.tools)]
    if req.tool_choice is not None:
        body["tool_choice"] = _tool_choice(req.tool_choice)
    fmt = _response_format(req.text.format if req.text else None)
    if fmt is not None:
        body["response_format"] = fmt
    if req.reasoning is not None and req.reasoning.effort is not None:
        body["reasoning_effort"] = req.reasoning.effort  # a template variable, as Chat Completions passes it
    for ours, theirs in (("max_output_tokens", "max_tokens"), ("temperature", "temperature"), ("top_p", "top_p"),
                         ("parallel_tool_calls", "parallel_tool_calls"), ("seed", "seed")):
        value = getattr(req, ours)
        if value is not None:
            body[theirs] = value
    if wants_logprobs(req):
        body["logprobs"] = True
        body["top_logprobs"] = req.top_logprobs or 0
    return body, conversation


def wants_logprobs(req: ResponsesRequest) -> bool:
    return INCLUDE_LOGPROBS in (req.include or ()) or bool(req.top_logprobs)


# --- input items -----------------------------------------------------------------------------------------------
def input_messages(items: Union[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Responses input items as chat messages (see the module docstring)."""
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    out: list[dict[str, Any]] = []
    turn: dict[str, Any] | None = None  # the assistant turn that reasoning / message / function_call items build
    names: dict[str, str] = {}  # call_id -> function name, for the tool messages that answer them
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise bad(f"{where}: expected an object (an input item)", param=where)
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "reasoning":
            if turn is not None and (turn["content"] or turn.get("tool_calls") or turn.get("reasoning_content")):
                turn = None
            text = _reasoning_text(item, where)
            if turn is None:
                turn = {"role": "assistant", "content": ""}
                out.append(turn)
            turn["reasoning_content"] = (turn.get("reasoning_content") or "") + text
        elif kind == "message":
            role = item.get("role")
            if role not in ("user", "system", "developer", "assistant"):
                raise bad(f"{where}.role: {role!r} is not one of user, system, developer, assistant",
                          param=f"{where}.role")
            text = _content_text(item.get("content"), f"{where}.content")
            if role != "assistant":
                turn = None
                out.append({"role": role, "content": text})
                continue
            if turn is None or turn["content"] or turn.get("tool_calls"):
                turn = {"role": "assistant", "content": ""}
                out.append(turn)
            turn["content"] = text
        elif kind == "function_call":
            call_id = _string(item, "call_id", where)
            name = _string(item, "name", where)
            arguments = item.get("arguments", "{}")
            if not isinstance(arguments, str):
                raise bad(f"{where}.arguments: must be a string (the call's JSON arguments)", param=f"{where}.arguments")
            if turn is None:
                turn = {"role": "assistant", "content": ""}
                out.append(turn)
            turn.setdefault("tool_calls", []).append(
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}})
            names[call_id] = name
        elif kind == "function_call_output":
            call_id = _string(item, "call_id", where)
            output = item.get("output")
            text = output if isinstance(output, str) else _content_text(output, f"{where}.output")
            message = {"role": "tool", "tool_call_id": call_id, "content": text}
            if call_id in names:
                message["name"] = names[call_id]
            turn = None
            out.append(message)
        else:
            raise bad(f"{where}.type: {kind!r} is not supported (message, function_call, function_call_output, "
                      "reasoning)", param=f"{where}.type", code="unsupported_value")
    return out


def _string(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise bad(f"{where}.{key}: required, a non-empty string", param=f"{where}.{key}")
    return value


def _content_text(content: Any, where: str) -> str:
    """A string, or text parts (input_text / output_text / refusal) joined with newlines; other parts are a 400."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise bad(f"{where}: expected a string or a list of content parts", param=where)
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in TEXT_PARTS and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            texts.append(part["refusal"])
        else:
            raise bad(f"{where}[{j}]: content part type {kind!r} is not supported (input_text, output_text)",
                      param=f"{where}[{j}].type", code="unsupported_value")
    return "\n".join(texts)


def _reasoning_text(item: dict[str, Any], where: str) -> str:
    """What the model wrote: the reasoning_text parts, else `encrypted_content` (this server puts the same text
    there, so a client that keeps only that, as Codex with store=false does, sends it back whole)."""
    content = item.get("content")
    if isinstance(content, list) and content:
        texts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("text"), str):
                raise bad(f"{where}.content[{j}]: expected {{'type': 'reasoning_text', 'text': ...}}",
                          param=f"{where}.content[{j}]")
            texts.append(part["text"])
        return "".join(texts)
    encrypted = item.get("encrypted_content")
    return encrypted if isinstance(encrypted, str) else ""


# --- tools and formats --------------------------------------------------------------------------------------------
def _tool(tool: Any, i: int) -> dict[str, Any]:
    """Responses' flat function tool {type, name, parameters} as Chat Completions' {type, function: {...}}."""
    where = f"tools[{i}]"
    if not isinstance(tool, dict) or tool.get("type") != "function":
        kind = tool.get("type") if isinstance(tool, dict) else None
        raise bad(f"{where}.type: {kind!r} is not supported, only 'function' (hosted tools run at OpenAI)",
                  param=f"{where}.type", code="unsupported_value")
    function = {k: tool[k] for k in ("name", "description", "parameters") if tool.get(k) is not None}
    return {"type": "function", "function": function}


def _tool_choice(choice: Union[str, dict[str, Any]]) -> Union[str, dict[str, Any]]:
    if isinstance(choice, str):
        return choice  # auto / none / required: checked by the chat validation
    if choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise bad(f"tool_choice: {choice!r} is not 'auto', 'none', 'required' or {{'type': 'function', 'name': ...}}",
              param="tool_choice", code="unsupported_value")


def _response_format(fmt: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """text.format as Chat Completions' response_format (json_schema's fields move under `json_schema`)."""
    if fmt is None or fmt.get("type") == "text":
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        inner = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": inner}
    raise bad(f"text.format.type: {fmt.get('type')!r} is not text, json_object or json_schema",
              param="text.format.type", code="unsupported_value")


# Chat Completions names in errors, as the Responses request names them.
_RENAMES: list[tuple[str, str]] = [("response_format.json_schema", "text.format"), ("response_format", "text.format"),
                                   ("max_completion_tokens", "max_output_tokens"), ("max_tokens", "max_output_tokens"),
                                   ("reasoning_effort", "reasoning.effort"), (".function.", "."),
                                   ("messages[", "conversation message["), ("messages", "input")]


def renamed(exc: APIError) -> APIError:
    """An error the chat validation raised, with Responses' field names (input, text.format, tools[i].name)."""
    message, param = exc.message, exc.param
    for old, new in _RENAMES:
        message = message.replace(old, new)
        param = param.replace(old, new) if param else param
    return APIError(exc.status, message, param=param, code=exc.code, type=exc.type)

