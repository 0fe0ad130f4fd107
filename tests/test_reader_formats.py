"""Format detection from real templates (never from model names), `reader_for`, and control-token removal."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from turnspec.reader import Content, Done, StreamReader, config_for, reader_for
from turnspec.reader import formats
from turnspec.vocab import Vocabulary

from conftest import CORPUS, need

EXPECTED = {
    # template file: (reasoning, tools, one header the guard must stop on)
    "Qwen-Qwen3-0.6B.jinja": ("think", "hermes", "<|im_start|>user"),
    "Qwen-Qwen2.5-7B-Instruct.jinja": ("none", "hermes", "<|im_start|>user"),
    "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja": ("none", "hermes", "<|im_start|>user"),
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja": ("think", "none", "<｜User｜>"),
    "openai-gpt-oss-120b.jinja": ("harmony", "harmony", "<|start|>user"),
    "meta-llama-Llama-3.1-8B-Instruct.jinja": ("none", "llama3", "<|start_header_id|>user"),
    "meta-llama-Llama-3.2-3B-Instruct.jinja": ("none", "llama3", "<|start_header_id|>user"),
    "mistralai-Mistral-Nemo-Instruct-2407.jinja": ("none", "mistral", "[INST]"),
    "google-gemma-2-2b-it.jinja": ("none", "none", "<start_of_turn>user"),
    "microsoft-Phi-3.5-mini-instruct.jinja": ("none", "none", "<|user|>"),
    "ibm-granite-granite-3.3-2B-Instruct.jinja": ("think", "none", "<|start_of_role|>user"),
    "CohereForAI-c4ai-command-r-plus-tool_use.jinja": ("none", "none", "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>"),
    "moonshotai-Kimi-K2.jinja": ("none", "none", "<|im_user|>"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_detect_on_real_templates(name):
    template = need(CORPUS / "templates" / name).read_text()
    reasoning, tools, header = EXPECTED[name]
    fmt = formats.detect(template)
    assert (fmt.reasoning, fmt.tools) == (reasoning, tools)
    assert header in fmt.turn_headers


def test_every_corpus_template_gets_a_guard():
    for path in sorted(need(CORPUS / "templates").glob("*.jinja")):
        fmt = formats.detect(path.read_text())
        assert fmt.turn_headers, path.name


def test_mistral_tool_format_from_the_vocabulary_alone():
    assert formats.detect_tools("{{ bos_token }}[INST]{{ m }}[/INST]", added_tokens=["[TOOL_CALLS]"]) == "mistral"
    assert formats.detect_tools("{{ bos_token }}[INST]{{ m }}[/INST]") == "none"


def test_harmony_prefix_is_empty_when_the_prompt_closed_its_last_message():
    assert formats.harmony_prefix("<|start|>user<|message|>hi<|end|>") == ""
    assert formats.harmony_prefix("<|start|>user<|message|>hi<|end|><|start|>assistant") == "<|start|>assistant"


# --- reader_for with a stand-in spec around the real SmolLM2 vocabulary --------------------------------


@pytest.fixture(scope="module")
def smol_spec(smollm2_dir):
    from tokenizers import Tokenizer

    vocab = Vocabulary(Tokenizer.from_file(str(smollm2_dir / "tokenizer.json")))
    return SimpleNamespace(
        template=(smollm2_dir / "chat_template.jinja").read_text(),
        stops=SimpleNamespace(token_ids=frozenset({2}), strings=()),
        vocab=vocab,
        special_tokens={"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"},
    )


def test_config_for_smollm2(smol_spec):
    cfg = config_for(smol_spec, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    assert cfg.stop_ids == frozenset({2}) and cfg.stop_token_texts == ("<|im_end|>",)
    assert (cfg.reasoning, cfg.tools) == ("none", "none")
    assert "<|im_start|>user" in cfg.turn_headers
    assert {"<|im_start|>", "<repo_name>", "<filename>", "<|endoftext|>"} <= set(cfg.control_tokens)
    assert config_for(smol_spec, extra_stop_strings=("\n\n",)).stop_strings == ("\n\n",)
    assert config_for(smol_spec, tools="hermes").tools == "hermes"


def test_reader_for_reads_real_token_ids_and_strips_control_tokens(smol_spec):
    vocab = smol_spec.vocab
    # special tokens of the vocabulary that are not for display (ids 3 and 6) between ordinary tokens
    ids = vocab.encode("Paris ") + [3] + vocab.encode("is") + [6] + vocab.encode(" the capital. 👋") + [2]
    reader = reader_for(smol_spec, "<|im_start|>assistant\n")
    events = []
    for tid in ids:
        events += reader.feed_token(tid)
    assert reader.result.content == "Paris is the capital. 👋"
    assert events[-1] == Done("stop", "<|im_end|>", "token")


def test_control_tokens_split_across_text_chunks_are_removed():
    r = StreamReader(control_tokens=("<repo_name>", "<|endoftext|>"))
    events = []
    for chunk in ["a<re", "po_na", "me>b<|endof", "text|", ">c<rep"]:
        events += r.feed_text(chunk)
    events += r.finish()
    assert r.result.content == "abc<rep"
    assert all("<repo_name>" not in e.text for e in events if isinstance(e, Content))


def test_control_tokens_are_removed_whatever_the_format():
    for kw in (dict(reasoning="think"), dict(tools="hermes"), dict(tools="llama3"), dict(tools="mistral")):
        res = StreamReader(control_tokens=("<|x|>",), **kw).read_all("A<|x|>B")
        assert res.content == "AB", kw
    res = StreamReader(reasoning="think", control_tokens=("<|x|>",)).read_all("<think>r<|x|>s</think>t")
    assert (res.reasoning, res.content) == ("rs", "t")


def test_reader_for_think_template_with_prompt_opened(smol_spec):
    r1 = need(CORPUS / "templates" / "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja").read_text()
    spec = SimpleNamespace(template=r1, stops=SimpleNamespace(token_ids=frozenset(), strings=()), vocab=None)
    reader = reader_for(spec, "<｜User｜>2+2?<｜Assistant｜><think>\n")
    assert reader.config.starts_in_reasoning
    res = reader.read_all("four\n</think>\n\n4")
    assert (res.reasoning, res.content) == ("four", "4")
