"""Encoding: ids and generation boundary equal transformers', one BOS at most, assistant masks on every template."""

from __future__ import annotations

import re

import pytest
from tokenizers import Tokenizer

from helpers.paths import CORPUS, need
from helpers.conversations import CALL, RESULT

import turnspec
from turnspec.errors import EncodingError

transformers = pytest.importorskip("transformers", reason="transformers is the reference (a test dependency)")

CHAT = [
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "Un café, s'il vous plaît ☕"},
    {"role": "assistant", "content": "Voilà ☕ 😀"},
]

# Synthetic: a ChatML template with {% generation %} around what the assistant writes (as SmolLM3/Qwen3 variants do).
SYNTHETIC_CHATML_WITH_GENERATION = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant\n' }}"
    "{% generation %}{{ message['content'] }}{% if message.tool_calls %}{% for c in message.tool_calls %}"
    "{{ '<tool_call>' + c.function.name + '</tool_call>' }}{% endfor %}{% endif %}{{ '<|im_end|>' }}{% endgeneration %}"
    "{{ '\n' }}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def smollm2(smollm2_dir):
    return turnspec.load(smollm2_dir)


@pytest.fixture(scope="module")
def hf_smollm2(smollm2_dir):
    return transformers.AutoTokenizer.from_pretrained(str(smollm2_dir))


@pytest.mark.parametrize("n", [1, 3])
def test_ids_and_generation_boundary_equal_transformers(smollm2, hf_smollm2, n):
    messages = CHAT[:n]
    enc = smollm2.encode(messages, add_generation_prompt=True)
    ref = hf_smollm2.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    assert enc.ids == list(ref)
    assert enc.generation_start == len(ref)
    assert smollm2.vocab.decode(enc.ids[:enc.generation_start]).endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert not enc.bos_added


def test_smollm2_mask_covers_assistant_content_and_im_end(smollm2):
    enc = smollm2.encode(CHAT)
    assert enc.mask_method == "universal" and enc.mask_exact, enc.mask_notes
    pieces = [smollm2.vocab.decode(enc.ids[a:b]) for a, b in enc.assistant_spans()]
    assert pieces == ["Paris.<|im_end|>", "Voilà ☕ 😀<|im_end|>"]
    # Nothing else: the newline after <|im_end|> and the next header are the template's, not the model's.
    assert sum(enc.assistant_mask) == sum(b - a for a, b in enc.assistant_spans())


def _synthetic_specs(smollm2_dir):
    tok = Tokenizer.from_file(str(smollm2_dir / "tokenizer.json"))
    special = {"eos_token": "<|im_end|>"}
    tagged = turnspec.from_template(SYNTHETIC_CHATML_WITH_GENERATION, name="synthetic-chatml-generation",
                                    special_tokens=special, tokenizer=tok)
    untagged_source = re.sub(r"{% (end)?generation %}", "", SYNTHETIC_CHATML_WITH_GENERATION)
    untagged = turnspec.from_template(untagged_source, name="synthetic-chatml", special_tokens=special, tokenizer=tok)
    return tagged, untagged


MASK_CASES = {
    "multi_turn_unicode": CHAT,
    "tool_calls": [CHAT[0], {"role": "assistant", "content": "", "tool_calls": CALL["tool_calls"]}, RESULT,
                   {"role": "assistant", "content": "21 °C in Paris."}],
    "empty_answer": [CHAT[0], {"role": "assistant", "content": ""}, CHAT[2]],
}


@pytest.mark.parametrize("case", sorted(MASK_CASES))
def test_generation_tag_mask_equals_transformers_and_universal_mask(smollm2_dir, case):
    tagged, untagged = _synthetic_specs(smollm2_dir)
    messages = MASK_CASES[case]
    hf = transformers.PreTrainedTokenizerFast(tokenizer_file=str(smollm2_dir / "tokenizer.json"), eos_token="<|im_end|>")
    ref = hf.apply_chat_template(messages, chat_template=SYNTHETIC_CHATML_WITH_GENERATION, tokenize=True,
                                 return_dict=True, return_assistant_tokens_mask=True)
    by_tag = tagged.encode(messages)
    assert by_tag.mask_method == "generation-tag"
    assert by_tag.ids == list(ref["input_ids"])
    assert by_tag.assistant_mask == list(ref["assistant_masks"])
    universal = untagged.encode(messages)
    assert universal.mask_method == "universal" and universal.mask_exact, universal.mask_notes
    assert universal.assistant_mask == by_tag.assistant_mask


def test_universal_mask_reports_where_it_cannot_be_exact(smollm2_dir):
    """DeepSeek-R1's generation prompt opens <think>, but finished turns render without reasoning: detected."""
    template = need(CORPUS / "templates" / "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja").read_text()
    tok = Tokenizer.from_file(str(smollm2_dir / "tokenizer.json"))
    spec = turnspec.from_template(template, tokenizer=tok, special_tokens={
        "bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"})
    messages = [CHAT[0], {"role": "assistant", "content": "<think>\nEasy.\n</think>\n\nParis."}, CHAT[2],
                {"role": "assistant", "content": "Voilà"}]
    enc = spec.encode(messages)
    assert enc.mask_exact is False
    assert any("writes '<think>\\n' where the rendering does not" in note for note in enc.mask_notes)
    assert any("drops its reasoning" in note for note in enc.mask_notes)
    pieces = [enc.text[a:b] for a, b in enc.char_spans]
    # the template keeps what follows </think> (the model writes those newlines after its reasoning too)
    assert pieces == ["\n\nParis.<｜end▁of▁sentence｜>", "Voilà<｜end▁of▁sentence｜>"]


# --- BOS ---------------------------------------------------------------------------------------------------------

def _bos_spec(smollm2_dir, template, add_bos_token):
    tok = Tokenizer.from_file(str(smollm2_dir / "tokenizer.json"))
    spec = turnspec.from_template(template, special_tokens={"bos_token": "<|endoftext|>", "eos_token": "<|im_end|>"},
                                  tokenizer=tok)
    spec.files.add_bos_token = add_bos_token
    return spec


WRITES_BOS = "{{ bos_token }}{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '<|im_end|>' }}{% endfor %}"
NO_BOS = "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '<|im_end|>' }}{% endfor %}"


def test_no_double_bos_when_template_writes_it(smollm2_dir):
    spec = _bos_spec(smollm2_dir, WRITES_BOS, add_bos_token=True)
    enc = spec.encode([CHAT[0]])
    assert enc.ids.count(0) == 1 and enc.ids[0] == 0 and not enc.bos_added
    with pytest.raises(EncodingError, match="two BOS"):
        spec.encode([CHAT[0]], add_bos=True)


def test_bos_added_once_when_tokenizer_expects_it_and_template_omits_it(smollm2_dir):
    spec = _bos_spec(smollm2_dir, NO_BOS, add_bos_token=True)
    enc = spec.encode([CHAT[0]], add_generation_prompt=False)
    assert enc.ids[0] == 0 and enc.ids.count(0) == 1 and enc.bos_added
    assert enc.assistant_mask[0] == 0
    assert _bos_spec(smollm2_dir, NO_BOS, add_bos_token=False).encode([CHAT[0]]).ids[0] != 0


def test_tokenizer_object_from_transformers_is_accepted(hf_smollm2, smollm2):
    spec = turnspec.load(hf_smollm2)
    assert spec.render(CHAT, add_generation_prompt=True) == smollm2.render(CHAT, add_generation_prompt=True)
    assert spec.encode(CHAT[:1]).ids == smollm2.encode(CHAT[:1]).ids
    assert spec.stops.token_ids == {2}


# --- a span never reaches past the next message --------------------------------------------------------------
# Synthetic: ChatML that writes messages' text parts (lists of parts, as multimodal data has) and no tool calls.
SYNTHETIC_PARTS_NO_CALLS = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' }}"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for p in m['content'] %}{{ p['text'] }}"
    "{% endfor %}{% endif %}{{ '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Synthetic: ChatML that writes `~` before a message that mentions Paris (a template that reads a text before it
# writes it: where the next message starts cannot be told by rendering it with another text).
SYNTHETIC_READS_AHEAD = (
    "{% for m in messages %}{% if 'Paris' in m['content'] %}~{% endif %}"
    "{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
PARIS_CALL = {"role": "assistant", "content": "", "tool_calls": [
    {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}


def test_call_a_template_ignores_is_noted_and_the_tool_text_in_parts_stays_out(smollm2_dir):
    spec = turnspec.from_template(SYNTHETIC_PARTS_NO_CALLS, name="synthetic-parts", special_tokens={
        "eos_token": "<|im_end|>"}, tokenizer=Tokenizer.from_file(str(smollm2_dir / "tokenizer.json")))
    messages = [{"role": "user", "content": [{"type": "text", "text": "Weather?"}]}, PARIS_CALL,
                {"role": "tool", "content": [{"type": "text", "text": "Paris: 21 °C"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "21 °C in Paris."}]}]
    enc = spec.encode(messages)
    assert [enc.text[a:b] for a, b in enc.char_spans] == ["<|im_end|>", "21 °C in Paris.<|im_end|>"]
    assert enc.mask_notes == ["message 1: the template does not render its tool calls"] and enc.mask_exact is False


def test_where_rendering_cannot_tell_the_next_message_the_mask_is_inexact(smollm2_dir):
    spec = turnspec.from_template(SYNTHETIC_READS_AHEAD, name="synthetic-reads-ahead", special_tokens={
        "eos_token": "<|im_end|>"}, tokenizer=Tokenizer.from_file(str(smollm2_dir / "tokenizer.json")))
    messages = [{"role": "user", "content": "Weather?"}, {"role": "assistant", "content": "Let me see."},
                {"role": "tool", "content": "Paris: 21 °C"}]
    enc = spec.encode(messages)
    assert [enc.text[a:b] for a, b in enc.char_spans] == ["Let me see.<|im_end|>"]
    assert enc.mask_exact is False and "could not be told by rendering" in enc.mask_notes[0]
