"""Token ids for a conversation: the generation boundary, a single BOS, and which tokens the assistant wrote.

The assistant mask comes from `{% generation %}` where the template has the tag (as transformers does it), and
otherwise from turnspec's universal method, which works on any template. For assistant message i, the model
generates what follows the longest common prefix of render(messages[:i], add_generation_prompt=True) and the
full rendering (cut at a token boundary), up to and including the first turn end the template writes after the
message's own texts (its answer, reasoning, call names and arguments, found in the rendering). The span never
reaches back before the previous message's text nor forward into the next one's: text of another role is never
in the mask. By default what a generation prompt supplies at inference (the assistant header, an empty
`<think>\n\n</think>\n\n` that Qwen3 writes into turns without reasoning) is not in the mask either.

When the two renderings part before the previous message ends (the template renders history differently from
how its prompt opens a turn), the span starts at the assistant's header or first own text instead, and
`mask_exact` is False with a note; likewise when no turn end follows the message.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

from .analysis.probes import common_prefix

if TYPE_CHECKING:
    from .spec import ModelSpec


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
            fn = call.get("function", call) if isinstance(call, dict) else {}
            if isinstance(fn.get("name"), str):
                out.append(fn["name"])
            args = fn.get("arguments")
            if isinstance(args, str):
                try:
                    args = json.loads(args)
                except ValueError:
                    args = {}
            if isinstance(args, dict):
                out += [v if isinstance(v, str) else json.dumps(v) for v in args.values()]
    return [t.strip() for t in out if isinstance(t, str) and t.strip()]


def _find_texts(texts: list[str], text: str, start: int, stop: int | None = None) -> tuple[int, int] | None:
    """(first, end) of the given texts where each first occurs at or after `start` (and before `stop`)."""
    first = last = None
    for t in texts:
        pos = text.find(t, start, stop)
        if pos < 0:
            continue
        first = pos if first is None else min(first, pos)
        last = pos + len(t) if last is None else max(last, pos + len(t))
    return (first, last) if first is not None else None


def universal_spans(
    spec: "ModelSpec", messages: Sequence[dict[str, Any]], full_text: str, render_kwargs: dict[str, Any],
    *, mask_prompt_supplied: bool = True,
) -> tuple[list[tuple[int, int]], bool, list[str]]:
    """Character spans of assistant-written text in `full_text`, by alignment with each turn's prompt (see module doc)."""
    analysis = spec.analysis
    markup = spec.markup
    ends = set(analysis.history_turn_ends) | set(analysis.turn_ends)
    header = analysis.assistant_header.strip()
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
        first_text = _find_texts(texts, full_text, begin)
        # The next message's text bounds this one (searched after this message's first text, so that a short user
        # reply that this answer happens to contain is not taken for the next turn).
        nxt = next((j for j in range(i + 1, len(messages)) if messages[j].get("role") != "assistant"), None)
        later = _find_texts(own_texts(messages[nxt]), full_text, first_text[0] + 1 if first_text else begin) \
            if nxt is not None else None
        hi = later[0] if later else len(full_text)
        own = _find_texts(texts, full_text, begin, hi)
        if own is None:
            if start is None:
                continue  # nothing of this message is rendered
            own = (start, start)  # an empty answer: the model still writes its turn end
        own_first, own_end = own
        if start is not None and _drops_reasoning(message, analysis.reasoning, full_text, begin, hi):
            notes.append(f"message {i}: the template drops its reasoning from the rendering")
        h = full_text.rfind(header, lo, own_first) if header else -1
        if start is None or start > own_first:
            start = h + len(header) if h >= 0 else own_first
        elif h >= 0 and h < start < h + len(header):
            start = h + len(header)  # never inside the assistant header the prompt writes
        if mask_prompt_supplied:
            start = _skip_supplied(full_text, start, own_first, header, supplied)
        end = _turn_end(full_text, own_end, hi, ends, markup)
        if end is None:
            notes.append(f"message {i}: no turn end after it")
            end = own_end
        spans.append((start, end))
        lo = end
    return spans, not notes, notes


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


def _drops_reasoning(message: dict[str, Any], reasoning: Any, text: str, start: int, stop: int) -> bool:
    """The message has reasoning (a field, or tags in its content) that its rendering does not show."""
    found = next((message[k] for k in ("reasoning_content", "thinking", "reasoning") if message.get(k)), None)
    content = message.get("content") if isinstance(message.get("content"), str) else ""
    if not found and reasoning.kind == "tags" and reasoning.close and reasoning.close in content:
        found = content.split(reasoning.close, 1)[0].replace(reasoning.open, "")
    return bool(found and found.strip()) and text.find(found.strip(), start, stop) < 0


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


def _turn_end(text: str, after: int, hi: int, ends: set[str], markup: Any) -> int | None:
    """End of the first turn-end token at or after `after` and before the next message's text."""
    found = [(i, e) for e in ends if (i := text.find(e, after, hi)) >= 0]
    if not found:
        return None
    i, e = min(found, key=lambda f: (f[0], -len(f[1])))
    return i + len(e)
