"""JSON schemas as a constraint takes them: tool parameters normalized, and features a backend cannot enforce
named before any token is generated (a request is refused, never answered unconstrained).

llama.cpp's converter (llama-cpp-python's port of json-schema-to-grammar) silently ignores what it does not
know, so for the llama.cpp engine the keywords it honors are listed here and anything else is refused.
llguidance reports what it cannot compile itself ("Unimplemented keys: [...]"); its message is passed on.
"""

from __future__ import annotations

from typing import Any

from ..errors import TurnspecError


class ConstraintError(TurnspecError):
    """A request asks for structure that cannot be enforced (or makes no sense): an HTTP 400, one line."""

    def __init__(self, message: str, *, param: str | None = None):
        super().__init__(message)
        self.param = param


# What llama-cpp-python's SchemaConverter enforces (see its `visit`): anything else in a schema would be ignored.
LLAMACPP_KEYWORDS = frozenset({
    "type", "properties", "required", "additionalProperties", "items", "prefixItems", "minItems", "maxItems",
    "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "$defs", "definitions", "pattern", "format", "minLength",
    "maxLength",
})
LLAMACPP_FORMATS = frozenset({"date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4", "uuid5"})
# Words that describe and do not constrain: allowed everywhere.
ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated",
                         "readOnly", "writeOnly", "strict"})
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")


def unsupported_keyword(schema: Any, *, keywords: frozenset[str] = LLAMACPP_KEYWORDS,
                        formats: frozenset[str] = LLAMACPP_FORMATS, where: str = "") -> str | None:
    """The first schema feature outside `keywords` (or a `format` outside `formats`), as 'path: keyword'."""
    if isinstance(schema, bool) or schema is None:
        return None
    if not isinstance(schema, dict):
        return f"{where or 'schema'}: a schema must be an object, got {type(schema).__name__}"
    for key, value in schema.items():
        if key in ANNOTATIONS:
            continue
        if key not in keywords:
            return f"{where or 'schema'}: '{key}'"
        if key == "format" and value not in formats:
            return f"{where or 'schema'}: 'format: {value}'"
        if key == "pattern" and ("minLength" in schema or "maxLength" in schema):
            return f"{where or 'schema'}: 'pattern' together with 'minLength'/'maxLength'"
    for key in _SUBSCHEMA_MAPS:
        for name, sub in (schema.get(key) or {}).items():
            found = unsupported_keyword(sub, keywords=keywords, formats=formats, where=f"{where}.{key}.{name}".lstrip("."))
            if found:
                return found
    for key in _SUBSCHEMA_LISTS:
        for i, sub in enumerate(schema.get(key) or ()):
            found = unsupported_keyword(sub, keywords=keywords, formats=formats, where=f"{where}.{key}[{i}]".lstrip("."))
            if found:
                return found
    for key in ("items", "additionalProperties"):
        sub = schema.get(key)
        if isinstance(sub, dict):
            found = unsupported_keyword(sub, keywords=keywords, formats=formats, where=f"{where}.{key}".lstrip("."))
            if found:
                return found
    return None


def object_schema(parameters: Any) -> dict[str, Any]:
    """A tool's parameters as an object schema (`None` or `{}`: an object with no properties)."""
    if not parameters:
        return {"type": "object", "properties": {}}
    if not isinstance(parameters, dict):
        raise ConstraintError("tools: a function's parameters must be a JSON schema object", param="tools")
    if "type" not in parameters:
        return {"type": "object", **parameters}
    if parameters["type"] != "object":
        raise ConstraintError(f"tools: a function's parameters must have type 'object', not {parameters['type']!r}",
                              param="tools")
    return dict(parameters)


def response_schema(response_format: Any) -> dict[str, Any] | None:
    """The JSON schema a `response_format` asks for: None for text, `{"type": "object"}` for json_object."""
    if response_format is None:
        return None
    if not isinstance(response_format, dict):
        raise ConstraintError("response_format: must be an object like {'type': 'json_object'}",
                              param="response_format")
    kind = response_format.get("type", "text")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict):
            raise ConstraintError("response_format.json_schema: must be an object with a 'schema' object",
                                  param="response_format.json_schema")
        schema = spec.get("schema")
        return dict(schema) if schema else {"type": "object"}
    raise ConstraintError(f"response_format.type: {kind!r} is not one of text, json_object, json_schema",
                          param="response_format.type")


def closed(schema: Any) -> Any:
    """`schema` with every object that lists `properties` closed to others unless it says otherwise.

    llama.cpp's converter already writes only the listed properties; llguidance follows JSON Schema, where
    unlisted keys are allowed. Closing them makes both engines agree, and keeps a model from inventing keys.
    """
    if isinstance(schema, list):
        return [closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: (closed(v) if k in ("items", "not", "additionalProperties", *_SUBSCHEMA_LISTS) else v)
           for k, v in schema.items()}
    for key in _SUBSCHEMA_MAPS:
        if isinstance(schema.get(key), dict):
            out[key] = {name: closed(sub) for name, sub in schema[key].items()}
    if "properties" in schema and "additionalProperties" not in schema and "patternProperties" not in schema:
        out["additionalProperties"] = False
    return out
