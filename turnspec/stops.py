"""What ends the assistant's turn, merged from every source, with an audit of where the sources disagree.

Runners usually compare against one `eos_token_id`. Real models have several (Llama 3: `<|end_of_text|>`,
`<|eom_id|>`, `<|eot_id|>`), configs on the Hub are incomplete, and the only source that is always right about
what the model was trained to write at the end of a turn is the chat template itself. So the template analysis
(turnspec.analysis) renders assistant turns (an answer, a tool call, a built-in tool call) and takes the first
control token the template writes after the assistant's text.

Channel formats are the exception that proves the rule: in Harmony (gpt-oss) `<|end|>` ends a *message* (the
analysis channel ends with it, and the final answer comes after), while only `<|return|>` and `<|call|>` end the
*turn*. The format (turnspec.formats) says which token ends a message and which end the turn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from .speclike import SpecLike

# End-of-document tokens: not the end of a chat turn, but a model that writes one has nothing more to say.
END_OF_TEXT_TOKENS = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>", "<|end▁of▁sentence|>")


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
    message_end: str = ""  # a token that ends one message of the turn, not the turn (Harmony's `<|end|>`)

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
        """Strings that end one assistant *message* in a rendered conversation (for masks): turn ends, and a
        channel format's message end."""
        extra = (self.message_end,) if self.message_end else ()
        return self.tokens + extra + self.strings

    def with_extra(self, tokens: Iterable[tuple[str, int | None]] = (), strings: Iterable[str] = ()) -> "StopSet":
        """A copy with user-pinned stops added (from a profile or the command line)."""
        stops = list(self.stops)
        for tok, tid in tokens:
            if all(s.token != tok for s in stops):
                stops.append(Stop(tok, tid, ("user",)))
        return StopSet(stops, list(self.end_of_text), tuple(dict.fromkeys((*self.strings, *strings))),
                       list(self.warnings), self.message_end)

    def as_dict(self) -> dict:
        return {
            "token_ids": sorted(self.token_ids),
            "stops": [{"token": s.token, "id": s.id, "sources": list(s.sources)} for s in self.stops],
            "end_of_text": [{"token": s.token, "id": s.id} for s in self.end_of_text],
            "strings": list(self.strings),
            "warnings": list(self.warnings),
        }


def _config_eos_ids(generation_config: dict) -> list[int]:
    value = generation_config.get("eos_token_id")
    if isinstance(value, int):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, int)]
    return []


def derive_stops(spec: SpecLike) -> StopSet:
    """Merge generation_config, tokenizer and template stops; a message end (Harmony's `<|end|>`) never ends the turn."""
    from .formats import format_of

    files = spec.files
    fmt = format_of(spec.analysis)
    message_end = fmt.message_end
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
    analysis = spec.analysis
    if analysis.error:
        warnings.append(f"the template could not be analyzed ({analysis.error}): stops come from the configs only")
    from_template = dict(analysis.turn_end_sources)
    for tok, source in from_template.items():
        add(tok, spec.token_id(tok), source)
    for tok in fmt.turn_end_tokens:
        if tok not in merged and (spec.token_id(tok) is not None or tok in spec.template):
            add(tok, spec.token_id(tok), f"template:{fmt.kind}")

    strings = tuple(analysis.end_strings)
    if strings:
        warnings.append(
            f"the template writes no control token after an assistant turn; stopping on the next turn's header {strings[0]!r}"
        )
    eos_everywhere = analysis.eos_after_every_rendering
    if eos_everywhere and from_template and eos_everywhere not in from_template:
        first = next(iter(from_template))
        warnings.append(f"the template writes {eos_everywhere} at the end of every rendering, not only after an answer: "
                        f"the assistant's turn ends with {first}, the first control token after its text")

    template_tokens = set(from_template)
    configured = {spec.id_to_token(t) for t in config_ids} | ({eos} if eos else set())
    for tok in sorted(template_tokens - configured):
        if tok == message_end:
            continue
        where = "generation_config.json eos_token_id" if files.generation_config else "the tokenizer's eos_token"
        warnings.append(
            f"the template ends assistant turns with {tok} (id {ids.get(tok)}), but {where} does not list it: "
            "runners that stop on the configured eos only will run past the end of the turn"
        )
    if eos and template_tokens and eos not in template_tokens and eos not in fmt.turn_end_tokens:
        warnings.append(f"the tokenizer's eos_token {eos} is not what the template ends turns with ({', '.join(sorted(template_tokens))})")
    if not files.generation_config and files.origin in ("folder", "hf-cache"):
        warnings.append("no generation_config.json: stops come from the tokenizer and the template only")

    stops: list[Stop] = []
    for tok, sources in merged.items():
        if message_end and tok == message_end:
            if fmt.kind == "template":
                longer = fmt.message_end_and_marker[1]
                what = "the reasoning's close" if longer == spec.analysis.reasoning.close else "a tool call's opener"
                warnings.append(
                    f"{'/'.join(sources)} lists {tok} as a stop, but this template also writes it to start "
                    f"{what} ({longer!r}): generation does not halt on it; the reader ends the turn there unless "
                    "the rest of that marker follows"
                )
                continue
            warnings.append(
                f"{'/'.join(sources)} lists {tok} as a stop, but in this template's channel format it ends a message, "
                "not the turn: stopping there would cut the answer after the reasoning message; turnspec does not "
                "stop on it"
            )
            continue
        stops.append(Stop(tok, ids.get(tok), tuple(sources)))

    in_stops = {s.token for s in stops}
    end_of_text = [Stop(t, spec.token_id(t), ("vocabulary",)) for t in END_OF_TEXT_TOKENS
                   if t not in in_stops and spec.token_id(t) is not None]
    return StopSet(stops, end_of_text, strings, warnings, message_end)
