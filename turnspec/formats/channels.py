"""Channel formats: a turn written as several messages with headers (`ChannelSyntax`, learned by rendering).

Harmony is one instance; its token names are written here once, for readers configured by hand
(`StreamReader(reasoning="harmony")`) and tests without a template. A spec's reader uses what its analysis learned,
which for the gpt-oss template is this same data.
"""

from __future__ import annotations

from typing import Any

from ..analysis.syntax import NAME, CallSyntax, ChannelSyntax

#: Harmony (gpt-oss): `<|start|>assistant<|channel|>analysis<|message|>…<|end|>`, then `…final<|message|>…<|return|>`,
#: or a call `<|start|>assistant to=functions.NAME<|channel|>commentary json<|message|>{…}<|call|>`.
HARMONY = ChannelSyntax(start="<|start|>", role="assistant", message="<|message|>", message_end="<|end|>",
                        turn_ends=("<|return|>", "<|call|>"), channel="<|channel|>", recipient="to=",
                        reasoning="analysis", content="final", call_prefix="functions.",
                        call_header="<|channel|>commentary json", header_tokens=("<|constrain|>",))


def channel_prefix(prompt_text: str, syntax: ChannelSyntax) -> str:
    """The message the prompt leaves open (`<|start|>assistant`, or `…<|channel|>final<|message|>`), else ""."""
    i = prompt_text.rfind(syntax.start)
    if i < 0:
        return ""
    tail = prompt_text[i:]
    if any(t in tail for t in (syntax.message_end, *syntax.turn_ends) if t):
        return ""
    return tail


class ChannelFormat:
    """A channel format as the interface sees it: reasoning is a message of its own, the message end is not a
    stop, and calls are messages to a recipient."""

    kind = "channels"

    def __init__(self, syntax: ChannelSyntax, analysis: Any = None):
        self.syntax = syntax
        self.analysis = analysis
        self.message_end = syntax.message_end

    @property
    def turn_end_tokens(self) -> tuple[str, ...]:
        return self.syntax.turn_ends

    @property
    def control_tokens(self) -> tuple[str, ...]:
        return self.syntax.tokens

    @property
    def calls_readable(self) -> bool:
        return bool(self.syntax.recipient)

    @property
    def call_syntaxes(self) -> tuple[CallSyntax, ...]:
        """A call message as one tagged syntax, for grammars: the header around the name, then the body (JSON
        arguments, or the body call syntax with the name again); parallel calls are further messages."""
        s = self.syntax
        if not s.recipient:
            return ()
        head = (f" {s.recipient}{s.call_prefix}",)
        separator = s.message_end + s.head
        b = s.body_calls
        if b is None:
            return (CallSyntax("tagged", call_open=head, between=(s.call_header + s.message,), separator=separator),)
        if b.shape != "tagged" or b.section_open or b.section_close:
            return ()  # a body the grammar cannot write as one call per message
        return (CallSyntax("tagged", call_open=head, between=(s.call_header + s.message, *b.call_open, NAME, *b.between),
                           call_close=b.call_close, separator=separator, args=b.args, params=b.params),)

    def prompt_tail(self, prompt_text: str) -> str:
        return ""  # the open message header is the reader's `channel_prefix`

    def reader_options(self, prompt_text: str) -> dict[str, Any]:
        return {"reasoning": "channels", "call_format": "channels", "channels": self.syntax,
                "channel_prefix": channel_prefix(prompt_text, self.syntax), "prompt_tail": ""}

    def reasoning_phase(self, prompt_tail: str) -> tuple[str, str, str]:
        s = self.syntax
        return s.header(s.reasoning) + s.message, s.message_end, s.head

    def answer_lead(self) -> tuple[str, str]:
        s = self.syntax
        return s.header(s.content) + s.message, ""

    def reasoning_open(self, prompt_tail: str, text: str, starts_in_reasoning: bool) -> bool:
        s = self.syntax
        full = prompt_tail + text
        seg = full[full.rfind(s.start):] if s.start in full else full
        head, sep, _ = seg.partition(s.message)
        where = head.split(s.channel)[-1] if s.channel else head
        return bool(sep) and s.reasoning in where.split() + [where.strip()] and not any(
            t in seg for t in (s.message_end, *s.turn_ends))

    def output_syntax(self) -> tuple[dict[str, Any], dict[str, Any]]:
        s = self.syntax
        return ({"readable": True, "format": f"channels ({s.header(s.reasoning).strip()})"},
                {"readable": self.calls_readable, "format": f"channels ({s.recipient}{s.call_prefix}…)",
                 "reason": None if self.calls_readable else "the template renders no tool-call message"})

    def reads(self) -> list[str] | str:
        if not self.calls_readable:
            return "not readable: the template renders no tool-call message"
        s = self.syntax
        if not s.call_prefix:
            return [s.describe()]
        return [s.describe(), f"a message {s.recipient}… outside {s.call_prefix}*: a built-in tool's call "
                              "(Result.builtin_calls), not a tool call"]
