"""What one turn must look like, from the request and the template analysis: a `Constraint`.

A forced turn is a short sequence of phases. Reasoning stays free: where the template has reasoning tags, the
turn may open them (or the prompt already did), the model reasons without a grammar until the closing tag, and
the grammar takes over after it. A channel format (Harmony) works the same way with its reasoning message. The
constrained part is the forced call(s) in the template's own call syntax (calls.py), or the answer as JSON for a
schema, inside the template's content markers where it has them.

`ConstraintState` follows one generation through the phases from the text of the sampled tokens; engines ask it
which grammar applies now (None: free) and rebuild their matcher when it changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .calls import MAX_PARALLEL_CALLS, CallGrammar, Tool, already_written, strip_lead
from .grammar import Chars, Json, Node, Opt, alt, seq
from .limits import PreparedSchema, prepare
from .schema import ConstraintError, closed, object_schema, response_schema

if TYPE_CHECKING:
    from ..speclike import SpecLike

_BLANK = Opt(Chars(" \\n", 1, 4))


@dataclass(frozen=True)
class Constraint:
    """The grammar of a turn, in phases. `kind` is "tool_call" or "json"; `schemas` are the JSON schemas it
    enforces (checked against the engine's backend before generation); `notices` say what was decided."""

    kind: str
    start: Node  # the grammar from the first generated token (it may offer the reasoning opener)
    resume: Node  # the grammar after reasoning closes
    reasoning_open: str = ""
    reasoning_close: str = ""
    starts_free: bool = False  # the prompt left reasoning open: free until `reasoning_close`
    schemas: tuple[tuple[str, Any], ...] = ()  # (where, schema) pairs, for error messages
    notices: tuple[str, ...] = ()
    halt_ids: frozenset[int] = frozenset()  # the turn may end on these once the grammar is complete
    vocab: Any = field(default=None, compare=False, repr=False)  # the model's tokenizer (token ids in grammars)
    # (where, param, schema as the structural check prepared it): for each backend's own limits (limits.py)
    prepared: tuple[tuple[str, str | None, PreparedSchema], ...] = field(default=(), compare=False, repr=False)


class ConstraintState:
    """One generation's progress through a Constraint's phases, driven by the text of each sampled token."""

    def __init__(self, constraint: Constraint):
        self.constraint = constraint
        self.phase = "free" if constraint.starts_free else "start"
        self._text = ""
        self._watch_open = bool(constraint.reasoning_open) and not constraint.starts_free

    @property
    def grammar(self) -> Node | None:
        """The grammar that applies to the next token; None while reasoning is free."""
        c = self.constraint
        return {"start": c.start, "free": None, "resume": c.resume}[self.phase]

    def advance(self, piece: str) -> bool:
        """Account for one sampled token's text; True when the grammar changed (the engine starts a new matcher)."""
        c = self.constraint
        if self.phase == "start" and self._watch_open:
            self._text += piece
            lead = self._text.lstrip()
            if lead.startswith(c.reasoning_open):
                self.phase, self._text = "free", lead[len(c.reasoning_open):]
                return self._check_close() or True
            if not c.reasoning_open.startswith(lead):
                self._watch_open = False
            return False
        if self.phase == "free":
            self._text += piece
            return self._check_close()
        return False

    def _check_close(self) -> bool:
        close = self.constraint.reasoning_close
        if close and close in self._text:
            self.phase, self._text = "resume", ""
            return True
        return False


def _forced_tools(tools: list[dict[str, Any]] | None, tool_choice: Any,
                 prepared: list[tuple[str, str | None, PreparedSchema]]) -> list[Tool] | None:
    """The tools a call is forced among (None: no call is forced). Raises for a choice naming no declared tool,
    for tool names that are empty or declared twice, and for parameter schemas over the limits (limits.py);
    each tool's prepared schema is appended to `prepared`."""
    if tool_choice in (None, "auto", "none"):
        return None
    from ..render import tool_schemas

    declared = []
    budget = [0]
    for i, tool in enumerate(tool_schemas(list(tools)) if tools else ()):
        fn = tool.get("function", tool) if isinstance(tool, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            where = f"tools[{i}].function"
            name = check_tool_name(fn["name"], f"{where}.name", [t.name for t in declared])
            found = prepare(object_schema(fn.get("parameters")), f"{where}.parameters", "tools", budget=budget)
            prepared.append((f"{where}.parameters", "tools", found))
            declared.append(Tool(name, closed(found.schema)))
    if tool_choice == "required":
        if not declared:
            raise ConstraintError("tool_choice 'required' needs at least one tool in 'tools'", param="tool_choice")
        return declared
    if isinstance(tool_choice, dict):
        fn = tool_choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        if tool_choice.get("type", "function") != "function" or not isinstance(name, str):
            raise ConstraintError("tool_choice: expected 'auto', 'none', 'required' or "
                                  "{'type': 'function', 'function': {'name': ...}}", param="tool_choice")
        chosen = [t for t in declared if t.name == name]
        if not chosen:
            known = ", ".join(t.name for t in declared) or "none"
            raise ConstraintError(f"tool_choice names the function {name!r}, which is not in 'tools' "
                                  f"(declared: {known})", param="tool_choice")
        return chosen
    raise ConstraintError(f"tool_choice: {tool_choice!r} is not 'auto', 'none', 'required' or a named function",
                          param="tool_choice")




def check_tool_name(name: Any, field_name: str, declared: list[str]) -> str:
    """A tool's name, or a ConstraintError naming the field: empty, or the name of a tool declared before."""
    if not isinstance(name, str) or not name.strip():
        raise ConstraintError(f"{field_name}: a tool needs a non-empty name", param=field_name)
    if name in declared:
        raise ConstraintError(f"{field_name}: {name!r} is declared twice; tool names must be unique",
                              param=field_name)
    return name


def plan(spec: SpecLike, prompt_text: str, *, tools: list[dict[str, Any]] | None = None, tool_choice: Any = None,
         response_format: Any = None, parallel_tool_calls: bool = False) -> Constraint | None:
    """The Constraint for a turn continuing `prompt_text`, or None when nothing is forced.

    A forced call wins over `response_format` (a call turn has no content). Raises `ConstraintError`.
    """
    from ..formats import format_of

    prepared: list[tuple[str, str | None, PreparedSchema]] = []
    forced = _forced_tools(tools, tool_choice, prepared)
    schema = response_schema(response_format) if forced is None else None
    if schema is not None:
        where = "response_format.json_schema.schema"
        found = prepare(schema, where, "response_format")
        prepared.append((where, "response_format", found))
        schema = closed(found.schema)
    if forced is None and schema is None:
        return None
    analysis = spec.analysis
    fmt = format_of(analysis)
    notices: list[str] = []
    tail = fmt.prompt_tail(prompt_text)
    opener, closer, resume_lead = fmt.reasoning_phase(tail)
    starts_free = bool(opener) and tail.rfind(opener) > tail.rfind(closer)
    if opener and not starts_free and closer in tail:
        opener = closer = ""  # the prompt closed reasoning itself (thinking switched off)

    if forced is not None:
        syntaxes = fmt.call_syntaxes
        if not syntaxes:
            notices.append(f"{spec.name}'s template has no tool-call syntax ({analysis.tools.reason}): the forced "
                           'call is written as {"name": ..., "arguments": {...}} and read back as a call')
        grammar = CallGrammar(syntaxes[0] if syntaxes else None, forced)
        max_calls = MAX_PARALLEL_CALLS if parallel_tool_calls else 1
        written = "" if starts_free else already_written(tail, grammar.section_lead())
        body = grammar.turn(max_calls=max_calls)  # later turns write all of it
        first = strip_lead(body, written)
        kind = "tool_call"
        schemas = tuple((f"tools[{t.name}].parameters", t.parameters) for t in forced)
    else:
        lead, close = fmt.answer_lead()
        body = seq(lead, Json.of(schema), close)
        first = body
        kind = "json"
        schemas = (("response_format.json_schema.schema", schema),)
    resume = seq(resume_lead, body) if resume_lead else seq(_BLANK, body)
    start = alt(opener, first) if opener and not starts_free else first
    return Constraint(kind, start, resume, opener, closer, starts_free, schemas, tuple(notices),
                      frozenset(spec.stops.halt_ids), getattr(spec, "vocab", None), tuple(prepared))
