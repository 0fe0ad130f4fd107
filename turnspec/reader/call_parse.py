"""Parse the tool calls in a complete piece of model output, for any `CallSyntax` the template analysis learned.

One parser serves every syntax: JSON call objects (Hermes, Llama 3, Mistral Nemo, Command-R7B...), a name
followed by JSON arguments between literals (Mistral v11 `[TOOL_CALLS]name[ARGS]{…}`, Kimi, DeepSeek,
functionary), a name followed by tagged parameters (Seed-OSS / Qwen3-Coder `<parameter=k>v</parameter>`,
GLM `<arg_key>`), and pythonic lists (`[get_weather(city="Paris")]`).

Literals match leniently on whitespace (a model may drop the template's newlines); values of tagged parameters
are text, typed back with the tool's JSON schema when one is known. Anything that does not parse raises
`ToolParseError`, which the reader turns into a `ToolCallError` event with the raw text.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping

from ..analysis.syntax import ANY, HOLES, ID, INDEX, KEY, NAME, CallSyntax, Pattern, literal_text, with_key
from .py_calls import NotCalls, lenient_calls

_DECODER = json.JSONDecoder()
#: Function names: identifiers with dots, dashes, slashes (MCP-style `server.tool`, `brave-search`).
_NAME_RE = r"[A-Za-z_][\w.\-/]*"


class ToolParseError(ValueError):
    """A call that does not parse; always turned into a `ToolCallError` event."""


@dataclass(frozen=True)
class ParsedCall:
    name: str
    arguments: dict[str, Any]
    raw: str
    call_id: str | None = None


# --------------------------------------------------------------------------------------------- JSON call objects
def call_from_object(obj: Any, syntax: CallSyntax | None = None, names: frozenset[str] = frozenset()
                     ) -> tuple[str, dict[str, Any], str | None]:
    """(name, arguments, id) from one decoded call object, in the template's shape or any of the usual ones.

    Accepts `{"name", "arguments"|"parameters"}`, `{"tool_name", "parameters"}`, `{"type": "function",
    "function": {...}}`, the name as the only key (`{"get_weather": {...}}`) when the syntax says so or the key is a
    declared tool, and arguments given as a JSON string.
    """
    if not isinstance(obj, dict):
        raise ToolParseError(f"a tool call must be a JSON object, got {type(obj).__name__}")
    if syntax is not None and syntax.shape == "json" and not syntax.name_is_key:
        name, args = _get_path(obj, syntax.json_name), _get_path(obj, syntax.json_args)
        if isinstance(name, str) and name:
            return name, _arguments(name, args), _call_id(obj)
    if len(obj) == 1 and ((syntax is not None and syntax.name_is_key) or next(iter(obj)) in names):
        (name, args), = obj.items()
        if isinstance(args, dict):
            return name, args, None
    fn = obj.get("function")
    if isinstance(fn, dict) and "name" in fn:
        obj = {**fn, "id": obj.get("id")}
    name = obj.get("name", obj.get("tool_name"))
    if not isinstance(name, str) or not name:
        raise ToolParseError('the tool call has no "name"')
    args = obj.get("arguments", obj.get("parameters", obj.get("args", {})))
    return name, _arguments(name, args), _call_id(obj)


def _get_path(obj: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


def _call_id(obj: dict[str, Any]) -> str | None:
    for key in ("id", "tool_call_id", "call_id"):
        value = obj.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _arguments(name: str, args: Any) -> dict[str, Any]:
    if args is None:
        return {}
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError as exc:
            raise ToolParseError(f"the arguments of {name!r} are a string that is not JSON: {exc}") from None
    if not isinstance(args, dict):
        raise ToolParseError(f"the arguments of {name!r} are not a JSON object")
    return args


# --------------------------------------------------------------------------------------------- literal patterns
def lenient(literal: str) -> str:
    """Regex for a literal where any whitespace run matches any whitespace (or none), as does the gap between two
    adjacent tags (`</arg_key><arg_value>`: models put line breaks there)."""
    parts = [re.escape(p) for p in re.split(r"\s+|(?<=>)(?=<)", literal) if p]
    return r"\s*" + r"\s*".join(parts) + r"\s*" if parts else r"\s*"


def pattern_regex(pattern: Pattern, *, optional_id: bool = True) -> str:
    """Regex for a pattern. An `ID` hole and the literal before it are optional: models rarely write call ids."""
    out: list[str] = []
    parts = list(pattern)
    i = 0
    while i < len(parts):
        part = parts[i]
        if part == NAME:
            out.append(rf"\s*(?P<name>{_NAME_RE})")
        elif part == INDEX:
            out.append(r"\d+")
        elif part == ANY:
            out.append(r"[^\n<>]*?")
        elif part == ID:
            out.append(r"(?P<id>[\w\-]+)")
        elif i + 1 < len(parts) and parts[i + 1] == ID and optional_id:
            out.append(f"(?:{lenient(part)}(?P<id>[\\w\\-]+))?")
            i += 1
        else:
            out.append(lenient(part))
        i += 1
    return "".join(out)


@lru_cache(maxsize=256)
def _compiled(source: str) -> re.Pattern[str]:
    return re.compile(source, re.S)


def _match(pattern: Pattern, text: str, pos: int) -> re.Match[str] | None:
    if not pattern:
        return _compiled(r"\s*").match(text, pos)
    return _compiled(pattern_regex(pattern)).match(text, pos)


# --------------------------------------------------------------------------------------------- typing by schema
def type_value(text: str, schema: Mapping[str, Any] | None) -> Any:
    """A tagged parameter's text as the JSON value its schema says (string when there is no schema)."""
    if not schema:
        return text
    types = schema.get("type")
    if types is None:
        for key in ("anyOf", "oneOf"):
            if isinstance(schema.get(key), list):
                types = [s.get("type") for s in schema[key] if isinstance(s, dict) and s.get("type")]
                break
    if isinstance(types, str):
        types = [types]
    if not types:
        types = ["object", "array", "number", "boolean", "null", "string"] if "enum" not in schema else ["string"]
    types = [t for t in types if t != "string"] + (["string"] if "string" in types else [])  # text only if nothing else
    stripped = text.strip()
    for t in types:
        try:
            if t == "string":
                return text
            if t == "integer":
                return int(stripped)
            if t in ("number", "float"):
                value = json.loads(stripped)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    return value
            elif t == "boolean" and stripped.lower() in ("true", "false"):
                return stripped.lower() == "true"
            elif t == "null" and stripped.lower() in ("null", "none"):
                return None
            elif t in ("object", "array"):
                value = _json_or_python(stripped)
                if isinstance(value, dict if t == "object" else list):
                    return value
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            continue
    if "string" not in types and len(stripped) >= 2 and stripped[0] == stripped[-1] == '"':
        try:  # a quoted value for a parameter that is not a string (`"3"` for an integer)
            inner = json.loads(stripped)
        except ValueError:
            return text
        if isinstance(inner, str) and inner != text:
            return type_value(inner, schema)
    return text


def _unwrapped(args: dict[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """Every argument put into one parameter the tool does not declare (`<param name="arguments">{"city": …}`,
    `{"input": "{\\"city\\": …}"}`): the object it holds (JSON or a Python literal, strings typed by the schema),
    when the tool's schema declares each of that object's keys; otherwise `args` itself."""
    if len(args) != 1 or not schema:
        return args
    ((key, value),) = args.items()
    if key in schema:
        return args
    if isinstance(value, str):
        try:
            value = _json_or_python(value.strip())
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return args
    if not isinstance(value, dict) or not value or not all(isinstance(k, str) and k in schema for k in value):
        return args
    return {k: type_value(v, schema[k]) if isinstance(v, str) else v for k, v in value.items()}


def _json_or_python(text: str) -> Any:
    """JSON, or a Python literal (`{'a': True}`, `['x']`): models write both for object and array parameters."""
    try:
        return json.loads(text)
    except ValueError:
        if len(text) > 65536:
            raise
        return ast.literal_eval(text)


def parameter_schemas(tools: Any) -> dict[str, dict[str, Any]]:
    """name -> {parameter -> JSON schema} from OpenAI-style tool definitions (or Python functions' schemas)."""
    out: dict[str, dict[str, Any]] = {}
    for tool in tools or ():
        fn = tool.get("function", tool) if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            continue
        params = fn.get("parameters") or {}
        props = params.get("properties") if isinstance(params, dict) else None
        out[fn["name"]] = dict(props) if isinstance(props, dict) else {}
    return out


# --------------------------------------------------------------------------------------------- one syntax
class CallParser:
    """Parses the calls of one `CallSyntax` from complete text (a call section, or a whole output)."""

    def __init__(self, syntax: CallSyntax, schemas: Mapping[str, Mapping[str, Any]] | None = None,
                 at_end: bool = False):
        self.syntax = syntax
        self.schemas = dict(schemas or {})
        self.names = frozenset(self.schemas)
        self.at_end = at_end  # the text ends the output: a value left open runs to its end
        self.notes: list[str] = []  # what was dropped from calls that parsed (Result.warnings)

    def parse(self, text: str) -> list[ParsedCall]:
        """Every call in `text`, which must hold nothing else; raises ToolParseError otherwise."""
        calls, end = self.parse_prefix(text)
        if text[end:].strip():
            raise ToolParseError(f"unexpected text after the calls: {text[end:end + 40]!r}")
        return calls

    def parse_prefix(self, text: str) -> tuple[list[ParsedCall], int]:
        """The calls `text` starts with, and where they end (text after them is the model's, e.g. content)."""
        s = self.syntax
        pos = _skip(text, 0)
        if s.section_open.strip():
            m = _compiled(lenient(s.section_open)).match(text, pos)
            if m:
                pos = m.end()
        if s.list_wrapped:
            calls, pos = self._list(text, pos)
        else:
            calls, pos = self._sequence(text, pos)
        if s.section_close.strip():
            m = _compiled(lenient(s.section_close)).match(text, pos)
            if m:
                pos = m.end()
        return [self._unwrapped(c) for c in calls], pos

    def _unwrapped(self, call: ParsedCall) -> ParsedCall:
        """The call with arguments a model wrapped in one parameter the tool does not have unwrapped (`_unwrapped`):
        one rule for every syntax."""
        args = _unwrapped(call.arguments, self.schemas.get(call.name) or {})
        return call if args is call.arguments else ParsedCall(call.name, args, call.raw, call.call_id)

    # -- a list of calls: [ {...}, {...} ] or [f(a=1), g(b=2)] --
    def _list(self, text: str, pos: int) -> tuple[list[ParsedCall], int]:
        pos = _skip(text, pos)
        if self.syntax.shape == "pythonic":
            end = bracket_end(text, pos)
            if end is None:
                raise ToolParseError(f"the call list at {text[pos:pos + 40]!r} does not close")
            return pythonic_calls(text[pos:end]), end
        try:
            value, end = _DECODER.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            value = _truncated_json(text[pos:], (list, dict)) if self.at_end else None
            if value is None:
                raise ToolParseError(f"invalid JSON: {exc.msg} at character {exc.pos}") from None
            end = len(text)  # the output ended inside the list: the calls are what the model wrote
        items = value if isinstance(value, list) else [value]
        cut = end == len(text) and text[pos:].rstrip()[-1:] not in ("]", "}")
        while not isinstance(value, list):  # objects without the list's brackets, joined by `,` (`{…}, {…}`)
            nxt = _skip(text, end)
            if text[nxt:nxt + 1] not in (",", ";") or text[_skip(text, nxt + 1):_skip(text, nxt + 1) + 1] != "{":
                break
            try:
                value, end = _DECODER.raw_decode(text, _skip(text, nxt + 1))
            except json.JSONDecodeError:
                break
            items.append(value)
        raw = text[pos:end]
        calls = []
        for item in items:
            if not isinstance(item, dict) and len(items) > 1:  # `[{…call…}, "junk"]`: the calls are read
                self.notes.append(f"an entry of the call list that is not a call was dropped: "
                                  f"{json.dumps(item, ensure_ascii=False)[:60]}")
                continue
            name, args, call_id = call_from_object(item, self.syntax, self.names)
            if cut and json.dumps(name, ensure_ascii=False) not in raw:  # (`[{"name": "get_wea`)
                raise ToolParseError(f"the output ended inside the name {name!r}")
            calls.append(ParsedCall(name, args, raw if len(items) == 1 else json.dumps(item, ensure_ascii=False),
                                    call_id))
        return calls, end

    # -- calls one after another --
    def _sequence(self, text: str, pos: int) -> tuple[list[ParsedCall], int]:
        s = self.syntax
        sep = _compiled(lenient(s.separator)) if s.separator.strip() else None
        out: list[ParsedCall] = []
        first_error: ToolParseError | None = None
        while True:
            start = pos
            if out and sep is not None:
                m = sep.match(text, pos)
                if m:
                    pos = m.end()
            pos = _skip(text, pos)
            if out and s.shape != "pythonic" and pos < len(text) and text[pos] in ",;":
                pos = _skip(text, pos + 1)  # models list several JSON calls with , or ;
            if pos >= len(text):
                return out, start if not out else pos
            try:
                calls, pos = self._one(text, pos)
            except ToolParseError as exc:
                first_error = first_error or exc
                if not out:
                    raise
                return out, start
            out.extend(calls)

    def _one(self, text: str, start: int) -> tuple[list[ParsedCall], int]:
        s = self.syntax
        if s.shape == "json":
            pos = start
            m = _match(s.call_open, text, pos) if s.call_open else None
            if m is not None:
                pos = m.end()
            pos = value_start = _skip(text, pos)
            try:
                value, pos = _DECODER.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                raise ToolParseError(f"invalid JSON: {exc.msg} at character {exc.pos}") from None
            items = value if isinstance(value, list) else [value]
            calls = []
            for item in items:
                name, args, call_id = call_from_object(item, s, self.names)
                calls.append(ParsedCall(name, args, "", call_id))
            raw = text[value_start:pos].strip()
            m = _match(s.call_close, text, pos) if s.call_close else None
            end = m.end() if m is not None else pos
            return [ParsedCall(c.name, c.arguments, raw, c.call_id) for c in calls], end
        if s.shape == "pythonic":
            m = _match(s.call_open, text, start) if s.call_open else None
            pos = _skip(text, m.end() if m is not None else start)
            end = _call_end(text, pos)
            if end is None:
                raise ToolParseError(f"no call at {text[pos:pos + 40]!r}")
            calls = pythonic_calls(text[pos:end], literal_text(s.between))
            m = _match(s.call_close, text, end) if s.call_close else None
            return calls, m.end() if m is not None else end
        call, end = self._one_tagged(text, start)
        return [call], end

    def _one_tagged(self, body: str, start: int) -> tuple[ParsedCall, int]:
        s = self.syntax
        m = self._delimited_name(body, start, s.call_open)
        if m is None:
            m = _match(s.call_open + (NAME,), body, start)
        if m is None:
            m = self._short_opener(body, start)
        if m is None:
            m = self._opener_without_trigger(body, start)
        if m is None:  # a model that skipped the opener: the name alone
            m = _match((NAME,), body, start)
        if m is None:
            raise ToolParseError(f"expected a tool call at {body[start:start + 40]!r}")
        name, pos, name_at = m.group("name"), m.end(), m.start("name")
        name, pos = self._fix_name(name, pos)
        m = _match(s.between, body, pos)
        if m is None and s.args == "json" and body[_skip(body, pos):_skip(body, pos) + 1] == "{":
            m = _match((), body, pos)  # arguments right after the name ([TOOL_CALLS]name{…}: models drop [ARGS])
        if m is None and self.at_end and not body[pos:].strip() and s.args == "json":
            return ParsedCall(name, {}, body[name_at:pos].strip(), None), len(body)  # the output ended after a name
        if m is None:
            raise ToolParseError(f"after the name {name!r}: expected {literal_text(s.between)!r}")
        call_id = m.groupdict().get("id")
        pos = m.end()
        if s.args == "params" and s.params is not None:
            args, pos = self._params(body, pos, name)  # (unwrapped with every syntax's calls: parse_prefix)
        else:
            pos = _skip(body, pos)
            try:
                value, pos = _DECODER.raw_decode(body, pos)
            except json.JSONDecodeError as exc:
                cut = self._closed_early(body, pos)
                if cut is not None:  # the call's own closing literal ended the arguments (`{"city": "Beijing"<end>`)
                    value, pos = cut
                    self.notes.append(f"the arguments of {name!r} were closed where its call ends")
                else:
                    value = _truncated_json(body[pos:]) if self.at_end else None
                    if value is None:
                        raise ToolParseError(f"the arguments of {name!r}: invalid JSON: {exc.msg}") from None
                    pos = len(body)  # the output ended inside the arguments: they are what the model wrote
            args = _arguments(name, value)
        m = _match(s.call_close, body, pos) if s.call_close else None
        if m is None and s.args == "params":
            self._no_junk_before_close(body, pos, name)
        end = m.end() if m is not None else pos
        return ParsedCall(name, args, body[name_at:pos].strip(), call_id), end

    def _closed_early(self, body: str, pos: int) -> tuple[Any, int] | None:
        """JSON arguments the call's closing literal cut short, closed there as at the end of an output (the model
        stopped writing them where it ended the call); None when no closing literal follows or closing fails."""
        close = literal_text(self.syntax.call_close).strip()
        if not any(ch.isalpha() for ch in close):  # a bare `}` could sit inside the arguments themselves
            return None
        m = _compiled(lenient(close)).search(body, pos)
        if m is None:
            return None
        value = _truncated_json(body[pos:m.start()].rstrip())
        return (value, m.start()) if value is not None else None

    def _no_junk_before_close(self, body: str, pos: int, name: str) -> None:
        """Text the parameters do not read, before the call's own closing literal (`<param>北京</param>`, a
        parameter without its name): the call is malformed, never salvaged as a call missing that argument."""
        close = _first_literal(self.syntax.call_close)
        at = body.find(close, pos) if close else -1
        junk = body[pos:at].strip() if at >= 0 else ""
        if not junk:
            return
        pos = _skip(body, pos)
        if body[pos] in ",;":  # as between calls in a sequence
            pos = _skip(body, pos + 1)
        try:  # another call of the same group (Gemma 4's `call:a{…}call:b{…}` in one `<|tool_call>`)
            self._one_tagged(body, pos)
        except ToolParseError:
            raise ToolParseError(f"in the call {name!r}: {junk[:40]!r} is not a parameter") from None

    def _short_opener(self, body: str, start: int) -> re.Match[str] | None:
        """The trigger, then the rest of the opener with its start dropped (Gemma 4 models write `<|tool_call>:name`
        for `<|tool_call>call:name`)."""
        opener = self.syntax.call_open
        if len(opener) != 1 or opener[0] in HOLES:
            return None
        for trigger in self.syntax.triggers:
            at = opener[0].find(trigger)
            if at < 0:
                continue
            if at > 0:  # `<function=name>` without the `<tool_call>` before it
                m = _match((opener[0][at:], NAME), body, start)
                if m is not None:
                    return m
            rest = opener[0][at + len(trigger):]
            for k in range(1, len(rest) + 1):  # down to the trigger alone (Kimi's `get_weather:0` without functions.)
                m = self._delimited_name(body, start, (trigger + rest[k:],)) or \
                    _match((trigger + rest[k:], NAME), body, start)
                if m is not None:
                    return m
        return None

    def _delimited_name(self, body: str, start: int, opener: Pattern) -> re.Match[str] | None:
        """A name that runs up to the literal the template writes after it (`call:bad func{`, `<function=météo
        v2>`): spaces, unicode, `&`, `<`, `>` included; never brackets or quotes, a line break or another literal
        of the syntax."""
        ends = self._after_name()
        if not ends or not literal_text(opener).strip():
            return None
        alt = "|".join(re.escape(e) for e in sorted(ends, key=len, reverse=True))
        source = (pattern_regex(opener) + rf"\s*(?P<name>(?:(?!{alt})[^\n\[\]{{}}()\"']){{1,256}}?)(?=\s*(?:{alt}))")
        m = _compiled(source).match(body, start)
        if m is None or not m.group("name").strip() or m.group("name") != m.group("name").strip():
            return None
        if not re.search(r"\w", m.group("name")):  # `>>>` is markup (functionary's opener written twice), not a name
            return None
        return m

    def _after_name(self) -> tuple[str, ...]:
        """Literals that may follow a name: the template's `between`, the arguments' opener, the call's close."""
        s = self.syntax
        out = [*(_first_literal((part,)) for part in s.between), _first_literal(s.call_close), *s.triggers]
        if s.args == "params" and s.params is not None:
            out += [s.params.open.strip(), _first_literal(s.params.key_prefix)]
        else:
            out.append("{")  # models drop the literal before JSON arguments (`[TOOL_CALLS]name{…}`)
        return tuple(dict.fromkeys(e for e in out if e))

    def _opener_without_trigger(self, body: str, start: int) -> re.Match[str] | None:
        """The opener's text after its trigger (Gemma 4 models group calls: `<|tool_call>call:a{…}call:b{…}`)."""
        opener = self.syntax.call_open
        if len(opener) != 1 or opener[0] in HOLES:
            return None
        for trigger in self.syntax.triggers:
            at = opener[0].find(trigger)
            rest = opener[0][at + len(trigger):] if at >= 0 else ""
            if rest.strip():
                m = self._delimited_name(body, start, (rest,)) or _match((rest, NAME), body, start)
                if m is not None:
                    return m
        return None

    def _fix_name(self, name: str, pos: int) -> tuple[str, int]:
        """The name regex is greedy over dots: give back a suffix that `between` starts with (`name.` + ...)."""
        between = self.syntax.between
        if between and between[0] not in (NAME, ID, INDEX, ANY):
            first = between[0].strip()[:1]
            if first and first in ".-/" and first in name:
                cut = name.index(first)
                return name[:cut], pos - (len(name) - cut)
        return name, pos

    def _params(self, body: str, pos: int, name: str) -> tuple[dict[str, Any], int]:
        p = self.syntax.params
        assert p is not None
        schema = self.schemas.get(name) or {}
        args: dict[str, Any] = {}
        if p.open:
            m = _compiled(lenient(p.open)).match(body, pos)
            if m:
                pos = m.end()
        key_suffix = pattern_regex(p.key_suffix)
        if key_suffix.endswith(r"\s*"):  # the template's line break after the key, never the value's indentation
            key_suffix = key_suffix[:-3] + (r"[^\S\n]*\n?" if literal_text(p.key_suffix).endswith("\n") else "")
        key_re = _compiled(pattern_regex(p.key_prefix) + self._key_pattern() + key_suffix)
        suffix_re = _compiled(pattern_regex(p.value_suffix)) if literal_text(p.value_suffix).strip() else None
        sep_re = _compiled(lenient(p.separator)) if p.separator.strip() else None
        close_re = _compiled(lenient(p.close)) if p.close.strip() else None
        if KEY in p.value_suffix:  # each value closed by its own key: elements, possibly nested
            pairs, pos = self._elements(body, pos, name, {"properties": schema}, key_re, sep_re, 0)
            args = dict(_grouped(pairs))
            m = close_re.match(body, pos) if close_re is not None else None
            return args, m.end() if m else pos
        next_key = _first_literal(p.key_prefix) if suffix_re is not None else ""  # a value left unclosed
        stops = [lit for lit in (_first_literal(p.value_suffix), p.separator.strip(), p.close.strip(),
                                 _first_literal(self.syntax.call_close), next_key) if lit]
        if suffix_re is not None and literal_text(p.key_suffix).endswith(literal_text(p.value_suffix)):
            # the key's suffix opens the value with the marker that closes it (`key:<escape>v<escape>`): a quoted
            # value, so a separator or closing brace inside it (`Paris, France`) is text
            stops = [lit for lit in (_first_literal(p.value_suffix), _first_literal(self.syntax.call_close)) if lit]
        trim_end = literal_text(p.value_suffix).startswith("\n")
        while True:
            if args and sep_re is not None:
                m = sep_re.match(body, pos)
                if m:
                    pos = m.end()
            m = key_re.match(body, pos)
            if m is None:
                break
            key, pos = m.group("key"), m.end()
            as_json = bool(p.json_suffix) and _same_literal(body[m.end("key"):pos], p.json_suffix)
            if p.string_quote and body.startswith(p.string_quote, pos):
                end = body.find(p.string_quote, pos + len(p.string_quote))
                if end < 0 and not self.at_end:
                    raise ToolParseError(f"the value of {name}.{key} has no closing {p.string_quote}")
                if end < 0:  # the output ended inside the value: it is what the model wrote
                    args[key] = body[pos + len(p.string_quote):].rstrip()
                    return args, len(body)
                args[key] = body[pos + len(p.string_quote):end]
                pos = end + len(p.string_quote)
            elif p.value_wrap[0] and body.startswith(p.value_wrap[0], _skip(body, pos)):
                start = _skip(body, pos) + len(p.value_wrap[0])
                end = body.find(p.value_wrap[1], start)
                if end < 0 and self.at_end:
                    args[key] = type_value(body[start:].rstrip(), schema.get(key))
                    return args, len(body)
                if end < 0:
                    raise ToolParseError(f"the value of {name}.{key} has no closing {p.value_wrap[1]}")
                args[key] = type_value(body[start:end], schema.get(key))
                pos = end + len(p.value_wrap[1])
            elif p.string_quote and body[pos:pos + 1] in ("{", "["):  # a nested value in the same notation
                end = _quoted_bracket_end(body, pos, p.string_quote)
                if end is None:
                    raise ToolParseError(f"the value of {name}.{key} is not closed")
                args[key] = _relaxed_value(body[pos:end], p.string_quote, name, key)
                pos = end
            else:
                ends = [i for i in (body.find(lit, pos) for lit in stops) if i >= 0]
                end = min(ends) if ends else len(body)
                value = body[pos:end]
                if trim_end and value.endswith("\n"):  # the template's line break after the value, not the value's
                    value = value[:-1]
                if p.string_quote and not schema.get(key):  # strings are quoted, so this is a number, bool or null
                    args[key] = _bare_scalar(value.strip())
                elif as_json and not schema.get(key):  # the template marks this value as JSON (`string="false"`)
                    args[key] = _json_value(value)
                else:
                    args[key] = type_value(value, schema.get(key))
                pos = end
            if suffix_re is not None:
                m = suffix_re.match(body, pos)
                if m is None and next_key and key_re.match(body, pos):
                    continue  # `<parameter=a>\nx\n<parameter=b>`: the model skipped a closing tag
                if m is None and (pos >= len(body.rstrip()) and self.at_end or self._at_call_close(body, pos)):
                    break  # the output ended in the value, or the call closed without the value's closing tag
                if m is None:
                    raise ToolParseError(f"the value of {name}.{key} is not closed by {literal_text(p.value_suffix)!r}")
                pos = m.end()
        if close_re is not None:
            m = close_re.match(body, pos)
            if m:
                pos = m.end()
        return args, pos

    def _elements(self, body: str, pos: int, name: str, schema: Mapping[str, Any] | None, key_re: re.Pattern[str],
                  sep_re: re.Pattern[str] | None, depth: int) -> tuple[list[tuple[str, Any]], int]:
        """(key, value) pairs of elements closed by their own key (`<city>Paris</city>`), up to a closing that is not
        theirs (the enclosing element's, or the call's)."""
        p = self.syntax.params
        assert p is not None
        if depth > _MAX_DEPTH:
            raise ToolParseError(f"the arguments of {name!r} nest deeper than {_MAX_DEPTH} elements")
        head = p.value_suffix[:p.value_suffix.index(KEY)]  # a closing starts with it (`</`): never a key
        closer = _compiled(pattern_regex(head)) if literal_text(head).strip() else None
        pairs: list[tuple[str, Any]] = []
        while True:
            q = pos
            if pairs and sep_re is not None:
                m = sep_re.match(body, q)
                q = m.end() if m else q
            if closer is not None and closer.match(body, q):
                return pairs, pos
            m = key_re.match(body, q)
            if m is None:
                return pairs, pos
            key = m.group("key")
            value, pos = self._element(body, m.end(), name, key, _child_schema(schema, key, p.list_item), key_re,
                                       sep_re, closer, depth)
            pairs.append((key, value))

    def _element(self, body: str, pos: int, name: str, key: str, schema: Mapping[str, Any] | None,
                 key_re: re.Pattern[str], sep_re: re.Pattern[str] | None, closer: re.Pattern[str] | None,
                 depth: int) -> tuple[Any, int]:
        """One element's value and the end of its closing: nested elements (an object, or a list of `list_item`s)
        unless the schema wants a string, else text typed by the schema (a JSON scalar where no schema tells)."""
        p = self.syntax.params
        assert p is not None
        closing_lit = literal_text(with_key(p.value_suffix, key))
        closing = _compiled(lenient(closing_lit))
        inner = _skip(body, pos)
        if p.nested and not _string_only(schema) and key_re.match(body, inner) and \
                not (closer is not None and closer.match(body, inner)):
            pairs, end = self._elements(body, inner, name, schema, key_re, sep_re, depth + 1)
            if p.list_item and pairs and all(k == p.list_item for k, _ in pairs) and not _object_only(schema):
                value: Any = [v for _, v in pairs]
            else:
                value = dict(_grouped(pairs))
            m = closing.match(body, end)
            if m is not None:
                return value, m.end()
            if self.at_end and not body[end:].strip():
                return value, len(body)
            raise ToolParseError(f"the value of {name}.{key} is not closed by {closing_lit!r}")
        end = body.find(closing_lit.strip(), pos)
        if end < 0 and not self.at_end:
            raise ToolParseError(f"the value of {name}.{key} is not closed by {closing_lit!r}")
        text = body[pos:end] if end >= 0 else body[pos:].rstrip()
        if closing_lit.startswith("\n") and text.endswith("\n"):  # the template's line break before the closing
            text = text[:-1]
        value = type_value(text, schema) if schema else _json_scalar(text)
        if end < 0:
            return value, len(body)
        m = closing.match(body, end)
        return value, m.end() if m else end + len(closing_lit.strip())

    def _key_pattern(self) -> str:
        """A key: between tags (`<parameter=KEY>`, `<arg_key>KEY</arg_key>`) anything up to the key's closing
        literal (spaces, unicode, `&`, `-`, `.`; `<` and `>` where the closer is longer); in a bracketed notation
        (`{key:value}`), a word."""
        p = self.syntax.params
        assert p is not None
        if not literal_text(p.key_prefix).strip():
            return r"(?P<key>[^\s<>\"'=:{},]+)"
        stops = [_first_literal(p.key_suffix), _first_literal(p.value_suffix), _first_literal(self.syntax.call_close),
                 p.close.strip(), p.separator.strip()]
        alt = "|".join(re.escape(e) for e in sorted({e for e in stops if e}, key=len, reverse=True))
        return rf"(?P<key>(?:(?!{alt})[^\n]){{1,256}}?)" if alt else r"(?P<key>[^\s<>\"'=:{},]+)"

    def _at_call_close(self, body: str, pos: int) -> bool:
        close = literal_text(self.syntax.call_close).strip()
        return bool(close) and _compiled(lenient(close)).match(body, pos) is not None


_MAX_DEPTH = 64  # nested elements: deeper is not a call (and would exhaust the stack)


def _json_scalar(text: str) -> Any:
    """A value no schema types: a JSON number, `true`, `false` or `null` as such, anything else as written."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return text if isinstance(value, (dict, list, str)) else value


def _grouped(pairs: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Pairs with each key once; a key written several times holds the list of its values."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key not in out:
            out[key] = value
        elif isinstance(out[key], _Repeated):
            out[key].append(value)
        else:
            out[key] = _Repeated([out[key], value])
    return [(k, list(v) if isinstance(v, _Repeated) else v) for k, v in out.items()]


class _Repeated(list):  # type: ignore[type-arg]
    """The values of a key written several times (told apart from a value that is itself a list)."""


def _alternatives(schema: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    if not isinstance(schema, Mapping):
        return []
    return [schema, *(a for k in ("anyOf", "oneOf") for a in (schema.get(k) or []) if isinstance(a, Mapping))]


def _types(schema: Mapping[str, Any] | None) -> set[str]:
    out: set[str] = set()
    for alt in _alternatives(schema):
        t = alt.get("type")
        out.update([t] if isinstance(t, str) else t if isinstance(t, list) else [])
    return out


def _string_only(schema: Mapping[str, Any] | None) -> bool:
    return _types(schema) == {"string"}


def _object_only(schema: Mapping[str, Any] | None) -> bool:
    return _types(schema) == {"object"}


def _child_schema(schema: Mapping[str, Any] | None, key: str, item: str) -> Mapping[str, Any] | None:
    """The schema of `key` inside a value of `schema`: a list's items for the list item, else a property."""
    for alt in _alternatives(schema):
        if key == item and isinstance(alt.get("items"), Mapping):
            return alt["items"]
        props = alt.get("properties")
        if isinstance(props, Mapping) and isinstance(props.get(key), Mapping):
            return props[key]
    return None


def _truncated_json(text: str, kinds: tuple[type, ...] = (dict,)) -> Any:
    """A JSON object (or another of `kinds`) the output ended inside (`{"city": "Bei`), closed where it stopped;
    None if it is not one."""
    if not text.startswith(("{", "[")) or len(text) > 65536:
        return None
    stack: list[str] = []
    quote = False
    k = 0
    while k < len(text):
        ch = text[k]
        if quote:
            if ch == "\\":
                k += 1
            elif ch == '"':
                quote = False
        elif ch == '"':
            quote = True
        elif ch in "[{":
            stack.append("]" if ch == "[" else "}")
        elif ch in "]}":
            if not stack or stack.pop() != ch:
                return None
        k += 1
    if not stack:
        return None
    closed = text + ('"' if quote else "")
    closed = closed.rstrip().rstrip(",")
    if closed.endswith(":"):
        closed += " null"
    try:
        value = json.loads(closed + "".join(reversed(stack)))
    except ValueError:
        return None
    return value if isinstance(value, kinds) else None


def _quoted_bracket_end(text: str, i: int, quote: str) -> int | None:
    """End of the `{…}`/`[…]` value at `i` in a notation whose strings sit between `quote` tokens (Gemma 4)."""
    depth, k = 0, i
    while k < len(text):
        if text.startswith(quote, k):
            close = text.find(quote, k + len(quote))
            if close < 0:
                return None
            k = close + len(quote)
            continue
        ch = text[k]
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
            if depth == 0:
                return k + 1
        k += 1
    return None


_BARE_RUN = re.compile(r"[^,:{}\[\]]+")


def _relaxed_value(text: str, quote: str, name: str, key: str) -> Any:
    """A nested value written like the call itself (`{theme:<|"|>dark<|"|>,count:3}`) as JSON data."""
    out: list[str] = []
    k = 0
    while k < len(text):
        if text.startswith(quote, k):
            close = text.find(quote, k + len(quote))
            out.append(json.dumps(text[k + len(quote):close]))
            k = close + len(quote)
            continue
        ch = text[k]
        if ch in ",:{}[]" or ch.isspace():
            out.append(ch)
            k += 1
            continue
        m = _BARE_RUN.match(text, k)
        assert m is not None
        run, k = m.group().strip(), m.end()
        is_key = text[k:k + 1] == ":"
        out.append(json.dumps(run) if is_key else json.dumps(_bare_scalar(run)))
    try:
        return json.loads("".join(out))
    except json.JSONDecodeError as exc:
        raise ToolParseError(f"the value of {name}.{key}: {exc.msg}") from None


def _same_literal(text: str, literal: str) -> bool:
    """Whether `text` is `literal`, whitespace aside."""
    return "".join(text.split()) == "".join(literal.split())


def _json_value(text: str) -> Any:
    """A value the template writes as JSON, decoded (a Python literal is accepted too); the text if it is neither."""
    try:
        return _json_or_python(text.strip())
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return text


def _bare_scalar(text: str) -> Any:
    """An unquoted value where strings are quoted: a number, a boolean or null (text as is otherwise)."""
    try:
        value = json.loads(text)
    except ValueError:
        lowered = text.lower()
        return {"true": True, "false": False, "none": None, "null": None}.get(lowered, text)
    return value if not isinstance(value, (dict, list)) else text


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def bracket_end(text: str, i: int) -> int | None:
    """End of the bracketed value starting at `i` (a list, a call's parentheses), skipping quoted strings."""
    depth, quote, k = 0, "", i
    while k < len(text):
        ch = text[k]
        if quote:
            if ch == "\\":
                k += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "[({":
            depth += 1
        elif ch in "])}":
            depth -= 1
            if depth == 0:
                return k + 1
        k += 1
    return None


def _call_end(text: str, pos: int) -> int | None:
    """End of `name(...)` at pos."""
    m = re.compile(_NAME_RE + r"\s*").match(text, pos)
    if m is None:
        return None
    paren = text.find("(", m.end() - 1 if text[m.end() - 1] == "(" else m.end())
    if paren < 0 or text[m.end():paren].strip():
        return None
    return bracket_end(text, paren)


def _first_literal(pattern: Pattern) -> str:
    for part in pattern:
        if part not in HOLES and part.strip():
            return part.strip().split()[0]
    return ""


# --------------------------------------------------------------------------------------------- pythonic
def pythonic_calls(text: str, suffix: str = "") -> list[ParsedCall]:
    """`[get_weather(city="Paris"), get_time(tz="UTC")]` (or one call without brackets) -> calls.

    `suffix` is text the template writes between the name and the parentheses (Llama's `brave_search.call(...)`).
    """
    src = text.strip()
    try:
        node = ast.parse(src, mode="eval").body
    except (SyntaxError, ValueError):  # not Python: what models write beyond it (reader/py_calls.py)
        try:
            lenient = lenient_calls(src)
        except NotCalls:
            raise ToolParseError(f"not a Python call list: {src[:60]!r}") from None
        return [ParsedCall(_strip_suffix(name, suffix), args, raw) for name, args, raw in lenient]
    calls = node.elts if isinstance(node, (ast.List, ast.Tuple)) else [node]
    out = []
    for c in calls:
        if not isinstance(c, ast.Call):
            raise ToolParseError("a pythonic tool call must be name(key=value, ...)")
        name = _dotted(c.func)
        if name is not None:
            name = _strip_suffix(name, suffix)
        if name is None:
            raise ToolParseError("a pythonic tool call must start with a function name")
        if c.args:
            raise ToolParseError(f"{name}: positional arguments cannot be mapped to parameter names")
        try:
            args = {kw.arg: _literal_value(kw.value) for kw in c.keywords if kw.arg}
        except ValueError:
            raise ToolParseError(f"{name}: arguments must be literals") from None
        out.append(ParsedCall(name, args, ast.get_source_segment(src, c) or src))
    return out


def _strip_suffix(name: str, suffix: str) -> str:
    return name[: -len(suffix.strip())] if suffix.strip() and name.endswith(suffix.strip()) else name


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _literal_value(node: ast.AST) -> Any:
    """A literal argument; JSON's true/false/null are accepted too (small models mix the two languages)."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name) and node.id in _NAMED:
        return _NAMED[node.id]
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):  # a set as a list in the order written: JSON has no set
        return [_literal_value(e) for e in node.elts]
    if isinstance(node, ast.Dict):
        return {_literal_value(k): _literal_value(v) for k, v in zip(node.keys, node.values) if k is not None}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal_value(node.operand)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    raise ValueError("not a literal")


_NAMED = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}
