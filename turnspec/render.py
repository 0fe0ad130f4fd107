"""Render a conversation exactly as transformers' `apply_chat_template(..., tokenize=False)` does.

The input handling follows transformers 5.x step by step (dropping None-valued keys, aliasing reasoning fields,
rebuilding inputs as plain data, the continue_final_message tag trick and its error cases), because templates are
sensitive to all of it: a `content: None` renders as the string "None" in many templates if left in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Callable, Sequence

import jinja2.exceptions

from .errors import TemplateError, TurnspecError
from .template import RenderLimits, TemplateLimitError, run_template

# Names a message's reasoning is passed under. The first is the standard one that chat templates read.
REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")
_CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "


class RenderInputError(TurnspecError, ValueError):
    """The caller's arguments can't be rendered (empty conversation, conflicting flags...): same cases as transformers."""


@dataclasses.dataclass
class Rendered:
    text: str
    generation_spans: list[tuple[int, int]]


_SCALARS = frozenset({str, int, float, bool, type(None)})


def plain_data(value: Any) -> Any:
    """Rebuild `value` from plain JSON types, so the sandbox never sees rich objects (transformers does the same).

    Exact-type fast paths first: chats are dicts of strings, and this runs on every render.
    """
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is dict:
        return {k if type(k) in _SCALARS else plain_data(k): v if type(v) in _SCALARS else plain_data(v)
                for k, v in value.items()}
    if kind is list:
        return [v if type(v) in _SCALARS else plain_data(v) for v in value]
    return _plain_slow(value)


def _plain_slow(value: Any) -> Any:
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, Mapping):
        return {plain_data(k): plain_data(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_data(v) for v in value]
    if isinstance(value, tuple):
        return tuple(plain_data(v) for v in value)
    if hasattr(value, "item") and type(value).__module__ == "numpy":  # numpy scalars, without importing numpy
        return plain_data(value.item())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain_data(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if callable(getattr(value, "model_dump", None)):
        return plain_data(value.model_dump())
    return f"<{type(value).__name__}>"


def _plain_message(message: Any) -> Any:
    """A message as plain data without its None fields (transformers drops them too); one pass for the common dict."""
    if type(message) is dict:
        return {k if type(k) is str else plain_data(k): v if type(v) in _SCALARS else plain_data(v)
                for k, v in message.items() if v is not None}
    if isinstance(message, Mapping):
        return plain_data({k: v for k, v in message.items() if v is not None})
    return plain_data(message)


def _alias_reasoning_fields(chat: list[dict]) -> list[dict]:
    """Fill `reasoning_content` from older names, and `thinking` for gpt-oss templates, which read that."""
    out = []
    for message in chat:
        reasoning = None
        for key in REASONING_FIELDS:
            if key in message:  # None values were dropped before
                reasoning = message[key]
                break
        if reasoning is not None:
            message = {"thinking": reasoning, **message, "reasoning_content": reasoning}
        out.append(message)
    return out


def tool_schemas(tools: Sequence[dict | Callable] | None) -> list[dict] | None:
    """JSON schemas for `tools`: dicts pass through, Python functions are converted from their hints and docstrings."""
    if tools is None:
        return None
    if all(isinstance(t, dict) for t in tools):
        return list(tools)
    from .tool_schema import tool_to_schema

    return [tool_to_schema(t) for t in tools]


def render_conversation(
    template: str,
    messages: Sequence[Mapping[str, Any]] | Any,
    *,
    special_tokens: Mapping[str, str] | None = None,
    tools: Sequence[dict | Callable] | None = None,
    documents: Sequence[Mapping[str, Any]] | None = None,
    add_generation_prompt: bool = False,
    continue_final_message: bool | str = False,
    track_generation: bool = False,
    model_name: str | None = None,
    limits: RenderLimits | None = None,
    **kwargs: Any,
) -> Rendered:
    """Render one conversation; template failures become `TemplateError` naming the model and the template's message."""
    if hasattr(messages, "messages"):
        messages = messages.messages
    if isinstance(messages, (list, tuple)) and len(messages) == 0:
        raise RenderInputError("Cannot apply chat template to an empty conversation. Provide at least one message.")
    chat = [_plain_message(msg) for msg in messages]
    if continue_final_message and add_generation_prompt:
        raise RenderInputError(
            "continue_final_message and add_generation_prompt are not compatible. Use continue_final_message when you "
            "want the model to continue the final message, and add_generation_prompt when you want to add a header "
            "that will prompt it to start a new assistant message instead."
        )
    variables = {**(special_tokens or {}), **kwargs}
    schemas = tool_schemas(tools)
    if documents is not None:
        for document in documents:
            if not isinstance(document, Mapping):
                raise RenderInputError("Documents should be a list of dicts with 'title' and 'text' keys!")
    schemas, documents, variables = plain_data(schemas), plain_data(documents), plain_data(variables)
    for message in chat:
        if not isinstance(message, dict):
            raise RenderInputError(f"Chat messages should be dicts, dataclasses or pydantic models, but got {message!r}.")
    chat = _alias_reasoning_fields(chat)

    final_message: Any = None
    if continue_final_message:
        field = continue_final_message if isinstance(continue_final_message, str) else "content"
        final_message = chat[-1].get(field)
        if final_message is None:
            raise RenderInputError(f'continue_final_message is set but the final message has no "{field}" to continue!')
        fields = [field]
        if field in REASONING_FIELDS:
            fields = [f for f in REASONING_FIELDS if chat[-1].get(f) == final_message]
        if not any(f in template for f in fields):
            raise RenderInputError(
                f'continue_final_message is set to "{field}" but this is not an accepted field in the chat_template'
            )
        if isinstance(final_message, (list, tuple)):
            for block in reversed(final_message):
                if "text" in block:
                    final_message = block["text"]
                    block["text"] = block["text"] + _CONTINUE_TAG
                    break
            else:
                raise RenderInputError(
                    "continue_final_message is set but we could not find any text to continue in the final message!"
                )
        else:
            for f in fields:
                chat[-1][f] = chat[-1][f] + _CONTINUE_TAG

    variables.update(messages=chat, tools=schemas, documents=documents, add_generation_prompt=add_generation_prompt)
    try:
        text, spans = run_template(template, variables, track_generation=track_generation, limits=limits)
    except TemplateLimitError as exc:
        raise TemplateError(_template_message(model_name, str(exc)), model=model_name, template_message=str(exc),
                            limit=True) from None
    except jinja2.exceptions.TemplateError as exc:
        raise TemplateError(_template_message(model_name, str(exc)), model=model_name, template_message=str(exc)) from None
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, RecursionError, ArithmeticError) as exc:
        msg = f"{type(exc).__name__}: {exc}"
        raise TemplateError(_template_message(model_name, msg), model=model_name, template_message=msg) from None

    if continue_final_message:
        tag = _CONTINUE_TAG.strip()
        if final_message.strip() not in text or tag not in text:
            raise RenderInputError(
                "continue_final_message is set but the final message does not appear in the chat after applying the "
                "chat template! This can happen if the chat template deletes portions of the final message."
            )
        loc = text.rindex(tag)
        text = text[:loc] if text[loc : loc + len(_CONTINUE_TAG)] == _CONTINUE_TAG else text[:loc].rstrip()
    return Rendered(text, spans)


def check_template_syntax(source: str, model_name: str | None = None) -> None:
    """Raise the same one-line TemplateError a render would for a template that does not compile; for callers that
    read a template (its variables, its tags) before rendering it."""
    from .template import compile_template

    try:
        compile_template(source)
    except jinja2.exceptions.TemplateError as exc:
        line = getattr(exc, "lineno", None)
        msg = f"{exc} (line {line})" if line else str(exc)
        raise TemplateError(_template_message(model_name, msg), model=model_name, template_message=msg) from None
    except RecursionError:  # a template nested deeper than the compiler goes
        msg = "RecursionError: the template is nested too deeply to compile"
        raise TemplateError(_template_message(model_name, msg), model=model_name, template_message=msg) from None


def _template_message(model: str | None, message: str) -> str:
    where = f"the chat template of {model}" if model else "the chat template"
    return f"{where} raised: {message}"


