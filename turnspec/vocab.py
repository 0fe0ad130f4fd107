"""A thin view over a `tokenizers.Tokenizer`: the operations turnspec needs, named for what they mean here."""

from __future__ import annotations

from functools import cached_property
from typing import Any


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
        """Ids and the (start, end) character span of each token in `text`."""
        enc = self.tokenizer.encode(text, add_special_tokens=False)
        return enc.ids, enc.offsets

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
