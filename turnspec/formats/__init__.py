"""How an assistant turn is framed, behind one interface: what ends a message and what ends the turn, how
reasoning and calls are written, which tokens are structure, what a forced call's grammar starts with.

    fmt = format_of(spec.analysis)          # TemplateFormat, or ChannelFormat (Harmony is one instance)
    fmt.message_end, fmt.turn_end_tokens    # `<|end|>` ends a message, not the turn
    fmt.reader_options(prompt_text)         # what the reader needs

Stops, the reader, grammars, readiness, sessions and onboarding ask the format instead of testing for a
particular one. Both implementations are built from the template analysis alone.
"""

from __future__ import annotations

from typing import Any

from .base import TurnFormat
from .channels import HARMONY, ChannelFormat, channel_prefix
from .template import TemplateFormat

__all__ = ["HARMONY", "ChannelFormat", "TemplateFormat", "TurnFormat", "channel_prefix", "format_of"]


def format_of(analysis: Any) -> TurnFormat:
    """The format a template analysis found: channels where the turn is a run of headed messages, else the
    template-derived tags and call syntaxes."""
    channels = getattr(analysis, "channels", None)
    return ChannelFormat(channels, analysis) if channels is not None else TemplateFormat(analysis)
