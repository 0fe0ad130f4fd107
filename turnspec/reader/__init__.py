"""The output side: read what a model writes, one token (or text chunk) at a time.

    reader = reader_for(spec, prompt_text)        # or StreamReader(ReaderConfig(...), tokenizer=...)
    for token_id in engine.generate(...):
        for event in reader.feed_token(token_id):
            ...                                    # Reasoning / Content / ToolCall / ToolCallError / Done
        if reader.done:
            break
    reader.finish("length")                        # when the engine stopped without a stop token
    reader.result.content, reader.result.tool_calls

The same reader serves the interactive chat, the server and the library API.
"""

from __future__ import annotations

from typing import Any

from . import formats
from .events import (
    Content,
    Done,
    Event,
    Reasoning,
    Result,
    ToolCall,
    ToolCallError,
    collect,
)
from .harmony import CONTROL_TOKENS as HARMONY_CONTROL_TOKENS
from .harmony import END as HARMONY_END
from .reader import ReaderConfig, StreamReader

__all__ = [
    "Content",
    "Done",
    "Event",
    "Reasoning",
    "ReaderConfig",
    "Result",
    "StreamReader",
    "ToolCall",
    "ToolCallError",
    "collect",
    "config_for",
    "reader_for",
]


def config_for(spec: Any, prompt_text: str = "", **overrides: Any) -> ReaderConfig:
    """Derive a `ReaderConfig` from a spec: the one place that knows the spec's attribute names.

    Uses `spec.template`, `spec.stops.token_ids`, `spec.stops.strings`, `spec.vocab` (optional: a
    `turnspec.vocab.Vocabulary`) and `spec.special_tokens` (optional). `prompt_text` is the rendered
    prompt this turn continues: it tells whether the output starts inside `<think>` or inside an open
    Harmony message. `overrides` replace any derived `ReaderConfig` field (`stop_strings=(...)` replaces
    the spec's stop strings; `extra_stop_strings=(...)` adds to them).
    """
    template: str = getattr(spec, "template", "") or ""
    vocab = getattr(spec, "vocab", None)
    added: dict[str, int] = dict(vocab.added_tokens) if vocab is not None else {}
    special_ids = vocab.special_ids if vocab is not None else frozenset()
    fmt = formats.detect(template, added)

    stops = getattr(spec, "stops", None)
    stop_ids = frozenset(getattr(stops, "token_ids", ()) or ())
    stop_strings = tuple(getattr(stops, "strings", ()) or ())
    by_id = {i: s for s, i in added.items()}
    stop_text_of = {i: by_id.get(i) or (vocab.decode([i]) if vocab is not None else "") for i in stop_ids}
    if fmt.reasoning == "harmony":  # <|end|> ends a Harmony message, not the turn: it must not stop the reader
        stop_ids = frozenset(i for i in stop_ids if stop_text_of[i] != HARMONY_END)
    stop_texts = tuple(stop_text_of[i] for i in sorted(stop_ids) if stop_text_of[i])
    control = {s for s, i in added.items() if i in special_ids}
    control.update(v for v in (getattr(spec, "special_tokens", None) or {}).values() if isinstance(v, str) and v)
    if fmt.reasoning == "harmony":
        control.update(HARMONY_CONTROL_TOKENS)

    extra = tuple(overrides.pop("extra_stop_strings", ()))
    config = ReaderConfig(
        stop_ids=stop_ids,
        stop_token_texts=stop_texts,
        stop_strings=stop_strings + extra,
        turn_headers=fmt.turn_headers,
        control_tokens=tuple(sorted(control)),
        reasoning=fmt.reasoning,
        tools=fmt.tools,
        starts_in_reasoning=fmt.reasoning == "think" and formats.prompt_opens_think(prompt_text),
        harmony_prefix=formats.harmony_prefix(prompt_text) if fmt.reasoning == "harmony" else "",
    )
    if overrides:
        config = ReaderConfig(**{**config.__dict__, **overrides})
    return config


def reader_for(spec: Any, prompt_text: str = "", **overrides: Any) -> StreamReader:
    """A reader for one assistant turn of the model described by `spec`, continuing `prompt_text`."""
    new_call_id = overrides.pop("new_call_id", None)
    vocab = getattr(spec, "vocab", None)
    config = config_for(spec, prompt_text, **overrides)
    return StreamReader(config, tokenizer=vocab.tokenizer if vocab is not None else None, new_call_id=new_call_id)
