"""Longest common prefix and suffix of two renderings: how the analysis, the masks, sessions and onboarding find
where two renderings of a conversation part. A leaf module, so every layer can use the one implementation."""

from __future__ import annotations


def common_prefix(a: str, b: str) -> int:
    """Length of the longest common prefix (slice comparisons in C, halving: renderings are long)."""
    lo, hi = 0, min(len(a), len(b))
    if a[:hi] == b[:hi]:
        return hi
    while lo < hi:  # a[:lo] == b[:lo] and a[:hi + 1] != b[:hi + 1]
        mid = (lo + hi + 1) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def common_suffix(a: str, b: str, prefix: int = 0) -> int:
    """Length of the longest common suffix, at most `min(len(a), len(b)) - prefix` (so that it does not overlap a
    common prefix of that length)."""
    n = min(len(a), len(b)) - prefix
    i = 0
    while i < n and a[-1 - i] == b[-1 - i]:
        i += 1
    return i
