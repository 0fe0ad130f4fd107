"""The reader a spec builds: the format comes from the template analysis of real templates (never from a model's
name), the prompt's tail is read first, and control tokens never reach the text."""

from __future__ import annotations

import pytest

import turnspec
from turnspec.reader import Content, Done, StreamReader, config_for, reader_for

from helpers.paths import CORPUS, need
from helpers.corpus_models import corpus_spec

EXPECTED = {
    # template file: (reasoning tags or kind, the call trigger (or "" for calls that start the turn), one guard)
    "Qwen-Qwen3-0.6B.jinja": (("<think>", "</think>"), "<tool_call>", "<|im_start|>user"),
    "Qwen-Qwen2.5-7B-Instruct.jinja": ("none", "<tool_call>", "<|im_start|>user"),
    "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja": ("none", "<tool_call>", "<|im_start|>user"),
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja": (("<think>", "</think>"), None, "<｜User｜>"),
    "deepseek-ai-DeepSeek-V3.1.jinja": (("<think>", "</think>"), "<｜tool▁calls▁begin｜>", "<｜User｜>"),
    "openai-gpt-oss-120b.jinja": ("channels", " to=functions.", "<|start|>user"),
    "meta-llama-Llama-3.1-8B-Instruct.jinja": ("none", "", "<|start_header_id|>user"),
    "mistralai-Mistral-Nemo-Instruct-2407.jinja": ("none", "[TOOL_CALLS]", "[INST]"),
    "Mistral-Small-3.2-24B-Instruct-2506.jinja": ("none", "[TOOL_CALLS]", "[INST]"),
    "google-gemma-2-2b-it.jinja": ("none", None, "<start_of_turn>user"),
    "microsoft-Phi-3.5-mini-instruct.jinja": ("none", None, "<|user|>"),
    "ByteDance-Seed-OSS.jinja": (("<seed:think>", "</seed:think>"), "<seed:tool_call>", "<seed:bos>user"),
    "CohereForAI-c4ai-command-r7b-12-2024-tool_use.jinja":
        (("<|START_THINKING|>", "<|END_THINKING|>"), "<|START_ACTION|>", "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>"),
    "moonshotai-Kimi-K2.jinja": ("none", "<|tool_calls_section_begin|>", "<|im_user|>user"),
    "meetkai-functionary-medium-v3.1.jinja": ("none", "<function=", "<|start_header_id|>user"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_analysis_of_real_templates(name):
    analysis = corpus_spec(name).analysis
    reasoning, trigger, guard = EXPECTED[name]
    r = analysis.reasoning
    assert ((r.open, r.close) if r.kind == "tags" else r.kind) == reasoning
    if trigger is None:
        assert not analysis.tools.calls and analysis.tools.reason
    elif trigger == "":
        assert analysis.tools.calls[0].start_anchored
    else:
        syntax = analysis.tools.calls[0]
        assert trigger in syntax.triggers or syntax.describe().startswith(trigger)
    assert guard in analysis.guards


def test_a_template_that_always_opens_the_assistant_turn():
    """Command-R7B's template ends every rendering with the chatbot header, asked or not: the header is still found
    (after the token that ends the user's turn), so a model writing it again is caught as talking to itself."""
    spec = corpus_spec("CohereForAI-c4ai-command-r7b-12-2024-tool_use.jinja")
    u = [{"role": "user", "content": "Hi"}]
    assert spec.render(u) == spec.render(u, add_generation_prompt=True)
    header = "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>"
    assert spec.analysis.assistant_header == header and header in spec.analysis.guards
    res = spec.reader(spec.render(u, add_generation_prompt=True)).read_all(
        f"<|START_RESPONSE|>Hello<|END_RESPONSE|>{header}<|START_RESPONSE|>again")
    assert res.content == "Hello"


def test_every_corpus_template_is_analyzed_with_a_turn_end():
    for path in sorted(need(CORPUS / "templates").glob("*.jinja")):
        analysis = corpus_spec(path.name).analysis
        assert analysis.error is None, (path.name, analysis.error)
        assert analysis.turn_ends or analysis.end_strings, path.name
        assert analysis.guards or analysis.end_strings, path.name


def test_config_for_smollm2(smollm2_dir):
    spec = turnspec.load(smollm2_dir)
    prompt = spec.render([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    cfg = config_for(spec, prompt)
    assert cfg.stop_ids == frozenset({2}) and cfg.stop_token_texts == ("<|im_end|>",)
    assert (cfg.reasoning, cfg.call_format) == ("none", "none")
    assert "<|im_start|>user" in cfg.turn_headers and cfg.prompt_tail == ""
    assert {"<|im_start|>", "<repo_name>", "<filename>", "<|endoftext|>"} <= set(cfg.control_tokens)
    assert config_for(spec, extra_stop_strings=("\n\n",)).stop_strings == ("\n\n",)
    assert config_for(spec, call_format="hermes").call_format == "hermes"


def test_tools_the_template_cannot_express_are_said_not_guessed(smollm2_dir):
    spec = turnspec.load(smollm2_dir)  # SmolLM2's template ignores tools
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    res = spec.reader("", tools=[weather]).read_all("Let me check the weather.")
    assert res.content == "Let me check the weather." and not res.tool_calls
    assert len(res.warnings) == 1 and "not readable" in res.warnings[0] and "\n" not in res.warnings[0]


def test_reader_for_reads_real_token_ids_and_strips_control_tokens(smollm2_dir):
    spec = turnspec.load(smollm2_dir)
    vocab = spec.vocab
    # special tokens of the vocabulary that are not for display (ids 3 and 6) between ordinary tokens
    ids = vocab.encode("Paris ") + [3] + vocab.encode("is") + [6] + vocab.encode(" the capital. 👋") + [2]
    reader = reader_for(spec, "<|im_start|>assistant\n")
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
    assert r.result.content == "abc"  # the output ended inside a control token: its start is never shown
    assert r.result.warnings == ["the output ended inside a marker ('<rep'): not shown"]
    assert all("<repo_name>" not in e.text for e in events if isinstance(e, Content))


def test_control_tokens_are_removed_whatever_the_format():
    for kw in (dict(reasoning="think"), dict(call_format="hermes"), dict(call_format="llama3"), dict(call_format="mistral")):
        res = StreamReader(control_tokens=("<|x|>",), **kw).read_all("A<|x|>B")
        assert res.content == "AB", kw
    res = StreamReader(reasoning="think", control_tokens=("<|x|>",)).read_all("<think>r<|x|>s</think>t")
    assert (res.reasoning, res.content) == ("rs", "t")


def test_reader_for_a_prompt_that_opened_reasoning():
    spec = corpus_spec("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja")
    prompt = spec.render([{"role": "user", "content": "2+2?"}], add_generation_prompt=True)
    reader = reader_for(spec, prompt)
    assert reader.config.prompt_tail == "<think>\n"
    res = reader.read_all("four\n</think>\n\n4")
    assert (res.reasoning, res.content) == ("four", "4")


def test_a_prompt_that_closed_reasoning_reads_an_answer():
    spec = corpus_spec("Qwen-Qwen3-0.6B.jinja")
    prompt = spec.render([{"role": "user", "content": "2+2?"}], add_generation_prompt=True, enable_thinking=False)
    res = reader_for(spec, prompt).read_all("4<|im_end|>")
    assert (res.reasoning, res.content, res.stopped_by) == ("", "4", "<|im_end|>")
