"""What `turnspec serve` refuses before doing any work, probed as in issue 23: bodies larger than the limit (declared
or streamed), prompts longer than the context can hold (refused before they are tokenized), bodies nested 100k deep,
max_tokens beyond the context, cross-site requests (text/plain, a foreign Origin) and DNS rebinding (a foreign Host).
Each probe is followed by a request the server must still answer. Loopback only; the scripted engine of
test_server.py, and the real `turnspec serve` command for the memory measurements.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from typing import Any, Iterable, Iterator

import pytest

pytest.importorskip("fastapi", reason="the server needs fastapi: pip install 'turnspec[serve]'")
openai = pytest.importorskip("openai", reason="these tests use the official client: pip install openai")

from turnspec.server.guard import MIN_BODY_BYTES  # noqa: E402
from turnspec.server.protocol import MAX_JSON_DEPTH  # noqa: E402

from test_server import (assert_error, client, raw_request, smol, smol_server, smol_spec,  # noqa: E402,F401
                         smol_tokenizer, user)

MB = 1 << 20
CHAT = "/v1/chat/completions"
TEXT = "/v1/completions"


# ------------------------------------------------------------------------------------------------ helpers
def http(url: str, head: str, body: Iterable[bytes] = (), timeout: float = 30) -> tuple[int, dict[str, str], Any]:
    """Send a hand-written request head and a body in pieces over a raw socket (a client that keeps sending after the
    server answered gets a reset: that is fine); return the status, headers and decoded JSON body of the answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n")
        try:
            for piece in body:
                sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = b""
        try:
            while b"\r\n\r\n" not in data or len(data) < _expected_length(data):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
    head_part, _, payload = data.partition(b"\r\n\r\n")
    lines = head_part.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    try:
        return status, headers, json.loads(payload) if payload else None
    except ValueError:
        return status, headers, payload.decode()


def _expected_length(data: bytes) -> int:
    head, _, _ = data.partition(b"\r\n\r\n")
    m = re.search(rb"(?i)content-length:\s*(\d+)", head)
    return len(head) + 4 + int(m.group(1)) if m else 0


def post_head(url: str, path: str, length: int | None = None, content_type: str = "application/json",
              extra: str = "") -> str:
    host = url.removeprefix("http://")
    size = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return f"POST {path} HTTP/1.1\nHost: {host}\nContent-Type: {content_type}\n{size}\n{extra}"


def chunked(pieces: Iterable[bytes]) -> Iterator[bytes]:
    for piece in pieces:
        yield b"%x\r\n%s\r\n" % (len(piece), piece)
    yield b"0\r\n\r\n"


def big_chat_body(megabytes: int) -> Iterator[bytes]:
    """A valid chat request whose user message is `megabytes` MB of text, made piece by piece (never held whole)."""
    yield b'{"messages": [{"role": "user", "content": "'
    for _ in range(megabytes):
        yield b"abcdefgh " * (MB // 9)
    yield b'"}]}'


def rss(pid: int | None = None) -> int:
    psutil = pytest.importorskip("psutil", reason="memory is measured with psutil")
    return psutil.Process(pid or os.getpid()).memory_info().rss


def still_answers(url: str) -> None:
    reply = client(url).chat.completions.create(model="m", messages=user("Hi"))
    assert reply.choices[0].message.content == "The capital of France is Paris."


@pytest.fixture
def small(smol_spec, smol_tokenizer):
    """The SmolLM2 template and tokenizer over a scripted engine with a 64-token context."""
    with smol_server(smol_spec, smol_tokenizer, context_length=64) as served:
        yield served


# ------------------------------------------------------------------------------------------------ body size
def test_a_declared_gigabyte_body_is_refused_before_any_byte_is_read(smol):
    url, engine = smol
    status, headers, body = http(url, post_head(url, CHAT, length=10**9))  # not one byte of it is sent
    assert_error(status, body, 413, "larger than this server accepts", "--max-body-bytes")
    assert body["error"]["code"] == "request_too_large" and headers.get("connection") == "close"
    assert engine.generations == []
    still_answers(url)


@pytest.mark.parametrize("path", [CHAT, TEXT])
def test_a_streamed_body_is_counted_as_it_arrives_and_memory_stays_bounded(smol, path):
    url, engine = smol
    before = rss()
    status, _, body = http(url, post_head(url, path), chunked(big_chat_body(64)), timeout=60)
    grown = rss() - before
    assert_error(status, body, 413, f"over {MIN_BODY_BYTES} bytes")
    assert grown < 32 * MB, f"the server grew by {grown / MB:.0f} MB on a refused 64 MB body"
    assert engine.generations == []
    still_answers(url)


def test_max_body_bytes_is_configurable(smol_spec, smol_tokenizer):
    with smol_server(smol_spec, smol_tokenizer, max_body_bytes=2000) as (url, _):
        status, body = raw_request(url, "POST", CHAT, {"messages": user("x" * 3000)})
        assert_error(status, body, 413, "(2000 bytes)")
        still_answers(url)


# ------------------------------------------------------------------------------------------------ prompt length
@pytest.fixture
def tokenized(monkeypatch) -> list[int]:
    """The length of every text the server's tokenizer is asked to encode."""
    from turnspec.vocab import Vocabulary

    seen: list[int] = []
    for name in ("encode", "encode_with_offsets"):
        original = getattr(Vocabulary, name)

        def spy(self, text, _original=original):
            seen.append(len(text))
            return _original(self, text)

        monkeypatch.setattr(Vocabulary, name, spy)
    return seen


@pytest.mark.parametrize("path,field", [(CHAT, "messages"), (TEXT, "prompt")])
def test_a_prompt_longer_than_the_context_can_hold_is_refused_before_it_is_tokenized(small, tokenized, path, field):
    url, engine = small
    text = "abcdefgh " * 300_000  # 2.7 MB: under the body limit, far over what 64 tokens can hold
    body = {"messages": user(text)} if path == CHAT else {"prompt": text}
    status, reply = raw_request(url, "POST", path, body)
    err = assert_error(status, reply, 400, "cannot fit the model's context of 64 tokens", param=field)
    assert err["code"] == "context_length_exceeded"
    assert max(tokenized, default=0) < 100_000 and engine.generations == []
    still_answers(url)


def test_a_token_id_prompt_longer_than_the_context_is_refused(small):
    url, engine = small
    status, reply = raw_request(url, "POST", TEXT, {"prompt": [17] * 100_000})
    assert_error(status, reply, 400, "100000 tokens", "context holds 64", param="prompt")
    assert engine.generations == []


# ------------------------------------------------------------------------------------------------ nesting
@pytest.mark.parametrize("path", [CHAT, TEXT])
@pytest.mark.parametrize("depth", [100_000, MAX_JSON_DEPTH + 1])
def test_a_deeply_nested_body_is_a_400(smol, path, depth):
    url, engine = smol
    nested = b"[" * depth + b"]" * depth
    body = b'{"messages": [{"role": "user", "content": "hi"}], "prompt": "hi", "metadata": ' + nested + b"}"
    status, reply = raw_request(url, "POST", path, body)
    err = assert_error(status, reply, 400, "nested too deeply", f"at most {MAX_JSON_DEPTH} levels")
    assert err["code"] == "invalid_json" and engine.generations == []
    still_answers(url)


# ------------------------------------------------------------------------------------------------ max_tokens
@pytest.mark.parametrize("path", [CHAT, TEXT])
def test_max_tokens_beyond_the_context_is_capped_to_what_it_still_holds(small, path):
    url, engine = small
    api = client(url)
    if path == CHAT:
        reply = api.chat.completions.create(model="m", messages=user("long"), max_tokens=10**12)
    else:
        reply = api.completions.create(model="m", prompt="Write something long:", max_tokens=10**12)
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.prompt_tokens + reply.usage.completion_tokens == 64
    assert engine.generations[-1]["max_tokens"] == 64 - reply.usage.prompt_tokens
    still_answers(url)


# ------------------------------------------------------------------------------------------------ cross-site
def test_a_cross_site_text_plain_post_is_refused(smol):
    """What any web page can send without a CORS preflight: text/plain (and forms), with its own Origin."""
    url, engine = smol
    body = json.dumps({"messages": user("Hi")}).encode()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        status, reply = raw_request(url, "POST", CHAT, body, headers={"Content-Type": content_type})
        assert_error(status, reply, 415, "Content-Type: application/json", repr(content_type))
    for content_type in ("text/plain", "application/json"):
        status, reply = raw_request(url, "POST", CHAT, body, headers={"Content-Type": content_type,
                                                                      "Origin": "http://evil.example"})
        err = assert_error(status, reply, 403, "http://evil.example", "--allow-origin")
        assert err["code"] == "origin_not_allowed"
    status, reply = raw_request(url, "GET", "/v1/models", headers={"Origin": "null"})
    assert_error(status, reply, 403, "--allow-origin null")
    assert engine.generations == []
    # The server's own origin is not foreign; clients outside browsers send no Origin at all.
    assert raw_request(url, "POST", CHAT, {"messages": user("Hi")}, headers={"Origin": url})[0] == 200
    still_answers(url)


def test_a_foreign_host_is_refused(smol):
    """DNS rebinding: a page on evil.example that made its name resolve to 127.0.0.1 still sends its own Host."""
    url, engine = smol
    port = url.rsplit(":", 1)[1]
    for host in (f"evil.example:{port}", "evil.example", "127.0.0.1.evil.example"):
        status, reply = raw_request(url, "POST", CHAT, {"messages": user("Hi")}, headers={"Host": host})
        err = assert_error(status, reply, 403, f"Host {host!r}", "--allow-host")
        assert err["code"] == "host_not_allowed"
    assert engine.generations == []
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "app.localhost"):
        assert raw_request(url, "GET", "/v1/models", headers={"Host": host})[0] == 200, host


def test_allowed_origins_get_cors_and_preflights(smol_spec, smol_tokenizer):
    page = "http://localhost:3000"
    with smol_server(smol_spec, smol_tokenizer, allow_origins=[page], allow_hosts=["my.box"]) as (url, _):
        preflight = (f"OPTIONS {CHAT} HTTP/1.1\nHost: {url.removeprefix('http://')}\nOrigin: {page}\n"
                     "Access-Control-Request-Method: POST\nAccess-Control-Request-Headers: authorization, "
                     "content-type\nContent-Length: 0\n")
        status, headers, _ = http(url, preflight)
        assert status == 200 and headers["access-control-allow-origin"] == page
        assert "POST" in headers["access-control-allow-methods"]
        assert "authorization" in headers["access-control-allow-headers"].lower()
        data = json.dumps({"messages": user("Hi")}).encode()
        status, headers, reply = http(url, post_head(url, CHAT, len(data), extra=f"Origin: {page}\n"), [data])
        assert status == 200 and headers["access-control-allow-origin"] == page, reply
        status, _, reply = http(url, preflight.replace(page, "http://evil.example"))
        assert_error(status, reply, 403, "http://evil.example")
        assert raw_request(url, "GET", "/v1/models", headers={"Host": "my.box"})[0] == 200
    with smol_server(smol_spec, smol_tokenizer, allow_origins=["*"]) as (url, _):
        status, headers, _ = http(url, preflight.replace(page, "http://anywhere.example"))
        assert status == 200 and headers["access-control-allow-origin"] == "*"


# ------------------------------------------------------------------------------------------------ the real command
@pytest.mark.slow
def test_turnspec_serve_limits_on_the_real_model(smollm2_gguf):
    """`turnspec serve` in a subprocess: the probes of issue 23 against it, its RSS measured with psutil."""
    from test_server_real import _health, wait_for

    proc = subprocess.Popen([sys.executable, "-m", "turnspec.cli", "serve", "--port", "0", "--log-level", "warning",
                             "--n-ctx", "96", "--parallel", "1", "--allow-origin", "http://localhost:3000"],
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "NO_COLOR": "1"})
    try:
        line = proc.stderr.readline()
        m = re.search(r"on (http://127\.0\.0\.1:\d+)/v1", line)
        assert m, line
        url = m.group(1)
        wait_for(lambda: _health(url), timeout=60)
        api = client(url, timeout=300)
        api.chat.completions.create(model="m", messages=user("Hi"), max_tokens=5)  # warm
        before = rss(proc.pid)
        timings = {}
        t0 = time.monotonic()
        status, _, reply = http(url, post_head(url, CHAT, length=10**9))
        timings["declared 1 GB"] = time.monotonic() - t0
        assert_error(status, reply, 413)
        t0 = time.monotonic()
        status, _, reply = http(url, post_head(url, CHAT), chunked(big_chat_body(64)), timeout=120)
        timings["streamed 64 MB"] = time.monotonic() - t0
        assert_error(status, reply, 413)
        t0 = time.monotonic()
        status, reply = raw_request(url, "POST", CHAT, {"messages": user("abcdefgh " * 400_000)}, timeout=120)
        timings["3.6 MB prompt"] = time.monotonic() - t0
        assert_error(status, reply, 400, "cannot fit", param="messages")
        status, reply = raw_request(url, "POST", TEXT, {"prompt": "[" * 100_000})
        assert_error(status, reply, 400, "cannot fit", param="prompt")
        status, reply = raw_request(url, "POST", TEXT, b'{"prompt": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
        assert_error(status, reply, 400, "nested too deeply")
        after = rss(proc.pid)
        print(f"\nserver RSS before {before / MB:.0f} MB, after the probes {after / MB:.0f} MB; time to refuse: "
              + ", ".join(f"{k} {v:.3f} s" for k, v in timings.items()))
        assert after - before < 64 * MB

        reply = api.completions.create(model="m", prompt="Once upon a time", max_tokens=10**9, temperature=0)
        assert reply.usage.prompt_tokens + reply.usage.completion_tokens <= 96  # capped by what the context holds
        status, reply = raw_request(url, "POST", CHAT, {"messages": user("Hi")}, headers={"Host": "evil.example"})
        assert_error(status, reply, 403, "--allow-host")
        status, reply = raw_request(url, "POST", CHAT, {"messages": user("Hi")},
                                    headers={"Origin": "http://evil.example"})
        assert_error(status, reply, 403, "--allow-origin")
        status, reply = raw_request(url, "POST", CHAT, {"messages": user("Hi"), "max_tokens": 20},
                                    headers={"Origin": "http://localhost:3000"})
        assert status == 200, reply
        assert "Paris" in api.chat.completions.create(model="m", messages=user("What is the capital of France?"),
                                                      temperature=0, max_tokens=30).choices[0].message.content
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        finally:
            if proc.poll() is None:
                proc.kill()
        err = proc.stderr.read()
    assert "Traceback" not in err, err
