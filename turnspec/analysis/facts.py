"""Template facts beyond turn framing: what the template does with a system prompt, which roles it takes, whether
continue_final_message works, whether it writes BOS, how it renders tool-call arguments, and so on.

Each learner takes the analysis's Prober, so a probe the turn analysis already rendered is not rendered again, and
returns plain data. Onboarding, chat, the server and encoding read these facts; none of them probes the template.
Nothing looks at a model's name: sentinel messages are rendered and the renderings compared.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from ..affixes import common_prefix, common_suffix
from ..errors import TurnspecError
from ..template import template_variables
from .markup import Markup
from .probes import (ARGS_A, ARGS_B, CONTENT, DEVELOPER, FLAT_TOOLS, ID_A, ID_B, NAME_A, NAME_B,
                     REASONING, REASONING_SWITCHES, SYSTEM, TOOL_RESULT, TOOLS, UNKNOWN_ROLE, USER, USER_2, Prober,
                     assistant, call, user)

# Role words a template writes as plain text in a header (`system\n`, `User:`): not part of a default's text.
ROLE_WORDS = frozenset({"system", "user", "assistant", "developer", "tool", "ipython", "model", "bot", "human"})
_ROLE_LINE = re.compile(r"^\s*(?:%s)\s*(?:\n|:)" % "|".join(sorted(ROLE_WORDS)), re.IGNORECASE)


def _present(obj: Any) -> dict[str, Any]:
    """The fields that say something (None omitted), in declaration order: one report line per fact."""
    return {k: v for k, v in asdict(obj).items() if v is not None}


# --------------------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class SystemPrompt:
    """What the template does with a system message.

    mode: "native" (its own turn), "merged" (into a user turn: `separator`, `into`), "appends" (after a default
    text the template writes: `default`, `placement`), "replaces" (a `default` the template writes without one),
    "unsupported" (the template raises: `message` is its own text), "ignored" (rendered without its text),
    "unknown" (not probed).
    """

    mode: str = "unknown"
    default: str | None = None
    placement: str | None = None
    separator: str | None = None
    into: str | None = None
    message: str | None = None
    detail: str | None = None

    def finding(self) -> dict[str, Any]:
        return _present(self)


@dataclass(frozen=True)
class Roles:
    """Which roles and orders the template takes (tool and ipython roles are in `ToolUse`: they need tools).

    must_alternate: True (raises on two user turns in a row: `alternate_message`), False, or
    "second user message dropped". developer: "accepted", "dropped" or "raises: …"; `developer_native` is True
    when the template writes a developer message its own way, not as it writes any role it does not know.
    """

    must_alternate: bool | str = False
    alternate_message: str | None = None
    developer: str = "unknown"
    developer_native: bool = False


@dataclass(frozen=True)
class GenerationPrompt:
    """What `add_generation_prompt` adds after one user message. `replaces_ending`: what the conversation ends with
    instead when it is not asked for (Phi-3.5's `<|endoftext|>`). `matches_finished_turn`: a finished assistant turn
    starts with the prompt (False when the prompt opens reasoning a finished turn does not show)."""

    text: str = ""
    replaces_ending: str | None = None
    matches_finished_turn: bool | str = False
    prompt: str = ""  # the whole prompt for one user message


@dataclass(frozen=True)
class Bos:
    """The model's BOS token and whether the template writes it: True (at the start), "not at the start", False.
    Whether a tokenizer adds another is the tokenizer's fact (`ModelSpec.tokenizer_adds_bos`), not the template's."""

    token: str | None = None
    template_writes: bool | str = False

    def doubled_by(self, tokenizer_adds: bool | None) -> bool | None:
        """Would tokenizing the rendered prompt with add_special_tokens=True write BOS twice? None when unknown."""
        if tokenizer_adds is None:
            return None if self.template_writes is True else False
        return bool(self.template_writes is True and tokenizer_adds)


@dataclass(frozen=True)
class ContinueFinal:
    """Whether `continue_final_message=True` leaves a final assistant message open (its text ends the rendering)."""

    works: bool = False
    message: str | None = None

    def finding(self) -> dict[str, Any]:
        return _present(self)


@dataclass(frozen=True)
class ToolUse:
    """How the template takes a tool conversation.

    mode: "rendered", "ignored" or "raises" (`message`); `required`: it fails without a tools list; `arguments`:
    per form ("object", "string") "ok", "double-encoded", "dropped" or "raises: …", and `accepts` (both, object,
    string, neither); `round_trip`: a call and its result both show; `parallel_calls`: "parallel" or "single (…)";
    `tool_role`/`ipython_role`: "accepted", "dropped" or "raises: …".
    """

    mode: str = "unknown"
    message: str | None = None
    required: bool = False
    detail: str | None = None
    arguments: dict[str, str] = field(default_factory=dict)
    round_trip: str | None = None
    parallel_calls: str | None = None
    tool_role: str = "unknown"
    ipython_role: str = "unknown"


@dataclass(frozen=True)
class ReasoningSwitches:
    """What each value of each reasoning switch the template reads changes in the prompt, and what the template does
    with `<think>…</think>` written inside a past answer's content ("kept", "stripped", "raises: …")."""

    effects: dict[str, dict[str, str]] = field(default_factory=dict)
    think_in_content: str | None = None


# --------------------------------------------------------------------------------------------------- learners
def learn_generation_prompt(prober: Prober, markup: Markup) -> GenerationPrompt:
    u = [user()]
    without = prober.render(u)
    with_prompt = prober.render(u, add_generation_prompt=True)
    replaces = None
    if with_prompt.startswith(without):
        text = with_prompt[len(without):]
    else:  # Phi-3.5 ends a conversation with <|endoftext|> unless the generation prompt is asked for
        i = markup.snap(with_prompt, common_prefix(without, with_prompt))
        text, replaces = with_prompt[i:], without[i:]
    finished, error = prober.attempt([*u, assistant(CONTENT)])
    matches: bool | str = finished.startswith(with_prompt) if finished is not None else f"raises: {error}"
    return GenerationPrompt(text, replaces, matches, with_prompt)


def learn_bos(prober: Prober) -> Bos:
    bos = prober.spec.special_tokens.get("bos_token")
    text = prober.render([user()], add_generation_prompt=True)
    writes: bool | str = bool(bos) and text.startswith(bos)
    if bos and not writes and bos in text:
        writes = "not at the start"
    return Bos(bos, writes)


def learn_continue_final(prober: Prober) -> ContinueFinal:
    text, error = prober.attempt([user(), assistant(CONTENT)], continue_final_message=True)
    if text is None:
        return ContinueFinal(False, error)
    return ContinueFinal(text.endswith(CONTENT))


def learn_roles(prober: Prober) -> Roles:
    text, error = prober.attempt([user(), user(USER_2)], add_generation_prompt=True)
    alternate: bool | str = True if text is None else ("second user message dropped" if USER_2 not in text else False)
    developer, native = _developer(prober)
    return Roles(alternate, error if text is None else None, developer, native)


def _developer(prober: Prober) -> tuple[str, bool]:
    """("accepted" | "dropped" | "raises: …", whether the template writes it unlike a role it does not know)."""
    text, error = prober.attempt([{"role": "developer", "content": DEVELOPER}, user()], add_generation_prompt=True)
    if text is None:
        return f"raises: {error}", False
    if DEVELOPER not in text:
        return "dropped", False
    generic, _ = prober.attempt([{"role": UNKNOWN_ROLE, "content": DEVELOPER}, user()], add_generation_prompt=True)
    return "accepted", generic is None or text.replace("developer", UNKNOWN_ROLE) != generic


def learn_system(prober: Prober, markup: Markup) -> SystemPrompt:
    """Render one user message with and without a system message before it, and compare."""
    u = [user()]
    without = prober.render(u, add_generation_prompt=True)
    with_sys, error = prober.attempt([{"role": "system", "content": SYSTEM}, *u], add_generation_prompt=True)
    if with_sys is None:
        return SystemPrompt("unsupported", message=error)
    if SYSTEM not in with_sys:
        return SystemPrompt("ignored", detail="the template renders a system message but drops its text")
    p, s = _common_ends(without, with_sys)
    removed = without[p:len(without) - s]
    if removed.strip():
        return SystemPrompt("replaces", default=_default_text(removed, markup) or removed.strip())
    head = without[:markup.snap(without, p)]
    default = _default_text(head, markup)
    if default:
        # Between the end of the default's text and the system text: a control token means a new message.
        last_piece = default.splitlines()[-1]
        at = with_sys.find(SYSTEM)
        end = with_sys.rfind(last_piece, 0, at)
        between = with_sys[end + len(last_piece):at] if end >= 0 else ""
        placement = "same block as the default" if not markup.spans(between) else "a separate message after the default"
        return SystemPrompt("appends", default=default, placement=placement)
    return _merged_or_native(prober, without, with_sys)


def _common_ends(a: str, b: str) -> tuple[int, int]:
    """Common prefix and suffix lengths of `a` (without) and `b` (with the system text), never ending inside a
    sentinel: the sentinels share their `ts…_x` shape, which must not be taken for template text."""
    p = common_prefix(a, b)
    for text in (a, b):
        for sentinel in (USER, SYSTEM):
            at = text.find(sentinel)
            if 0 <= at < p < at + len(sentinel):
                p = at
    s = min(common_suffix(a, b), min(len(a), len(b)) - p)
    for text in (a, b):
        for sentinel in (USER, SYSTEM):
            at, start = text.find(sentinel), len(text) - s
            if 0 <= at < start < at + len(sentinel):
                s = len(text) - (at + len(sentinel))
    return p, s


def _default_text(text: str, markup: Markup) -> str | None:
    """The natural-language text in `text` between control tokens (role names dropped), or None."""
    pieces, pos = [], 0
    for span in markup.spans(text):
        pieces.append(text[pos:span.start])
        pos = span.end
    pieces.append(text[pos:])
    kept = [_ROLE_LINE.sub("", p).strip() for p in pieces]
    kept = [p for p in kept if p and p.lower() not in ROLE_WORDS]
    kept = [p for p in kept if sum(c.isalpha() for c in p) >= 8]
    return "\n".join(kept) if kept else None


def _merged_or_native(prober: Prober, without: str, with_sys: str) -> SystemPrompt:
    """Native: a turn boundary between the system text and the user's. Merged: only plain text between them."""
    u0 = without.find(USER)
    pre_user = without[:u0] if u0 >= 0 else ""
    si, ui = with_sys.find(SYSTEM), with_sys.find(USER)
    between = with_sys[si + len(SYSTEM):ui] if si < ui else with_sys[ui + len(USER):si]
    header = _suffix_with_visible(pre_user, 4)
    # Vocabulary control tokens only (not look-alikes: Llama-2's "<</SYS>>" is text inside the user turn).
    try:
        control = set(prober.spec.control_tokens())
    except TurnspecError:
        control = set(prober.spec.special_tokens.values())
    boundary = bool(header and header in between) or any(t in between for t in control if t and not t.isspace())
    if boundary:
        return SystemPrompt("native")
    into = None
    conv = [{"role": "system", "content": SYSTEM}, user(), assistant(CONTENT), user(USER_2)]
    text, _ = prober.attempt(conv, add_generation_prompt=True)
    if text is not None and SYSTEM in text:
        into = "the last user turn" if text.find(SYSTEM) > text.find(CONTENT) else "the first user turn"
    return SystemPrompt("merged", separator=between, into=into)


def _suffix_with_visible(text: str, n: int) -> str:
    """The shortest suffix of `text` holding `n` non-whitespace characters (all of them if fewer), stripped."""
    count = 0
    for i in range(len(text) - 1, -1, -1):
        if not text[i].isspace():
            count += 1
            if count == n:
                return text[i:].rstrip() or text[i:]
    return text.strip()


def learn_tool_use(prober: Prober, rendered: str) -> ToolUse:
    """Tool conversations rendered with the tools the turn analysis used (`rendered` is its `tools.rendered`)."""
    tools = FLAT_TOOLS if "bare function schemas" in rendered else TOOLS
    u = [user()]
    roles = {role: _role_accepted(prober, role, tools) for role in ("tool", "ipython")}
    if rendered.startswith("raises: "):
        return ToolUse("raises", message=rendered[len("raises: "):], tool_role=roles["tool"],
                       ipython_role=roles["ipython"])
    mode = rendered.split(" ")[0]
    required = mode == "required"
    mode = "rendered" if required else mode
    detail = None
    if mode == "ignored":
        return ToolUse(mode, tool_role=roles["tool"], ipython_role=roles["ipython"])
    if not required:
        with_tools, _ = prober.attempt(u, add_generation_prompt=True, tools=tools)
        if with_tools is not None and NAME_A not in with_tools:
            detail = "the rendering changes but does not name the tool"
    arguments = _arguments(prober, tools)
    as_string = arguments["accepts"] == "string"
    result = {"role": "tool", "content": TOOL_RESULT, "tool_call_id": ID_A, "name": NAME_A}
    text, error = prober.attempt([*u, assistant(calls=[call(NAME_A, ARGS_A, ID_A, as_string)]), result],
                                 add_generation_prompt=True, tools=tools)
    if text is None:
        round_trip = f"raises: {error}"
    else:
        has_call, has_result = NAME_A in text.split(USER, 1)[-1], TOOL_RESULT in text
        round_trip = ("ok" if has_call and has_result else "tool call dropped" if has_result else
                      "tool result dropped" if has_call else "tool call and result dropped")
    return ToolUse(mode, required=required, detail=detail, arguments=arguments, round_trip=round_trip,
                   parallel_calls=_parallel(prober, tools, as_string), tool_role=roles["tool"],
                   ipython_role=roles["ipython"])


def _role_accepted(prober: Prober, role: str, tools: list[dict[str, Any]]) -> str:
    conv = [user(), assistant(calls=[call(NAME_A, ARGS_A, ID_A, False)]),
            {"role": role, "content": TOOL_RESULT, "tool_call_id": ID_A, "name": NAME_A}]
    text, error = prober.attempt(conv, add_generation_prompt=True, tools=tools)
    if text is None:
        return f"raises: {error}"
    return "accepted" if TOOL_RESULT in text else "dropped"


def _parallel(prober: Prober, tools: list[dict[str, Any]], as_string: bool) -> str:
    calls = [call(NAME_A, ARGS_A, ID_A, as_string), call(NAME_B, ARGS_B, ID_B, as_string)]
    conv = [user(), assistant(calls=calls),
            {"role": "tool", "content": TOOL_RESULT, "tool_call_id": ID_A, "name": NAME_A},
            {"role": "tool", "content": TOOL_RESULT + "_2", "tool_call_id": ID_B, "name": NAME_B}]
    text, error = prober.attempt(conv, add_generation_prompt=True, tools=tools)
    if text is None:
        return f"single (two calls raise: {error})"
    after = text.split(USER, 1)[-1]
    return "parallel" if NAME_B in after and "tsv_three" in after else "single (the second call is dropped)"


def _arguments(prober: Prober, tools: list[dict[str, Any]]) -> dict[str, str]:
    """A call rendered with arguments as an object and as a JSON string: which form comes out as clean JSON (the
    same renderings the call-syntax analysis makes)."""
    result: dict[str, str] = {}
    for form, as_string in (("object", False), ("string", True)):
        text, error = prober.attempt([user(), assistant(calls=[call(NAME_A, ARGS_A, ID_A, as_string)])], tools=tools)
        if text is None:
            result[form] = f"raises: {error}"
            continue
        after = text.split(USER, 1)[-1]
        if re.search(r'\\+"tsk_one', after):
            result[form] = "double-encoded"
        elif re.search(r'["\']?tsk_num["\']?\s*[:=]\s*4711', after):
            result[form] = "ok"
        else:
            result[form] = "dropped"
    ok = [form for form in ("object", "string") if result.get(form) == "ok"]
    result["accepts"] = "both" if len(ok) == 2 else ok[0] if ok else "neither"
    return result


def learn_switches(prober: Prober, reasoning: Any) -> ReasoningSwitches:
    """Each reasoning switch the template reads, with what each value changes in the prompt."""
    variables = set(template_variables(prober.spec.select_template()))
    u = [user()]
    prompt = prober.render(u, add_generation_prompt=True)
    base_without = prober.render(u)
    effects: dict[str, dict[str, str]] = {}
    for name, values in REASONING_SWITCHES.items():
        if name not in variables:
            continue
        out: dict[str, str] = {}
        for value in values:
            key = str(value).lower() if isinstance(value, bool) else str(value)
            text, error = prober.attempt(u, add_generation_prompt=True, **{name: value})
            without, _ = prober.attempt(u, **{name: value})
            if text is None:
                out[key] = f"raises: {error}"
            elif text == prompt:
                out[key] = "same as default"
            elif without == base_without and without is not None and text.startswith(without):
                out[key] = f"generation prompt: {text[len(without):]!r}"
            else:
                p = common_prefix(prompt, text)
                out[key] = f"changes the prompt at: {text[p:p + 60]!r}"
        effects[name] = out
    think = None
    if reasoning.kind == "tags":
        tagged = {"role": "assistant", "content": f"{reasoning.open}{REASONING}{reasoning.close}{CONTENT}"}
        text, error = prober.attempt([*u, tagged, user(USER_2)], add_generation_prompt=True)
        think = f"raises: {error}" if text is None else "kept" if REASONING in text else "stripped"
    return ReasoningSwitches(effects, think)
