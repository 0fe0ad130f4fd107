"""Python functions -> the JSON tool schemas that chat templates render.

Chat templates receive `tools=[...]` as JSON schemas; users like to pass plain functions. This module turns a
function with type hints and a Google-style docstring into exactly the schema transformers' `get_json_schema`
produces, so tool prompts render byte-identically without importing transformers.

Ported from transformers (`transformers/utils/chat_template_utils.py`, Copyright 2024 The HuggingFace Team,
Apache License 2.0). Differences, all in error paths: the errors are turnspec errors with one-line messages, and
hints that `typing.get_type_hints` cannot resolve raise `TypeHintError` instead of a bare NameError/TypeError.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
import types
from enum import Enum
from typing import Any, Callable, Literal, Union, get_args, get_origin, get_type_hints

from .errors import TurnspecError

__all__ = ["DocstringError", "ToolSchemaError", "TypeHintError", "get_json_schema", "tool_to_schema"]


class ToolSchemaError(TurnspecError, ValueError):
    """A tool could not be turned into a JSON schema (a ValueError too, as transformers raises for bad tools)."""


class TypeHintError(ToolSchemaError):
    """A parameter has no type hint, or one with no JSON equivalent (transformers' TypeHintParsingException)."""


class DocstringError(ToolSchemaError):
    """The docstring is missing or does not describe every parameter (transformers' DocstringParsingException)."""


# The regexes are transformers' own: any change would change which descriptions a model sees.
_DESCRIPTION_RE = re.compile(r"^(.*?)[\n\s]*(Args:|Returns:|Raises:|\Z)", re.DOTALL)
_ARGS_RE = re.compile(r"\n\s*Args:\n(.*?)[\n\s]*(Returns:|Raises:|\Z)", re.DOTALL)
_ARGS_SPLIT_RE = re.compile(
    r"""
(?:^|\n)  # the start of the args block, or a newline
([ \t]*)(\w+):\s*  # the indentation and the argument name
(.*?)\s*  # the description, possibly over several lines, without trailing space
(?=\n(?!\1[ \t])[ \t]*\w+:|\Z)  # up to the next "name:" that is not indented deeper, or the end
""",
    re.DOTALL | re.VERBOSE,
)
_RETURNS_RE = re.compile(r"\n\s*Returns:\n\s*(.*?)[\n\s]*(Raises:|\Z)", re.DOTALL)
_CHOICES_RE = re.compile(r"\(choices:\s*(.*?)\)\s*$", re.IGNORECASE)

# Python types that can be written as a JSON value (so can appear in an "enum"), and their JSON type names.
_JSON_SCALAR_TYPES = {int: "integer", float: "number", str: "string", bool: "boolean", type(None): "null"}
_BASIC_TYPES: dict[Any, dict[str, str]] = {
    int: {"type": "integer"},
    float: {"type": "number"},
    str: {"type": "string"},
    bool: {"type": "boolean"},
    type(None): {"type": "null"},
    list: {"type": "array"},
    tuple: {"type": "array"},
    dict: {"type": "object"},
    Any: {},
}


def tool_to_schema(tool: Any) -> dict:
    """A JSON schema dict passes through unchanged; a function or method is converted with `get_json_schema`."""
    if isinstance(tool, dict):
        return tool
    if inspect.isfunction(tool) or inspect.ismethod(tool):
        return get_json_schema(tool)
    raise ToolSchemaError(
        "Tools should either be a JSON schema, or a callable function with type hints "
        "and a docstring suitable for auto-conversion to a schema."
    )


def get_json_schema(func: Callable) -> dict:
    """The `{"type": "function", "function": {...}}` schema transformers builds from `func`'s hints and docstring.

    Every parameter needs a type hint and an `Args:` entry; a trailing `(choices: [...])` in an entry becomes an
    "enum"; a `Returns:` block describes the return hint. `self`/`cls` of methods are skipped.
    """
    doc = inspect.getdoc(func)
    func_name = getattr(func, "__name__", "operation")
    if not doc:
        raise DocstringError(f"Cannot generate JSON schema for {func_name} because it has no docstring!")
    main_doc, param_descriptions, return_doc = parse_google_docstring(doc.strip())

    parameters = _parameters_schema(func)
    return_schema = parameters["properties"].pop("return", None)
    if return_schema is not None and return_doc is not None:
        return_schema["description"] = return_doc
    for arg, schema in parameters["properties"].items():
        if arg not in param_descriptions:
            raise DocstringError(
                f"Cannot generate JSON schema for {func_name} because the docstring has no description for the "
                f"argument '{arg}'"
            )
        desc = param_descriptions[arg]
        choices = _CHOICES_RE.search(desc)
        if choices:
            schema["enum"] = [c.strip() if isinstance(c, str) else c for c in json.loads(choices.group(1))]
            desc = desc[: choices.start()].strip()
        schema["description"] = desc

    output = {"name": func_name, "description": main_doc, "parameters": parameters}
    if return_schema is not None:
        output["return"] = return_schema
    return {"type": "function", "function": output}


def parse_google_docstring(docstring: str) -> tuple[str | None, dict[str, str], str | None]:
    """(description, {arg: description}, returns description) of a Google-style docstring, as transformers reads it."""
    description_match = _DESCRIPTION_RE.search(docstring)
    args_match = _ARGS_RE.search(docstring)
    returns_match = _RETURNS_RE.search(docstring)

    description = description_match.group(1).strip() if description_match else None
    returns = returns_match.group(1).strip() if returns_match else None
    args: dict[str, str] = {}
    if args_match:
        block = "\n".join(line for line in args_match.group(1).split("\n") if line.strip())
        for _indent, name, text in _ARGS_SPLIT_RE.findall(block):
            args[name] = re.sub(r"\s*\n+\s*", " ", text.strip())
    return description, args, returns


def _parameters_schema(func: Callable) -> dict:
    """The "parameters" object, plus a "return" property when the return hint is convertible."""
    func_name = getattr(func, "__name__", "operation")
    try:
        type_hints = get_type_hints(func)
    except (NameError, TypeError) as exc:
        raise TypeHintError(f"Cannot resolve the type hints of {func_name}: {exc}") from None
    signature = inspect.signature(func)
    # A first parameter named self/cls without a hint is the implicit receiver of a method.
    first = next(iter(signature.parameters.values()), None)
    receiver = first.name if first and first.name in {"self", "cls"} and first.annotation is first.empty else None

    required = []
    for name, param in signature.parameters.items():
        if name == receiver:
            continue
        if param.annotation is param.empty:
            raise TypeHintError(f"Argument {name} is missing a type hint in function {func_name}")
        if param.default is param.empty:
            required.append(name)

    properties = {}
    for name, hint in type_hints.items():
        if name == receiver:
            continue
        if name == "return":
            # The model never writes the return value, so an unconvertible return hint is left out, not fatal.
            try:
                properties[name] = _parse_type_hint(hint)
            except TypeHintError:
                pass
        elif name in signature.parameters:
            # A bound method's signature leaves out its receiver; get_type_hints still lists a typed `self`
            # (transformers >= 5.25 leaves it out too).
            properties[name] = _parse_type_hint(hint)

    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


def _parse_type_hint(hint: Any) -> dict:
    """The JSON schema of one type hint (a fresh dict: callers add descriptions to it)."""
    origin = get_origin(hint)
    args = get_args(hint)

    if origin is None and isinstance(hint, type) and issubclass(hint, Enum):
        # The model has to generate the member values, so those make the "enum".
        values = [member.value for member in hint]
        if not values:
            raise TypeHintError(f"The Enum {hint.__name__} has no members, so no value could ever match it.")
        if any(type(value) not in _JSON_SCALAR_TYPES for value in values):
            raise TypeHintError(
                f"The Enum {hint.__name__} has member values that cannot be written as JSON scalars ({values}); "
                "Enum member values must be int, float, str, bool or None to be converted to a JSON schema."
            )
        return _enum_schema(values)

    if origin is None:
        # A custom class could expect any JSON: refuse rather than guess.
        basic = _basic_type_schema(hint)
        if basic is None:
            raise TypeHintError(
                f"Couldn't convert the type hint {hint!r} to a JSON schema, likely because it is a custom class "
                "or object. Supported type hints are basic types like int, float, str and bool, Enum classes, "
                "typing.Literal, and list, tuple, dict and Union types containing those. If you need a more complex "
                "schema than that, you can write the JSON schema for your tool by hand and pass that instead "
                "of the function."
            )
        return basic

    if origin is Union or origin is types.UnionType:
        subtypes = [_parse_type_hint(t) for t in args if t is not type(None)]
        if len(subtypes) == 1:
            schema = subtypes[0]
        elif all(s.keys() == {"type"} and isinstance(s["type"], str) for s in subtypes):
            # Plain types merge into a "type" list; anything richer (items, enum...) needs anyOf to keep it.
            names = sorted({s["type"] for s in subtypes})
            schema = {"type": names[0] if len(names) == 1 else names}
        else:
            schema = {"anyOf": subtypes}
        if type(None) in args:
            schema["nullable"] = True
        return schema

    if origin is Literal and args:
        if any(type(arg) not in _JSON_SCALAR_TYPES for arg in args):
            raise TypeHintError("Only the valid python literals can be listed in typing.Literal.")
        return _enum_schema(list(args))

    if origin is list:
        return {"type": "array", "items": _parse_type_hint(args[0])} if args else {"type": "array"}

    if origin is tuple:
        if not args:
            return {"type": "array"}
        if len(args) == 1:
            raise TypeHintError(
                f"The type hint {str(hint).replace('typing.', '')} is a Tuple with a single element, which "
                "we do not automatically convert to JSON schema as it is rarely necessary. If this input can contain "
                "more than one element, we recommend using a list[] type instead, or if it really is a single "
                "element, remove the tuple[] wrapper and just pass the element directly."
            )
        if ... in args:
            raise TypeHintError(
                "Conversion of '...' is not supported in Tuple type hints. "
                "Use list[] types for variable-length inputs instead."
            )
        return {"type": "array", "prefixItems": [_parse_type_hint(t) for t in args]}

    if origin is dict:
        # JSON objects only have string keys; the value type goes in additionalProperties.
        schema = {"type": "object"}
        if len(args) == 2:
            schema["additionalProperties"] = _parse_type_hint(args[1])
        return schema

    raise TypeHintError(f"Couldn't parse this type hint, likely due to a custom class or object: {hint!r}")


def _basic_type_schema(hint: Any) -> dict | None:
    """int/str/list/... and, as transformers does, PIL images -> "image" and torch tensors -> "audio".

    A hint can only be a PIL or torch class if its module is already imported, so sys.modules is checked instead
    of importing them.
    """
    try:
        basic = _BASIC_TYPES.get(hint)
    except TypeError:  # an unhashable "hint" such as [int]
        return None
    if basic is not None:
        return dict(basic)
    pil_image = sys.modules.get("PIL.Image")
    if pil_image is not None and hint is getattr(pil_image, "Image", None):
        return {"type": "image"}
    torch = sys.modules.get("torch")
    if torch is not None and hint is getattr(torch, "Tensor", None):
        return {"type": "audio"}
    return None


def _enum_schema(values: list) -> dict:
    """An "enum" schema whose "type" names each JSON type of the values once, in order of first appearance."""
    value_types = list(dict.fromkeys(_JSON_SCALAR_TYPES[type(value)] for value in values))
    return {"type": value_types[0] if len(value_types) == 1 else value_types, "enum": values}
