"""Chat readiness: can turnspec chat with this model correctly? One small verdict per model for `turnspec list`.

Three questions, each answered from the template and vocabulary (never the model's name): is there a chat
template; does the stop set hold end-of-turn tokens, and did the audit warn about the configs; can turnspec read
the reasoning and tool-call syntax the template uses — the verdicts of the template analysis (`spec.analysis`),
the same object the streaming reader is built from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import TurnspecError

if TYPE_CHECKING:
    from .speclike import SpecLike


def chat_readiness(spec: SpecLike) -> dict[str, Any]:
    """{"ready", "template", "stops": {"ok", "token_ids", "tokens", "warnings"}, "reasoning": {...}, "tools": {...}}.

    `ready` means a conversation can be framed and its turn end found; warnings and unread reasoning/tool syntax
    do not block chatting, they are reported beside it. Never raises for a broken template: the error is reported.
    """
    out: dict[str, Any] = {"ready": False, "template": True, "error": None}
    try:
        stops = spec.stops
        out["stops"] = {"ok": bool(stops.token_ids) and not stops.warnings, "token_ids": sorted(stops.token_ids),
                        "tokens": list(stops.tokens), "warnings": list(stops.warnings)}
        out["reasoning"], out["tools"] = output_syntax(spec)
    except TurnspecError as exc:
        out["error"] = " ".join(str(exc).split())
        return out
    out["ready"] = bool(out["stops"]["token_ids"])
    return out


def no_template() -> dict[str, Any]:
    """The verdict for a model without a chat template (a base model)."""
    return {"ready": False, "template": False, "error": None}


def output_syntax(spec: SpecLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """({"readable", "format"}, {"readable", "format", "reason"}) for reasoning and tool calls (also the server's
    `capabilities`), from the template analysis."""
    from .analysis.vocab_calls import describe, spec_vocab_calls
    from .formats import format_of

    reasoning, tools = format_of(spec.analysis).output_syntax()
    vocab_calls = spec_vocab_calls(spec)
    if vocab_calls:
        tools = {"readable": True, "format": vocab_calls[0].section_open,
                 "reason": f"the template renders no call; read between the vocabulary's call tokens "
                           f"{describe(vocab_calls)}"}
    return reasoning, tools


def readiness_summary(verdict: dict[str, Any]) -> str:
    """One table cell: `✓ template ✓ stops · reasoning think · tools hermes`, or what is missing."""
    if not verdict.get("template"):
        return "✗ no chat template"
    if verdict.get("error"):
        return f"✗ {verdict['error'][:70]}"
    stops = verdict.get("stops") or {}
    if not stops.get("token_ids"):
        parts = ["✓ template", "✗ no stop token"]
    elif stops.get("warnings"):
        n = len(stops["warnings"])
        parts = ["✓ template", f"! stops ({n} warning{'s' if n != 1 else ''})"]
    else:
        parts = ["✓ template", "✓ stops"]
    for what in ("reasoning", "tools"):
        found = verdict.get(what) or {}
        if found.get("readable"):
            parts.append(f"{what} {found.get('format') or '✓'}")
    return " · ".join([" ".join(parts[:2]), *parts[2:]])
