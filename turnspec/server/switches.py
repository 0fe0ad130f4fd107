"""Which reasoning switches a template reads (`enable_thinking`, `reasoning_effort`, ... from the analysis's list of
switches), for the APIs whose requests turn reasoning on or off (Anthropic's `thinking`, Ollama's `think`)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from ..analysis.probes import REASONING_SWITCHES
from ..errors import TurnspecError
from ..template import template_variables

# switches the analysis probes with True/False: reasoning on or off
ON_OFF_SWITCHES = tuple(name for name, values in REASONING_SWITCHES.items() if set(values) == {True, False})
EFFORT_SWITCH = "reasoning_effort"


def template_switches(spec: Any, tools: Any = None) -> tuple[str, ...]:
    """The reasoning switches `spec`'s template (the one chosen for `tools`) reads; none without a template."""
    try:
        source = spec.select_template(tools=tools or None)
    except TurnspecError:
        return ()
    return _switches(source)


@lru_cache(maxsize=32)
def _switches(source: str) -> tuple[str, ...]:
    variables = set(template_variables(source))
    return tuple(name for name in REASONING_SWITCHES if name in variables)
