"""The OpenAI completions request (`POST /v1/completions`): a raw prompt (text or token ids), or
fill-in-the-middle with `suffix`, continued as it is: no chat template. A raw text prompt is tokenized with its
control-token spellings as control tokens (a hand-rendered ChatML prompt works, as with llama.cpp's server); the
prefix and suffix of a fill-in-the-middle request are code, tokenized as plain text.

Stops are the model's own (its stop set: end-of-turn and end-of-text ids, stop strings) plus the request's; a
fill-in-the-middle request also ends on the FIM family's separators (`<fim_pad>`, `<file_sep>`…). The output is
read by the same streaming reader as chats, minus reasoning and tool-call parsing: control tokens never reach
the text. Defaults follow the OpenAI API (max_tokens 16, temperature 1).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Union

from pydantic import ValidationError

from ..chat import GenerationOptions
from .protocol import APIError, GenerationRequest, bad, check_prompt_chars, sampling, validation_error

if TYPE_CHECKING:
    from ..spec import ModelSpec

OPENAI_DEFAULT_MAX_TOKENS = 16


class CompletionRequest(GenerationRequest):
    prompt: Union[str, list[str], list[int], list[list[int]]]
    suffix: Optional[str] = None
    best_of: Optional[int] = None
    echo: bool = False
    logprobs: Optional[int] = None


@dataclass
class CompletionCall:
    model: Optional[str]
    text: Optional[str]  # the prompt as text, or None when it came as token ids
    ids: Optional[list[int]]
    suffix: Optional[str]
    max_tokens: int
    temperature: float
    top_p: float
    seed: Optional[int]
    stop: tuple[str, ...]
    stream: bool
    include_usage: bool
    logprobs: Optional[int] = None
    token_ids: bool = False


def parse_completion(data: Any, *, generation_config: dict[str, Any] | None = None) -> CompletionCall:
    if not isinstance(data, dict):
        raise bad("the request body must be a JSON object", code="invalid_json")
    try:
        req = CompletionRequest.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc.errors(include_url=False)) from None
    for name, value in (("n", req.n), ("best_of", req.best_of)):
        if value not in (None, 1):
            raise bad(f"{name}: only 1 is supported", param=name, code="unsupported_value")
    if req.echo:
        raise bad("echo: not supported by turnspec serve", param="echo", code="unsupported_value")
    if req.logprobs is not None and not 0 <= req.logprobs <= 5:
        raise bad("logprobs: must be between 0 and 5", param="logprobs")
    prompt = req.prompt
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)):
        if len(prompt) != 1:
            raise bad("prompt: send one prompt per request (batches of prompts are not supported)", param="prompt",
                      code="unsupported_value")
        prompt = prompt[0]
    text = prompt if isinstance(prompt, str) else None
    ids = None if isinstance(prompt, str) else [int(t) for t in prompt]
    stop, temperature, top_p, include_usage = sampling(req, None, generation_config)
    return CompletionCall(req.model, text, ids, req.suffix, req.max_tokens or OPENAI_DEFAULT_MAX_TOKENS,
                          temperature, top_p, req.seed, stop, req.stream, include_usage, req.logprobs,
                          req.return_token_ids)


@dataclass
class RawPrompt:
    """What the worker generates from: ids, the text the reader continues (empty: no chat state), and stop ids."""

    ids: list[int]
    text: str
    stop_ids: frozenset[int]


def encode_completion(model: Any, call: CompletionCall) -> tuple[RawPrompt, GenerationOptions]:
    """Token ids for the prompt (BOS as the tokenizer adds it, never twice; FIM layout with a suffix)."""
    spec = model.spec
    vocab = spec.require_vocab()
    if call.suffix is not None and model.fim is None:
        raise bad(f"suffix: {model.id} has no fill-in-the-middle tokens in its vocabulary, so it cannot fill in a "
                  "middle; send the prompt without suffix", param="suffix", code="unsupported_value")
    # A raw prompt may spell control tokens on purpose (a ChatML text); FIM code is text, control spellings included.
    text_vocab = model.literal_vocab if call.suffix is not None else vocab
    # Bounds before tokenizing: a megabyte prompt is refused without being tokenized (that is what costs memory).
    if call.ids is not None and model.context_length and len(call.ids) >= model.context_length:
        raise bad(f"the prompt takes {len(call.ids)} tokens but the model's context holds {model.context_length}",
                  param="prompt", code="context_length_exceeded")
    check_prompt_chars(len(call.text or "") + len(call.suffix or ""), model.max_prompt_chars, model.context_length,
                       "prompt")
    if call.ids is not None:
        bad_ids = [t for t in call.ids if not 0 <= t < vocab.size]
        if bad_ids:
            raise bad(f"prompt: token id {bad_ids[0]} is outside the vocabulary (0..{vocab.size - 1})", param="prompt")
        ids = list(call.ids)
    else:
        ids = text_vocab.encode(call.text or "")
    stop_ids = frozenset(spec.stops.halt_ids)
    if call.suffix is not None:
        ids = model.fim.encode(vocab, ids, text_vocab.encode(call.suffix))
        stop_ids |= model.fim.end_ids(vocab)
    ids = _with_bos(spec, ids)
    if not ids:
        raise bad("prompt: empty (and the tokenizer adds no BOS to start from)", param="prompt")
    room = model.context_length - len(ids) if model.context_length else None
    if room is not None and room <= 0:
        raise bad(f"the prompt takes {len(ids)} tokens but the model's context holds {model.context_length}",
                  param="prompt", code="context_length_exceeded")
    max_tokens = min(call.max_tokens, room) if room is not None else call.max_tokens
    options = GenerationOptions(max_tokens=max_tokens, temperature=call.temperature, top_p=call.top_p,
                                seed=call.seed, stop_strings=call.stop, logprobs=call.logprobs,
                                token_ids=call.token_ids)
    return RawPrompt(ids, "", stop_ids), options


def _with_bos(spec: ModelSpec, ids: list[int]) -> list[int]:
    bos = spec.special_tokens.get("bos_token")
    bos_id = spec.token_id(bos) if bos else None
    if bos_id is None or not spec.tokenizer_adds_bos or (ids and ids[0] == bos_id):
        return ids
    return [bos_id, *ids]


def completion_reader(spec: ModelSpec, prompt: RawPrompt, stop_strings: tuple[str, ...]) -> Any:
    """The streaming reader for raw text: stops and control tokens as for chats, no reasoning or tool parsing."""
    return spec.reader("", extra_stop_strings=stop_strings, stop_ids=prompt.stop_ids, reasoning="none",
                       call_format="none", turn_headers=(), content_markers=("", ""), content_prefix="", prompt_tail="",
                       channels=None, channel_prefix="")


# --- responses -----------------------------------------------------------------------------------------------
def new_completion_id() -> str:
    return f"cmpl-{uuid.uuid4().hex}"


def text_completion(cid: str, model: str, text: str, finish_reason: str | None, use: dict[str, int] | None,
                    created: int | None = None) -> dict[str, Any]:
    """A `text_completion` object: the whole answer, or (streaming) one chunk of it."""
    body: dict[str, Any] = {"id": cid, "object": "text_completion", "created": created or int(time.time()),
                            "model": model, "system_fingerprint": None,
                            "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}]}
    if use is not None:
        body["usage"] = use
    return body


def usage_chunk(cid: str, model: str, use: dict[str, int], created: int) -> dict[str, Any]:
    return {"id": cid, "object": "text_completion", "created": created, "model": model, "system_fingerprint": None,
            "choices": [], "usage": use}


def finish_reason(done_reason: str | None) -> str:
    """The reader's finish reasons as the completions API names them (a tool call cannot happen here)."""
    return "length" if done_reason == "length" else "stop"


__all__ = ["APIError", "CompletionCall", "RawPrompt", "completion_reader", "encode_completion", "parse_completion"]
