"""The onboarding report for people: one screen, one line per finding, quotes shown with their escapes.

`summary_row` condenses a report to the columns of `turnspec scan`'s coverage table.
"""

from __future__ import annotations

import json
from typing import Any


def q(text: Any, limit: int = 160) -> str:
    """A string as a JSON literal (newlines visible), shortened to `limit` characters."""
    if text is None:
        return "none"
    s = json.dumps(str(text), ensure_ascii=False)
    return s if len(s) <= limit else s[: limit - 2] + "…\""


def yes_no(value: Any) -> str:
    if value is True:
        return "yes"
    if value is False:
        return "no"
    return str(value)


def _problem(section: Any) -> str | None:
    """The error/skip line of a section that failed, else None."""
    if isinstance(section, dict):
        for key in ("error", "skipped"):
            if key in section and len(section) == 1:
                return str(section[key])
    return None


def system_summary(system: Any) -> str:
    if not isinstance(system, dict):
        return "?"
    problem = _problem(system)
    if problem:
        return problem
    mode = system.get("mode", "?")
    if mode == "unsupported":
        return f"unsupported (raises: {system.get('message')})"
    if mode in ("replaces", "appends"):
        out = f"{mode} a default: {q(system.get('default'), 90)}"
        if mode == "appends" and system.get("placement"):
            out += f" ({system['placement']})"
        return out
    if mode == "merged":
        return f"merged into {system.get('into', 'a user turn')}, separated by {q(system.get('separator'))}"
    return str(mode)


def tools_summary(tools: Any) -> str:
    if not isinstance(tools, dict):
        return "?"
    problem = _problem(tools)
    if problem:
        return problem
    mode = tools.get("mode", "?")
    if mode == "raises":
        return f"raises: {tools.get('message')}"
    if mode == "ignored":
        return "ignored (rendering with tools = without)"
    parts = [f"rendered{' (required)' if tools.get('required') else ''}"]
    if "round_trip" in tools:
        parts.append(f"round trip: {tools['round_trip']}")
    if "parallel_calls" in tools:
        parts.append(str(tools["parallel_calls"]))
    args = tools.get("arguments")
    if isinstance(args, dict) and "accepts" in args:
        parts.append(f"arguments as: {args['accepts']}")
    return "; ".join(parts)


def reasoning_summary(reasoning: Any) -> str:
    if not isinstance(reasoning, dict):
        return "?"
    problem = _problem(reasoning)
    if problem:
        return problem
    fmt = reasoning.get("format", "?")
    parts = [f"{reasoning.get('open')}…{reasoning.get('close')}" if fmt == "tags" else str(fmt)]
    if fmt != "none":
        parts.append("prompt opens it" if reasoning.get("prompt_opens_reasoning") else "prompt does not open it")
        found_in = reasoning.get("found_in")
        if found_in and found_in != "rendering":  # no rendering shows the markers: say what told them
            parts.append(f"markers from {found_in}")
        if reasoning.get("history_reasoning"):
            parts.append(f"history: {reasoning['history_reasoning']}")
    switches = reasoning.get("switches") or {}
    if switches:
        parts.append("switches: " + ", ".join(switches))
    return "; ".join(parts)


def reads_summary(findings: dict[str, Any]) -> str:
    """What the reader will read, from the template analysis: reasoning, tool calls (or why not), turn ends."""
    lines = []
    reasoning = findings.get("reasoning")
    if isinstance(reasoning, dict) and not _problem(reasoning):
        fmt = reasoning.get("format")
        if fmt == "tags":
            opened = ", the prompt opens it" if reasoning.get("prompt_opens_reasoning") else ""
            lines.append(f"reasoning: {q(reasoning.get('open'))} … {q(reasoning.get('close'))}"
                         f" (found in the {reasoning.get('found_in')}{opened})")
        else:
            lines.append(f"reasoning: {reasoning.get('reads') or 'none written by this template'}")
    tools = findings.get("tools")
    if isinstance(tools, dict) and not _problem(tools):
        reads = tools.get("reads")
        if isinstance(reads, list):
            lines += [f"tool calls: {q(r, 200)}" for r in reads]
        elif reads:
            lines.append(f"tool calls: {reads}")
        if tools.get("learned"):
            lines.append(f"  ({tools['learned']})")
        lines.append("loose calls naming a declared tool: JSON object or ```json fence, <function=name>{…}, "
                     "[name(key=value)]")
    stops = findings.get("stops")
    if isinstance(stops, dict) and stops.get("guards"):
        lines.append("self-conversation guard: " + ", ".join(stops["guards"]))
    return "\n".join(lines) or "?"


def stops_summary(stops: Any) -> str:
    if not isinstance(stops, dict):
        return "?"
    problem = _problem(stops)
    if problem:
        return problem
    items = []
    for s in stops.get("stops", []):
        tid = f" ({s['id']})" if s.get("id") is not None else ""
        items.append(f"{s.get('token')}{tid}")
    items += [q(s) for s in stops.get("strings", [])]
    return ", ".join(items) or "none"


def format_report(report: Any, *, notices: list[str] | None = None) -> str:
    """The human-readable report of one onboarding (what `turnspec onboard` prints)."""
    f = report.findings
    lines: list[str] = [f"turnspec onboard: {report.model}"]

    def row(label: str, text: str) -> None:
        first, *rest = str(text).split("\n") or [""]
        lines.append(f"  {label:<11} {first}")
        lines.extend(f"  {'':<11} {r}" for r in rest)

    src = report.source or {}
    where = f"{src.get('origin', '?')} {src.get('path') or ''}".rstrip()
    files = src.get("files") or {}
    if files.get("template"):
        where += f" (template from {files['template']})"
    if files.get("skipped"):
        where += f"; unreadable, skipped: {files['skipped']}"
    row("source", where)
    if report.error:
        row("PARTIAL", report.error)
    template = f.get("template")
    if report.template_sha256:
        text = f"sha256 {report.template_sha256}"
        if isinstance(template, dict) and template.get("variables"):
            text += f"\nreads: {', '.join(template['variables'])}"
        if isinstance(template, dict) and len(template.get("names") or []) > 1:
            text += f"\nnamed templates: {', '.join(template['names'])}"
        row("template", text)
    if "requires" in f:
        row("requires", "; ".join(f"{k}: {v}" for k, v in f["requires"].items()))

    bos = f.get("bos")
    if isinstance(bos, dict) and not _problem(bos):
        if bos.get("token") is None:
            row("BOS", "no BOS token configured")
        else:
            text = f"{bos['token']}: "
            if "template_writes_bos" in bos:
                text += f"template writes it: {yes_no(bos['template_writes_bos'])}; "
            text += f"tokenizer adds it: {yes_no(bos.get('tokenizer_adds_bos'))}"
            if "add_special_tokens_doubles_bos" in bos:
                text += f"\nadd_special_tokens=True doubles it: {yes_no(bos['add_special_tokens_doubles_bos'])}"
            row("BOS", text)
    elif bos is not None:
        row("BOS", _problem(bos))

    gp = f.get("generation_prompt")
    if isinstance(gp, dict) and not _problem(gp):
        text = f"add_generation_prompt appends {q(gp.get('text'))}"
        if gp.get("replaces_ending"):
            text += f" (instead of the ending {q(gp['replaces_ending'])})"
        if gp.get("tokens"):
            toks = " ".join(f"{t['id']}:{q(t['text'], 40)}" for t in gp["tokens"])
            text += f"\ntokens: {toks}"
        text += f"\n{gp.get('boundary', '')}; a finished assistant turn starts the same way: " \
                f"{yes_no(gp.get('matches_finished_turn'))}"
        row("gen prompt", text)
    elif gp is not None:
        row("gen prompt", _problem(gp))

    if "system" in f:
        row("system", system_summary(f["system"]))
    roles = f.get("roles")
    if isinstance(roles, dict) and not _problem(roles):
        alt = roles.get("must_alternate")
        text = ("must alternate (raises: " + str(roles.get("alternate_message")) + ")" if alt is True else
                "need not alternate" if alt is False else str(alt))
        text += "\n" + "; ".join(f"{r}: {roles.get(r)}" for r in ("tool", "ipython", "developer") if r in roles)
        row("roles", text)
    elif roles is not None:
        row("roles", _problem(roles))

    mask = f.get("generation_mask")
    if isinstance(mask, dict) and not _problem(mask):
        text = (f"{{% generation %}} in the template: {yes_no(mask.get('generation_tag'))}; "
                f"universal mask exact: {yes_no(mask.get('universal_exact'))}")
        for note in mask.get("notes", [])[:4]:
            text += f"\n- {note}"
        row("mask", text)
    elif mask is not None:
        row("mask", _problem(mask))

    exposed = f.get("content_in_markup")
    if isinstance(exposed, list) and exposed:
        row("exposed", "\n".join(["values written into headers (tokenized as text, but read there as header):",
                                    *exposed]))
    elif exposed is not None and not isinstance(exposed, list):
        row("exposed", _problem(exposed) or "?")
    if "tools" in f:
        row("tools", tools_summary(f["tools"]))
    row("reads", reads_summary(f))
    if "reasoning" in f:
        text = reasoning_summary(f["reasoning"])
        reasoning = f["reasoning"]
        if isinstance(reasoning, dict):
            for name, effects in (reasoning.get("switches") or {}).items():
                for value, effect in (effects or {}).items():
                    text += f"\n{name}={value}: {effect}"
        row("reasoning", text)
    cfm = f.get("continue_final_message")
    if isinstance(cfm, dict) and not _problem(cfm):
        row("continue", "continue_final_message works" if cfm.get("works") is True else
            f"continue_final_message fails: {cfm.get('message') or 'the final message is not at the end'}")
    elif cfm is not None:
        row("continue", _problem(cfm))

    stops = f.get("stops")
    if stops is not None:
        text = stops_summary(stops)
        if isinstance(stops, dict):
            detail = [f"{s.get('token')}: {', '.join(s.get('sources', []))}" for s in stops.get("stops", [])]
            if detail:
                text += "\nsources: " + "; ".join(detail)
            eot = [f"{s.get('token')} ({s.get('id')})" for s in stops.get("end_of_text", [])]
            if eot:
                text += "\nalso halts on (end of text): " + ", ".join(eot)
        row("stops", text)
    history = f.get("history")
    if isinstance(history, dict) and not _problem(history):
        head = ("re-rendering keeps earlier tokens (sessions and re-renders agree)" if history.get("prefix_stable")
                else "re-rendering changes earlier tokens: sessions (run, serve) keep the sampled ids instead")
        row("history", "\n".join([head, *history.get("lines", [])]))
    elif history is not None:
        row("history", _problem(history))
    warnings = f.get("warnings") or []
    if warnings:
        row("warnings", "\n".join(f"- {w}" for w in warnings))
    for notice in [*(report.notices or []), *(notices or [])]:
        row("note", notice)
    return "\n".join(lines) + "\n"


def _tools_short(tools: Any) -> str:
    """`rendered, parallel` / `rendered, single` / `ignored` / `raises` / `required, ...` for the coverage table."""
    if not isinstance(tools, dict):
        return "?"
    if _problem(tools):
        return "error"
    parts = [str(tools.get("mode", "?"))]
    if tools.get("required"):
        parts[0] = "required"
    parallel = tools.get("parallel_calls")
    if isinstance(parallel, str):
        parts.append("parallel" if parallel == "parallel" else "single")
    return ", ".join(parts)


def history_summary(history: Any) -> str:
    """`kept` / `changes: user, tool` (which appended role changes earlier tokens on a re-render) for the table."""
    if not isinstance(history, dict):
        return "?"
    if _problem(history):
        return "error"
    changed = [role for role, case in (history.get("appending") or {}).items()
               if isinstance(case, dict) and case.get("extends") is False]
    return f"changes: {', '.join(changed)}" if changed else "kept"


def summary_row(report: Any) -> dict[str, Any]:
    """One row of the scan coverage table (also the `--json` summary)."""
    f = report.findings or {}
    gp = f.get("generation_prompt")
    fmt = q(gp.get("text"), 48) if isinstance(gp, dict) and "text" in gp else "?"
    system = f.get("system")
    return {
        "model": report.model,
        "origin": (report.source or {}).get("origin"),
        "format": fmt,
        "system": (system.get("mode") if isinstance(system, dict) and "mode" in system else
                   system_summary(system) if system is not None else "?"),
        "tools": _tools_short(f.get("tools")),
        "reasoning": (f["reasoning"].get("format", "?") if isinstance(f.get("reasoning"), dict) else "?"),
        "stops": stops_summary(f.get("stops")) if f.get("stops") is not None else "?",
        "history": history_summary(f.get("history")),
        "warnings": len(f.get("warnings") or []),
        "error": report.error,
    }
