"""Per-sequence sampling on llama.cpp: its own sampler chain (temperature, top_p, seed) and, for a constrained
turn, a llama.cpp grammar sampler (GBNF from turnspec.constrain.gbnf) that follows the constraint's phases.

The grammar is checked the way llama.cpp's own `common_sampler` does it: the token the chain picks is tested
against the grammar alone (one candidate, cheap); only when the grammar rejects it is the whole vocabulary
masked and the token drawn again. A token reaches the grammar's `accept` only after the grammar allowed it
(accepting anything else aborts inside llama.cpp).
"""

from __future__ import annotations

import ctypes
import math
from functools import lru_cache
from typing import Any

from .base import EngineError, Sampled


@lru_cache(maxsize=64)
def _gbnf(node: Any, tokens: tuple[tuple[str, int], ...], tail: str) -> str:
    from ..constrain.gbnf import to_gbnf

    return to_gbnf(node, tokens=dict(tokens), tail=tail)


class VocabInfo:
    """What samplers need from a loaded model's vocabulary, computed once per engine."""

    def __init__(self, llama_cpp: Any, vocab: Any, n_vocab: int):
        import numpy as np

        self.llama_cpp, self.vocab, self.n_vocab = llama_cpp, vocab, n_vocab
        self._pieces: dict[int, str] = {}
        # the full candidate array, reused for every masked (grammar-rejected) draw
        self.candidates = (llama_cpp.llama_token_data * n_vocab)()
        self.view = np.ctypeslib.as_array(self.candidates)
        self.ids = np.arange(n_vocab, dtype=np.int32)  # written back before each draw: samplers reorder in place
        self.single = (llama_cpp.llama_token_data * 1)()

    def piece(self, token: int) -> str:
        """The token's text, control tokens spelled out (as the grammar matches them)."""
        text = self._pieces.get(token)
        if text is None:
            buf = ctypes.create_string_buffer(256)
            n = self.llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, True)
            text = buf.raw[:max(0, n)].decode("utf-8", errors="replace")
            self._pieces[token] = text
        return text

    def is_eog(self, token: int) -> bool:
        return bool(self.llama_cpp.llama_vocab_is_eog(self.vocab, token))


class SequenceSampler:
    """Sampling for one sequence: chain + optional grammar, freed with `close()`."""

    def __init__(self, info: VocabInfo, *, temperature: float, top_p: float, seed: int | None,
                 constraint: Any = None, logprobs: int | None = None):
        lc = info.llama_cpp
        self.info = info
        self.logprobs = logprobs  # None: no logprobs; k: the sampled token's and the k most likely tokens'
        self.last: Sampled | None = None  # the last token's, when logprobs were asked for
        self.chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
        if temperature <= 0.0:
            lc.llama_sampler_chain_add(self.chain, lc.llama_sampler_init_greedy())
        else:
            if top_p < 1.0:
                lc.llama_sampler_chain_add(self.chain, lc.llama_sampler_init_top_p(top_p, 1))
            lc.llama_sampler_chain_add(self.chain, lc.llama_sampler_init_temp(temperature))
            lc.llama_sampler_chain_add(self.chain, lc.llama_sampler_init_dist(
                lc.LLAMA_DEFAULT_SEED if seed is None else seed & 0xFFFFFFFF))
        self.grammar: Any = None
        self.state: Any = None
        self._tokens: tuple[tuple[str, int], ...] = ()
        self._tail = ""
        if constraint is not None:
            from ..constrain.guidance import control_tokens
            from ..constrain.plan import ConstraintState

            self.state = ConstraintState(constraint)
            vocab = constraint.vocab
            self._tokens = tuple(sorted(control_tokens(vocab).items())) if vocab is not None else ()
            # stop ids llama.cpp does not treat as end-of-generation must be allowed by the grammar itself
            halts = sorted(t for t in constraint.halt_ids if not info.is_eog(t))
            self._tail = f"({' | '.join(f'<[{t}]>' for t in halts)})?" if halts else ""
            self._new_grammar()

    def _new_grammar(self) -> None:
        lc = self.info.llama_cpp
        if self.grammar is not None:
            lc.llama_sampler_free(self.grammar)
            self.grammar = None
        node = self.state.grammar
        if node is None:
            return
        text = _gbnf(node, self._tokens, self._tail)
        grammar = lc.llama_sampler_init_grammar(self.info.vocab, text.encode("utf-8"), b"root")
        if not grammar:
            raise EngineError("llama.cpp could not parse the constraint's grammar (a turnspec bug): "
                              + text[:200].replace("\n", " | "))
        self.grammar = grammar

    def sample(self, ctx: Any, index: int) -> int:
        """Draw the next token from the logits at batch position `index`."""
        lc = self.info.llama_cpp
        token = int(lc.llama_sampler_sample(self.chain, ctx, index))
        if self.grammar is not None:
            if not self._allowed(token):
                token = self._masked_draw(ctx, index)
            lc.llama_sampler_accept(self.grammar, token)
        if self.state is not None and self.state.advance(self.info.piece(token)):
            self._new_grammar()
        if self.logprobs is not None:
            self.last = self._logprobs(ctx, index, token)
        return token

    def _logprobs(self, ctx: Any, index: int, token: int) -> Sampled:
        """The token's log-probability under the raw logits (log-softmax), and the `logprobs` most likely."""
        import numpy as np

        lc, n_vocab = self.info.llama_cpp, self.info.n_vocab
        logits = np.ctypeslib.as_array(lc.llama_get_logits_ith(ctx, index), shape=(n_vocab,)).astype(np.float64)
        peak = logits.max()
        log_z = peak + math.log(float(np.exp(logits - peak).sum()))
        top: tuple[tuple[int, float], ...] = ()
        k = min(self.logprobs or 0, n_vocab)
        if k:
            best = np.argpartition(-logits, k - 1)[:k]
            best = best[np.argsort(-logits[best], kind="stable")]
            top = tuple((int(i), float(logits[i] - log_z)) for i in best)
        return Sampled(token, float(logits[token] - log_z), top)

    def _allowed(self, token: int) -> bool:
        lc, single = self.info.llama_cpp, self.info.single
        single[0].id, single[0].logit, single[0].p = token, 1.0, 0.0
        arr = lc.llama_token_data_array(single, 1, -1, False)
        lc.llama_sampler_apply(self.grammar, ctypes.byref(arr))
        return not math.isinf(single[0].logit)

    def _masked_draw(self, ctx: Any, index: int) -> int:
        import numpy as np

        lc, info = self.info.llama_cpp, self.info
        logits = np.ctypeslib.as_array(lc.llama_get_logits_ith(ctx, index), shape=(info.n_vocab,))
        info.view["id"] = info.ids
        info.view["logit"] = logits
        info.view["p"] = 0.0
        arr = lc.llama_token_data_array(info.candidates, info.n_vocab, -1, False)
        lc.llama_sampler_apply(self.grammar, ctypes.byref(arr))
        lc.llama_sampler_apply(self.chain, ctypes.byref(arr))
        if arr.selected < 0:
            raise EngineError("the grammar left no token to sample")
        return int(info.candidates[arr.selected].id)

    def close(self) -> None:
        lc = self.info.llama_cpp
        if self.grammar is not None:
            lc.llama_sampler_free(self.grammar)
            self.grammar = None
        if self.chain is not None:
            lc.llama_sampler_free(self.chain)
            self.chain = None
