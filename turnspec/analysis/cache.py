"""Process-wide caches of template analyses and markups, so loading the same model again re-analyses nothing.

Both depend only on the template text (its sha256), the special tokens the template reads (`bos_token`, ...), the
control tokens (pinned ids, the vocabulary's added and special tokens) and, for the analysis, the render limits.
Specs that agree on these share one `TemplateAnalysis` (frozen) and one `Markup`. The key is cheap to build: a
second load of a model costs a lookup, not the renders (bench/bench_analysis.py, "second load"). The analysis
takes no template keyword arguments today; a caller that passes some must add them to the key.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable, Generic, Hashable, TypeVar

from ..errors import TurnspecError

if TYPE_CHECKING:
    from ..speclike import SpecLike

#: Templates kept per cache; the least recently used goes first. An analysis is a few kilobytes.
MAX_ENTRIES = 64

T = TypeVar("T")


class BoundedCache(Generic[T]):
    """A thread-safe LRU map; values are computed outside the lock (an analysis renders templates)."""

    def __init__(self) -> None:
        self.entries: OrderedDict[Hashable, T] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        with self._lock:
            if key in self.entries:
                self.entries.move_to_end(key)
                return self.entries[key]
        value = compute()
        with self._lock:
            value = self.entries.setdefault(key, value)  # a concurrent load may have stored one first: keep that
            self.entries.move_to_end(key)
            while len(self.entries) > MAX_ENTRIES:
                self.entries.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self.entries.clear()


analyses: BoundedCache[Any] = BoundedCache()
markups: BoundedCache[Any] = BoundedCache()


def template_key(spec: SpecLike) -> Hashable:
    """What the markup and the analysis of `spec`'s default template depend on, limits aside."""
    try:
        vocab = spec.vocab
    except TurnspecError:  # an unreadable tokenizer: the markup falls back to the special tokens, so does the key
        vocab = None
    vocabulary = (frozenset(vocab.added_tokens.items()), vocab.special_ids) if vocab is not None else None
    return (spec.template_sha256, frozenset(spec.special_tokens.items()),
            frozenset(getattr(spec, "_token_ids", {}).items()), vocabulary)


def analysis_key(spec: SpecLike) -> Hashable:
    limits = spec.limits
    return template_key(spec), dataclasses.astuple(limits) if limits is not None else None


def clear() -> None:
    """Forget every cached analysis and markup (tests, or after changing how templates are analysed)."""
    analyses.clear()
    markups.clear()
