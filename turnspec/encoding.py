"""Token ids for a conversation: the generation boundary, a single BOS, and which tokens the assistant wrote.

The assistant mask comes from `{% generation %}` where the template has the tag (as transformers does it), and
otherwise from turnspec's universal method, which works on any template:

  for each assistant message i, render messages[:i] with the generation prompt. If that text is a prefix of the
  full rendering, the assistant's turn starts right where the prompt ends. It runs through the message content
  (found verbatim after that point) up to and including the first end-of-message token the template writes
  after it (`<|im_end|>`, `<|eot_id|>`, `<end_of_turn>`, Harmony's `<|end|>`/`<|return|>`/`<|call|>`...).

That is exact when the generation prompt is exactly how the template starts a finished assistant turn, the
content is kept verbatim, and turns end with a token from the stop set (ChatML, Llama 3, Gemma, Mistral, Phi...).
It can't be exact when the generation prompt differs from a rendered turn (DeepSeek-R1 and Qwen3 with
enable_thinking=False open or close `<think>` in the prompt, but drop the reasoning from history), or when the
template rewrites the content (reasoning stripped out of it). Those cases are detected and reported in
`Encoding.mask_notes`, with `mask_exact=False`; the span then starts at the content (or, for think-tag content,
at the answer after `</think>`) instead of the prompt end.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

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


def _content_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def universal_spans(
    spec: "ModelSpec", messages: Sequence[dict[str, Any]], full_text: str, render_kwargs: dict[str, Any]
) -> tuple[list[tuple[int, int]], bool, list[str]]:
    """Character spans of assistant-written text in `full_text`, by rendering growing prefixes (see module doc)."""
    ends = spec.stops.message_ends()
    spans: list[tuple[int, int]] = []
    notes: list[str] = []
    cursor = 0
    for i, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        start: int | None = None
        if i > 0:
            try:
                prompt = spec.render(messages[:i], add_generation_prompt=True, **render_kwargs)
            except Exception as exc:  # the template rejects this prefix: fall back to the content position
                prompt = None
                notes.append(f"message {i}: the template rejects the conversation before it ({exc})")
            if prompt is not None and full_text.startswith(prompt) and len(prompt) >= cursor:
                start = len(prompt)
            elif prompt is not None:
                notes.append(f"message {i}: the generation prompt before it is not a prefix of the full rendering "
                             "(the template renders a finished turn differently from how its prompt opens one)")
        search_from = start if start is not None else cursor
        content = _content_text(message).strip()
        content_end = search_from
        if content:
            pos = full_text.find(content, search_from)
            if pos < 0 and "</think>" in content:
                # Templates that strip reasoning from history keep only the answer after </think>.
                notes.append(f"message {i}: the template drops the reasoning inside its content")
                content = content.split("</think>")[-1].strip()
                pos = full_text.find(content, search_from) if content else search_from
            if pos < 0:
                notes.append(f"message {i}: its content does not appear verbatim in the rendering")
                continue
            if start is None:
                start = pos
            content_end = pos + len(content)
        elif start is None:
            notes.append(f"message {i}: no content and no prompt prefix to anchor it")
            continue
        end_positions = [(full_text.find(e, content_end), e) for e in ends if e]
        end_positions = [(p, e) for p, e in end_positions if p >= 0]
        if end_positions:
            p, e = min(end_positions)
            end = p + len(e)
        else:
            notes.append(f"message {i}: no end-of-turn token after it")
            end = content_end
        spans.append((start, end))
        cursor = end
    return spans, not notes, notes
