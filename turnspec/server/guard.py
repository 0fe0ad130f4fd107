"""What every request passes before a route sees it: the Host it names, the Origin it comes from, its content
type and its size. An ASGI middleware, outermost, so a refused request costs a few header reads and no body.

Why each check:
- **Host** (DNS rebinding): a web page on `evil.example` can make its own name resolve to 127.0.0.1 and then talk to
  a local server as "same origin"; its requests still say `Host: evil.example`. Only localhost names, IP literals
  (a page cannot be served from the server's own IP) and names allowed with `--allow-host` are accepted.
- **Origin** (cross-site requests): browsers send `Origin` with every cross-site POST, and a `text/plain` or form
  POST needs no CORS preflight, so without a key any page could drive the server. A foreign Origin is refused
  unless allowed with `--allow-origin` (CORS preflights are then answered for it); clients outside browsers (the
  openai SDK, curl) send none.
- **Content type**: POST bodies are JSON, sent as `application/json` (what a browser can send cross-site without a
  preflight, text/plain and forms, is refused).
- **Size**: the body is read at most up to `max_body_bytes` (a larger `Content-Length` is refused before any byte
  is read; a chunked body is counted as it arrives), then handed to the route, which never sees more.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any, Awaitable, Callable, Iterable

from .protocol import error_body

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

MIB = 1 << 20
MIN_BODY_BYTES = 4 * MIB
BODY_BYTES_PER_TOKEN = 64  # a context-filling request: ~4 characters a token, room for JSON escapes and tools
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def default_max_body_bytes(context_length: int) -> int:
    """4 MiB, or 64 bytes per token of the largest context served when that is more (128k tokens: 8 MiB)."""
    return max(MIN_BODY_BYTES, context_length * BODY_BYTES_PER_TOKEN)


def is_json_type(content_type: str) -> bool:
    """`application/json`, `application/<x>+json`, with or without parameters (charset)."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _host_name(host: str) -> str:
    """The name of a Host header without its port: `[::1]:8000` -> `::1`, `localhost:8000` -> `localhost`."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class RequestGuard:
    """ASGI middleware: Host, Origin, content type and body size checks, refusals in the OpenAI error shape.

    `allow_hosts`: extra Host names (`*`: any). `allow_origins`: Origins browsers may call from (`*`: any);
    the server's own origin is always allowed. `max_body_bytes`: the largest request body.
    """

    def __init__(self, app: Any, *, max_body_bytes: int, allow_hosts: Iterable[str] = (),
                 allow_origins: Iterable[str] = ()):
        self.app = app
        self.max_body_bytes = int(max_body_bytes)
        hosts = {_host_name(h) for h in allow_hosts if h}
        self.any_host = "*" in hosts
        self.hosts = LOCAL_NAMES | hosts
        origins = {o.strip().rstrip("/").lower() for o in allow_origins if o and o.strip()}
        self.any_origin = "*" in origins
        self.origins = origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        refusal = self._check_host(headers) or self._check_origin(headers)
        if refusal is None and scope["method"] in BODY_METHODS:
            refusal = self._check_body_headers(headers)
        if refusal is not None:
            await _reply(send, scope, *refusal, close=scope["method"] in BODY_METHODS)
            return
        if scope["method"] in BODY_METHODS:
            body, refusal = await self._read_body(receive)
            if refusal is not None:
                await _reply(send, scope, *refusal, close=True)
                return
            if body is None:  # the client left while sending
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)

    # --- checks: None, or (status, message, code) ---------------------------------------------------------------
    def _check_host(self, headers: dict[str, str]) -> tuple[int, str, str] | None:
        host = headers.get("host")
        if host is None or self.any_host:
            return None
        name = _host_name(host)
        if name in self.hosts or name.endswith(".localhost") or _is_ip(name):
            return None
        return (403, f"Host {host!r} is not this server's address; if this server is meant to answer to that name, "
                     f"start it with --allow-host {name}", "host_not_allowed")

    def _check_origin(self, headers: dict[str, str]) -> tuple[int, str, str] | None:
        origin = headers.get("origin")
        if origin is None or self.any_origin:
            return None
        origin = origin.strip().rstrip("/").lower()
        if origin in self.origins or origin.split("://", 1)[-1] == headers.get("host", "").strip().lower():
            return None
        return (403, f"requests from the web page at {origin} are not allowed (a browser sent them); to allow it, "
                     f"start the server with --allow-origin {origin}", "origin_not_allowed")

    def _check_body_headers(self, headers: dict[str, str]) -> tuple[int, str, str] | None:
        content_type = headers.get("content-type", "")
        if not is_json_type(content_type):
            sent = f"Content-Type {content_type!r}" if content_type else "no Content-Type"
            return (415, f"the request body must be JSON sent with 'Content-Type: application/json' (got {sent})",
                    "unsupported_media_type")
        length = headers.get("content-length")
        if length is not None:
            if not length.strip().isdigit():
                return 400, f"Content-Length {length!r} is not a number", "invalid_content_length"
            if int(length) > self.max_body_bytes:
                return self._too_large(f"{int(length)} bytes")
        return None

    def _too_large(self, size: str) -> tuple[int, str, str]:
        return (413, f"the request body ({size}) is larger than this server accepts ({self.max_body_bytes} bytes); "
                     "send less, or start the server with a larger --max-body-bytes", "request_too_large")

    async def _read_body(self, receive: Receive) -> tuple[bytes | None, tuple[int, str, str] | None]:
        """The whole body, counted as it arrives; stops reading past the limit."""
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None, None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None, self._too_large(f"over {self.max_body_bytes} bytes")
            parts.append(chunk)
            if not message.get("more_body", False):
                return b"".join(parts), None


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers (first of each name), lower-cased names, decoded as latin-1 (as HTTP defines)."""
    out: dict[str, str] = {}
    for key, value in scope.get("headers", ()):
        out.setdefault(key.decode("latin-1").lower(), value.decode("latin-1"))
    return out


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the route the body already read, then passes through (disconnect notices)."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _reply(send: Send, scope: Scope, status: int, message: str, code: str, close: bool = False) -> None:
    body = error_body(message, code=code)
    core = getattr(getattr(scope.get("app"), "state", None), "core", None)
    if core is not None:  # in the shape of the API the path belongs to (Ollama's, Anthropic's...)
        body = core.shape(scope.get("path", ""), status, body)
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if close:  # the rest of the body is never read: end the connection instead of reading it
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
