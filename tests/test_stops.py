"""Stops: merged from generation config, tokenizer and the template itself, with Harmony handled right."""

from __future__ import annotations

import pytest

from helpers.paths import CORPUS, need
from helpers.corpus_models import HARMONY_IDS, LLAMA3, LLAMA3_IDS, SPECIAL_TOKENS

import turnspec


def test_smollm2_stops_are_im_end_from_eos_and_template(smollm2_dir):
    stops = turnspec.load(smollm2_dir).stops
    assert stops.token_ids == {2}
    (stop,) = stops.stops
    assert stop.token == "<|im_end|>" and set(stop.sources) == {"tokenizer", "template"}
    assert not any("does not list" in w or "is not what" in w for w in stops.warnings)
    # <|endoftext|> ends a document, not a turn: engines halt on it too, but it is not a turn end.
    assert stops.halt_ids == {0, 2}


# Synthetic templates in the style of each family (ids as the model cards give them).
SYNTHETIC_LLAMA3 = (
    "{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' + m['content'] | trim"
    " + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
SYNTHETIC_GEMMA2 = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for m in messages %}{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + m['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
SYNTHETIC_HARMONY = (
    "{% for m in messages %}{% if m['role'] == 'assistant' %}"
    "{% if m.thinking %}{{ '<|start|>assistant<|channel|>analysis<|message|>' + m.thinking + '<|end|>' }}{% endif %}"
    "{% if m.tool_calls %}{{ '<|start|>assistant to=functions.' + m.tool_calls[0].function.name + "
    "'<|channel|>commentary json<|message|>' + m.tool_calls[0].function.arguments|tojson + '<|call|>' }}"
    "{% elif loop.last %}{{ '<|start|>assistant<|channel|>final<|message|>' + m.content + '<|return|>' }}"
    "{% else %}{{ '<|start|>assistant<|channel|>final<|message|>' + m.content + '<|end|>' }}{% endif %}"
    "{% else %}{{ '<|start|>' + m['role'] + '<|message|>' + m['content'] + '<|end|>' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start|>assistant' }}{% endif %}"
)
GEMMA_IDS = {"<bos>": 2, "<eos>": 1, "<start_of_turn>": 106, "<end_of_turn>": 107}


def test_synthetic_llama3_has_all_three_ends_when_config_lists_them():
    spec = turnspec.from_template(SYNTHETIC_LLAMA3, special_tokens=LLAMA3, token_ids=LLAMA3_IDS,
                                  generation_config={"eos_token_id": [128001, 128008, 128009]})
    stops = spec.stops
    assert stops.token_ids == {128001, 128008, 128009}
    by_token = {s.token: set(s.sources) for s in stops.stops}
    assert by_token["<|eot_id|>"] == {"generation_config", "tokenizer", "template"}
    assert not [w for w in stops.warnings if "does not list" in w]


def test_synthetic_llama3_incomplete_config_is_audited():
    """A Hub config listing only <|end_of_text|> makes runners talk past the turn; turnspec stops and says why."""
    spec = turnspec.from_template(SYNTHETIC_LLAMA3, special_tokens={**LLAMA3, "eos_token": "<|end_of_text|>"},
                                  token_ids=LLAMA3_IDS, generation_config={"eos_token_id": 128001})
    stops = spec.stops
    assert stops.token_ids == {128001, 128009}
    assert any("<|eot_id|> (id 128009)" in w and "generation_config.json" in w for w in stops.warnings)


def test_synthetic_gemma2_stops_on_end_of_turn_and_rejects_system():
    spec = turnspec.from_template(SYNTHETIC_GEMMA2, special_tokens={"bos_token": "<bos>", "eos_token": "<eos>"},
                                  token_ids=GEMMA_IDS, generation_config={"eos_token_id": [1, 107]})
    assert spec.stops.token_ids == {1, 107}
    assert [s.sources for s in spec.stops.stops if s.token == "<end_of_turn>"] == [("generation_config", "template")]
    with pytest.raises(turnspec.TemplateError, match="System role not supported"):
        spec.render([{"role": "system", "content": "x"}, {"role": "user", "content": "y"}])


def test_synthetic_harmony_return_and_call_end_the_turn_but_end_does_not():
    spec = turnspec.from_template(SYNTHETIC_HARMONY, special_tokens={"eos_token": "<|return|>"}, token_ids=HARMONY_IDS,
                                  generation_config={"eos_token_id": [200002, 200007, 200012]})
    stops = spec.stops
    assert stops.token_ids == {200002, 200012}
    assert 200007 not in stops.halt_ids
    assert any("<|end|>" in w and "ends a message, not the turn" in w for w in stops.warnings)


@pytest.mark.parametrize("stem, ids, expected", [
    ("meta-llama-Llama-3.1-8B-Instruct", LLAMA3_IDS, {128009, 128008}),
    ("meta-llama-Llama-3.2-3B-Instruct", LLAMA3_IDS, {128009}),
    ("openai-gpt-oss-120b", HARMONY_IDS, {200002, 200012}),
])
def test_real_templates_give_the_documented_turn_ends(stem, ids, expected):
    template = need(CORPUS / "templates" / f"{stem}.jinja").read_text()
    spec = turnspec.from_template(template, name=stem, special_tokens=SPECIAL_TOKENS[stem], token_ids=ids)
    assert spec.stops.token_ids == expected
    assert HARMONY_IDS["<|end|>"] not in spec.stops.halt_ids


@pytest.mark.parametrize("stem, token", [
    ("google-gemma-2-2b-it", "<end_of_turn>"),
    ("Qwen-Qwen2.5-7B-Instruct", "<|im_end|>"),
    ("Qwen-Qwen3-0.6B", "<|im_end|>"),
    ("mistralai-Mistral-Nemo-Instruct-2407", "</s>"),
    ("microsoft-Phi-3.5-mini-instruct", "<|end|>"),  # not the <|endoftext|> it writes after every rendering
    ("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B", "<｜end▁of▁sentence｜>"),
    ("moonshotai-Kimi-K2", "<|im_end|>"),
])
def test_template_probe_reads_the_turn_end_each_family_writes(stem, token):
    template = need(CORPUS / "templates" / f"{stem}.jinja").read_text()
    spec = turnspec.from_template(template, name=stem, special_tokens=SPECIAL_TOKENS[stem])
    assert any(s.token == token and any(src.startswith("template") for src in s.sources) for s in spec.stops.stops)


def test_plain_text_templates_get_a_stop_string():
    """falcon-instruct ends turns with plain text: the next turn's header becomes a stop string."""
    template = need(CORPUS / "community" / "chat_templates" / "falcon-instruct.jinja").read_text()
    spec = turnspec.from_template(template, special_tokens={"bos_token": "<s>", "eos_token": "</s>"})
    assert spec.stops.strings == ("User:",)
