"""A turnspec app served on loopback for the server tests, and the default model behind it."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def running(app: Any) -> Iterator[str]:
    """Serve `app` with uvicorn on a free loopback port in a thread; yield its base URL; shut it down."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextmanager
def real_model_server(gguf: Path, template: Path | None = None, **engine_options: Any) -> Iterator[tuple[str, Any, Any]]:
    """The default model's GGUF on the llama.cpp engine (its own template, or `template`), served: (url, spec,
    engine). Skips without llama-cpp-python."""
    import pytest

    pytest.importorskip("llama_cpp", reason="the llamacpp engine needs llama-cpp-python: pip install 'turnspec[llamacpp]'")
    import turnspec
    from turnspec.engines import load_engine
    from turnspec.server import create_app

    spec = turnspec.load(gguf, template=template) if template is not None else turnspec.load(gguf)
    engine = load_engine("llamacpp", gguf, **engine_options)
    try:
        with running(create_app(spec, engine)) as url:
            yield url, spec, engine
    finally:
        engine.close()
