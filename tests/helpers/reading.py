"""Reading one output every way a runner feeds it (whole, in text chunks, token by token) and checking that every way
gives the same: the reader tests' one helper for it, so that each test module states only its template and outputs.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any


def tool(name: str, **types: str) -> dict[str, Any]:
    """An OpenAI function tool whose parameters have these JSON types (`tool("get_weather", city="string")`)."""
    return {"type": "function", "function": {"name": name, "parameters": {
        "type": "object", "properties": {k: {"type": t} for k, t in types.items()}}}}


def calls(result: Any) -> list[tuple[str, dict[str, Any]]]:
    """(name, arguments) of each tool call read."""
    return [(c.name, c.arguments) for c in result.tool_calls]


def split(result: Any) -> tuple[str, str, list[tuple[str, dict[str, Any]]]]:
    """What a user sees: (content, reasoning, calls)."""
    return result.content, result.reasoning, calls(result)


def everything(result: Any) -> tuple[Any, list[str]]:
    """The whole Result, warnings included (Result's equality leaves them out)."""
    return result, result.warnings


def pieces(output: str, chunk: int | None) -> list[str]:
    """`output` in `chunk`-character pieces, or (None) in pieces of 1 to 5 characters drawn from a seeded random."""
    if chunk is not None:
        return [output[i:i + chunk] for i in range(0, len(output), chunk)]
    rnd, i, out = random.Random(len(output)), 0, []
    while i < len(output):
        n = rnd.randint(1, 5)
        out.append(output[i:i + n])
        i += n
    return out


def read_every_way(new_reader: Callable[[], Any], output: str, *, chunk: int | None = 3,
                   token_ids: Sequence[int] | None = None, stop_when_done: bool = False,
                   same: Callable[[Any], Any] = split) -> Any:
    """The Result of reading `output` whole, after checking that `same` of it is the same when the text is fed in
    pieces (`pieces(output, chunk)`; chunk=0 skips that read) and, given `token_ids`, token by token (stopping
    when the reader is done, if `stop_when_done`). `new_reader()` makes a fresh reader for each read."""
    whole = new_reader().read_all(output)
    others = []
    if chunk != 0:
        reader = new_reader()
        for piece in pieces(output, chunk):
            reader.feed_text(piece)
        reader.finish()
        others.append(reader.result)
    if token_ids is not None:
        reader = new_reader()
        for tid in token_ids:
            reader.feed_token(tid)
            if stop_when_done and reader.done:
                break
        reader.finish()
        others.append(reader.result)
    for other in others:
        assert same(other) == same(whole)
    return whole


def read_reply(spec: Any, output: str, tools: list[dict[str, Any]] | None = None, *, tokenizer: Any = None,
               **kwargs: Any) -> Any:
    """`read_every_way` for the reply to one user message "Hi" (rendered with `tools`, the request's tools too), token
    by token through `tokenizer` (a tokenizers.Tokenizer) when given. Keyword arguments of `read_every_way` go there;
    the others are the template's switches (`enable_thinking=True`)."""
    options = {k: kwargs.pop(k) for k in ("chunk", "stop_when_done", "same") if k in kwargs}
    prompt = spec.render([{"role": "user", "content": "Hi"}], add_generation_prompt=True, tools=tools, **kwargs)
    ids = tokenizer.encode(output, add_special_tokens=False).ids if tokenizer is not None else None
    return read_every_way(lambda: spec.reader(prompt, tools=tools), output, token_ids=ids, **options)
