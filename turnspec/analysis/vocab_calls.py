"""Tool-call markers only the vocabulary tells: a pair of special tokens named for tool calls on a template that
renders no call (LFM2.5-Instruct's template never writes a call, yet its tokenizer has `<|tool_call_start|>` and
`<|tool_call_end|>`, and the model writes `<|tool_call_start|>[get_weather(city='Paris')]<|tool_call_end|>`).

Between such a pair nothing is prose: those tokens exist only to frame calls, and text never turns into them. So what
the pair holds is read as calls in either self-describing form, a pythonic list `[name(key=value)]` or JSON call
objects, for any name: a call to a tool the request did not declare is still read, with a warning
(reader/events.py). Outside the pair the guard against prose stays: a bare `[name(...)]` in the answer is a call
only when it names a declared tool (reader/content.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from .syntax import CallSyntax
from .turn import pairs

#: A token whose name says it frames tool calls: tool_call, tool▁calls, function_call, toolcall.
_CALLS_NAME = re.compile(r"(?:tool|function)[\W_▁]?calls?(?![a-z])", re.IGNORECASE)


def vocab_call_markers(special_tokens: Iterable[str]) -> list[tuple[str, str]]:
    """(open, close) pairs of special tokens named for tool calls (`<|tool_call_start|>`/`<|tool_call_end|>`,
    `<tool_call>`/`</tool_call>`, `<start_function_call>`/`<end_function_call>`), in a stable order."""
    named = sorted({t for t in special_tokens if _CALLS_NAME.search(t)})
    return [(a, b) for a in named for b in named if a != b and pairs(a, b)]


def vocab_call_syntaxes(special_tokens: Iterable[str]) -> tuple[CallSyntax, ...]:
    """Call syntaxes to read between each pair: a pythonic list (or one call), then JSON call objects."""
    out: list[CallSyntax] = []
    for open_, close in vocab_call_markers(special_tokens):
        frame = dict(section_open=open_, section_close=close, triggers=(open_,))
        out += [CallSyntax("pythonic", list_wrapped=True, **frame), CallSyntax("json", **frame)]
    return tuple(out)


def spec_vocab_calls(spec: Any) -> tuple[CallSyntax, ...]:
    """The vocabulary's call syntaxes for `spec`, when its template's format reads no call and it has a tokenizer."""
    from ..formats import format_of

    vocab = getattr(spec, "vocab", None)
    if vocab is None or format_of(spec.analysis).calls_readable:
        return ()
    special = vocab.special_ids
    return vocab_call_syntaxes(t for t, i in vocab.added_tokens.items() if i in special)


def describe(syntaxes: Iterable[CallSyntax]) -> str:
    """`<|tool_call_start|>…<|tool_call_end|>`, for reports."""
    return ", ".join(dict.fromkeys(f"{s.section_open}…{s.section_close}" for s in syntaxes))
