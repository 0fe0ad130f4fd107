"""The one interface every turn format implements (a Protocol: the implementations share no code)."""

from __future__ import annotations

from typing import Any, Protocol


class TurnFormat(Protocol):
    """What the rest of turnspec may ask about how a model writes its turn."""

    #: "template" (tags and call syntaxes) or "channels" (headed messages).
    kind: str
    #: A token that ends one message of the turn but not the turn ("" where messages and turns are one).
    message_end: str

    @property
    def turn_end_tokens(self) -> tuple[str, ...]:
        """Tokens that end the turn, beyond what the analysis found after an answer (a channel format's call end)."""

    @property
    def control_tokens(self) -> tuple[str, ...]:
        """Structure tokens of the format that must never be shown, even without a vocabulary that marks them."""

    @property
    def calls_readable(self) -> bool:
        """Whether the reader reads tool calls for this template."""

    @property
    def call_syntaxes(self) -> tuple[Any, ...]:
        """Call syntaxes a forced call's grammar writes (the first one), primary first."""

    def prompt_tail(self, prompt_text: str) -> str:
        """What the prompt wrote after the assistant header that the turn continues (`<think>\n`)."""

    def reader_options(self, prompt_text: str) -> dict[str, Any]:
        """ReaderConfig fields for reasoning, calls and where the prompt left the turn."""

    def reasoning_phase(self, prompt_tail: str) -> tuple[str, str, str]:
        """(opener, closer, resume lead) of free reasoning before a grammar takes over; ("", "", "") for none."""

    def answer_lead(self) -> tuple[str, str]:
        """What a forced answer (JSON for a schema) is written between."""

    def reasoning_open(self, prompt_tail: str, text: str, starts_in_reasoning: bool) -> bool:
        """Whether output `text` (continuing `prompt_tail`) ends inside reasoning."""

    def output_syntax(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """({readable, format}, {readable, format, reason}) for reasoning and calls (readiness, capabilities)."""

    def reads(self) -> list[str] | str:
        """The call syntaxes the reader reads (one line each), or why calls are not readable (onboarding)."""
