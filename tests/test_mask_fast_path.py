"""`mask_by_header` (the fast mask path's verdict) skips only the probe shapes a template refuses; a bug while
checking raises instead of silently turning the fast path off."""

from __future__ import annotations

import pytest

import turnspec
from turnspec.encoding import mask_by_header

from helpers.paths import CORPUS, need
from helpers.corpus_models import special_tokens_for


def test_a_refused_shape_is_skipped_not_fatal():
    path = need(CORPUS / "templates" / "google-gemma-2-2b-it.jinja")  # raises on a system message
    spec = turnspec.from_template(path.read_text(encoding="utf-8"), special_tokens=special_tokens_for(path))
    with pytest.raises(turnspec.TurnspecError):
        spec.render([{"role": "system", "content": "s"}, {"role": "user", "content": "u"}])
    assert mask_by_header(spec) is True  # the three shapes without a system message qualify it


def test_a_bug_in_the_mask_check_raises(smollm2_dir, monkeypatch):
    """A template that raises is a refused shape (the Prober's job); a bug in turnspec's own span code is not."""
    import turnspec.encoding as encoding
    from turnspec.analysis.masks import learn_mask_by_header
    from turnspec.analysis.probes import Prober

    spec = turnspec.load(smollm2_dir)
    analysis = spec.analysis  # learned (or shared from the analysis cache) before the check breaks

    def broken(*args, **kwargs):
        raise KeyError("a bug, not a template refusing a shape")

    monkeypatch.setattr(encoding, "spans_by_header", broken)
    with pytest.raises(KeyError, match="a bug"):
        learn_mask_by_header(Prober(spec), analysis)
