"""Findings about one model's chat template, found by rendering probe conversations and comparing the texts.

Nothing here looks at a model's name. Each question is answered by rendering two or more small conversations
through `spec.render` (exactly what transformers would produce) and comparing them: render with and without a
system message to learn whether the template rejects it, merges it into a user turn, appends it to or replaces
a hardcoded default; render with and without `tools`; render reasoning in history and look for it; and so on.

Every probe is wrapped: a template that raises on one probe yields the finding "raises: <its message>" and the
other probes still run, so a report always comes out. A template that fails on the simplest conversation
(one user message), or runs past the time limit, makes the report partial (`Report.error`); a template that
loops forever costs one time limit (default 2 s per probe), not minutes: after it times out, no more probes run.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ..errors import TemplateError, TurnspecError
from ..render import check_template_syntax
from ..template import RenderLimits, template_variables

DEFAULT_PROBE_TIME_LIMIT_S = 2.0

# Probe texts: distinctive, so that finding them in a rendering is unambiguous.
# Each starts and ends with its own letter: renderings are compared by common prefix and suffix, which must
# stop exactly at the probe text (a shared "PROBE_" start would be taken for template text).
USER, USER_2 = "Uprobe_xu", "Wprobe_xw"
SYSTEM = "Sprobe_xs"
ANSWER, ANSWER_2 = "Aprobe_xa", "Bprobe_xb"
REASONING = "Rprobe_xr"
TOOL_RESULT = "Tprobe_xt"
OTHER_ROLE = "Oprobe_xo"
PARTIAL = "Pprobe_xp"
ARG_KEY = "tsprobe_arg"

PROBE_TOOL = {"type": "function", "function": {
    "name": "tsprobe_fn", "description": "Probe function.",
    "parameters": {"type": "object", "properties": {ARG_KEY: {"type": "integer", "description": "A number."}},
                   "required": [ARG_KEY]}}}
PROBE_TOOL_2 = {"type": "function", "function": {
    "name": "tsprobe_other", "description": "Second probe function.",
    "parameters": {"type": "object", "properties": {"other_arg": {"type": "string", "description": "A word."}},
                   "required": ["other_arg"]}}}
# Alphanumeric ids of length 9: Mistral templates reject any other shape.
CALL_ID, CALL_ID_2 = "tsprobe01", "tsprobe02"

# Template variables that switch reasoning on/off or set its effort, and the values tried for each.
REASONING_SWITCHES: dict[str, tuple[Any, ...]] = {
    "enable_thinking": (True, False),
    "thinking": (True, False),
    "enable_reasoning": (True, False),
    "reasoning_effort": ("low", "medium", "high"),
    "thinking_budget": (0, 1024),
}
# Variables every template may read; the rest of what a template reads are its own options.
ROLE_WORDS = frozenset({"system", "user", "assistant", "developer", "tool", "ipython", "model", "bot", "human"})
# Control-token shapes, for templates given without a vocabulary.
_ROLE_LINE = re.compile(r"^\s*(?:%s)\s*(?:\n|:)" % "|".join(sorted(ROLE_WORDS)), re.IGNORECASE)
_TOKEN_SHAPE = re.compile(r"<\|[^<>|\s]+\|>|<[/a-zA-Z_][^<>\s]*>|\[/?[A-Z_]+\]|<｜[^<>]+｜>")


class _Fatal(Exception):
    """The template fails on the simplest conversation: only a partial report is possible."""


class _Skipped(Exception):
    """The template already ran past the time limit: the remaining probes are not run."""


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
def system_behavior(spec: Any, *, time_limit_s: float = DEFAULT_PROBE_TIME_LIMIT_S) -> dict[str, Any]:
    """Only the system-prompt probe (`mode`: native, merged, appends, replaces, unsupported, ignored), for `run -v`."""
    probe = _Onboarding(spec, time_limit_s)
    try:
        probe.discover_base()
        return probe.system()
    except (_Fatal, _Skipped, TurnspecError) as exc:
        return {"mode": "unknown", "message": one_line(exc)}


def one_line(exc: BaseException) -> str:
    """An exception as one short line: the template's own message when it raised."""
    msg = exc.template_message if isinstance(exc, TemplateError) else str(exc)
    if not isinstance(exc, TurnspecError) and not isinstance(exc, _Skipped):
        msg = f"{type(exc).__name__}: {msg}"
    msg = " ".join(str(msg).split())
    return msg if len(msg) <= 300 else msg[:297] + "..."


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, TemplateError) and exc.limit and "time limit" in (exc.template_message or "")


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _common_suffix(a: str, b: str, limit: int) -> int:
    n = min(len(a), len(b)) - limit
    i = 0
    while i < n and a[-1 - i] == b[-1 - i]:
        i += 1
    return i


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


def _show(text: str | None, limit: int = 400) -> str | None:
    if text is None:
        return None
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------------------------------- probes
class _Onboarding:
    def __init__(self, spec: Any, time_limit_s: float):
        self.spec = spec
        self.time_limit_s = time_limit_s
        self.base: dict[str, Any] = {}  # kwargs every probe needs (a tool_use template needs `tools`)
        self.requires: dict[str, str] = {}
        self.timeouts = 0
        self.warnings: list[str] = []
        self.vocab_ok = True
        self.prompt_without_header: str | None = None  # the prompt, when add_generation_prompt adds nothing
        self._control: set[str] | None = None

    # --- rendering with the time-limit circuit breaker -----------------------------------------------------
    def render(self, messages: list[dict[str, Any]], **kwargs: Any) -> str:
        if self.timeouts:
            raise _Skipped(f"not probed: the template ran past the {self.time_limit_s:g} s time limit earlier")
        try:
            return self.spec.render(messages, **{**self.base, **kwargs})
        except TemplateError as exc:
            if _is_timeout(exc):
                self.timeouts += 1
            raise
        except TurnspecError:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. the sandbox's OverflowError: still the template's failure
            msg = f"{type(exc).__name__}: {exc}"
            raise TemplateError(f"the chat template of {self.spec.name} raised: {msg}", model=self.spec.name,
                                template_message=msg) from None

    def attempt(self, messages: list[dict[str, Any]], **kwargs: Any) -> tuple[str | None, str | None]:
        """(text, None) or (None, one-line error) — for probes where raising is the finding."""
        try:
            return self.render(messages, **kwargs), None
        except _Skipped:
            raise
        except TurnspecError as exc:
            if _is_timeout(exc):  # not a finding about this probe: the whole section failed
                raise
            return None, one_line(exc)

    def section(self, findings: dict[str, Any], key: str, fn: Callable[[], Any]) -> None:
        try:
            findings[key] = fn()
        except _Skipped as exc:
            findings[key] = {"skipped": str(exc)}
        except TurnspecError as exc:
            findings[key] = {"error": f"raises: {one_line(exc)}"}
        except Exception as exc:  # noqa: BLE001 - a bug in one probe must not lose the report
            findings[key] = {"error": f"internal error in the {key} probe: {one_line(exc)}"}

    def control_tokens(self) -> set[str]:
        if self._control is None:
            try:
                self._control = set(self.spec.control_tokens())
            except TurnspecError:
                self._control = set(self.spec.special_tokens.values())
        return self._control

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
        try:
            self.discover_base()
        except _Fatal as exc:
            report.error = "; ".join(filter(None, [report.error, str(exc)]))
            findings["bos"] = _bos_from_files(files)
            findings["stops"] = _config_stops(files, spec)
            findings["warnings"] = list(self.warnings) + findings["stops"]["warnings"]
            return report
        if self.requires:
            findings["requires"] = dict(self.requires)
        for key, fn in (("bos", self.bos), ("generation_prompt", self.generation_prompt), ("system", self.system),
                        ("roles", self.roles), ("tools", self.tools), ("reasoning", self.reasoning),
                        ("continue_final_message", self.continue_final), ("stops", self.stops),
                        ("generation_mask", self.generation_mask), ("content_in_markup", self.content_in_markup)):
            self.section(findings, key, fn)
        if self.timeouts:
            timeout = (f"the chat template of {spec.name} ran past the {self.time_limit_s:g} s time limit "
                       "(an endless loop?); the findings after it were not probed")
            report.error = "; ".join(filter(None, [report.error, timeout]))
            if isinstance(findings.get("stops"), dict) and "skipped" in findings["stops"]:
                findings["stops"] = _config_stops(files, spec)
        stop_warnings = findings.get("stops", {}).get("warnings", []) if isinstance(findings.get("stops"), dict) else []
        findings["warnings"] = list(dict.fromkeys([*stop_warnings, *self.warnings]))
        return report

    def _check_vocab(self, report: Report) -> None:
        """A corrupt tokenizer.json is an error for the report, not for the template probes: drop the vocabulary."""
        try:
            self.spec.vocab
        except TurnspecError as exc:
            self.vocab_ok = False
            self.spec.files.tokenizer_factory = None
            report.error = "; ".join(filter(None, [report.error, one_line(exc)]))

    def template_facts(self) -> dict[str, Any]:
        spec = self.spec
        out: dict[str, Any] = {"sha256": spec.template_sha256, "names": sorted(spec.templates),
                               "from": spec.files.provenance.get("template", spec.files.origin),
                               "variables": template_variables(spec.template)}
        return out

    def discover_base(self) -> None:
        """What one user message needs (nothing, a tools list, values for variables the template never defines),
        found as the template analysis finds it; a template that fails anyway is fatal."""
        from ..analysis.probes import Prober

        prober = Prober(self.spec)
        try:
            prober.discover_base()
        except TurnspecError as exc:
            if _is_timeout(exc):
                raise _Fatal(f"the chat template of {self.spec.name} ran past the {self.time_limit_s:g} s time limit "
                             "on a one-message conversation (an endless loop?)") from None
            raise _Fatal(f"{one_line(exc)} (rendering one user message fails: the template is unusable as it is)"
                         ) from None
        self.base = {k: ([PROBE_TOOL] if k == "tools" else v) for k, v in prober.base.items()}
        self.requires = dict(prober.requires)

    # --- BOS -------------------------------------------------------------------------------------------------
    def bos(self) -> dict[str, Any]:
        spec = self.spec
        files = spec.files
        bos = spec.special_tokens.get("bos_token")
        text = self.render([{"role": "user", "content": USER}], add_generation_prompt=True)
        known = files.add_bos_token is not None or (self.vocab_ok and files.tokenizer_factory is not None)
        adds: Any = spec.tokenizer_adds_bos if known else "unknown"
        writes = bool(bos) and text.startswith(bos)
        out: dict[str, Any] = {"token": bos, "template_writes_bos": writes, "tokenizer_adds_bos": adds}
        if bos and not writes and bos in text:
            out["template_writes_bos"] = "not at the start"
        if adds == "unknown":
            out["add_special_tokens_doubles_bos"] = "unknown (no tokenizer)" if writes else False
        else:
            out["add_special_tokens_doubles_bos"] = bool(writes and adds)
        if writes and adds is True:
            self.warnings.append(f"the template writes BOS {bos} and the tokenizer adds one too: tokenizing the "
                                 "rendered prompt with add_special_tokens=True doubles it (turnspec's encode does not)")
        return out

    # --- generation prompt -----------------------------------------------------------------------------------
    def generation_prompt(self) -> dict[str, Any]:
        user = [{"role": "user", "content": USER}]
        without = self.render(user)
        with_prompt = self.render(user, add_generation_prompt=True)
        out: dict[str, Any] = {}
        if with_prompt.startswith(without):
            text = with_prompt[len(without):]
            out["text"] = text
        else:
            # Phi-3.5 ends a conversation with <|endoftext|> unless the generation prompt is asked for.
            i = len(self._cut_partial(with_prompt[:_common_prefix(without, with_prompt)]))
            text = with_prompt[i:]
            out["text"] = text
            out["replaces_ending"] = without[i:]
        self.prompt_without_header = with_prompt if not text else None
        tokens = self._tokens_after(with_prompt, len(with_prompt) - len(text))
        if tokens is not None:
            out["tokens"] = tokens
        finished, error = self.attempt([*user, {"role": "assistant", "content": ANSWER}])
        if finished is not None:
            out["matches_finished_turn"] = finished.startswith(with_prompt)
        else:
            out["matches_finished_turn"] = f"raises: {error}"
        out["boundary"] = ("the model writes right after the generation prompt" if text else
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

    # --- system prompt ---------------------------------------------------------------------------------------
    def system(self) -> dict[str, Any]:
        user = [{"role": "user", "content": USER}]
        without = self.render(user, add_generation_prompt=True)
        with_sys, error = self.attempt([{"role": "system", "content": SYSTEM}, *user], add_generation_prompt=True)
        if with_sys is None:
            return {"mode": "unsupported", "message": error}
        if SYSTEM not in with_sys:
            return {"mode": "ignored", "detail": "the template renders a system message but drops its text"}
        p = _common_prefix(without, with_sys)
        s = _common_suffix(without, with_sys, p)
        removed = without[p:len(without) - s]
        if removed.strip():
            default = self._default_text(removed) or removed.strip()
            return {"mode": "replaces", "default": default}
        head = self._cut_partial(without[:p])
        default = self._default_text(head)
        if default:
            # Between the end of the default's text and the system text: a control token means a new message.
            last_piece = default.splitlines()[-1]
            end = with_sys.rfind(last_piece, 0, with_sys.find(SYSTEM))
            between = with_sys[end + len(last_piece):with_sys.find(SYSTEM)] if end >= 0 else ""
            same_block = not self._tokens_in(between)
            return {"mode": "appends", "default": default,
                    "placement": "same block as the default" if same_block else "a separate message after the default"}
        return self._merged_or_native(without, with_sys)

    def _merged_or_native(self, without: str, with_sys: str) -> dict[str, Any]:
        """Native: a turn boundary between the system text and the user's. Merged: only plain text between them."""
        u0 = without.find(USER)
        pre_user = without[:u0] if u0 >= 0 else ""
        si, ui = with_sys.find(SYSTEM), with_sys.find(USER)
        between = with_sys[si + len(SYSTEM):ui] if si < ui else with_sys[ui + len(USER):si]
        header = _suffix_with_visible(pre_user, 4)
        # Known control tokens only (not look-alikes: Llama-2's "<</SYS>>" is text inside the user turn).
        ends = [t for t in self.control_tokens() if t and not t.isspace()]
        boundary = bool(header and header in between) or any(t in between for t in ends)
        if boundary:
            return {"mode": "native"}
        out: dict[str, Any] = {"mode": "merged", "separator": between}
        # Which user turn gets it: render two user turns and see where the system text lands.
        conv = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER},
                {"role": "assistant", "content": ANSWER}, {"role": "user", "content": USER_2}]
        text, _ = self.attempt(conv, add_generation_prompt=True)
        if text is not None and SYSTEM in text:
            out["into"] = "the last user turn" if text.find(SYSTEM) > text.find(ANSWER) else "the first user turn"
        return out

    def _tokens_in(self, text: str) -> list[str]:
        found = [t for t in self.control_tokens() if t and t in text]
        found += _TOKEN_SHAPE.findall(text)
        return found

    def _cut_partial(self, text: str) -> str:
        """Cut a common prefix back to before a control token it ends inside (`<|` of `<|user|>` vs `<|system|>`)."""
        for opener in ("<|", "<｜", "<", "["):
            i = text.rfind(opener)
            if i >= 0 and not _TOKEN_SHAPE.match(text, i) and not any(text.startswith(t, i) for t in self.control_tokens()):
                closer = {"<|": "|>", "<｜": "｜>", "<": ">", "[": "]"}[opener]
                if closer not in text[i:]:
                    text = text[:i]
        return text

    def _default_text(self, text: str) -> str | None:
        """The natural-language text in `text` between control tokens (role names dropped), or None."""
        pieces = re.split("|".join(re.escape(t) for t in sorted(self._tokens_in(text), key=len, reverse=True))
                          or r"(?!)", text)
        kept = [_ROLE_LINE.sub("", p).strip() for p in pieces]
        kept = [p for p in kept if p and p.lower() not in ROLE_WORDS]
        kept = [p for p in kept if sum(c.isalpha() for c in p) >= 8]
        return "\n".join(kept) if kept else None

    # --- roles -----------------------------------------------------------------------------------------------
    def roles(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        text, error = self.attempt([{"role": "user", "content": USER}, {"role": "user", "content": USER_2}],
                                   add_generation_prompt=True)
        if error is not None:
            out["must_alternate"] = True
            out["alternate_message"] = error
        else:
            out["must_alternate"] = False
            if USER_2 not in text:
                out["must_alternate"] = "second user message dropped"
        call = {"role": "assistant", "content": "", "tool_calls": [_call(CALL_ID, PROBE_TOOL, {ARG_KEY: 7})]}
        for role in ("tool", "ipython"):
            conv = [{"role": "user", "content": USER}, call,
                    {"role": role, "content": OTHER_ROLE, "tool_call_id": CALL_ID, "name": "tsprobe_fn"}]
            out[role] = self._accepted(conv, tools=[PROBE_TOOL])
        out["developer"] = self._accepted([{"role": "developer", "content": OTHER_ROLE},
                                           {"role": "user", "content": USER}])
        return out

    def _accepted(self, conv: list[dict[str, Any]], **kwargs: Any) -> str:
        text, error = self.attempt(conv, add_generation_prompt=True, **kwargs)
        if text is None:
            return f"raises: {error}"
        return "accepted" if OTHER_ROLE in text else "dropped"

    # --- tools -----------------------------------------------------------------------------------------------
    def tools(self) -> dict[str, Any]:
        user = [{"role": "user", "content": USER}]
        out: dict[str, Any] = {"reads": self._reads()}
        if "tools" in self.base:
            out["mode"] = "rendered"
            out["required"] = True
        else:
            plain = self.render(user, add_generation_prompt=True)
            with_tools, error = self.attempt(user, add_generation_prompt=True, tools=[PROBE_TOOL])
            if with_tools is None:
                return {"mode": "raises", "message": error, **out}
            out["mode"] = "ignored" if with_tools == plain else "rendered"
            if out["mode"] == "rendered" and "tsprobe_fn" not in with_tools:
                out["detail"] = "the rendering changes but does not name the tool"
        if out["mode"] == "ignored":
            return out
        tools = [PROBE_TOOL, PROBE_TOOL_2]
        out["arguments"] = self._arguments(tools)
        as_string = out["arguments"]["accepts"] == "string"
        single = [{"role": "user", "content": USER},
                  {"role": "assistant", "content": "",
                   "tool_calls": [_call(CALL_ID, PROBE_TOOL, {ARG_KEY: 7}, as_string)]},
                  {"role": "tool", "content": TOOL_RESULT, "tool_call_id": CALL_ID, "name": "tsprobe_fn"}]
        text, error = self.attempt(single, add_generation_prompt=True, tools=tools)
        if text is None:
            out["round_trip"] = f"raises: {error}"
        else:
            has_call, has_result = "tsprobe_fn" in text.split(USER, 1)[-1], TOOL_RESULT in text
            out["round_trip"] = ("ok" if has_call and has_result else
                                 "tool call dropped" if has_result else "tool result dropped" if has_call else
                                 "tool call and result dropped")
        out["parallel_calls"] = self._parallel(tools, as_string)
        return out

    def _reads(self) -> list[str] | str:
        """The call syntaxes the reader will read (from the template analysis), or why calls are not readable."""
        from ..formats import format_of

        return format_of(self.spec.analysis).reads()

    def _parallel(self, tools: list[dict[str, Any]], as_string: bool) -> str:
        calls = [_call(CALL_ID, PROBE_TOOL, {ARG_KEY: 7}, as_string),
                 _call(CALL_ID_2, PROBE_TOOL_2, {"other_arg": "tsword"}, as_string)]
        conv = [{"role": "user", "content": USER}, {"role": "assistant", "content": "", "tool_calls": calls},
                {"role": "tool", "content": TOOL_RESULT, "tool_call_id": CALL_ID, "name": "tsprobe_fn"},
                {"role": "tool", "content": TOOL_RESULT + "_2", "tool_call_id": CALL_ID_2, "name": "tsprobe_other"}]
        text, error = self.attempt(conv, add_generation_prompt=True, tools=tools)
        if text is None:
            return f"single (two calls raise: {error})"
        after = text.split(USER, 1)[-1]
        if "tsprobe_other" in after and "tsword" in after:
            return "parallel"
        return "single (the second call is dropped)"

    def _arguments(self, tools: list[dict[str, Any]]) -> dict[str, Any]:
        """Render a call with arguments as a dict and as a JSON string; say which renders as clean JSON."""
        result: dict[str, Any] = {}
        for form, args in (("object", {ARG_KEY: 7}), ("string", '{"%s": 7}' % ARG_KEY)):
            conv = [{"role": "user", "content": USER},
                    {"role": "assistant", "content": "", "tool_calls": [_call(CALL_ID, PROBE_TOOL, args)]}]
            text, error = self.attempt(conv, tools=tools)
            if text is None:
                result[form] = f"raises: {error}"
                continue
            after = text.split(USER, 1)[-1]
            if re.search(r'\\+"' + ARG_KEY, after):
                result[form] = "double-encoded"
            elif re.search(r'["\']?' + ARG_KEY + r'["\']?\s*[:=]\s*7', after):
                result[form] = "ok"
            else:
                result[form] = "dropped"
        ok = [form for form in ("object", "string") if result.get(form) == "ok"]
        result["accepts"] = "both" if len(ok) == 2 else ok[0] if ok else "neither"
        return result

    # --- reasoning -------------------------------------------------------------------------------------------
    def reasoning(self) -> dict[str, Any]:
        syntax = self.spec.analysis.reasoning
        out: dict[str, Any] = {"format": syntax.kind}
        if syntax.kind == "tags":
            out.update(open=syntax.open, close=syntax.close, found_in=syntax.source)
        elif self.spec.analysis.channels is not None:
            out["reads"] = self.spec.analysis.channels.describe()
        elif syntax.reason:
            out["reads"] = f"not readable: {syntax.reason}"
        out["prompt_opens_reasoning"] = syntax.prompt_opens
        user = [{"role": "user", "content": USER}]
        prompt = self.render(user, add_generation_prompt=True)
        out["switches"] = self._switches(prompt)
        # Reasoning passed as a message field, in history and in the final turn.
        first = {"role": "assistant", "content": ANSWER, "reasoning_content": REASONING}
        hist, error = self.attempt([*user, first, {"role": "user", "content": USER_2}], add_generation_prompt=True)
        last, error_last = self.attempt([*user, first])
        if hist is None or last is None:
            out["history_reasoning"] = f"raises: {error or error_last}"
        else:
            in_hist, in_last = REASONING in hist, REASONING in last
            out["history_reasoning"] = ("kept" if in_hist else
                                        "dropped (kept in a final assistant turn)" if in_last else
                                        "dropped" if out["format"] != "none" else "not rendered")
        if syntax.kind == "tags":
            tagged = {"role": "assistant", "content": f"{syntax.open}{REASONING}{syntax.close}{ANSWER}"}
            text, error = self.attempt([*user, tagged, {"role": "user", "content": USER_2}], add_generation_prompt=True)
            out["history_think_in_content"] = (f"raises: {error}" if text is None else
                                               "kept" if REASONING in text else "stripped")
        return out

    def _switches(self, prompt: str) -> dict[str, Any]:
        """Each reasoning switch the template reads, with what each value changes in the prompt."""
        variables = set(template_variables(self.spec.template))
        user = [{"role": "user", "content": USER}]
        out: dict[str, Any] = {}
        base_without = self.render(user)
        for name, values in REASONING_SWITCHES.items():
            if name not in variables:
                continue
            effects: dict[str, Any] = {}
            for value in values:
                key = str(value).lower() if isinstance(value, bool) else str(value)
                text, error = self.attempt(user, add_generation_prompt=True, **{name: value})
                without, _ = self.attempt(user, **{name: value})
                if text is None:
                    effects[key] = f"raises: {error}"
                elif text == prompt:
                    effects[key] = "same as default"
                elif without == base_without and text.startswith(without):
                    effects[key] = f"generation prompt: {text[len(without):]!r}"
                else:
                    p = _common_prefix(prompt, text)
                    effects[key] = f"changes the prompt at: {_show(text[p:p + 60], 60)!r}"
            out[name] = effects
        return out

    # --- continue_final_message ------------------------------------------------------------------------------
    def continue_final(self) -> dict[str, Any]:
        conv = [{"role": "user", "content": USER}, {"role": "assistant", "content": PARTIAL}]
        text, error = self.attempt(conv, continue_final_message=True)
        if text is None:
            return {"works": False, "message": error}
        return {"works": text.endswith(PARTIAL)}

    # --- stops -----------------------------------------------------------------------------------------------
    def stops(self) -> dict[str, Any]:
        if self.timeouts:
            raise _Skipped("not probed: the template ran past the time limit earlier")
        stops = self.spec.stops
        out = stops.as_dict()
        out["message_end"] = stops.message_end
        analysis = self.spec.analysis
        out["turn_end_sources"] = dict(analysis.turn_end_sources)
        if analysis.guards:
            out["guards"] = list(analysis.guards)
        prompt = self.prompt_without_header
        if prompt is not None and any(prompt.rstrip().endswith(t) for t in stops.tokens if t):
            # [/INST] is a cue for the model; a prompt ending in a turn-end token with no header is not.
            self.warnings.append("add_generation_prompt adds nothing, and the prompt ends with an end-of-turn token: "
                                 "the model must write the assistant header itself")
        return out

    # --- generation mask -------------------------------------------------------------------------------------
    def content_in_markup(self) -> list[str]:
        """Request values the template writes into its headers (turnspec.analysis.exposed)."""
        from ..analysis.exposed import content_in_markup

        return content_in_markup(self.spec)

    def generation_mask(self) -> dict[str, Any]:
        from ..encoding import universal_spans

        spec = self.spec
        out: dict[str, Any] = {"generation_tag": spec.has_generation_tag}
        convs = {"plain": [{"role": "user", "content": USER}, {"role": "assistant", "content": ANSWER},
                           {"role": "user", "content": USER_2}, {"role": "assistant", "content": ANSWER_2}]}
        if spec.analysis.reasoning.kind != "none":
            convs["with reasoning"] = [
                {"role": "user", "content": USER},
                {"role": "assistant", "content": ANSWER, "reasoning_content": REASONING},
                {"role": "user", "content": USER_2},
                {"role": "assistant", "content": ANSWER_2, "reasoning_content": REASONING + "_2"}]
        exact = True
        notes: list[str] = []
        for label, conv in convs.items():
            full = self.render(conv)
            _spans, ok, conv_notes = universal_spans(spec, conv, full, dict(self.base))
            exact = exact and ok
            notes += [f"{label}: {n}" for n in conv_notes]
        out["universal_exact"] = exact
        if notes:
            out["notes"] = notes
        if not exact and not spec.has_generation_tag:
            self.warnings.append("turnspec's universal assistant mask is not exact on this template "
                                 "(see generation_mask.notes): check masks before training on it")
        out["method"] = "generation-tag" if spec.has_generation_tag else "universal"
        return out


def _call(call_id: str, tool: dict[str, Any], arguments: Any, as_string: bool = False) -> dict[str, Any]:
    if as_string and not isinstance(arguments, str):
        import json

        arguments = json.dumps(arguments)
    return {"id": call_id, "type": "function", "function": {"name": tool["function"]["name"], "arguments": arguments}}


def _suffix_with_visible(text: str, n: int) -> str:
    """The shortest suffix of `text` holding `n` non-whitespace characters (all of them if fewer), stripped."""
    count = 0
    for i in range(len(text) - 1, -1, -1):
        if not text[i].isspace():
            count += 1
            if count == n:
                return text[i:].rstrip() or text[i:]
    return text.strip()


def timestamp() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()
