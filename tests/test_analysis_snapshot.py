"""What the analysis learns from every real template, pinned: a change in any learned fact shows as a diff.

tests/data/analysis_snapshots.json holds `TemplateAnalysis.as_dict()` (without timings) for every template in
../shared (corpus, community, model folders) and tests/data/llamacpp_templates, each analysed on a spec with the
special tokens its model card documents and no vocabulary. After an intended change, regenerate it and read the diff:

    TURNSPEC_UPDATE_SNAPSHOTS=1 python -m pytest tests/test_analysis_snapshot.py
"""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path
from typing import Any

import pytest

import turnspec
from helpers.paths import CORPUS
from helpers.corpus_models import special_tokens_for, template_files, template_id

SNAPSHOTS = Path(__file__).parent / "data" / "analysis_snapshots.json"
LLAMACPP = sorted((Path(__file__).parent / "data" / "llamacpp_templates").glob("*.jinja"))
UPDATE = os.environ.get("TURNSPEC_UPDATE_SNAPSHOTS") == "1"


def _sources() -> list[tuple[str, Path]]:
    out = [(f"shared/{template_id(p)}", p) for p in template_files()] if CORPUS.is_dir() else []
    return out + [(f"llamacpp/{p.stem}", p) for p in LLAMACPP]


def analysis_facts(path: Path) -> dict[str, Any]:
    """The analysis of one template file as pinned: JSON-ready, timings dropped."""
    if path.name == "chat_template.jinja":
        spec = turnspec.load(path.parent)
    else:
        spec = turnspec.from_template(path.read_text(encoding="utf-8"), name=path.stem,
                                      special_tokens=special_tokens_for(path))
    facts = spec.analysis.as_dict()
    facts.pop("elapsed_ms", None)
    text = json.dumps(facts, sort_keys=True, default=str)
    for shape in _TODAY_SHAPES:  # templates that write today's date (strftime_now) into a default system text
        text = text.replace(date.today().strftime(shape), "{today}")
    return json.loads(text)


_TODAY_SHAPES = ("%Y-%m-%d", "%d %b %Y", "%B %d, %Y", "%d %B %Y")


def _load() -> dict[str, Any]:
    return json.loads(SNAPSHOTS.read_text(encoding="utf-8")) if SNAPSHOTS.exists() else {}


SOURCES = _sources()


def test_snapshots_cover_every_template():
    if UPDATE:
        pytest.skip("regenerating")
    pinned = _load()
    if not CORPUS.is_dir():
        pytest.skip("../shared is absent: only the llama.cpp templates are checked")
    assert sorted(pinned) == sorted(name for name, _ in SOURCES), \
        "templates were added or removed: regenerate tests/data/analysis_snapshots.json (see this file's docstring)"


@pytest.mark.parametrize("name,path", SOURCES, ids=[n for n, _ in SOURCES])
def test_analysis_is_pinned(name, path):
    facts = analysis_facts(path)
    if UPDATE:
        pinned = _load()
        pinned[name] = facts
        tmp = SNAPSHOTS.with_suffix(".tmp")
        tmp.write_text(json.dumps(pinned, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(SNAPSHOTS)
        return
    pinned = _load().get(name)
    assert pinned is not None, f"{name} is not pinned: regenerate tests/data/analysis_snapshots.json"
    changed = sorted(k for k in set(facts) | set(pinned) if facts.get(k) != pinned.get(k))
    assert not changed, f"{name}: the analysis changed in {changed}: " + json.dumps(
        {k: {"pinned": pinned.get(k), "now": facts.get(k)} for k in changed}, ensure_ascii=False)[:3000]
