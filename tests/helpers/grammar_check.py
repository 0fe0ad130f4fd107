"""Grammar checks shared by the constraint tests: does a text pass a compiled grammar, token by token?"""

from __future__ import annotations

import ctypes
import math

import pytest

from turnspec.constrain.guidance import control_tokens
from turnspec.constrain.lark import to_lark


def lark_matcher(spec, node):
    tok = _llg().LLTokenizer(spec.vocab.tokenizer.to_str(), eos_token=sorted(spec.stops.halt_ids) or None)
    grammar = _llg().LLMatcher.grammar_from_lark(to_lark(node, tokens=control_tokens(spec.vocab)))
    assert _llg().LLMatcher.validate_grammar(grammar, tok) == ""
    return tok, _llg().LLMatcher(tok, grammar)


class GbnfChecker:
    """llama.cpp's grammar sampler over the SmolLM2 GGUF vocabulary: does a text pass the grammar token by token?"""

    def __init__(self, gguf):
        import llama_cpp

        self.lc = llama_cpp
        llama_cpp.llama_backend_init()
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        self.model = llama_cpp.llama_model_load_from_file(str(gguf).encode(), params)
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)

    def tokens(self, text: str) -> list[int]:
        data = text.encode()
        buf = (self.lc.llama_token * (len(data) + 8))()
        n = self.lc.llama_tokenize(self.vocab, data, len(data), buf, len(buf), False, False)
        return list(buf[:n])

    def accepts(self, gbnf: str, text: str) -> bool:
        lc = self.lc
        grammar = lc.llama_sampler_init_grammar(self.vocab, gbnf.encode(), b"root")
        assert grammar, gbnf
        try:
            single = (lc.llama_token_data * 1)()
            for token in self.tokens(text):
                single[0].id, single[0].logit, single[0].p = token, 1.0, 0.0
                arr = lc.llama_token_data_array(single, 1, -1, False)
                lc.llama_sampler_apply(grammar, ctypes.byref(arr))
                if math.isinf(single[0].logit):
                    return False
                lc.llama_sampler_accept(grammar, token)
            return True
        finally:
            lc.llama_sampler_free(grammar)

    def close(self):
        self.lc.llama_model_free(self.model)




def _llg():
    return pytest.importorskip("llguidance", reason="the grammar tests use llguidance: pip install llguidance")
