"""Stopping: stop token ids, stop strings split across tokens, finish reasons, the self-conversation guard."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from turnspec.reader import Content, Done, ReaderConfig, StreamReader
from turnspec.reader.events import collect

from helpers.corpus_models import corpus_spec


@pytest.fixture(scope="module")
def tok(smollm2_dir):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(smollm2_dir / "tokenizer.json"))


def ids_of(tok, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False).ids


def chatml_reader(tok, **kw) -> StreamReader:
    """SmolLM2's real stop: <|im_end|> (id 2), plus <|endoftext|> (id 0)."""
    return StreamReader(tokenizer=tok, stop_ids=frozenset({0, 2}), stop_token_texts=("<|endoftext|>", "<|im_end|>"), **kw)


def test_stop_token_id_ends_the_turn_and_is_never_shown(tok):
    r = chatml_reader(tok)
    events = []
    for tid in ids_of(tok, "The capital of France is Paris.") + [2] + ids_of(tok, " trailing"):
        events += r.feed_token(tid)
    assert r.done
    assert events[-1] == Done("stop", "<|im_end|>", "token")
    assert r.result.content == "The capital of France is Paris."
    assert r.feed_token(5) == [] and r.finish() == []  # nothing after the stop


def test_stop_string_split_across_real_tokens(tok):
    ids = ids_of(tok, "Answer: 42\n\nUser: and now?")
    r = chatml_reader(tok, stop_strings=("\n\nUser:",))
    events = r.feed_tokens(ids)
    assert r.done
    assert r.result.content == "Answer: 42"
    assert events[-1] == Done("stop", "\n\nUser:", "string")


def test_holds_back_only_what_could_start_a_stop_string():
    r = StreamReader(stop_strings=("world!",))
    assert r.feed_text("Hello wor") == [Content("Hello ")]
    assert r.feed_text("m") == [Content("worm")]  # no longer a possible stop: released at once
    assert r.feed_text(" world") == [Content(" ")]
    assert r.feed_text("!") == [Done("stop", "world!", "string")]
    assert r.result.content == "Hello worm "


def test_held_text_is_released_at_the_end():
    r = StreamReader(stop_strings=("STOP",))
    r.feed_text("almost ST")
    assert r.finish("length") == [Content("ST"), Done("length")]
    assert r.result.finish_reason == "length"
    assert r.result.content == "almost ST"


def test_stop_token_text_in_a_text_stream(tok):
    r = StreamReader(stop_token_texts=("<|im_end|>",))
    for chunk in ["Hi<|im", "_en", "d|>garbage"]:
        r.feed_text(chunk)
    assert r.done and r.result.content == "Hi"
    assert (r.result.stopped_by, r.result.stop_kind, r.result.finish_reason) == ("<|im_end|>", "token", "stop")


def test_stop_token_spelled_out_with_ordinary_tokens_still_stops(tok):
    spelled = [t for piece in ["<|", "im", "_end", "|>"] for t in ids_of(tok, piece)]
    assert 2 not in spelled
    r = chatml_reader(tok)
    r.feed_tokens(ids_of(tok, "Done.") + spelled + ids_of(tok, "more"))
    assert r.done and r.result.content == "Done." and r.result.stopped_by == "<|im_end|>"


def test_pending_partial_utf8_and_held_text_flush_before_a_stop_id(tok):
    r = chatml_reader(tok, stop_strings=("<END>",))
    r.feed_tokens(ids_of(tok, "ok <EN") + [2])
    assert r.result.content == "ok <EN"
    assert r.result.stopped_by == "<|im_end|>"


def test_finish_reason_defaults_to_stop_and_reports_length():
    r = StreamReader()
    assert r.feed_text("abc") == [Content("abc")]
    assert r.finish() == [Done("stop")]
    r = StreamReader()
    assert r.read_all("abc", reason="length").finish_reason == "length"


def test_feed_token_without_tokenizer_is_a_clear_error():
    with pytest.raises(TypeError, match="no tokenizer"):
        StreamReader().feed_token(1)


def test_bad_config_is_refused():
    with pytest.raises(ValueError):
        ReaderConfig(reasoning="xml")
    with pytest.raises(ValueError):
        ReaderConfig(call_format="harmony")
    with pytest.raises(TypeError):
        StreamReader(stop_string=("x",))


# --- self-conversation guard -------------------------------------------------------------------------


def test_chatml_guard_with_real_smollm2_tokens(tok, smollm2_dir):
    import turnspec

    headers = turnspec.load(smollm2_dir).analysis.guards
    assert "<|im_start|>user" in headers
    # the model forgot <|im_end|> and started the user's turn itself: <|im_start|> is token id 1
    ids = ids_of(tok, "Paris is the capital.\n<|im_start|>user\nThanks!")
    assert 1 in ids
    r = StreamReader(tokenizer=tok, stop_ids=frozenset({2}), turn_headers=headers, control_tokens=("<|im_start|>",))
    events = r.feed_tokens(ids)
    assert events[-1] == Done("stop", "<|im_start|>user", "turn_header")
    assert events[-1].self_conversation and r.result.self_conversation
    assert r.result.content == "Paris is the capital.\n"


@pytest.mark.parametrize(
    "template_file, output, header",
    [
        ("meta-llama-Llama-3.1-8B-Instruct.jinja", "Sure!<|start_header_id|>user<|end_header_id|>\n\nmore", "<|start_header_id|>user"),
        ("google-gemma-2-2b-it.jinja", "Sure!\n<start_of_turn>user\nmore", "<start_of_turn>user"),
        ("mistralai-Mistral-Nemo-Instruct-2407.jinja", "Sure! [INST] more [/INST]", "[INST]"),
        ("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", "Sure!<｜User｜>more", "<｜User｜>"),
        ("microsoft-Phi-3.5-mini-instruct.jinja", "Sure!<|user|>\nmore", "<|user|>"),
        ("openai-gpt-oss-120b.jinja", "<|channel|>final<|message|>Sure!<|start|>user<|message|>more", "<|start|>user"),
        ("moonshotai-Kimi-K2.jinja", "Sure!<|im_user|>user<|im_middle|>more", "<|im_user|>user"),
        ("ByteDance-Seed-OSS.jinja", "Sure!<seed:bos>user\nmore", "<seed:bos>user"),
        ("CohereForAI-c4ai-command-r7b-12-2024-tool_use.jinja",
         "<|START_RESPONSE|>Sure!<|START_OF_TURN_TOKEN|><|USER_TOKEN|>more", "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>"),
    ],
)
def test_guard_headers_come_from_each_real_template(template_file, output, header):
    from turnspec.reader import config_for

    config = config_for(corpus_spec(template_file))
    assert header in config.turn_headers
    r = StreamReader(config)
    rng = random.Random(7)
    i = 0
    while i < len(output):
        n = rng.randint(1, 4)
        r.feed_text(output[i : i + n])
        i += n
    r.finish()
    assert r.result.content in ("Sure!", "Sure! ", "Sure!\n")
    assert r.result.stopped_by == header and r.result.self_conversation


def test_harmony_guard_lets_the_next_assistant_message_through():
    headers = corpus_spec("openai-gpt-oss-120b.jinja").analysis.guards
    assert "<|start|>assistant" not in headers and "<|start|>functions." in headers


# --- properties: streamed == whole, for random texts, chunkings and stop strings ----------------------

ALPHA = "ab \n<>|/é👋"


def chunks_of(text: str, cuts: list[int]) -> list[str]:
    cuts = sorted({c % (len(text) + 1) for c in cuts})
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:])]


def expected_cut(text: str, stops: list[str]) -> tuple[str, str | None]:
    hits = [(text.find(s), -len(s), s) for s in stops if s in text]
    if not hits:
        return text, None
    i, _, s = min(hits)
    return text[:i], s


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=ALPHA, max_size=50),
    st.lists(st.text(alphabet=ALPHA, min_size=1, max_size=4), max_size=3),
    st.lists(st.integers(0, 60), max_size=10),
)
def test_streamed_equals_whole_for_random_stop_strings(text, stops, cuts):
    whole = StreamReader(stop_strings=tuple(stops)).read_all(text)
    r = StreamReader(stop_strings=tuple(stops))
    events = []
    for c in chunks_of(text, cuts):
        events += r.feed_text(c)
    events += r.finish()
    assert r.result == whole == collect(events)
    content, stop = expected_cut(text, stops)
    assert whole.content == content and whole.stopped_by == stop


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=ALPHA + "xyz.,", max_size=40), st.lists(st.text(alphabet=ALPHA, min_size=1, max_size=4), max_size=3))
def test_token_by_token_equals_text_for_random_stop_strings(tok, text, stops):
    ids = ids_of(tok, text)
    by_token = StreamReader(tokenizer=tok, stop_strings=tuple(stops))
    by_token.feed_tokens(ids)
    by_token.finish()
    decoded = tok.decode(ids, skip_special_tokens=False)
    assert by_token.result == StreamReader(stop_strings=tuple(stops)).read_all(decoded)
    assert "\ufffd" not in by_token.result.content
