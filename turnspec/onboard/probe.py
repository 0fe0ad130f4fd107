"""Findings about one model's chat template, formatted from its template analysis (turnspec.analysis).

Nothing here looks at a model's name, and nothing here renders the template: every finding is a fact the analysis
learned by rendering probe conversations (turnspec.analysis.facts: system prompt, roles, continue_final_message, BOS,
tool conversations, reasoning switches, masks), so each fact has one wording wherever it is shown.

A template that raises on one probe yields the finding "raises: <its message>" and the other findings still come
out, so a report always comes out. A template that fails on the simplest conversation (one user message), or runs
past the time limit, makes the report partial (`Report.error`); a template that loops forever costs one time limit
(default 2 s per probe), not minutes: after it times out, the analysis renders no more probes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ..analysis.probes import ProbeSkipped
from ..errors import TurnspecError, one_line
from ..render import check_template_syntax
from ..template import RenderLimits, template_variables

DEFAULT_PROBE_TIME_LIMIT_S = 2.0


@dataclass
class Report:
    """The onboarding of one model: facts about its files, findings about its template, and what went wrong.

    `error` is the one-line reason the report is partial (a broken file, no template, a template that fails on
    one user message or loops forever); the CLI prints it on stderr and exits non-zero.
    """

    model: str
    source: dict[str, Any] = field(default_factory=dict)
    template_sha256: str | None = None
    findings: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    notices: list[str] = field(default_factory=list)

    @property
    def partial(self) -> bool:
        return self.error is not None

    def warnings(self) -> list[str]:
        return list(self.findings.get("warnings") or [])

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "source": self.source, "template_sha256": self.template_sha256,
                "error": self.error, "notices": list(self.notices), "findings": self.findings}


# --------------------------------------------------------------------------------------------------- entry points
def onboard_model(model: str | Path, *, template: str | Path | None = None, cache_dir: Path | None = None,
                  time_limit_s: float = DEFAULT_PROBE_TIME_LIMIT_S, name: str | None = None,
                  origin: str | None = None) -> Report:
    """Onboard MODEL (folder, .gguf, .jinja or cached repo id). Never raises for a broken model: see `Report.error`."""
    from .source import load_for_onboarding

    loaded = load_for_onboarding(model, template=template, cache_dir=cache_dir, name=name, origin=origin,
                                 limits=RenderLimits(time_limit_s=time_limit_s))
    if loaded.spec is not None:
        report = onboard_spec(loaded.spec, time_limit_s=time_limit_s)
        if loaded.error:
            report.error = loaded.error + (f" (partial report: {report.error})" if report.error else "")
        return report
    report = Report(model=loaded.files.name if loaded.files else str(model), error=loaded.error)
    if loaded.files is not None:
        report.source = _source_facts(loaded.files)
        report.findings = {"bos": _bos_from_files(loaded.files), "stops": _config_stops(loaded.files, None)}
        report.findings["warnings"] = list(report.findings["stops"].get("warnings", []))
    else:
        report.source = {"origin": "unknown", "path": str(model)}
    return report


def onboard_spec(spec: Any, *, time_limit_s: float = DEFAULT_PROBE_TIME_LIMIT_S) -> Report:
    """Run every probe on `spec` (within `time_limit_s` per render) and collect the findings."""
    saved_limits = spec.limits
    spec.limits = RenderLimits(time_limit_s=time_limit_s,
                               max_output_chars=(saved_limits or RenderLimits()).max_output_chars)
    try:
        return _Onboarding(spec, time_limit_s).run()
    finally:
        spec.limits = saved_limits


# --------------------------------------------------------------------------------------------------- helpers
def _source_facts(files: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"origin": files.origin, "path": str(files.path) if files.path else None}
    if files.provenance:
        out["files"] = {k: str(v) for k, v in files.provenance.items()}
    if files.templates:
        out["templates"] = {n: hashlib.sha256(t.encode("utf-8")).hexdigest() for n, t in files.templates.items()}
    return out


def _bos_from_files(files: Any) -> dict[str, Any]:
    return {"token": files.special_tokens.get("bos_token"),
            "tokenizer_adds_bos": files.add_bos_token if files.add_bos_token is not None else "unknown"}


def _config_stops(files: Any, spec: Any) -> dict[str, Any]:
    """Stops from generation_config and the tokenizer's eos only, for when the template cannot be rendered."""
    ids = files.generation_config.get("eos_token_id")
    ids = [ids] if isinstance(ids, int) else [i for i in (ids or []) if isinstance(i, int)]
    stops: list[dict[str, Any]] = []
    for tid in ids:
        tok = None
        if spec is not None:
            try:
                tok = spec.id_to_token(tid)
            except TurnspecError:
                tok = None
        stops.append({"token": tok, "id": tid, "sources": ["generation_config"]})
    eos = files.special_tokens.get("eos_token")
    if eos and not any(s["token"] == eos for s in stops):
        stops.append({"token": eos, "id": None, "sources": ["tokenizer"]})
    warnings = ["stops come from generation_config/tokenizer only: the template could not be rendered"]
    return {"token_ids": sorted(s["id"] for s in stops if s["id"] is not None), "stops": stops, "strings": [],
            "end_of_text": [], "warnings": warnings}


# --------------------------------------------------------------------------------------------------- findings
#: Findings that need renderings beyond the analysis's first pass: skipped once the template ran past the time limit.
_LAZY = frozenset({"roles", "tools", "reasoning", "stops", "generation_mask", "content_in_markup"})


class _Onboarding:
    """The report of one spec, each section formatted from the analysis's facts."""

    def __init__(self, spec: Any, time_limit_s: float):
        self.spec = spec
        self.time_limit_s = time_limit_s
        self.warnings: list[str] = []
        self.vocab_ok = True
        self.analysis: Any = None

    def section(self, findings: dict[str, Any], key: str, fn: Callable[[], Any]) -> None:
        timed_out = self.analysis is not None and self.analysis.prober.timed_out
        if timed_out and key in _LAZY:
            findings[key] = {"skipped": f"not probed: {timed_out} earlier"}
            return
        try:
            findings[key] = fn()
        except ProbeSkipped as exc:
            findings[key] = {"skipped": exc.template_message}
        except TurnspecError as exc:
            findings[key] = {"error": f"raises: {one_line(exc, limit=300, template_message=True, name_type=True)}"}
        except Exception as exc:  # noqa: BLE001 - a bug in one finding must not lose the report
            findings[key] = {"error": f"internal error in the {key} probe: {one_line(exc, limit=300, template_message=True, name_type=True)}"}

    # --- the run ----------------------------------------------------------------------------------------------
    def run(self) -> Report:
        spec = self.spec
        files = spec.files
        report = Report(model=spec.name, source=_source_facts(files))
        findings: dict[str, Any] = {}
        report.findings = findings
        try:
            report.template_sha256 = spec.template_sha256
            check_template_syntax(spec.template, spec.name)  # as render says it: one line, not a jinja traceback
        except TurnspecError as exc:  # several templates, none named default; a template that does not compile
            report.error = " ".join(str(exc).split())
            findings["bos"] = _bos_from_files(files)
            findings["stops"] = _config_stops(files, None)
            return report
        self.section(findings, "template", self.template_facts)
        self._check_vocab(report)
        self.analysis = analysis = spec.analysis
        prober = analysis.prober
        if not prober.base_found:
            fatal = (f"the chat template of {spec.name} ran past the {self.time_limit_s:g} s time limit on a "
                     "one-message conversation (an endless loop?)" if prober.timed_out else
                     f"{analysis.error} (rendering one user message fails: the template is unusable as it is)")
            report.error = "; ".join(filter(None, [report.error, fatal]))
            findings["bos"] = _bos_from_files(files)
            findings["stops"] = _config_stops(files, spec)
            findings["warnings"] = list(self.warnings) + findings["stops"]["warnings"]
            return report
        if analysis.requires:
            findings["requires"] = dict(analysis.requires)
        for key, fn in (("bos", self.bos), ("generation_prompt", self.generation_prompt), ("system", self.system),
                        ("roles", self.roles), ("tools", self.tools), ("reasoning", self.reasoning),
                        ("continue_final_message", self.continue_final), ("stops", self.stops),
                        ("generation_mask", self.generation_mask), ("content_in_markup", self.content_in_markup),
                        ("history", self.history)):
            self.section(findings, key, fn)
        if prober.timed_out:
            timeout = (f"the chat template of {spec.name} ran past the {self.time_limit_s:g} s time limit "
                       "(an endless loop?); the findings after it were not probed")
            report.error = "; ".join(filter(None, [report.error, timeout]))
            if isinstance(findings.get("stops"), dict) and "skipped" in findings["stops"]:
                findings["stops"] = _config_stops(files, spec)
        stop_warnings = findings.get("stops", {}).get("warnings", []) if isinstance(findings.get("stops"), dict) else []
        findings["warnings"] = list(dict.fromkeys([*stop_warnings, *self.warnings]))
        return report

    def history(self) -> dict[str, Any]:
        """Whether re-rendering after a user / tool / assistant message keeps the earlier tokens
        (spec.prefix_report): what a runner without sessions re-evaluates or trains on wrongly."""
        found = self.spec.prefix_report()
        cases = {}
        for c in found.cases:
            case: dict[str, Any] = {"extends": c.extends}
            if c.extends is False:
                case.update(first_changed_token=c.first_changed_token, reasons=list(c.reasons))
                if c.fixed_by:
                    case["fixed_by"] = dict(c.fixed_by)
            if c.error:
                case["error"] = c.error
            cases[c.appended] = case
        return {"prefix_stable": found.stable, "appending": cases, "lines": found.lines()}

    def _check_vocab(self, report: Report) -> None:
        """A corrupt tokenizer.json is an error for the report, not for the template probes: drop the vocabulary."""
        try:
            self.spec.vocab
        except TurnspecError as exc:
            self.vocab_ok = False
            self.spec.files.tokenizer_factory = None
            report.error = "; ".join(filter(None, [report.error, one_line(exc, limit=300, template_message=True, name_type=True)]))

    def template_facts(self) -> dict[str, Any]:
        spec = self.spec
        return {"sha256": spec.template_sha256, "names": sorted(spec.templates),
                "from": spec.files.provenance.get("template", spec.files.origin),
                "variables": template_variables(spec.template)}

    # --- BOS -------------------------------------------------------------------------------------------------
    def bos(self) -> dict[str, Any]:
        spec, bos = self.spec, self.analysis.bos
        files = spec.files
        known = files.add_bos_token is not None or (self.vocab_ok and files.tokenizer_factory is not None)
        adds: Any = spec.tokenizer_adds_bos if known else "unknown"
        out: dict[str, Any] = {"token": bos.token, "template_writes_bos": bos.template_writes,
                               "tokenizer_adds_bos": adds}
        doubles = bos.doubled_by(None if adds == "unknown" else adds)
        out["add_special_tokens_doubles_bos"] = "unknown (no tokenizer)" if doubles is None else doubles
        if doubles:
            self.warnings.append(f"the template writes BOS {bos.token} and the tokenizer adds one too: tokenizing the "
                                 "rendered prompt with add_special_tokens=True doubles it (turnspec's encode does not)")
        return out

    # --- generation prompt -----------------------------------------------------------------------------------
    def generation_prompt(self) -> dict[str, Any]:
        gp = self.analysis.generation
        out: dict[str, Any] = {"text": gp.text}
        if gp.replaces_ending is not None:
            out["replaces_ending"] = gp.replaces_ending
        tokens = self._tokens_after(gp.prompt, len(gp.prompt) - len(gp.text))
        if tokens is not None:
            out["tokens"] = tokens
        out["matches_finished_turn"] = gp.matches_finished_turn
        out["boundary"] = ("the model writes right after the generation prompt" if gp.text else
                           "the model writes right after the last user turn (no assistant header)")
        return out

    def _tokens_after(self, text: str, start: int) -> list[dict[str, Any]] | None:
        if not self.vocab_ok:
            return None
        vocab = self.spec.vocab
        if vocab is None:
            return None
        ids, offsets = vocab.encode_with_offsets(text)
        return [{"id": tid, "text": text[a:b]} for tid, (a, b) in zip(ids, offsets) if b > start]

    # --- system prompt, roles --------------------------------------------------------------------------------
    def system(self) -> dict[str, Any]:
        return self.analysis.system.finding()

    def roles(self) -> dict[str, Any]:
        roles, tool_use = self.analysis.roles, self.analysis.tool_use
        out: dict[str, Any] = {"must_alternate": roles.must_alternate}
        if roles.alternate_message is not None:
            out["alternate_message"] = roles.alternate_message
        out.update(tool=tool_use.tool_role, ipython=tool_use.ipython_role, developer=roles.developer)
        return out

    # --- tools -----------------------------------------------------------------------------------------------
    def tools(self) -> dict[str, Any]:
        from ..analysis.calls import MUTATION_NOTE

        tool_use = self.analysis.tool_use
        out: dict[str, Any] = {"reads": self._reads()}
        if MUTATION_NOTE in self.analysis.notes:
            out["learned"] = MUTATION_NOTE
        if tool_use.mode == "raises":
            return {"mode": "raises", "message": tool_use.message, **out}
        out["mode"] = tool_use.mode
        if tool_use.required:
            out["required"] = True
        if tool_use.detail:
            out["detail"] = tool_use.detail
        if tool_use.mode == "ignored":
            return out
        out.update(arguments=dict(tool_use.arguments), round_trip=tool_use.round_trip,
                   parallel_calls=tool_use.parallel_calls)
        return out

    def _reads(self) -> list[str] | str:
        """The call syntaxes the reader will read (from the template analysis), or why calls are not readable."""
        from ..analysis.vocab_calls import spec_vocab_calls
        from ..formats import format_of

        vocab_calls = spec_vocab_calls(self.spec)
        if vocab_calls:  # the template renders none: say where they come from
            return [f"{c.describe()} (the vocabulary's call tokens; the template renders no call)" for c in vocab_calls]
        return format_of(self.analysis).reads()

    # --- reasoning -------------------------------------------------------------------------------------------
    def reasoning(self) -> dict[str, Any]:
        syntax = self.analysis.reasoning
        out: dict[str, Any] = {"format": syntax.kind}
        if syntax.kind == "tags":
            out.update(open=syntax.open, close=syntax.close, found_in=syntax.source)
        elif self.spec.analysis.channels is not None:
            out["reads"] = self.spec.analysis.channels.describe()
        elif syntax.reason:
            out["reads"] = f"not readable: {syntax.reason}"
        out["prompt_opens_reasoning"] = syntax.prompt_opens
        switches = self.analysis.reasoning_switches
        out["switches"] = {name: dict(effects) for name, effects in switches.effects.items()}
        out["history_reasoning"] = syntax.history
        if syntax.kind == "tags":
            out["history_think_in_content"] = switches.think_in_content
        return out

    # --- continue_final_message ------------------------------------------------------------------------------
    def continue_final(self) -> dict[str, Any]:
        return self.analysis.continue_final_message.finding()

    # --- stops -----------------------------------------------------------------------------------------------
    def stops(self) -> dict[str, Any]:
        stops = self.spec.stops
        out = stops.as_dict()
        out["message_end"] = stops.message_end
        analysis = self.analysis
        out["turn_end_sources"] = dict(analysis.turn_end_sources)
        if analysis.guards:
            out["guards"] = list(analysis.guards)
        gp = analysis.generation
        if not gp.text and any(gp.prompt.rstrip().endswith(t) for t in stops.tokens if t):
            # [/INST] is a cue for the model; a prompt ending in a turn-end token with no header is not.
            self.warnings.append("add_generation_prompt adds nothing, and the prompt ends with an end-of-turn token: "
                                 "the model must write the assistant header itself")
        return out

    # --- generation mask -------------------------------------------------------------------------------------
    def content_in_markup(self) -> list[str]:
        """Request values the template writes into its headers (turnspec.analysis.exposed)."""
        return list(self.analysis.exposed)

    def generation_mask(self) -> dict[str, Any]:
        spec = self.spec
        out: dict[str, Any] = {"generation_tag": spec.has_generation_tag}
        exact, notes = self.analysis.universal_mask
        out["universal_exact"] = exact
        if notes:
            out["notes"] = list(notes)
        if not exact and not spec.has_generation_tag:
            self.warnings.append("turnspec's universal assistant mask is not exact on this template "
                                 "(see generation_mask.notes): check masks before training on it")
        out["method"] = "generation-tag" if spec.has_generation_tag else "universal"
        return out


def timestamp() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()
