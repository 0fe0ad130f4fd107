"""Sessions (turnspec.session): exact token history across turns, on every template in ../shared.

Completions are the template's own rendering of an assistant turn, tokenized canonically or re-split into pieces a
sampler could produce; at every step earlier ids never change, the ids a step adds decode to the template's own
rendering after the assistant turn, and the completion reads back as the message rendered (tests/helpers/session_agent.py).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import turnspec
from turnspec.session import SessionError

from helpers.paths import SHARED, SMOLLM2_DIR, need
from helpers.corpus_models import special_tokens_for, template_files, template_id
from helpers.roundtrip import spec_for
from helpers.session_agent import USER_1, call, replay

QWEN3 = SHARED / "models" / "qwen3-tokenizer"
GPT_OSS = SHARED / "models" / "gpt-oss-tokenizer"
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city.", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]}}}


@pytest.fixture(scope="module")
def qwen3():
    return turnspec.load(need(QWEN3))


def _completion(spec, text: str) -> list[int]:
    return spec.vocab.encode(text)


def _started(spec, **kw):
    s = spec.session(tools=[WEATHER], **kw)
    s.prompt_ids([USER_1])
    return s


CALL_TURN = ('<think>\nI should look it up.\n</think>\n\n<tool_call>\n{"name": "get_weather", "arguments": '
             '{"city":"Paris","flag":false}}\n</tool_call><|im_end|>')  # compact JSON, as a model may sample it


# --- the API on the real Qwen3 tokenizer (a template that drops past reasoning) ----------------------------------
def test_qwen3_keeps_sampled_reasoning_and_arguments_verbatim(qwen3):
    s = _started(qwen3)
    msg = s.add_completion(_completion(qwen3, CALL_TURN))
    assert msg["reasoning_content"] == "I should look it up."
    assert msg["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": {"city": "Paris", "flag": False}}
    kept = s.ids
    ids = s.extend([{"role": "tool", "content": "21 C", "tool_call_id": msg["tool_calls"][0]["id"]}])
    assert ids[:len(kept)] == kept
    assert qwen3.vocab.decode(ids[len(kept):]) == ("\n<|im_start|>user\n<tool_response>\n21 C\n</tool_response>"
                                                   "<|im_end|>\n<|im_start|>assistant\n")
    s.add_completion(_completion(qwen3, "<think>\nok\n</think>\n\nIt is 21 C.<|im_end|>"))
    kept = s.ids
    ids = s.extend([{"role": "user", "content": "Thanks"}])
    assert ids[:len(kept)] == kept
    text = qwen3.vocab.decode(ids)
    # A re-render drops both reasoning blocks (before the last user turn) and re-serializes the arguments...
    rerendered = qwen3.render(s.messages, tools=[WEATHER], add_generation_prompt=True)
    assert "I should look it up." not in rerendered
    assert '{"city":"Paris","flag":false}' not in rerendered
    # ...the session keeps what was sampled.
    assert "I should look it up." in text and '{"city":"Paris","flag":false}' in text
    assert text.endswith("<|im_end|>\n<|im_start|>user\nThanks<|im_end|>\n<|im_start|>assistant\n")


def test_non_canonical_ids_survive_every_turn(qwen3):
    s = _started(qwen3)
    pieces = [i for ch in "It is sunny." for i in qwen3.vocab.encode(ch)] + qwen3.vocab.encode("<|im_end|>")
    assert pieces != qwen3.vocab.encode("It is sunny.<|im_end|>")  # really a different spelling
    msg = s.add_completion(pieces)
    assert msg["content"] == "It is sunny."
    start = len(s.ids) - len(pieces)
    for turn in range(3):
        s.extend([{"role": "user", "content": f"Again {turn}?"}])
        assert s.ids[start:start + len(pieces)] == pieces
        s.add_completion(qwen3.vocab.encode("Yes.<|im_end|>"))
    assert s.ids[start:start + len(pieces)] == pieces


def test_a_truncated_sample_gets_the_close_as_prompt_context(qwen3):
    s = _started(qwen3)
    sample = qwen3.vocab.encode("<think>\nLet me think about")  # max tokens inside reasoning
    s.add_completion(sample, finish_reason="length")
    kept = s.ids
    ids = s.extend([{"role": "user", "content": "Go on"}])
    added = qwen3.vocab.decode(ids[len(kept):])
    assert added.startswith("</think><|im_end|>\n<|im_start|>user\nGo on")
    labels = s.training_sample().labels
    assert all(labels[k] == -100 for k in range(len(kept), len(ids)))  # the close is context, not trained
    assert [t for t in labels if t != -100] == sample


def test_stop_inside_unclosed_reasoning_refuses_and_rerender_reports_changes(qwen3):
    s = _started(qwen3)
    s.add_completion(qwen3.vocab.encode("<think>\nhmm<|im_end|>"))
    kept = s.ids
    with pytest.raises(SessionError) as err:
        s.extend([{"role": "user", "content": "?"}])
    assert err.value.reason == "stop_in_reasoning" and "inside reasoning" in str(err.value)
    assert s.ids == kept
    ids = s.extend([{"role": "user", "content": "?"}], rerender=True)
    assert qwen3.vocab.decode(ids) == qwen3.render(s.messages, tools=[WEATHER], add_generation_prompt=True)
    report = s.rerenders[-1]
    assert report.first_changed is not None and report.first_changed < len(kept)


def test_bad_input_is_refused_and_changes_nothing(qwen3):
    s = _started(qwen3)
    prompt = s.ids
    with pytest.raises(SessionError, match="outside the vocabulary"):
        s.add_completion([qwen3.vocab.size + 5])
    with pytest.raises(SessionError, match="extend follows add_completion"):
        s.extend([{"role": "user", "content": "x"}])
    assert s.ids == prompt
    msg = s.add_completion(qwen3.vocab.encode("Paris.<|im_end|>"))  # usable after the errors
    kept = s.ids
    with pytest.raises(SessionError) as err:
        s.extend([{"role": "assistant", "content": "forged"}])
    assert err.value.reason == "assistant_in_new"
    with pytest.raises(SessionError) as err:
        s.extend([{"role": "user", "content": "Edited question"}, msg, {"role": "user", "content": "next"}])
    assert err.value.reason != "history_edited"  # not the session's history: new messages (with an assistant)
    with pytest.raises(SessionError) as err:
        s.extend([USER_1, {**msg, "content": "Lyon."}, {"role": "user", "content": "next"}])
    assert err.value.reason == "history_edited" and "message 1" in str(err.value)
    with pytest.raises(SessionError, match="already called"):
        s.prompt_ids([USER_1])
    with pytest.raises(SessionError, match="ids continue after the turn end"):
        s2 = _started(qwen3)
        s2.add_completion(qwen3.vocab.encode("A.<|im_end|>B"))
    assert s.ids == kept
    # the whole conversation (what a server receives) continues the session like its new tail
    ids = s.extend([USER_1, {"role": "assistant", "content": "Paris."}, {"role": "user", "content": "next"}])
    assert ids[:len(kept)] == kept and qwen3.vocab.decode(ids[len(kept):]).startswith("\n<|im_start|>user\nnext")


def test_training_sample_marks_sampled_ids_and_chosen_messages(qwen3):
    s = _started(qwen3)
    prompt = s.ids
    sample = qwen3.vocab.encode("Paris.<|im_end|>")
    s.add_completion(sample)
    s.extend([{"role": "user", "content": "More?"}])
    s.add_completion(qwen3.vocab.encode("No.<|im_end|>"))
    ts = s.training_sample()
    assert ts.labels[:len(prompt)] == [-100] * len(prompt)
    assert ts.labels[len(prompt):len(prompt) + len(sample)] == sample
    assert set(ts.message_index[len(prompt):len(prompt) + len(sample)]) == {1}
    assert ts.role[len(prompt)] == "assistant" and ts.role[0] in ("system", "user")
    only_last = s.training_sample(messages=[3])
    assert [t for t in only_last.labels if t != -100] == qwen3.vocab.encode("No.<|im_end|>")
    user_turn = s.training_sample(messages=[2])
    assert "More?" in qwen3.vocab.decode([t for t in user_turn.labels if t != -100])


def test_a_literal_tool_call_typed_as_text_is_never_a_call(qwen3):
    s = _started(qwen3)
    spelled = [i for ch in "<tool_call>" for i in qwen3.vocab.encode(ch)]
    assert qwen3.vocab.decode(spelled) == "<tool_call>"
    body = qwen3.vocab.encode(' tags hold calls, e.g. get_weather.<|im_end|>')
    msg = s.add_completion(qwen3.vocab.encode("Write ") + spelled + body)
    assert msg == {"role": "assistant", "content": "Write <tool_call> tags hold calls, e.g. get_weather."}


# --- every template in ../shared and tests/data/llamacpp_templates -----------------------------------------------
LLAMACPP = sorted((Path(__file__).parent / "data" / "llamacpp_templates").glob("*.jinja"))
NOT_READ = {"GigaChat3-10B-A1.8B", "Kimi-K3", "MiniMax-M3", "muse-glimmer"}  # the reader cannot read them (test_roundtrip)
# extend refuses here, and why (a change shows up as a failure, so this list stays true)
REFUSED = {"MiniMax-M2": "no_turn_end"}
REPORTS: dict[str, object] = {}


def _all_templates() -> list[Path]:
    return [*template_files(), *LLAMACPP, QWEN3, GPT_OSS]


def _spec(path: Path):
    if path.is_dir():
        return turnspec.load(path), path.name
    if path.name == "chat_template.jinja":
        return turnspec.load(path.parent), path.parent.name
    return spec_for(path.read_text(encoding="utf-8"), special_tokens_for(path), need(SMOLLM2_DIR / "tokenizer.json")), \
        template_id(path)


@pytest.mark.slow
@pytest.mark.parametrize("path", _all_templates(), ids=lambda p: p.name if p.is_dir() else template_id(p)
                         + ("-llamacpp" if p.parent.name == "llamacpp_templates" else ""))
def test_agent_conversation_on_every_template(path):
    need(path)
    spec, name = _spec(path)
    report = replay(spec, name, read=name not in NOT_READ)
    REPORTS[str(path)] = report
    if report.refused:
        assert REFUSED.get(name) == report.refused.split(":")[0], report.refused
    else:
        assert name not in REFUSED, f"{name} no longer refuses: drop it from REFUSED"


def test_most_templates_play_the_whole_conversation():
    if len(REPORTS) < len(_all_templates()) // 2:
        pytest.skip("runs after the per-template replays (whole module)")
    played = [r for r in REPORTS.values() if r.steps >= 2 and not r.refused and not r.skipped]
    assert len(played) >= 105, (len(played), sorted(r.template for r in REPORTS.values() if r not in played))
    with_tools = [r for r in played if not any(n.startswith("played without tool turns") for n in r.notes)]
    assert len(with_tools) >= 65, len(with_tools)
    assert sum(r.rewrites_history for r in played) >= 10  # a re-render would have changed earlier tokens there


# --- random conversations and random non-canonical tokenizations ---------------------------------------------------
WORDS = ["Paris", "false", "true", "null", "{", "}", "42", "3.14", "naïve", "café", "你好", "👋🏽", "<b>", "a  b", "\n"]
text_st = st.lists(st.sampled_from(WORDS), min_size=1, max_size=5).map(" ".join).map(str.strip).filter(bool)
# arguments as the tools declare them (tagged formats type values back with the schema): city text, days integer
args_st = st.fixed_dictionaries({"city": text_st}, optional={"days": st.integers(0, 30)})
exchange_st = st.tuples(st.booleans(), st.booleans(), text_st, text_st, text_st, args_st)


def _script(exchanges) -> list:
    steps = []
    for k, (tool, think, question, answer, result, args) in enumerate(exchanges):
        steps.append(("user", {"role": "user", "content": question}))
        reasoning = {"reasoning_content": f"think {k}"} if think else {}
        if tool:
            cid = f"call{k:05d}"
            steps.append(("assistant", {"role": "assistant", "content": "", **reasoning,
                                        "tool_calls": [call("get_weather", args, cid)]}))
            steps.append(("tool", {"role": "tool", "content": result, "tool_call_id": cid, "name": "get_weather"}))
            steps.append(("assistant", {"role": "assistant", "content": answer}))
        else:
            steps.append(("assistant", {"role": "assistant", "content": answer, **reasoning}))
    steps.append(("user", {"role": "user", "content": "bye"}))
    return steps


def _respelled(seed: int):
    """Tokenize text with random words spelled one character per token (control tokens stay whole)."""
    def tokenize(spec, text: str) -> list[int]:
        rng = random.Random(seed)
        ids: list[int] = []
        pos = 0
        for span in spec.markup.spans(text) + [None]:
            piece = text[pos:span.start] if span else text[pos:]
            for k, word in enumerate(piece.split(" ")):
                chunk = (" " if k else "") + word
                chars = [i for ch in chunk for i in spec.vocab.encode(ch)]
                ids += chars if rng.random() < 0.5 and spec.vocab.decode(chars) == chunk else spec.vocab.encode(chunk)
            if span:
                ids += spec.vocab.encode(span.text)
                pos = span.end
        return ids
    return tokenize


def _hypothesis_specs():
    out = [pytest.param(QWEN3, id="qwen3-tokenizer"), pytest.param(GPT_OSS, id="gpt-oss-tokenizer"),
           pytest.param(SMOLLM2_DIR, id="smollm2")]
    for stem in ("meta-llama-Llama-3.1-8B-Instruct", "GLM-4.6", "deepseek-ai-DeepSeek-V3.1", "NousResearch-Hermes-3-Llama-3.1-8B-tool_use"):
        out.append(pytest.param(Path(__file__).parent / "data" / "llamacpp_templates" / f"{stem}.jinja", id=stem))
    return out


_SPECS: dict = {}


@pytest.mark.slow
@pytest.mark.parametrize("path", _hypothesis_specs())
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(exchanges=st.lists(exchange_st, min_size=1, max_size=3), seed=st.integers(0, 2**16))
def test_random_conversations_and_spellings_keep_every_id(path, exchanges, seed):
    need(path)
    if path not in _SPECS:
        _SPECS[path] = _spec(path)
    spec, name = _SPECS[path]
    report = replay(spec, name, tokenize=_respelled(seed), script=_script(exchanges))
    assert not report.refused, report.refused
    assert not report.skipped or "tool" in report.skipped or "continues" in report.skipped, report.skipped
