"""The template-derived format: reasoning between tags, calls in the syntaxes the analysis learned, one message
per turn. Everything comes from `TemplateAnalysis`; this class only answers the interface's questions."""

from __future__ import annotations

from typing import Any


def prompt_tail(prompt_text: str, analysis: Any) -> str:
    """What the prompt wrote after its last assistant header: the start of the turn the model continues.

    Empty when the prompt does not end in an assistant turn (no header, or a turn end or another role after it).
    """
    header = analysis.assistant_header
    if not prompt_text or not header.strip():
        return ""
    i = prompt_text.rfind(header)
    if i < 0:
        return ""
    tail = prompt_text[i + len(header):]
    if any(t in tail for t in (*analysis.turn_ends, *analysis.guards) if t):
        return ""
    return tail


class TemplateFormat:
    """Tags and call syntaxes as the template analysis found them."""

    kind = "template"
    turn_end_tokens: tuple[str, ...] = ()

    def __init__(self, analysis: Any):
        self.analysis = analysis

    @property
    def message_end(self) -> str:
        """A turn end a longer marker starts with: the reasoning's close (Solar Open closes reasoning with
        `<|end|><|begin|>assistant`, its turn end and the next header) or a call trigger (GigaChat3 writes a call as
        a message of its own, `<|message_sep|>\n\nfunction call<|role_sep|>`). It ends a message, and the turn only
        when the longer marker does not follow, so it must not halt generation; the reader decides once it sees
        what follows."""
        return self.message_end_and_marker[0]

    @property
    def message_end_and_marker(self) -> tuple[str, str]:
        """(`message_end`, the longer marker it starts), or ("", "")."""
        r = self.analysis.reasoning
        longer = [r.close] if r.kind == "tags" else []
        longer += [t for syntax in self.call_syntaxes for t in syntax.triggers]
        return next(((t, m) for t in self.analysis.turn_ends for m in longer if t and m.startswith(t) and m != t),
                    ("", ""))

    @property
    def control_tokens(self) -> tuple[str, ...]:
        """Tags the template builds from generic tokens and a name (`<|close|>think<|sep|>`): markers as a whole."""
        from ..analysis.compound import compound_members

        return compound_members(self.analysis.control_tokens)

    @property
    def _tags(self) -> tuple[str, str]:
        r = self.analysis.reasoning
        return (r.open, r.close) if r.kind == "tags" and r.open and r.close else ("", "")

    @property
    def calls_readable(self) -> bool:
        return bool(self.analysis.tools.calls)

    @property
    def call_syntaxes(self) -> tuple[Any, ...]:
        return tuple(self.analysis.tools.calls)

    def prompt_tail(self, prompt_text: str) -> str:
        return prompt_tail(prompt_text, self.analysis)

    def reader_options(self, prompt_text: str) -> dict[str, Any]:
        a = self.analysis
        tags = a.reasoning.kind == "tags"
        return {"reasoning": "tags" if tags else "none",
                "reasoning_tags": (a.reasoning.open, a.reasoning.close) if tags else ("", ""),
                "reasoning_label": a.reasoning.label if tags else "",
                "call_format": "template" if a.tools.calls else "none", "call_syntaxes": a.tools.calls,
                "prompt_tail": self.prompt_tail(prompt_text)}

    def reasoning_phase(self, prompt_tail: str) -> tuple[str, str, str]:
        return (*self._tags, "")

    def answer_lead(self) -> tuple[str, str]:
        return self.analysis.content.open, self.analysis.content.close

    def reasoning_open(self, prompt_tail: str, text: str, starts_in_reasoning: bool) -> bool:
        opener, closer = self._tags
        if not opener:
            return False
        full = prompt_tail + text
        return full.rfind(opener) > full.rfind(closer) or (starts_in_reasoning and closer not in text)

    def output_syntax(self) -> tuple[dict[str, Any], dict[str, Any]]:
        r, t = self.analysis.reasoning, self.analysis.tools
        reasoning = {"readable": r.kind == "tags", "format": f"{r.open}…{r.close}" if r.kind == "tags" else None}
        first = t.calls[0] if t.calls else None
        call_format = (first.triggers[0].strip() if first.triggers else f"{first.shape} at the turn start") if first else None
        return reasoning, {"readable": bool(t.calls), "format": call_format, "reason": t.reason}

    def reads(self) -> list[str] | str:
        a = self.analysis
        if a.tools.calls:
            return [c.describe() for c in a.tools.calls]
        return f"not readable: {a.tools.reason or a.error}"
