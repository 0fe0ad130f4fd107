"""The template analysis is cached across loads by what it depends on (turnspec.analysis.cache): a second load of
the same model reuses the analysis object, another template or other tokens do not."""

from __future__ import annotations

import turnspec
from turnspec.analysis import analysis_for
from turnspec.analysis import cache as analysis_cache
from turnspec.template import RenderLimits

from helpers.paths import CORPUS, need


def test_second_load_of_smollm2_reuses_the_analysis(smollm2_dir):
    first = turnspec.load(smollm2_dir)
    second = turnspec.load(smollm2_dir)
    assert first is not second
    assert second.analysis is first.analysis
    assert first.analysis.turn_ends == ("<|im_end|>",)  # the real analysis, not an empty placeholder
    assert second.markup is first.markup


def test_a_different_template_gets_its_own_analysis(smollm2_dir):
    smollm2 = turnspec.load(smollm2_dir)
    other_source = need(CORPUS / "templates" / "Qwen-Qwen3-0.6B.jinja").read_text(encoding="utf-8")
    other = turnspec.load(smollm2_dir, template=other_source)
    assert other.template_sha256 != smollm2.template_sha256
    assert other.analysis is not smollm2.analysis
    assert other.analysis.reasoning.open == "<think>"
    assert smollm2.analysis.reasoning.kind == "none"


def test_the_same_template_with_other_special_tokens_or_limits_is_analysed_again():
    """Synthetic template that writes its bos_token: a spec with another BOS must not get the first one's analysis."""
    template = "{{ bos_token }}{% for m in messages %}<|{{ m.role }}|>{{ m.content }}<|end|>{% endfor %}" \
               "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    a = turnspec.from_template(template, special_tokens={"bos_token": "<s>"})
    b = turnspec.from_template(template, special_tokens={"bos_token": "<s>"})
    c = turnspec.from_template(template, special_tokens={"bos_token": "<bos>"})
    d = turnspec.from_template(template, special_tokens={"bos_token": "<s>"}, limits=RenderLimits(time_limit_s=9.0))
    assert b.analysis is a.analysis
    assert c.analysis is not a.analysis
    assert d.analysis is not a.analysis
    learned = [{k: v for k, v in x.analysis.as_dict().items() if k != "elapsed_ms"} for x in (a, d)]
    assert learned[0] == learned[1]


def test_the_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(analysis_cache, "MAX_ENTRIES", 2)
    analysis_cache.clear()
    specs = [turnspec.from_template(f"{{% for m in messages %}}<|{k}|>{{{{ m.content }}}}<|end|>{{% endfor %}}")
             for k in range(3)]
    first = analysis_for(specs[0])
    analysis_for(specs[1])
    analysis_for(specs[2])  # evicts specs[0]'s entry
    assert len(analysis_cache.analyses.entries) == 2
    again = analysis_for(turnspec.from_template(specs[0].template))
    assert again is not first and again.turn_ends == first.turn_ends
