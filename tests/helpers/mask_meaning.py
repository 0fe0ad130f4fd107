"""Judging an assistant mask by meaning: every text the assistant wrote is inside it, no other role's text is.

Conversation shapes (a multi-turn chat with a system prompt, reasoning in history, a tool call with its result
and the answer, the same where the call's argument recurs in the result and the answer, reasoning with a call, two
parallel calls) with distinctive texts per role. A template that does not render some text (reasoning dropped from
history, tool calls ignored) is judged on the texts it does render, and its mask must say so: `unrendered` lists
the parts of assistant messages that the rendering does not show, and the encoding must name exactly those in its
notes, with `mask_exact` False.

An assistant message's text counts as rendered only between the previous message's text and the next message's:
the argument of a call a template ignores is not "rendered" because the tool result repeats it.
"""

from __future__ import annotations

import json
import re
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
        "call argument repeated in the result and the answer": [
            {"role": "user", "content": "Uquestion weather?"},
            {"role": "assistant", "content": "", "tool_calls": [_call(1, "get_weather", {"city": "Argcityone"}, as_string)]},
            {"role": "tool", "content": "Tresult Argcityone: sunny.", "tool_call_id": "call00001", "name": "get_weather"},
            {"role": "assistant", "content": "Answer Argcityone is sunny."},
        ],
        "reasoning with a call, result, answer": [
            {"role": "user", "content": "Uquestion weather?"},
            {"role": "assistant", "content": "", "reasoning_content": "Rsnneed the weather.",
             "tool_calls": [_call(1, "get_weather", {"city": "Argcityone"}, as_string)]},
            {"role": "tool", "content": "Tresult Argcityone sunny.", "tool_call_id": "call00001", "name": "get_weather"},
            {"role": "assistant", "content": "Answer Argcityone is sunny.", "reasoning_content": "Rsnsay it."},
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


def parts(message: dict[str, Any]) -> dict[str, list[str]]:
    """What an assistant message itself says, by part: its content, reasoning, and its calls' names and argument
    values (a part counts as rendered when one of its texts is)."""
    out = {"content": [message.get("content") or ""], "reasoning": [message.get("reasoning_content") or ""]}
    for k, call in enumerate(message.get("tool_calls") or []):
        fn = call["function"]
        args = json.loads(fn["arguments"]) if isinstance(fn["arguments"], str) else fn["arguments"]
        out[f"tool call {k}"] = [fn["name"], *(str(v) for v in args.values())]
    return {k: [t for t in v if t] for k, v in out.items() if any(v)}


def own_texts(message: dict[str, Any]) -> list[str]:
    """What an assistant message itself says: its answer, reasoning, call names and argument values."""
    return [t for texts in parts(message).values() for t in texts]


@dataclass
class Verdict:
    shape: str
    missing: list[str] = field(default_factory=list)  # assistant texts rendered but not inside the mask
    leaked: list[str] = field(default_factory=list)  # other roles' texts inside the mask
    not_rendered: list[str] = field(default_factory=list)
    unrendered: set[tuple[int, str]] = field(default_factory=set)  # (message index, part) the rendering lacks
    noted: set[tuple[int, str]] = field(default_factory=set)  # (message index, part) the mask's notes name
    error: str | None = None
    exact: bool | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.missing and not self.leaked


# how the encoding's notes name a part it does not see rendered
NOTED_PARTS = {"drops its reasoning": "reasoning", "does not render its content": "content"}


def noted_parts(note: str, conversation: list[dict[str, Any]]) -> set[tuple[int, str]]:
    """(message index, part) that a mask note says the template does not render."""
    index = int(note.split(":", 1)[0].removeprefix("message "))
    out = {(index, part) for key, part in NOTED_PARTS.items() if key in note}
    if "does not render its tool calls" in note:
        out |= {(index, f"tool call {k}") for k in range(len(conversation[index].get("tool_calls") or []))}
    elif "does not render its tool call" in note:
        out |= {(index, f"tool call {k}") for k in re.findall(r"(\d+) \(", note.split("tool call", 1)[1])}
    return out


def judge(spec: Any, shape: str, conversation: list[dict[str, Any]], tools: Any, **mask_options: Any) -> Verdict:
    """Encode `conversation` with the spec's assistant mask and judge it by meaning (character level)."""
    verdict = Verdict(shape)
    try:
        enc = spec.encode(conversation, tools=tools, **mask_options)
    except Exception as exc:  # noqa: BLE001 - a template that rejects the shape is reported, not judged
        verdict.error = " ".join(str(exc).split())[:160]
        return verdict
    verdict.exact, verdict.notes = enc.mask_exact, list(enc.mask_notes)
    for note in enc.mask_notes:
        verdict.noted |= noted_parts(note, conversation)
    text = enc.text
    inside = [False] * len(text)
    for a, b in enc.char_spans:
        for k in range(a, min(b, len(text))):
            inside[k] = True
    # Another role's text is found after the previous message's text (not in a tool listing or a default system
    # prompt earlier in the rendering); an assistant's text between the previous message's and the next one's.
    cursor = 0
    for index, message in enumerate(conversation):
        if message["role"] != "assistant":
            t = message.get("content") or ""
            pos = _positions(text, t, cursor)
            if any(any(inside[p:p + len(t)]) for p in pos):
                verdict.leaked.append(t)
            cursor = pos[0] + len(t) if pos else cursor
            continue
        later = [text.find(m["content"], cursor) for m in conversation[index + 1:] if m.get("content")]
        stop = next((p for p in later if p >= 0), len(text))  # the first later message the template renders
        found = []
        for part, texts in parts(message).items():
            rendered = False
            for t in texts:
                pos = [p for p in _positions(text, t, cursor) if p + len(t) <= stop]
                if not pos:
                    verdict.not_rendered.append(t)
                    continue
                rendered = True
                found.append(pos[0])
                if not any(all(inside[p:p + len(t)]) for p in pos):
                    verdict.missing.append(t)
            if not rendered:
                verdict.unrendered.add((index, part))
        cursor = min(found) if found else cursor
    return verdict
def _positions(text: str, needle: str, start: int = 0) -> list[int]:
    out, i = [], text.find(needle, start)
    while i >= 0:
        out.append(i)
        i = text.find(needle, i + 1)
    return out
