"""What keeps a chat template from exhausting the machine: size checks made *before* an allocation, and a memory cap.

Chat templates are untrusted code. The watchdog in template.py stops a render that runs too long, but its exception
is only delivered between bytecodes: one C-level operation (`(10 ** 4000) ** 4000`, `'x'.center(10 ** 9)`,
`'ab'.replace('', s)`) runs to its end, however long, and allocates whatever it was asked for. So every operation
a template can size — `+ * ** %`, `~`, the string methods and filters that take a width or repeat an argument,
`range`, a macro's or the page's output, a namespace attribute — is checked here against the render's size limit
from its arguments, before it runs. What only adds up over many small operations (a loop appending to a list) is
bounded by the watchdog's memory cap instead.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any, Callable

import jinja2.exceptions

#: Default limits; generous for real templates (the largest real ones render in well under a millisecond).
DEFAULT_TIME_LIMIT_S = 5.0
DEFAULT_MAX_OUTPUT_CHARS = 20_000_000
DEFAULT_MAX_MEMORY_BYTES = 512 * 1024 * 1024
#: Integers past ~30,000 digits: Python itself refuses to print past 4,300, and big products take seconds in C.
MAX_INT_BITS = 100_000
#: The most items a template may ask `range`/`slice`/`lipsum` for: jinja's own cap on `range` (MAX_RANGE).
MAX_ITEMS = 100_000


class TemplateLimitError(jinja2.exceptions.TemplateError):
    """The template ran past turnspec's time, size or memory limit (an endless loop, or a string bomb)."""


@dataclass
class RenderLimits:
    time_limit_s: float = DEFAULT_TIME_LIMIT_S
    max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS
    #: how much the process may grow during one render (checked by the watchdog every few ms); 0 turns it off.
    max_memory_bytes: int = DEFAULT_MAX_MEMORY_BYTES


class _Budget(threading.local):
    """Per-thread render state, so one compiled template serves many threads."""

    max_chars: int = DEFAULT_MAX_OUTPUT_CHARS
    # {% generation %} tracking: the length of the output so far and the spans found.
    tracking: bool = False
    rendered_len: int = 0
    generation_spans: list[tuple[int, int]] | None = None


budget = _Budget()

_SIZED = (str, bytes, list, tuple, dict)


def check_size(n: int) -> None:
    """Refuse to build a string or sequence of `n` characters or items over the render's size limit."""
    limit = budget.max_chars
    if n > limit:
        raise TemplateLimitError(f"the template tried to build a value of {n} characters or items, over the size "
                                 f"limit of {limit}")


def check_output(n: int) -> None:
    limit = budget.max_chars
    if n > limit:
        raise TemplateLimitError(f"the template wrote more than {limit} characters (the size limit)")


def check_int_bits(bits: int) -> None:
    if bits > MAX_INT_BITS:
        raise TemplateLimitError(f"the template tried to compute an integer of about {bits} bits, over the size "
                                 f"limit of {MAX_INT_BITS} bits")


def check_items(n: Any) -> None:
    if isinstance(n, int) and n > MAX_ITEMS:
        raise TemplateLimitError(f"the template asked for {n} items, over the limit of {MAX_ITEMS}")


def check_value(value: Any) -> None:
    """A value a call returned or a namespace stores: within the size limit (strings, sequences) or the int limit."""
    if isinstance(value, _SIZED):
        check_size(len(value))
    elif value.__class__ is int:
        check_int_bits(value.bit_length())


def text_size(value: Any) -> int:
    """About how long `str(value)` (or its JSON) is, without building it: containers are walked once per distinct
    object, so a list nested in itself level by level (`[a, a]` forty times) is sized in forty steps, at its
    terabyte. A lower bound for plain data (quotes and escapes are not all counted), so no real input is refused.
    """
    cls = value.__class__
    if cls is str or cls is bytes:
        return len(value)
    if cls in _CONTAINERS or isinstance(value, (list, tuple, dict, set, frozenset)):
        return _container_size(value, {})
    if isinstance(value, (str, bytes)):
        return len(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value.bit_length() // 3 + 2
    return 5


_CONTAINERS = frozenset([list, tuple, dict, set, frozenset])


def _container_size(value: Any, seen: dict[int, int]) -> int:
    known = seen.get(id(value))
    if known is not None:
        return known
    if isinstance(value, dict):
        total = 2 + 4 * len(value) + sum(len(k) if k.__class__ is str else text_size(k) for k in value)
        items: Any = value.values()
    else:
        total = 2 + 2 * len(value)
        items = value
    limit = budget.max_chars
    for x in items:
        cls = x.__class__
        if cls is str:
            total += len(x)
        elif cls in _CONTAINERS:
            total += _container_size(x, seen)
            if total > limit:  # already too big: stop walking
                break
        else:
            total += text_size(x) if not isinstance(x, (list, tuple, dict, set, frozenset)) else \
                _container_size(x, seen)
    seen[id(value)] = total
    return total


def check_text(value: Any) -> None:
    """Before a container is turned into text (output, `~`, `%s`): its text must fit in the size limit."""
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        check_size(text_size(value))


# -- operators -------------------------------------------------------------------------------------------------------

#: Strings, lists and tuples up to this size are never refused, so the compiled `+` skips its call below it.
SMALL = 65536


def sized_sum(value: Any) -> Any:
    """A `+` result over SMALL items (the compiled template checks the class and SMALL inline): within the limit."""
    check_size(len(value))
    return value


def binop(operator: str, left: Any, right: Any) -> Any:
    """`* ** %` (and `+`, when jinja's own code generator is used) with the result size checked from the operands,
    before it is computed."""
    if operator == "+":
        if isinstance(left, _SIZED) and isinstance(right, _SIZED):
            check_size(len(left) + len(right))
        return left + right
    if operator == "*":
        if isinstance(left, int) and isinstance(right, int):
            check_int_bits(left.bit_length() + right.bit_length())
        else:
            seq, n = (left, right) if isinstance(right, int) else (right, left)
            if isinstance(seq, _SIZED) and isinstance(n, int):
                check_size(len(seq) * n)
        return left * right
    if operator == "**":
        if isinstance(left, int) and isinstance(right, int) and right > 0:
            check_int_bits((abs(left).bit_length() - 1) * right)  # log2(left) * right, at least
        return left ** right
    if operator == "%":
        if isinstance(left, (str, bytes)):
            check_percent_format(left, right)
        return left % right
    raise AssertionError(operator)


# printf-style conversions: %(key)  flags  width  .precision
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")
_DIGITS = re.compile(r"\d+")


def _number(digits: str) -> int:
    return int(digits) if len(digits) < 12 else 10 ** 12


def check_percent_format(fmt: Any, args: Any) -> None:
    """`fmt % args` (and the `format` filter): at most the format plus, per conversion, its width, precision and the
    longest argument."""
    if isinstance(fmt, bytes):
        fmt = fmt.decode("latin-1")
    values = list(args.values()) if isinstance(args, dict) else list(args) if isinstance(args, tuple) else [args]
    widest = max((text_size(v) for v in values), default=0)
    star = max((v for v in values if isinstance(v, int)), default=0)  # `*` takes a width from the arguments
    total = len(fmt)
    for match in _PERCENT_SPEC.finditer(fmt):
        total += widest
        for number in match.groups():
            if number:
                total += star if number == "*" else _number(number)
        if total > budget.max_chars:
            break
    check_size(total)


def check_format_field(value: Any, spec: str) -> int:
    """One `{...}` field of `str.format`: the value's text and the numbers in its spec (width, precision)."""
    return text_size(value) + sum(_number(n) for n in _DIGITS.findall(spec))


# -- str / bytes / int methods ---------------------------------------------------------------------------------------

def _replace_size(s: Any, old: Any, new: Any, count: Any = -1) -> int:
    if not (isinstance(old, (str, bytes)) and isinstance(new, (str, bytes))) or len(new) <= len(old):
        return len(s)
    n = s.count(old) if len(old) else len(s) + 1
    if isinstance(count, int) and count >= 0:
        n = min(n, count)
    return len(s) + n * (len(new) - len(old))


def _check_width(s: Any, width: Any = 0, *_: Any) -> None:
    if isinstance(width, int):
        check_size(width)


def _check_expandtabs(s: Any, tabsize: Any = 8) -> None:
    if isinstance(tabsize, int):
        check_size(len(s) + s.count(b"\t" if isinstance(s, bytes) else "\t") * tabsize)


def _check_replace(s: Any, old: Any = "", new: Any = "", count: Any = -1) -> None:
    check_size(_replace_size(s, old, new, count))


def _joined_size(sep: Any, items: list) -> int:
    try:
        total = sum(map(len, items))
    except TypeError:  # not all strings: the join itself raises the right error, or text_size bounds it
        total = sum(text_size(x) for x in items)
    return total + len(sep) * max(len(items) - 1, 0)


def _check_translate(s: Any, table: Any = None, *_: Any) -> None:
    if isinstance(table, dict):
        longest = max((len(v) for v in table.values() if isinstance(v, (str, bytes))), default=1)
        check_size(len(s) * longest)


def _check_to_bytes(n: Any, length: Any = 1, *_: Any, **__: Any) -> None:
    check_size(length if isinstance(length, int) else 0)


#: str/bytes methods (and int.to_bytes) whose result size depends on an argument, not only on the string.
METHOD_CHECKS: dict[str, Callable[..., None]] = {
    "center": _check_width, "ljust": _check_width, "rjust": _check_width, "zfill": _check_width,
    "expandtabs": _check_expandtabs, "replace": _check_replace, "translate": _check_translate,
    "to_bytes": _check_to_bytes,
}


def call_builtin_method(method: Any, args: tuple, kwargs: dict) -> Any:
    """Call a str/bytes/int method from a template with its result size checked first where an argument sets it."""
    name = method.__name__
    owner = method.__self__
    if isinstance(owner, (str, bytes, int)):
        if name == "join" and isinstance(owner, (str, bytes)) and len(args) == 1 and not kwargs:
            items = args[0] if isinstance(args[0], list) else list(args[0])  # an iterator is read once, here
            check_size(_joined_size(owner, items))
            args = (items,)
        else:
            check = METHOD_CHECKS.get(name)
            if check is not None:
                try:
                    check(owner, *args, **kwargs)
                except TemplateLimitError:
                    raise
                except Exception:  # wrong arguments: the method itself says so, with Python's own message
                    pass
    elif name in _GROWING and isinstance(owner, (list, dict, set)):
        # reachable only where an analysis render permits mutation (template.permitting_mutation): `l.extend(l)`
        # doubles a list in one uninterruptible C call, so the result is sized before, as `+` sizes a sum
        check_size(len(owner) + sum(len(a) for a in args if hasattr(a, "__len__")) + len(kwargs))
    return method(*args, **kwargs)


#: Methods that grow a list, dict or set by their arguments' sizes.
_GROWING = frozenset(("extend", "update"))


# -- filters and globals ---------------------------------------------------------------------------------------------

def _soft_len(s: Any) -> int:
    return len(s) if isinstance(s, (str, bytes)) else text_size(s)


def _filter_center(value: Any, width: Any = 80) -> None:
    check_text(value)
    _check_width(value, width)


def _filter_indent(s: Any, width: Any = 4, first: bool = False, blank: bool = False) -> None:
    size = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    text = _checked_str(s)
    check_size(len(text) + (text.count("\n") + 2) * size)


def _filter_wordwrap(s: Any, width: Any = 79, break_long_words: bool = True,
                     wrapstring: Any = None, break_on_hyphens: bool = True) -> None:
    text = _checked_str(s)
    sep = len(wrapstring) if isinstance(wrapstring, str) else 1
    width = width if isinstance(width, int) and width > 0 else 1
    breaks = min(len(text), len(text) // width + sum(text.count(c) for c in " \t\n-") + 1)
    check_size(len(text) + breaks * sep)


def _filter_replace(s: Any, old: Any, new: Any, count: Any = None) -> None:
    check_size(_replace_size(_checked_str(s), _checked_str(old), _checked_str(new), -1 if count is None else count))


def _filter_format(value: Any, *args: Any, **kwargs: Any) -> None:
    check_percent_format(_checked_str(value), kwargs or args)


def _filter_batch(value: Any, linecount: Any, fill_with: Any = None) -> None:
    if fill_with is not None and isinstance(linecount, int):
        check_size(linecount)


def _filter_slice(value: Any, slices: Any, fill_with: Any = None) -> None:
    check_items(slices)


# Not sized: `tojson` of a list nested in itself. Walking a value in Python before json.dumps costs more than the
# dump (~25% of a render with tools), so tojson trusts its input; a self-nested list built by the template itself
# still reaches the C encoder (see issue 17 item 8's report).
def check_indent(indent: Any) -> None:
    """`tojson(indent=...)`: an indent is repeated on every line, times the depth, so it must be far below the limit."""
    size = len(indent) if isinstance(indent, str) else indent if isinstance(indent, int) else 0
    check_size(size * 1000)


def _filter_text(value: Any, *_: Any, **__: Any) -> None:
    check_text(value)


#: filters whose result size is set by an argument (before-check); every one also has its result checked.
FILTER_CHECKS: dict[str, Callable[..., None]] = {
    "center": _filter_center, "indent": _filter_indent, "wordwrap": _filter_wordwrap, "replace": _filter_replace,
    "format": _filter_format, "batch": _filter_batch, "slice": _filter_slice,
    "string": _filter_text, "pprint": _filter_text, "e": _filter_text, "escape": _filter_text,
    "forceescape": _filter_text,
}


def checked_filter(original: Callable[..., Any], before: Callable[..., None]) -> Callable[..., Any]:
    """`original` with `before(value, *args)` run first (without jinja's context/environment argument, if it takes
    one) and its result size checked."""
    import functools

    skip = 1 if getattr(original, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(original)  # keeps jinja's pass_context/pass_environment marker
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            before(*args[skip:], **kwargs)
        except TemplateLimitError:
            raise
        except Exception:  # wrong arguments: the filter itself says so
            pass
        result = original(*args, **kwargs)
        check_value(result)
        return result

    return run


#: filters that turn their input into text (jinja's soft_str): a container's text is sized first.
TEXT_FILTERS = ("title", "striptags", "truncate", "urlize", "urlencode", "wordcount", "safe", "xmlattr")


def _soft_text(value: Any) -> str:
    """jinja's soft_str (a str, Markup included, as is), a container's text sized first."""
    if isinstance(value, str):
        return value
    check_text(value)
    return str(value)


# The text filters templates use on every message, written out: as fast as jinja's own (a wrapper costs ~5%).
def do_trim(value: Any, chars: Any = None) -> str:
    return (value if value.__class__ is str else _soft_text(value)).strip(chars)


def do_upper(s: Any) -> str:
    return (s if s.__class__ is str else _soft_text(s)).upper()


def do_lower(s: Any) -> str:
    return (s if s.__class__ is str else _soft_text(s)).lower()


def do_capitalize(s: Any) -> str:
    return (s if s.__class__ is str else _soft_text(s)).capitalize()


FAST_TEXT_FILTERS = {"trim": do_trim, "upper": do_upper, "lower": do_lower, "capitalize": do_capitalize}


def text_filter(original: Callable[..., Any]) -> Callable[..., Any]:
    """`original` with its input sized before it becomes text, unless it is a str already (one class check)."""
    import functools

    if getattr(original, "jinja_pass_arg", None) is not None:
        @functools.wraps(original)
        def run_with_context(context: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
            if value.__class__ is not str:
                check_text(value)
            return original(context, value, *args, **kwargs)

        return run_with_context

    @functools.wraps(original)
    def run(value: Any, *args: Any, **kwargs: Any) -> Any:
        if value.__class__ is not str:
            check_text(value)
        return original(value, *args, **kwargs)

    return run


def checked_join_filter(original: Callable[..., Any]) -> Callable[..., Any]:
    """`|join`: the items are read once into a list (they may be a generator), then the result size is checked."""
    import functools

    @functools.wraps(original)
    def run(eval_ctx: Any, value: Any, d: Any = "", attribute: Any = None) -> Any:
        if attribute is not None:
            from jinja2.filters import make_attrgetter

            value, attribute = map(make_attrgetter(eval_ctx.environment, attribute), value), None
        items = [x if x.__class__ is str else _checked_str(x) for x in value]
        check_size(_joined_size(_checked_str(d), items))
        return original(eval_ctx, items, d)

    return run


def checked_sum_filter(original: Callable[..., Any]) -> Callable[..., Any]:
    """`|sum(start=[])` on lists: sized first, and built in one pass (Python's sum copies the growing list each step,
    a quadratic C loop the watchdog cannot interrupt)."""
    import functools
    import itertools

    @functools.wraps(original)
    def run(environment: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
        if attribute is not None:
            from jinja2.filters import make_attrgetter

            iterable, attribute = map(make_attrgetter(environment, attribute), iterable), None
        if isinstance(start, (list, tuple)):
            items = list(iterable)
            if all(type(x) is type(start) for x in items):
                check_size(len(start) + sum(map(len, items)))
                return type(start)(itertools.chain(start, *items))
            iterable = items
        return original(environment, iterable, attribute, start)

    return run


def checked_range(*args: int) -> range:
    """`range` with jinja's own cap (MAX_ITEMS items), refused as a limit."""
    try:
        rng = range(*args)
        n = len(rng)
    except OverflowError:
        n = MAX_ITEMS + 1
    if n > MAX_ITEMS:
        raise TemplateLimitError(f"the template asked for a range of more than {MAX_ITEMS} items (the limit)")
    return rng


def checked_lipsum(original: Callable[..., Any]) -> Callable[..., Any]:
    import functools

    @functools.wraps(original)
    def run(n: Any = 5, html: bool = True, min: Any = 20, max: Any = 100) -> Any:
        if isinstance(n, int) and isinstance(max, int):
            check_items(n * max)
        result = original(n, html, min, max)
        check_value(result)
        return result

    return run


def bounded_concat(parts: Any) -> str:
    """The environment's `concat`: joins a page's, a macro's or a {% set %} block's output, sized first (the parts
    may be one long string written many times)."""
    if parts.__class__ is not list:
        parts = list(parts)
    try:
        if sum(map(len, parts)) > budget.max_chars:
            check_output(sum(map(len, parts)))
    except TypeError:
        pass  # not all strings: the join raises the same TypeError jinja's own would
    return "".join(parts)


def concat_text(values: tuple) -> str:
    """`a ~ b ~ c`: each operand as text (a container's text sized before it is built), the total sized, joined."""
    parts = [v if v.__class__ is str else _checked_str(v) for v in values]
    check_size(sum(map(len, parts)))
    return "".join(parts)


def _checked_str(value: Any) -> str:
    check_text(value)
    return str(value)


def output_text(value: Any) -> str:
    """`{{ value }}` for a value that is not a str (the compiled template writes strings directly)."""
    check_text(value)
    return str(value)


# -- memory ----------------------------------------------------------------------------------------------------------

def process_memory() -> int | None:
    """Resident memory of this process in bytes (Linux: /proc; elsewhere the peak from getrusage), None if unknown."""
    import os

    try:
        pid = os.getpid()
        if _statm[0] != pid:  # opened once per process (a fork gets its own)
            _statm[:] = [pid, os.open("/proc/self/statm", os.O_RDONLY), os.sysconf("SC_PAGE_SIZE")]
        return int(os.pread(_statm[1], 128, 0).split()[1]) * _statm[2]
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024
    except (ImportError, OSError):
        return None


_statm: list = [None, -1, 4096]  # pid, file descriptor of /proc/self/statm, page size
