"""What a template analysis finds, as plain data: the reader, the stops, the onboarding report and (later) grammars
are all built from these objects, so one place in the code knows how a template frames an assistant turn.

Literals keep the template's exact text (whitespace included); readers match them leniently on whitespace.
A `Pattern` is a tuple of literal strings and holes (`NAME`, `ID`, `INDEX`, `ANY`): the parts of a call that
change from one call to the next.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

from .facts import (Bos, ContinueFinal, GenerationPrompt, ReasoningSwitches, Roles, SystemPrompt, ToolUse,
                    learn_switches, learn_tool_use)

NAME = "\x00name"  # the function name
ID = "\x00id"  # a call id the template writes (`[CALL_ID]tsid00001`): optional when a model writes calls
INDEX = "\x00index"  # a number that counts calls (`functions.get_weather:0`)
ANY = "\x00any"  # a short run of text that differs between renderings (`string="true"` / `string="false"`)
KEY = "\x00key"  # in a value's closing, the parameter's own key (`<city>Paris</city>`)
HOLES = (NAME, ID, INDEX, ANY, KEY)

Pattern = tuple[str, ...]


def show(pattern: Pattern | str) -> str:
    """A pattern as readable text: holes as {name}, {id}, {index}, {…}."""
    if isinstance(pattern, str):
        return pattern
    names = {NAME: "{name}", ID: "{id}", INDEX: "{index}", ANY: "{…}", KEY: "{key}"}
    return "".join(names.get(p, p) for p in pattern)


def literal_text(pattern: Pattern | str) -> str:
    """The pattern's literal parts only (holes dropped); a string is its own literal."""
    if isinstance(pattern, str):
        return pattern
    return "".join(p for p in pattern if p not in HOLES)


def with_key(pattern: Pattern, key: str) -> Pattern:
    """The pattern with its KEY hole filled by one parameter's key (the closing `</{key}>` of `city` is `</city>`)."""
    return tuple(key if p == KEY else p for p in pattern)


@dataclass(frozen=True)
class ParamSyntax:
    """One argument of a tagged call: `key_prefix KEY key_suffix VALUE value_suffix`, arguments joined by `separator`.

    Values are text; readers type them back with the tool's JSON schema. `string_quote` wraps string values where
    the template quotes them (Gemma 4 writes `city:<|"|>Paris<|"|>`); `value_wrap` is what it writes around a value
    that holds markup characters (MiniCPM's CDATA), read as the value's bounds when a model writes it.
    `json_suffix`: where the key suffix differs between string and other values (`string="true"` / `"false"`), the
    one written before values the template writes as JSON: such a value is JSON even when no schema types it.
    A `KEY` hole in `value_suffix` closes each value with its own key (MiniMax-M3's `<city>Paris</city>`); there
    `nested` says the template writes objects as parameters of their own inside the value, and lists as repeated
    `list_item` parameters (`<tags><item>a</item><item>b</item></tags>`).
    """

    key_prefix: Pattern
    key_suffix: Pattern
    value_suffix: Pattern
    separator: str = ""
    open: str = ""  # before the first argument (`{`)
    close: str = ""  # after the last argument (`}`)
    string_quote: str = ""
    value_wrap: tuple[str, str] = ("", "")  # around values with `<`, `&` or line breaks (`<![CDATA[`, `]]>`)
    json_suffix: str = ""  # the key suffix the template writes only before JSON values (DSML's `" string="false">`)
    nested: bool = False  # objects and lists are written as nested parameters (with a KEY closing only)
    list_item: str = ""  # the key of each element of a nested list (`item`)


@dataclass(frozen=True)
class CallSyntax:
    """How the template writes tool calls in an assistant turn.

    shape "json": each call is a JSON object (`json_name`/`json_args` key paths, or the name as the only key), or
        the calls are one JSON list (`list_wrapped`).
    shape "tagged": `call_open` (ending just before the name) NAME `between` ARGUMENTS `call_close`, where the
        arguments are one JSON object (`args="json"`) or a run of tagged parameters (`args="params"`).
    shape "pythonic": a Python-like list of calls, `[name(key=value, ...), ...]`.
    A turn's calls sit between `section_open` and `section_close`, joined by `separator`.
    `triggers` are the distinctive literals that start the calls in a model's output; with none (Llama 3's bare
    JSON, functionary's `>>>` written by the generation prompt), the first call can only start the turn.
    """

    shape: str
    section_open: str = ""
    section_close: str = ""
    call_open: Pattern = ()
    call_close: Pattern = ()
    separator: str = ""
    triggers: tuple[str, ...] = ()
    json_name: tuple[str, ...] = ("name",)
    json_args: tuple[str, ...] = ("arguments",)
    name_is_key: bool = False
    list_wrapped: bool = False
    args_as_string: bool = False
    between: Pattern = ()
    args: str = "json"
    params: ParamSyntax | None = None

    @property
    def start_anchored(self) -> bool:
        return not self.triggers

    def describe(self) -> str:
        """One line for reports: the shape of one call, with its section."""
        if self.shape == "json":
            body = ("[" if self.list_wrapped else "") + (
                '{"{name}": {arguments}}' if self.name_is_key else
                "{" + _json_path(self.json_name, '"{name}"') + ", " +
                _json_path(self.json_args, '"{arguments}"' if self.args_as_string else "{arguments}") + "}")
            body += ", …]" if self.list_wrapped else ""
            call = show(self.call_open) + body + show(self.call_close)
        elif self.shape == "pythonic":
            one = "{name}" + show(self.between) + "(key=value, …)"
            call = show(self.call_open) + (f"[{one}, …]" if self.list_wrapped else one) + show(self.call_close)
        else:
            if self.args == "params" and self.params is not None:
                p = self.params
                args = (p.open + show(p.key_prefix) + "{key}" + show(p.key_suffix) + "{value}" + show(p.value_suffix)
                        + p.separator + "…" + p.close)
            else:
                args = "{arguments}"
            call = show(self.call_open) + "{name}" + show(self.between) + args + show(self.call_close)
        return self.section_open + call + self.section_close


def _json_path(path: tuple[str, ...], value: str) -> str:
    inner = f'"{path[-1]}": {value}'
    for key in reversed(path[:-1]):
        inner = f'"{key}": {{{inner}}}'
    return inner


@dataclass(frozen=True)
class ReasoningSyntax:
    """How reasoning is written. kind: "none", "tags" (`open`…`close`), or "channels" (a message of its own, on the
    reasoning channel of `TemplateAnalysis.channels`).

    `prompt_opens`: the default generation prompt leaves reasoning open (the output starts inside it).
    `history`: what the template does with reasoning of past turns ("kept", "dropped", "last turn only", "not rendered").
    `label`: readers drop it when a block starts with it followed by whitespace, and read the block as is otherwise.
    """

    kind: str = "none"
    open: str = ""
    close: str = ""
    label: str = ""  # a word the template writes right after `open` (Gemma 4's `<|channel>thought`): not reasoning
    prompt_opens: bool = False
    history: str = "not rendered"
    source: str = ""  # how the tags were found (rendering, generation prompt, a switch, inferred)
    reason: str | None = None  # why reasoning is not readable, when the template has some

    @property
    def readable(self) -> bool:
        return self.kind != "none" or self.reason is None


@dataclass(frozen=True)
class ContentSyntax:
    """Markers around the answer text (`<|START_RESPONSE|>`…`<|END_RESPONSE|>`), when the template writes any."""

    open: str = ""
    close: str = ""


@dataclass(frozen=True)
class ToolSyntax:
    """Tool calling: whether tools reach the prompt, and how calls are written (primary syntax first)."""

    rendered: str = "unknown"  # "rendered", "ignored", "raises: …", "required"
    calls: tuple[CallSyntax, ...] = ()
    parallel: bool | None = None
    reason: str | None = None  # why calls are not readable

    @property
    def readable(self) -> bool:
        return bool(self.calls)


@dataclass(frozen=True)
class ChannelSyntax:
    """A turn written as several messages, each with a header that says where it goes (Harmony, muse_glimmer):

        start role HEADER message BODY message_end  start role HEADER message BODY turn_end

    A header names a channel (`channel` token, then a word: `<|channel|>analysis`) and/or a recipient
    (`recipient` then a word: `to=self`, `to=functions.get_weather`). `reasoning` and `content` are the words
    that mark reasoning and the answer (a channel, or a recipient where the format has no channel token); a
    recipient that is neither, nor the role itself, makes the message one tool call: `call_prefix` is what the
    template writes before a function name, `call_header` what it writes after it. `call_body` says how the body
    holds the call: the arguments as one JSON object, or `body_calls`, a call syntax of its own (muse_glimmer's
    `<atem:function_calls>` block).
    `message_end` ends a message, not the turn; `turn_ends` end the turn. `header_tokens`: other control tokens a
    header may hold (Harmony's `<|constrain|>`).
    """

    start: str
    role: str
    message: str
    message_end: str
    turn_ends: tuple[str, ...]
    channel: str = ""
    recipient: str = ""
    reasoning: str = ""
    content: str = ""
    call_prefix: str = ""
    call_header: str = ""
    body_calls: CallSyntax | None = None
    header_tokens: tuple[str, ...] = ()

    @property
    def head(self) -> str:
        """What starts every message of the assistant (`<|start|>assistant`)."""
        return self.start + self.role

    def header(self, word: str) -> str:
        """The header text that sends a message to `word` (a channel, or a recipient)."""
        return f"{self.channel}{word}" if self.channel else f" {self.recipient}{word}"

    @property
    def tokens(self) -> tuple[str, ...]:
        """Every control token of the format: none of them may appear in visible text."""
        found = (self.start, self.message_end, self.message, self.channel, *self.header_tokens, *self.turn_ends)
        return tuple(dict.fromkeys(t for t in found if t))

    def describe(self) -> str:
        by = "channel" if self.channel else "recipient"
        call = (f"{self.head} {self.recipient}{self.call_prefix}{{name}}{self.call_header}{self.message}"
                + ("{arguments}" if self.body_calls is None else self.body_calls.describe())
                + (self.turn_ends[-1] if self.turn_ends else ""))
        return (f"messages {self.head}…{self.message}…{self.message_end}; reasoning on {by} {self.reasoning!r}, "
                f"the answer on {by} {self.content!r}; a call: {call}")


@dataclass(frozen=True)
class TemplateAnalysis:
    """Everything turnspec learned about one template by rendering probe conversations.

    `assistant_header`: how the generation prompt starts the assistant's turn; the reader takes what a prompt adds
    after its last header (`<think>\\n`, `>>>`) as already read. `turn_ends`: what the template writes right after
    an assistant turn (the first control token after the answer, after a tool call). `guards`: other roles'
    headers, which a model must never write. `end_strings`: next-turn headers for templates that end turns with
    plain text only.
    """

    template_sha256: str
    generation_prompt: str = ""
    assistant_header: str = ""
    turn_ends: tuple[str, ...] = ()
    turn_end_sources: dict[str, str] = field(default_factory=dict)
    history_turn_ends: tuple[str, ...] = ()  # what ends a past assistant turn (Harmony's <|end|>), for masks
    prompt_supplied: tuple[str, ...] = ()  # what generation prompts write after the header (`<think>\n\n</think>\n\n`)
    eos_after_every_rendering: str | None = None
    guards: tuple[str, ...] = ()
    end_strings: tuple[str, ...] = ()
    reasoning: ReasoningSyntax = ReasoningSyntax()
    content: ContentSyntax = ContentSyntax()
    content_prefix: str = ""  # plain text answers start with (functionary's `all\n`): read at the turn start only
    body_prefix: str = ""  # what the default generation prompt adds after the header (`<think>\n`)
    tools: ToolSyntax = ToolSyntax()
    channels: ChannelSyntax | None = None  # the turn is a run of messages with channel/recipient headers
    control_tokens: tuple[str, ...] = ()
    requires: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    error: str | None = None  # the template could not be analyzed at all
    elapsed_ms: float = 0.0
    # Facts learned before the turn analysis (turnspec.analysis.facts): they stand even when it fails.
    system: SystemPrompt = SystemPrompt()
    roles: Roles = Roles()
    generation: GenerationPrompt = GenerationPrompt()
    bos: Bos = Bos()
    continue_final_message: ContinueFinal = ContinueFinal()

    # --- facts that cost renderings only some callers need: learned on first use, then kept with the analysis ---
    @property
    def prober(self) -> Any:
        """The Prober that made this analysis (its renderings are reused by the lazy facts)."""
        prober = self.__dict__.get("_prober")
        if prober is None:
            from ..errors import TurnspecError

            raise TurnspecError("this template analysis was not made by rendering probes: it has no lazy facts")
        return prober

    @cached_property
    def tool_use(self) -> ToolUse:
        """Tool conversations: argument forms, round trip, parallel calls, tool and ipython roles."""
        return learn_tool_use(self.prober, self.tools.rendered)

    @cached_property
    def reasoning_switches(self) -> ReasoningSwitches:
        """What each reasoning switch value changes in the prompt; `<think>` in a past answer's content."""
        return learn_switches(self.prober, self.reasoning)

    @cached_property
    def universal_mask(self) -> tuple[bool, tuple[str, ...]]:
        """(whether turnspec's universal assistant mask is exact on this template's probe conversations, notes)."""
        from .masks import learn_universal_mask

        return learn_universal_mask(self.prober, self.reasoning.kind)

    @cached_property
    def mask_by_header(self) -> bool:
        """Whether finding the assistant header gives the same mask as aligning with each turn's prompt, on every
        probe shape the template renders (turnspec.analysis.masks): masks may then be read by structure."""
        from .masks import learn_mask_by_header

        return learn_mask_by_header(self.prober, self)

    @cached_property
    def exposed(self) -> tuple[str, ...]:
        """Request values the template writes into its headers (turnspec.analysis.exposed)."""
        from .exposed import learn_exposed

        return learn_exposed(self.prober, self.prober.spec.markup)

    @cached_property
    def prefix(self) -> Any:
        """Whether re-rendering after appending a message keeps earlier tokens (turnspec.analysis.prefix)."""
        from .prefix import prefix_report

        return prefix_report(self.prober.spec)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (holes shown as {name}, {id}, …); `channels` only where the template has them."""
        out = asdict(self)
        if self.channels is None:
            del out["channels"]
        else:
            out["channels"]["describe"] = self.channels.describe()
            if self.channels.body_calls is not None:
                out["channels"]["body_calls"]["describe"] = self.channels.body_calls.describe()
        out["tools"]["calls"] = [dict(asdict(c), describe=c.describe()) for c in self.tools.calls]
        return _readable(out)


def _readable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _readable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, str) for v in value) and any(v in HOLES for v in value):
            return show(tuple(value))
        return [_readable(v) for v in value]
    return value
