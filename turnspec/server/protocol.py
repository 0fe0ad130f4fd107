"""The OpenAI chat-completions request: validation into template messages, template kwargs and generation options,
and the prompt encoding. No FastAPI here (pydantic only), so it is testable without a server (responses.py: output).

Every input problem becomes an `APIError` (HTTP 400 with an OpenAI-style body naming the field), never a traceback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..chat import GenerationOptions
from ..errors import TemplateError, TurnspecError

if TYPE_CHECKING:
    from ..spec import ModelSpec

ROLES = ("system", "developer", "user", "assistant", "tool")
# Template variables a request may not set through chat_template_kwargs: they are the render call's own arguments.
RESERVED_KWARGS = frozenset({"messages", "tools", "documents", "add_generation_prompt", "continue_final_message",
                             "chat_template", "assistant_mask", "add_bos", "tokenize", "return_dict"})
FALLBACK_MAX_TOKENS = 2048  # only when the engine does not report a context length
# Real requests nest a few levels (a tool schema: ten at most); deeper bodies would only reach Python's recursion
# limit somewhere after the parser (validation, grammar building, templates). Above the 64 levels a schema may
# nest (constrain/limits.py) plus the request around it, so a too-deep schema gets the 400 that names its field.
MAX_JSON_DEPTH = 128


class APIError(Exception):
    """An error the client gets as `{"error": {"message", "type", "param", "code"}}` with an HTTP status."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type

    def body(self) -> dict[str, Any]:
        return error_body(self.message, type=self.type, param=self.param, code=self.code)


def error_body(message: str, *, type: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def bad(message: str, param: str | None = None, code: str | None = "invalid_value") -> APIError:
    return APIError(400, message, param=param, code=code)


def decode_body(raw: bytes) -> Any:
    """The request body as JSON: a 400 for bytes that are not JSON and for nesting deeper than MAX_JSON_DEPTH."""
    try:
        data = json.loads(raw)
    except RecursionError:
        raise bad(f"the request body is nested too deeply (at most {MAX_JSON_DEPTH} levels)", code="invalid_json") \
            from None
    except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8
        raise bad(f"the request body is not valid JSON ({exc})", code="invalid_json") from None
    if json_depth(data) > MAX_JSON_DEPTH:
        raise bad(f"the request body is nested too deeply (at most {MAX_JSON_DEPTH} levels)", code="invalid_json")
    return data


def json_depth(data: Any) -> int:
    """How deeply lists and objects nest in decoded JSON (a scalar: 0), without recursion."""
    deepest = 0
    todo = [(data, 1)]
    while todo:
        value, depth = todo.pop()
        items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if items is None:
            continue
        deepest = max(deepest, depth)
        if depth <= MAX_JSON_DEPTH:  # past the limit the answer is known: stop walking
            todo.extend((item, depth + 1) for item in items)
    return deepest


def text_chars(*values: Any) -> int:
    """Characters in every string (keys included) of decoded JSON values: what a prompt built from them holds."""
    total = 0
    todo = list(values)
    while todo:
        value = todo.pop()
        if isinstance(value, str):
            total += len(value)
        elif isinstance(value, dict):
            total += sum(len(k) for k in value if isinstance(k, str))
            todo.extend(value.values())
        elif isinstance(value, (list, tuple)):
            todo.extend(value)
    return total


def check_prompt_chars(chars: int, max_chars: int | None, context_length: int, param: str) -> None:
    """A 400 before tokenizing, for text that cannot fit the context: even if each token held the vocabulary's
    longest token, `chars` characters would take more than `context_length` tokens (tokenizing megabytes first is
    what costs gigabytes)."""
    if max_chars is not None and chars > max_chars:
        raise bad(f"{param}: {chars} characters cannot fit the model's context of {context_length} tokens (at "
                  f"most {max_chars} characters: {max_chars // max(context_length, 1)} per token at the longest); "
                  "shorten it", param=param, code="context_length_exceeded")


# --- request shape (pydantic: types only; meaning is checked below) -------------------------------------------
class OpenModel(BaseModel):
    """A request object that keeps fields it does not name (types only; each API checks meaning itself)."""
    model_config = ConfigDict(extra="allow")


class ContentPart(OpenModel):
    type: str
    text: Optional[str] = None


class FunctionCallIn(OpenModel):
    name: str
    arguments: Union[str, dict[str, Any]] = "{}"


class ToolCallIn(OpenModel):
    id: Optional[str] = None
    type: str = "function"
    function: FunctionCallIn


class MessageIn(OpenModel):
    role: str
    content: Union[str, list[ContentPart], None] = None
    name: Optional[str] = None
    tool_calls: Optional[list[ToolCallIn]] = None
    tool_call_id: Optional[str] = None


class FunctionDef(OpenModel):
    name: str
    description: Optional[str] = None
    parameters: Optional[dict[str, Any]] = None


class ToolDef(OpenModel):
    type: str = "function"
    function: FunctionDef


class StreamOptions(OpenModel):
    include_usage: bool = False


class GenerationRequest(OpenModel):
    """The fields chat and text completions share; unknown fields are accepted and ignored (as most
    OpenAI-compatible servers do)."""

    model: Optional[str] = None
    max_tokens: Optional[int] = Field(None, ge=1)
    temperature: Optional[float] = Field(None, ge=0, le=2)
    top_p: Optional[float] = Field(None, gt=0, le=1)
    seed: Optional[int] = None
    stop: Union[str, list[str], None] = None
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    n: Optional[int] = None
    return_token_ids: bool = False  # vLLM's: the generated ids per choice, the prompt's ids on the response


class ChatCompletionRequest(GenerationRequest):
    messages: list[MessageIn]
    tools: Optional[list[ToolDef]] = None
    tool_choice: Union[str, dict[str, Any], None] = None
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    chat_template_kwargs: Optional[dict[str, Any]] = None
    reasoning_effort: Optional[str] = None
    logprobs: Optional[bool] = None
    top_logprobs: Optional[int] = None
    response_format: Optional[dict[str, Any]] = None
    parallel_tool_calls: Optional[bool] = None


_TYPE_TAGS = {"str", "int", "float", "bool", "none", "dict", "list"}


def _param(loc: tuple[Any, ...]) -> str:
    """pydantic's loc ('messages', 0, 'content', 'str') as OpenAI's param 'messages[0].content' (union tags dropped)."""
    out = ""
    if loc and loc[0] == "body":  # FastAPI's own validation errors start with where the field was
        loc = loc[1:]
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part not in _TYPE_TAGS and "[" not in part and "-" not in part:
            out += f".{part}" if out else part
    return out


def validation_error(errors: list[dict[str, Any]]) -> APIError:
    """pydantic errors as one 400: the first failing field, with every reason given for it."""
    if not errors:
        return bad("invalid request body")
    first = _param(tuple(errors[0].get("loc", ())))
    reasons = list(dict.fromkeys(e.get("msg", "invalid") for e in errors if _param(tuple(e.get("loc", ()))) == first))
    where = first or "body"
    return bad(f"{where}: {' or '.join(reasons)}", param=first or None)


# --- what the server was started with ------------------------------------------------------------------------
@dataclass
class ServeDefaults:
    """Server-wide defaults a request may override. temperature/top_p None: the model's generation_config, else 1.0."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    template_kwargs: dict[str, Any] = field(default_factory=dict)
    system_mode: str = "error"  # "merge": put system text into the first user turn when the template rejects it


@dataclass
class ChatCall:
    """A validated request: template-ready messages plus everything generation needs except the prompt budget."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    tools_enabled: bool
    template_kwargs: dict[str, Any]
    max_tokens: int | None
    temperature: float
    top_p: float
    seed: int | None
    stop: tuple[str, ...]
    stream: bool
    include_usage: bool
    tool_choice: Any = None  # "required" or {"type": "function", ...} force a call (see turnspec.constrain)
    response_format: Any = None
    parallel_tool_calls: bool = False
    logprobs: int | None = None  # None: no logprobs; k: each token's and the k most likely alternatives'
    token_ids: bool = False


def parse_request(data: Any, *, defaults: ServeDefaults, generation_config: dict[str, Any] | None = None,
                  developer_role: bool = False) -> ChatCall:
    """Validate a decoded JSON body. `developer_role`: the template knows 'developer' (else it becomes 'system')."""
    if not isinstance(data, dict):
        raise bad("the request body must be a JSON object", code="invalid_json")
    try:
        req = ChatCompletionRequest.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc.errors(include_url=False)) from None
    if not req.messages:
        raise bad("messages: must contain at least one message", param="messages", code="empty_array")
    if req.n not in (None, 1):
        raise bad("n: only n=1 is supported", param="n", code="unsupported_value")
    if req.top_logprobs is not None and not 0 <= req.top_logprobs <= 20:
        raise bad("top_logprobs: must be between 0 and 20", param="top_logprobs")
    if req.top_logprobs and not req.logprobs:
        raise bad("top_logprobs: needs logprobs: true", param="top_logprobs")
    tools_enabled = _tool_choice(req.tool_choice, bool(req.tools))
    tools = None
    if req.tools:
        from ..constrain import ConstraintError
        from ..constrain.plan import check_tool_name

        names: list[str] = []
        for i, tool in enumerate(req.tools):
            if tool.type != "function":
                raise bad(f"tools[{i}].type: {tool.type!r} is not supported, only 'function'", param=f"tools[{i}].type")
            try:
                names.append(check_tool_name(tool.function.name, f"tools[{i}].function.name", names))
            except ConstraintError as exc:
                raise bad(str(exc), param=exc.param) from None
        tools = [t.model_dump(exclude_none=True) for t in req.tools] if tools_enabled else None

    messages = [_message(m, i, developer_role) for i, m in enumerate(req.messages)]

    kwargs = dict(defaults.template_kwargs)
    for key, value in (req.chat_template_kwargs or {}).items():
        if key in RESERVED_KWARGS:
            raise bad(f"chat_template_kwargs.{key}: reserved (set by the server itself)",
                      param=f"chat_template_kwargs.{key}")
        kwargs[key] = value
    if req.reasoning_effort is not None:
        kwargs["reasoning_effort"] = req.reasoning_effort

    stop, temperature, top_p, include_usage = sampling(req, defaults, generation_config)
    max_tokens = req.max_completion_tokens or req.max_tokens or defaults.max_tokens
    return ChatCall(messages, tools, tools_enabled, kwargs, max_tokens, temperature, top_p, req.seed, stop,
                    req.stream, include_usage, req.tool_choice if tools_enabled else None, req.response_format,
                    bool(req.parallel_tool_calls), (req.top_logprobs or 0) if req.logprobs else None,
                    req.return_token_ids)


def sampling(req: GenerationRequest, defaults: ServeDefaults | None,
             generation_config: dict[str, Any] | None) -> tuple[tuple[str, ...], float, float, bool]:
    """Stop strings, temperature and top_p (the request's, else the server's, else generation_config, else 1.0)
    and whether the stream ends with usage."""
    stop: tuple[str, ...] = (req.stop,) if isinstance(req.stop, str) else tuple(req.stop or ())
    if any(not s for s in stop):
        raise bad("stop: stop strings must not be empty", param="stop")
    gen = generation_config or {}
    temperature = _first_number(req.temperature, defaults and defaults.temperature, gen.get("temperature"), 1.0)
    top_p = _first_number(req.top_p, defaults and defaults.top_p, gen.get("top_p"), 1.0)
    include_usage = bool(req.stream and req.stream_options and req.stream_options.include_usage)
    return stop, temperature, top_p, include_usage


def _first_number(*values: Any) -> float:
    return next(float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool))


def _tool_choice(choice: Any, has_tools: bool) -> bool:
    """True when tools go to the template; 'required' and a named function force a call (checked in `plan`)."""
    if choice is None or choice in ("auto", "required") or isinstance(choice, dict):
        if choice is not None and choice != "auto" and not has_tools:
            raise bad("tool_choice: forcing a tool call needs 'tools'", param="tool_choice")
        return True
    if choice == "none":
        return False
    raise bad(f"tool_choice: {choice!r} is not 'auto', 'none', 'required' or "
              "{'type': 'function', 'function': {'name': ...}}", param="tool_choice", code="invalid_value")


def _message(m: MessageIn, i: int, developer_role: bool) -> dict[str, Any]:
    """One OpenAI message as the dict chat templates expect (text content, arguments as objects)."""
    where = f"messages[{i}]"
    if m.role not in ROLES:
        raise bad(f"{where}.role: unknown role {m.role!r}; expected one of {', '.join(ROLES)}", param=f"{where}.role")
    out = m.model_dump(exclude_none=True, exclude={"content", "tool_calls"})
    out["role"] = "system" if m.role == "developer" and not developer_role else m.role
    content = _text(m.content, where)
    if content is None and m.role != "assistant":
        raise bad(f"{where}.content: a {m.role} message needs content", param=f"{where}.content")
    # An assistant message with only tool calls comes back with `content: null` (what OpenAI returns and its client
    # resends). Most templates concatenate content as a string, so null (or no key) raises in them; "" renders the
    # same as null in every template that accepts both.
    out["content"] = content or ""
    if m.tool_calls:
        if m.role != "assistant":
            raise bad(f"{where}.tool_calls: only assistant messages carry tool calls", param=f"{where}.tool_calls")
        out["tool_calls"] = [_tool_call_in(c, f"{where}.tool_calls[{j}]") for j, c in enumerate(m.tool_calls)]
    if m.role == "tool" and not m.tool_call_id:
        raise bad(f"{where}.tool_call_id: a tool message needs the id of the call it answers",
                  param=f"{where}.tool_call_id")
    return out


def _text(content: Any, where: str) -> str | None:
    """Text content; a list of text parts is joined with newlines (as vLLM does). Non-text parts are refused."""
    if content is None or isinstance(content, str):
        return content
    texts = []
    for j, part in enumerate(content):
        if part.type != "text" or part.text is None:
            raise bad(f"{where}.content[{j}]: content part type {part.type!r} is not supported (text only)",
                      param=f"{where}.content[{j}].type")
        texts.append(part.text)
    return "\n".join(texts)


def _tool_call_in(call: ToolCallIn, where: str) -> dict[str, Any]:
    """OpenAI sends arguments as a JSON string; templates (as in transformers) expect an object."""
    args = call.function.arguments
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError as exc:
            raise bad(f"{where}.function.arguments: not valid JSON ({exc.msg})", param=f"{where}.function.arguments") from None
        if not isinstance(args, dict):
            raise bad(f"{where}.function.arguments: must be a JSON object", param=f"{where}.function.arguments")
    out: dict[str, Any] = {"type": "function", "function": {"name": call.function.name, "arguments": args}}
    if call.id:
        out["id"] = call.id
    return out


# --- prompt ------------------------------------------------------------------------------------------------
def merge_system(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For templates that reject a system role (`--system-mode merge`): system text goes into the first user turn."""
    system = "\n\n".join(m.get("content") or "" for m in messages if m["role"] in ("system", "developer"))
    rest = [dict(m) for m in messages if m["role"] not in ("system", "developer")]
    if system:
        for m in rest:
            if m["role"] == "user":
                m["content"] = f"{system}\n\n{m.get('content') or ''}"
                break
    return rest


def encode_prompt(spec: ModelSpec, call: ChatCall, context_length: int,
                  backend: str | None = "gbnf", max_prompt_chars: int | None = None,
                  encode: Callable[[Any, ChatCall], Any] | None = None) -> tuple[Any, GenerationOptions]:
    """Render + tokenize the request; the generation budget is what the context still holds; a forced call or
    JSON answer is planned and checked against what the engine's `backend` can enforce. Errors are 400s.

    `max_prompt_chars`: more characters in the messages, tools and template variables than this is a 400 before
    rendering (see `check_prompt_chars`). `encode(spec, call)` replaces the whole render (kept sessions, see
    sessions.py)."""
    from ..constrain import ConstraintError
    from ..constrain.limits import check_tool_schemas

    check_prompt_chars(text_chars(call.messages, call.tools, call.template_kwargs), max_prompt_chars, context_length,
                       "messages")
    try:
        check_tool_schemas(call.tools)
    except ConstraintError as exc:
        raise bad(str(exc), param=exc.param) from None
    try:
        enc = encode(spec, call) if encode is not None else spec.encode(
            call.messages, add_generation_prompt=True, assistant_mask=False, tools=call.tools, **call.template_kwargs)
    except TemplateError as exc:
        what = "hit turnspec's template limit" if exc.limit else "rejected the request"
        raise bad(f"the chat template of {spec.name} {what}: {exc.template_message}", param="messages",
                  code="template_error") from None
    except TurnspecError as exc:  # RenderInputError (bad conversation shape), EncodingError
        raise bad(str(exc), param="messages") from None
    prompt = len(enc.ids)
    if context_length:
        room = context_length - prompt
        if room <= 0:
            raise bad(f"the messages take {prompt} tokens but the model's context holds {context_length}: "
                      "shorten them or restart the server with a larger --n-ctx", param="messages",
                      code="context_length_exceeded")
        max_tokens = min(call.max_tokens or room, room)
    else:
        max_tokens = call.max_tokens or FALLBACK_MAX_TOKENS
    options = GenerationOptions(max_tokens=max_tokens, temperature=call.temperature, top_p=call.top_p,
                                seed=call.seed, stop_strings=call.stop, tools=call.tools, tool_choice=call.tool_choice,
                                response_format=call.response_format, parallel_tool_calls=call.parallel_tool_calls,
                                logprobs=call.logprobs, token_ids=call.token_ids)
    return enc, plan_constraint(spec, enc.text, options, backend)


def plan_constraint(spec: ModelSpec, prompt_text: str, options: GenerationOptions, backend: str | None) -> GenerationOptions:
    """The options with the turn's constraint (forced call, JSON answer); a 400 naming what cannot be enforced."""
    from ..chat import constrained
    from ..constrain import ConstraintError

    try:
        return constrained(spec, backend, prompt_text, options)
    except ConstraintError as exc:
        raise bad(str(exc), param=exc.param, code="unsupported_value") from None
