"""A chat template cannot exhaust the machine: every attack is a one-line TemplateError with `.limit`, quickly.

All templates here are synthetic attacks. Each runs in a child process under a 1 GB address-space limit and a
timeout, so a regression fails the test (a bare MemoryError, the time-limit message, or the timeout) instead of
swapping the shared machine or hanging the suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jinja2.sandbox
import pytest

import turnspec
from turnspec.template import RenderLimits, run_template

REPO = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
import turnspec
from turnspec.errors import TemplateError
from turnspec.template import RenderLimits
import contextlib
from turnspec.template import permitting_mutation
source, limits, permit = json.loads(sys.argv[1])
spec = turnspec.from_template(source, name="synthetic-attack", limits=RenderLimits(**limits))
t0 = time.monotonic()
try:
    with permitting_mutation() if permit else contextlib.nullcontext():
        spec.render([{"role": "user", "content": "hi"}])
    out = {"kind": "rendered"}
except TemplateError as exc:
    out = {"kind": "TemplateError", "limit": exc.limit, "message": str(exc), "template_message": exc.template_message}
except BaseException as exc:
    out = {"kind": type(exc).__name__, "message": str(exc)[:300]}
out["seconds"] = time.monotonic() - t0
print(json.dumps(out))
"""


def run_attack(source: str, permit_mutation: bool = False, **limits) -> dict:
    """Render `source` in a child process limited to 1 GB of address space (as the analysis renders call probes when
    `permit_mutation`); what it raised, as a dict."""
    limits.setdefault("time_limit_s", 2.0)
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps([source, limits, permit_mutation])],
                              capture_output=True,
                              text=True, timeout=60, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the render of {source[:80]!r} was not stopped within 60 s")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def assert_stopped(result: dict, expected: str) -> None:
    assert result["kind"] == "TemplateError", result
    assert result["limit"] is True, result
    assert expected in result["template_message"], result
    assert "\n" not in result["message"], result
    assert result["seconds"] < 30, result


SIZE = "over the size limit"
_NESTED = "{% set ns = namespace(a=[0]) %}{% for i in range(40) %}{% set ns.a = [ns.a, ns.a] %}{% endfor %}"
INT = "bits, over the size limit"

ATTACKS = {
    # one long C-level operation: never interrupted by the watchdog, so sized before it runs
    "power": ("{{ (10 ** 4000) ** 4000 }}", INT),
    "power-of-a-power": ("{{ 10 ** (10 ** 7) }}", INT),
    "int-squaring-loop": ("{% set ns = namespace(x=3) %}{% for i in range(64) %}{% set ns.x = ns.x * ns.x %}"
                          "{% endfor %}{{ ns.x % 7 }}", INT),
    "center-filter": ("{{ 'x'|center(1500000000) }}", SIZE),
    "center-method": ("{{ 'x'.center(1500000000) }}", SIZE),
    "ljust": ("{{ 'x'.ljust(1500000000) }}", SIZE),
    "rjust": ("{{ 'x'.rjust(1500000000) }}", SIZE),
    "zfill": ("{{ '1'.zfill(1500000000) }}", SIZE),
    "expandtabs": ("{{ ('\t' * 1000).expandtabs(1500000) }}", SIZE),
    "replace-method": ("{{ ('x' * 1000).replace('', 'y' * 1000000) }}", SIZE),
    "replace-filter": ("{{ ('x' * 1000)|replace('x', 'y' * 1000000) }}", SIZE),
    "join-method": ("{{ ('y' * 1000000).join(range(10000)|map('string')) }}", SIZE),
    "join-filter": ("{{ range(10000)|join('y' * 1000000) }}", SIZE),
    "join-of-big-items": ("{{ (['y' * 10000000] * 100)|join }}", SIZE),
    "indent-width": ("{{ 'x'|indent(1500000000) }}", SIZE),
    "indent-many-lines": ("{{ ('x\n' * 1000)|indent(1000000) }}", SIZE),
    "wordwrap": ("{{ ('x ' * 10000)|wordwrap(1, wrapstring='y' * 100000) }}", SIZE),
    "format-width": ("{{ '{:>1500000000}'.format(1) }}", SIZE),
    "format-precision": ("{{ '{:.1500000000f}'.format(1.0) }}", SIZE),
    "format-nested-width": ("{{ '{0:>{1}}'.format('x', 1500000000) }}", SIZE),
    "format-repeated-field": ("{{ ('{0}' * 1000).format('y' * 1000000) }}", SIZE),
    "format-map": ("{{ '{a:>1500000000}'.format_map({'a': 1}) }}", SIZE),
    "percent-width": ("{{ '%1500000000s' % 'x' }}", SIZE),
    "percent-star-width": ("{{ '%*s' % (1500000000, 'x') }}", SIZE),
    "format-filter": ("{{ '%1500000000s'|format('x') }}", SIZE),
    "range": ("{% for i in range(10**9) %}{% endfor %}", "range of more than 100000 items"),
    "string-repetition": ("{{ ('x' * 1500000000)|length }}", SIZE),
    "list-repetition": ("{{ ([1] * 1500000000)|length }}", SIZE),
    "tojson-indent": ("{{ [1, 2]|tojson(indent=1500000000) }}", SIZE),
    "int-to-bytes": ("{{ (1).to_bytes(1500000000, 'big')|length }}", SIZE),
    "translate": ("{{ ('a' * 100000).translate({97: 'x' * 100000}) }}", SIZE),
    "batch-fill": ("{{ [1]|batch(1500000000, 'x')|list|length }}", SIZE),
    "slice-count": ("{{ [1]|slice(1500000000)|list|length }}", "items, over the limit of 100000"),
    # growth by doubling: each step is checked, so it stops at the size limit
    "namespace-plus": ("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}"
                       "{% endfor %}{{ ns.s|length }}", SIZE),
    "namespace-tilde": ("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
                        "{% endfor %}{{ ns.s|length }}", SIZE),
    "macro-tilde": ("{% macro d(s, n) %}{% if n %}{{ d(s ~ s, n - 1) }}{% else %}{{ s|length }}{% endif %}"
                    "{% endmacro %}{{ d('x', 40) }}", SIZE),
    "macro-plus": ("{% macro d(s, n) %}{% if n %}{{ d(s + s, n - 1) }}{% else %}{{ s|length }}{% endif %}"
                   "{% endmacro %}{{ d('x', 40) }}", SIZE),
    "macro-output": ("{% macro d(s, n) %}{% if n %}{{ d(s, n - 1) }}{{ d(s, n - 1) }}{% else %}{{ s }}{% endif %}"
                     "{% endmacro %}{{ d('x' * 1000000, 6) }}{{ d('x' * 1000000, 6) }}", "wrote more than"),
    "straight-line-doubling": ("{% set s = 'x' %}" + "{% set s = s + s %}" * 40 + "{{ s|length }}", SIZE),
    # a list nested in itself: tiny in memory, a terabyte as text, built by one C call
    "nested-list-output": ("{% set ns = namespace(a=[0]) %}{% for i in range(40) %}{% set ns.a = [ns.a, ns.a] %}"
                           "{% endfor %}{{ ns.a }}", SIZE),
    "nested-list-tilde": ("{% set ns = namespace(a=[0]) %}{% for i in range(40) %}{% set ns.a = [ns.a, ns.a] %}"
                          "{% endfor %}{{ 'x' ~ ns.a }}", SIZE),
    "nested-list-format-repr": (_NESTED + "{{ '{!r}'.format(ns.a) }}", SIZE),
    "nested-list-percent": (_NESTED + "{{ '%s' % (ns.a,) }}", SIZE),
    "nested-list-join-items": (_NESTED + "{{ [ns.a]|join }}", SIZE),
    "nested-list-trim": (_NESTED + "{{ ns.a|trim }}", SIZE),
    "nested-list-center": (_NESTED + "{{ ns.a|center(3) }}", SIZE),
    "nested-list-string-filter": ("{% set ns = namespace(a=[0]) %}{% for i in range(40) %}"
                                  "{% set ns.a = [ns.a, ns.a] %}{% endfor %}{{ ns.a|string|length }}", SIZE),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_an_attack_is_refused_before_it_allocates(name):
    source, expected = ATTACKS[name]
    assert_stopped(run_attack(source), expected)


MEMORY = "MB of memory (the memory limit)"


@pytest.mark.parametrize("source", [
    "{% for i in range(100000) %}{{ 'x' * 10000000 }}{% endfor %}",  # fresh chunks piling up in the page
    "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = ns.l + ['x' * 1000000] %}{% endfor %}",
    "{{ range(100000)|map('center', 10000000)|list|length }}",
], ids=["page-of-fresh-chunks", "list-of-fresh-strings", "map-to-big-strings"])
def test_many_small_allocations_stop_at_the_memory_cap(source):
    """Each step is within the size limit; only the total is not: the watchdog's memory cap stops it."""
    result = run_attack(source, time_limit_s=20.0, max_memory_bytes=200 * 2**20)
    assert_stopped(result, MEMORY)
    assert "200 MB" in result["template_message"]


def test_default_limits_cap_memory():
    assert RenderLimits().max_memory_bytes == 512 * 2**20


def test_a_memory_error_is_a_one_line_limit_error():
    """No check can foresee everything: with the size limit lifted, the same allocation hits the 1 GB rlimit."""
    result = run_attack("{{ ('x' * 2000000000)|length }}", max_output_chars=10**12, max_memory_bytes=0)
    assert_stopped(result, "ran out of memory")


def test_list_methods_permitted_in_the_analysis_are_sized():
    """The analysis renders call probes with list methods permitted (Kimi-K2's templates build ids with append):
    a list doubled by `extend` in one C call is refused by the size limit before it is built, as `+` is, instead
    of growing past the memory limit before the watchdog looks."""
    source = "{% set l = [0] %}{% for i in range(40) %}{% set _ = l.extend(l) %}{% endfor %}{{ l|length }}"
    result = run_attack(source, permit_mutation=True, max_output_chars=1_000_000, max_memory_bytes=0)
    assert_stopped(result, "size limit")
    refused = run_attack(source)  # a user's render: the sandbox refuses the method, as transformers' does
    assert refused["kind"] == "TemplateError" and "unsafe" in refused["message"], refused


def test_list_methods_are_permitted_in_the_analysis_only():
    source = "{% set ids = [] %}{% set _ = ids.append('a') %}{% set _ = ids.extend(['b']) %}{{ ids|join(',') }}"
    assert run_attack(source, permit_mutation=True)["kind"] == "rendered"
    assert "unsafe" in run_attack(source)["message"]


def test_sum_of_lists_is_linear_and_sized():
    """`|sum(start=[])` copies the growing list at each step in C (quadratic): built in one pass instead."""
    result = run_attack("{{ ([range(200)|list] * 100000)|sum(start=[])|length }}", max_output_chars=10_000_000)
    assert_stopped(result, SIZE)


# -- the checks change no result: same output as jinja's own sandbox ------------------------------------------------

SAME_AS_JINJA = [
    "{{ 'ab'|center(9) }}|{{ 'ab'.center(9, '*') }}|{{ 'ab'.ljust(5) }}|{{ 'ab'.rjust(5) }}|{{ '7'.zfill(4) }}",
    "{{ 'a\tb'.expandtabs(4) }}|{{ 'a-b-c'.replace('-', '+') }}|{{ 'aaa'.replace('a', 'bb', 2) }}",
    "{{ 'abc'.replace('', '.') }}|{{ 'x'|replace('x', 'yy') }}|{{ 'a'|replace('a', 'b', 0) }}",
    "{{ ', '.join(['a', 'b']) }}|{{ '-'.join(range(3)|map('string')) }}|{{ [1, 2, 3]|join(', ') }}",
    "{{ [{'n': 'a'}, {'n': 'b'}]|join('/', attribute='n') }}|{{ ('a', 'b')|join }}|{{ []|join('x') }}",
    "{{ 'a\nb\n\nc'|indent(2) }}|{{ 'a\nb'|indent('> ', true) }}|{{ 'a\n\nb'|indent(2, blank=true) }}",
    "{{ 'the quick brown fox jumps'|wordwrap(10) }}|{{ 'ab cd'|wordwrap(2, wrapstring='<br>') }}",
    "{{ '{:>6}|{:.2f}|{:,}|{!r}'.format('x', 1.5, 1234567, 'q') }}|{{ '{a}-{b}'.format_map({'a': 1, 'b': 2}) }}",
    "{{ '%5s|%-4d|%.3f' % ('x', 3, 1.0) }}|{{ '%(k)s' % {'k': [1]} }}|{{ '%s' % 'x' }}|{{ '%%' % () }}",
    "{{ '%(a)s=%(b)03d'|format(a='k', b=7) }}|{{ '%s, %s!'|format('Hello', 'World') }}|{{ '%*d' % (5, 42) }}",
    "{{ 2 ** 10 }}|{{ 2 ** 0.5 }}|{{ 2 ** -1 }}|{{ (-3) ** 3 }}|{{ 0 ** 0 }}|{{ 1.5 ** 2 }}",
    "{{ 3 * 4 }}|{{ 'ab' * 3 }}|{{ 3 * 'ab' }}|{{ [1] * 3 }}|{{ 'x' * -1 }}|{{ 2.5 * 2 }}|{{ true * 'y' }}",
    "{{ 1 + 2 }}|{{ 'a' + 'b' }}|{{ [1] + [2] }}|{{ (1,) + (2,) }}|{{ 1.5 + 1 }}|{{ 7 % 3 }}|{{ 7.5 % 2 }}",
    "{{ 'a' ~ 1 ~ [1, 'b'] ~ {'k': (1, None)} ~ none ~ true }}|{{ [1, [2, ['x']]] }}|{{ {'a': (1, 2)|list} }}",
    "{{ [[1, 2], [3]]|sum(start=[]) }}|{{ [(1,), (2,)]|sum(start=()) }}|{{ [1, 2]|sum }}|{{ [{'v': 2}]|sum('v') }}",
    "{{ [1, 2, 3, 4, 5]|slice(2)|list }}|{{ [1, 2, 3]|slice(2, 0)|list }}|{{ [1, 2, 3]|batch(2, 'x')|list }}",
    "{{ range(3)|list }}|{{ range(1, 10, 3)|list }}|{{ range(5, 0, -2)|list }}|{{ (1).to_bytes(2, 'big') }}",
    "{{ {'b': 1, 'a': [1, 2]}|tojson }}|{{ {'a': [1, 2]}|tojson(indent=2) }}|{{ [1, 'x']|string }}",
    "{{ 'abc'.translate({97: 'xy'}) }}|{{ 'ab'|format }}|{{ [1, 2]|pprint }}|{{ '<a>'|e }}",
    "{% set ns = namespace(s='a', n=1) %}{% for i in range(3) %}{% set ns.s = ns.s ~ ns.s %}"
    "{% set ns.n = ns.n * 10 %}{% endfor %}{{ ns.s }}|{{ ns.n }}",
    "{% macro m(x) %}<{{ x }}>{% endmacro %}{{ m('a') ~ m([1]) }}|{% set b %}{{ m(2) }}{% endset %}{{ b }}",
]


@pytest.mark.parametrize("source", SAME_AS_JINJA)
def test_checked_operations_give_jinja_s_results(source):
    """Synthetic templates through every checked path: byte-identical to jinja's own sandbox (what transformers
    runs); tojson is transformers' (no HTML escaping), so those outputs are compared after unescaping."""
    reference = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    reference.filters["tojson"] = lambda x, indent=None: json.dumps(x, ensure_ascii=False, indent=indent)
    expected = reference.from_string(source).render()
    assert run_template(source, {})[0] == expected


def test_a_real_template_renders_the_same_with_limits(smollm2_dir):
    spec = turnspec.load(smollm2_dir)
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "x" * 100_000}]
    text = spec.render(messages, add_generation_prompt=True)
    assert text == ("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\n" + "x" * 100_000
                    + "<|im_end|>\n<|im_start|>assistant\n")
