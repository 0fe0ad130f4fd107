"""The output side: read what a model writes, one token (or text chunk) at a time.

    reader = reader_for(spec, prompt_text)        # or StreamReader(ReaderConfig(...), tokenizer=...)
    for token_id in engine.generate(...):
        for event in reader.feed_token(token_id):
            ...                                    # Reasoning / Content / ToolCall / ToolCallError / BuiltinCall / Done
        if reader.done:
            break
    reader.finish("length")                        # when the engine stopped without a stop token
    reader.result.content, reader.result.tool_calls

The same reader serves the interactive chat, the server and the library API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .events import (
    BuiltinCall,
    Content,
    Done,
    Event,
    Reasoning,
    Result,
    ToolCall,
    ToolCallDelta,
    ToolCallError,
    collect,
)
from ..formats.channels import channel_prefix
from ..formats.template import prompt_tail
from .reader import ReaderConfig, StreamReader

if TYPE_CHECKING:
    from ..speclike import SpecLike

__all__ = [
    "BuiltinCall",
    "Content",
    "Done",
    "Event",
    "Reasoning",
    "ReaderConfig",
    "Result",
    "StreamReader",
    "ToolCall",
    "ToolCallDelta",
    "ToolCallError",
    "channel_prefix",
    "collect",
    "config_for",
    "prompt_tail",
    "reader_for",
]


def config_for(spec: SpecLike, prompt_text: str = "", *, declared_tools: Any = None, **overrides: Any) -> ReaderConfig:
    """Derive a `ReaderConfig` from a spec's template analysis: the one place that maps a spec to a reader.

    `prompt_text` is the rendered prompt this turn continues: what it wrote after the assistant header is read
    first (an opened `<think>`, a channel format's open message). `declared_tools` are the request's tools (dicts or Python
    functions): their schemas type tagged argument values, and calls in loose forms are read for their names.
    `overrides` replace any derived field (`stop_strings=(...)` replaces the spec's; `extra_stop_strings=(...)`
    adds to them).
    """
    from ..analysis.vocab_calls import describe, spec_vocab_calls
    from ..formats import format_of
    from ..render import tool_schemas
    from .call_parse import parameter_schemas

    analysis = spec.analysis
    fmt = format_of(analysis)
    vocab = getattr(spec, "vocab", None)
    added: dict[str, int] = dict(vocab.added_tokens) if vocab is not None else {}
    special_ids = vocab.special_ids if vocab is not None else frozenset()

    stops = spec.stops
    stop_ids = frozenset(stops.token_ids)
    by_id = {i: s for s, i in added.items()}
    stop_text_of = {i: by_id.get(i) or (vocab.decode([i]) if vocab is not None else "") for i in stop_ids}
    if fmt.message_end:  # it ends a message, not the turn: it must not stop the reader by id (see below)
        stop_ids = frozenset(i for i in stop_ids if stop_text_of[i] != fmt.message_end)
    stop_texts = tuple(stop_text_of[i] for i in sorted(stop_ids) if stop_text_of[i])
    stop_texts += tuple(t for t in stops.tokens if t not in stop_texts and t != fmt.message_end)
    # A template's message end is a turn end unless the longer marker it starts follows (Solar's reasoning close,
    # GigaChat3's `<|message_sep|>\n\nfunction call<|role_sep|>`): as text, the reader's scanner decides.
    if fmt.message_end and fmt.kind == "template":
        stop_texts += (fmt.message_end,)
    control = {s for s, i in added.items() if i in special_ids}
    control.update(v for v in (getattr(spec, "special_tokens", None) or {}).values() if isinstance(v, str) and v)
    control.update(fmt.control_tokens)

    schemas = parameter_schemas(tool_schemas(list(declared_tools))) if declared_tools else None
    options = fmt.reader_options(prompt_text)
    vocab_calls = spec_vocab_calls(spec) if options.get("call_format") == "none" else ()
    if vocab_calls:  # the template renders no call; the vocabulary tells
        options.update(call_format="template", call_syntaxes=vocab_calls)
    warnings: tuple[str, ...] = ()
    if declared_tools and vocab_calls:
        warnings = (f"the template of {spec.name} renders no tool call ({analysis.tools.reason}): calls are read "
                    f"between the vocabulary's call tokens {describe(vocab_calls)}, written pythonic or as JSON",)
    elif declared_tools and not fmt.calls_readable:
        warnings = (f"tool calls are not readable for {spec.name} ({analysis.tools.reason}): "
                    "the output is passed through as content",)
    extra = tuple(overrides.pop("extra_stop_strings", ()))
    config = ReaderConfig(
        stop_ids=stop_ids,
        stop_token_texts=stop_texts,
        stop_strings=tuple(stops.strings) + extra,
        turn_headers=analysis.guards,
        control_tokens=tuple(sorted(control)),
        content_markers=(analysis.content.open, analysis.content.close),
        content_prefix=analysis.content_prefix,
        tool_schemas=schemas,
        warnings=warnings,
        **options,
    )
    if overrides:
        config = ReaderConfig(**{**config.__dict__, **overrides})
    return config


def reader_for(spec: SpecLike, prompt_text: str = "", *, declared_tools: Any = None, **overrides: Any) -> StreamReader:
    """A reader for one assistant turn of the model described by `spec`, continuing `prompt_text`."""
    new_call_id = overrides.pop("new_call_id", None)
    vocab = getattr(spec, "vocab", None)
    config = config_for(spec, prompt_text, declared_tools=declared_tools, **overrides)
    return StreamReader(config, tokenizer=vocab.tokenizer if vocab is not None else None, new_call_id=new_call_id)
