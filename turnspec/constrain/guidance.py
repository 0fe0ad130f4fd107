"""The llguidance backend: constraints as token masks for engines that sample themselves (transformers, MLX).

llguidance (the structured-generation library behind Guidance, on PyPI as `llguidance`) compiles the Lark text
of lark.py, including `%json {schema}` parts, against the model's own tokenizer and gives, before each token, the
set of tokens the grammar allows. Its tokenizer is built from the same tokenizer.json turnspec reads, with the
model's halt ids as end-of-sequence tokens: once the grammar is complete, the turn may end.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from .lark import to_lark
from .plan import Constraint, ConstraintState
from .schema import ConstraintError

MISSING = "constrained decoding on this engine needs llguidance: pip install llguidance"


def _llguidance() -> Any:
    try:
        import llguidance
    except ImportError as exc:
        raise ConstraintError(MISSING) from exc
    return llguidance


def control_tokens(vocab: Any) -> dict[str, int]:
    """Special tokens by text: llguidance never matches them as text, so grammars name them by id."""
    return {tok: tid for tok, tid in vocab.added_tokens.items() if tid in vocab.special_ids and tok}


@lru_cache(maxsize=8)
def _tokenizer(tokenizer_json: str, n_vocab: int, eos: tuple[int, ...]) -> Any:
    return _llguidance().LLTokenizer(tokenizer_json, n_vocab=n_vocab, eos_token=list(eos))


def tokenizer_for(vocab: Any, n_vocab: int, halt_ids: Any) -> Any:
    """The llguidance tokenizer for `vocab` (cached: building one takes a fraction of a second)."""
    n_vocab = max(int(n_vocab or 0), vocab.size)
    return _tokenizer(vocab.tokenizer.to_str(), n_vocab, tuple(sorted(int(i) for i in halt_ids)))


def grammar_text(node: Any, tokens: dict[str, int]) -> str:
    return _llguidance().LLMatcher.grammar_from_lark(to_lark(node, tokens=tokens))


def validate(constraint: Constraint, tokens: dict[str, int]) -> None:
    """Raise ConstraintError naming what llguidance cannot enforce (an unsupported schema keyword...)."""
    llg = _llguidance()
    for node in {constraint.start, constraint.resume}:
        error = llg.LLMatcher.validate_grammar(grammar_text(node, tokens))
        if error:
            detail = error.split("\n")[0]
            detail = detail.split("failed to compile JSON schema: ", 1)[-1]
            raise ConstraintError(f"{_where(constraint)}: cannot be enforced: {detail}", param=_param(constraint))


def _where(constraint: Constraint) -> str:
    return "response_format.json_schema.schema" if constraint.kind == "json" else "tools[].function.parameters"


def _param(constraint: Constraint) -> str:
    return "response_format" if constraint.kind == "json" else "tools"


class GuidedSampling:
    """One generation's token masks: follows the constraint's phases, one llguidance matcher per phase."""

    def __init__(self, constraint: Constraint, tokenizer: Any, tokens: dict[str, int]):
        self.llg = _llguidance()
        import numpy as np

        self._np = np
        self.tokenizer = tokenizer
        self.tokens = tokens
        self.state = ConstraintState(constraint)
        self.matcher: Any = None
        self._new_matcher()
        self.bitmask = np.full((1, (tokenizer.vocab_size + 31) // 32), -1, dtype=np.int32)

    def _new_matcher(self) -> None:
        node = self.state.grammar
        self.matcher = None if node is None else self.llg.LLMatcher(self.tokenizer, grammar_text(node, self.tokens))

    @property
    def active(self) -> bool:
        return self.matcher is not None

    def allowed(self) -> Any:
        """The (1, words) int32 bitmask of allowed tokens for the next step (only while `active`)."""
        self.matcher.unsafe_compute_mask_ptr(self.bitmask.ctypes.data, self.bitmask.size * 4)
        return self.bitmask

    def allowed_tokens(self, n: int) -> Any:
        """The allowed tokens as a boolean array of length `n` (the engine's logits width)."""
        bits = self._np.unpackbits(self.allowed().view(self._np.uint8), bitorder="little")
        if bits.size < n:
            bits = self._np.concatenate([bits, self._np.zeros(n - bits.size, dtype=bits.dtype)])
        return bits[:n].astype(bool)

    def consume(self, token: int) -> None:
        if self.matcher is not None:
            if not self.matcher.consume_token(int(token)):
                raise ConstraintError(f"the grammar refused token {token}: {self.matcher.get_error()}")
        piece = self.tokenizer.decode_bytes([int(token)]).decode("utf-8", errors="replace")
        if self.state.advance(piece):
            self._new_matcher()
