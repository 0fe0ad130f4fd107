"""`turnspec parse`: read a saved raw model output with the model's template and print the split as JSON.

For debugging a runner that showed control text to the user (the gpt-oss recording in ../shared starts with
`<|channel|>analysis<|message|>`): the same reader `run` and `serve` use tells what was reasoning, answer and calls.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from ..errors import TurnspecError
from .common import fail_cleanly, load_spec, read_json_file
from .envelope import emit


def register(app: typer.Typer) -> None:
    app.command("parse")(parse)


def parse(
    model: str = typer.Argument(..., help="Model folder, .gguf file, or repo id in the Hugging Face cache."),
    output: Path = typer.Argument(..., help="Text file: the model's raw output for one assistant turn."),
    tools: Optional[Path] = typer.Option(None, "--tools", help="JSON file: the tools the request declared."),
    prompt: Optional[Path] = typer.Option(None, "--prompt", help="Text file: the prompt exactly as the model saw "
                                          "it (default: the template's generation prompt for one user message)."),
    template: Optional[Path] = typer.Option(None, "--template", help="Use this chat template file instead."),
    as_json: bool = typer.Option(False, "--json", help="Print the turnspec/1 JSON envelope (data is the split)."),
) -> None:
    """Split a saved raw output into content, reasoning and tool calls, as turnspec's reader reads it."""
    with fail_cleanly("parse", as_json):
        split = parse_output(model, output, tools, prompt, template)
        if as_json:
            emit("parse", split, notices=split["warnings"])
        else:
            typer.echo(json.dumps(split, ensure_ascii=False, indent=2))


def parse_output(model: str, output: Path, tools: Optional[Path], prompt: Optional[Path],
                 template: Optional[Path]) -> dict[str, Any]:
    """The split of one saved output: {content, reasoning, tool_calls, errors, builtin_calls, finish, warnings}."""
    raw = _read_text(output, "output")
    tool_list = read_json_file(tools, "tools") if tools else None
    if tool_list is not None and not isinstance(tool_list, list):
        raise TurnspecError(f"{tools}: expected a JSON list of tools (OpenAI style {{\"type\": \"function\", ...}})")
    spec = load_spec(model, template)
    prompt_text = _read_text(prompt, "prompt") if prompt else _default_prompt(spec, tool_list)
    result = spec.reader(prompt_text, tools=tool_list).read_all(raw)
    return {
        "content": result.content,
        "reasoning": result.reasoning,
        "tool_calls": [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in result.tool_calls],
        "errors": [{"raw": e.raw, "message": e.message} for e in result.errors],
        "builtin_calls": [{"recipient": b.recipient, "body": b.body, "arguments": b.arguments}
                          for b in result.builtin_calls],
        "finish": {"reason": result.finish_reason, "stopped_by": result.stopped_by, "stop_kind": result.stop_kind},
        "warnings": list(result.warnings),
    }


def _read_text(path: Path, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise TurnspecError(f"{path}: no such file (the {what} file)") from None
    except IsADirectoryError:
        raise TurnspecError(f"{path}: is a folder; give the {what} as a text file") from None


def _default_prompt(spec: Any, tools: Any) -> str:
    """The generation prompt for one user message: what the output continues (an opened `<think>`, Harmony's
    open header), when the caller did not save the real prompt."""
    messages = [{"role": "user", "content": "Hi"}]
    try:
        return spec.render(messages, add_generation_prompt=True, tools=tools)
    except TurnspecError:
        return spec.render(messages, add_generation_prompt=True) if tools else ""
