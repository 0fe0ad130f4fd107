"""Multi-turn agent conversations replayed through a session, with completions = the template's own rendering.

user → assistant (reasoning + a tool call) → tool result → assistant (reasoning + answer) → user → assistant → user.
Each completion is what the template writes for the assistant message after the prompt (cut after the first stop
token it writes), tokenized (canonically, or re-split by the caller). Every step checks: earlier ids never change;
the ids the step adds decode to the template's own rendering after the assistant turn; the parsed completion equals
the rendered message (as far as the template renders it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import turnspec
from turnspec.session import SessionError

from turnspec.analysis.probes import common_prefix

from helpers.roundtrip import tools_for

USER_1 = {"role": "user", "content": "What is the weather in Paris?"}
USER_2 = {"role": "user", "content": "Thanks. And tomorrow?"}
USER_3 = {"role": "user", "content": "Great, bye."}


def call(name: str, args: dict[str, Any], cid: str) -> dict[str, Any]:
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}


def agent_script() -> list[tuple[str, dict[str, Any]]]:
    """The default agent conversation: ("assistant", message) steps are sampled, others are new messages."""
    return [
        ("user", USER_1),
        ("assistant", {"role": "assistant", "content": "", "reasoning_content": "I should look it up.",
                       "tool_calls": [call("get_weather", {"city": "Paris", "days": 1}, "call00001")]}),
        ("tool", {"role": "tool", "content": '{"temp_c": 21, "sky": "clear"}', "tool_call_id": "call00001",
                  "name": "get_weather"}),
        ("assistant", {"role": "assistant", "content": "It is 21 °C and clear in Paris.",
                       "reasoning_content": "The tool says 21 and clear."}),
        ("user", USER_2),
        ("assistant", {"role": "assistant", "content": "Tomorrow looks sunny too."}),
        ("user", USER_3),
    ]


@dataclass
class Replay:
    template: str
    steps: int = 0
    refused: str | None = None  # why extend refused (a SessionError reason and message)
    skipped: str | None = None  # why the conversation could not be played at all (the template rejects it)
    rewrites_history: bool = False  # the full re-render differs from the kept ids' text somewhere
    notes: list[str] = field(default_factory=list)


def plain_script() -> list[tuple[str, dict[str, Any]]]:
    """For templates without tool messages (roles must alternate): answers with and without reasoning."""
    return [
        ("user", USER_1),
        ("assistant", {"role": "assistant", "content": "Sunny, 21 °C.", "reasoning_content": "Recall Paris weather."}),
        ("user", USER_2),
        ("assistant", {"role": "assistant", "content": "Tomorrow looks sunny too."}),
        ("user", USER_3),
    ]


def completion_text(spec: Any, history: list[dict[str, Any]], message: dict[str, Any], tools: Any,
                    extra: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """What the model writes for `message` after the prompt for `history`, as the template renders the turn, up
    to and including the first stop token; and the message as sampled. None when no sample can continue the prompt
    as the template renders the turn.

    A generation prompt that opens reasoning the history rendering does not show (DeepSeek-R1's `<think>\n`) is
    continued with the reasoning and its close; one that writes an empty reasoning block (reasoning off) is
    continued with the message without reasoning."""
    r = spec.analysis.reasoning
    prompt = spec.render(history, add_generation_prompt=True, tools=tools, **extra)
    opened = r.kind == "tags" and bool(r.close) and prompt.rfind(r.open) > prompt.rfind(r.close)
    for candidate in (message, {k: v for k, v in message.items() if k != "reasoning_content"}):
        full = spec.render([*history, candidate], tools=tools, **extra)
        n = common_prefix(prompt, full)
        rest, out = prompt[n:], full[n:]
        bare = rest
        for piece in (r.open, r.close, r.label):
            bare = bare.replace(piece, "") if piece else bare
        if out.startswith(rest):
            out = out[len(rest):]
        elif not rest.strip():
            out = out.lstrip(rest)  # the prompt's header line break written differently in history
        elif opened and not bare.strip():
            pass  # the prompt opened reasoning that the history rendering does not show: continued below
        elif r.kind == "tags" and r.close in rest and not bare.strip() and "reasoning_content" not in candidate:
            pass  # the prompt wrote an empty reasoning block (reasoning off): the answer follows it
        elif "reasoning_content" in candidate:
            continue
        else:
            return None
        if opened and r.close not in out:
            thought = candidate.get("reasoning_content") or "Let me see."
            out = f"{thought}\n{r.close}\n\n{out}"
            candidate = {**candidate, "reasoning_content": thought}
        stops = [t for t in (*spec.stops.tokens, *spec.analysis.turn_ends) if t]
        found = [(i, t) for t in stops if (i := out.find(t)) >= 0]
        if found:
            i, t = min(found, key=lambda f: (f[0], -len(f[1])))
            out = out[:i + len(t)]
        return out, candidate
    return None


def expected_reading(out: str, message: dict[str, Any]) -> tuple[str | None, str, list[tuple[str, Any]] | None]:
    """(content, reasoning, calls) the reader must give back: what of the message the template rendered."""
    content = message.get("content") or ""
    reasoning = message.get("reasoning_content") or ""
    calls = [(c["function"]["name"], c["function"]["arguments"]) for c in message.get("tool_calls") or []]
    return (content.strip() if content.strip() in out else None, reasoning if reasoning and reasoning in out else "",
            calls if all(n in out for n, _ in calls) else None)


def replay(spec: Any, name: str, tokenize: Callable[[Any, str], list[int]] | None = None,
           script: list[tuple[str, dict[str, Any]]] | None = None, read: bool = True) -> Replay:
    """Play the agent conversation (else the plain one, for templates without tool turns) through a session."""
    if script is not None:
        return _replay(spec, name, tokenize, script, read)
    report = _replay(spec, name, tokenize, agent_script(), read)
    if report.skipped:
        plain = _replay(spec, name, tokenize, plain_script(), read)
        plain.notes.append(f"played without tool turns ({report.skipped})")
        return plain
    return report


def _replay(spec: Any, name: str, tokenize: Callable[[Any, str], list[int]] | None,
            script: list[tuple[str, dict[str, Any]]], read: bool) -> Replay:
    tools = tools_for(spec)
    extra = {k: "" for k in spec.analysis.requires if k != "tools"}
    tokenize = tokenize or (lambda s, text: s.vocab.encode(text))
    report = Replay(name)
    session = spec.session(tools=tools, **extra)
    vocab = spec.vocab
    pending: list[dict[str, Any]] = []
    held: list[dict[str, Any]] = []  # the conversation as the agent holds it (sampled turns as read back)
    call_ids: dict[str, str] = {}  # the script's call ids -> the ids read back from the samples
    started = False
    for role, message in script:
        if role != "assistant":
            if role == "tool" and message.get("tool_call_id") in call_ids:
                message = {**message, "tool_call_id": call_ids[message["tool_call_id"]]}
            pending.append(message)
            continue
        before = session.ids
        try:
            ids = session.extend(pending) if started else session.prompt_ids(pending)
            started = True
        except SessionError as exc:
            report.refused = f"{exc.reason}: {exc}"
            return report
        except turnspec.TurnspecError as exc:
            report.skipped = f"the template rejects the conversation ({' '.join(str(exc).split())[:100]})"
            return report
        assert ids[:len(before)] == before, "earlier ids changed"
        held = [*held, *pending]
        _check_added(spec, held, tools, extra, vocab.decode(ids[len(before):]) if before else None, report,
                     len(pending))
        if vocab.decode(ids) != spec.render(held, add_generation_prompt=True, tools=tools, **extra):
            report.rewrites_history = True
        pending = []
        try:
            made = completion_text(spec, held, message, tools, extra)
        except turnspec.TurnspecError as exc:
            report.skipped = f"the template rejects the assistant turn ({' '.join(str(exc).split())[:100]})"
            return report
        if made is None:
            report.skipped = "no sample continues the generation prompt as the template renders the turn"
            return report
        out, sampled = made
        sample = tokenize(spec, out)
        assert vocab.decode(sample) == out
        got = session.add_completion(sample)
        assert session.ids[len(ids):] == sample, "sampled ids not kept verbatim"
        if read:
            content, reasoning, calls = expected_reading(out, sampled)
            if content is not None:
                assert got["content"].strip() == content, (got, out)
            assert (got.get("reasoning_content") or "").strip() == reasoning.strip(), (got, out)
            if calls is not None:
                assert [(c["function"]["name"], c["function"]["arguments"]) for c in got.get("tool_calls") or []] \
                    == calls, (got, out)
            for mine, theirs in zip(message.get("tool_calls") or [], got.get("tool_calls") or []):
                call_ids[mine["id"]] = theirs["id"]
        held.append(got if read else sampled)
        report.steps += 1
    if pending:
        before = session.ids
        try:
            ids = session.extend(pending)
        except SessionError as exc:
            report.refused = f"{exc.reason}: {exc}"
            return report
        assert ids[:len(before)] == before
        held = [*held, *pending]
        _check_added(spec, held, tools, extra, vocab.decode(ids[len(before):]), report, len(pending))
        if vocab.decode(ids) != spec.render(held, add_generation_prompt=True, tools=tools, **extra):
            report.rewrites_history = True
    report.notes += session.notes
    sample = session.training_sample()
    assert len(sample.labels) == len(session.ids)
    assert [t for t, lab in zip(sample.input_ids, sample.labels) if lab != -100] == [
        t for t, smp in zip(session._ids, session._sampled) if smp]
    return report


def _after_turn(spec: Any, whole: str, cut: int, without: str) -> bool:
    """`cut` is right after a turn end or stop token, or where the rendering that ends with the assistant turn
    (`without`, the conversation before the new messages) ends: nothing but control tokens of it comes later."""
    a = spec.analysis
    before = whole[:cut]
    if any(before.endswith(t) for t in (*a.turn_ends, *a.history_turn_ends, *spec.stops.tokens) if t):
        return True
    if without.startswith(before):
        rest = without[cut:]
        for span in spec.markup.spans(rest):
            rest = rest.replace(span.text, "")
        return not rest.strip()
    return False


def _check_added(spec: Any, held: list[dict[str, Any]], tools: Any, extra: dict[str, Any], added: str | None,
                 report: Replay, new: int = 0) -> None:
    """The text the step added is the end of the template's own rendering of the conversation, cut right after a
    turn end (or at another role's header), with a turn close first where the sample had none."""
    if added is None:
        return
    whole = spec.render(held, add_generation_prompt=True, tools=tools, **extra)
    without = spec.render(held[:len(held) - new], tools=tools, **extra)
    a = spec.analysis
    closes = ("", *a.turn_ends, *a.history_turn_ends)
    closes += tuple(a.reasoning.close + c for c in closes if a.reasoning.kind == "tags")
    for close in sorted(set(closes), key=len, reverse=True):
        if added.startswith(close) and whole.endswith(added[len(close):]):
            cut = len(whole) - len(added) + len(close)
            assert close or _after_turn(spec, whole, cut, without), (
                f"the added text does not start after the assistant turn: {whole[max(0, cut - 60):cut + 40]!r}")
            return
    raise AssertionError(f"added ids decode to {added!r}, not the end of the template's rendering "
                         f"{whole[-len(added) - 60:]!r}")


