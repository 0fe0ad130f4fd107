"""Assistant masks judged by meaning on every template in ../shared, and equal to transformers' `{% generation %}`
mask where a tagged version of a real template exists.

Meaning: every text the assistant wrote (answer, reasoning, call names and arguments) that the template renders
is inside the mask; no text of another role (system, user, tool result) is. Four shapes per template: a multi-turn
chat with a system prompt, reasoning in history, a tool call with its result and the answer, parallel calls.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import turnspec

from helpers.paths import CORPUS, SHARED, SMOLLM2_DIR, need
from helpers.corpus_models import LLAMA3, LLAMA3_IDS, special_tokens_for, template_files, template_id
from helpers.mask_meaning import TOOLS, judge, shapes
from helpers.roundtrip import spec_for

# Shapes a template rejects on purpose (it says so in its own error) are not judged.
REJECTIONS = ("System role not supported", "roles must alternate", "only supports single tool-calls",
              "generator is not JSON serializable",
              "attribute 'append' of 'list' object is unsafe")  # transformers' immutable sandbox refuses it too


def _spec(path):
    if path.name == "chat_template.jinja":
        return turnspec.load(path.parent)
    return spec_for(path.read_text(encoding="utf-8"), special_tokens_for(path), SMOLLM2_DIR / "tokenizer.json")


LLAMACPP_TEMPLATES = sorted((Path(__file__).parent / "data" / "llamacpp_templates").glob("*.jinja"))


@pytest.mark.parametrize("path", template_files() + [pytest.param(p, marks=pytest.mark.slow) for p in LLAMACPP_TEMPLATES],
                         ids=lambda p: template_id(p) + ("[llama.cpp]" if "llamacpp" in str(p) else ""))
def test_mask_by_meaning_on_every_template(path):
    """../shared's templates, and the 70 of llama.cpp's tests (tests/data/llamacpp_templates), 52 not in ../shared."""
    need(SMOLLM2_DIR / "tokenizer.json")
    spec = _spec(need(path))
    tools = [t["function"] for t in TOOLS] if "bare function" in spec.analysis.tools.rendered else TOOLS
    extra = {k: "" for k in spec.analysis.requires if k != "tools"}
    judged = 0
    for name, conversation in shapes().items():
        # tools go with the shapes that call them (and with every shape of a template that requires them)
        shape_tools = tools if "call" in name or "tools" in spec.analysis.requires else None
        verdict = judge(spec, name, conversation, shape_tools, **extra)
        if verdict.error and "concatenate" in verdict.error:  # the template wants arguments as a JSON string
            verdict = judge(spec, name, shapes(as_string=True)[name], shape_tools, **extra)
        if verdict.error:
            assert any(r in verdict.error for r in REJECTIONS), verdict.error
            continue
        judged += 1
        assert not verdict.missing, f"{name}: assistant text outside the mask: {verdict.missing}"
        assert not verdict.leaked, f"{name}: another role's text inside the mask: {verdict.leaked}"
        if spec.has_generation_tag:
            continue  # the template marks what the assistant writes itself; that mask is transformers' own
        # a part the template does not render is named in the notes (message and part), and only such a part
        assert verdict.noted == verdict.unrendered, (name, sorted(verdict.unrendered), verdict.notes)
        assert verdict.exact is not True or not verdict.unrendered, (name, verdict.notes)
    assert judged >= 1


WEATHER_IN_PARIS = [
    {"role": "user", "content": "What is the weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
    {"role": "tool", "content": '{"city": "Paris", "temperature_c": 21}', "tool_call_id": "call_1", "name": "get_weather"},
    {"role": "assistant", "content": "It is 21 °C in Paris."},
]


def test_smollm2_tool_call_mask_stops_at_its_turn_end_and_says_the_call_is_not_rendered():
    """SmolLM2's template writes no tool calls: the call turn renders as an empty turn. The mask once ran from its
    <|im_end|> over the tool result into the answer (the call's "Paris" recurs there), exact and without a note."""
    spec = turnspec.load(need(SMOLLM2_DIR))
    enc = spec.encode(WEATHER_IN_PARIS, tools=TOOLS)
    assert [enc.text[a:b] for a, b in enc.char_spans] == ["<|im_end|>", "It is 21 °C in Paris.<|im_end|>"]
    assert enc.mask_exact is False
    assert enc.mask_notes == ["message 1: the template does not render its tool calls"]
    verdict = judge(spec, "weather in Paris", WEATHER_IN_PARIS, TOOLS)
    assert verdict.ok and verdict.unrendered == verdict.noted == {(1, "tool call 0")}, verdict


def test_gpt_oss_tool_call_and_reasoning_are_in_the_mask():
    """The call's header differs from the generation prompt (`to=functions.x`): the model wrote it, it is trained."""
    spec = turnspec.load(need(SHARED / "models" / "gpt-oss-tokenizer"))
    conv = shapes()["tool call, result, answer"]
    enc = spec.encode(conv, tools=TOOLS)
    masked = "".join(enc.text[a:b] for a, b in enc.char_spans)
    assert "to=functions.get_weather<|channel|>commentary json<|message|>" in masked and "<|call|>" in masked
    assert "Tresult" not in masked and "Uquestion" not in masked


def test_what_the_generation_prompt_supplies_is_not_trained_by_default():
    """Qwen3 writes an empty `<think>\\n\\n</think>\\n\\n` into turns without reasoning, which its prompt supplies
    with enable_thinking=False: left out of the mask unless asked."""
    spec = _spec(need(CORPUS / "templates" / "Qwen-Qwen3-0.6B.jinja"))
    conv = [{"role": "user", "content": "Uq?"}, {"role": "assistant", "content": "Answer here."}]
    default = spec.encode(conv)
    masked = "".join(default.text[a:b] for a, b in default.char_spans)
    assert masked == "Answer here.<|im_end|>" and default.mask_exact
    kept = spec.encode(conv, mask_prompt_supplied=False)
    assert "".join(kept.text[a:b] for a, b in kept.char_spans) == "<think>\n\n</think>\n\nAnswer here.<|im_end|>"


# --- equal to transformers' {% generation %} mask on tagged copies of real templates -------------------------
# Each tagged copy is the real template with {% generation %} around what the assistant writes (its text and end
# token), made by replacing one expression; the copy renders byte for byte like the original (checked).
TAGGED = {
    "gemma-2": ("google-gemma-2-2b-it.jinja",
                "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}",
                "{% if role == 'model' %}{{ '<start_of_turn>model\n' }}{% generation %}"
                "{{ message['content'] | trim + '<end_of_turn>' }}{% endgeneration %}{{ '\n' }}{% else %}"
                "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endif %}"),
    "phi-3.5": ("microsoft-Phi-3.5-mini-instruct.jinja",
                "{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}",
                "{{'<|assistant|>\n'}}{% generation %}{{message['content'] + '<|end|>'}}{% endgeneration %}{{'\n'}}"),
    "smollm2 (chatml)": ("smollm2",
                         "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}",
                         "{% if message['role'] == 'assistant' %}{{'<|im_start|>assistant\n'}}{% generation %}"
                         "{{message['content'] + '<|im_end|>'}}{% endgeneration %}{{'\n'}}{% else %}"
                         "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
                         "{% endif %}"),
}
CONVERSATIONS = [
    [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello! How can I help?"}],
    [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": " 4 "},
     {"role": "user", "content": "and 3+3?"}, {"role": "assistant", "content": "6, naïvely 👋"}],
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}],
]


@pytest.mark.parametrize("name", sorted(TAGGED))
def test_universal_mask_equals_transformers_generation_mask(name):
    pytest.importorskip("transformers")
    from transformers import PreTrainedTokenizerFast

    file, expression, tagged_expression = TAGGED[name]
    if file == "smollm2":
        folder = need(SMOLLM2_DIR)
        source = (folder / "chat_template.jinja").read_text()
        spec = turnspec.load(folder)
        special = {"bos_token": spec.special_tokens.get("bos_token"), "eos_token": spec.special_tokens.get("eos_token")}
    else:
        path = need(CORPUS / "templates" / file)
        source = path.read_text()
        special = special_tokens_for(path)
        spec = _spec(path)
    assert expression in source, "the real template changed: update the tagged copy"
    tagged = source.replace(expression, tagged_expression)
    hf = PreTrainedTokenizerFast(tokenizer_object=spec.vocab.tokenizer, **{k: v for k, v in special.items() if v})
    hf.chat_template = tagged
    for conversation in CONVERSATIONS:
        try:
            original = spec.render(conversation)
        except turnspec.TemplateError:
            continue
        assert hf.apply_chat_template(conversation, tokenize=False) == original  # the copy renders the same
        ref = hf.apply_chat_template(conversation, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
        enc = spec.encode(conversation)
        assert enc.mask_method == "universal" and enc.mask_exact
        assert enc.ids == ref["input_ids"]
        assert enc.assistant_mask == ref["assistant_masks"], (name, conversation)
        assert sum(enc.assistant_mask) > 0


@pytest.mark.parametrize("name", sorted(TAGGED))
def test_tool_call_rows_equal_transformers_generation_mask(name):
    """Rows with a tool call, its result and the answer (the call's argument recurs in both): the tagged copy's
    mask (what the template writes for the assistant) and the universal mask are the same; an inexact one says so."""
    pytest.importorskip("transformers")
    from transformers import PreTrainedTokenizerFast

    file, expression, tagged_expression = TAGGED[name]
    if file == "smollm2":
        spec = turnspec.load(need(SMOLLM2_DIR))
        source = (SMOLLM2_DIR / "chat_template.jinja").read_text()
        special = {"bos_token": spec.special_tokens.get("bos_token"), "eos_token": spec.special_tokens.get("eos_token")}
    else:
        path = need(CORPUS / "templates" / file)
        source, special, spec = path.read_text(), special_tokens_for(path), _spec(path)
    hf = PreTrainedTokenizerFast(tokenizer_object=spec.vocab.tokenizer, **{k: v for k, v in special.items() if v})
    hf.chat_template = source.replace(expression, tagged_expression)
    compared = 0
    for conversation in (WEATHER_IN_PARIS, shapes()["call argument repeated in the result and the answer"]):
        try:
            original = spec.render(conversation, tools=TOOLS)
        except turnspec.TemplateError:
            continue  # Gemma-2 refuses the tool role
        assert hf.apply_chat_template(conversation, tools=TOOLS, tokenize=False) == original
        ref = hf.apply_chat_template(conversation, tools=TOOLS, tokenize=True, return_dict=True,
                                     return_assistant_tokens_mask=True)
        enc = spec.encode(conversation, tools=TOOLS)
        assert enc.ids == ref["input_ids"]
        assert enc.assistant_mask == ref["assistant_masks"], (name, enc.mask_notes)
        assert enc.mask_exact is False and "message 1: the template does not render its tool calls" in enc.mask_notes
        compared += 1
    assert compared or name == "gemma-2"


# --- stops: the first control token after the assistant's text -----------------------------------------------
def test_phi35_with_its_real_vocabulary_stops_on_end():
    """Phi-3.5 writes <|end|> after an answer and <|endoftext|> after every rendering: <|end|> ends the turn."""
    spec = turnspec.load(need(CORPUS / "vocab" / "ggml-vocab-phi-3.gguf"),
                         template=need(CORPUS / "templates" / "microsoft-Phi-3.5-mini-instruct.jinja"))
    stops = spec.stops
    assert spec.token_id("<|end|>") == 32007 and 32007 in stops.token_ids
    assert any("at the end of every rendering" in w and "<|end|>" in w for w in stops.warnings)


def test_llama3_stops_on_eot_and_eom():
    template = need(CORPUS / "templates" / "meta-llama-Llama-3.1-8B-Instruct.jinja").read_text()
    spec = turnspec.from_template(template, special_tokens=LLAMA3, token_ids=LLAMA3_IDS)
    assert {128009, 128008} <= spec.stops.token_ids  # <|eot_id|> after answers, <|eom_id|> after built-in calls
    sources = {s.token: s.sources for s in spec.stops.stops}
    assert "template:builtin_tool_call" in sources["<|eom_id|>"]
