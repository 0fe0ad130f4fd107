"""Probe conversations with sentinel texts, and the renderer that runs them.

Every probe text is distinctive and different from the others, so finding it in a rendering says exactly where the
template put it. Arguments mix two strings and an integer so a rendering tells JSON (`"tsv_one"`) from tagged
values (`>tsv_one<`) and shows how non-string values are written.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..affixes import common_prefix
from ..errors import TemplateError, TurnspecError, one_line
from ..template import template_variables
from .markup import Markup

if TYPE_CHECKING:
    from ..speclike import SpecLike

USER, USER_2 = "tsu_first_x", "tsu_second_x"
SYSTEM = "tss_system_x"
CONTENT, CONTENT_2 = "tsc_answer_x", "tsc_other_x"
REASONING = "tsr_thought_x"
TOOL_RESULT = "tst_result_x"
DEVELOPER = "tsd_instructions_x"  # not the word "developer": renderings are compared with the role name replaced
UNKNOWN_ROLE = "tsrole_x"  # a role no template knows: a template that renders it renders any role generically

NAME_A, NAME_B = "tsfn_alpha", "tsfn_beta"
ID_A, ID_B = "tsid00001", "tsid00002"  # 9 alphanumerics: Mistral templates reject other ids
ARGS_A = {"tsk_one": "tsv_one", "tsk_two": "tsv_two", "tsk_num": 4711}
ARGS_B = {"tsk_three": "tsv_three"}


def _tool(name: str, args: dict[str, Any], description: str) -> dict[str, Any]:
    props = {k: {"type": "integer" if isinstance(v, int) else "string", "description": f"The {k}."} for k, v in args.items()}
    return {"type": "function", "function": {"name": name, "description": description,
                                             "parameters": {"type": "object", "properties": props,
                                                            "required": list(args)}}}


TOOL_A = _tool(NAME_A, ARGS_A, "First probe function.")
TOOL_B = _tool(NAME_B, ARGS_B, "Second probe function.")
TOOLS = [TOOL_A, TOOL_B]
FLAT_TOOLS = [t["function"] for t in TOOLS]  # bare function schemas, for templates that want those

# Template variables that switch reasoning on or off, and the values tried for each.
REASONING_SWITCHES: dict[str, tuple[Any, ...]] = {
    "enable_thinking": (True, False),
    "thinking": (True, False),
    "enable_reasoning": (True, False),
    "reasoning_effort": ("low", "medium", "high"),
    "thinking_budget": (0, 1024),
}

_UNDEFINED = re.compile(r"'(\w+)' is undefined")


def user(text: str = USER) -> dict[str, Any]:
    return {"role": "user", "content": text}


def call(name: str, args: dict[str, Any], call_id: str, as_string: bool) -> dict[str, Any]:
    return {"id": call_id, "type": "function",
            "function": {"name": name, "arguments": json.dumps(args) if as_string else dict(args)}}


def assistant(content: str = "", *, reasoning: str | None = None, calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = calls
    return message


@dataclass
class Aligned:
    """A finished turn aligned with the prompt that asked for it.

    `cut` is where the two renderings part (never inside a token); `output` is what the finished rendering has
    from there (the assistant's text, its end, and whatever the template writes after it); `prompt_rest` is what
    the generation prompt has from there instead (text the prompt supplies, such as an opened `<think>`).
    """

    cut: int
    output: str
    prompt_rest: str


def align(prompt: str, full: str, markup: Markup) -> Aligned:
    n = common_prefix(prompt, full)
    n = min(markup.snap(full, n), markup.snap(prompt, n))
    return Aligned(n, full[n:], prompt[n:])


@dataclass
class Prober:
    """Renders probes through the spec with the keyword arguments every probe needs, and remembers failures.

    After one rendering runs past the time limit no other is tried (`timed_out` says which limit): a template that
    loops costs one time limit, not one per probe. `renders` counts the template runs (cached probes are free).
    """

    spec: SpecLike
    base: dict[str, Any] = field(default_factory=dict)
    requires: dict[str, str] = field(default_factory=dict)
    base_found: bool = False  # one user message renders (with `base`)
    timed_out: str | None = None
    renders: int = 0
    _seen: dict[str, Any] = field(default_factory=dict)

    def render(self, messages: list[dict[str, Any]], **kwargs: Any) -> str:
        """Render (each distinct probe once: the learners ask for some of the same renderings)."""
        key = json.dumps([messages, self.base, kwargs], sort_keys=True, default=str)
        if key not in self._seen:
            if self.timed_out:
                raise ProbeSkipped(f"not probed: {self.timed_out} earlier", template_message=f"not probed: "
                                   f"{self.timed_out} earlier", limit=True)
            self.renders += 1
            try:
                self._seen[key] = self.spec.render(messages, **{**self.base, **kwargs})
            except TurnspecError as exc:
                if isinstance(exc, TemplateError) and exc.limit and "time limit" in (exc.template_message or ""):
                    limit = getattr(self.spec.limits, "time_limit_s", None)
                    self.timed_out = f"the template ran past the {limit:g} s time limit" if limit else \
                        "the template ran past the time limit"
                self._seen[key] = exc
            except Exception as exc:  # noqa: BLE001 - e.g. the sandbox's OverflowError: still the template's failure
                msg = f"{type(exc).__name__}: {exc}"
                self._seen[key] = TemplateError(f"the chat template of {self.spec.name} raised: {msg}",
                                                model=self.spec.name, template_message=msg)
        result = self._seen[key]
        if isinstance(result, TurnspecError):
            raise result
        return result

    def attempt(self, messages: list[dict[str, Any]], **kwargs: Any) -> tuple[str | None, str | None]:
        """(text, None) or (None, the template's one-line error)."""
        try:
            return self.render(messages, **kwargs), None
        except TurnspecError as exc:
            if isinstance(exc, TemplateError) and exc.limit:
                raise
            return None, one_line(exc, limit=300, template_message=True)

    def discover_base(self) -> None:
        """Find what a one-message conversation needs: nothing, a tools list (tool_use templates), or values for
        variables the template reads without defining them (probed as empty strings, and reported)."""
        conversation = [user()]
        variables = set(template_variables(self.spec.select_template()))
        for _ in range(6):
            try:
                self.render(conversation, add_generation_prompt=True)
                break
            except TurnspecError as exc:
                if isinstance(exc, TemplateError) and exc.limit:
                    raise
                missing = _UNDEFINED.search(one_line(exc, limit=300, template_message=True))
                name = missing.group(1) if missing else None
                if name and name in variables and name not in self.base and name != "tools":
                    self.base[name] = ""
                elif "tools" not in self.base:
                    self.base["tools"] = TOOLS
                else:
                    raise
        else:
            self.render(conversation, add_generation_prompt=True)
        self.base_found = True
        for name in list(self.base):  # keep only what is needed
            trial = {k: v for k, v in self.base.items() if k != name}
            self.renders += 1
            try:
                self.spec.render(conversation, add_generation_prompt=True, **trial)
                del self.base[name]
            except TurnspecError:
                self.requires[name] = ("the template fails without a tools list; probed with one" if name == "tools"
                                       else f"the template reads `{name}` without defining it; probed as an empty "
                                            f"string (pass it with --kw {name}=...)")


class ProbeSkipped(TemplateError):
    """A probe not rendered because an earlier one ran past the time limit."""
