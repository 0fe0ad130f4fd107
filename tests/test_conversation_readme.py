"""The README's RL rollout loop (section "An RL rollout loop with tools"), read from README.md and run exactly as
written on the real default model (SmolLM2 GGUF, llama.cpp) with the Qwen3 template from ../shared."""

from __future__ import annotations

import re

import pytest

from helpers.paths import REPO, SHARED

pytestmark = pytest.mark.slow
pytest.importorskip("llama_cpp", reason="the llamacpp engine needs llama-cpp-python: pip install 'turnspec[llamacpp]'")


def rollout_snippet() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### An RL rollout loop with tools"):]
    section = section[:section.index("\n## ")]
    [block] = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return block


def test_the_readme_rollout_loop_yields_one_sample_per_conversation(smollm2_gguf, monkeypatch):
    if not (SHARED / "corpus" / "templates" / "Qwen-Qwen3-0.6B.jinja").exists():
        pytest.skip("../shared/corpus/templates is absent")
    monkeypatch.chdir(REPO)  # the snippet names the template by its path from the repository
    scope: dict = {}
    exec(compile(rollout_snippet(), "README.md:rollout", "exec"), scope)
    samples, conv = scope["samples"], scope["conv"]
    assert len(samples) == 2
    for sample in samples:
        n = len(sample["input_ids"])
        assert len(sample["labels"]) == len(sample["message_index"]) == len(sample["role"]) == n
        trained = [k for k, t in enumerate(sample["labels"]) if t != -100]
        assert trained and all(sample["labels"][k] == sample["input_ids"][k] for k in trained)
        assert {sample["role"][k] for k in trained} == {"assistant"}
        assert "tool" in sample["role"]  # the forced call was answered by the environment
    # the last conversation: its sample is its turns' prompts extended verbatim, loss on their sampled ids only
    last = samples[-1]
    assert [t for t in last["labels"] if t != -100] == [t for turn in conv.turns for t in turn.ids]
    for before, after in zip(conv.turns, conv.turns[1:]):
        assert after.prompt_ids[:len(before.prompt_ids) + len(before.ids)] == before.prompt_ids + before.ids
    assert conv.turns[0].message["tool_calls"][0]["function"]["name"] == "add"
    assert scope["engine"].loaded is False  # closed by the snippet
