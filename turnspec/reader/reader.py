"""The streaming reader: token ids (or text chunks) in, typed events out.

    ids/text ──► IncrementalDetokenizer ──► MarkerScanner ──► stop? ──► format parser ──► events
                 (UTF-8 safe, O(1)/token)    (stops, headers,          (TurnParser: reasoning, answer,
                                              syntax marks, control)    calls; ChannelParser)

The core takes explicit parameters (`ReaderConfig`) so it can be used and tested without a model spec;
`turnspec.reader.reader_for(spec, prompt_text)` derives them from the spec's template analysis. One reader per turn.

Malformed ends, decided once for every syntax (tags, channel formats, call syntaxes; tests/test_reader_malformed_ends.py
checks them on every real template):
- A closing marker with nothing open (`answer</think>more` where reasoning never opened; a channel format's message
  end with no message open) is never shown. The text around it stays the answer: a streaming reader cannot take
  back what it already showed as the answer, and guessing that it was reasoning would hide the answer the model may
  have meant. Text after a channel format's message end with no new header is the answer too. `Result.warnings`
  says what was dropped.
- A finished output that ends inside a marker (`answer</thi`, `<|tool_c`, cut by a length limit or a stop) never
  shows that start of markup, and `Result.warnings` says so. Only tails that can be nothing else count: three
  characters or more, starting with a bracket or symbol, holding a letter, the start of one of the syntax's own
  markers (not of a caller's stop string). Prose ending in `<`, `</` or a word stays as written. A whole marker
  held only because a longer one starts with it (`<|end|>` before `<|end|><|begin|>assistant`) is that marker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from ..analysis.markup import Markup
from ..analysis.syntax import CallSyntax, ChannelSyntax
from . import events as ev
from . import markers as mk
from .detokenize import IncrementalDetokenizer
from .events import Done, Emitter, Event, Result
from .channels import ChannelParser
from .habits import CHANNEL_FORMATS, FAMILIES
from .turn_parser import TurnParser

REASONING_FORMATS = ("none", "think", "tags", "channels", *CHANNEL_FORMATS)
TOOL_FORMATS = (*FAMILIES, "channels", *CHANNEL_FORMATS, "template")

_STOP_KIND = {mk.STOP_TOKEN: ev.STOP_TOKEN, mk.STOP_STRING: ev.STOP_STRING, mk.TURN_HEADER: ev.TURN_HEADER}


@dataclass(frozen=True)
class ReaderConfig:
    """Everything the reader needs to know about the model's output, as plain data.

    stop_ids: token ids that end the turn (never decoded into text).
    stop_token_texts: the text of those tokens; matched in text streams, and when a model spells one out
        with ordinary tokens.
    stop_strings: the caller's or spec's stop strings (matched across token boundaries).
    turn_headers: other roles' headers (`<|im_start|>user`, …): writing one is self-conversation, so stop.
    control_tokens: special tokens of the vocabulary never meant for display: removed from visible text.
    reasoning: "none" | "tags" (`reasoning_tags`; "think" is the same) | "channels" (`channels`) | "harmony"
        (channels=HARMONY).
    call_format: "none" | "template" (`call_syntaxes`, as a template analysis found them) | a family preset
        ("hermes", "llama3", "mistral") | "channels" / "harmony" (the calls are messages of the channel format).
    content_markers / content_prefix: markers around the answer; plain text it starts with (read at the start only).
    prompt_tail: what the generation prompt wrote after the assistant header (`<think>\n`): read first, silently.
    starts_in_reasoning: the output starts inside reasoning (same as a prompt tail that opens it).
    channels: the channel format (Harmony, muse_glimmer) when the turn is a run of headed messages.
    channel_prefix: the still-open message header the generation prompt ended with (channel formats).
    tool_schemas: the request's tools, {name: {parameter: JSON schema}}: types tagged values, enables lenient forms.
    warnings: one-line notes the result carries (e.g. tool calls that this template's syntax cannot express).
    call_deltas: also emit `ToolCallDelta` events, each call's argument text as it is written (call_stream.py).
    """

    stop_ids: frozenset[int] = frozenset()
    stop_token_texts: tuple[str, ...] = ()
    stop_strings: tuple[str, ...] = ()
    turn_headers: tuple[str, ...] = ()
    control_tokens: tuple[str, ...] = ()
    reasoning: str = "none"
    reasoning_tags: tuple[str, str] = ("<think>", "</think>")
    reasoning_label: str = ""
    call_format: str = "none"
    call_syntaxes: tuple[CallSyntax, ...] = ()
    content_markers: tuple[str, str] = ("", "")
    content_prefix: str = ""
    prompt_tail: str = ""
    starts_in_reasoning: bool = False
    channels: ChannelSyntax | None = None
    channel_prefix: str = ""
    tool_schemas: Mapping[str, Mapping[str, Any]] | None = None
    lenient: bool = True
    warnings: tuple[str, ...] = ()
    call_deltas: bool = False

    def __post_init__(self) -> None:
        if self.reasoning not in REASONING_FORMATS:
            raise ValueError(f"reasoning format {self.reasoning!r} is not one of {REASONING_FORMATS}")
        if self.call_format not in TOOL_FORMATS:
            raise ValueError(f"tool-call format {self.call_format!r} is not one of {TOOL_FORMATS}")
        preset = CHANNEL_FORMATS.get(self.reasoning) or CHANNEL_FORMATS.get(self.call_format)
        if preset is not None and self.channels is None:
            object.__setattr__(self, "channels", preset)
        chan_calls, chan_reasoning = (self.call_format in ("channels", *CHANNEL_FORMATS),
                                      self.reasoning in ("channels", *CHANNEL_FORMATS))
        if chan_calls and not chan_reasoning:
            raise ValueError("channel-format tool calls need reasoning='channels' (the recipient is in the message "
                             "header)")
        if chan_reasoning and self.channels is None:
            raise ValueError("reasoning='channels' needs `channels` (a ChannelSyntax, e.g. turnspec.formats.HARMONY)")


_CONFIG_FIELDS = {f.name for f in fields(ReaderConfig)}


class StreamReader:
    """Reads one assistant turn. Feed ids (`feed_token`) or text (`feed_text`), then `finish()`.

    Every feed returns the events it completed; `result` is the running total. After a stop (a stop
    token, stop string or turn header) the reader is `done` and ignores further input.
    """

    def __init__(
        self,
        config: ReaderConfig | None = None,
        *,
        tokenizer: Any = None,
        new_call_id: Callable[[], str] | None = None,
        **options: Any,
    ):
        unknown = set(options) - _CONFIG_FIELDS
        if unknown:
            raise TypeError(f"unknown reader options: {sorted(unknown)}")
        if config is None:
            config = ReaderConfig(**options)
        elif options:
            config = ReaderConfig(**{**{f: getattr(config, f) for f in _CONFIG_FIELDS}, **options})
        self.config = config
        self._tokenizer = tokenizer
        self._detok = IncrementalDetokenizer(tokenizer) if tokenizer is not None else None
        self._stop_ids = frozenset(config.stop_ids)
        self._emit = Emitter(new_call_id)
        if config.tool_schemas is not None:
            self._emit.declared = frozenset(config.tool_schemas)

        stop_texts = tuple(config.stop_token_texts)
        if config.channels is not None and config.reasoning in ("channels", *CHANNEL_FORMATS):
            self._parser: Any = ChannelParser(self._emit, config.channels, config.channel_prefix,
                                              config.tool_schemas, Markup(config.control_tokens),
                                              call_deltas=config.call_deltas)
            stop_texts += tuple(t for t in config.channels.turn_ends if t not in stop_texts)
        else:
            calls = FAMILIES.get(config.call_format, config.call_syntaxes)
            self._parser = TurnParser(
                self._emit,
                reasoning_tags=config.reasoning_tags if config.reasoning in ("think", "tags") else None,
                content_markers=config.content_markers, content_prefix=config.content_prefix, calls=calls,
                schemas=config.tool_schemas, lenient=config.lenient, starts_in_reasoning=config.starts_in_reasoning,
                reasoning_label=config.reasoning_label, call_deltas=config.call_deltas,
                markup=Markup(config.control_tokens))
        marks = mk.build_marks(
            [
                (mk.STOP_TOKEN, stop_texts),
                (mk.STOP_STRING, config.stop_strings),
                (mk.TURN_HEADER, config.turn_headers),
                (mk.FORMAT, self._parser.markers),
                (mk.CONTROL, config.control_tokens),
            ]
        )
        self._scanner = mk.MarkerScanner(marks)
        self.done = False
        self._finish_reason: str | None = None
        self._stopped_by: str | None = None
        self._stop_kind: str | None = None
        if config.prompt_tail and not isinstance(self._parser, ChannelParser):
            self._emit.muted = True
            self._run(config.prompt_tail, final=True)
            self._emit.muted = False
            self._emit.events = []
            self._parser.end_priming()

    # -- input --

    def feed_token(self, token_id: int) -> list[Event]:
        """One generated id. A stop id ends the turn (its text is never shown)."""
        if self.done:
            return []
        if self._detok is None:
            raise TypeError("this reader has no tokenizer: use feed_text(), or build it with tokenizer=...")
        out = self._emit.events = []
        if token_id in self._stop_ids:
            self._run(self._detok.flush(), final=True)
            if not self.done:
                self._stop(self._token_text(token_id), ev.STOP_TOKEN)
            return out
        self._run(self._detok.step(token_id), final=False)
        return out

    def feed_tokens(self, token_ids: Iterable[int]) -> list[Event]:
        out: list[Event] = []
        for tid in token_ids:
            out.extend(self.feed_token(tid))
            if self.done:
                break
        return out

    def feed_text(self, text: str) -> list[Event]:
        """A chunk of text (engines that stream text, recordings). Chunks may split anything anywhere."""
        if self.done:
            return []
        out = self._emit.events = []
        self._run(text, final=False)
        return out

    def finish(self, reason: str | None = None) -> list[Event]:
        """End of stream. `reason` is the engine's ("length" when it hit max tokens); default "stop"."""
        if self.done:
            return []
        out = self._emit.events = []
        tail = self._detok.flush() if self._detok is not None else ""
        self._run(tail, final=True)
        if not self.done:
            self._stop(None, None, reason or ev.STOP)
        return out

    def read_all(self, output: str | Iterable[int], reason: str | None = None) -> Result:
        """Non-streaming: read a whole output (text, or token ids) and return the `Result`."""
        if isinstance(output, str):
            self.feed_text(output)
        else:
            self.feed_tokens(output)
        self.finish(reason)
        return self.result

    # -- output --

    @property
    def result(self) -> Result:
        e = self._emit
        return Result(
            content="".join(e.content_parts),
            reasoning="".join(e.reasoning_parts),
            tool_calls=list(e.tool_calls),
            errors=list(e.errors),
            builtin_calls=list(e.builtin_calls),
            finish_reason=self._finish_reason,
            stopped_by=self._stopped_by,
            stop_kind=self._stop_kind,
            warnings=[*self.config.warnings, *e.notes],
        )

    # -- internals --

    def _run(self, text: str, final: bool) -> None:
        if not text and not final:
            return
        parser = self._parser
        pieces = self._scanner.feed(text, final=False)
        if final:
            dropped = self._scanner.drop_partial_marker()
            if dropped:
                self._emit.note(f"the output ended inside a marker ({dropped!r}): not shown")
            pieces += self._scanner.feed("", final=True)
        for piece in pieces:
            if piece.__class__ is str:
                parser.text(piece)
                continue
            kind = piece.kind
            if kind == mk.FORMAT:
                parser.mark(piece)
            elif kind != mk.CONTROL:
                self._stop(piece.text, _STOP_KIND[kind])
                return

    def _stop(self, stop: str | None, kind: str | None, reason: str = ev.STOP) -> None:
        self._parser.close()
        if reason == ev.STOP and self._emit.tool_calls:
            reason = ev.TOOL_CALLS
        self.done = True
        self._finish_reason, self._stopped_by, self._stop_kind = reason, stop, kind
        self._emit.events.append(Done(reason, stop, kind))

    def _token_text(self, token_id: int) -> str:
        return self._tokenizer.decode([token_id], skip_special_tokens=False)
