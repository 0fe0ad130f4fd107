"""Learn how a template writes reasoning: the tags around it, whether the generation prompt opens it, and whether
past turns keep it.

Sources, best first: a rendering of an assistant message with `reasoning_content`, or with a `thinking` content
chunk (the tags are what surrounds the sentinel); the generation prompt (DeepSeek-R1 opens `<think>\\n`, V3.1 writes an empty `<think></think>`);
the generation prompt under each reasoning switch the template reads (`enable_thinking=False` writes an empty
block). When only an opening tag is seen, the closing tag is inferred from it (`<think>` → `</think>`) and kept
only if the template's own text contains it.
"""

from __future__ import annotations

import re
from typing import Any

from ..affixes import common_prefix
from ..template import template_literals, template_variables
from .markup import Markup
from .probes import CONTENT, REASONING, REASONING_SWITCHES, USER_2, Prober, assistant, user
from .syntax import ReasoningSyntax
from .turn import TurnProbe

def learn_reasoning(prober: Prober, markup: Markup, turn: TurnProbe) -> ReasoningSyntax:
    u = [user()]
    finished, _ = prober.attempt([*u, assistant(CONTENT, reasoning=REASONING)])
    if finished is None or REASONING not in finished:  # Mistral's reasoning models take it as a content chunk
        chunked, _ = prober.attempt([*u, {"role": "assistant", "content": [
            {"type": "thinking", "thinking": REASONING}, {"type": "text", "text": CONTENT}]}])
        if chunked is not None and "'type'" not in chunked and '"type"' not in chunked:  # not printed as data
            finished = chunked
    history = _history(prober, u)
    if finished is not None and REASONING in finished:
        body = turn.body_of(finished, REASONING)
        r = body.find(REASONING)
        c = body.find(CONTENT, r)
        if r >= 0 and c >= 0:
            lead, mid = body[:r], body[r + len(REASONING):c]
            restart = markup.first(markup.leading(turn.header)) if turn.header.strip() else None
            if restart is not None and restart.text in mid:  # the turn restarts: reasoning is its own message
                return ReasoningSyntax(history=history, reason="reasoning is written as a separate message, "
                                                               "and no channel format was found around it")
            open_, label = _tag_before(turn.body_prefix + lead, markup)
            close = _tag_after(mid, markup)
            if open_ and close:
                return ReasoningSyntax("tags", open_, close, label, _opens(turn.body_prefix, open_, close),
                                       history=history, source="rendering")
    for source, prefix in [("generation prompt", turn.body_prefix), *_switch_prefixes(prober, turn, markup)]:
        found = _tags_in_prefix(prefix, markup, prober)
        if found is not None:
            open_, close, label, inferred = found
            how = source + (" (closing tag inferred, found in the template text)" if inferred else "")
            return ReasoningSyntax("tags", open_, close, label, _opens(turn.body_prefix, open_, close),
                                   history=history, source=how)
    reason = None
    if history != "not rendered" or _mentions_reasoning(prober):
        reason = "the template handles reasoning, but no rendering shows the markers around it"
    return ReasoningSyntax(history=history, reason=reason)


def _history(prober: Prober, u: list[dict[str, Any]]) -> str:
    past = [*u, assistant(CONTENT, reasoning=REASONING), user(USER_2)]
    text, _ = prober.attempt(past, add_generation_prompt=True)
    last, _ = prober.attempt([*u, assistant(CONTENT, reasoning=REASONING)])
    if text is None or last is None:
        return "not rendered"
    if REASONING in text:
        return "kept"
    return "last turn only" if REASONING in last else "not rendered"


def _tag_before(lead: str, markup: Markup) -> tuple[str, str]:
    """(opening tag, label) from the text before the reasoning: `<think>\n`, or a token and a word (`<|channel>thought`)."""
    tag = markup.trailing(lead)
    if tag:
        return markup.spans(tag)[-1].text, ""
    spans = markup.spans(lead)
    if spans and _LABEL.fullmatch(lead[spans[-1].end:].strip()):
        return spans[-1].text, lead[spans[-1].end:].strip()
    text = lead.strip()
    return (text if _distinctive_text(text) else ""), ""


def _tag_after(mid: str, markup: Markup) -> str:
    stripped = mid.lstrip()
    first = markup.first(stripped)
    if first is not None and first.start == 0:
        return first.text
    text = mid.strip()
    return text if _distinctive_text(text) else ""


def _distinctive_text(text: str) -> bool:
    """Plain-text markers are used only when no prose would contain them by accident: several words, or brackets."""
    return len(text) >= 8 and (" " in text or text[:1] in "[<") and "\n" not in text


def _opens(body_prefix: str, open_: str, close: str) -> bool:
    i = body_prefix.rfind(open_)
    return i >= 0 and body_prefix.find(close, i + len(open_)) < 0


def _switch_prefixes(prober: Prober, turn: TurnProbe, markup: Markup) -> list[tuple[str, str]]:
    """What the generation prompt adds after the header under each reasoning switch the template reads."""
    variables = set(template_variables(prober.spec.select_template()))
    out: list[tuple[str, str]] = []
    for name, values in REASONING_SWITCHES.items():
        if name not in variables:
            continue
        for value in values:
            text, _ = prober.attempt([user()], add_generation_prompt=True, **{name: value})
            if text is None or not text.startswith(turn.before):
                continue
            rest = text[len(turn.before):]
            n = markup.snap(rest, common_prefix(rest, turn.header))
            out.append((f"generation prompt with {name}={value!r}", rest[n:]))
    return out


#: A word a template writes right after a reasoning opener, naming the block (`thought`).
_LABEL = re.compile(r"[A-Za-z][\w\-]{0,15}")

_PAIRS = ((re.compile(r"^<([A-Za-z_][\w:.\-]*)>$"), r"</\1>"),
          (re.compile(r"^\[([A-Z][A-Z_]*)\]$"), r"[/\1]"),
          (re.compile(r"^(<\|?|<｜)START_(\w+?)(\|?>|｜>)$"), r"\1END_\2\3"),
          (re.compile(r"^(<\|?)(\w+?)_start(\|?>)$"), r"\1\2_end\3"),
          (re.compile(r"^(<\|?)begin_of_(\w+?)(\|?>)$"), r"\1end_of_\2\3"))


def _tags_in_prefix(prefix: str, markup: Markup, prober: Prober) -> tuple[str, str, str, bool] | None:
    """(open, close, label, close inferred?) from text a generation prompt adds: a pair (empty, or holding only a
    label such as Gemma 4's `<|channel>thought\n<channel|>`), or an opener alone."""
    from .turn import pairs

    spans = markup.spans(prefix)
    if not spans:
        return None
    if len(spans) >= 2:
        between = prefix[spans[0].end:spans[1].start].strip()
        if (not between or _LABEL.fullmatch(between)) and pairs(spans[0].text, spans[1].text):
            return spans[0].text, spans[1].text, between, False
    open_ = spans[0].text
    after = prefix[spans[0].end:spans[1].start if len(spans) > 1 else len(prefix)].strip()
    label = after if _LABEL.fullmatch(after) else ""
    literals = "\0".join(template_literals(prober.spec.select_template()))
    for pattern, repl in _PAIRS:
        if pattern.match(open_):
            close = pattern.sub(repl, open_)
            if close in literals:
                return open_, close, label, True
    return None


def _mentions_reasoning(prober: Prober) -> bool:
    template = prober.spec.select_template()
    return "reasoning_content" in template or any(v in template_variables(template) for v in REASONING_SWITCHES)
