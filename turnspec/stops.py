"""What ends the assistant's turn, merged from every source, with an audit of where the sources disagree.

Runners usually compare against one `eos_token_id`. Real models have several (Llama 3: `<|end_of_text|>`,
`<|eom_id|>`, `<|eot_id|>`), configs on the Hub are incomplete, and the only source that is always right about
what the model was trained to write at the end of a turn is the chat template itself. So turnspec renders a
conversation that ends with an assistant message and reads the control token the template writes after it.

Harmony (gpt-oss) is the exception that proves the rule: `<|end|>` ends a *message* (the analysis channel ends
with it, and the final answer comes after), while only `<|return|>` and `<|call|>` end the *turn*.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from .spec import ModelSpec

HARMONY_TURN_ENDS = ("<|return|>", "<|call|>")
HARMONY_MESSAGE_END = "<|end|>"
# End-of-document tokens: not the end of a chat turn, but a model that writes one has nothing more to say.
END_OF_TEXT_TOKENS = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>", "<|end▁of▁sentence|>")
# Control-token shapes, for templates given without a vocabulary (e.g. the corpus).
_TOKEN_AT_END = re.compile(r"(<\|[^<>|\s]+\|>|<[/a-zA-Z_][^<>\s]*>|\[/?[A-Z_]+\]|<｜[^<>]+｜>)\s*$")
_PROBE = "TURNSPEC_PROBE_7f3a"


@dataclass(frozen=True)
class Stop:
    """One stop token and where turnspec found it."""

    token: str
    id: int | None
    sources: tuple[str, ...]


@dataclass
class StopSet:
    """End-of-turn token ids and stop strings, with sources and an audit.

    `token_ids` end the assistant's turn. `end_of_text` tokens (`<|endoftext|>` and kin) are not turn ends,
    but generation must halt on them too: `halt_ids` is what an engine should stop on.
    """

    stops: list[Stop] = field(default_factory=list)
    end_of_text: list[Stop] = field(default_factory=list)
    strings: tuple[str, ...] = ()
    warnings: list[str] = field(default_factory=list)
    harmony: bool = False

    @property
    def token_ids(self) -> frozenset[int]:
        return frozenset(s.id for s in self.stops if s.id is not None)

    @property
    def tokens(self) -> tuple[str, ...]:
        return tuple(s.token for s in self.stops)

    @property
    def halt_ids(self) -> frozenset[int]:
        return self.token_ids | frozenset(s.id for s in self.end_of_text if s.id is not None)

    def message_ends(self) -> tuple[str, ...]:
        """Strings that end one assistant *message* in a rendered conversation (for masks): turn ends, and Harmony's `<|end|>`."""
        extra = (HARMONY_MESSAGE_END,) if self.harmony else ()
        return self.tokens + extra + self.strings

    def with_extra(self, tokens: Iterable[tuple[str, int | None]] = (), strings: Iterable[str] = ()) -> "StopSet":
        """A copy with user-pinned stops added (from a profile or the command line)."""
        stops = list(self.stops)
        for tok, tid in tokens:
            if all(s.token != tok for s in stops):
                stops.append(Stop(tok, tid, ("user",)))
        return StopSet(stops, list(self.end_of_text), tuple(dict.fromkeys((*self.strings, *strings))),
                       list(self.warnings), self.harmony)

    def as_dict(self) -> dict:
        return {
            "token_ids": sorted(self.token_ids),
            "stops": [{"token": s.token, "id": s.id, "sources": list(s.sources)} for s in self.stops],
            "end_of_text": [{"token": s.token, "id": s.id} for s in self.end_of_text],
            "strings": list(self.strings),
            "warnings": list(self.warnings),
        }


def is_harmony(template: str) -> bool:
    """Harmony templates frame messages with channels; the template text says so, whatever the model's name."""
    return "<|channel|>" in template and "<|message|>" in template


def _config_eos_ids(generation_config: dict) -> list[int]:
    value = generation_config.get("eos_token_id")
    if isinstance(value, int):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, int)]
    return []


def _trailing_token(text: str, known: Iterable[str]) -> str | None:
    """The control token a rendered conversation ends with (after trailing whitespace), if any."""
    stripped = text.rstrip()
    for tok in sorted(known, key=len, reverse=True):
        if tok and not tok.isspace() and stripped.endswith(tok):
            return tok
    m = _TOKEN_AT_END.search(stripped)
    return m.group(1) if m else None


_PROBE_TOOL = {"type": "function", "function": {"name": "probe_fn", "description": "Probe.",
               "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}}}


def _probe_conversations() -> list[tuple[str, list[dict], dict]]:
    """Conversations ending with an assistant message, each with the template kwargs that shape it."""
    tool_call = {"type": "function", "id": "call_probe", "function": {"name": "probe_fn", "arguments": {"x": 1}}}
    answer = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": _PROBE}]
    call = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "", "tool_calls": [tool_call]}]
    return [
        ("template", answer, {}),
        ("template", [{"role": "system", "content": "S"}, *answer], {}),
        ("template:tool_call", call, {"tools": [_PROBE_TOOL]}),
        # Llama 3.1 ends a built-in tool call with <|eom_id|> ("end of message, expect a tool result").
        ("template:builtin_tool_call", call, {"tools": [_PROBE_TOOL], "builtin_tools": ["code_interpreter"]}),
    ]


def template_turn_ends(spec: "ModelSpec") -> tuple[dict[str, str], list[str]]:
    """Render conversations ending with an assistant message; return {token: source} of what the template writes after it.

    Also returns the probes that failed (a template may reject a system role or tool calls) for the report.
    A probe that fails without tools is retried with a tool list: `tool_use` templates iterate `tools` unguarded.
    """
    found: dict[str, str] = {}
    failures: list[str] = []
    known = spec.control_tokens()
    for source, conversation, kwargs in _probe_conversations():
        text = None
        for attempt in (kwargs, {**kwargs, "tools": [_PROBE_TOOL]}):
            try:
                text = spec.render(conversation, **attempt)
                break
            except Exception as exc:  # a template rejecting one probe shape is a finding, not a failure
                error = f"{source}: {exc}"
        if text is None:
            failures.append(error)
            continue
        if source == "template" and _PROBE not in text:
            continue
        tail = text[text.rfind(_PROBE) + len(_PROBE):] if _PROBE in text else text
        tok = _trailing_token(tail, known)
        if tok is not None and tok not in found:
            found[tok] = source
    return found, failures


def next_turn_strings(spec: "ModelSpec") -> tuple[str, ...]:
    """For templates that end turns with plain text: the next turn's header (e.g. "### Instruction:") as a stop string."""
    conv = [{"role": "user", "content": "U1_" + _PROBE}, {"role": "assistant", "content": "A1_" + _PROBE},
            {"role": "user", "content": "U2_" + _PROBE}]
    try:
        text = spec.render(conv)
    except Exception:
        return ()
    a, u = text.find("A1_" + _PROBE), text.find("U2_" + _PROBE)
    if a < 0 or u < 0:
        return ()
    between = text[a + len("A1_" + _PROBE):u].strip()
    return (between,) if between else ()


def derive_stops(spec: "ModelSpec") -> StopSet:
    """Merge generation_config, tokenizer and template stops; Harmony's `<|end|>` never ends the turn."""
    files = spec.files
    harmony = is_harmony(spec.template)
    merged: dict[str, list[str]] = {}
    ids: dict[str, int | None] = {}
    warnings: list[str] = []

    def add(token: str | None, tid: int | None, source: str) -> None:
        if token is None:
            warnings.append(f"{source} lists token id {tid}, which is not in the vocabulary")
            return
        merged.setdefault(token, [])
        if source not in merged[token]:
            merged[token].append(source)
        if ids.get(token) is None:
            ids[token] = tid

    config_ids = _config_eos_ids(files.generation_config)
    for tid in config_ids:
        add(spec.id_to_token(tid), tid, "generation_config")
    eos = files.special_tokens.get("eos_token")
    if eos:
        add(eos, spec.token_id(eos), "tokenizer")
    from_template, _failures = template_turn_ends(spec)
    for tok, source in from_template.items():
        add(tok, spec.token_id(tok), source)
    if harmony:
        for tok in HARMONY_TURN_ENDS:
            if spec.token_id(tok) is not None or tok in spec.template:
                add(tok, spec.token_id(tok), "harmony")

    strings: tuple[str, ...] = ()
    if not from_template:
        strings = next_turn_strings(spec)
        if strings:
            warnings.append(
                f"the template writes no control token after an assistant turn; stopping on the next turn's header {strings[0]!r}"
            )

    template_tokens = set(from_template)
    configured = {spec.id_to_token(t) for t in config_ids} | ({eos} if eos else set())
    for tok in sorted(template_tokens - configured):
        if harmony and tok == HARMONY_MESSAGE_END:
            continue
        where = "generation_config.json eos_token_id" if files.generation_config else "the tokenizer's eos_token"
        warnings.append(
            f"the template ends assistant turns with {tok} (id {ids.get(tok)}), but {where} does not list it: "
            "runners that stop on the configured eos only will run past the end of the turn"
        )
    if eos and template_tokens and eos not in template_tokens and not (harmony and eos in HARMONY_TURN_ENDS):
        warnings.append(f"the tokenizer's eos_token {eos} is not what the template ends turns with ({', '.join(sorted(template_tokens))})")
    if not files.generation_config and files.origin in ("folder", "hf-cache"):
        warnings.append("no generation_config.json: stops come from the tokenizer and the template only")

    stops: list[Stop] = []
    for tok, sources in merged.items():
        if harmony and tok == HARMONY_MESSAGE_END:
            warnings.append(
                f"{'/'.join(sources)} lists {tok} as a stop, but in Harmony it ends a message, not the turn: "
                "stopping there would cut the answer after the analysis channel; turnspec does not stop on it"
            )
            continue
        stops.append(Stop(tok, ids.get(tok), tuple(sources)))

    in_stops = {s.token for s in stops}
    end_of_text = [Stop(t, spec.token_id(t), ("vocabulary",)) for t in END_OF_TEXT_TOKENS
                   if t not in in_stops and spec.token_id(t) is not None]
    return StopSet(stops, end_of_text, strings, warnings, harmony)
