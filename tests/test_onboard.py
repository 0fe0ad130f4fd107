"""Onboarding findings, found by rendering probe conversations through real templates — never by model names."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from helpers.paths import CORPUS, need
from helpers.corpus_models import HARMONY_IDS, LLAMA3_IDS, SPECIAL_TOKENS, special_tokens_for, template_files, template_id

import turnspec
from turnspec.errors import TurnspecError
from turnspec.onboard import apply_pins, load_profile, onboard_model, onboard_spec, profile_filename, save_profile
from turnspec.onboard.report import format_report, summary_row

SECTIONS = ("bos", "generation_prompt", "system", "roles", "tools", "reasoning", "continue_final_message", "stops",
            "generation_mask")


def corpus_spec(stem: str) -> turnspec.ModelSpec:
    template = need(CORPUS / "templates" / f"{stem}.jinja").read_text(encoding="utf-8")
    ids = LLAMA3_IDS if SPECIAL_TOKENS[stem].get("bos_token") == "<|begin_of_text|>" else None
    if "gpt-oss" in stem:
        ids = HARMONY_IDS
    return turnspec.from_template(template, name=stem, special_tokens=SPECIAL_TOKENS[stem], token_ids=ids)


@pytest.fixture(scope="module")
def corpus_reports():
    """One onboarding per corpus template (computed once: each takes ~0.05 s)."""
    cache = {}

    def get(stem: str):
        if stem not in cache:
            cache[stem] = onboard_spec(corpus_spec(stem))
        return cache[stem]

    return get


def _plain(value):
    return json.loads(json.dumps(value))


# ------------------------------------------------------------------------------------------ every real template
@pytest.mark.parametrize("path", template_files(), ids=template_id)
def test_every_real_template_gets_a_profile(path, tmp_path):
    """No crash, no internal error in any probe, and the saved YAML reads back to the same findings."""
    spec = turnspec.from_template(path.read_text(encoding="utf-8"), name=template_id(path),
                                  special_tokens=special_tokens_for(path))
    report = onboard_spec(spec)
    assert report.error is None, report.error
    for section in SECTIONS:
        assert section in report.findings, section
        assert "internal error" not in json.dumps(report.findings[section]), report.findings[section]
    assert report.template_sha256 == spec.template_sha256
    assert report.findings["system"]["mode"] in ("unsupported", "merged", "appends", "replaces", "native", "ignored")
    assert report.findings["reasoning"]["format"] in ("channels", "tags", "none")
    text = format_report(report)
    assert text.startswith(f"turnspec onboard: {template_id(path)}") and "system" in text
    reads = report.findings["tools"].get("reads")  # what the reader will read, or why it cannot
    assert reads and (isinstance(reads, list) or reads.startswith("not readable: ")), reads
    assert "tool calls:" in text
    path_saved, _ = save_profile(report, tmp_path)
    assert _plain(load_profile(report.model, tmp_path)["findings"]) == _plain(report.findings)
    assert summary_row(report)["model"] == template_id(path)


# ------------------------------------------------------------------------------------------ system prompt
def test_smollm2_replaces_its_default_system_prompt(smollm2_dir):
    report = onboard_model(smollm2_dir)
    assert report.error is None
    system = report.findings["system"]
    assert system == {"mode": "replaces",
                      "default": "You are a helpful AI assistant named SmolLM, trained by Hugging Face"}
    gp = report.findings["generation_prompt"]
    assert gp["text"] == "<|im_start|>assistant\n" and gp["matches_finished_turn"] is True
    assert [t["id"] for t in gp["tokens"]][0] == 1  # <|im_start|>
    assert report.findings["stops"]["token_ids"] == [2]
    assert report.findings["generation_mask"] == {"generation_tag": False, "universal_exact": True,
                                                  "method": "universal"}
    assert report.findings["bos"]["tokenizer_adds_bos"] is False
    assert report.findings["bos"]["add_special_tokens_doubles_bos"] is False
    assert report.findings["tools"]["mode"] == "ignored"
    assert 'replaces a default: "You are a helpful AI assistant named SmolLM' in format_report(report)


def test_gemma2_rejects_a_system_message_with_its_own_message(corpus_reports):
    f = corpus_reports("google-gemma-2-2b-it").findings
    assert f["system"] == {"mode": "unsupported", "message": "System role not supported"}
    assert f["roles"]["must_alternate"] is True
    assert "roles must alternate" in f["roles"]["alternate_message"]
    assert "<end_of_turn>" in {s["token"] for s in f["stops"]["stops"]}


@pytest.mark.parametrize("stem", ["meta-llama-Llama-3.1-8B-Instruct", "meta-llama-Llama-3.2-3B-Instruct"])
def test_llama3_appends_to_the_cutting_knowledge_default(corpus_reports, stem):
    f = corpus_reports(stem).findings
    assert f["system"]["mode"] == "appends"
    assert f["system"]["default"].startswith("Cutting Knowledge Date: December 2023\nToday Date: ")
    assert f["system"]["placement"] == "same block as the default"
    assert f["tools"]["reads"][0] == '{"name": "{name}", "parameters": {arguments}}' and f["tools"]["round_trip"] == "ok"
    if "3.1" in stem:  # its built-in tools (Llama 3.2's template has none)
        assert f["tools"]["reads"][1] == "<|python_tag|>{name}.call(key=value, …)"
    assert f["tools"]["parallel_calls"].startswith("single")
    assert "This model only supports single tool-calls at once!" in f["tools"]["parallel_calls"]
    assert f["roles"]["ipython"] == "accepted"
    assert f["bos"]["template_writes_bos"] is True


def test_qwen25_replaces_you_are_qwen(corpus_reports):
    f = corpus_reports("Qwen-Qwen2.5-7B-Instruct").findings
    assert f["system"] == {"mode": "replaces",
                           "default": "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."}
    assert f["tools"]["mode"] == "rendered"
    assert f["tools"]["reads"] == ['<tool_call>\n{"name": "{name}", "arguments": {arguments}}\n</tool_call>']
    assert f["tools"]["parallel_calls"] == "parallel" and f["tools"]["round_trip"] == "ok"
    assert f["tools"]["arguments"]["accepts"] == "object"  # a JSON-string argument would be encoded twice
    assert f["tools"]["arguments"]["string"] == "double-encoded"


def test_mistral_nemo_merges_the_system_prompt_into_the_last_user_turn(corpus_reports):
    f = corpus_reports("mistralai-Mistral-Nemo-Instruct-2407").findings
    assert f["system"]["mode"] == "merged" and f["system"]["into"] == "the last user turn"
    assert f["roles"]["must_alternate"] is True
    assert f["generation_prompt"]["text"] == ""  # [/INST] ends the user turn; no assistant header
    assert f["tools"]["reads"] == ['[TOOL_CALLS][{"name": "{name}", "arguments": {arguments}}, …]']


def test_gpt_oss_appends_a_developer_message_after_its_default(corpus_reports):
    system = corpus_reports("openai-gpt-oss-120b").findings["system"]
    assert system["mode"] == "appends" and system["default"].startswith("You are ChatGPT")
    assert system["placement"] == "a separate message after the default"


# ------------------------------------------------------------------------------------------ reasoning, mask
def test_gpt_oss_is_harmony_and_stops_on_return_and_call(corpus_reports):
    f = corpus_reports("openai-gpt-oss-120b").findings
    assert f["reasoning"]["format"] == "channels"
    assert set(f["reasoning"]["switches"]) == {"reasoning_effort"}
    assert f["reasoning"]["switches"]["reasoning_effort"]["medium"] == "same as default"
    assert "high" in f["reasoning"]["switches"]["reasoning_effort"]["high"]
    tokens = {s["token"] for s in f["stops"]["stops"]}
    assert {"<|return|>", "<|call|>"} <= tokens and "<|end|>" not in tokens
    assert set(f["stops"]["token_ids"]) == {200002, 200012}
    assert f["stops"]["message_end"] == "<|end|>"
    assert "to=functions.{name}<|channel|>commentary json<|message|>{arguments}<|call|>" in f["tools"]["reads"][0]


def test_qwen3_thinks_with_a_switch_and_has_no_generation_tag(corpus_reports):
    """The corpus's Qwen3 template has no {% generation %} (checked): the finding says so."""
    f = corpus_reports("Qwen-Qwen3-0.6B").findings
    assert f["generation_mask"]["generation_tag"] is False
    assert f["generation_mask"]["method"] == "universal"
    assert (f["reasoning"]["format"], f["reasoning"]["open"], f["reasoning"]["close"]) == ("tags", "<think>", "</think>")
    assert f["reasoning"]["prompt_opens_reasoning"] is False
    off = f["reasoning"]["switches"]["enable_thinking"]["false"]
    assert off.startswith("generation prompt:") and "<think>\\n\\n</think>" in off
    assert f["reasoning"]["switches"]["enable_thinking"]["true"] == "same as default"
    assert f["reasoning"]["history_reasoning"] == "last turn only"  # the analysis's wording (ReasoningSyntax.history)
    assert f["system"] == {"mode": "native"}
    assert "enable_thinking" in f["template"]["variables"]


def test_deepseek_r1_prompt_opens_think_and_the_mask_cannot_be_exact(corpus_reports):
    f = corpus_reports("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B").findings
    assert f["reasoning"]["format"] == "tags" and f["reasoning"]["prompt_opens_reasoning"] is True
    assert f["generation_prompt"]["text"].endswith("<think>\n")
    assert f["generation_prompt"]["matches_finished_turn"] is False
    assert f["generation_mask"]["universal_exact"] is False and f["generation_mask"]["notes"]
    assert f["reasoning"]["history_think_in_content"] == "stripped"


SYNTHETIC_GENERATION_TAG = (
    "{% for m in messages %}{% if m['role'] == 'assistant' %}{{ '<|im_start|>assistant\n' }}"
    "{% generation %}{{ m['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def test_generation_tag_is_found_in_a_template_that_has_it():
    spec = turnspec.from_template(SYNTHETIC_GENERATION_TAG, name="synthetic-chatml-generation",
                                  special_tokens={"eos_token": "<|im_end|>"})
    f = onboard_spec(spec).findings
    assert f["generation_mask"]["generation_tag"] is True
    assert f["generation_mask"]["method"] == "generation-tag"
    assert f["generation_mask"]["universal_exact"] is True
    assert f["system"] == {"mode": "native"}


def test_a_generation_prompt_that_adds_nothing_after_a_turn_end_is_a_warning():
    no_header = "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    spec = turnspec.from_template(no_header, name="no-header", special_tokens={"eos_token": "<|im_end|>"})
    report = onboard_spec(spec)
    assert report.findings["generation_prompt"]["text"] == ""
    assert any("the model must write the assistant header itself" in w for w in report.warnings())


def test_an_empty_generation_prompt_after_inst_is_not_a_warning(corpus_reports):
    assert not any("assistant header" in w for w in corpus_reports("mistralai-Mistral-Nemo-Instruct-2407").warnings())


def test_tool_use_template_that_needs_tools_is_probed_with_one(corpus_reports):
    f = corpus_reports("NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use").findings
    assert "tools" in f["requires"]
    assert f["tools"]["required"] is True and f["tools"]["round_trip"] == "ok"
    assert f["system"]["mode"] == "appends"
    assert f["system"]["placement"] == "a separate message after the default"


def test_functionary_takes_arguments_as_a_string(corpus_reports):
    tools = corpus_reports("meetkai-functionary-medium-v3.2").findings["tools"]
    assert tools["arguments"]["accepts"] == "string"
    assert tools["arguments"]["object"].startswith("raises:")
    assert tools["round_trip"] == "ok"  # probed with the form the template accepts


def test_phi35_generation_prompt_replaces_the_endoftext_ending(corpus_reports):
    gp = corpus_reports("microsoft-Phi-3.5-mini-instruct").findings["generation_prompt"]
    assert gp["text"] == "<|assistant|>\n" and gp["replaces_ending"] == "<|endoftext|>"


def test_findings_come_from_rendering_not_from_the_name():
    """The same template under a misleading name gives the same findings."""
    template = need(CORPUS / "templates" / "google-gemma-2-2b-it.jinja").read_text(encoding="utf-8")
    spec = turnspec.from_template(template, name="Qwen/Qwen2.5-7B-Instruct",
                                  special_tokens=SPECIAL_TOKENS["google-gemma-2-2b-it"])
    assert onboard_spec(spec).findings["system"]["mode"] == "unsupported"


# ------------------------------------------------------------------------------------------ partial reports
def _smollm2_copy(src, dst):
    dst.mkdir()
    for p in src.iterdir():
        if p.is_file():
            shutil.copy(p, dst / p.name)
    return dst


def test_malformed_tokenizer_config_gives_an_error_and_a_partial_report(smollm2_dir, tmp_path):
    folder = _smollm2_copy(smollm2_dir, tmp_path / "broken")
    (folder / "tokenizer_config.json").write_text('{"bos_token": "<s>",', encoding="utf-8")
    report = onboard_model(folder)
    assert "tokenizer_config.json" in report.error and "invalid JSON" in report.error
    assert "\n" not in report.error
    # chat_template.jinja is still there: the template findings come out
    assert report.findings["system"]["mode"] == "replaces"
    assert report.source["files"]["skipped"] == "tokenizer_config.json"
    assert "PARTIAL" in format_report(report)


def test_corrupt_tokenizer_json_gives_an_error_and_the_template_findings(smollm2_dir, tmp_path):
    folder = _smollm2_copy(smollm2_dir, tmp_path / "broken-vocab")
    (folder / "tokenizer.json").write_text("{not json", encoding="utf-8")
    report = onboard_model(folder)
    assert "tokenizer.json" in report.error and "\n" not in report.error
    assert report.findings["system"]["mode"] == "replaces"
    assert "tokens" not in report.findings["generation_prompt"]
    assert report.findings["stops"]["stops"][0]["token"] == "<|im_end|>"


def test_missing_template_gives_an_error_and_the_config_facts(smollm2_dir, tmp_path):
    folder = tmp_path / "base-model"
    folder.mkdir()
    config = json.loads((smollm2_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    (folder / "generation_config.json").write_text('{"eos_token_id": 2}', encoding="utf-8")
    report = onboard_model(folder)
    assert "no chat template" in report.error
    stops = report.findings["stops"]
    assert stops["token_ids"] == [2] and any(s["token"] == "<|im_end|>" for s in stops["stops"])
    assert report.findings["bos"]["token"] == config["bos_token"]
    assert "PARTIAL" in format_report(report)


LOOPING = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"


def test_a_template_that_loops_forever_costs_one_time_limit():
    spec = turnspec.from_template(LOOPING, name="looper", special_tokens={"eos_token": "</s>"})
    t0 = time.monotonic()
    report = onboard_spec(spec, time_limit_s=0.3)
    assert time.monotonic() - t0 < 3
    assert "time limit" in report.error and "\n" not in report.error
    assert report.findings["stops"]["stops"][0]["token"] == "</s>"  # from the tokenizer, not the template
    assert spec.limits is None  # the spec's own limits are restored


def test_a_template_that_loops_only_with_tools_keeps_the_findings_before_it():
    template = SYNTHETIC_GENERATION_TAG.replace("{% for m in messages %}", "{% if tools %}" + LOOPING + "{% endif %}"
                                                "{% for m in messages %}", 1)
    spec = turnspec.from_template(template, name="tool-looper", special_tokens={"eos_token": "<|im_end|>"})
    t0 = time.monotonic()
    report = onboard_spec(spec, time_limit_s=0.3)
    assert time.monotonic() - t0 < 4
    assert "time limit" in report.error
    f = report.findings
    assert f["system"] == {"mode": "native"} and f["generation_prompt"]["text"] == "<|im_start|>assistant\n"
    # The facts without tools are learned before the first probe with tools (which loops); the rest is skipped.
    assert f["continue_final_message"] == {"works": True}
    assert "time limit" in f["roles"]["skipped"] and "skipped" in f["tools"] and "skipped" in f["reasoning"]


def test_a_template_that_fails_on_one_user_message_is_a_partial_report():
    spec = turnspec.from_template("{{ raise_exception('this template is broken') }}", name="broken")
    report = onboard_spec(spec)
    assert "this template is broken" in report.error
    assert report.template_sha256 == spec.template_sha256


# ------------------------------------------------------------------------------------------ profiles and pins
def test_profile_file_names():
    assert profile_filename("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB--SmolLM2-135M-Instruct.yaml"
    assert profile_filename("Smollm2 135M Instruct") == "Smollm2-135M-Instruct.yaml"
    assert profile_filename("../../etc/passwd") == "etc--passwd.yaml"
    assert profile_filename("") == "model.yaml"


def test_save_edit_notes_resave_keeps_notes_pins_and_comments(smollm2_dir, tmp_path):
    report = onboard_model(smollm2_dir)
    path, notices = save_profile(report, tmp_path)
    assert path == tmp_path / "smollm2-135m-instruct.yaml" and notices == []
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# turnspec model profile") and "pinned:" in text and "notes: |" in text
    # The user edits: notes, a pin with a comment, a key of their own, and fakes an older template.
    old_notes = text[text.index("notes: |"):text.index("\n\n", text.index("notes: |"))]
    text = text.replace(old_notes, "notes: |\n  Answers in English only.\n  Keep temperature at 0.")
    text = text.replace("pinned: {}", "pinned:\n  # why: the GGUF build also writes it\n"
                                      "  stops:\n    extra_tokens: [\"<|endoftext|>\"]\n  system_mode: error")
    text = text.replace(f"template_sha256: {report.template_sha256}", "template_sha256: " + "ab" * 32)
    text += "my_key: my value  # mine\n"
    path.write_text(text, encoding="utf-8")

    path2, notices = save_profile(onboard_model(smollm2_dir), tmp_path)
    assert path2 == path
    assert any("template changed" in n for n in notices)
    saved = path.read_text(encoding="utf-8")
    assert "Answers in English only.\n  Keep temperature at 0." in saved
    assert "# why: the GGUF build also writes it" in saved and "# mine" in saved
    profile = load_profile("smollm2-135m-instruct", tmp_path)
    assert profile["notes"] == "Answers in English only.\nKeep temperature at 0.\n"
    assert profile["pinned"]["system_mode"] == "error" and profile["my_key"] == "my value"
    assert profile["template_sha256"] == report.template_sha256
    assert _plain(profile["findings"]) == _plain(report.findings)
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_save_is_atomic_when_the_write_fails(smollm2_dir, tmp_path, monkeypatch):
    report = onboard_model(smollm2_dir)
    path, _ = save_profile(report, tmp_path)
    before = path.read_text(encoding="utf-8")
    import turnspec.onboard.profile as profile_module

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(profile_module.os, "replace", boom)
    with pytest.raises(OSError):
        save_profile(report, tmp_path)
    assert path.read_text(encoding="utf-8") == before
    assert list(tmp_path.iterdir()) == [path]


def test_a_broken_profile_is_a_one_line_error(tmp_path):
    (tmp_path / "x.yaml").write_text("model: [unclosed\n", encoding="utf-8")
    with pytest.raises(TurnspecError, match=r"x\.yaml: invalid YAML at line \d+") as info:
        load_profile("x", tmp_path)
    assert "\n" not in str(info.value)
    assert load_profile("absent/model", tmp_path) is None


def test_apply_pins_extends_stops_and_returns_the_rest(smollm2_dir):
    spec = turnspec.load(smollm2_dir)
    profile = {"template_sha256": spec.template_sha256,
               "pinned": {"stops": {"extra_tokens": ["<|endoftext|>", "<not-a-token>"], "extra_strings": ["\nUser:"]},
                          "system_mode": "error", "template_kwargs": {"enable_thinking": False}, "colour": "red"}}
    pins = apply_pins(spec, profile)
    assert spec.stops.token_ids == {0, 2}
    assert [s.sources for s in spec.stops.stops if s.token == "<|endoftext|>"] == [("user",)]
    assert spec.stops.strings == ("\nUser:", "<not-a-token>")
    assert pins.system_mode == "error" and pins.template_kwargs == {"enable_thinking": False}
    assert any("not in the vocabulary" in n for n in pins.notices)
    assert any("'colour'" in n for n in pins.notices)
    apply_pins(spec, profile)  # idempotent
    assert spec.stops.token_ids == {0, 2} and spec.stops.strings == ("\nUser:", "<not-a-token>")


def test_apply_pins_from_a_saved_profile(smollm2_dir, tmp_path):
    spec = turnspec.load(smollm2_dir)
    path, _ = save_profile(onboard_spec(spec), tmp_path)
    text = path.read_text(encoding="utf-8").replace(
        "pinned: {}", "pinned:\n  stops:\n    extra_strings: [\"\\nUser:\"]\n  template_kwargs: {enable_thinking: false}")
    path.write_text(text, encoding="utf-8")
    pins = apply_pins(spec, load_profile(spec, tmp_path))
    assert spec.stops.strings == ("\nUser:",)
    assert pins.template_kwargs == {"enable_thinking": False} and type(pins.template_kwargs["enable_thinking"]) is bool
    assert apply_pins(spec, None).notices == []


def test_apply_pins_notices_a_changed_template_and_rejects_bad_values(smollm2_dir):
    spec = turnspec.load(smollm2_dir)
    pins = apply_pins(spec, {"template_sha256": "f" * 64, "pinned": {}})
    assert any("another chat template" in n for n in pins.notices)
    with pytest.raises(TurnspecError, match="system_mode must be one of merge, error"):
        apply_pins(spec, {"pinned": {"system_mode": "shout"}})
    with pytest.raises(TurnspecError, match="extra_tokens must be a list"):
        apply_pins(spec, {"pinned": {"stops": {"extra_tokens": [1]}}})
