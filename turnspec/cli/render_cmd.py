"""`turnspec render`: print exactly what a model sees for a conversation, optionally token by token."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import TurnspecError
from .common import fail_cleanly, load_spec, parse_kwargs, read_json_file
from .envelope import emit


def register(app: typer.Typer) -> None:
    app.command("render")(render)


def render(
    model: str = typer.Argument(..., help="Model folder, .gguf file, or repo id in the Hugging Face cache."),
    messages: Path = typer.Option(..., "--messages", "-m", help="JSON file: a list of {role, content} messages."),
    tools: Optional[Path] = typer.Option(None, "--tools", help="JSON file: a list of tool schemas."),
    no_generation_prompt: bool = typer.Option(False, "--no-generation-prompt", help="Don't open an assistant turn."),
    continue_final: bool = typer.Option(False, "--continue", help="Continue the final (assistant) message."),
    kw: Optional[list[str]] = typer.Option(None, "--kw", help="Extra template variable, key=value (JSON value)."),
    tokens: bool = typer.Option(False, "--tokens", help="Show each token with its id, the boundary and the mask."),
    template: Optional[Path] = typer.Option(None, "--template", help="Use this chat template file instead."),
    as_json: bool = typer.Option(False, "--json", help="Print the turnspec/1 JSON envelope; data is {text} (with --tokens: ids, generation_start, assistant_mask)."),
) -> None:
    """Render a conversation with the model's own chat template, as transformers would."""
    with fail_cleanly("render", as_json):
        _render(model, messages, tools, no_generation_prompt, continue_final, kw, tokens, template, as_json)


def _render(model: str, messages: Path, tools: Optional[Path], no_generation_prompt: bool, continue_final: bool,
            kw: Optional[list[str]], tokens: bool, template: Optional[Path], as_json: bool) -> None:
    spec = load_spec(model, template)
    conversation = read_json_file(messages, "messages")
    if isinstance(conversation, dict) and "messages" in conversation:
        conversation = conversation["messages"]
    if not isinstance(conversation, list):
        raise TurnspecError(f"{messages}: expected a JSON list of messages (or an object with 'messages')")
    tool_list = read_json_file(tools, "tools") if tools else None
    options = dict(add_generation_prompt=not no_generation_prompt and not continue_final,
                   continue_final_message=continue_final, tools=tool_list, **parse_kwargs(kw))
    if not tokens:
        text = spec.render(conversation, **options)
        if as_json:
            emit("render", {"model": spec.name, "text": text})
        else:
            typer.echo(text, nl=False)
        return
    enc = spec.encode(conversation, **options)
    if as_json:
        emit("render", {"model": spec.name, "text": enc.text, "ids": enc.ids, "generation_start": enc.generation_start,
                        "assistant_mask": enc.assistant_mask, "mask_method": enc.mask_method,
                        "mask_exact": enc.mask_exact, "bos_added": enc.bos_added})
        return
    vocab = spec.require_vocab()
    mask = enc.assistant_mask or [0] * len(enc.ids)
    for k, (tid, m) in enumerate(zip(enc.ids, mask)):
        if enc.generation_start == k:
            typer.echo(f"{'':>6} ---- generation starts here (token {k}) ----")
        typer.echo(f"{k:>6} {tid:>8} {'A' if m else ' '} {vocab.decode([tid])!r}")
    if enc.generation_start == len(enc.ids):
        typer.echo(f"{'':>6} ---- generation starts here (token {len(enc.ids)}) ----")
    exact = "" if enc.mask_exact in (None, True) else f" (inexact: {'; '.join(enc.mask_notes)})"
    typer.echo(f"{len(enc.ids)} tokens; A = assistant-written ({enc.mask_method} mask){exact}"
               + ("; BOS added" if enc.bos_added else ""))
