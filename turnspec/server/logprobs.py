"""Token logprobs and sampled token ids in responses: OpenAI's chat shape (`logprobs.content`), its completions
shape (`tokens`, `token_logprobs`, `top_logprobs`, `text_offset`) and vLLM's `return_token_ids` (`token_ids` per
choice, `prompt_token_ids` on the response).

The worker emits one `engines.base.Sampled` per generated token, before that token's reader events; every
generated token is reported (reasoning, call markup and the stop token too: the ids `usage` counts). A token's
text is its own decoding, so a character split across tokens shows as U+FFFD in `token` while `bytes` are the
UTF-8 bytes of that text.
"""

from __future__ import annotations

from typing import Any

from ..engines.base import Sampled
from .protocol import APIError

ENGINES_WITH_LOGPROBS = ("llamacpp",)  # engines whose class sets `logprobs = True`, for models not loaded yet
MAX_TOP_LOGPROBS = 20


def check_engine(served: Any, models: Any, param: str) -> None:
    """A 400 naming the engine when the model's engine cannot report logprobs."""
    engine = models.engine if models.resident is served else None
    name = getattr(engine, "name", None) or served.engine_name or "this"
    able = bool(getattr(engine, "logprobs", False)) if engine is not None else name in ENGINES_WITH_LOGPROBS
    if not able:
        raise APIError(400, f"{param}: the {name} engine cannot return logprobs (the llamacpp engine can: serve a "
                            "GGUF file); send the request without it", param=param, code="unsupported_value")


class TokenTexts:
    """Each token id's text (decoded alone, control tokens spelled out), cached."""

    def __init__(self, spec: Any):
        self._vocab = spec.require_vocab()
        self._texts: dict[int, str] = {}

    def __call__(self, token: int) -> str:
        text = self._texts.get(token)
        if text is None:
            text = self._texts[token] = self._vocab.decode([token], skip_special_tokens=False)
        return text


def chat_entries(items: list[Sampled], text: TokenTexts) -> list[dict[str, Any]]:
    """`choices[].logprobs.content` of Chat Completions."""
    def one(token: int, logprob: float) -> dict[str, Any]:
        t = text(token)
        return {"token": t, "logprob": logprob, "bytes": list(t.encode("utf-8"))}

    return [{**one(s.id, s.logprob if s.logprob is not None else 0.0),
             "top_logprobs": [one(i, lp) for i, lp in s.top]} for s in items]


def completion_logprobs(items: list[Sampled], text: TokenTexts, offset: int = 0) -> dict[str, Any]:
    """`choices[].logprobs` of (legacy) Completions; `offset` is where these tokens' text starts."""
    tokens, offsets = [], []
    for s in items:
        offsets.append(offset)
        tokens.append(text(s.id))
        offset += len(tokens[-1])
    return {"tokens": tokens, "token_logprobs": [s.logprob for s in items],
            "top_logprobs": [{text(i): lp for i, lp in s.top} for s in items], "text_offset": offsets}


class SampledLog:
    """The Sampled items of a job, taken out in chunks (each streamed chunk carries the tokens since the last)."""

    def __init__(self, spec: Any, logprobs: int | None, token_ids: bool):
        self.logprobs, self.token_ids = logprobs, token_ids
        self.text = TokenTexts(spec) if logprobs is not None else None
        self.pending: list[Sampled] = []
        self.all: list[Sampled] = []
        self.text_offset = 0

    @property
    def wanted(self) -> bool:
        return self.logprobs is not None or self.token_ids

    def add(self, item: Any) -> bool:
        """True when `item` was a Sampled (taken here), False for a reader event."""
        if not isinstance(item, Sampled):
            return False
        self.pending.append(item)
        self.all.append(item)
        return True

    def take(self) -> list[Sampled]:
        items, self.pending = self.pending, []
        return items

    def chat_choice(self, choice: dict[str, Any], items: list[Sampled]) -> dict[str, Any]:
        """`choice` with these tokens' logprobs and ids, as asked."""
        if self.text is not None:
            choice["logprobs"] = {"content": chat_entries(items, self.text), "refusal": None}
        if self.token_ids:
            choice["token_ids"] = [s.id for s in items]
        return choice

    def completion_choice(self, choice: dict[str, Any], items: list[Sampled]) -> dict[str, Any]:
        if self.text is not None:
            choice["logprobs"] = completion_logprobs(items, self.text, self.text_offset)
            self.text_offset += sum(len(t) for t in choice["logprobs"]["tokens"])
        if self.token_ids:
            choice["token_ids"] = [s.id for s in items]
        return choice
