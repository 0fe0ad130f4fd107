"""The Jinja environment chat templates run in: the same as transformers', plus limits.

Chat templates are untrusted code from the internet. transformers renders them in jinja2's
`ImmutableSandboxedEnvironment` with `trim_blocks`/`lstrip_blocks`, `loopcontrols`, a `{% generation %}` tag,
a `tojson` filter that does not escape HTML, and the globals `raise_exception`, `strftime_now`, a restricted `dict`
and `namespace`. turnspec builds the identical environment, so templates render byte for byte the same, and adds
what transformers lacks: a time budget (so a template that loops forever fails instead of hanging), a memory cap,
and size checks on everything it can build and output (template_limits.py says why they come before each operation).
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import threading
import time
import types
from datetime import datetime
from functools import lru_cache
from typing import Any, Iterator

import jinja2
import jinja2.compiler
import jinja2.exceptions
import jinja2.ext
import jinja2.nodes
import jinja2.sandbox
import jinja2.utils
from jinja2.sandbox import ImmutableSandboxedEnvironment

from . import template_limits as _limits
from .template_limits import (  # noqa: F401 (re-exported: the public names of the limits)
    DEFAULT_MAX_MEMORY_BYTES, DEFAULT_MAX_OUTPUT_CHARS, DEFAULT_TIME_LIMIT_S, RenderLimits, TemplateLimitError, budget,
)

_budget = budget


class _Watchdog:
    """Interrupts renders that overrun their deadline or their memory cap, in whatever thread they run.

    A daemon thread looks at the running renders every 50 ms and raises TemplateLimitError inside an overdue one
    (`PyThreadState_SetAsyncExc`, delivered at the next bytecode). This costs a renderer nothing per template
    operation — unlike hooking every attribute access — so sandboxed rendering stays as fast as transformers'.
    A render still running at a look has the process's resident memory noted; if it grows past the render's cap
    by a later look, the render is stopped: that bounds what only adds up over many small allocations (a loop
    appending to a list), which no per-operation size check sees. Renders shorter than one look cost nothing.
    """

    interval_s = 0.05

    def __init__(self) -> None:
        # thread id -> [deadline, memory cap in bytes (0: none), resident memory when first seen (None: not yet)]
        self.running: dict[int, list] = {}
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def arm(self, seconds: float, max_memory_bytes: int = 0) -> int:
        tid = threading.get_ident()
        self.running[tid] = [time.monotonic() + seconds, max_memory_bytes, None]
        if self.thread is None:
            with self.lock:
                if self.thread is None:
                    self.thread = threading.Thread(target=self._run, name="turnspec-template-watchdog", daemon=True)
                    self.thread.start()
        return tid

    def disarm(self, tid: int) -> None:
        with self.lock:  # never between the watchdog's check and its raise: no late exception in unrelated code
            self.running.pop(tid, None)

    def _run(self) -> None:
        while True:
            time.sleep(self.interval_s)
            if self.running:
                self._look()

    def _look(self) -> None:
        import ctypes

        now = time.monotonic()
        memory = None
        for tid, state in list(self.running.items()):
            deadline, cap, baseline = state
            stop: type[TemplateLimitError] | None = _Timeout if now > deadline else None
            if stop is None and cap:
                if memory is None:
                    memory = _limits.process_memory() or 0
                if baseline is None:
                    state[2] = memory
                elif memory - baseline > cap:
                    stop = _memory_overrun(cap)
            if stop is not None:
                with self.lock:
                    if self.running.get(tid) is state:
                        del self.running[tid]
                        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(tid), ctypes.py_object(stop))


class _Timeout(TemplateLimitError):
    def __init__(self) -> None:
        super().__init__("the template ran longer than the time limit (an endless or huge loop?)")


@lru_cache(maxsize=16)
def _memory_overrun(cap: int) -> type[TemplateLimitError]:
    """The exception class the watchdog raises for a memory cap (an async exception is raised as a bare class)."""
    message = f"the template used more than {cap // 2**20} MB of memory (the memory limit)"

    def __init__(self: TemplateLimitError) -> None:
        TemplateLimitError.__init__(self, message)

    return type("_MemoryOverrun", (TemplateLimitError,), {"__init__": __init__})


_watchdog = _Watchdog()
_mutation = threading.local()


@contextlib.contextmanager
def permitting_mutation() -> Iterator[None]:
    """Renders in this thread may call `list.append`, `dict.update` ... (jinja's plain sandbox), which transformers'
    immutable sandbox refuses. Only for analysis: templates adapted to other engines (llama.cpp's minja allows it)
    build their call ids this way, and what such a template would write is still the model's syntax. The limits
    stay; a user's own renders never run in this mode."""
    before = getattr(_mutation, "permitted", False)
    _mutation.permitted = True
    try:
        yield
    finally:
        _mutation.permitted = before


def mutation_permitted() -> bool:
    """Whether renders in this thread run under `permitting_mutation`."""
    return getattr(_mutation, "permitted", False)


_UNSAFE_ATTRIBUTE = re.compile(r"access to attribute '(\w+)' of '(list|dict|set)' object is unsafe")


def refuses_mutation(message: str) -> bool:
    """Whether a template error is the immutable sandbox refusing a mutating method (`list.append` ...), the one
    refusal `permitting_mutation` lifts."""
    found = _UNSAFE_ATTRIBUTE.search(message or "")
    empty = {"list": [], "dict": {}, "set": set()}
    return bool(found) and jinja2.sandbox.modifies_known_mutable(empty[found.group(2)], found.group(1))
_DICT_ATTRIBUTES = frozenset(dir(dict))
_BUILTIN_METHOD = type("".strip)


class _CheckedCodeGenerator(jinja2.compiler.CodeGenerator):
    """jinja's code generator, with `a ~ b` and `{{ x }}` sized before a value becomes text.

    A list nested in itself level by level (`{% set ns.a = [ns.a, ns.a] %}` forty times) is small in memory but
    its text is a terabyte, built by one uninterruptible C call (`str`): so a non-string value is sized first
    (template_limits.output_text, concat_text). Everything else compiles as before, so output stays byte-identical.
    """

    def _output_child_pre(self, node: jinja2.nodes.Expr, frame: Any, finalize: Any) -> None:
        # `{{ x }}` compiles to `str(x)`; here to `(t if (t := x).__class__ is str else environment.output_text(t))`:
        # a string is written as is (no call: as fast as before), anything else is sized before it becomes text.
        if frame.eval_ctx.volatile or frame.eval_ctx.autoescape or finalize.src is not None:
            self._plain_output = False
            return super()._output_child_pre(node, frame, finalize)
        self._plain_output = True
        self._output_temp = self.temporary_identifier()
        self.write(f"({self._output_temp} if ({self._output_temp} := ")

    def _output_child_post(self, node: jinja2.nodes.Expr, frame: Any, finalize: Any) -> None:
        if not self._plain_output:
            return super()._output_child_post(node, frame, finalize)
        self.write(f").__class__ is str else environment.output_text({self._output_temp}))")

    def write_commons(self) -> None:
        super().write_commons()
        self.writeline("sized_types = environment.sized_types")
        self.writeline("concat_text = environment.concat_text")

    @jinja2.compiler.optimizeconst
    def visit_Add(self, node: jinja2.nodes.Add, frame: Any) -> None:
        # `a + b` runs natively; a string, list or tuple result over 64 K items is then sized (template_limits.
        # sized_sum): every operand was sized when it was made, so an unchecked sum is at most twice the limit,
        # once, and a doubling loop stops at the next step. A call per `+` instead costs ~10% of a whole render.
        # With a literal operand (`x + '\n'`) a sum only grows by that literal: it cannot double, so it is not sized.
        if isinstance(node.left, jinja2.nodes.Const) or isinstance(node.right, jinja2.nodes.Const):
            self.write("(")
            self.visit(node.left, frame)
            self.write(" + ")
            self.visit(node.right, frame)
            self.write(")")
            return
        t = self.temporary_identifier()
        self.write(f"({t} if ({t} := (")
        self.visit(node.left, frame)
        self.write(" + ")
        self.visit(node.right, frame)
        self.write(f")).__class__ not in sized_types or len({t}) <= {_limits.SMALL} else environment.sized_sum({t}))")

    @jinja2.compiler.optimizeconst
    def visit_Mod(self, node: jinja2.nodes.Mod, frame: Any) -> None:
        # `loop.index0 % 2` runs natively; anything but an int on the left (`'%5s' % x`) goes through call_binop.
        t = self.temporary_identifier()
        self.write(f"(({t} % (")
        self.visit(node.right, frame)
        self.write(f")) if ({t} := (")
        self.visit(node.left, frame)
        self.write(f")).__class__ is int else environment.call_binop(context, '%', {t}, (")
        self.visit(node.right, frame)
        self.write(")))")

    @jinja2.compiler.optimizeconst
    def visit_Concat(self, node: jinja2.nodes.Concat, frame: Any) -> None:
        if frame.eval_ctx.volatile or frame.eval_ctx.autoescape:
            return super().visit_Concat(node, frame)
        self.write("concat_text((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _LimitedSandbox(ImmutableSandboxedEnvironment):
    """transformers' sandbox, with sizes checked before operations, and a faster, equivalent lookup of dict keys.

    `message.role` on a dict makes jinja try `getattr(dict, "role")`, catch the AttributeError, then index: the
    same result is had by indexing directly when the name is not a dict attribute. The sandbox's safety verdict
    on an attribute depends only on the object's type and the name (jinja's checks read nothing else), so it is
    computed once per pair (`loop.last`, `content.strip` ...) instead of on every access.

    Size checks (template_limits.py): `* ** %` see their operands before computing, a `+` result is sized; a call to a str/bytes/int
    method with a size argument (`center`, `replace`, `join` ...) is sized from its arguments; every `~`, `{{ }}`,
    and every page, macro or block output is sized; risky filters are wrapped in _make_environment.
    """

    code_generator_class = _CheckedCodeGenerator
    intercepted_binops = frozenset(["+", "*", "**", "%"])
    concat = staticmethod(_limits.bounded_concat)
    concat_text = staticmethod(_limits.concat_text)
    sized_sum = staticmethod(_limits.sized_sum)
    sized_types = frozenset([str, list, tuple])
    output_text = staticmethod(_limits.output_text)
    _verdicts: dict[tuple[type, str], bool] = {}

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        key = (type(obj), attr)
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = super().is_safe_attribute(obj, attr, value)
            if len(self._verdicts) < 4096:  # names come from template source: bounded, but keep it so
                self._verdicts[key] = verdict
        if not verdict and getattr(_mutation, "permitted", False):  # (not mutation_permitted(): a hot path)
            return jinja2.sandbox.SandboxedEnvironment.is_safe_attribute(self, obj, attr, value)
        return verdict

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        return _limits.binop(operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 (jinja's signature)
        if __obj.__class__ is _BUILTIN_METHOD:
            # A method of a built-in object (`content.strip`): jinja's checks and context handling are no-ops for
            # these (no attributes to mark them unsafe, no pass_context marker), so it is called directly, sized
            # first where an argument sets the result's size. Other results are at most a few times their input.
            if kwargs:
                kwargs.pop("_loop_vars", None)
                kwargs.pop("_block_vars", None)
            return _limits.call_builtin_method(__obj, args, kwargs)
        # Macros (their output is sized by `concat`), namespace(), dict(), loop.cycle ...: jinja's own call.
        if not __self.is_safe_callable(__obj):
            raise jinja2.exceptions.SecurityError(f"{__obj!r} is not safely callable")
        return __context.call(__obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Any:
        """jinja's sandboxed `str.format`, with each field sized before it is formatted (widths, repeats)."""
        if not isinstance(value, (types.MethodType, types.BuiltinMethodType)) or \
                value.__name__ not in ("format", "format_map"):
            return None
        f_self = value.__self__
        if not isinstance(f_self, str):
            return None
        if isinstance(f_self, jinja2.sandbox.Markup):
            formatter: Any = _CheckedEscapeFormatter(self, escape=f_self.escape)
        else:
            formatter = _CheckedFormatter(self)
        is_format_map = value.__name__ == "format_map"
        str_type = type(f_self)

        def run(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs:
                    raise TypeError("format_map() takes no keyword arguments")
                if len(args) != 1:
                    raise TypeError(f"format_map() takes exactly one argument ({len(args)} given)")
                kwargs = args[0]
                args = ()
            return str_type(formatter.vformat(f_self, args, kwargs))

        return functools.update_wrapper(run, value)


class _SizedFields:
    """A str.format formatter that adds up the size of the fields it writes, and refuses past the size limit."""

    written = 0

    def vformat(self, format_string: str, args: Any, kwargs: Any) -> str:
        self.written = len(format_string)
        return super().vformat(format_string, args, kwargs)  # type: ignore[misc]

    def convert_field(self, value: Any, conversion: Any) -> Any:
        if conversion:  # `{!r}`/`{!s}`: the value becomes text here, before format_field sees it
            _limits.check_text(value)
        return super().convert_field(value, conversion)  # type: ignore[misc]

    def format_field(self, value: Any, format_spec: str) -> Any:
        self.written += _limits.check_format_field(value, format_spec)
        _limits.check_size(self.written)
        return super().format_field(value, format_spec)  # type: ignore[misc]


class _CheckedFormatter(_SizedFields, jinja2.sandbox.SandboxedFormatter):
    pass


class _CheckedEscapeFormatter(_SizedFields, jinja2.sandbox.SandboxedEscapeFormatter):
    pass


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
    if indent is not None:
        _limits.check_indent(indent)
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
        _limits.check_value(value)  # a string doubled in a loop through `{% set ns.s = ns.s + ns.s %}` stops here
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
    env.globals["range"] = _limits.checked_range
    env.globals["lipsum"] = _limits.checked_lipsum(env.globals["lipsum"])
    for name, before in _limits.FILTER_CHECKS.items():
        env.filters[name] = _limits.checked_filter(env.filters[name], before)
    for name in _limits.TEXT_FILTERS:
        env.filters[name] = _limits.text_filter(env.filters[name])
    env.filters.update(_limits.FAST_TEXT_FILTERS)
    env.filters["join"] = _limits.checked_join_filter(env.filters["join"])
    env.filters["sum"] = _limits.checked_sum_filter(env.filters["sum"])
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
    watched = limits.time_limit_s or limits.max_memory_bytes
    tid = _watchdog.arm(limits.time_limit_s or float("inf"), limits.max_memory_bytes) if watched else None
    try:
        if not track_generation:
            text = template.render(**variables)
        else:
            parts: list[str] = []
            for chunk in template.generate(**variables):
                parts.append(chunk)
                b.rendered_len += len(chunk)
                if b.rendered_len > limits.max_output_chars:
                    _limits.check_output(b.rendered_len)
            text = "".join(parts)
        if len(text) > limits.max_output_chars:
            _limits.check_output(len(text))
        return text, list(b.generation_spans or [])
    except MemoryError:
        # What no check foresaw (or a machine short of memory): the same one-line limit error, never a bare MemoryError.
        raise TemplateLimitError("the template ran out of memory (a string or list bomb?)") from None
    finally:
        b.max_chars, b.tracking, b.rendered_len, b.generation_spans = saved
        if tid is not None:
            _watchdog.disarm(tid)
