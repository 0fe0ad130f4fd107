"""Learn how a template writes reasoning: the tags around it, whether the generation prompt opens it, and whether
past turns keep it.

Sources, best first: a rendering of an assistant message with `reasoning_content`, or with a `thinking` content
chunk, or in another shape the template's text reads (a `reasoning` field, a `thoughts` block) (the tags are what
surrounds the sentinel); the generation prompt (DeepSeek-R1 opens `<think>\\n`, V3.1 writes an empty `<think></think>`);
the generation prompt under each reasoning switch the template reads (`enable_thinking=False` writes an empty
block). When only an opening tag is seen, the closing tag is inferred from it (`<think>` → `</think>`) and kept
only if the template's own text contains it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from ..affixes import common_prefix
from ..template import template_literals, template_variables
from .markup import Markup
from .probes import CONTENT, REASONING, REASONING_SWITCHES, USER_2, Prober, assistant, user
from .syntax import ReasoningSyntax
from .turn import TurnProbe, pairs

def learn_reasoning(prober: Prober, markup: Markup, turn: TurnProbe) -> ReasoningSyntax:
    u = [user()]
    message = assistant(CONTENT, reasoning=REASONING)
    finished, _ = prober.attempt([*u, message])
    how = "rendering"
    if finished is None or REASONING not in finished:  # Mistral's reasoning models take it as a content chunk
        chunked, _ = prober.attempt([*u, {"role": "assistant", "content": [
            {"type": "thinking", "thinking": REASONING}, {"type": "text", "text": CONTENT}]}])
        if chunked is not None and "'type'" not in chunked and '"type"' not in chunked:  # not printed as data
            finished = chunked
    if finished is None or REASONING not in finished:
        for other, text, source in _other_shapes(prober, u):
            message, finished, how = other, text, source
            break
    history = _history(prober, u, message)
    if finished is not None and REASONING in finished:
        body = turn.body_of(finished, REASONING)
        r = body.find(REASONING)
        c = body.find(CONTENT, r)
        if r >= 0 and c >= 0:
            lead, mid = body[:r], body[r + len(REASONING):c]
            restart = markup.first(markup.leading(turn.header)) if turn.header.strip() else None
            if restart is not None and restart.text in {s.text for s in markup.spans(mid)}:  # the turn restarts:
                # reasoning is its own message (a token, not text inside a longer tag: Kimi-K3's <|open|>response<|sep|>)
                kind = _kind_token_message(lead, mid, turn.header, markup)
                if kind is not None:
                    return ReasoningSyntax("tags", *kind, "", False, history=history,
                                           source=how + " (reasoning is a message of its own, named by its "
                                                        "first token)")
                return ReasoningSyntax(history=history, reason="reasoning is written as a separate message, "
                                                               "and no channel format was found around it")
            open_, label = _tag_before(turn.body_prefix + lead, markup)
            close = _tag_after(mid, markup)
            if open_ and close:
                return ReasoningSyntax("tags", open_, close, label, _opens(turn.body_prefix, open_, close),
                                       history=history, source=how)
    for source, prefix in [("generation prompt", turn.body_prefix), *_switch_prefixes(prober, turn, markup)]:
        found = _tags_in_prefix(prefix, markup, prober)
        if found is not None:
            open_, close, label, inferred = found
            how = source + (" (closing tag inferred, found in the template text)" if inferred else "")
            return ReasoningSyntax("tags", open_, close, label, _opens(turn.body_prefix, open_, close),
                                   history=history, source=how)
    hidden = _hidden_markers(prober, markup, turn, finished)
    if hidden is not None:
        open_, close, how = hidden
        return ReasoningSyntax("tags", open_, close, "", _opens(turn.body_prefix, open_, close), history=history,
                               source=how)
    reason = None
    if history != "not rendered" or _mentions_reasoning(prober):
        reason = "the template handles reasoning, but no rendering shows the markers around it"
    return ReasoningSyntax(history=history, reason=reason)


def _hidden_markers(prober: Prober, markup: Markup, turn: TurnProbe, finished: str | None
                    ) -> tuple[str, str, str] | None:
    """(open, close, source) when no rendering shows reasoning but the template still tells its markers: an empty
    block it writes before the answer (Kimi-K2-Thinking's `<think></think>`), a pair it splits content on to cut
    reasoning out of history (`content.split('</think>')`), or a pair a reasoning switch adds to the prompt
    (SmolLM3's system prompt under /think, Granite 3.3's under thinking=True)."""
    if finished is not None and CONTENT in finished:
        body = turn.body_of(finished, CONTENT)
        lead = body[:body.find(CONTENT)]
        spans = markup.spans(lead)
        if len(spans) >= 2 and not lead[spans[-2].end:spans[-1].start].strip() and pairs(spans[-2].text,
                                                                                             spans[-1].text):
            return spans[-2].text, spans[-1].text, "an empty block the template writes before the answer"
    template = prober.spec.select_template()
    literals = set(template_literals(template))
    for m in _SPLIT.finditer(template):
        cut = m.group(1) or m.group(2)
        for other in (*literals, _opener_of(cut)):
            for open_, close in ((other, cut), (cut, other)):
                if open_ and pairs(open_, close) and markup.spans(close) and (markup.spans(open_) or
                                                                               open_ == _opener_of(close)):
                    return open_, close, f"the template cuts reasoning out of history at {cut!r}"
    return _switch_pair(prober, markup)


def _other_shapes(prober: Prober, u: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], str, str]]:
    """(message, rendering, source) for the other ways a template may read an assistant's reasoning, each told by the
    template's own text: the field `reasoning` (which transformers does not copy into `reasoning_content`), and
    content blocks whose type the template compares with a reasoning word (`block.type == 'thoughts'`), inside the
    list or the mapping key (`"blocks" in message.content`) the template reads."""
    template = prober.spec.select_template()
    if re.search(r"\.reasoning\b|\[['\"]reasoning['\"]\]", template):
        message = {"role": "assistant", "content": CONTENT, "reasoning": REASONING}
        text, _ = prober.attempt([*u, message])
        if text is not None and REASONING in text:
            yield message, text, "rendering of the message's `reasoning` field"
    types = list(dict.fromkeys(_BLOCK_TYPE.findall(template)))
    answers = [t for t in types if _ANSWER_WORD.fullmatch(t)] or ["text"]
    keys = list(dict.fromkeys(_CONTENT_KEY.findall(template)))
    for kind in (t for t in types if _REASONING_WORD.search(t)):
        shapes = [[{"type": kind, "text": REASONING, kind: REASONING}, {"type": a, "text": CONTENT}] for a in answers]
        for content in (*shapes, *({key: blocks} for key in keys for blocks in shapes)):
            message = {"role": "assistant", "content": content}
            text, _ = prober.attempt([*u, message])
            if text is not None and REASONING in text and "'type'" not in text and '"type"' not in text:
                yield message, text, f"rendering of a {kind!r} content block (a block type the template reads)"


#: `block.type == 'thoughts'`: a content block type the template compares with.
_BLOCK_TYPE = re.compile(r"""\.type\s*==\s*['"]([A-Za-z][\w\-]*)['"]""")
_REASONING_WORD = re.compile(r"think|thought|reason", re.IGNORECASE)
_ANSWER_WORD = re.compile(r"text|response|answer|output")
#: `"blocks" in message.content`: the key of a mapping content that holds the blocks.
_CONTENT_KEY = re.compile(r"""['"](\w+)['"]\s+in\s+message\.content\b""")


def _kind_token_message(lead: str, mid: str, header: str, markup: Markup) -> tuple[str, str] | None:
    """(open, close) when reasoning is a message of its own whose kind is the one token right after the header, and
    the answer's message is named by another (`<|begin|>assistant<|think|>…<|end|><|begin|>assistant<|content|>…`):
    the reasoning opens with its token and closes with the message end and the next header. None for headers that
    name the message with words (a channel format, learned by analysis.channels)."""
    head = header.strip()
    lead_spans = markup.spans(lead)
    if len(lead_spans) != 1 or lead.strip() != lead_spans[0].text:
        return None
    at = mid.find(head)
    end = mid[:at].strip()
    after = mid[at + len(head):].strip()
    after_spans = markup.spans(after)
    end_span = markup.first(end)
    if at <= 0 or end_span is None or end_span.text != end or len(after_spans) != 1 or \
            after != after_spans[0].text or after == lead_spans[0].text:
        return None
    return lead_spans[0].text, mid[:at + len(head)].lstrip()


def _opener_of(close: str) -> str:
    """The opening partner of a closing tag (`</think>` → `<think>`, `[/THINK]` → `[THINK]`), or ''."""
    m = re.fullmatch(r"</([A-Za-z_][\w:.\-]*)>|\[/([A-Z][A-Z_]*)\]", close)
    if m is None:
        return ""
    return f"<{m.group(1)}>" if m.group(1) else f"[{m.group(2)}]"


#: `x.split('</think>')`: a template that cuts reasoning out of content by its marker.
_SPLIT = re.compile(r"""\.split\(\s*(?:'([^'\n]+)'|"([^"\n]+)")\s*\)""")


def _switch_pair(prober: Prober, markup: Markup) -> tuple[str, str, str] | None:
    """The first pair of markers a reasoning switch adds to the prompt when turned on (instructions that tell the
    model how to write its reasoning), compared with the same prompt with the switch off."""
    variables = set(template_variables(prober.spec.select_template()))
    for name, values in REASONING_SWITCHES.items():
        if name not in variables or not isinstance(values[0], bool):
            continue
        on, _ = prober.attempt([user()], add_generation_prompt=True, **{name: True})
        off, _ = prober.attempt([user()], add_generation_prompt=True, **{name: False})
        if on is None or off is None or on == off:
            continue
        spans = markup.spans(on)
        for i, a in enumerate(spans):
            for b in spans[i + 1:i + 3]:
                if pairs(a.text, b.text) and on.count(a.text) > off.count(a.text):
                    return a.text, b.text, f"the prompt's instructions under {name}=True"
    return None


def _history(prober: Prober, u: list[dict[str, Any]], message: dict[str, Any]) -> str:
    past = [*u, message, user(USER_2)]
    text, _ = prober.attempt(past, add_generation_prompt=True)
    last, _ = prober.attempt([*u, message])
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
            if text is None:
                continue
            if text.startswith(turn.before):
                rest = text[len(turn.before):]
            elif turn.header.strip() and turn.header in text:  # the switch changed the system prompt too (SmolLM3)
                rest = text[text.rfind(turn.header):]
            else:
                continue
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
