"""The template facts the analysis learns beyond turn framing (turnspec.analysis.facts), on real templates, and the
proof that onboarding, chat, the server and encoding read them instead of rendering probes of their own."""

from __future__ import annotations

from pathlib import Path

import pytest

import turnspec
from helpers.paths import SHARED, need
from helpers.corpus_models import corpus_spec
from turnspec.chat import system_role_error
from turnspec.onboard import onboard_spec
from turnspec.spec import ModelSpec

QWEN3_DIR = SHARED / "models" / "qwen3-tokenizer"


@pytest.fixture
def render_count(monkeypatch):
    """Counts every template rendering (ModelSpec.render), whoever asks for it."""
    calls = {"n": 0}
    real = ModelSpec.render

    def counting(self, *args, **kwargs):
        calls["n"] += 1
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ModelSpec, "render", counting)
    return calls


def _analysis_with_the_facts_onboarding_shows(spec: ModelSpec):
    analysis = spec.analysis
    analysis.tool_use, analysis.reasoning_switches, analysis.universal_mask, analysis.exposed, analysis.prefix  # noqa: B018
    return analysis


# ------------------------------------------------------------------------------------------ renders per onboarding
@pytest.mark.parametrize("folder", ["smollm2", "qwen3"])
def test_onboarding_renders_no_probe_of_its_own(folder, smollm2_dir, render_count):
    path = smollm2_dir if folder == "smollm2" else need(QWEN3_DIR)
    analysed = turnspec.load(path)
    _analysis_with_the_facts_onboarding_shows(analysed)
    by_analysis = render_count["n"]
    assert by_analysis > 10  # the count sees the renderings (a wrapper that counts nothing would pass below)

    render_count["n"] = 0
    report = onboard_spec(analysed)  # everything it shows is already learned: not one rendering more
    assert report.error is None and render_count["n"] == 0

    render_count["n"] = 0
    onboard_spec(turnspec.load(path))  # a fresh spec: onboarding costs what the analysis costs, no more
    assert render_count["n"] <= by_analysis, (render_count["n"], by_analysis)


def test_the_onboarding_module_has_no_renderer():
    source = (Path(turnspec.__file__).parent / "onboard" / "probe.py").read_text(encoding="utf-8")
    assert ".render(" not in source and "Prober(" not in source and "REASONING_SWITCHES" not in source


# ------------------------------------------------------------------------------------------ system prompt
def test_gemma2_raises_on_a_system_message():
    analysis = corpus_spec("google-gemma-2-2b-it.jinja").analysis
    assert (analysis.system.mode, analysis.system.message) == ("unsupported", "System role not supported")
    assert analysis.roles.must_alternate is True
    assert "roles must alternate" in analysis.roles.alternate_message


def test_llama31_appends_to_its_cutting_knowledge_default():
    system = corpus_spec("meta-llama-Llama-3.1-8B-Instruct.jinja").analysis.system
    assert system.mode == "appends" and system.placement == "same block as the default"
    assert system.default.startswith("Cutting Knowledge Date: December 2023\nToday Date: ")


def test_qwen25_replaces_you_are_qwen():
    system = corpus_spec("Qwen-Qwen2.5-7B-Instruct.jinja").analysis.system
    assert (system.mode, system.default) == ("replaces",
                                             "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.")


def test_smollm2_replaces_its_default_and_takes_any_role_generically(smollm2_dir):
    analysis = turnspec.load(smollm2_dir).analysis
    assert analysis.system.mode == "replaces"
    assert analysis.system.default == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    # ChatML writes any role after <|im_start|>: "developer" renders, but as an unknown role would
    assert analysis.roles.developer == "accepted" and analysis.roles.developer_native is False
    assert analysis.roles.must_alternate is False
    assert analysis.continue_final_message.works is True
    assert analysis.generation.text == "<|im_start|>assistant\n" and analysis.generation.matches_finished_turn is True


def test_qwen3_system_is_native_and_mistral_nemo_merges_it_into_the_last_user_turn():
    assert corpus_spec("Qwen-Qwen3-0.6B.jinja").analysis.system.mode == "native"
    system = corpus_spec("mistralai-Mistral-Nemo-Instruct-2407.jinja").analysis.system
    assert (system.mode, system.into) == ("merged", "the last user turn")


def test_gpt_oss_writes_developer_messages_its_own_way():
    analysis = corpus_spec("openai-gpt-oss-120b.jinja").analysis
    assert analysis.roles.developer == "accepted" and analysis.roles.developer_native is True
    assert analysis.system.mode == "appends" and analysis.system.placement == "a separate message after the default"


# ------------------------------------------------------------------------------------------ BOS, tools, lazy facts
def test_llama31_writes_bos_and_a_tokenizer_that_adds_one_doubles_it():
    bos = corpus_spec("meta-llama-Llama-3.1-8B-Instruct.jinja").analysis.bos
    assert (bos.token, bos.template_writes) == ("<|begin_of_text|>", True)
    assert bos.doubled_by(True) is True and bos.doubled_by(False) is False and bos.doubled_by(None) is None
    qwen = corpus_spec("Qwen-Qwen2.5-7B-Instruct.jinja").analysis.bos
    assert qwen.template_writes is False and qwen.doubled_by(None) is False


def test_argument_forms_object_vs_json_string():
    qwen = corpus_spec("Qwen-Qwen2.5-7B-Instruct.jinja").analysis.tool_use
    assert qwen.arguments == {"object": "ok", "string": "double-encoded", "accepts": "object"}
    assert qwen.parallel_calls == "parallel" and qwen.round_trip == "ok" and qwen.tool_role == "accepted"
    functionary = corpus_spec("meetkai-functionary-medium-v3.2.jinja").analysis.tool_use
    assert functionary.arguments["accepts"] == "string" and functionary.arguments["object"].startswith("raises:")
    llama = corpus_spec("meta-llama-Llama-3.1-8B-Instruct.jinja").analysis.tool_use
    assert llama.parallel_calls == "single (two calls raise: This model only supports single tool-calls at once!)"
    assert llama.ipython_role == "accepted"


def test_qwen3_switch_effects_and_think_in_content():
    switches = corpus_spec("Qwen-Qwen3-0.6B.jinja").analysis.reasoning_switches
    assert switches.effects["enable_thinking"]["true"] == "same as default"
    assert "<think>\\n\\n</think>" in switches.effects["enable_thinking"]["false"]
    assert switches.think_in_content == "stripped"


def test_mask_by_header_and_prefix_are_kept_with_the_analysis(smollm2_dir, render_count):
    from turnspec.encoding import mask_by_header

    spec = turnspec.load(smollm2_dir)
    verdict = mask_by_header(spec)
    assert verdict is spec.analysis.mask_by_header is True
    assert "_mask_by_header" not in spec.__dict__  # no longer written into the spec
    assert spec.analysis.prefix.stable is True
    render_count["n"] = 0
    assert mask_by_header(spec) is True and spec.analysis.prefix.stable is True
    assert render_count["n"] == 0  # learned once


# ------------------------------------------------------------------------------------------ readers
def test_chat_reads_the_system_fact():
    assert system_role_error(corpus_spec("google-gemma-2-2b-it.jinja")) == "System role not supported"
    # a template that needs a tools list renders a system message fine: not a rejection (a bare probe said it was)
    assert system_role_error(corpus_spec("NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja")) is None


def test_a_template_that_fails_on_one_message_has_no_facts_but_says_why():
    spec = turnspec.from_template("{{ raise_exception('this template is broken') }}", name="synthetic-broken")
    analysis = spec.analysis
    assert "this template is broken" in analysis.error and analysis.prober.base_found is False
    assert analysis.system.mode == "unknown" and system_role_error(spec) is None
