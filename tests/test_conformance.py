"""Differential conformance: turnspec renders exactly what transformers' apply_chat_template renders.

For every real template in ../shared (corpus and model folders) and every conversation shape, with and without
the generation prompt: the texts are equal byte for byte, or both raise.
"""

from __future__ import annotations

import copy

import pytest

from helpers.paths import SHARED, SMOLLM2_DIR, need
from helpers.conversations import SHAPES
from helpers.corpus_models import special_tokens_for, template_files, template_id

import turnspec

transformers = pytest.importorskip("transformers", reason="transformers is the reference (a test dependency)")

TEMPLATES = template_files() if SHARED.exists() else []


def _hf_tokenizer(path):
    if path.name == "chat_template.jinja":
        return transformers.AutoTokenizer.from_pretrained(str(path.parent))
    return transformers.PreTrainedTokenizerFast(
        tokenizer_file=str(SMOLLM2_DIR / "tokenizer.json"), **special_tokens_for(path)
    )


def _spec(path):
    if path.name == "chat_template.jinja":
        return turnspec.load(path.parent)
    return turnspec.from_template(path.read_text(encoding="utf-8"), name=path.stem, special_tokens=special_tokens_for(path))


def _outcome(fn):
    try:
        return ("ok", fn())
    except Exception as exc:  # both sides raise various types; what matters is that both raise
        return ("raises", f"{type(exc).__name__}: {exc}")


@pytest.fixture(scope="module", params=TEMPLATES or [None], ids=[template_id(p) for p in TEMPLATES] or ["absent"])
def pair(request):
    if request.param is None:
        need(SHARED)
    path = request.param
    return path, _hf_tokenizer(path), _spec(path), path.read_text(encoding="utf-8")


def test_there_are_enough_shapes_and_templates():
    need(SHARED)
    assert len(SHAPES) >= 20
    assert len(TEMPLATES) >= 15


@pytest.mark.parametrize("gen_prompt", [False, True], ids=["no_gen", "gen"])
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_render_equals_transformers(pair, shape, gen_prompt):
    path, hf, spec, template = pair
    messages, kwargs = SHAPES[shape]
    kwargs = dict(kwargs)
    kwargs.setdefault("add_generation_prompt", gen_prompt)
    if shape == "continue_with_gen_prompt" and not gen_prompt:
        pytest.skip("covered by the gen variant")
    ref = _outcome(lambda: hf.apply_chat_template(copy.deepcopy(messages), chat_template=template, tokenize=False, **kwargs))
    ours = _outcome(lambda: spec.render(copy.deepcopy(messages), **kwargs))
    assert ours[0] == ref[0], f"turnspec {ours[0]} but transformers {ref[0]}: {ours[1] if ours[0] == 'raises' else ref[1]}"
    if ref[0] == "ok":
        assert ours[1] == ref[1]


def test_inputs_are_not_mutated(pair):
    _, _, spec, _ = pair
    messages, kwargs = SHAPES["tool_call_then_answer"]
    before = copy.deepcopy(messages)
    try:
        spec.render(messages, **kwargs)
    except turnspec.TurnspecError:
        pass
    assert messages == before
