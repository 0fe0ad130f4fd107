"""Incremental detokenizing with the real SmolLM2 byte-level tokenizer: UTF-8 safe, exact, bounded work."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from turnspec.reader.detokenize import IncrementalDetokenizer

# Real text whose characters span several byte-level tokens (emoji, ZWJ sequences, CJK, combining marks).
MIXED = "Hi 👋🏽 there, héllo 日本語 👨‍👩‍👧 e\u0301 — “quotes” ∑ 𝔘𝔫𝔦 <|im_start|>user\nok"


@pytest.fixture(scope="module")
def tok(smollm2_dir):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(smollm2_dir / "tokenizer.json"))


def stream(tok, ids):
    det = IncrementalDetokenizer(tok)
    pieces = [det.step(i) for i in ids]
    pieces.append(det.flush())
    return pieces


def test_pieces_concatenate_to_whole_decode(tok):
    ids = tok.encode(MIXED, add_special_tokens=False).ids
    pieces = stream(tok, ids)
    assert "".join(pieces) == tok.decode(ids, skip_special_tokens=False) == MIXED
    # byte-level tokens really split characters here, and no piece ever shows a replacement char
    assert "" in pieces[:-1]
    assert not any("\ufffd" in p for p in pieces)


def test_special_tokens_are_kept_as_text(tok):
    ids = tok.encode("a<|im_end|>b", add_special_tokens=False).ids
    assert 2 in ids
    assert "".join(stream(tok, ids)) == "a<|im_end|>b"


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_any_text_streams_exactly_like_whole_decode(tok, text):
    ids = tok.encode(text, add_special_tokens=False).ids
    pieces = stream(tok, ids)
    whole = tok.decode(ids, skip_special_tokens=False)
    assert "".join(pieces) == whole
    if whole == text and "\ufffd" not in text:
        assert not any("\ufffd" in p for p in pieces)


# SmolLM2's byte-level vocabulary has no token for the lead bytes 0xF1/0xF2 (planes 4-11) nor for a few
# ASCII control bytes (0x04, 0x06, 0x13, 0x14, 0x16, 0x1D), so it cannot encode those characters at all;
# every other valid character round-trips.
@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc"), max_codepoint=0x3FFFF), max_size=60))
def test_no_replacement_char_for_valid_utf8_split_anywhere(tok, text):
    ids = tok.encode(text, add_special_tokens=False).ids
    pieces = stream(tok, ids)
    assert "".join(pieces) == text
    if "\ufffd" not in text:
        assert not any("\ufffd" in p for p in pieces)


def test_truly_incomplete_character_at_the_end_matches_whole_decode(tok):
    lead_byte = tok.token_to_id("Ã")  # byte 0xC3 alone: the start of a 2-byte character, never completed
    ids = tok.encode("ok ", add_special_tokens=False).ids + [lead_byte]
    det = IncrementalDetokenizer(tok)
    streamed = "".join(det.step(i) for i in ids)
    assert "\ufffd" not in streamed  # held back while it could still complete
    assert streamed + det.flush() == tok.decode(ids, skip_special_tokens=False) == "ok \ufffd"


def test_work_per_step_does_not_grow_with_output_length(tok):
    ids = tok.encode("Streaming 👋 text, 日本語. " * 800, add_special_tokens=False).ids
    assert len(ids) > 5000
    det = IncrementalDetokenizer(tok)
    widest = 0
    for i in ids:
        det.step(i)
        widest = max(widest, det.window)
    assert widest <= 8  # ids re-decoded per step: a few, whatever the length of the output


# --- other tokenizer families: SentencePiece with byte fallback (llama-spm, phi-3) and other byte-level BPEs,
# read from the vocabulary-only GGUFs of ../shared/corpus/vocab through turnspec's GGUF tokenizer reader.


def _gguf_tokenizer(name: str):
    from helpers.paths import CORPUS, need

    path = need(CORPUS / "vocab" / f"ggml-vocab-{name}.gguf")
    try:
        from turnspec.gguf_tokenizer import tokenizer_from_gguf
        from turnspec.sources.gguf import read_gguf_metadata
    except ImportError as exc:  # the GGUF reader is another module of the project
        pytest.skip(f"turnspec's GGUF tokenizer reader is not available: {exc}")
    return tokenizer_from_gguf(read_gguf_metadata(path))


@pytest.mark.parametrize("name", ["llama-spm", "phi-3", "gpt-2", "deepseek-llm", "falcon"])
def test_other_tokenizer_families_stream_exactly(name):
    tok = _gguf_tokenizer(name)
    ids = tok.encode(MIXED, add_special_tokens=False).ids
    pieces = stream(tok, ids)
    assert "".join(pieces) == tok.decode(ids, skip_special_tokens=False)
    assert not any("\ufffd" in p for p in pieces)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_sentencepiece_byte_fallback_streams_exactly(text):
    tok = _spm()
    ids = tok.encode(text, add_special_tokens=False).ids
    pieces = stream(tok, ids)
    whole = tok.decode(ids, skip_special_tokens=False)
    assert "".join(pieces) == whole
    if "\ufffd" not in whole:
        assert not any("\ufffd" in p for p in pieces)


_SPM: list = []


def _spm():
    if not _SPM:
        _SPM.append(_gguf_tokenizer("llama-spm"))
    return _SPM[0]
