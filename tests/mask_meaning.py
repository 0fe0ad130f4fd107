"""Judging an assistant mask by meaning: every text the assistant wrote is inside it, no other role's text is.

Four conversation shapes (a multi-turn chat with a system prompt, reasoning in history, a tool call with its
result and the answer, two parallel calls) with distinctive texts per role. A template that does not render some
text (reasoning dropped from history, tool calls ignored) is judged on the texts it does render.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city.",
                                            "parameters": {"type": "object", "properties": {
                                                "city": {"type": "string", "description": "The city."}},
                                                "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "description": "Time in a zone.",
                                         "parameters": {"type": "object", "properties": {
                                             "zone": {"type": "string", "description": "The zone."}},
                                             "required": ["zone"]}}}
TOOLS = [WEATHER, TIME]


def _call(i: int, name: str, args: dict[str, Any], as_string: bool) -> dict[str, Any]:
    return {"id": f"call{i:05d}", "type": "function",
            "function": {"name": name, "arguments": json.dumps(args) if as_string else args}}


def shapes(as_string: bool = False) -> dict[str, list[dict[str, Any]]]:
    """name -> conversation. Texts: user `Uq…`, system `Sys…`, tool `Tres…`, assistant `Ans…`, reasoning `Rsn…`."""
    return {
        "multi-turn with system": [
            {"role": "system", "content": "Sysprompt alpha."},
            {"role": "user", "content": "Uquestion one?"},
            {"role": "assistant", "content": "Answer number one."},
            {"role": "user", "content": "Uquestion two?"},
            {"role": "assistant", "content": "Answer number two."},
        ],
        "reasoning in history": [
            {"role": "user", "content": "Uquestion one?"},
            {"role": "assistant", "content": "Answer number one.", "reasoning_content": "Rsnfirst thought."},
            {"role": "user", "content": "Uquestion two?"},
            {"role": "assistant", "content": "Answer number two.", "reasoning_content": "Rsnsecond thought."},
        ],
        "tool call, result, answer": [
            {"role": "user", "content": "Uquestion weather?"},
            {"role": "assistant", "content": "", "tool_calls": [_call(1, "get_weather", {"city": "Argcityone"}, as_string)]},
            {"role": "tool", "content": "Tresult sunny.", "tool_call_id": "call00001", "name": "get_weather"},
            {"role": "assistant", "content": "Answer sunny today."},
        ],
        "parallel calls": [
            {"role": "user", "content": "Uquestion both?"},
            {"role": "assistant", "content": "", "tool_calls": [
                _call(1, "get_weather", {"city": "Argcityone"}, as_string),
                _call(2, "get_time", {"zone": "Argzonetwo"}, as_string)]},
            {"role": "tool", "content": "Tresult sunny.", "tool_call_id": "call00001", "name": "get_weather"},
            {"role": "tool", "content": "Tresult noon.", "tool_call_id": "call00002", "name": "get_time"},
            {"role": "assistant", "content": "Answer sunny at noon."},
        ],
    }


def own_texts(message: dict[str, Any]) -> list[str]:
    """What an assistant message itself says: its answer, reasoning, call names and argument values."""
    out = [message.get("content") or "", message.get("reasoning_content") or ""]
    for call in message.get("tool_calls") or []:
        fn = call["function"]
        out.append(fn["name"])
        args = json.loads(fn["arguments"]) if isinstance(fn["arguments"], str) else fn["arguments"]
        out += [str(v) for v in args.values()]
    return [t for t in out if t]


@dataclass
class Verdict:
    shape: str
    missing: list[str] = field(default_factory=list)  # assistant texts rendered but not inside the mask
    leaked: list[str] = field(default_factory=list)  # other roles' texts inside the mask
    not_rendered: list[str] = field(default_factory=list)
    error: str | None = None
    exact: bool | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not self.missing and not self.leaked


def judge(spec: Any, shape: str, conversation: list[dict[str, Any]], tools: Any, **mask_options: Any) -> Verdict:
    """Encode `conversation` with the spec's assistant mask and judge it by meaning (character level)."""
    verdict = Verdict(shape)
    try:
        enc = spec.encode(conversation, tools=tools, **mask_options)
    except Exception as exc:  # noqa: BLE001 - a template that rejects the shape is reported, not judged
        verdict.error = " ".join(str(exc).split())[:160]
        return verdict
    verdict.exact = enc.mask_exact
    text = enc.text
    inside = [False] * len(text)
    for a, b in enc.char_spans:
        for k in range(a, min(b, len(text))):
            inside[k] = True
    # A text counts as rendered where it occurs after the previous message's text (not in a tool listing or a
    # default system prompt earlier in the rendering).
    cursor = 0
    for message in conversation:
        texts = own_texts(message) if message["role"] == "assistant" else [message.get("content") or ""]
        found = [p for t in texts for p in _positions(text, t, cursor)[:1]]
        next_cursor = min(found) if found else cursor
        for t in texts:
            pos = _positions(text, t, cursor)
            if not pos:
                if message["role"] == "assistant":
                    verdict.not_rendered.append(t)
                continue
            if message["role"] == "assistant":
                if not any(all(inside[p:p + len(t)]) for p in pos):
                    verdict.missing.append(t)
            elif any(any(inside[p:p + len(t)]) for p in pos):
                verdict.leaked.append(t)
        cursor = next_cursor
    return verdict


def _positions(text: str, needle: str, start: int = 0) -> list[int]:
    out, i = [], text.find(needle, start)
    while i >= 0:
        out.append(i)
        i = text.find(needle, i + 1)
    return out
