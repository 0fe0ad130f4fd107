"""turnspec: how a model frames a conversation, where generation starts, what ends a turn, how to read its output.

    spec = turnspec.load("path/to/model-folder" | "model.gguf" | "org/name")
    spec.render(messages, add_generation_prompt=True)   # == transformers' apply_chat_template(tokenize=False)
    spec.encode(messages).ids / .generation_start / .assistant_mask
    spec.stops.token_ids, spec.stops.warnings

Attributes are imported lazily so that `import turnspec` stays fast and never pulls in an engine.
"""

from __future__ import annotations

from turnspec.lazy import lazy_getattr

__version__ = "0.1.0"

_LAZY = {
    "load": "turnspec.spec",
    "from_template": "turnspec.spec",
    "ModelSpec": "turnspec.spec",
    "Encoding": "turnspec.encoding",
    "Conversation": "turnspec.conversation",
    "Turn": "turnspec.conversation",
    "open_engine": "turnspec.conversation",
    "Session": "turnspec.session",
    "SessionError": "turnspec.session",
    "StopSet": "turnspec.stops",
    "Stop": "turnspec.stops",
    "TurnspecError": "turnspec.errors",
    "ModelSourceError": "turnspec.errors",
    "NoChatTemplateError": "turnspec.errors",
    "TemplateError": "turnspec.errors",
    "EncodingError": "turnspec.errors",
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
