"""A process-wide cache of template analyses, so loading the same model again does not re-analyse its template.

The analysis depends only on what the probes render and how renderings are split: the template text (its sha256),
the special tokens the template reads (`bos_token`, `eos_token`, ...), the control tokens of the markup and the
render limits. Two specs that agree on these get the same `TemplateAnalysis` object (it is frozen). The analysis
takes no template keyword arguments today; a caller that passes some must add them to the key.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable, Hashable

if TYPE_CHECKING:
    from .syntax import TemplateAnalysis

#: Analyses kept; the least recently used goes first. One entry is a few kilobytes.
MAX_ENTRIES = 64

_entries: OrderedDict[Hashable, "TemplateAnalysis"] = OrderedDict()
_lock = threading.Lock()


def analysis_key(spec: Any, markup_tokens: frozenset[str], template_kwargs: tuple[tuple[str, Any], ...] = ()
                 ) -> Hashable:
    """What the analysis of `spec`'s default template depends on."""
    limits = spec.limits
    return (spec.template_sha256, markup_tokens, tuple(sorted(spec.special_tokens.items())),
            dataclasses.astuple(limits) if limits is not None else None, template_kwargs)


def cached_analysis(key: Hashable, compute: Callable[[], "TemplateAnalysis"]) -> "TemplateAnalysis":
    """The analysis stored under `key`, computed (outside the lock: it renders templates) when absent."""
    with _lock:
        found = _entries.get(key)
        if found is not None:
            _entries.move_to_end(key)
            return found
    analysis = compute()
    with _lock:
        found = _entries.setdefault(key, analysis)  # a concurrent load may have stored one first: keep that one
        _entries.move_to_end(key)
        while len(_entries) > MAX_ENTRIES:
            _entries.popitem(last=False)
    return found


def clear() -> None:
    """Forget every cached analysis (tests, or after changing how templates are analysed)."""
    with _lock:
        _entries.clear()
