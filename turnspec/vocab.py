"""A thin view over a `tokenizers.Tokenizer`: the operations turnspec needs, named for what they mean here."""

from __future__ import annotations

from functools import cached_property
from itertools import accumulate
from typing import Any

#: Text that exercises what breaks length-based offsets: a leading space, runs of spaces, tabs and line breaks,
#: capitals a normalizer would fold, digits, punctuation, byte-fallback candidates.
_OFFSET_SAMPLE = (" Hello, World!  It's 2024:\t3.14 apples\n\n    indented -- dash__under/path?x=1&y=2 "
                  "CamelCase UPPER lower ~`^|\\{}[]<>\r\n end. ")


class Vocabulary:
    """Token ids <-> text for one model.

    Wraps `tokenizers.Tokenizer` (from tokenizer.json, or converted from a GGUF). `encode` never adds special
    tokens: chat templates write their own, which is what transformers' `apply_chat_template` does too.
    """

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Ids and the (start, end) character span of each token in `text`.

        For ASCII text on a vocabulary whose token lengths give the offsets (byte-level BPE: checked once against the
        tokenizer's own offsets), the ids come from the tokenizer's offset-free encoder and the offsets from the
        token lengths: the same result, a third faster (offset tracking is that much of tokenizing)."""
        lengths = self._token_lengths if text.isascii() else None
        if lengths is None:
            enc = self.tokenizer.encode(text, add_special_tokens=False)
            return enc.ids, enc.offsets
        ids = self.tokenizer.encode_batch_fast([text], add_special_tokens=False)[0].ids
        ends = list(accumulate(map(lengths.__getitem__, ids)))
        if ends and ends[-1] != len(text):  # a character the vocabulary has no token for was dropped
            enc = self.tokenizer.encode(text, add_special_tokens=False)
            return enc.ids, enc.offsets
        return ids, list(zip([0, *ends[:-1]], ends))

    @cached_property
    def _token_lengths(self) -> list[int] | None:
        """Each token's length in (ASCII) characters, if these offsets equal the tokenizer's on a varied sample."""
        if not hasattr(self.tokenizer, "encode_batch_fast"):
            return None
        vocab = self.tokenizer.get_vocab(with_added_tokens=True)
        added = self.added_tokens
        lengths = [0] * (max(vocab.values(), default=-1) + 1)
        for token, tid in vocab.items():
            lengths[tid] = len(token.encode("utf-8")) if token in added else len(token)
        sample = _OFFSET_SAMPLE + "".join(t for t in list(added)[:64] if t.isascii()) + _OFFSET_SAMPLE
        enc = self.tokenizer.encode(sample, add_special_tokens=False)
        ends = list(accumulate(lengths[i] if i < len(lengths) else -1 for i in enc.ids))
        if list(zip([0, *ends[:-1]], ends)) != [tuple(o) for o in enc.offsets] or (ends and ends[-1] != len(sample)):
            return None
        return lengths

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self.tokenizer.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self.tokenizer.id_to_token(token_id)

    @property
    def size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    @cached_property
    def added_tokens(self) -> dict[str, int]:
        """Added tokens (content -> id): the tokens that are matched whole, before the model's normal splitting."""
        return {tok.content: tid for tid, tok in self.tokenizer.get_added_tokens_decoder().items()}

    @cached_property
    def special_ids(self) -> frozenset[int]:
        """Ids of added tokens flagged `special`: control tokens that decoding with skip_special_tokens drops."""
        return frozenset(tid for tid, tok in self.tokenizer.get_added_tokens_decoder().items() if tok.special)
