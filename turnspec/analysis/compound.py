"""Tags built from generic tokens and a name: `<|open|>think<|sep|>` … `<|close|>think<|sep|>` (Kimi-K3).

Some templates have no token per marker: they write an opening token, the tag's name and a separator token, and
close with a closing token, the same name and the same separator. Each such run is one marker, so the analysis
reads it as one token: the names a template writes both ways (an opener, possibly with attributes, and a bare
closer) give the bare runs, found in the probe renderings. Templates whose tokens do not pair as open/close
(`<|start_header_id|>user<|end_header_id|>`) have none.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from .markup import Markup

_NAME = re.compile(r"[A-Za-z_][\w\-]{0,23}")


def compound_tags(texts: Iterable[str], markup: Markup) -> set[str]:
    """The bare `OPEN name SEP` and `CLOSE name SEP` runs in `texts` whose name is written both opened (bare or
    with attributes before SEP) and closed, with OPEN and CLOSE a pair of tokens."""
    from .turn import pairs

    runs: set[tuple[str, str, str]] = set()  # (first token, name, separator) with nothing else between
    opened: set[tuple[str, str, str]] = set()  # (first token, name, separator) with attributes before it
    for text in texts:
        spans = markup.spans(text)
        for a, b in zip(spans, spans[1:]):
            between = text[a.end:b.start]
            word = _NAME.match(between)
            if word is None:
                continue
            if word.end() == len(between):
                runs.add((a.text, between, b.text))
            elif between[word.end()] == " " and "\n" not in between:
                opened.add((a.text, word.group(), b.text))
    out: set[str] = set()
    for close, name, sep in runs:
        for open_, other, sep2 in runs | opened:
            if other == name and sep2 == sep and open_ != close and pairs(open_, close):
                out.add(close + name + sep)
                if (open_, name, sep) in runs:
                    out.add(open_ + name + sep)
    return out


@lru_cache(maxsize=64)
def compound_members(control_tokens: tuple[str, ...]) -> tuple[str, ...]:
    """The compound tags among an analysis's control tokens (a token, a name and a token, all three there): the
    reader must know them as units even without a vocabulary, or a tag's last token would end a call early.
    Cached: every reader asks, and a vocabulary may have hundreds of control tokens."""
    tokens = set(control_tokens)
    out = []
    for tag in tokens:
        for cut in range(2, len(tag) - 2):  # each prefix of the tag that is a token: linear in the vocabulary
            if tag[:cut] in tokens:
                word = _NAME.match(tag, cut)
                if word and tag[word.end():] in tokens:
                    out.append(tag)
                    break
    return tuple(sorted(out))
