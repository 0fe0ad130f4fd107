"""`mask_by_header` (the fast mask path's verdict) skips only the probe shapes a template refuses; a bug while
checking raises instead of silently turning the fast path off."""

from __future__ import annotations

import pytest

import turnspec
from turnspec.encoding import mask_by_header

from conftest import CORPUS, need
from corpus_models import special_tokens_for


def test_a_refused_shape_is_skipped_not_fatal():
    path = need(CORPUS / "templates" / "google-gemma-2-2b-it.jinja")  # raises on a system message
    spec = turnspec.from_template(path.read_text(encoding="utf-8"), special_tokens=special_tokens_for(path))
    with pytest.raises(turnspec.TurnspecError):
        spec.render([{"role": "system", "content": "s"}, {"role": "user", "content": "u"}])
    assert mask_by_header(spec) is True  # the three shapes without a system message qualify it


def test_a_bug_while_rendering_a_probe_raises(smollm2_dir, monkeypatch):
    spec = turnspec.load(smollm2_dir)
    spec.analysis, spec.markup  # learned before the render breaks

    def broken_render(*args, **kwargs):
        raise KeyError("a bug, not a template refusing a shape")

    monkeypatch.setattr(spec, "render", broken_render)
    with pytest.raises(KeyError, match="a bug"):
        mask_by_header(spec)
