"""Token offsets from token lengths must equal the tokenizer's own, on every real vocabulary in ../shared.

`Vocabulary.encode_with_offsets` skips the tokenizer's offset tracking for ASCII text when a sample shows that
token lengths give the same offsets (byte-level BPE). Here that claim is checked on random ASCII text with the
vocabulary's control tokens mixed in, for SmolLM2, gpt-oss (o200k_harmony) and every GGUF vocabulary; and the
vocabularies where it does not hold (SentencePiece: `▁`, byte fallback) must have been refused, not misread.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from turnspec.gguf_tokenizer import tokenizer_from_gguf
from turnspec.sources.gguf import read_gguf_metadata
from turnspec.vocab import Vocabulary

from helpers.paths import CORPUS, SHARED, need

VOCABS = ["smollm2", "gpt-oss"] + [p.stem for p in sorted((CORPUS / "vocab").glob("*.gguf"))] \
    if (CORPUS / "vocab").is_dir() else ["smollm2", "gpt-oss"]
_CACHE: dict[str, Vocabulary] = {}


def vocabulary(name: str) -> Vocabulary:
    if name not in _CACHE:
        if name == "smollm2":
            tok = Tokenizer.from_file(str(need(SHARED / "models" / "smollm2-135m-instruct" / "tokenizer.json")))
        elif name == "gpt-oss":
            tok = Tokenizer.from_file(str(need(SHARED / "models" / "gpt-oss-tokenizer" / "tokenizer.json")))
        else:
            try:
                tok = tokenizer_from_gguf(read_gguf_metadata(need(CORPUS / "vocab" / f"{name}.gguf")))
            except Exception as exc:  # noqa: BLE001 - a vocabulary turnspec does not convert is not this test's subject
                pytest.skip(f"{name}: not convertible ({exc})")
        _CACHE[name] = Vocabulary(tok)
    return _CACHE[name]


def reference(vocab: Vocabulary, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    enc = vocab.tokenizer.encode(text, add_special_tokens=False)
    return enc.ids, [tuple(o) for o in enc.offsets]


ascii_text = st.text(st.characters(min_codepoint=9, max_codepoint=126, blacklist_categories=("Cs",)), max_size=200)


@pytest.mark.parametrize("name", VOCABS)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_offsets_equal_the_tokenizers(name, data):
    vocab = vocabulary(name)
    tokens = sorted(vocab.added_tokens)[:40] or [""]
    pieces = data.draw(st.lists(st.one_of(ascii_text, st.sampled_from(tokens)), max_size=8))
    text = "".join(pieces)
    ids, offsets = vocab.encode_with_offsets(text)
    assert (ids, [tuple(o) for o in offsets]) == reference(vocab, text)


@pytest.mark.parametrize("name", VOCABS)
def test_the_fast_path_is_used_only_where_it_holds(name):
    vocab = vocabulary(name)
    cfg = vocab.tokenizer.to_str()
    byte_level = '"ByteLevel"' in cfg and '"normalizer":null' in cfg.replace(" ", "")
    if not byte_level:  # SentencePiece-style vocabularies: lengths of `▁x` or `<0x0A>` are not offsets
        assert vocab._token_lengths is None
    if name in ("smollm2", "gpt-oss"):
        assert vocab._token_lengths is not None
    text = "naïve café — ünïcode"  # non-ASCII always takes the tokenizer's own offsets
    assert vocab.encode_with_offsets(text) == reference(vocab, text)
