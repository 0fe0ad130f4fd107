"""Token ids -> text, one id at a time, without ever splitting a UTF-8 character.

Built on `tokenizers.decoders.DecodeStream`: it re-decodes only the ids since the last emitted chunk
(plus one chunk of context for decoders that treat the first token specially), so the cost of a step
does not grow with the length of the output, and it holds a chunk back while the decoded text ends in
an incomplete character (U+FFFD). DecodeStream has no flush, so this class mirrors its small window
to emit, at the end, exactly what decoding the whole sequence would have ended with (e.g. a U+FFFD for
a byte sequence the model truly left incomplete).
"""

from __future__ import annotations

from typing import Any

from tokenizers.decoders import DecodeStream


class IncrementalDetokenizer:
    """Concatenating every `step()` and the final `flush()` equals `tokenizer.decode(ids)` (special tokens kept)."""

    __slots__ = ("_tokenizer", "_stream", "_context", "_pending")

    def __init__(self, tokenizer: Any):
        self._tokenizer = tokenizer
        self._stream = DecodeStream(skip_special_tokens=False)
        self._context: list[int] = []  # ids of the last emitted chunk (what DecodeStream keeps as prefix)
        self._pending: list[int] = []  # ids fed since then that did not yet make complete text

    def step(self, token_id: int) -> str:
        """Feed one id; return the text it completes ('' while a character is still incomplete)."""
        try:
            piece = self._stream.step(self._tokenizer, token_id)
        except Exception:  # DecodeStream refuses when a decoder rewrites the prefix; restart from here
            return self._restart(token_id)
        self._pending.append(token_id)
        if piece is None:
            return ""
        self._context = self._pending
        self._pending = []
        return piece

    def flush(self) -> str:
        """Text of ids still held back (an incomplete character at the very end decodes as whole decode does)."""
        if not self._pending:
            return ""
        decode = self._tokenizer.decode
        whole = decode(self._context + self._pending, skip_special_tokens=False)
        prefix = decode(self._context, skip_special_tokens=False) if self._context else ""
        self._context, self._pending = self._context + self._pending, []
        self._stream = DecodeStream(skip_special_tokens=False)
        return whole[len(prefix):] if whole.startswith(prefix) else whole

    @property
    def window(self) -> int:
        """How many ids the next step re-decodes: stays small, which is why a step costs O(1) in output length."""
        return len(self._context) + len(self._pending)

    def _restart(self, token_id: int) -> str:
        ids = self._pending + [token_id]
        self._stream = DecodeStream(skip_special_tokens=False)
        self._context, self._pending = ids, []
        return self._tokenizer.decode(ids, skip_special_tokens=False)
