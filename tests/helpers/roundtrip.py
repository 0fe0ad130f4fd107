"""Round trip of assistant messages through a template and back through the spec's reader.

For a message M after a conversation C: render(C + [M]) minus render(C, add_generation_prompt=True) is what the
model would have written for M. Read through the spec's reader (whole, and token by token with a vocabulary that
has the template's control tokens as special tokens), it must give back M's content, reasoning and calls.

Where the template renders a finished turn differently from how its generation prompt opens one (it drops an
opened `<think>` from history, or reorders turns), the output is read from where the two renderings part.
Cases the template does not render (its reasoning or calls are dropped, or it raises) are reported with that
reason instead of a verdict.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Tokenizer

import turnspec
from turnspec.analysis.markup import Markup

CONVERSATION = [{"role": "user", "content": "What is the weather in Paris, and the time there?"}]
CONTENT = "The answer is 42."
REASONING = "Let me think step by step."
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the weather for a city.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "The city."},
        "days": {"type": "integer", "description": "How many days."}}, "required": ["city"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "Get the time in a timezone.",
    "parameters": {"type": "object", "properties": {"tz": {"type": "string", "description": "IANA zone."}},
                   "required": ["tz"]}}}
TOOLS = [WEATHER, TIME]
CALL_1 = ("get_weather", {"city": "Paris, France", "days": 3})
CALL_2 = ("get_time", {"tz": "Europe/Paris"})
CASES = ("content", "reasoning", "one call", "two calls")


def message(case: str, as_string: bool = False) -> dict[str, Any]:
    def call(i: int, name: str, args: dict[str, Any]) -> dict[str, Any]:
        return {"id": f"call{i:05d}", "type": "function",
                "function": {"name": name, "arguments": json.dumps(args) if as_string else args}}

    if case == "content":
        return {"role": "assistant", "content": CONTENT}
    if case == "reasoning":  # `reasoning`: rendering aliases it to `reasoning_content` and `thinking` (transformers
        # does), and templates that read `message.reasoning` itself (Solar Open) see it too
        return {"role": "assistant", "content": CONTENT, "reasoning": REASONING}
    calls = [call(1, *CALL_1)] + ([call(2, *CALL_2)] if case == "two calls" else [])
    return {"role": "assistant", "content": "", "tool_calls": calls}


def expected(case: str) -> tuple[str, str, list[tuple[str, dict[str, Any]]]]:
    """(content, reasoning, calls) the reader must give back."""
    return {"content": (CONTENT, "", []), "reasoning": (CONTENT, REASONING, []),
            "one call": ("", "", [CALL_1]), "two calls": ("", "", [CALL_1, CALL_2])}[case]


@dataclass
class Outcome:
    case: str
    verdict: str  # "ok", "MISMATCH", or "not rendered: <why>"
    detail: str = ""


@dataclass
class TemplateReport:
    template: str
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.verdict == "MISMATCH"]


def vocab_with_control_tokens(base: Path, tokens: list[str]) -> Tokenizer:
    """SmolLM2's byte-level BPE with the template's control tokens added as special tokens."""
    tok = Tokenizer.from_file(str(base))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in sorted(tokens)])
    return tok


def spec_for(template: str, special_tokens: dict[str, str], base_tokenizer: Path) -> Any:
    bare = turnspec.from_template(template, special_tokens=special_tokens)
    tokens = [t for t in bare.analysis.control_tokens if t.strip()]
    tokens += [v for v in special_tokens.values() if v]
    tok = vocab_with_control_tokens(base_tokenizer, tokens)
    return turnspec.from_template(template, special_tokens=special_tokens, tokenizer=tok)


def tools_for(spec: Any) -> list[dict[str, Any]]:
    """The tools as the template takes them: OpenAI-style, or bare function schemas where the analysis found it
    wants those (Apertus)."""
    return [t["function"] for t in TOOLS] if "bare function schemas" in spec.analysis.tools.rendered else TOOLS


def _render(spec: Any, case: str) -> tuple[str, str] | str:
    """(prompt text the output continues, output) or the reason the case is not rendered."""
    error = ""
    tools = tools_for(spec)
    # variables the template reads without defining (firefunction's `functions`), as the analysis probed them
    extra = {k: "" for k in spec.analysis.requires if k != "tools"}
    for as_string in (False, True):
        try:
            full = spec.render([*CONVERSATION, message(case, as_string)], tools=tools, **extra)
            prompt = spec.render(CONVERSATION, add_generation_prompt=True, tools=tools, **extra)
        except turnspec.TurnspecError as exc:
            error = f"the template raises ({' '.join(str(exc).split())[:120]})"
            continue
        prompt_text, output = _split(spec, prompt, full)
        content, reasoning, calls = expected(case)
        if reasoning and reasoning not in output:
            return "the template does not render reasoning"
        if calls and not all(name in output for name, _ in calls):
            if calls[-1][0] not in output and CALL_1[0] in output:
                return "the template renders only one call of two"
            if as_string:
                return "the template does not render tool calls"
            continue
        if calls and not all(str(v) in output for _, args in calls for v in args.values()):
            continue  # arguments not rendered as given: try them as a JSON string
        if content and content not in output:
            return "the template does not render the answer"
        r = spec.analysis.reasoning
        if content and not reasoning and r.prompt_opens and r.close not in output and prompt_text == prompt:
            return ("the template writes a finished answer inside the reasoning block its generation prompt opens, "
                    "never closed (read as reasoning, as an unclosed block from a model is)")
        return prompt_text, output
    return error or "the template does not render tool calls"


def _split(spec: Any, prompt: str, full: str) -> tuple[str, str]:
    """(the prompt the output continues, the output): after the generation prompt, or, where the finished
    rendering parts from it earlier, from that point — past the assistant header if the rendering repeats it."""
    if full.startswith(prompt):
        return prompt, full[len(prompt):]
    markup = Markup(spec.analysis.control_tokens)
    n = 0
    while n < min(len(full), len(prompt)) and full[n] == prompt[n]:
        n += 1
    n = min(markup.snap(full, n), markup.snap(prompt, n))
    r = spec.analysis.reasoning
    if r.prompt_opens and r.close and r.close in full[n:]:
        return prompt, full[n:]  # the rendering continues the block the prompt opened (Apriel's reasoning)
    header = spec.analysis.assistant_header.strip()
    if header and full.find(header, n) >= 0 and not full[n:full.find(header, n)].strip(" \n") .replace(header, ""):
        n = full.find(header, n) + len(header)
        while n < len(full) and full[n] in " \n":
            n += 1
    return full[:n], full[n:]


def read_back(spec: Any, prompt: str, output: str, tokenizer: Tokenizer | None) -> tuple[Any, Any]:
    tools = tools_for(spec)
    whole = spec.reader(prompt, tools=tools).read_all(output)
    streamed = None
    if tokenizer is not None:
        reader = spec.reader(prompt, tools=tools)
        for tid in tokenizer.encode(output, add_special_tokens=False).ids:
            reader.feed_token(tid)
            if reader.done:
                break
        reader.finish()
        streamed = reader.result
    return whole, streamed


def _summary(result: Any) -> tuple[str, str, list[tuple[str, dict[str, Any]]]]:
    return (result.content.strip(), result.reasoning.strip(), [(c.name, c.arguments) for c in result.tool_calls])


def round_trip(name: str, spec: Any, tokenizer: Tokenizer | None) -> TemplateReport:
    report = TemplateReport(name)
    for case in CASES:
        rendered = _render(spec, case)
        if isinstance(rendered, str):
            report.outcomes.append(Outcome(case, f"not rendered: {rendered}"))
            continue
        prompt, output = rendered
        want = expected(case)
        whole, streamed = read_back(spec, prompt, output, tokenizer)
        got = _summary(whole)
        problems = []
        if got != want:
            problems.append(f"whole: {got!r} from {output!r}")
        if streamed is not None and _summary(streamed) != want:
            problems.append(f"token by token: {_summary(streamed)!r}")
        report.outcomes.append(Outcome(case, "MISMATCH" if problems else "ok", "; ".join(problems)))
    return report


def table(reports: list[TemplateReport]) -> str:
    """The round-trip table: one row per template, one column per case."""
    width = max(len(r.template) for r in reports)
    lines = [f"{'template':<{width}}  " + "  ".join(f"{c:<10}" for c in CASES)]
    reasons: dict[str, str] = {}
    for r in reports:
        cells = []
        for o in r.outcomes:
            if o.verdict.startswith("not rendered"):
                key = o.verdict[len("not rendered: "):]
                mark = reasons.setdefault(key, f"n{len(reasons) + 1}")
                cells.append(f"-({mark})")
            else:
                cells.append(o.verdict)
        lines.append(f"{r.template:<{width}}  " + "  ".join(f"{c:<10}" for c in cells))
    lines.append("")
    lines += [f"  ({mark}) not rendered: {why}" for why, mark in reasons.items()]
    ok = sum(o.verdict == "ok" for r in reports for o in r.outcomes)
    rendered = sum(not o.verdict.startswith("not rendered") for r in reports for o in r.outcomes)
    lines.append(f"  read back: {ok}/{rendered} rendered cases; "
                 f"{sum(not r.failures for r in reports)}/{len(reports)} templates with no mismatch")
    return "\n".join(lines)
