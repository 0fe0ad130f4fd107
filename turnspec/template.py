"""The Jinja environment chat templates run in: the same as transformers', plus limits.

Chat templates are untrusted code from the internet. transformers renders them in jinja2's
`ImmutableSandboxedEnvironment` with `trim_blocks`/`lstrip_blocks`, `loopcontrols`, a `{% generation %}` tag,
a `tojson` filter that does not escape HTML, and the globals `raise_exception`, `strftime_now`, a restricted `dict`
and `namespace`. turnspec builds the identical environment, so templates render byte for byte the same, and adds
what transformers lacks: a time budget (so a template that loops forever fails instead of hanging) and a cap on
the size of strings it can build and output.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import jinja2
import jinja2.exceptions
import jinja2.ext
import jinja2.nodes
import jinja2.sandbox
import jinja2.utils
from jinja2.sandbox import ImmutableSandboxedEnvironment

#: Default limits; generous for real templates (the largest real ones render in well under a millisecond).
DEFAULT_TIME_LIMIT_S = 5.0
DEFAULT_MAX_OUTPUT_CHARS = 20_000_000


class TemplateLimitError(jinja2.exceptions.TemplateError):
    """The template ran past turnspec's time or size limit (an endless loop, or a string bomb)."""


@dataclass
class RenderLimits:
    time_limit_s: float = DEFAULT_TIME_LIMIT_S
    max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS


class _Budget(threading.local):
    """Per-thread render state, so one compiled template serves many threads."""

    max_chars: int = DEFAULT_MAX_OUTPUT_CHARS
    # {% generation %} tracking: the length of the output so far and the spans found.
    tracking: bool = False
    rendered_len: int = 0
    generation_spans: list[tuple[int, int]] | None = None


_budget = _Budget()


class _Watchdog:
    """Interrupts renders that overrun their deadline, in whatever thread they run.

    A daemon thread checks the running renders every 50 ms and raises TemplateLimitError inside an overdue one
    (`PyThreadState_SetAsyncExc`, delivered at the next bytecode). This costs a renderer nothing per template
    operation — unlike hooking every attribute access — so sandboxed rendering stays as fast as transformers'.
    """

    def __init__(self) -> None:
        self.deadlines: dict[int, float] = {}
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def arm(self, seconds: float) -> int:
        tid = threading.get_ident()
        self.deadlines[tid] = time.monotonic() + seconds
        if self.thread is None:
            with self.lock:
                if self.thread is None:
                    self.thread = threading.Thread(target=self._run, name="turnspec-template-watchdog", daemon=True)
                    self.thread.start()
        return tid

    def disarm(self, tid: int) -> None:
        with self.lock:  # never between the watchdog's check and its raise: no late exception in unrelated code
            self.deadlines.pop(tid, None)

    def _run(self) -> None:
        import ctypes

        while True:
            time.sleep(0.05)
            now = time.monotonic()
            for tid, deadline in list(self.deadlines.items()):
                if now > deadline:
                    with self.lock:
                        if self.deadlines.pop(tid, None) is not None:
                            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(tid), ctypes.py_object(_Timeout))


class _Timeout(TemplateLimitError):
    def __init__(self) -> None:
        super().__init__("the template ran longer than the time limit (an endless or huge loop?)")


_watchdog = _Watchdog()
_DICT_ATTRIBUTES = frozenset(dir(dict))


class _LimitedSandbox(ImmutableSandboxedEnvironment):
    """transformers' sandbox, with a cap on `*`/`**` results and a faster, equivalent lookup of dict keys.

    `message.role` on a dict makes jinja try `getattr(dict, "role")`, catch the AttributeError, then index: the
    same result is had by indexing directly when the name is not a dict attribute. The sandbox's safety verdict
    on an attribute depends only on the object's type and the name (jinja's checks read nothing else), so it is
    computed once per pair (`loop.last`, `content.strip` ...) instead of on every access.
    """

    intercepted_binops = frozenset(["*", "**"])
    _verdicts: dict[tuple[type, str], bool] = {}

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        key = (type(obj), attr)
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = super().is_safe_attribute(obj, attr, value)
            if len(self._verdicts) < 4096:  # names come from template source: bounded, but keep it so
                self._verdicts[key] = verdict
        return verdict

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        limit = _budget.max_chars
        if operator == "*":
            seq, n = (left, right) if isinstance(right, int) else (right, left)
            if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and len(seq) * n > limit:
                raise TemplateLimitError(f"the template tried to build a value over the size limit of {limit}")
        if operator == "**" and isinstance(right, int) and right > 4096:
            raise TemplateLimitError("the template tried to compute a power over the size limit")
        return super().call_binop(context, operator, left, right)


class _GenerationTag(jinja2.ext.Extension):
    """`{% generation %}…{% endgeneration %}`: marks assistant-written text, as transformers' AssistantTracker does."""

    tags = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.CallBlock:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_generation_support"), [], [], body).set_lineno(lineno)

    @staticmethod
    def _generation_support(caller: Any) -> str:
        rv = caller()
        b = _budget
        if b.tracking and b.generation_spans is not None:
            b.generation_spans.append((b.rendered_len, b.rendered_len + len(rv)))
        return rv


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None, sort_keys: bool = False) -> str:
    # transformers overrides jinja's tojson: no HTML escaping, and the json.dumps options exposed.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


class _TemplateDict:
    """`dict(...)` for templates, without the class object (no attribute games through it)."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict:
        return dict(*args, **kwargs)

    def fromkeys(self, *args: Any, **kwargs: Any) -> dict:
        return dict.fromkeys(*args, **kwargs)


class _TemplateNamespace(jinja2.utils.Namespace):
    """`namespace(...)` that refuses underscore attributes, as transformers' does."""

    def __init__(*args: Any, **kwargs: Any):  # noqa: N805 (same signature trick as jinja's Namespace)
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            _TemplateNamespace._check_name(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _TemplateNamespace._check_name(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check_name(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(
                f"Chat templates cannot store underscore-prefixed attributes on a namespace, but got {name!r}. "
                "Please rename the attribute."
            )


def _make_environment() -> ImmutableSandboxedEnvironment:
    env = _LimitedSandbox(trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationTag, jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["dict"] = _TemplateDict()
    env.globals["namespace"] = _TemplateNamespace
    return env


_ENV = _make_environment()


@lru_cache(maxsize=256)
def compile_template(source: str) -> jinja2.Template:
    """Compile once per distinct template source (raises jinja2's TemplateSyntaxError on bad syntax)."""
    return _ENV.from_string(source)


def has_generation_tag(source: str) -> bool:
    """Whether the template marks assistant text with `{% generation %}` (checked on the parsed template, not by regex)."""
    for block in _parse(source).find_all(jinja2.nodes.CallBlock):
        call = block.call
        if isinstance(call, jinja2.nodes.Call) and isinstance(call.node, jinja2.nodes.ExtensionAttribute):
            if call.node.name == "_generation_support":
                return True
    return False


@lru_cache(maxsize=256)
def _parse(source: str) -> jinja2.nodes.Template:
    return _ENV.parse(source)


# What apply_chat_template always passes or the environment defines: anything else a template reads is its own option.
STANDARD_VARIABLES = frozenset({
    "messages", "tools", "documents", "add_generation_prompt", "bos_token", "eos_token", "unk_token", "sep_token",
    "pad_token", "cls_token", "mask_token", "raise_exception", "strftime_now", "namespace", "dict", "range", "lipsum",
    "cycler", "joiner", "true", "false", "none", "True", "False", "None",
})


def template_variables(source: str) -> list[str]:
    """The variables a template reads beyond the standard ones: its own switches (enable_thinking, reasoning_effort...).

    Names the template assigns itself ({% set %}, loop targets, macro parameters) are not options, even where
    jinja's scoping makes them look undeclared, unless tested with `is defined` before a default is set.
    """
    import jinja2.meta

    ast = _parse(source)
    local = {n.name for n in ast.find_all(jinja2.nodes.Name) if n.ctx in ("store", "param")}
    tested = {t.node.name for t in ast.find_all(jinja2.nodes.Test)
              if t.name in ("defined", "undefined") and isinstance(t.node, jinja2.nodes.Name)}
    undeclared = jinja2.meta.find_undeclared_variables(ast) - STANDARD_VARIABLES
    return sorted(v for v in undeclared if v not in local or v in tested)


def template_literals(source: str) -> list[str]:
    """Every literal text and string constant in the template: where control tokens a template writes are found."""
    ast = _parse(source)
    out = [node.data for node in ast.find_all(jinja2.nodes.TemplateData)]
    out += [node.value for node in ast.find_all(jinja2.nodes.Const) if isinstance(node.value, str)]
    return out


def run_template(
    source: str,
    variables: dict[str, Any],
    *,
    track_generation: bool = False,
    limits: RenderLimits | None = None,
) -> tuple[str, list[tuple[int, int]]]:
    """Render `source` with `variables` inside the limits; return the text and the `{% generation %}` spans."""
    limits = limits or RenderLimits()
    template = compile_template(source)
    b = _budget
    saved = (b.max_chars, b.tracking, b.rendered_len, b.generation_spans)
    b.max_chars = limits.max_output_chars
    b.tracking = track_generation
    b.rendered_len = 0
    b.generation_spans = [] if track_generation else None
    tid = _watchdog.arm(limits.time_limit_s) if limits.time_limit_s else None
    try:
        if not track_generation:
            text = template.render(**variables)
        else:
            parts: list[str] = []
            for chunk in template.generate(**variables):
                parts.append(chunk)
                b.rendered_len += len(chunk)
            text = "".join(parts)
        if len(text) > limits.max_output_chars:
            raise TemplateLimitError(f"the template wrote more than {limits.max_output_chars} characters")
        return text, list(b.generation_spans or [])
    finally:
        b.max_chars, b.tracking, b.rendered_len, b.generation_spans = saved
        if tid is not None:
            _watchdog.disarm(tid)
