"""Learn how a template frames an assistant turn: its header, what the generation prompt adds after it, the
markers around the answer, what ends the turn, and the other roles' headers (which a model must never write).

The turn end is the first control token after the assistant's text (after the answer's closing marker, if the
template wraps answers), not the last token of the rendering: Phi-3.5 writes `<|end|>` after the answer and an
`<|endoftext|>` at the very end of every rendering, and only `<|end|>` ends the turn.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..affixes import common_prefix
from ..template import template_variables
from .markup import Markup
from .probes import (ARGS_A, CONTENT, ID_A, NAME_A, REASONING_SWITCHES, SYSTEM, TOOL_RESULT, TOOLS, USER, USER_2,
                     Prober, align, assistant, call, user)
from .syntax import ContentSyntax, ReasoningSyntax


class AnalysisError(Exception):
    """The template cannot be analyzed (it does not render one user message and one answer)."""


class TurnProbe:
    """The default generation prompt, split into the assistant header and what the prompt adds after it."""

    def __init__(self, markup: Markup, before: str, header: str, body_prefix: str):
        self.markup = markup
        self.before = before  # the conversation before the assistant turn
        self.header = header
        self.body_prefix = body_prefix

    def body_of(self, finished: str, anchor: str = CONTENT, prompt: str | None = None) -> str:
        """The assistant turn in a finished rendering, after its header: found before `anchor` (the probe text the
        turn holds), else where the rendering parts from `prompt`, else after as much of the header as it shares."""
        limit = finished.rfind(anchor)  # the probe text in the turn, not a tool listing in the system prompt
        if self.header.strip() and limit >= 0:
            i = finished.rfind(self.header, 0, limit)
            if i >= 0:
                return finished[i + len(self.header):]
        if prompt is not None:
            return align(prompt, finished, self.markup).output
        rest = finished[len(self.before):] if finished.startswith(self.before) else finished
        return rest[self.markup.snap(rest, common_prefix(rest, self.header)):]


@dataclass
class TurnFacts:
    turn: TurnProbe
    generation_prompt: str
    finished: str  # [user, assistant(CONTENT)] rendered
    content_turn: str  # its assistant turn after the header
    prompt_supplied: tuple[str, ...] = ()  # what the prompt writes after the header, by default or under a switch


def learn_turn(prober: Prober, markup: Markup) -> TurnFacts:
    u = [user()]
    before = prober.render(u)
    prompt = prober.render(u, add_generation_prompt=True)
    if prompt.startswith(before):
        gen = prompt[len(before):]
    else:  # Phi-3.5 ends a conversation with <|endoftext|> unless asked for the generation prompt
        n = markup.snap(prompt, common_prefix(before, prompt))
        before, gen = prompt[:n], prompt[n:]
    if not gen.strip():  # the template opens the assistant turn whether asked or not (a llama.cpp Command-R7B)
        before, gen = _split_after_user_turn(before, markup)
    finished, error = prober.attempt([*u, assistant(CONTENT)])
    if finished is None or CONTENT not in finished:
        raise AnalysisError(f"the template does not render an assistant answer ({error or 'its text is dropped'})")
    # The header is the shortest of: where a finished turn parts from the prompt, the prompt's role header, and
    # what the prompt keeps under every reasoning switch (V3.1 writes </think> or <think> after <｜Assistant｜>).
    aligned = align(prompt, finished, markup)
    candidates = [gen]
    if aligned.prompt_rest and gen.endswith(aligned.prompt_rest):
        candidates.append(gen[: len(gen) - len(aligned.prompt_rest)])
    role = role_header(gen, markup, frozenset(s.text for s in markup.spans(finished)))
    if role:
        candidates.append(role + gen[len(role):][: len(gen[len(role):]) - len(gen[len(role):].lstrip())])
    switched = _switch_prompts(prober, before)
    for other in switched:
        candidates.append(gen[: markup.snap(gen, common_prefix(gen, other))])
    header = min((c for c in candidates if gen.startswith(c) and (c.strip() or c == gen)), key=len)
    turn = TurnProbe(markup, before, header, gen[len(header):])
    supplied = [g[len(header):] for g in (gen, *switched) if g.startswith(header) and g[len(header):].strip()]
    return TurnFacts(turn, gen, finished, turn.body_of(finished), tuple(dict.fromkeys(supplied)))


def _split_after_user_turn(text: str, markup: Markup) -> tuple[str, str]:
    """`text` cut after the token that ends the user's turn: what follows is a generation prompt written always."""
    at = text.rfind(USER)
    end = markup.first(text, at + len(USER)) if at >= 0 else None
    if end is None or not text[end.end:].strip() or text[at + len(USER):end.start].strip():
        return text, ""
    cut = end.end + len(text[end.end:]) - len(text[end.end:].lstrip("\n"))
    return text[:cut], text[cut:]


def _switch_prompts(prober: Prober, before: str) -> list[str]:
    """The generation prompt under each value of each reasoning switch the template reads."""
    variables = set(template_variables(prober.spec.select_template()))
    out = []
    for name, values in REASONING_SWITCHES.items():
        if name in variables:
            for value in values:
                text, _ = prober.attempt([user()], add_generation_prompt=True, **{name: value})
                if text is not None and text.startswith(before):
                    out.append(text[len(before):])
    return out


def role_header(text: str, markup: Markup, closers: frozenset[str] = frozenset()) -> str:
    """The leading tokens of a header and the role word between or after them (`<|im_start|>assistant`,
    `<|start_header_id|>user<|end_header_id|>`), never the message text after it, nor a token that opens a block
    closed later (`<think>` after `<assistant>`, when `</think>` is among `closers`)."""
    h = text.strip()
    spans = markup.spans(h)
    if not spans or spans[0].start != 0:
        return ""
    end = 0
    for i, span in enumerate(spans):
        if span.start != end or (i and any(pairs(span.text, c) for c in closers)):
            break
        end = span.end
        word = re.match(r"[A-Za-z][\w.\-]{0,23}", h[end:])
        if word:
            stop = end + word.end()
            attrs = _ATTRIBUTES.match(h, stop)  # `message role="assistant"` before the token (Kimi-K3)
            nxt = markup.first(h, attrs.end())
            if attrs.end() > stop and nxt is not None and nxt.start == attrs.end():
                stop = attrs.end()
            nxt = markup.first(h, stop)
            if stop == len(h) or (nxt is not None and nxt.start == stop) or h[stop].isspace():
                end = stop
    return h[:end]


#: Quoted attributes after a header's word, up to the token that ends the header: ` role="assistant"`.
_ATTRIBUTES = re.compile(r'(?: [A-Za-z_][\w\-]*="[^"<>\n]*")*')


def guard_form(header: str, markup: Markup) -> str:
    """The shortest form of a header that still names its role: up to the first role word after a token
    (`<|start_header_id|>user`, `<|start|>user`), else the whole run of tokens (`[INST]`, `<｜User｜>`)."""
    for span in markup.spans(header):
        word = re.match(r"[A-Za-z][\w.\-]{0,23}", header[span.end:])
        if word:
            return header[:span.end + word.end()]
    return header


def learn_content(facts: TurnFacts, reasoning: ReasoningSyntax, markup: Markup) -> tuple[ContentSyntax, str, int]:
    """(content markers, a plain-text prefix read only at the start, where the answer and its closer end)."""
    text = facts.content_turn
    c = text.find(CONTENT)
    lead = text[:c]
    if reasoning.kind == "tags":
        j = lead.rfind(reasoning.close)
        if j >= 0:
            lead = lead[j + len(reasoning.close):]
        elif lead.strip().startswith(reasoning.open):  # an opener the template writes even in history
            lead = lead.strip()[len(reasoning.open):]
    open_ = markup.trailing(lead)
    prefix = "" if open_ or not lead.strip() else lead.lstrip()
    after = c + len(CONTENT)
    close = ""
    if open_:
        first = markup.first(text, after)
        if first is not None and not text[after:first.start].strip() and pairs(open_, first.text):
            close = first.text
            after = first.end
    return ContentSyntax(open_, close), prefix, after


_START_WORD = re.compile(r"start|begin|open", re.IGNORECASE)
_END_WORD = re.compile(r"end|close|stop", re.IGNORECASE)


def pairs(open_: str, close: str) -> bool:
    """Whether `close` is the closing partner of `open_`: `<x>`/`</x>`, `[X]`/`[/X]`, `<|START_X|>`/`<|END_X|>`,
    `<|x>`/`<x|>` (Gemma 4)."""
    if close != open_ and close in (open_.replace("<", "</", 1), open_.replace("[", "[/", 1)):
        return True
    if open_.startswith("<|") and not open_.endswith("|>") and close == "<" + open_[2:-1] + "|>":
        return True
    a, b = _START_WORD.sub("", open_).lower(), _END_WORD.sub("", close).lower()
    return a == b and a != open_.lower()


def turn_end_after_answer(facts: TurnFacts, after: int, markup: Markup, past: str | None
                          ) -> tuple[str | None, str]:
    """The first control token after the answer (and its closing marker): in the final turn, else `past`, how
    history turns end (`history_turn_end`). A token the assistant's turn also writes before its answer is not one
    (Kimi-K3 closes its empty think block with the `<|close|>` that later closes the response): the model writes
    it before answering."""
    before = tokens_before_answer(facts, markup)
    for span in markup.spans(facts.content_turn[after:]):
        if span.text not in before:
            return span.text, "template"
    return (past, "template (history)") if past else (None, "")


def tokens_before_answer(facts: TurnFacts, markup: Markup) -> set[str]:
    """Control tokens the assistant's turn writes before its answer (the prompt's part included)."""
    lead = facts.turn.body_prefix + facts.content_turn[:facts.content_turn.find(CONTENT)]
    return {s.text for s in markup.spans(lead)}


def plain_turn_end(prober: Prober, facts: TurnFacts, after: int) -> str:
    """For templates that write no control token after an answer: the text they write after every answer, in the
    final turn and in history alike (MiniMax's `[e~[`, when its vocabulary is not at hand). '' when that is only
    whitespace (alpaca, falcon: the next turn's header is then the stop string)."""
    final = facts.content_turn[after:]
    three, _ = prober.attempt([user(), assistant(CONTENT), user(USER_2)])
    if three is None or CONTENT not in three:
        return ""
    history = three[three.find(CONTENT) + len(CONTENT):]
    common = final[:common_prefix(final, history)].strip()
    return common if len(common) >= 2 and "tsu_" not in common else ""


def history_turn_end(prober: Prober, content: ContentSyntax, markup: Markup, before: set[str] = frozenset()
                     ) -> str | None:
    """The first control token after a past answer (its closing marker, and tokens the turn writes before its
    answer, aside): how history turns end."""
    three, _ = prober.attempt([user(), assistant(CONTENT), user(USER_2)])
    if three is None or CONTENT not in three:
        return None
    rest = three[three.find(CONTENT) + len(CONTENT):]
    skipped = set(before) | {content.close} - {""}
    for span in markup.spans(rest):
        gap = rest[:span.start]
        for tok in skipped:
            gap = gap.replace(tok, "")
        if gap.strip() and not (before and _SHORT_WORDS.fullmatch(gap.strip())):
            return None  # text between the answer and the token: not how the turn ends
        if span.text not in skipped:
            return span.text
    return None


_SHORT_WORDS = re.compile(r"[\w\s]{1,40}")  # `response`, `message` between generic closers (Kimi-K3)


def eos_after_every_rendering(prober: Prober, facts: TurnFacts) -> str | None:
    """The eos token, when the template writes it at the end of every rendering (not only after an answer)."""
    eos = prober.spec.special_tokens.get("eos_token")
    if not eos:
        return None
    plain, _ = prober.attempt([user()])
    if plain is not None and plain.rstrip().endswith(eos) and facts.finished.rstrip().endswith(eos):
        return eos
    return None


# --------------------------------------------------------------------------------------------- guards
def learn_guards(prober: Prober, markup: Markup, facts: TurnFacts, ends: set[str], outputs: list[str]
                 ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(headers of other roles that a model must never write, stop strings for plain-text formats).

    A role's header is what a rendering has between the end of the previous turn (or BOS) and the role's text.
    A header that also occurs in the assistant's own output (Harmony's `<|start|>assistant`) is not a guard.
    """
    u = [user()]
    bos = prober.spec.special_tokens.get("bos_token") or ""
    delimiters = set(ends)
    headers: list[str] = []
    three, _ = prober.attempt([*u, assistant(CONTENT), user(USER_2)], add_generation_prompt=True)
    plain_next = ""
    if three is not None and CONTENT in three and USER_2 in three:
        a, b = three.find(CONTENT) + len(CONTENT), three.find(USER_2)
        first = markup.first(three, a)
        if first is not None and first.start < b and not three[a:first.start].strip():
            delimiters.add(first.text)  # the history form of the turn end (Harmony's <|end|>)
        headers.append(_after_delimiter(three[:b], a, delimiters, markup))
        plain_next = three[a:b].strip()
    system, _ = prober.attempt([{"role": "system", "content": SYSTEM}, *u], add_generation_prompt=True)
    if system is not None and SYSTEM in system:
        headers.append(_after_delimiter(system[:system.find(SYSTEM)], 0, delimiters, markup))
    tool_conv = [*u, assistant(calls=[call(NAME_A, ARGS_A, ID_A, False)]),
                 {"role": "tool", "content": TOOL_RESULT, "tool_call_id": ID_A, "name": NAME_A}]
    tool, _ = prober.attempt(tool_conv, add_generation_prompt=True, tools=TOOLS)
    if tool is not None and TOOL_RESULT in tool:
        headers.append(_after_delimiter(tool[:tool.find(TOOL_RESULT)], 0, delimiters, markup))
    headers.append(facts.turn.header)
    guards: list[str] = []
    for h in headers:
        h = _cut_sentinels(h).strip()
        if bos and h.startswith(bos) and markup.first(h, len(bos)) is not None \
                and markup.first(h, len(bos)).start == len(bos):
            h = h[len(bos):]  # BOS as its own token before the header (not SmolLM2's <|im_start|>, which is both)
        g = guard_form(role_header(h, markup), markup)
        if g and g != bos and g not in guards and g not in ends and not any(g in out for out in outputs):
            guards.append(g)
    guards = [g for g in guards if not any(o != g and o in g for o in guards)]  # the shorter one stops it already
    end_strings: tuple[str, ...] = ()
    if not ends and plain_next and "tsu_" not in plain_next:
        end_strings = (plain_next,)
    return tuple(guards), end_strings


def _after_delimiter(text: str, start: int, delimiters: set[str], markup: Markup) -> str:
    """`text` after the last turn end (or BOS) at or after `start`."""
    cut = start
    for span in markup.spans(text):
        if span.start >= start and span.text in delimiters:
            cut = span.end
    return text[cut:]


def _cut_sentinels(header: str) -> str:
    for sentinel in (NAME_A, ID_A, "tsu_", "tss_", "tsc_"):
        i = header.find(sentinel)
        if i >= 0:
            header = header[:i]
    return header
