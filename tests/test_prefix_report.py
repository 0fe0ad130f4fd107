"""spec.prefix_report(): whether re-rendering after appending a user / tool / assistant message keeps earlier tokens."""

from __future__ import annotations

from pathlib import Path

import turnspec

from helpers.paths import SHARED, SMOLLM2_DIR, need
from helpers.corpus_models import special_tokens_for
from helpers.roundtrip import spec_for

LLAMACPP = Path(__file__).parent / "data" / "llamacpp_templates"


def test_qwen3_drops_reasoning_when_a_user_message_follows():
    report = turnspec.load(need(SHARED / "models" / "qwen3-tokenizer")).prefix_report()
    by_role = {c.appended: c for c in report.cases}
    assert by_role["user"].extends is False
    assert by_role["user"].reasons == ("reasoning dropped from the earlier turn",)
    assert "tsr_thought_x" in by_role["user"].old and "tsr_thought_x" not in by_role["user"].new
    assert by_role["tool"].extends is True and by_role["assistant"].extends is True
    assert report.switches == ("enable_thinking",) and not by_role["user"].fixed_by  # no switch keeps reasoning
    assert not report.stable


def test_smollm2_is_a_prefix_extension_for_every_role():
    report = turnspec.load(need(SMOLLM2_DIR)).prefix_report()
    assert report.stable and [c.extends for c in report.cases] == [True, True, True]


def test_the_switch_that_keeps_history_is_found():
    path = need(LLAMACPP / "NVIDIA-Nemotron-3-Nano-30B-A3B-BF16.jinja")
    spec = spec_for(path.read_text(encoding="utf-8"), special_tokens_for(path), need(SMOLLM2_DIR / "tokenizer.json"))
    user_case = spec.prefix_report().cases[0]
    assert user_case.extends is False and user_case.fixed_by == {"truncate_history_thinking": False}
    assert spec.prefix_report(truncate_history_thinking=False).cases[0].extends is True


def test_a_bpe_merge_across_the_turn_boundary_is_named():
    """Llama 3's prompt ends with "\\n\\n", which merges differently once the answer follows it (synthetic vocab)."""
    path = need(LLAMACPP / "meta-llama-Llama-3.1-8B-Instruct.jinja")
    spec = spec_for(path.read_text(encoding="utf-8"), special_tokens_for(path), need(SMOLLM2_DIR / "tokenizer.json"))
    case = spec.prefix_report().cases[0]
    assert case.extends is False and "BPE merge" in case.reasons[0]


def test_without_a_vocabulary_the_text_is_compared():
    synthetic = ("{% for m in messages %}<|{{ m.role }}|>{% if m.reasoning_content and loop.last %}<think>"
                 "{{ m.reasoning_content }}</think>{% endif %}{{ m.content }}<|end|>{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    report = turnspec.from_template(synthetic, name="synthetic-drops-reasoning").prefix_report()
    assert report.cases[0].extends is False and report.cases[0].first_changed_token is None
    assert "reasoning dropped from the earlier turn" in report.cases[0].reasons
