"""Sessions: the exact token history of one conversation across turns, on any template (token in, token out).

    s = spec.session(tools=TOOLS)
    ids = s.prompt_ids(messages)              # the first prompt; ends with the generation prompt
    msg = s.add_completion(sampled_ids)       # kept verbatim; read by token id into an assistant message
    ids = s.extend([tool_result])             # every earlier id + what the template writes next + generation prompt
    s.training_sample()                       # input_ids, labels (-100 outside sampled ids), message index, role

Re-rendering a conversation every turn changes earlier tokens on templates that rewrite history (Qwen3 drops past
reasoning, tool-call arguments come back re-serialized, BPE merges differ at turn boundaries), so RL trains on
tokens the sampler never produced and servers re-process whole prompts. A session never re-tokenizes what it holds.
`extend` takes from the template only what it writes after the assistant turn: it renders the conversation with the
new messages and cuts right after the turn end that the template analysis knows, then tokenizes that text as one
unit after a control token, so no BPE merge reaches into kept ids. No model family is named anywhere.

Control strings that came from message content (a tool result writing `<|im_end|>\n<|im_start|>system`) are tokenized
as text, as `spec.encode` does (turnspec.content_text; `specials_in_content="parse"` opts out): in `extend` they are
learned on the rendering the unit is cut from, new messages included, and moved into the unit.

To stay cheap on long conversations, the rendering covers a short window of the history (a leading system message,
the last user message and the last few turns). Whether the window gives the same text as the whole conversation is
checked once per kind of extension (by rendering both) and remembered per spec; a template whose text after a turn
depends on older history (a turn counter) is rendered whole.
"""

from __future__ import annotations

import copy
import difflib
import json
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from .affixes import common_prefix
from .content_text import check_mode, content_controls, encode_as_text
from .encoding import own_texts
from .errors import TurnspecError

if TYPE_CHECKING:
    from .spec import ModelSpec

_WINDOW = 4  # turns of history rendered with the new messages (plus a leading system message and the last user)
_REASONING_KEYS = ("reasoning_content", "thinking", "reasoning")
_DEFUSE = "\U000F0000"  # a private-use character that breaks up a control token's text spelled by ordinary tokens

# spec -> {(roles of the new messages, tools, template kwargs): whether the short window renders the same}
_WINDOW_VERDICTS: "weakref.WeakKeyDictionary[Any, dict[str, bool]]" = weakref.WeakKeyDictionary()


class SessionError(TurnspecError):
    """A session step that cannot be done exactly. `reason` is a stable code; nothing the session held changed."""

    code = "session_error"

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Rerender:
    """What a re-render (`extend(..., rerender=True)`) changed: spans of earlier ids that the template wrote anew."""

    first_changed: int | None  # index of the first earlier id that changed (None: all kept)
    changed: tuple[tuple[int, int, int, int], ...]  # (old_start, old_end, new_start, new_end) per changed span
    old_length: int
    new_length: int


@dataclass
class TrainingSample:
    """One conversation as one training sample. `labels` is -100 where no loss is taken."""

    input_ids: list[int]
    labels: list[int]
    message_index: list[int]  # the message each token belongs to (-1: template text between messages)
    role: list[str]  # that message's role ("" for -1)

    def as_dict(self) -> dict[str, list[Any]]:
        return {"input_ids": self.input_ids, "labels": self.labels, "message_index": self.message_index,
                "role": self.role}


@dataclass
class _Completion:
    start: int  # index of the first sampled id in the session
    closed: bool  # the last sampled id ends the turn (a stop id)
    stop_sampled: bool  # some sampled id is a stop id
    stop_text: str  # the text of the stop id the sample ended with ("" if none)
    open_reasoning: bool  # the sample ends inside a reasoning block
    finish_reason: str


@dataclass
class _Unit:
    """What `extend` appends: text tokenized as one unit, and who owns its characters."""

    text: str
    close: str  # the turn close added as prompt context (a sample that ended without it)
    ends: list[int]  # end of each new message's text region in `text`
    anchored: bool  # the unit starts right after a control token
    prompt_text: str  # the rendering the next completion continues (for the reader)
    content_spans: list[tuple[int, int]] = field(default_factory=list)  # control strings of `text` from content


class Session:
    """One conversation's exact ids: prompt, sampled completions kept verbatim, and the template's text between."""

    def __init__(self, spec: ModelSpec, tools: Sequence[dict | Callable] | None = None, *,
                 specials_in_content: str = "text", **template_kwargs: Any):
        self.spec = spec
        # "text": control strings that came from message content (or tools, template variables) are tokenized as
        # text, as spec.encode does (turnspec.content_text); "parse": as the tokenizer matches them
        self.specials_in_content = check_mode(specials_in_content)
        self.vocab = spec.require_vocab()
        analysis = spec.analysis
        if analysis.error:
            raise SessionError(f"{spec.name}: the template cannot be analyzed ({analysis.error}); sessions need its "
                               "turn framing", "analysis")
        self.tools = list(tools) if tools else None
        self.template_kwargs = dict(template_kwargs)
        self.notes: list[str] = []  # what a caller should know (a boundary without a control token, windows)
        self.rerenders: list[Rerender] = []
        self._ids: list[int] = []
        self._owner: list[int] = []
        self._sampled: list[bool] = []
        self._messages: list[dict[str, Any]] = []
        self._prompt_text = ""
        self._state = "new"  # new -> prompted -> completed -> prompted -> ...
        self._completion: _Completion | None = None
        self._ends = tuple(dict.fromkeys((*analysis.turn_ends, *analysis.history_turn_ends)))
        self._header = analysis.assistant_header.strip()
        # what starts another role's turn: it ends the assistant's where the template writes no turn end of its own
        self._eos = frozenset(t for t in (spec.special_tokens.get("eos_token"), *spec.stops.tokens,
                                          *(x.token for x in spec.stops.end_of_text)) if t)
        self._added = self.vocab.added_tokens
        self._added_ids = frozenset(self._added.values())
        self._spelled: Any = None  # a regex of the added tokens' texts, built on first read

    # --- public API ------------------------------------------------------------------------------------------
    @property
    def ids(self) -> list[int]:
        """Every id so far: prompts, sampled completions (verbatim), and the template's text between them."""
        return list(self._ids)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The conversation as the session holds it (sampled turns as read back)."""
        return copy.deepcopy(self._messages)

    @property
    def prompt_text(self) -> str:
        """The rendering the next completion continues (what a reader of that completion is given as the prompt)."""
        return self._prompt_text

    @property
    def state(self) -> str:
        """"new", "prompted" (a prompt waits for its completion) or "completed" (ready for `extend`)."""
        return self._state

    def fork(self) -> "Session":
        """An independent copy: extending it leaves this one as it is (a server continues one conversation from
        several later requests, a rollout branches). Costs a copy of the id lists, never a render."""
        other = copy.copy(self)
        other._ids, other._owner, other._sampled = list(self._ids), list(self._owner), list(self._sampled)
        other._messages = copy.deepcopy(self._messages)
        other.notes, other.rerenders = list(self.notes), list(self.rerenders)
        return other

    def prompt_ids(self, messages: Sequence[Mapping[str, Any]]) -> list[int]:
        """The first prompt: `messages` rendered with the generation prompt and tokenized (BOS as `spec.encode`)."""
        if self._state != "new":
            raise SessionError("prompt_ids starts a session and was already called: continue the conversation with "
                               "extend(new_messages)", "order")
        msgs = _checked_messages(messages, "messages")
        if not msgs:
            raise SessionError("prompt_ids needs at least one message", "empty")
        if msgs[-1].get("role") == "assistant":
            raise SessionError("the last message is an assistant message: a session prompt ends with the generation "
                               "prompt (pass the messages before it, then add_completion)", "assistant_last")
        text = self._render(msgs)
        ids, offsets = self._encode_text(text, msgs)
        bos = self.spec.special_tokens.get("bos_token")
        bos_id = self.vocab.token_to_id(bos) if bos else None
        if bos_id is not None and not text.startswith(bos) and self.spec.tokenizer_adds_bos:
            ids, offsets = [bos_id, *ids], [(0, 0), *offsets]
        ends = self._message_ends(text, 0, msgs)
        owner = [_owner_of(start, ends, 0, len(msgs)) for start, _ in offsets]
        self._commit(ids, owner, [False] * len(ids), msgs, text)
        return list(self._ids)

    def add_completion(self, ids: Iterable[int], finish_reason: str = "stop") -> dict[str, Any]:
        """Keep the sampled `ids` verbatim and read them (by token id) into an assistant message: content,
        reasoning and tool calls. `finish_reason` is the engine's ("length" when it hit max tokens)."""
        if self._state != "prompted":
            raise SessionError("add_completion follows prompt_ids or extend (one completion per prompt)", "order")
        sample = self._checked_ids(ids)
        reader = self.spec.reader(self._prompt_text, tools=self.tools)
        halt = set(reader.config.stop_ids) | set(self.spec.stops.halt_ids)
        stop_at = next((k for k, t in enumerate(sample) if t in halt), None)
        if stop_at is not None and stop_at < len(sample) - 1:
            raise SessionError(f"the sampled ids continue after the turn end at position {stop_at} "
                               f"({self.vocab.decode([sample[stop_at]])!r}): pass the ids up to and including it",
                               "after_stop")
        self._feed(reader, sample)
        reader.finish(finish_reason)
        message = _message(reader.result)
        completion = _Completion(start=len(self._ids), closed=stop_at is not None, stop_sampled=stop_at is not None,
                                 stop_text=self.vocab.decode([sample[stop_at]]) if stop_at is not None else "",
                                 open_reasoning=self._reasoning_open(sample, reader.config),
                                 finish_reason=finish_reason)
        index = len(self._messages)
        self._ids += sample
        self._owner += [index] * len(sample)
        self._sampled += [True] * len(sample)
        self._messages.append(message)
        self._completion = completion
        self._state = "completed"
        return copy.deepcopy(message)

    def extend(self, new_messages: Sequence[Mapping[str, Any]], *, rerender: bool = False) -> list[int]:
        """The next prompt: every earlier id verbatim, what the template writes after the assistant turn and before
        the new messages, the new messages and the generation prompt. `new_messages` may also be the whole
        conversation (the session's messages followed by new ones).

        Raises SessionError (changing nothing) when that cannot be proven right; `rerender=True` renders the whole
        conversation instead and records which earlier ids changed in `self.rerenders`."""
        if self._state != "completed":
            raise SessionError("extend follows add_completion (the sampled ids of the last prompt)"
                               if self._state == "prompted" else "extend follows prompt_ids and add_completion",
                               "order")
        new = self._new_part(_checked_messages(new_messages, "new_messages"))
        roles = [m.get("role") for m in new]
        if "assistant" in roles:
            raise SessionError(f"new message {roles.index('assistant')} is an assistant message: a session keeps "
                               "the sampled ids of assistant turns and never re-tokenizes one (add it with "
                               "add_completion, or extend(..., rerender=True))", "assistant_in_new")
        if rerender:
            return self._rerender(new)
        c = self._completion
        assert c is not None
        if c.open_reasoning and c.stop_sampled:
            raise SessionError("the last completion sampled its stop inside reasoning that it never closed: closing "
                               "the reasoning would put text before sampled ids (extend(..., rerender=True) renders "
                               "the conversation instead)", "stop_in_reasoning")
        unit = self._unit(new)
        ids, offsets = self._encode_unit(unit.text, unit.content_spans)
        base = len(self._messages)
        owner = [base - 1 if start < len(unit.close) else _owner_of(start, unit.ends, base, base + len(new))
                 for start, _ in offsets]
        if not unit.anchored and not (self._ids and self._ids[-1] in self._added_ids):
            self._note("the text after the assistant turn does not start at a control token: BPE merges across "
                       "the boundary are not ruled out (the kept ids stay as sampled)")
        self._commit(ids, owner, [False] * len(ids), new, unit.prompt_text)
        return list(self._ids)

    def training_sample(self, messages: Iterable[int] | None = None) -> TrainingSample:
        """One sample for the whole conversation. Loss on the sampled ids only (default), or on the tokens of the
        chosen `messages` (indices into `self.messages`; for sampled turns still only their sampled ids)."""
        chosen = None if messages is None else set(messages)
        sampled_turns = {o for o, s in zip(self._owner, self._sampled) if s}
        labels = []
        for tid, own, smp in zip(self._ids, self._owner, self._sampled):
            if chosen is None:
                keep = smp
            else:
                keep = own in chosen and (smp or own not in sampled_turns)
            labels.append(tid if keep else -100)
        roles = [self._messages[o].get("role", "") if 0 <= o < len(self._messages) else
                 ("assistant" if o == len(self._messages) else "") for o in self._owner]
        return TrainingSample(list(self._ids), labels, list(self._owner), roles)

    # --- the bridge ------------------------------------------------------------------------------------------
    def _unit(self, new: list[dict[str, Any]]) -> _Unit:
        """Render the conversation with `new` and take what follows the last assistant turn's end."""
        history = self._messages
        window = _window(history)
        if len(window) < len(history) and not self._window_agrees(history, window, new):
            window = history
        text = self._render([*window, *new])
        x, e = self._turn_end(text, new, window)
        tail = text[e:]
        self._check_not_rewritten(text, e, new)
        c = self._completion
        close = ""
        if c is not None and not c.closed:
            reasoning = self.spec.analysis.reasoning
            if c.open_reasoning and reasoning.kind == "tags":
                close += reasoning.close
            close += text[x:e]
        unit_text = close + tail
        ends = self._message_ends(unit_text, len(close), new)
        anchored = any(unit_text.startswith(t) for t in self._added if t.strip()) or (
            bool(self._ids) and self._ids[-1] in self._added_ids)
        # learned on the rendering the unit is cut from (its history frames the new messages), moved into the unit
        shift = len(close) - e
        spans = [(a + shift, b + shift) for a, b in self._content_spans(text, [*window, *new]) if a >= e]
        return _Unit(unit_text, close, ends, anchored, text, spans)

    def _turn_end(self, text: str, new: list[dict[str, Any]], history: list[dict[str, Any]]) -> tuple[int, int]:
        """(start, end) of the turn end the template writes after the last assistant turn in `text`; start == end
        when the turn is ended by the next message's header, which the sample did not write (GLM's `<|observation|>`).

        The turn is found before the new messages' texts (searched from the end), after the last assistant header
        (else after the assistant's own last text); its end is the first turn-end token there, else the stop token
        the sample ended with, else another role's header."""
        q = len(text)
        for m in reversed(new):
            for t in reversed(own_texts(m)):
                p = text.rfind(t, 0, q)
                if p >= 0:
                    q = p
        header = self._header
        start = -1
        if header:
            h = text.rfind(header, 0, q)
            if h >= 0 and q == len(text):  # no new text to bound the search: skip the generation prompt's header
                h = text.rfind(header, 0, h)
            start = h + len(header) if h >= 0 else -1
        if start < 0:  # no header to anchor on: after the assistant's own last text
            ends = [p + len(t) for t in own_texts(self._messages[-1]) if (p := text.rfind(t, 0, q)) >= 0]
            start = max(ends, default=-1)
        c = self._completion
        stop = c.stop_text if c is not None else ""
        if start >= 0:
            found = _first(text, self._ends + ((stop,) if stop else ()), start, q)
            if found is not None:
                return found
        return self._turn_end_by_diff(text, history, stop)

    def _turn_end_by_diff(self, text: str, history: list[dict[str, Any]], stop: str) -> tuple[int, int]:
        """Where no turn-end token follows the turn (GLM ends it with the next role's header; Mistral has no
        assistant header): the turn ends where the rendering without the new messages, which ends with it, and the
        rendering with them part (`history` is what `text` renders before the new messages)."""
        text_without = None
        try:
            text_without = self.spec.render(history, tools=self.tools, **self.template_kwargs)
        except TurnspecError:
            pass
        if text_without is not None:
            markup = self.spec.markup
            p = common_prefix(text_without, text)
            p = min(markup.snap(text, p), markup.snap(text_without, p))
            rest = text_without[p:]
            if not rest.strip() or all(s.text in self._eos for s in markup.spans(rest)) and not _strip_spans(rest, markup):
                at_end = next((t for t in (*self._ends, stop) if t and text.endswith(t, 0, p)), None)
                if stop and not text.endswith(stop, 0, p) and text.startswith(stop, p):
                    return p, p + len(stop)  # the sample wrote the next role's header (GLM's <|observation|>)
                if stop and not text.endswith(stop, 0, p) and stop not in self._eos:
                    raise SessionError(f"the sample ended with {stop!r}, but the template writes "
                                       f"{text[p:p + 40]!r} after the turn: the kept ids cannot be continued "
                                       "(extend(..., rerender=True) renders the conversation instead)",
                                       "stop_mismatch")
                return (p - len(at_end) if at_end else p), p
        raise SessionError(f"{self.spec.name}: no turn end after the assistant turn in the template's rendering "
                           f"(turn ends known: {list(self._ends) or 'none'}), so where the next turn starts cannot "
                           "be proven (extend(..., rerender=True) renders the conversation instead)", "no_turn_end")

    def _check_not_rewritten(self, text: str, e: int, new: list[dict[str, Any]]) -> None:
        """A new message whose text the template writes before the assistant turn's end rewrites history."""
        for k, m in enumerate(new):
            for t in own_texts(m):
                if text.find(t, e) < 0 and text.find(t, 0, e) >= 0 and not any(
                        t in h for old in self._messages for h in own_texts(old)):
                    raise SessionError(f"the template writes new message {k} ({m.get('role')}) before the last "
                                       "assistant turn: it rewrites history, which kept ids cannot hold "
                                       "(extend(..., rerender=True) renders the conversation instead)",
                                       "rewrites_history")

    def _window_agrees(self, history: list[dict[str, Any]], window: list[dict[str, Any]],
                       new: list[dict[str, Any]]) -> bool:
        """Whether the short window renders the same text after the turn end as the whole history (checked once
        per kind of extension and remembered on the spec)."""
        key = json.dumps([[m.get("role") for m in new], _jsonable(self.tools), _jsonable(self.template_kwargs)],
                         sort_keys=True, default=str)
        verdicts = _WINDOW_VERDICTS.setdefault(self.spec, {})
        if key not in verdicts:
            try:
                short = self._render([*window, *new])
                whole = self._render([*history, *new])
                verdicts[key] = (short[self._turn_end(short, new, window)[1]:]
                                 == whole[self._turn_end(whole, new, history)[1]:])
            except TurnspecError:
                verdicts[key] = False
            if not verdicts[key]:
                self._note("the template's text after a turn depends on older history: extend renders the whole "
                           "conversation for this kind of message")
        return verdicts[key]

    def _encode_unit(self, text: str, spans: Sequence[tuple[int, int]] = ()) -> tuple[list[int], list[tuple[int, int]]]:
        """Tokenize `text` as it follows a control token: behind an anchor token that is dropped again (so a
        tokenizer that marks the start of a text, SentencePiece's `▁`, does not mark this one). The control strings
        at `spans` (from content) are tokenized as text."""
        anchor = next((t for t in self._ends if t in self._added), None)
        if anchor is not None:
            n = len(anchor)
            ids, offsets = self._tokenize(anchor + text, [(a + n, b + n) for a, b in spans])
            if ids and ids[0] == self._added[anchor] and (len(ids) == 1 or offsets[1][0] >= n):
                return ids[1:], [(a - n, b - n) for a, b in offsets[1:]]
        return self._tokenize(text, spans)

    def _tokenize(self, text: str, spans: Sequence[tuple[int, int]]) -> tuple[list[int], list[tuple[int, int]]]:
        if spans:
            ids, offsets = encode_as_text(self.spec, text, spans)
            return list(ids), list(offsets)
        enc = self.vocab.tokenizer.encode(text, add_special_tokens=False)
        return list(enc.ids), list(enc.offsets)

    def _content_spans(self, text: str, messages: list[dict[str, Any]]) -> list[tuple[int, int]]:
        """The control strings of `text` (`messages` rendered with the generation prompt) that came from content
        and are tokenized as text; none with specials_in_content="parse"."""
        if self.specials_in_content != "text":
            return []

        def render(msgs: Any, tools: Any, documents: Any, variables: dict[str, Any]) -> str:
            return self.spec.render(msgs, tools=tools, documents=documents, add_generation_prompt=True, **variables)

        found = content_controls(self.spec, text, messages, render, tools=self.tools, variables=self.template_kwargs)
        for note in found.notes:
            self._note(note)
        return found.spans

    def _encode_text(self, text: str, messages: list[dict[str, Any]]) -> tuple[list[int], list[tuple[int, int]]]:
        """Tokenize a whole rendering of `messages` (no BOS added), content-origin control strings as text."""
        return self._tokenize(text, self._content_spans(text, messages))

    # --- re-render (explicit) --------------------------------------------------------------------------------
    def _rerender(self, new: list[dict[str, Any]]) -> list[int]:
        msgs = [*self._messages, *new]
        text = self._render(msgs)
        ids, offsets = self._encode_text(text, msgs)
        if self._ids and self._ids[0] != (ids[0] if ids else None):
            bos = self.spec.special_tokens.get("bos_token")
            if bos and self.vocab.token_to_id(bos) == self._ids[0] and not text.startswith(bos):
                ids, offsets = [self._ids[0], *ids], [(0, 0), *offsets]
        matcher = difflib.SequenceMatcher(None, self._ids, ids, autojunk=False)
        changed = tuple((a0, a1, b0, b1) for op, a0, a1, b0, b1 in matcher.get_opcodes() if op != "equal")
        old_sampled = self._sampled
        sampled = [False] * len(ids)
        for op, a0, a1, b0, b1 in matcher.get_opcodes():
            if op == "equal":
                sampled[b0:b1] = old_sampled[a0:a1]
        ends = self._message_ends(text, 0, msgs)
        owner = [_owner_of(start, ends, 0, len(msgs)) for start, _ in offsets]
        report = Rerender(changed[0][0] if changed else None, changed, len(self._ids), len(ids))
        self.rerenders.append(report)
        self._ids, self._owner, self._sampled = [], [], []
        self._messages = []
        self._commit(ids, owner, sampled, msgs, text)
        return list(self._ids)

    # --- helpers ---------------------------------------------------------------------------------------------
    def _render(self, messages: list[dict[str, Any]]) -> str:
        return self.spec.render(messages, tools=self.tools, add_generation_prompt=True, **self.template_kwargs)

    def _commit(self, ids: list[int], owner: list[int], sampled: list[bool], messages: list[dict[str, Any]],
                prompt_text: str) -> None:
        self._ids += ids
        self._owner += owner
        self._sampled += sampled
        self._messages += messages
        self._prompt_text = prompt_text
        self._completion = None
        self._state = "prompted"

    def _checked_ids(self, ids: Iterable[int]) -> list[int]:
        try:
            sample = [int(t) for t in ids]
        except (TypeError, ValueError):
            raise SessionError("add_completion takes token ids (ints)", "bad_ids") from None
        size = self.vocab.size
        bad = next((t for t in sample if not 0 <= t < size), None)
        if bad is not None:
            raise SessionError(f"token id {bad} is outside the vocabulary of {self.spec.name} (0..{size - 1})",
                               "bad_ids")
        return sample

    def _new_part(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The new messages: `messages` itself, or its tail when it repeats the session's conversation first."""
        held = self._messages
        if len(messages) > len(held) and _same(held[0], messages[0]):
            for k, (a, b) in enumerate(zip(held, messages)):
                if not _same(a, b):
                    raise SessionError(f"message {k} ({b.get('role')}) differs from what the session holds: history "
                                       "was edited, which kept ids cannot follow (start a new session, or pass only "
                                       "the new messages)", "history_edited")
            messages = messages[len(held):]
        if not messages:
            raise SessionError("extend needs at least one new message", "empty")
        return messages

    def _message_ends(self, text: str, start: int, messages: list[dict[str, Any]]) -> list[int]:
        """Where each message's region of `text` ends: after the first control token that follows its last text
        (its turn's close), else after the text itself."""
        markup = self.spec.markup
        ends = []
        pos = start
        for m in messages:
            texts = own_texts(m)
            found = [(i, i + len(t)) for t in texts if (i := text.find(t, pos)) >= 0]
            if found:
                last = max(b for _, b in found)
                close = markup.first(text, last)
                pos = close.end if close is not None else last
            ends.append(pos)
        return ends

    def _feed(self, reader: Any, sample: list[int]) -> None:
        """Feed the reader by token id: a control token's text counts only as its own id. Where ordinary tokens
        spell one (`<`, `tool`, `_call`, `>`), the text is defused with an invisible mark that `_message` removes,
        so a literal `<tool_call>` in a sample is never a call and a spelled `<|im_end|>` never a stop."""
        from .reader.markers import trie_regex

        if self._spelled is None:
            self._spelled = trie_regex(t for t in self._added if t.strip()) or False
        run: list[int] = []
        for k, tid in enumerate([*sample, None]):
            if tid is not None and tid not in self._added_ids:
                run.append(tid)
                continue
            if run:
                text = self.vocab.decode(run)
                if self._spelled:
                    text = self._spelled.sub(lambda m: m.group()[0] + _DEFUSE + m.group()[1:], text)
                reader.feed_text(text)
                run = []
            if tid is not None and not reader.done:
                reader.feed_text(self.vocab.decode([tid]))
            if reader.done:
                break

    def _reasoning_open(self, sample: list[int], config: Any) -> bool:
        """Whether the sample ends inside a reasoning block (the prompt may have opened it)."""
        from .formats import format_of

        fmt = format_of(self.spec.analysis)
        tail = config.channel_prefix if config.channels is not None else config.prompt_tail
        return fmt.reasoning_open(tail, self.vocab.decode(sample), config.starts_in_reasoning)

    def _note(self, note: str) -> None:
        if note not in self.notes:
            self.notes.append(note)


def _window(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A short history that frames the last assistant turn as the whole one does: a leading system message, the
    last user message, and the last few turns from an assistant message on."""
    n = len(history)
    last_user = next((k for k in range(n - 1, -1, -1) if history[k].get("role") == "user"), None)
    if last_user is None or n <= _WINDOW + 2:
        return history
    if last_user >= n - _WINDOW:
        out = history[last_user:]
    else:
        t = next(k for k in range(n - _WINDOW, n) if history[k].get("role") == "assistant")
        out = [history[last_user], *history[t:]]
    if history[0].get("role") in ("system", "developer") and last_user > 0:
        out = [history[0], *out]
    return out


def _strip_spans(text: str, markup: Any) -> str:
    """`text` without its control tokens, stripped."""
    out, pos = [], 0
    for span in markup.spans(text):
        out.append(text[pos:span.start])
        pos = span.end
    out.append(text[pos:])
    return "".join(out).strip()


def _first(text: str, needles: Iterable[str], start: int, stop: int) -> tuple[int, int] | None:
    """(start, end) of the first of `needles` in text[start:stop] (the longest where two start together)."""
    found = [(i, t) for t in needles if t and (i := text.find(t, start, stop)) >= 0]
    if not found:
        return None
    i, t = min(found, key=lambda f: (f[0], -len(f[1])))
    return i, i + len(t)


def _owner_of(start: int, ends: list[int], base: int, after: int) -> int:
    for k, end in enumerate(ends):
        if start < end:
            return base + k
    return after  # past the last message: the generation prompt of the next assistant turn


def _message(result: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": result.content.replace(_DEFUSE, "")}
    if result.reasoning:
        message["reasoning_content"] = result.reasoning.replace(_DEFUSE, "")
    if result.tool_calls:
        message["tool_calls"] = [{"id": c.id, "type": "function",
                                  "function": {"name": c.name.replace(_DEFUSE, ""), "arguments": json.loads(
                                      json.dumps(c.arguments, ensure_ascii=False).replace(_DEFUSE, ""))}}
                                 for c in result.tool_calls]
    return message


def _checked_messages(messages: Any, field_name: str) -> list[dict[str, Any]]:
    if isinstance(messages, Mapping) or not isinstance(messages, Sequence):
        raise SessionError(f"{field_name} must be a list of message dicts", "bad_messages")
    out = []
    for k, m in enumerate(messages):
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str):
            raise SessionError(f"{field_name}[{k}] is not a message (a dict with a 'role')", "bad_messages")
        out.append(copy.deepcopy(dict(m)))
    return out


def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether `b` is the message `a` as a client sends it back (reasoning may be left out, arguments as JSON)."""
    if a.get("role") != b.get("role"):
        return False
    if _text(a.get("content")).strip() != _text(b.get("content")).strip():
        return False
    if a.get("role") != "assistant":
        return True
    ra = next((a[k] for k in _REASONING_KEYS if a.get(k)), None)
    rb = next((b[k] for k in _REASONING_KEYS if b.get(k)), None)
    if rb is not None and (ra or "").strip() != str(rb).strip():
        return False
    return message_calls(a) == message_calls(b)


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def message_calls(message: Mapping[str, Any]) -> list[tuple[Any, Any]]:
    """A message's tool calls as (name, arguments as an object where they parse): what a client sends back."""
    out = []
    for call in message.get("tool_calls") or []:
        fn = call.get("function", call) if isinstance(call, Mapping) else {}
        args = fn.get("arguments")
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except ValueError:
                pass
        out.append((fn.get("name"), args))
    return out


def _jsonable(value: Any) -> Any:
    try:
        return json.loads(json.dumps(value, default=lambda o: getattr(o, "__name__", str(o))))
    except (TypeError, ValueError):
        return str(value)
