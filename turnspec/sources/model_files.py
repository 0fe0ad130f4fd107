"""What a model source yields: the raw chat configuration, before any interpretation."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

# The named special tokens transformers passes to templates (PreTrainedTokenizerBase.SPECIAL_TOKENS_ATTRIBUTES).
SPECIAL_TOKEN_ATTRIBUTES = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)


@dataclass
class ModelFiles:
    """Everything turnspec reads from one model, whatever the source (folder, HF cache, GGUF).

    `templates` maps a template name to its Jinja source; a single template is stored as "default".
    `special_tokens` maps attribute names (bos_token, eos_token, ...) to token strings, as transformers'
    `special_tokens_map` does. `tokenizer_factory` builds a `tokenizers.Tokenizer` lazily, because loading a
    vocabulary costs time that rendering alone does not need.
    """

    name: str
    origin: str  # "folder", "hf-cache", "gguf" or "object"
    path: Path | None
    templates: dict[str, str] = field(default_factory=dict)
    special_tokens: dict[str, str] = field(default_factory=dict)
    generation_config: dict[str, Any] = field(default_factory=dict)
    tokenizer_config: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    tokenizer_factory: Callable[[], Any] | None = None
    # Where each piece came from, for error messages and the onboarding report, e.g. {"template": "chat_template.jinja"}.
    provenance: dict[str, str] = field(default_factory=dict)
    # Whether the tokenizer adds BOS by itself (tokenizer_config add_bos_token / GGUF tokenizer.ggml.add_bos_token).
    add_bos_token: bool | None = None
