"""Does re-rendering a conversation keep the tokens of the previous prompt and completion? Learned by rendering.

For each of appending a user, a tool and an assistant message after an assistant turn (the completion is the
template's own rendering of that turn), the full re-render is compared with the previous prompt + completion, token
by token. Where it is not a prefix extension, the report says which span changes and why (reasoning dropped from
history, the turn end written differently in history, arguments re-serialized, a BPE merge across the boundary),
and which template switches it reads change that. Sessions (turnspec.session) never re-render: this says what a
runner that does would break.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ..affixes import common_prefix
from ..errors import TurnspecError
from ..template import template_variables
from .probes import (ARGS_A, CONTENT, CONTENT_2, ID_A, NAME_A, REASONING, TOOL_RESULT, TOOLS, USER, USER_2, assistant,
                     call, user)

if TYPE_CHECKING:
    from ..speclike import SpecLike

#: Template variables that may decide how history is rendered (reasoning kept or dropped), and values tried.
_SWITCH_NAME = re.compile(r"think|reason|analysis|preserve|clear|truncate|history|keep", re.IGNORECASE)
_VALUES = (True, False)


@dataclass(frozen=True)
class PrefixCase:
    """One appended role. `extends` is None when the template does not render the case (`error` says why)."""

    appended: str
    extends: bool | None
    first_changed_token: int | None = None
    old: str = ""  # the previous text from where it changes (shortened)
    new: str = ""  # the re-render from there
    reasons: tuple[str, ...] = ()
    fixed_by: dict[str, Any] = field(default_factory=dict)  # a switch value under which it extends
    error: str | None = None

    def line(self) -> str:
        if self.extends is None:
            return f"append {self.appended}: not rendered ({self.error})"
        if self.extends:
            return f"append {self.appended}: prefix extension (earlier tokens kept)"
        fix = ", ".join(f"{k}={v!r}" for k, v in self.fixed_by.items())
        return (f"append {self.appended}: earlier tokens change from token {self.first_changed_token} "
                f"({'; '.join(self.reasons)}){f'; extends with {fix}' if fix else ''}")


@dataclass(frozen=True)
class PrefixReport:
    cases: tuple[PrefixCase, ...]
    switches: tuple[str, ...]  # the template's variables that may change how history is rendered
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def stable(self) -> bool:
        return all(c.extends is not False for c in self.cases)

    def lines(self) -> list[str]:
        return [c.line() for c in self.cases]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def prefix_report(spec: SpecLike, tools: Any = None, **kwargs: Any) -> PrefixReport:
    """Render the three appends (with `kwargs`, then each switch value) and compare tokens (text without a vocabulary)."""
    variables = template_variables(spec.select_template())
    switches = tuple(v for v in variables if _SWITCH_NAME.search(v) and v not in kwargs)
    extra = {k: "" for k in spec.analysis.requires if k != "tools"}
    cases = []
    for role in ("user", "tool", "assistant"):
        case = _case(spec, role, tools, {**extra, **kwargs})
        if case.extends is False:
            fixed = {}
            for name in switches:
                for value in _VALUES:
                    other = _case(spec, role, tools, {**extra, **kwargs, name: value})
                    if other.extends:
                        fixed[name] = value
                        break
            case = PrefixCase(**{**asdict(case), "fixed_by": fixed})
        cases.append(case)
    return PrefixReport(tuple(cases), switches, dict(kwargs))


def _case(spec: SpecLike, role: str, tools: Any, kwargs: dict[str, Any]) -> PrefixCase:
    tool_turn = role == "tool"
    use_tools = tools if tools is not None else (TOOLS if tool_turn or "tools" in spec.analysis.requires else None)
    conversation = [user(USER)]
    turn = (assistant(reasoning=REASONING, calls=[call(NAME_A, ARGS_A, ID_A, False)]) if tool_turn
            else assistant(CONTENT, reasoning=REASONING))
    appended = {"user": user(USER_2), "assistant": assistant(CONTENT_2),
                "tool": {"role": "tool", "content": TOOL_RESULT, "tool_call_id": ID_A, "name": NAME_A}}[role]
    try:
        prompt = spec.render(conversation, add_generation_prompt=True, tools=use_tools, **kwargs)
        finished = spec.render([*conversation, turn], tools=use_tools, **kwargs)
        again = spec.render([*conversation, turn, appended], add_generation_prompt=role != "assistant",
                            tools=use_tools, **kwargs)
    except TurnspecError as exc:
        return PrefixCase(role, None, error=" ".join(str(exc).split())[:160])
    reasons = []
    if finished.startswith(prompt):
        completion = finished[len(prompt):]
    else:
        n = common_prefix(prompt, finished)
        completion = finished[n:]
        prompt = prompt[:n]
        reasons.append("the template renders a finished turn differently from how its generation prompt opens it")
    completion = _through_turn_end(spec, completion)
    before = prompt + completion
    vocab = spec.vocab
    if vocab is not None:
        old_ids = vocab.encode(prompt) + vocab.encode(completion)
        new_ids = vocab.encode(again)
        k = _first_difference(old_ids, new_ids)
        if k is None:
            return PrefixCase(role, True)
        char = len(vocab.decode(old_ids[:k]))
    else:
        char = common_prefix(before, again)
        if char == len(before):
            return PrefixCase(role, True)
        k = None
    reasons += _why(spec, before, again, char)
    return PrefixCase(role, False, k, before[char:char + 80], again[char:char + 80], tuple(dict.fromkeys(reasons)))


def _through_turn_end(spec: SpecLike, completion: str) -> str:
    """The completion up to and including the first turn end or stop token (what a sampler returns)."""
    ends = [t for t in (*spec.analysis.turn_ends, *spec.stops.tokens) if t]
    found = [(i, t) for t in ends if (i := completion.find(t)) >= 0]
    if not found:
        return completion
    i, t = min(found, key=lambda f: (f[0], -len(f[1])))
    return completion[:i + len(t)]


def _first_difference(old: list[int], new: list[int]) -> int | None:
    for k, (a, b) in enumerate(zip(old, new)):
        if a != b:
            return k
    return None if len(new) >= len(old) else len(new)


def _why(spec: SpecLike, before: str, again: str, char: int) -> list[str]:
    reasons = []
    if REASONING in before[char:] and REASONING not in again:
        reasons.append("reasoning dropped from the earlier turn")
    if again.startswith(before):
        reasons.append("same text, tokenized differently across the turn boundary (a BPE merge)")
    old_rest = before[char:]
    if "tsv_one" in old_rest and "tsv_one" in again[char:] and old_rest.split("tsv_one")[0] != again[char:].split("tsv_one")[0]:
        reasons.append("tool-call arguments re-serialized")
    ends = [t for t in (*spec.analysis.turn_ends, *spec.analysis.history_turn_ends) if t]
    for t in ends:
        if old_rest.startswith(t) and not again[char:].startswith(t):
            reasons.append(f"the turn end {t!r} is written differently in history")
            break
    if not reasons:
        reasons.append("the template renders the earlier turn differently once more messages follow")
    return reasons
