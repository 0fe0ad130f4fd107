"""Token ids for a conversation: the generation boundary, a single BOS, and which tokens the assistant wrote.

The assistant mask comes from `{% generation %}` where the template has the tag (as transformers does it), and
otherwise from turnspec's universal method, which works on any template. For assistant message i, the model
generates what follows the longest common prefix of render(messages[:i], add_generation_prompt=True) and the
full rendering (cut at a token boundary), up to and including the first turn end the template writes after the
message's own texts (its answer, reasoning, call names and arguments, found in the rendering). The span never
reaches back before the previous message's text nor past where the next message's rendering starts (found by
rendering the conversation again with the next message's text replaced by a sentinel): text of another role is
never in the mask, even where this message's texts recur later (a call's argument in the tool result). By default
what a generation prompt supplies at inference (the assistant header, an empty `<think>\n\n</think>\n\n` that
Qwen3 writes into turns without reasoning) is not in the mask either.

`mask_exact` is False, with a note naming the message and the reason, when the two renderings part before the
previous message ends (the template renders history differently from how its prompt opens a turn: the span then
starts at the assistant's header or first own text), when no turn end follows the message, and when the template
does not render a part of it (its reasoning, its content, its tool calls): the model is not trained to write that.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

from .affixes import common_prefix

if TYPE_CHECKING:
    from .speclike import SpecLike


@dataclass
class Encoding:
    """A tokenized conversation.

    `generation_start` is `len(ids)` when the generation prompt was added: the index of the first token the model
    will write. `assistant_mask[k]` is 1 for tokens the assistant wrote (content and its end-of-turn token).
    """

    ids: list[int]
    text: str
    generation_start: int | None = None
    assistant_mask: list[int] | None = None
    mask_method: str | None = None  # "generation-tag" or "universal"
    mask_exact: bool | None = None
    mask_notes: list[str] = field(default_factory=list)
    bos_added: bool = False
    # The assistant-written character spans of `text` that the mask was made from.
    char_spans: list[tuple[int, int]] = field(default_factory=list)
    # Control strings of `text` that came from message content and were tokenized as text
    # (specials_in_content="text"; see turnspec.content_text), and notes on those a template reads.
    content_controls: list[tuple[int, int]] = field(default_factory=list)
    content_notes: list[str] = field(default_factory=list)

    def assistant_spans(self) -> list[tuple[int, int]]:
        """Token index ranges [start, end) where the mask is 1."""
        spans, start = [], None
        for k, m in enumerate(self.assistant_mask or []):
            if m and start is None:
                start = k
            if not m and start is not None:
                spans.append((start, k))
                start = None
        if start is not None:
            spans.append((start, len(self.assistant_mask or [])))
        return spans


class _CharToToken:
    """transformers' `char_to_token` on a plain offsets list: the token covering a character, or None."""

    def __init__(self, offsets: Sequence[tuple[int, int]]):
        self.offsets = offsets
        self.starts = [a for a, _ in offsets]

    def __call__(self, char: int) -> int | None:
        k = bisect.bisect_right(self.starts, char) - 1
        while k >= 0:
            a, b = self.offsets[k]
            if a <= char < b:
                return k
            if b <= char:
                return None
            k -= 1
        return None


def spans_to_mask(spans: Sequence[tuple[int, int]], offsets: Sequence[tuple[int, int]], n: int) -> list[int]:
    """Character spans -> token mask, by the same rule transformers applies to `{% generation %}` spans."""
    mask = [0] * n
    char_to_token = _CharToToken(offsets)
    for start_char, end_char in spans:
        start = char_to_token(start_char)
        end = char_to_token(end_char - 1)
        if start is None:
            break
        for k in range(start, end + 1 if end else n):
            mask[k] = 1
    return mask


def own_texts(message: dict[str, Any]) -> list[str]:
    """The texts a message holds, as a template may render them: for an assistant, its answer, reasoning, and each
    call's name and argument values; for other roles, their content."""
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    out = [content if isinstance(content, str) else ""]
    if message.get("role") == "assistant":
        for key in ("reasoning_content", "thinking", "reasoning"):
            if isinstance(message.get(key), str):
                out.append(message[key])
                break
        for call in message.get("tool_calls") or []:
            out += _call_texts(call)
    return [t.strip() for t in out if isinstance(t, str) and t.strip()]


def _call_texts(call: Any) -> list[str]:
    """A tool call's name and argument values, as a template may render them."""
    fn = call.get("function", call) if isinstance(call, dict) else {}
    out = [fn["name"]] if isinstance(fn.get("name"), str) else []
    args = fn.get("arguments")
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            args = {}
    if isinstance(args, dict):
        out += [v if isinstance(v, str) else json.dumps(v) for v in args.values()]
    return out


def _find_texts(texts: list[str], text: str, start: int, stop: int | None = None, markup: Any = None
                ) -> tuple[int, int] | None:
    """(first, end) of the given texts where each first occurs at or after `start` (and before `stop`); with
    `markup`, never inside a control token (a user's "x" is not the x of `<|end_of_text|>`)."""
    first = last = None
    for t in texts:
        pos = text.find(t, start, stop)
        while markup is not None and pos >= 0 and markup.snap(text, pos + 1) < pos + 1:
            pos = text.find(t, pos + 1, stop)
        if pos < 0:
            continue
        first = pos if first is None else min(first, pos)
        last = pos + len(t) if last is None else max(last, pos + len(t))
    return (first, last) if first is not None else None


def universal_spans(
    spec: SpecLike, messages: Sequence[dict[str, Any]], full_text: str, render_kwargs: dict[str, Any],
    *, mask_prompt_supplied: bool = True,
) -> tuple[list[tuple[int, int]], bool, list[str]]:
    """Character spans of assistant-written text in `full_text`, by alignment with each turn's prompt (see module doc).

    Plain conversations (text messages of system, user and assistant, no template variables) on a template whose
    probes show the same spans either way are read by structure instead, without rendering each turn's prompt:
    the k-th assistant header starts the k-th assistant turn (`mask_by_header`)."""
    if not render_kwargs and plain_conversation(messages, spec.markup) and mask_by_header(spec):
        spans = spans_by_header(spec, messages, full_text, mask_prompt_supplied=mask_prompt_supplied)
        if spans is not None:
            return spans, True, []
    return _spans(spec, messages, full_text, render_kwargs, mask_prompt_supplied=mask_prompt_supplied)


def spans_by_header(spec: SpecLike, messages: Sequence[dict[str, Any]], full_text: str, *,
                    mask_prompt_supplied: bool) -> list[tuple[int, int]] | None:
    """Each assistant turn from its header to its turn end, found by structure; None when the rendering does not
    have one header per assistant message with a turn end before the next header."""
    analysis = spec.analysis
    raw_header = analysis.assistant_header
    ends = set(analysis.history_turn_ends) | set(analysis.turn_ends)
    supplied = [x for x in analysis.prompt_supplied if x.strip()] if mask_prompt_supplied else []
    if not raw_header.strip():
        return None
    heads, at = [], full_text.find(raw_header)
    while at >= 0:
        heads.append(at)
        at = full_text.find(raw_header, at + len(raw_header))
    if len(heads) != sum(m.get("role") == "assistant" for m in messages):
        return None
    spans = []
    for k, h in enumerate(heads):
        start = h + len(raw_header)
        stop = heads[k + 1] if k + 1 < len(heads) else len(full_text)
        end = _turn_end(full_text, start, stop, ends)
        if end is None:
            return None
        if supplied:
            start = _skip_supplied(full_text, start, end, "", supplied)
        spans.append((start, end))
    return spans


def _spans(spec: SpecLike, messages: Sequence[dict[str, Any]], full_text: str, render_kwargs: dict[str, Any],
           *, mask_prompt_supplied: bool) -> tuple[list[tuple[int, int]], bool, list[str]]:
    analysis = spec.analysis
    markup = spec.markup
    ends = set(analysis.history_turn_ends) | set(analysis.turn_ends)
    raw_header = analysis.assistant_header
    header = raw_header.strip()
    supplied = [s for s in analysis.prompt_supplied if s.strip()] if mask_prompt_supplied else []
    spans: list[tuple[int, int]] = []
    notes: list[str] = []
    lo = 0  # where the previous message's text ends: the span never starts before it
    for i, message in enumerate(messages):
        texts = own_texts(message)
        if message.get("role") != "assistant":
            found = _find_texts(texts, full_text, lo)
            lo = found[1] if found else lo
            continue
        start = None
        if i > 0:
            try:
                prompt = spec.render(messages[:i], add_generation_prompt=True, **render_kwargs)
            except Exception as exc:  # the template rejects this prefix: fall back to the message's own texts
                notes.append(f"message {i}: the template rejects the conversation before it ({exc})")
                prompt = None
            if prompt is not None:
                start, rest = _aligned_start(prompt, full_text, lo, messages[i - 1], markup)
                if start is None:
                    notes.append(f"message {i}: the generation prompt does not align with the rendering")
                elif rest.strip():
                    notes.append(f"message {i}: the generation prompt writes {rest[:40]!r} where the rendering "
                                 "does not (the template renders a finished turn differently from how it opens one)")
        texts = _split_reasoning(texts, analysis.reasoning)
        begin = start if start is not None else lo
        # Nothing of this message lies past where the next message's rendering starts: every search is bounded.
        hi = _next_start(spec, messages, i, full_text, begin, render_kwargs)
        if hi is None:
            notes.append(f"message {i}: where the next message starts could not be told by rendering (the template "
                         "refuses or reacts to a changed text there); it is searched by its text")
            hi = _next_text(messages, i, texts, full_text, begin, analysis.reasoning, markup)
        own = _find_texts(texts, full_text, begin, hi)
        notes += [f"message {i}: {reason}" for reason in _unrendered(message, analysis.reasoning, full_text, begin, hi)]
        if own is None:
            if start is None:
                continue  # nothing of this message is rendered
            own = (start, start)  # an empty answer: the model still writes its turn end
        own_first, own_end = own
        h = full_text.rfind(header, lo, own_first) if header else -1
        if start is None or start > own_first:
            start = h + len(header) if h >= 0 else own_first
            if h >= 0 and full_text.startswith(raw_header, h) and h + len(raw_header) <= own_first:
                start = h + len(raw_header)  # the header's own line break is the prompt's, not the model's
        elif h >= 0 and h < start < h + len(header):
            start = h + len(header)  # never inside the assistant header the prompt writes
        if mask_prompt_supplied:
            start = _skip_supplied(full_text, start, own_first, header, supplied)
        end = _turn_end(full_text, own_end, hi, ends)
        if end is None:
            notes.append(f"message {i}: no turn end after it")
            end = own_end
        spans.append((start, end))
        lo = end
    return spans, not notes, notes


_PLAIN_ROLES = frozenset(("system", "user", "assistant"))
_PLAIN_KEYS = frozenset(("role", "content"))


def plain_conversation(messages: Sequence[dict[str, Any]], markup: Any) -> bool:
    """Only text messages of system, user and assistant, none empty, holding no markup (no `<think>`, no control
    token)."""
    for m in messages:
        content = m.get("content")
        if m.get("role") not in _PLAIN_ROLES or not isinstance(content, str) or not _PLAIN_KEYS.issuperset(m) \
                or not content.strip():
            return False
        if ("<" in content or "[" in content) and markup.spans(content):
            return False
    return True


def mask_by_header(spec: SpecLike) -> bool:
    """The analysis's verdict (`TemplateAnalysis.mask_by_header`, learned once and kept with the analysis)."""
    return spec.analysis.mask_by_header


def _aligned_start(prompt: str, text: str, lo: int, prev_message: dict[str, Any], markup: Any
                   ) -> tuple[int | None, str]:
    """(where the model starts writing, what the prompt has there that the rendering does not): after the longest
    common prefix of the prompt and the rendering; if they part before the previous message ends (Mistral moves
    the system text into the last user turn), after the common part that follows the previous message's text."""
    n = common_prefix(prompt, text)
    n = min(markup.snap(text, n), markup.snap(prompt, n))
    if n >= lo:
        return n, prompt[n:]
    texts = own_texts(prev_message)
    if not texts:
        return None, ""
    last = max(texts, key=lambda t: text.rfind(t, 0, lo + 1) + len(t))
    p, q = prompt.rfind(last), text.rfind(last, 0, lo + 1)
    if p < 0 or q < 0:
        return None, ""
    p, q = p + len(last), q + len(last)
    m = common_prefix(prompt[p:], text[q:])
    m = min(markup.snap(text, q + m) - q, markup.snap(prompt, p + m) - p)
    return q + m, prompt[p + m:]


def _split_reasoning(texts: list[str], reasoning: Any) -> list[str]:
    """Texts with reasoning written inside the content (`<think>…</think>answer`) split into reasoning and answer:
    templates render them apart, or drop the reasoning."""
    if reasoning.kind != "tags" or not reasoning.close:
        return texts
    out: list[str] = []
    for t in texts:
        if reasoning.close in t:
            before, after = t.split(reasoning.close, 1)
            out += [x.strip() for x in (before.replace(reasoning.open, ""), after) if x.strip()]
        else:
            out.append(t)
    return out


def _unrendered(message: dict[str, Any], reasoning: Any, text: str, start: int, stop: int) -> list[str]:
    """The parts of an assistant message (reasoning, content, tool calls) that its rendering, `text[start:stop]`,
    does not show: what the model is not trained to write, each a reason the mask is inexact."""
    found = next((message[k] for k in ("reasoning_content", "thinking", "reasoning")
                  if isinstance(message.get(k), str) and message[k].strip()), "")
    content = message.get("content")
    answers = [content] if isinstance(content, str) else \
        [p.get("text") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)] \
        if isinstance(content, list) else []
    if reasoning.kind == "tags" and reasoning.close and answers and reasoning.close in answers[0]:
        thought, answers[0] = answers[0].split(reasoning.close, 1)
        found = found or thought.replace(reasoning.open, "")
    out = []
    if found.strip() and text.find(found.strip(), start, stop) < 0:
        out.append("the template drops its reasoning from the rendering")
    if any(a.strip() and text.find(a.strip(), start, stop) < 0 for a in answers):
        out.append("the template does not render its content")
    calls = [c for c in message.get("tool_calls") or [] if _call_texts(c)]
    missing = [k for k, c in enumerate(calls) if all(text.find(t.strip(), start, stop) < 0 for t in _call_texts(c))]
    if missing and len(missing) == len(calls):
        out.append("the template does not render its tool calls")
    elif missing:
        names = ", ".join(f"{k} ({_call_texts(calls[k])[0]})" for k in missing)
        out.append(f"the template does not render its tool call{'s' if len(missing) > 1 else ''} {names}")
    return out


_SENTINELS = ("Zq7tsnext", "Qz7tsnext")


def _next_start(spec: SpecLike, messages: Sequence[dict[str, Any]], i: int, text: str, begin: int,
                render_kwargs: dict[str, Any]) -> int | None:
    """Where the rendering of the messages after message i starts in `text`: the conversation is rendered again
    with the next message's text replaced by a sentinel (the one after it, when the template does not write that
    text); the two renderings are the same up to it. The end of `text` when nothing follows; None when this
    cannot be told (the template refuses the sentinel, or renders something before it differently)."""
    for j in range(i + 1, len(messages)):
        changed = [*messages[:j], _with_sentinel(messages[j]), *messages[j + 1:]]
        try:
            other = spec.render(changed, **render_kwargs)
        except Exception:  # noqa: BLE001 - the template refuses the sentinel: the bound is searched by text
            return None
        at = common_prefix(other, text)
        if any(other.startswith(s, at) for s in _SENTINELS):
            return spec.markup.snap(text, at) if at >= begin else None
        if at < len(other):
            return None  # the sentinel changed the rendering before it: the template reads the text
    return len(text)


def _with_sentinel(message: dict[str, Any]) -> dict[str, Any]:
    """The message with its text (its first text part, for a list of parts) replaced by a sentinel that differs
    from the text's first character."""
    content = message.get("content")
    if isinstance(content, list):
        k = next((k for k, p in enumerate(content) if isinstance(p, dict) and isinstance(p.get("text"), str)), None)
        if k is not None:
            part = content[k]
            return {**message, "content": [*content[:k], {**part, "text": _sentinel_for(part["text"])}, *content[k + 1:]]}
    return {**message, "content": _sentinel_for(content if isinstance(content, str) else "")}


def _sentinel_for(content: str) -> str:
    firsts = {content[:1], content.lstrip()[:1]}
    return next(s for s in _SENTINELS if s[0] not in firsts)


def _next_text(messages: Sequence[dict[str, Any]], i: int, texts: list[str], text: str, begin: int, reasoning: Any,
               markup: Any) -> int:
    """Where the next message's text is, when it cannot be told by rendering: searched after message i's answer
    (or its first text), so that a short user reply that this answer happens to contain is not taken for it."""
    first_text = _find_texts(texts, text, begin)
    after = first_text[0] + 1 if first_text else begin
    answer = messages[i].get("content")
    answer = _split_reasoning([answer.strip()], reasoning)[-1:] if isinstance(answer, str) and answer.strip() else []
    at = text.find(answer[0], begin) if answer else -1
    if at >= 0:
        after = max(after, at + len(answer[0]))
    nxt = next((j for j in range(i + 1, len(messages)) if messages[j].get("role") != "assistant"), None)
    later = _find_texts(own_texts(messages[nxt]), text, after, markup=markup) if nxt is not None else None
    return later[0] if later else len(text)


def _skip_supplied(text: str, start: int, own_first: int, header: str, supplied: list[str]) -> int:
    """Past the assistant header and what a generation prompt would have written, when the span starts with them."""
    for _ in range(3):
        moved = False
        rest_start = start + len(text[start:own_first]) - len(text[start:own_first].lstrip())
        for piece in ([header] if header else []) + supplied:
            if text.startswith(piece, start) and start + len(piece) <= own_first:
                start += len(piece)
                moved = True
            elif text.startswith(piece, rest_start) and rest_start + len(piece) <= own_first and piece.strip():
                start = rest_start + len(piece)
                moved = True
        if not moved:
            break
    return start


def _turn_end(text: str, after: int, hi: int, ends: set[str]) -> int | None:
    """End of the first turn-end token at or after `after` and before the next message's text."""
    found = [(i, e) for e in ends if (i := text.find(e, after, hi)) >= 0]
    if not found:
        return None
    i, e = min(found, key=lambda f: (f[0], -len(f[1])))
    return i + len(e)
