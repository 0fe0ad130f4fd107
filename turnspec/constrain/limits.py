"""What a JSON schema may ask of a grammar, checked before any grammar is built (a request is refused, never a crash).

A schema is a small text that can ask for a huge grammar: llama-cpp-python's converter writes `maxLength: n` as n
nested optional groups, so `maxLength: 50000` overflows the C stack of llama.cpp's grammar parser (the server
dies), `maxLength: 10**9` builds a ~24 GB string, and bounds above ~1000 fail to parse (llama.cpp refuses a
repetition of more than 2000 rules). llguidance takes bounds of any size, but both backends recurse over nesting
and slow down with the number of alternatives. Measured with bench/bench_schema_limits.py (each case in a
subprocess): llama.cpp parses `maxLength`/`maxItems`/pattern `{0,n}` up to n = 1000 and fails from 1100, crashes at
50000; 500 optional properties convert, 1000 hit Python's recursion limit in the converter; llguidance handles
bounds of 10**9 but fails on objects nested 100 deep and needs a minute for 10000 properties.

`prepare` (both backends, in `plan`): nesting depth, size, properties, enum values and alternatives, and `$ref`s:
local ones are inlined (the schema then means the same wherever the call grammar nests it), ones that point
nowhere or outside the schema are refused, recursive ones are kept and marked. `check_bounds` (per backend, in
`check`): the repetition bounds (`minLength`, `maxLength`, `minItems`, `maxItems`, `{m,n}` in a `pattern`) and their
sum, what llama.cpp's converter needs of a pattern, and recursion, which it cannot convert.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .schema import ANNOTATIONS, ConstraintError


@dataclass(frozen=True)
class SchemaLimits:
    """Limits one request's schemas must keep (None: no limit on that backend)."""

    depth: int = 64  # nesting of JSON values inside a schema (a property's schema is 2 levels below its object)
    nodes: int = 5000  # JSON values in all the request's schemas, `$ref`s inlined
    properties: int = 256  # properties of one object
    enum: int = 1000  # values of one enum
    alternatives: int = 256  # entries of one anyOf / oneOf / allOf / prefixItems
    bound: int | None = None  # a repetition bound (minLength, maxLength, minItems, maxItems, {m,n} in a pattern)
    bound_total: int | None = None  # the sum of those bounds across the request (the grammar grows with it)
    anchored_patterns: bool = False  # patterns must be written ^...$ (llama.cpp's converter matches whole strings)
    recursion: bool = True  # recursive $refs


STRUCTURE = SchemaLimits()
# llama.cpp fails above ~1000 (see the module doc): half of it, and a total that keeps the grammar under ~200 KB
GBNF = SchemaLimits(bound=500, bound_total=20000, anchored_patterns=True, recursion=False)
LLGUIDANCE = SchemaLimits()

BOUND_KEYWORDS = ("minLength", "maxLength", "minItems", "maxItems")
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SCHEMA_ONE = ("items", "additionalProperties", "additionalItems", "not", "if", "then", "else", "contains",
               "propertyNames", "unevaluatedItems", "unevaluatedProperties")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_QUANTIFIER = re.compile(r"(?<!\\)\{(\d*)(?:,(\d*))?\}")


def short(path: str, keep: int = 100) -> str:
    """A schema path for a one-line message: a very deep one loses its middle."""
    return path if len(path) <= keep else f"{path[:keep // 2]}…{path[-keep // 2:]}"


@dataclass
class PreparedSchema:
    """A schema with its local `$ref`s inlined (or kept, when one is recursive) and what the walk found."""

    schema: Any
    recursive: str | None = None  # the path of a recursive $ref
    bounds: list[tuple[str, str, int]] = field(default_factory=list)  # (path, keyword, value)
    patterns: list[tuple[str, str]] = field(default_factory=list)  # (path, pattern)


class _Walk:
    def __init__(self, root: Any, where: str, param: str | None, limits: SchemaLimits, budget: list[int]):
        self.root, self.where, self.param, self.limits, self.budget = root, where, param, limits, budget
        self.out = PreparedSchema(root)

    def fail(self, path: str, message: str) -> ConstraintError:
        return ConstraintError(f"{self.where}{'.' + short(path) if path else ''}: {message}", param=self.param)

    def count(self, path: str) -> None:
        self.budget[0] += 1
        if self.budget[0] > self.limits.nodes:
            raise self.fail(path, f"the schemas of this request hold more than {self.limits.nodes} values (with "
                                  "$refs expanded); split or simplify them")

    def data(self, value: Any, path: str, depth: int) -> Any:
        """A value that is not a schema (an enum value, a default...): only its size is checked."""
        self.count(path)
        if depth > self.limits.depth:
            raise self.fail(path, f"nested more than {self.limits.depth} levels deep; flatten the schema")
        if isinstance(value, dict):
            for key, sub in value.items():
                self.data(sub, path, depth + 1)
        elif isinstance(value, list):
            for sub in value:
                self.data(sub, path, depth + 1)
        return value

    def schema(self, node: Any, path: str, depth: int, refs: dict[str, tuple[str, int]], steps: int = 0) -> Any:
        """`refs`: the $refs being expanded, with where and at how many value steps (properties, items) each was
        met; a ref met again with no step between is a cycle that never reaches a value."""
        self.count(path)
        if depth > self.limits.depth:
            raise self.fail(path, f"nested more than {self.limits.depth} levels deep; flatten the schema")
        if not isinstance(node, dict):
            if isinstance(node, list):
                return [self.schema(s, f"{path}[{i}]", depth + 1, refs, steps + 1) for i, s in enumerate(node)]
            return node
        if "$ref" in node:
            return self.ref(node, path, depth, refs, steps)
        out: dict[str, Any] = {}
        for key, value in node.items():
            here = f"{path}.{key}".lstrip(".")
            if key in _SCHEMA_MAPS and isinstance(value, dict):
                if key == "properties" and len(value) > self.limits.properties:
                    raise self.fail(here, f"{len(value)} properties; at most {self.limits.properties} per object")
                if key in ("$defs", "definitions"):
                    self.data(value, here, depth + 1)  # checked where they are used, inlined
                    continue
                out[key] = {name: self.schema(sub, f"{here}.{name}", depth + 2, refs, steps + 1)
                            for name, sub in value.items()}
            elif key in _SCHEMA_LISTS and isinstance(value, list):
                if len(value) > self.limits.alternatives:
                    raise self.fail(here, f"{len(value)} entries; at most {self.limits.alternatives}")
                step = steps + (key == "prefixItems")
                out[key] = [self.schema(sub, f"{here}[{i}]", depth + 2, refs, step) for i, sub in enumerate(value)]
            elif key in _SCHEMA_ONE:
                step = steps + (key in ("items", "additionalProperties", "additionalItems", "contains"))
                out[key] = self.schema(value, here, depth + 1, refs, step)
            else:
                if key == "enum" and isinstance(value, list) and len(value) > self.limits.enum:
                    raise self.fail(here, f"{len(value)} values; at most {self.limits.enum}")
                if key in BOUND_KEYWORDS:
                    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                        raise self.fail(here, f"'{key}' must be a non-negative integer, got {value!r}")
                    self.out.bounds.append((here, key, value))
                if key == "pattern":
                    if not isinstance(value, str):
                        raise self.fail(here, f"'pattern' must be a string, got {type(value).__name__}")
                    self.out.patterns.append((here, value))
                out[key] = self.data(value, here, depth + 1)
        return out

    def ref(self, node: dict[str, Any], path: str, depth: int, refs: dict[str, tuple[str, int]], steps: int) -> Any:
        ref = node["$ref"]
        here = f"{path}.$ref".lstrip(".")
        if not isinstance(ref, str) or not (ref == "#" or ref.startswith("#/")):
            raise self.fail(here, f"{ref!r} is not a local reference ('#' or '#/...'); only references inside the "
                                  "schema are supported")
        if ref in refs:
            first, at = refs[ref]
            if at == steps:
                raise self.fail(first, f"{ref!r} refers back to itself before any property or item: a schema "
                                       "no value can complete")
            self.out.recursive = self.out.recursive or first
            return node
        target: Any = self.root
        for part in ref[2:].split("/") if ref != "#" else ():
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(target, dict) and part in target:
                target = target[part]
            elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
                target = target[int(part)]
            else:
                raise self.fail(here, f"{ref!r} points nowhere in the schema")
        resolved = self.schema(target, path, depth, {**refs, ref: (here, steps)}, steps)
        rest = {k: v for k, v in node.items() if k != "$ref"}
        if not rest:
            return resolved
        if not isinstance(resolved, dict):
            return {"allOf": [resolved, self.schema(rest, path, depth, refs, steps)]} if resolved is not True else rest
        extra = self.schema(rest, path, depth, refs, steps)
        clash = sorted(k for k in extra if k in resolved and k not in ANNOTATIONS and extra[k] != resolved[k])
        if clash:
            raise self.fail(path, f"keywords beside '$ref' that its target also sets ({', '.join(clash)}); "
                                  "move them into the referenced schema")
        return {**resolved, **extra}


def prepare(schema: Any, where: str, param: str | None, *, limits: SchemaLimits = STRUCTURE,
            budget: list[int] | None = None) -> PreparedSchema:
    """`schema` checked against the structural limits, local `$ref`s inlined (kept when one is recursive).

    `budget` counts values across the request's schemas (one list shared by the calls for one request)."""
    walk = _Walk(schema, where, param, limits, budget if budget is not None else [0])
    inlined = walk.schema(schema, "", 0, {})
    if walk.out.recursive is None:
        walk.out.schema = inlined
    return walk.out


def check_bounds(prepared: list[tuple[str, str | None, PreparedSchema]], limits: SchemaLimits,
                 engine: str) -> None:
    """Raise ConstraintError for what `limits` (a backend's) refuses in the prepared schemas of one request."""
    total = 0
    for where, param, found in prepared:
        def fail(path: str, message: str) -> ConstraintError:
            return ConstraintError(f"{where}{'.' + path if path else ''}: {message}", param=param)

        if found.recursive and not limits.recursion:
            raise fail(short(found.recursive), f"a recursive '$ref' cannot be enforced by {engine}; unroll it to a fixed "
                                        "depth or use the transformers engine")
        bounds = list(found.bounds)
        for path, pattern in found.patterns:
            if limits.anchored_patterns and not (pattern.startswith("^") and pattern.endswith("$")):
                raise fail(path, f"'pattern' {pattern!r} must start with '^' and end with '$' for {engine} "
                                 "(it matches whole strings); write it anchored, e.g. '^.*abc.*$' for 'contains abc'")
            for m in _QUANTIFIER.finditer(pattern):
                low, high = m.group(1), m.group(2)
                values = [int(v) for v in (low, high) if v]
                if values:
                    bounds.append((path, f"pattern quantifier {m.group(0)}", max(values)))
        for path, keyword, value in bounds:
            if limits.bound is not None and value > limits.bound:
                raise fail(path, f"'{keyword}' of {value} is above {limits.bound}, the largest bound {engine} can "
                                 "enforce; lower it, or drop it (max_tokens bounds the answer too)")
            total += value
        if limits.bound_total is not None and total > limits.bound_total:
            raise fail("", f"the length and item bounds of this request add up to {total}, above "
                           f"{limits.bound_total} for {engine}; lower them")


def check_depth(value: Any, where: str, param: str | None, limit: int = STRUCTURE.depth) -> None:
    """Raise ConstraintError when `value` nests deeper than `limit` (without recursion: any depth is safe).

    Tools are rendered into the prompt before any constraint is planned, and rendering walks them recursively:
    a parameters schema nested a few hundred levels deep must be refused first, forced call or not."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            raise ConstraintError(f"{where}: nested more than {limit} levels deep; flatten the schema", param=param)
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def check_tool_schemas(tools: Any) -> None:
    """The nesting limit on the tools' parameters, before they are rendered (`prepare` checks the rest when a call
    is forced; a response_format schema is only ever walked by `prepare`)."""
    for i, tool in enumerate(tools or ()):
        fn = tool.get("function", tool) if isinstance(tool, dict) else None
        if isinstance(fn, dict):
            check_depth(fn.get("parameters"), f"tools[{i}].function.parameters", f"tools[{i}].function.parameters")
